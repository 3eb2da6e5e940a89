//! An HTTP/3 connection over a quinn connection: SETTINGS exchange, request
//! streams, HTTP datagrams and GOAWAY (RFC 9114 §5.2, §6, §7).
//!
//! Tasks per connection: the control-stream reader (and peer QPACK streams), the
//! datagram reader, and on servers the request acceptor. They end when the QUIC
//! connection ends; dropping the last [`Connection`] handle (and every stream)
//! closes it with H3_NO_ERROR.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

use bytes::BytesMut;
use tokio::sync::{Notify, mpsc, watch};

use crate::{
    Code,
    config::Config,
    control,
    datagram::{DatagramRouter, read_loop},
    error::Error,
    frame::{self, ty},
    message::RequestHead,
    settings::Settings,
    stats::{Stats, StatsSnapshot},
    stream::{self, RequestStream},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// State shared by the connection's tasks and handles.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) quic: quinn::Connection,
    pub(crate) side: Side,
    pub(crate) config: Config,
    pub(crate) peer_settings: watch::Receiver<Option<Settings>>,
    pub(crate) router: Arc<DatagramRouter>,
    pub(crate) stats: Arc<Stats>,
    /// Our control stream, kept open for the connection's life (closing it is a
    /// connection error for the peer); GOAWAY is written here.
    control_send: tokio::sync::Mutex<Option<quinn::SendStream>>,
    /// Smallest id we told the peer we will not process (GOAWAY sent).
    goaway_sent: Mutex<Option<u64>>,
    /// Id from the peer's last GOAWAY (u64::MAX = none).
    pub(crate) goaway_received: AtomicU64,
    /// Next client bidi stream id the server has not seen (GOAWAY id).
    pub(crate) next_request_id: AtomicU64,
    /// Open request streams, to drain on shutdown.
    pub(crate) active_requests: AtomicUsize,
    pub(crate) requests_changed: Notify,
}

impl Shared {
    /// Closes the connection with an HTTP/3 connection error and returns it as
    /// an [`Error`] for the caller to propagate.
    pub(crate) fn fail(&self, code: Code, reason: &'static str) -> Error {
        tracing::debug!(%code, reason, "HTTP/3 connection error");
        self.quic.close(code.into(), reason.as_bytes());
        Error::protocol(code, reason)
    }

    pub(crate) fn goaway_sent(&self) -> Option<u64> {
        *self.goaway_sent.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Closes the QUIC connection when the last user handle goes away.
#[derive(Debug)]
pub(crate) struct Handle {
    pub(crate) shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.quic.close(Code::NO_ERROR.into(), b"");
    }
}

/// Requests parsed by the acceptor task, waiting for `Connection::accept`.
type Incoming = Arc<tokio::sync::Mutex<mpsc::Receiver<(RequestHead, RequestStream)>>>;

/// An HTTP/3 connection (client or server). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Connection {
    pub(crate) handle: Arc<Handle>,
    incoming: Option<Incoming>,
}

impl Connection {
    /// Starts HTTP/3 as a server on an accepted QUIC connection.
    pub async fn server(quic: quinn::Connection, config: Config) -> Result<Self, Error> {
        Self::start(quic, config, Side::Server).await
    }

    /// Starts HTTP/3 as a client on an established QUIC connection.
    pub async fn client(quic: quinn::Connection, config: Config) -> Result<Self, Error> {
        Self::start(quic, config, Side::Client).await
    }

    async fn start(quic: quinn::Connection, config: Config, side: Side) -> Result<Self, Error> {
        let (settings_tx, settings_rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            quic: quic.clone(),
            side,
            peer_settings: settings_rx,
            router: Arc::new(DatagramRouter::default()),
            stats: Arc::new(Stats::default()),
            control_send: tokio::sync::Mutex::new(None),
            goaway_sent: Mutex::new(None),
            goaway_received: AtomicU64::new(u64::MAX),
            next_request_id: AtomicU64::new(0),
            active_requests: AtomicUsize::new(0),
            requests_changed: Notify::new(),
            config,
        });
        open_control_stream(&shared).await?;
        tokio::spawn(control::accept_uni_streams(
            Arc::clone(&shared),
            settings_tx,
        ));
        tokio::spawn(read_loop(
            quic.clone(),
            Arc::clone(&shared.router),
            Arc::clone(&shared.stats),
        ));
        let handle = Arc::new(Handle {
            shared: Arc::clone(&shared),
        });
        let incoming = match side {
            Side::Server => {
                let (tx, rx) = mpsc::channel(shared.config.accept_queue_capacity.max(1));
                tokio::spawn(stream::accept_requests(Arc::clone(&shared), tx));
                Some(Arc::new(tokio::sync::Mutex::new(rx)))
            }
            Side::Client => {
                tokio::spawn(stream::refuse_server_bidi(Arc::clone(&shared)));
                None
            }
        };
        Ok(Self { handle, incoming })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    pub fn side(&self) -> Side {
        self.shared().side
    }

    /// The underlying QUIC connection (addresses, RTT, statistics).
    pub fn quic(&self) -> &quinn::Connection {
        &self.shared().quic
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.shared().stats.snapshot()
    }

    /// The live counters of this connection, for an owner that reports them
    /// while the connection runs (e.g. a node's `/metrics`).
    pub fn stats_handle(&self) -> Arc<Stats> {
        Arc::clone(&self.shared().stats)
    }

    /// The peer's SETTINGS, waiting for them up to `config.settings_timeout`.
    pub async fn peer_settings(&self) -> Result<Settings, Error> {
        wait_peer_settings(self.shared()).await
    }

