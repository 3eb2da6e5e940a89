//! The address pools CONNECT-IP assignments come from (`--ip-pool CIDR`), sans-IO.
//!
//! Each pool is a prefix; the node keeps its first host address (the TUN's, the source of
//! the ICMP it generates) and never assigns it, nor the IPv4 network and broadcast
//! addresses. An assignment is an aligned block of the requested prefix length (at least
//! the pool's). Blocks are handed out round-robin from a cursor, so a client that comes
//! back does not get its previous address by default (R9484-59); blocks someone already
//! holds are skipped with the caller's `is_free` (the IpRegistry's lock-free lookup).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use masque_proto::connect_ip::{LocalAddrs, RequestedAddress};
use masque_proto::packet::{address_bits, host_bits_zero};

/// A pool prefix that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("`{0}` is not a CIDR prefix (address/length)")]
    Syntax(String),
    #[error("{addr}/{len}: host bits are set")]
    HostBits { addr: IpAddr, len: u8 },
    #[error("{addr}/{len}: an IPv4 pool needs at least 4 addresses (/30), an IPv6 one 2 (/127)")]
    TooSmall { addr: IpAddr, len: u8 },
    #[error("{a} overlaps {b}")]
    Overlap { a: String, b: String },
}

/// One prefix, e.g. `10.200.0.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl IpPrefix {
    /// Parses `addr/len`, host bits clear.
    pub fn parse(s: &str) -> Result<Self, PoolError> {
        let bad = || PoolError::Syntax(s.to_owned());
        let (a, l) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        if len > address_bits(&addr) {
            return Err(bad());
        }
        if !host_bits_zero(addr, len) {
            return Err(PoolError::HostBits { addr, len });
        }
        Ok(Self { addr, len })
    }

    fn bits(&self) -> u8 {
        address_bits(&self.addr)
    }

    fn start(&self) -> u128 {
        to_bits(self.addr)
    }

    fn end(&self) -> u128 {
        self.start() | host_mask(self.bits(), self.len)
    }

    fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.addr.is_ipv4()
            && (self.start()..=self.end()).contains(&to_bits(addr))
    }
}

impl std::fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl std::str::FromStr for IpPrefix {
    type Err = PoolError;
    fn from_str(s: &str) -> Result<Self, PoolError> {
        Self::parse(s)
    }
}

/// The pools and their round-robin cursors.
#[derive(Debug, Clone)]
pub struct AddressPools {
    pools: Vec<Pool>,
}

#[derive(Debug, Clone)]
struct Pool {
    prefix: IpPrefix,
    /// Offset (in addresses from the pool's start) where the next search begins.
    cursor: u128,
}

/// Most blocks one allocation examines (each costs one registry lookup): bounds the work a
/// request can cause in a huge, nearly full pool.
pub const MAX_PROBES: usize = 1 << 16;

impl AddressPools {
    /// Pools from prefixes (IPv4 at least /30, IPv6 at least /127; no overlaps).
    pub fn new(prefixes: &[IpPrefix]) -> Result<Self, PoolError> {
        for (i, a) in prefixes.iter().enumerate() {
            let min = if a.addr.is_ipv4() { 30 } else { 127 };
            if a.len > min {
                return Err(PoolError::TooSmall {
                    addr: a.addr,
                    len: a.len,
                });
            }
            if let Some(b) = prefixes[..i]
                .iter()
                .find(|b| b.contains(a.addr) || a.contains(b.addr))
            {
                return Err(PoolError::Overlap {
                    a: a.to_string(),
                    b: b.to_string(),
                });
            }
        }
        Ok(Self {
            pools: prefixes
                .iter()
                .map(|&prefix| Pool { prefix, cursor: 0 })
                .collect(),
        })
    }

