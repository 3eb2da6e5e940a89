//! `TcpProxy`: the built-in handler of stream tunnels (CONNECT-TCP and
//! classic CONNECT). Resolves the target within the node's DNS budget,
//! applies the same outbound policy as CONNECT-UDP (private targets, the
//! node's own listeners, `--allow-target` / `--deny-target`) to every
//! address, and connects before any 2xx (CTCP-09), trying the allowed
//! addresses in order within one connect timeout. Failures map to RFC 9209:
//! refused → 502 `connection_refused`, timeout → 504 `connection_timeout`,
//! no route → 502 `destination_ip_unroutable`, DNS → 502 `dns_error`,
//! policy → 403 `destination_ip_prohibited`.
//!
//! `Proxy` is the node's handler: CONNECT-UDP through [`UdpProxy`], stream
//! tunnels through [`TcpProxy`], one outbound policy and DNS budget.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use masque_proto::{
    proxy_status::TunnelFailure,
    template::{Host, UdpTarget},
};
use masque_transport::TunnelRequest;
use tokio::net::TcpSocket;

use crate::{
    handler::{Handler, Refusal, Target, TargetStream, TcpTarget, TunnelHandler, TunnelOutput},
    metrics::Metrics,
    udp_proxy::{UdpProxy, UdpProxyConfig, socket_failure},
};

/// Configuration of the built-in TCP proxy.
#[derive(Debug, Clone)]
pub struct TcpProxyConfig {
    /// Time for the TCP handshake with the target, over all its addresses
    /// (504 `connection_timeout` past it).
    pub connect_timeout: Duration,
}

impl Default for TcpProxyConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The stream-tunnel handler. It shares its outbound policy, resolver and DNS
/// budget with a [`UdpProxy`].
#[derive(Debug, Clone)]
pub struct TcpProxy {
    outbound: UdpProxy,
    config: TcpProxyConfig,
}

impl TcpProxy {
    /// A TCP proxy with `udp`'s outbound policy, resolver and DNS budget.
    pub fn new(udp: &UdpProxy, config: TcpProxyConfig) -> Self {
        Self {
            outbound: udp.clone(),
            config,
        }
    }

    /// The addresses to try: resolved, then filtered by the policy.
    async fn addresses(
        &self,
        request: &TunnelRequest,
        target: &TcpTarget,
        metrics: &Metrics,
    ) -> Result<Vec<SocketAddr>, Refusal> {
        let addrs = self
            .outbound
            .resolve_host(request, &target.target, metrics)
            .await?;
        self.outbound.allowed(addrs)
    }
}

/// One connection attempt's failure as a refusal (PS-09 precision).
fn connect_failure(e: &std::io::Error) -> Refusal {
    let failure = match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => TunnelFailure::ConnectionRefused,
        Some(libc::ETIMEDOUT) => TunnelFailure::ConnectionTimeout,
        _ => socket_failure(e),
    };
    Refusal::new(failure).with_details(e.to_string())
}

async fn connect_one(addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_nodelay(true)?;
    socket.connect(addr).await
}

#[async_trait::async_trait]
impl Handler for TcpProxy {
    /// Literal IP targets are checked against the policy before any session.
    async fn accept(&self, request: &TunnelRequest, target: &Target) -> Result<(), Refusal> {
        self.outbound.accept(request, target).await
    }

    async fn init(
        &self,
        request: &TunnelRequest,
        target: &Target,
        out: TunnelOutput,
    ) -> Result<Box<dyn TunnelHandler>, Refusal> {
        let _ = (request, target, out);
        Err(Refusal::new(TunnelFailure::NotImplemented)
            .with_details("TcpProxy serves stream tunnels only"))
    }

    async fn connect(
        &self,
        request: &TunnelRequest,
        target: &TcpTarget,
        metrics: &Arc<Metrics>,
    ) -> Result<TargetStream, Refusal> {
        let addrs = self.addresses(request, target, metrics).await?;
        let deadline = tokio::time::Instant::now() + self.config.connect_timeout;
        let mut last = None;
        for addr in addrs {
            match tokio::time::timeout_at(deadline, connect_one(addr)).await {
                Ok(Ok(tcp)) => return Ok(TargetStream::Tcp(tcp)),
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, "TCP connect failed");
                    last = Some(connect_failure(&e));
                }
                Err(_) => {
                    return Err(Refusal::new(TunnelFailure::ConnectionTimeout).with_details(
                        format!("no TCP handshake with {addr} within the connect timeout"),
                    ));
                }
            }
        }
        Err(last.unwrap_or_else(|| Refusal::new(TunnelFailure::DestinationUnroutable)))
    }
}

/// The node's handler: CONNECT-UDP through a [`UdpProxy`], stream tunnels
/// through a [`TcpProxy`] sharing its outbound policy and DNS budget.
#[derive(Debug, Clone)]
pub struct Proxy {
    udp: UdpProxy,
    tcp: TcpProxy,
}

impl Proxy {
    pub fn new(udp: UdpProxyConfig, tcp: TcpProxyConfig) -> Self {
        let udp = UdpProxy::new(udp);
        let tcp = TcpProxy::new(&udp, tcp);
        Self { udp, tcp }
    }
}

#[async_trait::async_trait]
impl Handler for Proxy {
    async fn accept(&self, request: &TunnelRequest, target: &Target) -> Result<(), Refusal> {
        self.udp.accept(request, target).await
    }

    async fn init(
        &self,
        request: &TunnelRequest,
        target: &Target,
        out: TunnelOutput,
    ) -> Result<Box<dyn TunnelHandler>, Refusal> {
        self.udp.init(request, target, out).await
    }

    async fn connect(
        &self,
        request: &TunnelRequest,
        target: &TcpTarget,
        metrics: &Arc<Metrics>,
    ) -> Result<TargetStream, Refusal> {
        self.tcp.connect(request, target, metrics).await
    }
}

/// The literal address of a target, if it is one.
pub(crate) fn literal(host: &Host, port: u16) -> Option<SocketAddr> {
    match host {
        Host::V4(a) => Some(SocketAddr::new((*a).into(), port)),
        Host::V6(a) => Some(SocketAddr::new((*a).into(), port)),
        Host::Name(_) => None,
    }
}

/// What the policy check before any session looks at: the literal address
/// of a UDP or TCP target.
pub(crate) fn literal_target(target: &Target) -> Option<SocketAddr> {
    match target {
        Target::Udp(UdpTarget::Host(hp)) => literal(&hp.host, hp.port.get()),
        Target::Udp(UdpTarget::Wildcard) => None,
        Target::Tcp(t) => literal(&t.target.host, t.target.port.get()),
    }
}
