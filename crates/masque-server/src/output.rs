//! `TunnelOutput`: how a handler sends to the client. Before the 2xx, output is
//! queued (bounded); the session flushes it in order right after the 2xx and
//! from then on datagrams go straight to the transport (no hop, no lock).

use std::{
    collections::VecDeque,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use bytes::Bytes;
use masque_proto::{capsule::Capsule, varint};
use masque_queue::{QueueTx, TrySendError};
use masque_transport::{DatagramTx, OutDatagram, Transport, TunnelError};
use tokio::sync::{Mutex, watch};

use crate::{
    handler::Action,
    metrics::Metrics,
    task_group::{TaskGroup, TunnelTask},
};

/// Output a handler cannot deliver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error("the tunnel is closed")]
    Closed,
    #[error("output queue full; dropped")]
    QueueFull,
    /// Both sizes count the HTTP datagram payload: context id and data.
    #[error("datagram of {size} bytes exceeds the tunnel's {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("transport error: {0}")]
    Transport(String),
}

/// Requests from handler output to the session's stream writer.
#[derive(Debug)]
pub(crate) enum Control {
    Capsule(Capsule),
    End(Action),
}

/// Last activity of a tunnel, for the idle timeout (milliseconds since start).
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn idle_for(&self) -> std::time::Duration {
        let now = self.start.elapsed().as_millis() as u64;
        std::time::Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

#[derive(Debug)]
struct Shared {
    /// Set once the 2xx is sent and the early queue flushed.
    tx: OnceLock<DatagramTx>,
    /// Early datagrams (context id + payload), flushed after the 2xx.
    early: Mutex<VecDeque<Bytes>>,
    early_limit: usize,
    control: QueueTx<Control>,
    /// `Some(true)` open, `Some(false)` failed/closed, `None` not yet.
    state: watch::Sender<Option<bool>>,
    activity: Arc<Activity>,
    metrics: Arc<Metrics>,
    /// The client connection's task group, for [`TunnelOutput::spawn`].
    group: TaskGroup,
    /// The transport's counters of the datagrams sent.
    transport: Transport,
    /// The session actor, for registries that monitor it.
    session: ractor::ActorCell,
}

/// A handler's handle for sending to the client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TunnelOutput {
    shared: Arc<Shared>,
}

