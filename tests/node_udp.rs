//! CONNECT-UDP end to end through a real node on loopback: our client and
//! aioquic as clients, UDP echo targets, failure statuses, session cleanup.
//! Requirement ids: R9298-*, R9297-*, PS-*.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use masque_client::{ClientError, Target};
use masque_server::resolver::StaticResolver;
use masque_tests::{
    init_tracing, interop_python, interop_script,
    node::{TestNode, actor_tree, eventually, expect_refusal, next_datagram, udp_echo},
    within,
};

fn udp(addr: std::net::SocketAddr) -> Target {
    Target::Udp {
        host: addr.ip().to_string(),
        port: addr.port(),
    }
}

/// R9298-13/-31/-39: a tunnel to a UDP echo target relays datagrams both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_echo_through_node_with_masque_client() -> Result<()> {
    init_tracing();
    let node = TestNode::start(true).await?;
    let echo = udp_echo().await?;
    let mut s = masque_client::connect(&node.url(), udp(echo), node.client_options()).await?;
    for i in 0..50u32 {
        let payload = format!("ping {i}").into_bytes();
        s.send(&payload).await?;
        let back = tokio::time::timeout(Duration::from_secs(5), s.recv())
            .await?
            .context("tunnel ended")?;
        assert_eq!(&back[..], &payload[..]);
    }
    s.close().await;
    let m = node.node.metrics();
    eventually("session closed", Duration::from_secs(5), || {
        m.active_sessions() == 0
    })
    .await?;
    let snap = m.snapshot();
    assert_eq!(
        snap.sessions_opened, snap.sessions_closed,
        "open/close exactly once"
    );
    assert!(snap.datagrams_to_target >= 50 && snap.datagrams_from_target >= 50);
    node.node.shutdown().await;
    Ok(())
}

/// aioquic (independent HTTP/3 client) through the node to a UDP echo target:
/// QUIC datagrams both ways, DATAGRAM capsules treated as datagrams (R9297-31),
/// unknown context ids dropped (R9298-38), FIN answered with FIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_echo_through_node_with_aioquic() -> Result<()> {
    init_tracing();
    let node = TestNode::start(true).await?;
    let echo = udp_echo().await?;
    let stdout = run_aioquic_connect_udp(&node, echo, &[]).await?;
    assert_eq!(stdout.matches("PASS ").count(), 4, "{stdout}");
    let snap = node.node.metrics().snapshot();
    assert!(snap.datagrams_dropped_unknown_context >= 1, "{snap:?}");
    node.node.shutdown().await;
    Ok(())
}

/// R9297-12/-31, RFC 9297 §3.5: a client that enables no datagrams (no QUIC
/// datagram transport parameter, no SETTINGS_H3_DATAGRAM) still has a working
/// tunnel: DATAGRAM capsules on the stream both ways, and no QUIC DATAGRAM is
/// ever sent to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_echo_through_node_with_aioquic_capsules_only() -> Result<()> {
    init_tracing();
    let node = TestNode::start(true).await?;
    let echo = udp_echo().await?;
    let stdout = run_aioquic_connect_udp(&node, echo, &["--capsules-only"]).await?;
    assert_eq!(stdout.matches("PASS ").count(), 3, "{stdout}");
    let snap = node.node.metrics().snapshot();
    assert_eq!(snap.datagrams_from_target, 20, "{snap:?}");
    assert_eq!(snap.datagrams_to_client_dropped, 0, "{snap:?}");
    assert_eq!(snap.output_dropped, 0, "{snap:?}");
    node.node.shutdown().await;
    Ok(())
}

/// Runs tests/interop/aioquic_connect_udp.py against `node`; returns its
/// stdout once it passed.
async fn run_aioquic_connect_udp(
    node: &TestNode,
    echo: std::net::SocketAddr,
    extra: &[&str],
) -> Result<String> {
    let python = interop_python()?;
    let ca = std::env::temp_dir().join(format!(
        "masque-node-ca-{}-{}.pem",
        std::process::id(),
        node.node.local_addr().port()
    ));
    std::fs::write(&ca, node.cert.cert_pem())?;
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&python)
            .arg(interop_script("aioquic_connect_udp.py"))
            .args(["--port", &node.node.local_addr().port().to_string()])
            .arg("--ca")
            .arg(&ca)
            .args(["--target", &echo.to_string()])
            .args(extra)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("aioquic client timed out")??;
    let _ = std::fs::remove_file(&ca);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(
        out.status.success(),
        "aioquic connect-udp client failed: {stdout}"
    );
    Ok(stdout)
}

