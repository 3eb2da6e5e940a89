//! The node as a two-hop relay (`masque_node::relay::RelayProxy`), on
//! loopback: client → node A (relay) → node B → target, the client on h3, h2
//! and h1 (A reaches B on HTTP/3). UDP and TCP relayed with `Via` reaching B;
//! a loop A → B → A refused with 508 `proxy_loop_detected`; B's refusal of a
//! target passed back with B's status and A's `next-hop` member.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result, ensure};
use masque_client::{ProxyClient, TcpMode};
use masque_node::relay::{RelayProxy, Upstream};
use masque_server::{
    Handler, Proxy, Refusal, Target, TargetStream, TcpProxyConfig, TcpTarget, TunnelHandler,
    TunnelOutput, UdpProxyConfig, metrics::Metrics, policy::AddressPolicy,
};
use masque_tests::{
    init_tracing,
    node::{LOOPBACK_MTU, TestNode, expect_refusal, udp_echo},
    per_transport,
    tcp::tcp_echo,
    transport::{Transport, options_for, udp_target, url},
    within,
};
use masque_transport::{TunnelRequest, tls::ServerVerification};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

per_transport!(
    relay_udp_and_tcp_through_two_nodes,
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
    ensure!(b.node.metrics().snapshot().tunnels_established >= 2);
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
