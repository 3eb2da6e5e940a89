//! ICMPv4 / ICMPv6 messages for a CONNECT-IP endpoint (RFC 9484 §7.2.1, icmp digest).
//!
//! * [`write_error`] synthesizes a complete IP packet carrying an ICMP error about an
//!   invoking packet: Destination Unreachable, Packet Too Big / Fragmentation Needed and
//!   Time Exceeded (R9484-47/51/55/60, ICMP-20/21), after [`check_error_allowed`] has
//!   applied every "never send an error about…" rule (ICMP-12..17).
//! * Echo Request / Reply builders (R9484-49 MTU probe, R9484-48, ICMP-08).
//! * [`IcmpMessage::parse`] verifies a received ICMP message (ICMP-01) and exposes the
//!   invoking packet quoted in an error (R9484-52/61, ICMP-23).
//!
//! Writers compute the checksum first and then append to any [`BufMut`], so the caller
//! owns allocation; on error nothing is written. Rate limiting (ICMP-18) and the
//! congestion-drop rule (ICMP-19) are session policy and not handled here.

mod echo;
mod parse;

pub use echo::{
    EchoKind, write_echo_packet, write_echo_reply, write_echo_v4_message, write_echo_v6_message,
};
pub use parse::{IcmpMessage, parse_icmp_packet};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::BufMut;

use crate::packet::{
    Checksum, IPPROTO_ICMP, IPPROTO_ICMPV6, IPV4_MIN_HEADER_LEN, IPV6_HEADER_LEN, IPV6_MIN_MTU,
    IpPacket, PacketError,
};

/// ICMPv4 Echo Reply.
pub const ICMPV4_ECHO_REPLY: u8 = 0;
/// ICMPv4 Destination Unreachable.
pub const ICMPV4_DEST_UNREACHABLE: u8 = 3;
/// ICMPv4 Source Quench (deprecated error).
pub const ICMPV4_SOURCE_QUENCH: u8 = 4;
/// ICMPv4 Redirect.
pub const ICMPV4_REDIRECT: u8 = 5;
/// ICMPv4 Echo Request.
pub const ICMPV4_ECHO_REQUEST: u8 = 8;
/// ICMPv4 Time Exceeded.
pub const ICMPV4_TIME_EXCEEDED: u8 = 11;
/// ICMPv4 Parameter Problem.
pub const ICMPV4_PARAMETER_PROBLEM: u8 = 12;
/// ICMPv4 Destination Unreachable code 4: fragmentation needed and DF set (RFC 1191).
pub const ICMPV4_CODE_FRAG_NEEDED: u8 = 4;

/// ICMPv6 Destination Unreachable.
pub const ICMPV6_DEST_UNREACHABLE: u8 = 1;
/// ICMPv6 Packet Too Big.
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
/// ICMPv6 Time Exceeded.
pub const ICMPV6_TIME_EXCEEDED: u8 = 3;
/// ICMPv6 Parameter Problem.
pub const ICMPV6_PARAMETER_PROBLEM: u8 = 4;
/// ICMPv6 Echo Request.
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
/// ICMPv6 Echo Reply.
pub const ICMPV6_ECHO_REPLY: u8 = 129;
/// ICMPv6 Redirect (ICMP-13).
pub const ICMPV6_REDIRECT: u8 = 137;

/// Largest error IPv4 packet a router sends (ICMP-10).
pub const ICMPV4_MAX_ERROR_PACKET: usize = 576;
/// Most invoking-packet bytes quoted in ICMPv4: 576 − 20 − 8 (ICMP-10).
pub const ICMPV4_MAX_QUOTE: usize = ICMPV4_MAX_ERROR_PACKET - IPV4_MIN_HEADER_LEN - 8;
/// Most invoking-packet bytes quoted in ICMPv6: 1280 − 40 − 8 (ICMP-11).
pub const ICMPV6_MAX_QUOTE: usize = IPV6_MIN_MTU - IPV6_HEADER_LEN - 8;
/// Smallest IPv4 MTU (RFC 791); a Next-Hop MTU below it is never advertised.
pub const IPV4_MIN_MTU: u32 = 68;
/// Default TTL / Hop Limit of generated packets (our choice).
pub const DEFAULT_TTL: u8 = 64;

