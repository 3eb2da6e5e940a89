//! The client face against the server face of this crate, on loopback, over
//! each transport; and the HTTP/1.1 101 checks and request heads as tables.
//! Every wait is bounded.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, StatusCode};
use masque_proto::{
    capsule,
    tunnel::{DatagramEvent, DatagramRules, TunnelCore, TunnelEvent},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tokio_rustls::TlsAcceptor;

use super::{h1::Verdict, *};
use crate::{
    DatagramRx, DatagramTx, ResetReason, ServerConnection, TunnelRequest,
    server::{H1Config, H2Config},
    tls::{ALPN_H2, ALPN_H3, ALPN_HTTP11, DevCert},
    tunnel::BodyRx,
};

const WAIT: Duration = Duration::from_secs(10);

async fn within<F: Future>(f: F) -> Result<F::Output> {
    tokio::time::timeout(WAIT, f)
        .await
        .context("test step timed out")
}

fn headers(fields: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in fields {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

// ---------------------------------------------------------------- 101 checks

/// RFC 9110 §7.8, RFC 9298 §3.2: only a 101 naming our token with
/// `Connection: upgrade` is a tunnel.
#[test]
fn h1_101_checks() {
    let ok = headers(&[("upgrade", "connect-udp"), ("connection", "Upgrade")]);
    let s101 = StatusCode::SWITCHING_PROTOCOLS;
    assert_eq!(h1::verdict(Some("connect-udp"), s101, &ok), Verdict::Tunnel);
    // Token case and list syntax do not matter.
    let mixed = headers(&[
        ("upgrade", " Connect-UDP "),
        ("connection", "keep-alive, upgrade"),
    ]);
    assert_eq!(
        h1::verdict(Some("connect-udp"), s101, &mixed),
        Verdict::Tunnel
    );
    let cases: &[(&[(&'static str, &'static str)], &str)] = &[
        (&[("connection", "upgrade")], "without an Upgrade"),
        (
            &[("upgrade", "websocket"), ("connection", "upgrade")],
            "websocket",
        ),
        (
            &[("upgrade", "connect-udp, h2c"), ("connection", "upgrade")],
            "not `connect-udp`",
        ),
        (&[("upgrade", "connect-udp")], "Connection"),
        (
            &[("upgrade", "connect-udp"), ("connection", "close")],
            "Connection",
        ),
    ];
    for (fields, why) in cases {
        match h1::verdict(Some("connect-udp"), s101, &headers(fields)) {
            Verdict::Invalid(reason) => assert!(reason.contains(why), "{fields:?}: {reason}"),
            other => panic!("{fields:?}: {other:?}"),
        }
    }
    // A 2xx to an upgrade: the proxy ignored it.
    assert!(matches!(
        h1::verdict(Some("connect-udp"), StatusCode::OK, &ok),
        Verdict::Invalid(r) if r.contains("instead of 101")
    ));
    // Failures are refusals; classic CONNECT wants a 2xx.
    for s in [400, 403, 407, 502, 503] {
        let s = StatusCode::from_u16(s).unwrap();
        assert_eq!(h1::verdict(Some("connect-udp"), s, &ok), Verdict::Refused);
        assert_eq!(h1::verdict(None, s, &ok), Verdict::Refused);
    }
    assert_eq!(
        h1::verdict(None, StatusCode::OK, &HeaderMap::new()),
        Verdict::Tunnel
    );
    assert_eq!(h1::verdict(None, s101, &ok), Verdict::Refused);
}

// ------------------------------------------------------------ test servers

/// How the test server answers a request.
#[derive(Debug, Clone)]
enum Answer {
    /// Accept with these headers, then echo body bytes and datagrams until the
    /// client finishes, then finish.
    Echo(HeaderMap),
    Reject(StatusCode, HeaderMap),
}

/// A server of this crate's server face: HTTP/3 on UDP, HTTP/2 and HTTP/1.1
/// (ALPN) on TCP, each on its own port.
struct Server {
    cert: DevCert,
    udp: SocketAddr,
    tcp: SocketAddr,
    endpoint: quinn::Endpoint,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    seen: Arc<std::sync::Mutex<Vec<TunnelRequest>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.endpoint.close(0u32.into(), b"");
    }
}

impl Server {
    async fn start(answer: Answer) -> Result<Self> {
        let cert = DevCert::ephemeral()?;
        let tls = cert.server_tls();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let quic =
            tls.quic_server_config(&[ALPN_H3], Arc::new(masque_h3::transport_config(256)))?;
        let endpoint = quinn::Endpoint::server(quic, "127.0.0.1:0".parse()?)?;
        let udp = endpoint.local_addr()?;
        let (ep, a, log) = (endpoint.clone(), answer.clone(), Arc::clone(&seen));
        let h3 = tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let (a, log) = (a.clone(), Arc::clone(&log));
                tokio::spawn(async move {
                    let Ok(quic) = incoming.await else { return };
                    let Ok(conn) = masque_h3::Connection::server(quic, Default::default()).await
                    else {
                        return;
                    };
                    serve(ServerConnection::h3(conn, Default::default()), a, log).await;
                });
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let tcp = listener.local_addr()?;
        let acceptor =
            TlsAcceptor::from(Arc::new(tls.rustls_server_config(&[ALPN_H2, ALPN_HTTP11])?));
        let (a, log) = (answer, Arc::clone(&seen));
        let tcp_task = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let (acceptor, a, log) = (acceptor.clone(), a.clone(), Arc::clone(&log));
                tokio::spawn(async move {
                    let Ok(io) = acceptor.accept(stream).await else {
                        return;
                    };
                    let h2 = io.get_ref().1.alpn_protocol() == Some(ALPN_H2);
                    let limits = Default::default();
                    let conn = if h2 {
                        let config = H2Config {
                            max_concurrent_streams: 256,
                            ..H2Config::default()
                        };
                        match ServerConnection::h2(io, peer, &config, limits).await {
                            Ok(c) => c,
                            Err(_) => return,
                        }
                    } else {
                        ServerConnection::h1(io, peer, &H1Config::default(), limits, None)
                    };
                    serve(conn, a, log).await;
                });
            }
        });
        Ok(Self {
            cert,
            udp,
            tcp,
            endpoint,
            tasks: vec![h3, tcp_task],
            seen,
        })
    }

    fn addr(&self, t: Transport) -> SocketAddr {
        match t {
            Transport::H3 => self.udp,
            _ => self.tcp,
        }
    }

    fn config(&self) -> ClientConfig {
        ClientConfig {
            verification: ServerVerification::PinnedSha256(self.cert.fingerprint_sha256()),
            connect_timeout: WAIT,
            open_timeout: WAIT,
            ..ClientConfig::default()
        }
    }

    async fn connect(&self, t: Transport) -> Result<ClientConnection> {
        let config = self.config();
        let c = ClientConnection::connect(t, self.addr(t), "localhost", &config);
        Ok(within(c).await??)
    }
}

