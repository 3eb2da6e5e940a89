//! TCP tunnels through the node against independent peers: CONNECT-TCP
//! (draft-ietf-httpbis-connect-tcp-11; tokens `connect-tcp`, `connect-tcp-07`,
//! `connect-tcp-12`) and classic CONNECT, over HTTP/3 (aioquic), HTTP/2
//! (Python `h2`) and HTTP/1.1 (a hand-written client on Python's `ssl`), all
//! in `tests/interop/tcp_peer.py` with the capsule codec of
//! `tests/interop/tcp_capsules.py`; and curl using the node as an HTTPS proxy
//! for plain HTTP (classic CONNECT).
//!
//! One test per cell (scenario × protocol × transport), named
//! `<transport>_<protocol>_<scenario>`: each starts its own node and TCP
//! target, runs one scenario of the peer with a bounded time and checks its
//! one-line JSON summary. The peer checks the details itself (statuses,
//! headers, byte-exact echo, how the stream ended); this file re-checks the
//! summary's key fields so a peer that silently skipped a check fails here.

use std::{net::SocketAddr, process::Stdio, sync::Arc, time::Duration};

use anyhow::{Context, Result, ensure};
use masque_server::{
    Proxy, TcpProxyConfig, UdpProxyConfig,
    policy::AddressPolicy,
    resolver::{ResolveError, Resolver},
};
use masque_tests::{
    init_tracing, interop_script,
    node::TestNode,
    peer::{field, node_ca_file, number, python_or_skip},
    tcp::{tcp_echo, tcp_refused_addr, tcp_resetter},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    process::Command,
    sync::oneshot,
};

/// Upper bound for one peer run (its own steps are bounded at 10 s each).
const PEER_LIMIT: Duration = Duration::from_secs(120);
/// Upper bound for a recording target's report (the peer keeps its tunnel
/// open for at most 10 s without a release).
const TARGET_LIMIT: Duration = Duration::from_secs(30);
/// Bytes each echo sends (and must get back byte-exact).
const ECHO_BYTES: usize = 1 << 20;
/// Tunnels on one connection in the concurrent cells, and the bytes each
/// echoes (the peer's default `--tunnels`).
const CONCURRENT_TUNNELS: usize = 8;
const CONCURRENT_BYTES: usize = 192 * 1024;
/// The resetting target reads this many bytes, then resets; the peer sends
/// [`RESET_SENT`].
const RESET_AFTER: usize = 1024;
const RESET_SENT: usize = 8192;

/// HTTP/3 H3_MESSAGE_ERROR, H3_CONNECT_ERROR; HTTP/2 PROTOCOL_ERROR,
/// CONNECT_ERROR.
const H3_MESSAGE_ERROR: u64 = 0x10e;
const H3_CONNECT_ERROR: u64 = 0x10f;
const H2_PROTOCOL_ERROR: u64 = 0x1;
const H2_CONNECT_ERROR: u64 = 0xa;

/// What a recording target saw of its one connection: how it ended
/// (`fin`, `reset`, ...), the bytes it read and their FNV-1a 64.
#[derive(Debug)]
struct Seen {
    end: &'static str,
    bytes: u64,
    fnv: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Bytes the FIN-first target sends before its FIN (byte i is i % 251).
const GREETING: usize = 100_000;
/// Bytes the peer sends after the target's FIN, and before an end without
/// FINAL_DATA.
const AFTER_FIN_BYTES: usize = 256 * 1024;

/// A TCP target for one connection that records what it reads until the
/// client's FIN or a reset, then reports it. With `greeting` it first sends
/// that many bytes (byte i is i % 251) and its FIN, before reading.
async fn recording_target(
    greeting: Option<usize>,
) -> Result<(SocketAddr, oneshot::Receiver<Seen>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let Ok(Ok((mut s, _))) = tokio::time::timeout(TARGET_LIMIT, listener.accept()).await else {
            return;
        };
        let seen = |end| Seen {
            end,
            bytes: 0,
            fnv: FNV_OFFSET,
        };
        if let Some(n) = greeting {
            let g: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            if s.write_all(&g).await.is_err() || s.shutdown().await.is_err() {
                let _ = tx.send(seen("greeting write failed"));
                return;
            }
        }
        let mut got = seen("");
        let mut buf = vec![0u8; 65536];
        got.end = loop {
            match tokio::time::timeout(TARGET_LIMIT, s.read(&mut buf)).await {
                Ok(Ok(0)) => break "fin",
                Ok(Ok(n)) => {
                    for &b in &buf[..n] {
                        got.fnv = (got.fnv ^ u64::from(b)).wrapping_mul(FNV_PRIME);
                    }
                    got.bytes += n as u64;
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => break "reset",
                Ok(Err(_)) => break "read error",
                Err(_) => break "read timeout",
            }
        };
        let _ = tx.send(got);
    });
    Ok((addr, rx))
}

