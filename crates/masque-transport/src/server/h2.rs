//! HTTP/2 adapter (the `h2` crate, RFC 8441 extended CONNECT): one driver
//! task per connection polls `accept` (which also drives the connection) and
//! hands requests over a bounded queue; GOAWAY and close reach it by watch.

use std::{net::SocketAddr, time::Duration};

use ::h2::{
    RecvStream,
    server::{self, SendResponse},
};
use bytes::Bytes;
use masque_proto::request::{Pseudo, form_from_pseudo};
use tokio::sync::{Mutex, mpsc, watch};

use super::{PendingInner, PendingTunnel, TunnelLimits};
use crate::tunnel::{
    BodyRx, BodyTx, DatagramTx, OpenTunnel, ResetReason, Transport, TunnelError, TunnelRequest,
    body::h2_error, datagram::CapsuleSender,
};

/// HTTP/2 settings and limits of the server.
#[derive(Debug, Clone)]
pub struct H2Config {
    /// SETTINGS_MAX_CONCURRENT_STREAMS: the node sets it to its tunnel limit.
    pub max_concurrent_streams: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE (per stream) and the connection window.
    pub initial_stream_window: u32,
    pub initial_connection_window: u32,
    /// Bytes h2 may buffer for sending per stream (bounded send buffering).
    pub max_send_buffer: usize,
    /// SETTINGS_MAX_HEADER_LIST_SIZE.
    pub max_header_list_size: u32,
    /// Preface and SETTINGS exchange.
    pub handshake_timeout: Duration,
}

impl Default for H2Config {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            initial_stream_window: 1 << 20,
            initial_connection_window: 16 << 20,
            max_send_buffer: 256 * 1024,
            max_header_list_size: 16 * 1024,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

type Request = (http::Request<RecvStream>, SendResponse<Bytes>);

#[derive(Debug)]
pub(super) struct H2Connection {
    requests: Mutex<mpsc::Receiver<Request>>,
    /// 0 running, 1 GOAWAY sent, 2 closed.
    state: watch::Sender<u8>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for H2Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl H2Connection {
    pub(super) async fn handshake<IO>(io: IO, config: &H2Config) -> Result<Self, TunnelError>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let mut b = server::Builder::new();
        b.enable_connect_protocol()
            .max_concurrent_streams(config.max_concurrent_streams)
            .initial_window_size(config.initial_stream_window)
            .initial_connection_window_size(config.initial_connection_window)
            .max_send_buffer_size(config.max_send_buffer)
            .max_header_list_size(config.max_header_list_size);
        let conn = tokio::time::timeout(config.handshake_timeout, b.handshake::<_, Bytes>(io))
            .await
            .map_err(|_| TunnelError::Timeout("HTTP/2 handshake"))??;
        // Requests in flight are bounded by SETTINGS_MAX_CONCURRENT_STREAMS,
        // so this queue never refuses one the peer was allowed to send.
        let capacity = config.max_concurrent_streams.max(1) as usize;
        let (tx, rx) = mpsc::channel(capacity);
        let (state, state_rx) = watch::channel(0u8);
        let driver = tokio::spawn(drive(conn, tx, state_rx));
        Ok(Self {
            requests: Mutex::new(rx),
            state,
            driver,
        })
    }

    pub(super) async fn accept(
        &self,
        peer: SocketAddr,
        limits: TunnelLimits,
    ) -> Option<PendingTunnel> {
        let (req, respond) = self.requests.lock().await.recv().await?;
        Some(pending(req, respond, peer, limits))
    }

    pub(super) fn goaway(&self) {
        self.state.send_if_modified(|s| {
            let changed = *s == 0;
            *s = (*s).max(1);
            changed
        });
    }

    pub(super) fn close(&self) {
        self.state.send_replace(2);
    }
}

/// Polls the connection: requests out, GOAWAY and close in. Ends when the
/// connection does.
async fn drive<IO>(
    mut conn: server::Connection<IO, Bytes>,
    requests: mpsc::Sender<Request>,
    mut state: watch::Receiver<u8>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.accept() => match r {
                Some(Ok(req)) => {
                    if let Err(mpsc::error::TrySendError::Full((_, mut respond))) = requests.try_send(req) {
                        respond.send_reset(::h2::Reason::REFUSED_STREAM);
                    }
                }
                Some(Err(e)) => {
                    // A connection error (bad preface, protocol error): h2 has
                    // sent GOAWAY; this connection only ends.
                    tracing::debug!(error = %e, "HTTP/2 connection error");
                    break;
                }
                None => break,
            },
            changed = state.changed(), if !closing => {
                let s = if changed.is_ok() { *state.borrow_and_update() } else { 2 };
                match s {
                    1 => conn.graceful_shutdown(),
                    _ => {
                        conn.abrupt_shutdown(::h2::Reason::NO_ERROR);
                        closing = true;
                    }
                }
            }
        }
    }
}

fn pending(
    req: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
    peer: SocketAddr,
    limits: TunnelLimits,
) -> PendingTunnel {
    let stream_id = u64::from(u32::from(respond.stream_id()));
    let (parts, recv) = req.into_parts();
    let protocol = parts.extensions.get::<::h2::ext::Protocol>();
    let form = form_from_pseudo(&Pseudo {
        method: parts.method.as_str(),
        protocol: protocol.map(|p| p.as_str()),
        scheme: parts.uri.scheme_str(),
        authority: parts.uri.authority().map(|a| a.as_str()),
        path: parts.uri.path_and_query().map(|p| p.as_str()),
    });
    PendingTunnel {
        request: TunnelRequest {
            transport: Transport::H2,
            form,
            headers: parts.headers,
            peer,
            stream_id,
        },
        inner: PendingInner::H2(H2Pending { respond, recv }),
        limits,
    }
}

#[derive(Debug)]
pub(super) struct H2Pending {
    respond: SendResponse<Bytes>,
    recv: RecvStream,
}

impl H2Pending {
    /// Resolves when the peer resets the stream (or the connection ends).
    pub(super) async fn reset_by_peer(&mut self) {
        let _ = std::future::poll_fn(|cx| self.respond.poll_reset(cx)).await;
    }

    pub(super) fn reject(mut self, status: http::StatusCode, headers: http::HeaderMap) {
        let mut resp = http::Response::new(());
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        // END_STREAM with the response; the request half is reset when its
        // handle drops (RFC 9113 §8.1: no need to read the rest).
        let _ = self.respond.send_response(resp, true);
    }

    pub(super) fn reset(mut self, reason: ResetReason) {
        self.respond.send_reset(reason.h2_reason());
    }

    pub(super) fn accept(
        mut self,
        headers: http::HeaderMap,
        limits: TunnelLimits,
    ) -> Result<OpenTunnel, TunnelError> {
        let mut resp = http::Response::new(());
        *resp.headers_mut() = headers;
        let send = self.respond.send_response(resp, false).map_err(h2_error)?;
        let (tx, capsules) =
            CapsuleSender::channel(limits.capsule_queue, limits.max_capsule_payload);
        Ok(OpenTunnel {
            body_tx: BodyTx::h2(send, None),
            body_rx: BodyRx::h2(self.recv, None),
            datagram_tx: DatagramTx::Capsule(tx),
            datagram_rx: None,
            capsules: Some(capsules),
        })
    }
}
