//! The client against the real node (masque-server's `Node` with its
//! `UdpProxy`): HTTP/3 on UDP and HTTP/2 + HTTP/1.1 on TCP at the same port
//! number, a UDP echo target on loopback.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use masque_client::{
    ClientError, ClientOptions, CloseReason, ProxyClient, Target, TransportChoice, connect,
    udp_forward,
};
use masque_proto::proxy_status::ProxyStatusError;
use masque_server::{Node, QuicMtu, ServerConfig, UdpProxy, UdpProxyConfig, policy::AddressPolicy};
use masque_transport::{
    Transport,
    tls::{DevCert, ServerVerification},
};
use tokio::net::UdpSocket;

use crate::{exchange, per_transport, within};

per_transport!(
    node_echo_and_close,
    node_many_tunnels_on_one_client,
    node_refuses_private_target,
    node_udp_forward,
);

/// A 1452-byte QUIC MTU that black-hole detection may not lower (loopback).
const MTU: QuicMtu = QuicMtu {
    initial: 1452,
    min: 1452,
};

struct TestNode {
    node: Node,
    cert: DevCert,
}

impl TestNode {
    async fn start(allow_private: bool) -> anyhow::Result<Self> {
        let cert = DevCert::ephemeral()?;
        let proxy = UdpProxyConfig {
            policy: AddressPolicy {
                allow_private,
                own_addresses: vec![],
            },
            ..Default::default()
        };
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            drain_timeout: Duration::from_secs(2),
            quic_mtu: MTU,
            ..Default::default()
        };
        let node = Node::start(config, &cert.server_tls(), Arc::new(UdpProxy::new(proxy))).await?;
        assert!(node.tcp_addr().is_some(), "the node listens on TCP");
        Ok(Self { node, cert })
    }

    /// The proxy URL for `t`. HTTP/2 and HTTP/1.1 share the HTTP/3 port number
    /// when it is free on TCP; with port 0 and tests running in parallel it
    /// may not be, so the URL names the TCP port for the TCP transports.
    fn url(&self, t: Transport) -> String {
        format!("https://localhost:{}", self.proxy_addr(t).port())
    }

    fn options(&self, t: Transport) -> ClientOptions {
        ClientOptions {
            transport: TransportChoice::from(t),
            verification: ServerVerification::CustomCa(vec![self.cert.cert_der().clone()]),
            initial_mtu: MTU.initial,
            min_mtu: MTU.min,
            ..Default::default()
        }
    }

    fn proxy_addr(&self, t: Transport) -> SocketAddr {
        match t {
            Transport::H3 => self.node.local_addr(),
            _ => self.node.tcp_addr().expect("TCP"),
        }
    }

    async fn shutdown(self) {
        within(self.node.shutdown()).await;
    }
}

/// A UDP echo target on loopback.
async fn udp_echo() -> anyhow::Result<SocketAddr> {
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    let addr = sock.local_addr()?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let _ = sock.send_to(&buf[..n], from).await;
        }
    });
    Ok(addr)
}

fn udp(addr: SocketAddr) -> Target {
    Target::udp(addr.ip().to_string(), addr.port())
}

