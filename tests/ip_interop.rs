//! CONNECT-IP (RFC 9484) through the `masque-node` binary with TUN egress,
//! against the independent peer `tests/interop/ip_peer.py`: aioquic on
//! HTTP/3, Python `h2` on HTTP/2, a hand-written client on Python's `ssl` on
//! HTTP/1.1.
//!
//! One test per cell (scenario × transport), named `<transport>_<scenario>`.
//! Each makes a network namespace of its own (needs root, iproute2 and
//! /dev/net/tun; skipped, saying why, without them), starts the node inside
//! it with `--ip-pool 10.200.0.0/24 --ip-tun mqip0` (the TUN gets
//! 10.200.0.1/24, the first host address of the pool), runs the peer in the
//! same namespace against the node's loopback listeners, then stops the node
//! and deletes the namespace, also when the test fails. The peer asks for an
//! address (ADDRESS_REQUEST) and checks the ADDRESS_ASSIGN and
//! ROUTE_ADVERTISEMENT answers, then:
//!
//! - `echo`: an ICMP Echo Request to 10.200.0.1, the node's own TUN address.
//!   The node writes it to the TUN, its kernel answers, and the reply comes
//!   back out of the TUN through the tunnel: a real round trip through TUN
//!   egress. The reply arrives with TTL 63: decremented once, on entering
//!   the tunnel (R9484-47).
//! - `ttl1`: a UDP packet with TTL 1 to 10.201.0.2, beyond the node: the
//!   namespace forwards (`ip_forward=1`) to a veth link with 10.201.0.1/24,
//!   so the node's host, the first router on the packet's way, answers with
//!   ICMP Time Exceeded (type 11 code 0) quoting it, back through the TUN and
//!   the tunnel (R9484-47, R9484-52). And the other way: UDP from a socket
//!   of the node's host to the client's address arrives with TTL 1 when
//!   sent with TTL 2, and not at all (counted as `ttl_expired`) when sent
//!   with TTL 1: the node decrements the TTL as a packet enters the tunnel.
//! - `spoof`: packets whose source is not the assigned address (one outside
//!   the pool, one inside it) are not delivered to a socket the peer bound
//!   on 10.200.0.1, while a control packet from the assigned address is; the
//!   tunnel stays up (R9484-46, R9484-60); ICMP Destination Unreachable
//!   code 13 comes back (R9484-51). The node's `/metrics` must count the
//!   drops (`masque_ip_packets_dropped{reason="source_not_assigned"}`).
//!
//! - `mtu_abort` (HTTP/3 only): the node also has an IPv6 pool
//!   ([`POOL_V6`]), so a full tunnel may carry IPv6, and the peer's
//!   `max_datagram_frame_size` transport parameter is 1100: no QUIC
//!   DATAGRAM to it can carry a 1280-byte packet. After its grace period
//!   (`mtu_grace`, 3 s) the node must abort the request stream with
//!   H3_CONNECT_ERROR (R9484-50) and count it (`masque_ip_mtu_refused`).
//!   `mtu_ok` is the converse: the same node, aioquic's defaults but for a
//!   65536-byte `max_datagram_frame_size` (its `max_datagram_size` left at
//!   1200), holds the tunnel past the grace period, then echoes.
//! - `malformed_*`: after the address is assigned, a malformed capsule
//!   (ADDRESS_REQUEST with request id 0, R9484-29; ADDRESS_ASSIGN with IP
//!   version 5, R9484-24; a ROUTE_ADVERTISEMENT whose ranges touch,
//!   R9484-37): the node must reset the stream as malformed (R9297-22):
//!   H3_MESSAGE_ERROR, RST_STREAM PROTOCOL_ERROR, or on HTTP/1.1 the
//!   connection closed with nothing sent after the capsule.
//! - `scope_*`: a hostname scope (R9484-09, R9484-15), no address request:
//!   `localhost` to a node started with `--allow-private` is advertised as
//!   exactly 127.0.0.1 (the namespace's /etc/hosts is the host's; the node
//!   has an IPv4 pool only, and advertises only families it has a pool
//!   for); without `--allow-private` it is refused 403
//!   `destination_ip_prohibited`; `nonexistent.invalid` is 502 `dns_error`.
//!
//! The peer checks the details itself; this file re-checks the summary's key
//! fields so that a peer that silently skipped a check fails here.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, mpsc},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use masque_tests::{
    init_tracing, interop_script,
    netns::{NetNs, exec},
    peer::{field, number, python_or_skip},
};

