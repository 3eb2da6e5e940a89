//! Interop over the node's TLS/TCP listener against independent peers:
//! Python `h2` (HTTP/2, RFC 8441 extended CONNECT) and a hand-written
//! HTTP/1.1 client on Python's `ssl` (`GET` + `Upgrade: connect-udp`, RFC 9298
//! §3.4). Neither uses our client. Each test starts its own node (private
//! targets allowed) and UDP echo target, runs one scenario of
//! `tests/interop/h2_connect_udp.py` or `h1_connect_udp.py`, checks its JSON
//! summary, then checks that the node counted the traffic on the right
//! transport. Requirement ids: XC-*, CC-*, R9297-*, R9298-*.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::OnceLock,
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use masque_server::metrics::TransportSnapshot;
use masque_tests::{
    init_tracing, interop_python, interop_script,
    node::{TestNode, eventually, udp_echo},
};
use masque_transport::Transport;
use tokio::process::Command;

/// Upper bound for one Python scenario (its own steps are bounded at 10 s each).
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);
/// Upper bound for creating the venv when it is missing.
const VENV_LIMIT: Duration = Duration::from_secs(600);

/// The interop Python, creating the venv (`cargo xtask interop-env`) if it is
/// missing; `None`, after printing why, only when it cannot be created.
async fn python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    if let Some(p) = PYTHON.get() {
        return report(p);
    }
    let made = tokio::task::spawn_blocking(find_or_create_python)
        .await
        .unwrap_or_else(|e| Err(format!("venv setup panicked: {e}")));
    report(PYTHON.get_or_init(|| made))
}

fn report(p: &Result<PathBuf, String>) -> Option<PathBuf> {
    match p {
        Ok(p) => Some(p.clone()),
        Err(why) => {
            println!("SKIPPED: the interop venv cannot be created here: {why}");
            None
        }
    }
}

fn find_or_create_python() -> Result<PathBuf, String> {
    if let Ok(p) = interop_python() {
        return Ok(p);
    }
    // The same command CI runs, with its own target dir so that it does not
    // wait for the build lock of the `cargo test` that runs us.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let mut child = std::process::Command::new(cargo)
        .args(["run", "--quiet", "--package", "xtask", "--", "interop-env"])
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", root.join("target/interop-xtask"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `cargo xtask interop-env`: {e}"))?;
    let deadline = std::time::Instant::now() + VENV_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`cargo xtask interop-env` took over {VENV_LIMIT:?}"
                ));
            }
            Err(e) => return Err(format!("waiting for `cargo xtask interop-env`: {e}")),
        }
    };
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        return Err(format!(
            "`cargo xtask interop-env` failed ({status}): {err}"
        ));
    }
    interop_python().map_err(|e| e.to_string())
}

/// A node with its TLS/TCP listener, a UDP echo target, and the node's
/// certificate in a file for the peers.
struct Setup {
    node: TestNode,
    tcp_port: u16,
    target_port: u16,
    ca: TempFile,
}