    /// Whether no pool is configured (the node assigns nothing).
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    /// The pool prefixes.
    pub fn prefixes(&self) -> impl Iterator<Item = IpPrefix> + '_ {
        self.pools.iter().map(|p| p.prefix)
    }

    /// The node's own address per family: the first host of the first pool of the family.
    pub fn local_addrs(&self) -> LocalAddrs {
        let mut local = LocalAddrs::default();
        for p in &self.pools {
            match (p.prefix.addr, own_address(&p.prefix)) {
                (IpAddr::V4(_), IpAddr::V4(a)) if local.v4.is_none() => local.v4 = Some(a),
                (IpAddr::V6(_), IpAddr::V6(a)) if local.v6.is_none() => local.v6 = Some(a),
                _ => {}
            }
        }
        local
    }

    /// The next free block for `request`: the requested address's own block when it lies
    /// in a pool and is free, else the next free block of the family, round-robin. The
    /// block's prefix length is the requested one, or the pool's when the request asks
    /// for more than a pool holds. `is_free(addr, len)` says whether nobody holds any of
    /// the block. `None` when the family's pools are exhausted (answer with the all-zero
    /// refusal, R9484-33).
    pub fn allocate(
        &mut self,
        request: &RequestedAddress,
        mut is_free: impl FnMut(IpAddr, u8) -> bool,
    ) -> Option<(IpAddr, u8)> {
        let v4 = request.ip.is_ipv4();
        if !request.is_any()
            && let Some(pool) = self.pools.iter().find(|p| p.prefix.contains(request.ip))
        {
            let len = request.prefix_len.max(pool.prefix.len);
            let start = to_bits(request.ip) & !host_mask(pool.prefix.bits(), len);
            if usable(&pool.prefix, start, len) && is_free(from_bits(v4, start), len) {
                return Some((from_bits(v4, start), len));
            }
        }
        let mut probes = 0usize;
        for pool in self
            .pools
            .iter_mut()
            .filter(|p| p.prefix.addr.is_ipv4() == v4)
        {
            let len = request.prefix_len.max(pool.prefix.len);
            let block = host_mask(pool.prefix.bits(), len) + 1;
            let span = pool.prefix.end() - pool.prefix.start() + 1;
            let blocks = span / block;
            let first = (pool.cursor / block) % blocks;
            for i in 0..blocks {
                if probes >= MAX_PROBES {
                    return None;
                }
                let offset = ((first + i) % blocks) * block;
                let start = pool.prefix.start() + offset;
                if !usable(&pool.prefix, start, len) {
                    continue;
                }
                probes += 1;
                if is_free(from_bits(v4, start), len) {
                    pool.cursor = offset + block;
                    return Some((from_bits(v4, start), len));
                }
            }
        }
        None
    }
}

/// Whether the block `start/len` of `pool` avoids the reserved addresses: the pool's first
/// address (IPv4 network; IPv6 Subnet-Router anycast), its first host (the node's own) and,
/// for IPv4, its last (broadcast).
fn usable(pool: &IpPrefix, start: u128, len: u8) -> bool {
    let end = start | host_mask(pool.bits(), len);
    let first = pool.start();
    let reserved_low = first + 1;
    if start <= reserved_low {
        return false;
    }
    !(pool.addr.is_ipv4() && end >= pool.end())
}

/// The node's own address in `pool`: its first host.
pub fn own_address(pool: &IpPrefix) -> IpAddr {
    from_bits(pool.addr.is_ipv4(), pool.start() + 1)
}

fn host_mask(bits: u8, len: u8) -> u128 {
    let host = u32::from(bits.saturating_sub(len));
    if host == 0 {
        0
    } else {
        u128::MAX >> (128 - host)
    }
}

