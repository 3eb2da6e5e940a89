//! A connect-udp tunnel (RFC 9298) over one request stream (HTTP/3, HTTP/2) or
//! upgraded connection (HTTP/1.1).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use masque_proto::{
    capsule::DEFAULT_MAX_CAPSULE_SIZE,
    template::UdpTemplate,
    tunnel::{DatagramEvent, DatagramRules, TunnelCore},
};
use masque_transport::{
    BodyTx, CapsuleQueue, ClientConnection, DatagramRx, OpenTunnel, Opened, ResetReason,
    TunnelWriter,
    client::{ResponseHead, TunnelHead},
};
use tokio::{
    sync::mpsc,
    task::JoinHandle,
    time::{Instant, timeout},
};

use crate::{
    ClientError, ClientOptions, Target,
    close::{CloseInfo, CloseReason, SessionStats},
    reader::{self, CapsuleHook},
    request,
    sender::{BodyWriter, Inner, UdpSender},
};

/// How long [`UdpSession::recv`] keeps taking datagrams after the stream ended.
pub const LATE_DATAGRAM_LINGER: Duration = Duration::from_millis(20);

/// The datagram rules of connect-udp (Context ID 0, at most 65527 bytes).
const RULES: DatagramRules = DatagramRules::udp();

/// What is known about an open tunnel.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The proxy's address (UDP for HTTP/3, TCP otherwise).
    pub proxy: SocketAddr,
    /// The tunnel's request stream id (HTTP/1.1, where each tunnel has its own
    /// connection: its sequence number on the client).
    pub stream_id: u64,
    /// The status the proxy answered with: 2xx, or 101 on HTTP/1.1.
    pub status: StatusCode,
    /// The response header fields (e.g. `proxy-public-address`).
    pub headers: HeaderMap,
    /// [`UdpSender::max_payload_size`] at the time of the call.
    pub max_payload_size: usize,
}

/// An open connect-udp tunnel: send with [`send`](Self::send), receive with
/// [`recv`](Self::recv), end with [`close`](Self::close). Dropping it stops
/// reading (STOP_SENDING on HTTP/3); the stream finishes once every
/// [`UdpSender`] clone is dropped too.
#[derive(Debug)]
pub struct UdpSession {
    pub(crate) sender: UdpSender,
    incoming: Incoming,
    reader: JoinHandle<()>,
    response: ResponseHead,
    pub(crate) conn: ClientConnection,
    /// This session owns its connection ([`crate::connect`]): closing it closes
    /// the connection.
    pub(crate) owned: bool,
    close_timeout: Duration,
    pub(crate) event_capacity: usize,
    /// The slot on a pooled connection this tunnel holds
    /// ([`crate::ProxyClient::connect_udp`]); given back when the session goes.
    pub(crate) lease: Option<crate::pool::Lease>,
}

/// The receive side of a datagram tunnel, whatever its protocol: QUIC
/// datagrams of the stream and the payloads of DATAGRAM capsules the reader
/// task took from the body, both classified by the protocol's
/// [`DatagramRules`] (R9297-31).
#[derive(Debug)]
pub(crate) struct Incoming {
    rules: DatagramRules,
    /// QUIC datagrams of this stream (HTTP/3 with datagrams); `None` where they
    /// come as DATAGRAM capsules only, or once the connection ended.
    datagrams: Option<DatagramRx>,
    /// Set when the stream ended: until then, late datagrams are still delivered.
    linger: Option<Instant>,
    capsules: mpsc::Receiver<Bytes>,
    inner: Arc<Inner>,
}

/// A datagram tunnel that the proxy accepted, before its protocol wraps it.
pub(crate) struct OpenedTunnel {
    pub inner: Arc<Inner>,
    pub incoming: Incoming,
    pub reader: JoinHandle<()>,
    pub response: ResponseHead,
    pub capacity: usize,
}

/// Opens a datagram tunnel (connect-udp, connect-ip) with `head` on `conn`:
/// sends the request, checks the response (a failure cancels the request),
/// spawns the body writer `make_writer` builds and the reader, which hands
/// capsules other than DATAGRAM to `on_capsule`.
pub(crate) async fn open_tunnel(
    conn: &ClientConnection,
    head: &TunnelHead,
    options: &ClientOptions,
    rules: DatagramRules,
    make_writer: impl FnOnce(BodyTx, Option<CapsuleQueue>) -> BodyWriter,
    on_capsule: CapsuleHook,
) -> Result<OpenedTunnel, ClientError> {
    // The transport refuses a proxy without extended CONNECT before
    // sending (XC-04); on HTTP/3 it registers the stream for QUIC
    // DATAGRAMs when the proxy supports them, else the tunnel's datagrams
    // are DATAGRAM capsules (R9297-12, R9297-31).
    let Opened {
        response,
        tunnel,
        stream_id,
    } = conn
        .open(head)
        .await
        .map_err(|e| ClientError::from_open(e, options.connect_timeout))?;
    if let Err(e) = request::check_response(&response, conn.transport()) {
        // R9298-22, R9298-27/32, R9484-17/21: a failed response aborts the request.
        let OpenTunnel {
            mut body_tx,
            mut body_rx,
            ..
        } = tunnel;
        body_tx.reset(ResetReason::Cancelled);
        body_rx.stop(ResetReason::Cancelled);
        return Err(e);
    }
    let OpenTunnel {
        body_tx,
        body_rx,
        datagram_tx,
        datagram_rx,
        capsules,
    } = tunnel;
    let writer = make_writer(body_tx, capsules);
    let inner = Inner::new(datagram_tx, writer, stream_id);
    let capacity = options.event_capacity.max(1);
    let (tx, capsules) = mpsc::channel(capacity);
    // R9297-34: capsules are bounded (64 KiB); larger ones are an error.
    let core = TunnelCore::new(rules, DEFAULT_MAX_CAPSULE_SIZE);
    let reader = tokio::spawn(reader::run(body_rx, inner.clone(), tx, core, on_capsule));
    Ok(OpenedTunnel {
        incoming: Incoming {
            rules,
            datagrams: datagram_rx,
            linger: None,
            capsules,
            inner: inner.clone(),
        },
        inner,
        reader,
        response,
        capacity,
    })
}

