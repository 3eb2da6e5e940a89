//! CONNECT-IP relayed. Packets pass through unchanged, task to task (the last
//! hop applies the forwarding rules): the client's from the session callback
//! into the upstream tunnel's sender (`try_send`, full = dropped and counted),
//! the upstream's from one reader task to the client.
//!
//! Addressing is relayed as a CONNECT-IP client would do it: the client's
//! ADDRESS_REQUEST entries become requests of ours upstream (fresh request
//! ids, R9484-29), and the next hop's answers go back under the client's ids,
//! refusals included (R9484-33); the next hop's ROUTE_ADVERTISEMENT and the
//! client's go through as they are, validated on the way in.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use bytes::Bytes;
use masque_client::{IpInfo, IpSender, IpSession};
use masque_proto::{
    capsule::Capsule,
    connect_ip::{AssignedAddress, ConnectIpCapsule, RequestedAddress},
    template::{IpPrefix, IpTarget},
};
use masque_server::{Action, Refusal, TunnelHandler, TunnelOutput, TunnelTask, metrics::Metrics};

use super::{refusal, upstream::Upstream};

/// Our upstream request ids and the client's requests they stand for.
#[derive(Default)]
struct Requests {
    by_upstream_id: BTreeMap<u64, RequestedAddress>,
    /// Upstream ids whose refusal went back already.
    refused_sent: BTreeSet<u64>,
}

pub(super) async fn open(
    upstream: &Upstream,
    headers: http::HeaderMap,
    target: &IpTarget,
    out: TunnelOutput,
) -> Result<Box<dyn TunnelHandler>, Refusal> {
    let session = upstream
        .open_ip(target, headers)
        .await
        .map_err(|e| refusal(upstream, e))?;
    let sender = session.sender();
    let requests = Arc::new(Mutex::new(Requests::default()));
    let metrics = Arc::clone(out.metrics());
    let reader = out.spawn(upstream_to_client(
        session,
        Arc::clone(&requests),
        out.clone(),
    ));
    Ok(Box::new(IpRelay {
        sender,
        requests,
        metrics,
        _reader: reader,
    }))
}

struct IpRelay {
    sender: IpSender,
    requests: Arc<Mutex<Requests>>,
    metrics: Arc<Metrics>,
    /// Dropping the relay stops the reader, which drops the upstream tunnel.
    _reader: TunnelTask,
}

impl TunnelHandler for IpRelay {
    fn datagram(&mut self, _context_id: u64, payload: Bytes) -> Action {
        match self.sender.try_send_ip_packet(&payload) {
            Ok(()) => Metrics::inc(&self.metrics.ip_packets_to_egress),
            Err(_) => Metrics::inc(&self.metrics.ip_egress_send_failed),
        }
        Action::Continue
    }

    fn capsule(&mut self, capsule: Capsule) -> Action {
        let decoded = match ConnectIpCapsule::decode(capsule.ty, &capsule.value) {
            Ok(Some(c)) => c,
            // R9297-17: unknown capsule types are ignored.
            Ok(None) => return Action::Continue,
            Err(_) => return Action::Malformed,
        };
        let sent = match decoded {
            ConnectIpCapsule::AddressRequest(entries) => self.request(&entries),
            ConnectIpCapsule::RouteAdvertisement(routes) => self.sender.advertise_routes(&routes),
            // The client's own addresses, unprompted (id 0) entries only: we
            // never forward the next hop's requests to it.
            ConnectIpCapsule::AddressAssign(entries) => {
                let unprompted: Vec<_> =
                    entries.into_iter().filter(|e| e.request_id == 0).collect();
                self.sender.assign_addresses(&unprompted)
            }
        };
        match sent {
            Ok(()) => Action::Continue,
            Err(e) => {
                tracing::debug!(error = %e, "relayed CONNECT-IP capsule refused");
                Action::Malformed
            }
        }
    }
}

impl IpRelay {
    /// The client's requests as ours, one upstream request per entry.
    fn request(&self, entries: &[RequestedAddress]) -> Result<(), masque_client::ClientError> {
        let mut requests = lock(&self.requests);
        for e in entries {
            let prefix = IpPrefix::new(e.ip, e.prefix_len)
                .map_err(|_| masque_client::ClientError::Closed)?;
            for id in self.sender.request_addresses(&[prefix])? {
                requests.by_upstream_id.insert(id, *e);
            }
        }
        Ok(())
    }
}

/// The next hop's packets, addressing and routes to the client.
async fn upstream_to_client(
    mut session: IpSession,
    requests: Arc<Mutex<Requests>>,
    out: TunnelOutput,
) {
    if !out.opened().await {
        return;
    }
    let metrics = Arc::clone(out.metrics());
    let sender = session.sender();
    let mut last = IpInfo::default();
    loop {
        tokio::select! {
            p = session.recv(Duration::from_secs(3600)) => match p {
                Ok(packet) => match out.send_datagram(0, &packet).await {
                    Ok(()) => Metrics::inc(&metrics.ip_packets_to_client),
                    Err(_) => Metrics::inc(&metrics.datagrams_to_client_dropped),
                },
                Err(masque_client::ClientError::Timeout(_)) => {}
                Err(_) => break,
            },
            info = sender.wait_for(Duration::from_secs(3600), |i| i != &last) => match info {
                Ok(info) => {
                    forward_changes(&last, &info, &requests, &out);
                    last = info;
                }
                Err(masque_client::ClientError::Timeout(_)) => {}
                Err(_) => break,
            },
        }
    }
    // The next hop ended the tunnel: end ours.
    let _ = out.close();
}

/// What changed upstream, as capsules to the client.
fn forward_changes(last: &IpInfo, now: &IpInfo, requests: &Mutex<Requests>, out: &TunnelOutput) {
    if now.routes != last.routes {
        send(
            out,
            ConnectIpCapsule::RouteAdvertisement(now.routes.clone()),
        );
    }
    let mut requests = lock(requests);
    let newly_refused: Vec<u64> = now
        .refused
        .iter()
        .map(|r| r.request_id)
        .filter(|id| !requests.refused_sent.contains(id))
        .collect();
    if now.assigned == last.assigned && newly_refused.is_empty() {
        return;
    }
    // The complete current set (R9484-26), under the client's request ids;
    // the next hop's unprompted entries stay unprompted.
    let mut set: Vec<AssignedAddress> = now
        .assigned
        .iter()
        .filter_map(|a| match a.request_id {
            0 => Some(*a),
            id => requests
                .by_upstream_id
                .get(&id)
                .map(|client| AssignedAddress {
                    request_id: client.request_id,
                    ..*a
                }),
        })
        .collect();
    for id in newly_refused {
        requests.refused_sent.insert(id);
        if let Some(client) = requests.by_upstream_id.get(&id) {
            set.push(AssignedAddress::refusal(client));
        }
    }
    send(out, ConnectIpCapsule::AddressAssign(set));
}

fn send(out: &TunnelOutput, capsule: ConnectIpCapsule) {
    if let Ok(c) = capsule.to_capsule() {
        let _ = out.send_capsule(c);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