/// The peer's one JSON line for `scenario` over `transport` with
/// `protocol`, after checking that it passed; `None` (after printing why)
/// only when the interop Python cannot be set up. With `release`, the peer
/// keeps its tunnel open until the recording target has reported (then a
/// line on its stdin lets it go); what the target saw comes back too.
async fn run_peer(
    transport: &str,
    protocol: &str,
    scenario: &str,
    node: &TestNode,
    target: &str,
    bytes: usize,
    release: Option<oneshot::Receiver<Seen>>,
) -> Result<Option<(String, Option<Seen>)>> {
    let Some(python) = python_or_skip().await else {
        return Ok(None);
    };
    let port = if transport == "h3" {
        node.node.local_addr().port()
    } else {
        node.node
            .tcp_addr()
            .context("the node started without its TLS/TCP listener")?
            .port()
    };
    let ca = node_ca_file(node)?;
    let greeting = if scenario == "target-fin-at-once" {
        0
    } else {
        GREETING
    };
    let mut child = Command::new(&python)
        .arg(interop_script("tcp_peer.py"))
        .arg(scenario)
        .args(["--transport", transport, "--protocol", protocol])
        .args(["--port", &port.to_string()])
        .arg("--ca")
        .arg(ca.path())
        .args(["--target", target])
        .args(["--bytes", &bytes.to_string()])
        .args(["--greeting", &greeting.to_string()])
        .args(["--tunnels", &CONCURRENT_TUNNELS.to_string()])
        .stdin(if release.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut seen = None;
    if let Some(rx) = release {
        seen = match tokio::time::timeout(TARGET_LIMIT, rx).await {
            Ok(Ok(s)) => Some(s),
            _ => None,
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(b"done\n").await;
        }
    }
    let out = tokio::time::timeout(PEER_LIMIT, child.wait_with_output())
        .await
        .with_context(|| format!("the peer did not finish within {PEER_LIMIT:?}"))??;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "tcp_peer.py {scenario} --transport {transport} --protocol {protocol}:\n{stdout}{stderr}"
    );
    if let Some(s) = &seen {
        println!("the target saw: {s:?}");
    }
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with('{')).collect();
    ensure!(
        lines.len() == 1,
        "expected one JSON summary, got {stdout:?} {stderr}"
    );
    let json = lines[0].to_owned();
    ensure!(
        out.status.success() && field(&json, "ok") == Some("true"),
        "the peer failed ({}): {json}\n{stderr}\nthe target saw: {seen:?}",
        out.status
    );
    for (key, want) in [
        ("scenario", scenario),
        ("transport", transport),
        ("protocol", protocol),
    ] {
        ensure!(
            field(&json, key) == Some(&format!("\"{want}\"")),
            "{key} is not {want}: {json}"
        );
    }
    Ok(Some((json, seen)))
}

/// A name the [`NoSuchName`] resolver finds nowhere.
const NO_SUCH_NAME: &str = "no-such-name.masque.test:443";
/// The node's TCP connect timeout in the `timeout` cells.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A resolver without any name (NXDOMAIN for all), so `dns-error` needs no
/// network.
struct NoSuchName;

#[async_trait::async_trait]
impl Resolver for NoSuchName {
    async fn resolve(&self, _host: &str, _port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        Err(ResolveError::NotFound)
    }
}

