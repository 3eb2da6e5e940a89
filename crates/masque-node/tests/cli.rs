//! The masque-node binary: default start-up banner, graceful SIGTERM, the
//! udp-forward command relaying a real exchange, the metrics endpoint (read
//! with curl), and running out of file descriptors (all on loopback).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpStream, UdpSocket},
    process::{Child, Command, Stdio},
    sync::mpsc::RecvTimeoutError,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

const BIN: &str = env!("CARGO_BIN_EXE_masque-node");

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("masque-node-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Starts the node; returns it with the banner lines (address, cert, pin).
fn start_node(state: &std::path::Path, extra: &[&str]) -> Result<(Proc, Banner)> {
    start_node_with(state, extra, None)
}

/// [`start_node`], optionally with its file descriptor limit (`ulimit -n`) lowered.
fn start_node_with(
    state: &std::path::Path,
    extra: &[&str],
    nofile: Option<u32>,
) -> Result<(Proc, Banner)> {
    start_node_inner(state, extra, nofile, None)
}

/// [`start_node`], with the node's log (stderr, `RUST_LOG=info`) sent line by
/// line to the receiver, so a test can wait for what the node reports.
fn start_node_logged(
    state: &std::path::Path,
    extra: &[&str],
) -> Result<(Proc, Banner, std::sync::mpsc::Receiver<String>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (proc, banner) = start_node_inner(state, extra, None, Some(tx))?;
    Ok((proc, banner, rx))
}

/// Waits, at most `within`, for a log line containing `needle`; the lines
/// before it are skipped. Fails with the lines seen if it never comes.
fn wait_for_log(
    log: &std::sync::mpsc::Receiver<String>,
    needle: &str,
    within: Duration,
) -> Result<String> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        match log.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains(needle) => return Ok(line),
            Ok(line) => seen.push(line),
            Err(RecvTimeoutError::Timeout) => {
                bail!("no log line with {needle:?} within {within:?}; saw: {seen:#?}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                bail!("the node exited without a log line with {needle:?}; saw: {seen:#?}")
            }
        }
    }
}

fn start_node_inner(
    state: &std::path::Path,
    extra: &[&str],
    nofile: Option<u32>,
    log: Option<std::sync::mpsc::Sender<String>>,
) -> Result<(Proc, Banner)> {
    let mut command = match nofile {
        Some(n) => {
            let mut c = Command::new("sh");
            c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), BIN]);
            c
        }
        None => Command::new(BIN),
    };
    if !extra.contains(&"--listen") {
        command.args(["--listen", "127.0.0.1:0"]);
    }
    if log.is_some() {
        command.env("RUST_LOG", "info").env("NO_COLOR", "1");
    }
    let mut child = command
        .arg("--state-dir")
        .arg(state)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(if log.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    if let (Some(tx), Some(stderr)) = (log, child.stderr.take()) {
        // Drained to the end, like stdout; the receiver may be long gone.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
    }
    let proc = Proc(child);
    // Lines come from a thread, so the wait for the banner is bounded (a
    // blocking read of a node that prints nothing would never return). The
    // thread keeps draining stdout, so the child never blocks on a full pipe.
    let (line_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            // Nobody listens after the banner: drain the rest.
            let _ = line_tx.send(line);
        }
    });
    let mut banner = Banner {
        addr: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        tcp: None,
        cert: Default::default(),
        pin: String::new(),
        metrics: None,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while banner.pin.is_empty() {
        let line = match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => line?,
            Err(RecvTimeoutError::Timeout) => bail!("no banner from the node within 30 s"),
            Err(RecvTimeoutError::Disconnected) => bail!("node exited before its banner"),
        };
        if let Some(rest) = line.split(" listening on ").nth(1) {
            // `UDP (HTTP/3, UDP)[ and TCP (HTTP/2 + HTTP/1.1, TLS over TCP)]`
            banner.addr = rest.split_whitespace().next().context("addr")?.parse()?;
            if let Some(tcp) = rest.split(" and ").nth(1) {
                banner.tcp = Some(tcp.split_whitespace().next().context("tcp")?.parse()?);
            }
        } else if let Some(p) = line.strip_prefix("certificate: ") {
            banner.cert = p.into();
        } else if let Some(m) = line.strip_prefix("metrics: ") {
            banner.metrics = Some(m.into());
        } else if let Some(p) = line.strip_prefix("sha-256 fingerprint: ") {
            banner.pin = p.into();
        }
    }
    Ok((proc, banner))
}

