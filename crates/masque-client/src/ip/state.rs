//! Sans-IO bookkeeping of one connect-ip tunnel (RFC 9484 §4.7): our address
//! requests and the peer's answers, the peer's requests and our answers, the
//! addresses and routes in force in each direction. No tokio, no I/O: each
//! call takes a decoded or to-be-encoded capsule and says what changed; the
//! session writes the returned capsule bytes and delivers the events.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use masque_proto::{
    capsule,
    connect_ip::{
        self, ADDRESS_ASSIGN, ADDRESS_REQUEST, Answer, AssignedAddress, ConnectIpError,
        DEFAULT_MAX_PENDING, IpAddressRange, OutgoingRequests, PendingRequests,
        ROUTE_ADVERTISEMENT, RequestedAddress,
    },
    template::IpPrefix,
};

use crate::ClientError;

/// Refusals of our requests kept for [`IpInfo::refused`] (oldest dropped).
const MAX_REFUSED: usize = 64;

/// What is known about a connect-ip tunnel's addressing and routing, from
/// both sides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpInfo {
    /// The addresses the peer assigned to us now: the last ADDRESS_ASSIGN's
    /// set without refusals (R9484-26).
    pub assigned: Vec<AssignedAddress>,
    /// The routes the peer advertised now: its last ROUTE_ADVERTISEMENT
    /// (R9484-36).
    pub routes: Vec<IpAddressRange>,
    /// Request ids of our ADDRESS_REQUESTs the peer has not answered yet.
    pub pending_requests: Vec<u64>,
    /// Our requests the peer refused (all-zero answer, R9484-33), the most
    /// recent last (at most 64 kept).
    pub refused: Vec<RequestedAddress>,
    /// The peer's ADDRESS_REQUESTs awaiting our ADDRESS_ASSIGN.
    pub peer_requests: Vec<RequestedAddress>,
    /// What we assigned to the peer (our last ADDRESS_ASSIGN, refusals left out).
    pub assigned_to_peer: Vec<AssignedAddress>,
    /// The routes we advertised (our last ROUTE_ADVERTISEMENT).
    pub advertised_routes: Vec<IpAddressRange>,
}

/// What a received capsule changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Received {
    /// ADDRESS_ASSIGN: the peer's current set for us and the answers to our
    /// requests it carried.
    Assigned {
        assigned: Vec<AssignedAddress>,
        answers: Vec<Answer>,
    },
    /// ADDRESS_REQUEST: the requests now awaiting our answer, and the
    /// ADDRESS_ASSIGN capsule to send at once when some were over our limit
    /// (refused right away, R9484-33).
    Requested {
        requests: Vec<RequestedAddress>,
        reply: Option<Bytes>,
    },
    /// ROUTE_ADVERTISEMENT: the peer's complete route list (R9484-36).
    Routes(Vec<IpAddressRange>),
    /// Not a connect-ip capsule: skipped (R9297-17).
    Other,
}

/// The state of one tunnel.
#[derive(Debug, Default)]
pub(crate) struct IpState {
    outgoing: OutgoingRequests,
    incoming: PendingRequests,
    assigned: Vec<AssignedAddress>,
    routes: Vec<IpAddressRange>,
    refused: VecDeque<RequestedAddress>,
    assigned_to_peer: Vec<AssignedAddress>,
    advertised: Vec<IpAddressRange>,
}

/// A whole capsule (Type, Length, Value) whose value `encode` writes; nothing
/// is returned on error.
fn capsule_bytes(
    ty: u64,
    len: usize,
    encode: impl FnOnce(&mut BytesMut) -> Result<(), ConnectIpError>,
) -> Result<Bytes, ConnectIpError> {
    let mut buf = BytesMut::with_capacity(capsule::header_len(ty, len) + len);
    capsule::encode_header(ty, len, &mut buf);
    encode(&mut buf)?;
    Ok(buf.freeze())
}

impl IpState {
    /// The snapshot for [`IpInfo`].
    pub fn info(&self) -> IpInfo {
        IpInfo {
            assigned: self.assigned.clone(),
            routes: self.routes.clone(),
            pending_requests: self.outgoing.pending().map(|r| r.request_id).collect(),
            refused: self.refused.iter().copied().collect(),
            peer_requests: self.incoming.pending().copied().collect(),
            assigned_to_peer: self.assigned_to_peer.clone(),
            advertised_routes: self.advertised.clone(),
        }
    }