/// A loopback address whose SYNs go unanswered: a listener with a backlog
/// of 0 whose accept queue is filled by connections nobody accepts (Linux
/// then drops further SYNs). Keep the returned sockets alive meanwhile.
fn unanswered_target() -> Result<(SocketAddr, (socket2::Socket, Vec<std::net::TcpStream>))> {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    listener.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    listener.listen(0)?;
    let addr = listener
        .local_addr()?
        .as_socket()
        .context("an IPv4 listener")?;
    let mut queued = Vec::new();
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => queued.push(s),
            Err(_) => break,
        }
    }
    ensure!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err(),
        "the accept queue of {addr} never filled: SYNs are still answered"
    );
    Ok((addr, (listener, queued)))
}

/// One cell: a node (private targets allowed except for `private`; a
/// resolver without names for `dns-error`; a 1 s connect timeout for
/// `timeout`), the target the scenario needs (echo, refused address,
/// resetter, recording target, or one that never answers SYNs), the peer,
/// and the checks of its summary (and of what a recording target saw).
async fn cell(transport: &str, protocol: &str, scenario: &str) -> Result<()> {
    init_tracing();
    let connect_tcp = protocol != "classic";
    let node = match scenario {
        "dns-error" => TestNode::start_with(true, Some(Arc::new(NoSuchName)), |_| {}).await?,
        "timeout" => {
            let udp = UdpProxyConfig {
                policy: AddressPolicy {
                    allow_private: true,
                    own_addresses: vec![],
                },
                ..Default::default()
            };
            let tcp = TcpProxyConfig {
                connect_timeout: CONNECT_TIMEOUT,
                ..Default::default()
            };
            TestNode::with_handler(Arc::new(Proxy::new(udp, tcp))).await?
        }
        _ => TestNode::start(scenario != "private").await?,
    };
    let mut release = None;
    let mut _backlog = None;
    let (target, bytes) = match scenario {
        "refused" => (tcp_refused_addr()?.to_string(), 0),
        "dns-error" => (NO_SUCH_NAME.to_owned(), 0),
        "timeout" => {
            let (addr, held) = unanswered_target()?;
            _backlog = Some(held);
            (addr.to_string(), 0)
        }
        "target-reset" => (tcp_resetter(RESET_AFTER).await?.to_string(), RESET_SENT),
        "target-fin-first" | "target-fin-at-once" | "end-without-final" | "client-abort" => {
            let greeting = match scenario {
                "target-fin-first" => Some(GREETING),
                "target-fin-at-once" => Some(0),
                _ => None,
            };
            let (addr, rx) = recording_target(greeting).await?;
            release = Some(rx);
            (addr.to_string(), AFTER_FIN_BYTES)
        }
        "concurrent" | "stalled-neighbour" | "optimistic" => {
            (tcp_echo().await?.to_string(), CONCURRENT_BYTES)
        }
        _ => (tcp_echo().await?.to_string(), ECHO_BYTES),
    };
    let Some((json, seen)) = run_peer(
        transport, protocol, scenario, &node, &target, bytes, release,
    )
    .await?
    else {
        return Ok(());
    };
    let text = |key: &str| field(&json, key).map(|v| v.trim_matches('"').to_owned());
    match scenario {
        "optimistic" => {
            ensure!(
                number(&json, "received_bytes")? == CONCURRENT_BYTES as u64,
                "{json}"
            );
            ensure!(text("end").as_deref() == Some("end"), "{json}");
        }
        "stalled-neighbour" => {
            ensure!(
                number(&json, "b_bytes")? == CONCURRENT_BYTES as u64
                    && number(&json, "a_bytes")? == 32 << 20
                    && number(&json, "a_sent_while_held")? < 32 << 20,
                "{json}"
            );
        }
        "concurrent" => {
            let n = number(&json, "tunnels")?;
            ensure!(n == CONCURRENT_TUNNELS as u64, "{json}");
            ensure!(
                number(&json, "received_bytes")? == n * CONCURRENT_BYTES as u64,
                "{json}"
            );
        }
        "echo" | "grease" | "big-capsules" => {
            // CTCP-27: a Proxy-Status on the success response too.
            ensure!(
                text("proxy_status").is_some_and(|p| p.contains("masque-node")),
                "no Proxy-Status on the 2xx/101: {json}"
            );
            let sent = number(&json, "sent_bytes")?;
            ensure!(sent == ECHO_BYTES as u64, "sent {sent}: {json}");
            ensure!(number(&json, "received_bytes")? == sent, "{json}");
            ensure!(
                field(&json, "sent_sha256") == field(&json, "received_sha256"),
                "{json}"
            );
            ensure!(text("end").as_deref() == Some("end"), "{json}");
            ensure!(
                field(&json, "final_data") == Some(if connect_tcp { "true" } else { "false" }),
                "{json}"
            );
            if connect_tcp {
                ensure!(number(&json, "after_final")? == 0, "{json}");
            }
            if scenario == "grease" {
                ensure!(number(&json, "grease_capsules_sent")? > 2, "{json}");
            }
        }
        "refused" => {
            ensure!(number(&json, "status")? == 502, "{json}");
            ensure!(json.contains("error=connection_refused"), "{json}");
        }
        "private" => {
            ensure!(number(&json, "status")? == 403, "{json}");
            ensure!(json.contains("error=destination_ip_prohibited"), "{json}");
        }
        "dns-error" => {
            ensure!(number(&json, "status")? == 502, "{json}");
            ensure!(json.contains("error=dns_error"), "{json}");
        }
        "timeout" => {
            ensure!(number(&json, "status")? == 504, "{json}");
            ensure!(json.contains("error=connection_timeout"), "{json}");
        }
        "data-after-final" | "target-reset" => {
            let end = text("end").context("no end")?;
            let want = match (transport, scenario) {
                ("h3", "data-after-final") => Some(H3_MESSAGE_ERROR),
                ("h2", "data-after-final") => Some(H2_PROTOCOL_ERROR),
                ("h3", _) => Some(H3_CONNECT_ERROR),
                ("h2", _) => Some(H2_CONNECT_ERROR),
                _ => None,
            };
            match want {
                Some(code) => {
                    ensure!(end == "reset", "{json}");
                    ensure!(number(&json, "reset_code")? == code, "{json}");
                }
                None if scenario == "target-reset" => {
                    ensure!(end == "closed", "h1: not an abrupt close: {json}");
                }
                None => ensure!(end == "closed" || end == "end", "{json}"),
            }
            if scenario == "target-reset" {
                ensure!(field(&json, "final_data") == Some("false"), "{json}");
            }
        }
        "target-fin-first" | "target-fin-at-once" => {
            let seen = seen.context("the target never reported")?;
            let greeting = if scenario == "target-fin-first" {
                GREETING
            } else {
                0
            };
            ensure!(
                number(&json, "greeting_bytes")? == greeting as u64,
                "{json}"
            );
            ensure!(
                seen.end == "fin",
                "the target saw {seen:?}, not our FIN: {json}"
            );
            ensure!(
                seen.bytes == AFTER_FIN_BYTES as u64 && seen.fnv == number(&json, "sent_fnv")?,
                "the target got other bytes than the peer sent after the target's FIN: {seen:?} {json}"
            );
        }
        "client-abort" => {
            let seen = seen.context("the target never reported")?;
            ensure!(
                seen.end == "reset",
                "a client's abort must reset the target (CTCP-22, RFC 9113 §8.5, RFC 9114 §4.4), it saw {seen:?}: {json}"
            );
        }
        "end-without-final" => {
            let seen = seen.context("the target never reported")?;
            ensure!(
                seen.end == "reset",
                "an end without FINAL_DATA must reset the target (CTCP-22), it saw {seen:?}: {json}"
            );
        }
        other => anyhow::bail!("no checks for scenario {other}"),
    }
    node.node.shutdown().await;
    Ok(())
}

