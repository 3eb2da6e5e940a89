use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::capsule::{DEFAULT_MAX_CAPSULE_SIZE, encode, encode_header, grease_type};
use crate::datagram::MAX_UDP_PAYLOAD;
use crate::varint;

fn udp() -> TunnelCore {
    TunnelCore::new(DatagramRules::udp(), DEFAULT_MAX_CAPSULE_SIZE)
}

fn drain(core: &mut TunnelCore) -> Result<Vec<TunnelEvent>, TunnelCoreError> {
    let mut out = Vec::new();
    while let Some(e) = core.next_event()? {
        out.push(e);
    }
    Ok(out)
}

fn payload(p: &'static [u8]) -> DatagramEvent {
    DatagramEvent::Payload {
        context_id: 0,
        payload: Bytes::from_static(p),
    }
}

fn dropped(r: DropReason) -> DatagramEvent {
    DatagramEvent::Dropped(r)
}

/// `Context ID 0 | n bytes` as an HTTP Datagram Payload.
fn ctx0(n: usize) -> Bytes {
    let mut v = vec![0u8];
    v.resize(1 + n, 0xaa);
    Bytes::from(v)
}

/// R9298-39, R9298-38 (rfc9298 digest §12 vectors): Context ID 0 is delivered,
/// unknown Context ID 6 is dropped, never an error; same via a DATAGRAM capsule
/// (R9297-31).
#[test]
fn r9298_38_known_and_unknown_context() {
    let core = udp();
    assert_eq!(
        core.on_datagram(Bytes::from_static(b"\x00abc")),
        Ok(payload(b"abc"))
    );
    assert_eq!(
        core.on_datagram(Bytes::from_static(b"\x06abc")),
        Ok(dropped(DropReason::UnknownContext))
    );
    // A 2-byte non-minimal Context ID 0 is still context 0 (QV-03).
    assert_eq!(
        core.on_datagram(Bytes::from_static(b"\x40\x00x")),
        Ok(payload(b"x"))
    );
    let mut core = udp();
    core.push_body(Bytes::from_static(&[0x00, 0x04, 0x00, 0x61, 0x62, 0x63]));
    core.push_body(Bytes::from_static(&[0x00, 0x02, 0x06, 0x01]));
    assert_eq!(
        drain(&mut core),
        Ok(vec![
            TunnelEvent::Datagram(payload(b"abc")),
            TunnelEvent::Datagram(dropped(DropReason::UnknownContext)),
        ])
    );
    assert_eq!(core.on_fin(), Ok(()));
}

/// rfc9297 digest §6: an empty payload (`00 00` capsule, empty QUIC datagram) or a
/// truncated Context ID is dropped and counted (our choice), for both rule sets.
/// An empty UDP payload after Context ID 0 is a datagram (R9298-39).
#[test]
fn r9297_31_empty_datagram_dropped() {
    for rules in [DatagramRules::udp(), DatagramRules::ip()] {
        let mut core = TunnelCore::new(rules, DEFAULT_MAX_CAPSULE_SIZE);
        for p in [&[][..], &[0x40][..]] {
            assert_eq!(
                core.on_datagram(Bytes::copy_from_slice(p)),
                Ok(dropped(DropReason::NoContextId))
            );
        }
        assert_eq!(
            core.on_datagram(Bytes::from_static(&[0x00])),
            Ok(payload(b""))
        );
        core.push_body(Bytes::from_static(&[
            0x00, 0x00, 0x00, 0x01, 0x40, 0x00, 0x01, 0x00,
        ]));
        assert_eq!(
            drain(&mut core),
            Ok(vec![
                TunnelEvent::Datagram(dropped(DropReason::NoContextId)),
                TunnelEvent::Datagram(dropped(DropReason::NoContextId)),
                TunnelEvent::Datagram(payload(b"")),
            ])
        );
        assert_eq!(core.on_fin(), Ok(()));
    }
}

