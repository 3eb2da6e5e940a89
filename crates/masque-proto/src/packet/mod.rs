//! Zero-copy IPv4 / IPv6 packet views for a CONNECT-IP endpoint (RFC 9484 §6–§7).
//!
//! A Context ID 0 HTTP Datagram carries exactly one IP packet, from the Version nibble
//! to the last payload byte (R9484-43); [`IpPacket::parse`] checks that framing. The
//! router duties of a tunnel endpoint (R9484-46/47/60, ICMP-20) need the source and
//! destination addresses, the upper-layer protocol after IPv6 extension headers
//! (R9484-40), the TTL / Hop Limit and its decrement ([`decrement_ttl`]). Policy (which
//! sources are allowed, which routes exist) is the session's; this module only gives it
//! the facts and small pure helpers such as [`prefix_contains`].
//!
//! Nothing here panics on any input: every field access is bounds-checked.

mod checksum;
mod ipv6;
mod prefix;
mod ttl;

pub use checksum::{
    Checksum, incremental_update, internet_checksum, ones_complement_add, verifies,
};

pub use ipv6::Ipv6Packet;
pub use prefix::{address_bits, host_bits_zero, mask_to_prefix, prefix_contains};
pub use ttl::{TtlOutcome, decrement_ttl, fill_ipv4_header_checksum, ipv4_header_checksum};

use std::net::{IpAddr, Ipv4Addr};

/// IP protocol number of ICMPv4.
pub const IPPROTO_ICMP: u8 = 1;
/// IP protocol / Next Header number of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;
/// IPv4 header length without options.
pub const IPV4_MIN_HEADER_LEN: usize = 20;
/// IPv6 fixed header length.
pub const IPV6_HEADER_LEN: usize = 40;
/// IPv6 minimum link MTU; an IPv6 tunnel must carry packets this large (R9484-49).
pub const IPV6_MIN_MTU: usize = 1280;

/// IPv6 Hop-by-Hop Options header.
pub const NH_HOP_BY_HOP: u8 = 0;
/// IPv6 Routing header.
pub const NH_ROUTING: u8 = 43;
/// IPv6 Fragment header.
pub const NH_FRAGMENT: u8 = 44;
/// Encapsulating Security Payload (ends the walk: the rest is encrypted).
pub const NH_ESP: u8 = 50;
/// Authentication Header.
pub const NH_AH: u8 = 51;
/// No Next Header (ends the walk).
pub const NH_NO_NEXT_HEADER: u8 = 59;
/// IPv6 Destination Options header.
pub const NH_DESTINATION_OPTIONS: u8 = 60;
/// Mobility header.
pub const NH_MOBILITY: u8 = 135;
/// Host Identity Protocol.
pub const NH_HIP: u8 = 139;
/// Shim6 protocol.
pub const NH_SHIM6: u8 = 140;
/// Experimentation and testing.
pub const NH_EXPERIMENTAL_1: u8 = 253;
/// Experimentation and testing.
pub const NH_EXPERIMENTAL_2: u8 = 254;

/// IANA "IPv6 Extension Header Types" (R9484-39): 0, 43, 44, 50, 51, 60, 135, 139, 140,
/// 253, 254.
pub const fn is_ipv6_extension_header(next_header: u8) -> bool {
    matches!(
        next_header,
        NH_HOP_BY_HOP
            | NH_ROUTING
            | NH_FRAGMENT
            | NH_ESP
            | NH_AH
            | NH_DESTINATION_OPTIONS
            | NH_MOBILITY
            | NH_HIP
            | NH_SHIM6
            | NH_EXPERIMENTAL_1
            | NH_EXPERIMENTAL_2
    )
}

/// Extension headers that [`IpPacket`] walks past (R9484-40): every IANA extension
/// header except ESP, whose content is encrypted, so ESP is itself the matched upper
/// layer (R9484-39, our choice). A protocol filter naming one of these can never match
/// an IPv6 packet.
pub const fn is_walked_ipv6_extension_header(next_header: u8) -> bool {
    is_ipv6_extension_header(next_header) && next_header != NH_ESP
}

/// Why bytes are not a usable IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// No bytes at all.
    #[error("empty IP packet")]
    Empty,
    /// The Version nibble is neither 4 nor 6 (R9484-43).
    #[error("IP version {0} is neither 4 nor 6")]
    UnsupportedVersion(u8),
    /// The bytes end inside the fixed IP header (or IPv4 options).
    #[error("IP packet of {actual} bytes is shorter than its {needed}-byte header")]
    TruncatedHeader { needed: usize, actual: usize },
    /// IPv4 IHL below 5 (20 bytes).
    #[error("IPv4 header length {0} bytes is below the 20-byte minimum")]
    BadHeaderLength(usize),
    /// IPv4 Total Length smaller than the header it belongs to.
    #[error("IPv4 total length {total} is smaller than the header length {header}")]
    TotalLengthBelowHeader { total: usize, header: usize },
    /// The length field disagrees with the datagram size: a Context ID 0 payload must be
    /// exactly one IP packet (R9484-43).
    #[error("IP length field declares {declared} bytes but {actual} bytes are present")]
    LengthMismatch { declared: usize, actual: usize },
    /// An IPv6 extension header runs past the end of the packet (R9484-40).
    #[error("IPv6 extension header {next_header} at offset {offset} runs past the packet")]
    TruncatedExtensionHeader { next_header: u8, offset: usize },
}

