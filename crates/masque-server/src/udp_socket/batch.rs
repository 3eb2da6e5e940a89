//! Caller-owned buffers for batched I/O: [`RecvBatch`] for `recvmmsg`/GRO and
//! [`SendBatch`] for GSO runs.

use quinn_udp::{BATCH_SIZE, RecvMeta};

use super::{DEFAULT_RECV_SLOTS, RECV_SLOT_SIZE};

/// Reusable receive buffers for [`TargetSocket::recv_batch`](super::TargetSocket::recv_batch).
///
/// Holds `slots` buffers of [`RECV_SLOT_SIZE`] bytes in one allocation made up front (2 MiB for
/// the default 32 slots; the memory is zero-initialised lazily by the OS, so only pages the kernel
/// actually writes become resident: about one page per slot for 1200-byte datagrams). After a
/// call, [`iter`](Self::iter) yields each received datagram as a `&[u8]` borrowed from these
/// buffers; they are overwritten by the next call.
pub struct RecvBatch {
    pub(super) storage: Box<[u8]>,
    pub(super) metas: Box<[RecvMeta]>,
    pub(super) slots: usize,
    /// Buffers filled by the last receive.
    filled: usize,
    /// Datagrams in those buffers.
    datagrams: usize,
    /// Payload bytes in those buffers.
    bytes: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slots", &self.slots)
            .field("filled", &self.filled)
            .field("datagrams", &self.datagrams)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new(DEFAULT_RECV_SLOTS)
    }
}

impl RecvBatch {
    /// Creates a batch with `slots` receive buffers, clamped to `1..=`[`quinn_udp::BATCH_SIZE`]
    /// (one `recvmmsg` call fills at most that many).
    pub fn new(slots: usize) -> Self {
        let slots = slots.clamp(1, BATCH_SIZE);
        Self {
            storage: vec![0u8; slots * RECV_SLOT_SIZE].into_boxed_slice(),
            metas: vec![RecvMeta::default(); slots].into_boxed_slice(),
            slots,
            filled: 0,
            datagrams: 0,
            bytes: 0,
        }
    }

    /// Number of receive buffers.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Number of datagrams held from the last receive.
    pub fn len(&self) -> usize {
        self.datagrams
    }

    /// True when no datagram is held.
    pub fn is_empty(&self) -> bool {
        self.datagrams == 0
    }

    /// Total payload bytes held from the last receive.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of kernel buffers the last receive filled (fewer than [`len`](Self::len) when GRO
    /// coalesced datagrams).
    pub fn buffers(&self) -> usize {
        self.filled
    }

    /// Forgets the held datagrams (the memory is kept).
    pub fn clear(&mut self) {
        self.filled = 0;
        self.datagrams = 0;
        self.bytes = 0;
    }

    /// Iterates over the held datagrams, in arrival order, one slice per datagram.
    pub fn iter(&self) -> Datagrams<'_> {
        Datagrams {
            batch: self,
            buffer: 0,
            offset: 0,
            remaining: self.datagrams,
        }
    }

    /// Records the result of a receive of `filled` buffers; returns (datagrams, bytes).
    pub(super) fn set_filled(&mut self, filled: usize) -> (usize, usize) {
        let filled = filled.min(self.slots);
        let mut datagrams = 0;
        let mut bytes = 0;
        for meta in &self.metas[..filled] {
            datagrams += segments(meta);
            bytes += meta.len;
        }
        self.filled = filled;
        self.datagrams = datagrams;
        self.bytes = bytes;
        (datagrams, bytes)
    }
}

/// Number of datagrams in one received buffer (GRO puts several, `stride` bytes apart).
fn segments(meta: &RecvMeta) -> usize {
    if meta.len == 0 {
        1 // an empty datagram is still a datagram
    } else {
        meta.len.div_ceil(effective_stride(meta))
    }
}

fn effective_stride(meta: &RecvMeta) -> usize {
    if meta.stride == 0 || meta.stride > meta.len {
        meta.len
    } else {
        meta.stride
    }
}

impl<'a> IntoIterator for &'a RecvBatch {
    type Item = &'a [u8];
    type IntoIter = Datagrams<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over the datagrams of a [`RecvBatch`]; see [`RecvBatch::iter`].
#[derive(Debug, Clone)]
pub struct Datagrams<'a> {
    batch: &'a RecvBatch,
    buffer: usize,
    offset: usize,
    remaining: usize,
}

impl<'a> Iterator for Datagrams<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let batch = self.batch;
        if self.buffer >= batch.filled {
            return None;
        }
        let meta = &batch.metas[self.buffer];
        let start = self.buffer * RECV_SLOT_SIZE;
        let data = &batch.storage[start..start + meta.len];
        let end = (self.offset + effective_stride(meta)).min(meta.len);
        let datagram = &data[self.offset..end];
        if end >= meta.len {
            self.buffer += 1;
            self.offset = 0;
        } else {
            self.offset = end;
        }
        self.remaining = self.remaining.saturating_sub(1);
        Some(datagram)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Datagrams<'_> {}

/// Outgoing datagrams for [`TargetSocket::send_batch`](super::TargetSocket::send_batch), stored back to back in one reusable
/// buffer (the layout GSO needs).
///
/// Pushing copies the payload; the buffer grows to the largest batch seen and is then reused, so
/// a steady-state batch allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct SendBatch {
    pub(super) buf: Vec<u8>,
    pub(super) lens: Vec<usize>,
    /// Datagrams already handed to the kernel by an interrupted `send_batch`.
    pub(super) next: usize,
    /// Their total bytes (offset of datagram `next` in `buf`).
    pub(super) next_offset: usize,
    /// Datagrams before this index are sent one by one (a GSO send of them failed).
    pub(super) singles_until: usize,
}

impl SendBatch {
    /// Creates an empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates an empty batch with room for `datagrams` datagrams of `bytes` bytes in total.
    pub fn with_capacity(datagrams: usize, bytes: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
            lens: Vec::with_capacity(datagrams),
            next: 0,
            next_offset: 0,
            singles_until: 0,
        }
    }

    /// Appends one datagram payload (copied).
    pub fn push(&mut self, payload: &[u8]) {
        self.buf.extend_from_slice(payload);
        self.lens.push(payload.len());
    }

    /// Number of datagrams not yet sent.
    pub fn len(&self) -> usize {
        self.lens.len() - self.next
    }

    /// True when there is nothing left to send.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Payload bytes not yet sent.
    pub fn bytes(&self) -> usize {
        self.buf.len() - self.next_offset
    }

    /// Discards all datagrams (the memory is kept).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.lens.clear();
        self.next = 0;
        self.next_offset = 0;
        self.singles_until = 0;
    }
}