    /// Server: the next well-formed request and its stream. Malformed requests were
    /// already answered with a stream error (ERR-05). `None` when the connection
    /// ended.
    pub async fn accept(&self) -> Option<(RequestHead, RequestStream)> {
        let incoming = self.incoming.as_ref()?;
        let mut rx = incoming.lock().await;
        let (head, mut stream) = rx.recv().await?;
        stream.attach(Arc::clone(&self.handle));
        Some((head, stream))
    }

    /// Client: sends a request. For extended CONNECT this first waits for the
    /// server's SETTINGS and refuses when it lacks ENABLE_CONNECT_PROTOCOL (XC-04)
    /// or, if `datagrams` is set, H3_DATAGRAM (R9297-12).
    pub async fn open_request(
        &self,
        head: &RequestHead,
        datagrams: bool,
    ) -> Result<RequestStream, Error> {
        let shared = self.shared();
        if shared.goaway_received.load(Ordering::Acquire) != u64::MAX {
            return Err(Error::GoingAway);
        }
        if head.protocol.is_some() || datagrams {
            let peer = wait_peer_settings(shared).await?;
            if head.protocol.is_some() && !peer.enable_connect_protocol {
                return Err(Error::PeerSettingMissing(
                    "SETTINGS_ENABLE_CONNECT_PROTOCOL",
                ));
            }
            if datagrams && (!peer.h3_datagram || shared.quic.max_datagram_size().is_none()) {
                return Err(Error::PeerSettingMissing("SETTINGS_H3_DATAGRAM"));
            }
        }
        let (send, recv) = shared.quic.open_bi().await?;
        let mut stream =
            RequestStream::new(Arc::clone(shared), send, recv, datagrams, head.is_connect());
        stream.attach(Arc::clone(&self.handle));
        stream.send_request(head).await?;
        Ok(stream)
    }

    /// Sends GOAWAY (RFC 9114 §5.2). A server names the first request stream id it
    /// will not process; later requests are rejected with H3_REQUEST_REJECTED. A
    /// client sends push id 0 (it never allows pushes). Repeated calls never raise
    /// the id.
    pub async fn goaway(&self) -> Result<(), Error> {
        let shared = self.shared();
        let id = match shared.side {
            Side::Server => shared.next_request_id.load(Ordering::Acquire),
            Side::Client => 0,
        };
        {
            let mut sent = shared.goaway_sent.lock().unwrap_or_else(|p| p.into_inner());
            if sent.is_some_and(|prev| prev <= id) {
                return Ok(());
            }
            *sent = Some(id);
        }
        let mut buf = BytesMut::new();
        frame::encode_varint_frame(ty::GOAWAY, id, &mut buf);
        let mut control = shared.control_send.lock().await;
        if let Some(s) = control.as_mut() {
            s.write_all(&buf).await?;
        }
        Ok(())
    }

    /// Number of request streams currently open.
    pub fn active_requests(&self) -> usize {
        self.shared().active_requests.load(Ordering::Acquire)
    }

    /// Graceful shutdown: GOAWAY, wait until open requests end or `timeout`
    /// passes, then close the connection with H3_NO_ERROR.
    pub async fn shutdown(&self, timeout: std::time::Duration) -> Result<(), Error> {
        self.goaway().await?;
        let shared = self.shared();
        let drained = async {
            loop {
                let notified = shared.requests_changed.notified();
                if shared.active_requests.load(Ordering::Acquire) == 0 {
                    break;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(timeout, drained).await;
        self.close(Code::NO_ERROR, b"shutdown");
        Ok(())
    }

    pub fn close(&self, code: Code, reason: &[u8]) {
        self.shared().quic.close(code.into(), reason);
    }

    /// Resolves when the QUIC connection has ended.
    pub async fn closed(&self) -> quinn::ConnectionError {
        self.shared().quic.closed().await
    }
}

pub(crate) async fn wait_peer_settings(shared: &Shared) -> Result<Settings, Error> {
    let mut rx = shared.peer_settings.clone();
    let timeout = shared.config.settings_timeout;
    let wait = async {
        loop {
            if let Some(s) = rx.borrow_and_update().clone() {
                return Ok(s);
            }
            if rx.changed().await.is_err() {
                // The control task ended without SETTINGS: the connection is gone.
                return Err(match shared.quic.close_reason() {
                    Some(e) => Error::Connection(e),
                    None => Error::UnexpectedEnd("SETTINGS"),
                });
            }
        }
    };
    tokio::select! {
        r = wait => r,
        e = shared.quic.closed() => Err(Error::Connection(e)),
        _ = tokio::time::sleep(timeout) => Err(Error::SettingsTimeout(timeout)),
    }
}

/// Opens our control stream and sends SETTINGS (+ GREASE) first (RFC 9114 §6.2.1).
async fn open_control_stream(shared: &Shared) -> Result<(), Error> {
    let mut send = shared.quic.open_uni().await?;
    let mut buf = BytesMut::with_capacity(64);
    masque_proto::varint::put(control::STREAM_CONTROL, &mut buf);
    let mut payload = BytesMut::new();
    let grease = shared
        .config
        .send_grease
        .then(|| (u64::from(rand_u16()), u64::from(rand_u16())));
    Settings::masque(shared.config.max_field_section_size).encode_payload(grease, &mut payload);
    frame::encode_frame(ty::SETTINGS, &payload, &mut buf);
    if shared.config.send_grease {
        // RFC 9114 §7.2.8: a reserved frame type with a short payload.
        frame::encode_frame(0x1f * u64::from(rand_u16()) + 0x21, b"masque", &mut buf);
    }
    send.write_all(&buf).await?;
    *shared.control_send.lock().await = Some(send);
    Ok(())
}

/// A little entropy for GREASE values; not security relevant.
fn rand_u16() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::Instant::now()) as u16
}
