//! TTL / Hop Limit decrement (R9484-47, ICMP-20) and the IPv4 header checksum.

use super::{Checksum, IPV4_MIN_HEADER_LEN, IPV6_HEADER_LEN, PacketError, incremental_update};

/// Outcome of [`decrement_ttl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlOutcome {
    /// The packet may be forwarded; it now carries this TTL / Hop Limit.
    Forward(u8),
    /// TTL / Hop Limit was 0 or 1: drop the packet and answer with ICMP Time Exceeded
    /// code 0 (R9484-47, ICMP-20). The packet bytes are left unchanged for quoting.
    Expired,
}

/// Router duty on encapsulation (R9484-47, ICMP-20): decrements the IPv4 TTL or IPv6 Hop
/// Limit in place. The IPv4 header checksum is updated incrementally (RFC 1624), so a
/// valid checksum stays valid. Only the fixed header is checked; call it on a packet
/// already accepted by [`IpPacket::parse`](super::IpPacket::parse).
#[must_use = "an expired packet must be dropped and answered with Time Exceeded"]
pub fn decrement_ttl(packet: &mut [u8]) -> Result<TtlOutcome, PacketError> {
    let first = *packet.first().ok_or(PacketError::Empty)?;
    let (needed, ttl_at) = match first >> 4 {
        4 => ((usize::from(first & 0x0f) * 4).max(IPV4_MIN_HEADER_LEN), 8),
        6 => (IPV6_HEADER_LEN, 7),
        v => return Err(PacketError::UnsupportedVersion(v)),
    };
    if packet.len() < needed {
        return Err(PacketError::TruncatedHeader {
            needed,
            actual: packet.len(),
        });
    }
    if ttl_at == 8 {
        let words = packet
            .get_mut(8..12)
            .and_then(|s| <&mut [u8; 4]>::try_from(s).ok());
        let Some([ttl, protocol, c0, c1]) = words else {
            return Err(PacketError::TruncatedHeader { needed, actual: 0 });
        };
        if *ttl <= 1 {
            return Ok(TtlOutcome::Expired);
        }
        let old_word = u16::from_be_bytes([*ttl, *protocol]);
        *ttl -= 1;
        let new_word = u16::from_be_bytes([*ttl, *protocol]);
        let sum = incremental_update(u16::from_be_bytes([*c0, *c1]), old_word, new_word);
        [*c0, *c1] = sum.to_be_bytes();
        Ok(TtlOutcome::Forward(*ttl))
    } else {
        let Some(hop_limit) = packet.get_mut(ttl_at) else {
            return Err(PacketError::TruncatedHeader { needed, actual: 0 });
        };
        if *hop_limit <= 1 {
            return Ok(TtlOutcome::Expired);
        }
        *hop_limit -= 1;
        Ok(TtlOutcome::Forward(*hop_limit))
    }
}

/// IPv4 header checksum of `header` (its checksum field, bytes 10–11, is skipped).
pub fn ipv4_header_checksum(header: &[u8]) -> u16 {
    let mut c = Checksum::new();
    c.add_bytes(header.get(..10).unwrap_or(header));
    c.add_bytes(header.get(12..).unwrap_or_default());
    c.finish()
}

/// Computes and stores the IPv4 header checksum of the header at the front of `packet`.
pub fn fill_ipv4_header_checksum(packet: &mut [u8]) -> Result<(), PacketError> {
    let first = *packet.first().ok_or(PacketError::Empty)?;
    if first >> 4 != 4 {
        return Err(PacketError::UnsupportedVersion(first >> 4));
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < IPV4_MIN_HEADER_LEN {
        return Err(PacketError::BadHeaderLength(header_len));
    }
    let actual = packet.len();
    let header = packet
        .get_mut(..header_len)
        .ok_or(PacketError::TruncatedHeader {
            needed: header_len,
            actual,
        })?;
    let sum = ipv4_header_checksum(header);
    if let Some(field) = header.get_mut(10..12) {
        field.copy_from_slice(&sum.to_be_bytes());
    }
    Ok(())
}
