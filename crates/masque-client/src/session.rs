//! A connect-udp tunnel (RFC 9298) over one HTTP/3 request stream.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use masque_h3::{Code, DatagramReceiver, RequestStream, ResponseHead};
use masque_proto::template::UdpTemplate;
use tokio::{
    sync::mpsc,
    task::JoinHandle,
    time::{Instant, timeout},
};

use crate::{
    ClientError, ClientOptions, Target,
    close::{CloseInfo, CloseReason, SessionStats},
    reader::{self, Payload},
    request,
    sender::{Inner, UdpSender},
};

/// How long [`UdpSession::recv`] keeps taking datagrams after the stream ended.
pub const LATE_DATAGRAM_LINGER: Duration = Duration::from_millis(20);

/// What is known about an open tunnel.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The proxy's UDP address.
    pub proxy: SocketAddr,
    /// The tunnel's request stream id.
    pub stream_id: u64,
    /// The 2xx status the proxy answered with.
    pub status: StatusCode,
    /// The response header fields (e.g. `proxy-public-address`).
    pub headers: HeaderMap,
    /// [`UdpSender::max_payload_size`] at the time of the call.
    pub max_payload_size: usize,
}

/// An open connect-udp tunnel: send with [`send`](Self::send), receive with
/// [`recv`](Self::recv), end with [`close`](Self::close). Dropping it stops
/// reading (STOP_SENDING); the stream finishes once every [`UdpSender`] clone is
/// dropped too.
#[derive(Debug)]
pub struct UdpSession {
    pub(crate) sender: UdpSender,
    datagrams: DatagramReceiver,
    datagrams_open: bool,
    /// Set when the stream ended: until then, late datagrams are still delivered.
    linger: Option<Instant>,
    capsules: mpsc::Receiver<Bytes>,
    reader: JoinHandle<()>,
    response: ResponseHead,
    pub(crate) conn: masque_h3::Connection,
    /// The endpoint, when this session owns its connection ([`crate::connect`]).
    pub(crate) owned: Option<quinn::Endpoint>,
    close_timeout: Duration,
    pub(crate) event_capacity: usize,
}

impl UdpSession {
    /// Opens a tunnel on an existing HTTP/3 connection, so many tunnels share one
    /// connection. `authority` is the proxy's `host[:port]`, used for the default
    /// template when `options.template` is `None` (R9298-09); the connection-level
    /// fields of `options` (TLS, MTU, bind) are not used here.
    pub async fn open_on(
        conn: &masque_h3::Connection,
        authority: &str,
        target: &Target,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let template = request::template(authority, options.template.as_deref())?;
        Self::open(conn, &template, target, options).await
    }

    pub(crate) async fn open(
        conn: &masque_h3::Connection,
        template: &UdpTemplate,
        target: &Target,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let head = request::build(template, &target.to_udp_target()?, &options.headers)?;
        let limit = options.connect_timeout;
        // Datagrams requested: masque-h3 refuses a peer without H3_DATAGRAM or
        // ENABLE_CONNECT_PROTOCOL (R9297-12, R9298-28) before sending.
        let mut stream = timeout(limit, conn.open_request(&head, true))
            .await
            .map_err(|_| ClientError::Timeout(limit))??;
        let response = match timeout(limit, stream.recv_response()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(abort(stream, e.into())),
            Err(_) => return Err(abort(stream, ClientError::Timeout(limit))),
        };
        if let Err(e) = request::check_response(&response) {
            // R9298-22, R9298-27/32: a failed response aborts the request.
            return Err(abort(stream, e));
        }
        let Some(datagrams) = stream.take_datagrams() else {
            return Err(abort(stream, ClientError::DatagramsUnsupported));
        };
        let dg = match stream.send.datagram_sender().await {
            Ok(dg) => dg,
            Err(e) => return Err(abort(stream, ClientError::from_send(e, 0))),
        };
        let (send, recv, _) = stream.into_parts();
        let inner = Inner::new(dg, send);
        let capacity = options.event_capacity.max(1);
        let (tx, capsules) = mpsc::channel(capacity);
        let reader = tokio::spawn(reader::run(recv, inner.clone(), tx));
        tracing::debug!(stream = inner.stream_id, %target, "tunnel open");
        Ok(Self {
            sender: UdpSender { inner },
            datagrams,
            datagrams_open: true,
            linger: None,
            capsules,
            reader,
            response,
            conn: conn.clone(),
            owned: None,
            close_timeout: options.close_timeout,
            event_capacity: capacity,
        })
    }

    /// Sends one UDP payload; see [`UdpSender::send`].
    pub async fn send(&self, payload: &[u8]) -> Result<(), ClientError> {
        self.sender.send(payload).await
    }

