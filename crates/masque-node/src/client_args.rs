//! What the client commands share: how to reach the proxy ([`ClientArgs`],
//! flattened into `udp-forward`, `socks5` and `http-proxy`), the local
//! listener settings of the fronts ([`FrontArgs`] / [`FrontSettings`]), one
//! proxy connection shared by every local client and re-made when it closed
//! ([`SharedClient`]), the fronts' counters ([`FrontStats`] /
//! [`FrontCounters`]) and the bounded accept loop both fronts run.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use masque_client::{
    ClientError, ClientOptions, ProxyClient, Target, TcpMode, TcpTunnel, TransportChoice,
    UdpSession,
};
use masque_transport::tls::ServerVerification;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Mutex, Semaphore, oneshot},
    task::JoinSet,
};

/// `--transport`: the HTTP version of the tunnel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    /// The best available: HTTP/3 at once, HTTP/2 after 250 ms, HTTP/1.1
    /// after 500 ms (or at once when an earlier one fails); the first to
    /// connect wins and is remembered for this proxy for 5 minutes.
    #[default]
    Auto,
    /// HTTP/3 over QUIC (UDP).
    H3,
    /// HTTP/2 over TLS (TCP), extended CONNECT.
    H2,
    /// HTTP/1.1 over TLS (TCP), Upgrade.
    H1,
}

impl From<TransportArg> for TransportChoice {
    fn from(t: TransportArg) -> Self {
        match t {
            TransportArg::Auto => TransportChoice::Auto,
            TransportArg::H3 => TransportChoice::H3,
            TransportArg::H2 => TransportChoice::H2,
            TransportArg::H1 => TransportChoice::H1,
        }
    }
}

/// How a client command reaches the proxy: URL, certificate check, HTTP
/// version and bearer token.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Proxy URL, e.g. https://localhost:4433
    #[arg(long, value_name = "URL")]
    pub proxy: String,
    /// Trust this PEM CA (or self-signed certificate) for the proxy.
    #[arg(long, value_name = "PEM", conflicts_with_all = ["pin", "insecure"])]
    pub ca: Option<PathBuf>,
    /// Accept exactly the proxy certificate with this SHA-256 fingerprint (hex).
    #[arg(long, value_name = "SHA256", conflicts_with = "insecure")]
    pub pin: Option<String>,
    /// Do not verify the proxy certificate at all (testing only).
    #[arg(long)]
    pub insecure: bool,
    /// File whose first token line (blank lines and # comments skipped) is
    /// sent as `Proxy-Authorization: Bearer <token>`.
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// HTTP version to the proxy: HTTP/3 on UDP, or HTTP/2 / HTTP/1.1 over
    /// TLS on TCP at the same port; `auto` races them (HTTP/3 first, HTTP/2
    /// after 250 ms, HTTP/1.1 after 500 ms) and keeps the winner.
    #[arg(long, value_enum, default_value_t = TransportArg::Auto)]
    pub transport: TransportArg,
}

impl ClientArgs {
    /// The client options these flags ask for (reads the CA and token files).
    pub fn options(&self) -> Result<ClientOptions> {
        let verification = if let Some(ca) = &self.ca {
            ServerVerification::custom_ca_from_pem_file(ca)?
        } else if let Some(pin) = &self.pin {
            ServerVerification::pinned_from_str(pin)?
        } else if self.insecure {
            ServerVerification::InsecureSkipVerify
        } else {
            ServerVerification::WebPki
        };
        let mut options = ClientOptions {
            verification,
            transport: self.transport.into(),
            ..Default::default()
        };
        if let Some(path) = &self.auth_token_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let token = masque_server::auth::token_lines(&text)
                .next()
                .with_context(|| format!("no token in {}", path.display()))?;
            options = options.with_bearer_token(token)?;
        }
        Ok(options)
    }
}

/// `--mode` of a front: how TCP tunnels are requested.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// CONNECT-TCP (extended CONNECT `:protocol connect-tcp`).
    #[default]
    ConnectTcp,
    /// Classic `CONNECT host:port`.
    Classic,
}

impl ModeArg {
    /// `connect-tcp` or `classic`, as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectTcp => "connect-tcp",
            Self::Classic => "classic",
        }
    }
}

