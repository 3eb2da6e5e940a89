//! CONNECT-UDP echo over each transport, on loopback: HTTP/3 (QUIC
//! datagrams), HTTP/2 and HTTP/1.1 (DATAGRAM capsules over TLS/TCP), with 1
//! and 16 tunnels, against two baselines measured in the same run: the
//! HTTP/3 path, and a plain TLS-over-TCP echo of the same bytes (one
//! 1,204-byte record per datagram, the size of its DATAGRAM capsule, echoed
//! by a TLS server without any HTTP). All paths are set up once and measured
//! in alternating short slices, so drift in the machine's speed hits all
//! alike.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p masque-tests --bench
//! transport_echo`). Prints a table and writes target/bench/transport_echo.json.
//! Targets are reported, never asserted.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use masque_client::{ProxyClient, Target};
use masque_tests::{
    bench::{Path, SendFn, median, udp_sessions_path},
    node::{TestNode, udp_echo_on},
    transport,
};
use masque_transport::{Transport, tls::ServerVerification};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::Semaphore,
};

const PAYLOAD: usize = 1200;
/// A DATAGRAM capsule of a 1,200-byte UDP payload: type, 2-byte length,
/// context id, payload.
const RECORD: usize = 1 + 2 + 1 + PAYLOAD;
/// Unanswered datagrams per path (spread over its tunnels).
const WINDOW: usize = 128;
const SLICE: Duration = Duration::from_millis(250);
const ROUNDS: usize = 10;
const MANY: usize = 16;

fn main() -> Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmark: run with `cargo xtask bench`");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run())
}

struct Named {
    name: String,
    path: Path,
    slices: Vec<f64>,
    cpu: f64,
    echoed: u64,
}

async fn run() -> Result<()> {
    let echo = udp_echo().await?;
    let node = TestNode::start_with(true, None, |_| {}).await?;
    let tls = tls_echo(&node).await?;
    let mut paths = Vec::new();
    let mut clients = Vec::new();
    for t in Transport::ALL {
        for tunnels in [1, MANY] {
            let (path, mut c) = through_node(&node, echo, t, tunnels).await?;
            clients.append(&mut c);
            paths.push(named(format!("{t} x{tunnels}"), path));
        }
    }
    for conns in [1, MANY] {
        let path = through_tls(&node, tls, conns).await?;
        paths.push(named(format!("tls echo x{conns}"), path));
    }
    let start = Instant::now();
    for round in 0..ROUNDS {
        for k in 0..paths.len() {
            let i = (round + k) % paths.len();
            let s = paths[i].path.measure().await;
            paths[i].slices.push(s.rate());
            paths[i].cpu += s.cpu;
            paths[i].echoed += s.echoed;
        }
    }
    let took = start.elapsed();
    let rate = |name: &str| {
        paths
            .iter()
            .find(|p| p.name == name)
            .map(|p| median(&p.slices))
            .unwrap_or(f64::NAN)
    };
    println!(
        "\n[transports] CONNECT-UDP echo, {PAYLOAD}-byte payloads, window {WINDOW}, {ROUNDS} rounds of one {SLICE:?} slice per path ({:.1} s)",
        took.as_secs_f64()
    );
    println!(
        "{:<14} {:>12} {:>8} {:>9} {:>10} {:>8}",
        "path (median)", "datagrams/s", "Gbit/s", "vs h3", "vs tls", "us CPU"
    );
    let mut json = Vec::new();
    for p in &paths {
        let r = median(&p.slices);
        let n = if p.name.ends_with(&format!("x{MANY}")) {
            MANY
        } else {
            1
        };
        let vs_h3 = r / rate(&format!("h3 x{n}"));
        let vs_tls = r / rate(&format!("tls echo x{n}"));
        let cpu_us = p.cpu / p.echoed.max(1) as f64 * 1e6;
        println!(
            "{:<14} {:>12.0} {:>8.2} {:>9.3} {:>10.3} {:>8.2}",
            p.name,
            r,
            r * PAYLOAD as f64 * 8.0 / 1e9,
            vs_h3,
            vs_tls,
            cpu_us
        );
        json.push(format!(
            "{{\"path\":\"{}\",\"datagrams_per_s\":{r:.0},\"vs_h3\":{vs_h3:.4},\"vs_tls\":{vs_tls:.4},\"cpu_us_per_echo\":{cpu_us:.3}}}",
            p.name
        ));
    }
    let m = node.node.metrics();
    for t in Transport::ALL {
        let s = m.transport(t).snapshot();
        println!(
            "node counters {t}: connections {}, tunnels {}, datagrams in {} out {}, capsules in {} out {}",
            s.connections,
            s.tunnels,
            s.datagrams_from_client,
            s.datagrams_to_client,
            s.capsules_from_client,
            s.capsules_to_client
        );
    }
    let snap = m.snapshot();
    println!(
        "node drops: to target {}, to client {}, output {}",
        snap.datagrams_to_target_dropped, snap.datagrams_to_client_dropped, snap.output_dropped
    );
    let dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("transport_echo.json"),
        format!("{{\"paths\":[{}]}}\n", json.join(",")),
    )?;
    drop(paths);
    for c in clients {
        c.close().await;
    }
    node.node.shutdown().await;
    Ok(())
}

