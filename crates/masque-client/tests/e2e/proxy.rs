//! A tiny in-test connect-udp proxy on masque-transport's server face:
//! HTTP/3 on UDP and HTTP/2 + HTTP/1.1 (ALPN) on TCP, at the same port number.
//! It accepts `connect-udp`, answers as its [`Mode`] says, records each request
//! and echoes datagrams (QUIC DATAGRAMs on HTTP/3, DATAGRAM capsules otherwise).
//! Special payloads (after Context ID 0) trigger behaviours:
//! `capsule` -> the reply comes as a DATAGRAM capsule on the stream;
//! `unknown` -> a Context ID 2 datagram, then `after` with Context ID 0;
//! `oversize` -> a DATAGRAM capsule with a 65528-byte UDP payload (R9298-41).
//!
//! TCP tunnels (connect-tcp with any served token, classic CONNECT) get a
//! script chosen by the target port ([`TcpScript`]), whatever the mode: the
//! framing faults a real proxy never shows. connect-ip tunnels get one by
//! target address (`crate::ip_proxy::IpScript`).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, StatusCode};
use masque_client::{ClientOptions, TransportChoice};
use masque_proto::{
    capsule,
    request::RequestForm,
    tunnel::{DatagramEvent, DatagramRules, TunnelCore, TunnelEvent},
};
use masque_transport::{
    BodyTx, CapsuleQueue, DatagramRx, DatagramTx, H1Config, H2Config, OpenTunnel, PendingTunnel,
    ServerConnection, Transport, TunnelRequest,
    tls::{ALPN_H2, ALPN_H3, ALPN_HTTP11, DevCert, ServerVerification},
};
use tokio_rustls::TlsAcceptor;

/// How the proxy answers tunnel requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 2xx (101 on HTTP/1.1) + `capsule-protocol: ?1`, echo until the client's
    /// FIN, then FIN.
    Echo,
    /// Echo the first datagram, then FIN (the tunnel ends).
    CloseAfterFirst,
    /// Success with `content-length: 0` (R9297-20).
    ContentLength,
    /// Success without `capsule-protocol` (R9298-31).
    NoCapsuleProtocol,
    /// 502 with a `Proxy-Status` (R9298-32).
    Refuse,
}

pub const PROXY_STATUS: &str = "masque-test; error=destination_ip_prohibited";

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub transport: Transport,
    pub authority: String,
    pub path: String,
    pub capsule_protocol: Option<String>,
}

pub struct Proxy {
    /// The UDP address; TCP listens on the same port number.
    pub addr: SocketAddr,
    pub cert: DevCert,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    endpoint: quinn::Endpoint,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.endpoint.close(0u32.into(), b"test over");
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

impl Proxy {
    pub fn start(mode: Mode) -> anyhow::Result<Self> {
        let cert = DevCert::ephemeral()?;
        let tls = cert.server_tls();
        let mut transport = masque_h3::transport_config(256);
        transport.initial_mtu(1452);
        let quic = tls.quic_server_config(&[ALPN_H3], Arc::new(transport))?;
        // UDP first, then TCP on the same port (retry if that one is taken).
        let (endpoint, tcp) = {
            let mut tries = 0;
            loop {
                let endpoint = quinn::Endpoint::server(quic.clone(), "127.0.0.1:0".parse()?)?;
                match std::net::TcpListener::bind(endpoint.local_addr()?) {
                    Ok(tcp) => break (endpoint, tcp),
                    Err(e) if tries < 20 => {
                        tries += 1;
                        tracing::debug!(error = %e, "TCP port taken; retrying");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        tcp.set_nonblocking(true)?;
        let tcp = tokio::net::TcpListener::from_std(tcp)?;
        let addr = endpoint.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ep, log) = (endpoint.clone(), Arc::clone(&seen));
        let h3 = tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let Ok(quic) = incoming.await else { return };
                    let Ok(conn) =
                        masque_h3::Connection::server(quic, masque_h3::Config::default()).await
                    else {
                        return;
                    };
                    serve(ServerConnection::h3(conn, Default::default()), mode, log).await;
                });
            }
        });
        let acceptor =
            TlsAcceptor::from(Arc::new(tls.rustls_server_config(&[ALPN_H2, ALPN_HTTP11])?));
        let log = Arc::clone(&seen);
        let tls_task = tokio::spawn(async move {
            while let Ok((stream, peer)) = tcp.accept().await {
                let (acceptor, log) = (acceptor.clone(), Arc::clone(&log));
                tokio::spawn(async move {
                    let Ok(io) = acceptor.accept(stream).await else {
                        return;
                    };
                    let limits = Default::default();
                    let conn = if io.get_ref().1.alpn_protocol() == Some(ALPN_H2) {
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
                    serve(conn, mode, log).await;
                });
            }
        });
        Ok(Self {
            addr,
            cert,
            seen,
            endpoint,
            tasks: vec![h3, tls_task],
        })
    }