/// Whether an ICMPv4 type is an error message (ICMP-12: 3, 4, 5, 11, 12).
pub const fn is_icmpv4_error(ty: u8) -> bool {
    matches!(
        ty,
        ICMPV4_DEST_UNREACHABLE
            | ICMPV4_SOURCE_QUENCH
            | ICMPV4_REDIRECT
            | ICMPV4_TIME_EXCEEDED
            | ICMPV4_PARAMETER_PROBLEM
    )
}

/// Whether an ICMPv6 type is an error message (types 0–127, RFC 4443 §2.1, ICMP-12).
pub const fn is_icmpv6_error(ty: u8) -> bool {
    ty < 128
}

/// Why a destination is unreachable, mapped to ICMPv6 / ICMPv4 codes per the digest's
/// CONNECT-IP table (R9484-51, icmp digest §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// No route for the destination: v6 code 0, v4 code 0 (net unreachable).
    NoRoute,
    /// Host/address unreachable: v6 code 3, v4 code 1.
    HostUnreachable,
    /// Destination denied by policy or outside scope: v6 code 1, v4 code 13.
    AdministrativelyProhibited,
    /// Source address outside the assigned prefixes, BCP 38 (R9484-60): v6 code 5, v4
    /// code 13 (our choice).
    SourceAddressPolicy,
    /// Upper-layer protocol outside the `ipproto` scope: v6 code 1, v4 code 13 (our
    /// choice).
    ProtocolOutOfScope,
    /// Port unreachable: v6 code 4, v4 code 3.
    PortUnreachable,
}

impl Unreachable {
    /// ICMPv4 Destination Unreachable code.
    pub const fn v4_code(self) -> u8 {
        match self {
            Self::NoRoute => 0,
            Self::HostUnreachable => 1,
            Self::PortUnreachable => 3,
            Self::AdministrativelyProhibited
            | Self::SourceAddressPolicy
            | Self::ProtocolOutOfScope => 13,
        }
    }

    /// ICMPv6 Destination Unreachable code.
    pub const fn v6_code(self) -> u8 {
        match self {
            Self::NoRoute => 0,
            Self::AdministrativelyProhibited | Self::ProtocolOutOfScope => 1,
            Self::HostUnreachable => 3,
            Self::PortUnreachable => 4,
            Self::SourceAddressPolicy => 5,
        }
    }
}

/// The forwarding failure to report (R9484-46/51).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpErrorKind {
    /// ICMPv6 type 1 / ICMPv4 type 3 with the mapped code (ICMP-05: unused word zero).
    DestinationUnreachable(Unreachable),
    /// ICMPv6 Packet Too Big (type 2, code 0, MTU ≥ 1280: ICMP-04, ICMP-22) or ICMPv4
    /// Fragmentation Needed (type 3 code 4, Next-Hop MTU 68..=65535, only for DF packets:
    /// ICMP-03, ICMP-21). Used for packets too big for the tunnel (R9484-55).
    PacketTooBig { mtu: u32 },
    /// Time Exceeded code 0, TTL / Hop Limit expired in transit (R9484-47, ICMP-20).
    TimeExceeded,
}

/// Why an ICMP error must not be sent about the invoking packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Suppressed {
    /// The invoking packet is an ICMP error, or ICMP whose type cannot be seen (ICMP-12).
    #[error("invoking packet is an ICMP error message (ICMP-12)")]
    IcmpError,
    /// The invoking packet is an ICMPv6 Redirect (ICMP-13).
    #[error("invoking packet is an ICMPv6 redirect (ICMP-13)")]
    Redirect,
    /// The invoking packet was sent to a multicast address (ICMP-14).
    #[error("invoking packet has a multicast destination (ICMP-14)")]
    MulticastDestination,
    /// The invoking packet was sent to the IPv4 limited broadcast address (ICMP-14).
    #[error("invoking packet has a broadcast destination (ICMP-14)")]
    BroadcastDestination,
    /// The invoking packet is a non-initial IPv4 fragment (ICMP-16).
    #[error("invoking packet is a non-initial fragment (ICMP-16)")]
    NonInitialFragment,
    /// The invoking source does not identify a single host: unspecified, multicast, IPv4
    /// loopback, broadcast or class E (ICMP-17).
    #[error("invoking packet source {0} does not identify one host (ICMP-17)")]
    InvalidSource(IpAddr),
    /// IPv4 packet too big without DF: drop without Fragmentation Needed (ICMP-21).
    #[error("IPv4 packet without DF gets no fragmentation-needed error (ICMP-21)")]
    DontFragmentClear,
}