impl Incoming {
    /// Next payload of Context ID 0: QUIC datagrams and DATAGRAM capsules on
    /// the stream (R9297-31). Other contexts are dropped and counted
    /// (R9298-38, R9484-42). `None` once the stream ended.
    ///
    /// Datagrams and the stream are read by different tasks, so a datagram the
    /// proxy sent just before its FIN may be routed after the FIN was seen: on
    /// the stream's end, datagrams are still taken for [`LATE_DATAGRAM_LINGER`].
    pub async fn recv(&mut self) -> Option<Bytes> {
        loop {
            let d = if let Some(deadline) = self.linger {
                let datagrams = self.datagrams.as_mut()?;
                tokio::select! {
                    biased;
                    d = datagrams.recv() => d,
                    () = tokio::time::sleep_until(deadline) => {
                        self.datagrams = None;
                        return None;
                    }
                }
            } else {
                tokio::select! {
                    biased;
                    d = recv_datagram(&mut self.datagrams) => d,
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
            self.datagrams = None;
            return None;
        };
        match self.rules.classify(d) {
            Ok(DatagramEvent::Payload { payload, .. }) => Some(payload),
            Ok(DatagramEvent::Dropped(reason)) => {
                reader::count_drop(&self.inner.counters, reason);
                None
            }
            Err(e) => {
                // R9298-41: abort the request stream.
                self.inner.abort(ResetReason::Malformed);
                let reason = CloseReason::ProtocolError(e.to_string());
                self.inner.set_close(reason);
                self.datagrams = None;
                self.capsules.close();
                None
            }
        }
    }

    /// Waits up to `limit` for the stream's end, discarding payloads; then
    /// stops taking them (the reader stops reading).
    pub async fn drain(&mut self, limit: Duration) {
        let drain = async { while self.capsules.recv().await.is_some() {} };
        if timeout(limit, drain).await.is_err() {
            self.capsules.close();
        }
    }
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
        let conn = ClientConnection::from_h3(conn.clone(), &options.client_config());
        Self::open_with(&conn, authority, target, options).await
    }

    /// Like [`open_on`](Self::open_on), on a connection of any transport.
    pub async fn open_with(
        conn: &ClientConnection,
        authority: &str,
        target: &Target,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let template = request::template(authority, options.template.as_deref())?;
        Self::open(conn, &template, target, options).await
    }

    pub(crate) async fn open(
        conn: &ClientConnection,
        template: &UdpTemplate,
        target: &Target,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let head = request::build(template, &target.to_udp_target()?, &options.headers)?;
        let t = open_tunnel(
            conn,
            &head,
            options,
            RULES,
            |body, capsules| BodyWriter::Tunnel(TunnelWriter::spawn(body, capsules)),
            reader::skip_capsules(),
        )
        .await?;
        tracing::debug!(stream = t.inner.stream_id, %target, transport = %conn.transport(), "tunnel open");
        Ok(Self {
            sender: UdpSender { inner: t.inner },
            incoming: t.incoming,
            reader: t.reader,
            response: t.response,
            conn: conn.clone(),
            owned: false,
            close_timeout: options.close_timeout,
            event_capacity: t.capacity,
            lease: None,
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
        self.incoming.recv().await
    }

    /// Addresses, stream id, response and current payload limit.
    pub fn info(&self) -> SessionInfo {
        SessionInfo {
            proxy: self.conn.peer(),
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

    /// The HTTP/3 connection carrying this tunnel, if it runs on HTTP/3.
    pub fn h3_connection(&self) -> Option<&masque_h3::Connection> {
        self.conn.as_h3()
    }

    /// The connection carrying this tunnel, any transport.
    pub fn client_connection(&self) -> &ClientConnection {
        &self.conn
    }

    /// Ends the tunnel: FIN on our side, then waits up to `close_timeout` for the
    /// proxy's FIN (payloads still arriving are discarded); after that, stops
    /// reading. A connection opened by [`crate::connect`] is closed as well.
    pub async fn close(mut self) -> CloseInfo {
        self.sender.close();
        self.incoming.drain(self.close_timeout).await;
        // The reader ends promptly once its receiver is closed or the stream ended.
        let _ = timeout(Duration::from_secs(1), &mut self.reader).await;
        if self.owned {
            // Our FIN is written by now (or the wait above gave up): close
            // gracefully, bounded (HTTP/3 CONNECTION_CLOSE, HTTP/2 GOAWAY).
            self.conn.shutdown(self.close_timeout).await;
        }
        self.close_info().unwrap_or(CloseInfo {
            reason: CloseReason::Local,
            stats: self.stats(),
        })
    }
}

async fn recv_datagram(rx: &mut Option<DatagramRx>) -> Option<Bytes> {
    match rx {
        Some(rx) => rx.recv().await,
        // DATAGRAM capsules only.
        None => std::future::pending().await,
    }
}
