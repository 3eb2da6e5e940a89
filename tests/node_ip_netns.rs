//! CONNECT-IP end to end as a VPN, in three network namespaces the test
//! creates and deletes (root and iproute2 needed):
//!
//! ```text
//!  client ns                      node ns                          target ns
//!  masque-node vpn ── veth ──▶ node (in-process, TUN egress) ── veth ──▶ echo services
//!  10.81.0.1                  10.81.0.2 | mqip0 10.200.0.1 | 10.82.0.1   10.82.0.2
//! ```
//!
//! The target reaches the client's assigned address (10.200.0.x) only back
//! through the node (route via 10.82.0.1, then the node's TUN). Over h3, h2
//! and h1 in turn: ICMP echo (ping), a UDP and a TCP exchange from the client
//! namespace to the target through the tunnel; a TTL-1 packet gets Time
//! Exceeded (from the node's kernel, which routes the packet the tunnel
//! handed it, R9484-47); a spoofed source is dropped and counted (R9484-60);
//! when the vpn stops, its address is released (IpRegistry empty).

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use masque_proto::connect_ip::PacketDrop;
use masque_server::{
    IpProxy, IpProxyConfig, Node, Proxy, ServerConfig, TcpProxyConfig, UdpProxyConfig,
    ip::TunEgress, policy::AddressPolicy,
};
use masque_tests::{
    init_tracing,
    netns::{NetNs, exec, veth_named},
};
use masque_transport::tls::DevCert;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NODE_LISTEN: &str = "10.81.0.2:4433";
const TARGET: &str = "10.82.0.2";
const ECHO_PORT: u16 = 7;
const POOL: &str = "10.200.0.0/24";
const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn vpn_through_a_node_with_tun_egress_on_every_transport() -> Result<()> {
    init_tracing();
    // SAFETY: geteuid(2) takes no arguments, touches no memory and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: network namespaces and TUN devices need root");
        return Ok(());
    }
    let client = NetNs::create("ipc")?;
    let node = NetNs::create("ipn")?;
    let target = NetNs::create("ipt")?;
    veth_named(
        (&client, "vc", "10.81.0.1/24"),
        (&node, "vn1", "10.81.0.2/24"),
        1500,
    )?;
    veth_named(
        (&node, "vn2", "10.82.0.1/24"),
        (&target, "vt", "10.82.0.2/24"),
        1500,
    )?;
    let fwd = exec(&node, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
    ensure!(fwd.status.success(), "sysctl: {fwd:?}");
    target.ip(&["route", "add", POOL, "via", "10.82.0.1"])?;

    let (stop_target, target_stop) = tokio::sync::oneshot::channel::<()>();
    let services = target.run(move || serve_echo(target_stop))?;

    let cert = DevCert::ephemeral()?;
    let pin = cert.fingerprint_sha256_hex();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (stop_node, node_stop) = tokio::sync::oneshot::channel::<()>();
    let node_run = node.run(move || run_node(cert, ready_tx, node_stop))?;
    ready_rx
        .recv_timeout(Duration::from_secs(20))
        .context("the node did not start")?;

    let mut results = Vec::new();
    for transport in ["h3", "h2", "h1"] {
        results.push((transport, vpn_round(&client, &pin, transport)));
    }
    let _ = stop_node.send(());
    let report = node_run.join(LIMIT)?;
    let _ = stop_target.send(());
    services.join(LIMIT)?;
    for (t, r) in &results {
        if let Err(e) = r {
            bail!("{t}: {e:#}");
        }
    }
    ensure!(
        report.spoofed_dropped >= 3,
        "one spoofed packet per transport dropped and counted: {report:?}"
    );
    ensure!(report.assigned >= 3, "{report:?}");
    ensure!(
        report.registered_after.is_empty(),
        "addresses released when the sessions ended: {:?}",
        report.registered_after
    );
    Ok(())
}

/// What the node saw.
#[derive(Debug)]
struct NodeReport {
    spoofed_dropped: u64,
    assigned: u64,
    registered_after: Vec<String>,
}

