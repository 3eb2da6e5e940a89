//! TCP-tunnel refusals that need a network the test controls (network
//! namespaces joined by a veth link; needs root and iproute2): a target that
//! never answers the SYN is 504 `connection_timeout` once the connect
//! timeout passed, and a target without a route is 502
//! `destination_ip_unroutable`, on every transport, counted by error.

use std::{sync::Arc, time::Duration};

use anyhow::Result;
use masque_client::{ProxyClient, Target, TcpMode};
use masque_proto::proxy_status::ProxyStatusError;
use masque_server::{Proxy, TcpProxyConfig, UdpProxyConfig, policy::AddressPolicy};
use masque_tests::{
    init_tracing,
    netns::{NetNs, veth},
    node::{TestNode, expect_refusal},
    transport::{Transport, options_for, url},
};

/// The node's side of the link and the target's.
const NODE_CIDR: &str = "10.88.0.1/24";
const TARGET_CIDR: &str = "10.88.0.2/24";
/// On the link, but its neighbour entry names a MAC nobody has: every SYN
/// to it leaves and is never answered (a blackhole, no ICMP).
const BLACKHOLE: &str = "10.88.0.99";
/// No route at all from the node's namespace.
const UNROUTABLE: &str = "10.77.0.1";
const CONNECT_TIMEOUT: Duration = Duration::from_millis(800);
const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn tcp_connect_timeout_and_no_route() -> Result<()> {
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
    let run = node_ns.run(|| async {
        let udp = UdpProxyConfig {
            policy: AddressPolicy {
                allow_private: true,
                own_addresses: vec![],
            },
            ..Default::default()
        };
        let tcp = TcpProxyConfig {
            connect_timeout: CONNECT_TIMEOUT,
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
        let m = node.node.metrics();
        let counts = (
            m.refusals.get(ProxyStatusError::ConnectionTimeout),
            m.refusals.get(ProxyStatusError::DestinationIpUnroutable),
        );
        node.node.shutdown().await;
        Ok(counts)
    })?;
    let counts = run.join(LIMIT)?;
    assert_eq!(counts, (3, 3), "refusals counted by Proxy-Status error");
    Ok(())
}
