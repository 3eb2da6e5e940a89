//! TCP through the node, on loopback: bulk throughput of one TCP tunnel over
//! HTTP/3, HTTP/2 and HTTP/1.1 (connect-tcp) and over HTTP/2 classic
//! CONNECT, against two baselines measured in the same run: a direct TCP
//! connection to the same source, and one quinn stream carrying the same
//! bytes (no HTTP, no proxy: what HTTP/3 sits on). Then tunnel setups per
//! second on one connection (open, one byte echoed, half-close, end).
//! A third reference, "quinn stream + TCP hop", relays a quinn stream to the
//! same TCP source with `tokio::io::copy` (no HTTP, no framing): the two hops
//! every TCP proxy pays, so the distance from it is what MASQUE costs.
//!
//! A transfer is a download: the source writes `TRANSFER` bytes and its FIN,
//! the client reads to the end. Paths run in alternating rounds so drift in
//! the machine's speed hits all alike; medians are reported, as ratios.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p masque-tests --bench
//! tcp_bulk`). Prints a table and writes target/bench/tcp_bulk.json.
//! Targets are reported, never asserted (issue target: HTTP/3 tunnel ≥ 0.7x
//! the quinn stream).

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use masque_client::{ProxyClient, Target, TcpMode};
use masque_tests::{
    bench::median,
    client_endpoint,
    node::TestNode,
    self_signed, server_endpoint,
    tcp::tcp_echo,
    transport::{options_for, url},
};
use masque_transport::Transport;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Bytes per transfer.
const TRANSFER: u64 = 64 << 20;
const ROUNDS: usize = 5;
/// How long tunnel setups are counted per transport.
const SETUP_SLICE: Duration = Duration::from_secs(2);
/// Setups in flight at once.
const SETUP_WINDOW: usize = 8;

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

/// A source that, per connection, reads an 8-byte length and writes that
/// many bytes, then its FIN.
async fn tcp_source() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let (r, w) = s.into_split();
                let _ = serve_source(r, w).await;
            });
        }
    });
    Ok(addr)
}

async fn serve_source(
    mut r: impl AsyncRead + Unpin,
    mut w: impl AsyncWrite + Unpin,
) -> std::io::Result<()> {
    let n = r.read_u64().await?;
    let block = vec![0x5au8; 64 * 1024];
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len() as u64) as usize;
        w.write_all(&block[..k]).await?;
        left -= k as u64;
    }
    w.shutdown().await
}

/// Asks for `TRANSFER` bytes on `io` and reads them to the end.
async fn download(mut io: impl AsyncRead + AsyncWrite + Unpin) -> Result<Duration> {
    let started = Instant::now();
    io.write_u64(TRANSFER).await?;
    io.flush().await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    loop {
        let n = io.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    ensure!(got == TRANSFER, "{got} of {TRANSFER} bytes");
    let took = started.elapsed();
    let _ = io.shutdown().await;
    Ok(took)
}

/// A quinn server whose every bidirectional stream is a source.
async fn quinn_source(cert: &masque_tests::TestCert) -> Result<(SocketAddr, quinn::Endpoint)> {
    let server = server_endpoint(cert, 16)?;
    let addr = server.local_addr()?;
    let ep = server.clone();
    tokio::spawn(async move {
        while let Some(inc) = ep.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = inc.await else { return };
                while let Ok((send, recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let _ = serve_source(recv, send).await;
                    });
                }
            });
        }
    });
    Ok((addr, server))
}

