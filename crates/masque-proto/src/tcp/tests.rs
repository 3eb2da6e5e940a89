use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::capsule::CapsuleError;

/// Every event of `wire` fed in `step`-byte chunks: the stream bytes, whether
/// a FIN came, and the end.
fn receive(
    cp: Codepoints,
    wire: &[u8],
    step: usize,
) -> Result<(Vec<u8>, bool, StreamEnd), CapsuleError> {
    let mut r = TcpReceiver::new(cp);
    let (mut stream, mut fin) = (Vec::new(), false);
    for chunk in wire.chunks(step.max(1)) {
        r.push(Bytes::copy_from_slice(chunk));
        while let Some(e) = r.next_event()? {
            match e {
                TcpEvent::Data(d) => {
                    assert!(!d.is_empty());
                    assert!(!fin, "data after the FIN event");
                    stream.extend_from_slice(&d);
                }
                TcpEvent::Fin => fin = true,
            }
        }
    }
    Ok((stream, fin, r.finish()?))
}

/// CTCP digest §11 (CTCP-03): DATA "abc", empty FINAL_DATA and FINAL_DATA
/// "xyz" with the -11 codepoints, received in every chunking.
#[test]
fn ctcp_03_draft11_vectors() {
    let mut s = TcpSender::new(DRAFT_11);
    let mut b = Vec::new();
    s.encode(b"abc", false, &mut b).unwrap();
    assert_eq!(b, [0xa0, 0x28, 0xd7, 0xf0, 0x03, 0x61, 0x62, 0x63]);
    let mut f = Vec::new();
    s.encode(b"", true, &mut f).unwrap();
    assert_eq!(f, [0xa0, 0x28, 0xd7, 0xf1, 0x00]);
    let mut x = Vec::new();
    TcpSender::new(DRAFT_11)
        .encode(b"xyz", true, &mut x)
        .unwrap();
    assert_eq!(x, [0xa0, 0x28, 0xd7, 0xf1, 0x03, 0x78, 0x79, 0x7a]);

    b.extend_from_slice(&f);
    for step in 1..=b.len() {
        let got = receive(DRAFT_11, &b, step).unwrap();
        assert_eq!(
            got,
            (b"abc".to_vec(), true, StreamEnd::Graceful),
            "step {step}"
        );
    }
    let got = receive(DRAFT_11, &x, 2).unwrap();
    assert_eq!(got, (b"xyz".to_vec(), true, StreamEnd::Graceful));
}

/// Digest §1: tokens and codepoints per revision, the final token served
/// with the -11 codepoints (decisions §14), tokens compared in any case.
#[test]
fn ctcp_02_tokens() {
    assert_eq!(UPGRADE_TOKEN, "connect-tcp");
    assert_eq!(Codepoints::for_token("connect-tcp-07"), Some(DRAFT_11));
    assert_eq!(Codepoints::for_token("connect-tcp-12"), Some(DRAFT_12));
    assert_eq!(Codepoints::for_token("Connect-TCP"), Some(FINAL));
    assert_eq!(
        (FINAL.data, FINAL.final_data),
        (DRAFT_11.data, DRAFT_11.final_data)
    );
    assert_eq!(Codepoints::for_token("connect-tcp-05"), None);
    assert_eq!(
        (DRAFT_12.data, DRAFT_12.final_data),
        (0x2028_d7f2, 0x2028_d7f3)
    );
}

/// CTCP digest §11 (CTCP-04): FINAL_DATA "" then DATA "a" is malformed on
/// receipt (so is a second FINAL_DATA), and refused by the sender; other
/// types after FINAL_DATA are still ignored.
#[test]
fn ctcp_04_nothing_after_final_data() {
    let wire = [
        0xa0, 0x28, 0xd7, 0xf1, 0x00, 0xa0, 0x28, 0xd7, 0xf0, 0x01, 0x61,
    ];
    let e = receive(DRAFT_11, &wire, 64).unwrap_err();
    assert!(matches!(
        e,
        CapsuleError::Malformed {
            ty: 0x2028_d7f0,
            ..
        }
    ));
    let twice = [0xa0, 0x28, 0xd7, 0xf1, 0x00, 0xa0, 0x28, 0xd7, 0xf1, 0x00];
    assert!(receive(DRAFT_11, &twice, 3).is_err());
    let grease_after = [0xa0, 0x28, 0xd7, 0xf1, 0x00, 0x17, 0x01, 0xaa];
    assert_eq!(
        receive(DRAFT_11, &grease_after, 1).unwrap(),
        (Vec::new(), true, StreamEnd::Graceful)
    );

    let mut s = TcpSender::new(DRAFT_11);
    let mut b = Vec::new();
    s.encode(b"", true, &mut b).unwrap();
    assert!(s.fin_sent());
    assert_eq!(
        s.encode(b"a", false, &mut b),
        Err(TcpSendError::AfterFinalData)
    );
    assert_eq!(
        s.encode_header(0, true, &mut b),
        Err(TcpSendError::AfterFinalData)
    );
    assert_eq!(b, [0xa0, 0x28, 0xd7, 0xf1, 0x00]);
}