/// Spec README vector 20 (R9298-41): 65527 bytes is delivered, 65528 aborts the
/// stream, both as QUIC datagram and as DATAGRAM capsule (Length 65529).
/// connect-ip has no such bound (R9484-43).
#[test]
fn r9298_41_udp_payload_boundary() {
    let core = udp();
    let ok = core.on_datagram(ctx0(MAX_UDP_PAYLOAD)).unwrap();
    assert!(
        matches!(ok, DatagramEvent::Payload { context_id: 0, ref payload } if payload.len() == 65527)
    );
    assert_eq!(
        core.on_datagram(ctx0(MAX_UDP_PAYLOAD + 1)),
        Err(TunnelCoreError::PayloadTooLarge(65528))
    );
    // Unknown contexts are not bound by the UDP limit: dropped, not an error.
    let mut big = vec![0x06u8];
    big.resize(1 + 65528, 0);
    assert_eq!(
        core.on_datagram(Bytes::from(big)),
        Ok(dropped(DropReason::UnknownContext))
    );

    for (n, ok) in [(MAX_UDP_PAYLOAD, true), (MAX_UDP_PAYLOAD + 1, false)] {
        let mut wire = Vec::new();
        encode(capsule::DATAGRAM, &ctx0(n), &mut wire);
        let mut core = udp();
        core.push_body(Bytes::from(wire));
        let got = core.next_event();
        if ok {
            assert!(matches!(
                got,
                Ok(Some(TunnelEvent::Datagram(DatagramEvent::Payload { .. })))
            ));
            assert_eq!(core.on_fin(), Ok(()));
        } else {
            let e = TunnelCoreError::PayloadTooLarge(65528);
            assert_eq!(got, Err(e.clone()));
            // Sticky: the stream is aborted.
            assert_eq!(core.next_event(), Err(e.clone()));
            assert_eq!(core.on_datagram(ctx0(1)), Err(e.clone()));
            assert_eq!(core.on_fin(), Err(e));
        }
    }

    let ip = TunnelCore::new(DatagramRules::ip(), DEFAULT_MAX_CAPSULE_SIZE);
    let got = ip.on_datagram(ctx0(MAX_UDP_PAYLOAD + 1)).unwrap();
    assert!(matches!(got, DatagramEvent::Payload { ref payload, .. } if payload.len() == 65528));
}

/// Spec README vector 8 (R9297-17, R9297-38): GREASE capsules 0x17 and 0x40 and
/// other non-DATAGRAM types are handed up as capsules (the client skips them, the
/// protocol layer parses those it knows); framing continues after them.
#[test]
fn r9297_17_grease_and_other_capsules_handed_up() {
    let mut wire = vec![0x00, 0x04, 0x00, 0x01, 0x02, 0x03];
    wire.extend_from_slice(&[0x17, 0x02, 0xab, 0xcd]);
    wire.extend_from_slice(&[0x40, 0x40, 0x00]);
    wire.extend_from_slice(&[0x01, 0x01, 0x09]); // ADDRESS_ASSIGN, for connect-ip
    wire.extend_from_slice(&[0x00, 0x01, 0x00]);
    let mut core = udp();
    core.push_body(Bytes::from(wire));
    let cap = |ty, v: &'static [u8]| {
        TunnelEvent::Capsule(Capsule {
            ty,
            value: Bytes::from_static(v),
        })
    };
    assert_eq!(
        drain(&mut core),
        Ok(vec![
            TunnelEvent::Datagram(payload(&[1, 2, 3])),
            cap(0x17, &[0xab, 0xcd]),
            cap(0x40, &[]),
            cap(capsule::ADDRESS_ASSIGN, &[0x09]),
            TunnelEvent::Datagram(payload(b"")),
        ])
    );
    assert_eq!(core.on_fin(), Ok(()));
}

/// R9297-24 (spec README vector 7): `00 04 00 01` then FIN is malformed, also
/// with a partial header; the error sticks.
#[test]
fn r9297_24_fin_inside_capsule() {
    for partial in [&[0x00, 0x04, 0x00, 0x01][..], &[0x40][..], &[0x00][..]] {
        let mut core = udp();
        core.push_body(Bytes::copy_from_slice(partial));
        assert_eq!(core.next_event(), Ok(None));
        let e = TunnelCoreError::Malformed(CapsuleError::Truncated);
        assert_eq!(core.on_fin(), Err(e.clone()));
        assert_eq!(core.next_event(), Err(e.clone()));
        assert_eq!(core.on_fin(), Err(e));
    }
    // A stream without any capsule ends cleanly.
    assert_eq!(udp().on_fin(), Ok(()));
}