/// A file removed on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Setup {
    async fn start() -> Result<Self> {
        let node = TestNode::start(true).await?;
        let tcp = node
            .node
            .tcp_addr()
            .context("the node started without its TLS/TCP listener")?;
        let target = udp_echo().await?;
        let ca = std::env::temp_dir().join(format!(
            "masque-h2h1-ca-{}-{}.pem",
            std::process::id(),
            tcp.port()
        ));
        std::fs::write(&ca, node.cert.cert_pem())?;
        Ok(Self {
            node,
            tcp_port: tcp.port(),
            target_port: target.port(),
            ca: TempFile(ca),
        })
    }

    /// Runs one scenario of `script`; returns its JSON summary line after
    /// checking that it passed.
    async fn run(&self, python: &Path, script: &str, scenario: &str) -> Result<String> {
        self.run_with(python, script, scenario, &[]).await
    }

    /// [`run`](Self::run) with extra arguments for the script.
    async fn run_with(
        &self,
        python: &Path,
        script: &str,
        scenario: &str,
        extra: &[&str],
    ) -> Result<String> {
        let out = tokio::time::timeout(
            SCENARIO_LIMIT,
            Command::new(python)
                .arg(interop_script(script))
                .arg(scenario)
                .args(["--port", &self.tcp_port.to_string()])
                .args(["--target-port", &self.target_port.to_string()])
                .arg("--ca")
                .arg(&self.ca.0)
                .args(["--pin", &self.node.cert.fingerprint_sha256_hex()])
                .args(extra)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .with_context(|| format!("{script} {scenario}: not within {SCENARIO_LIMIT:?}"))??;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("{script} {scenario}:\n{stdout}{stderr}");
        let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with('{')).collect();
        ensure!(
            lines.len() == 1,
            "{script} {scenario}: expected one JSON summary, got {stdout:?} {stderr}"
        );
        let json = lines[0].to_owned();
        ensure!(
            out.status.success() && field(&json, "ok") == Some("true"),
            "{script} {scenario} failed ({}): {json}\n{stderr}",
            out.status
        );
        ensure!(
            field(&json, "scenario") == Some(&format!("\"{scenario}\"")),
            "{json}"
        );
        Ok(json)
    }

    fn counters(&self, t: Transport) -> TransportSnapshot {
        self.node.node.metrics().transport(t).snapshot()
    }

    /// Waits (bounded) until transport `t`'s counters satisfy `f`; the error
    /// shows all three transports.
    async fn wait_counters(
        &self,
        t: Transport,
        what: &str,
        f: impl Fn(&TransportSnapshot) -> bool,
    ) -> Result<()> {
        let r = eventually(what, Duration::from_secs(5), || f(&self.counters(t))).await;
        r.with_context(|| {
            format!(
                "{t}: {:?}\nh3: {:?}\nh2: {:?}\nh1: {:?}",
                self.counters(t),
                self.counters(Transport::H3),
                self.counters(Transport::H2),
                self.counters(Transport::H1)
            )
        })
    }

    /// Nothing was counted on the transports other than `t`.
    fn only_on(&self, t: Transport) -> Result<()> {
        for other in Transport::ALL.into_iter().filter(|o| *o != t) {
            let s = self.counters(other);
            ensure!(
                s == TransportSnapshot::default(),
                "traffic of {t} counted on {other}: {s:?}"
            );
        }
        Ok(())
    }

    /// Every connection the peers opened was closed by the node.
    async fn all_connections_closed(&self) -> Result<()> {
        let m = self.node.node.metrics();
        eventually("every connection closed", Duration::from_secs(10), || {
            let s = m.snapshot();
            s.connections_closed >= s.connections_accepted
        })
        .await
        .with_context(|| format!("{:?}", m.snapshot()))
    }
}

