//! IPv6 header view and extension-header walk (R9484-39, R9484-40).

use std::net::Ipv6Addr;

use super::{
    Fragment, IPV6_HEADER_LEN, Mode, NH_AH, NH_FRAGMENT, PacketError, arr, be16, be32,
    is_walked_ipv6_extension_header,
};

/// View of an IPv6 packet with its extension-header chain walked (R9484-40).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<'a> {
    pub(super) buf: &'a [u8],
    payload_len: usize,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    next_header: u8,
    upper_protocol: u8,
    upper_offset: usize,
    fragment: Option<Fragment>,
}

impl<'a> Ipv6Packet<'a> {
    pub(super) fn parse(buf: &'a [u8], mode: Mode) -> Result<Self, PacketError> {
        let fixed: [u8; 8] = arr(buf, 0).ok_or(PacketError::TruncatedHeader {
            needed: IPV6_HEADER_LEN,
            actual: buf.len(),
        })?;
        let version = fixed[0] >> 4;
        if version != 6 {
            return Err(PacketError::UnsupportedVersion(version));
        }
        let (Some(src), Some(dst)) = (arr::<16>(buf, 8), arr::<16>(buf, 24)) else {
            return Err(PacketError::TruncatedHeader {
                needed: IPV6_HEADER_LEN,
                actual: buf.len(),
            });
        };
        let [_, _, _, _, pl0, pl1, next_header, hop_limit] = fixed;
        let payload_len = usize::from(u16::from_be_bytes([pl0, pl1]));
        let declared = IPV6_HEADER_LEN + payload_len;
        if mode == Mode::Exact && declared != buf.len() {
            return Err(PacketError::LengthMismatch {
                declared,
                actual: buf.len(),
            });
        }
        let end = declared.min(buf.len());
        let (upper_protocol, upper_offset, fragment) =
            walk_extension_headers(buf.get(..end).unwrap_or_default(), next_header)?;
        Ok(Self {
            buf,
            payload_len,
            src: Ipv6Addr::from(src),
            dst: Ipv6Addr::from(dst),
            hop_limit,
            next_header,
            upper_protocol,
            upper_offset,
            fragment,
        })
    }

    /// Source address.
    pub fn source(&self) -> Ipv6Addr {
        self.src
    }
    /// Destination address (of this hop: a Routing header is not interpreted).
    pub fn destination(&self) -> Ipv6Addr {
        self.dst
    }
    /// Hop Limit.
    pub fn hop_limit(&self) -> u8 {
        self.hop_limit
    }
    /// Next Header of the fixed header (possibly an extension header).
    pub fn next_header(&self) -> u8 {
        self.next_header
    }
    /// Payload Length field.
    pub fn payload_len(&self) -> usize {
        self.payload_len
    }
    /// The first Next Header value that is not a walked extension header (R9484-40):
    /// the upper-layer protocol, ESP (50) or No Next Header (59).
    pub fn upper_layer_protocol(&self) -> u8 {
        self.upper_protocol
    }
    /// Offset of the upper-layer header (fixed header plus walked extension headers).
    pub fn upper_layer_offset(&self) -> usize {
        self.upper_offset
    }
    /// Fragment header contents, if the chain has one.
    pub fn fragment(&self) -> Option<Fragment> {
        self.fragment
    }
}

/// Walks the IPv6 extension-header chain of `buf` (the packet cut at its declared end)
/// starting with the fixed header's Next Header (R9484-40). Returns the upper-layer
/// protocol, its offset and any fragment header. ESP, No Next Header and unknown values
/// end the walk; so does a non-initial fragment, whose data is not a header.
fn walk_extension_headers(
    buf: &[u8],
    mut next_header: u8,
) -> Result<(u8, usize, Option<Fragment>), PacketError> {
    let mut offset = IPV6_HEADER_LEN;
    let mut fragment = None;
    // Each walked header is at least 8 bytes, so the loop ends within len/8 rounds.
    while is_walked_ipv6_extension_header(next_header) {
        let truncated = PacketError::TruncatedExtensionHeader {
            next_header,
            offset,
        };
        let [nh, len_byte]: [u8; 2] = arr(buf, offset).ok_or(truncated)?;
        let header_len = match next_header {
            NH_FRAGMENT => 8,
            NH_AH => (usize::from(len_byte) + 2) * 4,
            _ => (usize::from(len_byte) + 1) * 8,
        };
        let end = offset.checked_add(header_len).ok_or(truncated)?;
        let header = buf.get(offset..end).ok_or(truncated)?;
        if next_header == NH_FRAGMENT {
            let (Some(off_flags), Some(id)) = (be16(header, 2), be32(header, 4)) else {
                return Err(truncated);
            };
            let frag = Fragment {
                offset: off_flags >> 3,
                more: off_flags & 1 != 0,
                id,
            };
            fragment = Some(frag);
            if !frag.is_initial() {
                return Ok((nh, end, fragment));
            }
        }
        next_header = nh;
        offset = end;
    }
    Ok((next_header, offset, fragment))
}
