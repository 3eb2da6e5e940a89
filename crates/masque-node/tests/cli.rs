//! The masque-node binary: default start-up banner, graceful SIGTERM, and the
//! udp-forward command relaying a real exchange (all on loopback).

use std::{
    io::{BufRead, BufReader},
    net::UdpSocket,
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
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--state-dir"])
        .arg(state)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
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
        cert: Default::default(),
        pin: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while banner.pin.is_empty() {
        let line = match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => line?,
            Err(RecvTimeoutError::Timeout) => bail!("no banner from the node within 30 s"),
            Err(RecvTimeoutError::Disconnected) => bail!("node exited before its banner"),
        };
        if let Some(rest) = line.split(" listening on ").nth(1) {
            banner.addr = rest.split_whitespace().next().context("addr")?.parse()?;
        } else if let Some(p) = line.strip_prefix("certificate: ") {
            banner.cert = p.into();
        } else if let Some(p) = line.strip_prefix("sha-256 fingerprint: ") {
            banner.pin = p.into();
        }
    }
    Ok((proc, banner))
}

struct Banner {
    addr: std::net::SocketAddr,
    cert: std::path::PathBuf,
    pin: String,
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
    let echo = udp_echo()?;
    let local = UdpSocket::bind("127.0.0.1:0")?;
    let listen = {
        let probe = UdpSocket::bind("127.0.0.1:0")?;
        probe.local_addr()?
    };
    let fwd = Proc(
        Command::new(BIN)
            .args(["udp-forward", "--proxy"])
            .arg(format!("https://localhost:{}", banner.addr.port()))
            .args([
                "--listen",
                &listen.to_string(),
                "--target",
                &echo.to_string(),
                "--ca",
            ])
            .arg(&banner.cert)
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