impl From<ModeArg> for TcpMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::ConnectTcp => TcpMode::ConnectTcp,
            ModeArg::Classic => TcpMode::Classic,
        }
    }
}

/// The local listener flags of `socks5` and `http-proxy`.
#[derive(Debug, Clone, Args)]
pub struct FrontArgs {
    /// Listen beyond loopback. The front has no access control of its own
    /// (socks5: only --username), so whoever reaches it uses the proxy with
    /// your credentials.
    #[arg(long)]
    pub allow_remote: bool,
    /// At most this many local connections at once; those beyond it are
    /// closed as soon as they are accepted.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a local client has for its handshake (SOCKS5 greeting,
    /// authentication and request; the HTTP request head).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub handshake_timeout: u64,
    /// How TCP tunnels are requested from the proxy.
    #[arg(long, value_enum, default_value_t = ModeArg::ConnectTcp)]
    pub mode: ModeArg,
}

impl FrontArgs {
    /// The settings for a front listening on `listen`.
    pub fn settings(&self, listen: SocketAddr) -> FrontSettings {
        FrontSettings {
            listen,
            allow_remote: self.allow_remote,
            max_connections: self.max_connections.max(1),
            handshake_timeout: Duration::from_secs(self.handshake_timeout.max(1)),
            mode: self.mode.into(),
            ..FrontSettings::new(listen)
        }
    }
}

/// The local side of a front.
#[derive(Debug, Clone)]
pub struct FrontSettings {
    /// Where to listen (TCP; the SOCKS5 UDP relay binds on the same IP).
    pub listen: SocketAddr,
    /// Listen on a non-loopback address (refused otherwise).
    pub allow_remote: bool,
    /// Local connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// Time for a local client's handshake.
    pub handshake_timeout: Duration,
    /// How long open connections may go on after the shutdown signal before
    /// they are cut.
    pub drain_timeout: Duration,
    /// How TCP tunnels are requested.
    pub mode: TcpMode,
}

impl FrontSettings {
    /// Defaults: 1024 connections, 10 s handshake, 2 s drain, CONNECT-TCP.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            allow_remote: false,
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(2),
            mode: TcpMode::ConnectTcp,
        }
    }
}

/// Why a front did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrontError {
    /// A non-loopback `--listen` without `--allow-remote`.
    #[error(
        "refusing to listen on {0}: it is not a loopback address, and anyone who reaches it \
         would use the proxy with your credentials (the front has no access control of its own); \
         pass --allow-remote to do it anyway"
    )]
    RemoteListen(SocketAddr),
    /// The listener could not be bound.
    #[error("listening on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// Binds the front's listener after the loopback check.
pub(crate) async fn bind(settings: &FrontSettings) -> Result<TcpListener, FrontError> {
    if !settings.listen.ip().is_loopback() && !settings.allow_remote {
        return Err(FrontError::RemoteListen(settings.listen));
    }
    TcpListener::bind(settings.listen)
        .await
        .map_err(|source| FrontError::Bind {
            addr: settings.listen,
            source,
        })
}

/// Sent once the front listens.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The bound address (port 0 resolved).
    pub addr: SocketAddr,
    /// The live counters.
    pub stats: Arc<FrontStats>,
}

/// One proxy connection for every local client: made on first use, re-made
/// when it closed or went away. Tunnels that fail because the connection
/// just ended are retried once on a new one.
#[derive(Debug)]
pub struct SharedClient {
    url: String,
    options: ClientOptions,
    current: Mutex<Connection>,
    connects: AtomicU64,
}

/// The shared connection, or when and why the last attempt failed.
#[derive(Debug, Default)]
struct Connection {
    client: Option<ProxyClient>,
    failed: Option<(Instant, String)>,
}

impl SharedClient {
    pub fn new(url: impl Into<String>, options: ClientOptions) -> Self {
        Self {
            url: url.into(),
            options,
            current: Mutex::new(Connection::default()),
            connects: AtomicU64::new(0),
        }
    }

