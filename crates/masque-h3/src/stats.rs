//! Per-connection counters. Every drop on the data plane is counted here.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Keeps a hot counter on its own cache line: the datagram reader and the
/// senders run on different threads and would otherwise share one line.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct Padded(pub(crate) AtomicU64);

impl std::ops::Deref for Padded {
    type Target = AtomicU64;
    fn deref(&self) -> &AtomicU64 {
        &self.0
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) datagrams_received: Padded,
    pub(crate) datagrams_dropped_queue_full: AtomicU64,
    pub(crate) datagrams_dropped_unknown_stream: AtomicU64,
    pub(crate) datagrams_sent: Padded,
    pub(crate) datagrams_refused_too_large: AtomicU64,
    pub(crate) datagrams_refused_buffer_full: AtomicU64,
    pub(crate) requests_rejected_goaway: AtomicU64,
    pub(crate) requests_malformed: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub datagrams_received: u64,
    /// A stream's receive queue was full (R9297: bounded; the reader never blocks).
    pub datagrams_dropped_queue_full: u64,
    /// No open datagram-capable stream for the quarter stream id (R9297-06/07).
    pub datagrams_dropped_unknown_stream: u64,
    pub datagrams_sent: u64,
    /// Refused before reaching quinn because it exceeded the usable size.
    pub datagrams_refused_too_large: u64,
    /// `try_send` found quinn's datagram send buffer full.
    pub datagrams_refused_buffer_full: u64,
    pub requests_rejected_goaway: u64,
    pub requests_malformed: u64,
}

impl Stats {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            datagrams_received: self.datagrams_received.load(Relaxed),
            datagrams_dropped_queue_full: self.datagrams_dropped_queue_full.load(Relaxed),
            datagrams_dropped_unknown_stream: self.datagrams_dropped_unknown_stream.load(Relaxed),
            datagrams_sent: self.datagrams_sent.load(Relaxed),
            datagrams_refused_too_large: self.datagrams_refused_too_large.load(Relaxed),
            datagrams_refused_buffer_full: self.datagrams_refused_buffer_full.load(Relaxed),
            requests_rejected_goaway: self.requests_rejected_goaway.load(Relaxed),
            requests_malformed: self.requests_malformed.load(Relaxed),
        }
    }
}
