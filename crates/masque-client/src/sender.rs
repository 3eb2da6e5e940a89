//! The sending side of a tunnel: UDP payloads as HTTP datagrams with Context ID
//! 0 (R9298-39) through the transport's `DatagramTx` (QUIC DATAGRAMs on HTTP/3,
//! DATAGRAM capsules on HTTP/2, HTTP/1.1 and HTTP/3 without datagrams,
//! R9297-31), with backpressure or drop, and FIN through the tunnel's writer.

use std::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicBool, Ordering},
};

use masque_proto::datagram::{self, MAX_UDP_PAYLOAD, UDP_CONTEXT_ID};
use masque_transport::{DatagramTx, OutDatagram, ResetReason, TunnelWriter};

use crate::{
    ClientError,
    close::{CloseReason, Counters},
    ip::ControlWriter,
};

/// Length of the Context ID 0 prefix (one-byte varint).
const CONTEXT_LEN: usize = datagram::prefix_len(None, UDP_CONTEXT_ID);

/// The task that owns a tunnel's body writer: masque-transport's
/// [`TunnelWriter`] (DATAGRAM capsules only, connect-udp), or the connect-ip
/// [`ControlWriter`], which also writes the session's own capsules
/// (ADDRESS_ASSIGN, ADDRESS_REQUEST, ROUTE_ADVERTISEMENT, ...).
#[derive(Debug)]
pub(crate) enum BodyWriter {
    Tunnel(TunnelWriter),
    Control(ControlWriter),
}

impl BodyWriter {
    fn finish(&self) {
        match self {
            Self::Tunnel(w) => w.finish(),
            Self::Control(w) => w.finish(),
        }
    }

    fn abort(&self, reason: ResetReason) {
        match self {
            Self::Tunnel(w) => w.abort(reason),
            Self::Control(w) => w.abort(reason),
        }
    }
}

/// State shared by a session, its senders and its stream reader.
#[derive(Debug)]
pub(crate) struct Inner {
    pub dg: DatagramTx,
    pub writer: BodyWriter,
    /// False once our side is finished or reset: no datagram may follow
    /// (R9297-05), even before the writer got to it.
    open: AtomicBool,
    pub counters: Counters,
    close: Mutex<Option<CloseReason>>,
    /// Becomes true with the first close reason.
    ended: tokio::sync::watch::Sender<bool>,
    pub stream_id: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Single calls under the lock; a poisoned lock holds consistent state.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    pub fn new(dg: DatagramTx, writer: BodyWriter, stream_id: u64) -> Arc<Self> {
        Arc::new(Self {
            dg,
            writer,
            open: AtomicBool::new(true),
            counters: Counters::default(),
            close: Mutex::new(None),
            ended: tokio::sync::watch::channel(false).0,
            stream_id,
        })
    }

    /// FIN on our side after the DATAGRAM capsules already queued; datagrams
    /// are refused from now on (R9297-05).
    pub fn finish(&self) {
        self.open.store(false, Ordering::Release);
        self.writer.finish();
    }

    /// Resets our side (R9298-22, R9298-41; HTTP/1.1: the connection closes).
    pub fn abort(&self, reason: ResetReason) {
        self.open.store(false, Ordering::Release);
        self.writer.abort(reason);
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Records the first close reason.
    pub fn set_close(&self, reason: CloseReason) {
        lock(&self.close).get_or_insert(reason);
        self.ended.send_replace(true);
    }

    /// Resolves once a close reason is set.
    pub async fn ended(&self) {
        let mut rx = self.ended.subscribe();
        let _ = rx.wait_for(|ended| *ended).await;
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        lock(&self.close).clone()
    }
}

/// Sends UDP payloads into a tunnel. Cheap to clone; all clones share the
/// stream. Dropping the last clone and the session finishes the stream.
#[derive(Debug, Clone)]
pub struct UdpSender {
    pub(crate) inner: Arc<Inner>,
}

impl UdpSender {
    /// Largest UDP payload one datagram can carry now, never above 65527
    /// (R9298-40): on HTTP/3 the path's QUIC datagram size minus the quarter
    /// stream id and Context ID (it grows as PMTUD raises the path MTU); with
    /// DATAGRAM capsules what one capsule of the proxy's 64 KiB bound carries.
    pub fn max_payload_size(&self) -> usize {
        self.limit().unwrap_or(0)
    }

    fn limit(&self) -> Option<usize> {
        self.inner
            .dg
            .max_payload_size()
            .map(|m| m.saturating_sub(CONTEXT_LEN).min(MAX_UDP_PAYLOAD))
    }

    /// The request stream id of the tunnel (HTTP/1.1: its sequence number).
    pub fn stream_id(&self) -> u64 {
        self.inner.stream_id
    }

    /// Builds the datagram. Only the protocol limit is checked here (R9298-40,
    /// no lock); the path or capsule limit is enforced by the transport before
    /// queueing and reported as `PayloadTooLarge` naming the limit. Asking for
    /// `max_payload_size` per packet would take quinn's connection lock on
    /// every send.
    fn buffer(&self, payload: &[u8]) -> Result<OutDatagram, ClientError> {
        if !self.inner.is_open() {
            return Err(ClientError::Closed);
        }
        if payload.len() > MAX_UDP_PAYLOAD {
            return Err(ClientError::PayloadTooLarge {
                size: payload.len(),
                max: self.limit().unwrap_or(MAX_UDP_PAYLOAD),
            });
        }
        let mut b = self.inner.dg.buffer(CONTEXT_LEN + payload.len());
        datagram::encode_prefix(None, UDP_CONTEXT_ID, b.payload_mut())
            .map_err(|_| ClientError::Closed)?;
        b.payload_mut().extend_from_slice(payload);
        Ok(b)
    }

    /// Sends one UDP payload (Context ID 0, R9298-39). On HTTP/3 it waits for
    /// room in the datagram send buffer (backpressure); a DATAGRAM capsule is
    /// queued for the tunnel's writer, and a full queue is
    /// [`ClientError::BufferFull`] (dropped). A payload over
    /// [`max_payload_size`](Self::max_payload_size) is [`ClientError::PayloadTooLarge`].
    pub async fn send(&self, payload: &[u8]) -> Result<(), ClientError> {
        let b = self.buffer(payload)?;
        self.inner
            .dg
            .send(b)
            .await
            .map_err(|e| ClientError::from_send(e, CONTEXT_LEN))
    }

    /// Sends without waiting: a full send buffer or capsule queue is
    /// [`ClientError::BufferFull`] (the payload is dropped; on HTTP/3 masque-h3
    /// counts it).
    pub fn try_send(&self, payload: &[u8]) -> Result<(), ClientError> {
        let b = self.buffer(payload)?;
        self.inner
            .dg
            .try_send(b)
            .map_err(|e| ClientError::from_send(e, CONTEXT_LEN))
    }

    /// Finishes our side of the stream (FIN, after the capsules already
    /// queued). The tunnel ends when the proxy finishes its side; sending fails
    /// with [`ClientError::Closed`] from now on.
    pub fn close(&self) {
        self.inner.finish();
    }
}