/// `#[tokio::test]`s named after their cell; the error names the cell too.
/// The attributes in the leading brackets apply to every cell.
macro_rules! cells {
    ([$($all:tt)*]) => {};
    (
        [$($all:tt)*]
        $(#[$attr:meta])* $name:ident: $transport:literal, $protocol:literal, $scenario:literal;
        $($rest:tt)*
    ) => {
        $($all)*
        $(#[$attr])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() -> Result<()> {
            cell($transport, $protocol, $scenario).await.with_context(|| {
                format!(
                    "cell {} {} {} (tcp_peer.py {} --transport {} --protocol {})",
                    $transport, $protocol, $scenario, $scenario, $transport, $protocol
                )
            })
        }
        cells!([$($all)*] $($rest)*);
    };
}

cells! {
    []
    // 1 MiB echoed byte-exact, half-close by FINAL_DATA / FIN / END_STREAM /
    // close_notify, clean end (CTCP-03, CTCP-19/20/21, CC-16, CC-21).
    h3_connect_tcp_echo: "h3", "connect-tcp", "echo";
    h3_connect_tcp_07_echo: "h3", "connect-tcp-07", "echo";
    h3_connect_tcp_12_echo: "h3", "connect-tcp-12", "echo";
    h3_classic_echo: "h3", "classic", "echo";
    h2_connect_tcp_echo: "h2", "connect-tcp", "echo";
    h2_connect_tcp_07_echo: "h2", "connect-tcp-07", "echo";
    h2_connect_tcp_12_echo: "h2", "connect-tcp-12", "echo";
    h2_classic_echo: "h2", "classic", "echo";
    h1_connect_tcp_echo: "h1", "connect-tcp", "echo";
    h1_connect_tcp_07_echo: "h1", "connect-tcp-07", "echo";
    h1_connect_tcp_12_echo: "h1", "connect-tcp-12", "echo";
    h1_classic_echo: "h1", "classic", "echo";
    // Unknown and oversized capsules between DATA capsules (CTCP-07), empty
    // DATA capsules, the last bytes in FINAL_DATA (CTCP-06).
    h3_connect_tcp_grease: "h3", "connect-tcp", "grease";
    h2_connect_tcp_grease: "h2", "connect-tcp", "grease";
    h1_connect_tcp_grease: "h1", "connect-tcp", "grease";
    h3_connect_tcp_12_grease: "h3", "connect-tcp-12", "grease";
    // One DATA capsule of 768 KiB and 256 KiB in FINAL_DATA's payload
    // (capsules far over 64 KiB stream through, CTCP-06).
    h3_connect_tcp_big_capsules: "h3", "connect-tcp", "big-capsules";
    h2_connect_tcp_big_capsules: "h2", "connect-tcp", "big-capsules";
    h1_connect_tcp_big_capsules: "h1", "connect-tcp", "big-capsules";
    // The target refuses: 502 connection_refused.
    h3_connect_tcp_refused: "h3", "connect-tcp", "refused";
    h3_classic_refused: "h3", "classic", "refused";
    h2_connect_tcp_refused: "h2", "connect-tcp", "refused";
    h2_classic_refused: "h2", "classic", "refused";
    h1_connect_tcp_refused: "h1", "connect-tcp", "refused";
    h1_classic_refused: "h1", "classic", "refused";
    // A loopback target on a node that refuses private targets: 403.
    h3_connect_tcp_private: "h3", "connect-tcp", "private";
    h3_classic_private: "h3", "classic", "private";
    h2_connect_tcp_private: "h2", "connect-tcp", "private";
    h2_classic_private: "h2", "classic", "private";
    h1_connect_tcp_private: "h1", "connect-tcp", "private";
    h1_classic_private: "h1", "classic", "private";
    // A name the resolver does not find: 502 dns_error.
    h3_connect_tcp_dns_error: "h3", "connect-tcp", "dns-error";
    h3_classic_dns_error: "h3", "classic", "dns-error";
    h2_connect_tcp_dns_error: "h2", "connect-tcp", "dns-error";
    h2_classic_dns_error: "h2", "classic", "dns-error";
    h1_connect_tcp_dns_error: "h1", "connect-tcp", "dns-error";
    h1_classic_dns_error: "h1", "classic", "dns-error";
    // A target that never completes the handshake: 504 connection_timeout.
    h3_connect_tcp_timeout: "h3", "connect-tcp", "timeout";
    h3_classic_timeout: "h3", "classic", "timeout";
    h2_connect_tcp_timeout: "h2", "connect-tcp", "timeout";
    h2_classic_timeout: "h2", "classic", "timeout";
    h1_connect_tcp_timeout: "h1", "connect-tcp", "timeout";
    h1_classic_timeout: "h1", "classic", "timeout";
    // DATA after FINAL_DATA is malformed (CTCP-04): the stream is reset.
    h3_connect_tcp_data_after_final: "h3", "connect-tcp", "data-after-final";
    h2_connect_tcp_data_after_final: "h2", "connect-tcp", "data-after-final";
    h1_connect_tcp_data_after_final: "h1", "connect-tcp", "data-after-final";
    // The target resets mid-tunnel: CONNECT_ERROR (CTCP-21, CC-17, CC-22).
    h3_connect_tcp_target_reset: "h3", "connect-tcp", "target-reset";
    h3_classic_target_reset: "h3", "classic", "target-reset";
    h2_connect_tcp_target_reset: "h2", "connect-tcp", "target-reset";
    h2_classic_target_reset: "h2", "classic", "target-reset";
    h1_connect_tcp_target_reset: "h1", "connect-tcp", "target-reset";
    h1_classic_target_reset: "h1", "classic", "target-reset";
    // The target FINs first: the node passes the FIN on and keeps relaying
    // the client's bytes, then the client's FIN (CTCP-19/20, CC-16, CC-21).
    h3_connect_tcp_target_fin_first: "h3", "connect-tcp", "target-fin-first";
    h3_classic_target_fin_first: "h3", "classic", "target-fin-first";
    h2_connect_tcp_target_fin_first: "h2", "connect-tcp", "target-fin-first";
    h2_classic_target_fin_first: "h2", "classic", "target-fin-first";
    h1_connect_tcp_target_fin_first: "h1", "connect-tcp", "target-fin-first";
    h1_classic_target_fin_first: "h1", "classic", "target-fin-first";
    // The target FINs as soon as it accepts: 2xx, then the FIN at once.
    h3_connect_tcp_target_fin_at_once: "h3", "connect-tcp", "target-fin-at-once";
    h3_classic_target_fin_at_once: "h3", "classic", "target-fin-at-once";
    h2_connect_tcp_target_fin_at_once: "h2", "connect-tcp", "target-fin-at-once";
    h2_classic_target_fin_at_once: "h2", "classic", "target-fin-at-once";
    h1_connect_tcp_target_fin_at_once: "h1", "connect-tcp", "target-fin-at-once";
    h1_classic_target_fin_at_once: "h1", "classic", "target-fin-at-once";
    // The client's stream ends without FINAL_DATA: the target is reset
    // (CTCP-22).
    h3_connect_tcp_end_without_final: "h3", "connect-tcp", "end-without-final";
    h2_connect_tcp_end_without_final: "h2", "connect-tcp", "end-without-final";
    h1_connect_tcp_end_without_final: "h1", "connect-tcp", "end-without-final";
    // The client aborts (RESET_STREAM / RST_STREAM / TCP reset): the target
    // is reset, not FINed.
    h3_connect_tcp_client_abort: "h3", "connect-tcp", "client-abort";
    h3_classic_client_abort: "h3", "classic", "client-abort";
    h2_connect_tcp_client_abort: "h2", "connect-tcp", "client-abort";
    h2_classic_client_abort: "h2", "classic", "client-abort";
    h1_connect_tcp_client_abort: "h1", "connect-tcp", "client-abort";
    h1_classic_client_abort: "h1", "classic", "client-abort";
    // Eight tunnels on one connection, connect-tcp and classic CONNECT
    // alternately, all echoing at once: no cross-talk, every end clean.
    h3_connect_tcp_concurrent: "h3", "connect-tcp", "concurrent";
    h2_connect_tcp_concurrent: "h2", "connect-tcp", "concurrent";
    // A tunnel whose client stops reading (its HTTP/2 stream window stays
    // shut) must not stall its neighbour on the same connection, and loses
    // nothing once read again.
    h2_connect_tcp_stalled_neighbour: "h2", "connect-tcp", "stalled-neighbour";
    h2_classic_stalled_neighbour: "h2", "classic", "stalled-neighbour";
    // The tunnel's bytes right behind the request, before the 2xx: held
    // until the target is connected (CTCP-23).
    h3_connect_tcp_optimistic: "h3", "connect-tcp", "optimistic";
    h3_classic_optimistic: "h3", "classic", "optimistic";
    h2_connect_tcp_optimistic: "h2", "connect-tcp", "optimistic";
    h2_classic_optimistic: "h2", "classic", "optimistic";
}

/// The peer's capsule codec against the draft's vectors (DATA "abc" =
/// `a0 28 d7 f0 03 61 62 63`, empty FINAL_DATA = `a0 28 d7 f1 00`, the -12
/// codepoints) and its streaming reader; needs no node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_capsule_codec_vectors() -> Result<()> {
    let Some(python) = python_or_skip().await else {
        return Ok(());
    };
    let out = tokio::time::timeout(
        PEER_LIMIT,
        Command::new(&python)
            .arg(interop_script("tcp_capsules.py"))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("tcp_capsules.py timed out")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && stdout.contains("\"ok\": true"),
        "tcp_capsules.py: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

// ---------------------------------------------------------------- curl

const CURL_LIMIT: Duration = Duration::from_secs(30);
const ORIGIN_BODY: &str = "hello from the origin through a TCP tunnel\n";

/// A plain HTTP origin on 127.0.0.1:0: every connection gets one fixed
/// response after its request head, then a close.
async fn http_origin() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ORIGIN_BODY}",
                    ORIGIN_BODY.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    Ok(addr)
}

