//! Address prefix helpers: prefix length bounds and host bits (R9484-07, R9484-25) and
//! prefix membership for the BCP 38 source check (R9484-60).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Number of address bits of the family: 32 or 128 (prefix length bound, R9484-25).
pub const fn address_bits(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `addr` with all bits beyond `prefix_len` cleared; `None` when `prefix_len` exceeds
/// the family's width.
pub fn mask_to_prefix(addr: IpAddr, prefix_len: u8) -> Option<IpAddr> {
    if prefix_len > address_bits(&addr) {
        return None;
    }
    Some(match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    })
}

/// Whether every bit of `addr` beyond `prefix_len` is zero (R9484-07, R9484-25).
/// `false` when `prefix_len` is too long for the family.
pub fn host_bits_zero(addr: IpAddr, prefix_len: u8) -> bool {
    mask_to_prefix(addr, prefix_len) == Some(addr)
}

/// Whether `addr` lies in `prefix/prefix_len` (same family required). This is the BCP 38
/// source check the session applies with the prefixes it assigned (R9484-60) and the
/// scope check for a target prefix (R9484-09).
pub fn prefix_contains(prefix: IpAddr, prefix_len: u8, addr: IpAddr) -> bool {
    match (
        mask_to_prefix(prefix, prefix_len),
        mask_to_prefix(addr, prefix_len),
    ) {
        (Some(p), Some(a)) => p == a && prefix.is_ipv4() == addr.is_ipv4(),
        _ => false,
    }
}
