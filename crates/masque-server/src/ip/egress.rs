//! Where CONNECT-IP packets leave the node and where packets for tunnels come in.
//!
//! * [`IpEgress`]: what tunnels send into (a TUN device, [`super::tun::TunEgress`], or a
//!   library user's own sink such as [`QueueEgress`]). Sends never wait: a full device
//!   drops and counts.
//! * [`IpIngress`]: what the egress hands incoming packets to. It finds the owning session
//!   with `IpRegistry::lookup` (lock-free, no actor hop) and queues the packet on the
//!   session's bounded queue; full queues drop and count.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use masque_proto::packet::IpPacket;
use masque_queue::{QueueRx, QueueTx, TrySendError};
use masque_registry::ip::{IpRegistryHandle, PacketSinkError};

use crate::metrics::Metrics;

/// A packet the egress could not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("egress full")]
    Full,
    #[error("egress closed")]
    Closed,
    #[error("egress write failed: {0}")]
    Io(String),
}

/// The outside of the node's CONNECT-IP tunnels.
pub trait IpEgress: Send + Sync + 'static {
    /// Sends one IP packet out. Must not block; a packet it cannot take is an error
    /// (the caller counts it).
    fn send(&self, packet: &[u8]) -> Result<(), EgressError>;

    /// The largest packet it carries (larger ones are answered with Packet Too Big).
    fn mtu(&self) -> usize;

    /// Called once when the node starts: from now on hand every packet for a tunnel
    /// to `ingress`. The egress owns whatever task reads its packets.
    fn start(&self, ingress: IpIngress);
}

/// Hands packets from the egress to the sessions that own their destinations.
#[derive(Clone)]
pub struct IpIngress {
    registry: IpRegistryHandle,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for IpIngress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpIngress").finish_non_exhaustive()
    }
}

/// What became of one packet handed to [`IpIngress::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for its session.
    Queued,
    /// Not an IP packet.
    Malformed,
    /// No session holds the destination.
    NoSession,
    /// The session's queue was full (or it is ending).
    Dropped,
}

impl IpIngress {
    pub fn new(registry: IpRegistryHandle, metrics: Arc<Metrics>) -> Self {
        Self { registry, metrics }
    }

    /// Queues `packet` for the session holding its destination. Never waits.
    pub fn deliver(&self, packet: Bytes) -> Delivery {
        let Some(dst) = destination(&packet) else {
            self.metrics
                .ip_drops
                .count(masque_proto::connect_ip::PacketDrop::Malformed);
            return Delivery::Malformed;
        };
        let Some(entry) = self.registry.lookup(dst) else {
            Metrics::inc(&self.metrics.ip_egress_no_session);
            return Delivery::NoSession;
        };
        match entry.try_send(packet) {
            Ok(()) => {
                Metrics::inc(&self.metrics.ip_packets_from_egress);
                Delivery::Queued
            }
            Err(PacketSinkError::Full | PacketSinkError::Closed) => {
                Metrics::inc(&self.metrics.ip_egress_queue_full);
                Delivery::Dropped
            }
        }
    }
}

/// The destination of an IP packet, from the first bytes only.
fn destination(packet: &[u8]) -> Option<IpAddr> {
    IpPacket::parse(packet).ok().map(|p| p.destination())
}

/// An egress that queues the packets tunnels send (bounded; full drops) for a library
/// user to read with [`QueueEgress::take_receiver`], and gives out the [`IpIngress`] to
/// hand packets back with.
pub struct QueueEgress {
    tx: QueueTx<Bytes>,
    rx: std::sync::Mutex<Option<QueueRx<Bytes>>>,
    ingress: std::sync::OnceLock<IpIngress>,
    mtu: usize,
}

impl QueueEgress {
    /// Holds at most `capacity` packets; carries packets of up to `mtu` bytes.
    pub fn new(capacity: usize, mtu: usize) -> Self {
        let (tx, rx) = masque_queue::channel(capacity.max(1));
        Self {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            ingress: std::sync::OnceLock::new(),
            mtu,
        }
    }

    /// The packets tunnels sent (once; `None` after the first call).
    pub fn take_receiver(&self) -> Option<QueueRx<Bytes>> {
        self.rx.lock().ok()?.take()
    }

    /// Where to hand packets for the tunnels, once the node started.
    pub fn ingress(&self) -> Option<&IpIngress> {
        self.ingress.get()
    }
}

impl IpEgress for QueueEgress {
    fn send(&self, packet: &[u8]) -> Result<(), EgressError> {
        self.tx
            .try_send(Bytes::copy_from_slice(packet))
            .map_err(|e| match e {
                TrySendError::Full(_) => EgressError::Full,
                TrySendError::Closed(_) => EgressError::Closed,
            })
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn start(&self, ingress: IpIngress) {
        let _ = self.ingress.set(ingress);
    }
}
