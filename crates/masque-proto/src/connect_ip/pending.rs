//! Pure request bookkeeping for ADDRESS_REQUEST / ADDRESS_ASSIGN (R9484-29, R9484-33).
//!
//! * [`OutgoingRequests`]: requests this endpoint sends. Allocates fresh non-zero Request
//!   IDs that are never reused (R9484-29) and matches the peer's ADDRESS_ASSIGN entries to
//!   them (R9484-33).
//! * [`PendingRequests`]: requests received from the peer. Rejects zero, duplicate and
//!   reused IDs (R9484-29) and bounds how many wait for an answer.
//!
//! No I/O, no clocks: the session feeds decoded capsules in and acts on the results.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;

use super::{AssignedAddress, ConnectIpError, RequestedAddress, check_prefix, check_request_ids};
use crate::varint;

/// Default limit of outstanding requests per stream (our choice).
pub const DEFAULT_MAX_PENDING: usize = 64;
/// Default number of answered peer Request IDs remembered to detect reuse (our choice).
pub const DEFAULT_MAX_REMEMBERED: usize = 1024;

/// The peer's answer to one of our requests (R9484-33).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The peer assigned `assigned` in answer to `request`.
    Granted {
        request: RequestedAddress,
        assigned: AssignedAddress,
    },
    /// The peer refused `request` (all-zero address, full prefix length).
    Refused { request: RequestedAddress },
}

/// Requests this endpoint has sent and not yet seen answered.
#[derive(Debug, Clone)]
pub struct OutgoingRequests {
    next_id: u64,
    pending: BTreeMap<u64, RequestedAddress>,
    max_pending: usize,
}

impl Default for OutgoingRequests {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PENDING)
    }
}

impl OutgoingRequests {
    /// At most `max_pending` requests may be outstanding.
    pub fn new(max_pending: usize) -> Self {
        Self {
            next_id: 1,
            pending: BTreeMap::new(),
            max_pending,
        }
    }

    /// Creates a request with a fresh Request ID (non-zero, never reused, R9484-29) for
    /// `ip/prefix_len` (all-zero `ip` = any address of the family, R9484-31) and records
    /// it as pending. Put the result in an ADDRESS_REQUEST capsule.
    pub fn request(
        &mut self,
        ip: IpAddr,
        prefix_len: u8,
    ) -> Result<RequestedAddress, ConnectIpError> {
        check_prefix(ip, prefix_len)?;
        if self.pending.len() >= self.max_pending {
            return Err(ConnectIpError::TooManyPendingRequests {
                limit: self.max_pending,
            });
        }
        let request_id = self.next_id;
        if request_id > varint::MAX {
            return Err(ConnectIpError::RequestIdsExhausted);
        }
        self.next_id += 1;
        let req = RequestedAddress {
            request_id,
            ip,
            prefix_len,
        };
        self.pending.insert(request_id, req);
        Ok(req)
    }

    /// Outstanding requests, by Request ID.
    pub fn pending(&self) -> impl Iterator<Item = &RequestedAddress> {
        self.pending.values()
    }

    /// Number of outstanding requests.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is outstanding.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Matches a received ADDRESS_ASSIGN against the pending requests (R9484-33). Each
    /// pending request answered by the capsule is resolved and reported once. Entries
    /// with Request ID 0 (unsolicited, R9484-23/28) and entries repeating an earlier
    /// answer are part of the current set (R9484-26) and are not reported here.
    pub fn on_address_assign(&mut self, assigned: &[AssignedAddress]) -> Vec<Answer> {
        let mut answers = Vec::new();
        for a in assigned {
            if a.request_id == 0 {
                continue;
            }
            if let Some(request) = self.pending.remove(&a.request_id) {
                answers.push(if a.is_refusal() {
                    Answer::Refused { request }
                } else {
                    Answer::Granted {
                        request,
                        assigned: *a,
                    }
                });
            }
        }
        answers
    }
}

/// Result of admitting a received ADDRESS_REQUEST into [`PendingRequests`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admitted {
    /// Now pending: answer each with an Assigned Address of the same Request ID
    /// (R9484-33), then call [`PendingRequests::answer`].
    pub accepted: Vec<RequestedAddress>,
    /// Beyond the pending limit: answer each with [`AssignedAddress::refusal`] right away
    /// (R9484-33). Their IDs are remembered like answered ones.
    pub over_limit: Vec<RequestedAddress>,
}

/// Requests received from the peer that still await our ADDRESS_ASSIGN answer.
///
/// Reuse detection (R9484-29) covers every pending ID and the last `max_remembered`
/// answered IDs; older IDs are forgotten so memory stays bounded.
#[derive(Debug, Clone)]
pub struct PendingRequests {
    pending: BTreeMap<u64, RequestedAddress>,
    max_pending: usize,
    remembered: BTreeSet<u64>,
    order: VecDeque<u64>,
    max_remembered: usize,
}

impl Default for PendingRequests {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PENDING, DEFAULT_MAX_REMEMBERED)
    }
}

impl PendingRequests {
    /// At most `max_pending` requests wait for an answer; the last `max_remembered`
    /// answered IDs are kept for reuse detection.
    pub fn new(max_pending: usize, max_remembered: usize) -> Self {
        Self {
            pending: BTreeMap::new(),
            max_pending,
            remembered: BTreeSet::new(),
            order: VecDeque::new(),
            max_remembered,
        }
    }

    /// Admits the entries of a decoded ADDRESS_REQUEST. Errors (the session aborts the
    /// stream) leave the state unchanged: Request ID 0 or a duplicate within the capsule
    /// (R9484-29), or an ID that is pending or was already answered (reuse, R9484-29).
    /// An empty capsule is rejected by the decoder (R9484-32).
    pub fn on_address_request(
        &mut self,
        requests: &[RequestedAddress],
    ) -> Result<Admitted, ConnectIpError> {
        check_request_ids(requests)?;
        if let Some(r) = requests.iter().find(|r| {
            self.pending.contains_key(&r.request_id) || self.remembered.contains(&r.request_id)
        }) {
            return Err(ConnectIpError::DuplicateRequestId(r.request_id));
        }
        let mut admitted = Admitted::default();
        for r in requests {
            if self.pending.len() < self.max_pending {
                self.pending.insert(r.request_id, *r);
                admitted.accepted.push(*r);
            } else {
                self.remember(r.request_id);
                admitted.over_limit.push(*r);
            }
        }
        Ok(admitted)
    }

    /// Marks `request_id` answered (the session sent an ADDRESS_ASSIGN entry with it) and
    /// returns the request, or `None` if it was not pending.
    pub fn answer(&mut self, request_id: u64) -> Option<RequestedAddress> {
        let r = self.pending.remove(&request_id)?;
        self.remember(request_id);
        Some(r)
    }

    /// Requests awaiting an answer, by Request ID.
    pub fn pending(&self) -> impl Iterator<Item = &RequestedAddress> {
        self.pending.values()
    }

    /// Number of requests awaiting an answer.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no request awaits an answer.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn remember(&mut self, id: u64) {
        if self.max_remembered == 0 || !self.remembered.insert(id) {
            return;
        }
        self.order.push_back(id);
        while self.order.len() > self.max_remembered {
            if let Some(old) = self.order.pop_front() {
                self.remembered.remove(&old);
            }
        }
    }
}