/// R9297-34, R9297-22: a DATAGRAM capsule of Context ID 0 whose Length exceeds
/// the bound is an error as soon as its Context ID arrives, before the rest of
/// its value; every later call fails.
#[test]
fn r9297_34_oversize_capsule() {
    let mut core = TunnelCore::new(DatagramRules::udp(), 8);
    core.push_body(Bytes::from_static(&[0x00, 0x09]));
    assert_eq!(core.next_event(), Ok(None));
    core.push_body(Bytes::from_static(&[0x00]));
    let e = TunnelCoreError::Malformed(CapsuleError::TooLarge {
        ty: capsule::DATAGRAM,
        len: 9,
        max: 8,
    });
    assert_eq!(core.next_event(), Err(e.clone()));
    core.push_body(Bytes::from_static(&[0x00, 0x01, 0x00]));
    assert_eq!(core.buffered_len(), 0);
    assert_eq!(core.next_event(), Err(e.clone()));
    assert_eq!(
        core.on_datagram(Bytes::from_static(b"\x00a")),
        Err(e.clone())
    );
    assert_eq!(core.on_fin(), Err(e));
    // connect-ip: Context ID 0 over the bound is malformed too.
    let mut core = TunnelCore::new(DatagramRules::ip(), 8);
    core.push_body(Bytes::from_static(&[0x00, 0x09, 0x00]));
    assert!(matches!(
        core.next_event(),
        Err(TunnelCoreError::Malformed(CapsuleError::TooLarge {
            len: 9,
            ..
        }))
    ));
    // Exactly at the bound is fine.
    let mut core = TunnelCore::new(DatagramRules::udp(), 8);
    core.push_body(Bytes::from_static(&[0x00, 0x08, 0, 1, 2, 3, 4, 5, 6, 7]));
    assert!(matches!(
        core.next_event(),
        Ok(Some(TunnelEvent::Datagram(_)))
    ));
}

/// R9297-17: a capsule of a type the tunnel does not use (GREASE 0x17, an
/// unassigned type, even a connect-ip type on connect-udp) over the bound is
/// skipped as it streams past, never buffered, never an error; framing resumes
/// after it. (It used to be a TooLarge reset.)
#[test]
fn r9297_17_oversize_unknown_type_skipped_unbuffered() {
    for ty in [0x17, 0x40, capsule::ADDRESS_ASSIGN, varint::MAX] {
        let mut core = TunnelCore::new(DatagramRules::udp(), 8);
        let mut wire = Vec::new();
        encode(ty, &[0x5a; 1000], &mut wire);
        encode(capsule::DATAGRAM, b"\x00ok", &mut wire);
        let mut got = Vec::new();
        for b in &wire {
            core.push_body(Bytes::copy_from_slice(&[*b]));
            got.extend(drain(&mut core).unwrap());
            // Never more than a header or a Context ID's worth is held.
            assert!(core.buffered_len() <= 16, "{}", core.buffered_len());
        }
        assert_eq!(got, vec![TunnelEvent::Datagram(payload(b"ok"))]);
        assert_eq!(core.skipped_capsules(), 1);
        assert_eq!(core.on_fin(), Ok(()));
    }
    // A Length of 2^62-1 is skipped too (nothing is allocated for it) ...
    let mut core = udp();
    let mut wire = Vec::new();
    varint::put(0x17, &mut wire);
    varint::put(varint::MAX, &mut wire);
    core.push_body(Bytes::from(wire));
    core.push_body(Bytes::from(vec![0; 200_000]));
    assert_eq!(drain(&mut core), Ok(vec![]));
    assert_eq!(core.buffered_len(), 0);
    // ... and a FIN inside the skipped value is still a truncated stream
    // (R9297-24).
    assert_eq!(
        core.on_fin(),
        Err(TunnelCoreError::Malformed(CapsuleError::Truncated))
    );
}

