//! A tiny in-test connect-udp proxy on masque-h3: it accepts extended CONNECT
//! `connect-udp`, answers as its [`Mode`] says, records each request and echoes
//! datagrams. Special payloads (after Context ID 0) trigger behaviours:
//! `capsule` -> the reply comes as a DATAGRAM capsule on the stream;
//! `unknown` -> a Context ID 2 datagram, then `after` with Context ID 0;
//! `oversize` -> a DATAGRAM capsule with a 65528-byte UDP payload (R9298-41).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::{Bytes, BytesMut};
use masque_client::ClientOptions;
use masque_h3::{Connection, RequestHead, RequestStream, ResponseHead, SendHalf};
use masque_proto::capsule;
use masque_transport::tls::{ALPN_H3, DevCert, ServerVerification};

/// How the proxy answers tunnel requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 + `capsule-protocol: ?1`, echo until the client's FIN, then FIN.
    Echo,
    /// Echo the first datagram, then FIN (the tunnel ends).
    CloseAfterFirst,
    /// 200 with `content-length: 0` (R9297-20).
    ContentLength,
    /// 200 without `capsule-protocol` (R9298-31).
    NoCapsuleProtocol,
    /// 502 with a `Proxy-Status` (R9298-32).
    Refuse,
}

pub const PROXY_STATUS: &str = "masque-test; error=destination_ip_prohibited";

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub authority: String,
    pub path: String,
    pub capsule_protocol: Option<String>,
}

pub struct Proxy {
    pub addr: SocketAddr,
    pub cert: DevCert,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    endpoint: quinn::Endpoint,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.endpoint.close(0u32.into(), b"test over");
    }
}

impl Proxy {
    pub fn start(mode: Mode) -> anyhow::Result<Self> {
        let cert = DevCert::ephemeral()?;
        let mut transport = masque_h3::transport_config(256);
        transport.initial_mtu(1452);
        let cfg = cert
            .server_tls()
            .quic_server_config(&[ALPN_H3], Arc::new(transport))?;
        let endpoint = quinn::Endpoint::server(cfg, "127.0.0.1:0".parse()?)?;
        let addr = endpoint.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ep, log) = (endpoint.clone(), Arc::clone(&seen));
        let task = tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let Ok(quic) = incoming.await else { return };
                    let Ok(conn) = Connection::server(quic, masque_h3::Config::default()).await
                    else {
                        return;
                    };
                    while let Some((head, stream)) = conn.accept().await {
                        record(&log, &head);
                        tokio::spawn(serve(mode, head, stream));
                    }
                });
            }
        });
        Ok(Self {
            addr,
            cert,
            seen,
            endpoint,
            task,
        })
    }

    /// `https://localhost:<port>`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Options trusting this proxy's certificate by its pin.
    pub fn options(&self) -> ClientOptions {
        ClientOptions {
            verification: ServerVerification::PinnedSha256(self.cert.fingerprint_sha256()),
            ..ClientOptions::default()
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn record(log: &Mutex<Vec<Seen>>, head: &RequestHead) {
    log.lock().unwrap().push(Seen {
        authority: head
            .authority
            .as_ref()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        path: head
            .path
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        capsule_protocol: head
            .headers
            .get("capsule-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
}

fn response(status: u16, fields: &[(&'static str, &'static str)]) -> ResponseHead {
    let mut head = ResponseHead::new(http::StatusCode::from_u16(status).unwrap());
    for (k, v) in fields {
        head.headers.append(*k, http::HeaderValue::from_static(v));
    }
    head
}

async fn serve(mode: Mode, head: RequestHead, mut stream: RequestStream) {
    if head.protocol.as_ref().map(|p| p.as_str()) != Some("connect-udp") {
        let _ = stream.send_response(&response(501, &[])).await;
        let _ = stream.send.finish();
        return;
    }
    let cp = ("capsule-protocol", "?1");
    let head = match mode {
        Mode::Echo | Mode::CloseAfterFirst => response(200, &[cp]),
        Mode::ContentLength => response(200, &[cp, ("content-length", "0")]),
        Mode::NoCapsuleProtocol => response(200, &[]),
        Mode::Refuse => response(502, &[("proxy-status", PROXY_STATUS)]),
    };
    if stream.send_response(&head).await.is_err() {
        return;
    }
    if !matches!(mode, Mode::Echo | Mode::CloseAfterFirst) {
        let _ = stream.send.finish();
        // Keep reading so the client's abort is observed, not a connection error.
        while let Ok(Some(_)) = stream.recv.recv_data().await {}
        return;
    }
    echo(mode, stream).await;
}

async fn echo(mode: Mode, mut stream: RequestStream) {
    let Some(mut rx) = stream.take_datagrams() else {
        return;
    };
    let (send, mut recv, _) = stream.into_parts();
    let Ok(tx) = send.datagram_sender().await else {
        return;
    };
    let send = Arc::new(tokio::sync::Mutex::new(send));
    let writer = Arc::clone(&send);
    let dg_task = tokio::spawn(async move {
        while let Some(d) = rx.recv_datagram().await {
            let ok = match d.payload() {
                b"\x00capsule" => write_capsule(&writer, b"\x00from-capsule").await,
                b"\x00oversize" => write_capsule(&writer, &[0; 1 + 65528]).await,
                b"\x00unknown" => {
                    let unknown = tx.send_payload(b"\x02ignored").await.is_ok();
                    unknown && tx.send_payload(b"\x00after").await.is_ok()
                }
                _ => tx.forward(d).await.is_ok(),
            };
            if !ok || mode == Mode::CloseAfterFirst {
                let _ = writer.lock().await.finish();
                return;
            }
        }
    });
    while let Ok(Some(_)) = recv.recv_data().await {}
    // The client finished (or reset): finish our side too.
    let _ = send.lock().await.finish();
    dg_task.abort();
}

async fn write_capsule(send: &tokio::sync::Mutex<SendHalf>, value: &[u8]) -> bool {
    let mut buf = BytesMut::new();
    capsule::encode(capsule::DATAGRAM, value, &mut buf);
    let data: Bytes = buf.freeze();
    send.lock().await.send_data(data).await.is_ok()
}