async fn serve(
    conn: ServerConnection,
    answer: Answer,
    log: Arc<std::sync::Mutex<Vec<TunnelRequest>>>,
) {
    while let Some(p) = conn.accept().await {
        log.lock().unwrap().push(p.request.clone());
        let (answer, keep) = (answer.clone(), conn.clone());
        tokio::spawn(async move {
            match answer {
                Answer::Reject(status, h) => p.reject(status, h).await,
                Answer::Echo(h) => {
                    if let Ok(t) = p.accept(h).await {
                        echo(t).await;
                    }
                }
            }
            drop(keep);
        });
    }
}

/// Echoes body bytes as they come and datagrams as datagrams; finishes after
/// the client's FIN.
async fn echo(t: OpenTunnel) {
    let OpenTunnel {
        mut body_tx,
        mut body_rx,
        datagram_tx,
        mut datagram_rx,
        capsules: _capsules,
    } = t;
    loop {
        tokio::select! {
            d = recv_datagram(&mut datagram_rx) => match d {
                Some(d) => {
                    let mut b = datagram_tx.buffer(d.len());
                    b.payload_mut().extend_from_slice(&d);
                    let _ = datagram_tx.send(b).await;
                }
                None => datagram_rx = None,
            },
            c = body_rx.recv() => match c {
                Ok(Some(bytes)) => {
                    if body_tx.send(bytes).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    body_tx.finish().await;
                    return;
                }
                Err(_) => {
                    body_tx.reset(ResetReason::Cancelled);
                    return;
                }
            },
        }
    }
}

