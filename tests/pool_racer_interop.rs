//! The client's transport racer and connection pool against independent
//! peers written for the tests: `tests/interop/aioquic_server.py` (aioquic,
//! HTTP/3) and `tests/interop/h2_server.py` (Python `h2` over `ssl`,
//! HTTP/2, RFC 8441). Both answer extended CONNECT with 200 +
//! `capsule-protocol: ?1` and echo what a tunnel sends (HTTP datagrams,
//! DATAGRAM capsules), and both print how many connections they accepted,
//! so the tests count connections from the server's side, not the client's.
//!
//! * racer: with only the UDP port P served (aioquic) `TransportChoice::Auto`
//!   picks HTTP/3; with only the TCP port P served (h2) HTTP/2 wins shortly
//!   after its 250 ms head start; a tunnel echoes through the winner.
//! * pool: 20 connect-udp tunnels of one `ProxyClient::new` share one QUIC
//!   connection (aioquic) or one TCP connection (h2), each echoing its own
//!   payloads.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use masque_client::{
    ClientOptions, ProxyClient, RaceOptions, Target, TransportChoice, UdpSession, UpstreamPool,
};
use masque_tests::{TestCert, init_tracing, interop_script, peer::python_or_skip, self_signed};
use masque_transport::{Transport, tls::ServerVerification};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    task::JoinHandle,
};

/// Upper bound for a Python server to print `LISTENING`.
const START_LIMIT: Duration = Duration::from_secs(20);
/// Upper bound for one tunnel's open, and for one payload's echo (resent
/// every [`RESEND`] meanwhile: HTTP/3 datagrams may be lost).
const STEP: Duration = Duration::from_secs(10);
const RESEND: Duration = Duration::from_secs(1);
/// The race's bound when only TCP is served: HTTP/2's 250 ms head start
/// plus a generous margin for a loaded machine.
const H2_WIN_BOUND: Duration = Duration::from_secs(2);
/// Tunnels the pool tests open.
const TUNNELS: usize = 20;

/// One Python server; killed (and its files removed) when dropped, and by
/// [`stop`](Self::stop) on the success path.
struct PyServer {
    name: &'static str,
    child: Child,
    port: u16,
    /// The last `CONNECTIONS <n>` it printed.
    connections: Arc<AtomicU64>,
    reader: JoinHandle<()>,
    files: Vec<PathBuf>,
}

impl PyServer {
    async fn start(
        python: &Path,
        script: &'static str,
        cert: &TestCert,
        extra: &[&str],
    ) -> Result<Self> {
        let files = vec![cert.write_pem()?, cert.write_key_pem()?];
        let mut child = Command::new(python)
            .arg(interop_script(script))
            .arg("--cert")
            .arg(&files[0])
            .arg("--key")
            .arg(&files[1])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {script}"))?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        // From here on, dropping `server` kills the child on every path.
        let connections = Arc::new(AtomicU64::new(0));
        let mut server = Self {
            name: script,
            child,
            port: 0,
            connections: Arc::clone(&connections),
            reader: tokio::spawn(async {}),
            files,
        };
        let line = tokio::time::timeout(START_LIMIT, lines.next_line())
            .await
            .with_context(|| format!("{script} did not start within {START_LIMIT:?}"))??
            .with_context(|| format!("{script} exited before listening"))?;
        let Some(port) = line.strip_prefix("LISTENING ") else {
            bail!("{script}: unexpected output {line:?}");
        };
        server.port = port.trim().parse()?;
        // Keep reading, so the server never writes into a closed pipe.
        server.reader = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(n) = line.strip_prefix("CONNECTIONS ") {
                    if let Ok(n) = n.trim().parse() {
                        connections.fetch_max(n, Ordering::SeqCst);
                    }
                } else {
                    println!("{script}: {line}");
                }
            }
        });
        Ok(server)
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// Connections the server reported accepting, once the count has been
    /// still for a moment (its lines reach us through a pipe and a task).
    async fn settled_connections(&self) -> u64 {
        self.connections_at_least(1).await
    }

    /// [`settled_connections`](Self::settled_connections) once at least
    /// `n` were reported (waiting up to [`STEP`] for that).
    async fn connections_at_least(&self, n: u64) -> u64 {
        let deadline = tokio::time::Instant::now() + STEP;
        while self.connections.load(Ordering::SeqCst) < n && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut last = self.connections.load(Ordering::SeqCst);
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.connections.load(Ordering::SeqCst);
            if now == last && now > 0 {
                break;
            }
            last = now;
        }
        self.connections.load(Ordering::SeqCst)
    }

    async fn stop(mut self) -> Result<()> {
        self.child
            .kill()
            .await
            .with_context(|| format!("killing {}", self.name))?;
        Ok(())
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        // kill_on_drop kills the child; the reader ends with its pipe.
        let _ = self.child.start_kill();
        self.reader.abort();
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

async fn aioquic_server(python: &Path, cert: &TestCert) -> Result<PyServer> {
    PyServer::start(python, "aioquic_server.py", cert, &["--count-connections"]).await
}

async fn h2_server(python: &Path, cert: &TestCert) -> Result<PyServer> {
    PyServer::start(python, "h2_server.py", cert, &[]).await
}

/// Options trusting `cert`, over `transport`; the racer remembers nothing,
/// so every race here starts from HTTP/3.
fn options(cert: &TestCert, transport: TransportChoice) -> ClientOptions {
    ClientOptions {
        transport,
        verification: ServerVerification::CustomCa(vec![cert.cert.clone()]),
        race: RaceOptions {
            remember: Duration::ZERO,
            ..RaceOptions::default()
        },
        ..ClientOptions::default()
    }
}

/// The servers echo whatever the tunnel carries; the target is never dialled.
fn target() -> Target {
    Target::udp("192.0.2.1", 443)
}

/// Sends `payload` until its echo comes back (other payloads, such as late
/// echoes of earlier resends, are skipped), within [`STEP`].
async fn echo(s: &mut UdpSession, payload: &[u8]) -> Result<()> {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        s.send(payload).await?;
        let wait = async {
            loop {
                let got = s.recv().await.context("the tunnel ended")?;
                if got[..] == *payload {
                    return anyhow::Ok(());
                }
            }
        };
        let resend = tokio::time::Instant::now() + RESEND;
        match tokio::time::timeout_at(resend.min(deadline), wait).await {
            Ok(r) => return r,
            Err(_) if tokio::time::Instant::now() < deadline => {}
            Err(_) => bail!(
                "no echo of {:?} within {STEP:?}",
                String::from_utf8_lossy(payload)
            ),
        }
    }
}