/// 200 concurrent tunnels on one connection, each to its own echo exchange, no
/// cross-talk between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_tunnels_one_connection_no_crosstalk() -> Result<()> {
    init_tracing();
    const N: usize = 200;
    let node = TestNode::start_with(true, None, |c| c.max_tunnels_per_connection = 256).await?;
    let echo = udp_echo().await?;
    let client = masque_client::ProxyClient::connect(&node.url(), node.client_options()).await?;
    let conn = client.connection().clone();
    let authority = format!("localhost:{}", node.node.local_addr().port());
    let mut tasks = Vec::new();
    for i in 0..N {
        let conn = conn.clone();
        let authority = authority.clone();
        let options = node.client_options();
        tasks.push(tokio::spawn(async move {
            let mut s =
                masque_client::UdpSession::open_on(&conn, &authority, &udp(echo), &options).await?;
            let tag = format!("tunnel-{i}");
            for attempt in 0..5 {
                s.send(tag.as_bytes()).await?;
                match tokio::time::timeout(Duration::from_secs(2), s.recv()).await {
                    Ok(Some(back)) => {
                        anyhow::ensure!(back[..] == *tag.as_bytes(), "cross-talk on {i}: {back:?}");
                        break;
                    }
                    _ => anyhow::ensure!(attempt < 4, "no echo on tunnel {i}"),
                }
            }
            s.close().await;
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let m = node.node.metrics();
    eventually("all sessions closed", Duration::from_secs(10), || {
        m.active_sessions() == 0
    })
    .await?;
    assert_eq!(m.snapshot().sessions_opened, N as u64);
    node.node.shutdown().await;
    Ok(())
}

/// R9298-17, PS-10: a name that does not resolve -> 502 + dns_error (NXDOMAIN).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_failure_is_502_dns_error() -> Result<()> {
    init_tracing();
    let resolver = Arc::new(StaticResolver::default());
    let node = TestNode::start_with(true, Some(resolver), |_| {}).await?;
    let target = Target::Udp {
        host: "no-such-name.example".into(),
        port: 53,
    };
    let opened = masque_client::connect(&node.url(), target, node.client_options()).await;
    let ps = expect_refusal(opened, 502, "dns_error")?;
    assert!(ps.contains("rcode=\"NXDOMAIN\""), "{ps}");
    node.node.shutdown().await;
    Ok(())
}

/// R9298-53: loopback / private targets are refused unless allowed:
/// 403 + destination_ip_prohibited (our status choice, decisions.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_target_is_403_destination_ip_prohibited() -> Result<()> {
    init_tracing();
    let node = TestNode::start(false).await?;
    let echo = udp_echo().await?;
    for target in [
        udp(echo),
        Target::Udp {
            host: "10.1.2.3".into(),
            port: 53,
        },
        Target::Udp {
            host: "fe80::1".into(),
            port: 53,
        },
    ] {
        let opened = masque_client::connect(&node.url(), target, node.client_options()).await;
        expect_refusal(opened, 403, "destination_ip_prohibited")?;
    }
    assert_eq!(
        node.node.metrics().snapshot().sessions_opened,
        0,
        "refused before any session"
    );
    node.node.shutdown().await;
    Ok(())
}

/// R9297-22/-34: a capsule larger than the bound is malformed: the stream is
/// reset with H3_MESSAGE_ERROR and the session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_capsule_resets_stream() -> Result<()> {
    init_tracing();
    let node = TestNode::start(true).await?;
    let echo = udp_echo().await?;
    let client = masque_client::ProxyClient::connect(&node.url(), node.client_options()).await?;
    let conn = client.connection().clone();
    let mut head = masque_tests::extended_connect(
        "connect-udp",
        &format!("localhost:{}", node.node.local_addr().port()),
        &format!("/.well-known/masque/udp/{}/{}/", echo.ip(), echo.port()),
    );
    head.headers
        .insert("capsule-protocol", http::HeaderValue::from_static("?1"));
    let mut stream = conn.open_request(&head, true).await?;
    let resp = within("tunnel response", stream.recv_response()).await??;
    assert_eq!(resp.status, 200);
    // A capsule header announcing 1 MiB: over the 64 KiB bound.
    let mut capsule = Vec::new();
    masque_proto::capsule::encode_header(0x2a, 1 << 20, &mut capsule);
    capsule.extend_from_slice(&[0; 16]);
    stream.send.send_data(capsule.into()).await?;
    let r = tokio::time::timeout(Duration::from_secs(5), stream.recv.recv_data()).await?;
    match r {
        Err(masque_h3::Error::StreamReset(code)) => {
            assert_eq!(code, masque_h3::Code::MESSAGE_ERROR)
        }
        other => panic!("expected H3_MESSAGE_ERROR reset, got {other:?}"),
    }
    let m = node.node.metrics();
    eventually("session closed", Duration::from_secs(5), || {
        m.active_sessions() == 0
    })
    .await?;
    assert_eq!(m.snapshot().capsules_malformed, 1);
    node.node.shutdown().await;
    Ok(())
}

