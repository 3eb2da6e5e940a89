//! Fixtures for end-to-end tests of the proxy: a node on 127.0.0.1:0 with a
//! development certificate, UDP echo targets, and the actor tree walker.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Result;
use masque_client::ClientOptions;
use masque_server::{
    Node, Proxy, QuicMtu, ServerConfig, TcpProxyConfig, UdpProxyConfig, policy::AddressPolicy,
    resolver::Resolver,
};
use masque_transport::tls::{DevCert, ServerVerification};
use ractor::ActorCell;

/// Loopback carries 64 KiB packets: a fixed 1452-byte QUIC MTU (Ethernet-sized,
/// so 1200-byte payloads fit) that quinn's black-hole detection may not lower.
/// Under CPU starvation on a 2-core machine, bursts of losses made it fall
/// back to 1200, too small for a 1200-byte payload, and a benchmark path died.
pub const LOOPBACK_MTU: QuicMtu = QuicMtu {
    initial: 1452,
    min: 1452,
};

/// A node plus what a client needs to trust it.
pub struct TestNode {
    pub node: Node,
    pub cert: DevCert,
}

impl TestNode {
    /// Starts a node; `allow_private` lets tests reach loopback echo targets.
    pub async fn start(allow_private: bool) -> Result<Self> {
        Self::start_with(allow_private, None, |_| {}).await
    }

    pub async fn start_with(
        allow_private: bool,
        resolver: Option<Arc<dyn Resolver>>,
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> Result<Self> {
        let cert = DevCert::ephemeral()?;
        let mut proxy = UdpProxyConfig {
            policy: AddressPolicy {
                allow_private,
                own_addresses: vec![],
            },
            ..Default::default()
        };
        if let Some(r) = resolver {
            proxy.resolver = r;
        }
        let mut config = ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            drain_timeout: Duration::from_secs(2),
            quic_mtu: LOOPBACK_MTU,
            ..Default::default()
        };
        tweak(&mut config);
        let handler = Proxy::new(proxy, TcpProxyConfig::default());
        let node = Node::start(config, &cert.server_tls(), Arc::new(handler)).await?;
        Ok(Self { node, cert })
    }

    /// Starts a node on loopback that serves every tunnel with `handler`.
    pub async fn with_handler(handler: Arc<dyn masque_server::Handler>) -> Result<Self> {
        Self::with_handler_config(handler, |_| {}).await
    }

    /// [`with_handler`](Self::with_handler), with the configuration changed by `tweak`.
    pub async fn with_handler_config(
        handler: Arc<dyn masque_server::Handler>,
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> Result<Self> {
        let cert = DevCert::ephemeral()?;
        let mut config = ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            drain_timeout: Duration::from_secs(2),
            quic_mtu: LOOPBACK_MTU,
            ..Default::default()
        };
        tweak(&mut config);
        let node = Node::start(config, &cert.server_tls(), handler).await?;
        Ok(Self { node, cert })
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.node.local_addr().port())
    }

    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            verification: ServerVerification::CustomCa(vec![self.cert.cert_der().clone()]),
            initial_mtu: LOOPBACK_MTU.initial,
            min_mtu: LOOPBACK_MTU.min,
            ..Default::default()
        }
    }
}

/// A UDP echo server on 127.0.0.1:0; returns its address. Stops when the
/// runtime does.
pub async fn udp_echo() -> Result<SocketAddr> {
    udp_echo_on(tokio::net::UdpSocket::bind("127.0.0.1:0").await?)
}

/// [`udp_echo`] on a socket of the caller's (e.g. with larger buffers).
pub fn udp_echo_on(sock: tokio::net::UdpSocket) -> Result<SocketAddr> {
    let addr = sock.local_addr()?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let _ = sock.send_to(&buf[..n], from).await;
        }
    });
    Ok(addr)
}

/// Every actor under `root` (root included), depth first.
pub fn actor_tree(root: &ActorCell) -> Vec<ActorCell> {
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(a) = stack.pop() {
        stack.extend(a.get_children());
        out.push(a);
    }
    out
}

/// Waits (bounded) until `f` holds.
pub async fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("timed out waiting for: {what}")
}

/// The next datagram of `s`, within [`WAIT`](crate::WAIT): a datagram lost on
/// the way (they are unreliable) fails the test instead of hanging it.
pub async fn next_datagram(s: &mut masque_client::UdpSession, what: &str) -> Result<bytes::Bytes> {
    crate::within(what, s.recv())
        .await?
        .ok_or_else(|| anyhow::anyhow!("{what}: the tunnel ended"))
}

/// Checks that a tunnel was refused with `status` and a `Proxy-Status` whose
/// `error` is `error`; returns the `Proxy-Status` value for further checks.
pub fn expect_refusal<T: std::fmt::Debug>(
    result: Result<T, masque_client::ClientError>,
    status: u16,
    error: &str,
) -> Result<String> {
    match result {
        Err(masque_client::ClientError::Refused {
            status: got,
            proxy_status,
            ..
        }) => {
            anyhow::ensure!(got == status, "status {got}, expected {status}");
            let ps = proxy_status.ok_or_else(|| anyhow::anyhow!("no Proxy-Status header"))?;
            anyhow::ensure!(ps.contains(&format!("error={error}")), "Proxy-Status {ps}");
            Ok(ps)
        }
        other => anyhow::bail!("expected a {status} refusal, got {other:?}"),
    }
}
