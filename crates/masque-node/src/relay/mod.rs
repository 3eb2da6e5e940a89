//! The node as a two-hop relay (`--upstream URL`), Private-Relay style: every
//! tunnel the node accepts is opened again through the next-hop proxy, and the
//! node never connects to a target itself.
//!
//! * CONNECT-UDP ([`udp`]): datagrams go task to task — client datagrams from
//!   the session's callback straight into the upstream tunnel's sender
//!   (`try_send`, a full queue drops and counts), upstream datagrams from one
//!   reader task into the client's datagram sender. No actor hop per packet.
//! * CONNECT-TCP and classic CONNECT ([`tcp`]): the upstream `TcpTunnel` is the
//!   stream tunnel's target stream, so the node's stream runtime relays it with
//!   its backpressure, half-close and deadlines.
//! * CONNECT-IP ([`ip`]): packets task to task likewise; the client's address
//!   requests become ours upstream and the answers go back under its ids.
//! * `Via` (RFC 9110 §7.6.3): every relayed request carries the incoming `Via`
//!   plus this node's entry; a request whose `Via` already names this node is
//!   refused with 508 and `Proxy-Status: …; error=proxy_loop_detected`.
//! * A refusal by the next hop comes back with its status; `Proxy-Status` keeps
//!   its members and adds ours with `next-hop` and `received-status` (RFC 9209).

mod ip;
mod tcp;
mod udp;
mod upstream;
mod via;

use std::sync::Arc;

use masque_client::ClientError;
use masque_proto::proxy_status::TunnelFailure;
use masque_server::{
    Handler, Refusal, Target, TargetStream, TcpTarget, TunnelHandler, TunnelOutput,
    handler::NextHopRefusal, metrics::Metrics,
};
use masque_transport::TunnelRequest;

pub use upstream::Upstream;
pub use via::{default_identity, names_us};

/// The node's handler when it relays.
pub struct RelayProxy {
    upstream: Upstream,
    /// How this node names itself in `Via` (and finds itself there).
    identity: Arc<str>,
}

impl RelayProxy {
    pub fn new(upstream: Upstream, identity: impl Into<Arc<str>>) -> Self {
        Self {
            upstream,
            identity: identity.into(),
        }
    }

    /// The header fields of one relayed request: the upstream's, with `Via`.
    fn request_headers(&self, request: &TunnelRequest) -> http::HeaderMap {
        let mut headers = self.upstream.options().headers.clone();
        if let Ok(v) = http::HeaderValue::from_str(&via::append(request, &self.identity)) {
            headers.insert(http::header::VIA, v);
        }
        headers
    }
}

#[async_trait::async_trait]
impl Handler for RelayProxy {
    /// The UpstreamPool, a permanent child of the node's supervisor.
    fn children(&self) -> Vec<masque_server::supervisor::ChildSpec> {
        vec![self.upstream.pool_spec()]
    }

    async fn accept(&self, request: &TunnelRequest, _target: &Target) -> Result<(), Refusal> {
        if names_us(&request.headers, &self.identity) {
            return Err(Refusal::new(TunnelFailure::ProxyLoopDetected)
                .with_details(format!("Via already names {}", self.identity)));
        }
        Ok(())
    }

    async fn init(
        &self,
        request: &TunnelRequest,
        target: &Target,
        out: TunnelOutput,
    ) -> Result<Box<dyn TunnelHandler>, Refusal> {
        match target {
            Target::Udp(t) => {
                udp::open(&self.upstream, self.request_headers(request), t, out).await
            }
            Target::Ip(t) => ip::open(&self.upstream, self.request_headers(request), t, out).await,
            other => Err(Refusal::new(TunnelFailure::NotImplemented)
                .with_details(format!("this relay does not relay {other:?} yet"))),
        }
    }

    async fn connect(
        &self,
        request: &TunnelRequest,
        target: &TcpTarget,
        _metrics: &Arc<Metrics>,
    ) -> Result<TargetStream, Refusal> {
        tcp::open(&self.upstream, self.request_headers(request), target).await
    }
}

/// Why the next hop did not give us the tunnel, as our answer.
fn refusal(upstream: &Upstream, e: ClientError) -> Refusal {
    match e {
        ClientError::Refused {
            status,
            proxy_status,
            ..
        } => Refusal::from_next_hop(NextHopRefusal {
            status: status.as_u16(),
            next_hop: upstream.authority().to_owned(),
            proxy_status,
        }),
        ClientError::Timeout(_) => Refusal::new(TunnelFailure::ConnectionTimeout)
            .with_details(format!("next hop {}: {e}", upstream.authority())),
        e => Refusal::new(TunnelFailure::DestinationUnavailable)
            .with_details(format!("next hop {}: {e}", upstream.authority())),
    }
}
