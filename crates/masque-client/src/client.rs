//! [`ProxyClient`]: tunnels to a proxy (HTTP/3, HTTP/2 or HTTP/1.1, see
//! [`crate::TransportChoice`]) on one dedicated connection or on pooled ones
//! ([`crate::pool`]), and the dialer behind it.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use masque_proto::{
    proxy_status::ProxyStatusError,
    template::{IpTarget, IpTemplate, TcpTemplate, UdpTemplate},
};
use masque_transport::{ClientConfig, ClientConnection, Transport, socket_buffers::BufferSizes};
use ractor::ActorCell;
use tokio::time::timeout;

use crate::{
    ClientError, ClientOptions, IpSession, Target, TcpMode, TcpTunnel, TransportChoice, UdpSession,
    pool::{Lease, PoolKey, UpstreamPool},
    proxy_url::{self, ProxyUrl},
    request,
};

/// Everything needed to (re)connect to one proxy, validated up front.
#[derive(Debug, Clone)]
pub(crate) struct Dialer {
    url: ProxyUrl,
    template: Arc<UdpTemplate>,
    tcp_template: Arc<TcpTemplate>,
    ip_template: Arc<IpTemplate>,
    config: ClientConfig,
    options: Arc<ClientOptions>,
}

impl Dialer {
    /// Parses the URL and template (R9298-08) and checks that the TLS
    /// configuration builds (server name = URL host). Only configuration errors here.
    pub fn new(proxy_url: &str, options: ClientOptions) -> Result<Self, ClientError> {
        let url = proxy_url::parse(proxy_url)?;
        let explicit = options.template.as_deref().or(url.template.as_deref());
        let template = request::template(&url.authority, explicit)?;
        let tcp_template = request::tcp_template(&url.authority, options.tcp_template.as_deref())?;
        let ip_template = request::ip_template(&url.authority, options.ip_template.as_deref())?;
        // A bad CA list or pin is a configuration error, found before dialing.
        masque_transport::tls::client_config(&options.verification, &[])?;
        Ok(Self {
            url,
            template: Arc::new(template),
            tcp_template: Arc::new(tcp_template),
            ip_template: Arc::new(ip_template),
            config: options.client_config(),
            options: Arc::new(options),
        })
    }

    /// Checks that `target` can be requested with this template.
    pub fn check_target(&self, target: &Target) -> Result<(), ClientError> {
        request::build(
            &self.template,
            &target.to_udp_target()?,
            &self.options.headers,
        )
        .map(drop)
    }

    /// The parsed proxy URL.
    pub fn url(&self) -> &ProxyUrl {
        &self.url
    }

    /// The options this dialer connects with.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The pool key of the connections this dialer makes.
    pub fn key(&self) -> PoolKey {
        PoolKey::from_parts(&self.url, &self.options)
    }

    /// Resolves the proxy and connects over the chosen transport, all within
    /// `connect_timeout`; [`TransportChoice::Auto`] races the transports
    /// (`crate::racer`, within its own deadline).
    pub async fn dial(&self) -> Result<ClientConnection, ClientError> {
        if self.options.transport == TransportChoice::Auto {
            return crate::racer::race(&self.url, &self.options).await;
        }
        let limit = self.options.connect_timeout;
        let transport = self.options.transport.transport();
        let dial = async {
            let addr = self.resolve().await?;
            ClientConnection::connect(transport, addr, &self.url.host, &self.config)
                .await
                .map_err(|e| ClientError::from_connect(e, limit))
        };
        timeout(limit, dial)
            .await
            .map_err(|_| ClientError::Timeout(limit))?
    }

    /// A client on one dedicated connection.
    pub async fn connect(&self) -> Result<ProxyClient, ClientError> {
        let conn = self.dial().await?;
        Ok(self.client(Upstream::Dedicated(conn)))
    }

    fn client(&self, upstream: Upstream) -> ProxyClient {
        ProxyClient {
            upstream,
            template: Arc::clone(&self.template),
            tcp_template: Arc::clone(&self.tcp_template),
            ip_template: Arc::clone(&self.ip_template),
            options: Arc::clone(&self.options),
        }
    }

    async fn resolve(&self) -> Result<SocketAddr, ClientError> {
        let (host, port) = (self.url.host.as_str(), self.url.port);
        let resolve_err = |reason: String| ClientError::Resolve {
            host: host.to_owned(),
            reason,
        };
        tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| resolve_err(e.to_string()))?
            .next()
            .ok_or_else(|| resolve_err("no address".to_owned()))
    }
}

