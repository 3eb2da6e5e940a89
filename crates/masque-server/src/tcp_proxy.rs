//! `TcpProxy`: the built-in handler of stream tunnels (CONNECT-TCP and
//! classic CONNECT). Resolves the target within the node's DNS budget,
//! applies the same outbound policy as CONNECT-UDP (private targets, the
//! node's own listeners, `--allow-target` / `--deny-target`) to every
//! address, and connects before any 2xx (CTCP-09), racing the allowed
//! addresses (Happy Eyeballs, CTCP-25) within one connect timeout. Failures map to RFC 9209:
//! refused → 502 `connection_refused`, timeout → 504 `connection_timeout`,
//! no route → 502 `destination_ip_unroutable`, DNS → 502 `dns_error`,
//! policy → 403 `destination_ip_prohibited`.
//!
//! `Proxy` is the node's handler: CONNECT-UDP through [`UdpProxy`], stream
//! tunnels through [`TcpProxy`], one outbound policy and DNS budget.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use masque_proto::proxy_status::TunnelFailure;
use masque_transport::TunnelRequest;
use tokio::net::TcpSocket;

use crate::{
    handler::{Handler, Refusal, Target, TargetStream, TcpTarget, TunnelHandler, TunnelOutput},
    metrics::Metrics,
    udp_proxy::{UdpProxy, socket_failure},
};

/// Configuration of the built-in TCP proxy.
#[derive(Debug, Clone)]
pub struct TcpProxyConfig {
    /// Time for the TCP handshake with the target, over all its addresses
    /// (504 `connection_timeout` past it).
    pub connect_timeout: Duration,
    /// Happy Eyeballs: the next address is tried this long after the one
    /// before if that has not connected yet (RFC 8305 §5 recommends 250 ms).
    pub attempt_delay: Duration,
}

impl Default for TcpProxyConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            attempt_delay: Duration::from_millis(250),
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
        match tokio::time::timeout_at(
            deadline,
            happy_eyeballs(interleave(addrs), self.config.attempt_delay),
        )
        .await
        {
            Ok(Ok(tcp)) => Ok(TargetStream::Tcp(tcp)),
            Ok(Err(refusal)) => Err(refusal),
            Err(_) => Err(Refusal::new(TunnelFailure::ConnectionTimeout)
                .with_details("no TCP handshake within the connect timeout")),
        }
    }
}

/// RFC 8305 §4: addresses alternate between the families, the first
/// family's first (as the resolver ordered them).
fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let Some(first) = addrs.first().map(SocketAddr::is_ipv6) else {
        return addrs;
    };
    let (mut a, mut b): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|x| x.is_ipv6() == first);
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.drain(..), b.drain(..));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return out,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
}

/// Happy Eyeballs (RFC 8305 §5, CTCP-25): attempts start `delay` apart (or
/// at once when the one before failed), the first connection wins and the
/// others are dropped; no payload is sent on any attempt. All failed: the
/// refusal of the last failure.
async fn happy_eyeballs(
    addrs: Vec<SocketAddr>,
    delay: Duration,
) -> Result<tokio::net::TcpStream, Refusal> {
    let mut pending = addrs.into_iter();
    let mut attempts = tokio::task::JoinSet::new();
    let mut last = None;
    loop {
        if attempts.is_empty() {
            let Some(addr) = pending.next() else {
                return Err(
                    last.unwrap_or_else(|| Refusal::new(TunnelFailure::DestinationUnroutable))
                );
            };
            attempts.spawn(async move { (addr, connect_one(addr).await) });
        }
        let next_start = tokio::time::sleep(delay);
        tokio::select! {
            Some(done) = attempts.join_next() => match done {
                Ok((_, Ok(tcp))) => return Ok(tcp),
                Ok((addr, Err(e))) => {
                    tracing::debug!(%addr, error = %e, "TCP connect failed");
                    last = Some(connect_failure(&e));
                    // A failure starts the next attempt at once.
                    if let Some(addr) = pending.next() {
                        attempts.spawn(async move { (addr, connect_one(addr).await) });
                    }
                }
                Err(_) => {}
            },
            () = next_start, if pending.len() > 0 => {
                if let Some(addr) = pending.next() {
                    attempts.spawn(async move { (addr, connect_one(addr).await) });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// RFC 8305 §4: the families alternate, the resolver's first family first.
    #[test]
    fn interleaves_families() {
        let got = interleave(vec![
            a("[2001:db8::1]:80"),
            a("[2001:db8::2]:80"),
            a("192.0.2.1:80"),
            a("[2001:db8::3]:80"),
        ]);
        assert_eq!(
            got,
            vec![
                a("[2001:db8::1]:80"),
                a("192.0.2.1:80"),
                a("[2001:db8::2]:80"),
                a("[2001:db8::3]:80"),
            ]
        );
        assert!(interleave(vec![]).is_empty());
    }

    /// CTCP-25: a refused address moves on to the next at once (not after
    /// the attempt delay); all refused is `connection_refused`.
    #[tokio::test]
    async fn ctcp_25_happy_eyeballs() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let good = listener.local_addr().unwrap();
        let refused = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let started = std::time::Instant::now();
        let tcp = happy_eyeballs(vec![refused, good], Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(tcp.peer_addr().unwrap(), good);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a refusal moves on at once"
        );
        let r = happy_eyeballs(vec![refused, refused], Duration::from_millis(10))
            .await
            .unwrap_err();
        assert_eq!(r.failure, TunnelFailure::ConnectionRefused);
    }
}
