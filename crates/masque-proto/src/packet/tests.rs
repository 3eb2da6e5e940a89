//! Tests for the packet views (R9484-40/43/47/60, ICMP-16/20).

use super::*;
use proptest::prelude::*;
use std::net::Ipv6Addr;

/// Builds an IPv4 packet with a correct header checksum.
pub(crate) fn v4_packet(
    src: [u8; 4],
    dst: [u8; 4],
    protocol: u8,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0x40, 0, ttl, protocol, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    fill_ipv4_header_checksum(&mut p).unwrap();
    p
}

/// Builds an IPv6 packet; `chain` is the bytes of extension headers plus upper layer.
pub(crate) fn v6_packet(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    hop_limit: u8,
    chain: &[u8],
) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(chain.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next_header, hop_limit]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(chain);
    p
}

fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn r9484_43_parses_ipv4() {
    let p = v4_packet(
        [192, 0, 2, 1],
        [198, 51, 100, 7],
        17,
        64,
        &[1, 2, 3, 4, 5, 6, 7, 8],
    );
    let ip = IpPacket::parse(&p).unwrap();
    assert_eq!(ip.version(), 4);
    assert_eq!(ip.source(), "192.0.2.1".parse::<IpAddr>().unwrap());
    assert_eq!(ip.destination(), "198.51.100.7".parse::<IpAddr>().unwrap());
    assert_eq!(ip.protocol(), 17);
    assert_eq!(ip.ttl(), 64);
    assert_eq!(ip.header_len(), 20);
    assert_eq!(ip.payload(), &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(ip.fragment(), None);
    assert!(!ip.is_truncated());
    let IpPacket::V4(v4) = ip else { panic!() };
    assert!(v4.header_checksum_valid());
    assert!(v4.dont_fragment());
}

/// icmp digest §6.6: the quoted header 192.0.2.2 → 198.51.100.7 has checksum 48 d3.
#[test]
fn ipv4_header_checksum_vector() {
    let h = [
        0x45, 0x00, 0x05, 0xdc, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0x00, 0x02,
        0x02, 0xc6, 0x33, 0x64, 0x07,
    ];
    assert_eq!(ipv4_header_checksum(&h), 0x48d3);
}

#[test]
fn r9484_43_rejects_non_ip() {
    assert_eq!(IpPacket::parse(&[]), Err(PacketError::Empty));
    assert_eq!(
        IpPacket::parse(&[0x50; 40]),
        Err(PacketError::UnsupportedVersion(5))
    );
    assert_eq!(
        IpPacket::parse(&[0x00; 40]),
        Err(PacketError::UnsupportedVersion(0))
    );
}

#[test]
fn r9484_43_rejects_bad_ipv4_lengths() {
    let p = v4_packet([192, 0, 2, 1], [192, 0, 2, 2], 17, 64, &[0; 8]);
    // Shorter than 20 bytes.
    assert_eq!(
        IpPacket::parse(&p[..19]),
        Err(PacketError::TruncatedHeader {
            needed: 20,
            actual: 19
        })
    );
    // IHL 4 (16 bytes).
    let mut bad = p.clone();
    bad[0] = 0x44;
    assert_eq!(IpPacket::parse(&bad), Err(PacketError::BadHeaderLength(16)));
    // IHL 15 (60 bytes) but only 28 bytes present.
    bad[0] = 0x4f;
    assert_eq!(
        IpPacket::parse(&bad),
        Err(PacketError::TruncatedHeader {
            needed: 60,
            actual: 28
        })
    );
    // Total length below header length.
    let mut bad = p.clone();
    bad[2..4].copy_from_slice(&19u16.to_be_bytes());
    assert_eq!(
        IpPacket::parse(&bad),
        Err(PacketError::TotalLengthBelowHeader {
            total: 19,
            header: 20
        })
    );
    // Datagram longer / shorter than Total Length (one packet per datagram).
    let mut longer = p.clone();
    longer.push(0);
    assert_eq!(
        IpPacket::parse(&longer),
        Err(PacketError::LengthMismatch {
            declared: 28,
            actual: 29
        })
    );
    assert_eq!(
        IpPacket::parse(&p[..27]),
        Err(PacketError::LengthMismatch {
            declared: 28,
            actual: 27
        })
    );
    // ...but a quote may be cut.
    let q = IpPacket::parse_quoted(&p[..24]).unwrap();
    assert!(q.is_truncated());
    assert_eq!(q.payload(), &[0; 4]);
}

#[test]
fn r9484_43_rejects_bad_ipv6_lengths() {
    let p = v6_packet(a6("2001:db8::1"), a6("2001:db8::2"), 17, 64, &[0; 8]);
    assert!(IpPacket::parse(&p).is_ok());
    assert_eq!(
        IpPacket::parse(&p[..39]),
        Err(PacketError::TruncatedHeader {
            needed: 40,
            actual: 39
        })
    );
    assert_eq!(
        IpPacket::parse(&p[..47]),
        Err(PacketError::LengthMismatch {
            declared: 48,
            actual: 47
        })
    );
    let mut longer = p.clone();
    longer.push(0);
    assert_eq!(
        IpPacket::parse(&longer),
        Err(PacketError::LengthMismatch {
            declared: 48,
            actual: 49
        })
    );
    assert!(IpPacket::parse_quoted(&p[..40]).unwrap().is_truncated());
}

#[test]
fn ipv4_fragments() {
    let mut p = v4_packet([192, 0, 2, 1], [192, 0, 2, 2], 17, 64, &[0; 8]);
    p[6..8].copy_from_slice(&0x2000u16.to_be_bytes()); // MF, offset 0
    let ip = IpPacket::parse(&p).unwrap();
    assert_eq!(
        ip.fragment(),
        Some(Fragment {
            offset: 0,
            more: true,
            id: 1
        })
    );
    assert!(!ip.is_non_initial_fragment());
    p[6..8].copy_from_slice(&0x0010u16.to_be_bytes()); // offset 16, last
    let ip = IpPacket::parse(&p).unwrap();
    assert!(ip.is_non_initial_fragment());
}

/// R9484-40: the protocol is the first Next Header after the extension-header chain.
#[test]
fn r9484_40_walks_ipv6_extension_headers() {
    let mut chain = Vec::new();
    chain.extend_from_slice(&[NH_ROUTING, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop, 8 bytes
    chain.extend_from_slice(&[NH_FRAGMENT, 1, 0, 0, 0, 0, 0, 0]); // routing, 16 bytes
    chain.extend_from_slice(&[0; 8]);
    chain.extend_from_slice(&[NH_AH, 0, 0, 1, 0, 0, 0, 7]); // fragment, offset 0, M=1, id 7
    chain.extend_from_slice(&[NH_DESTINATION_OPTIONS, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // AH, (1+2)*4=12
    chain.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // dest opts, 8 bytes
    chain.extend_from_slice(&[0x12, 0x34, 0x00, 0x35, 0, 8, 0, 0]); // UDP header
    let p = v6_packet(
        a6("2001:db8::1"),
        a6("2001:db8::2"),
        NH_HOP_BY_HOP,
        64,
        &chain,
    );
    let ip = IpPacket::parse(&p).unwrap();
    assert_eq!(ip.protocol(), 17);
    assert_eq!(ip.header_len(), 40 + 8 + 16 + 8 + 12 + 8);
    assert_eq!(ip.payload(), &[0x12, 0x34, 0x00, 0x35, 0, 8, 0, 0]);
    assert_eq!(
        ip.fragment(),
        Some(Fragment {
            offset: 0,
            more: true,
            id: 7
        })
    );
    let IpPacket::V6(v6) = ip else { panic!() };
    assert_eq!(v6.next_header(), NH_HOP_BY_HOP);
}

/// R9484-39 (our choice): ESP ends the walk and is the matched protocol; so does 59.
#[test]
fn r9484_39_esp_and_no_next_header_end_walk() {
    let p = v6_packet(
        a6("2001:db8::1"),
        a6("2001:db8::2"),
        NH_DESTINATION_OPTIONS,
        64,
        &[NH_ESP, 0, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef],
    );
    assert_eq!(IpPacket::parse(&p).unwrap().protocol(), NH_ESP);
    let p = v6_packet(
        a6("2001:db8::1"),
        a6("2001:db8::2"),
        NH_NO_NEXT_HEADER,
        64,
        &[],
    );
    let ip = IpPacket::parse(&p).unwrap();
    assert_eq!(ip.protocol(), NH_NO_NEXT_HEADER);
    assert!(ip.payload().is_empty());
    assert!(!is_walked_ipv6_extension_header(NH_ESP));
    assert!(is_ipv6_extension_header(NH_ESP));
    assert!(!is_ipv6_extension_header(17));
}

/// A non-initial fragment's data is not a header: the walk stops at the fragment header.
#[test]
fn ipv6_non_initial_fragment_stops_walk() {
    let chain = [IPPROTO_ICMPV6, 0, 0x00, 0x08, 0, 0, 0, 9, 0x01, 0x02];
    let p = v6_packet(
        a6("2001:db8::1"),
        a6("2001:db8::2"),
        NH_FRAGMENT,
        64,
        &chain,
    );
    let ip = IpPacket::parse(&p).unwrap();
    assert_eq!(ip.protocol(), IPPROTO_ICMPV6);
    assert!(ip.is_non_initial_fragment());
    assert_eq!(ip.icmp_type(), None);
}

#[test]
fn r9484_40_rejects_truncated_extension_header() {
    // Hop-by-hop claiming 16 bytes in an 8-byte payload.
    let p = v6_packet(
        a6("2001:db8::1"),
        a6("2001:db8::2"),
        NH_HOP_BY_HOP,
        64,
        &[17, 1, 0, 0, 0, 0, 0, 0],
    );
    assert_eq!(
        IpPacket::parse(&p),
        Err(PacketError::TruncatedExtensionHeader {
            next_header: NH_HOP_BY_HOP,
            offset: 40
        })
    );
    // Chain announced but no bytes.
    let p = v6_packet(a6("2001:db8::1"), a6("2001:db8::2"), NH_ROUTING, 64, &[]);
    assert_eq!(
        IpPacket::parse(&p),
        Err(PacketError::TruncatedExtensionHeader {
            next_header: NH_ROUTING,
            offset: 40
        })
    );
}

/// R9484-47 / ICMP-20: TTL decremented with a valid checksum; 1 and 0 expire.
#[test]
fn r9484_47_decrement_ttl_ipv4() {
    let mut p = v4_packet([192, 0, 2, 1], [192, 0, 2, 2], 17, 64, &[0; 8]);
    assert_eq!(decrement_ttl(&mut p), Ok(TtlOutcome::Forward(63)));
    let ip = IpPacket::parse(&p).unwrap();
    assert_eq!(ip.ttl(), 63);
    let IpPacket::V4(v4) = ip else { panic!() };
    assert!(v4.header_checksum_valid());
    for ttl in [0u8, 1] {
        let mut p = v4_packet([192, 0, 2, 1], [192, 0, 2, 2], 17, ttl, &[]);
        let before = p.clone();
        assert_eq!(decrement_ttl(&mut p), Ok(TtlOutcome::Expired));
        assert_eq!(p, before, "expired packet is left as received for quoting");
    }
}

#[test]
fn r9484_47_decrement_hop_limit_ipv6() {
    let mut p = v6_packet(a6("2001:db8::1"), a6("2001:db8::2"), 59, 2, &[]);
    assert_eq!(decrement_ttl(&mut p), Ok(TtlOutcome::Forward(1)));
    assert_eq!(decrement_ttl(&mut p), Ok(TtlOutcome::Expired));
    assert_eq!(IpPacket::parse(&p).unwrap().ttl(), 1);
}

#[test]
fn decrement_ttl_rejects_non_ip() {
    assert_eq!(decrement_ttl(&mut []), Err(PacketError::Empty));
    assert_eq!(
        decrement_ttl(&mut [0x50; 40]),
        Err(PacketError::UnsupportedVersion(5))
    );
    assert_eq!(
        decrement_ttl(&mut [0x45; 19]),
        Err(PacketError::TruncatedHeader {
            needed: 20,
            actual: 19
        })
    );
    assert_eq!(
        decrement_ttl(&mut [0x60; 39]),
        Err(PacketError::TruncatedHeader {
            needed: 40,
            actual: 39
        })
    );
}

/// R9484-60 helper: BCP 38 prefix membership; R9484-07 / R9484-25 host bits.
#[test]
fn r9484_60_prefix_helpers() {
    let p: IpAddr = "192.0.2.0".parse().unwrap();
    assert!(prefix_contains(p, 24, "192.0.2.77".parse().unwrap()));
    assert!(!prefix_contains(p, 24, "192.0.3.1".parse().unwrap()));
    assert!(!prefix_contains(p, 24, "::ffff:192.0.2.1".parse().unwrap()));
    assert!(!prefix_contains(p, 33, p));
    assert!(prefix_contains(p, 0, "203.0.113.1".parse().unwrap()));
    let p6: IpAddr = "2001:db8::".parse().unwrap();
    assert!(prefix_contains(p6, 32, "2001:db8:1::1".parse().unwrap()));
    assert!(!prefix_contains(p6, 32, "2001:db9::1".parse().unwrap()));
    assert!(host_bits_zero(p, 24));
    assert!(!host_bits_zero("192.0.2.1".parse().unwrap(), 24));
    assert!(host_bits_zero("192.0.2.1".parse().unwrap(), 32));
    assert!(!host_bits_zero(p6, 129));
    assert_eq!(mask_to_prefix("2001:db8::1".parse().unwrap(), 64), Some(p6));
}

fn arb_v4_header() -> impl Strategy<Value = Vec<u8>> {
    (0usize..=10, proptest::collection::vec(any::<u8>(), 60)).prop_map(|(opt_words, mut bytes)| {
        let hl = 20 + 4 * opt_words;
        bytes.truncate(hl);
        bytes[0] = 0x40 | (hl / 4) as u8;
        bytes[2..4].copy_from_slice(&(hl as u16).to_be_bytes());
        fill_ipv4_header_checksum(&mut bytes).unwrap();
        bytes
    })
}

proptest! {
    /// Parsing arbitrary bytes never panics, in either mode; a view stays inside its input.
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        for ip in [IpPacket::parse(&bytes), IpPacket::parse_quoted(&bytes)].into_iter().flatten() {
            prop_assert!(ip.header_len() <= bytes.len());
            prop_assert!(ip.payload().len() <= bytes.len());
            let _ = (ip.source(), ip.destination(), ip.protocol(), ip.icmp_type(), ip.fragment());
        }
    }

    /// Arbitrary IPv6 extension-header chains never panic the walk.
    #[test]
    fn ipv6_walk_never_panics(nh in prop_oneof![Just(0u8), Just(43u8), Just(44u8), Just(51u8), Just(60u8), any::<u8>()],
                              chain in proptest::collection::vec(prop_oneof![Just(0u8), Just(44u8), Just(51u8), any::<u8>()], 0..120)) {
        let p = v6_packet(a6("2001:db8::1"), a6("2001:db8::2"), nh, 64, &chain);
        if let Ok(ip) = IpPacket::parse(&p) {
            prop_assert!(ip.header_len() <= p.len());
            prop_assert!(!is_walked_ipv6_extension_header(ip.protocol()) || ip.is_non_initial_fragment());
        }
    }

    /// decrement_ttl never panics on arbitrary bytes.
    #[test]
    fn decrement_ttl_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = decrement_ttl(&mut bytes);
    }

    /// R9484-47: decrementing keeps the IPv4 header checksum valid, for arbitrary headers
    /// (options included), and equal to a full recomputation.
    #[test]
    fn r9484_47_ttl_decrement_keeps_checksum_valid(mut h in arb_v4_header()) {
        let ttl = h[8];
        match decrement_ttl(&mut h).unwrap() {
            TtlOutcome::Forward(t) => {
                prop_assert_eq!(t, ttl - 1);
                prop_assert!(verifies(&h));
                prop_assert_eq!(u16::from_be_bytes([h[10], h[11]]), ipv4_header_checksum(&h));
            }
            TtlOutcome::Expired => prop_assert!(ttl <= 1),
        }
    }

    /// Prefix membership agrees with masking.
    #[test]
    fn prefix_contains_consistent(a in any::<u32>(), b in any::<u32>(), len in 0u8..=32) {
        let (a, b) = (IpAddr::V4(a.into()), IpAddr::V4(b.into()));
        prop_assert_eq!(prefix_contains(a, len, b), mask_to_prefix(a, len) == mask_to_prefix(b, len));
        prop_assert!(prefix_contains(a, len, a));
    }
}
