//! Sans-IO tests of the connect-ip state: the assign-id rule, answers and
//! refusals, malformed capsules, route validation, and a property test of
//! request ids.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use masque_proto::{
    capsule::{self, CapsuleDecoder},
    connect_ip::{
        ADDRESS_ASSIGN, ADDRESS_REQUEST, Answer, AssignedAddress, ConnectIpError, IpAddressRange,
        ROUTE_ADVERTISEMENT, RequestedAddress,
    },
    template::IpPrefix,
};
use proptest::prelude::*;

use super::state::{IpState, Received};
use crate::ClientError;

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn any_v4() -> IpPrefix {
    IpPrefix::new(Ipv4Addr::UNSPECIFIED.into(), 32).unwrap()
}

fn any_v6() -> IpPrefix {
    IpPrefix::new(Ipv6Addr::UNSPECIFIED.into(), 128).unwrap()
}

/// Splits an encoded capsule into (type, value).
fn split(bytes: &[u8]) -> (u64, Vec<u8>) {
    let mut d = CapsuleDecoder::new();
    d.push_slice(bytes);
    let c = d.next_capsule().unwrap().expect("one whole capsule");
    assert_eq!(d.next_capsule().unwrap(), None, "nothing after it");
    (c.ty, c.value.to_vec())
}

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// R9484-29/31: ids start at 1, never repeat; the capsule is the spec's
/// vector for one IPv4-any request.
#[test]
fn r9484_29_request_ids_are_fresh_and_nonzero() {
    let mut s = IpState::default();
    let (ids, capsule) = s.request(&[any_v4()]).unwrap();
    assert_eq!(ids, [1]);
    assert_eq!(&capsule[..], &hex("02 07 01 04 00 00 00 00 20")[..]);
    let (ids, capsule) = s.request(&[any_v4(), any_v6()]).unwrap();
    assert_eq!(ids, [2, 3]);
    let (ty, value) = split(&capsule);
    assert_eq!(ty, ADDRESS_REQUEST);
    let reqs = masque_proto::connect_ip::decode_address_request(&value).unwrap();
    assert_eq!(reqs.len(), 2);
    assert_eq!(s.info().pending_requests, [1, 2, 3]);
    // R9484-32: an empty request is never sent.
    assert!(matches!(
        s.request(&[]),
        Err(ClientError::ConnectIp(ConnectIpError::EmptyAddressRequest))
    ));
}

/// More than 64 outstanding requests are refused as a whole.
#[test]
fn request_limit_is_all_or_nothing() {
    let mut s = IpState::default();
    s.request(&vec![any_v4(); 60]).unwrap();
    let err = s.request(&[any_v4(); 5]).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::ConnectIp(ConnectIpError::TooManyPendingRequests { .. })
        ),
        "{err}"
    );
    assert_eq!(s.info().pending_requests.len(), 60);
}

/// R9484-33/26: the peer's answers resolve our requests; a refusal is
/// recorded and assigns nothing; the set replaces the previous one.
#[test]
fn r9484_33_answers_and_refusals() {
    let mut s = IpState::default();
    s.request(&[any_v4(), any_v6()]).unwrap();
    // 1 -> 10.200.0.2/32, 2 refused (::/128), plus an unprompted /32.
    let value = [
        hex("01 04 0a c8 00 02 20"),
        hex("02 06 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 80"),
        hex("00 04 c0 00 02 01 20"),
    ]
    .concat();
    let r = s.on_capsule(ADDRESS_ASSIGN, &value).unwrap();
    let Received::Assigned { assigned, answers } = r else {
        panic!("{r:?}")
    };
    assert_eq!(assigned.len(), 2);
    assert_eq!(assigned[0].ip, v4(10, 200, 0, 2));
    assert_eq!(assigned[1].request_id, 0);
    assert!(matches!(answers[0], Answer::Granted { request, .. } if request.request_id == 1));
    assert!(matches!(answers[1], Answer::Refused { request } if request.request_id == 2));
    let info = s.info();
    assert!(info.pending_requests.is_empty());
    assert_eq!(info.refused.len(), 1);
    assert_eq!(info.refused[0].request_id, 2);
    // R9484-26: an empty capsule withdraws everything.
    s.on_capsule(ADDRESS_ASSIGN, &[]).unwrap();
    assert!(s.info().assigned.is_empty());
}

fn peer_request(s: &mut IpState, value: &str) -> Vec<RequestedAddress> {
    match s.on_capsule(ADDRESS_REQUEST, &hex(value)).unwrap() {
        Received::Requested { requests, reply } => {
            assert!(reply.is_none());
            requests
        }
        other => panic!("{other:?}"),
    }
}

