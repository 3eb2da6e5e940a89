//! HTTP/3 Datagrams (RFC 9297 §2.1): one connection-level reader demuxes QUIC
//! DATAGRAM frames by quarter stream id into bounded per-stream queues; senders
//! prefix the quarter stream id and hand quinn one contiguous buffer.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::{Bytes, BytesMut};
use masque_proto::varint;
use masque_queue::{self as queue, QueueRx, QueueTx};

use crate::{Code, error::Error, stats::Stats};

/// Stream id -> queue of the request stream that receives its datagrams.
#[derive(Debug, Default)]
pub(crate) struct DatagramRouter {
    routes: Mutex<Routes>,
}

#[derive(Debug, Default)]
struct Routes {
    by_stream: HashMap<u64, QueueTx<ReceivedDatagram>>,
    /// The connection ended: queues registered from now on start closed.
    closed: bool,
}

impl DatagramRouter {
    /// Registers `stream_id`; datagrams for it land in the returned receiver.
    pub(crate) fn register(self: &Arc<Self>, stream_id: u64, capacity: usize) -> DatagramReceiver {
        let (tx, rx) = queue::channel(capacity);
        let mut routes = lock(&self.routes);
        if routes.closed {
            tx.close();
        } else {
            routes.by_stream.insert(stream_id, tx);
        }
        drop(routes);
        DatagramReceiver {
            rx,
            route: RouteGuard {
                router: Arc::clone(self),
                stream_id,
            },
        }
    }

    /// Hands one datagram payload to its stream; never blocks (full -> drop + count).
    pub(crate) fn deliver(&self, stream_id: u64, datagram: ReceivedDatagram, stats: &Stats) {
        let routes = lock(&self.routes);
        match routes.by_stream.get(&stream_id) {
            Some(tx) => {
                if tx.try_send(datagram).is_err() {
                    Stats::inc(&stats.datagrams_dropped_queue_full);
                }
            }
            // R9297-06/07: closed or not-yet-open streams: drop silently, but count.
            None => Stats::inc(&stats.datagrams_dropped_unknown_stream),
        }
    }

    /// The connection ended: every receiver gets what is queued, then `None`.
    fn close_all(&self) {
        let mut routes = lock(&self.routes);
        routes.closed = true;
        for tx in routes.by_stream.values() {
            tx.close();
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.routes).by_stream.len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map inconsistent (single
    // insert/remove/get calls), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Parses an HTTP/3 Datagram (QSID + payload). Errors are connection errors
/// H3_DATAGRAM_ERROR (R9297-03: QSID > 2^60-1; R9297-04: truncated QSID).
pub(crate) fn split_quarter_stream_id(dg: &[u8]) -> Result<(u64, usize), Error> {
    match varint::decode(dg) {
        Ok((qsid, n)) if qsid < (1 << 60) => Ok((qsid, n)),
        Ok(_) => Err(Error::protocol(
            Code::DATAGRAM_ERROR,
            "quarter stream id above 2^60-1",
        )),
        Err(_) => Err(Error::protocol(
            Code::DATAGRAM_ERROR,
            "truncated quarter stream id",
        )),
    }
}

/// The connection-level reader: the only task that calls `read_datagram`.
pub(crate) async fn read_loop(
    quic: quinn::Connection,
    router: Arc<DatagramRouter>,
    stats: Arc<Stats>,
) {
    read_datagrams(&quic, &router, &stats).await;
    router.close_all();
}

async fn read_datagrams(quic: &quinn::Connection, router: &DatagramRouter, stats: &Stats) {
    while let Ok(dg) = quic.read_datagram().await {
        Stats::inc(&stats.datagrams_received);
        match split_quarter_stream_id(&dg) {
            Ok((qsid, n)) => router.deliver(
                qsid * 4,
                ReceivedDatagram {
                    datagram: dg,
                    payload_offset: n,
                },
                stats,
            ),
            Err(Error::Protocol { code, reason }) => {
                quic.close(code.into(), reason.as_bytes());
                return;
            }
            Err(_) => return,
        }
    }
}

/// Removes a stream's route when its receiver is dropped, so late datagrams are
/// counted as for a closed stream (R9297-06).
#[derive(Debug)]
struct RouteGuard {
    router: Arc<DatagramRouter>,
    stream_id: u64,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        lock(&self.router.routes).by_stream.remove(&self.stream_id);
    }
}

/// One received HTTP/3 datagram: the whole QUIC DATAGRAM payload, so it can be
/// forwarded onto the same stream without a copy ([`DatagramSender::forward`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedDatagram {
    datagram: Bytes,
    payload_offset: usize,
}

impl ReceivedDatagram {
    /// The HTTP datagram payload (after the quarter stream id).
    pub fn payload(&self) -> &[u8] {
        self.datagram.get(self.payload_offset..).unwrap_or_default()
    }

