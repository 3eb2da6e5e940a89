//! `UdpProxy`: the built-in CONNECT-UDP handler (RFC 9298 §3.1). Resolves the
//! target, applies the address policy, opens a connected, batched UDP socket and
//! relays: client datagrams go out with one non-blocking send each; target
//! datagrams are read in batches (recvmmsg/GRO) and sent to the client with
//! backpressure.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Duration,
};

use bytes::Bytes;
use masque_proto::{
    datagram::UDP_CONTEXT_ID,
    proxy_status::TunnelFailure,
    template::{Host, HostPort, UdpTarget},
};
use masque_transport::{OutDatagram, TunnelRequest};

use crate::{
    handler::{Action, CloseReason, Handler, Refusal, Target, TunnelHandler, TunnelOutput},
    metrics::Metrics,
    policy::{AddressPolicy, TargetRules},
    resolver::{LookupBudget, LookupLimits, Resolver, SystemResolver, resolve_within_budget},
    task_group::TunnelTask,
    udp_socket::{ErrorClass, SendBatch, TargetSocket, UdpSocketConfig, classify_error},
};

/// Configuration of the built-in UDP proxy.
#[derive(Clone)]
pub struct UdpProxyConfig {
    pub policy: AddressPolicy,
    /// `--allow-target` / `--deny-target` and the node's own listeners
    /// (`policy::AddressPolicy::check`).
    pub targets: TargetRules,
    /// R9298-17: a resolution slower than this is `dns_timeout` (504).
    pub dns_timeout: Duration,
    pub socket: UdpSocketConfig,
    pub resolver: Arc<dyn Resolver>,
    /// §5: lookups in flight, node-wide and per connection; more are 503.
    pub lookups: LookupLimits,
}

impl Default for UdpProxyConfig {
    fn default() -> Self {
        Self {
            policy: AddressPolicy::default(),
            targets: TargetRules::default(),
            dns_timeout: Duration::from_secs(5),
            socket: UdpSocketConfig::default(),
            resolver: Arc::new(SystemResolver),
            lookups: LookupLimits::default(),
        }
    }
}

impl std::fmt::Debug for UdpProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpProxyConfig")
            .field("policy", &self.policy)
            .field("targets", &self.targets)
            .field("dns_timeout", &self.dns_timeout)
            .field("socket", &self.socket)
            .field("lookups", &self.lookups)
            .finish_non_exhaustive()
    }
}

/// The CONNECT-UDP proxy handler.
#[derive(Debug, Clone)]
pub struct UdpProxy {
    config: UdpProxyConfig,
    lookups: Arc<LookupBudget>,
}

impl UdpProxy {
    pub fn new(config: UdpProxyConfig) -> Self {
        let lookups = LookupBudget::new(config.lookups);
        Self { config, lookups }
    }

    async fn resolve(
        &self,
        request: &TunnelRequest,
        target: &UdpTarget,
        metrics: &Metrics,
    ) -> Result<Vec<SocketAddr>, Refusal> {
        let UdpTarget::Host(hp) = target else {
            return Err(Refusal::new(TunnelFailure::MalformedRequest)
                .with_details("wildcard target needs connect-udp-bind"));
        };
        self.resolve_host(request, hp, metrics).await
    }

    /// The addresses of `hp`: a literal as it is, a name through the
    /// resolver within the DNS budget (R9298-17: `dns_timeout`).
    pub(crate) async fn resolve_host(
        &self,
        request: &TunnelRequest,
        hp: &HostPort,
        metrics: &Metrics,
    ) -> Result<Vec<SocketAddr>, Refusal> {
        let Host::Name(name) = &hp.host else {
            return Ok(crate::handler::literal(hp).into_iter().collect());
        };
        resolve_within_budget(
            self.config.resolver.as_ref(),
            &self.lookups,
            self.config.dns_timeout,
            request.peer,
            name.as_str(),
            hp.port.get(),
            metrics,
        )
        .await
    }
}

#[async_trait::async_trait]
impl Handler for UdpProxy {
    /// Literal IP targets (UDP or TCP) are checked against the policy
    /// before any session.
    async fn accept(&self, _request: &TunnelRequest, target: &Target) -> Result<(), Refusal> {
        match target.literal_addr() {
            Some(addr) => self.check(addr),
            None => Ok(()),
        }
    }