    /// The proxy URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client options.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Connections made so far (1 while the first one lives).
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// The open connection, or a new one. Callers that waited while an
    /// attempt failed get that failure at once instead of each trying (and
    /// maybe timing out) in turn.
    pub async fn client(&self) -> Result<ProxyClient, ClientError> {
        let asked = Instant::now();
        let mut current = self.current.lock().await;
        if let Some(c) = current.client.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        current.client = None;
        if let Some((at, why)) = &current.failed
            && *at >= asked
        {
            return Err(ClientError::Io(io::Error::other(format!(
                "connecting to the proxy failed just now: {why}"
            ))));
        }
        match ProxyClient::connect(&self.url, self.options.clone()).await {
            Ok(c) => {
                self.connects.fetch_add(1, Ordering::Relaxed);
                current.client = Some(c.clone());
                current.failed = None;
                Ok(c)
            }
            Err(e) => {
                tracing::warn!(proxy = %self.url, error = %e, "connecting to the proxy failed");
                current.failed = Some((Instant::now(), e.to_string()));
                Err(e)
            }
        }
    }

    async fn forget(&self) {
        self.current.lock().await.client = None;
    }

    /// A TCP tunnel to `target`.
    pub async fn open_tcp(&self, target: &Target, mode: TcpMode) -> Result<TcpTunnel, ClientError> {
        let first = self.client().await?.open_tcp(target, mode).await;
        match first {
            Err(e) if connection_gone(&e) => {
                self.forget().await;
                self.client().await?.open_tcp(target, mode).await
            }
            other => other,
        }
    }

    /// A CONNECT-UDP tunnel to `target`.
    pub async fn open_udp(&self, target: &Target) -> Result<UdpSession, ClientError> {
        let first = self.client().await?.open_udp(target).await;
        match first {
            Err(e) if connection_gone(&e) => {
                self.forget().await;
                self.client().await?.open_udp(target).await
            }
            other => other,
        }
    }

    /// Closes the connection (bounded by the client's close timeout).
    pub async fn close(&self) {
        let c = self.current.lock().await.client.take();
        if let Some(c) = c {
            c.close().await;
        }
    }
}

/// Whether a failure means the connection (not the tunnel) is gone.
fn connection_gone(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::GoingAway
            | ClientError::Closed
            | ClientError::Connection(_)
            | ClientError::H3(_)
            | ClientError::Transport(_)
    )
}

/// What a front carried, counted as it goes (see [`FrontCounters`]).
#[derive(Debug, Default)]
pub struct FrontStats {
    connections: AtomicU64,
    connections_rejected: AtomicU64,
    handshake_failures: AtomicU64,
    auth_failures: AtomicU64,
    tunnels_opened: AtomicU64,
    tunnels_refused: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    udp_datagrams_up: AtomicU64,
    udp_datagrams_down: AtomicU64,
    udp_frag_dropped: AtomicU64,
    udp_dropped: AtomicU64,
}

/// A snapshot of [`FrontStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrontCounters {
    /// Local connections accepted.
    pub connections: u64,
    /// Local connections closed at once: over `max_connections`.
    pub connections_rejected: u64,
    /// Malformed or timed-out handshakes (SOCKS5 greeting/request, HTTP head).
    pub handshake_failures: u64,
    /// SOCKS5 username/password refused (or no acceptable method).
    pub auth_failures: u64,
    /// Tunnels the proxy opened (TCP, and CONNECT-UDP per destination).
    pub tunnels_opened: u64,
    /// Tunnels refused by the proxy, or not opened because it was unreachable.
    pub tunnels_refused: u64,
    /// Bytes from local clients into tunnels (UDP: payload bytes).
    pub bytes_up: u64,
    /// Bytes from tunnels to local clients (UDP: payload bytes).
    pub bytes_down: u64,
    /// SOCKS5 UDP datagrams relayed to the proxy.
    pub udp_datagrams_up: u64,
    /// SOCKS5 UDP datagrams relayed back to the client.
    pub udp_datagrams_down: u64,
    /// SOCKS5 UDP datagrams dropped for FRAG ≠ 0 (fragmentation unsupported).
    pub udp_frag_dropped: u64,
    /// Other SOCKS5 UDP datagrams dropped: malformed header, unexpected
    /// source, too many destinations, full queue, refused destination.
    pub udp_dropped: u64,
}