async fn recv_datagram(rx: &mut Option<DatagramRx>) -> Option<Bytes> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn capsule_protocol() -> HeaderMap {
    headers(&[("capsule-protocol", "?1")])
}

fn udp_head(server: &Server, t: Transport) -> TunnelHead {
    let mut head = TunnelHead::extended(
        "connect-udp",
        format!("localhost:{}", server.addr(t).port()),
        "/.well-known/masque/udp/192.0.2.6/443/",
    );
    head.headers = capsule_protocol();
    head.datagrams = true;
    head
}

/// Reads the body until the next DATAGRAM capsule's payload; `None` at FIN.
async fn next_capsule_datagram(rx: &mut BodyRx, core: &mut TunnelCore) -> Result<Option<Bytes>> {
    loop {
        if let Some(ev) = core.next_event()? {
            match ev {
                TunnelEvent::Datagram(DatagramEvent::Payload { payload, .. }) => {
                    return Ok(Some(payload));
                }
                other => bail!("unexpected {other:?}"),
            }
        }
        match rx.recv().await? {
            Some(chunk) => core.push_body(chunk),
            None => {
                core.on_fin()?;
                return Ok(None);
            }
        }
    }
}

fn udp_core() -> TunnelCore {
    TunnelCore::new(DatagramRules::udp(), capsule::DEFAULT_MAX_CAPSULE_SIZE)
}

fn datagram(tx: &DatagramTx, payload: &[u8]) -> crate::OutDatagram {
    let mut b = tx.buffer(1 + payload.len());
    b.payload_mut().extend_from_slice(&[0]);
    b.payload_mut().extend_from_slice(payload);
    b
}

// ------------------------------------------------------------------ tunnels