/// The pool the node assigns from, its TUN, and the TUN's own address.
const POOL: &str = "10.200.0.0/24";
/// The IPv6 pool of the `mtu_*` cells' node.
const POOL_V6: &str = "fd00:200::/64";
/// The node's R9484-50 grace period (`IpProxyConfig::mtu_grace`, not
/// configurable from the command line) and the margin allowed beyond it.
const MTU_GRACE: f64 = 3.0;
const MTU_MARGIN: f64 = 2.0;
/// The hostname scope of the `scope_*` cells, and one that cannot resolve
/// (RFC 6761: `.invalid` never does).
const SCOPE_PATH: &str = "/.well-known/masque/ip/localhost/*/";
const NXDOMAIN_PATH: &str = "/.well-known/masque/ip/nonexistent.invalid/*/";
const TUN: &str = "mqip0";
const NODE_TUN_ADDR: &str = "10.200.0.1";
/// The UDP port the peer binds on the node's TUN address in `spoof`.
const SINK_PORT: u16 = 9999;
/// `ttl1`: a link beyond the node (one end of a veth pair, both ends in the
/// namespace) and an address on it that nobody has.
const BEYOND_CIDR: &str = "10.201.0.1/24";
const BEYOND_DEST: &str = "10.201.0.2";
/// Bound of the node's start (banner printed) and of one peer run (its own
/// waits are bounded at `PEER_STEP` each).
const START_LIMIT: Duration = Duration::from_secs(30);
const PEER_LIMIT: Duration = Duration::from_secs(60);
const PEER_STEP: &str = "5";

/// One cell at a time: each starts a node process and a Python peer, and
/// the machine has two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn selfcheck() -> Result<()> {
    let Some(python) = python() else {
        return Ok(());
    };
    let out = Command::new(&python)
        .arg(interop_script("ip_peer.py"))
        .arg("selfcheck")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success(), "ip_peer.py selfcheck failed");
    ensure!(field(&stdout, "ok") == Some("true"), "selfcheck: {stdout}");
    ensure!(number(&stdout, "vectors_checked")? >= 19, "{stdout}");
    Ok(())
}

#[test]
fn h3_echo() -> Result<()> {
    cell("h3", "echo")
}

#[test]
fn h2_echo() -> Result<()> {
    cell("h2", "echo")
}

#[test]
fn h1_echo() -> Result<()> {
    cell("h1", "echo")
}

#[test]
fn h3_ttl1() -> Result<()> {
    cell("h3", "ttl1")
}

#[test]
fn h2_ttl1() -> Result<()> {
    cell("h2", "ttl1")
}

#[test]
fn h1_ttl1() -> Result<()> {
    cell("h1", "ttl1")
}

#[test]
fn h3_spoof() -> Result<()> {
    cell("h3", "spoof")
}

#[test]
fn h2_spoof() -> Result<()> {
    cell("h2", "spoof")
}

#[test]
fn h1_spoof() -> Result<()> {
    cell("h1", "spoof")
}

#[test]
fn h3_mtu_abort() -> Result<()> {
    run(Cell {
        v6_pool: true,
        peer_args: vec!["--max-datagram-frame-size", "1100"],
        ..Cell::new("h3", "mtu-abort")
    })
}

#[test]
fn h3_mtu_ok() -> Result<()> {
    run(Cell {
        v6_pool: true,
        peer_args: vec!["--hold", "4"],
        expect: Expect::MtuOk,
        ..Cell::new("h3", "echo")
    })
}

fn malformed(transport: &'static str, kind: &'static str) -> Result<()> {
    run(Cell {
        peer_args: vec!["--malformed", kind],
        ..Cell::new(transport, "malformed")
    })
}

