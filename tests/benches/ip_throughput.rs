//! CONNECT-IP packet throughput through the node (tunnel ↔ TUN) as a ratio of
//! CONNECT-UDP throughput measured in the same run, per transport.
//!
//! In a network namespace the bench creates (root needed; without it the bench
//! says so and measures nothing): an in-process node with TUN egress (pool
//! 10.201.0.0/24, the node's TUN address 10.201.0.1) and a UDP echo socket on
//! 10.201.0.1:9. Both paths echo 1200-byte UDP payloads off that one socket:
//!
//! * CONNECT-UDP: masque-client → node → the node's UDP socket → echo → back;
//! * CONNECT-IP: masque-client sends IPv4/UDP packets from its assigned
//!   address → node (per-packet rules) → TUN → the kernel delivers to the echo
//!   socket → the reply is routed into the TUN → IpRegistry lookup → the
//!   session's queue → TTL decrement → back.
//!
//! Closed loop with a window of 64 packets in flight, alternating 300 ms
//! slices (5 rounds per path, median), so drift hits both alike. Run with
//! `cargo xtask bench` (or `cargo bench -p masque-tests --bench ip_throughput`).
//! Prints a table and writes target/bench/ip_throughput.json. Nothing is asserted.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use masque_client::{IpSession, ProxyClient, Target, TransportChoice, UdpSession};
use masque_proto::template::{IpPrefix, IpTarget};
use masque_server::{
    IpProxy, IpProxyConfig, Node, Proxy, ServerConfig, TcpProxyConfig, UdpProxyConfig,
    ip::TunEgress, policy::AddressPolicy,
};
use masque_tests::{netns::NetNs, node::LOOPBACK_MTU, transport::Transport};
use masque_transport::tls::{DevCert, ServerVerification};

const PAYLOAD: usize = 1200;
const WINDOW: usize = 64;
const SLICE: Duration = Duration::from_millis(300);
const ROUNDS: usize = 5;
const TUN_ADDR: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);
const ECHO_PORT: u16 = 9;

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    // SAFETY: geteuid(2) takes no arguments, touches no memory and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("ip_throughput: skipped (a network namespace and a TUN device need root)");
        return Ok(());
    }
    let ns = NetNs::create("ipbench")?;
    let rows = ns
        .spawn(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(measure())
        })?
        .join(Duration::from_secs(300))?;
    println!(
        "\nCONNECT-IP vs CONNECT-UDP, {PAYLOAD}-byte payloads, window {WINDOW}, echo through the node"
    );
    println!(
        "{:<6} {:>14} {:>14} {:>8}",
        "", "udp pkts/s", "ip pkts/s", "ip/udp"
    );
    let mut json = Vec::new();
    for (t, udp, ip) in &rows {
        let t = t.as_str();
        println!("{t:<6} {udp:>14.0} {ip:>14.0} {:>7.2}x", ip / udp);
        json.push(format!(
            "{{\"transport\":\"{t}\",\"udp_pps\":{udp:.0},\"ip_pps\":{ip:.0},\"ratio\":{:.3}}}",
            ip / udp
        ));
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("ip_throughput.json"),
        format!("[{}]\n", json.join(",")),
    )?;
    Ok(())
}

