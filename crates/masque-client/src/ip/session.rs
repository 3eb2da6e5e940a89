//! [`IpSession`]: a connect-ip tunnel (RFC 9484) on any transport, opened by
//! the same path as connect-udp (`crate::session::open_tunnel`) with
//! connect-ip's datagram rules, its own body writer and capsule hook.

use std::time::Duration;

use bytes::Bytes;
use masque_proto::{
    connect_ip::{AssignedAddress, IpAddressRange},
    template::{IpPrefix, IpTarget, IpTemplate},
    tunnel::DatagramRules,
};
use masque_transport::{ClientConnection, ResetReason, Transport, client::ResponseHead};
use ractor::ActorRef;
use tokio::{sync::mpsc, task::JoinHandle, time::timeout};

use super::{
    ControlWriter, IpInfo, IpSender,
    events::{Core, IpEvent, Mode, lock},
    rx::Rx,
    sender::check_path,
};
use crate::{
    ClientError, ClientOptions, SessionInfo,
    close::{CloseInfo, CloseReason, SessionStats},
    request,
    sender::{BodyWriter, Inner},
    session::open_tunnel,
};

/// An open connect-ip tunnel. Packets and events go, switchably at run time,
/// to [`recv`](Self::recv) (queue mode, the default) or to an owner actor
/// ([`set_active`](Self::set_active)). Dropping it stops reading; the stream
/// finishes once every [`IpSender`] clone is dropped too.
#[derive(Debug)]
pub struct IpSession {
    sender: IpSender,
    rx: Rx,
    reader: JoinHandle<()>,
    response: ResponseHead,
    conn: ClientConnection,
    pub(crate) owned: bool,
    close_timeout: Duration,
    /// The slot on a pooled connection this tunnel holds
    /// ([`crate::ProxyClient::connect_ip`]); given back when the session goes.
    pub(crate) lease: Option<crate::pool::Lease>,
}

impl IpSession {
    /// Opens a connect-ip tunnel for `target` on `conn` (any transport).
    /// `authority` is the proxy's `host[:port]`, used for RFC 9484's default
    /// template `/.well-known/masque/ip/{target}/{ipproto}/` when
    /// `options.ip_template` is `None` (R9484-03).
    pub async fn open_with(
        conn: &ClientConnection,
        authority: &str,
        target: &IpTarget,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let template = request::ip_template(authority, options.ip_template.as_deref())?;
        Self::open(conn, &template, target, options).await
    }

    pub(crate) async fn open(
        conn: &ClientConnection,
        template: &IpTemplate,
        target: &IpTarget,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let head = request::build_ip(template, target, &options.headers)?;
        let capacity = options.event_capacity.max(1);
        let (control_tx, control_rx) = mpsc::channel(capacity);
        let core = Core::new(control_tx);
        let t = open_tunnel(
            conn,
            &head,
            options,
            DatagramRules::ip(),
            |body, datagrams| {
                BodyWriter::Control(ControlWriter::spawn(body, datagrams, control_rx))
            },
            core.capsule_hook(),
        )
        .await?;
        let native = conn.transport() == Transport::H3 && !t.inner.dg.is_capsule();
        if let Err(e) = path_carries_1280(native, &t.inner).await {
            t.inner.abort(ResetReason::Cancelled);
            t.reader.abort();
            return Err(e);
        }
        let sender = IpSender {
            inner: t.inner,
            core,
        };
        tracing::debug!(stream = sender.inner.stream_id, ?target, transport = %conn.transport(), "connect-ip tunnel open");
        Ok(Self {
            sender,
            rx: Rx::new(t.incoming),
            reader: t.reader,
            response: t.response,
            conn: conn.clone(),
            owned: false,
            lease: None,
            close_timeout: options.close_timeout,
        })
    }

    /// A cloneable sender for this tunnel.
    pub fn sender(&self) -> IpSender {
        self.sender.clone()
    }

    /// See [`IpSender::send_ip_packet`].
    pub async fn send_ip_packet(&self, packet: &[u8]) -> Result<(), ClientError> {
        self.sender.send_ip_packet(packet).await
    }

    /// See [`IpSender::try_send_ip_packet`].
    pub fn try_send_ip_packet(&self, packet: &[u8]) -> Result<(), ClientError> {
        self.sender.try_send_ip_packet(packet)
    }

    /// See [`IpSender::request_addresses`].
    pub fn request_addresses(&self, prefixes: &[IpPrefix]) -> Result<Vec<u64>, ClientError> {
        self.sender.request_addresses(prefixes)
    }

    /// See [`IpSender::assign_addresses`].
    pub fn assign_addresses(&self, entries: &[AssignedAddress]) -> Result<(), ClientError> {
        self.sender.assign_addresses(entries)
    }