/// A quinn server whose every bidirectional stream is relayed to a TCP
/// connection to `source` (no HTTP, no framing): the bytes take the same two
/// hops as through the proxy, a reference for what the TCP hop itself costs.
async fn quinn_relay(
    cert: &masque_tests::TestCert,
    source: SocketAddr,
) -> Result<(SocketAddr, quinn::Endpoint)> {
    let server = server_endpoint(cert, 16)?;
    let addr = server.local_addr()?;
    let ep = server.clone();
    tokio::spawn(async move {
        while let Some(inc) = ep.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = inc.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let Ok(tcp) = TcpStream::connect(source).await else {
                            return;
                        };
                        let _ = tcp.set_nodelay(true);
                        let (mut r, mut w) = tcp.into_split();
                        let up = async {
                            let _ = tokio::io::copy(&mut recv, &mut w).await;
                            let _ = w.shutdown().await;
                        };
                        let down = async {
                            let _ = tokio::io::copy(&mut r, &mut send).await;
                            let _ = send.finish();
                        };
                        tokio::join!(up, down);
                    });
                }
            });
        }
    });
    Ok((addr, server))
}

/// One quinn stream as an `AsyncRead + AsyncWrite`.
struct QuinnStream(quinn::SendStream, quinn::RecvStream);

impl AsyncRead for QuinnStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.1).poll_read(cx, buf)
    }
}

impl AsyncWrite for QuinnStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0)
            .poll_write(cx, buf)
            .map_err(std::io::Error::other)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Direct,
    Quinn,
    QuinnRelay,
    Tunnel(Transport, bool),
}

impl Kind {
    fn name(self) -> String {
        match self {
            Kind::Direct => "direct TCP".into(),
            Kind::Quinn => "quinn stream".into(),
            Kind::QuinnRelay => "quinn stream + TCP hop".into(),
            Kind::Tunnel(t, false) => format!("connect-tcp {t:?}"),
            Kind::Tunnel(t, true) => format!("classic CONNECT {t:?}"),
        }
    }
}

