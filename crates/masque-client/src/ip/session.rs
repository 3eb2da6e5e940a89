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
    sender::check_path,
};
use crate::{
    ClientError, ClientOptions, SessionInfo,
    close::{CloseInfo, CloseReason, SessionStats},
    request,
    sender::{BodyWriter, Inner},
    session::{Incoming, open_tunnel},
};

/// An open connect-ip tunnel. Packets and events go, switchably at run time,
/// to a bounded queue read by [`recv`](Self::recv) (queue mode, the default)
/// or to an owner actor ([`set_active`](Self::set_active)).
#[derive(Debug)]
pub struct IpSession {
    sender: IpSender,
    packets: mpsc::Receiver<Bytes>,
    pump: JoinHandle<()>,
    reader: JoinHandle<()>,
    response: ResponseHead,
    conn: ClientConnection,
    pub(crate) owned: bool,
    close_timeout: Duration,
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
        if let Err(e) = check_path(native, t.inner.dg.max_payload_size()) {
            t.inner.abort(ResetReason::Cancelled);
            t.reader.abort();
            return Err(e);
        }
        let (packets_tx, packets) = mpsc::channel(capacity);
        let sender = IpSender {
            inner: t.inner,
            core,
        };
        let pump = tokio::spawn(pump(t.incoming, sender.clone(), packets_tx));
        tracing::debug!(stream = sender.inner.stream_id, ?target, transport = %conn.transport(), "connect-ip tunnel open");
        Ok(Self {
            sender,
            packets,
            pump,
            reader: t.reader,
            response: t.response,
            conn: conn.clone(),
            owned: false,
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

    /// Queue mode: the next IP packet from the peer, waiting up to `limit`.
    /// [`ClientError::Timeout`] when none came (in active mode packets go to
    /// the owner, so this only times out); [`ClientError::Closed`] once the
    /// tunnel ended and the queue is empty ([`close_info`](Self::close_info)
    /// says why).
    pub async fn recv(&mut self, limit: Duration) -> Result<Bytes, ClientError> {
        match timeout(limit, self.packets.recv()).await {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout(limit)),
        }
    }

    /// Active mode: from now on every packet and event goes to `owner`
    /// ([`IpEvent`]), packets still queued first. When the owner has stopped,
    /// the tunnel is finished (FIN) and the session falls back to queue mode.
    /// ractor mailboxes are unbounded: an owner that cannot keep up should
    /// use queue mode, whose queue is bounded (a full queue drops packets).
    pub fn set_active(&mut self, owner: ActorRef<IpEvent>) {
        let mut mode = lock(&self.sender.core.mode);
        while let Ok(p) = self.packets.try_recv() {
            if owner.send_message(IpEvent::Packet(p)).is_err() {
                break;
            }
        }
        *mode = Mode::Active(owner);
    }

    /// Queue mode (the default): packets into the bounded queue that
    /// [`recv`](Self::recv) reads; address and route changes only in
    /// [`ip_info`](Self::ip_info).
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
        let drain = async {
            let _ = (&mut self.pump).await;
        };
        if timeout(self.close_timeout, drain).await.is_err() {
            self.pump.abort();
        }
        self.packets.close();
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

impl Drop for IpSession {
    fn drop(&mut self) {
        // The pump holds the receive side; without it nobody reads.
        self.pump.abort();
    }
}

fn close_info(inner: &Inner) -> Option<CloseInfo> {
    inner.close_reason().map(|reason| CloseInfo {
        reason,
        stats: inner.counters.snapshot(),
    })
}

/// Moves packets (QUIC datagrams and DATAGRAM capsules) to where the mode
/// says, then reports the end.
async fn pump(mut incoming: Incoming, sender: IpSender, packets: mpsc::Sender<Bytes>) {
    let core = &sender.core;
    while let Some(p) = incoming.recv().await {
        let mut mode = lock(&core.mode);
        let gone = match &*mode {
            Mode::Active(owner) => owner.send_message(IpEvent::Packet(p)).is_err(),
            Mode::Queue => {
                if packets.try_send(p).is_err() {
                    crate::close::Counters::inc(&sender.inner.counters.capsule_queue_full);
                }
                false
            }
        };
        if gone {
            // The owner stopped: nobody reads this tunnel any more.
            tracing::debug!("connect-ip owner gone, finishing the tunnel");
            *mode = Mode::Queue;
            sender.inner.finish();
        }
    }
    let info = close_info(&sender.inner).unwrap_or(CloseInfo {
        reason: CloseReason::Local,
        stats: sender.inner.counters.snapshot(),
    });
    core.notify();
    core.emit(IpEvent::Closed(info));
}
