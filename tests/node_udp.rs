//! CONNECT-UDP through a real node on loopback, the HTTP/3-only part:
//! aioquic as an independent client (QUIC datagrams, capsules only, bearer
//! tokens), raw HTTP/3 capsules, the H3 listener's restart, QUIC socket
//! buffers and ECN. The behaviours every transport shares (relaying,
//! refusals, limits, credentials, timeouts, cleanup) run over HTTP/3, HTTP/2
//! and HTTP/1.1 in node_transports.rs. Requirement ids: R9298-*, R9297-*,
//! PS-*.

use std::time::Duration;

use anyhow::{Context, Result};
use masque_tests::transport::udp_target as udp;
use masque_tests::{
    init_tracing, interop_python, interop_script,
    node::{TestNode, actor_tree, eventually, next_datagram, udp_echo},
    within,
};

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

/// Opens a CONNECT-UDP tunnel to `echo` with the raw masque-h3 client (QUIC
/// datagrams on, Capsule Protocol announced), so that the test writes capsules
/// by hand. Keep the client: dropping it closes the connection.
async fn raw_tunnel(
    node: &TestNode,
    echo: std::net::SocketAddr,
) -> Result<(masque_client::ProxyClient, masque_h3::RequestStream)> {
    let client = masque_client::ProxyClient::connect(&node.url(), node.client_options()).await?;
    let conn = client.h3_connection().context("HTTP/3")?.clone();
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
    Ok((client, stream))
}

/// Waits for the server's reset of `stream` and checks it is H3_MESSAGE_ERROR.
async fn expect_message_error(stream: &mut masque_h3::RequestStream) -> Result<()> {
    let r = tokio::time::timeout(Duration::from_secs(5), stream.recv.recv_data()).await?;
    match r {
        Err(masque_h3::Error::StreamReset(code)) => {
            assert_eq!(code, masque_h3::Code::MESSAGE_ERROR)
        }
        other => panic!("expected H3_MESSAGE_ERROR reset, got {other:?}"),
    }
    Ok(())
}

/// Sends `what` in a Context-ID-0 DATAGRAM capsule and waits for the echo
/// (a QUIC datagram).
async fn echo_via_capsule(
    stream: &mut masque_h3::RequestStream,
    rx: &mut masque_h3::DatagramReceiver,
    what: &str,
) -> Result<()> {
    let sent = format!("\0{what}");
    let mut body = Vec::new();
    masque_proto::capsule::encode(masque_proto::capsule::DATAGRAM, sent.as_bytes(), &mut body);
    stream.send.send_data(body.into()).await?;
    let back = within(what, rx.recv()).await?.context("tunnel ended")?;
    assert_eq!(&back[..], sent.as_bytes());
    Ok(())
}

/// Real malformations reset the stream with H3_MESSAGE_ERROR and end the
/// session: a DATAGRAM capsule cut by the client's FIN (R9297-24, R9297-22),
/// and a Context-ID-0 DATAGRAM capsule whose UDP payload exceeds 65527 bytes
/// (R9298-41; Length 65529 fits the 64 KiB capsule bound, so it is the
/// payload rule that fires).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_capsule_resets_stream() -> Result<()> {
    init_tracing();
    let node = TestNode::start(true).await?;
    let echo = udp_echo().await?;
    let m = node.node.metrics();

    // R9297-24: `00 04 00 01` then FIN.
    let (_client, mut stream) = raw_tunnel(&node, echo).await?;
    stream
        .send
        .send_data(bytes::Bytes::from_static(&[0x00, 0x04, 0x00, 0x01]))
        .await?;
    stream.send.finish()?;
    expect_message_error(&mut stream).await?;
    eventually("session closed", Duration::from_secs(5), || {
        m.active_sessions() == 0
    })
    .await?;
    assert_eq!(m.snapshot().capsules_malformed, 1);

    // R9298-41: Context ID 0 and 65528 bytes of UDP payload.
    let (_client2, mut stream) = raw_tunnel(&node, echo).await?;
    let mut capsule = Vec::new();
    masque_proto::capsule::encode_header(masque_proto::capsule::DATAGRAM, 1 + 65528, &mut capsule);
    capsule.push(0x00);
    capsule.resize(capsule.len() + 65528, 0x5a);
    stream.send.send_data(capsule.into()).await?;
    expect_message_error(&mut stream).await?;
    eventually("session closed", Duration::from_secs(5), || {
        m.active_sessions() == 0
    })
    .await?;
    let snap = m.snapshot();
    assert_eq!(snap.datagrams_dropped_oversize, 1, "{snap:?}");
    assert_eq!(snap.capsules_malformed, 2, "{snap:?}");
    node.node.shutdown().await;
    Ok(())
}

