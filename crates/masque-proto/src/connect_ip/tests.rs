//! Tests for CONNECT-IP capsule values: spec README vectors 9–13 and every rejection rule.

use super::*;
use crate::reader::Reader;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// Splits a hand-framed capsule (Type, Length, Value) as the vectors are written.
fn unframe(bytes: &[u8]) -> (u64, &[u8]) {
    let mut r = Reader::new(bytes);
    let ty = r.varint().unwrap();
    let len = r.varint().unwrap() as usize;
    let value = r.bytes(len).unwrap();
    assert!(r.is_empty());
    (ty, value)
}

/// Frames a value by hand with its type and length.
fn frame(c: &ConnectIpCapsule) -> Vec<u8> {
    let mut out = Vec::new();
    crate::varint::put(c.capsule_type(), &mut out);
    crate::varint::put(c.value_len() as u64, &mut out);
    c.encode(&mut out).unwrap();
    out
}

fn decode_framed(bytes: &[u8]) -> Result<Option<ConnectIpCapsule>, ConnectIpError> {
    let (ty, value) = unframe(bytes);
    ConnectIpCapsule::decode(ty, value)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn assigned(request_id: u64, a: &str, prefix_len: u8) -> AssignedAddress {
    AssignedAddress {
        request_id,
        ip: ip(a),
        prefix_len,
    }
}

fn requested(request_id: u64, a: &str, prefix_len: u8) -> RequestedAddress {
    RequestedAddress {
        request_id,
        ip: ip(a),
        prefix_len,
    }
}

fn range(start: &str, end: &str, ipproto: u8) -> IpAddressRange {
    IpAddressRange {
        start: ip(start),
        end: ip(end),
        ipproto,
    }
}

/// Vector 9 (R9484-23/24/25): ADDRESS_ASSIGN 192.0.2.1/32, Request ID 0.
#[test]
fn vector09_address_assign_ipv4() {
    let bytes = hex("01 07 00 04 c0 00 02 01 20");
    let c = ConnectIpCapsule::AddressAssign(vec![assigned(0, "192.0.2.1", 32)]);
    assert_eq!(decode_framed(&bytes), Ok(Some(c.clone())));
    assert_eq!(frame(&c), bytes);
}

/// Vector 10 (R9484-24/25): ADDRESS_ASSIGN 2001:db8::1/128, Request ID 0.
#[test]
fn vector10_address_assign_ipv6() {
    let bytes = hex("01 13 00 06 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01 80");
    let c = ConnectIpCapsule::AddressAssign(vec![assigned(0, "2001:db8::1", 128)]);
    assert_eq!(decode_framed(&bytes), Ok(Some(c.clone())));
    assert_eq!(frame(&c), bytes);
}

/// Vector 11 (R9484-31/33): request for any IPv4 /32 and its refusal answer.
#[test]
fn vector11_address_request_and_refusal() {
    let bytes = hex("02 07 01 04 00 00 00 00 20");
    let req = requested(1, "0.0.0.0", 32);
    assert!(req.is_any());
    let c = ConnectIpCapsule::AddressRequest(vec![req]);
    assert_eq!(decode_framed(&bytes), Ok(Some(c.clone())));
    assert_eq!(frame(&c), bytes);

    let refusal = AssignedAddress::refusal(&req);
    assert!(refusal.is_refusal());
    assert!(!refusal.contains(ip("0.0.0.0")));
    assert_eq!(
        frame(&ConnectIpCapsule::AddressAssign(vec![refusal])),
        hex("01 07 01 04 00 00 00 00 20")
    );
    let v6 = AssignedAddress::refusal(&requested(9, "::", 64));
    assert_eq!(v6, assigned(9, "::", 128));
}

/// Vector 11 / R9484-26: an empty ADDRESS_ASSIGN is valid and withdraws everything.
#[test]
fn r9484_26_empty_assign_withdraws_all() {
    assert_eq!(
        decode_framed(&hex("01 00")),
        Ok(Some(ConnectIpCapsule::AddressAssign(vec![])))
    );
    assert_eq!(
        frame(&ConnectIpCapsule::AddressAssign(vec![])),
        hex("01 00")
    );
}

/// Vector 11 / R9484-32: an empty ADDRESS_REQUEST aborts the stream; never sent either.
#[test]
fn r9484_32_empty_address_request_rejected() {
    assert_eq!(
        decode_framed(&hex("02 00")),
        Err(ConnectIpError::EmptyAddressRequest)
    );
    let mut out = Vec::new();
    assert_eq!(
        encode_address_request(&[], &mut out),
        Err(ConnectIpError::EmptyAddressRequest)
    );
    assert!(out.is_empty());
}

/// Vector 12 (R9484-35): the whole IPv4 space, any protocol.
#[test]
fn vector12_route_advertisement_full_ipv4() {
    let bytes = hex("03 0a 04 00 00 00 00 ff ff ff ff 00");
    let c = ConnectIpCapsule::RouteAdvertisement(vec![range("0.0.0.0", "255.255.255.255", 0)]);
    assert_eq!(decode_framed(&bytes), Ok(Some(c.clone())));
    assert_eq!(frame(&c), bytes);
}

/// Vector 13 (R9484-37): End A = Start B is an order violation → abort.
#[test]
fn vector13_route_order_violation_rejected() {
    let bytes = hex("03 14 04 0a 00 00 00 0a 00 00 ff 00 04 0a 00 00 ff 0a 00 01 00 00");
    assert_eq!(
        decode_framed(&bytes),
        Err(ConnectIpError::RouteOrder {
            index: 1,
            rule: RouteOrder::Overlap
        })
    );
}

/// Vector 13 (R9484-37): the valid split-tunnel form is accepted and re-encodes.
#[test]
fn vector13_split_tunnel_accepted() {
    let bytes = hex("03 14 04 c0 00 02 00 c0 00 02 29 00 04 c0 00 02 2b c0 00 02 ff 00");
    let c = ConnectIpCapsule::RouteAdvertisement(vec![
        range("192.0.2.0", "192.0.2.41", 0),
        range("192.0.2.43", "192.0.2.255", 0),
    ]);
    assert_eq!(decode_framed(&bytes), Ok(Some(c.clone())));
    assert_eq!(frame(&c), bytes);
}

/// R9297-23: a trailing byte after the last entry is malformed (digest §10 vector).
#[test]
fn r9297_23_trailing_bytes_rejected() {
    assert_eq!(
        decode_framed(&hex("01 08 00 04 c0 00 02 01 20 00")),
        Err(ConnectIpError::TrailingBytes { len: 1 })
    );
    // A partial entry (IPv6 address cut short) in each capsule type.
    assert_eq!(
        decode_address_assign(&hex("00 06 20 01")),
        Err(ConnectIpError::TrailingBytes { len: 4 })
    );
    assert_eq!(
        decode_address_request(&hex("01 04 c0 00 02")),
        Err(ConnectIpError::TrailingBytes { len: 5 })
    );
    assert_eq!(
        decode_route_advertisement(&hex("04 00 00 00 00 ff ff ff ff")),
        Err(ConnectIpError::TrailingBytes { len: 9 })
    );
    // A request id varint running off the end.
    assert_eq!(
        decode_address_assign(&hex("40")),
        Err(ConnectIpError::TrailingBytes { len: 1 })
    );
}

/// R9484-24 / R9484-30 / R9484-35: IP Version must be 4 or 6 (digest vector version 5).
#[test]
fn r9484_24_bad_ip_version_rejected() {
    assert_eq!(
        decode_framed(&hex("01 07 00 05 c0 00 02 01 20")),
        Err(ConnectIpError::UnsupportedIpVersion(5))
    );
    assert_eq!(
        decode_address_request(&hex("01 00 00 00 00 00 20")),
        Err(ConnectIpError::UnsupportedIpVersion(0))
    );
    assert_eq!(
        decode_route_advertisement(&hex("05 00 00 00 00 ff ff ff ff 00")),
        Err(ConnectIpError::UnsupportedIpVersion(5))
    );
}

/// R9484-25 / R9484-30: prefix length ≤ 32 / 128 (digest vector prefix 33).
#[test]
fn r9484_25_prefix_too_long_rejected() {
    assert_eq!(
        decode_framed(&hex("01 07 00 04 c0 00 02 01 21")),
        Err(ConnectIpError::PrefixTooLong {
            prefix_len: 33,
            max: 32
        })
    );
    let mut v6 = hex("00 06 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01 81");
    assert_eq!(
        decode_address_assign(&v6),
        Err(ConnectIpError::PrefixTooLong {
            prefix_len: 129,
            max: 128
        })
    );
    v6[0] = 1;
    assert_eq!(
        decode_address_request(&v6),
        Err(ConnectIpError::PrefixTooLong {
            prefix_len: 129,
            max: 128
        })
    );
}

/// R9484-25 / R9484-30: host bits beyond the prefix must be zero (digest vector /24).
#[test]
fn r9484_25_host_bits_rejected() {
    assert_eq!(
        decode_framed(&hex("01 07 00 04 c0 00 02 01 18")),
        Err(ConnectIpError::HostBitsSet {
            ip: ip("192.0.2.1"),
            prefix_len: 24
        })
    );
    assert_eq!(
        decode_address_request(&hex(
            "01 06 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01 40"
        )),
        Err(ConnectIpError::HostBitsSet {
            ip: ip("2001:db8::1"),
            prefix_len: 64
        })
    );
    // Zero host bits under a shorter prefix are fine.
    assert_eq!(
        decode_address_assign(&hex("00 04 c0 00 02 00 18")),
        Ok(vec![assigned(0, "192.0.2.0", 24)])
    );
}

/// R9484-29: Request ID 0 is not allowed in ADDRESS_REQUEST (but is in ASSIGN, R9484-23).
#[test]
fn r9484_29_zero_request_id_rejected() {
    assert_eq!(
        decode_address_request(&hex("00 04 00 00 00 00 20")),
        Err(ConnectIpError::ZeroRequestId)
    );
    let mut out = Vec::new();
    assert_eq!(
        encode_address_request(&[requested(0, "0.0.0.0", 32)], &mut out),
        Err(ConnectIpError::ZeroRequestId)
    );
    assert!(out.is_empty());
}

/// R9484-29: each Requested Address has its own ID.
#[test]
fn r9484_29_duplicate_request_id_rejected() {
    assert_eq!(
        decode_address_request(&hex(
            "05 04 00 00 00 00 20 05 06 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 80"
        )),
        Err(ConnectIpError::DuplicateRequestId(5))
    );
    let mut out = Vec::new();
    assert_eq!(
        encode_address_request(
            &[requested(7, "0.0.0.0", 32), requested(7, "::", 128)],
            &mut out
        ),
        Err(ConnectIpError::DuplicateRequestId(7))
    );
    assert!(out.is_empty());
}

/// R9484-35: Start ≤ End; both of one family (encode side).
#[test]
fn r9484_35_start_after_end_rejected() {
    assert_eq!(
        decode_route_advertisement(&hex("04 c0 00 02 02 c0 00 02 01 00")),
        Err(ConnectIpError::RangeStartAfterEnd {
            start: ip("192.0.2.2"),
            end: ip("192.0.2.1")
        })
    );
    let mut out = Vec::new();
    assert_eq!(
        encode_route_advertisement(&[range("192.0.2.0", "2001:db8::", 0)], &mut out),
        Err(ConnectIpError::MixedFamilyRange)
    );
    assert!(out.is_empty());
    // Start = End (a single address) is valid.
    assert!(decode_route_advertisement(&hex("04 c0 00 02 01 c0 00 02 01 06")).is_ok());
}

/// R9484-37 rule (1): IPv6 ranges may not precede IPv4 ranges.
#[test]
fn r9484_37_version_order_rejected() {
    let list = [range("::", "::ffff", 0), range("10.0.0.0", "10.0.0.255", 0)];
    assert_eq!(
        validate_route_advertisement(&list),
        Err(ConnectIpError::RouteOrder {
            index: 1,
            rule: RouteOrder::Version
        })
    );
    let mut out = Vec::new();
    encode_route_advertisement(&[list[1], list[0]], &mut out).unwrap();
    assert!(decode_route_advertisement(&out).is_ok());
}

/// R9484-37 rule (2): same version, protocols ascending.
#[test]
fn r9484_37_protocol_order_rejected() {
    let list = [
        range("10.0.0.0", "10.0.0.255", 17),
        range("10.0.1.0", "10.0.1.255", 6),
    ];
    let mut out = Vec::new();
    assert_eq!(
        encode_route_advertisement(&list, &mut out),
        Err(ConnectIpError::RouteOrder {
            index: 1,
            rule: RouteOrder::Protocol
        })
    );
    assert!(out.is_empty());
    // Same addresses, different protocols, ascending: valid (no rule-3 check across protocols).
    assert!(
        validate_route_advertisement(&[
            range("10.0.0.0", "10.0.0.255", 6),
            range("10.0.0.0", "10.0.0.255", 17)
        ])
        .is_ok()
    );
}

/// R9484-37 rule (3): same version and protocol must be strictly ascending, disjoint.
#[test]
fn r9484_37_overlap_and_unsorted_rejected() {
    let overlap = [
        range("10.0.0.0", "10.0.0.255", 6),
        range("10.0.0.128", "10.0.1.0", 6),
    ];
    let unsorted = [
        range("10.0.1.0", "10.0.1.255", 6),
        range("10.0.0.0", "10.0.0.255", 6),
    ];
    for list in [overlap, unsorted] {
        assert_eq!(
            validate_route_advertisement(&list),
            Err(ConnectIpError::RouteOrder {
                index: 1,
                rule: RouteOrder::Overlap
            })
        );
    }
    let mut unsorted = unsorted;
    sort_routes(&mut unsorted);
    assert!(validate_route_advertisement(&unsorted).is_ok());
}

/// R9484-38: a non-zero protocol range may not overlap a protocol-0 range of its version.
#[test]
fn r9484_38_protocol_zero_overlap_rejected() {
    let list = [
        range("10.0.0.0", "10.0.0.255", 0),
        range("10.0.2.0", "10.0.2.255", 0),
        range("10.0.1.0", "10.0.1.255", 6),  // in the gap: fine
        range("10.0.2.128", "10.0.3.0", 17), // overlaps the second proto-0 range
    ];
    assert_eq!(
        validate_route_advertisement(&list),
        Err(ConnectIpError::ProtocolZeroOverlap { index: 3 })
    );
    assert!(validate_route_advertisement(&list[..3]).is_ok());
    // Other version: no conflict.
    assert!(
        validate_route_advertisement(&[
            range("10.0.0.0", "10.0.0.255", 0),
            range("::", "::ffff", 6)
        ])
        .is_ok()
    );
}

/// R9484-39 (MAY, opt-in): IPv6 ranges naming a walked extension header are refused.
#[test]
fn r9484_39_extension_header_protocols() {
    for p in [43u8, 44, 51, 60, 135, 139, 140, 253, 254] {
        assert_eq!(
            check_route_protocols(&[range("2001:db8::", "2001:db8::ff", p)]),
            Err(ConnectIpError::ExtensionHeaderProtocol(p))
        );
    }
    assert!(check_route_protocols(&[range("2001:db8::", "2001:db8::ff", 0)]).is_ok());
    assert!(check_route_protocols(&[range("2001:db8::", "2001:db8::ff", 50)]).is_ok());
    assert!(check_route_protocols(&[range("192.0.2.0", "192.0.2.255", 51)]).is_ok());
}

/// R9484-10 / R9484-40: protocol 0 matches everything; ICMP always passes.
#[test]
fn r9484_10_route_matching() {
    let r = range("192.0.2.0", "192.0.2.255", 6);
    assert!(r.matches(ip("192.0.2.9"), 6));
    assert!(!r.matches(ip("192.0.2.9"), 17));
    assert!(r.matches(ip("192.0.2.9"), 1));
    assert!(!r.matches(ip("192.0.3.9"), 6));
    assert!(!r.matches(ip("::1"), 6));
    let r6 = range("2001:db8::", "2001:db8::ffff", 0);
    assert!(r6.matches(ip("2001:db8::1"), 17));
    assert!(range("2001:db8::", "2001:db8::ffff", 17).matches(ip("2001:db8::1"), 58));
}

/// R9484-60 helper: assigned prefixes bound the allowed sources.
#[test]
fn r9484_60_assigned_contains() {
    let a = assigned(0, "192.0.2.0", 24);
    assert!(a.contains(ip("192.0.2.200")));
    assert!(!a.contains(ip("192.0.3.1")));
    assert!(!a.is_refusal());
    assert!(
        !assigned(0, "0.0.0.0", 32).is_refusal(),
        "request id 0 is never a refusal"
    );
}

#[test]
fn encode_rejects_request_id_too_large() {
    let mut out = Vec::new();
    let big = crate::varint::MAX + 1;
    assert_eq!(
        encode_address_assign(&[assigned(big, "192.0.2.1", 32)], &mut out),
        Err(ConnectIpError::RequestIdTooLarge(big))
    );
    assert_eq!(
        encode_address_assign(&[assigned(0, "192.0.2.1", 24)], &mut out),
        Err(ConnectIpError::HostBitsSet {
            ip: ip("192.0.2.1"),
            prefix_len: 24
        })
    );
    assert!(out.is_empty());
}

#[test]
fn unknown_capsule_type_is_not_ours() {
    assert_eq!(ConnectIpCapsule::decode(0x00, &[1, 2, 3]), Ok(None));
    assert_eq!(ConnectIpCapsule::decode(0x17, &[]), Ok(None));
}

/// Non-minimal request id varints are accepted (QV-03).
#[test]
fn non_minimal_request_id_accepted() {
    assert_eq!(
        decode_address_request(&hex("40 01 04 00 00 00 00 20")),
        Ok(vec![requested(1, "0.0.0.0", 32)])
    );
}

// ---- bookkeeping (R9484-29, R9484-33) ----

/// R9484-29: our own Request IDs are non-zero, fresh and bounded in number.
#[test]
fn r9484_29_outgoing_ids_fresh_and_bounded() {
    let mut out = OutgoingRequests::new(2);
    let a = out.request(ip("0.0.0.0"), 32).unwrap();
    let b = out.request(ip("::"), 64).unwrap();
    assert_eq!((a.request_id, b.request_id), (1, 2));
    assert_eq!(
        out.request(ip("0.0.0.0"), 32),
        Err(ConnectIpError::TooManyPendingRequests { limit: 2 })
    );
    assert_eq!(
        out.request(ip("192.0.2.1"), 24),
        Err(ConnectIpError::HostBitsSet {
            ip: ip("192.0.2.1"),
            prefix_len: 24
        })
    );
    // R9484-33: answers resolve pending requests once; unsolicited entries are ignored.
    let answers = out.on_address_assign(&[
        assigned(0, "198.51.100.0", 24),
        assigned(1, "192.0.2.7", 32),
        AssignedAddress::refusal(&b),
    ]);
    assert_eq!(
        answers,
        vec![
            Answer::Granted {
                request: a,
                assigned: assigned(1, "192.0.2.7", 32)
            },
            Answer::Refused { request: b },
        ]
    );
    assert!(out.is_empty());
    // The full set is repeated later (R9484-26): nothing new to report.
    assert!(
        out.on_address_assign(&[assigned(1, "192.0.2.7", 32)])
            .is_empty()
    );
    // IDs are never reused after being answered.
    assert_eq!(out.request(ip("0.0.0.0"), 32).unwrap().request_id, 3);
}

/// R9484-29: peer reuse of a pending or answered ID, zero and in-capsule duplicates.
#[test]
fn r9484_29_incoming_duplicates_rejected() {
    let mut p = PendingRequests::new(4, 8);
    let r1 = requested(1, "0.0.0.0", 32);
    let r2 = requested(2, "::", 128);
    assert_eq!(p.on_address_request(&[r1]).unwrap().accepted, vec![r1]);
    assert_eq!(
        p.on_address_request(&[r2, r1]),
        Err(ConnectIpError::DuplicateRequestId(1))
    );
    assert_eq!(p.len(), 1, "state unchanged on error");
    assert_eq!(
        p.on_address_request(&[r2, r2]),
        Err(ConnectIpError::DuplicateRequestId(2))
    );
    assert_eq!(
        p.on_address_request(&[requested(0, "::", 128)]),
        Err(ConnectIpError::ZeroRequestId)
    );
    assert_eq!(p.answer(1), Some(r1));
    assert_eq!(p.answer(1), None);
    assert_eq!(
        p.on_address_request(&[r1]),
        Err(ConnectIpError::DuplicateRequestId(1))
    );
}

/// Pending limit: requests beyond it are handed back for immediate refusal (R9484-33).
#[test]
fn r9484_33_incoming_over_limit_refused() {
    let mut p = PendingRequests::new(1, 2);
    let reqs = [
        requested(1, "0.0.0.0", 32),
        requested(2, "0.0.0.0", 32),
        requested(3, "::", 128),
    ];
    let adm = p.on_address_request(&reqs).unwrap();
    assert_eq!(adm.accepted, vec![reqs[0]]);
    assert_eq!(adm.over_limit, vec![reqs[1], reqs[2]]);
    assert_eq!(
        p.on_address_request(&[reqs[2]]),
        Err(ConnectIpError::DuplicateRequestId(3))
    );
    // The remembered window is bounded: answering 1 evicts 2.
    assert!(p.answer(1).is_some());
    assert!(p.on_address_request(&[reqs[1]]).is_ok());
    assert_eq!(PendingRequests::default().len(), 0);
}

// ---- property tests ----

fn arb_prefix() -> impl Strategy<Value = (IpAddr, u8)> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, l)| (
            crate::packet::mask_to_prefix(IpAddr::V4(a.into()), l).unwrap(),
            l
        )),
        (any::<u128>(), 0u8..=128).prop_map(|(a, l)| (
            crate::packet::mask_to_prefix(IpAddr::V6(a.into()), l).unwrap(),
            l
        )),
    ]
}