macro_rules! counter {
    ($($name:ident),* $(,)?) => {
        impl FrontStats {
            /// The counters now.
            pub fn snapshot(&self) -> FrontCounters {
                FrontCounters {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}
counter!(
    connections,
    connections_rejected,
    handshake_failures,
    auth_failures,
    tunnels_opened,
    tunnels_refused,
    bytes_up,
    bytes_down,
    udp_datagrams_up,
    udp_datagrams_down,
    udp_frag_dropped,
    udp_dropped,
);

impl FrontStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn handshake_failed(&self) {
        Self::add(&self.handshake_failures, 1);
    }
    pub(crate) fn auth_failed(&self) {
        Self::add(&self.auth_failures, 1);
    }
    pub(crate) fn tunnel_opened(&self) {
        Self::add(&self.tunnels_opened, 1);
    }
    pub(crate) fn tunnel_refused(&self) {
        Self::add(&self.tunnels_refused, 1);
    }
    pub(crate) fn udp_up(&self, bytes: usize) {
        Self::add(&self.udp_datagrams_up, 1);
        Self::add(&self.bytes_up, bytes as u64);
    }
    pub(crate) fn udp_down(&self, bytes: usize) {
        Self::add(&self.udp_datagrams_down, 1);
        Self::add(&self.bytes_down, bytes as u64);
    }
    pub(crate) fn udp_frag(&self) {
        Self::add(&self.udp_frag_dropped, 1);
    }
    pub(crate) fn udp_drop(&self) {
        Self::add(&self.udp_dropped, 1);
    }
}

impl std::fmt::Display for FrontCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "connections={} rejected={} handshake_failures={} auth_failures={} \
             tunnels_opened={} tunnels_refused={} bytes_up={} bytes_down={} \
             udp_up={} udp_down={} udp_frag_dropped={} udp_dropped={}",
            self.connections,
            self.connections_rejected,
            self.handshake_failures,
            self.auth_failures,
            self.tunnels_opened,
            self.tunnels_refused,
            self.bytes_up,
            self.bytes_down,
            self.udp_datagrams_up,
            self.udp_datagrams_down,
            self.udp_frag_dropped,
            self.udp_dropped
        )
    }
}

/// A tunnel whose bytes are counted as they pass: reads are `bytes_down`,
/// writes `bytes_up`.
#[derive(Debug)]
pub(crate) struct Counted<T> {
    inner: T,
    stats: Arc<FrontStats>,
}

impl<T> Counted<T> {
    pub(crate) fn new(inner: T, stats: Arc<FrontStats>) -> Self {
        Self { inner, stats }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        FrontStats::add(&self.stats.bytes_down, n as u64);
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            FrontStats::add(&self.stats.bytes_up, n as u64);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts local connections until `shutdown`, at most
/// `settings.max_connections` at once (more are closed on accept and
/// counted), each served by `serve`. After `shutdown`, open connections get
/// `settings.drain_timeout`, then are cut. Returns the final counters.
pub(crate) async fn accept_loop<F, Fut>(
    name: &'static str,
    listener: TcpListener,
    settings: &FrontSettings,
    stats: Arc<FrontStats>,
    shutdown: impl Future<Output = ()>,
    serve: F,
) -> FrontCounters
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "{name}: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    FrontStats::add(&stats.connections_rejected, 1);
                    tracing::debug!(%peer, "{name}: over --max-connections, closed");
                    continue;
                };
                FrontStats::add(&stats.connections, 1);
                let _ = stream.set_nodelay(true);
                let fut = serve(stream, peer);
                tasks.spawn(async move {
                    fut.await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    if !tasks.is_empty() {
        tracing::info!(
            open = tasks.len(),
            "{name}: draining open connections for up to {:?}",
            settings.drain_timeout
        );
        let drained = tokio::time::timeout(settings.drain_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }
    stats.snapshot()
}

/// Announces the bound address (a receiver that is gone is fine).
pub(crate) fn announce(ready: oneshot::Sender<Ready>, addr: SocketAddr, stats: &Arc<FrontStats>) {
    let _ = ready.send(Ready {
        addr,
        stats: Arc::clone(stats),
    });
}

/// Logging for the client commands (stderr, `RUST_LOG`, info by default).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
