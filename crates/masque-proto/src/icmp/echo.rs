//! Echo Request / Reply builders (ICMP-08, R9484-48, R9484-49; vector 19).

use std::net::{IpAddr, Ipv6Addr};

use bytes::BufMut;

use super::*;
use crate::packet::IpPacket;

/// Echo Request or Echo Reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoKind {
    Request,
    Reply,
}

impl EchoKind {
    const fn icmp_type(self, v6: bool) -> u8 {
        match (self, v6) {
            (Self::Request, false) => ICMPV4_ECHO_REQUEST,
            (Self::Reply, false) => ICMPV4_ECHO_REPLY,
            (Self::Request, true) => ICMPV6_ECHO_REQUEST,
            (Self::Reply, true) => ICMPV6_ECHO_REPLY,
        }
    }
}

fn echo_word(id: u16, seq: u16) -> u32 {
    (u32::from(id) << 16) | u32::from(seq)
}

/// Writes an Echo Request / Reply message without IP header. Spec README vector 19:
/// ICMPv4 Echo Request id 0x1234 seq 1 → `08 00 e5 ca 12 34 00 01`.
pub fn write_echo_v4_message<B: BufMut + ?Sized>(
    out: &mut B,
    kind: EchoKind,
    id: u16,
    seq: u16,
    data: &[u8],
) -> Result<usize, IcmpError> {
    write_icmpv4_message(out, kind.icmp_type(false), 0, echo_word(id, seq), data)
}

/// Writes an ICMPv6 Echo Request / Reply message without IP header. Spec README vector
/// 19: `::1` → `::1`, id 0x1234 seq 1 → `80 00 6d 86 12 34 00 01`.
pub fn write_echo_v6_message<B: BufMut + ?Sized>(
    out: &mut B,
    kind: EchoKind,
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    id: u16,
    seq: u16,
    data: &[u8],
) -> Result<usize, IcmpError> {
    write_icmpv6_message(
        out,
        src,
        dst,
        kind.icmp_type(true),
        0,
        echo_word(id, seq),
        data,
    )
}

/// Writes a complete IP packet with an Echo Request / Reply. With 1232 bytes of data over
/// IPv6 this is the 1280-byte MTU probe of R9484-49 (to `ff02::1` if the peer address
/// is unknown).
#[allow(clippy::too_many_arguments)]
pub fn write_echo_packet<B: BufMut + ?Sized>(
    out: &mut B,
    kind: EchoKind,
    source: IpAddr,
    destination: IpAddr,
    ttl: u8,
    id: u16,
    seq: u16,
    data: &[u8],
) -> Result<usize, IcmpError> {
    let ty = kind.icmp_type(source.is_ipv6());
    write_packet(
        out,
        source,
        destination,
        ttl,
        ty,
        0,
        echo_word(id, seq),
        data,
    )
}

/// Answers a received Echo Request packet: destination = request source, identifier,
/// sequence number and data copied (ICMP-08). `source` is the replying address (the
/// request's destination when unicast to us, else our own, e.g. for `ff02::1`, R9484-48).
pub fn write_echo_reply<B: BufMut + ?Sized>(
    out: &mut B,
    request: &[u8],
    source: IpAddr,
    ttl: u8,
) -> Result<usize, IcmpError> {
    let packet = IpPacket::parse(request)?;
    let msg = IcmpMessage::parse(&packet)?;
    if msg.ty != EchoKind::Request.icmp_type(msg.is_v6) || msg.code != 0 {
        return Err(IcmpError::NotEchoRequest);
    }
    if source.is_ipv6() != msg.is_v6 {
        return Err(IcmpError::FamilyMismatch);
    }
    let ty = EchoKind::Reply.icmp_type(msg.is_v6);
    write_packet(out, source, packet.source(), ttl, ty, 0, msg.word, msg.body)
}