/// A killed session actor leaves no actor or task behind, and its slot and
/// metrics are released exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_session_leaves_nothing_behind() -> Result<()> {
    init_tracing();
    let node = TestNode::start(true).await?;
    let echo = udp_echo().await?;
    let rt = tokio::runtime::Handle::current().metrics();
    let client = masque_client::ProxyClient::connect(&node.url(), node.client_options()).await?;
    let conn = client.connection().clone();
    let authority = format!("localhost:{}", node.node.local_addr().port());
    // One tunnel first so the connection's own actors and tasks exist.
    let mut first =
        masque_client::UdpSession::open_on(&conn, &authority, &udp(echo), &node.client_options())
            .await?;
    first.send(b"warm").await?;
    next_datagram(&mut first, "warm echo").await?;
    let root = node.node.supervisor().get_cell();
    let actors_before = actor_tree(&root).len();
    let tasks_before = rt.num_alive_tasks();
    let mut s =
        masque_client::UdpSession::open_on(&conn, &authority, &udp(echo), &node.client_options())
            .await?;
    s.send(b"hello").await?;
    next_datagram(&mut s, "echo").await?;
    assert_eq!(
        actor_tree(&root).len(),
        actors_before + 1,
        "one session actor more"
    );
    // Kill the newest session actor (the leaf with the highest id).
    let victim = actor_tree(&root)
        .into_iter()
        .filter(|a| a.get_children().is_empty())
        .max_by_key(|a| a.get_id().pid())
        .context("a session")?;
    victim.kill();
    eventually("session actor gone", Duration::from_secs(5), || {
        actor_tree(&root).len() == actors_before
    })
    .await?;
    eventually("session tasks gone", Duration::from_secs(5), || {
        rt.num_alive_tasks() <= tasks_before
    })
    .await?;
    // The surviving tunnel still works.
    first.send(b"still").await?;
    assert_eq!(
        &next_datagram(&mut first, "echo after kill").await?[..],
        b"still"
    );
    node.node.shutdown().await;
    Ok(())
}

