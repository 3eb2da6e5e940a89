//! A peer that withholds stream credit cannot park the node ("Hard to break"
//! §2): HTTP/3 setup, the response HEADERS and the relay's writes to the
//! client each have a deadline, after which the connection is closed or the
//! stream reset, and the event counted. Every wait here is bounded.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use masque_proto::{capsule::Capsule, proxy_status::TunnelFailure};
use masque_server::{
    Action, CloseReason, Handler, Refusal, Target as ServerTarget, TunnelHandler, TunnelOutput,
    TunnelTask,
};
use masque_tests::{
    init_tracing,
    node::{TestNode, eventually},
    within,
};
use masque_transport::TunnelRequest;

/// A short deadline for the tests: well under every bounded wait.
const DEADLINE: Duration = Duration::from_millis(300);

/// Far more than the client's stream window.
const BIG: usize = 16 * 1024;

/// The client's per-stream receive window: room for SETTINGS and a 2xx, not
/// for the handler's output.
const WINDOW: u32 = 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// After the 2xx, one capsule of `BIG` bytes (the control queue).
    Capsule,
    /// After the 2xx, `BIG` bytes of datagrams, sent as DATAGRAM capsules (the
    /// client has no QUIC datagrams).
    Datagrams,
    /// `init` refuses with a response larger than the window.
    Refuse,
}

type Log = Arc<Mutex<Vec<String>>>;

struct Flood {
    mode: Mode,
    log: Log,
}

#[async_trait::async_trait]
impl Handler for Flood {
    async fn init(
        &self,
        _request: &TunnelRequest,
        _target: &ServerTarget,
        out: TunnelOutput,
    ) -> Result<Box<dyn TunnelHandler>, Refusal> {
        let mode = self.mode;
        if mode == Mode::Refuse {
            let details: String = (0..BIG)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            return Err(Refusal::new(TunnelFailure::HandlerFailed).with_details(details));
        }
        let task_out = out.clone();
        let task = out.spawn(async move {
            if !task_out.opened().await {
                return;
            }
            match mode {
                Mode::Capsule => {
                    let _ = task_out.send_capsule(Capsule {
                        ty: 0x2a,
                        value: Bytes::from(vec![7u8; BIG]),
                    });
                }
                _ => {
                    for _ in 0..BIG / 1000 {
                        let _ = task_out.send_datagram(0, &[9u8; 1000]).await;
                    }
                }
            }
        });
        Ok(Box::new(Tunnel {
            log: Arc::clone(&self.log),
            _task: task,
        }))
    }
}

struct Tunnel {
    log: Log,
    _task: TunnelTask,
}

impl TunnelHandler for Tunnel {
    fn datagram(&mut self, _context_id: u64, _payload: Bytes) -> Action {
        Action::Continue
    }

    fn terminate(&mut self, reason: &CloseReason) {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!("terminate {reason:?}"));
    }
}