#[test]
fn h3_malformed_request_id_0() -> Result<()> {
    malformed("h3", "request-id-0")
}

#[test]
fn h2_malformed_request_id_0() -> Result<()> {
    malformed("h2", "request-id-0")
}

#[test]
fn h1_malformed_request_id_0() -> Result<()> {
    malformed("h1", "request-id-0")
}

#[test]
fn h3_malformed_assign_version_5() -> Result<()> {
    malformed("h3", "assign-version-5")
}

#[test]
fn h2_malformed_assign_version_5() -> Result<()> {
    malformed("h2", "assign-version-5")
}

#[test]
fn h1_malformed_assign_version_5() -> Result<()> {
    malformed("h1", "assign-version-5")
}

#[test]
fn h3_malformed_route_order() -> Result<()> {
    malformed("h3", "route-order")
}

#[test]
fn h2_malformed_route_order() -> Result<()> {
    malformed("h2", "route-order")
}

#[test]
fn h1_malformed_route_order() -> Result<()> {
    malformed("h1", "route-order")
}

/// `localhost` with `--allow-private`: advertised as exactly 127.0.0.1.
fn scope_localhost(transport: &'static str) -> Result<()> {
    run(Cell {
        allow_private: true,
        peer_args: vec!["--path", SCOPE_PATH],
        expect: Expect::Routes("127.0.0.1-127.0.0.1/0"),
        ..Cell::new(transport, "scope")
    })
}

/// `localhost` without `--allow-private`: 403 destination_ip_prohibited.
fn scope_prohibited(transport: &'static str) -> Result<()> {
    run(Cell {
        peer_args: vec!["--path", SCOPE_PATH, "--expect-status", "403"],
        expect: Expect::Refused(403, "destination_ip_prohibited"),
        ..Cell::new(transport, "scope")
    })
}

/// A name that does not resolve: 502 dns_error.
fn scope_dns_error(transport: &'static str) -> Result<()> {
    run(Cell {
        allow_private: true,
        peer_args: vec!["--path", NXDOMAIN_PATH, "--expect-status", "502"],
        expect: Expect::Refused(502, "dns_error"),
        ..Cell::new(transport, "scope")
    })
}

#[test]
fn h3_scope_localhost() -> Result<()> {
    scope_localhost("h3")
}

#[test]
fn h2_scope_localhost() -> Result<()> {
    scope_localhost("h2")
}

#[test]
fn h1_scope_localhost() -> Result<()> {
    scope_localhost("h1")
}

#[test]
fn h3_scope_prohibited() -> Result<()> {
    scope_prohibited("h3")
}

#[test]
fn h2_scope_prohibited() -> Result<()> {
    scope_prohibited("h2")
}

#[test]
fn h1_scope_prohibited() -> Result<()> {
    scope_prohibited("h1")
}

#[test]
fn h3_scope_dns_error() -> Result<()> {
    scope_dns_error("h3")
}

#[test]
fn h2_scope_dns_error() -> Result<()> {
    scope_dns_error("h2")
}

#[test]
fn h1_scope_dns_error() -> Result<()> {
    scope_dns_error("h1")
}

/// One cell: the transport, the peer's scenario and what else the node and
/// the peer are given.
struct Cell {
    transport: &'static str,
    scenario: &'static str,
    /// The node gets [`POOL_V6`] beside [`POOL`].
    v6_pool: bool,
    /// The node is started with `--allow-private`.
    allow_private: bool,
    /// More arguments for the peer.
    peer_args: Vec<&'static str>,
    expect: Expect,
}

impl Cell {
    fn new(transport: &'static str, scenario: &'static str) -> Self {
        Self {
            transport,
            scenario,
            v6_pool: false,
            allow_private: false,
            peer_args: Vec::new(),
            expect: Expect::Scenario,
        }
    }
}