/// Closing the client connection stops all its sessions and its router.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_connection_stops_all_sessions() -> Result<()> {
    init_tracing();
    let node = TestNode::start(true).await?;
    let echo = udp_echo().await?;
    let root = node.node.supervisor().get_cell();
    let baseline = actor_tree(&root).len();
    let rt = tokio::runtime::Handle::current().metrics();
    let tasks_baseline = rt.num_alive_tasks();
    let client = masque_client::ProxyClient::connect(&node.url(), node.client_options()).await?;
    let conn = client.connection().clone();
    let authority = format!("localhost:{}", node.node.local_addr().port());
    let mut sessions = Vec::new();
    for _ in 0..10 {
        let mut s = masque_client::UdpSession::open_on(
            &conn,
            &authority,
            &udp(echo),
            &node.client_options(),
        )
        .await?;
        s.send(b"x").await?;
        next_datagram(&mut s, "echo").await?;
        sessions.push(s);
    }
    assert_eq!(
        actor_tree(&root).len(),
        baseline + 11,
        "router + 10 sessions"
    );
    conn.close(masque_h3::Code::NO_ERROR, b"bye");
    let m = node.node.metrics();
    eventually("sessions stopped", Duration::from_secs(10), || {
        m.active_sessions() == 0
    })
    .await?;
    eventually("router and sessions gone", Duration::from_secs(10), || {
        actor_tree(&root).len() == baseline
    })
    .await?;
    let snap = m.snapshot();
    assert_eq!(snap.sessions_opened, 10);
    assert_eq!(snap.sessions_closed, 10);
    assert_eq!(snap.connections_closed, 1);
    // Every task of the connection ends too: the sessions', the router's and
    // the connection's target-reader group (and our client's).
    drop((sessions, conn, client));
    eventually(
        "the connection's tasks gone",
        Duration::from_secs(10),
        || rt.num_alive_tasks() <= tasks_baseline,
    )
    .await?;
    node.node.shutdown().await;
    Ok(())
}

/// More tunnels than `max_tunnels_per_connection` get 503 +
/// connection_limit_reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_limit_is_503_connection_limit_reached() -> Result<()> {
    init_tracing();
    let node = TestNode::start_with(true, None, |c| c.max_tunnels_per_connection = 3).await?;
    let echo = udp_echo().await?;
    let client = masque_client::ProxyClient::connect(&node.url(), node.client_options()).await?;
    let conn = client.connection().clone();
    let authority = format!("localhost:{}", node.node.local_addr().port());
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(
            masque_client::UdpSession::open_on(
                &conn,
                &authority,
                &udp(echo),
                &node.client_options(),
            )
            .await?,
        );
    }
    match masque_client::UdpSession::open_on(&conn, &authority, &udp(echo), &node.client_options())
        .await
    {
        Err(ClientError::Refused {
            status,
            proxy_status,
            ..
        }) => {
            assert_eq!(status, 503);
            assert!(
                proxy_status
                    .unwrap_or_default()
                    .contains("error=connection_limit_reached")
            );
        }
        other => panic!("expected 503, got {other:?}"),
    }
    // Closing one frees its slot.
    open.pop().context("one")?.close().await;
    let m = node.node.metrics();
    eventually("slot freed", Duration::from_secs(5), || {
        m.active_sessions() == 2
    })
    .await?;
    let mut again =
        masque_client::UdpSession::open_on(&conn, &authority, &udp(echo), &node.client_options())
            .await?;
    again.send(b"ok").await?;
    assert_eq!(&next_datagram(&mut again, "echo").await?[..], b"ok");
    node.node.shutdown().await;
    Ok(())
}

/// The idle timeout ends a quiet tunnel (FIN), counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_closes_quiet_tunnel() -> Result<()> {
    init_tracing();
    let node = TestNode::start_with(true, None, |c| {
        c.session.idle_timeout = Duration::from_millis(300)
    })
    .await?;
    let echo = udp_echo().await?;
    let mut s = masque_client::connect(&node.url(), udp(echo), node.client_options()).await?;
    s.send(b"once").await?;
    next_datagram(&mut s, "echo").await?;
    let ended = tokio::time::timeout(Duration::from_secs(5), s.recv()).await?;
    assert!(ended.is_none(), "tunnel should end after the idle timeout");
    assert_eq!(node.node.metrics().snapshot().idle_timeouts, 1);
    node.node.shutdown().await;
    Ok(())
}

/// R9298-53: the policy is applied after DNS to every resolved address: a
/// name that resolves to loopback is refused with 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r9298_53_name_resolving_to_loopback_is_403() -> Result<()> {
    init_tracing();
    let resolver = Arc::new(StaticResolver {
        entries: vec![("sneaky.example".into(), vec!["127.0.0.1".parse()?])],
    });
    let node = TestNode::start_with(false, Some(resolver), |_| {}).await?;
    let target = Target::Udp {
        host: "sneaky.example".into(),
        port: 53,
    };
    let opened = masque_client::connect(&node.url(), target, node.client_options()).await;
    expect_refusal(opened, 403, "destination_ip_prohibited")?;
    node.node.shutdown().await;
    Ok(())
}