async fn run_node(
    cert: DevCert,
    ready: mpsc::Sender<()>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<NodeReport> {
    let pool = POOL.parse()?;
    let tun = TunEgress::create("mqip0", 1500, &[pool])?;
    let ip = IpProxy::new(
        IpProxyConfig {
            pools: vec![pool],
            // The target's link only: the client keeps its route to the node.
            routes: Some(vec!["10.82.0.0/24".parse()?]),
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
    let config = ServerConfig {
        listen: NODE_LISTEN.parse()?,
        drain_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let node = Node::start(config, &cert.server_tls(), Arc::new(handler)).await?;
    let _ = ready.send(());
    let _ = tokio::time::timeout(LIMIT, stop).await;
    let m = node.metrics();
    let report = NodeReport {
        spoofed_dropped: m.ip_drops.get(PacketDrop::SourceNotAssigned),
        assigned: m
            .ip_addresses_assigned
            .load(std::sync::atomic::Ordering::Relaxed),
        registered_after: Vec::new(),
    };
    let registry = node.ip_registry().clone();
    // The vpn sessions ended before the stop: the registry released their blocks
    // when it saw their actors stop (read before the node's tree goes).
    let deadline = Instant::now() + Duration::from_secs(10);
    let registered_after = loop {
        let all = registry.all();
        if all.is_empty() || Instant::now() > deadline {
            break all.iter().map(|e| format!("{e:?}")).collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    node.shutdown().await;
    Ok(NodeReport {
        registered_after,
        ..report
    })
}

/// UDP and TCP echo on the target until `stop`.
async fn serve_echo(stop: tokio::sync::oneshot::Receiver<()>) -> Result<()> {
    let addr: SocketAddr = format!("{TARGET}:{ECHO_PORT}").parse()?;
    let udp = tokio::net::UdpSocket::bind(addr).await?;
    let tcp = tokio::net::TcpListener::bind(addr).await?;
    let udp_echo = async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            let _ = udp.send_to(&buf[..n], from).await;
        }
    };
    let tcp_echo = async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    };
    tokio::select! {
        _ = udp_echo => {}
        _ = tcp_echo => {}
        _ = tokio::time::timeout(LIMIT, stop) => {}
    }
    Ok(())
}

/// The `masque-node` binary next to this test's executable.
fn node_binary() -> Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .context("test executable directory")?;
    let bin = dir.join("masque-node");
    ensure!(
        bin.exists(),
        "{} is not built (cargo build -p masque-node)",
        bin.display()
    );
    Ok(bin)
}

/// Stops the vpn (SIGTERM, then kill) when dropped.
struct Vpn(Child);

impl Drop for Vpn {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a pid we spawned and a signal number; no memory.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One vpn over `transport`: up, ping, UDP, TCP, TTL 1, a spoofed source, down.
fn vpn_round(client: &NetNs, pin: &str, transport: &str) -> Result<()> {
    let tun = format!("mqvpn{}", &transport[1..]);
    let mut child = Command::new("ip")
        .args(["netns", "exec", client.name()])
        .arg(node_binary()?)
        .args([
            "vpn",
            "--proxy",
            &format!("https://{NODE_LISTEN}"),
            "--tun",
            &tun,
            "--transport",
            transport,
            "--pin",
            pin,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting masque-node vpn")?;
    let stdout = child.stdout.take().context("vpn stdout")?;
    let vpn = Vpn(child);
    let (line_tx, line_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("vpn: {line}");
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    let up = loop {
        let line = line_rx
            .recv_timeout(Duration::from_secs(20))
            .context("no `vpn up` line within 20 s")?;
        if line.starts_with("vpn up") {
            break line;
        }
    };
    let assigned = up
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .and_then(|a| a.split('/').next())
        .context("addr= in the vpn up line")?
        .to_owned();
    ensure!(assigned.starts_with("10.200.0."), "{up}");

    // ICMP echo to the target, through the tunnel.
    let ping = exec(client, "ping", &["-c", "2", "-W", "3", "-n", TARGET])?;
    ensure!(
        ping.status.success(),
        "ping: {}{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr)
    );
    // UDP and TCP exchanges, from inside the client namespace.
    let exchanged = client.run(|| async {
        let udp = tokio::net::UdpSocket::bind("0.0.0.0:0").await?;
        udp.connect(format!("{TARGET}:{ECHO_PORT}")).await?;
        let mut buf = [0u8; 64];
        let mut echoed = false;
        for _ in 0..5 {
            udp.send(b"udp through connect-ip").await?;
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(1), udp.recv(&mut buf)).await
            {
                ensure!(&buf[..n] == b"udp through connect-ip");
                echoed = true;
                break;
            }
        }
        ensure!(echoed, "no UDP echo");
        let mut tcp = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(format!("{TARGET}:{ECHO_PORT}")),
        )
        .await??;
        let payload = vec![0x5au8; 100_000];
        tcp.write_all(&payload).await?;
        let mut back = vec![0u8; payload.len()];
        tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut back)).await??;
        ensure!(back == payload, "TCP echo differs");
        Ok(())
    })?;
    exchanged.join(Duration::from_secs(30))?;

    // TTL 1: the node's kernel routes it on and answers Time Exceeded.
    let ttl = exec(
        client,
        "ping",
        &["-c", "1", "-W", "3", "-n", "-t", "1", TARGET],
    )?;
    let text = String::from_utf8_lossy(&ttl.stdout);
    ensure!(text.contains("Time to live exceeded"), "TTL 1 ping: {text}");

    // A spoofed source through the TUN: the node drops and counts it.
    let spoof = client.run(|| async { send_spoofed("10.200.0.250", TARGET) })?;
    spoof.join(Duration::from_secs(10))?;
    drop(vpn);
    // The TUN goes with the vpn.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let link = exec(client, "ip", &["link", "show", &tun])?;
        if !link.status.success() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{tun} still there after the vpn stopped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Sends one UDP packet with source `src` to `dst` through a raw socket (the
/// route to `dst` is the vpn's TUN).
fn send_spoofed(src: &str, dst: &str) -> Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let src: std::net::Ipv4Addr = src.parse()?;
    let dst: std::net::Ipv4Addr = dst.parse()?;
    let mut p = vec![0u8; 20 + 8 + 4];
    let total = p.len() as u16;
    p[0] = 0x45;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..22].copy_from_slice(&4000u16.to_be_bytes());
    p[22..24].copy_from_slice(&ECHO_PORT.to_be_bytes());
    p[24..26].copy_from_slice(&12u16.to_be_bytes());
    p[28..32].copy_from_slice(b"fake");
    masque_proto::packet::fill_ipv4_header_checksum(&mut p)?;
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))?;
    s.set_header_included_v4(true)?;
    let to = SocketAddr::new(dst.into(), 0);
    s.send_to(&p, &to.into())?;
    Ok(())
}
