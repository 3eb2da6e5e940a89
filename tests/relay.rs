//! The node as a two-hop relay (`masque_node::relay::RelayProxy`), on
//! loopback: client → node A (relay) → node B → target, the client on h3, h2
//! and h1 (A reaches B on HTTP/3). UDP and TCP relayed with `Via` reaching B;
//! a loop A → B → A refused with 508 `proxy_loop_detected`; B's refusal of a
//! target passed back with B's status and A's `next-hop` member.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result, ensure};
use masque_client::{ProxyClient, TcpMode};
use masque_node::relay::{RelayProxy, Upstream};
use masque_proto::template::IpTarget;
use masque_server::{
    Handler, IpProxy, IpProxyConfig, Proxy, Refusal, Target, TargetStream, TcpProxyConfig,
    TcpTarget, TunnelHandler, TunnelOutput, UdpProxyConfig,
    ip::{Delivery, IpEgress, IpPrefix, QueueEgress},
    metrics::Metrics,
    policy::AddressPolicy,
};
use masque_tests::{
    WAIT, init_tracing,
    node::{LOOPBACK_MTU, TestNode, eventually, expect_refusal, udp_echo},
    per_transport,
    tcp::tcp_echo,
    transport::{Transport, options_for, udp_target, url},
    within,
};
use masque_transport::{TunnelRequest, tls::ServerVerification};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

per_transport!(
    relay_udp_and_tcp_through_two_nodes,
    relay_connect_ip_addressing_and_packets,
    relay_loop_is_508_proxy_loop_detected,
    relay_passes_back_the_next_hops_refusal,
);

/// B's handler: the node's `Proxy`, remembering the `Via` of each request.
struct Recording {
    inner: Proxy,
    via: Mutex<Vec<String>>,
}

impl Recording {
    fn new(allow_private: bool) -> Arc<Self> {
        let udp = UdpProxyConfig {
            policy: AddressPolicy {
                allow_private,
                own_addresses: vec![],
            },
            ..Default::default()
        };
        Arc::new(Self {
            inner: Proxy::new(udp, TcpProxyConfig::default()),
            via: Mutex::new(Vec::new()),
        })
    }

    fn record(&self, request: &TunnelRequest) {
        let via = request
            .headers
            .get_all(http::header::VIA)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        self.via.lock().unwrap().push(via);
    }
}

#[async_trait::async_trait]
impl Handler for Recording {
    async fn accept(&self, request: &TunnelRequest, target: &Target) -> Result<(), Refusal> {
        self.record(request);
        self.inner.accept(request, target).await
    }

    async fn init(
        &self,
        request: &TunnelRequest,
        target: &Target,
        out: TunnelOutput,
    ) -> Result<Box<dyn TunnelHandler>, Refusal> {
        self.inner.init(request, target, out).await
    }

    async fn connect(
        &self,
        request: &TunnelRequest,
        target: &TcpTarget,
        metrics: &Arc<Metrics>,
    ) -> Result<TargetStream, Refusal> {
        self.inner.connect(request, target, metrics).await
    }
}

/// A relay node named `name`, relaying to `upstream_url` with `options`,
/// optionally on a fixed port.
async fn relay_node(
    upstream_url: String,
    options: masque_client::ClientOptions,
    name: &str,
    port: Option<u16>,
) -> Result<TestNode> {
    let hop = Upstream::new(&upstream_url, options)?;
    let handler = Arc::new(RelayProxy::new(hop, name.to_owned()));
    let name = name.to_owned();
    TestNode::with_handler_config(handler, move |c| {
        c.node_name = name;
        if let Some(p) = port {
            c.listen = SocketAddr::from(([127, 0, 0, 1], p));
        }
    })
    .await
}

/// A relay to `b` over HTTP/3, trusting its certificate.
async fn relay_to(b: &TestNode, name: &str) -> Result<TestNode> {
    relay_node(
        url(b, Transport::H3),
        options_for(b, Transport::H3),
        name,
        None,
    )
    .await
}