    async fn init(
        &self,
        request: &TunnelRequest,
        target: &Target,
        out: TunnelOutput,
    ) -> Result<Box<dyn TunnelHandler>, Refusal> {
        let Target::Udp(target) = target else {
            return Err(Refusal::new(TunnelFailure::NotImplemented)
                .with_details("UdpProxy serves CONNECT-UDP only"));
        };
        let addrs = self.resolve(request, target, out.metrics()).await?;
        // R9298-53: check every resolved address; use the first allowed one,
        // else refuse as the first address was refused.
        let addr = self.allowed(addrs)?[0];
        let socket = TargetSocket::connect(addr, &self.config.socket)
            .map_err(|e| Refusal::new(socket_failure(&e)).with_details(e.to_string()))?;
        let socket = Arc::new(socket);
        let metrics = Arc::clone(out.metrics());
        // In the connection's task group: one task reads every target socket
        // of the connection (decisions §29).
        let reader = out.spawn(target_to_client(Arc::clone(&socket), out.clone()));
        Ok(Box::new(UdpTunnel {
            socket,
            reader,
            metrics,
            outgoing: SendBatch::new(),
        }))
    }
}

impl UdpProxy {
    /// The addresses the outbound policy allows, in order (never empty), or
    /// the refusal of the first one.
    pub(crate) fn allowed(&self, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refusal> {
        let mut refused = None;
        let allowed: Vec<_> = addrs
            .into_iter()
            .filter(|a| match self.check(*a) {
                Ok(()) => true,
                Err(r) => {
                    refused.get_or_insert(r);
                    false
                }
            })
            .collect();
        if allowed.is_empty() {
            return Err(refused.unwrap_or_else(prohibited));
        }
        Ok(allowed)
    }

    /// The outbound policy (`policy::AddressPolicy::check`) for one target.
    pub(crate) fn check(&self, addr: SocketAddr) -> Result<(), Refusal> {
        self.config
            .policy
            .check(&self.config.targets, addr)
            .map_err(Refusal::from)
    }
}

fn prohibited() -> Refusal {
    Refusal::new(TunnelFailure::DestinationProhibited)
}

/// Why a target socket could not be opened, as precisely as the error tells
/// (PS-09). Out of file descriptors or of ephemeral ports is a limit of this
/// proxy, not a fault of the target: 503 `connection_limit_reached`, which a
/// client may retry later. No route, no usable source address or address
/// family: 502 `destination_ip_unroutable`. `EACCES` (a broadcast address
/// without `SO_BROADCAST`): the destination is prohibited. Anything else,
/// including `EPERM` from this host's own security policy and out of memory or
/// buffers: 500 `proxy_internal_error`.
pub(crate) fn socket_failure(e: &std::io::Error) -> TunnelFailure {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::EADDRINUSE | libc::EAGAIN) => {
            TunnelFailure::ConnectionLimitReached
        }
        Some(
            libc::ENETUNREACH
            | libc::EHOSTUNREACH
            | libc::ENETDOWN
            | libc::EADDRNOTAVAIL
            | libc::EAFNOSUPPORT,
        ) => TunnelFailure::DestinationUnroutable,
        Some(libc::EACCES) => TunnelFailure::DestinationProhibited,
        _ => TunnelFailure::ProxyInternalError,
    }
}

/// One tunnel's state: the target socket, the task reading from it, and the
/// burst of client datagrams waiting for the next `flush`.
struct UdpTunnel {
    socket: Arc<TargetSocket>,
    /// The target reader; dropping the tunnel aborts it.
    reader: TunnelTask,
    metrics: Arc<Metrics>,
    outgoing: SendBatch,
}

impl TunnelHandler for UdpTunnel {
    fn datagram(&mut self, context_id: u64, payload: Bytes) -> Action {
        debug_assert_eq!(context_id, UDP_CONTEXT_ID);
        // Collected until the burst ends: equal-size runs then leave in one GSO
        // system call (one copy into the batch buffer per datagram).
        self.outgoing.push(&payload);
        Action::Continue
    }

