//! Node-wide admission control: connections in all and per source address,
//! handshakes in flight, QUIC Retry under handshake load, tunnels in all.
//! Each test fails without its cap (the node would admit the extra one).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use masque_client::{ClientError, ProxyClient};
use masque_server::admission::AdmissionLimits;
use masque_tests::{
    init_tracing,
    node::{TestNode, eventually, next_datagram, udp_echo},
    transport::{Transport, options_for, udp_target as udp, url},
    within,
};

async fn node_with(limits: AdmissionLimits) -> Result<TestNode> {
    TestNode::start_with(true, None, |c| c.admission = limits).await
}

/// Connects with a short timeout (a refused or unanswered connection fails
/// fast) and proves the connection with one tunnel.
async fn connect(node: &TestNode, t: Transport) -> Result<ProxyClient, ClientError> {
    let mut o = options_for(node, t);
    o.connect_timeout = Duration::from_millis(800);
    let c = ProxyClient::connect(&url(node, t), o).await?;
    Ok(c)
}

/// At `max_connections` the node admits no more connections, on either
/// listener, until one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_holds_on_both_listeners() -> Result<()> {
    init_tracing();
    let node = node_with(AdmissionLimits {
        max_connections: 2,
        ..Default::default()
    })
    .await?;
    let echo = udp_echo().await?;
    let a = within("first", connect(&node, Transport::H3)).await??;
    let b = within("second", connect(&node, Transport::H2)).await??;
    let mut s = within("a tunnel on the second", b.open_udp(&udp(echo))).await??;
    s.send(b"x").await?;
    next_datagram(&mut s, "echo").await?;
    for t in [Transport::H3, Transport::H2] {
        let third = within("third", connect(&node, t)).await?;
        ensure!(third.is_err(), "{t}: a third connection was admitted");
    }
    let snap = node.node.metrics().snapshot();
    ensure!(snap.connections_refused_limit >= 1, "{snap:?}");
    a.close().await;
    // The QUIC close takes a moment to reach the node's router.
    eventually("a place freed", Duration::from_secs(5), || {
        node.node.metrics().snapshot().connections_closed >= 1
    })
    .await?;
    let c = within("after a close", connect(&node, Transport::H2))
        .await?
        .context("a freed place admits a new connection")?;
    drop((s, b, c));
    within("shutdown", node.node.shutdown()).await?;
    Ok(())
}

/// One source address may hold `max_connections_per_ip` connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_cap() -> Result<()> {
    init_tracing();
    let node = node_with(AdmissionLimits {
        max_connections_per_ip: 1,
        ..Default::default()
    })
    .await?;
    let a = within("first", connect(&node, Transport::H3)).await??;
    let second = within("second", connect(&node, Transport::H3)).await?;
    ensure!(
        second.is_err(),
        "a second connection from 127.0.0.1 was admitted"
    );
    ensure!(node.node.metrics().snapshot().connections_refused_per_ip >= 1);
    drop(a);
    within("shutdown", node.node.shutdown()).await?;
    Ok(())
}

/// Above the Retry threshold (0 here: always) an HTTP/3 client whose address
/// is not validated gets a Retry, and still connects after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_retry_under_handshake_load() -> Result<()> {
    init_tracing();
    let node = node_with(AdmissionLimits {
        retry_above_handshakes: 0,
        ..Default::default()
    })
    .await?;
    let echo = udp_echo().await?;
    let c = within("connect through a Retry", connect(&node, Transport::H3)).await??;
    let mut s = within("a tunnel", c.open_udp(&udp(echo))).await??;
    s.send(b"after retry").await?;
    next_datagram(&mut s, "echo").await?;
    ensure!(node.node.metrics().snapshot().quic_retries_sent == 1);
    drop((s, c));
    within("shutdown", node.node.shutdown()).await?;
    Ok(())
}

/// The node holds at most `max_tunnels` tunnels across its connections; the
/// next request gets 503 `connection_limit_reached`, and a closed tunnel
/// frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_tunnel_cap_is_503() -> Result<()> {
    init_tracing();
    let node = node_with(AdmissionLimits {
        max_tunnels: 2,
        ..Default::default()
    })
    .await?;
    let echo = udp_echo().await?;
    let a = within("h3", connect(&node, Transport::H3)).await??;
    let b = within("h2", connect(&node, Transport::H2)).await??;
    let s1 = within("1", a.open_udp(&udp(echo))).await??;
    let s2 = within("2", b.open_udp(&udp(echo))).await??;
    for c in [&a, &b] {
        match within("3", c.open_udp(&udp(echo))).await? {
            Err(ClientError::Refused {
                status,
                proxy_status,
                ..
            }) => {
                ensure!(status == 503, "{status}");
                ensure!(
                    proxy_status
                        .as_deref()
                        .is_some_and(|p| p.contains("connection_limit_reached")),
                    "{proxy_status:?}"
                );
            }
            other => anyhow::bail!("expected 503, got {:?}", other.map(|_| ())),
        }
    }
    ensure!(node.node.metrics().snapshot().tunnels_refused_node_limit == 2);
    s1.close().await;
    let s3 = within("a freed place", a.open_udp(&udp(echo)))
        .await?
        .context("after a tunnel closed")?;
    drop((s2, s3, a, b));
    within("shutdown", node.node.shutdown()).await?;
    Ok(())
}
