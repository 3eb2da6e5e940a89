//! IP packet views, TTL decrement and ICMP parsing/synthesis (RFC 9484 §8, ICMP digest).
#![no_main]
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use masque_proto::{
    icmp::{self, IcmpErrorKind},
    packet::{self, IpPacket},
};

fuzz_target!(|data: &[u8]| {
    let _ = IpPacket::parse(data);
    let _ = IpPacket::parse_quoted(data);
    let _ = icmp::parse_icmp_packet(data);
    let mut copy = data.to_vec();
    let _ = packet::decrement_ttl(&mut copy);
    for source in [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), IpAddr::V6(Ipv6Addr::LOCALHOST)] {
        for kind in [IcmpErrorKind::TimeExceeded, IcmpErrorKind::PacketTooBig { mtu: 1280 }] {
            let mut out = Vec::new();
            if icmp::write_error(&mut out, data, kind, source, 64).is_ok() {
                // Never more than the minimum MTU of the family (ICMP-10, ICMP-11).
                assert!(out.len() <= if source.is_ipv4() { 576 } else { 1280 });
                assert!(icmp::parse_icmp_packet(&out).is_ok());
            }
        }
    }
    let mut out = Vec::new();
    let _ = icmp::write_echo_reply(&mut out, data, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 64);
});