/// What [`check`] looks for beyond the scenario's own fields.
#[derive(Clone, Copy)]
enum Expect {
    /// The scenario's checks only.
    Scenario,
    /// `echo` on a node with an IPv6 pool: the tunnel outlived the R9484-50
    /// grace period, and the node refused no tunnel for its MTU.
    MtuOk,
    /// `scope`: a successful response whose ROUTE_ADVERTISEMENT is exactly
    /// this.
    Routes(&'static str),
    /// `scope`: refused with this status and Proxy-Status error.
    Refused(u64, &'static str),
}

/// The interop Python, or `None` after printing why it cannot be had.
fn python() -> Option<PathBuf> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?
        .block_on(python_or_skip())
}

/// Why this machine cannot run the namespace cells, if it cannot.
fn cannot_run() -> Option<String> {
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (network namespaces and a TUN device need root)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("no `ip` (iproute2)".into());
    }
    None
}

/// The `masque-node` binary of this build: `MASQUE_NODE_BIN`, else next to
/// the test binaries' `deps/` folder (`cargo test --workspace` builds it;
/// alone, `cargo build -p masque-node` first).
fn node_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("MASQUE_NODE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test binary has no target/<profile> folder")?;
    let bin = profile_dir.join("masque-node");
    ensure!(
        bin.exists(),
        "{} is missing: run `cargo build -p masque-node` (or set MASQUE_NODE_BIN)",
        bin.display()
    );
    Ok(bin)
}