/// The raw text of `key`'s value in a flat one-line JSON object printed by
/// Python's `json.dumps` (`"key": value`), up to the next `,` or `}`. Only
/// for numbers, booleans, null and strings without those characters.
fn field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\": ");
    let start = json.find(&pat)? + pat.len();
    let rest = &json[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

fn number(json: &str, key: &str) -> Result<u64> {
    let v = field(json, key).with_context(|| format!("no `{key}` in {json}"))?;
    v.parse()
        .with_context(|| format!("`{key}` is {v}, not a number, in {json}"))
}

const H2: &str = "h2_connect_udp.py";
const H1: &str = "h1_connect_udp.py";

/// XC-01/XC-02: the server's first SETTINGS enables extended CONNECT and
/// bounds concurrent streams by the tunnel limit; one tunnel echoes 100
/// DATAGRAM capsules of 1..1200 bytes with GREASE capsules in between and
/// capsules split across DATA frames (R9297-31, R9297 §5.4); END_STREAM is
/// answered with END_STREAM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_settings_and_datagram_capsule_echo() -> Result<()> {
    init_tracing();
    let Some(python) = python().await else {
        return Ok(());
    };
    let s = Setup::start().await?;
    let settings = s.run(&python, H2, "settings").await?;
    assert_eq!(number(&settings, "enable_connect_protocol")?, 1);
    assert_eq!(
        number(&settings, "max_concurrent_streams")?,
        100,
        "SETTINGS_MAX_CONCURRENT_STREAMS is the tunnel limit per connection"
    );
    let echo = s.run(&python, H2, "echo").await?;
    assert_eq!(number(&echo, "datagrams_echoed")?, 100);
    assert_eq!(
        (number(&echo, "min_size")?, number(&echo, "max_size")?),
        (1, 1200)
    );
    let grease = number(&echo, "grease_sent")?;
    assert!(grease >= 100, "{echo}");
    assert_eq!(field(&echo, "fin_answered"), Some("true"));

    s.wait_counters(Transport::H2, "h2 echo counted", |c| {
        c.connections == 2
            && c.requests == 1
            && c.tunnels == 1
            && c.datagrams_from_client == 100
            && c.datagrams_to_client == 100
            && c.capsules_from_client >= 100
            && c.capsules_to_client >= 100
    })
    .await?;
    s.only_on(Transport::H2)?;
    let g = s.node.node.metrics().snapshot();
    assert_eq!(g.tunnels_established, 1, "{g:?}");
    assert_eq!(g.datagrams_to_target, 100, "{g:?}");
    assert_eq!(g.datagrams_from_target, 100, "{g:?}");
    assert_eq!(
        g.capsules_malformed, 0,
        "GREASE is skipped, not malformed: {g:?}"
    );
    s.all_connections_closed().await?;
    s.node.node.shutdown().await;
    Ok(())
}

/// RFC 9113 §6.9: 240 KB of echoes on one stream, about four times the
/// peer's 65535-byte receive windows: the node resumes sending as the peer's
/// WINDOW_UPDATEs (after `acknowledge_received_data`) reopen them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_flow_control_windows_reopen() -> Result<()> {
    init_tracing();
    let Some(python) = python().await else {
        return Ok(());
    };
    let s = Setup::start().await?;
    let out = s.run(&python, H2, "flow").await?;
    assert_eq!(number(&out, "datagrams_echoed")?, 200);
    assert!(
        number(&out, "bytes_received")? > 3 * number(&out, "receive_window")?,
        "{out}"
    );
    s.wait_counters(Transport::H2, "h2 flow counted", |c| {
        c.connections == 1
            && c.tunnels == 1
            && c.datagrams_from_client == 200
            && c.datagrams_to_client == 200
    })
    .await?;
    s.only_on(Transport::H2)?;
    s.all_connections_closed().await?;
    s.node.node.shutdown().await;
    Ok(())
}

/// 50 tunnels on one HTTP/2 connection, each echoing only its own payloads
/// (no cross-talk between streams).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_fifty_concurrent_tunnels_on_one_connection() -> Result<()> {
    init_tracing();
    let Some(python) = python().await else {
        return Ok(());
    };
    let s = Setup::start().await?;
    let out = s.run(&python, H2, "concurrent").await?;
    assert_eq!(number(&out, "tunnels_open")?, 50);
    assert_eq!(number(&out, "datagrams_echoed")?, 200);
    assert_eq!(number(&out, "cross_talk")?, 0);
    assert_eq!(number(&out, "tunnels_finished")?, 50);
    s.wait_counters(Transport::H2, "50 h2 tunnels counted", |c| {
        c.connections == 1
            && c.requests == 50
            && c.tunnels == 50
            && c.datagrams_from_client == 200
            && c.datagrams_to_client == 200
    })
    .await?;
    s.only_on(Transport::H2)?;
    let g = s.node.node.metrics().snapshot();
    assert_eq!(g.tunnels_established, 50, "{g:?}");
    s.all_connections_closed().await?;
    s.node.node.shutdown().await;
    Ok(())
}

