//! One CONNECT-IP tunnel on the node: the `TunnelHandler` the datagram runtime drives (the
//! same runtime as CONNECT-UDP, so h3, h2 and h1 alike), and its two tasks.
//!
//! * Callbacks (the session's task): client packets through `ForwardRules::from_peer`
//!   into the egress; CONNECT-IP capsules validated (a malformed one resets the stream
//!   as malformed); ADDRESS_REQUEST entries admitted (`PendingRequests`, at most
//!   `max_pending_requests`) and queued for the address task.
//! * Address task: allocates from the pools, registers each block in the IpRegistry (with
//!   the session's queue as its sink), then sends ADDRESS_ASSIGN with the complete current
//!   set (R9484-26) plus the answers; an exhausted pool answers with the all-zero refusal
//!   (R9484-33).
//! * Delivery task: packets the ingress queued for this session, through
//!   `ForwardRules::to_peer` (TTL decrement, size), to the client as HTTP datagrams.
//!   First it checks that an HTTP/3 tunnel carries a 1280-byte packet (R9484-50).
//!
//! The IpRegistry monitors the session actor, so the session's blocks are released
//! however it ends.

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::{Bytes, BytesMut};
use masque_proto::capsule::Capsule;
use masque_proto::connect_ip::{
    AssignedAddress, ConnectIpCapsule, ForwardRules, IpAddressRange, LocalAddrs, PacketDrop,
    PendingRequests, RequestedAddress, Verdict,
};
use masque_proto::icmp::IcmpErrorKind;
use masque_proto::packet::IPV6_MIN_MTU;
use masque_queue::{QueueRx, QueueTx};
use masque_registry::ip::IpRegistryError;

use super::IpShared;
use crate::handler::{Action, CloseReason, TunnelHandler, TunnelOutput};
use crate::metrics::Metrics;
use crate::session::budget::PacketBudget;
use crate::task_group::TunnelTask;

/// What the tunnel's parts share.
pub(super) struct TunnelState {
    pub rules: RwLock<ForwardRules>,
    pub requests: Mutex<PendingRequests>,
    /// ICMP this tunnel may generate (ICMP-18), both directions together.
    pub icmp_budget: Mutex<PacketBudget>,
}

impl TunnelState {
    /// Takes one ICMP message from the budget; counts a refusal.
    pub fn icmp_allowed(&self, metrics: &Metrics) -> bool {
        let mut budget = lock(&self.icmp_budget);
        budget.refill(std::time::Instant::now());
        let ok = budget.take();
        if !ok {
            Metrics::inc(&metrics.ip_icmp_rate_limited);
        }
        ok
    }
}

/// The handler of one CONNECT-IP tunnel.
pub(super) struct IpTunnel {
    pub ip: Arc<IpShared>,
    pub state: Arc<TunnelState>,
    pub out: TunnelOutput,
    pub metrics: Arc<Metrics>,
    /// ADDRESS_REQUEST entries for the address task.
    pub requests_tx: QueueTx<RequestedAddress>,
    /// What the client assigned to us, and the routes it advertised (kept for `info`).
    pub peer_assigned: Vec<AssignedAddress>,
    pub peer_routes: Vec<IpAddressRange>,
    /// Scratch for generated ICMP.
    pub icmp: Vec<u8>,
    pub _tasks: [TunnelTask; 2],
}

impl TunnelHandler for IpTunnel {
    fn datagram(&mut self, _context_id: u64, payload: Bytes) -> Action {
        let verdict = read(&self.state.rules).from_peer(&payload, self.ip.egress.mtu());
        match verdict {
            Verdict::Forward => match self.ip.egress.send(&payload) {
                Ok(()) => Metrics::inc(&self.metrics.ip_packets_to_egress),
                Err(_) => Metrics::inc(&self.metrics.ip_egress_send_failed),
            },
            Verdict::AnswerEcho if self.state.icmp_allowed(&self.metrics) => {
                self.icmp.clear();
                if matches!(
                    ForwardRules::write_echo_reply(&mut self.icmp, &payload, self.ip.local),
                    Ok(n) if n > 0
                ) {
                    self.to_client_icmp();
                }
            }
            Verdict::AnswerEcho => {}
            Verdict::Drop { reason, icmp } => {
                self.metrics.ip_drops.count(reason);
                if let Some(kind) = icmp
                    && self.state.icmp_allowed(&self.metrics)
                {
                    self.icmp.clear();
                    if write_icmp(&mut self.icmp, &payload, kind, self.ip.local) {
                        self.to_client_icmp();
                    }
                }
            }
        }
        Action::Continue
    }