/// XC-10: an upgrade token the node does not serve gets 501; R9298-25: bad
/// template variables get 400 with a Proxy-Status that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xc10_unserved_token_501_and_r9298_25_bad_variables_400() -> Result<()> {
    init_tracing();
    let node = TestNode::start(true).await?;
    let client = masque_client::ProxyClient::connect(&node.url(), node.client_options()).await?;
    let conn = client.connection();
    let authority = format!("localhost:{}", node.node.local_addr().port());
    let cases = [
        ("connect-ip", "/.well-known/masque/ip/*/*/", 501, None),
        (
            "connect-udp",
            "/.well-known/masque/udp/192.0.2.1/0/",
            400,
            Some("error=http_request_error"),
        ),
        (
            "connect-udp",
            "/.well-known/masque/udp/fe80%3A%3A1%2525eth0/53/",
            400,
            Some("error=http_request_error"),
        ),
        ("connect-udp", "/elsewhere", 404, None),
    ];
    for (protocol, path, status, proxy_status) in cases {
        let mut s = conn
            .open_request(
                &masque_tests::extended_connect(protocol, &authority, path),
                true,
            )
            .await?;
        let resp = within(&format!("response to {protocol} {path}"), s.recv_response()).await??;
        assert_eq!(resp.status, status, "{protocol} {path}");
        if let Some(ps) = proxy_status {
            let got = resp.headers.get("proxy-status").context("proxy-status")?;
            assert!(got.to_str()?.contains(ps), "{path}: {got:?}");
        }
    }
    assert_eq!(node.node.metrics().snapshot().sessions_opened, 0);
    node.node.shutdown().await;
    Ok(())
}

/// STACK-NOTES lesson: a proxy must close its side of every finished tunnel
/// or the connection's stream credit leaks. Open the limit at once, close all,
/// and open the limit again, three times, on one connection.
///
/// quinn announces returned credit (MAX_STREAMS) only once more than 1/8 of the
/// stream window has been freed, so up to that much credit is withheld after a
/// close-all. With N = 300 that is more than the 16 spare streams the node used
/// to add; the window must leave room for it (`masque_h3::request_stream_window`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_tunnels_return_stream_credit() -> Result<()> {
    init_tracing();
    const N: usize = 300;
    let node = TestNode::start_with(true, None, |c| c.max_tunnels_per_connection = N).await?;
    let echo = udp_echo().await?;
    let client = masque_client::ProxyClient::connect(&node.url(), node.client_options()).await?;
    let authority = format!("localhost:{}", node.node.local_addr().port());
    for round in 0..3 {
        let mut opening = tokio::task::JoinSet::new();
        for i in 0..N {
            let (conn, authority) = (client.connection().clone(), authority.clone());
            let options = node.client_options();
            opening.spawn(async move {
                let target = udp(echo);
                let open = masque_client::UdpSession::open_on(&conn, &authority, &target, &options);
                tokio::time::timeout(Duration::from_secs(5), open)
                    .await
                    .with_context(|| format!("round {round}: tunnel {i} waited for stream credit"))?
                    .with_context(|| format!("round {round}: tunnel {i}"))
            });
        }
        let mut open = Vec::with_capacity(N);
        while let Some(s) = opening.join_next().await {
            open.push(s??);
        }
        let mut closing = tokio::task::JoinSet::new();
        for s in open {
            closing.spawn(s.close());
        }
        while closing.join_next().await.is_some() {}
        let m = node.node.metrics();
        eventually("sessions closed", Duration::from_secs(5), || {
            m.active_sessions() == 0
        })
        .await?;
    }
    node.node.shutdown().await;
    Ok(())
}