/// Tunnels to one proxy: on one dedicated connection
/// ([`connect`](Self::connect)), or on connections shared through an
/// [`UpstreamPool`] ([`new`](Self::new), [`new_in`](Self::new_in)). Cheap to
/// clone.
///
/// Dedicated: open any number of tunnels on it (up to the proxy's stream
/// limit); on HTTP/3 and HTTP/2 the connection closes when every clone and
/// every tunnel opened on it are gone, or on [`close`](Self::close); on
/// HTTP/1.1 each tunnel has its own connection.
///
/// Pooled: each [`connect_udp`](Self::connect_udp),
/// [`connect_tcp`](Self::connect_tcp), [`connect_ip`](Self::connect_ip)
/// takes a slot on a pooled connection (dialling one when every connection
/// of its [`PoolKey`] is full) and the session holds it until it goes. The
/// connections belong to the pool, which closes them once idle.
#[derive(Debug, Clone)]
pub struct ProxyClient {
    upstream: Upstream,
    template: Arc<UdpTemplate>,
    tcp_template: Arc<TcpTemplate>,
    ip_template: Arc<IpTemplate>,
    options: Arc<ClientOptions>,
}

#[derive(Debug, Clone)]
enum Upstream {
    Dedicated(ClientConnection),
    Pooled(Pooled),
}

#[derive(Debug, Clone)]
struct Pooled {
    /// `None`: [`UpstreamPool::global`], found at the first checkout.
    pool: Option<UpstreamPool>,
    key: PoolKey,
    dialer: Arc<Dialer>,
    /// The actor whose end gives back the slots this client takes.
    holder: Option<ActorCell>,
}

/// A session type that can hold the slot it was opened on.
trait HoldsLease {
    fn hold(&mut self, lease: Lease);
}

impl HoldsLease for UdpSession {
    fn hold(&mut self, lease: Lease) {
        self.lease = Some(lease);
    }
}

impl HoldsLease for TcpTunnel {
    fn hold(&mut self, lease: Lease) {
        self.lease = Some(lease);
    }
}

impl HoldsLease for IpSession {
    fn hold(&mut self, lease: Lease) {
        self.lease = Some(lease);
    }
}

/// Checkouts one open may take: a tunnel refused for the connection's
/// limit, or on a connection going away, is retried on another.
const OPEN_ATTEMPTS: usize = 3;

impl ProxyClient {
    /// Connects to `proxy_url` (see [`crate::connect`] for its forms) over
    /// `options.transport`: one dedicated connection. On HTTP/1.1 this only
    /// resolves the proxy: each tunnel dials its own connection.
    pub async fn connect(proxy_url: &str, options: ClientOptions) -> Result<Self, ClientError> {
        Dialer::new(proxy_url, options)?.connect().await
    }

    /// A pooled client on the process-wide [`UpstreamPool::global`]: checks
    /// the URL, templates and TLS material, dials nothing. Tunnels open
    /// with [`connect_udp`](Self::connect_udp),
    /// [`connect_tcp`](Self::connect_tcp) and [`connect_ip`](Self::connect_ip)
    /// (or the `open_*` methods, the same on a pooled client).
    pub fn new(proxy_url: &str, options: ClientOptions) -> Result<Self, ClientError> {
        Self::pooled(proxy_url, options, None)
    }

    /// Like [`new`](Self::new), on `pool`.
    pub fn new_in(
        proxy_url: &str,
        options: ClientOptions,
        pool: &UpstreamPool,
    ) -> Result<Self, ClientError> {
        Self::pooled(proxy_url, options, Some(pool.clone()))
    }

    fn pooled(
        proxy_url: &str,
        options: ClientOptions,
        pool: Option<UpstreamPool>,
    ) -> Result<Self, ClientError> {
        let dialer = Dialer::new(proxy_url, options)?;
        let pooled = Pooled {
            pool,
            key: dialer.key(),
            dialer: Arc::new(dialer.clone()),
            holder: None,
        };
        Ok(dialer.client(Upstream::Pooled(pooled)))
    }