async fn relay_udp_and_tcp_through_two_nodes(t: Transport) -> Result<()> {
    init_tracing();
    let recording = Recording::new(true);
    let b = TestNode::with_handler(Arc::clone(&recording) as Arc<dyn Handler>).await?;
    let a = relay_to(&b, "masque-a").await?;
    let client = within(
        "connect to A",
        ProxyClient::connect(&url(&a, t), options_for(&a, t)),
    )
    .await??;

    let echo = udp_echo().await?;
    let mut udp = within("UDP through A and B", client.open_udp(&udp_target(echo))).await??;
    udp.send(b"two hops").await?;
    let back = within("the echo", udp.recv())
        .await?
        .context("tunnel ended")?;
    ensure!(&back[..] == b"two hops", "{back:?}");

    let echo = tcp_echo().await?;
    let target = masque_client::Target::tcp(echo.ip().to_string(), echo.port());
    let mut tcp = within(
        "TCP through A and B",
        client.open_tcp(&target, TcpMode::ConnectTcp),
    )
    .await??;
    let payload = vec![0x33u8; 200_000];
    tcp.write_all(&payload).await?;
    tcp.shutdown().await?;
    let mut got = Vec::new();
    within("the TCP echo", tcp.read_to_end(&mut got)).await??;
    ensure!(got == payload, "TCP echo of {} bytes differs", got.len());

    // B saw A's Via member on both, naming the transport the client used.
    let protocol = match t {
        Transport::H3 => "3",
        Transport::H2 => "2",
        Transport::H1 => "1.1",
    };
    let via = recording.via.lock().unwrap().clone();
    ensure!(via.len() == 2, "{via:?}");
    for v in &via {
        ensure!(v == &format!("{protocol} masque-a"), "Via at B: {v:?}");
    }
    // A reached no target itself: it opened no target socket.
    ensure!(a.node.metrics().snapshot().tcp_bytes_to_target >= payload.len() as u64);
    let at_b = b.node.metrics().snapshot();
    ensure!(at_b.tunnels_established >= 2);
    // Through A's UpstreamPool: both tunnels on one connection to B.
    ensure!(
        at_b.connections_accepted == 1,
        "A's tunnels shared one pooled connection: {} connections at B",
        at_b.connections_accepted
    );
    // The pool is a child of A's tree: stopping A closes its connection to B
    // (a process-wide pool would keep it until its idle timer).
    drop((udp, tcp, client));
    a.node.shutdown().await;
    let metrics = Arc::clone(b.node.metrics());
    eventually("B sees A's pooled connection closed", WAIT, || {
        metrics.snapshot().connections_closed >= 1
    })
    .await?;
    Ok(())
}

async fn relay_loop_is_508_proxy_loop_detected(t: Transport) -> Result<()> {
    init_tracing();
    // A's port first, so that B can name A as its next hop before A starts.
    // Each node has its own throwaway certificate: the hops skip verification.
    let a_port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let insecure = masque_client::ClientOptions {
        verification: ServerVerification::InsecureSkipVerify,
        initial_mtu: LOOPBACK_MTU.initial,
        min_mtu: LOOPBACK_MTU.min,
        ..Default::default()
    };
    let b = relay_node(
        format!("https://localhost:{a_port}"),
        insecure.clone(),
        "masque-b",
        None,
    )
    .await?;
    let a = relay_node(url(&b, Transport::H3), insecure, "masque-a", Some(a_port)).await?;
    let echo = udp_echo().await?;
    let client = ProxyClient::connect(&url(&a, t), options_for(&a, t)).await?;
    let r = within("the looped request", client.open_udp(&udp_target(echo))).await?;
    let ps = expect_refusal(r, 508, "proxy_loop_detected")?;
    ensure!(ps.contains("masque-a") && ps.contains("masque-b"), "{ps}");
    Ok(())
}

async fn relay_passes_back_the_next_hops_refusal(t: Transport) -> Result<()> {
    init_tracing();
    // B refuses loopback targets (no --allow-private).
    let b = TestNode::start(false).await?;
    let a = relay_to(&b, "masque-a").await?;
    let echo = udp_echo().await?;
    let client = ProxyClient::connect(&url(&a, t), options_for(&a, t)).await?;
    let r = within("the refused request", client.open_udp(&udp_target(echo))).await?;
    // B's status passed back.
    let ps = expect_refusal(r, 403, "destination_ip_prohibited")?;
    let members: Vec<&str> = ps.split(", ").collect();
    ensure!(members.len() == 2, "B's member then A's: {ps}");
    ensure!(
        members[0].contains("destination_ip_prohibited"),
        "B's member first: {ps}"
    );
    ensure!(
        members[1].starts_with("masque-a")
            && members[1].contains("next-hop=")
            && members[1].contains("received-status=403"),
        "A's member: {ps}"
    );
    Ok(())
}

