//! The routes the vpn installs through its TUN device: advertised ranges as
//! CIDR prefixes, the proxy's address cut out, only families with an
//! address, applied with `ip route`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use masque_client::IpAddressRange;
use tokio::process::Command;

/// The address families the tunnel has an address in: routes of another
/// family would only blackhole its traffic.
#[derive(Debug, Clone, Copy)]
pub(super) struct Families {
    pub v4: bool,
    pub v6: bool,
}

impl Families {
    pub fn has(self, addr: IpAddr) -> bool {
        if addr.is_ipv4() { self.v4 } else { self.v6 }
    }
}

/// The routes installed through the TUN device.
#[derive(Debug)]
pub(super) struct Routes {
    dev: String,
    proxy: IpAddr,
    families: Families,
    installed: Vec<(IpAddr, u8)>,
}

impl Routes {
    pub fn new(dev: &str, proxy: IpAddr, families: Families) -> Self {
        Self {
            dev: dev.to_owned(),
            proxy,
            families,
            installed: Vec::new(),
        }
    }

    pub fn shown(&self) -> String {
        if self.installed.is_empty() {
            return "none".to_owned();
        }
        let v: Vec<String> = self
            .installed
            .iter()
            .map(|(a, l)| format!("{a}/{l}"))
            .collect();
        v.join(",")
    }

    /// Installs the prefixes of `ranges` (minus the proxy's address) and
    /// removes the ones no longer advertised.
    pub async fn apply(&mut self, ranges: &[IpAddressRange]) {
        let mut want = route_prefixes(ranges, self.proxy);
        want.retain(|(a, _)| self.families.has(*a));
        for p in self.installed.clone() {
            if !want.contains(&p) {
                self.ip_route("del", p).await;
            }
        }
        self.installed.retain(|p| want.contains(p));
        for p in want {
            if !self.installed.contains(&p) && self.ip_route("replace", p).await {
                self.installed.push(p);
            }
        }
    }

    pub async fn clear(&mut self) {
        for p in std::mem::take(&mut self.installed) {
            self.ip_route("del", p).await;
        }
    }

    /// `ip -4|-6 route VERB PREFIX dev DEV`; false (logged) on failure.
    async fn ip_route(&self, verb: &str, (addr, len): (IpAddr, u8)) -> bool {
        let family = if addr.is_ipv4() { "-4" } else { "-6" };
        let prefix = format!("{addr}/{len}");
        let out = Command::new("ip")
            .args([family, "route", verb, &prefix, "dev", &self.dev])
            .output()
            .await;
        match out {
            Ok(o) if o.status.success() => true,
            Ok(o) => {
                tracing::warn!(
                    route = %prefix,
                    verb,
                    stderr = %String::from_utf8_lossy(&o.stderr).trim(),
                    "ip route failed"
                );
                false
            }
            Err(e) => {
                tracing::warn!(route = %prefix, verb, error = %e, "running ip failed");
                false
            }
        }
    }
}

/// The prefixes to route through the tunnel: every advertised range (any
/// protocol; the kernel routes by address only) as CIDR prefixes, with the
/// proxy's own address cut out, without duplicates.
pub(super) fn route_prefixes(ranges: &[IpAddressRange], proxy: IpAddr) -> Vec<(IpAddr, u8)> {
    let mut out = Vec::new();
    for r in ranges {
        let (v4, start, end) = match (r.start, r.end) {
            (IpAddr::V4(s), IpAddr::V4(e)) => {
                (true, u128::from(u32::from(s)), u128::from(u32::from(e)))
            }
            (IpAddr::V6(s), IpAddr::V6(e)) => (false, u128::from(s), u128::from(e)),
            _ => continue,
        };
        let own = match proxy {
            IpAddr::V4(p) if v4 => Some(u128::from(u32::from(p))),
            IpAddr::V6(p) if !v4 => Some(u128::from(p)),
            _ => None,
        };
        let mut pieces = vec![(start, end)];
        if let Some(p) = own.filter(|p| (start..=end).contains(p)) {
            pieces = Vec::new();
            if p > start {
                pieces.push((start, p - 1));
            }
            if p < end {
                pieces.push((p + 1, end));
            }
        }
        let bits = if v4 { 32 } else { 128 };
        for (s, e) in pieces {
            for (a, len) in cidrs(s, e, bits) {
                let addr = if v4 {
                    IpAddr::V4(Ipv4Addr::from(u32::try_from(a).unwrap_or(0)))
                } else {
                    IpAddr::V6(Ipv6Addr::from(a))
                };
                if !out.contains(&(addr, len)) {
                    out.push((addr, len));
                }
            }
        }
    }
    out
}

/// The smallest list of CIDR prefixes covering `start..=end` in a `bits`-bit
/// address space.
fn cidrs(mut start: u128, end: u128, bits: u32) -> Vec<(u128, u8)> {
    let mut out = Vec::new();
    while start <= end {
        // The largest block aligned at `start` that stays within `end`.
        let mut size_log = start.trailing_zeros().min(bits);
        while size_log > 0 && block_last(start, size_log) > end {
            size_log -= 1;
        }
        out.push((start, u8::try_from(bits - size_log).unwrap_or(0)));
        let last = block_last(start, size_log);
        if last >= end {
            break;
        }
        start = last + 1;
    }
    out
}

/// The last address of the block of 2^`size_log` addresses at `start`.
fn block_last(start: u128, size_log: u32) -> u128 {
    match 1u128.checked_shl(size_log) {
        Some(size) if size_log < 128 => start.saturating_add(size - 1),
        _ => u128::MAX,
    }
}