/// R9297-22/R9297-34: an oversized DATAGRAM capsule (length > 65536) and a
/// capsule truncated by END_STREAM each get RST_STREAM PROTOCOL_ERROR; the
/// connection's other tunnels keep working and new ones open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_malformed_capsules_reset_only_their_stream() -> Result<()> {
    init_tracing();
    let Some(python) = python().await else {
        return Ok(());
    };
    let s = Setup::start().await?;
    let out = s.run(&python, H2, "malformed").await?;
    assert_eq!(number(&out, "oversize_reset_code")?, 1, "PROTOCOL_ERROR");
    assert_eq!(number(&out, "truncated_reset_code")?, 1, "PROTOCOL_ERROR");
    assert_eq!(field(&out, "other_tunnels_kept"), Some("true"));
    assert_eq!(field(&out, "connection_kept"), Some("true"));
    s.wait_counters(Transport::H2, "h2 tunnels of the malformed run", |c| {
        c.connections == 1 && c.requests == 4 && c.tunnels == 4
    })
    .await?;
    s.only_on(Transport::H2)?;
    let g = s.node.node.metrics().snapshot();
    assert_eq!(g.capsules_malformed, 2, "{g:?}");
    s.all_connections_closed().await?;
    s.node.node.shutdown().await;
    Ok(())
}

/// XC-07, XC-11, CC-13: malformed requests get 400 or a stream reset, never
/// a tunnel; XC-10: connect-ip, connect-tcp, an unknown token and classic
/// CONNECT get 501 with Proxy-Status; the connection survives them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_malformed_and_unsupported_requests() -> Result<()> {
    init_tracing();
    let Some(python) = python().await else {
        return Ok(());
    };
    let s = Setup::start().await?;
    let out = s.run(&python, H2, "requests").await?;
    assert_eq!(number(&out, "malformed_refused")?, 5);
    assert_eq!(number(&out, "not_implemented_501")?, 4);
    assert_eq!(field(&out, "connection_kept"), Some("true"));
    // Requests the h2 crate resets as malformed never reach the node's
    // pipeline; the 501s and the final tunnel always do.
    s.wait_counters(Transport::H2, "h2 requests counted", |c| {
        c.connections == 1
            && (5..=10).contains(&c.requests)
            && c.tunnels == 1
            && c.datagrams_from_client == 1
            && c.datagrams_to_client == 1
    })
    .await?;
    s.only_on(Transport::H2)?;
    let g = s.node.node.metrics().snapshot();
    assert_eq!(g.tunnels_established, 1, "{g:?}");
    assert!(g.tunnels_refused >= 4, "{g:?}");
    s.all_connections_closed().await?;
    s.node.node.shutdown().await;
    Ok(())
}

/// R9298-26: `GET` + `Upgrade: connect-udp` gets 101 with `Upgrade` and
/// `Connection: upgrade` and no content framing; 100 DATAGRAM capsules of
/// 1..1200 bytes echo with GREASE skipped; a clean half-close ends the
/// tunnel. Then the first capsule sent in the same write as the request head
/// is kept and echoed (CC-11: the tunnel starts right after the head).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_upgrade_datagram_capsule_echo() -> Result<()> {
    init_tracing();
    let Some(python) = python().await else {
        return Ok(());
    };
    let s = Setup::start().await?;
    let echo = s.run(&python, H1, "echo").await?;
    assert_eq!(number(&echo, "status")?, 101);
    assert_eq!(number(&echo, "datagrams_echoed")?, 100);
    assert!(number(&echo, "grease_sent")? >= 100, "{echo}");
    let same = s.run(&python, H1, "same-write").await?;
    assert_eq!(field(&same, "first_capsule_kept"), Some("true"));
    assert_eq!(number(&same, "datagrams_echoed")?, 2);
    s.wait_counters(Transport::H1, "h1 tunnels counted", |c| {
        c.connections == 2
            && c.requests == 2
            && c.tunnels == 2
            && c.datagrams_from_client == 102
            && c.datagrams_to_client == 102
            && c.capsules_from_client >= 102
            && c.capsules_to_client >= 102
    })
    .await?;
    s.only_on(Transport::H1)?;
    let g = s.node.node.metrics().snapshot();
    assert_eq!(g.tunnels_established, 2, "{g:?}");
    assert_eq!(g.datagrams_to_target, 102, "{g:?}");
    s.all_connections_closed().await?;
    s.node.node.shutdown().await;
    Ok(())
}