fn to_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_bits(v4: bool, b: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(b as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(b))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn pools(p: &[&str]) -> AddressPools {
        let prefixes: Vec<IpPrefix> = p.iter().map(|s| s.parse().unwrap()).collect();
        AddressPools::new(&prefixes).unwrap()
    }

    fn any(v4: bool, len: u8) -> RequestedAddress {
        RequestedAddress {
            request_id: 1,
            ip: if v4 {
                Ipv4Addr::UNSPECIFIED.into()
            } else {
                Ipv6Addr::UNSPECIFIED.into()
            },
            prefix_len: len,
        }
    }

    proptest::proptest! {
        /// Whatever the pool, the requests and what others hold: a block is aligned,
        /// inside its pool, never the node's own address nor (IPv4) the network or
        /// broadcast address, never one `is_free` refused, and never handed out twice
        /// while held; allocation stops only when no usable free block remains.
        #[test]
        fn prop_allocations_are_valid_and_unique(
            pool_len in 24u8..=30,
            lens in proptest::collection::vec(24u8..=32, 1..80),
            taken in proptest::collection::btree_set(0u8..=255, 0..40),
        ) {
            let base = u32::from(Ipv4Addr::new(10, 9, 0, 0));
            let prefix = IpPrefix { addr: IpAddr::V4(Ipv4Addr::from(base)), len: pool_len };
            let mut pools = AddressPools::new(&[prefix]).unwrap();
            let mut held: Vec<(u32, u32)> = taken
                .iter()
                .map(|&o| (base + u32::from(o), base + u32::from(o)))
                .collect();
            let own = base + 1;
            let last = base | (u32::MAX >> pool_len);
            for len in lens {
                let overlaps = |a: u32, l: u8, held: &[(u32, u32)]| {
                    let end = a | (u32::MAX.checked_shr(u32::from(l)).unwrap_or(0));
                    held.iter().any(|&(s, e)| s <= end && a <= e)
                };
                let got = pools.allocate(&any(true, len), |a, l| {
                    let IpAddr::V4(a) = a else { return false };
                    !overlaps(u32::from(a), l, &held)
                });
                let Some((IpAddr::V4(a), l)) = got else {
                    // Refused: no usable, free, aligned block of that length is left.
                    let l = len.max(pool_len);
                    let size = 1u32 << (32 - u32::from(l));
                    let free = (base..=last).step_by(size as usize).any(|s| {
                        usable(&prefix, u128::from(s), l) && !overlaps(s, l, &held)
                    });
                    proptest::prop_assert!(!free, "refused with a free /{} left", l);
                    continue;
                };
                let a = u32::from(a);
                let end = a | (u32::MAX.checked_shr(u32::from(l)).unwrap_or(0));
                proptest::prop_assert_eq!(l, len.max(pool_len));
                proptest::prop_assert!(host_bits_zero(IpAddr::V4(a.into()), l));
                proptest::prop_assert!(a > own && end < last && a >= base);
                proptest::prop_assert!(!overlaps(a, l, &held), "handed out a held block");
                held.push((a, end));
            }
        }
    }

    #[test]
    fn parses_and_rejects_prefixes() {
        assert_eq!(
            IpPrefix::parse("10.200.0.0/24").unwrap().to_string(),
            "10.200.0.0/24"
        );
        assert!(matches!(
            IpPrefix::parse("10.200.0.1/24"),
            Err(PoolError::HostBits { .. })
        ));
        assert!(matches!(
            IpPrefix::parse("10.200.0.0"),
            Err(PoolError::Syntax(_))
        ));
        assert!(matches!(
            IpPrefix::parse("10.0.0.0/33"),
            Err(PoolError::Syntax(_))
        ));
        let p = |s: &str| s.parse::<IpPrefix>().unwrap();
        assert!(matches!(
            AddressPools::new(&[p("10.0.0.0/31")]),
            Err(PoolError::TooSmall { .. })
        ));
        assert!(matches!(
            AddressPools::new(&[p("10.0.0.0/16"), p("10.0.4.0/24")]),
            Err(PoolError::Overlap { .. })
        ));
    }

    #[test]
    fn every_usable_v4_host_once_then_exhausted() {
        let mut pools = pools(&["10.200.0.0/29"]);
        let mut held = HashSet::new();
        while let Some((a, len)) = pools.allocate(&any(true, 32), |a, _| !held.contains(&a)) {
            assert_eq!(len, 32);
            assert!(held.insert(a), "{a} handed out twice");
        }
        // .0 network, .1 node, .7 broadcast are never assigned: .2 to .6 are.
        let mut got: Vec<_> = held.iter().map(|a| a.to_string()).collect();
        got.sort();
        assert_eq!(
            got,
            [
                "10.200.0.2",
                "10.200.0.3",
                "10.200.0.4",
                "10.200.0.5",
                "10.200.0.6"
            ]
        );
        assert_eq!(pools.local_addrs().v4, Some(Ipv4Addr::new(10, 200, 0, 1)));
    }

    #[test]
    fn round_robin_does_not_hand_back_a_released_address_at_once() {
        let mut pools = pools(&["10.200.0.0/24"]);
        let first = pools.allocate(&any(true, 32), |_, _| true).unwrap();
        // Released (free again), yet the next allocation moves on.
        let second = pools.allocate(&any(true, 32), |_, _| true).unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn a_requested_free_address_is_honoured_else_another() {
        let mut pools = pools(&["10.200.0.0/24"]);
        let want = RequestedAddress {
            request_id: 3,
            ip: "10.200.0.77".parse().unwrap(),
            prefix_len: 32,
        };
        assert_eq!(
            pools.allocate(&want, |_, _| true),
            Some(("10.200.0.77".parse().unwrap(), 32))
        );
        let taken: IpAddr = "10.200.0.77".parse().unwrap();
        let other = pools.allocate(&want, |a, _| a != taken).unwrap();
        assert_ne!(other.0, taken);
        // The node's own address is never granted, even when asked for.
        let own = RequestedAddress {
            ip: "10.200.0.1".parse().unwrap(),
            ..want
        };
        assert_ne!(pools.allocate(&own, |_, _| true).unwrap().0, own.ip);
    }

    #[test]
    fn blocks_are_aligned_and_v6_works() {
        let mut pools = pools(&["10.200.0.0/24", "fd00:200::/64"]);
        let (a, len) = pools.allocate(&any(true, 28), |_, _| true).unwrap();
        assert_eq!(len, 28);
        assert!(host_bits_zero(a, 28));
        assert_ne!(
            a,
            "10.200.0.0".parse::<IpAddr>().unwrap(),
            "the node's block is skipped"
        );
        let (b, len) = pools.allocate(&any(false, 128), |_, _| true).unwrap();
        assert_eq!(len, 128);
        assert_eq!(b, "fd00:200::2".parse::<IpAddr>().unwrap());
        assert_eq!(pools.local_addrs().v6, Some("fd00:200::1".parse().unwrap()));
        // A request for more than a pool holds gets the pool's length, here a /24 that
        // would hold the node's own address: nothing.
        assert_eq!(pools.allocate(&any(true, 8), |_, _| true), None);
        // No pool of the family: nothing.
        let mut v4_only = super::tests::pools(&["10.0.0.0/24"]);
        assert_eq!(v4_only.allocate(&any(false, 128), |_, _| true), None);
    }
}