    /// This client, sending `headers` with each tunnel request instead of
    /// `options.headers` (e.g. a relay's per-request `Via`), without
    /// parsing the URL or building TLS again. Pooled: the tunnels share the
    /// same connections unless the `Proxy-Authorization` differs, which is
    /// part of the [`PoolKey`].
    pub fn with_headers(&self, headers: http::HeaderMap) -> Self {
        let mut c = self.clone();
        let mut options = (*self.options).clone();
        options.headers = headers;
        if let Upstream::Pooled(p) = &mut c.upstream {
            p.key = PoolKey::from_parts(p.dialer.url(), &options);
        }
        c.options = Arc::new(options);
        c
    }

    /// This client, with the slots it takes from here on tied to `holder`
    /// as well as to the sessions: the owner monitors `holder`, and its end
    /// (a crash included) gives them back. No effect on a dedicated client.
    pub fn held_by(&self, holder: ActorCell) -> Self {
        let mut c = self.clone();
        if let Upstream::Pooled(p) = &mut c.upstream {
            p.holder = Some(holder);
        }
        c
    }

    /// Whether tunnels go through the pool.
    pub fn is_pooled(&self) -> bool {
        matches!(self.upstream, Upstream::Pooled(_))
    }

    /// The pool key of this client's tunnels (dedicated: what it would be).
    pub fn pool_key(&self) -> Option<&PoolKey> {
        match &self.upstream {
            Upstream::Pooled(p) => Some(&p.key),
            Upstream::Dedicated(_) => None,
        }
    }

    /// A slot for one tunnel: pooled, a slot on a shared connection (HTTP/1.1:
    /// a connection of its own); dedicated, this client's connection. Open
    /// the tunnel on [`Lease::connection`] and keep the lease with it.
    pub async fn lease(&self) -> Result<Lease, ClientError> {
        match &self.upstream {
            Upstream::Dedicated(conn) => Ok(Lease::unpooled(conn.clone())),
            Upstream::Pooled(p) => {
                let dial = self.options.connect_timeout.max(self.options.race.deadline);
                let limit = dial + Duration::from_secs(1);
                if !p.key.is_pooled() {
                    // HTTP/1.1: a handle that dials per tunnel, nothing shared.
                    return Ok(Lease::unpooled(p.dialer.dial().await?));
                }
                let pool = match &p.pool {
                    Some(pool) => pool.clone(),
                    None => UpstreamPool::global().await?,
                };
                pool.checkout(&p.key, &p.dialer, p.holder.clone(), limit)
                    .await
            }
        }
    }

