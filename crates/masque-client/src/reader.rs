//! One task per tunnel reads the request stream: DATAGRAM capsules are
//! delivered like QUIC datagrams (R9297-31), other capsule types are skipped
//! (R9297-17), and the stream's end (FIN, reset, connection loss) ends the tunnel.

use std::sync::Arc;

use bytes::Bytes;
use masque_h3::{Code, RecvHalf};
use masque_proto::{
    capsule::{self, CapsuleDecoder},
    datagram::{self, DatagramError, UDP_CONTEXT_ID},
};
use tokio::sync::mpsc;

use crate::{
    close::{CloseReason, Counters},
    sender::Inner,
};

/// What the session does with one received HTTP datagram payload.
pub(crate) enum Payload {
    /// A Context ID 0 UDP payload (R9298-39).
    Udp(Bytes),
    /// Dropped and counted (unknown context R9298-38, or no context id).
    Dropped,
    /// A Context-ID-0 payload over 65527 bytes: abort the stream (R9298-41).
    Abort(DatagramError),
}

/// Classifies an HTTP datagram payload (from a QUIC DATAGRAM or a capsule).
pub(crate) fn classify(payload: Bytes, counters: &Counters) -> Payload {
    match datagram::parse_udp_payload(payload) {
        Ok((UDP_CONTEXT_ID, p)) => Payload::Udp(p),
        Ok(_) => {
            Counters::inc(&counters.unknown_context);
            Payload::Dropped
        }
        Err(e @ DatagramError::UdpPayloadTooLarge(_)) => Payload::Abort(e),
        Err(_) => {
            Counters::inc(&counters.malformed);
            Payload::Dropped
        }
    }
}

/// Reads the stream until it ends or the session's receiver goes away. UDP
/// payloads from DATAGRAM capsules go to `tx` (full queue: drop and count).
pub(crate) async fn run(mut recv: RecvHalf, inner: Arc<Inner>, tx: mpsc::Sender<Bytes>) {
    // R9297-34: capsules are bounded (64 KiB); larger ones are an error.
    let mut decoder = CapsuleDecoder::new();
    let reason = loop {
        let next = tokio::select! {
            r = recv.recv_data() => r,
            () = tx.closed() => {
                recv.stop(Code::REQUEST_CANCELLED);
                break CloseReason::Local;
            }
        };
        match next {
            Ok(Some(chunk)) => {
                decoder.push(chunk);
                if let Err(why) = drain(&mut decoder, &inner, &tx) {
                    // R9297-22, R9298-41: abort the request stream.
                    inner.abort(Code::MESSAGE_ERROR);
                    recv.stop(Code::MESSAGE_ERROR);
                    break CloseReason::ProtocolError(why);
                }
            }
            Ok(None) => match decoder.finish() {
                Ok(()) => {
                    inner.finish();
                    break CloseReason::ProxyFinished;
                }
                // R9297-24: FIN inside a capsule is malformed.
                Err(e) => {
                    inner.abort(Code::MESSAGE_ERROR);
                    break CloseReason::ProtocolError(e.to_string());
                }
            },
            Err(masque_h3::Error::StreamReset(code)) => {
                inner.abort(Code::REQUEST_CANCELLED);
                break CloseReason::Reset(code.0);
            }
            Err(masque_h3::Error::Connection(e)) => {
                break CloseReason::ConnectionLost(e.to_string());
            }
            Err(e) => {
                inner.abort(Code::MESSAGE_ERROR);
                break CloseReason::ProtocolError(e.to_string());
            }
        }
    };
    tracing::debug!(stream = inner.stream_id, ?reason, "tunnel stream ended");
    inner.set_close(reason);
}

/// Handles every complete capsule in the decoder.
fn drain(
    decoder: &mut CapsuleDecoder,
    inner: &Inner,
    tx: &mpsc::Sender<Bytes>,
) -> Result<(), String> {
    while let Some(c) = decoder.next_capsule().map_err(|e| e.to_string())? {
        if c.ty != capsule::DATAGRAM {
            // R9297-17: unknown (and GREASE) capsule types are skipped.
            continue;
        }
        match classify(c.value, &inner.counters) {
            Payload::Udp(p) => {
                Counters::inc(&inner.counters.capsules);
                if tx.try_send(p).is_err() {
                    Counters::inc(&inner.counters.capsule_queue_full);
                }
            }
            Payload::Dropped => {}
            Payload::Abort(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// R9298-38/39/41 and the spec's vector "payload with unknown context 6".
    #[test]
    fn r9298_38_41_classify() {
        let c = Counters::default();
        assert!(
            matches!(classify(Bytes::from_static(b"\x00abc"), &c), Payload::Udp(p) if p == "abc")
        );
        assert!(
            matches!(classify(Bytes::from_static(b"\x00"), &c), Payload::Udp(p) if p.is_empty())
        );
        assert!(matches!(
            classify(Bytes::from_static(b"\x06abc"), &c),
            Payload::Dropped
        ));
        assert!(matches!(classify(Bytes::new(), &c), Payload::Dropped));
        let mut big = vec![0u8; 1 + 65528];
        big[0] = 0;
        assert!(matches!(classify(Bytes::from(big), &c), Payload::Abort(_)));
        let s = c.snapshot();
        assert_eq!((s.unknown_context_dropped, s.malformed_dropped), (1, 1));
    }
}