/// The node running in a namespace; killed (and reaped) on drop.
struct NodeProc {
    child: Child,
    /// Its stderr (RUST_LOG=info), printed by the test.
    log: PathBuf,
    state: PathBuf,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(log) = std::fs::read_to_string(&self.log) {
            println!("---- node log ----\n{log}---- end of node log ----");
        }
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// What the node printed at start-up.
struct Banner {
    udp: SocketAddr,
    tcp: SocketAddr,
    cert: PathBuf,
    metrics: SocketAddr,
}

/// Starts the node in `ns` with the pool and the TUN, listening on loopback
/// (HTTP/3 on UDP, HTTP/2 and HTTP/1.1 on TCP) with its metrics endpoint.
fn start_node(ns: &NetNs, c: &Cell) -> Result<(NodeProc, Banner)> {
    let bin = node_bin()?;
    let tag = format!("{}-{}", std::process::id(), ns.name());
    let state = std::env::temp_dir().join(format!("masque-ip-interop-{tag}"));
    std::fs::create_dir_all(&state)?;
    let log = std::env::temp_dir().join(format!("masque-ip-interop-{tag}.log"));
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(&bin)
        .args(["--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .args(["--ip-pool", POOL, "--ip-tun", TUN])
        .args(if c.v6_pool {
            &["--ip-pool", POOL_V6][..]
        } else {
            &[]
        })
        .args(if c.allow_private {
            &["--allow-private"][..]
        } else {
            &[]
        })
        .arg("--state-dir")
        .arg(&state)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let node = NodeProc { child, log, state };
    // The banner comes from a thread, so the wait is bounded; the thread
    // keeps draining stdout afterwards.
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + START_LIMIT;
    let (mut udp, mut tcp, mut cert, mut metrics) = (None, None, None, None);
    loop {
        let line = match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!("no banner from the node within {START_LIMIT:?}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("the node exited before its banner (its log follows)")
            }
        };
        println!("node: {line}");
        if let Some(rest) = line.split(" listening on ").nth(1) {
            udp = Some(rest.split_whitespace().next().context("udp")?.parse()?);
            if let Some(t) = rest.split(" and ").nth(1) {
                tcp = Some(t.split_whitespace().next().context("tcp")?.parse()?);
            }
        } else if let Some(p) = line.strip_prefix("certificate: ") {
            cert = Some(PathBuf::from(p));
        } else if let Some(m) = line.strip_prefix("metrics: http://") {
            metrics = Some(m.trim_end_matches("/metrics").parse()?);
        } else if line.starts_with("sha-256 fingerprint: ") {
            break;
        }
    }
    let banner = Banner {
        udp: udp.context("no `listening on` line")?,
        tcp: tcp.context("no TCP listener in the banner")?,
        cert: cert.context("no `certificate:` line")?,
        metrics: metrics.context("no `metrics:` line")?,
    };
    Ok((node, banner))
}

/// A link beyond the node for `ttl1`: a veth pair inside `ns`, one end
/// with [`BEYOND_CIDR`], and forwarding on, so a packet from the tunnel to
/// [`BEYOND_DEST`] is routed by the namespace's kernel (which decrements its
/// TTL).
fn beyond(ns: &NetNs) -> Result<()> {
    ns.ip(&[
        "link", "add", "mqv0", "type", "veth", "peer", "name", "mqv1",
    ])?;
    ns.ip(&["addr", "add", BEYOND_CIDR, "dev", "mqv0"])?;
    ns.ip(&["link", "set", "mqv0", "up"])?;
    ns.ip(&["link", "set", "mqv1", "up"])?;
    let out = exec(ns, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
    ensure!(
        out.status.success(),
        "sysctl net.ipv4.ip_forward=1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// `GET /metrics` from the node's endpoint, inside `ns`.
fn metrics(ns: &NetNs, addr: SocketAddr) -> Result<String> {
    ns.spawn(move || {
        let limit = Duration::from_secs(5);
        let mut s = std::net::TcpStream::connect_timeout(&addr, limit)?;
        s.set_read_timeout(Some(limit))?;
        s.set_write_timeout(Some(limit))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(body)
    })?
    .join(Duration::from_secs(10))
}

/// The sum of the samples whose series (name and labels) starts with
/// `series`, and the lines summed.
fn sum_metric(text: &str, series: &str) -> (f64, Vec<String>) {
    let mut sum = 0.0;
    let mut lines = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(series)) {
        if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            sum += v;
            lines.push(line.to_string());
        }
    }
    (sum, lines)
}

/// Runs the peer in `ns`: its one JSON line (printed with its stderr), and
/// whether it exited 0.
fn run_peer(ns: &NetNs, python: &Path, c: &Cell, banner: &Banner) -> Result<(String, bool)> {
    let (transport, scenario) = (c.transport, c.scenario);
    let port = if transport == "h3" {
        banner.udp.port()
    } else {
        banner.tcp.port()
    };
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name()])
        .arg(python)
        .arg(interop_script("ip_peer.py"))
        .arg(scenario)
        .args(["--transport", transport])
        .args(["--port", &port.to_string()])
        .arg("--ca")
        .arg(&banner.cert)
        .args([
            "--dest",
            if scenario == "ttl1" {
                BEYOND_DEST
            } else {
                NODE_TUN_ADDR
            },
        ])
        .args(["--timeout", PEER_STEP]);
    match scenario {
        "spoof" => {
            cmd.args(["--sink-port", &SINK_PORT.to_string()]);
        }
        "ttl1" => {
            cmd.arg("--egress-probe");
        }
        _ => {}
    }
    cmd.args(&c.peer_args);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let reader = std::thread::spawn(move || {
        let (mut o, mut e) = (String::new(), String::new());
        if let Some(s) = out.as_mut() {
            let _ = s.read_to_string(&mut o);
        }
        if let Some(s) = err.as_mut() {
            let _ = s.read_to_string(&mut e);
        }
        (o, e)
    });
    let deadline = Instant::now() + PEER_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the peer did not finish within {PEER_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = reader.join().map_err(|_| anyhow::anyhow!("reader"))?;
    println!(
        "ip_peer.py {scenario} --transport {transport} {}:\n{stdout}{stderr}",
        c.peer_args.join(" ")
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with('{')).collect();
    ensure!(
        lines.len() == 1,
        "expected one JSON summary, got {stdout:?} {stderr}"
    );
    Ok((lines[0].to_string(), status.success()))
}

/// One cell: a namespace, the node in it, the peer against it, the checks.
/// The HTTP/3 peer sends its request right after the handshake, while QUIC
/// may still run at 1200-byte packets: the node's R9484-50 check applies to
/// tunnels that can carry IPv6 only (this pool is IPv4).
fn cell(transport: &'static str, scenario: &'static str) -> Result<()> {
    run(Cell::new(transport, scenario))
}

fn run(c: Cell) -> Result<()> {
    init_tracing();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(why) = cannot_run() {
        println!("SKIPPED: {why}");
        return Ok(());
    }
    let Some(python) = python() else {
        return Ok(());
    };
    // Declared before the node, so dropped after it: the node is killed
    // first, then the namespace deleted, on every path out of here.
    let ns = NetNs::create("ip")?;
    if c.scenario == "ttl1" {
        beyond(&ns)?;
    }
    let (node, banner) = start_node(&ns, &c)?;
    let (json, passed) = run_peer(&ns, &python, &c, &banner)?;
    let m = metrics(&ns, banner.metrics).unwrap_or_else(|e| format!("(no metrics: {e:#})"));
    let result = check(&c, &json, passed, &m);
    if result.is_err() {
        println!("---- metrics ----\n{m}");
    }
    drop(node);
    drop(ns);
    result
}

fn check(c: &Cell, json: &str, passed: bool, metrics: &str) -> Result<()> {
    let (transport, scenario) = (c.transport, c.scenario);
    let text = |k: &str| field(json, k).map(|v| v.trim_matches('"').to_string());
    ensure!(
        passed && text("ok").as_deref() == Some("true"),
        "{transport} {scenario} failed: {}",
        text("error").unwrap_or_else(|| json.to_string())
    );
    let status = number(json, "status")?;
    if scenario == "scope" {
        ensure!(text("scope_ok").as_deref() == Some("true"), "{json}");
        return match c.expect {
            Expect::Routes(want) => {
                if transport == "h1" {
                    ensure!(status == 101, "status {status}");
                } else {
                    ensure!((200..300).contains(&status), "status {status}");
                }
                let routes = text("routes").unwrap_or_default();
                ensure!(
                    routes == want,
                    "advertised {routes:?}, wanted {want:?}: {json}"
                );
                Ok(())
            }
            Expect::Refused(want, error) => {
                ensure!(status == want, "status {status}, wanted {want}: {json}");
                let ps = text("proxy_status").unwrap_or_default();
                ensure!(
                    ps.split(';').any(|p| p.trim() == format!("error={error}")),
                    "Proxy-Status {ps:?}, wanted error={error}"
                );
                Ok(())
            }
            _ => bail!("a scope cell without an expectation"),
        };
    }
    if transport == "h1" {
        ensure!(status == 101, "status {status}");
    } else {
        ensure!((200..300).contains(&status), "status {status}");
    }
    // A /32 from the pool, neither its network, the node's own nor its
    // broadcast address.
    let assigned = text("assigned").context("no assigned address")?;
    let (ip, len) = assigned.split_once('/').context("assigned")?;
    ensure!(len == "32", "assigned {assigned}, not a /32");
    let ip: std::net::Ipv4Addr = ip.parse()?;
    let [a, b, net, host] = ip.octets();
    ensure!(
        (a, b, net) == (10, 200, 0) && ![0, 1, 255].contains(&host),
        "assigned {assigned}: outside {POOL} or a reserved address of it"
    );
    ensure!(number(json, "route_ranges")? >= 1, "no route advertised");
    match scenario {
        "echo" => {
            ensure!(text("echo_ok").as_deref() == Some("true"), "{json}");
            // The kernel answers with TTL 64; the node decrements it once as
            // the reply enters the tunnel (R9484-47).
            ensure!(number(json, "reply_ttl")? == 63, "{json}");
            if let Expect::MtuOk = c.expect {
                ensure!(float(json, "held_seconds")? > MTU_GRACE, "{json}");
                let (refused, lines) = sum_metric(metrics, MTU_COUNTER);
                ensure!(
                    refused == 0.0,
                    "the node refused a tunnel for its MTU: {lines:?}"
                );
            }
        }
        "mtu-abort" => {
            ensure!(text("mtu_abort_ok").as_deref() == Some("true"), "{json}");
            // H3_CONNECT_ERROR.
            ensure!(number(json, "reset_code")? == 0x10f, "{json}");
            let after = float(json, "abort_seconds")?;
            ensure!(
                (MTU_GRACE - 0.5..=MTU_GRACE + MTU_MARGIN).contains(&after),
                "aborted {after}s after the response, wanted after the {MTU_GRACE}s grace period \
                 and within {MTU_MARGIN}s of its end: {json}"
            );
            let (refused, lines) = sum_metric(metrics, MTU_COUNTER);
            ensure!(
                refused >= 1.0,
                "the node aborted the tunnel but counted {refused}: {lines:?}"
            );
        }
        "malformed" => {
            ensure!(text("malformed_ok").as_deref() == Some("true"), "{json}");
            match transport {
                // H3_MESSAGE_ERROR, PROTOCOL_ERROR.
                "h3" => ensure!(number(json, "reset_code")? == 0x10e, "{json}"),
                "h2" => ensure!(number(json, "reset_code")? == 0x1, "{json}"),
                _ => {
                    let closed = text("closed").unwrap_or_default();
                    ensure!(closed.starts_with("connection closed"), "{json}");
                    ensure!(number(json, "events_after")? == 0, "{json}");
                }
            }
            // Counted like a capsule the session's own decoder rejects.
            let (counted, lines) = sum_metric(metrics, MALFORMED_COUNTER);
            ensure!(counted >= 1.0, "{MALFORMED_COUNTER}: {lines:?}");
        }
        "ttl1" => {
            ensure!(
                text("time_exceeded_ok").as_deref() == Some("true"),
                "{json}"
            );
            ensure!(number(json, "quoted_bytes")? >= 28, "{json}");
            // The other way: from the node's host into the tunnel.
            ensure!(text("egress_probe_ok").as_deref() == Some("true"), "{json}");
            ensure!(number(json, "egress_ttl2_arrived_ttl")? == 1, "{json}");
            ensure!(number(json, "egress_ttl1_delivered")? == 0, "{json}");
            let (expired, lines) = sum_metric(metrics, TTL_COUNTER);
            ensure!(
                expired >= 1.0,
                "a TTL-1 packet entering the tunnel, but the node counted {expired}: {lines:?}"
            );
        }
        "spoof" => {
            ensure!(text("spoof_ok").as_deref() == Some("true"), "{json}");
            ensure!(
                text("control_delivered").as_deref() == Some("true"),
                "{json}"
            );
            ensure!(number(json, "spoofed_delivered")? == 0, "{json}");
            ensure!(text("tunnel_open").as_deref() == Some("true"), "{json}");
            // The node answers each with Destination Unreachable code 13
            // (communication administratively prohibited: the IPv4 mapping
            // of ICMPv6 code 5, source address failed policy).
            let codes = text("dest_unreachable_codes").unwrap_or_default();
            ensure!(
                !codes.is_empty() && codes.split(',').all(|c| c == "13"),
                "Destination Unreachable codes {codes:?}, wanted 13s: {json}"
            );
            let sent = number(json, "spoofed_sent")?;
            let (dropped, lines) = sum_metric(metrics, SPOOF_COUNTER);
            ensure!(
                dropped >= sent as f64,
                "{sent} spoofed packets, but the node counted {dropped}: {lines:?}"
            );
        }
        other => bail!("unknown scenario {other}"),
    }
    Ok(())
}

/// A number field of the summary that may have a fraction.
fn float(json: &str, key: &str) -> Result<f64> {
    let v = field(json, key).with_context(|| format!("no `{key}` in {json}"))?;
    v.parse()
        .with_context(|| format!("`{key}` is {v}, not a number, in {json}"))
}

/// The node's counter of HTTP/3 CONNECT-IP tunnels aborted because their
/// datagrams cannot carry a 1280-byte packet (R9484-50).
const MTU_COUNTER: &str = "masque_ip_mtu_refused ";
/// The node's counter of streams reset for a malformed capsule.
const MALFORMED_COUNTER: &str = "masque_capsules_malformed ";
/// The node's counter of packets whose TTL expired as they entered the
/// tunnel (R9484-47).
const TTL_COUNTER: &str = "masque_ip_packets_dropped{reason=\"ttl_expired\"}";
/// The node's counter of packets dropped for a source outside the
/// addresses assigned to the client (BCP 38, R9484-60).
const SPOOF_COUNTER: &str = "masque_ip_packets_dropped{reason=\"source_not_assigned\"}";