/// An IPv4/UDP packet from `src` to `dst` with `ttl`.
fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8) -> Vec<u8> {
    let mut p = vec![0u8; 20 + 8 + 4];
    let total = p.len() as u16;
    p[0] = 0x45;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[8] = ttl;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[24..26].copy_from_slice(&12u16.to_be_bytes());
    p[28..32].copy_from_slice(b"ping");
    masque_proto::packet::fill_ipv4_header_checksum(&mut p).expect("a whole header");
    p
}

async fn relay_connect_ip_addressing_and_packets(t: Transport) -> Result<()> {
    init_tracing();
    // B: CONNECT-IP from an IPv4 pool (one per transport, so the parallel
    // cells never meet), packets to and from a queue instead of a TUN.
    let third = match t {
        Transport::H3 => 1,
        Transport::H2 => 2,
        Transport::H1 => 3,
    };
    let pool: IpPrefix = format!("10.203.{third}.0/24").parse()?;
    let egress = Arc::new(QueueEgress::new(64, 1500));
    let ip = IpProxy::new(
        IpProxyConfig {
            pools: vec![pool],
            ..Default::default()
        },
        Arc::clone(&egress) as Arc<dyn IpEgress>,
    )?;
    let udp = UdpProxyConfig {
        policy: AddressPolicy {
            allow_private: true,
            own_addresses: vec![],
        },
        ..Default::default()
    };
    let b = TestNode::with_handler(Arc::new(
        Proxy::new(udp, TcpProxyConfig::default()).with_ip(ip),
    ))
    .await?;
    let a = relay_to(&b, "masque-a").await?;
    let client = ProxyClient::connect(&url(&a, t), options_for(&a, t)).await?;
    let mut session = within("CONNECT-IP through A", client.open_ip(&IpTarget::ANY)).await??;
    // Our request ids come back on B's answers, the refusal included.
    let ids = session.request_addresses(&[
        masque_proto::template::IpPrefix::new(Ipv4Addr::UNSPECIFIED.into(), 32)?,
        masque_proto::template::IpPrefix::new(std::net::Ipv6Addr::UNSPECIFIED.into(), 128)?,
    ])?;
    let info = session
        .wait_for(WAIT, |i| i.pending_requests.is_empty())
        .await?;
    let granted = info
        .assigned
        .iter()
        .find(|a| a.request_id == ids[0])
        .with_context(|| format!("IPv4 granted under our id {}: {info:?}", ids[0]))?;
    let std::net::IpAddr::V4(me) = granted.ip else {
        anyhow::bail!("an IPv4 address: {granted:?}");
    };
    ensure!(pool_contains(&pool, me), "{me} from B's pool {pool}");
    ensure!(
        info.refused.iter().any(|r| r.request_id == ids[1]),
        "IPv6 refused under our id {}: {info:?}",
        ids[1]
    );
    ensure!(!info.routes.is_empty(), "B's routes relayed: {info:?}");

    // A packet out: it reaches B's egress unchanged.
    let target = Ipv4Addr::new(192, 0, 2, 9);
    let out = udp_packet(me, target, 64);
    session.send_ip_packet(&out).await?;
    let mut from_b = egress.take_receiver().context("egress receiver")?;
    let seen = within("the packet at B's egress", from_b.recv())
        .await?
        .context("egress closed")?;
    ensure!(seen[..] == out[..], "the packet reached B unchanged");
    // A packet in: B's ingress finds our tunnel; it arrives with TTL 63.
    let reply = udp_packet(target, me, 64);
    let ingress = egress.ingress().context("B's ingress")?;
    ensure!(ingress.deliver(reply.clone().into()) == Delivery::Queued);
    let back = within("the reply through A", session.recv(WAIT)).await??;
    ensure!(
        back.len() == reply.len() && back[8] == 63,
        "TTL decremented once, at B"
    );
    session.close().await;
    Ok(())
}

fn pool_contains(pool: &IpPrefix, a: Ipv4Addr) -> bool {
    let std::net::IpAddr::V4(base) = pool.addr else {
        return false;
    };
    let mask = u32::MAX << (32 - u32::from(pool.len));
    u32::from(a) & mask == u32::from(base)
}