/// Opens one tunnel through a pooled `Auto` client; returns it with the
/// time from the start to its 200.
async fn raced_tunnel(server: &PyServer, cert: &TestCert) -> Result<(UdpSession, Duration)> {
    let client = ProxyClient::new(&server.url(), options(cert, TransportChoice::Auto))?;
    let started = Instant::now();
    let session = tokio::time::timeout(STEP, client.connect_udp(&target()))
        .await
        .context("racing: no tunnel")??;
    Ok((session, started.elapsed()))
}

/// Racer, HTTP/3 only: aioquic on UDP port P and nothing on TCP P, so the
/// HTTP/2 and HTTP/1.1 attempts are refused and HTTP/3 wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racer_picks_h3_on_aioquic() -> Result<()> {
    init_tracing();
    let Some(python) = python_or_skip().await else {
        return Ok(());
    };
    let cert = self_signed()?;
    let server = aioquic_server(&python, &cert).await?;
    let tcp = tokio::time::timeout(
        STEP,
        tokio::net::TcpStream::connect(("127.0.0.1", server.port)),
    )
    .await
    .context("probing TCP")?;
    ensure!(
        tcp.is_err(),
        "something listens on TCP port {}: the race would not be HTTP/3 alone",
        server.port
    );
    let (mut s, took) = raced_tunnel(&server, &cert).await?;
    println!("auto against aioquic: first tunnel in {took:?}");
    assert_eq!(s.client_connection().transport(), Transport::H3);
    assert_eq!(s.info().status, 200);
    for i in 0..10 {
        echo(&mut s, format!("raced-h3-{i}").as_bytes()).await?;
    }
    assert_eq!(server.settled_connections().await, 1, "one QUIC connection");
    drop(s);
    server.stop().await
}

/// Racer, HTTP/2 only: the h2 server on TCP port P and nothing on UDP P, so
/// HTTP/3 gets no answer and HTTP/2 wins after its 250 ms head start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racer_falls_back_to_h2_on_python_h2() -> Result<()> {
    init_tracing();
    let Some(python) = python_or_skip().await else {
        return Ok(());
    };
    let cert = self_signed()?;
    let server = h2_server(&python, &cert).await?;
    // Nothing on UDP P: binding it succeeds (and is let go at once).
    std::net::UdpSocket::bind(("127.0.0.1", server.port)).with_context(|| {
        format!(
            "something holds UDP port {}: the race would not be HTTP/2 alone",
            server.port
        )
    })?;
    let (mut s, took) = raced_tunnel(&server, &cert).await?;
    println!("auto against python h2: first tunnel in {took:?}");
    assert_eq!(s.client_connection().transport(), Transport::H2);
    assert!(
        took < H2_WIN_BOUND,
        "HTTP/2 won only after {took:?} (head start 250 ms, bound {H2_WIN_BOUND:?})"
    );
    assert_eq!(s.info().status, 200);
    for i in 0..10 {
        echo(&mut s, format!("raced-h2-{i}").as_bytes()).await?;
    }
    println!(
        "python h2 accepted {} TCP connection(s)",
        server.settled_connections().await
    );
    drop(s);
    server.stop().await
}