    /// Sends without waiting; see [`UdpSender::try_send`].
    pub fn try_send(&self, payload: &[u8]) -> Result<(), ClientError> {
        self.sender.try_send(payload)
    }

    /// A cloneable sender for this tunnel.
    pub fn sender(&self) -> UdpSender {
        self.sender.clone()
    }

    /// See [`UdpSender::max_payload_size`].
    pub fn max_payload_size(&self) -> usize {
        self.sender.max_payload_size()
    }

    /// Next UDP payload from the target: Context ID 0 payloads of QUIC datagrams
    /// and of DATAGRAM capsules on the stream (R9297-31). Other contexts are
    /// dropped and counted (R9298-38). `None` once the stream ended (proxy FIN or
    /// reset, connection loss); [`close_info`](Self::close_info) then says why.
    ///
    /// Datagrams and the stream are read by different tasks, so a datagram the
    /// proxy sent just before its FIN may be routed after the FIN was seen: on
    /// the stream's end, datagrams are still taken for [`LATE_DATAGRAM_LINGER`].
    pub async fn recv(&mut self) -> Option<Bytes> {
        loop {
            let d = if let Some(deadline) = self.linger {
                if !self.datagrams_open {
                    return None;
                }
                tokio::select! {
                    biased;
                    d = self.datagrams.recv() => d,
                    () = tokio::time::sleep_until(deadline) => {
                        self.datagrams_open = false;
                        return None;
                    }
                }
            } else {
                tokio::select! {
                    biased;
                    d = self.datagrams.recv(), if self.datagrams_open => d,
                    c = self.capsules.recv() => match c {
                        Some(p) => return Some(p),
                        None => {
                            self.linger = Some(Instant::now() + LATE_DATAGRAM_LINGER);
                            continue;
                        }
                    },
                }
            };
            if let Some(p) = self.on_datagram(d) {
                return Some(p);
            }
        }
    }

    /// One result of the datagram queue: a payload to return, or nothing.
    fn on_datagram(&mut self, d: Option<Bytes>) -> Option<Bytes> {
        let Some(d) = d else {
            // The connection ended; the stream reader reports why.
            self.datagrams_open = false;
            return None;
        };
        match reader::classify(d, &self.sender.inner.counters) {
            Payload::Udp(p) => Some(p),
            Payload::Dropped => None,
            Payload::Abort(e) => {
                // R9298-41: abort the request stream.
                self.sender.inner.abort(Code::MESSAGE_ERROR);
                let reason = CloseReason::ProtocolError(e.to_string());
                self.sender.inner.set_close(reason);
                self.datagrams_open = false;
                self.capsules.close();
                None
            }
        }
    }

    /// Addresses, stream id, response and current payload limit.
    pub fn info(&self) -> SessionInfo {
        SessionInfo {
            proxy: self.conn.quic().remote_address(),
            stream_id: self.sender.stream_id(),
            status: self.response.status,
            headers: self.response.headers.clone(),
            max_payload_size: self.sender.max_payload_size(),
        }
    }

    /// Drop counters of this tunnel.
    pub fn stats(&self) -> SessionStats {
        self.sender.inner.counters.snapshot()
    }

    /// Why the tunnel ended; `None` while it is open.
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.sender.inner.close_reason().map(|reason| CloseInfo {
            reason,
            stats: self.stats(),
        })
    }

    /// The HTTP/3 connection carrying this tunnel.
    pub fn connection(&self) -> &masque_h3::Connection {
        &self.conn
    }

    /// Ends the tunnel: FIN on our side, then waits up to `close_timeout` for the
    /// proxy's FIN (payloads still arriving are discarded); after that, stops
    /// reading. A connection opened by [`crate::connect`] is closed as well.
    pub async fn close(mut self) -> CloseInfo {
        self.sender.close();
        let drain = async { while self.capsules.recv().await.is_some() {} };
        if timeout(self.close_timeout, drain).await.is_err() {
            self.capsules.close();
        }
        // The reader ends promptly once its receiver is closed or the stream ended.
        let _ = timeout(Duration::from_secs(1), &mut self.reader).await;
        if let Some(endpoint) = self.owned.take() {
            self.conn.close(Code::NO_ERROR, b"");
            let _ = timeout(self.close_timeout, endpoint.wait_idle()).await;
        }
        self.close_info().unwrap_or(CloseInfo {
            reason: CloseReason::Local,
            stats: self.stats(),
        })
    }
}

/// Aborts a request whose response we refuse (R9298-22) and returns `err`.
fn abort(mut stream: RequestStream, err: ClientError) -> ClientError {
    stream.send.reset(Code::REQUEST_CANCELLED);
    stream.recv.stop(Code::REQUEST_CANCELLED);
    err
}
