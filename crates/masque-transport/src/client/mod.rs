//! The client face of the transports: one [`ClientConnection`] type over
//! HTTP/3, HTTP/2 and HTTP/1.1 (beside [`crate::server::ServerConnection`]) that
//! opens tunnels and hands them out as the same [`OpenTunnel`] the server side
//! uses, plus [`TunnelWriter`], the body writer a client runs per tunnel.
//!
//! * HTTP/3 (masque-h3 on quinn): extended CONNECT (RFC 9220) after the
//!   proxy's SETTINGS; QUIC DATAGRAMs when both sides enabled them, DATAGRAM
//!   capsules in the body otherwise (R9297-31).
//! * HTTP/2 (`h2`, TLS with ALPN `h2`): extended CONNECT (RFC 8441) only once
//!   the proxy's SETTINGS carried `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`
//!   (RFC 8441 §3); datagrams are DATAGRAM capsules.
//! * HTTP/1.1 (`hyper`, TLS with ALPN `http/1.1`): no sharing, each tunnel dials
//!   its own connection: `GET` + `Upgrade: <token>` answered 101 (RFC 9298
//!   §3.2, RFC 9110 §7.8), or `CONNECT host:port` answered 2xx; the upgraded
//!   connection carries the capsules.
//!
//! Every response that is not a tunnel comes back as [`OpenError::Refused`] with
//! its head; the caller applies its protocol's checks to the successful ones.

mod h1;
mod h2;
mod h3;
mod tcp;
mod writer;

#[cfg(test)]
mod tests;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::{HeaderMap, StatusCode, uri::Scheme};
use masque_proto::request::RequestForm;

pub use self::h1::H1ClientConfig;
pub use self::h2::H2ClientConfig;
pub use self::h3::QuicClientConfig;
pub use self::writer::{TunnelWriter, WriterEnd};
use crate::{
    server::TunnelLimits,
    socket_buffers::BufferSizes,
    tls::{ServerVerification, TlsError},
    tunnel::{OpenTunnel, Transport, TunnelError},
};

/// How a client connects and opens tunnels, for every transport.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// How the proxy's certificate is checked.
    pub verification: ServerVerification,
    /// Dialing, the TLS / QUIC handshake and the HTTP start (the peer's
    /// SETTINGS included) of one connection.
    pub connect_timeout: Duration,
    /// One tunnel request until its response (on HTTP/1.1 the dial included).
    pub open_timeout: Duration,
    /// Local address: the QUIC endpoint's; for TCP only its IP is used (the
    /// port is chosen by the system). `None`: any, by the proxy's family.
    pub bind: Option<SocketAddr>,
    pub quic: QuicClientConfig,
    pub h3: masque_h3::Config,
    pub h2: H2ClientConfig,
    pub h1: H1ClientConfig,
    /// Capsule queue and capsule payload bound of each tunnel.
    pub limits: TunnelLimits,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            verification: ServerVerification::default(),
            connect_timeout: Duration::from_secs(10),
            open_timeout: Duration::from_secs(10),
            bind: None,
            quic: QuicClientConfig::default(),
            h3: masque_h3::Config::default(),
            h2: H2ClientConfig::default(),
            h1: H1ClientConfig::default(),
            limits: TunnelLimits::default(),
        }
    }
}

/// A tunnel request, independent of the transport that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelHead {
    /// Extended (`:protocol` on HTTP/2 and HTTP/3, `Upgrade` on HTTP/1.1) or
    /// classic CONNECT.
    pub form: RequestForm,
    /// `:scheme` of an extended CONNECT (HTTP/2, HTTP/3).
    pub scheme: Scheme,
    /// Regular header fields (e.g. `capsule-protocol`, `proxy-authorization`).
    /// The adapter adds what its HTTP version needs (`Host`, `Connection`,
    /// `Upgrade` on HTTP/1.1).
    pub headers: HeaderMap,
    /// The tunnel carries HTTP datagrams (connect-udp, connect-ip): on HTTP/3 the
    /// stream is registered for QUIC DATAGRAMs when the proxy supports them.
    pub datagrams: bool,
}

impl TunnelHead {
    /// An extended CONNECT / Upgrade request for `protocol` on `https`.
    pub fn extended(
        protocol: impl Into<String>,
        authority: impl Into<String>,
        path: impl Into<String>,
    ) -> Self {
        Self {
            form: RequestForm::Extended {
                protocol: protocol.into(),
                authority: authority.into(),
                path: path.into(),
            },
            scheme: Scheme::HTTPS,
            headers: HeaderMap::new(),
            datagrams: false,
        }
    }