fn terminated(log: &Log) -> Vec<String> {
    log.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// A node serving every tunnel with `Flood(mode)`, short deadlines.
async fn node(mode: Mode) -> Result<(TestNode, Log)> {
    let log = Log::default();
    let handler = Arc::new(Flood {
        mode,
        log: Arc::clone(&log),
    });
    let node = TestNode::with_handler_config(handler, |c| {
        c.session.write_deadline = DEADLINE;
        c.h3_setup_timeout = DEADLINE;
    })
    .await?;
    Ok((node, log))
}

/// A raw quinn client trusting the node, with `tweak` applied to its transport.
fn client(
    node: &TestNode,
    tweak: impl FnOnce(&mut quinn::TransportConfig),
) -> Result<quinn::Endpoint> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(node.cert.cert_der().clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = masque_tests::loopback_transport(16);
    tweak(&mut transport);
    cfg.transport_config(Arc::new(transport));
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    ep.set_default_client_config(cfg);
    Ok(ep)
}

async fn connect(ep: &quinn::Endpoint, node: &TestNode) -> Result<quinn::Connection> {
    let quic = within(
        "QUIC handshake",
        ep.connect(node.node.local_addr(), "localhost")?,
    )
    .await?
    .context("QUIC handshake")?;
    Ok(quic)
}

/// Opens a CONNECT-UDP request (no HTTP/3 datagrams asked for).
async fn open(conn: &masque_h3::Connection, node: &TestNode) -> Result<masque_h3::RequestStream> {
    let mut head = masque_tests::extended_connect(
        "connect-udp",
        &format!("localhost:{}", node.node.local_addr().port()),
        "/.well-known/masque/udp/192.0.2.1/9/",
    );
    head.headers
        .insert("capsule-protocol", http::HeaderValue::from_static("?1"));
    Ok(within("open request", conn.open_request(&head, false)).await??)
}

/// A client that grants the node no unidirectional stream: HTTP/3 setup
/// (control stream, SETTINGS) cannot happen, and after `h3_setup_timeout` the
/// node closes the connection and counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_setup_without_uni_streams_times_out() -> Result<()> {
    init_tracing();
    let (node, _log) = node(Mode::Capsule).await?;
    let ep = client(&node, |t| {
        t.max_concurrent_uni_streams(0u32.into());
    })?;
    let quic = connect(&ep, &node).await?;
    let err = within("the node closes the connection", quic.closed()).await?;
    ensure!(
        matches!(err, quinn::ConnectionError::ApplicationClosed(_)),
        "closed by the node: {err}"
    );
    let m = node.node.metrics().snapshot();
    assert_eq!(m.h3_setup_timeouts, 1);
    assert_eq!(m.connections_accepted, 0);
    within("shutdown", node.node.shutdown()).await?;
    Ok(())
}