fn arb_request_id() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..70, 0..=crate::varint::MAX]
}

/// Disjoint sorted ranges from sorted distinct points (pairs; a lone last point is a
/// single-address range).
fn ranges_from_points(points: Vec<u128>, proto: u8, v4: bool) -> Vec<IpAddressRange> {
    let to_ip = |x: u128| {
        if v4 {
            IpAddr::V4((x as u32).into())
        } else {
            IpAddr::V6(x.into())
        }
    };
    points
        .chunks(2)
        .map(|c| IpAddressRange {
            start: to_ip(c[0]),
            end: to_ip(*c.last().unwrap()),
            ipproto: proto,
        })
        .collect()
}

fn arb_family_routes(v4: bool) -> impl Strategy<Value = Vec<IpAddressRange>> {
    let point = move || {
        if v4 {
            (0u128..=u128::from(u32::MAX)).boxed()
        } else {
            any::<u128>().boxed()
        }
    };
    (
        any::<bool>(),
        proptest::collection::btree_set(point(), 0..6),
        proptest::collection::btree_map(
            1u8..=255,
            proptest::collection::btree_set(point(), 0..6),
            0..4,
        ),
    )
        .prop_map(move |(use_any, any_points, by_proto)| {
            if use_any {
                ranges_from_points(any_points.into_iter().collect(), 0, v4)
            } else {
                by_proto
                    .into_iter()
                    .flat_map(|(p, pts)| ranges_from_points(pts.into_iter().collect(), p, v4))
                    .collect()
            }
        })
}