/// The assign-id rule: a non-zero request id must match an outstanding
/// ADDRESS_REQUEST of the peer; id 0 is always allowed; an answered id may
/// be repeated in later complete sets, a refusal may not.
#[test]
fn assign_id_rule() {
    let mut s = IpState::default();
    let unprompted = AssignedAddress {
        request_id: 0,
        ip: v4(192, 0, 2, 1),
        prefix_len: 32,
    };
    let capsule = s.assign(&[unprompted]).unwrap();
    assert_eq!(&capsule[..], &hex("01 07 00 04 c0 00 02 01 20")[..]);

    let answer7 = AssignedAddress {
        request_id: 7,
        ip: v4(192, 0, 2, 7),
        prefix_len: 32,
    };
    // No request 7 from the peer yet.
    assert!(matches!(
        s.assign(&[answer7]),
        Err(ClientError::UnknownRequestId(7))
    ));
    assert!(s.info().assigned_to_peer == [unprompted], "nothing changed");

    let reqs = peer_request(&mut s, "07 04 00 00 00 00 20 08 04 00 00 00 00 20");
    assert_eq!(reqs.len(), 2);
    assert_eq!(s.info().peer_requests.len(), 2);
    let refuse8 = AssignedAddress::refusal(&reqs[1]);
    s.assign(&[unprompted, answer7, refuse8]).unwrap();
    let info = s.info();
    assert!(info.peer_requests.is_empty());
    assert_eq!(info.assigned_to_peer, [unprompted, answer7]);
    // A later complete set may repeat answer 7, not refusal 8 (R9484-34),
    // and not an id twice.
    s.assign(&[unprompted, answer7]).unwrap();
    assert!(matches!(
        s.assign(&[refuse8]),
        Err(ClientError::UnknownRequestId(8))
    ));
    let other7 = AssignedAddress {
        ip: v4(192, 0, 2, 77),
        ..answer7
    };
    assert!(matches!(
        s.assign(&[other7]),
        Err(ClientError::UnknownRequestId(7))
    ));
    // R9484-29: the peer may not reuse an id.
    assert_eq!(
        s.on_capsule(ADDRESS_REQUEST, &hex("07 04 00 00 00 00 20")),
        Err(ConnectIpError::DuplicateRequestId(7))
    );
    // Invalid entries are refused before anything changes (R9484-25).
    let bad = AssignedAddress {
        request_id: 0,
        ip: v4(192, 0, 2, 1),
        prefix_len: 24,
    };
    assert!(matches!(s.assign(&[bad]), Err(ClientError::ConnectIp(_))));
    assert_eq!(s.info().assigned_to_peer, [unprompted, answer7]);
}

/// Over the pending limit the peer's requests are refused at once, with the
/// set in force.
#[test]
fn peer_requests_over_limit_refused_at_once() {
    let mut s = IpState::default();
    let requests: Vec<RequestedAddress> = (1..=65)
        .map(|request_id| RequestedAddress {
            request_id,
            ip: v4(0, 0, 0, 0),
            prefix_len: 32,
        })
        .collect();
    let mut value = Vec::new();
    masque_proto::connect_ip::encode_address_request(&requests, &mut value).unwrap();
    let Received::Requested { requests, reply } = s.on_capsule(ADDRESS_REQUEST, &value).unwrap()
    else {
        panic!()
    };
    assert_eq!(requests.len(), 64);
    let (ty, v) = split(&reply.expect("a refusal"));
    assert_eq!(ty, ADDRESS_ASSIGN);
    // Request 65 (a two-byte varint) refused: 0.0.0.0/32.
    assert_eq!(v, hex("40 41 04 00 00 00 00 20"));
}

/// R9484 §10 malformed vectors and the route order rule all fail, and leave
/// the state as it was.
#[test]
fn malformed_capsules_are_errors() {
    let mut s = IpState::default();
    s.on_capsule(ADDRESS_ASSIGN, &hex("00 04 c0 00 02 01 20"))
        .unwrap();
    for (ty, value) in [
        (ADDRESS_ASSIGN, "00 04 c0 00 02 01 20 00"),
        (ADDRESS_ASSIGN, "00 05 c0 00 02 01 20"),
        (ADDRESS_ASSIGN, "00 04 c0 00 02 01 21"),
        (ADDRESS_ASSIGN, "00 04 c0 00 02 01 18"),
        (ADDRESS_REQUEST, ""),
        (ADDRESS_REQUEST, "00 04 00 00 00 00 20"),
        (
            ROUTE_ADVERTISEMENT,
            "04 0a 00 00 00 0a 00 00 ff 00 04 0a 00 00 ff 0a 00 01 00 00",
        ),
    ] {
        assert!(s.on_capsule(ty, &hex(value)).is_err(), "{ty} {value}");
    }
    assert_eq!(s.info().assigned.len(), 1);
    assert!(s.info().routes.is_empty());
    // Unknown types are skipped.
    assert_eq!(s.on_capsule(0x17, b"x"), Ok(Received::Other));
}

