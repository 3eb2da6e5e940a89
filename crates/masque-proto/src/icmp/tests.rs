//! Tests for ICMP synthesis and parsing: spec README vectors 19/20, icmp digest §6, and
//! every ICMP-nn rule implemented.

use super::*;
use crate::packet::{fill_ipv4_header_checksum, verifies};
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn v4(src: [u8; 4], dst: [u8; 4], protocol: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0x40, 0, 64, protocol, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    fill_ipv4_header_checksum(&mut p).unwrap();
    p
}

fn v6(src: &str, dst: &str, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next_header, 64]);
    p.extend_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(payload);
    p
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The bare 40-byte IPv6 header quoted by icmp digest §6.4/§6.5.
fn digest_quote_v6() -> Vec<u8> {
    v6("2001:db8::2", "2001:db8:ffff::1", 59, &[])
}

const UDP_8: [u8; 8] = [0x9c, 0x40, 0x01, 0xbb, 0x00, 0x10, 0x00, 0x00];

/// Vector 19: ICMPv4 Echo Request id 0x1234 seq 1.
#[test]
fn vector19_icmpv4_echo_request() {
    let mut out = Vec::new();
    assert_eq!(
        write_echo_v4_message(&mut out, EchoKind::Request, 0x1234, 1, &[]),
        Ok(8)
    );
    assert_eq!(out, hex("08 00 e5 ca 12 34 00 01"));
}

/// Vector 19: ICMPv6 Echo Request ::1 → ::1 id 0x1234 seq 1 (pseudo-header checksum).
#[test]
fn vector19_icmpv6_echo_request() {
    let mut out = Vec::new();
    let lo = Ipv6Addr::LOCALHOST;
    write_echo_v6_message(&mut out, EchoKind::Request, &lo, &lo, 0x1234, 1, &[]).unwrap();
    assert_eq!(out, hex("80 00 6d 86 12 34 00 01"));
}

/// Vector 19 / digest §6.5: Packet Too Big (MTU 1280) 2001:db8::1 → 2001:db8::2.
#[test]
fn vector19_icmpv6_packet_too_big() {
    let mut out = Vec::new();
    let n = write_error(
        &mut out,
        &digest_quote_v6(),
        IcmpErrorKind::PacketTooBig { mtu: 1280 },
        ip("2001:db8::1"),
        64,
    )
    .unwrap();
    assert_eq!(n, 40 + 48);
    assert_eq!(out.len(), n);
    assert_eq!(&out[40..48], hex("02 00 a6 6a 00 00 05 00").as_slice());
    assert_eq!(&out[48..], digest_quote_v6().as_slice());
}

/// Digest §6.4: Destination Unreachable code 0 (no route), whole 48-byte message.
#[test]
fn digest_icmpv6_dest_unreachable_vector() {
    let mut out = Vec::new();
    write_error(
        &mut out,
        &digest_quote_v6(),
        IcmpErrorKind::DestinationUnreachable(Unreachable::NoRoute),
        ip("2001:db8::1"),
        64,
    )
    .unwrap();
    let expected = hex(
        "01 00 ac 6a 00 00 00 00 60 00 00 00 00 00 3b 40 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 02 \
         20 01 0d b8 ff ff 00 00 00 00 00 00 00 00 00 01",
    );
    assert_eq!(&out[40..], expected.as_slice());
    // IPv6 header: payload length 48, next header 58, hop limit 64, src/dst (ICMP-06/07).
    assert_eq!(&out[..8], &[0x60, 0, 0, 0, 0, 48, 58, 64]);
    let (pkt, msg) = parse_icmp_packet(&out).unwrap();
    assert_eq!(pkt.source(), ip("2001:db8::1"));
    assert_eq!(pkt.destination(), ip("2001:db8::2"));
    assert!(msg.is_error());
}