/// ICMP port unreachable from the target does not end the tunnel (the
/// issue's rule; R9298-20 would close it, a documented deviation): it is
/// counted, and once something listens on the port the tunnel carries traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icmp_port_unreachable_keeps_the_tunnel() -> Result<()> {
    init_tracing();
    let node = TestNode::start(true).await?;
    // A loopback port with nothing behind it (bound, noted, released).
    let closed = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let mut s = masque_client::connect(&node.url(), udp(closed), node.client_options()).await?;
    let m = node.node.metrics();
    // Each send draws an ICMP port unreachable; send until one is counted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while m.snapshot().icmp_unreachable == 0 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no ICMP error counted"
        );
        s.send(b"anyone?").await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Now a target appears on that port: the same tunnel reaches it.
    let target = tokio::net::UdpSocket::bind(closed).await?;
    let echo = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            let Ok((n, from)) = target.recv_from(&mut buf).await else {
                return;
            };
            if &buf[..n] == b"hello again" {
                let _ = target.send_to(b"back", from).await;
                return;
            }
        }
    });
    let back = async {
        loop {
            s.send(b"hello again").await?;
            match tokio::time::timeout(Duration::from_millis(200), s.recv()).await {
                Ok(Some(b)) => return anyhow::Ok(b),
                Ok(None) => anyhow::bail!("tunnel ended after the ICMP error"),
                Err(_) => continue,
            }
        }
    };
    let got = tokio::time::timeout(Duration::from_secs(5), back).await??;
    assert_eq!(&got[..], b"back");
    echo.await?;
    assert_eq!(m.active_sessions(), 1, "the tunnel is still open");
    s.close().await;
    node.node.shutdown().await;
    Ok(())
}

/// R9298-50: a target datagram too large for the tunnel's QUIC datagrams is
/// dropped and counted; the tunnel goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_target_datagram_is_dropped_and_counted() -> Result<()> {
    init_tracing();
    let node = TestNode::start(true).await?;
    let target = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let addr = target.local_addr()?;
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        if let Ok((_, from)) = target.recv_from(&mut buf).await {
            // Larger than any QUIC datagram on a 1500-byte-class path, then a small one.
            let _ = target.send_to(&[7u8; 4000], from).await;
            let _ = target.send_to(b"small", from).await;
        }
    });
    let mut s = masque_client::connect(&node.url(), udp(addr), node.client_options()).await?;
    s.send(b"go").await?;
    let got = tokio::time::timeout(Duration::from_secs(5), s.recv())
        .await?
        .context("tunnel ended")?;
    assert_eq!(&got[..], b"small");
    let snap = node.node.metrics().snapshot();
    assert_eq!(snap.datagrams_from_target, 2);
    assert_eq!(snap.datagrams_to_client_dropped, 1);
    s.close().await;
    node.node.shutdown().await;
    Ok(())
}

/// One-for-one restart: a killed H3Listener comes back under its
/// ListenerSupervisor on the same address (port 0 was resolved once, and the
/// restart keeps it), re-registers, and new clients connect; the node and
/// its supervisors stay up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_listener_is_restarted_on_the_same_address() -> Result<()> {
    init_tracing();
    let node = TestNode::start_with(true, None, |c| c.name = "restart-test".into()).await?;
    let echo = udp_echo().await?;
    let before = masque_registry::lookup("restart-test").context("listener registered")?;
    assert_eq!(before.local_addr, node.node.local_addr());
    let root = node.node.supervisor().get_cell();
    let listener = actor_tree(&root)
        .into_iter()
        .find(|a| a.get_id() == before.owner)
        .context("listener actor in the tree")?;
    listener.kill();
    eventually(
        "listener restarted and re-registered",
        Duration::from_secs(5),
        || masque_registry::lookup("restart-test").is_some_and(|i| i.owner != before.owner),
    )
    .await?;
    let after = masque_registry::lookup("restart-test").context("re-registered")?;
    assert_eq!(
        after.local_addr, before.local_addr,
        "same address after the restart"
    );
    let mut s = masque_client::connect(&node.url(), udp(echo), node.client_options()).await?;
    s.send(b"after restart").await?;
    let back = tokio::time::timeout(Duration::from_secs(5), s.recv())
        .await?
        .context("tunnel ended")?;
    assert_eq!(&back[..], b"after restart");
    s.close().await;
    assert!(root.get_status() == ractor::ActorStatus::Running);
    node.node.shutdown().await;
    Ok(())
}