    /// Opens a tunnel with `open` on a leased connection and hands it the
    /// lease; on a pooled client, retries on another connection when the
    /// proxy refused for the connection's limit or is going away.
    async fn open_leased<T, F, Fut>(&self, open: F) -> Result<T, ClientError>
    where
        T: HoldsLease,
        F: Fn(ClientConnection) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        if let Upstream::Dedicated(conn) = &self.upstream {
            return open(conn.clone()).await;
        }
        let mut attempt = 1;
        loop {
            let mut lease = self.lease().await?;
            let err = match open(lease.connection().clone()).await {
                Ok(mut t) => {
                    t.hold(lease);
                    return Ok(t);
                }
                Err(e) => e,
            };
            let retry = lease.is_pooled() && attempt < OPEN_ATTEMPTS;
            match err {
                ClientError::GoingAway if retry => lease.going_away(),
                e if retry && connection_limit_reached(&e) => lease.limit_reached(),
                e => return Err(e),
            }
            attempt += 1;
        }
    }

    /// Opens a connect-udp tunnel to `target` (pooled: on a slot of a pooled
    /// connection, which the session holds).
    pub async fn connect_udp(&self, target: &Target) -> Result<UdpSession, ClientError> {
        let options = &self.options;
        self.open_leased(|conn| async move {
            UdpSession::open(&conn, &self.template, target, options).await
        })
        .await
    }

    /// Opens a TCP tunnel to `target` (a [`Target::Tcp`]): connect-tcp
    /// (extended CONNECT, HTTP/1.1 `Upgrade`) with the token of `mode`, or
    /// classic CONNECT. See [`crate::connect_tcp`]. Pooled: the tunnel holds
    /// its slot until it is dropped or split.
    pub async fn connect_tcp(
        &self,
        target: &Target,
        mode: TcpMode,
    ) -> Result<TcpTunnel, ClientError> {
        let options = &self.options;
        self.open_leased(|conn| async move {
            TcpTunnel::open(&conn, &self.tcp_template, target, mode, options).await
        })
        .await
    }

    /// Opens a connect-ip tunnel (RFC 9484) for `target` (`IpTarget::ANY`:
    /// a full tunnel). See [`crate::connect_ip`].
    pub async fn connect_ip(&self, target: &IpTarget) -> Result<IpSession, ClientError> {
        let options = &self.options;
        self.open_leased(|conn| async move {
            IpSession::open(&conn, &self.ip_template, target, options).await
        })
        .await
    }

    /// Opens a connect-udp tunnel to `target`; the same as
    /// [`connect_udp`](Self::connect_udp).
    pub async fn open_udp(&self, target: &Target) -> Result<UdpSession, ClientError> {
        self.connect_udp(target).await
    }

    /// Opens a TCP tunnel; the same as [`connect_tcp`](Self::connect_tcp).
    pub async fn open_tcp(&self, target: &Target, mode: TcpMode) -> Result<TcpTunnel, ClientError> {
        self.connect_tcp(target, mode).await
    }

    /// Opens a connect-ip tunnel; the same as [`connect_ip`](Self::connect_ip).
    pub async fn open_ip(&self, target: &IpTarget) -> Result<IpSession, ClientError> {
        self.connect_ip(target).await
    }

    /// The HTTP version: of the connection (dedicated), or the one asked for
    /// (pooled; `auto` as dialled today).
    pub fn transport(&self) -> Transport {
        match &self.upstream {
            Upstream::Dedicated(conn) => conn.transport(),
            Upstream::Pooled(p) => p.key.transport.transport(),
        }
    }

    /// The QUIC socket's buffer sizes as the kernel granted them
    /// ([`ClientOptions::socket_recv_buffer`] / `socket_send_buffer`; on
    /// Linux twice the granted bytes, which include bookkeeping). Zero on
    /// HTTP/2 and HTTP/1.1, which have no QUIC socket, and on a pooled client.
    pub fn socket_buffer_sizes(&self) -> BufferSizes {
        self.connection()
            .and_then(ClientConnection::socket_buffers)
            .unwrap_or(BufferSizes { recv: 0, send: 0 })
    }

    /// The HTTP/3 connection, if this client has a dedicated HTTP/3 one.
    pub fn h3_connection(&self) -> Option<&masque_h3::Connection> {
        self.connection().and_then(ClientConnection::as_h3)
    }

    /// The dedicated connection; `None` on a pooled client.
    pub fn connection(&self) -> Option<&ClientConnection> {
        match &self.upstream {
            Upstream::Dedicated(conn) => Some(conn),
            Upstream::Pooled(_) => None,
        }
    }

    /// The connection, any transport (e.g. for [`UdpSession::open_with`]).
    ///
    /// # Panics
    ///
    /// On a pooled client, which has no connection of its own: use
    /// [`connection`](Self::connection) or [`lease`](Self::lease).
    pub fn client_connection(&self) -> &ClientConnection {
        self.connection()
            .expect("client_connection() on a pooled ProxyClient; use lease()")
    }

    /// The proxy's address (UDP for HTTP/3, TCP otherwise).
    ///
    /// # Panics
    ///
    /// On a pooled client (see [`client_connection`](Self::client_connection)).
    pub fn remote_addr(&self) -> SocketAddr {
        self.client_connection().peer()
    }

    /// Whether the dedicated connection has ended (HTTP/1.1: whether it was
    /// closed); always false on a pooled client.
    pub fn is_closed(&self) -> bool {
        self.connection().is_some_and(ClientConnection::is_closed)
    }

    /// Graceful close of a dedicated connection: GOAWAY (HTTP/3; HTTP/2: no
    /// new streams), up to `close_timeout` for open tunnels to end, then
    /// CONNECTION_CLOSE (H3_NO_ERROR) or the TCP connection's end, and a
    /// bounded wait for it. Nothing on a pooled client: its connections
    /// belong to the pool, which closes them once idle.
    pub async fn close(&self) {
        if let Some(conn) = self.connection() {
            conn.shutdown(self.options.close_timeout).await;
        }
    }
}

/// A 503 with `Proxy-Status` error `connection_limit_reached`: the proxy
/// holds as many tunnels on this connection as it allows.
fn connection_limit_reached(e: &ClientError) -> bool {
    matches!(e, ClientError::Refused { status, details, .. }
        if *status == http::StatusCode::SERVICE_UNAVAILABLE
            && details
                .iter()
                .any(|d| d.error == Some(ProxyStatusError::ConnectionLimitReached)))
}
