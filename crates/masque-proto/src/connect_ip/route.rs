//! ROUTE_ADVERTISEMENT (0x03) value: IP Address Ranges and their rules (R9484-35..40).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::BufMut;

use super::{ConnectIpError, address_len, ip_bits, ip_version, put_address};
use crate::packet::{IPPROTO_ICMP, IPPROTO_ICMPV6, is_walked_ipv6_extension_header};
use crate::reader::Reader;

/// Which ordering rule of R9484-37 a ROUTE_ADVERTISEMENT broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOrder {
    /// (1) IP Version of the earlier range is greater.
    Version,
    /// (2) Same version, IP Protocol of the earlier range is greater.
    Protocol,
    /// (3) Same version and protocol, End(A) ≥ Start(B): unsorted, touching or overlapping.
    Overlap,
}

/// One *IP Address Range* of ROUTE_ADVERTISEMENT (R9484-35..38).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpAddressRange {
    /// First address, inclusive.
    pub start: IpAddr,
    /// Last address, inclusive; same family as `start`, ≥ `start` (R9484-35).
    pub end: IpAddr,
    /// 0 = any protocol; otherwise the allowed outermost upper-layer protocol (R9484-40).
    pub ipproto: u8,
}

impl IpAddressRange {
    /// 4 or 6 (the family of `start`).
    pub fn version(&self) -> u8 {
        ip_version(&self.start)
    }

    /// Whether `addr` lies between `start` and `end` (same family required).
    pub fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.start.is_ipv4()
            && self.start.is_ipv4() == self.end.is_ipv4()
            && ip_bits(&self.start) <= ip_bits(&addr)
            && ip_bits(&addr) <= ip_bits(&self.end)
    }

    /// Whether a packet to `destination` with upper-layer `protocol` (after extension
    /// headers, R9484-40) is routed by this range: protocol 0 means any protocol, and ICMP
    /// of the family is always allowed (R9484-10, R9484-35 field table).
    pub fn matches(&self, destination: IpAddr, protocol: u8) -> bool {
        let icmp = if destination.is_ipv4() {
            IPPROTO_ICMP
        } else {
            IPPROTO_ICMPV6
        };
        self.contains(destination)
            && (self.ipproto == 0 || self.ipproto == protocol || protocol == icmp)
    }

    fn key(&self) -> (u8, u8, u128, u128) {
        (
            self.version(),
            self.ipproto,
            ip_bits(&self.start),
            ip_bits(&self.end),
        )
    }
}

/// Sorts ranges into the order R9484-37 requires (version, protocol, start). The result
/// still fails [`validate_route_advertisement`] if ranges of the same version and
/// protocol touch or overlap; merge those first.
pub fn sort_routes(ranges: &mut [IpAddressRange]) {
    ranges.sort_by_key(IpAddressRange::key);
}

/// Decodes a ROUTE_ADVERTISEMENT value (R9484-35..38). An empty value withdraws every
/// route (R9484-36). Fuzz target.
pub fn decode_route_advertisement(value: &[u8]) -> Result<Vec<IpAddressRange>, ConnectIpError> {
    let mut r = Reader::new(value);
    let mut out = Vec::new();
    while !r.is_empty() {
        let entry_start = r.remaining();
        let trailing = |_| ConnectIpError::TrailingBytes { len: entry_start };
        let (start, end) = match r.u8().map_err(trailing)? {
            4 => (
                IpAddr::V4(Ipv4Addr::from(r.array::<4>().map_err(trailing)?)),
                IpAddr::V4(Ipv4Addr::from(r.array::<4>().map_err(trailing)?)),
            ),
            6 => (
                IpAddr::V6(Ipv6Addr::from(r.array::<16>().map_err(trailing)?)),
                IpAddr::V6(Ipv6Addr::from(r.array::<16>().map_err(trailing)?)),
            ),
            v => return Err(ConnectIpError::UnsupportedIpVersion(v)),
        };
        let ipproto = r.u8().map_err(trailing)?;
        out.push(IpAddressRange {
            start,
            end,
            ipproto,
        });
    }
    validate_route_advertisement(&out)?;
    Ok(out)
}