    /// See [`IpSender::advertise_routes`].
    pub fn advertise_routes(&self, ranges: &[IpAddressRange]) -> Result<(), ClientError> {
        self.sender.advertise_routes(ranges)
    }

    /// See [`IpSender::send_capsule`].
    pub fn send_capsule(&self, capsule_type: u64, value: &[u8]) -> Result<(), ClientError> {
        self.sender.send_capsule(capsule_type, value)
    }

    /// See [`IpSender::ip_info`].
    pub fn ip_info(&self) -> IpInfo {
        self.sender.ip_info()
    }

    /// See [`IpSender::wait_for`].
    pub async fn wait_for(
        &self,
        limit: Duration,
        pred: impl Fn(&IpInfo) -> bool,
    ) -> Result<IpInfo, ClientError> {
        self.sender.wait_for(limit, pred).await
    }

    /// Proxy address, stream id, response, and the largest IP packet one
    /// datagram carries now (`max_payload_size`).
    pub fn info(&self) -> SessionInfo {
        SessionInfo {
            proxy: self.conn.peer(),
            stream_id: self.sender.inner.stream_id,
            status: self.response.status,
            headers: self.response.headers.clone(),
            max_payload_size: self.sender.max_packet_size(),
        }
    }

    /// Queue mode: the next IP packet from the peer (QUIC datagrams and
    /// DATAGRAM capsules, Context ID 0), waiting up to `limit`; the session
    /// reads the tunnel itself, as [`crate::UdpSession::recv`] does.
    /// [`ClientError::Timeout`] when none came (in active mode packets go to
    /// the owner, so this only times out); [`ClientError::Closed`] once the
    /// tunnel ended ([`close_info`](Self::close_info) says why).
    pub async fn recv(&mut self, limit: Duration) -> Result<Bytes, ClientError> {
        self.rx.recv(limit).await
    }

    /// Active mode: from now on every packet and event goes to `owner`
    /// ([`IpEvent`]) from a task of the session; the tunnel's end is
    /// [`IpEvent::Closed`]. When the owner has stopped, the tunnel is
    /// finished (FIN) and the session falls back to queue mode. ractor
    /// mailboxes are unbounded: an owner that cannot keep up should use queue
    /// mode, where the tunnel's bounded queues drop instead.
    pub fn set_active(&mut self, owner: ActorRef<IpEvent>) {
        *lock(&self.sender.core.mode) = Mode::Active(owner);
        self.rx.activate(&self.sender);
    }

    /// Queue mode (the default): [`recv`](Self::recv) reads the packets;
    /// address and route changes only in [`ip_info`](Self::ip_info).
    pub fn set_queue(&mut self) {
        *lock(&self.sender.core.mode) = Mode::Queue;
    }

    /// Whether events go to an owner actor.
    pub fn is_active(&self) -> bool {
        matches!(*lock(&self.sender.core.mode), Mode::Active(_))
    }

    /// Drop counters of this tunnel.
    pub fn stats(&self) -> SessionStats {
        self.sender.inner.counters.snapshot()
    }

    /// Why the tunnel ended; `None` while it is open.
    pub fn close_info(&self) -> Option<CloseInfo> {
        close_info(&self.sender.inner)
    }

    /// The connection carrying this tunnel.
    pub fn client_connection(&self) -> &ClientConnection {
        &self.conn
    }

    /// Ends the tunnel: FIN on our side, then waits up to `close_timeout` for
    /// the proxy's FIN. A connection opened by [`crate::connect_ip`] is closed
    /// as well.
    pub async fn close(mut self) -> CloseInfo {
        self.sender.inner.finish();
        self.rx.finish(self.close_timeout).await;
        let _ = timeout(Duration::from_secs(1), &mut self.reader).await;
        if self.owned {
            self.conn.shutdown(self.close_timeout).await;
        }
        self.close_info().unwrap_or(CloseInfo {
            reason: CloseReason::Local,
            stats: self.stats(),
        })
    }
}

/// How long path MTU discovery gets to raise a QUIC path that starts below
/// 1280-byte packets (QUIC's first packets may be 1200 bytes) before the
/// tunnel is refused.
const MTU_GRACE: Duration = Duration::from_secs(3);

/// R9484-50 with [`MTU_GRACE`]: the path's datagrams must carry a 1280-byte
/// packet, now or after PMTUD raised them.
async fn path_carries_1280(native: bool, inner: &Inner) -> Result<(), ClientError> {
    let deadline = tokio::time::Instant::now() + MTU_GRACE;
    loop {
        match check_path(native, inner.dg.max_payload_size()) {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn close_info(inner: &Inner) -> Option<CloseInfo> {
    inner.close_reason().map(|reason| CloseInfo {
        reason,
        stats: inner.counters.snapshot(),
    })
}