/// R9297-17 at the default bound: a 100 KiB GREASE capsule between two
/// DATAGRAM capsules, in 1000-byte chunks, is skipped and the datagrams around
/// it are delivered.
#[test]
fn r9297_17_grease_100k_skipped() {
    let mut wire = Vec::new();
    encode(capsule::DATAGRAM, b"\x00a", &mut wire);
    encode(grease_type(3).unwrap(), &vec![0xee; 100 * 1024], &mut wire);
    encode(capsule::DATAGRAM, b"\x00b", &mut wire);
    let mut core = udp();
    let mut got = Vec::new();
    for c in wire.chunks(1000) {
        core.push_body(Bytes::copy_from_slice(c));
        got.extend(drain(&mut core).unwrap());
        assert!(core.buffered_len() <= 16);
    }
    assert_eq!(
        got,
        vec![
            TunnelEvent::Datagram(payload(b"a")),
            TunnelEvent::Datagram(payload(b"b")),
        ]
    );
    assert_eq!(core.skipped_capsules(), 1);
    assert_eq!(core.on_fin(), Ok(()));
}

/// R9298-38: a DATAGRAM capsule over the bound whose Context ID is unknown is
/// dropped (counted as an unknown context), its value skipped unbuffered, not a
/// reset; a Context ID cut by the value's end is a context-less drop.
#[test]
fn r9298_38_oversize_unknown_context_dropped() {
    for rules in [DatagramRules::udp(), DatagramRules::ip()] {
        let mut core = TunnelCore::new(rules, 8);
        let mut wire = Vec::new();
        // Context ID 6 (1 byte) and Context ID 2^20 (4-byte varint), 500 bytes each.
        for ctx in [6u64, 1 << 20] {
            encode_header(capsule::DATAGRAM, varint::encoded_len(ctx) + 500, &mut wire);
            varint::put(ctx, &mut wire);
            wire.extend_from_slice(&[0x11; 500]);
        }
        encode(capsule::DATAGRAM, b"\x00z", &mut wire);
        let mut got = Vec::new();
        for b in &wire {
            core.push_body(Bytes::copy_from_slice(&[*b]));
            got.extend(drain(&mut core).unwrap());
            assert!(core.buffered_len() <= 16);
        }
        assert_eq!(
            got,
            vec![
                TunnelEvent::Datagram(dropped(DropReason::UnknownContext)),
                TunnelEvent::Datagram(dropped(DropReason::UnknownContext)),
                TunnelEvent::Datagram(payload(b"z")),
            ]
        );
        assert_eq!(core.skipped_capsules(), 0);
        assert_eq!(core.on_fin(), Ok(()));
    }
    // An 8-byte varint Context ID in a 2-byte-bounded tunnel, cut by the value's
    // end (Length 3): no Context ID, dropped.
    let mut core = TunnelCore::new(DatagramRules::udp(), 2);
    core.push_body(Bytes::from_static(&[
        0x00, 0x03, 0xc0, 0, 0, 0x00, 0x01, 0x00,
    ]));
    assert_eq!(
        drain(&mut core),
        Ok(vec![
            TunnelEvent::Datagram(dropped(DropReason::NoContextId)),
            TunnelEvent::Datagram(payload(b"")),
        ])
    );
    assert_eq!(core.on_fin(), Ok(()));
}

/// R9298-41 beyond the bound: a Context-ID-0 DATAGRAM capsule whose UDP payload
/// exceeds 65527 bytes aborts with PayloadTooLarge also when its Length is over
/// the capsule bound, as soon as its Context ID arrives; within 65527 but over a
/// smaller bound it is malformed (R9297-34).
#[test]
fn r9298_41_oversize_capsule_context_zero() {
    let mut core = udp();
    let mut wire = Vec::new();
    encode_header(capsule::DATAGRAM, 100_001, &mut wire);
    wire.push(0x00);
    core.push_body(Bytes::from(wire));
    assert_eq!(
        core.next_event(),
        Err(TunnelCoreError::PayloadTooLarge(100_000))
    );
    assert_eq!(
        core.on_fin(),
        Err(TunnelCoreError::PayloadTooLarge(100_000))
    );

    let mut core = TunnelCore::new(DatagramRules::udp(), 1000);
    let mut wire = Vec::new();
    encode(capsule::DATAGRAM, &ctx0(MAX_UDP_PAYLOAD + 1), &mut wire);
    core.push_body(Bytes::from(wire));
    assert_eq!(
        core.next_event(),
        Err(TunnelCoreError::PayloadTooLarge(MAX_UDP_PAYLOAD + 1))
    );

    let mut core = TunnelCore::new(DatagramRules::udp(), 1000);
    let mut wire = Vec::new();
    encode(capsule::DATAGRAM, &ctx0(MAX_UDP_PAYLOAD), &mut wire);
    core.push_body(Bytes::from(wire));
    assert_eq!(
        core.next_event(),
        Err(TunnelCoreError::Malformed(CapsuleError::TooLarge {
            ty: capsule::DATAGRAM,
            len: MAX_UDP_PAYLOAD as u64 + 1,
            max: 1000,
        }))
    );
}