/// The listener's QUIC socket gets the buffers `ServerConfig` asks for, and
/// the client's the ones `ClientOptions` asks for, as far as the kernel allows
/// (Linux: granted = 2 x min(asked, rmem_max / wmem_max)), instead of the
/// kernel's small default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_socket_buffers_are_applied() -> Result<()> {
    init_tracing();
    let sysctl = |name: &str| -> Result<usize> {
        let path = format!("/proc/sys/net/core/{name}");
        Ok(std::fs::read_to_string(&path)
            .with_context(|| path.clone())?
            .trim()
            .parse()?)
    };
    let (rmem_max, wmem_max) = (sysctl("rmem_max")?, sysctl("wmem_max")?);
    let (recv, send) = (1 << 20, 512 << 10);
    let node = TestNode::start_with(true, None, |c| {
        c.quic_recv_buffer = recv;
        c.quic_send_buffer = send;
    })
    .await?;
    let granted = node.node.quic_buffer_sizes();
    assert_eq!(granted.recv, 2 * recv.min(rmem_max), "{granted:?}");
    assert_eq!(granted.send, 2 * send.min(wmem_max), "{granted:?}");
    // The client's endpoint socket likewise, and the tunnel works.
    let options = masque_client::ClientOptions {
        socket_recv_buffer: 768 << 10,
        socket_send_buffer: 256 << 10,
        ..node.client_options()
    };
    let client = masque_client::ProxyClient::connect(&node.url(), options).await?;
    let granted = client.socket_buffer_sizes();
    assert_eq!(
        granted.recv,
        2 * (768usize << 10).min(rmem_max),
        "{granted:?}"
    );
    assert_eq!(
        granted.send,
        2 * (256usize << 10).min(wmem_max),
        "{granted:?}"
    );
    let echo = udp_echo().await?;
    let mut s = client.open_udp(&udp(echo)).await?;
    s.send(b"buffered").await?;
    assert_eq!(&next_datagram(&mut s, "echo").await?[..], b"buffered");
    s.close().await;
    node.node.shutdown().await;
    Ok(())
}

/// R9298-51: the proxy sends Not-ECT to the target, whatever the client's
/// packets carried, and ignores ECN on the target's packets (a CE-marked reply
/// is relayed like any other). A control sender marked ECT(0) first shows that
/// this machine's loopback carries ECN to the target socket, so the Not-ECT
/// check can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r9298_51_not_ect_to_target_and_target_ecn_ignored() -> Result<()> {
    use quinn::udp::{EcnCodepoint, RecvMeta, Transmit, UdpSocketState};
    init_tracing();
    let std_target = std::net::UdpSocket::bind("127.0.0.1:0")?;
    std_target.set_nonblocking(true)?;
    let state = UdpSocketState::new((&std_target).into())?;
    let target = tokio::net::UdpSocket::from_std(std_target)?;
    let target_addr = target.local_addr()?;
    let mut storage = vec![0u8; 65_536];
    // Receives one batch; returns (sender, ECN, payload) of each datagram in it.
    type Received = (std::net::SocketAddr, Option<EcnCodepoint>, Vec<u8>);
    let mut recv = async || -> Result<Vec<Received>> {
        let mut metas = [RecvMeta::default()];
        loop {
            within("a datagram at the target", target.readable()).await??;
            let mut iov = [std::io::IoSliceMut::new(&mut storage)];
            match target.try_io(tokio::io::Interest::READABLE, || {
                state.recv((&target).into(), &mut iov, &mut metas)
            }) {
                Ok(_) => {
                    let m = metas[0];
                    let stride = if m.stride == 0 { m.len } else { m.stride };
                    return Ok(storage[..m.len]
                        .chunks(stride)
                        .map(|d| (m.addr, m.ecn, d.to_vec()))
                        .collect());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            }
        }
    };
    // Control: ECT(0) set by a plain sender does reach the target socket.
    let control = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let control_state = UdpSocketState::new((&control).into())?;
    control_state.send(
        (&control).into(),
        &Transmit {
            destination: target_addr,
            ecn: Some(EcnCodepoint::Ect0),
            contents: b"control",
            segment_size: None,
            src_ip: None,
        },
    )?;
    let got = recv().await?;
    assert_eq!(
        got[0].1,
        Some(EcnCodepoint::Ect0),
        "ECN is not observable here"
    );

    let node = TestNode::start(true).await?;
    let mut s =
        masque_client::connect(&node.url(), udp(target_addr), node.client_options()).await?;
    // One datagram alone, then a burst (which the node may send as GSO runs).
    s.send(b"single").await?;
    for _ in 0..20 {
        s.send(&[7u8; 1000]).await?;
    }
    let mut seen = 0;
    let mut node_addr = None;
    while seen < 21 {
        for (from, ecn, payload) in recv().await? {
            assert_eq!(ecn, None, "the node sent ECN {ecn:?} to the target");
            assert!(payload == b"single" || payload == [7u8; 1000]);
            node_addr = Some(from);
            seen += 1;
        }
    }
    // The target answers marked CE: relayed as usual, the marking ignored.
    let reply = Transmit {
        destination: node_addr.context("node address")?,
        ecn: Some(EcnCodepoint::Ce),
        contents: b"congested reply",
        segment_size: None,
        src_ip: None,
    };
    target.try_io(tokio::io::Interest::WRITABLE, || {
        state.try_send((&target).into(), &reply)
    })?;
    assert_eq!(
        &next_datagram(&mut s, "the CE-marked reply").await?[..],
        b"congested reply"
    );
    s.close().await;
    node.node.shutdown().await;
    Ok(())
}