/// Open, a datagram each way (native on HTTP/3, capsules elsewhere), FIN
/// both ways; the response status is 200 (101 on HTTP/1.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_echo_and_finish_on_each_transport() -> Result<()> {
    let server = Server::start(Answer::Echo(capsule_protocol())).await?;
    for t in Transport::ALL {
        let conn = server.connect(t).await?;
        assert_eq!(conn.transport(), t);
        assert_eq!(conn.peer(), server.addr(t));
        assert_eq!(conn.as_h3().is_some(), t == Transport::H3);
        let opened = within(conn.open(&udp_head(&server, t))).await??;
        let expected = match t {
            Transport::H1 => StatusCode::SWITCHING_PROTOCOLS,
            _ => StatusCode::OK,
        };
        assert_eq!(opened.response.status, expected, "{t}");
        assert_eq!(opened.response.headers["capsule-protocol"], "?1");
        let OpenTunnel {
            body_tx,
            mut body_rx,
            datagram_tx,
            mut datagram_rx,
            capsules,
        } = opened.tunnel;
        assert_eq!(datagram_tx.is_capsule(), t != Transport::H3, "{t}");
        assert_eq!(capsules.is_some(), t != Transport::H3);
        let writer = TunnelWriter::spawn(body_tx, capsules);
        let mut core = udp_core();
        let mut echoed = None;
        for _ in 0..20 {
            datagram_tx.try_send(datagram(&datagram_tx, b"ping"))?;
            let got = match &mut datagram_rx {
                Some(rx) => tokio::time::timeout(Duration::from_millis(500), rx.recv())
                    .await
                    .ok()
                    .flatten()
                    .map(|d| core.on_datagram(d)),
                None => {
                    let d = within(next_capsule_datagram(&mut body_rx, &mut core)).await??;
                    d.map(|p| {
                        Ok(DatagramEvent::Payload {
                            context_id: 0,
                            payload: p,
                        })
                    })
                }
            };
            if let Some(ev) = got {
                echoed = Some(ev?);
                break;
            }
        }
        assert_eq!(
            echoed,
            Some(DatagramEvent::Payload {
                context_id: 0,
                payload: Bytes::from_static(b"ping")
            }),
            "{t}"
        );
        writer.finish();
        assert_eq!(within(writer.ended()).await?, WriterEnd::Finished);
        // The server finishes after our FIN: a clean end on a capsule boundary.
        assert_eq!(
            within(next_capsule_datagram(&mut body_rx, &mut core)).await??,
            None
        );
        drop(datagram_tx);
        within(conn.shutdown(Duration::from_secs(2))).await?;
        assert!(conn.is_closed(), "{t}");
    }
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for (r, t) in seen.iter().zip(Transport::ALL) {
        assert_eq!(r.transport, t);
        let form = r.form.clone().unwrap();
        assert_eq!(
            form,
            RequestForm::Extended {
                protocol: "connect-udp".into(),
                authority: format!("localhost:{}", server.addr(t).port()),
                path: "/.well-known/masque/udp/192.0.2.6/443/".into(),
            }
        );
        assert_eq!(r.headers["capsule-protocol"], "?1");
    }
    Ok(())
}

/// A finish after a burst of queued capsules writes them all first; the
/// server's echo comes back complete, then its FIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_comes_after_queued_capsules() -> Result<()> {
    let server = Server::start(Answer::Echo(capsule_protocol())).await?;
    for t in [Transport::H2, Transport::H1] {
        let conn = server.connect(t).await?;
        let tunnel = within(conn.open(&udp_head(&server, t))).await??.tunnel;
        let (tx, mut rx) = (tunnel.datagram_tx, tunnel.body_rx);
        for i in 0..200u32 {
            tx.try_send(datagram(&tx, &i.to_be_bytes()))?;
        }
        let writer = TunnelWriter::spawn(tunnel.body_tx, tunnel.capsules);
        writer.finish();
        let mut core = udp_core();
        for i in 0..200u32 {
            let got = within(next_capsule_datagram(&mut rx, &mut core)).await??;
            assert_eq!(got.as_deref(), Some(&i.to_be_bytes()[..]), "{t}");
        }
        assert_eq!(
            within(next_capsule_datagram(&mut rx, &mut core)).await??,
            None
        );
        assert_eq!(within(writer.ended()).await?, WriterEnd::Finished);
        assert_eq!(writer.end(), Some(WriterEnd::Finished));
        // Nothing is accepted once the writer is gone.
        assert!(matches!(
            tx.try_send(datagram(&tx, b"late")),
            Err(TunnelError::Closed)
        ));
    }
    Ok(())
}