/// R9297-17, R9298-38: a stream with oversize unknown-type and unknown-context
/// capsules, cut at every single boundary into two chunks, yields the same
/// events as the whole stream.
#[test]
fn r9297_17_oversize_split_at_every_boundary() {
    let mut wire = Vec::new();
    encode(capsule::DATAGRAM, b"\x00a", &mut wire);
    encode(0x17, &[1; 300], &mut wire);
    encode(capsule::DATAGRAM, b"\x00b", &mut wire);
    encode_header(capsule::DATAGRAM, 2 + 300, &mut wire);
    varint::put(0x3fff, &mut wire);
    wire.extend_from_slice(&[2; 300]);
    encode(0x2a, &[3; 17], &mut wire);
    encode(capsule::DATAGRAM, b"\x00c", &mut wire);
    let mk = || TunnelCore::new(DatagramRules::udp(), 16);
    let mut whole = mk();
    whole.push_body(Bytes::from(wire.clone()));
    let expected = drain(&mut whole).unwrap();
    assert_eq!(
        expected,
        vec![
            TunnelEvent::Datagram(payload(b"a")),
            TunnelEvent::Datagram(payload(b"b")),
            TunnelEvent::Datagram(dropped(DropReason::UnknownContext)),
            TunnelEvent::Datagram(payload(b"c")),
        ]
    );
    for cut in 0..=wire.len() {
        let mut core = mk();
        core.push_body(Bytes::copy_from_slice(&wire[..cut]));
        let mut got = drain(&mut core).unwrap();
        core.push_body(Bytes::copy_from_slice(&wire[cut..]));
        got.extend(drain(&mut core).unwrap());
        assert_eq!(got, expected, "cut at {cut}");
        assert_eq!(core.skipped_capsules(), 2);
        assert_eq!(core.on_fin(), Ok(()));
    }
}

/// R9297-31: a stream fed one byte at a time yields the same events, and a
/// capsule inside one chunk is delivered without copying.
#[test]
fn r9297_31_split_anywhere_and_zero_copy() {
    let wire: &[u8] = &[
        0x00, 0x04, 0x00, 0x61, 0x62, 0x63, 0x17, 0x02, 0xab, 0xcd, 0x00, 0x02, 0x06, 0x01,
    ];
    let mut core = udp();
    let mut got = Vec::new();
    for b in wire {
        core.push_body(Bytes::copy_from_slice(&[*b]));
        got.extend(drain(&mut core).unwrap());
    }
    let mut whole = udp();
    whole.push_body(Bytes::from_static(wire));
    assert_eq!(got, drain(&mut whole).unwrap());
    assert_eq!(got.len(), 3);
    assert_eq!(core.on_fin(), Ok(()));

    let chunk = Bytes::from_static(&[0x00, 0x04, 0x00, 0x61, 0x62, 0x63]);
    let mut core = udp();
    core.push_body(chunk.clone());
    match core.next_event() {
        Ok(Some(TunnelEvent::Datagram(DatagramEvent::Payload { payload, .. }))) => {
            assert_eq!(payload.as_ptr(), chunk[3..].as_ptr());
        }
        other => panic!("{other:?}"),
    }
}

/// R9297-22: every error aborts the stream with H3_MESSAGE_ERROR / PROTOCOL_ERROR.
#[test]
fn r9297_22_error_codes() {
    assert_eq!(TunnelCoreError::H3_CODE, 0x10e);
    assert_eq!(TunnelCoreError::H2_CODE, 0x1);
    assert_eq!(udp().rules(), DatagramRules::udp());
}