/// R9484-36/37: a split tunnel is accepted and replaces the list; our own
/// routes are sorted before sending and overlaps refused.
#[test]
fn routes_both_ways() {
    let mut s = IpState::default();
    let r = s
        .on_capsule(
            ROUTE_ADVERTISEMENT,
            &hex("04 c0 00 02 00 c0 00 02 29 00 04 c0 00 02 2b c0 00 02 ff 00"),
        )
        .unwrap();
    assert!(matches!(r, Received::Routes(ref v) if v.len() == 2));
    assert_eq!(s.info().routes.len(), 2);
    s.on_capsule(ROUTE_ADVERTISEMENT, &[]).unwrap();
    assert!(s.info().routes.is_empty());

    let range = |a, b| IpAddressRange {
        start: v4(10, 0, a, 0),
        end: v4(10, 0, b, 255),
        ipproto: 0,
    };
    let capsule = s.advertise(&[range(5, 5), range(1, 1)]).unwrap();
    let (ty, value) = split(&capsule);
    assert_eq!(ty, ROUTE_ADVERTISEMENT);
    let sent = masque_proto::connect_ip::decode_route_advertisement(&value).unwrap();
    assert_eq!(sent, [range(1, 1), range(5, 5)]);
    assert!(matches!(
        s.advertise(&[range(1, 3), range(2, 4)]),
        Err(ClientError::ConnectIp(ConnectIpError::RouteOrder { .. }))
    ));
    assert_eq!(s.info().advertised_routes, [range(1, 1), range(5, 5)]);
    // The full route.
    let all = IpAddressRange {
        start: v4(0, 0, 0, 0),
        end: v4(255, 255, 255, 255),
        ipproto: 0,
    };
    let capsule = s.advertise(&[all]).unwrap();
    assert_eq!(
        &capsule[..],
        &hex("03 0a 04 00 00 00 00 ff ff ff ff 00")[..]
    );
    assert_eq!(capsule::ROUTE_ADVERTISEMENT, ROUTE_ADVERTISEMENT);
}

/// R9484-50: QUIC datagrams must carry a 1280-byte packet plus the
/// Context ID; capsules always can.
#[test]
fn r9484_50_path_must_carry_1280() {
    use super::sender::check_path;
    assert!(check_path(true, Some(1281)).is_ok());
    assert!(matches!(
        check_path(true, Some(1280)),
        Err(ClientError::TunnelMtuTooSmall {
            max: 1279,
            required: 1280
        })
    ));
    assert!(matches!(
        check_path(true, None),
        Err(ClientError::TunnelMtuTooSmall { max: 0, .. })
    ));
    assert!(check_path(false, Some(100)).is_ok());
}

proptest! {
    /// Any sequence of request batches and peer answers: ids are unique,
    /// never 0, and a request stays pending exactly until the peer answers
    /// its id.
    #[test]
    fn request_ids_unique_and_resolved_once(
        batches in proptest::collection::vec((1usize..4, any::<bool>(), any::<bool>()), 1..20)
    ) {
        let mut s = IpState::default();
        let mut all = Vec::new();
        for (n, answer, grant) in batches {
            let (ids, _) = s.request(&vec![any_v4(); n]).unwrap();
            prop_assert_eq!(ids.len(), n);
            for id in &ids {
                prop_assert!(*id != 0);
                prop_assert!(!all.contains(id));
            }
            all.extend(ids.iter().copied());
            if answer {
                let entries: Vec<AssignedAddress> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, &request_id)| AssignedAddress {
                        request_id,
                        ip: if grant { v4(10, 0, 0, i as u8 + 1) } else { v4(0, 0, 0, 0) },
                        prefix_len: 32,
                    })
                    .collect();
                let mut value = Vec::new();
                masque_proto::connect_ip::encode_address_assign(&entries, &mut value).unwrap();
                let r = s.on_capsule(ADDRESS_ASSIGN, &value).unwrap();
                let Received::Assigned { answers, assigned } = r else { panic!() };
                prop_assert_eq!(answers.len(), n);
                prop_assert_eq!(assigned.len(), if grant { n } else { 0 });
                // Answering again resolves nothing more.
                let Received::Assigned { answers, .. } = s.on_capsule(ADDRESS_ASSIGN, &value).unwrap()
                else { panic!() };
                prop_assert!(answers.is_empty());
            }
            let pending = s.info().pending_requests;
            for id in &ids {
                prop_assert_eq!(pending.contains(id), !answer);
            }
        }
    }
}