/// Flow control: several times the stream and connection windows flow both
/// ways through one tunnel (HTTP/2 credit released as the body is read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_body_beyond_the_windows() -> Result<()> {
    let server = Server::start(Answer::Echo(capsule_protocol())).await?;
    const TOTAL: usize = 20 << 20;
    for t in Transport::ALL {
        let conn = server.connect(t).await?;
        let tunnel = within(conn.open(&udp_head(&server, t))).await??.tunnel;
        let (mut tx, mut rx) = (tunnel.body_tx, tunnel.body_rx);
        let writer = tokio::spawn(async move {
            let chunk = Bytes::from(vec![7u8; 64 * 1024]);
            let mut sent = 0;
            while sent < TOTAL {
                tx.send(chunk.clone()).await?;
                sent += chunk.len();
            }
            tx.finish().await;
            Ok::<_, TunnelError>(tx)
        });
        let mut got = 0;
        while let Some(chunk) = within(rx.recv()).await?? {
            assert!(chunk.iter().all(|&b| b == 7));
            got += chunk.len();
        }
        assert_eq!(got, TOTAL, "{t}");
        drop(within(writer).await???);
    }
    Ok(())
}

/// A refusal comes back with its status and fields on every transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_on_each_transport() -> Result<()> {
    let ps = "masque-test; error=destination_ip_prohibited";
    let answer = Answer::Reject(StatusCode::FORBIDDEN, headers(&[("proxy-status", ps)]));
    let server = Server::start(answer).await?;
    for t in Transport::ALL {
        let conn = server.connect(t).await?;
        match within(conn.open(&udp_head(&server, t))).await? {
            Err(OpenError::Refused(head)) => {
                assert_eq!(head.status, StatusCode::FORBIDDEN, "{t}");
                assert_eq!(head.headers["proxy-status"], ps, "{t}");
            }
            other => bail!("{t}: {other:?}"),
        }
        // The connection still opens tunnels (HTTP/1.1: a new one each time).
        assert!(matches!(
            within(conn.open(&udp_head(&server, t))).await?,
            Err(OpenError::Refused(_))
        ));
    }
    Ok(())
}

/// Classic CONNECT on each transport: `:authority` only / `CONNECT host:port`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_connect_on_each_transport() -> Result<()> {
    let server = Server::start(Answer::Echo(HeaderMap::new())).await?;
    for t in Transport::ALL {
        let conn = server.connect(t).await?;
        let opened = within(conn.open(&TunnelHead::classic("192.0.2.6:443"))).await??;
        assert_eq!(opened.response.status, StatusCode::OK, "{t}");
        let (mut tx, mut rx) = (opened.tunnel.body_tx, opened.tunnel.body_rx);
        tx.send(Bytes::from_static(b"raw bytes")).await?;
        let mut got = BytesMut::new();
        while got.len() < 9 {
            got.extend_from_slice(&within(rx.recv()).await??.context("ended")?);
        }
        assert_eq!(&got[..], b"raw bytes");
        tx.finish().await;
    }
    let seen = server.seen.lock().unwrap().clone();
    for r in seen {
        assert_eq!(
            r.form.unwrap(),
            RequestForm::Classic {
                authority: "192.0.2.6:443".into()
            }
        );
    }
    Ok(())
}

/// Many tunnels share one connection (HTTP/3, HTTP/2); HTTP/1.1 dials one
/// connection each. Stream ids (sequence numbers on HTTP/1.1) are distinct.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tunnels_on_each_transport() -> Result<()> {
    let server = Server::start(Answer::Echo(capsule_protocol())).await?;
    for t in Transport::ALL {
        let conn = server.connect(t).await?;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..40 {
            let (conn, head) = (conn.clone(), udp_head(&server, t));
            tasks.spawn(async move { conn.open(&head).await });
        }
        let mut ids = Vec::new();
        let mut tunnels = Vec::new();
        while let Some(r) = within(tasks.join_next()).await? {
            let opened = r??;
            ids.push(opened.stream_id);
            tunnels.push(opened.tunnel);
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 40, "{t}");
        for tunnel in tunnels {
            let w = TunnelWriter::spawn(tunnel.body_tx, tunnel.capsules);
            w.finish();
            assert_eq!(within(w.ended()).await?, WriterEnd::Finished);
        }
    }
    Ok(())
}