/// CC-10, CC-12, RFC 9931: refusals close the connection and a pipelined
/// second request is never answered; 404 for a path outside the template,
/// 400 without Host or with two, 400 or a close for garbage, 501 with
/// Proxy-Status for connect-ip, connect-tcp and classic CONNECT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_refusals_close_the_connection() -> Result<()> {
    init_tracing();
    let Some(python) = python().await else {
        return Ok(());
    };
    let s = Setup::start().await?;
    let out = s.run(&python, H1, "refusals").await?;
    assert_eq!(number(&out, "refusals")?, 7);
    assert_eq!(field(&out, "pipelined_second_response"), Some("false"));
    // Garbage never becomes a request; the six others do.
    s.wait_counters(Transport::H1, "h1 refusals counted", |c| {
        c.connections == 7 && c.requests == 6 && c.tunnels == 0
    })
    .await?;
    s.only_on(Transport::H1)?;
    let g = s.node.node.metrics().snapshot();
    assert_eq!(g.tunnels_established, 0, "{g:?}");
    assert_eq!(g.tunnels_refused, 6, "{g:?}");
    s.all_connections_closed().await?;
    s.node.node.shutdown().await;
    Ok(())
}

/// R9297-22 on HTTP/1.1: a capsule cut short by the end of the client's
/// stream (TLS close_notify + FIN, or a bare FIN) makes the node close the
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_truncated_capsule_closes_the_connection() -> Result<()> {
    init_tracing();
    let Some(python) = python().await else {
        return Ok(());
    };
    let s = Setup::start().await?;
    let m = s.node.node.metrics();
    // TLS close_notify then FIN: the body ends cleanly inside a capsule,
    // which is malformed (R9297-22).
    let out = s
        .run_with(
            &python,
            H1,
            "truncated",
            &["--variant", "close_notify_and_fin"],
        )
        .await?;
    assert_eq!(number(&out, "truncated_closed")?, 1);
    // Closed for the truncated capsule, not merely because the stream ended
    // (a clean end closes the connection too, see the echo test).
    eventually(
        "truncated capsule counted as malformed",
        Duration::from_secs(5),
        || m.snapshot().capsules_malformed == 1,
    )
    .await
    .with_context(|| format!("{:?}", m.snapshot()))?;
    // A bare FIN without close_notify: a truncated TLS stream, an I/O error
    // rather than a malformed capsule; the node closes all the same.
    let out = s
        .run_with(&python, H1, "truncated", &["--variant", "fin_only"])
        .await?;
    assert_eq!(number(&out, "truncated_closed")?, 1);
    s.wait_counters(Transport::H1, "h1 truncated tunnels counted", |c| {
        c.connections == 2 && c.tunnels == 2 && c.datagrams_from_client == 2
    })
    .await?;
    s.only_on(Transport::H1)?;
    s.all_connections_closed().await?;
    s.node.node.shutdown().await;
    Ok(())
}

#[test]
fn field_reads_flat_json() -> Result<()> {
    let j = r#"{"a": 1, "ok": true, "s": "x", "n": null, "d": {"k": 2}}"#;
    assert_eq!(field(j, "a"), Some("1"));
    assert_eq!(field(j, "ok"), Some("true"));
    assert_eq!(field(j, "s"), Some("\"x\""));
    assert_eq!(field(j, "n"), Some("null"));
    assert_eq!(field(j, "k"), Some("2"));
    assert_eq!(field(j, "missing"), None);
    if number(j, "s").is_ok() {
        bail!("a string is not a number");
    }
    Ok(())
}
