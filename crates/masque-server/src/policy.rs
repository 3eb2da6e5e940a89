//! Which target addresses a proxy may reach (R9298-53): never multicast,
//! broadcast or unspecified; and, unless `allow_private` (tests, private
//! deployments), not its own addresses, loopback, link-local, private, CGNAT or
//! unique-local ranges either.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Address policy of a node.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Allow loopback, private (RFC 1918), CGNAT, unique-local and link-local
    /// targets (for testing and private deployments).
    pub allow_private: bool,
    /// The node's own addresses (never allowed).
    pub own_addresses: Vec<IpAddr>,
}

impl AddressPolicy {
    pub fn allows(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        if always_forbidden(addr) {
            return false;
        }
        let own = self.own_addresses.iter().any(|a| canonical(*a) == addr);
        self.allow_private || !(own || private(addr))
    }
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

fn always_forbidden(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
    }
}

fn private(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || in_v4(a, Ipv4Addr::new(100, 64, 0, 0), 10)
                || in_v4(a, Ipv4Addr::new(0, 0, 0, 0), 8)
        }
        IpAddr::V6(a) => {
            a.is_loopback()
                || in_v6(a, Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7)
                || in_v6(a, Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10)
        }
    }
}

fn in_v4(a: Ipv4Addr, net: Ipv4Addr, len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(a) & mask == u32::from(net) & mask
}

fn in_v6(a: Ipv6Addr, net: Ipv6Addr, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    u128::from(a) & mask == u128::from(net) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// R9298-53: loopback, link-local, private, multicast, broadcast and the
    /// node's own addresses are refused by default.
    #[test]
    fn r9298_53_default_policy() {
        let p = AddressPolicy {
            allow_private: false,
            own_addresses: vec![ip("203.0.113.7")],
        };
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::",
            "::ffff:127.0.0.1",
            "203.0.113.7",
            "::ffff:203.0.113.7",
        ] {
            assert!(!p.allows(ip(bad)), "{bad} must be refused");
        }
        for good in ["192.0.2.1", "8.8.8.8", "2001:db8::1", "::ffff:8.8.8.8"] {
            assert!(p.allows(ip(good)), "{good} must be allowed");
        }
    }

    /// `allow_private` opens private ranges (and the node's own addresses, for
    /// loopback testing) but never multicast, broadcast or unspecified.
    #[test]
    fn allow_private_keeps_hard_limits() {
        let p = AddressPolicy {
            allow_private: true,
            own_addresses: vec![ip("127.0.0.1")],
        };
        assert!(p.allows(ip("10.0.0.1")));
        assert!(p.allows(ip("::1")));
        assert!(p.allows(ip("127.0.0.1")));
        assert!(!p.allows(ip("224.0.0.1")));
        assert!(!p.allows(ip("0.0.0.0")));
    }
}