/// An abort resets our side: the server's read ends in an error (HTTP/3,
/// HTTP/2 reset) or the connection closes (HTTP/1.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_resets_our_side() -> Result<()> {
    let server = Server::start(Answer::Echo(capsule_protocol())).await?;
    for t in Transport::ALL {
        let conn = server.connect(t).await?;
        let tunnel = within(conn.open(&udp_head(&server, t))).await??.tunnel;
        let mut rx = tunnel.body_rx;
        let w = TunnelWriter::spawn(tunnel.body_tx, tunnel.capsules);
        w.abort(ResetReason::Cancelled);
        w.finish(); // too late: the abort stands
        assert_eq!(
            within(w.ended()).await?,
            WriterEnd::Aborted(ResetReason::Cancelled)
        );
        if t == Transport::H1 {
            // Our read half still holds the connection open: let it go.
            drop(rx);
            continue;
        }
        // The echo server resets its side when its read fails.
        let end = within(rx.recv()).await?;
        assert!(
            matches!(&end, Err(e) if e.reset_code().is_some()),
            "{t}: {end:?}"
        );
    }
    Ok(())
}

// ------------------------------------------- peers that break the rules

/// RFC 8441 §3: without SETTINGS_ENABLE_CONNECT_PROTOCOL no extended CONNECT
/// is sent; a classic CONNECT still is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_extended_connect_needs_the_setting() -> Result<()> {
    let cert = DevCert::ephemeral()?;
    let acceptor = TlsAcceptor::from(Arc::new(
        cert.server_tls().rustls_server_config(&[ALPN_H2])?,
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let io = acceptor.accept(tcp).await?;
        // A plain HTTP/2 server: no enable_connect_protocol().
        let mut conn = ::h2::server::handshake(io).await?;
        while let Some(r) = conn.accept().await {
            let (req, mut respond) = r?;
            let _ = seen_tx.send(req.method().clone());
            let _ = respond.send_response(http::Response::new(()), false);
        }
        Ok::<_, anyhow::Error>(())
    });
    let config = ClientConfig {
        verification: ServerVerification::PinnedSha256(cert.fingerprint_sha256()),
        ..ClientConfig::default()
    };
    let conn = within(ClientConnection::connect(
        Transport::H2,
        addr,
        "localhost",
        &config,
    ))
    .await??;
    let head = TunnelHead::extended("connect-udp", "localhost", "/x");
    let err = within(conn.open(&head)).await?.unwrap_err();
    assert!(matches!(err, OpenError::ExtendedConnectDisabled), "{err}");
    let opened = within(conn.open(&TunnelHead::classic("192.0.2.6:443"))).await??;
    assert_eq!(opened.response.status, StatusCode::OK);
    assert_eq!(within(seen.recv()).await?, Some(http::Method::CONNECT));
    assert!(seen.try_recv().is_err(), "the extended CONNECT was sent");
    conn.close();
    server.abort();
    Ok(())
}

/// A TLS server that answers the first HTTP/1.1 request head with `reply`
/// (raw bytes, sent in one write) and then holds the connection.
async fn raw_h1_server(reply: &'static [u8]) -> Result<(SocketAddr, DevCert)> {
    let cert = DevCert::ephemeral()?;
    let acceptor = TlsAcceptor::from(Arc::new(
        cert.server_tls().rustls_server_config(&[ALPN_HTTP11])?,
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut io) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if io.write_all(reply).await.is_err() {
                    return;
                }
                let _ = io.flush().await;
                let _ = tokio::time::timeout(WAIT, io.read(&mut buf)).await;
            });
        }
    });
    Ok((addr, cert))
}

async fn h1_open(reply: &'static [u8]) -> Result<Result<Opened, OpenError>> {
    let (addr, cert) = raw_h1_server(reply).await?;
    let config = ClientConfig {
        verification: ServerVerification::PinnedSha256(cert.fingerprint_sha256()),
        ..ClientConfig::default()
    };
    let conn = ClientConnection::connect(Transport::H1, addr, "localhost", &config).await?;
    let mut head = TunnelHead::extended("connect-udp", format!("localhost:{}", addr.port()), "/u");
    head.headers = capsule_protocol();
    within(conn.open(&head)).await
}