/// One capsule of a valid stream and the event it must produce.
#[derive(Debug, Clone)]
enum Item {
    Udp(Vec<u8>),
    UnknownContext(u64, Vec<u8>),
    NoContextId(bool),
    Grease(u64, Vec<u8>),
    Other(u64, Vec<u8>),
}

impl Item {
    fn encode(&self, wire: &mut Vec<u8>) {
        let datagram = |ctx: u64, p: &[u8], wire: &mut Vec<u8>| {
            encode_header(capsule::DATAGRAM, varint::encoded_len(ctx) + p.len(), wire);
            varint::put(ctx, wire);
            wire.extend_from_slice(p);
        };
        match self {
            Item::Udp(p) => datagram(0, p, wire),
            Item::UnknownContext(ctx, p) => datagram(*ctx, p, wire),
            Item::NoContextId(truncated) => {
                let v: &[u8] = if *truncated { &[0x40] } else { &[] };
                encode(capsule::DATAGRAM, v, wire);
            }
            Item::Grease(ty, v) | Item::Other(ty, v) => encode(*ty, v, wire),
        }
    }

    fn event(&self) -> TunnelEvent {
        match self {
            Item::Udp(p) => TunnelEvent::Datagram(DatagramEvent::Payload {
                context_id: 0,
                payload: Bytes::from(p.clone()),
            }),
            Item::UnknownContext(..) => TunnelEvent::Datagram(dropped(DropReason::UnknownContext)),
            Item::NoContextId(_) => TunnelEvent::Datagram(dropped(DropReason::NoContextId)),
            Item::Grease(ty, v) | Item::Other(ty, v) => TunnelEvent::Capsule(Capsule {
                ty: *ty,
                value: Bytes::from(v.clone()),
            }),
        }
    }
}

fn item() -> impl Strategy<Value = Item> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..80);
    prop_oneof![
        3 => bytes().prop_map(Item::Udp),
        1 => (1..=varint::MAX, bytes()).prop_map(|(c, p)| Item::UnknownContext(c, p)),
        1 => any::<bool>().prop_map(Item::NoContextId),
        1 => (0u64..(1 << 40), bytes())
            .prop_map(|(n, v)| Item::Grease(grease_type(n).unwrap_or(0x17), v)),
        1 => (1..=varint::MAX, bytes()).prop_map(|(t, v)| Item::Other(t, v)),
    ]
}