/// Checks a route list against R9484-35 (same family, Start ≤ End), R9484-37 (ordering;
/// adjacent pairs suffice because the order is transitive) and R9484-38 (no non-zero
/// protocol range overlapping a protocol-0 range of the same version; checking is
/// optional in the RFC, we always do it).
pub fn validate_route_advertisement(ranges: &[IpAddressRange]) -> Result<(), ConnectIpError> {
    for r in ranges {
        if r.start.is_ipv4() != r.end.is_ipv4() {
            return Err(ConnectIpError::MixedFamilyRange);
        }
        if ip_bits(&r.start) > ip_bits(&r.end) {
            return Err(ConnectIpError::RangeStartAfterEnd {
                start: r.start,
                end: r.end,
            });
        }
    }
    for (i, pair) in ranges.windows(2).enumerate() {
        let [a, b] = pair else { continue };
        let rule = if a.version() != b.version() {
            (a.version() > b.version()).then_some(RouteOrder::Version)
        } else if a.ipproto != b.ipproto {
            (a.ipproto > b.ipproto).then_some(RouteOrder::Protocol)
        } else {
            (ip_bits(&a.end) >= ip_bits(&b.start)).then_some(RouteOrder::Overlap)
        };
        if let Some(rule) = rule {
            return Err(ConnectIpError::RouteOrder { index: i + 1, rule });
        }
    }
    // R9484-38. Ranges are now sorted by (version, protocol, start), so the protocol-0
    // ranges of each version form a sorted, disjoint run: binary search it.
    for version in [4u8, 6] {
        let any: Vec<(u128, u128)> = ranges
            .iter()
            .filter(|r| r.version() == version && r.ipproto == 0)
            .map(|r| (ip_bits(&r.start), ip_bits(&r.end)))
            .collect();
        if any.is_empty() {
            continue;
        }
        for (index, r) in ranges.iter().enumerate() {
            if r.version() != version || r.ipproto == 0 {
                continue;
            }
            let (s, e) = (ip_bits(&r.start), ip_bits(&r.end));
            let first_not_before = any.partition_point(|&(_, end)| end < s);
            if any
                .get(first_not_before)
                .is_some_and(|&(start, _)| start <= e)
            {
                return Err(ConnectIpError::ProtocolZeroOverlap { index });
            }
        }
    }
    Ok(())
}

/// Optional policy check (R9484-39, a MAY): rejects IPv6 ranges whose protocol is an
/// extension header that the packet walk skips (R9484-40), since such a route could
/// never match. Protocol 0 ("any") and ESP (50, matched as the upper layer) are allowed.
/// IPv4 has no extension headers, so IPv4 ranges are not checked.
pub fn check_route_protocols(ranges: &[IpAddressRange]) -> Result<(), ConnectIpError> {
    match ranges
        .iter()
        .find(|r| r.start.is_ipv6() && r.ipproto != 0 && is_walked_ipv6_extension_header(r.ipproto))
    {
        Some(r) => Err(ConnectIpError::ExtensionHeaderProtocol(r.ipproto)),
        None => Ok(()),
    }
}

/// Encoded length of a ROUTE_ADVERTISEMENT value.
pub fn route_advertisement_len(entries: &[IpAddressRange]) -> usize {
    entries.iter().map(|e| 2 + 2 * address_len(&e.start)).sum()
}

/// Validates (R9484-35/37/38) and appends a ROUTE_ADVERTISEMENT value. Use
/// [`sort_routes`] first if the list is not already in order. Nothing is written on error.
pub fn encode_route_advertisement<B: BufMut + ?Sized>(
    entries: &[IpAddressRange],
    buf: &mut B,
) -> Result<(), ConnectIpError> {
    validate_route_advertisement(entries)?;
    for e in entries {
        buf.put_u8(e.version());
        put_address(&e.start, buf);
        put_address(&e.end, buf);
        buf.put_u8(e.ipproto);
    }
    Ok(())
}