    fn capsule(&mut self, capsule: Capsule) -> Action {
        let decoded = match ConnectIpCapsule::decode(capsule.ty, &capsule.value) {
            Ok(Some(c)) => c,
            // R9297-17: unknown capsule types are ignored.
            Ok(None) => return Action::Continue,
            Err(e) => {
                tracing::debug!(error = %e, "malformed CONNECT-IP capsule");
                return Action::Malformed;
            }
        };
        match decoded {
            ConnectIpCapsule::AddressRequest(entries) => self.on_address_request(&entries),
            ConnectIpCapsule::AddressAssign(entries) => {
                // The client's own addresses (R9484-26: the complete current set).
                self.peer_assigned = entries;
                Action::Continue
            }
            ConnectIpCapsule::RouteAdvertisement(routes) => {
                if masque_proto::connect_ip::validate_route_advertisement(&routes).is_err() {
                    return Action::Malformed;
                }
                self.peer_routes = routes;
                Action::Continue
            }
        }
    }

    fn terminate(&mut self, reason: &CloseReason) {
        tracing::debug!(?reason, assigned = ?read(&self.state.rules).assigned(), "CONNECT-IP tunnel ended");
    }
}

impl IpTunnel {
    fn on_address_request(&mut self, entries: &[RequestedAddress]) -> Action {
        let admitted = match lock(&self.state.requests).on_address_request(entries) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "ADDRESS_REQUEST refused");
                return Action::Malformed;
            }
        };
        for r in admitted.accepted {
            // Room for every pending request: the queue is as long as the pending limit.
            if self.requests_tx.try_send(r).is_err() {
                return Action::Abort;
            }
        }
        if !admitted.over_limit.is_empty() {
            // Over the pending limit: refused at once (they are remembered as answered).
            let refusals: Vec<_> = admitted
                .over_limit
                .iter()
                .map(AssignedAddress::refusal)
                .collect();
            Metrics::add(
                &self.metrics.ip_address_requests_refused,
                refusals.len() as u64,
            );
            let mut set = read(&self.state.rules).assigned().to_vec();
            set.extend(refusals);
            send_assign(&self.out, set);
        }
        Action::Continue
    }

    fn to_client_icmp(&self) {
        match self.out.try_send_datagram(0, &self.icmp) {
            Ok(()) => Metrics::inc(&self.metrics.ip_icmp_sent),
            Err(_) => Metrics::inc(&self.metrics.datagrams_to_client_dropped),
        }
    }
}

/// Writes the ICMP error `kind` about `invoking`; false when none is due.
fn write_icmp(out: &mut Vec<u8>, invoking: &[u8], kind: IcmpErrorKind, local: LocalAddrs) -> bool {
    matches!(ForwardRules::write_icmp(out, invoking, kind, local), Ok(n) if n > 0)
}

/// Queues ADDRESS_ASSIGN with `entries` (sorted, the encoder's order is the caller's).
fn send_assign(out: &TunnelOutput, entries: Vec<AssignedAddress>) {
    if let Ok(c) = ConnectIpCapsule::AddressAssign(entries).to_capsule() {
        let _ = out.send_capsule(c);
    }
}

/// Answers ADDRESS_REQUEST entries one by one: allocate, register, assign.
pub(super) async fn assign_addresses(
    ip: Arc<IpShared>,
    state: Arc<TunnelState>,
    out: TunnelOutput,
    sink: QueueTx<Bytes>,
    mut requests: QueueRx<RequestedAddress>,
) {
    let metrics = Arc::clone(out.metrics());
    while let Some(request) = requests.recv().await {
        let answer = match allocate(&ip, &out, &sink, &request).await {
            Some((addr, prefix_len)) => {
                Metrics::inc(&metrics.ip_addresses_assigned);
                AssignedAddress {
                    request_id: request.request_id,
                    ip: addr,
                    prefix_len,
                }
            }
            None => {
                Metrics::inc(&metrics.ip_address_requests_refused);
                AssignedAddress::refusal(&request)
            }
        };
        lock(&state.requests).answer(request.request_id);
        let mut set = {
            let mut rules = write(&state.rules);
            rules.add_assigned(answer);
            rules.assigned().to_vec()
        };
        if answer.is_refusal() {
            set.push(answer);
        }
        tracing::debug!(?answer, "ADDRESS_REQUEST answered");
        send_assign(&out, set);
    }
}

/// Most registration races one request retries before it is refused.
const REGISTER_ATTEMPTS: usize = 8;