impl TunnelOutput {
    pub(crate) fn new(
        control: QueueTx<Control>,
        early_limit: usize,
        activity: Arc<Activity>,
        metrics: Arc<Metrics>,
        group: TaskGroup,
        transport: Transport,
        session: ractor::ActorCell,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                tx: OnceLock::new(),
                early: Mutex::new(VecDeque::new()),
                early_limit,
                control,
                state: watch::Sender::new(None),
                activity,
                metrics,
                group,
                transport,
                session,
            }),
        }
    }

    /// Runs a data-plane future of this tunnel (e.g. a target-socket reader)
    /// in the client connection's task group: one task polls every such
    /// future of the connection, so bursts on many tunnels cost few wake-ups
    /// (decisions §29). Dropping the returned handle aborts it. A panic in it
    /// is a handler panic: counted (`handler_panics`), and the tunnel ends as
    /// for a panicking callback (reset, `terminate(HandlerPanic)`), after the
    /// output already queued. Use `tokio::spawn` instead for work that blocks
    /// or burns CPU for long: it would hold up the connection's other tunnels.
    pub fn spawn(
        &self,
        future: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> TunnelTask {
        let tunnel = Arc::downgrade(&self.shared);
        self.shared.group.spawn(future, move || {
            if let Some(shared) = tunnel.upgrade() {
                Metrics::inc(&shared.metrics.handler_panics);
                // The session reads the closed control queue as the panic.
                shared.control.close();
            }
        })
    }

    /// Waits until the 2xx went out (`true`) or the tunnel failed (`false`).
    pub async fn opened(&self) -> bool {
        let mut rx = self.shared.state.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.unwrap_or(false),
            Err(_) => false,
        }
    }

    /// The transport's datagram sender, once open: the fast path for data-plane
    /// tasks (one buffer per packet, backpressure by awaiting). Call
    /// [`TunnelOutput::touch`] for traffic sent this way.
    pub fn datagram_tx(&self) -> Option<&DatagramTx> {
        self.shared.tx.get()
    }

    /// The session actor of this tunnel: register it where a registry must
    /// release the tunnel's entries when the session ends (the IpRegistry
    /// monitors it).
    pub fn session(&self) -> &ractor::ActorCell {
        &self.shared.session
    }

    /// The transport this tunnel runs on.
    pub fn transport(&self) -> Transport {
        self.shared.transport
    }

    /// The node's counters (handlers count their own drops here).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Marks the tunnel active (idle-timeout bookkeeping).
    pub fn touch(&self) {
        self.shared.activity.touch();
    }

    /// Sends one HTTP datagram (`context_id` + `payload`), waiting for room.
    /// Before the 2xx it is queued (bounded: beyond the limit it is dropped and
    /// counted, `QueueFull`). The transport decides how it travels (a QUIC
    /// DATAGRAM, or a DATAGRAM capsule on the stream, R9297-31).
    pub async fn send_datagram(&self, context_id: u64, payload: &[u8]) -> Result<(), OutputError> {
        self.touch();
        if let Some(tx) = self.shared.tx.get() {
            return self.sent(send_now(tx, context_id, payload).await);
        }
        let mut early = self.shared.early.lock().await;
        // Re-check under the lock: the flush may have completed meanwhile.
        if let Some(tx) = self.shared.tx.get() {
            drop(early);
            return self.sent(send_now(tx, context_id, payload).await);
        }
        if *self.shared.state.borrow() == Some(false) {
            return Err(OutputError::Closed);
        }
        if early.len() >= self.shared.early_limit {
            Metrics::inc(&self.shared.metrics.output_dropped);
            return Err(OutputError::QueueFull);
        }
        let mut b = Vec::with_capacity(varint::encoded_len(context_id) + payload.len());
        varint::put(context_id, &mut b);
        b.extend_from_slice(payload);
        early.push_back(b.into());
        Ok(())
    }

    /// Sends one HTTP datagram without waiting (from a synchronous callback):
    /// a full send buffer, or a tunnel not yet open, is an error the caller
    /// counts.
    pub fn try_send_datagram(&self, context_id: u64, payload: &[u8]) -> Result<(), OutputError> {
        let Some(tx) = self.shared.tx.get() else {
            return Err(OutputError::Closed);
        };
        self.touch();
        let d = encode(tx, context_id, payload);
        let size = d.payload_len();
        self.sent(tx.try_send(d).map_err(|e| output_error(e, size)))
    }

    /// Copies one HTTP datagram into its own buffer, ready for
    /// [`send_encoded`](Self::send_encoded): for data-plane tasks that must copy
    /// a batch out of a borrowed receive buffer before they can await. `None`
    /// before the 2xx (wait for [`opened`](Self::opened) first).
    pub fn encode_datagram(&self, context_id: u64, payload: &[u8]) -> Option<OutDatagram> {
        let tx = self.shared.tx.get()?;
        Some(encode(tx, context_id, payload))
    }

    /// Sends a datagram from [`encode_datagram`](Self::encode_datagram),
    /// waiting for room.
    pub async fn send_encoded(&self, d: OutDatagram) -> Result<(), OutputError> {
        match self.shared.tx.get() {
            Some(tx) => self.sent(send_encoded(tx, d).await),
            None => Err(OutputError::Closed),
        }
    }

    /// Counts a datagram sent on this tunnel's transport.
    fn sent(&self, r: Result<(), OutputError>) -> Result<(), OutputError> {
        if r.is_ok() {
            let counters = self.shared.metrics.transport(self.shared.transport);
            Metrics::inc(&counters.datagrams_to_client);
        }
        r
    }

    /// Queues a capsule for the stream (bounded; a full queue drops and counts).
    pub fn send_capsule(&self, capsule: Capsule) -> Result<(), OutputError> {
        self.control(Control::Capsule(capsule))
    }

    /// Ends the tunnel cleanly (FIN) after queued output.
    pub fn close(&self) -> Result<(), OutputError> {
        self.control(Control::End(Action::Close))
    }

    /// Ends the tunnel abruptly (stream reset).
    pub fn abort(&self) -> Result<(), OutputError> {
        self.control(Control::End(Action::Abort))
    }

    fn control(&self, c: Control) -> Result<(), OutputError> {
        self.shared.control.try_send(c).map_err(|e| match e {
            TrySendError::Full(_) => {
                Metrics::inc(&self.shared.metrics.output_dropped);
                OutputError::QueueFull
            }
            TrySendError::Closed(_) => OutputError::Closed,
        })
    }

    /// After the 2xx: flush early datagrams in order, then switch to direct sends.
    pub(crate) async fn open(&self, tx: DatagramTx) {
        let mut early = self.shared.early.lock().await;
        while let Some(d) = early.pop_front() {
            let mut b = tx.buffer(d.len());
            b.payload_mut().extend_from_slice(&d);
            if tx.send(b).await.is_err() {
                Metrics::inc(&self.shared.metrics.output_dropped);
            }
        }
        *early = VecDeque::new();
        let _ = self.shared.tx.set(tx);
        self.shared.state.send_replace(Some(true));
    }

    /// The tunnel failed or ended: wake waiters, refuse further output.
    pub(crate) fn fail(&self) {
        self.shared.state.send_replace(Some(false));
    }
}

async fn send_now(tx: &DatagramTx, context_id: u64, payload: &[u8]) -> Result<(), OutputError> {
    send_encoded(tx, encode(tx, context_id, payload)).await
}

/// One buffer holding the transport's prefix, the context id and the payload.
fn encode(tx: &DatagramTx, context_id: u64, payload: &[u8]) -> OutDatagram {
    let mut b: OutDatagram = tx.buffer(varint::encoded_len(context_id) + payload.len());
    varint::put(context_id, b.payload_mut());
    b.payload_mut().extend_from_slice(payload);
    b
}

async fn send_encoded(tx: &DatagramTx, d: OutDatagram) -> Result<(), OutputError> {
    let size = d.payload_len();
    tx.send(d).await.map_err(|e| output_error(e, size))
}

/// A transport's refusal of a `size`-byte datagram, as the handler sees it.
fn output_error(e: TunnelError, size: usize) -> OutputError {
    match e {
        TunnelError::QueueFull => OutputError::QueueFull,
        TunnelError::Closed => OutputError::Closed,
        e => match e.datagram_limit() {
            Some(max) => OutputError::TooLarge { size, max },
            None => OutputError::Transport(e.to_string()),
        },
    }
}
