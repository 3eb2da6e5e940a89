//! TCP tunnels that need a network the test controls (network namespaces
//! joined by a veth link; needs root and iproute2): a target that never
//! answers the SYN is 504 `connection_timeout` once the connect timeout
//! passed, a target without a route is 502 `destination_ip_unroutable`, on
//! every transport, counted by error; and a name whose first address is
//! such a blackhole still connects, through the second, after the Happy
//! Eyeballs attempt delay (CTCP-25).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Result;
use masque_client::{ProxyClient, Target, TcpMode};
use masque_proto::proxy_status::ProxyStatusError;
use masque_server::{
    Proxy, TcpProxyConfig, UdpProxyConfig,
    policy::AddressPolicy,
    resolver::{ResolveError, Resolver},
};
use masque_tests::{
    init_tracing,
    netns::{NetNs, veth},
    node::{TestNode, expect_refusal},
    transport::{Transport, options_for, url},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The node's side of the link and the target's.
const NODE_CIDR: &str = "10.88.0.1/24";
const TARGET_CIDR: &str = "10.88.0.2/24";
/// On the link, but its neighbour entry names a MAC nobody has: every SYN
/// to it leaves and is never answered (a blackhole, no ICMP).
const BLACKHOLE: &str = "10.88.0.99";
/// No route at all from the node's namespace.
const UNROUTABLE: &str = "10.77.0.1";
const CONNECT_TIMEOUT: Duration = Duration::from_millis(800);
const ATTEMPT_DELAY: Duration = Duration::from_millis(200);
/// The target's echo, in its namespace.
const ECHO: &str = "10.88.0.2:7";
/// Resolves to the blackhole first, then the echo.
const RACED: &str = "raced.test";

/// `RACED` → [blackhole, echo]; anything else: not found.
struct RacedResolver;

#[async_trait::async_trait]
impl Resolver for RacedResolver {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        if !host.eq_ignore_ascii_case(RACED) {
            return Err(ResolveError::NotFound);
        }
        let echo: SocketAddr = ECHO.parse().expect("address");
        Ok(vec![
            SocketAddr::new(BLACKHOLE.parse().expect("address"), port),
            SocketAddr::new(echo.ip(), port),
        ])
    }
}
const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn tcp_connect_timeout_no_route_and_happy_eyeballs() -> Result<()> {
    init_tracing();
    let node_ns = NetNs::create("tcpto")?;
    let target_ns = NetNs::create("tcptt")?;
    veth(&node_ns, NODE_CIDR, &target_ns, TARGET_CIDR, 1500)?;
    node_ns.ip(&[
        "neigh",
        "add",
        BLACKHOLE,
        "lladdr",
        "02:00:00:00:00:99",
        "dev",
        "veth0",
        "nud",
        "permanent",
    ])?;
    let echo = target_ns.run(|| async {
        let listener = tokio::net::TcpListener::bind(ECHO).await?;
        // One connection: echoes a line, then ends.
        let (mut s, _) = tokio::time::timeout(LIMIT, listener.accept()).await??;
        let mut b = [0u8; 5];
        s.read_exact(&mut b).await?;
        s.write_all(&b).await?;
        s.shutdown().await?;
        anyhow::Ok(())
    })?;
    let run = node_ns.run(|| async {
        let udp = UdpProxyConfig {
            policy: AddressPolicy {
                allow_private: true,
                own_addresses: vec![],
            },
            resolver: Arc::new(RacedResolver),
            ..Default::default()
        };
        let tcp = TcpProxyConfig {
            connect_timeout: CONNECT_TIMEOUT,
            attempt_delay: ATTEMPT_DELAY,
        };
        let node = TestNode::with_handler(Arc::new(Proxy::new(udp, tcp))).await?;
        for t in [Transport::H3, Transport::H2, Transport::H1] {
            let client = ProxyClient::connect(&url(&node, t), options_for(&node, t)).await?;
            let started = std::time::Instant::now();
            let target = Target::Tcp {
                host: BLACKHOLE.into(),
                port: 80,
            };
            let r = client.open_tcp(&target, TcpMode::ConnectTcp).await;
            expect_refusal(r, 504, "connection_timeout")
                .map_err(|e| e.context(format!("blackhole over {t:?}")))?;
            let took = started.elapsed();
            anyhow::ensure!(
                took >= CONNECT_TIMEOUT,
                "{t:?}: refused after {took:?}, before the connect timeout"
            );
            // HTTP/1.1 carries one tunnel per connection.
            let client = ProxyClient::connect(&url(&node, t), options_for(&node, t)).await?;
            let target = Target::Tcp {
                host: UNROUTABLE.into(),
                port: 80,
            };
            let r = client.open_tcp(&target, TcpMode::Classic).await;
            expect_refusal(r, 502, "destination_ip_unroutable")
                .map_err(|e| e.context(format!("no route over {t:?}")))?;
        }
        // Happy Eyeballs: the blackhole first, the echo after the delay.
        let client = ProxyClient::connect(
            &url(&node, Transport::H2),
            options_for(&node, Transport::H2),
        )
        .await?;
        let target = Target::Tcp {
            host: RACED.into(),
            port: 7,
        };
        let started = std::time::Instant::now();
        let mut t = client.open_tcp(&target, TcpMode::ConnectTcp).await?;
        let took = started.elapsed();
        anyhow::ensure!(
            took >= ATTEMPT_DELAY && took < CONNECT_TIMEOUT,
            "connected after {took:?}"
        );
        t.write_all(b"hello").await?;
        let mut back = Vec::new();
        t.read_to_end(&mut back).await?;
        anyhow::ensure!(back == b"hello", "echo {back:?}");
        let m = node.node.metrics();
        let counts = (
            m.refusals.get(ProxyStatusError::ConnectionTimeout),
            m.refusals.get(ProxyStatusError::DestinationIpUnroutable),
        );
        node.node.shutdown().await;
        Ok(counts)
    })?;
    let counts = run.join(LIMIT)?;
    echo.join(LIMIT)?;
    assert_eq!(counts, (3, 3), "refusals counted by Proxy-Status error");
    Ok(())
}
