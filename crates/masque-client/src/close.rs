//! How a tunnel ended, and what it dropped on the way.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why the tunnel's request stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The proxy finished its side cleanly (FIN on a capsule boundary).
    ProxyFinished,
    /// The proxy reset the stream with this HTTP/3 error code.
    Reset(u64),
    /// We stopped reading: the session was closed or dropped locally.
    Local,
    /// The QUIC connection ended.
    ConnectionLost(String),
    /// The proxy broke the protocol (malformed capsule stream R9297-22/24, an
    /// over-long UDP payload R9298-41); we aborted the stream.
    ProtocolError(String),
}

/// Counters of one tunnel. Connection-level drops (a full per-stream datagram
/// queue) are in `masque_h3::Connection::stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Datagrams with a Context ID other than 0, dropped (R9298-38).
    pub unknown_context_dropped: u64,
    /// Datagrams too short for a Context ID, dropped.
    pub malformed_dropped: u64,
    /// DATAGRAM capsules dropped because the session's queue was full.
    pub capsule_queue_full_dropped: u64,
    /// DATAGRAM capsules delivered (R9297-31).
    pub capsules_received: u64,
}

/// Final state of a tunnel, delivered with [`crate::ClientEvent::Closed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    pub reason: CloseReason,
    pub stats: SessionStats,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub unknown_context: AtomicU64,
    pub malformed: AtomicU64,
    pub capsule_queue_full: AtomicU64,
    pub capsules: AtomicU64,
}

impl Counters {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> SessionStats {
        SessionStats {
            unknown_context_dropped: self.unknown_context.load(Relaxed),
            malformed_dropped: self.malformed.load(Relaxed),
            capsule_queue_full_dropped: self.capsule_queue_full.load(Relaxed),
            capsules_received: self.capsules.load(Relaxed),
        }
    }
}