/// Digest §6.6: ICMPv4 Fragmentation Needed, Next-Hop MTU 1400 (ICMP-03), 28-byte quote.
#[test]
fn digest_icmpv4_frag_needed_vector() {
    let expected = hex(
        "03 04 53 c0 00 00 05 78 45 00 05 dc 00 01 40 00 40 11 48 d3 c0 00 02 02 c6 33 64 07 9c 40 01 bb 05 c8 00 00",
    );
    let quote = &expected[8..];
    let mut out = Vec::new();
    write_icmpv4_message(&mut out, 3, 4, 1400, quote).unwrap();
    assert_eq!(out, expected);
    // The same through write_error: the cut quote parses (DF set), output identical.
    let mut pkt = Vec::new();
    write_error(
        &mut pkt,
        quote,
        IcmpErrorKind::PacketTooBig { mtu: 1400 },
        ip("198.51.100.1"),
        64,
    )
    .unwrap();
    assert_eq!(&pkt[20..], expected.as_slice());
    let (ip_pkt, msg) = parse_icmp_packet(&pkt).unwrap();
    assert_eq!(ip_pkt.destination(), ip("192.0.2.2"), "ICMP-06");
    assert_eq!(msg.mtu(), Some(1400));
    assert_eq!(msg.word >> 16, 0, "ICMP-03: high 16 bits zero");
}

/// Digest §6.7 / ICMP-12: an ICMPv6 error that fails forwarding gets no error.
#[test]
fn icmp12_no_error_about_icmpv6_error() {
    let mut inner = Vec::new();
    let s: Ipv6Addr = "2001:db8::2".parse().unwrap();
    let d: Ipv6Addr = "2001:db8::9".parse().unwrap();
    write_icmpv6_message(
        &mut inner,
        &s,
        &d,
        ICMPV6_DEST_UNREACHABLE,
        0,
        0,
        &digest_quote_v6(),
    )
    .unwrap();
    let invoking = v6("2001:db8::2", "2001:db8::9", 58, &inner);
    let mut out = Vec::new();
    assert_eq!(
        write_error(
            &mut out,
            &invoking,
            IcmpErrorKind::TimeExceeded,
            ip("2001:db8::1"),
            64
        ),
        Err(IcmpError::Suppressed(Suppressed::IcmpError))
    );
    assert!(out.is_empty());
    // ...but an error about an Echo Request is fine.
    let mut echo = Vec::new();
    write_echo_v6_message(&mut echo, EchoKind::Request, &s, &d, 1, 1, &[]).unwrap();
    let invoking = v6("2001:db8::2", "2001:db8::9", 58, &echo);
    assert!(
        write_error(
            &mut out,
            &invoking,
            IcmpErrorKind::TimeExceeded,
            ip("2001:db8::1"),
            64
        )
        .is_ok()
    );
}

/// ICMP-12: ICMPv4 error types 3, 4, 5, 11, 12 are never answered; Echo is.
#[test]
fn icmp12_no_error_about_icmpv4_errors() {
    for ty in [3u8, 4, 5, 11, 12] {
        let p = v4(
            [192, 0, 2, 2],
            [198, 51, 100, 7],
            1,
            &[ty, 0, 0, 0, 0, 0, 0, 0],
        );
        let pkt = IpPacket::parse(&p).unwrap();
        assert_eq!(
            check_error_allowed(&pkt, IcmpErrorKind::TimeExceeded),
            Err(Suppressed::IcmpError),
            "type {ty}"
        );
    }
    let p = v4(
        [192, 0, 2, 2],
        [198, 51, 100, 7],
        1,
        &[8, 0, 0, 0, 0, 0, 0, 0],
    );
    assert_eq!(
        check_error_allowed(&IpPacket::parse(&p).unwrap(), IcmpErrorKind::TimeExceeded),
        Ok(())
    );
    // ICMP with no visible type: assume it is an error.
    let p = v4([192, 0, 2, 2], [198, 51, 100, 7], 1, &[]);
    assert_eq!(
        check_error_allowed(&IpPacket::parse(&p).unwrap(), IcmpErrorKind::TimeExceeded),
        Err(Suppressed::IcmpError)
    );
}