async fn measure() -> Result<Vec<(Transport, f64, f64)>> {
    let pool: masque_server::ip::IpPrefix = "10.201.0.0/24".parse()?;
    let tun = TunEgress::create("mqipb0", 1500, &[pool])?;
    let ip = IpProxy::new(
        IpProxyConfig {
            pools: vec![pool],
            ..Default::default()
        },
        Arc::new(tun),
    )?;
    let udp = UdpProxyConfig {
        policy: AddressPolicy {
            allow_private: true,
            own_addresses: vec![],
        },
        ..Default::default()
    };
    let handler = Proxy::new(udp, TcpProxyConfig::default()).with_ip(ip);
    let cert = DevCert::ephemeral()?;
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        quic_mtu: LOOPBACK_MTU,
        ..Default::default()
    };
    let node = Node::start(config, &cert.server_tls(), Arc::new(handler)).await?;
    let echo = tokio::net::UdpSocket::bind(SocketAddr::from((TUN_ADDR, ECHO_PORT))).await?;
    let echo_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            let _ = echo.send_to(&buf[..n], from).await;
        }
    });
    let mut rows = Vec::new();
    for t in Transport::ALL {
        let options = masque_client::ClientOptions {
            verification: ServerVerification::CustomCa(vec![cert.cert_der().clone()]),
            initial_mtu: LOOPBACK_MTU.initial,
            min_mtu: LOOPBACK_MTU.min,
            transport: TransportChoice::from(t),
            ..Default::default()
        };
        let port = match t {
            Transport::H3 => node.local_addr().port(),
            _ => node.tcp_addr().context("tcp listener")?.port(),
        };
        let url = format!("https://localhost:{port}");
        let client = ProxyClient::connect(&url, options).await?;
        let mut udp = client
            .open_udp(&Target::udp(TUN_ADDR.to_string(), ECHO_PORT))
            .await?;
        let mut ip = client.open_ip(&IpTarget::ANY).await?;
        ip.request_addresses(&[IpPrefix::new(Ipv4Addr::UNSPECIFIED.into(), 32)?])?;
        let info = ip
            .wait_for(Duration::from_secs(5), |i| !i.assigned.is_empty())
            .await?;
        let std::net::IpAddr::V4(me) = info.assigned[0].ip else {
            anyhow::bail!("an IPv4 address");
        };
        let packet = udp_packet(me, TUN_ADDR, ECHO_PORT, PAYLOAD);
        let payload = vec![0x42u8; PAYLOAD];
        let (mut udp_rates, mut ip_rates) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            udp_rates.push(udp_slice(&mut udp, &payload).await?);
            ip_rates.push(ip_slice(&mut ip, &packet).await?);
        }
        rows.push((t, median(udp_rates), median(ip_rates)));
        udp.close().await;
        ip.close().await;
        client.close().await;
    }
    echo_task.abort();
    node.shutdown().await;
    Ok(rows)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Echoes per second over one slice, `WINDOW` in flight.
async fn udp_slice(s: &mut UdpSession, payload: &[u8]) -> Result<f64> {
    for _ in 0..WINDOW {
        s.send(payload).await?;
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < SLICE {
        match tokio::time::timeout(Duration::from_millis(200), s.recv()).await {
            Ok(Some(_)) => {
                n += 1;
                s.send(payload).await?;
            }
            Ok(None) => anyhow::bail!("udp tunnel closed"),
            // A loss: refill the window.
            Err(_) => s.send(payload).await?,
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    // Read until nothing more arrives, so the next slice starts empty.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), s.recv()).await {}
    Ok(rate)
}

async fn ip_slice(s: &mut IpSession, packet: &[u8]) -> Result<f64> {
    for _ in 0..WINDOW {
        s.send_ip_packet(packet).await?;
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < SLICE {
        match s.recv(Duration::from_millis(200)).await {
            Ok(p) => {
                ensure!(p.len() == packet.len(), "echo of {} bytes", p.len());
                n += 1;
                s.send_ip_packet(packet).await?;
            }
            Err(masque_client::ClientError::Timeout(_)) => s.send_ip_packet(packet).await?,
            Err(e) => return Err(e.into()),
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    while s.recv(Duration::from_millis(50)).await.is_ok() {}
    Ok(rate)
}

/// An IPv4/UDP packet (UDP checksum 0: none, allowed over IPv4).
fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, port: u16, payload: usize) -> Vec<u8> {
    let total = 20 + 8 + payload;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&port.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    masque_proto::packet::fill_ipv4_header_checksum(&mut p).expect("a whole header");
    p
}
