//! Operator rules: `CIDR[:PORTS]` (`--allow-target`, `--deny-target`).
//!
//! Forms: `10.0.0.0/8`, `10.0.0.0/8:53`, `192.0.2.1:1000-2000`, `2001:db8::/32`,
//! `2001:db8::/32:53,443`, `[2001:db8::1]:53`, `[2001:db8::/32]:53`, `::1`.
//! A bare address is a /32 (IPv4) or /128 (IPv6). An IPv6 address or
//! network without a prefix length takes ports only in brackets. PORTS is a
//! comma-separated list of ports and inclusive ranges (`53`, `1000-2000`,
//! `53,443`); no PORTS means every port. Host bits set below the prefix
//! length are an error (`10.0.0.1/8` is likely a typo).

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    str::FromStr,
};

/// An address range: a network address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// A range; `None` when `len` is too long for the family or host bits are set.
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let c = Self { addr, len };
        (len <= max_len(addr) && masked(addr, len) == addr).then_some(c)
    }

    pub(crate) const fn new_unchecked(addr: IpAddr, len: u8) -> Self {
        Self { addr, len }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `ip` is in the range (never across address families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                masked(ip, self.len) == self.addr
            }
            _ => false,
        }
    }
}

fn max_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn masked(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Cidr {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Self, RuleError> {
        let bad = || RuleError(format!("{s:?}: not an address or CIDR range"));
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => {
                let addr: IpAddr = a.parse().map_err(|_| bad())?;
                let len: u8 = l.parse().map_err(|_| bad())?;
                (addr, len)
            }
            None => {
                let addr: IpAddr = s.parse().map_err(|_| bad())?;
                (addr, max_len(addr))
            }
        };
        if len > max_len(addr) {
            return Err(RuleError(format!("{s:?}: prefix length too long")));
        }
        // `::ffff:10.0.0.0/104` is `10.0.0.0/8`: targets are judged as IPv4.
        let (addr, len) = match addr {
            IpAddr::V6(a) if len >= 96 && a.to_ipv4_mapped().is_some() => {
                (IpAddr::V4(a.to_ipv4_mapped().unwrap_or(0.into())), len - 96)
            }
            a => (a, len),
        };
        Cidr::new(addr, len).ok_or_else(|| {
            RuleError(format!(
                "{s:?}: host bits set (did you mean {}/{len}?)",
                masked(addr, len)
            ))
        })
    }
}

/// A malformed `CIDR[:PORTS]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(String);

/// One `--allow-target` / `--deny-target` rule: a range and its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRule {
    pub net: Cidr,
    /// Inclusive port ranges; empty: every port.
    pub ports: Vec<(u16, u16)>,
}

impl TargetRule {
    /// Every port of `net`.
    pub fn net(net: Cidr) -> Self {
        Self { net, ports: vec![] }
    }

    /// Whether `addr` (already canonical: IPv4-mapped as IPv4) matches.
    pub fn matches(&self, addr: SocketAddr) -> bool {
        self.net.contains(addr.ip())
            && (self.ports.is_empty()
                || self
                    .ports
                    .iter()
                    .any(|&(lo, hi)| (lo..=hi).contains(&addr.port())))
    }
}

impl fmt::Display for TargetRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.net)?;
        for (i, (lo, hi)) in self.ports.iter().enumerate() {
            f.write_str(if i == 0 { ":" } else { "," })?;
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for TargetRule {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Self, RuleError> {
        let s = s.trim();
        let (net, ports) = if let Some(rest) = s.strip_prefix('[') {
            // `[v6]`, `[v6/len]`, optionally followed by `:PORTS`.
            let (inner, after) = rest
                .split_once(']')
                .ok_or_else(|| RuleError(format!("{s:?}: no closing ']'")))?;
            let v6 = inner.split_once('/').map_or(inner, |(a, _)| a);
            if v6.parse::<Ipv6Addr>().is_err() {
                return Err(RuleError(format!("{s:?}: brackets hold an IPv6 address")));
            }
            match after {
                "" => (inner, None),
                _ => match after.strip_prefix(':') {
                    Some(p) => (inner, Some(p)),
                    None => return Err(RuleError(format!("{s:?}: expected ':PORTS' after ']'"))),
                },
            }
        } else if let Some((addr, after)) = s.split_once('/') {
            // The prefix length has no ':', so the first ':' after '/' starts PORTS.
            match after.split_once(':') {
                Some((len, p)) => (&s[..addr.len() + 1 + len.len()], Some(p)),
                None => (s, None),
            }
        } else if s.parse::<IpAddr>().is_ok() {
            (s, None)
        } else {
            // `a.b.c.d:PORTS` (an IPv6 address with ports needs brackets).
            match s.rsplit_once(':') {
                Some((a, p)) if a.parse::<std::net::Ipv4Addr>().is_ok() => (a, Some(p)),
                _ => return Err(RuleError(format!("{s:?}: expected CIDR[:PORTS]"))),
            }
        };
        let net: Cidr = net.parse()?;
        let ports = match ports {
            None => vec![],
            Some(p) => parse_ports(p).map_err(|e| RuleError(format!("{s:?}: {e}")))?,
        };
        Ok(Self { net, ports })
    }
}

/// `53`, `1000-2000`, `53,443,8000-8080`.
fn parse_ports(s: &str) -> Result<Vec<(u16, u16)>, String> {
    s.split(',')
        .map(|item| {
            let item = item.trim();
            let port = |p: &str| {
                p.trim()
                    .parse::<u16>()
                    .map_err(|_| format!("{p:?} is not a port (0-65535)"))
            };
            let (lo, hi) = match item.split_once('-') {
                Some((lo, hi)) => (port(lo)?, port(hi)?),
                None => (port(item)?, port(item)?),
            };
            if lo > hi {
                return Err(format!("port range {item:?} is empty"));
            }
            Ok((lo, hi))
        })
        .collect()
}
