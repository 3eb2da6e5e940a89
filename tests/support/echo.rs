//! An HTTP/3 echo server on masque-h3, used as the server side of interop tests
//! and benchmarks. It is a test fixture, not the proxy: tunnels echo their body
//! bytes and HTTP datagrams back to the client.
//!
//! - extended CONNECT with `connect-udp`, `connect-ip`, `connect-tcp`: 200 (with
//!   `capsule-protocol: ?1` for udp/ip), echo body and datagrams until FIN;
//!   any other `:protocol`: 501 (XC-10);
//! - classic CONNECT: 200, echo body;
//! - `GET /goaway`: 200 "bye", then GOAWAY; other GET: 200 "hello".

use std::net::SocketAddr;

use bytes::Bytes;
use masque_h3::{Connection, RequestHead, RequestStream, ResponseHead};

use crate::TestCert;

/// A running echo server; dropping it stops accepting.
pub struct EchoServer {
    pub addr: SocketAddr,
    pub endpoint: quinn::Endpoint,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
        self.endpoint.close(0u32.into(), b"test over");
    }
}

impl EchoServer {
    pub fn start(cert: &TestCert, max_streams: u32) -> anyhow::Result<Self> {
        let endpoint = crate::server_endpoint(cert, max_streams)?;
        let addr = endpoint.local_addr()?;
        let ep = endpoint.clone();
        let task = tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                tokio::spawn(async move {
                    let Ok(quic) = incoming.await else { return };
                    let Ok(conn) = Connection::server(quic, masque_h3::Config::default()).await
                    else {
                        return;
                    };
                    while let Some((head, stream)) = conn.accept().await {
                        tokio::spawn(serve(conn.clone(), head, stream));
                    }
                });
            }
        });
        Ok(Self {
            addr,
            endpoint,
            task,
        })
    }
}

fn response(status: u16, capsules: bool) -> ResponseHead {
    let mut head = ResponseHead::new(http::StatusCode::from_u16(status).expect("valid status"));
    if capsules {
        head.headers
            .insert("capsule-protocol", http::HeaderValue::from_static("?1"));
    }
    head
}

async fn serve(conn: Connection, head: RequestHead, mut stream: RequestStream) {
    let protocol = head.protocol.as_ref().map(|p| p.as_str().to_owned());
    match (head.method.as_str(), protocol.as_deref()) {
        ("CONNECT", Some(p @ ("connect-udp" | "connect-ip" | "connect-tcp"))) => {
            let capsules = p != "connect-tcp";
            if stream.send_response(&response(200, capsules)).await.is_ok() {
                echo(stream).await;
            }
        }
        ("CONNECT", Some(_)) => {
            let _ = stream.send_response(&response(501, false)).await;
            let _ = stream.send.finish();
        }
        ("CONNECT", None) => {
            if stream.send_response(&response(200, false)).await.is_ok() {
                echo(stream).await;
            }
        }
        _ => {
            let goaway = head.path.as_ref().map(|p| p.as_str()) == Some("/goaway");
            let body = if goaway { "bye" } else { "hello" };
            if stream.send_response(&response(200, false)).await.is_ok() {
                let _ = stream
                    .send
                    .send_data(Bytes::from_static(body.as_bytes()))
                    .await;
                let _ = stream.send.finish();
            }
            if goaway {
                let _ = conn.goaway().await;
            }
        }
    }
}

/// Echoes body bytes and datagrams until the client finishes its side.
async fn echo(mut stream: RequestStream) {
    let datagrams = stream.take_datagrams();
    let (mut send, mut recv, _) = stream.into_parts();
    let dg_task = match (datagrams, send.datagram_sender().await) {
        (Some(mut rx), Ok(tx)) => Some(tokio::spawn(async move {
            let mut batch = Vec::with_capacity(64);
            while rx.recv_many(&mut batch, 64).await > 0 {
                for d in batch.drain(..) {
                    if tx.forward(d).await.is_err() {
                        return;
                    }
                }
            }
        })),
        _ => None,
    };
    while let Ok(Some(chunk)) = recv.recv_data().await {
        if send.send_data(chunk).await.is_err() {
            break;
        }
    }
    let _ = send.finish();
    if let Some(t) = dg_task {
        t.abort();
    }
}
