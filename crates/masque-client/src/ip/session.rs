//! [`IpSession`]: a connect-ip tunnel (RFC 9484) on any transport, opened by
//! the same path as connect-udp (`crate::session::open_tunnel`) with
//! connect-ip's datagram rules, its own body writer and capsule hook.

use std::{sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use masque_proto::{
    capsule::{self, DEFAULT_MAX_CAPSULE_SIZE},
    connect_ip::{AssignedAddress, IpAddressRange},
    datagram::{self, UDP_CONTEXT_ID},
    template::{IpPrefix, IpTarget, IpTemplate},
    tunnel::DatagramRules,
};
use masque_transport::{ClientConnection, ResetReason, Transport, client::ResponseHead};
use ractor::ActorRef;
use tokio::{sync::mpsc, task::JoinHandle, time::timeout};

use super::{
    ControlWriter, IpInfo,
    events::{Core, IpEvent, Mode, lock},
};
use crate::{
    ClientError, ClientOptions, SessionInfo,
    close::{CloseInfo, CloseReason, SessionStats},
    request,
    sender::{BodyWriter, Inner},
    session::{Incoming, open_tunnel},
};

/// The smallest IP packet a connect-ip tunnel must carry (R9484-49/50).
pub const MIN_IP_PACKET: usize = 1280;

/// Length of the Context ID 0 prefix (one-byte varint).
const CONTEXT_LEN: usize = datagram::prefix_len(None, UDP_CONTEXT_ID);

/// R9484-50: over QUIC DATAGRAMs (`native`) one datagram payload (`max`,
/// Context ID included) must carry a 1280-byte packet, else the request
/// stream is aborted. DATAGRAM capsules carry up to 64 KiB.
pub(crate) fn check_path(native: bool, max: Option<usize>) -> Result<(), ClientError> {
    let max = max.unwrap_or(0);
    if native && max < CONTEXT_LEN + MIN_IP_PACKET {
        return Err(ClientError::TunnelMtuTooSmall {
            max: max.saturating_sub(CONTEXT_LEN),
            required: MIN_IP_PACKET,
        });
    }
    Ok(())
}

/// Sends into a connect-ip tunnel and manages its addresses and routes.
/// Cheap to clone; all clones share the tunnel.
#[derive(Debug, Clone)]
pub struct IpSender {
    inner: Arc<Inner>,
    core: Arc<Core>,
}

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

impl IpSender {
    /// Largest IP packet one datagram carries now: on HTTP/3 the path's QUIC
    /// datagram size minus the quarter stream id and Context ID; with
    /// DATAGRAM capsules what one capsule of the proxy's 64 KiB bound carries.
    pub fn max_packet_size(&self) -> usize {
        self.inner
            .dg
            .max_payload_size()
            .map_or(0, |m| m.saturating_sub(CONTEXT_LEN))
    }

    fn buffer(&self, packet: &[u8]) -> Result<masque_transport::OutDatagram, ClientError> {
        if !self.inner.is_open() {
            return Err(ClientError::Closed);
        }
        // R9484-43: Context ID 0 carries one whole IPv4 or IPv6 packet.
        match packet.first().map(|b| b >> 4) {
            Some(4 | 6) => {}
            _ => return Err(ClientError::InvalidPacket("not an IPv4 or IPv6 packet")),
        }
        let mut b = self.inner.dg.buffer(CONTEXT_LEN + packet.len());
        datagram::encode_prefix(None, UDP_CONTEXT_ID, b.payload_mut())
            .map_err(|_| ClientError::Closed)?;
        b.payload_mut().extend_from_slice(packet);
        Ok(b)
    }

    /// Sends one IP packet (Context ID 0, R9484-43), waiting for room in the
    /// datagram send buffer or capsule queue. A packet over
    /// [`max_packet_size`](Self::max_packet_size) is
    /// [`ClientError::PayloadTooLarge`]; one that is not IPv4/IPv6 is
    /// [`ClientError::InvalidPacket`].
    pub async fn send_ip_packet(&self, packet: &[u8]) -> Result<(), ClientError> {
        let b = self.buffer(packet)?;
        self.inner
            .dg
            .send(b)
            .await
            .map_err(|e| ClientError::from_send(e, CONTEXT_LEN))
    }

    /// Sends without waiting: a full buffer or queue is
    /// [`ClientError::BufferFull`] (the packet is dropped).
    pub fn try_send_ip_packet(&self, packet: &[u8]) -> Result<(), ClientError> {
        let b = self.buffer(packet)?;
        self.inner
            .dg
            .try_send(b)
            .map_err(|e| ClientError::from_send(e, CONTEXT_LEN))
    }

    /// Queues a capsule that `make` builds from the state, in state order: the
    /// queue slot is reserved before the state changes.
    fn queue_capsule(
        &self,
        make: impl FnOnce(&mut super::state::IpState) -> Result<Bytes, ClientError>,
    ) -> Result<(), ClientError> {
        if !self.inner.is_open() {
            return Err(ClientError::Closed);
        }
        let permit = self.core.control.try_reserve().map_err(|e| match e {
            mpsc::error::TrySendError::Full(()) => ClientError::BufferFull,
            mpsc::error::TrySendError::Closed(()) => ClientError::Closed,
        })?;
        let capsule = make(&mut lock(&self.core.state))?;
        permit.send(capsule);
        self.core.notify();
        Ok(())
    }

    /// Asks the peer for one address per prefix (ADDRESS_REQUEST; an all-zero
    /// address asks for any address of its family with that prefix length,
    /// R9484-31) and returns the request ids, fresh and never 0 (R9484-29).
    /// The answers arrive as [`IpEvent::AddressAssigned`] and in
    /// [`IpInfo::assigned`] / [`IpInfo::refused`].
    pub fn request_addresses(&self, prefixes: &[IpPrefix]) -> Result<Vec<u64>, ClientError> {
        let mut ids = Vec::new();
        self.queue_capsule(|s| {
            let (i, capsule) = s.request(prefixes)?;
            ids = i;
            Ok(capsule)
        })?;
        Ok(ids)
    }

    /// Sends our complete set of addresses for the peer (ADDRESS_ASSIGN,
    /// R9484-26). An entry with a non-zero request id must answer an
    /// outstanding ADDRESS_REQUEST of the peer (or repeat an earlier answer
    /// with that id), else [`ClientError::UnknownRequestId`] and nothing is
    /// sent; id 0 is an unprompted assignment, always allowed (R9484-28).
    pub fn assign_addresses(&self, entries: &[AssignedAddress]) -> Result<(), ClientError> {
        self.queue_capsule(|s| s.assign(entries))
    }

    /// Sends our complete route list (ROUTE_ADVERTISEMENT, R9484-36), sorted
    /// as R9484-37 asks; overlapping ranges of one version and protocol are
    /// refused.
    pub fn advertise_routes(&self, ranges: &[IpAddressRange]) -> Result<(), ClientError> {
        self.queue_capsule(|s| s.advertise(ranges))
    }

    /// Sends any other capsule on the stream (e.g. an extension's). The types
    /// the session manages (DATAGRAM 0x00, ADDRESS_ASSIGN 0x01,
    /// ADDRESS_REQUEST 0x02, ROUTE_ADVERTISEMENT 0x03) are
    /// [`ClientError::ReservedCapsuleType`]: use the methods above.
    pub fn send_capsule(&self, capsule_type: u64, value: &[u8]) -> Result<(), ClientError> {
        if capsule_type <= capsule::ROUTE_ADVERTISEMENT {
            return Err(ClientError::ReservedCapsuleType(capsule_type));
        }
        if value.len() > DEFAULT_MAX_CAPSULE_SIZE || capsule_type > masque_proto::varint::MAX {
            return Err(ClientError::PayloadTooLarge {
                size: value.len(),
                max: DEFAULT_MAX_CAPSULE_SIZE,
            });
        }
        self.queue_capsule(|_| {
            let mut buf = BytesMut::new();
            capsule::encode(capsule_type, value, &mut buf);
            Ok(buf.freeze())
        })
    }

    /// Addresses and routes in force both ways, and requests outstanding.
    pub fn ip_info(&self) -> IpInfo {
        lock(&self.core.state).info()
    }

    /// Waits up to `limit` until `pred` holds for [`ip_info`](Self::ip_info)
    /// (e.g. `|i| i.pending_requests.is_empty()`: every request answered).
    /// [`ClientError::Closed`] if the tunnel ends first,
    /// [`ClientError::Timeout`] after `limit`.
    pub async fn wait_for(
        &self,
        limit: Duration,
        pred: impl Fn(&IpInfo) -> bool,
    ) -> Result<IpInfo, ClientError> {
        let mut changed = self.core.changed.subscribe();
        let wait = async {
            loop {
                let info = self.ip_info();
                if pred(&info) {
                    return Ok(info);
                }
                if self.inner.close_reason().is_some() {
                    return Err(ClientError::Closed);
                }
                if changed.changed().await.is_err() {
                    return Err(ClientError::Closed);
                }
            }
        };
        timeout(limit, wait)
            .await
            .map_err(|_| ClientError::Timeout(limit))?
    }

    /// Finishes our side (FIN). The tunnel ends when the proxy finishes its side.
    pub fn close(&self) {
        self.inner.finish();
    }
}