struct Banner {
    /// UDP, HTTP/3.
    addr: std::net::SocketAddr,
    /// TCP, HTTP/2 and HTTP/1.1 over TLS (unless `--no-tcp`).
    tcp: Option<std::net::SocketAddr>,
    cert: std::path::PathBuf,
    pin: String,
    /// `http://ADDR/metrics` with `--metrics-listen`.
    metrics: Option<String>,
}

impl Banner {
    /// The proxy URL a client uses.
    fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Client options that trust exactly the node's certificate.
    fn pinned_options(&self) -> Result<masque_client::ClientOptions> {
        let pin = masque_transport::tls::parse_pin(&self.pin)?;
        Ok(masque_client::ClientOptions {
            verification: masque_transport::tls::ServerVerification::PinnedSha256(pin),
            ..Default::default()
        })
    }
}

fn udp_target(addr: std::net::SocketAddr) -> masque_client::Target {
    masque_client::Target::Udp {
        host: addr.ip().to_string(),
        port: addr.port(),
    }
}

fn udp_echo() -> Result<std::net::SocketAddr> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    let addr = sock.local_addr()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], from);
        }
    });
    Ok(addr)
}

/// First run generates the development certificate; the second reuses it
/// (same fingerprint), and the banner names it.
#[test]
fn dev_certificate_generated_once_and_reused() -> Result<()> {
    let state = temp_dir("cert");
    let (p1, b1) = start_node(&state, &[])?;
    drop(p1);
    assert!(b1.cert.starts_with(&state), "cert in the state dir");
    let (_p2, b2) = start_node(&state, &[])?;
    assert_eq!(b1.pin, b2.pin, "certificate reused");
    assert_eq!(b1.pin.len(), 32 * 3 - 1, "colon hex SHA-256");
    Ok(())
}

/// A port number free on both UDP and TCP on 127.0.0.1 (just now).
fn free_port() -> Result<u16> {
    for _ in 0..20 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free on both UDP and TCP")
}

/// A TLS handshake with the node's TCP listener offering `alpn`, trusting
/// exactly its certificate; the protocol it chose.
fn tls_alpn(banner: &Banner, alpn: &[u8]) -> Result<Option<Vec<u8>>> {
    use std::sync::Arc;
    use tokio_rustls::{TlsConnector, rustls::pki_types::ServerName};
    let addr = banner.tcp.context("no TCP listener in the banner")?;
    let pin = masque_transport::tls::parse_pin(&banner.pin)?;
    let config = masque_transport::tls::client_config(
        &masque_transport::tls::ServerVerification::PinnedSha256(pin),
        &[alpn],
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let limit = Duration::from_secs(10);
        let tcp = tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr))
            .await
            .context("TCP connect")??;
        let tls =
            TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("localhost")?, tcp);
        let tls = tokio::time::timeout(limit, tls)
            .await
            .context("TLS handshake")??;
        Ok(tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
    })
}

/// By default the node serves HTTP/2 and HTTP/1.1 over TLS on TCP beside
/// HTTP/3 on UDP, on the same port number, and the banner names both; ALPN
/// picks the protocol.
#[test]
fn tls_over_tcp_on_the_same_port_by_default() -> Result<()> {
    let state = temp_dir("tcp");
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let (_node, banner) = start_node(&state, &["--listen", &listen.to_string()])?;
    assert_eq!(banner.addr, listen);
    assert_eq!(banner.tcp, Some(listen), "TCP on the HTTP/3 port number");
    for alpn in [&b"h2"[..], b"http/1.1"] {
        assert_eq!(tls_alpn(&banner, alpn)?.as_deref(), Some(alpn));
    }
    // The usual `--listen 127.0.0.1:0` (start_node's) gets a TCP listener too.
    let (_node, banner) = start_node(&state, &[])?;
    assert_eq!(tls_alpn(&banner, b"h2")?.as_deref(), Some(&b"h2"[..]));
    Ok(())
}