/// The relay's write of a capsule (control queue) or of DATAGRAM capsules
/// to a client that never reads: after the write deadline the stream is
/// reset, the tunnel ends as `WriteStalled` and the event is counted; the
/// session does not linger, and shutdown is prompt.
async fn relay_write_stalls(mode: Mode) -> Result<()> {
    init_tracing();
    let (node, log) = node(mode).await?;
    let ep = client(&node, |t| {
        t.stream_receive_window(WINDOW.into());
        if mode == Mode::Datagrams {
            t.datagram_receive_buffer_size(None);
        }
    })?;
    let quic = connect(&ep, &node).await?;
    let conn = within(
        "HTTP/3 setup",
        masque_h3::Connection::client(quic, masque_h3::Config::default()),
    )
    .await??;
    let mut stream = open(&conn, &node).await?;
    let resp = within("tunnel response", stream.recv_response()).await??;
    assert_eq!(resp.status, 200, "{mode:?}");
    // We never read the body: the node's write waits for credit.
    let m = node.node.metrics();
    eventually(
        "the stalled write timed out",
        Duration::from_secs(5),
        || m.snapshot().writes_timed_out == 1,
    )
    .await
    .with_context(|| format!("{mode:?}"))?;
    eventually("the session ended", Duration::from_secs(5), || {
        m.active_sessions() == 0
    })
    .await?;
    assert_eq!(terminated(&log), vec!["terminate WriteStalled".to_owned()]);
    // The client sees the reset (after whatever data got through).
    let end = within("the stream ends", async {
        loop {
            match stream.recv.recv_data().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    })
    .await?;
    ensure!(
        matches!(end, Err(masque_h3::Error::StreamReset(_))),
        "{mode:?}: the stream was reset, not finished: {end:?}"
    );
    within("shutdown", node.node.shutdown()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_capsule_write_resets_the_tunnel() -> Result<()> {
    relay_write_stalls(Mode::Capsule).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_datagram_capsules_reset_the_tunnel() -> Result<()> {
    relay_write_stalls(Mode::Datagrams).await
}

/// A write stalled when shutdown begins does not hold the node: the relay
/// is bounded, so shutdown completes within the deadlines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_a_stalled_write() -> Result<()> {
    init_tracing();
    let (node, log) = node(Mode::Capsule).await?;
    let ep = client(&node, |t| {
        t.stream_receive_window(WINDOW.into());
    })?;
    let quic = connect(&ep, &node).await?;
    let conn = within(
        "HTTP/3 setup",
        masque_h3::Connection::client(quic, masque_h3::Config::default()),
    )
    .await??;
    let mut stream = open(&conn, &node).await?;
    let resp = within("tunnel response", stream.recv_response()).await??;
    assert_eq!(resp.status, 200);
    let m = Arc::clone(node.node.metrics());
    within("shutdown", node.node.shutdown()).await?;
    eventually("the session ended", Duration::from_secs(5), || {
        m.active_sessions() == 0
    })
    .await?;
    let seen = terminated(&log);
    ensure!(
        seen == ["terminate WriteStalled"] || seen == ["terminate Shutdown"],
        "{seen:?}"
    );
    Ok(())
}

/// A refusal whose response HEADERS exceed the client's window: the answer
/// is bounded by the write deadline, then the stream is reset and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_refusal_is_reset() -> Result<()> {
    init_tracing();
    let (node, _log) = node(Mode::Refuse).await?;
    let ep = client(&node, |t| {
        t.stream_receive_window(WINDOW.into());
    })?;
    let quic = connect(&ep, &node).await?;
    let conn = within(
        "HTTP/3 setup",
        masque_h3::Connection::client(quic, masque_h3::Config::default()),
    )
    .await??;
    let mut stream = open(&conn, &node).await?;
    // We do not read the answer (yet): it outgrows the window.
    let m = node.node.metrics();
    eventually(
        "the stalled answer timed out",
        Duration::from_secs(5),
        || m.snapshot().writes_timed_out == 1,
    )
    .await?;
    assert_eq!(m.snapshot().tunnels_refused, 1);
    let resp = within("the refusal ends", stream.recv_response()).await?;
    ensure!(
        matches!(resp, Err(masque_h3::Error::StreamReset(_))),
        "the stream was reset: {resp:?}"
    );
    eventually("the session ended", Duration::from_secs(5), || {
        m.active_sessions() == 0
    })
    .await?;
    within("shutdown", node.node.shutdown()).await?;
    Ok(())
}

/// A 2xx that cannot go out: the client grants a few bytes per stream and
/// does not read its request stream. After the write deadline the stream is
/// reset, `terminate(WriteStalled)` runs and the event is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_2xx_is_reset() -> Result<()> {
    init_tracing();
    let (node, log) = node(Mode::Capsule).await?;
    let ep = client(&node, |t| {
        // The control and QPACK streams get through as the client reads them.
        t.stream_receive_window(4u32.into());
    })?;
    let quic = connect(&ep, &node).await?;
    let conn = within(
        "HTTP/3 setup",
        masque_h3::Connection::client(quic, masque_h3::Config::default()),
    )
    .await??;
    let mut stream = open(&conn, &node).await?;
    let m = node.node.metrics();
    eventually("the stalled 2xx timed out", Duration::from_secs(5), || {
        m.snapshot().writes_timed_out == 1
    })
    .await?;
    eventually("the session ended", Duration::from_secs(5), || {
        m.active_sessions() == 0
    })
    .await?;
    assert_eq!(terminated(&log), vec!["terminate WriteStalled".to_owned()]);
    assert_eq!(m.snapshot().tunnels_established, 0);
    let resp = within("the request ends", stream.recv_response()).await?;
    ensure!(
        matches!(resp, Err(masque_h3::Error::StreamReset(_))),
        "the stream was reset: {resp:?}"
    );
    within("shutdown", node.node.shutdown()).await?;
    Ok(())
}

/// A peer that takes the node's control stream and stops reading it once
/// SETTINGS are in: the GOAWAY of the idle close finds no credit. The router
/// gives up on it after `goaway_timeout` (counted) and closes the connection
/// instead of being parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_goaway_does_not_park_the_router() -> Result<()> {
    init_tracing();
    let handler = Arc::new(Flood {
        mode: Mode::Capsule,
        log: Log::default(),
    });
    let node = TestNode::with_handler_config(handler, |c| {
        c.connection_idle_timeout = Some(Duration::from_millis(800));
        c.goaway_timeout = DEADLINE;
    })
    .await?;
    let ep = client(&node, |t| {
        t.stream_receive_window(1u32.into());
    })?;
    let quic = connect(&ep, &node).await?;
    // Reads each of the node's unidirectional streams until it has been quiet
    // for 100 ms, then holds it unread (dropping it would be STOP_SENDING).
    let reader = {
        let quic = quic.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            let quiet = Duration::from_millis(100);
            while let Ok(Ok(mut s)) = tokio::time::timeout(quiet * 3, quic.accept_uni()).await {
                while let Ok(Ok(Some(_))) =
                    tokio::time::timeout(quiet, s.read_chunk(64, true)).await
                {}
                held.push(s);
            }
            held
        })
    };
    let m = node.node.metrics();
    eventually("the GOAWAY timed out", Duration::from_secs(5), || {
        m.snapshot().goaway_timeouts == 1
    })
    .await?;
    eventually("the router stopped", Duration::from_secs(5), || {
        m.snapshot().connections_closed == 1
    })
    .await?;
    assert_eq!(m.snapshot().connections_idle_closed, 1);
    within("the node closes the connection", quic.closed()).await?;
    let held = within("reader", reader).await??;
    ensure!(!held.is_empty(), "the node opened its control stream");
    within("shutdown", node.node.shutdown()).await?;
    Ok(())
}