    /// `https://localhost:<port>`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Options trusting this proxy's certificate by its pin, over `t`.
    pub fn options(&self, t: Transport) -> ClientOptions {
        ClientOptions {
            transport: TransportChoice::from(t),
            verification: ServerVerification::PinnedSha256(self.cert.fingerprint_sha256()),
            ..ClientOptions::default()
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Answers every request of one connection; the connection lives as long as
/// any of its tunnels.
async fn serve(conn: ServerConnection, mode: Mode, log: Log) {
    while let Some(p) = conn.accept().await {
        record(&log, &p.request);
        let keep = conn.clone();
        tokio::spawn(async move {
            tunnel(mode, p).await;
            drop(keep);
        });
    }
}

fn record(log: &Mutex<Vec<Seen>>, r: &TunnelRequest) {
    let (authority, path) = match &r.form {
        Ok(RequestForm::Extended {
            authority, path, ..
        }) => (authority.clone(), path.clone()),
        Ok(RequestForm::Classic { authority }) => (authority.clone(), String::new()),
        Err(_) => Default::default(),
    };
    log.lock().unwrap().push(Seen {
        transport: r.transport,
        authority,
        path,
        capsule_protocol: r
            .headers
            .get("capsule-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
}

fn fields(fields: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in fields {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

async fn tunnel(mode: Mode, p: PendingTunnel) {
    if let Some(script) = TcpScript::of(&p.request) {
        tcp_script(script, p).await;
        return;
    }
    if let Some(script) = crate::ip_proxy::IpScript::of(&p.request) {
        crate::ip_proxy::run(script, p).await;
        return;
    }
    let udp = matches!(
        &p.request.form,
        Ok(RequestForm::Extended { protocol, .. }) if protocol == "connect-udp"
    );
    if !udp {
        p.reject(StatusCode::NOT_IMPLEMENTED, HeaderMap::new())
            .await;
        return;
    }
    let cp = ("capsule-protocol", "?1");
    let headers = match mode {
        Mode::Echo | Mode::CloseAfterFirst => fields(&[cp]),
        Mode::ContentLength => fields(&[cp, ("content-length", "0")]),
        Mode::NoCapsuleProtocol => HeaderMap::new(),
        Mode::Refuse => {
            let h = fields(&[("proxy-status", PROXY_STATUS)]);
            p.reject(StatusCode::BAD_GATEWAY, h).await;
            return;
        }
    };
    let Ok(t) = p.accept(headers).await else {
        return;
    };
    if matches!(mode, Mode::Echo | Mode::CloseAfterFirst) {
        echo(mode, t).await;
    } else {
        // Keep reading so the client's abort is observed, not a connection error.
        let mut rx = t.body_rx;
        while let Ok(Some(_)) = rx.recv().await {}
    }
}

/// Echoes datagrams, in whichever form they came, until the client ends.
async fn echo(mode: Mode, t: OpenTunnel) {
    let OpenTunnel {
        mut body_tx,
        mut body_rx,
        datagram_tx,
        mut datagram_rx,
        mut capsules,
    } = t;
    let mut core = TunnelCore::new(DatagramRules::udp(), capsule::DEFAULT_MAX_CAPSULE_SIZE);
    let mut finished = false;
    loop {
        let payloads = tokio::select! {
            d = recv_datagram(&mut datagram_rx) => match d {
                Some(d) => vec![d],
                None => {
                    datagram_rx = None;
                    continue;
                }
            },
            c = body_rx.recv() => match c {
                Ok(Some(bytes)) => {
                    core.push_body(bytes);
                    let mut out = Vec::new();
                    while let Ok(Some(ev)) = core.next_event() {
                        if let TunnelEvent::Datagram(DatagramEvent::Payload { payload, .. }) = ev {
                            let mut d = BytesMut::from(&b"\x00"[..]);
                            d.extend_from_slice(&payload);
                            out.push(d.freeze());
                        }
                    }
                    out
                }
                // The client finished (or reset): finish our side too.
                Ok(None) => {
                    if !finished {
                        flush_queue(&mut body_tx, &mut capsules).await;
                        body_tx.finish().await;
                    }
                    return;
                }
                Err(_) => return,
            },
            c = recv_queued(&mut capsules) => {
                match c {
                    Some(c) if !finished => {
                        if body_tx.send(c).await.is_err() {
                            return;
                        }
                    }
                    Some(_) => {}
                    None => capsules = None,
                }
                continue;
            }
        };
        for d in payloads {
            if finished {
                break;
            }
            if !reply(&d, &datagram_tx, &mut body_tx).await {
                return;
            }
            if mode == Mode::CloseAfterFirst {
                flush_queue(&mut body_tx, &mut capsules).await;
                body_tx.finish().await;
                finished = true;
            }
        }
    }
}

/// Answers one HTTP datagram payload (Context ID first).
async fn reply(d: &[u8], tx: &DatagramTx, body: &mut BodyTx) -> bool {
    match d {
        b"\x00capsule" => write_capsule(body, b"\x00from-capsule").await,
        b"\x00oversize" => write_capsule(body, &[0; 1 + 65528]).await,
        b"\x00unknown" => send(tx, b"\x02ignored").await && send(tx, b"\x00after").await,
        other => send(tx, other).await,
    }
}

async fn send(tx: &DatagramTx, payload: &[u8]) -> bool {
    let mut b = tx.buffer(payload.len());
    b.payload_mut().extend_from_slice(payload);
    tx.send(b).await.is_ok()
}

async fn write_capsule(body: &mut BodyTx, value: &[u8]) -> bool {
    let mut buf = BytesMut::new();
    capsule::encode(capsule::DATAGRAM, value, &mut buf);
    let data: Bytes = buf.freeze();
    body.send(data).await.is_ok()
}

/// Writes what the capsule datagram sender queued (before a FIN).
async fn flush_queue(body: &mut BodyTx, q: &mut Option<CapsuleQueue>) {
    if let Some(q) = q {
        while let Some(c) = q.try_recv() {
            if body.send(c).await.is_err() {
                return;
            }
        }
    }
}

async fn recv_datagram(rx: &mut Option<DatagramRx>) -> Option<Bytes> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_queued(q: &mut Option<CapsuleQueue>) -> Option<Bytes> {
    match q {
        Some(q) => q.recv().await,
        None => std::future::pending().await,
    }
}

/// What the proxy does with a TCP tunnel, by target port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpScript {
    /// `hello ` and `world` in DATA / FINAL_DATA with unknown capsule types
    /// around them (classic: the raw bytes and FIN), then reads until the
    /// client ends and ends too.
    Greased,
    /// DATA `a`, FINAL_DATA `b`, DATA `c` (CTCP-04 broken).
    DataAfterFinal,
    /// DATA `partial`, then the stream ends without FINAL_DATA (CTCP-22).
    NoFinalData,
    /// A DATA capsule cut short by the end of the stream (R9297-24).
    Truncated,
    /// DATA `x`, then a reset with H3_CONNECT_ERROR / CONNECT_ERROR (HTTP/1.1:
    /// the connection dropped).
    Reset,
    /// A 2xx without `capsule-protocol` (connect-tcp must refuse it).
    NoCapsuleProtocol,
}

impl TcpScript {
    pub const ALL: [(TcpScript, u16); 6] = [
        (TcpScript::Greased, 1001),
        (TcpScript::DataAfterFinal, 1002),
        (TcpScript::NoFinalData, 1003),
        (TcpScript::Truncated, 1004),
        (TcpScript::Reset, 1005),
        (TcpScript::NoCapsuleProtocol, 1006),
    ];

    /// The target port that selects this script.
    pub fn port(self) -> u16 {
        Self::ALL
            .iter()
            .find(|(s, _)| *s == self)
            .map(|(_, p)| *p)
            .unwrap_or(1001)
    }

    /// The script of a connect-tcp or classic CONNECT request.
    fn of(r: &TunnelRequest) -> Option<Self> {
        let port = match &r.form {
            Ok(RequestForm::Extended { protocol, path, .. })
                if protocol.starts_with("connect-tcp") =>
            {
                path.trim_end_matches('/').rsplit('/').next()?
            }
            Ok(RequestForm::Classic { authority }) => authority.rsplit(':').next()?,
            _ => return None,
        };
        let port: u16 = port.parse().ok()?;
        Some(
            Self::ALL
                .iter()
                .find(|(_, p)| *p == port)
                .map_or(TcpScript::Greased, |(s, _)| *s),
        )
    }
}

async fn tcp_script(script: TcpScript, p: PendingTunnel) {
    let codepoints = match &p.request.form {
        Ok(RequestForm::Extended { protocol, .. }) => {
            masque_proto::tcp::Codepoints::for_token(protocol)
        }
        _ => None,
    };
    let headers = if script == TcpScript::NoCapsuleProtocol || codepoints.is_none() {
        HeaderMap::new()
    } else {
        fields(&[("capsule-protocol", "?1")])
    };
    let Ok(t) = p.accept(headers).await else {
        return;
    };
    let OpenTunnel {
        mut body_tx,
        mut body_rx,
        ..
    } = t;
    let mut out = BytesMut::new();
    let data = |out: &mut BytesMut, payload: &[u8], fin: bool| match codepoints {
        Some(c) => capsule::encode(c.capsule_type(fin), payload, out),
        None => out.extend_from_slice(payload),
    };
    let grease = |out: &mut BytesMut| {
        if codepoints.is_some() {
            capsule::encode(0x29, b"ignore me", out);
        }
    };
    match script {
        TcpScript::Greased | TcpScript::NoCapsuleProtocol => {
            grease(&mut out);
            data(&mut out, b"hello ", false);
            grease(&mut out);
            data(&mut out, b"world", codepoints.is_some());
            grease(&mut out);
        }
        TcpScript::DataAfterFinal => {
            data(&mut out, b"a", false);
            data(&mut out, b"b", true);
            data(&mut out, b"c", false);
        }
        TcpScript::NoFinalData => data(&mut out, b"partial", false),
        TcpScript::Truncated => {
            if let Some(c) = codepoints {
                capsule::encode_header(c.data, 10, &mut out);
                out.extend_from_slice(b"abc");
            }
        }
        TcpScript::Reset => data(&mut out, b"x", false),
    }
    if body_tx.send(out.freeze()).await.is_err() {
        return;
    }
    match script {
        TcpScript::Reset => {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            body_tx.reset(masque_transport::ResetReason::ConnectError);
            // HTTP/1.1 has no reset: dropping both halves closes the connection.
        }
        TcpScript::Greased | TcpScript::NoCapsuleProtocol => {
            // Until the client ends its side (or aborts), then our end.
            while let Ok(Some(_)) = body_rx.recv().await {}
            body_tx.finish().await;
        }
        _ => body_tx.finish().await,
    }
    // Let the client see our end before the halves go.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
}