const TOKEN: &str = "test-token-0123456789abcdef";

async fn node_with_token() -> Result<TestNode> {
    TestNode::start_with(true, None, |c| {
        c.auth = masque_server::ProxyAuth::bearer_tokens([TOKEN]).expect("a valid token");
    })
    .await
}

/// R9298-52: with bearer tokens configured, a request without credentials or
/// with a wrong token gets 407, a Bearer challenge and `Proxy-Status`
/// `http_request_denied`, before any session; the right token gets a tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r9298_52_bearer_token_required() -> Result<()> {
    init_tracing();
    let node = node_with_token().await?;
    let echo = udp_echo().await?;
    // No credentials, on the wire: the status and both header fields.
    let client = masque_client::ProxyClient::connect(&node.url(), node.client_options()).await?;
    let head = masque_tests::extended_connect(
        "connect-udp",
        &format!("localhost:{}", node.node.local_addr().port()),
        &format!("/.well-known/masque/udp/{}/{}/", echo.ip(), echo.port()),
    );
    let mut stream = client.connection().open_request(&head, true).await?;
    let resp = within("the 407", stream.recv_response()).await??;
    assert_eq!(resp.status, 407);
    assert_eq!(
        resp.headers["proxy-authenticate"],
        "Bearer realm=\"masque-node\""
    );
    let ps = resp.headers["proxy-status"].to_str()?;
    assert!(
        ps.contains("error=http_request_denied") && ps.contains("authentication required"),
        "{ps}"
    );
    // A wrong token, through the client library.
    let wrong = node
        .client_options()
        .with_bearer_token("not-the-token-0123456789")?;
    let refused = masque_client::connect(&node.url(), udp(echo), wrong).await;
    let ps = expect_refusal(refused, 407, "http_request_denied")?;
    assert!(ps.contains("invalid proxy credentials"), "{ps}");
    // The right one.
    let right = node.client_options().with_bearer_token(TOKEN)?;
    let mut s = masque_client::connect(&node.url(), udp(echo), right).await?;
    s.send(b"authorized").await?;
    assert_eq!(&next_datagram(&mut s, "echo").await?[..], b"authorized");
    s.close().await;
    let snap = node.node.metrics().snapshot();
    assert_eq!(snap.tunnels_refused_auth, 2, "{snap:?}");
    assert_eq!(snap.sessions_opened, 1, "no session for a refused request");
    node.node.shutdown().await;
    Ok(())
}

/// R9298-52 against an independent client: aioquic gets 407 with a Bearer
/// challenge without credentials and with a wrong token, and its tunnel with
/// `proxy-authorization: Bearer <token>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r9298_52_bearer_token_with_aioquic() -> Result<()> {
    init_tracing();
    let node = node_with_token().await?;
    let echo = udp_echo().await?;
    let stdout = run_aioquic_connect_udp(&node, echo, &["--bearer", TOKEN]).await?;
    assert_eq!(stdout.matches("PASS ").count(), 3, "{stdout}");
    node.node.shutdown().await;
    Ok(())
}
