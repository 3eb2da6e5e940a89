//! HTTP/1.1 adapter (hyper): `GET` + `Upgrade` (RFC 9298 §3.4) answered 101,
//! classic `CONNECT host:port` answered 2xx; the upgraded connection carries
//! the tunnel, with any bytes the client sent after the head kept (hyper's
//! upgrade hands them over). One request per connection: every answer that
//! is not a tunnel closes it (RFC 9931: a rejected upgrade or CONNECT must
//! not leave the connection open).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{body::Incoming, server::conn::http1, service::service_fn, upgrade::OnUpgrade};
use hyper_util::rt::{TokioIo, TokioTimer};
use masque_proto::request::{H1Head, RequestForm, form_from_h1};
use tokio::sync::{Mutex, mpsc, oneshot, watch};

use super::{PendingInner, PendingTunnel, TunnelLimits};
use crate::tunnel::{
    BodyRx, BodyTx, DatagramTx, OpenTunnel, Transport, TunnelError, TunnelRequest, body::H1Reader,
    datagram::CapsuleSender,
};

/// Bounds on the request head.
#[derive(Debug, Clone)]
pub struct H1Config {
    /// Bytes of the request head (hyper's read buffer; at least 8192).
    pub max_head_size: usize,
    /// Header fields in the head.
    pub max_headers: usize,
    /// Time to receive the whole head; slower clients get 408 and a close.
    pub head_timeout: Duration,
}

impl Default for H1Config {
    fn default() -> Self {
        Self {
            max_head_size: 16 * 1024,
            max_headers: 64,
            head_timeout: Duration::from_secs(10),
        }
    }
}

type Response = http::Response<Empty<Bytes>>;

/// What the service hands to the pipeline.
struct Request {
    parts: http::request::Parts,
    upgrade: OnUpgrade,
    respond: oneshot::Sender<Response>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("parts", &self.parts)
            .finish()
    }
}

#[derive(Debug)]
pub(super) struct H1Connection {
    requests: Mutex<mpsc::Receiver<Request>>,
    /// A second handle on the TCP socket, to see a reset while hyper does
    /// not read (see [`H1Pending::reset_by_peer`]).
    peer_watch: std::sync::Mutex<Option<tokio::net::TcpStream>>,
    state: Arc<watch::Sender<State>>,
    /// The one request was handed out.
    handed_out: AtomicBool,
    /// Its answer was a 101 or 2xx: the connection now belongs to the tunnel.
    upgraded: Arc<AtomicBool>,
    /// Ends on its own (see `Drop`); kept for `Debug` and tests.
    _driver: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Serving,
    /// `close()` was called.
    Closing,
    /// hyper is done with the connection (answered and closed, upgraded, or failed).
    Done,
}

impl Drop for H1Connection {
    /// The driver finishes writing an answer already given (bounded by
    /// [`CLOSE_GRACE`]), then ends.
    fn drop(&mut self) {
        self.close();
    }
}

/// How long a closing connection may take to write the answer it was given.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

impl H1Connection {
    pub(super) fn serve<IO>(
        io: IO,
        config: &H1Config,
        peer_watch: Option<tokio::net::TcpStream>,
    ) -> Self
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(1);
        let service = service_fn(move |mut req: http::Request<Incoming>| {
            let tx = tx.clone();
            async move {
                let (respond, answer) = oneshot::channel();
                let upgrade = hyper::upgrade::on(&mut req);
                let (parts, _body) = req.into_parts();
                let closed = || std::io::Error::other("request not answered");
                tx.send(Request {
                    parts,
                    upgrade,
                    respond,
                })
                .await
                .map_err(|_| closed())?;
                // No answer (the tunnel was reset before its response): the
                // error makes hyper close the connection.
                answer.await.map_err(|_| closed())
            }
        });
        let mut b = http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(config.head_timeout)
            .max_buf_size(config.max_head_size.max(8192))
            .max_headers(config.max_headers)
            .keep_alive(false);
        let conn = b
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        let state = Arc::new(watch::channel(State::Serving).0);
        let mut state_rx = state.subscribe();
        let done = Arc::clone(&state);
        let driver = tokio::spawn(async move {
            tokio::pin!(conn);
            let closing = async {
                let _ = state_rx.wait_for(|s| *s != State::Serving).await;
            };
            let r = tokio::select! {
                r = &mut conn => Some(r),
                () = closing => tokio::time::timeout(CLOSE_GRACE, &mut conn).await.ok(),
            };
            if let Some(Err(e)) = r {
                tracing::debug!(error = %e, "HTTP/1.1 connection error");
            }
            done.send_replace(State::Done);
        });
        Self {
            requests: Mutex::new(rx),
            peer_watch: std::sync::Mutex::new(peer_watch),
            state,
            handed_out: AtomicBool::new(false),
            upgraded: Arc::new(AtomicBool::new(false)),
            _driver: driver,
        }
    }

    pub(super) async fn accept(
        &self,
        peer: SocketAddr,
        limits: TunnelLimits,
    ) -> Option<PendingTunnel> {
        if !self.handed_out.swap(true, Ordering::AcqRel) {
            let req = self.requests.lock().await.recv().await?;
            let watch = self
                .peer_watch
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            return Some(pending(
                req,
                peer,
                limits,
                Arc::clone(&self.upgraded),
                watch,
            ));
        }
        // One request per connection. A refused one ends the connection once
        // hyper has written the answer; an accepted one lives on as the
        // tunnel, which its owner closes.
        let mut state = self.state.subscribe();
        let _ = state.wait_for(|s| *s == State::Done).await;
        if self.upgraded.load(Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
        None
    }

    /// Nothing to announce on HTTP/1.1: the one tunnel drains on its own.
    pub(super) fn goaway(&self) {}

    pub(super) fn close(&self) {
        self.state.send_if_modified(|s| {
            let serving = *s == State::Serving;
            if serving {
                *s = State::Closing;
            }
            serving
        });
    }
}