    pub fn into_payload(self) -> Bytes {
        self.datagram.slice(self.payload_offset..)
    }
}

/// Receives the HTTP datagrams of one request stream.
#[derive(Debug)]
pub struct DatagramReceiver {
    rx: QueueRx<ReceivedDatagram>,
    route: RouteGuard,
}

impl DatagramReceiver {
    /// Next payload (after the quarter stream id); `None` once the connection ended.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await.map(ReceivedDatagram::into_payload)
    }

    /// Next datagram, kept whole for zero-copy forwarding.
    pub async fn recv_datagram(&mut self) -> Option<ReceivedDatagram> {
        self.rx.recv().await
    }

    /// Waits for one datagram, then takes what else is queued, up to `limit`
    /// in all (batching for throughput). 0 once the connection ended.
    pub async fn recv_many(&mut self, out: &mut Vec<ReceivedDatagram>, limit: usize) -> usize {
        if limit == 0 {
            return 0;
        }
        let Some(first) = self.rx.recv().await else {
            return 0;
        };
        out.push(first);
        let mut n = 1;
        while n < limit {
            match self.rx.try_recv() {
                Some(d) => out.push(d),
                None => break,
            }
            n += 1;
        }
        n
    }

    pub fn try_recv(&mut self) -> Option<Bytes> {
        self.rx.try_recv().map(ReceivedDatagram::into_payload)
    }

    pub fn stream_id(&self) -> u64 {
        self.route.stream_id
    }
}

/// A datagram being built: the quarter stream id prefix is already written;
/// append the payload with [`DatagramBuf::payload_mut`].
#[derive(Debug)]
pub struct DatagramBuf {
    buf: BytesMut,
    prefix_len: usize,
}

impl DatagramBuf {
    /// The whole buffer; the first `prefix_len()` bytes are the prefix and must stay
    /// as they are (checked on send). Append payload bytes after them, e.g. with
    /// `socket.recv_buf(buf.payload_mut())`.
    pub fn payload_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    pub fn payload(&self) -> &[u8] {
        self.buf.get(self.prefix_len..).unwrap_or_default()
    }

    pub fn prefix_len(&self) -> usize {
        self.prefix_len
    }
}

/// Sends HTTP datagrams for one request stream. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DatagramSender {
    quic: quinn::Connection,
    prefix: [u8; 8],
    prefix_len: usize,
    send_open: Arc<AtomicBool>,
    stats: Arc<Stats>,
}

impl DatagramSender {
    pub(crate) fn new(
        quic: quinn::Connection,
        stream_id: u64,
        send_open: Arc<AtomicBool>,
        stats: Arc<Stats>,
    ) -> Self {
        let mut prefix = [0u8; 8];
        let mut w = &mut prefix[..];
        varint::put(stream_id / 4, &mut w);
        let prefix_len = varint::encoded_len(stream_id / 4);
        Self {
            quic,
            prefix,
            prefix_len,
            send_open,
            stats,
        }
    }

    /// Largest payload one datagram of this stream can carry right now (it grows as
    /// PMTUD raises the path MTU); `None` when the peer does not accept datagrams.
    pub fn max_payload_size(&self) -> Option<usize> {
        self.quic
            .max_datagram_size()
            .map(|m| m.saturating_sub(self.prefix_len))
    }

    /// A buffer with the quarter stream id written and room for `payload_capacity`.
    pub fn buffer(&self, payload_capacity: usize) -> DatagramBuf {
        let mut buf = BytesMut::with_capacity(self.prefix_len + payload_capacity);
        buf.extend_from_slice(&self.prefix[..self.prefix_len]);
        DatagramBuf {
            buf,
            prefix_len: self.prefix_len,
        }
    }

    /// Cheap per-datagram checks; the size limit is enforced by quinn itself,
    /// which refuses an oversized datagram before queueing it (`finish_send`).
    fn check(&self, buf: &DatagramBuf) -> Result<(), Error> {
        if !self.send_open.load(Ordering::Acquire) {
            // R9297-05: never after our side of the stream closed.
            return Err(Error::SendClosed);
        }
        if buf.buf.get(..self.prefix_len) != Some(&self.prefix[..self.prefix_len]) {
            return Err(Error::protocol(
                Code::INTERNAL_ERROR,
                "datagram buffer prefix was modified",
            ));
        }
        Ok(())
    }

    /// Sends, waiting for room in quinn's datagram send buffer (backpressure; quinn
    /// would otherwise drop the oldest queued datagram).
    pub async fn send(&self, buf: DatagramBuf) -> Result<(), Error> {
        self.check(&buf)?;
        let size = buf.buf.len() - self.prefix_len;
        let result = self.quic.send_datagram_wait(buf.buf.freeze()).await;
        self.finish_send(result, size)
    }

    /// Sends without waiting: a full send buffer is `DatagramBufferFull` (counted).
    pub fn try_send(&self, buf: DatagramBuf) -> Result<(), Error> {
        self.check(&buf)?;
        let size = buf.buf.len() - self.prefix_len;
        if self.quic.datagram_send_buffer_space() < buf.buf.len() {
            Stats::inc(&self.stats.datagrams_refused_buffer_full);
            return Err(Error::DatagramBufferFull);
        }
        let result = self.quic.send_datagram(buf.buf.freeze());
        self.finish_send(result, size)
    }