fn arb_routes() -> impl Strategy<Value = Vec<IpAddressRange>> {
    (arb_family_routes(true), arb_family_routes(false)).prop_map(|(mut a, b)| {
        a.extend(b);
        a
    })
}

proptest! {
    /// R9484-23..26 round trip.
    #[test]
    fn address_assign_roundtrip(entries in proptest::collection::vec((arb_request_id(), arb_prefix()), 0..8)) {
        let entries: Vec<_> = entries.into_iter().map(|(request_id, (ip, prefix_len))| AssignedAddress { request_id, ip, prefix_len }).collect();
        let mut buf = Vec::new();
        encode_address_assign(&entries, &mut buf).unwrap();
        prop_assert_eq!(buf.len(), address_assign_len(&entries));
        prop_assert_eq!(decode_address_assign(&buf).unwrap(), entries);
    }

    /// R9484-29..32 round trip (distinct non-zero ids).
    #[test]
    fn address_request_roundtrip(entries in proptest::collection::btree_map(1..=crate::varint::MAX, arb_prefix(), 1..8)) {
        let entries: Vec<_> = entries.into_iter().map(|(request_id, (ip, prefix_len))| RequestedAddress { request_id, ip, prefix_len }).collect();
        let mut buf = Vec::new();
        encode_address_request(&entries, &mut buf).unwrap();
        prop_assert_eq!(buf.len(), address_request_len(&entries));
        prop_assert_eq!(decode_address_request(&buf).unwrap(), entries);
    }

    /// R9484-35..38 round trip for valid (sorted, disjoint) lists.
    #[test]
    fn route_advertisement_roundtrip(ranges in arb_routes()) {
        let mut buf = Vec::new();
        encode_route_advertisement(&ranges, &mut buf).unwrap();
        prop_assert_eq!(buf.len(), route_advertisement_len(&ranges));
        prop_assert_eq!(decode_route_advertisement(&buf).unwrap(), ranges);
    }

    /// sort_routes puts any valid list, shuffled, back into an accepted order.
    #[test]
    fn sort_routes_restores_order(ranges in arb_routes(), seed in any::<u64>()) {
        let mut shuffled = ranges.clone();
        let n = shuffled.len();
        for i in 0..n { shuffled.swap(i, (seed as usize).wrapping_mul(i + 7) % n); }
        sort_routes(&mut shuffled);
        prop_assert_eq!(shuffled, ranges);
    }

    /// Decoding arbitrary values never panics; anything accepted re-encodes to a value
    /// that decodes to the same capsule.
    #[test]
    fn decode_never_panics(ty in 0u64..5, value in proptest::collection::vec(prop_oneof![Just(4u8), Just(6u8), any::<u8>()], 0..80)) {
        if let Ok(Some(c)) = ConnectIpCapsule::decode(ty, &value) {
            let mut buf = Vec::new();
            c.encode(&mut buf).unwrap();
            prop_assert_eq!(buf.len(), c.value_len());
            prop_assert_eq!(ConnectIpCapsule::decode(ty, &buf), Ok(Some(c)));
        }
    }

    /// Bookkeeping never accepts the same peer ID twice while remembered (R9484-29).
    #[test]
    fn pending_never_accepts_twice(ids in proptest::collection::vec(1u64..20, 1..40)) {
        let mut p = PendingRequests::new(8, 64);
        let mut seen = BTreeSet::new();
        for id in ids {
            let r = RequestedAddress { request_id: id, ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED), prefix_len: 32 };
            match p.on_address_request(&[r]) {
                Ok(_) => { prop_assert!(seen.insert(id)); p.answer(id); }
                Err(e) => { prop_assert_eq!(e, ConnectIpError::DuplicateRequestId(id)); prop_assert!(seen.contains(&id)); }
            }
        }
    }
}