proptest! {
    /// R9297-31, R9297-17, R9298-38: any valid capsule sequence, encoded and cut
    /// into random chunks, yields exactly the events of the whole stream, which
    /// are the events the capsules mean; the FIN after it is clean (R9297-24).
    #[test]
    fn prop_split_chunks_same_events(
        items in proptest::collection::vec(item(), 0..10),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let mut wire = Vec::new();
        for it in &items {
            it.encode(&mut wire);
        }
        let model: Vec<TunnelEvent> = items.iter().map(Item::event).collect();

        let mut whole = udp();
        whole.push_body(Bytes::from(wire.clone()));
        let whole_events = drain(&mut whole).unwrap();
        prop_assert_eq!(&whole_events, &model);
        prop_assert_eq!(whole.on_fin(), Ok(()));

        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.sort_unstable();
        let mut core = udp();
        let mut got = Vec::new();
        let mut prev = 0;
        for p in points.into_iter().chain([wire.len()]) {
            core.push_body(Bytes::copy_from_slice(&wire[prev..p]));
            got.extend(drain(&mut core).unwrap());
            prev = p;
        }
        prop_assert_eq!(got, model);
        prop_assert_eq!(core.on_fin(), Ok(()));
    }

    /// Arbitrary bytes in arbitrary chunks never panic; they yield events or an
    /// error, and once an error is returned every later call returns it
    /// (R9297-22: the stream is dead).
    #[test]
    fn prop_arbitrary_bytes_errors_stick(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
        datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..4),
        max in prop_oneof![0usize..64, Just(DEFAULT_MAX_CAPSULE_SIZE)],
        ip in any::<bool>(),
    ) {
        let rules = if ip { DatagramRules::ip() } else { DatagramRules::udp() };
        let mut core = TunnelCore::new(rules, max);
        let mut failed: Option<TunnelCoreError> = None;
        let check = |r: Result<(), TunnelCoreError>, failed: &mut Option<TunnelCoreError>| {
            match (r, failed.clone()) {
                (Err(e), None) => *failed = Some(e),
                (Err(e), Some(f)) => prop_assert_eq!(e, f),
                (Ok(()), Some(f)) => prop_assert!(false, "Ok after error {:?}", f),
                (Ok(()), None) => {}
            }
            Ok(())
        };
        for (i, c) in chunks.iter().enumerate() {
            core.push_body(Bytes::copy_from_slice(c));
            loop {
                match core.next_event() {
                    Ok(Some(TunnelEvent::Capsule(cap))) => {
                        prop_assert!(cap.ty != capsule::DATAGRAM);
                        prop_assert!(cap.value.len() <= max);
                    }
                    Ok(Some(TunnelEvent::Datagram(_))) => {}
                    Ok(None) => break,
                    Err(e) => {
                        check(Err(e), &mut failed)?;
                        break;
                    }
                }
            }
            if let Some(d) = datagrams.get(i) {
                let r = core.on_datagram(Bytes::copy_from_slice(d)).map(|_| ());
                // A short datagram can never be too large: only a stream error fails it.
                check(r, &mut failed)?;
            }
        }
        check(core.on_fin(), &mut failed)?;
        if failed.is_some() {
            check(core.next_event().map(|_| ()), &mut failed)?;
            check(core.on_fin(), &mut failed)?;
            check(core.on_datagram(Bytes::from_static(b"\x00")).map(|_| ()), &mut failed)?;
        }
    }

    /// R9297-17, R9298-38 with a small bound: valid streams mixing capsules
    /// within the bound and oversize ones of unused types (skipped) and of unknown
    /// Context IDs (dropped), cut into random chunks, yield the model's events and
    /// never hold more than the bound plus a header.
    #[test]
    fn prop_oversize_skipped_same_events(
        items in proptest::collection::vec(small_or_large_item(), 0..10),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let mut wire = Vec::new();
        for it in &items {
            it.encode(&mut wire);
        }
        let len = |it: &Item| {
            let mut w = Vec::new();
            it.encode(&mut w);
            let (_, a) = varint::decode(&w).unwrap();
            let (l, _) = varint::decode(&w[a..]).unwrap();
            l as usize
        };
        let model: Vec<TunnelEvent> = items
            .iter()
            .filter(|it| !matches!(it, Item::Grease(..) | Item::Other(..)) || len(it) <= SMALL_MAX)
            .map(Item::event)
            .collect();
        let skipped = items.len() - items.iter().filter(|it| {
            !matches!(it, Item::Grease(..) | Item::Other(..)) || len(it) <= SMALL_MAX
        }).count();

        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.sort_unstable();
        let mut core = TunnelCore::new(DatagramRules::udp(), SMALL_MAX);
        let mut got = Vec::new();
        let mut prev = 0;
        for p in points.into_iter().chain([wire.len()]) {
            core.push_body(Bytes::copy_from_slice(&wire[prev..p]));
            got.extend(drain(&mut core).unwrap());
            prop_assert!(core.buffered_len() <= SMALL_MAX + 16);
            prev = p;
        }
        prop_assert_eq!(got, model);
        prop_assert_eq!(core.skipped_capsules(), skipped as u64);
        prop_assert_eq!(core.on_fin(), Ok(()));
    }
}

const SMALL_MAX: usize = 24;

/// Items for a tunnel bounded at [`SMALL_MAX`]: UDP payloads that fit (an
/// oversize one is malformed), anything else of any size up to 2000 bytes.
fn small_or_large_item() -> impl Strategy<Value = Item> {
    let fits = || proptest::collection::vec(any::<u8>(), 0..SMALL_MAX);
    let any_len = || {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..2000),
        ]
    };
    prop_oneof![
        3 => fits().prop_map(Item::Udp),
        2 => (1..=varint::MAX, any_len()).prop_map(|(c, p)| Item::UnknownContext(c, p)),
        1 => any::<bool>().prop_map(Item::NoContextId),
        2 => (0u64..(1 << 40), any_len())
            .prop_map(|(n, v)| Item::Grease(grease_type(n).unwrap_or(0x17), v)),
        2 => (1..=varint::MAX, any_len()).prop_map(|(t, v)| Item::Other(t, v)),
    ]
}
