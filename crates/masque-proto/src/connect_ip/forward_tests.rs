//! The per-packet rules, one test per rule (ids of docs/reference/conformance.md).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::icmp::{EchoKind, IcmpMessage, write_echo_packet};
use crate::packet::fill_ipv4_header_checksum;

const IPPROTO_UDP: u8 = 17;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
const NODE: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const TARGET: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

fn v4(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

/// An IPv4 UDP packet with `payload` bytes of data.
fn udp4(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload: usize) -> Vec<u8> {
    let total = 20 + 8 + payload;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = ttl;
    p[9] = IPPROTO_UDP;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..22].copy_from_slice(&4000u16.to_be_bytes());
    p[22..24].copy_from_slice(&53u16.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    fill_ipv4_header_checksum(&mut p).unwrap();
    p
}

fn echo(src: IpAddr, dst: IpAddr, ttl: u8) -> Vec<u8> {
    let mut p = Vec::new();
    write_echo_packet(&mut p, EchoKind::Request, src, dst, ttl, 7, 1, b"ping").unwrap();
    p
}

/// Scope 192.0.2.0/24, any protocol; the peer holds 10.200.0.2/32.
fn rules(ipproto: u8) -> ForwardRules {
    let mut r = ForwardRules::new(scope_ranges(
        &[(v4(Ipv4Addr::new(192, 0, 2, 0)), 24)],
        ipproto,
    ));
    r.set_assigned([AssignedAddress {
        request_id: 1,
        ip: v4(CLIENT),
        prefix_len: 32,
    }]);
    r
}

fn dropped(v: Verdict) -> (PacketDrop, Option<IcmpErrorKind>) {
    match v {
        Verdict::Drop { reason, icmp } => (reason, icmp),
        other => panic!("expected a drop, got {other:?}"),
    }
}

#[test]
fn forwards_a_packet_in_scope_without_touching_its_ttl() {
    let r = rules(0);
    let p = udp4(CLIENT, TARGET, 1, 10);
    // TTL 1 leaves the tunnel: decapsulation is no routing hop (R9484-47).
    assert_eq!(r.from_peer(&p, 1500), Verdict::Forward);
}

#[test]
fn r9484_60_spoofed_source_is_dropped_with_code_5() {
    let r = rules(0);
    let p = udp4(Ipv4Addr::new(10, 200, 0, 9), TARGET, 64, 10);
    let (reason, icmp) = dropped(r.from_peer(&p, 1500));
    assert_eq!(reason, PacketDrop::SourceNotAssigned);
    assert_eq!(
        icmp,
        Some(IcmpErrorKind::DestinationUnreachable(
            Unreachable::SourceAddressPolicy
        ))
    );
    // Nothing assigned yet: every source is spoofed.
    let none = ForwardRules::new(any_scope(0));
    assert_eq!(
        dropped(none.from_peer(&udp4(CLIENT, TARGET, 64, 1), 1500)).0,
        PacketDrop::SourceNotAssigned
    );
}

#[test]
fn r9484_10_destination_and_protocol_scope() {
    let r = rules(6); // TCP only
    let outside = udp4(CLIENT, Ipv4Addr::new(198, 51, 100, 1), 64, 1);
    assert_eq!(
        dropped(r.from_peer(&outside, 1500)),
        (
            PacketDrop::OutOfScope,
            Some(IcmpErrorKind::DestinationUnreachable(
                Unreachable::AdministrativelyProhibited
            ))
        )
    );
    let udp = udp4(CLIENT, TARGET, 64, 1);
    assert_eq!(
        dropped(r.from_peer(&udp, 1500)),
        (
            PacketDrop::OutOfScope,
            Some(IcmpErrorKind::DestinationUnreachable(
                Unreachable::ProtocolOutOfScope
            ))
        )
    );
    // ICMP is always allowed whatever the ipproto.
    assert_eq!(
        r.from_peer(&echo(v4(CLIENT), v4(TARGET), 64), 1500),
        Verdict::Forward
    );
}

#[test]
fn r9484_51_too_big_for_the_egress() {
    let r = rules(0);
    let p = udp4(CLIENT, TARGET, 64, 1400);
    assert_eq!(
        dropped(r.from_peer(&p, 1400)),
        (
            PacketDrop::TooBig,
            Some(IcmpErrorKind::PacketTooBig { mtu: 1400 })
        )
    );
    assert_eq!(r.from_peer(&p, 1428), Verdict::Forward);
}

#[test]
fn r9484_43_malformed_and_truncated_packets() {
    let r = rules(0);
    assert_eq!(
        dropped(r.from_peer(&[0x45, 0, 0], 1500)).0,
        PacketDrop::Malformed
    );
    assert_eq!(
        dropped(r.from_peer(&[0x55; 40], 1500)).0,
        PacketDrop::Malformed
    );
    let mut p = udp4(CLIENT, TARGET, 64, 10);
    p.pop(); // shorter than its Total Length
    assert_eq!(dropped(r.from_peer(&p, 1500)).0, PacketDrop::Malformed);
    assert_eq!(dropped(r.to_peer(&mut p, None)).0, PacketDrop::Malformed);
}

#[test]
fn r9484_48_link_local_stays_and_all_nodes_echo_is_answered() {
    let mut r = ForwardRules::new(any_scope(0));
    let me: Ipv6Addr = "fd00::2".parse().unwrap();
    r.set_assigned([AssignedAddress {
        request_id: 0,
        ip: IpAddr::V6(me),
        prefix_len: 128,
    }]);
    let ll = echo(IpAddr::V6(me), "fe80::1".parse().unwrap(), 64);
    assert_eq!(dropped(r.from_peer(&ll, 1500)).0, PacketDrop::LinkLocal);
    let probe = echo(IpAddr::V6(me), "ff02::1".parse().unwrap(), 64);
    assert_eq!(r.from_peer(&probe, 1500), Verdict::AnswerEcho);
    let local = LocalAddrs {
        v4: None,
        v6: Some("fd00::1".parse().unwrap()),
    };
    let mut reply = Vec::new();
    assert!(ForwardRules::write_echo_reply(&mut reply, &probe, local).unwrap() > 0);
    let parsed = IpPacket::parse(&reply).unwrap();
    assert_eq!(parsed.destination(), IpAddr::V6(me));
    assert_eq!(parsed.icmp_type(), Some(icmp::ICMPV6_ECHO_REPLY));
}

#[test]
fn r9484_47_ttl_is_decremented_on_encapsulation_and_expires() {
    let r = rules(0);
    let mut p = udp4(TARGET, CLIENT, 5, 10);
    assert_eq!(r.to_peer(&mut p, Some(1400)), Verdict::Forward);
    let parsed = IpPacket::parse(&p).unwrap();
    assert_eq!(parsed.ttl(), 4);
    let IpPacket::V4(h) = parsed else {
        unreachable!()
    };
    assert!(h.header_checksum_valid(), "the checksum follows the TTL");
    let mut last = udp4(TARGET, CLIENT, 1, 10);
    assert_eq!(
        dropped(r.to_peer(&mut last, None)),
        (PacketDrop::TtlExpired, Some(IcmpErrorKind::TimeExceeded))
    );
}

#[test]
fn to_peer_checks_assignment_scope_and_size() {
    let r = rules(0);
    let mut other = udp4(TARGET, Ipv4Addr::new(10, 200, 0, 3), 64, 1);
    assert_eq!(
        dropped(r.to_peer(&mut other, None)).0,
        PacketDrop::NotAssigned
    );
    let mut foreign = udp4(Ipv4Addr::new(198, 51, 100, 1), CLIENT, 64, 1);
    assert_eq!(
        dropped(r.to_peer(&mut foreign, None)).0,
        PacketDrop::OutOfScope
    );
    // ICMP from outside the scope gets through (R9484-52).
    let mut icmp = echo(v4(Ipv4Addr::new(198, 51, 100, 1)), v4(CLIENT), 64);
    assert_eq!(r.to_peer(&mut icmp, None), Verdict::Forward);
    // R9484-55: too big for one datagram: dropped with Packet Too Big.
    let mut big = udp4(TARGET, CLIENT, 64, 1300);
    assert_eq!(
        dropped(r.to_peer(&mut big, Some(1280))),
        (
            PacketDrop::TooBig,
            Some(IcmpErrorKind::PacketTooBig { mtu: 1280 })
        )
    );
}

#[test]
fn icmp_errors_come_from_the_local_address_and_quote_the_packet() {
    let p = udp4(Ipv4Addr::new(10, 200, 0, 9), TARGET, 64, 10);
    let kind = IcmpErrorKind::DestinationUnreachable(Unreachable::SourceAddressPolicy);
    let local = LocalAddrs {
        v4: Some(NODE),
        v6: None,
    };
    let mut out = Vec::new();
    let n = ForwardRules::write_icmp(&mut out, &p, kind, local).unwrap();
    assert_eq!(n, out.len());
    let err = IpPacket::parse(&out).unwrap();
    assert_eq!(err.source(), v4(NODE));
    assert_eq!(err.destination(), v4(Ipv4Addr::new(10, 200, 0, 9)));
    let msg = IcmpMessage::parse(&err).unwrap();
    assert_eq!((msg.ty, msg.code), (3, 13));
    // No IPv4 address: the RFC 7600 dummy address.
    out.clear();
    ForwardRules::write_icmp(&mut out, &p, kind, LocalAddrs::default()).unwrap();
    assert_eq!(IpPacket::parse(&out).unwrap().source(), v4(IPV4_DUMMY));
    // Never ICMP about ICMP errors (ICMP-12).
    let mut again = Vec::new();
    assert_eq!(
        ForwardRules::write_icmp(&mut again, &out, kind, local).unwrap(),
        0
    );
    assert!(again.is_empty());
}

#[test]
fn scope_ranges_merge_and_sort() {
    let r = scope_ranges(
        &[
            (v4(Ipv4Addr::new(10, 0, 1, 0)), 24),
            (v4(Ipv4Addr::new(10, 0, 0, 0)), 24),
            (v4(Ipv4Addr::new(10, 0, 0, 128)), 25),
        ],
        0,
    );
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].start, v4(Ipv4Addr::new(10, 0, 0, 0)));
    assert_eq!(r[0].end, v4(Ipv4Addr::new(10, 0, 1, 255)));
    super::super::validate_route_advertisement(&r).unwrap();
    let any = any_scope(17);
    assert_eq!(any.len(), 2);
    super::super::validate_route_advertisement(&any).unwrap();
}

