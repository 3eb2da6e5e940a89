//! [`IpSender`]: the sending half of a connect-ip tunnel (IP packets as
//! Context ID 0 datagrams, R9484-43) and its address / route capsules, built
//! by the sans-IO state and written by the tunnel's `ControlWriter`.

use std::{sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use masque_proto::{
    capsule::{self, DEFAULT_MAX_CAPSULE_SIZE},
    connect_ip::{AssignedAddress, IpAddressRange},
    datagram::{self, UDP_CONTEXT_ID},
    template::IpPrefix,
};
use tokio::{sync::mpsc, time::timeout};

use super::{
    IpInfo,
    events::{Core, lock},
    state::IpState,
};
use crate::{ClientError, sender::Inner};

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
    pub(super) inner: Arc<Inner>,
    pub(super) core: Arc<Core>,
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
        make: impl FnOnce(&mut IpState) -> Result<Bytes, ClientError>,
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
    /// The answers arrive as [`super::IpEvent::AddressAssigned`] and in
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
                tokio::select! {
                    r = changed.changed() => {
                        if r.is_err() {
                            return Err(ClientError::Closed);
                        }
                    }
                    () = self.inner.ended() => {}
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
