//! Node-wide admission control: caps on connections (in all and per source
//! address), on handshakes in flight and on tunnels in all, shared by every
//! listener of a node. Each admitted thing holds a guard; dropping it frees
//! the place and wakes a listener that stopped accepting.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::sync::Notify;

use crate::metrics::Metrics;

/// Node-wide limits. Every one is configurable; the defaults suit one
/// machine serving many clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Connections in all (handshaking or established, every transport).
    pub max_connections: usize,
    /// Connections from one source address (generous: a client behind NAT,
    /// or one HTTP/1.1 connection per tunnel, needs many).
    pub max_connections_per_ip: usize,
    /// Handshakes (QUIC + HTTP/3 SETTINGS, TLS + HTTP/2 preface) in flight.
    pub max_handshakes: usize,
    /// Above this many QUIC handshakes in flight, a client whose address is
    /// not validated yet gets a Retry (RFC 9000 §8.1.2): spoofed Initials
    /// then cost no state. 0 = always.
    pub retry_above_handshakes: usize,
    /// Tunnels in all, besides the per-connection limit.
    pub max_tunnels: usize,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 1024,
            max_handshakes: 512,
            retry_above_handshakes: 64,
            max_tunnels: 100_000,
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Total,
    PerIp,
}

#[derive(Debug)]
pub(crate) struct Admission {
    limits: AdmissionLimits,
    connections: AtomicUsize,
    handshakes: AtomicUsize,
    tunnels: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Woken whenever a connection or handshake place frees.
    freed: Notify,
    metrics: Arc<Metrics>,
}

/// Takes one place under `limit` in `count`, or none.
fn take(count: &AtomicUsize, limit: usize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .is_ok()
}

impl Admission {
    pub(crate) fn new(limits: AdmissionLimits, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            limits,
            connections: AtomicUsize::new(0),
            handshakes: AtomicUsize::new(0),
            tunnels: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            freed: Notify::new(),
            metrics,
        })
    }

    pub(crate) fn limits(&self) -> AdmissionLimits {
        self.limits
    }

    pub(crate) fn handshakes_in_flight(&self) -> usize {
        self.handshakes.load(Ordering::Acquire)
    }

    /// Whether a new connection would be admitted now (a listener that
    /// stopped accepting waits for [`freed`](Self::freed) while not).
    pub(crate) fn has_room(&self) -> bool {
        self.connections.load(Ordering::Acquire) < self.limits.max_connections
            && self.handshakes.load(Ordering::Acquire) < self.limits.max_handshakes
    }

    /// Resolves after some connection or handshake place was freed.
    pub(crate) async fn freed(&self) {
        self.freed.notified().await
    }

    /// A place for a connection from `ip` (counted as refused when none).
    pub(crate) fn connection(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, Refused> {
        if !take(&self.connections, self.limits.max_connections) {
            Metrics::inc(&self.metrics.connections_refused_limit);
            return Err(Refused::Total);
        }
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.limits.max_connections_per_ip {
            drop(per_ip);
            self.connections.fetch_sub(1, Ordering::AcqRel);
            Metrics::inc(&self.metrics.connections_refused_per_ip);
            return Err(Refused::PerIp);
        }
        *n += 1;
        Ok(ConnectionPermit {
            admission: Arc::clone(self),
            ip,
        })
    }

    /// A place for a handshake in flight (counted as refused when none).
    pub(crate) fn handshake(self: &Arc<Self>) -> Option<HandshakePermit> {
        if !take(&self.handshakes, self.limits.max_handshakes) {
            Metrics::inc(&self.metrics.handshakes_refused_limit);
            return None;
        }
        Some(HandshakePermit(Arc::clone(self)))
    }

    /// A place for a tunnel (counted as refused when none).
    pub(crate) fn tunnel(self: &Arc<Self>) -> Option<TunnelPermit> {
        if !take(&self.tunnels, self.limits.max_tunnels) {
            Metrics::inc(&self.metrics.tunnels_refused_node_limit);
            return None;
        }
        Some(TunnelPermit(Arc::clone(self)))
    }
}

/// An admitted connection; dropped with its router (or its failed handshake).
#[derive(Debug)]
pub(crate) struct ConnectionPermit {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let a = &self.admission;
        {
            let mut per_ip = a.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&self.ip);
                }
            }
        }
        a.connections.fetch_sub(1, Ordering::AcqRel);
        a.freed.notify_waiters();
    }
}

/// A handshake in flight.
#[derive(Debug)]
pub(crate) struct HandshakePermit(Arc<Admission>);

impl Drop for HandshakePermit {
    fn drop(&mut self) {
        self.0.handshakes.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_waiters();
    }
}

/// A tunnel counted against the node-wide cap.
#[derive(Debug)]
pub(crate) struct TunnelPermit(Arc<Admission>);

impl Drop for TunnelPermit {
    fn drop(&mut self) {
        self.0.tunnels.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(limits: AdmissionLimits) -> Arc<Admission> {
        Admission::new(limits, Arc::new(Metrics::default()))
    }

    #[test]
    fn connection_caps_total_and_per_ip_are_freed_by_drop() {
        let a = admission(AdmissionLimits {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..Default::default()
        });
        let (x, y): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let p1 = a.connection(x).unwrap();
        let _p2 = a.connection(x).unwrap();
        assert_eq!(a.connection(x).unwrap_err(), Refused::PerIp);
        let _p3 = a.connection(y).unwrap();
        assert_eq!(a.connection(y).unwrap_err(), Refused::Total);
        drop(p1);
        let _p4 = a.connection(x).unwrap();
        let m = a.metrics.snapshot();
        assert_eq!(
            (m.connections_refused_per_ip, m.connections_refused_limit),
            (1, 1)
        );
    }

    #[test]
    fn handshake_and_tunnel_caps() {
        let a = admission(AdmissionLimits {
            max_handshakes: 1,
            max_tunnels: 1,
            ..Default::default()
        });
        let h = a.handshake().unwrap();
        assert!(a.handshake().is_none() && !a.has_room());
        drop(h);
        assert!(a.handshake().is_some());
        let t = a.tunnel().unwrap();
        assert!(a.tunnel().is_none());
        drop(t);
        assert!(a.tunnel().is_some());
        let m = a.metrics.snapshot();
        assert_eq!(
            (m.handshakes_refused_limit, m.tunnels_refused_node_limit),
            (1, 1)
        );
    }
}