#[test]
fn drop_labels_are_unique_and_indexed() {
    for (i, d) in PacketDrop::ALL.iter().enumerate() {
        assert_eq!(d.index(), i);
    }
    let mut labels: Vec<_> = PacketDrop::ALL.iter().map(|d| d.label()).collect();
    labels.dedup();
    assert_eq!(labels.len(), PacketDrop::ALL.len());
}

proptest::proptest! {
    /// Any bytes: neither direction panics, and a packet is forwarded only when
    /// it parses as a whole packet.
    #[test]
    fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..120)) {
        let r = rules(0);
        let v = r.from_peer(&bytes, 1500);
        if v == Verdict::Forward {
            let p = IpPacket::parse(&bytes).unwrap();
            proptest::prop_assert_eq!(p.declared_len(), bytes.len());
        }
        let mut copy = bytes.clone();
        let _ = r.to_peer(&mut copy, Some(1400));
    }

    /// A well-formed packet to the peer: forwarded with its TTL one lower and a
    /// header checksum that still verifies, or dropped as expired at TTL ≤ 1,
    /// or too big; nothing else about it changes.
    #[test]
    fn prop_to_peer_decrements_once(ttl in 0u8..=255, payload in 0usize..1400, max in 1200usize..1500) {
        let r = rules(0);
        let mut p = udp4(TARGET, CLIENT, ttl, payload);
        let before = p.clone();
        match r.to_peer(&mut p, Some(max)) {
            Verdict::Forward => {
                let parsed = IpPacket::parse(&p).unwrap();
                proptest::prop_assert_eq!(parsed.ttl(), ttl - 1);
                let IpPacket::V4(h) = parsed else { unreachable!() };
                proptest::prop_assert!(h.header_checksum_valid());
                proptest::prop_assert_eq!(&p[..8], &before[..8]);
                proptest::prop_assert_eq!(&p[12..], &before[12..]);
            }
            Verdict::Drop { reason: PacketDrop::TooBig, .. } => proptest::prop_assert!(before.len() > max),
            Verdict::Drop { reason: PacketDrop::TtlExpired, .. } => proptest::prop_assert!(ttl <= 1),
            other => proptest::prop_assert!(false, "{other:?}"),
        }
    }
}