async fn run() -> Result<()> {
    let node = TestNode::start(true).await?;
    let source = tcp_source().await?;
    let cert = self_signed()?;
    let (quinn_addr, _quinn_server) = quinn_source(&cert).await?;
    let quinn_client = client_endpoint(&cert, 16)?;
    let quinn_conn = quinn_client.connect(quinn_addr, "localhost")?.await?;
    let (relay_addr, _relay_server) = quinn_relay(&cert, source).await?;
    let relay_conn = quinn_client.connect(relay_addr, "localhost")?.await?;
    let mut clients = std::collections::HashMap::new();
    for t in [Transport::H3, Transport::H2] {
        clients.insert(
            t,
            ProxyClient::connect(&url(&node, t), options_for(&node, t)).await?,
        );
    }
    let target = Target::Tcp {
        host: source.ip().to_string(),
        port: source.port(),
    };
    let kinds = [
        Kind::Direct,
        Kind::Quinn,
        Kind::QuinnRelay,
        Kind::Tunnel(Transport::H3, false),
        Kind::Tunnel(Transport::H2, false),
        Kind::Tunnel(Transport::H1, false),
        Kind::Tunnel(Transport::H2, true),
    ];
    // MASQUE_BENCH_PATHS="quinn,H3" keeps the paths whose name contains one
    // of the words (for profiling one path); the first two are the baselines.
    let only: Option<Vec<String>> = std::env::var("MASQUE_BENCH_PATHS")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect());
    let kinds: Vec<Kind> = kinds
        .into_iter()
        .filter(|k| {
            only.as_ref()
                .is_none_or(|o| o.iter().any(|w| k.name().contains(w.as_str())))
        })
        .collect();
    ensure!(
        kinds.len() >= 2,
        "MASQUE_BENCH_PATHS left fewer than two paths"
    );
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    for round in 0..ROUNDS {
        for (i, kind) in kinds.iter().enumerate() {
            let took = match *kind {
                Kind::Direct => {
                    let s = TcpStream::connect(source).await?;
                    s.set_nodelay(true)?;
                    download(s).await?
                }
                Kind::Quinn => {
                    let (send, recv) = quinn_conn.open_bi().await?;
                    download(QuinnStream(send, recv)).await?
                }
                Kind::QuinnRelay => {
                    let (send, recv) = relay_conn.open_bi().await?;
                    download(QuinnStream(send, recv)).await?
                }
                Kind::Tunnel(t, classic) => {
                    let mode = if classic {
                        TcpMode::Classic
                    } else {
                        TcpMode::ConnectTcp
                    };
                    let tunnel = match clients.get(&t) {
                        Some(c) => c.open_tcp(&target, mode).await?,
                        // HTTP/1.1: one tunnel per connection.
                        None => {
                            let c =
                                ProxyClient::connect(&url(&node, t), options_for(&node, t)).await?;
                            c.open_tcp(&target, mode).await?
                        }
                    };
                    download(tunnel)
                        .await
                        .with_context(|| format!("{} round {round}", kind.name()))?
                }
            };
            rates[i].push(TRANSFER as f64 / took.as_secs_f64());
        }
    }
    let med: Vec<f64> = rates.iter().map(|r| median(r)).collect();
    let rate_of = |k: Kind| kinds.iter().position(|x| *x == k).map(|i| med[i]);
    let direct = rate_of(Kind::Direct).unwrap_or(f64::NAN);
    let quinn = rate_of(Kind::Quinn).unwrap_or(f64::NAN);
    println!(
        "\nTCP bulk download, {} MiB per transfer, median of {ROUNDS} rounds",
        TRANSFER >> 20
    );
    let relay = rate_of(Kind::QuinnRelay).unwrap_or(f64::NAN);
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>12}",
        "path", "MiB/s", "/direct", "/quinn", "/quinn+hop"
    );
    let mut json = Vec::new();
    for (kind, rate) in kinds.iter().zip(&med) {
        let mib = rate / (1 << 20) as f64;
        println!(
            "{:<26} {:>10.0} {:>9.3}x {:>9.3}x {:>11.3}x",
            kind.name(),
            mib,
            rate / direct,
            rate / quinn,
            rate / relay
        );
        json.push(format!(
            "{{\"path\":\"{}\",\"mib_per_s\":{mib:.1},\"vs_direct\":{:.3},\"vs_quinn\":{:.3},\"vs_quinn_relay\":{:.3}}}",
            kind.name(),
            rate / direct,
            rate / quinn,
            rate / relay
        ));
    }

    let echo = tcp_echo().await?;
    let echo_target = Target::Tcp {
        host: echo.ip().to_string(),
        port: echo.port(),
    };
    println!(
        "\nTCP tunnel setups on one connection ({SETUP_WINDOW} in flight, one byte echoed each)"
    );
    let mut setups_json = Vec::new();
    for t in [Transport::H3, Transport::H2] {
        let client = Arc::new(ProxyClient::connect(&url(&node, t), options_for(&node, t)).await?);
        let n = setups(&client, &echo_target).await?;
        let per_s = n as f64 / SETUP_SLICE.as_secs_f64();
        println!("{:<26} {:>10.0} /s", format!("{t:?}"), per_s);
        setups_json.push(format!(
            "{{\"transport\":\"{t:?}\",\"setups_per_s\":{per_s:.0}}}"
        ));
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("tcp_bulk.json"),
        format!(
            "{{\"transfer_bytes\":{TRANSFER},\"paths\":[{}],\"setups\":[{}]}}\n",
            json.join(","),
            setups_json.join(",")
        ),
    )?;
    node.node.shutdown().await;
    Ok(())
}

/// Tunnel setups completed within `SETUP_SLICE`, `SETUP_WINDOW` at a time.
async fn setups(client: &Arc<ProxyClient>, target: &Target) -> Result<u64> {
    let deadline = Instant::now() + SETUP_SLICE;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SETUP_WINDOW {
        let (client, target) = (Arc::clone(client), target.clone());
        tasks.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let mut t = client.open_tcp(&target, TcpMode::ConnectTcp).await?;
                t.write_all(b"x").await?;
                let mut b = [0u8; 1];
                t.read_exact(&mut b).await?;
                t.shutdown().await?;
                let mut rest = Vec::new();
                t.read_to_end(&mut rest).await?;
                n += 1;
            }
            anyhow::Ok(n)
        });
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r??;
    }
    Ok(total)
}
