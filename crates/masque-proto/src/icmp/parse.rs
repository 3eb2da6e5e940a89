//! Parsing and verification of received ICMP messages (ICMP-01, ICMP-23, R9484-52/61).

use std::net::IpAddr;

use super::*;
use crate::packet::{Checksum, IPPROTO_ICMPV6, IpPacket, PacketError, verifies};

/// A received ICMP message whose checksum verified (ICMP-01).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpMessage<'a> {
    /// Whether this is ICMPv6.
    pub is_v6: bool,
    /// Type.
    pub ty: u8,
    /// Code.
    pub code: u8,
    /// The 32-bit word after the checksum (MTU, identifier/sequence, pointer, unused).
    pub word: u32,
    /// Everything after the 8-byte header (invoking packet for errors, echo data).
    pub body: &'a [u8],
}

impl<'a> IcmpMessage<'a> {
    /// Parses and verifies the ICMP message carried by `packet` (ICMP-01): protocol must
    /// be ICMP of the family, the packet unfragmented and complete, the checksum correct
    /// (ICMPv6 with the pseudo-header of the packet's addresses). Fuzz target together
    /// with [`IpPacket::parse`].
    pub fn parse(packet: &IpPacket<'a>) -> Result<Self, IcmpError> {
        if !packet.is_icmp() {
            return Err(IcmpError::NotIcmp(packet.protocol()));
        }
        if packet.fragment().is_some() || packet.is_truncated() {
            return Err(IcmpError::Incomplete);
        }
        let msg = packet.payload();
        let header: [u8; 8] = msg
            .get(..8)
            .and_then(|h| h.try_into().ok())
            .ok_or(IcmpError::TooShort(msg.len()))?;
        let ok = match (packet.source(), packet.destination()) {
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let len = u32::try_from(msg.len()).map_err(|_| IcmpError::Incomplete)?;
                Checksum::new()
                    .add_ipv6_pseudo_header(&s, &d, len, IPPROTO_ICMPV6)
                    .add_bytes(msg)
                    .sum()
                    == 0xffff
            }
            _ => verifies(msg),
        };
        if !ok {
            return Err(IcmpError::BadChecksum);
        }
        let [ty, code, _, _, w0, w1, w2, w3] = header;
        Ok(Self {
            is_v6: matches!(packet, IpPacket::V6(_)),
            ty,
            code,
            word: u32::from_be_bytes([w0, w1, w2, w3]),
            body: msg.get(8..).unwrap_or_default(),
        })
    }

    /// Whether this is an error message (ICMP-12 classification).
    pub fn is_error(&self) -> bool {
        if self.is_v6 {
            is_icmpv6_error(self.ty)
        } else {
            is_icmpv4_error(self.ty)
        }
    }

    /// For error messages: the quoted invoking packet (possibly cut), for matching it to
    /// a client's scope (R9484-61) or upper layer (ICMP-23). `None` for other types.
    pub fn invoking_packet(&self) -> Option<Result<IpPacket<'a>, PacketError>> {
        self.is_error().then(|| IpPacket::parse_quoted(self.body))
    }

    /// Identifier and sequence number of an Echo Request / Reply.
    pub fn echo_id_seq(&self) -> Option<(u16, u16)> {
        let echo = if self.is_v6 {
            matches!(self.ty, ICMPV6_ECHO_REQUEST | ICMPV6_ECHO_REPLY)
        } else {
            matches!(self.ty, ICMPV4_ECHO_REQUEST | ICMPV4_ECHO_REPLY)
        };
        echo.then_some(((self.word >> 16) as u16, self.word as u16))
    }

    /// Advertised MTU of ICMPv6 Packet Too Big or ICMPv4 Fragmentation Needed.
    pub fn mtu(&self) -> Option<u32> {
        match (self.is_v6, self.ty, self.code) {
            (true, ICMPV6_PACKET_TOO_BIG, _) => Some(self.word),
            (false, ICMPV4_DEST_UNREACHABLE, ICMPV4_CODE_FRAG_NEEDED) => Some(self.word & 0xffff),
            _ => None,
        }
    }
}

/// Parses `bytes` as one IP packet carrying a verified ICMP message. Fuzz target.
pub fn parse_icmp_packet(bytes: &[u8]) -> Result<(IpPacket<'_>, IcmpMessage<'_>), IcmpError> {
    let packet = IpPacket::parse(bytes)?;
    let msg = IcmpMessage::parse(&packet)?;
    Ok((packet, msg))
}