async fn allocate(
    ip: &IpShared,
    out: &TunnelOutput,
    sink: &QueueTx<Bytes>,
    request: &RequestedAddress,
) -> Option<(std::net::IpAddr, u8)> {
    for _ in 0..REGISTER_ATTEMPTS {
        let (addr, len) = {
            let mut pools = lock(&ip.pools);
            pools.allocate(request, |a, l| ip.is_free(a, l))?
        };
        match ip
            .registry()
            .register(addr, len, out.session().clone(), 0, sink.clone())
            .await
        {
            Ok(o) if o.is_registered() => return Some((addr, len)),
            Ok(other) => {
                // No writer (a library user without the node's tree), or it did not
                // answer: packets for the block could not find this tunnel.
                tracing::warn!(?other, %addr, len, "IpRegistry did not register the block; refusing");
                return None;
            }
            Err(IpRegistryError::Conflict { .. }) => {
                tracing::debug!(%addr, len, "block taken meanwhile; trying the next");
            }
            Err(e) => {
                tracing::debug!(error = %e, %addr, len, "block not registered");
                return None;
            }
        }
    }
    None
}

/// Delivers the packets the ingress queued for this tunnel to the client.
pub(super) async fn deliver_to_client(
    ip: Arc<IpShared>,
    state: Arc<TunnelState>,
    out: TunnelOutput,
    mut packets: QueueRx<Bytes>,
) {
    if !out.opened().await {
        return;
    }
    let metrics = Arc::clone(out.metrics());
    let carries_v6 =
        ip.local.v6.is_some() && read(&state.rules).scope().iter().any(|r| r.start.is_ipv6());
    let mut mtu_check = std::pin::pin!(check_ipv6_mtu(&out, carries_v6, ip.config.mtu_grace));
    let mut mtu_checked = false;
    let mut icmp = Vec::new();
    loop {
        let packet = tokio::select! {
            ok = &mut mtu_check, if !mtu_checked => {
                if !ok {
                    Metrics::inc(&metrics.ip_mtu_refused);
                    let _ = out.abort();
                    return;
                }
                mtu_checked = true;
                continue;
            }
            p = packets.recv() => match p {
                Some(p) => p,
                None => return,
            },
        };
        let mut packet = packet
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        // What one datagram carries now (the path MTU grows with PMTUD); the
        // Context ID takes one byte. No bound for DATAGRAM capsules.
        let max = out
            .datagram_tx()
            .filter(|tx| !tx.is_capsule())
            .map(|tx| tx.max_payload_size().unwrap_or(0).saturating_sub(1));
        let verdict = read(&state.rules).to_peer(&mut packet, max);
        match verdict {
            Verdict::Forward => match out.send_datagram(0, &packet).await {
                Ok(()) => Metrics::inc(&metrics.ip_packets_to_client),
                Err(_) => Metrics::inc(&metrics.datagrams_to_client_dropped),
            },
            Verdict::AnswerEcho => {}
            Verdict::Drop { reason, icmp: kind } => {
                metrics.ip_drops.count(reason);
                if let Some(kind) = kind
                    && state.icmp_allowed(&metrics)
                {
                    icmp.clear();
                    if write_icmp(&mut icmp, &packet, kind, ip.local) {
                        match ip.egress.send(&icmp) {
                            Ok(()) => Metrics::inc(&metrics.ip_icmp_sent),
                            Err(_) => Metrics::inc(&metrics.ip_egress_send_failed),
                        }
                    }
                }
                if reason == PacketDrop::NotAssigned {
                    tracing::trace!("packet for an address this tunnel does not hold");
                }
            }
        }
    }
}

/// R9484-50: an HTTP/3 tunnel that may carry IPv6 must carry a 1280-byte packet in one
/// datagram. Right after the handshake QUIC may still run at its initial 1200-byte
/// packets, and path MTU discovery raises that within a few round trips, so the tunnel
/// gets `grace` to get there; `false` when it did not (abort). IPv4-only tunnels and
/// DATAGRAM capsules (no per-datagram bound) pass at once.
async fn check_ipv6_mtu(out: &TunnelOutput, carries_v6: bool, grace: std::time::Duration) -> bool {
    let fits = || match out.datagram_tx() {
        Some(tx) if !tx.is_capsule() => {
            tx.max_payload_size().unwrap_or(0).saturating_sub(1) >= IPV6_MIN_MTU
        }
        _ => true,
    };
    if !carries_v6 || fits() {
        return true;
    }
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if fits() {
            return true;
        }
    }
    tracing::info!(
        "HTTP/3 datagrams cannot carry 1280-byte packets; aborting the CONNECT-IP tunnel (R9484-50)"
    );
    false
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}
