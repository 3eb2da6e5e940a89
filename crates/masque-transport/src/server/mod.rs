//! The server face of the transports: one [`ServerConnection`] type over
//! HTTP/3, HTTP/2 and HTTP/1.1 (accept, goaway, close, peer) that yields
//! [`PendingTunnel`]s, each answered once: [`PendingTunnel::accept`] (the
//! adapter picks 200 or 101; the protocol passes its headers) or
//! [`PendingTunnel::reject`].

mod h1;
mod h2;
mod h3;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use masque_proto::capsule::DEFAULT_MAX_CAPSULE_SIZE;

pub use self::h1::H1Config;
pub use self::h2::H2Config;
use crate::tunnel::{OpenTunnel, ResetReason, Transport, TunnelError, TunnelRequest};

/// Per-tunnel limits every adapter applies.
#[derive(Debug, Clone, Copy)]
pub struct TunnelLimits {
    /// DATAGRAM capsules queued for the body writer (capsule transports);
    /// beyond it datagrams are dropped and counted.
    pub capsule_queue: usize,
    /// Largest HTTP datagram payload sent as one capsule.
    pub max_capsule_payload: usize,
}

impl Default for TunnelLimits {
    fn default() -> Self {
        Self {
            capsule_queue: 256,
            // The peer's bound applies to the capsule value (64 KiB by
            // default), which is this payload: context id and UDP payload.
            max_capsule_payload: DEFAULT_MAX_CAPSULE_SIZE,
        }
    }
}

/// One accepted client connection, any transport. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ServerConnection {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    kind: Kind,
    peer: SocketAddr,
    limits: TunnelLimits,
}

#[derive(Debug)]
enum Kind {
    H3(masque_h3::Connection),
    H2(h2::H2Connection),
    H1(h1::H1Connection),
}

impl ServerConnection {
    /// An HTTP/3 connection (SETTINGS already exchanged by masque-h3).
    pub fn h3(conn: masque_h3::Connection, limits: TunnelLimits) -> Self {
        let peer = conn.quic().remote_address();
        Self::new(Kind::H3(conn), peer, limits)
    }

    /// Runs the HTTP/2 handshake (preface and SETTINGS, bounded by
    /// `config.handshake_timeout`) on a TLS stream that negotiated `h2`.
    pub async fn h2<IO>(
        io: IO,
        peer: SocketAddr,
        config: &H2Config,
        limits: TunnelLimits,
    ) -> Result<Self, TunnelError>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let conn = h2::H2Connection::handshake(io, config).await?;
        Ok(Self::new(Kind::H2(conn), peer, limits))
    }

    /// Serves HTTP/1.1 on a TLS stream (ALPN `http/1.1` or none): one request,
    /// which becomes at most one tunnel. `peer_watch`, a second handle on the
    /// same TCP socket (e.g. a dup of its descriptor), lets a request being
    /// set up see the client's reset even while hyper is not reading.
    pub fn h1<IO>(
        io: IO,
        peer: SocketAddr,
        config: &H1Config,
        limits: TunnelLimits,
        peer_watch: Option<tokio::net::TcpStream>,
    ) -> Self
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let conn = h1::H1Connection::serve(io, config, peer_watch);
        Self::new(Kind::H1(conn), peer, limits)
    }

    fn new(kind: Kind, peer: SocketAddr, limits: TunnelLimits) -> Self {
        Self {
            inner: Arc::new(Inner { kind, peer, limits }),
        }
    }

    pub fn transport(&self) -> Transport {
        match self.inner.kind {
            Kind::H3(_) => Transport::H3,
            Kind::H2(_) => Transport::H2,
            Kind::H1(_) => Transport::H1,
        }
    }

    pub fn peer(&self) -> SocketAddr {
        self.inner.peer
    }

    /// Whether the connection carries one tunnel at most (HTTP/1.1): its
    /// owner closes it when that request is done.
    pub fn single_tunnel(&self) -> bool {
        matches!(self.inner.kind, Kind::H1(_))
    }

    /// The next request; `None` once the connection can bring no more (it
    /// ended, or HTTP/1.1 already handed out its request).
    pub async fn accept(&self) -> Option<PendingTunnel> {
        let (peer, limits) = (self.inner.peer, self.inner.limits);
        match &self.inner.kind {
            Kind::H3(c) => {
                let (head, stream) = c.accept().await?;
                Some(h3::pending(&head, stream, peer, limits))
            }
            Kind::H2(c) => c.accept(peer, limits).await,
            Kind::H1(c) => c.accept(peer, limits).await,
        }
    }

    /// Graceful shutdown begins: GOAWAY (HTTP/3, HTTP/2); open tunnels go on.
    pub async fn goaway(&self) {
        match &self.inner.kind {
            Kind::H3(c) => {
                let _ = c.goaway().await;
            }
            Kind::H2(c) => c.goaway(),
            Kind::H1(c) => c.goaway(),
        }
    }

    /// Closes the connection now.
    pub fn close(&self) {
        match &self.inner.kind {
            Kind::H3(c) => c.close(masque_h3::Code::NO_ERROR, b""),
            Kind::H2(c) => c.close(),
            Kind::H1(c) => c.close(),
        }
    }

    /// The HTTP/3 connection, for transport-specific statistics.
    pub fn as_h3(&self) -> Option<&masque_h3::Connection> {
        match &self.inner.kind {
            Kind::H3(c) => Some(c),
            _ => None,
        }
    }
}

