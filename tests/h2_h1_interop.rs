//! Interop over the node's TLS/TCP listener against independent peers:
//! Python `h2` (HTTP/2, RFC 8441 extended CONNECT) and a hand-written
//! HTTP/1.1 client on Python's `ssl` (`GET` + `Upgrade: connect-udp`, RFC 9298
//! §3.4). Neither uses our client. Each test starts its own node (private
//! targets allowed) and UDP echo target, runs one scenario of
//! `tests/interop/h2_connect_udp.py` or `h1_connect_udp.py`, checks its JSON
//! summary, then checks that the node counted the traffic on the right
//! transport. Requirement ids: XC-*, CC-*, R9297-*, R9298-*.

use std::{path::Path, process::Stdio, time::Duration};

use anyhow::{Context, Result, ensure};
use masque_server::metrics::TransportSnapshot;
use masque_tests::{
    init_tracing,
    node::{TestNode, eventually},
    peer::{PeerArgs, field, number, python_or_skip},
};
use masque_transport::Transport;

/// Upper bound for one Python scenario (its own steps are bounded at 10 s each).
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);

/// A node with its TLS/TCP listener, a UDP echo target, and the node's
/// certificate in a file for the peers.
struct Setup {
    node: TestNode,
    peer: PeerArgs,
}

impl Setup {
    async fn start() -> Result<Self> {
        let node = TestNode::start(true).await?;
        let peer = PeerArgs::start(&node).await?;
        Ok(Self { node, peer })
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
            self.peer
                .command(python, script)
                .arg(scenario)
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
    let Some(python) = python_or_skip().await else {
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
    let Some(python) = python_or_skip().await else {
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
    let Some(python) = python_or_skip().await else {
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
    let Some(python) = python_or_skip().await else {
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
/// a tunnel; XC-10: connect-ip and an unknown token get 501 with
/// Proxy-Status; connect-tcp and classic CONNECT to a closed port 502
/// connection_refused; the connection survives them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_malformed_and_unsupported_requests() -> Result<()> {
    init_tracing();
    let Some(python) = python_or_skip().await else {
        return Ok(());
    };
    let s = Setup::start().await?;
    let out = s.run(&python, H2, "requests").await?;
    assert_eq!(number(&out, "malformed_refused")?, 5);
    assert_eq!(number(&out, "not_implemented_501")?, 2);
    assert_eq!(number(&out, "target_refused_502")?, 2);
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
    let Some(python) = python_or_skip().await else {
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
/// Proxy-Status for connect-ip, 502 connection_refused for connect-tcp and
/// classic CONNECT to a closed port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_refusals_close_the_connection() -> Result<()> {
    init_tracing();
    let Some(python) = python_or_skip().await else {
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
    let Some(python) = python_or_skip().await else {
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