/// ICMP-12 for IPv6 behind extension headers (the walk finds ICMPv6).
#[test]
fn icmp12_icmpv6_error_behind_extension_header() {
    let p = v6(
        "2001:db8::2",
        "2001:db8::9",
        60,
        &[58, 0, 1, 4, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0],
    );
    let pkt = IpPacket::parse(&p).unwrap();
    assert_eq!(
        check_error_allowed(&pkt, IcmpErrorKind::TimeExceeded),
        Err(Suppressed::IcmpError)
    );
}

/// ICMP-13: never about an ICMPv6 Redirect.
#[test]
fn icmp13_no_error_about_redirect() {
    let p = v6("fe80::1", "fe80::2", 58, &[137, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        check_error_allowed(&IpPacket::parse(&p).unwrap(), IcmpErrorKind::TimeExceeded),
        Err(Suppressed::Redirect)
    );
}

/// ICMP-14: no error about multicast / broadcast destinations; ICMPv6 Packet Too Big is
/// the exception (ICMP-21).
#[test]
fn icmp14_multicast_and_broadcast_destinations() {
    let kind = IcmpErrorKind::DestinationUnreachable(Unreachable::NoRoute);
    let p = v4([192, 0, 2, 2], [224, 0, 0, 1], 17, &UDP_8);
    assert_eq!(
        check_error_allowed(&IpPacket::parse(&p).unwrap(), kind),
        Err(Suppressed::MulticastDestination)
    );
    let p = v4([192, 0, 2, 2], [255, 255, 255, 255], 17, &UDP_8);
    assert_eq!(
        check_error_allowed(&IpPacket::parse(&p).unwrap(), kind),
        Err(Suppressed::BroadcastDestination)
    );
    let p = v4([192, 0, 2, 2], [224, 0, 0, 1], 17, &UDP_8);
    assert_eq!(
        check_error_allowed(
            &IpPacket::parse(&p).unwrap(),
            IcmpErrorKind::PacketTooBig { mtu: 1400 }
        ),
        Err(Suppressed::MulticastDestination)
    );
    let p = v6("2001:db8::2", "ff02::1", 17, &UDP_8);
    let pkt = IpPacket::parse(&p).unwrap();
    assert_eq!(
        check_error_allowed(&pkt, kind),
        Err(Suppressed::MulticastDestination)
    );
    assert_eq!(
        check_error_allowed(&pkt, IcmpErrorKind::TimeExceeded),
        Err(Suppressed::MulticastDestination)
    );
    assert_eq!(
        check_error_allowed(&pkt, IcmpErrorKind::PacketTooBig { mtu: 1280 }),
        Ok(())
    );
}

/// ICMP-16: no error about a non-initial IPv4 fragment (the first fragment is fine).
#[test]
fn icmp16_no_error_about_non_initial_fragment() {
    let mut p = v4([192, 0, 2, 2], [198, 51, 100, 7], 17, &UDP_8);
    p[6..8].copy_from_slice(&0x00b9u16.to_be_bytes());
    fill_ipv4_header_checksum(&mut p).unwrap();
    assert_eq!(
        check_error_allowed(&IpPacket::parse(&p).unwrap(), IcmpErrorKind::TimeExceeded),
        Err(Suppressed::NonInitialFragment)
    );
    p[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
    assert_eq!(
        check_error_allowed(&IpPacket::parse(&p).unwrap(), IcmpErrorKind::TimeExceeded),
        Ok(())
    );
}

/// ICMP-17: the invoking source must identify one host.
#[test]
fn icmp17_no_error_about_bad_sources() {
    for src in [
        [0, 0, 0, 0],
        [224, 0, 0, 5],
        [127, 0, 0, 1],
        [255, 255, 255, 255],
        [240, 0, 0, 1],
    ] {
        let p = v4(src, [198, 51, 100, 7], 17, &UDP_8);
        assert_eq!(
            check_error_allowed(&IpPacket::parse(&p).unwrap(), IcmpErrorKind::TimeExceeded),
            Err(Suppressed::InvalidSource(IpAddr::from(src))),
        );
    }
    for src in ["::", "ff02::1"] {
        let p = v6(src, "2001:db8::9", 17, &UDP_8);
        assert_eq!(
            check_error_allowed(
                &IpPacket::parse(&p).unwrap(),
                IcmpErrorKind::PacketTooBig { mtu: 1280 }
            ),
            Err(Suppressed::InvalidSource(ip(src))),
        );
    }
}

/// ICMP-21: IPv4 Fragmentation Needed only when DF is set.
#[test]
fn icmp21_frag_needed_requires_df() {
    let mut p = v4([192, 0, 2, 2], [198, 51, 100, 7], 17, &UDP_8);
    p[6] = 0;
    fill_ipv4_header_checksum(&mut p).unwrap();
    let pkt = IpPacket::parse(&p).unwrap();
    assert_eq!(
        check_error_allowed(&pkt, IcmpErrorKind::PacketTooBig { mtu: 1400 }),
        Err(Suppressed::DontFragmentClear)
    );
    assert_eq!(
        check_error_allowed(&pkt, IcmpErrorKind::TimeExceeded),
        Ok(())
    );
}

/// ICMP-22 / ICMP-03: MTUs that cannot be advertised.
#[test]
fn icmp22_mtu_bounds() {
    let mut out = Vec::new();
    assert_eq!(
        write_error(
            &mut out,
            &digest_quote_v6(),
            IcmpErrorKind::PacketTooBig { mtu: 1279 },
            ip("2001:db8::1"),
            64
        ),
        Err(IcmpError::MtuOutOfRange { mtu: 1279 })
    );
    let p = v4([192, 0, 2, 2], [198, 51, 100, 7], 17, &UDP_8);
    for mtu in [67u32, 65536] {
        assert_eq!(
            write_error(
                &mut out,
                &p,
                IcmpErrorKind::PacketTooBig { mtu },
                ip("192.0.2.1"),
                64
            ),
            Err(IcmpError::MtuOutOfRange { mtu })
        );
    }
    assert!(out.is_empty());
}

/// ICMP-07 helper: answer from the invoking destination when it is ours.
#[test]
fn icmp07_source_selection() {
    let tunnel = ip("2001:db8::1");
    let local = [ip("2001:db8::53")];
    assert_eq!(
        select_source(ip("2001:db8::53"), &local, tunnel),
        ip("2001:db8::53")
    );
    assert_eq!(select_source(ip("2001:db8::99"), &local, tunnel), tunnel);
    assert_eq!(
        select_source(ip("ff02::1"), &[ip("ff02::1")], tunnel),
        tunnel
    );
}

#[test]
fn write_error_rejects_family_mismatch_and_garbage() {
    let mut out = Vec::new();
    assert_eq!(
        write_error(
            &mut out,
            &digest_quote_v6(),
            IcmpErrorKind::TimeExceeded,
            ip("192.0.2.1"),
            64
        ),
        Err(IcmpError::FamilyMismatch)
    );
    assert_eq!(
        write_error(
            &mut out,
            &[0x50, 1, 2],
            IcmpErrorKind::TimeExceeded,
            ip("192.0.2.1"),
            64
        ),
        Err(IcmpError::Packet(PacketError::UnsupportedVersion(5)))
    );
    assert!(out.is_empty());
}

/// R9484-51 mapping of forwarding failures to codes (icmp digest §4 table).
#[test]
fn r9484_51_unreachable_codes() {
    use Unreachable::*;
    let table = [
        (SourceAddressPolicy, 13, 5),
        (NoRoute, 0, 0),
        (HostUnreachable, 1, 3),
        (AdministrativelyProhibited, 13, 1),
        (ProtocolOutOfScope, 13, 1),
        (PortUnreachable, 3, 4),
    ];
    for (u, c4, c6) in table {
        assert_eq!((u.v4_code(), u.v6_code()), (c4, c6), "{u:?}");
    }
    let p = v4([192, 0, 2, 2], [198, 51, 100, 7], 17, &UDP_8);
    let mut out = Vec::new();
    write_error(
        &mut out,
        &p,
        IcmpErrorKind::DestinationUnreachable(SourceAddressPolicy),
        ip("192.0.2.1"),
        64,
    )
    .unwrap();
    assert_eq!(&out[20..24], &[3, 13, out[22], out[23]]);
    out.clear();
    write_error(
        &mut out,
        &p,
        IcmpErrorKind::TimeExceeded,
        ip("192.0.2.1"),
        64,
    )
    .unwrap();
    assert_eq!((out[20], out[21]), (11, 0));
}

/// ICMP-10 / vector 20: an ICMPv4 error is at most 576 bytes (548 quoted); ICMP-09 a
/// short packet is quoted whole.
#[test]
fn icmp10_ipv4_quote_limit() {
    let p = v4([192, 0, 2, 2], [198, 51, 100, 7], 17, &[0xaa; 1480]);
    let mut out = Vec::new();
    let n = write_error(
        &mut out,
        &p,
        IcmpErrorKind::TimeExceeded,
        ip("192.0.2.1"),
        64,
    )
    .unwrap();
    assert_eq!(n, ICMPV4_MAX_ERROR_PACKET);
    assert_eq!(ICMPV4_MAX_QUOTE, 548);
    assert_eq!(&out[28..], &p[..548]);
    let short = v4([192, 0, 2, 2], [198, 51, 100, 7], 17, &UDP_8);
    out.clear();
    assert_eq!(
        write_error(
            &mut out,
            &short,
            IcmpErrorKind::TimeExceeded,
            ip("192.0.2.1"),
            64
        ),
        Ok(56)
    );
    assert_eq!(&out[28..], short.as_slice());
}

/// ICMP-11 / vector 20: an ICMPv6 error is at most 1280 bytes (1232 quoted).
#[test]
fn icmp11_ipv6_quote_limit() {
    let p = v6("2001:db8::2", "2001:db8::9", 17, &[0xbb; 1960]);
    let mut out = Vec::new();
    let n = write_error(
        &mut out,
        &p,
        IcmpErrorKind::PacketTooBig { mtu: 1400 },
        ip("2001:db8::1"),
        64,
    )
    .unwrap();
    assert_eq!(n, IPV6_MIN_MTU);
    assert_eq!(ICMPV6_MAX_QUOTE, 1232);
    assert_eq!(&out[48..], &p[..1232]);
    assert!(parse_icmp_packet(&out).is_ok());
}

/// R9484-49: the MTU probe is a 1280-byte Echo Request to ff02::1.
#[test]
fn r9484_49_mtu_probe_is_1280_bytes() {
    let mut out = Vec::new();
    let n = write_echo_packet(
        &mut out,
        EchoKind::Request,
        ip("2001:db8::1"),
        ip("ff02::1"),
        64,
        7,
        1,
        &[0x5a; 1232],
    )
    .unwrap();
    assert_eq!(n, 1280);
    let (_, msg) = parse_icmp_packet(&out).unwrap();
    assert_eq!(msg.echo_id_seq(), Some((7, 1)));
}

/// ICMP-08: Echo Reply copies identifier, sequence and data; goes back to the source.
#[test]
fn icmp08_echo_reply_copies_request() {
    let mut req = Vec::new();
    write_echo_packet(
        &mut req,
        EchoKind::Request,
        ip("192.0.2.2"),
        ip("192.0.2.1"),
        64,
        0xbeef,
        9,
        b"ping",
    )
    .unwrap();
    let mut rep = Vec::new();
    write_echo_reply(&mut rep, &req, ip("192.0.2.1"), 64).unwrap();
    let (pkt, msg) = parse_icmp_packet(&rep).unwrap();
    assert_eq!(
        (msg.ty, msg.echo_id_seq(), msg.body),
        (ICMPV4_ECHO_REPLY, Some((0xbeef, 9)), &b"ping"[..])
    );
    assert_eq!(pkt.destination(), ip("192.0.2.2"));
    // Not a request / wrong family.
    let mut out = Vec::new();
    assert_eq!(
        write_echo_reply(&mut out, &rep, ip("192.0.2.2"), 64),
        Err(IcmpError::NotEchoRequest)
    );
    assert_eq!(
        write_echo_reply(&mut out, &req, ip("::1"), 64),
        Err(IcmpError::FamilyMismatch)
    );
    assert!(out.is_empty());
}

/// ICMP-01: a message whose checksum does not verify is rejected.
#[test]
fn icmp01_bad_checksum_rejected() {
    let mut out = Vec::new();
    write_error(
        &mut out,
        &digest_quote_v6(),
        IcmpErrorKind::TimeExceeded,
        ip("2001:db8::1"),
        64,
    )
    .unwrap();
    assert!(parse_icmp_packet(&out).is_ok());
    let last = out.len() - 1;
    out[last] ^= 1;
    assert_eq!(
        parse_icmp_packet(&out).map(|_| ()),
        Err(IcmpError::BadChecksum)
    );
    // Pseudo-header counts: a different destination breaks the checksum.
    let mut out2 = Vec::new();
    write_error(
        &mut out2,
        &digest_quote_v6(),
        IcmpErrorKind::TimeExceeded,
        ip("2001:db8::1"),
        64,
    )
    .unwrap();
    out2[39] ^= 1;
    assert_eq!(
        parse_icmp_packet(&out2).map(|_| ()),
        Err(IcmpError::BadChecksum)
    );
}

#[test]
fn parse_rejects_non_icmp_and_short() {
    let p = v4([192, 0, 2, 2], [198, 51, 100, 7], 17, &UDP_8);
    assert_eq!(
        parse_icmp_packet(&p).map(|_| ()),
        Err(IcmpError::NotIcmp(17))
    );
    let p = v4([192, 0, 2, 2], [198, 51, 100, 7], 1, &[8, 0, 0]);
    assert_eq!(
        parse_icmp_packet(&p).map(|_| ()),
        Err(IcmpError::TooShort(3))
    );
}

/// R9484-61 / ICMP-23: the invoking packet inside a received error is available.
#[test]
fn r9484_61_invoking_packet_exposed() {
    let invoking = v4([192, 0, 2, 2], [198, 51, 100, 7], 17, &UDP_8);
    let mut out = Vec::new();
    write_error(
        &mut out,
        &invoking,
        IcmpErrorKind::DestinationUnreachable(Unreachable::PortUnreachable),
        ip("198.51.100.7"),
        64,
    )
    .unwrap();
    let (_, msg) = parse_icmp_packet(&out).unwrap();
    let inner = msg.invoking_packet().unwrap().unwrap();
    assert_eq!(
        (inner.source(), inner.destination(), inner.protocol()),
        (ip("192.0.2.2"), ip("198.51.100.7"), 17)
    );
    assert_eq!(msg.echo_id_seq(), None);
}

fn arb_invoking() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..700)
        )
            .prop_map(|(s, d, proto, payload)| v4(s, d, proto, &payload)),
        (
            any::<u128>(),
            any::<u128>(),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..1400)
        )
            .prop_map(|(s, d, nh, payload)| {
                v6(
                    &Ipv6Addr::from(s).to_string(),
                    &Ipv6Addr::from(d).to_string(),
                    nh,
                    &payload,
                )
            }),
    ]
}