/// CTCP-07 / R9297-17: unknown capsules (and the other revision's codepoints)
/// are skipped, however long, without being buffered; CTCP-22: a stream
/// ending without FINAL_DATA is abortive; R9297-24: one ending inside a
/// capsule is truncated.
#[test]
fn ctcp_22_abortive_end_and_ctcp_07_ignore() {
    let mut wire = Vec::new();
    crate::capsule::encode(DRAFT_12.data, b"x", &mut wire);
    crate::capsule::encode(0x17, &vec![9u8; 300_000], &mut wire);
    crate::capsule::encode(DRAFT_11.data, b"", &mut wire);
    crate::capsule::encode(DRAFT_11.data, b"ok", &mut wire);
    let mut r = TcpReceiver::new(DRAFT_11);
    let mut got = Vec::new();
    for c in wire.chunks(4096) {
        r.push(Bytes::copy_from_slice(c));
        while let Some(e) = r.next_event().unwrap() {
            got.push(e);
        }
    }
    assert_eq!(got, [TcpEvent::Data(Bytes::from_static(b"ok"))]);
    assert_eq!(r.skipped_capsules(), 2);
    assert!(!r.fin_received());
    assert_eq!(r.finish(), Ok(StreamEnd::Abortive));

    // Truncated: inside a header, inside a value.
    assert_eq!(
        receive(DRAFT_11, &[0xa0, 0x28], 1),
        Err(CapsuleError::Truncated)
    );
    assert_eq!(
        receive(DRAFT_11, &[0xa0, 0x28, 0xd7, 0xf1, 0x02, b'a'], 1),
        Err(CapsuleError::Truncated)
    );
}

/// CTCP-06: a large DATA capsule is handed on piece by piece as it arrives,
/// sharing the input (no copy).
#[test]
fn ctcp_06_payload_streams_through() {
    let mut r = TcpReceiver::new(DRAFT_11);
    let mut head = Vec::new();
    crate::capsule::encode_header(DRAFT_11.data, 1 << 20, &mut head);
    r.push(Bytes::from(head));
    assert_eq!(r.next_event(), Ok(None));
    let piece = Bytes::from(vec![7u8; 1000]);
    r.push(piece.clone());
    match r.next_event() {
        Ok(Some(TcpEvent::Data(d))) => assert_eq!(d.as_ptr(), piece.as_ptr()),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.next_event(), Ok(None));
}

proptest! {
    /// Sender output, cut anywhere and interleaved with ignored capsules,
    /// decodes back to the same byte stream and FIN.
    #[test]
    fn roundtrip(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 1..6),
        v12 in any::<bool>(),
        grease in any::<bool>(),
        step in 1usize..20,
    ) {
        let cp = if v12 { DRAFT_12 } else { DRAFT_11 };
        let mut s = TcpSender::new(cp);
        let mut wire = Vec::new();
        let last = chunks.len() - 1;
        for (i, c) in chunks.iter().enumerate() {
            if grease {
                crate::capsule::encode(0x29, c, &mut wire);
            }
            s.encode(c, i == last, &mut wire).unwrap();
        }
        let (stream, fin, end) = receive(cp, &wire, step).unwrap();
        prop_assert_eq!(stream, chunks.concat());
        prop_assert!(fin);
        prop_assert_eq!(end, StreamEnd::Graceful);
    }

    /// Arbitrary bytes in arbitrary chunks never panic.
    #[test]
    fn arbitrary_input_never_panics(wire in proptest::collection::vec(any::<u8>(), 0..200), step in 1usize..17) {
        let _ = receive(DRAFT_11, &wire, step);
    }
}
