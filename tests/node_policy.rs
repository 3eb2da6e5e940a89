//! The outbound policy end to end (docs/use/hardening.md, "Outbound policy"),
//! with masque-client over HTTP/3, HTTP/2 and HTTP/1.1: a tunnel to the
//! node's own UDP or TCP listener is refused as a loop even with
//! `allow_private` and an allow rule covering it; `deny` rules refuse,
//! `allow` rules open a loopback target without `allow_private`.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result, ensure};
use masque_client::Target;
use masque_server::{
    Node, ServerConfig, UdpProxy, UdpProxyConfig,
    config::TcpListen,
    policy::{AddressPolicy, OwnListeners, TargetRule, TargetRules},
    resolver::StaticResolver,
};
use masque_tests::{
    init_tracing,
    node::{LOOPBACK_MTU, TestNode, expect_refusal, udp_echo},
    per_transport,
    transport::{Transport, echo_tag, options_for, try_connect, udp_target as udp},
    within,
};
use masque_transport::tls::DevCert;

per_transport!(
    own_udp_and_tcp_listeners_are_proxy_loop_detected,
    deny_target_is_403_destination_ip_prohibited,
    allow_target_opens_a_loopback_target,
);

/// A node on 127.0.0.1 with its TCP listener on a port of its own (so the
/// UDP and TCP ports differ), the given rules, and its listeners registered
/// as `masque-node` does once they are bound.
async fn start(allow_private: bool, allow: &[String], deny: &[String]) -> Result<TestNode> {
    let parse = |v: &[String]| -> Result<Vec<TargetRule>> {
        v.iter()
            .map(|s| s.parse().with_context(|| s.clone()))
            .collect()
    };
    let own = OwnListeners::default();
    let resolver = Arc::new(StaticResolver {
        entries: vec![("myself.example".into(), vec!["127.0.0.1".parse()?])],
    });
    let proxy = UdpProxyConfig {
        policy: AddressPolicy {
            allow_private,
            own_addresses: vec![],
        },
        targets: TargetRules {
            allow: parse(allow)?,
            deny: parse(deny)?,
            own_listeners: own.clone(),
        },
        resolver,
        ..Default::default()
    };
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        tcp_listen: TcpListen::At("127.0.0.1:0".parse()?),
        drain_timeout: Duration::from_secs(2),
        quic_mtu: LOOPBACK_MTU,
        ..Default::default()
    };
    let cert = DevCert::ephemeral()?;
    let node = Node::start(config, &cert.server_tls(), Arc::new(UdpProxy::new(proxy))).await?;
    own.set(
        [Some(node.local_addr()), node.tcp_addr()]
            .into_iter()
            .flatten(),
    );
    Ok(TestNode { node, cert })
}

/// A tunnel to the node itself is a loop: 508 `proxy_loop_detected` for its
/// UDP (HTTP/3) and TCP (HTTP/2, HTTP/1.1) listener ports, by literal
/// address, IPv4-mapped, or a name resolving to it, even with
/// `allow_private` and an allow rule for all of loopback. Other loopback
/// targets stay open.
async fn own_udp_and_tcp_listeners_are_proxy_loop_detected(t: Transport) -> Result<()> {
    init_tracing();
    let node = start(true, &["127.0.0.0/8".into()], &[]).await?;
    let udp_port = node.node.local_addr();
    let tcp_port = node.node.tcp_addr().context("TCP listener")?;
    ensure!(udp_port.port() != tcp_port.port(), "distinct ports");
    for target in [
        udp(udp_port),
        udp(tcp_port),
        Target::udp("::ffff:127.0.0.1", udp_port.port()),
        Target::udp("myself.example", tcp_port.port()),
    ] {
        let opened = try_connect(&node, t, target.clone(), options_for(&node, t)).await?;
        expect_refusal(opened, 508, "proxy_loop_detected")
            .with_context(|| format!("{t}: {target}"))?;
    }
    let echo_addr = udp_echo().await?;
    let mut s = try_connect(&node, t, udp(echo_addr), options_for(&node, t)).await??;
    echo_tag(&mut s, b"still open").await.context(t)?;
    drop(s);
    within("node shutdown", node.node.shutdown()).await?;
    Ok(())
}

/// `deny` beats `allow_private` and `allow`: 403 `destination_ip_prohibited`
/// on the denied port only.
async fn deny_target_is_403_destination_ip_prohibited(t: Transport) -> Result<()> {
    init_tracing();
    let denied = udp_echo().await?;
    let other = udp_echo().await?;
    let node = start(
        true,
        &[format!("{}", denied.ip())],
        &[format!("127.0.0.0/8:{}", denied.port())],
    )
    .await?;
    let opened = try_connect(&node, t, udp(denied), options_for(&node, t)).await?;
    expect_refusal(opened, 403, "destination_ip_prohibited").context(t)?;
    let mut s = try_connect(&node, t, udp(other), options_for(&node, t)).await??;
    echo_tag(&mut s, b"not denied").await.context(t)?;
    drop(s);
    assert_eq!(node.node.metrics().snapshot().sessions_opened, 1, "{t}");
    within("node shutdown", node.node.shutdown()).await?;
    Ok(())
}

/// Without `allow_private`, an allow rule opens exactly its loopback port;
/// the rest of loopback stays 403.
async fn allow_target_opens_a_loopback_target(t: Transport) -> Result<()> {
    init_tracing();
    let allowed = udp_echo().await?;
    let other = udp_echo().await?;
    let node = start(false, &[format!("127.0.0.1:{}", allowed.port())], &[]).await?;
    let mut s = try_connect(&node, t, udp(allowed), options_for(&node, t)).await??;
    echo_tag(&mut s, b"allowed").await.context(t)?;
    drop(s);
    let opened = try_connect(&node, t, udp(other), options_for(&node, t)).await?;
    expect_refusal(opened, 403, "destination_ip_prohibited").context(t)?;
    within("node shutdown", node.node.shutdown()).await?;
    Ok(())
}