/// Payloads of several sizes echo through the node; the tunnel is counted
/// under its transport; the node's FIN answers ours.
async fn node_echo_and_close(t: Transport) -> anyhow::Result<()> {
    let node = TestNode::start(true).await?;
    let echo = udp_echo().await?;
    let mut s = within(connect(&node.url(t), udp(echo), node.options(t))).await?;
    let info = s.info();
    assert_eq!(info.proxy, node.proxy_addr(t));
    let ok = match t {
        Transport::H1 => http::StatusCode::SWITCHING_PROTOCOLS,
        _ => http::StatusCode::OK,
    };
    assert_eq!(info.status, ok);
    assert_eq!(info.headers["capsule-protocol"], "?1");
    for size in [0, 1, 100, 1200] {
        let payload = vec![size as u8; size];
        within(exchange(&mut s, &payload, &payload)).await?;
    }
    if t != Transport::H3 {
        // DATAGRAM capsules carry what a UDP datagram can (IPv4: 65507 bytes).
        let big = vec![0x5a; 60_000];
        within(exchange(&mut s, &big, &big)).await?;
    }
    assert_eq!(within(s.close()).await.reason, CloseReason::ProxyFinished);
    let counted = node.node.metrics().transport(t).snapshot();
    assert_eq!(counted.tunnels, 1, "{t}: {counted:?}");
    assert!(counted.datagrams_from_client >= 4, "{t}: {counted:?}");
    if t != Transport::H3 {
        assert!(counted.capsules_from_client >= 4, "{t}: {counted:?}");
    }
    node.shutdown().await;
    Ok(())
}

/// Twenty tunnels on one client (one connection on HTTP/3 and HTTP/2).
async fn node_many_tunnels_on_one_client(t: Transport) -> anyhow::Result<()> {
    let node = TestNode::start(true).await?;
    let echo = udp_echo().await?;
    let client = within(ProxyClient::connect(&node.url(t), node.options(t))).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20u32 {
        let client = client.clone();
        tasks.spawn(async move {
            let mut s = client.open_udp(&udp(echo)).await?;
            let msg = format!("tunnel {i}");
            exchange(&mut s, msg.as_bytes(), msg.as_bytes()).await?;
            Ok::<_, ClientError>(s)
        });
    }
    let mut sessions = Vec::new();
    while let Some(r) = within(tasks.join_next()).await {
        sessions.push(r??);
    }
    for s in sessions {
        assert_eq!(within(s.close()).await.reason, CloseReason::ProxyFinished);
    }
    within(client.close()).await;
    assert!(client.is_closed());
    let connections = node.node.metrics().transport(t).snapshot().connections;
    let expected = if t == Transport::H1 { 20 } else { 1 };
    assert_eq!(connections, expected, "{t}");
    node.shutdown().await;
    Ok(())
}

/// A private target is refused with 403 and `destination_ip_prohibited` on
/// every transport (R9298-22/32).
async fn node_refuses_private_target(t: Transport) -> anyhow::Result<()> {
    let node = TestNode::start(false).await?;
    let echo = udp_echo().await?;
    let err = within(connect(&node.url(t), udp(echo), node.options(t)))
        .await
        .unwrap_err();
    let ClientError::Refused {
        status,
        proxy_status,
        details,
    } = &err
    else {
        anyhow::bail!("{t}: {err}");
    };
    assert_eq!(*status, http::StatusCode::FORBIDDEN, "{t}");
    assert!(proxy_status.is_some(), "{t}");
    assert_eq!(
        details[0].error,
        Some(ProxyStatusError::DestinationIpProhibited),
        "{t}"
    );
    node.shutdown().await;
    Ok(())
}

/// `udp_forward` through the node.
async fn node_udp_forward(t: Transport) -> anyhow::Result<()> {
    let node = TestNode::start(true).await?;
    let echo = udp_echo().await?;
    let listen: SocketAddr = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (url, options) = (node.url(t), node.options(t));
    let fwd =
        tokio::spawn(async move { udp_forward(&url, listen, udp(echo), options, stopped).await });
    let local = UdpSocket::bind("127.0.0.1:0").await?;
    let mut buf = [0u8; 2048];
    let mut echoed = false;
    for _ in 0..20 {
        local.send_to(b"via the node", listen).await?;
        if let Ok(r) =
            tokio::time::timeout(Duration::from_millis(500), local.recv_from(&mut buf)).await
        {
            let (n, _) = r?;
            if &buf[..n] == b"via the node" {
                echoed = true;
                break;
            }
        }
    }
    assert!(echoed, "{t}: no echo through the forwarder");
    let _ = stop.send(());
    within(fwd).await??;
    node.shutdown().await;
    Ok(())
}
