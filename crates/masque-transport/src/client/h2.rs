//! HTTP/2 client adapter (the `h2` crate, RFC 8441 extended CONNECT): TLS with
//! ALPN `h2`, one driver task polling the connection, and extended CONNECT only
//! once the proxy's SETTINGS enabled it (RFC 8441 §3). Datagrams travel as
//! DATAGRAM capsules; flow control is the body's (`BodyTx::H2` reserves and
//! waits for capacity, `BodyRx::H2` releases what it hands out).

use std::{
    net::SocketAddr,
    str::FromStr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use ::h2::{
    Ping, Reason,
    client::{self, SendRequest},
};
use bytes::Bytes;
use http::{Method, Uri};
use masque_proto::request::RequestForm;
use tokio::{
    sync::{Semaphore, watch},
    task::AbortHandle,
};

use super::{
    ClientConfig, ConnectError, OpenError, Opened, ResponseHead, TunnelHead, capsule_datagrams,
    tcp::TlsDialer,
};
use crate::{
    server::TunnelLimits,
    tls::{ALPN_H2, client_config},
    tunnel::{BodyRx, BodyTx, OpenTunnel, body::h2_error},
};

/// HTTP/2 settings of a client connection.
#[derive(Debug, Clone)]
pub struct H2ClientConfig {
    /// SETTINGS_INITIAL_WINDOW_SIZE (per stream) and the connection window:
    /// what the proxy may send before we read.
    pub initial_stream_window: u32,
    pub initial_connection_window: u32,
    /// Bytes h2 may buffer for sending per stream.
    pub max_send_buffer: usize,
    /// SETTINGS_MAX_HEADER_LIST_SIZE.
    pub max_header_list_size: u32,
}

impl Default for H2ClientConfig {
    fn default() -> Self {
        Self {
            initial_stream_window: 1 << 20,
            initial_connection_window: 16 << 20,
            max_send_buffer: 256 * 1024,
            max_header_list_size: 16 * 1024,
        }
    }
}

#[derive(Debug)]
pub(super) struct H2Client {
    /// `None` once we go away: new tunnels are refused, and without this
    /// handle the connection ends by itself when its last stream does.
    send: Mutex<Option<SendRequest<Bytes>>>,
    driver: AbortHandle,
    /// Set by the driver when the connection ended.
    ended: watch::Receiver<bool>,
    closed: AtomicBool,
    /// One permit per stream the proxy lets us have open
    /// (SETTINGS_MAX_CONCURRENT_STREAMS, as its SETTINGS said at the start).
    /// A tunnel holds its permit in both body halves. Waiting here rather
    /// than in h2 matters: a request h2 queued for a stream slot is sent
    /// once one frees even if its opener gave up, and then takes that slot.
    streams: Arc<Semaphore>,
}

impl H2Client {
    pub(super) async fn connect(
        addr: SocketAddr,
        server_name: &str,
        config: &ClientConfig,
    ) -> Result<Self, ConnectError> {
        let tls = client_config(&config.verification, &[ALPN_H2])?;
        let dialer = TlsDialer::new(addr, config.bind, server_name, tls, ALPN_H2, false)?;
        let io = dialer.dial().await?;
        Self::handshake(io, &config.h2).await
    }

    /// Preface and SETTINGS out, then a PING: the server's connection preface
    /// starts with its SETTINGS (RFC 9113 §3.4) and frames are handled in
    /// order, so once the PONG is back the SETTINGS have been applied and
    /// [`SendRequest::is_extended_connect_protocol_enabled`] is meaningful.
    /// The caller bounds the time.
    pub(super) async fn handshake<IO>(io: IO, cfg: &H2ClientConfig) -> Result<Self, ConnectError>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let mut b = client::Builder::new();
        b.initial_window_size(cfg.initial_stream_window)
            .initial_connection_window_size(cfg.initial_connection_window)
            .max_send_buffer_size(cfg.max_send_buffer)
            .max_header_list_size(cfg.max_header_list_size)
            .enable_push(false);
        let (send, mut conn) = b.handshake::<_, Bytes>(io).await.map_err(h2_error)?;
        let ping = conn.ping_pong();
        let (ended_tx, ended) = watch::channel(false);
        let driver = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP/2 client connection ended");
            }
            ended_tx.send_replace(true);
        });
        if let Some(mut ping) = ping {
            ping.ping(Ping::opaque()).await.map_err(h2_error)?;
        }
        // After the PONG the proxy's SETTINGS are applied (see above).
        let max = send.current_max_send_streams().min(Semaphore::MAX_PERMITS);
        Ok(Self {
            send: Mutex::new(Some(send)),
            driver: driver.abort_handle(),
            ended,
            closed: AtomicBool::new(false),
            streams: Arc::new(Semaphore::new(max)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<SendRequest<Bytes>>> {
        self.send.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) async fn open(
        &self,
        head: &TunnelHead,
        limits: TunnelLimits,
        limit: Duration,
    ) -> Result<Opened, OpenError> {
        let send = self.lock().clone().ok_or(OpenError::GoingAway)?;
        // RFC 8441 §3: no extended CONNECT unless the proxy enabled it.
        if head.protocol().is_some() && !send.is_extended_connect_protocol_enabled() {
            return Err(OpenError::ExtendedConnectDisabled);
        }
        let request = request(head)?;
        let streams = Arc::clone(&self.streams);
        let exchange = async move {
            // Waits for a stream slot (SETTINGS_MAX_CONCURRENT_STREAMS): a
            // timeout here leaves nothing queued behind.
            let slot = streams
                .acquire_owned()
                .await
                .map_err(|_| OpenError::GoingAway)?;
            let mut send = send.ready().await.map_err(open_error)?;
            let (response, stream) = send.send_request(request, false).map_err(open_error)?;
            // Dropping `stream` on an error resets the stream (CANCEL).
            let response = response.await.map_err(open_error)?;
            Ok::<_, OpenError>((response, stream, Arc::new(slot)))
        };
        let (response, mut stream, slot) = tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| OpenError::Timeout("HTTP/2 response"))??;
        let stream_id = u64::from(u32::from(stream.stream_id()));
        let (parts, recv) = response.into_parts();
        let response = ResponseHead {
            status: parts.status,
            headers: parts.headers,
        };
        if !response.status.is_success() {
            stream.send_reset(Reason::CANCEL);
            return Err(OpenError::Refused(response));
        }
        let (datagram_tx, capsules) = capsule_datagrams(limits);
        Ok(Opened {
            response,
            tunnel: OpenTunnel {
                body_tx: BodyTx::h2(stream, Some(Arc::clone(&slot))),
                body_rx: BodyRx::h2(recv, Some(slot)),
                datagram_tx,
                datagram_rx: None,
                capsules: Some(capsules),
            },
            stream_id,
        })
    }

    /// Whether the proxy's SETTINGS enable extended CONNECT; `None` once we
    /// went away.
    pub(super) fn extended_connect(&self) -> Option<bool> {
        self.lock()
            .as_ref()
            .map(SendRequest::is_extended_connect_protocol_enabled)
    }

    /// No new tunnels; the connection ends by itself once its open tunnels do
    /// (h2 then sends GOAWAY and closes).
    pub(super) fn goaway(&self) {
        self.lock().take();
    }

    pub(super) async fn shutdown(&self, limit: Duration) {
        self.goaway();
        self.wait_ended(limit).await;
        self.close();
    }

    pub(super) fn close(&self) {
        self.goaway();
        self.closed.store(true, Ordering::Release);
        self.driver.abort();
    }

    pub(super) async fn wait_ended(&self, limit: Duration) {
        let mut ended = self.ended.clone();
        let _ = tokio::time::timeout(limit, ended.wait_for(|e| *e)).await;
    }

    /// Waits, without a limit, until the driver ended.
    pub(super) async fn wait_ended_forever(&self) {
        let mut ended = self.ended.clone();
        let _ = ended.wait_for(|e| *e).await;
    }

    /// SETTINGS_MAX_CONCURRENT_STREAMS as the proxy says now; 0 once we go away.
    pub(super) fn max_send_streams(&self) -> usize {
        self.lock()
            .as_ref()
            .map_or(0, SendRequest::current_max_send_streams)
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || *self.ended.borrow() || self.driver.is_finished()
    }
}

/// The HTTP/2 request of `head`: `:protocol` as the h2 extension (RFC 8441 §4);
/// classic CONNECT carries `:authority` only (RFC 9113 §8.5).
fn request(head: &TunnelHead) -> Result<http::Request<()>, OpenError> {
    let invalid = |what: &str| OpenError::InvalidRequest(what.to_owned());
    let (uri, protocol) = match &head.form {
        RequestForm::Extended {
            protocol,
            authority,
            path,
        } => {
            let uri = Uri::builder()
                .scheme(head.scheme.clone())
                .authority(authority.as_str())
                .path_and_query(path.as_str())
                .build()
                .map_err(|_| invalid("authority or path"))?;
            (uri, Some(::h2::ext::Protocol::from(protocol.as_str())))
        }
        RequestForm::Classic { authority } => {
            let uri = Uri::from_str(authority).map_err(|_| invalid(":authority"))?;
            if uri.authority().is_none() || uri.path_and_query().is_some_and(|p| p != "/") {
                return Err(invalid(":authority"));
            }
            (uri, None)
        }
    };
    let mut request = http::Request::new(());
    *request.method_mut() = Method::CONNECT;
    *request.uri_mut() = uri;
    *request.headers_mut() = head.headers.clone();
    if let Some(p) = protocol {
        request.extensions_mut().insert(p);
    }
    Ok(request)
}

fn open_error(e: ::h2::Error) -> OpenError {
    if e.is_go_away() && e.is_remote() {
        return OpenError::GoingAway;
    }
    OpenError::Tunnel(h2_error(e))
}