/// `--tcp-listen` moves the TLS listener; `--no-tcp` removes it.
#[test]
fn tcp_listen_and_no_tcp_flags() -> Result<()> {
    let state = temp_dir("tcpflags");
    let tcp_port = free_port()?;
    let tcp: std::net::SocketAddr = format!("127.0.0.1:{tcp_port}").parse()?;
    let (_node, banner) = start_node(&state, &["--tcp-listen", &tcp.to_string()])?;
    assert_eq!(banner.tcp, Some(tcp));
    assert_ne!(banner.addr.port(), tcp_port);
    assert_eq!(
        tls_alpn(&banner, b"http/1.1")?.as_deref(),
        Some(&b"http/1.1"[..])
    );
    drop(_node);

    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let (_node, banner) = start_node(&state, &["--listen", &listen.to_string(), "--no-tcp"])?;
    assert_eq!(banner.addr, listen);
    assert_eq!(banner.tcp, None, "no TCP in the banner");
    let refused = TcpStream::connect_timeout(&listen, Duration::from_secs(5));
    assert!(refused.is_err(), "nothing listens on TCP with --no-tcp");
    Ok(())
}

/// SIGTERM: the node stops accepting, drains and exits 0.
#[test]
fn sigterm_exits_cleanly() -> Result<()> {
    let state = temp_dir("term");
    let (mut proc, _banner) = start_node(&state, &["--drain-timeout", "2"])?;
    let status = Command::new("kill")
        .args(["-TERM", &proc.0.id().to_string()])
        .status()?;
    assert!(status.success(), "kill -TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = proc.0.try_wait()? {
            assert!(status.success(), "exit status {status}");
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("node did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `udp-forward` relays a real exchange: local UDP client -> forwarder ->
/// node (HTTP/3 CONNECT-UDP) -> UDP echo target and back.
#[test]
fn udp_forward_relays_an_exchange() -> Result<()> {
    let state = temp_dir("fwd");
    let (_node, banner) = start_node(&state, &["--allow-private"])?;
    forward_one_exchange(&banner, &[])
}

/// Runs `udp-forward` (with `extra` arguments) against the node of `banner`
/// and relays one exchange with a UDP echo target through it.
fn forward_one_exchange(banner: &Banner, extra: &[&str]) -> Result<()> {
    let echo = udp_echo()?;
    let local = UdpSocket::bind("127.0.0.1:0")?;
    let listen = {
        let probe = UdpSocket::bind("127.0.0.1:0")?;
        probe.local_addr()?
    };
    let fwd = Proc(
        Command::new(BIN)
            .args(["udp-forward", "--proxy"])
            .arg(banner.url())
            .args([
                "--listen",
                &listen.to_string(),
                "--target",
                &echo.to_string(),
                "--ca",
            ])
            .arg(&banner.cert)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    local.set_read_timeout(Some(Duration::from_millis(300)))?;
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        local.send_to(b"through the tunnel", listen)?;
        if let Ok((n, from)) = local.recv_from(&mut buf) {
            assert_eq!(from, listen);
            assert_eq!(&buf[..n], b"through the tunnel");
            break;
        }
        if Instant::now() > deadline {
            bail!("no reply through udp-forward");
        }
    }
    drop(fwd);
    Ok(())
}

/// `--metrics-listen`: the node's counters over HTTP/1.1, read with curl (an
/// independent client) before and after an exchange through the node; bad
/// requests get their status.
#[test]
fn metrics_endpoint_serves_counters_to_curl() -> Result<()> {
    let state = temp_dir("metrics");
    let (_node, banner) = start_node(
        &state,
        &["--allow-private", "--metrics-listen", "127.0.0.1:0"],
    )?;
    let url = banner
        .metrics
        .clone()
        .context("no metrics line in the banner")?;
    let before = curl(&url)?;
    assert!(
        before.contains("# TYPE masque_sessions_opened counter\n"),
        "{before}"
    );
    assert_eq!(counter(&before, "masque_datagrams_to_target"), Some(0));
    assert_eq!(counter(&before, "masque_sessions_active"), Some(0));
    forward_one_exchange(&banner, &[])?;
    let after = curl(&url)?;
    for name in [
        "masque_tunnels_established",
        "masque_datagrams_to_target",
        "masque_datagrams_from_target",
    ] {
        assert!(counter(&after, name) >= Some(1), "{name} in\n{after}");
    }
    // Bad input, straight over TCP.
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let exchange = |request: &[u8]| -> Result<String> {
        let mut s = TcpStream::connect(&addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(request)?;
        let mut response = String::new();
        s.read_to_string(&mut response)?;
        Ok(response)
    };
    let status_of = |request: &[u8]| -> Result<String> {
        let r = exchange(request)?;
        Ok(r.lines().next().unwrap_or_default().to_owned())
    };
    assert_eq!(
        status_of(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?,
        "HTTP/1.1 405 Method Not Allowed"
    );
    assert_eq!(
        status_of(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")?,
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(status_of(b"NOT HTTP\r\n\r\n")?, "HTTP/1.1 400 Bad Request");
    assert_eq!(
        status_of(b"GET /metrics HTTP/1.1\r\n\r\n")?,
        "HTTP/1.1 400 Bad Request",
        "HTTP/1.1 without Host"
    );
    let mut huge = b"GET /metrics HTTP/1.1\r\nx: ".to_vec();
    huge.resize(16 * 1024, b'a');
    assert_eq!(
        status_of(&huge)?,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    // Still serving after all that.
    assert!(curl(&url)?.contains("masque_sessions_opened"));
    Ok(())
}

/// `curl -sS --fail` with a time limit; the body.
fn curl(url: &str) -> Result<String> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10", url])
        .output()
        .context("running curl")?;
    if !out.status.success() {
        bail!("curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The value of a sample line `name value` in a Prometheus exposition.
fn counter(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// PS-09: a node out of file descriptors refuses new tunnels with 503
/// `connection_limit_reached` (its own limit, worth a retry), not as a fault of
/// the target, keeps its open tunnels working, and opens tunnels again once
/// closed ones have freed descriptors.
#[test]
fn out_of_file_descriptors_is_503_connection_limit_reached() -> Result<()> {
    use masque_client::{ClientError, ProxyClient};

    let state = temp_dir("fds");
    let (_node, banner) = start_node_with(&state, &["--allow-private"], Some(64))?;
    let echo = udp_echo()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = ProxyClient::connect(&banner.url(), banner.pinned_options()?).await?;
        let target = udp_target(echo);
        let mut open = Vec::new();
        let refusal = loop {
            if open.len() >= 200 {
                bail!("no refusal after 200 tunnels under a 64-descriptor limit");
            }
            let opened = tokio::time::timeout(Duration::from_secs(10), client.open_udp(&target))
                .await
                .context("a tunnel request got no answer")?;
            match opened {
                Ok(s) => open.push(s),
                Err(e) => break e,
            }
        };
        match &refusal {
            ClientError::Refused {
                status,
                proxy_status,
                ..
            } => {
                assert_eq!(*status, 503, "{refusal:?}");
                let ps = proxy_status.as_deref().unwrap_or_default();
                assert!(ps.contains("error=connection_limit_reached"), "{ps}");
            }
            other => bail!("expected a 503 refusal, got {other:?}"),
        }
        assert!(open.len() >= 10, "only {} tunnels opened", open.len());
        // The open tunnels still work.
        let s = open.last_mut().context("a tunnel")?;
        s.send(b"still here").await?;
        let back = tokio::time::timeout(Duration::from_secs(5), s.recv())
            .await
            .context("no echo on an open tunnel")?;
        assert_eq!(back.as_deref(), Some(&b"still here"[..]));
        // Closing some frees descriptors: tunnels open again (the node releases
        // a closed tunnel's socket shortly after the close).
        for s in open.drain(..5) {
            s.close().await;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let opened = tokio::time::timeout(Duration::from_secs(10), client.open_udp(&target))
                .await
                .context("a tunnel request got no answer")?;
            match opened {
                Ok(s) => {
                    s.close().await;
                    break;
                }
                Err(ClientError::Refused { status, .. })
                    if status == 503 && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => bail!("no tunnel after closing five: {e:?}"),
            }
        }
        Ok(())
    })
}

/// R9298-52: `--auth-token-file` makes the node require a bearer token, which
/// `udp-forward --auth-token-file` sends. A file with a weak token stops the
/// node at start with the reason.
#[test]
fn auth_token_file_guards_the_node() -> Result<()> {
    let state = temp_dir("auth");
    let tokens = state.join("tokens");
    std::fs::write(&tokens, "# forwarders\nforward-token-0123456789abcdef\n")?;
    let tokens_arg = tokens.to_str().context("utf-8 path")?;
    let (_node, banner) = start_node(
        &state,
        &[
            "--allow-private",
            "--metrics-listen",
            "127.0.0.1:0",
            "--auth-token-file",
            tokens_arg,
        ],
    )?;
    forward_one_exchange(&banner, &["--auth-token-file", tokens_arg])?;
    let metrics = curl(banner.metrics.as_deref().context("metrics url")?)?;
    assert!(counter(&metrics, "masque_tunnels_established") >= Some(1));

    std::fs::write(&tokens, "short\n")?;
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--state-dir"])
        .arg(&state)
        .args(["--auth-token-file", tokens_arg])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("a node with a weak token did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .context("stderr")?
        .read_to_string(&mut stderr)?;
    assert!(!status.success());
    assert!(stderr.contains("at least 22"), "{stderr}");
    Ok(())
}

/// SIGHUP reloads `--auth-token-file`: after the file changes, the old token
/// gets 407 and the new one a tunnel, without a restart. A file that no longer
/// parses keeps the tokens in force.
#[test]
fn sighup_reloads_the_bearer_tokens() -> Result<()> {
    use masque_client::{ClientError, ClientOptions, ProxyClient};

    const OLD: &str = "old-token-0123456789abcdef";
    const NEW: &str = "new-token-0123456789abcdef";
    let state = temp_dir("hup");
    let tokens = state.join("tokens");
    std::fs::write(&tokens, format!("{OLD}\n"))?;
    let (node, banner, log) = start_node_logged(
        &state,
        &[
            "--allow-private",
            "--auth-token-file",
            tokens.to_str().context("utf-8 path")?,
        ],
    )?;
    let hup = || -> Result<()> {
        let ok = Command::new("kill")
            .args(["-HUP", &node.0.id().to_string()])
            .status()?
            .success();
        anyhow::ensure!(ok, "kill -HUP");
        Ok(())
    };
    let echo = udp_echo()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let url = banner.url();
        let target = udp_target(echo);
        let base = ClientOptions {
            close_timeout: Duration::from_millis(100),
            ..banner.pinned_options()?
        };
        // Ok(true): a tunnel; Ok(false): 407.
        let open_with = |token: &'static str| {
            let (url, target, base) = (url.clone(), target.clone(), base.clone());
            async move {
                let options = base.with_bearer_token(token)?;
                let client = ProxyClient::connect(&url, options).await?;
                let r = tokio::time::timeout(Duration::from_secs(10), client.open_udp(&target))
                    .await
                    .context("no answer to the tunnel request")?;
                client.close().await;
                match r {
                    Ok(s) => {
                        s.close().await;
                        Ok(true)
                    }
                    Err(ClientError::Refused { status, .. }) if status == 407 => Ok(false),
                    Err(e) => Err(anyhow::Error::from(e)),
                }
            }
        };
        assert!(open_with(OLD).await?, "the old token before the reload");
        assert!(!open_with(NEW).await?, "the new token before the reload");
        std::fs::write(&tokens, format!("# rotated\n{NEW}\n"))?;
        hup()?;
        wait_for_log(
            &log,
            "SIGHUP: bearer tokens reloaded",
            Duration::from_secs(10),
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !open_with(NEW).await? {
            if Instant::now() > deadline {
                bail!("the new token was not accepted after SIGHUP");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!open_with(OLD).await?, "the old token after the reload");
        // A broken file: the node keeps what it has (and does not fall back to
        // no authentication).
        // Wait for the node to say it tried and refused the file: without
        // that, the checks below would pass just as well had the SIGHUP never
        // been handled.
        std::fs::write(&tokens, "short\n")?;
        hup()?;
        let refused = wait_for_log(
            &log,
            "SIGHUP: tokens not reloaded, the old ones stay",
            Duration::from_secs(10),
        )?;
        assert!(refused.contains("ERROR"), "{refused}");
        assert!(open_with(NEW).await?, "tokens kept after a failed reload");
        assert!(
            !open_with(OLD).await?,
            "still no way in without a valid token"
        );
        Ok(())
    })
}

/// Polls the metrics endpoint until `name` reaches `at_least`, at most `within`.
fn wait_for_counter(url: &str, name: &str, at_least: u64, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let text = curl(url)?;
        if counter(&text, name) >= Some(at_least) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{name} below {at_least} after {within:?}:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `--max-connections` reaches the node: with 1, a second concurrent
/// connection is refused (counted), while the first keeps its tunnel.
#[test]
fn max_connections_flag_refuses_a_second_connection() -> Result<()> {
    use masque_client::ProxyClient;

    let state = temp_dir("maxconn");
    let (_node, banner) = start_node(
        &state,
        &[
            "--allow-private",
            "--metrics-listen",
            "127.0.0.1:0",
            "--max-connections",
            "1",
        ],
    )?;
    let url = banner.metrics.clone().context("no metrics line")?;
    let echo = udp_echo()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let limit = Duration::from_secs(10);
        let first = tokio::time::timeout(
            limit,
            ProxyClient::connect(&banner.url(), banner.pinned_options()?),
        )
        .await
        .context("first connection: no answer")??;
        let mut s = tokio::time::timeout(limit, first.open_udp(&udp_target(echo)))
            .await
            .context("first tunnel: no answer")??;
        let mut options = banner.pinned_options()?;
        options.connect_timeout = Duration::from_secs(2);
        let second = tokio::time::timeout(limit, ProxyClient::connect(&banner.url(), options))
            .await
            .context("second connection: neither admitted nor refused")?;
        if second.is_ok() {
            bail!("a second connection was admitted under --max-connections 1");
        }
        s.send(b"still here").await?;
        let back = tokio::time::timeout(Duration::from_secs(5), s.recv())
            .await
            .context("no echo on the first connection's tunnel")?;
        assert_eq!(back.as_deref(), Some(&b"still here"[..]));
        Ok(())
    })?;
    wait_for_counter(
        &url,
        "masque_connections_refused_limit",
        1,
        Duration::from_secs(5),
    )
}

/// `--connection-idle-timeout` reaches the node: a connection that opens no
/// tunnel is closed after it (counted).
#[test]
fn connection_idle_timeout_flag_closes_an_idle_connection() -> Result<()> {
    use masque_client::ProxyClient;

    let state = temp_dir("connidle");
    let (_node, banner) = start_node(
        &state,
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--connection-idle-timeout",
            "1",
        ],
    )?;
    let url = banner.metrics.clone().context("no metrics line")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(10),
            ProxyClient::connect(&banner.url(), banner.pinned_options()?),
        )
        .await
        .context("no connection")?
        .map_err(anyhow::Error::from)
    })?;
    // The default (120 s) would close nothing within the wait below. The
    // client's runtime runs only while blocked on: poll the counter from
    // inside it, so the connection answers the node's GOAWAY.
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let url = url.clone();
            let text = tokio::task::spawn_blocking(move || curl(&url)).await??;
            if counter(&text, "masque_connections_idle_closed") >= Some(1) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("no idle connection closed within 15 s:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })?;
    drop(client);
    Ok(())
}

/// `--upstream`: node A relays through node B (both the real binary, A
/// trusting B by `--upstream-pin`); `udp-forward` through A reaches the echo,
/// and B's metrics count the tunnel A opened (tests/relay.rs covers loops and
/// refusals).
#[test]
fn upstream_flag_relays_through_the_next_hop() -> Result<()> {
    let (state_b, state_a) = (temp_dir("relay-b"), temp_dir("relay-a"));
    let metrics_port = free_port()?;
    let metrics = format!("127.0.0.1:{metrics_port}");
    let (_b, b) = start_node(&state_b, &["--allow-private", "--metrics-listen", &metrics])?;
    let upstream = b.url();
    let (_a, a) = start_node(
        &state_a,
        &[
            "--upstream",
            &upstream,
            "--upstream-pin",
            &b.pin,
            "--node-name",
            "masque-a",
        ],
    )?;
    forward_one_exchange(&a, &[])?;
    let text = curl(&format!("http://{metrics}/metrics"))?;
    assert!(
        counter(&text, "masque_tunnels_established").is_some_and(|n| n >= 1),
        "B served A's tunnel"
    );
    Ok(())
}