/// A server-side tunnel before its response: answer it once.
#[derive(Debug)]
pub struct PendingTunnel {
    pub request: TunnelRequest,
    inner: PendingInner,
    limits: TunnelLimits,
}

// HTTP/3 is the common variant: boxing it would cost every HTTP/3 tunnel an
// allocation to save bytes on the others, which live as long.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum PendingInner {
    H3(masque_h3::RequestStream),
    H2(h2::H2Pending),
    H1(h1::H1Pending),
}

/// How long an HTTP/1.1 connection may take to hand over the upgraded stream.
const UPGRADE_LIMIT: Duration = Duration::from_secs(5);

/// Watches a pending request for the peer giving up on it (see
/// [`PendingTunnel::watch`]).
#[derive(Debug)]
pub struct CancelWatch<'a>(&'a mut PendingInner);

impl CancelWatch<'_> {
    /// Resolves when the peer abandoned the request before its answer:
    /// STOP_SENDING or connection loss on HTTP/3, RST_STREAM on HTTP/2, a TCP
    /// reset on HTTP/1.1 (when the connection has a peer watch).
    pub async fn cancelled(self) {
        match self.0 {
            PendingInner::H3(stream) => {
                let _ = stream.send.stopped().await;
            }
            PendingInner::H2(p) => p.reset_by_peer().await,
            PendingInner::H1(p) => p.reset_by_peer().await,
        }
    }
}

impl PendingTunnel {
    /// The request, and a watch for its cancellation by the peer, usable
    /// together while the request is being set up.
    pub fn watch(&mut self) -> (&TunnelRequest, CancelWatch<'_>) {
        (&self.request, CancelWatch(&mut self.inner))
    }

    /// Sends a final non-2xx response and ends the stream (on HTTP/1.1 the
    /// response carries `Connection: close` and the connection ends: RFC 9931).
    /// Waits as long as the peer withholds stream credit: see
    /// [`reject_within`](Self::reject_within).
    pub async fn reject(self, status: http::StatusCode, headers: http::HeaderMap) {
        match self.inner {
            PendingInner::H3(stream) => {
                h3::reject(stream, status, headers, None).await;
            }
            PendingInner::H2(p) => p.reject(status, headers),
            PendingInner::H1(p) => p.reject(status, headers),
        }
    }

    /// [`reject`](Self::reject), the response bounded by `deadline`: a peer
    /// that grants no stream credit for it gets the stream reset instead.
    /// `false` when the deadline passed.
    pub async fn reject_within(
        self,
        status: http::StatusCode,
        headers: http::HeaderMap,
        deadline: Duration,
    ) -> bool {
        match self.inner {
            PendingInner::H3(stream) => h3::reject(stream, status, headers, Some(deadline)).await,
            PendingInner::H2(p) => {
                p.reject(status, headers);
                true
            }
            PendingInner::H1(p) => {
                p.reject(status, headers);
                true
            }
        }
    }

    /// Resets the stream without a response (HTTP/1.1: closes the connection).
    pub fn reset(self, reason: ResetReason) {
        match self.inner {
            PendingInner::H3(stream) => h3::reset(stream, reason),
            PendingInner::H2(p) => p.reset(reason),
            PendingInner::H1(p) => drop(p),
        }
    }

    /// Sends the 2xx (101 for an HTTP/1.1 upgrade) with `headers` and returns
    /// the open tunnel.
    pub async fn accept(self, headers: http::HeaderMap) -> Result<OpenTunnel, TunnelError> {
        self.accept_inner(headers, None).await
    }

    /// [`accept`](Self::accept), the response bounded by `deadline`: a peer
    /// that grants no stream credit for it gets the stream reset and
    /// [`TunnelError::Timeout`].
    pub async fn accept_within(
        self,
        headers: http::HeaderMap,
        deadline: Duration,
    ) -> Result<OpenTunnel, TunnelError> {
        self.accept_inner(headers, Some(deadline)).await
    }

    async fn accept_inner(
        self,
        headers: http::HeaderMap,
        deadline: Option<Duration>,
    ) -> Result<OpenTunnel, TunnelError> {
        match self.inner {
            PendingInner::H3(stream) => h3::accept(stream, headers, self.limits, deadline).await,
            PendingInner::H2(p) => p.accept(headers, self.limits),
            PendingInner::H1(p) => {
                tokio::time::timeout(UPGRADE_LIMIT, p.accept(headers, self.limits))
                    .await
                    .map_err(|_| TunnelError::Timeout("HTTP/1.1 upgrade"))?
            }
        }
    }
}