    fn finish_send(
        &self,
        result: Result<(), quinn::SendDatagramError>,
        size: usize,
    ) -> Result<(), Error> {
        match result {
            Ok(()) => {
                Stats::inc(&self.stats.datagrams_sent);
                Ok(())
            }
            // quinn checked the size against the path before queueing anything.
            Err(quinn::SendDatagramError::TooLarge) => {
                Stats::inc(&self.stats.datagrams_refused_too_large);
                let max = self.max_payload_size().ok_or(Error::DatagramsUnsupported)?;
                Err(Error::DatagramTooLarge { size, max })
            }
            Err(quinn::SendDatagramError::ConnectionLost(c)) => Err(Error::Connection(c)),
            Err(
                quinn::SendDatagramError::UnsupportedByPeer | quinn::SendDatagramError::Disabled,
            ) => Err(Error::DatagramsUnsupported),
        }
    }

    /// Sends a received datagram's payload on this stream: without a copy when it
    /// arrived with the same quarter stream id (reflection), else re-prefixed.
    pub async fn forward(&self, datagram: ReceivedDatagram) -> Result<(), Error> {
        let same_prefix = datagram.payload_offset == self.prefix_len
            && datagram.datagram.get(..self.prefix_len) == Some(&self.prefix[..self.prefix_len]);
        if !same_prefix {
            return self.send_payload(datagram.payload()).await;
        }
        if !self.send_open.load(Ordering::Acquire) {
            return Err(Error::SendClosed);
        }
        let size = datagram.datagram.len() - self.prefix_len;
        let result = self.quic.send_datagram_wait(datagram.datagram).await;
        self.finish_send(result, size)
    }

    /// Convenience: copies `payload` into a new datagram buffer and sends it.
    pub async fn send_payload(&self, payload: &[u8]) -> Result<(), Error> {
        let mut b = self.buffer(payload.len());
        b.payload_mut().extend_from_slice(payload);
        self.send(b).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// R9297-03 / R9297-04 and spec README vector 3.
    #[test]
    fn r9297_03_04_quarter_stream_id_limits() {
        let ok = [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(split_quarter_stream_id(&ok).unwrap(), ((1 << 60) - 1, 8));
        for bad in [&[0xd0, 0, 0, 0, 0, 0, 0, 0][..], &[], &[0x40]] {
            match split_quarter_stream_id(bad) {
                Err(Error::Protocol { code, .. }) => assert_eq!(code, Code::DATAGRAM_ERROR),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        // Vector 6: stream 44 -> QSID 11.
        assert_eq!(split_quarter_stream_id(&[0x0b, 0, b'a']).unwrap(), (11, 1));
    }

    /// Bounded queues: a full queue drops and counts; unknown streams are counted.
    #[test]
    fn router_drops_and_counts() {
        let router = Arc::new(DatagramRouter::default());
        let stats = Stats::default();
        let mut rx = router.register(44, 2);
        let dg = |p: &'static [u8]| ReceivedDatagram {
            datagram: Bytes::from_static(p),
            payload_offset: 1,
        };
        for _ in 0..5 {
            router.deliver(44, dg(b"\x0bx"), &stats);
        }
        router.deliver(48, dg(b"\x0cy"), &stats);
        let s = stats.snapshot();
        assert_eq!(s.datagrams_dropped_queue_full, 3);
        assert_eq!(s.datagrams_dropped_unknown_stream, 1);
        assert_eq!(rx.try_recv(), Some(Bytes::from_static(b"x")));
        drop(rx);
        assert_eq!(router.len(), 0);
        router.deliver(44, dg(b"\x0bz"), &stats);
        assert_eq!(stats.snapshot().datagrams_dropped_unknown_stream, 2);
    }

    /// At connection end every receiver gets what was queued, then `None`;
    /// a stream registered after that starts ended.
    #[tokio::test]
    async fn connection_end_ends_every_queue() {
        let router = Arc::new(DatagramRouter::default());
        let stats = Stats::default();
        let mut rx = router.register(4, 8);
        router.deliver(
            4,
            ReceivedDatagram {
                datagram: Bytes::from_static(b"\x01q"),
                payload_offset: 1,
            },
            &stats,
        );
        router.close_all();
        assert_eq!(rx.recv().await, Some(Bytes::from_static(b"q")));
        // Bounded: a queue that the end did not reach would wait forever.
        let wait = std::time::Duration::from_secs(5);
        let end = tokio::time::timeout(wait, rx.recv());
        assert_eq!(end.await.expect("the queue did not end"), None);
        let mut late = router.register(8, 8);
        let late_end = tokio::time::timeout(wait, late.recv());
        assert_eq!(
            late_end.await.expect("a late queue did not start ended"),
            None
        );
    }
}
