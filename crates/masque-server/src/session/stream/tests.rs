use bytes::BytesMut;
use masque_proto::tcp::{DRAFT_11, TcpEvent, TcpReceiver};

use super::*;

/// CTCP-21: only a tunnel whose two directions both ended cleanly ends
/// cleanly; a target failure or a proxy-side end (idle, a handler's abort)
/// is H3_CONNECT_ERROR / CONNECT_ERROR, a malformed capsule a
/// malformed-message reset, the client's abort a cancellation.
#[test]
fn ctcp_21_close_mapping() {
    assert_eq!(reset_for(&CloseReason::ClientClosed), None);
    for r in [
        CloseReason::TargetFailed("reset".into()),
        CloseReason::IdleTimeout,
        CloseReason::Handler(Action::Abort),
    ] {
        assert_eq!(reset_for(&r), Some(ResetReason::ConnectError), "{r:?}");
    }
    assert_eq!(
        reset_for(&CloseReason::ProtocolError("x".into())),
        Some(ResetReason::Malformed)
    );
    for r in [
        CloseReason::ClientAborted,
        CloseReason::WriteStalled,
        CloseReason::Shutdown,
    ] {
        assert_eq!(reset_for(&r), Some(ResetReason::Cancelled), "{r:?}");
    }
}

/// CTCP-03 / CTCP-19: a chunk read behind the head room goes out as one
/// DATA capsule whose header sits just in front of it (every length a read
/// can have), and decodes back to the same bytes.
#[test]
fn ctcp_03_framed_in_place() {
    for n in [1usize, 63, 64, 16383, 16384, READ_CHUNK] {
        let mut sender = TcpSender::new(DRAFT_11);
        let mut buf = BytesMut::with_capacity(HEAD_ROOM + n);
        buf.put_bytes(0, HEAD_ROOM);
        buf.put_bytes(0xab, n);
        let base = buf.as_ptr() as usize;
        let chunk = framed(&mut sender, &mut buf, n);
        assert_eq!(
            chunk.as_ptr() as usize + chunk.len(),
            base + HEAD_ROOM + n,
            "no copy"
        );
        let mut rx = TcpReceiver::new(DRAFT_11);
        rx.push(chunk);
        let mut got = 0;
        while let Some(TcpEvent::Data(d)) = rx.next_event().unwrap() {
            assert!(d.iter().all(|&b| b == 0xab));
            got += d.len();
        }
        assert_eq!(got, n);
    }
}

/// CTCP-10, CTCP-27: CONNECT-TCP's 2xx says `Capsule-Protocol: ?1`, classic
/// CONNECT's does not; both carry a Proxy-Status naming the node.
#[test]
fn ctcp_10_response_headers() {
    let h = response_headers(StreamFraming::Capsules(DRAFT_11), "masque-node");
    assert_eq!(h.get(headers::CAPSULE_PROTOCOL).unwrap(), "?1");
    assert_eq!(h.get(headers::PROXY_STATUS).unwrap(), "masque-node");
    let h = response_headers(StreamFraming::Raw, "masque-node");
    assert!(h.get(headers::CAPSULE_PROTOCOL).is_none());
    assert_eq!(h.get(headers::PROXY_STATUS).unwrap(), "masque-node");
}