    fn flush(&mut self) -> Action {
        let queued = self.outgoing.len() as u64;
        match self.socket.try_send_batch(&mut self.outgoing) {
            Ok(sent) => {
                let sent = sent as u64;
                self.metrics.datagrams_to_target.fetch_add(sent, Relaxed);
                // A full socket buffer or per-datagram errors: drop the rest, counted.
                let dropped = queued.saturating_sub(sent);
                if dropped > 0 {
                    self.metrics
                        .datagrams_to_target_dropped
                        .fetch_add(dropped, Relaxed);
                }
                self.outgoing.clear();
                Action::Continue
            }
            Err(e) => {
                tracing::debug!(error = %e, "target socket failed");
                self.outgoing.clear();
                // The tunnel stays up on ICMP unreachable (our choice: the
                // target may come back; R9298-20 is noted in conformance.md).
                match classify_error(&e) {
                    ErrorClass::Unreachable => {
                        Metrics::inc(&self.metrics.icmp_unreachable);
                        Action::Continue
                    }
                    ErrorClass::Transient => Action::Continue,
                    ErrorClass::Fatal => Action::Abort,
                }
            }
        }
    }

    fn terminate(&mut self, reason: &CloseReason) {
        tracing::debug!(peer = %self.socket.peer_addr(), ?reason, "UDP tunnel closed");
        self.reader.abort();
    }
}

/// Target -> client: batched receive into the thread's shared buffers, each
/// datagram copied once into its own outgoing buffer (the only allocation),
/// then sent with backpressure.
async fn target_to_client(socket: Arc<TargetSocket>, out: TunnelOutput) {
    if !out.opened().await {
        return;
    }
    let metrics = Arc::clone(out.metrics());
    // One allocation per received batch, released after it: a tunnel that
    // went quiet holds none.
    let mut batch: Vec<OutDatagram> = Vec::new();
    loop {
        let received = socket
            .recv_shared(|datagrams| {
                batch.reserve_exact(datagrams.len());
                // Opened: the encoder is there, whatever the transport.
                batch.extend(
                    datagrams
                        .iter()
                        .filter_map(|d| out.encode_datagram(UDP_CONTEXT_ID, d)),
                );
            })
            .await;
        match received {
            Ok(()) => {
                out.touch();
                Metrics::add(&metrics.datagrams_from_target, batch.len() as u64);
                for d in batch.drain(..) {
                    if out.send_encoded(d).await.is_err() {
                        // Too large for the tunnel (R9298-50: drop) or closing.
                        Metrics::inc(&metrics.datagrams_to_client_dropped);
                    }
                }
                batch = Vec::new();
            }
            Err(e) if classify_error(&e) == ErrorClass::Unreachable => {
                Metrics::inc(&metrics.icmp_unreachable);
            }
            Err(e) => {
                tracing::debug!(error = %e, "target socket failed");
                let _ = out.abort();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PS-09: each way a target socket fails to open names its own error type.
    #[test]
    fn ps_09_socket_failures_are_specific() {
        let os = std::io::Error::from_raw_os_error;
        let cases = [
            (libc::EMFILE, TunnelFailure::ConnectionLimitReached),
            (libc::ENFILE, TunnelFailure::ConnectionLimitReached),
            (libc::EADDRINUSE, TunnelFailure::ConnectionLimitReached),
            (libc::EAGAIN, TunnelFailure::ConnectionLimitReached),
            (libc::ENETDOWN, TunnelFailure::DestinationUnroutable),
            (libc::EPERM, TunnelFailure::ProxyInternalError),
            (libc::ENETUNREACH, TunnelFailure::DestinationUnroutable),
            (libc::EHOSTUNREACH, TunnelFailure::DestinationUnroutable),
            (libc::EADDRNOTAVAIL, TunnelFailure::DestinationUnroutable),
            (libc::EAFNOSUPPORT, TunnelFailure::DestinationUnroutable),
            (libc::EACCES, TunnelFailure::DestinationProhibited),
            (libc::ENOBUFS, TunnelFailure::ProxyInternalError),
            (libc::ENOMEM, TunnelFailure::ProxyInternalError),
        ];
        for (errno, failure) in cases {
            assert_eq!(socket_failure(&os(errno)), failure, "errno {errno}");
        }
        assert_eq!(
            socket_failure(&std::io::Error::other("no errno")),
            TunnelFailure::ProxyInternalError
        );
        assert_eq!(
            TunnelFailure::ConnectionLimitReached.response().0,
            503,
            "retry later, not a bad gateway"
        );
    }
}