/// The HTTP/1.1 answer decides: a valid 101 is a tunnel (and bytes sent right
/// after it are kept), anything else is refused or invalid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_answers_on_the_wire() -> Result<()> {
    // 101 plus a DATAGRAM capsule (context 0, "hi") in the same write.
    let opened = h1_open(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: connect-udp\r\nConnection: Upgrade\r\n\
          Capsule-Protocol: ?1\r\n\r\n\x00\x03\x00hi",
    )
    .await??;
    assert_eq!(opened.response.status, StatusCode::SWITCHING_PROTOCOLS);
    let mut rx = opened.tunnel.body_rx;
    let got = within(next_capsule_datagram(&mut rx, &mut udp_core())).await??;
    assert_eq!(got.as_deref(), Some(&b"hi"[..]));

    let invalid: [(&'static [u8], &str); 3] = [
        (
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\n",
            "without an Upgrade",
        ),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "websocket",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "instead of 101"),
    ];
    for (reply, why) in invalid {
        match h1_open(reply).await? {
            Err(OpenError::InvalidUpgrade { reason, .. }) => {
                assert!(reason.contains(why), "{reason}")
            }
            other => bail!("{why}: {other:?}"),
        }
    }
    let refused = h1_open(
        b"HTTP/1.1 502 Bad Gateway\r\nProxy-Status: p; error=dns_error\r\nConnection: close\r\n\
          Content-Length: 0\r\n\r\n",
    )
    .await?;
    match refused {
        Err(OpenError::Refused(head)) => {
            assert_eq!(head.status, StatusCode::BAD_GATEWAY);
            assert_eq!(head.headers["proxy-status"], "p; error=dns_error");
        }
        other => bail!("{other:?}"),
    }
    Ok(())
}

/// A certificate that does not match the pin fails the TLS handshake (TCP
/// transports) with a typed error; ALPN must match for HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_are_typed() -> Result<()> {
    let server = Server::start(Answer::Echo(capsule_protocol())).await?;
    let wrong = ClientConfig {
        verification: ServerVerification::PinnedSha256([0x42; 32]),
        ..server.config()
    };
    let err = within(ClientConnection::connect(
        Transport::H2,
        server.tcp,
        "localhost",
        &wrong,
    ))
    .await?
    .unwrap_err();
    assert!(matches!(err, ConnectError::TlsHandshake(_)), "{err}");
    let conn = ClientConnection::connect(Transport::H1, server.tcp, "localhost", &wrong).await?;
    let err = within(conn.open(&udp_head(&server, Transport::H1)))
        .await?
        .unwrap_err();
    assert!(
        matches!(err, OpenError::Connect(ConnectError::TlsHandshake(_))),
        "{err}"
    );
    let err = within(ClientConnection::connect(
        Transport::H3,
        server.udp,
        "localhost",
        &wrong,
    ))
    .await?
    .unwrap_err();
    assert!(matches!(err, ConnectError::Quic(_)), "{err}");
    // A server that only speaks HTTP/1.1 refuses ALPN h2.
    let (addr, cert) = raw_h1_server(b"").await?;
    let config = ClientConfig {
        verification: ServerVerification::PinnedSha256(cert.fingerprint_sha256()),
        ..ClientConfig::default()
    };
    let err = within(ClientConnection::connect(
        Transport::H2,
        addr,
        "localhost",
        &config,
    ))
    .await?
    .unwrap_err();
    // rustls ends the handshake with no_application_protocol, or we see no ALPN.
    assert!(
        matches!(
            err,
            ConnectError::TlsHandshake(_) | ConnectError::Alpn { .. }
        ),
        "{err}"
    );
    Ok(())
}