/// IPv4 or IPv6 fragment information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// Fragment Offset in 8-byte units; non-zero means a non-initial fragment (ICMP-16).
    pub offset: u16,
    /// More Fragments flag.
    pub more: bool,
    /// Identification (16 bits for IPv4, 32 bits for IPv6).
    pub id: u32,
}

impl Fragment {
    /// Whether this is the first fragment (offset 0): only then do the upper-layer
    /// headers follow.
    pub const fn is_initial(&self) -> bool {
        self.offset == 0
    }
}

fn be16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes(b.try_into().ok()?))
}

fn be32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

fn arr<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Whether the packet must be exactly its declared length (tunnel datagram) or may be a
/// truncated quote (inside an ICMP error).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Exact,
    Quoted,
}

/// View of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<'a> {
    buf: &'a [u8],
    header_len: usize,
    total_len: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    protocol: u8,
    flags_fragment: u16,
    id: u16,
}

impl<'a> Ipv4Packet<'a> {
    fn parse(buf: &'a [u8], mode: Mode) -> Result<Self, PacketError> {
        let truncated = PacketError::TruncatedHeader {
            needed: IPV4_MIN_HEADER_LEN,
            actual: buf.len(),
        };
        let fixed: [u8; IPV4_MIN_HEADER_LEN] = arr(buf, 0).ok_or(truncated)?;
        let [
            vihl,
            _tos,
            tl0,
            tl1,
            id0,
            id1,
            ff0,
            ff1,
            ttl,
            protocol,
            _c0,
            _c1,
            s0,
            s1,
            s2,
            s3,
            d0,
            d1,
            d2,
            d3,
        ] = fixed;
        let version = vihl >> 4;
        if version != 4 {
            return Err(PacketError::UnsupportedVersion(version));
        }
        let header_len = usize::from(vihl & 0x0f) * 4;
        if header_len < IPV4_MIN_HEADER_LEN {
            return Err(PacketError::BadHeaderLength(header_len));
        }
        if buf.len() < header_len {
            return Err(PacketError::TruncatedHeader {
                needed: header_len,
                actual: buf.len(),
            });
        }
        let total_len = usize::from(u16::from_be_bytes([tl0, tl1]));
        if total_len < header_len {
            return Err(PacketError::TotalLengthBelowHeader {
                total: total_len,
                header: header_len,
            });
        }
        if mode == Mode::Exact && total_len != buf.len() {
            return Err(PacketError::LengthMismatch {
                declared: total_len,
                actual: buf.len(),
            });
        }
        Ok(Self {
            buf,
            header_len,
            total_len,
            src: Ipv4Addr::new(s0, s1, s2, s3),
            dst: Ipv4Addr::new(d0, d1, d2, d3),
            ttl,
            protocol,
            flags_fragment: u16::from_be_bytes([ff0, ff1]),
            id: u16::from_be_bytes([id0, id1]),
        })
    }

    /// Source address.
    pub fn source(&self) -> Ipv4Addr {
        self.src
    }
    /// Destination address.
    pub fn destination(&self) -> Ipv4Addr {
        self.dst
    }
    /// Time To Live.
    pub fn ttl(&self) -> u8 {
        self.ttl
    }
    /// Protocol field.
    pub fn protocol(&self) -> u8 {
        self.protocol
    }
    /// Header length including options (IHL × 4).
    pub fn header_len(&self) -> usize {
        self.header_len
    }
    /// Total Length field.
    pub fn total_len(&self) -> usize {
        self.total_len
    }
    /// The header bytes including options.
    pub fn header(&self) -> &'a [u8] {
        self.buf.get(..self.header_len).unwrap_or_default()
    }
    /// Don't Fragment flag (ICMP-21: Fragmentation Needed only when set).
    pub fn dont_fragment(&self) -> bool {
        self.flags_fragment & 0x4000 != 0
    }
    /// Fragment information, `None` when the packet is not a fragment.
    pub fn fragment(&self) -> Option<Fragment> {
        let offset = self.flags_fragment & 0x1fff;
        let more = self.flags_fragment & 0x2000 != 0;
        (offset != 0 || more).then_some(Fragment {
            offset,
            more,
            id: u32::from(self.id),
        })
    }
    /// Whether the header checksum is correct. Routers drop packets where it is not
    /// (RFC 1812 §5.2.2).
    pub fn header_checksum_valid(&self) -> bool {
        verifies(self.header())
    }
}