fn arb_kind() -> impl Strategy<Value = IcmpErrorKind> {
    prop_oneof![
        Just(IcmpErrorKind::TimeExceeded),
        Just(IcmpErrorKind::DestinationUnreachable(
            Unreachable::SourceAddressPolicy
        )),
        Just(IcmpErrorKind::DestinationUnreachable(Unreachable::NoRoute)),
        (0u32..70000).prop_map(|mtu| IcmpErrorKind::PacketTooBig { mtu }),
    ]
}

proptest! {
    /// Every synthesized error re-sums to zero (ICMPv6 with the pseudo-header), carries a
    /// valid IPv4 header checksum, respects the size limits, and parses back (ICMP-01,
    /// -06, -10, -11).
    #[test]
    fn synthesized_errors_checksum_to_zero(invoking in arb_invoking(), kind in arb_kind(), src4 in any::<[u8; 4]>(), src6 in any::<u128>()) {
        let source = if invoking[0] >> 4 == 4 { IpAddr::from(src4) } else { IpAddr::V6(src6.into()) };
        let mut out = Vec::new();
        match write_error(&mut out, &invoking, kind, source, 64) {
            Ok(n) => {
                prop_assert_eq!(n, out.len());
                let inv = IpPacket::parse(&invoking).unwrap();
                let pkt = IpPacket::parse(&out).unwrap();
                prop_assert_eq!(pkt.destination(), inv.source());
                match pkt {
                    IpPacket::V4(p) => {
                        prop_assert!(p.header_checksum_valid());
                        prop_assert!(verifies(pkt.payload()));
                        prop_assert!(n <= ICMPV4_MAX_ERROR_PACKET);
                    }
                    IpPacket::V6(p) => {
                        let sum = Checksum::new()
                            .add_ipv6_pseudo_header(&p.source(), &p.destination(), pkt.payload().len() as u32, 58)
                            .add_bytes(pkt.payload())
                            .sum();
                        prop_assert_eq!(sum, 0xffff);
                        prop_assert!(n <= IPV6_MIN_MTU);
                    }
                }
                let (_, msg) = parse_icmp_packet(&out).unwrap();
                prop_assert!(msg.is_error());
                prop_assert!(invoking.starts_with(msg.body));
            }
            Err(_) => prop_assert!(out.is_empty()),
        }
    }

    /// Echo messages round-trip through the parser for both families.
    #[test]
    fn echo_roundtrip(v6_family in any::<bool>(), id in any::<u16>(), seq in any::<u16>(), data in proptest::collection::vec(any::<u8>(), 0..300), reply in any::<bool>()) {
        let (s, d) = if v6_family { (ip("2001:db8::1"), ip("2001:db8::2")) } else { (ip("192.0.2.1"), ip("192.0.2.2")) };
        let kind = if reply { EchoKind::Reply } else { EchoKind::Request };
        let mut out = Vec::new();
        write_echo_packet(&mut out, kind, s, d, 64, id, seq, &data).unwrap();
        let (_, msg) = parse_icmp_packet(&out).unwrap();
        prop_assert_eq!(msg.echo_id_seq(), Some((id, seq)));
        prop_assert_eq!(msg.body, data.as_slice());
        prop_assert!(!msg.is_error());
    }

    /// Parsing and error synthesis never panic on arbitrary bytes.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), kind in arb_kind()) {
        if let Ok((_, msg)) = parse_icmp_packet(&bytes) {
            let _ = (msg.invoking_packet(), msg.mtu(), msg.echo_id_seq());
        }
        let mut out = Vec::new();
        let _ = write_error(&mut out, &bytes, kind, ip("192.0.2.1"), 64);
        let _ = write_error(&mut out, &bytes, kind, ip("2001:db8::1"), 64);
        let _ = write_echo_reply(&mut out, &bytes, ip("192.0.2.1"), 64);
    }
}
