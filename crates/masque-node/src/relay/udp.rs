//! CONNECT-UDP relayed: the upstream tunnel's sender takes the client's
//! datagrams from the session callback (`try_send`: a full queue drops and
//! counts), and one reader task, in the client connection's task group, moves
//! the upstream's datagrams to the client.

use std::sync::Arc;

use bytes::Bytes;
use masque_client::{Target, UdpSender, UdpSession};
use masque_proto::proxy_status::TunnelFailure;
use masque_proto::template::UdpTarget;
use masque_server::{Action, Refusal, TunnelHandler, TunnelOutput, TunnelTask, metrics::Metrics};

use super::{refusal, upstream::Upstream};

pub(super) async fn open(
    upstream: &Upstream,
    headers: http::HeaderMap,
    target: &UdpTarget,
    out: TunnelOutput,
) -> Result<Box<dyn TunnelHandler>, Refusal> {
    let UdpTarget::Host(hp) = target else {
        return Err(Refusal::new(TunnelFailure::MalformedRequest)
            .with_details("wildcard target needs connect-udp-bind"));
    };
    let target = Target::udp(hp.host.to_string(), hp.port.get());
    let session = upstream
        .open_udp(&target, headers)
        .await
        .map_err(|e| refusal(upstream, e))?;
    let sender = session.sender();
    let metrics = Arc::clone(out.metrics());
    let reader = out.spawn(upstream_to_client(session, out.clone()));
    Ok(Box::new(UdpRelay {
        sender,
        metrics,
        _reader: reader,
    }))
}

/// The upstream's datagrams to the client until either side ends.
async fn upstream_to_client(mut session: UdpSession, out: TunnelOutput) {
    if !out.opened().await {
        return;
    }
    let metrics = Arc::clone(out.metrics());
    while let Some(payload) = session.recv().await {
        Metrics::inc(&metrics.datagrams_from_target);
        if out.send_datagram(0, &payload).await.is_err() {
            Metrics::inc(&metrics.datagrams_to_client_dropped);
        }
    }
    // The next hop ended the tunnel: end ours.
    let _ = out.close();
}

struct UdpRelay {
    sender: UdpSender,
    metrics: Arc<Metrics>,
    /// Dropping the relay stops the reader, which drops the upstream tunnel.
    _reader: TunnelTask,
}

impl TunnelHandler for UdpRelay {
    fn datagram(&mut self, _context_id: u64, payload: Bytes) -> Action {
        match self.sender.try_send(&payload) {
            Ok(()) => Metrics::inc(&self.metrics.datagrams_to_target),
            Err(_) => Metrics::inc(&self.metrics.datagrams_to_target_dropped),
        }
        Action::Continue
    }
}