/// A parsed IPv4 or IPv6 packet borrowing its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpPacket<'a> {
    V4(Ipv4Packet<'a>),
    V6(Ipv6Packet<'a>),
}

impl<'a> IpPacket<'a> {
    /// Parses one complete IP packet, as carried in a Context ID 0 datagram (R9484-43):
    /// version 4 or 6, complete header, length field equal to `buf.len()`, and (IPv6) an
    /// extension-header chain inside the packet. Fuzz target.
    pub fn parse(buf: &'a [u8]) -> Result<Self, PacketError> {
        Self::parse_mode(buf, Mode::Exact)
    }

    /// Parses a possibly truncated packet, as quoted in an ICMP error (ICMP-09/10/11):
    /// the header (and IPv6 extension headers) must be present, the rest may be cut.
    /// Used to inspect the invoking packet of received ICMP (R9484-61). Fuzz target.
    pub fn parse_quoted(buf: &'a [u8]) -> Result<Self, PacketError> {
        Self::parse_mode(buf, Mode::Quoted)
    }

    fn parse_mode(buf: &'a [u8], mode: Mode) -> Result<Self, PacketError> {
        let first = *buf.first().ok_or(PacketError::Empty)?;
        match first >> 4 {
            4 => Ipv4Packet::parse(buf, mode).map(Self::V4),
            6 => Ipv6Packet::parse(buf, mode).map(Self::V6),
            v => Err(PacketError::UnsupportedVersion(v)),
        }
    }

    /// 4 or 6.
    pub fn version(&self) -> u8 {
        match self {
            Self::V4(_) => 4,
            Self::V6(_) => 6,
        }
    }

    /// Source address (BCP 38 check, R9484-60; Time Exceeded destination, ICMP-06).
    pub fn source(&self) -> IpAddr {
        match self {
            Self::V4(p) => p.source().into(),
            Self::V6(p) => p.source().into(),
        }
    }

    /// Destination address (route lookup, R9484-36/46).
    pub fn destination(&self) -> IpAddr {
        match self {
            Self::V4(p) => p.destination().into(),
            Self::V6(p) => p.destination().into(),
        }
    }

    /// The upper-layer protocol used for scope and route filtering: the IPv4 Protocol
    /// field, or the IPv6 Next Header after walking extension headers (R9484-40).
    pub fn protocol(&self) -> u8 {
        match self {
            Self::V4(p) => p.protocol(),
            Self::V6(p) => p.upper_layer_protocol(),
        }
    }

    /// TTL (IPv4) or Hop Limit (IPv6).
    pub fn ttl(&self) -> u8 {
        match self {
            Self::V4(p) => p.ttl(),
            Self::V6(p) => p.hop_limit(),
        }
    }

    /// Bytes before the upper-layer header (IPv4 header with options, or IPv6 header with
    /// walked extension headers).
    pub fn header_len(&self) -> usize {
        match self {
            Self::V4(p) => p.header_len(),
            Self::V6(p) => p.upper_layer_offset(),
        }
    }

    /// Length the packet declares (IPv4 Total Length, or 40 + IPv6 Payload Length).
    pub fn declared_len(&self) -> usize {
        match self {
            Self::V4(p) => p.total_len(),
            Self::V6(p) => IPV6_HEADER_LEN + p.payload_len(),
        }
    }

    /// The bytes this view was parsed from.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Self::V4(p) => p.buf,
            Self::V6(p) => p.buf,
        }
    }

    /// Whether fewer bytes are present than the packet declares (quoted packets only).
    pub fn is_truncated(&self) -> bool {
        self.as_bytes().len() < self.declared_len()
    }

    /// Bytes after [`IpPacket::header_len`] up to the declared end (or the available end
    /// for a truncated quote). For a non-initial fragment these are fragment data.
    pub fn payload(&self) -> &'a [u8] {
        let buf = self.as_bytes();
        let end = self.declared_len().min(buf.len());
        buf.get(self.header_len()..end).unwrap_or_default()
    }

    /// Fragment information, if the packet is a fragment.
    pub fn fragment(&self) -> Option<Fragment> {
        match self {
            Self::V4(p) => p.fragment(),
            Self::V6(p) => p.fragment(),
        }
    }

    /// Whether the packet is a fragment other than the first (ICMP-16).
    pub fn is_non_initial_fragment(&self) -> bool {
        self.fragment().is_some_and(|f| !f.is_initial())
    }

    /// The ICMP protocol number of this packet's family (1 or 58).
    pub fn icmp_protocol(&self) -> u8 {
        match self {
            Self::V4(_) => IPPROTO_ICMP,
            Self::V6(_) => IPPROTO_ICMPV6,
        }
    }

    /// Whether the upper layer is ICMP of the packet's own family.
    pub fn is_icmp(&self) -> bool {
        self.protocol() == self.icmp_protocol()
    }

    /// The ICMP Type of an ICMP packet, when visible (not a non-initial fragment and at
    /// least one payload byte). Used by the ICMP-12/13 checks.
    pub fn icmp_type(&self) -> Option<u8> {
        if !self.is_icmp() || self.is_non_initial_fragment() {
            return None;
        }
        self.payload().first().copied()
    }
}

#[cfg(test)]
mod tests;