fn pending(
    req: Request,
    peer: SocketAddr,
    limits: TunnelLimits,
    upgraded: Arc<AtomicBool>,
    peer_watch: Option<tokio::net::TcpStream>,
) -> PendingTunnel {
    let p = &req.parts;
    let lines = |name: http::header::HeaderName| -> Vec<&[u8]> {
        p.headers
            .get_all(name)
            .iter()
            .map(|v| v.as_bytes())
            .collect()
    };
    let (host, connection) = (lines(http::header::HOST), lines(http::header::CONNECTION));
    // RFC 9110 §7.8: `Upgrade` in an HTTP/1.0 request is ignored (CC-12).
    let upgrade = match p.version {
        http::Version::HTTP_11 => lines(http::header::UPGRADE),
        _ => Vec::new(),
    };
    let target = p.uri.to_string();
    let form = form_from_h1(&H1Head {
        method: p.method.as_str(),
        target: &target,
        host: &host,
        connection: &connection,
        upgrade: &upgrade,
    });
    let upgrade_token = match &form {
        Ok(RequestForm::Extended { protocol, .. }) => Some(protocol.clone()),
        _ => None,
    };
    PendingTunnel {
        request: TunnelRequest {
            transport: Transport::H1,
            form,
            headers: req.parts.headers.clone(),
            peer,
            stream_id: 0,
        },
        inner: PendingInner::H1(H1Pending {
            upgrade: req.upgrade,
            respond: req.respond,
            upgrade_token,
            upgraded,
            peer_watch,
        }),
        limits,
    }
}

#[derive(Debug)]
pub(super) struct H1Pending {
    upgrade: OnUpgrade,
    respond: oneshot::Sender<Response>,
    /// The `Upgrade` token to answer 101 with; `None` for classic CONNECT.
    upgrade_token: Option<String>,
    upgraded: Arc<AtomicBool>,
    peer_watch: Option<tokio::net::TcpStream>,
}

fn response(status: http::StatusCode, headers: http::HeaderMap) -> Response {
    let mut resp = http::Response::new(Empty::new());
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// How often a socket with unread bytes is looked at again for a reset.
const PEER_WATCH_PERIOD: Duration = Duration::from_millis(50);

impl H1Pending {
    /// Resolves when the client reset the connection before the answer.
    /// hyper does not read while its buffer holds bytes and the response is
    /// pending (a capsule sent behind the head), so it would not notice; a
    /// peek on a second handle of the socket does: an error is a reset. A
    /// FIN is no cancellation (the client may still read the answer), and
    /// unread bytes are hyper's: looked at again every
    /// [`PEER_WATCH_PERIOD`], only while the request is being set up.
    pub(super) async fn reset_by_peer(&self) {
        let Some(sock) = &self.peer_watch else {
            return std::future::pending().await;
        };
        let mut byte = [0u8; 1];
        loop {
            match sock.peek(&mut byte).await {
                Err(_) => return,
                Ok(0) => return std::future::pending().await,
                Ok(_) => tokio::time::sleep(PEER_WATCH_PERIOD).await,
            }
        }
    }

    pub(super) fn reject(self, status: http::StatusCode, mut headers: http::HeaderMap) {
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        let _ = self.respond.send(response(status, headers));
    }

    pub(super) async fn accept(
        self,
        mut headers: http::HeaderMap,
        limits: TunnelLimits,
    ) -> Result<OpenTunnel, TunnelError> {
        let status = match &self.upgrade_token {
            // RFC 9298 §3.4 / RFC 9110 §7.8: 101 naming the protocol.
            Some(token) => {
                let token = http::HeaderValue::from_str(token).map_err(|_| TunnelError::Closed)?;
                headers.insert(http::header::UPGRADE, token);
                headers.insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("upgrade"),
                );
                http::StatusCode::SWITCHING_PROTOCOLS
            }
            // RFC 9110 §9.3.6: a 2xx to CONNECT has no content headers.
            None => http::StatusCode::OK,
        };
        self.upgraded.store(true, Ordering::Release);
        self.respond
            .send(response(status, headers))
            .map_err(|_| TunnelError::Closed)?;
        let upgraded = self.upgrade.await?;
        let (read, write) = tokio::io::split(TokioIo::new(upgraded));
        let (tx, capsules) =
            CapsuleSender::channel(limits.capsule_queue, limits.max_capsule_payload);
        Ok(OpenTunnel {
            body_tx: BodyTx::H1(tokio::io::BufWriter::new(write)),
            body_rx: BodyRx::H1(H1Reader::new(read)),
            datagram_tx: DatagramTx::Capsule(tx),
            datagram_rx: None,
            capsules: Some(capsules),
        })
    }
}
