//! The node's own listeners: a tunnel to one of them is a loop (the proxy
//! proxying to itself), refused whatever else the policy allows.
//!
//! A listener on a specific address owns that (address, port). A listener on
//! a wildcard address (`0.0.0.0`, `::`) owns its port on every address of
//! the host: loopback, and the addresses of the host's interfaces, read with
//! `getifaddrs(3)` when a target has one of those ports (cached for
//! [`IFACE_REFRESH`], so an address added later is seen within a second).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

/// How long an interface list is reused.
pub const IFACE_REFRESH: Duration = Duration::from_secs(1);

/// The host's interface addresses and when they were read.
type Interfaces = (Instant, Arc<[IpAddr]>);

/// The node's listener addresses, shared by every clone (the node sets them
/// once its sockets are bound, after the handler was built).
#[derive(Clone, Default)]
pub struct OwnListeners {
    listeners: Arc<RwLock<Vec<SocketAddr>>>,
    ifaces: Arc<Mutex<Option<Interfaces>>>,
}

impl std::fmt::Debug for OwnListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("OwnListeners")
            .field(&self.listeners())
            .finish()
    }
}

impl OwnListeners {
    /// Listeners at these addresses (port 0 entries are ignored).
    pub fn new(listeners: impl IntoIterator<Item = SocketAddr>) -> Self {
        let own = Self::default();
        own.set(listeners);
        own
    }

    /// Replaces the listener addresses (e.g. with the bound ones once port 0
    /// is resolved: `Node::local_addr`, `Node::tcp_addr`).
    pub fn set(&self, listeners: impl IntoIterator<Item = SocketAddr>) {
        let mut v: Vec<SocketAddr> = listeners
            .into_iter()
            .filter(|a| a.port() != 0)
            .map(|a| SocketAddr::new(super::canonical(a.ip()), a.port()))
            .collect();
        v.sort();
        v.dedup();
        *self.listeners.write().unwrap_or_else(|e| e.into_inner()) = v;
    }

    pub fn listeners(&self) -> Vec<SocketAddr> {
        self.listeners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether `addr` (canonical) reaches one of the listeners.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        let listeners = self.listeners.read().unwrap_or_else(|e| e.into_inner());
        let mut wildcard = false;
        for l in listeners.iter().filter(|l| l.port() == addr.port()) {
            if l.ip().is_unspecified() {
                wildcard = true;
            } else if l.ip() == addr.ip() {
                return true;
            }
        }
        drop(listeners);
        wildcard && self.is_local(addr.ip())
    }

    /// Whether `ip` is an address of this host (loopback or an interface's).
    /// Without an interface list (getifaddrs failed) every address counts as
    /// local: a possible loop is refused rather than let through.
    fn is_local(&self, ip: IpAddr) -> bool {
        let loopback = match ip {
            IpAddr::V4(a) => a.is_loopback(),
            IpAddr::V6(a) => a.is_loopback(),
        };
        loopback
            || match self.interfaces() {
                Some(list) => list.contains(&ip),
                None => true,
            }
    }

    fn interfaces(&self) -> Option<Arc<[IpAddr]>> {
        let mut cache = self.ifaces.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, list)) = cache.as_ref()
            && at.elapsed() < IFACE_REFRESH
        {
            return Some(Arc::clone(list));
        }
        match interface_addresses() {
            Ok(list) => {
                let list: Arc<[IpAddr]> = list.into();
                *cache = Some((Instant::now(), Arc::clone(&list)));
                Some(list)
            }
            Err(e) => {
                tracing::warn!(error = %e, "getifaddrs failed: the node's port is refused on every address");
                None
            }
        }
    }
}

/// The addresses of the host's interfaces (IPv4-mapped addresses as IPv4).
pub fn interface_addresses() -> std::io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid out-pointer; on success the list is freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: a non-null `ifa_addr` points to a sockaddr whose family
            // tells its real type (sockaddr_in / sockaddr_in6).
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: as above, AF_INET.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))));
            } else if family == libc::AF_INET6 {
                // SAFETY: as above, AF_INET6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(super::canonical(IpAddr::V6(Ipv6Addr::from(
                    sin6.sin6_addr.s6_addr,
                ))));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}