    /// A classic `CONNECT host:port`.
    pub fn classic(authority: impl Into<String>) -> Self {
        Self {
            form: RequestForm::Classic {
                authority: authority.into(),
            },
            scheme: Scheme::HTTPS,
            headers: HeaderMap::new(),
            datagrams: false,
        }
    }

    /// The upgrade token / `:protocol` of an extended request.
    pub fn protocol(&self) -> Option<&str> {
        match &self.form {
            RequestForm::Extended { protocol, .. } => Some(protocol),
            RequestForm::Classic { .. } => None,
        }
    }
}

/// The proxy's final response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

/// A tunnel the proxy accepted.
#[derive(Debug)]
pub struct Opened {
    /// The 2xx (HTTP/1.1 upgrade: the 101).
    pub response: ResponseHead,
    pub tunnel: OpenTunnel,
    /// The request stream id (HTTP/3, HTTP/2); on HTTP/1.1, where every tunnel
    /// has its own connection, the tunnel's sequence number on this client.
    pub stream_id: u64,
}

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The TLS configuration could not be built (bad CA list, ...).
    #[error("TLS configuration: {0}")]
    Config(#[from] TlsError),
    /// The server name is neither a DNS name nor an IP address.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
    /// Binding or the TCP connection failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS handshake over TCP failed (e.g. the certificate did not verify).
    #[error("TLS handshake: {0}")]
    TlsHandshake(#[source] std::io::Error),
    /// The server did not agree to the HTTP version (ALPN, RFC 7301).
    #[error("the server did not negotiate ALPN {expected:?} (it chose {negotiated:?})")]
    Alpn {
        expected: &'static str,
        negotiated: Option<String>,
    },
    /// quinn refused to start the connection.
    #[error("starting QUIC connection: {0}")]
    QuicStart(#[from] quinn::ConnectError),
    /// The QUIC handshake failed (a certificate that does not verify shows up here).
    #[error("QUIC connection: {0}")]
    Quic(#[from] quinn::ConnectionError),
    /// The HTTP layer failed to start (HTTP/3 control streams, HTTP/2 preface).
    #[error(transparent)]
    Http(#[from] TunnelError),
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

/// Why a tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The proxy answered with a final response that is not a tunnel (not 2xx;
    /// on HTTP/1.1 not 101 to an upgrade). The request was ended.
    #[error("the proxy refused the tunnel with {}", .0.status)]
    Refused(ResponseHead),
    /// The proxy's SETTINGS lack `SETTINGS_ENABLE_CONNECT_PROTOCOL` (RFC 8441
    /// §3, RFC 9220 §3, XC-04): no extended CONNECT was sent.
    #[error("the proxy does not enable extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL)")]
    ExtendedConnectDisabled,
    /// An HTTP/1.1 answer to an upgrade that is not a valid switch (RFC 9110 §7.8):
    /// a 101 without our token in `Upgrade` or without `Connection: upgrade`, or
    /// a 2xx instead of the 101.
    #[error("invalid {status} response to the upgrade: {reason}")]
    InvalidUpgrade { status: StatusCode, reason: String },
    /// The request cannot be expressed on this transport.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The connection is closing: GOAWAY received or [`ClientConnection::goaway`].
    #[error("the connection is going away")]
    GoingAway,
    /// HTTP/1.1: dialing the tunnel's own connection failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Tunnel(#[from] TunnelError),
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

/// A connection to a proxy, any transport, that opens tunnels. Cheap to clone.
///
/// HTTP/3 and HTTP/2 connections carry many tunnels and close once every clone
/// and every tunnel is gone (or on [`close`](Self::close)). HTTP/1.1 shares
/// nothing: each [`open`](Self::open) dials its own connection, which ends with
/// its tunnel.
#[derive(Debug, Clone)]
pub struct ClientConnection {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    kind: Kind,
    peer: SocketAddr,
    limits: TunnelLimits,
    open_timeout: Duration,
}

#[derive(Debug)]
enum Kind {
    H3(h3::H3Client),
    H2(h2::H2Client),
    H1(h1::H1Client),
}

impl ClientConnection {
    /// Connects to `addr` over `transport`; `server_name` is the TLS name (a DNS
    /// name or an IP literal, without brackets). HTTP/3: QUIC handshake and
    /// HTTP/3 start. HTTP/2: TCP, TLS (ALPN `h2`), preface and the proxy's
    /// SETTINGS. HTTP/1.1: only checks the configuration (each tunnel dials).
    /// All within `config.connect_timeout`.
    pub async fn connect(
        transport: Transport,
        addr: SocketAddr,
        server_name: &str,
        config: &ClientConfig,
    ) -> Result<Self, ConnectError> {
        let limit = config.connect_timeout;
        let kind = match transport {
            Transport::H3 => {
                let dial = h3::H3Client::connect(addr, server_name, config);
                Kind::H3(timed(limit, "QUIC and HTTP/3 handshake", dial).await?)
            }
            Transport::H2 => {
                let dial = h2::H2Client::connect(addr, server_name, config);
                Kind::H2(timed(limit, "TLS and HTTP/2 handshake", dial).await?)
            }
            Transport::H1 => Kind::H1(h1::H1Client::new(addr, server_name, config)?),
        };
        Ok(Self::new(kind, addr, config))
    }

    /// Wraps an HTTP/3 connection that is already up (e.g. shared with other
    /// code); only `config.limits` and `config.open_timeout` are used.
    pub fn from_h3(conn: masque_h3::Connection, config: &ClientConfig) -> Self {
        let peer = conn.quic().remote_address();
        Self::new(Kind::H3(h3::H3Client::wrap(conn, None)), peer, config)
    }

    /// Runs the HTTP/2 client handshake on `io`, a stream that negotiated `h2`
    /// (e.g. TLS set up by the caller), and waits for the proxy's SETTINGS.
    pub async fn h2_on<IO>(
        io: IO,
        peer: SocketAddr,
        config: &ClientConfig,
    ) -> Result<Self, ConnectError>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let start = h2::H2Client::handshake(io, &config.h2);
        let c = timed(config.connect_timeout, "HTTP/2 handshake", start).await?;
        Ok(Self::new(Kind::H2(c), peer, config))
    }

    fn new(kind: Kind, peer: SocketAddr, config: &ClientConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                kind,
                peer,
                limits: config.limits,
                open_timeout: config.open_timeout,
            }),
        }
    }

    pub fn transport(&self) -> Transport {
        match self.inner.kind {
            Kind::H3(_) => Transport::H3,
            Kind::H2(_) => Transport::H2,
            Kind::H1(_) => Transport::H1,
        }
    }

    /// The proxy's address.
    pub fn peer(&self) -> SocketAddr {
        self.inner.peer
    }

    /// Opens a tunnel: sends `head`, waits (bounded by `open_timeout`) for the
    /// final response and returns the tunnel when it is one. Any other final
    /// response is [`OpenError::Refused`], the request ended (HTTP/3: stream
    /// reset with H3_REQUEST_CANCELLED; HTTP/2: RST_STREAM CANCEL; HTTP/1.1:
    /// the connection closed, RFC 9931).
    pub async fn open(&self, head: &TunnelHead) -> Result<Opened, OpenError> {
        let (limits, limit) = (self.inner.limits, self.inner.open_timeout);
        match &self.inner.kind {
            Kind::H3(c) => c.open(head, limits, limit).await,
            Kind::H2(c) => c.open(head, limits, limit).await,
            Kind::H1(c) => c.open(head, limits, limit).await,
        }
    }

    /// Graceful shutdown begins: no new tunnels from here (HTTP/3 also sends
    /// GOAWAY); open tunnels go on.
    pub async fn goaway(&self) {
        match &self.inner.kind {
            Kind::H3(c) => c.goaway().await,
            Kind::H2(c) => c.goaway(),
            Kind::H1(c) => c.goaway(),
        }
    }

    /// Graceful close: [`goaway`](Self::goaway), up to `limit` for the open
    /// tunnels to end, then [`close`](Self::close) and a bounded wait for the
    /// connection to be gone.
    pub async fn shutdown(&self, limit: Duration) {
        match &self.inner.kind {
            Kind::H3(c) => c.shutdown(limit).await,
            Kind::H2(c) => c.shutdown(limit).await,
            Kind::H1(c) => c.goaway(),
        }
    }

    /// Closes the connection now (HTTP/1.1: refuses new tunnels; open ones
    /// end with their own connections).
    pub fn close(&self) {
        match &self.inner.kind {
            Kind::H3(c) => c.close(),
            Kind::H2(c) => c.close(),
            Kind::H1(c) => c.goaway(),
        }
    }

    /// Waits up to `limit` until the connection is gone after [`close`](Self::close)
    /// (HTTP/3: the endpoint idle; HTTP/2: the driver ended).
    pub async fn wait_closed(&self, limit: Duration) {
        match &self.inner.kind {
            Kind::H3(c) => c.wait_idle(limit).await,
            Kind::H2(c) => c.wait_ended(limit).await,
            Kind::H1(_) => {}
        }
    }

    /// Whether the connection has ended (HTTP/1.1: whether it was closed).
    pub fn is_closed(&self) -> bool {
        match &self.inner.kind {
            Kind::H3(c) => c.is_closed(),
            Kind::H2(c) => c.is_closed(),
            Kind::H1(c) => c.is_closed(),
        }
    }

    /// Resolves once the connection has ended, however it ended (HTTP/3:
    /// CONNECTION_CLOSE sent or received, idle timeout; HTTP/2: the driver
    /// stopped). HTTP/1.1, which has no connection of its own between
    /// tunnels, never resolves. For the client's connection pool.
    pub async fn closed(&self) {
        match &self.inner.kind {
            Kind::H3(c) => c.closed().await,
            Kind::H2(c) => c.wait_ended_forever().await,
            Kind::H1(_) => std::future::pending().await,
        }
    }

    /// How many tunnels the peer lets this connection have open at once, as
    /// it says now: HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS (0 once we go
    /// away). `None` when the transport does not tell: HTTP/3 (quinn does
    /// not expose the peer's MAX_STREAMS credit; a proxy at its limit
    /// answers 503 `connection_limit_reached`) and HTTP/1.1 (one connection
    /// per tunnel).
    pub fn peer_max_streams(&self) -> Option<usize> {
        match &self.inner.kind {
            Kind::H2(c) => Some(c.max_send_streams()),
            Kind::H3(_) | Kind::H1(_) => None,
        }
    }

    /// HTTP/2: whether the proxy's SETTINGS, as applied at the handshake,
    /// enable extended CONNECT (RFC 8441 §3). `None` on HTTP/3 (its SETTINGS
    /// are [`masque_h3::Connection::peer_settings`] of [`as_h3`](Self::as_h3)),
    /// on HTTP/1.1 (no such setting) and once the connection is going away.
    pub fn h2_extended_connect(&self) -> Option<bool> {
        match &self.inner.kind {
            Kind::H2(c) => c.extended_connect(),
            _ => None,
        }
    }

    /// HTTP/1.1: dials one TLS connection to the proxy (ALPN `http/1.1`, or
    /// none) within `open_timeout` and closes it (close_notify), to learn
    /// that the proxy is reachable and speaks HTTP/1.1 without opening a
    /// tunnel; the session it leaves lets the first tunnel's dial resume TLS.
    /// HTTP/3 and HTTP/2 are connected already: nothing to do.
    pub async fn probe(&self) -> Result<(), ConnectError> {
        match &self.inner.kind {
            Kind::H1(c) => c.probe(self.inner.open_timeout).await,
            Kind::H3(_) | Kind::H2(_) => Ok(()),
        }
    }

    /// The HTTP/3 connection, for transport-specific use and statistics.
    pub fn as_h3(&self) -> Option<&masque_h3::Connection> {
        match &self.inner.kind {
            Kind::H3(c) => Some(c.connection()),
            _ => None,
        }
    }

    /// The QUIC socket's buffer sizes as granted (HTTP/3 dialed by
    /// [`connect`](Self::connect) only).
    pub fn socket_buffers(&self) -> Option<BufferSizes> {
        match &self.inner.kind {
            Kind::H3(c) => c.socket_buffers(),
            _ => None,
        }
    }
}

/// `f` within `limit`, else [`ConnectError::Timeout`] naming `what`.
async fn timed<T>(
    limit: Duration,
    what: &'static str,
    f: impl Future<Output = Result<T, ConnectError>>,
) -> Result<T, ConnectError> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| ConnectError::Timeout(what))?
}

/// A DATAGRAM-capsule sender and its queue, sized by `limits`.
fn capsule_datagrams(
    limits: TunnelLimits,
) -> (crate::tunnel::DatagramTx, crate::tunnel::CapsuleQueue) {
    let (tx, rx) =
        crate::tunnel::CapsuleSender::channel(limits.capsule_queue, limits.max_capsule_payload);
    (crate::tunnel::DatagramTx::Capsule(tx), rx)
}