/// Failure to build or parse an ICMP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IcmpError {
    /// The rules forbid an error about this packet; drop it silently.
    #[error("ICMP error suppressed: {0}")]
    Suppressed(#[from] Suppressed),
    /// The packet (invoking or received) is not a valid IP packet.
    #[error("invalid IP packet: {0}")]
    Packet(#[from] PacketError),
    /// The given source address is not of the invoking packet's family.
    #[error("ICMP source address family differs from the invoking packet")]
    FamilyMismatch,
    /// The MTU cannot be advertised: IPv6 below 1280 (ICMP-22), IPv4 below 68 or above
    /// 65535 (ICMP-03).
    #[error("MTU {mtu} cannot be advertised")]
    MtuOutOfRange { mtu: u32 },
    /// The message would not fit the IP length field.
    #[error("ICMP message of {len} bytes exceeds {max}")]
    TooLong { len: usize, max: usize },
    /// The packet does not carry ICMP of its family.
    #[error("packet carries protocol {0}, not ICMP")]
    NotIcmp(u8),
    /// A fragment or truncated packet: the whole message is needed to verify it.
    #[error("ICMP message is fragmented or truncated")]
    Incomplete,
    /// Fewer than the 8 bytes of the ICMP header.
    #[error("ICMP message of {0} bytes is shorter than its 8-byte header")]
    TooShort(usize),
    /// The checksum does not verify (ICMP-01).
    #[error("ICMP checksum does not verify (ICMP-01)")]
    BadChecksum,
    /// Not an Echo Request (for [`write_echo_reply`]).
    #[error("not an echo request")]
    NotEchoRequest,
}

/// Whether `ip` can be the source of a packet that gets an ICMP error (ICMP-17): not
/// unspecified, multicast, IPv4 loopback, limited broadcast or class E (240/4, which
/// includes broadcast). Known anycast addresses are the caller's to exclude.
pub fn identifies_one_host(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            !(a.is_unspecified() || a.is_multicast() || a.is_loopback() || a.octets()[0] >= 240)
        }
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

/// Applies every rule that forbids an ICMP error about `invoking` (ICMP-12, -13, -14,
/// -16, -17, -21). `Ok(())` means the error may be sent (subject to rate limiting,
/// ICMP-18). ICMP-15 (link-layer broadcast) does not apply to a tunnel.
pub fn check_error_allowed(invoking: &IpPacket<'_>, kind: IcmpErrorKind) -> Result<(), Suppressed> {
    // ICMP-12 / ICMP-13: never about an ICMP error (or Redirect). If the type is not
    // visible (empty or non-initial fragment), assume the worst.
    if invoking.is_icmp() {
        match (invoking, invoking.icmp_type()) {
            (_, None) => return Err(Suppressed::IcmpError),
            (IpPacket::V4(_), Some(t)) if is_icmpv4_error(t) => return Err(Suppressed::IcmpError),
            (IpPacket::V6(_), Some(t)) if is_icmpv6_error(t) => return Err(Suppressed::IcmpError),
            (IpPacket::V6(_), Some(ICMPV6_REDIRECT)) => return Err(Suppressed::Redirect),
            _ => {}
        }
    }
    // ICMP-16: IPv4 non-initial fragments.
    if matches!(invoking, IpPacket::V4(_)) && invoking.is_non_initial_fragment() {
        return Err(Suppressed::NonInitialFragment);
    }
    // ICMP-17: the source must identify one host.
    let src = invoking.source();
    if !identifies_one_host(src) {
        return Err(Suppressed::InvalidSource(src));
    }
    // ICMP-14: multicast / broadcast destinations; ICMPv6 Packet Too Big is exempt
    // (ICMP-21: sent even for multicast).
    match (invoking, invoking.destination()) {
        (IpPacket::V4(_), IpAddr::V4(d)) if d.is_broadcast() => {
            return Err(Suppressed::BroadcastDestination);
        }
        (IpPacket::V4(_), IpAddr::V4(d)) if d.is_multicast() => {
            return Err(Suppressed::MulticastDestination);
        }
        (IpPacket::V6(_), IpAddr::V6(d))
            if d.is_multicast() && !matches!(kind, IcmpErrorKind::PacketTooBig { .. }) =>
        {
            return Err(Suppressed::MulticastDestination);
        }
        _ => {}
    }
    // ICMP-21: IPv4 Fragmentation Needed only for DF packets.
    if let (IpPacket::V4(p), IcmpErrorKind::PacketTooBig { .. }) = (invoking, kind)
        && !p.dont_fragment()
    {
        return Err(Suppressed::DontFragmentClear);
    }
    Ok(())
}

/// Source address for an error about a packet sent to `invoking_destination` (ICMP-07):
/// that address if it is one of `local_unicast` (the packet was addressed to us),
/// otherwise the endpoint's own tunnel-side address `tunnel_address` (R9484-52).
pub fn select_source(
    invoking_destination: IpAddr,
    local_unicast: &[IpAddr],
    tunnel_address: IpAddr,
) -> IpAddr {
    if local_unicast.contains(&invoking_destination) && identifies_one_host(invoking_destination) {
        invoking_destination
    } else {
        tunnel_address
    }
}

/// Type, code and 32-bit word of an error for the family of the invoking packet.
fn error_header(v6: bool, kind: IcmpErrorKind) -> Result<(u8, u8, u32), IcmpError> {
    Ok(match (v6, kind) {
        (false, IcmpErrorKind::DestinationUnreachable(u)) => {
            (ICMPV4_DEST_UNREACHABLE, u.v4_code(), 0)
        }
        (true, IcmpErrorKind::DestinationUnreachable(u)) => {
            (ICMPV6_DEST_UNREACHABLE, u.v6_code(), 0)
        }
        // ICMP-03: high 16 bits zero, Next-Hop MTU in the low 16 bits.
        (false, IcmpErrorKind::PacketTooBig { mtu }) => {
            if !(IPV4_MIN_MTU..=u32::from(u16::MAX)).contains(&mtu) {
                return Err(IcmpError::MtuOutOfRange { mtu });
            }
            (ICMPV4_DEST_UNREACHABLE, ICMPV4_CODE_FRAG_NEEDED, mtu)
        }
        // ICMP-04 code 0; ICMP-22 never below 1280.
        (true, IcmpErrorKind::PacketTooBig { mtu }) => {
            if mtu < IPV6_MIN_MTU as u32 {
                return Err(IcmpError::MtuOutOfRange { mtu });
            }
            (ICMPV6_PACKET_TOO_BIG, 0, mtu)
        }
        (false, IcmpErrorKind::TimeExceeded) => (ICMPV4_TIME_EXCEEDED, 0, 0),
        (true, IcmpErrorKind::TimeExceeded) => (ICMPV6_TIME_EXCEEDED, 0, 0),
    })
}

/// Writes a complete IP packet carrying an ICMP error about `invoking` (the packet as
/// received; a cut quote is accepted too) and returns its length.
///
/// * Rules of [`check_error_allowed`] first (ICMP-12..17, -21); a violation is
///   [`IcmpError::Suppressed`]: drop silently.
/// * Destination = invoking source (ICMP-06); `source` is chosen by the caller, see
///   [`select_source`] (ICMP-07), and must be of the same family.
/// * Quote: as much of `invoking` as fits 576 bytes total for IPv4 (≤ 548, ICMP-09/10)
///   or 1280 for IPv6 (≤ 1232, ICMP-11), unchanged.
/// * Checksums: ICMPv4 over the message; ICMPv6 with the pseudo-header; IPv4 header
///   checksum filled in.
pub fn write_error<B: BufMut + ?Sized>(
    out: &mut B,
    invoking: &[u8],
    kind: IcmpErrorKind,
    source: IpAddr,
    ttl: u8,
) -> Result<usize, IcmpError> {
    let packet = IpPacket::parse_quoted(invoking)?;
    check_error_allowed(&packet, kind)?;
    if source.is_ipv4() != matches!(packet, IpPacket::V4(_)) {
        return Err(IcmpError::FamilyMismatch);
    }
    let (ty, code, word) = error_header(source.is_ipv6(), kind)?;
    let limit = if source.is_ipv4() {
        ICMPV4_MAX_QUOTE
    } else {
        ICMPV6_MAX_QUOTE
    };
    let quote = invoking
        .get(..invoking.len().min(limit))
        .unwrap_or(invoking);
    write_packet(out, source, packet.source(), ttl, ty, code, word, quote)
}

/// Writes an ICMPv4 message (no IP header): type, code, checksum, `word`, `body`.
/// The checksum covers the message only (no pseudo-header).
pub fn write_icmpv4_message<B: BufMut + ?Sized>(
    out: &mut B,
    ty: u8,
    code: u8,
    word: u32,
    body: &[u8],
) -> Result<usize, IcmpError> {
    let len = checked_len(body, usize::from(u16::MAX) - IPV4_MIN_HEADER_LEN)?;
    let sum = Checksum::new()
        .add_bytes(&[ty, code, 0, 0])
        .add_u32(word)
        .add_bytes(body)
        .finish();
    put_message(out, ty, code, sum, word, body);
    Ok(len)
}

/// Writes an ICMPv6 message (no IP header) whose checksum includes the pseudo-header for
/// `src` → `dst` (RFC 4443 §2.3, RFC 8200 §8.1).
pub fn write_icmpv6_message<B: BufMut + ?Sized>(
    out: &mut B,
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    ty: u8,
    code: u8,
    word: u32,
    body: &[u8],
) -> Result<usize, IcmpError> {
    let len = checked_len(body, usize::from(u16::MAX))?;
    let sum = Checksum::new()
        .add_ipv6_pseudo_header(src, dst, len as u32, IPPROTO_ICMPV6)
        .add_bytes(&[ty, code, 0, 0])
        .add_u32(word)
        .add_bytes(body)
        .finish();
    put_message(out, ty, code, sum, word, body);
    Ok(len)
}

fn checked_len(body: &[u8], max: usize) -> Result<usize, IcmpError> {
    let len = body.len().saturating_add(8);
    if len > max {
        return Err(IcmpError::TooLong { len, max });
    }
    Ok(len)
}

fn put_message<B: BufMut + ?Sized>(
    out: &mut B,
    ty: u8,
    code: u8,
    sum: u16,
    word: u32,
    body: &[u8],
) {
    out.put_u8(ty);
    out.put_u8(code);
    out.put_u16(sum);
    out.put_u32(word);
    out.put_slice(body);
}

/// IP header + ICMP message. All checks happen before the first byte is written.
#[allow(clippy::too_many_arguments)]
fn write_packet<B: BufMut + ?Sized>(
    out: &mut B,
    source: IpAddr,
    destination: IpAddr,
    ttl: u8,
    ty: u8,
    code: u8,
    word: u32,
    body: &[u8],
) -> Result<usize, IcmpError> {
    match (source, destination) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let len = checked_len(body, usize::from(u16::MAX) - IPV4_MIN_HEADER_LEN)?;
            let header = ipv4_header(src, dst, ttl, IPV4_MIN_HEADER_LEN + len);
            out.put_slice(&header);
            write_icmpv4_message(out, ty, code, word, body)?;
            Ok(IPV4_MIN_HEADER_LEN + len)
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let len = checked_len(body, usize::from(u16::MAX))?;
            out.put_u32(0x6000_0000);
            out.put_u16(len as u16);
            out.put_u8(IPPROTO_ICMPV6);
            out.put_u8(ttl);
            out.put_slice(&src.octets());
            out.put_slice(&dst.octets());
            write_icmpv6_message(out, &src, &dst, ty, code, word, body)?;
            Ok(IPV6_HEADER_LEN + len)
        }
        _ => Err(IcmpError::FamilyMismatch),
    }
}

/// A 20-byte IPv4 header for an ICMP packet (no options, DF clear, ID 0) with its
/// checksum. `total_len` has been checked to fit 16 bits.
fn ipv4_header(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    total_len: usize,
) -> [u8; IPV4_MIN_HEADER_LEN] {
    let [t0, t1] = (total_len as u16).to_be_bytes();
    let [s0, s1, s2, s3] = src.octets();
    let [d0, d1, d2, d3] = dst.octets();
    let mut h = [
        0x45,
        0,
        t0,
        t1,
        0,
        0,
        0,
        0,
        ttl,
        IPPROTO_ICMP,
        0,
        0,
        s0,
        s1,
        s2,
        s3,
        d0,
        d1,
        d2,
        d3,
    ];
    let [c0, c1] = crate::packet::ipv4_header_checksum(&h).to_be_bytes();
    h[10] = c0;
    h[11] = c1;
    h
}

#[cfg(test)]
mod tests;