fn named(name: String, path: Path) -> Named {
    Named {
        name,
        path,
        slices: Vec::new(),
        cpu: 0.0,
        echoed: 0,
    }
}

fn workspace_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default()
}

/// A UDP echo target with one large receive buffer.
async fn udp_echo() -> Result<SocketAddr> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    sock.set_recv_buffer_size(8 << 20)?;
    sock.set_send_buffer_size(8 << 20)?;
    sock.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    sock.set_nonblocking(true)?;
    udp_echo_on(UdpSocket::from_std(sock.into())?)
}

/// `tunnels` CONNECT-UDP tunnels over transport `t`: on one connection for
/// HTTP/3 and HTTP/2, one connection each on HTTP/1.1.
async fn through_node(
    node: &TestNode,
    echo: SocketAddr,
    t: Transport,
    tunnels: usize,
) -> Result<(Path, Vec<ProxyClient>)> {
    let mut sessions = Vec::new();
    let mut clients = Vec::new();
    let target = Target::udp(echo.ip().to_string(), echo.port());
    for i in 0..tunnels {
        if i == 0 || t == Transport::H1 {
            clients.push(
                ProxyClient::connect(&transport::url(node, t), transport::options_for(node, t))
                    .await?,
            );
        }
        let client = clients.last().context("a client")?;
        sessions.push(client.open_udp(&target).await?);
    }
    let path =
        udp_sessions_path(sessions, PAYLOAD, WINDOW, SLICE).with_context(|| format!("{t}"))?;
    Ok((path, clients))
}

/// A TLS echo server with the node's certificate: every byte read is written
/// back.
async fn tls_echo(node: &TestNode) -> Result<SocketAddr> {
    let config = node
        .cert
        .server_tls()
        .rustls_server_config(&[b"echo"])
        .context("TLS config")?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let (mut r, mut w) = tokio::io::split(tls);
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = r.read(&mut buf).await {
                    if n == 0 || w.write_all(&buf[..n]).await.is_err() || w.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// `conns` TLS connections to the echo server; each send writes one record.
async fn through_tls(node: &TestNode, addr: SocketAddr, conns: usize) -> Result<Path> {
    let verification = ServerVerification::CustomCa(vec![node.cert.cert_der().clone()]);
    let config = masque_transport::tls::client_config(&verification, &[b"echo"])?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let received = Arc::new(AtomicU64::new(0));
    let credits = Arc::new(Semaphore::new(WINDOW));
    let mut writers = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..conns {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        let tls = connector.connect(name, tcp).await?;
        let (mut r, w) = tokio::io::split(tls);
        // Writes batched as the tunnels' writers do: a burst of queued
        // records, one flush (one TLS record and one system call).
        let (tx, rx) = tokio::sync::mpsc::channel::<()>(WINDOW);
        writers.push(tx);
        receivers.push(tokio::spawn(write_records(w, rx)));
        let (received, credits) = (Arc::clone(&received), Arc::clone(&credits));
        receivers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut pending = 0usize;
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    return;
                }
                pending += n;
                let records = pending / RECORD;
                pending %= RECORD;
                received.fetch_add(records as u64, Ordering::Relaxed);
                credits.add_permits(records);
            }
        }));
    }
    let writers: Arc<[tokio::sync::mpsc::Sender<()>]> = writers.into();
    let next = Arc::new(AtomicUsize::new(0));
    let send: SendFn = Box::new(move || {
        let i = next.fetch_add(1, Ordering::Relaxed) % writers.len();
        let writers = Arc::clone(&writers);
        Box::pin(async move { writers[i].send(()).await.map_err(|e| e.to_string()) })
    });
    Ok(Path::start(
        send, received, credits, receivers, WINDOW, SLICE,
    ))
}

/// Writes one record per queued send: those already queued (at most 64) go
/// out in one buffered write and one flush.
async fn write_records<W: tokio::io::AsyncWrite + Unpin>(
    w: W,
    mut rx: tokio::sync::mpsc::Receiver<()>,
) {
    let mut w = tokio::io::BufWriter::with_capacity(64 * RECORD, w);
    let record = [0u8; RECORD];
    while rx.recv().await.is_some() {
        let mut n = 1;
        while n < 64 && rx.try_recv().is_ok() {
            n += 1;
        }
        for _ in 0..n {
            if w.write_all(&record).await.is_err() {
                return;
            }
        }
        if w.flush().await.is_err() {
            return;
        }
    }
}