    /// Records one request per prefix (all-zero address: any address of the
    /// family, R9484-31) with fresh non-zero ids never used before (R9484-29)
    /// and returns the ids and the ADDRESS_REQUEST capsule carrying them.
    /// Refused as a whole when empty (R9484-32) or when more than 64 requests
    /// would be outstanding.
    pub fn request(&mut self, prefixes: &[IpPrefix]) -> Result<(Vec<u64>, Bytes), ClientError> {
        if prefixes.is_empty() {
            return Err(ConnectIpError::EmptyAddressRequest.into());
        }
        if self.outgoing.len() + prefixes.len() > DEFAULT_MAX_PENDING {
            return Err(ConnectIpError::TooManyPendingRequests {
                limit: DEFAULT_MAX_PENDING,
            }
            .into());
        }
        let mut requests = Vec::with_capacity(prefixes.len());
        for p in prefixes {
            // Cannot fail: the prefix is canonical and the limit was checked
            // (id exhaustion needs 2^62 requests).
            requests.push(self.outgoing.request(p.addr(), p.prefix_len())?);
        }
        let capsule = capsule_bytes(
            ADDRESS_REQUEST,
            connect_ip::address_request_len(&requests),
            |b| connect_ip::encode_address_request(&requests, b),
        )?;
        Ok((requests.iter().map(|r| r.request_id).collect(), capsule))
    }

    /// Validates our complete set of addresses for the peer (R9484-26) and
    /// returns the ADDRESS_ASSIGN capsule. An entry with a non-zero Request ID
    /// must answer an ADDRESS_REQUEST of the peer that is still outstanding,
    /// or repeat an assignment made earlier with that id (R9484-23, R9484-33);
    /// id 0 is unprompted and always allowed (R9484-28). The answered
    /// requests stop being outstanding.
    pub fn assign(&mut self, entries: &[AssignedAddress]) -> Result<Bytes, ClientError> {
        let mut seen = std::collections::BTreeSet::new();
        for e in entries.iter().filter(|e| e.request_id != 0) {
            if !seen.insert(e.request_id) {
                return Err(ConnectIpError::DuplicateRequestId(e.request_id).into());
            }
            let outstanding = self
                .incoming
                .pending()
                .any(|r| r.request_id == e.request_id);
            let repeat = !e.is_refusal() && self.assigned_to_peer.contains(e);
            if !outstanding && !repeat {
                return Err(ClientError::UnknownRequestId(e.request_id));
            }
        }
        let capsule = capsule_bytes(
            ADDRESS_ASSIGN,
            connect_ip::address_assign_len(entries),
            |b| connect_ip::encode_address_assign(entries, b),
        )?;
        for e in entries.iter().filter(|e| e.request_id != 0) {
            self.incoming.answer(e.request_id);
        }
        self.assigned_to_peer = entries
            .iter()
            .filter(|e| !e.is_refusal())
            .copied()
            .collect();
        Ok(capsule)
    }

    /// Sorts our complete route list into the order R9484-37 asks for,
    /// validates it (R9484-35/37/38) and returns the ROUTE_ADVERTISEMENT
    /// capsule. Ranges of one version and protocol that touch or overlap are
    /// refused (merge them first).
    pub fn advertise(&mut self, ranges: &[IpAddressRange]) -> Result<Bytes, ClientError> {
        let mut sorted = ranges.to_vec();
        connect_ip::sort_routes(&mut sorted);
        let capsule = capsule_bytes(
            ROUTE_ADVERTISEMENT,
            connect_ip::route_advertisement_len(&sorted),
            |b| connect_ip::encode_route_advertisement(&sorted, b),
        )?;
        self.advertised = sorted;
        Ok(capsule)
    }

    /// A capsule from the peer. Any error is a malformed capsule: the session
    /// aborts the request stream (R9484-24/25/29/32/35/37/38), the state is
    /// left as it was.
    pub fn on_capsule(&mut self, ty: u64, value: &[u8]) -> Result<Received, ConnectIpError> {
        match ty {
            ADDRESS_ASSIGN => {
                let entries = connect_ip::decode_address_assign(value)?;
                let answers = self.outgoing.on_address_assign(&entries);
                for a in &answers {
                    if let Answer::Refused { request } = a {
                        if self.refused.len() == MAX_REFUSED {
                            self.refused.pop_front();
                        }
                        self.refused.push_back(*request);
                    }
                }
                // R9484-26: the complete current set; refusals assign nothing.
                self.assigned = entries.into_iter().filter(|e| !e.is_refusal()).collect();
                Ok(Received::Assigned {
                    assigned: self.assigned.clone(),
                    answers,
                })
            }
            ADDRESS_REQUEST => {
                let requests = connect_ip::decode_address_request(value)?;
                let admitted = self.incoming.on_address_request(&requests)?;
                let reply = if admitted.over_limit.is_empty() {
                    None
                } else {
                    // R9484-33: refuse at once what we cannot keep, along
                    // with the set in force (R9484-26).
                    let mut set = self.assigned_to_peer.clone();
                    set.extend(admitted.over_limit.iter().map(AssignedAddress::refusal));
                    Some(capsule_bytes(
                        ADDRESS_ASSIGN,
                        connect_ip::address_assign_len(&set),
                        |b| connect_ip::encode_address_assign(&set, b),
                    )?)
                };
                Ok(Received::Requested {
                    requests: admitted.accepted,
                    reply,
                })
            }
            ROUTE_ADVERTISEMENT => {
                self.routes = connect_ip::decode_route_advertisement(value)?;
                Ok(Received::Routes(self.routes.clone()))
            }
            _ => Ok(Received::Other),
        }
    }
}