/// Opens [`TUNNELS`] tunnels at once through one pooled client over
/// `transport`, checks each echoes its own payloads, and returns the
/// connections `server` accepted meanwhile.
async fn pooled_tunnels(server: &PyServer, cert: &TestCert, transport: Transport) -> Result<u64> {
    let client = ProxyClient::new(&server.url(), options(cert, transport.into()))?;
    assert!(client.is_pooled());
    let opens = (0..TUNNELS).map(|_| {
        let client = client.clone();
        async move {
            tokio::time::timeout(STEP, client.connect_udp(&target()))
                .await
                .context("pool: no tunnel")?
                .map_err(anyhow::Error::from)
        }
    });
    let mut sessions = futures_util::future::try_join_all(opens).await?;
    let mut streams = HashSet::new();
    for s in &sessions {
        assert_eq!(s.client_connection().transport(), transport);
        assert_eq!(s.info().status, 200);
        streams.insert(s.info().stream_id);
    }
    assert_eq!(streams.len(), TUNNELS, "one stream per tunnel");
    // Every tunnel echoes its own payloads (no cross-talk), in turn and
    // all together.
    for round in 0..3 {
        for (i, s) in sessions.iter_mut().enumerate() {
            echo(
                s,
                format!("{transport}-tunnel-{i}-round-{round}").as_bytes(),
            )
            .await?;
        }
    }
    let all = sessions.iter_mut().enumerate().map(|(i, s)| async move {
        echo(s, format!("{transport}-tunnel-{i}-together").as_bytes()).await
    });
    futures_util::future::try_join_all(all).await?;
    // The pool's side: one owner for this server, holding every tunnel.
    let pool = UpstreamPool::global().await?;
    let owners: Vec<_> = pool
        .owners()
        .await?
        .into_iter()
        .map(|o| o.info())
        .filter(|i| i.peer.port() == server.port && i.transport == transport)
        .collect();
    assert_eq!(owners.len(), 1, "pooled connections: {owners:?}");
    assert_eq!(owners[0].streams_in_use, TUNNELS);
    let connections = server.settled_connections().await;
    // Control: a dedicated client's connection is a second one in the
    // server's count, so the count above would have shown extra dials.
    let dedicated = tokio::time::timeout(
        STEP,
        ProxyClient::connect(&server.url(), options(cert, transport.into())),
    )
    .await
    .context("dedicated client: no connection")??;
    let mut s = tokio::time::timeout(STEP, dedicated.connect_udp(&target()))
        .await
        .context("dedicated client: no tunnel")??;
    echo(&mut s, format!("{transport}-dedicated").as_bytes()).await?;
    let counted = server.connections_at_least(connections + 1).await;
    assert_eq!(
        counted,
        connections + 1,
        "the dedicated client's connection counted"
    );
    drop((s, dedicated, sessions));
    Ok(connections)
}

/// Pool over HTTP/3: 20 tunnels to aioquic share one QUIC connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_shares_one_quic_connection_with_aioquic() -> Result<()> {
    init_tracing();
    let Some(python) = python_or_skip().await else {
        return Ok(());
    };
    let cert = self_signed()?;
    let server = aioquic_server(&python, &cert).await?;
    let connections = pooled_tunnels(&server, &cert, Transport::H3).await?;
    println!("aioquic accepted {connections} QUIC connection(s) for {TUNNELS} tunnels");
    assert_eq!(connections, 1, "{TUNNELS} tunnels on one QUIC connection");
    server.stop().await
}

/// Pool over HTTP/2: 20 tunnels to the Python h2 server share one TCP
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_shares_one_tcp_connection_with_python_h2() -> Result<()> {
    init_tracing();
    let Some(python) = python_or_skip().await else {
        return Ok(());
    };
    let cert = self_signed()?;
    let server = h2_server(&python, &cert).await?;
    let connections = pooled_tunnels(&server, &cert, Transport::H2).await?;
    println!("python h2 accepted {connections} TCP connection(s) for {TUNNELS} tunnels");
    assert_eq!(connections, 1, "{TUNNELS} tunnels on one TCP connection");
    server.stop().await
}