async fn curl(args: &[&str]) -> Result<(bool, String, String)> {
    let out = tokio::time::timeout(
        CURL_LIMIT,
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "20"])
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("curl timed out")?
    .context("running curl (install it: apt-get install curl)")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Whether the installed curl knows `flag` (`curl --help all`).
async fn curl_has(flag: &str) -> Result<bool> {
    let (_, help, _) = curl(&["--help", "all"]).await?;
    Ok(help.split_whitespace().any(|w| w == flag))
}

/// curl fetches `http://127.0.0.1:ORIGIN/` through the node as an HTTPS
/// proxy (`-p`: classic CONNECT), with `proxy_flags` choosing the proxy's
/// HTTP version; the body must be the origin's.
async fn curl_through_node(proxy_flags: &[&str], want_version: &str) -> Result<()> {
    init_tracing();
    let node = TestNode::start(true).await?;
    let tcp = node.node.tcp_addr().context("the node serves TCP")?;
    let ca = node_ca_file(&node)?;
    let origin = http_origin().await?;
    let proxy = format!("https://localhost:{}", tcp.port());
    let resolve = format!("localhost:{}:127.0.0.1", tcp.port());
    let url = format!("http://{origin}/");
    let mut args = vec![
        "--proxytunnel",
        "--proxy",
        &proxy,
        "--proxy-cacert",
        ca.path().to_str().context("path")?,
        "--resolve",
        &resolve,
        "--verbose",
        "--write-out",
        "\n%{http_code} %{http_connect}",
    ];
    args.extend_from_slice(proxy_flags);
    args.push(&url);
    let (ok, out, err) = curl(&args).await?;
    ensure!(ok, "curl failed:\n{err}");
    let (body, codes) = out.rsplit_once('\n').context("no --write-out line")?;
    ensure!(body == ORIGIN_BODY, "body {body:?}\n{err}");
    ensure!(
        codes.starts_with("200 2"),
        "origin status / CONNECT status {codes:?}\n{err}"
    );
    ensure!(
        err.contains(&format!("CONNECT {origin} HTTP/{want_version}"))
            || err.contains(&format!("CONNECT {origin}")),
        "curl did not tunnel with CONNECT:\n{err}"
    );
    node.node.shutdown().await;
    Ok(())
}

/// curl's classic CONNECT over HTTP/1.1 to the node (CC-09, CC-11).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_classic_connect_h1() -> Result<()> {
    curl_through_node(&[], "1.1").await
}

/// curl's classic CONNECT over HTTP/2 to the node (`--proxy-http2`, curl ≥
/// 8.1); skipped, saying so, with an older curl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_classic_connect_h2() -> Result<()> {
    if !curl_has("--proxy-http2").await? {
        println!(
            "SKIPPED: the installed curl has no --proxy-http2 (HTTP/2 to proxies needs curl >= 8.1)"
        );
        return Ok(());
    }
    curl_through_node(&["--proxy-http2"], "2").await
}