/// R9297-17, R9297-38: a 100 KiB GREASE capsule (over the 64 KiB capsule
/// bound) and a 100 KiB DATAGRAM capsule of an unknown Context ID (R9298-38)
/// are skipped as they stream past, not treated as malformed: the tunnel keeps
/// echoing before and after them, and the session stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grease_capsule_over_the_bound_is_skipped() -> Result<()> {
    use masque_proto::capsule;
    init_tracing();
    let node = TestNode::start(true).await?;
    let echo = udp_echo().await?;
    let m = node.node.metrics();
    let (_client, mut stream) = raw_tunnel(&node, echo).await?;
    let mut rx = stream.take_datagrams().context("datagram receiver")?;
    echo_via_capsule(&mut stream, &mut rx, "before").await?;
    let mut big = Vec::new();
    capsule::encode(
        capsule::grease_type(1000).context("grease type")?,
        &vec![0xee; 100 * 1024],
        &mut big,
    );
    capsule::encode_header(capsule::DATAGRAM, 1 + 100 * 1024, &mut big);
    big.push(0x06);
    big.resize(big.len() + 100 * 1024, 0xdd);
    for chunk in big.chunks(7000) {
        stream
            .send
            .send_data(bytes::Bytes::copy_from_slice(chunk))
            .await?;
    }
    echo_via_capsule(&mut stream, &mut rx, "after").await?;
    let snap = m.snapshot();
    assert_eq!(snap.capsules_malformed, 0, "{snap:?}");
    assert_eq!(snap.datagrams_dropped_unknown_context, 1, "{snap:?}");
    assert_eq!(m.active_sessions(), 1);
    stream.send.finish()?;
    eventually("session closed", Duration::from_secs(5), || {
        m.active_sessions() == 0
    })
    .await?;
    assert_eq!(m.snapshot().capsules_malformed, 0);
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
    // Datagrams may be lost (RFC 9297), more so on a loaded machine: the
    // target takes what arrives until all 21 did or none came for 2 s, checks
    // each one, and needs most of the burst (so GSO runs were carried too).
    let mut seen = 0;
    let mut burst = 0;
    let mut node_addr = None;
    while seen < 21 {
        let batch = match tokio::time::timeout(Duration::from_secs(2), recv()).await {
            Ok(batch) => batch?,
            Err(_) if seen > 0 => break,
            // The first one gets `recv`'s own (longer) bound.
            Err(_) => recv().await?,
        };
        for (from, ecn, payload) in batch {
            assert_eq!(ecn, None, "the node sent ECN {ecn:?} to the target");
            assert!(payload == b"single" || payload == [7u8; 1000]);
            burst += usize::from(payload == [7u8; 1000]);
            node_addr = Some(from);
            seen += 1;
        }
    }
    assert!(
        burst >= 10,
        "only {burst} of the 20 burst datagrams reached the target"
    );
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

/// §5 of the hardening issue: masque-h3's per-connection counters reach the
/// node's `/metrics`, live and after the connection closed: HTTP datagrams
/// for a quarter stream id with no tunnel are dropped and counted
/// (R9297-06/07).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_connection_counters_reach_metrics() -> Result<()> {
    init_tracing();
    let node = TestNode::start(true).await?;
    let echo = udp_echo().await?;
    let mut s = masque_client::connect(&node.url(), udp(echo), node.client_options()).await?;
    s.send(b"up").await?;
    next_datagram(&mut s, "echo").await?;
    let quic = s
        .h3_connection()
        .context("an HTTP/3 tunnel")?
        .quic()
        .clone();
    // Quarter stream id 25 (stream 100): never opened. Varint 25, payload.
    for _ in 0..3 {
        quic.send_datagram(bytes::Bytes::from_static(b"\x19\x00stray"))?;
    }
    let m = node.node.metrics();
    eventually("live connection counted", Duration::from_secs(5), || {
        m.h3.snapshot().datagrams_dropped_unknown_stream >= 3
    })
    .await?;
    let text = m.render_prometheus();
    assert!(
        text.contains("masque_h3_datagrams_dropped_unknown_stream 3\n"),
        "{text}"
    );
    s.close().await;
    drop(quic);
    eventually(
        "closed connection folded in",
        Duration::from_secs(10),
        || m.snapshot().connections_closed >= 1,
    )
    .await?;
    assert_eq!(m.h3.snapshot().datagrams_dropped_unknown_stream, 3);
    node.node.shutdown().await;
    Ok(())
}