/// The client's `connect_timeout` covers everything up to the first tunnel,
/// HTTP/3 start included: against a QUIC server that completes the
/// handshake but grants no unidirectional stream (so no control stream, no
/// SETTINGS) and sends nothing, `ProxyClient::connect` fails with
/// `ClientError::Timeout` once the timeout passed, not later and not never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connect_timeout_covers_http3_start() -> Result<()> {
    init_tracing();
    let cert = masque_tests::self_signed()?;
    let mut transport = masque_tests::loopback_transport(16);
    transport.max_concurrent_uni_streams(0u32.into());
    let server = masque_tests::server_endpoint(&cert, 16)?;
    let mut cfg = {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.cert.clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key.clone_key()),
            )?;
        tls.alpn_protocols = vec![b"h3".to_vec()];
        quinn::ServerConfig::with_crypto(Arc::new(
            quinn::crypto::rustls::QuicServerConfig::try_from(tls)?,
        ))
    };
    cfg.transport_config(Arc::new(transport));
    server.set_server_config(Some(cfg));
    let addr = server.local_addr()?;
    let ep = server.clone();
    let silent = tokio::spawn(async move {
        // Accepts, then holds the connection and does nothing.
        let mut held = Vec::new();
        while let Some(inc) = ep.accept().await {
            if let Ok(c) = inc.await {
                held.push(c);
            }
        }
    });
    let limit = Duration::from_millis(600);
    let options = masque_client::ClientOptions {
        verification: masque_transport::tls::ServerVerification::CustomCa(vec![cert.cert.clone()]),
        connect_timeout: limit,
        // HTTP/3 itself: `auto` would race, and report the race's failure.
        transport: masque_client::TransportChoice::H3,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let r = within(
        "connect gives up",
        masque_client::ProxyClient::connect(&format!("https://localhost:{}", addr.port()), options),
    )
    .await?;
    let took = started.elapsed();
    ensure!(
        matches!(r, Err(masque_client::ClientError::Timeout(t)) if t == limit),
        "expected a timeout, got {r:?}"
    );
    ensure!(took >= limit, "gave up after {took:?}, before the timeout");
    silent.abort();
    Ok(())
}
