//! CONNECT-IP on the node (RFC 9484): address pools, the per-tunnel handler and the egress.
//!
//! `IpProxy` is the part of the node's [`crate::Proxy`] that serves `connect-ip`. Each
//! tunnel runs on the datagram runtime CONNECT-UDP uses (h3, h2 and h1 alike); its
//! handler applies masque-proto's sans-IO forwarding rules to every packet and answers
//! ADDRESS_REQUEST from the configured pools, registering each block in the IpRegistry
//! (crossbeam skip list, lock-free lookups). Packets from the egress find their session
//! by `IpRegistry::lookup` and a bounded queue: no actor hop per packet.
//!
//! ```text
//!  client ──datagram──▶ IpTunnel::datagram ──from_peer──▶ IpEgress::send (TUN)
//!  client ◀──datagram── deliver_to_client ◀── session queue ◀── IpIngress::deliver ◀── TUN
//! ```

mod egress;
mod pool;
mod tun;
mod tunnel;

pub use egress::{Delivery, EgressError, IpEgress, IpIngress, QueueEgress};
pub use pool::{AddressPools, IpPrefix, MAX_PROBES, PoolError, own_address};
pub use tun::TunEgress;

use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use masque_proto::connect_ip::{
    ConnectIpCapsule, DEFAULT_MAX_REMEMBERED, ForwardRules, IpAddressRange, LocalAddrs,
    PendingRequests,
};
use masque_registry::ip::IpRegistryHandle;

use crate::handler::{Refusal, TunnelHandler, TunnelOutput};
use crate::metrics::Metrics;
use crate::session::budget::{PacketBudget, PacketRate};
use tunnel::{IpTunnel, TunnelState};

/// CONNECT-IP settings of a node.
#[derive(Debug, Clone)]
pub struct IpProxyConfig {
    /// Where assignments come from (`--ip-pool`, repeatable). Empty: CONNECT-IP is
    /// refused with 501.
    pub pools: Vec<IpPrefix>,
    /// Packets queued for one tunnel from the egress; beyond, drop and count.
    pub tunnel_queue: usize,
    /// ADDRESS_REQUEST entries of one tunnel waiting for an answer (R9484-29); more are
    /// refused at once.
    pub max_pending_requests: usize,
    /// Routes advertised on open; `None`: the tunnel's scope, in the families the
    /// pools serve.
    pub routes: Option<Vec<IpPrefix>>,
    /// ICMP one tunnel may make the node generate (errors and echo replies, both
    /// directions; ICMP-18); `None`: unlimited.
    pub icmp_rate: Option<PacketRate>,
    /// Time an HTTP/3 tunnel that may carry IPv6 gets for path MTU discovery to
    /// reach 1280-byte packets before it is aborted (R9484-50).
    pub mtu_grace: Duration,
}

impl Default for IpProxyConfig {
    fn default() -> Self {
        Self {
            pools: Vec::new(),
            tunnel_queue: 512,
            max_pending_requests: masque_proto::connect_ip::DEFAULT_MAX_PENDING,
            routes: None,
            icmp_rate: Some(PacketRate {
                per_second: 100,
                burst: 50,
            }),
            mtu_grace: Duration::from_secs(3),
        }
    }
}

/// What every tunnel of the node shares.
pub(crate) struct IpShared {
    config: IpProxyConfig,
    pools: Mutex<AddressPools>,
    /// Set by the constructor (`with_registry`) or, for `new`, to the node's
    /// registry when the node starts; the process-wide one otherwise.
    registry: OnceLock<IpRegistryHandle>,
    egress: Arc<dyn IpEgress>,
    local: LocalAddrs,
}

impl IpShared {
    fn registry(&self) -> &IpRegistryHandle {
        self.registry
            .get_or_init(|| IpRegistryHandle::global().clone())
    }

    /// Whether nobody holds any of `addr/len`: lookups of its first and last address
    /// (a smaller block inside it still makes the registration fail; then the next one
    /// is tried).
    fn is_free(&self, addr: IpAddr, len: u8) -> bool {
        let end = block_end(addr, len);
        let registry = self.registry();
        registry.lookup(addr).is_none() && registry.lookup(end).is_none()
    }
}

fn block_end(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(a) | host).into())
        }
        IpAddr::V6(a) => {
            let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(a) | host).into())
        }
    }
}

/// The node's CONNECT-IP service.
#[derive(Clone)]
pub struct IpProxy {
    shared: Arc<IpShared>,
    started: Arc<OnceLock<()>>,
}

impl std::fmt::Debug for IpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpProxy")
            .field("pools", &self.shared.config.pools)
            .finish_non_exhaustive()
    }
}

impl IpProxy {
    /// A service assigning from `config.pools` and sending packets into `egress`,
    /// registering in the IpRegistry of the node it serves (or, used without a
    /// node, the process-wide one).
    pub fn new(config: IpProxyConfig, egress: Arc<dyn IpEgress>) -> Result<Self, PoolError> {
        Self::build(config, egress, OnceLock::new())
    }

    /// As [`new`](Self::new), with a registry of the caller's (its writer must
    /// run for registrations to succeed).
    pub fn with_registry(
        config: IpProxyConfig,
        egress: Arc<dyn IpEgress>,
        registry: IpRegistryHandle,
    ) -> Result<Self, PoolError> {
        Self::build(config, egress, OnceLock::from(registry))
    }

    fn build(
        config: IpProxyConfig,
        egress: Arc<dyn IpEgress>,
        registry: OnceLock<IpRegistryHandle>,
    ) -> Result<Self, PoolError> {
        let pools = AddressPools::new(&config.pools)?;
        let local = pools.local_addrs();
        Ok(Self {
            shared: Arc::new(IpShared {
                config,
                pools: Mutex::new(pools),
                registry,
                egress,
                local,
            }),
            started: Arc::new(OnceLock::new()),
        })
    }

    /// The node's own addresses (the TUN's; the source of its ICMP).
    pub fn local_addrs(&self) -> LocalAddrs {
        self.shared.local
    }

    /// Adopts the node's registry (unless one was given) and starts the egress's
    /// reader with the node's counters (once).
    pub(crate) fn attach(&self, metrics: &Arc<Metrics>, registry: Option<&IpRegistryHandle>) {
        self.started.get_or_init(|| {
            if let Some(r) = registry {
                let _ = self.shared.registry.set(r.clone());
            }
            let ingress = IpIngress::new(self.shared.registry().clone(), Arc::clone(metrics));
            self.shared.egress.start(ingress);
        });
    }

    /// The registry this service registers its blocks in.
    pub fn registry(&self) -> &IpRegistryHandle {
        self.shared.registry()
    }

    /// Sets up one tunnel whose scope is `scope` (already resolved): advertises the
    /// routes (queued, sent right after the 2xx) and starts its tasks.
    pub(crate) fn init(
        &self,
        scope: Vec<IpAddressRange>,
        out: TunnelOutput,
    ) -> Result<Box<dyn TunnelHandler>, Refusal> {
        let ip = &self.shared;
        let metrics = Arc::clone(out.metrics());
        self.attach(&metrics, None);
        let routes = match &ip.config.routes {
            Some(prefixes) => {
                let p: Vec<(IpAddr, u8)> = prefixes.iter().map(|p| (p.addr, p.len)).collect();
                let ipproto = scope.first().map_or(0, |r| r.ipproto);
                masque_proto::connect_ip::scope_ranges(&p, ipproto)
            }
            // The scope, in the families the node has addresses for: a client
            // gets no address of another family, so no route for it either.
            None => scope
                .iter()
                .filter(|r| match r.start {
                    IpAddr::V4(_) => self.shared.local.v4.is_some(),
                    IpAddr::V6(_) => self.shared.local.v6.is_some(),
                })
                .copied()
                .collect(),
        };
        if let Ok(c) = ConnectIpCapsule::RouteAdvertisement(routes).to_capsule() {
            let _ = out.send_capsule(c);
        }
        let state = Arc::new(TunnelState {
            rules: RwLock::new(ForwardRules::new(scope)),
            requests: Mutex::new(PendingRequests::new(
                ip.config.max_pending_requests,
                DEFAULT_MAX_REMEMBERED,
            )),
            icmp_budget: Mutex::new(PacketBudget::new(
                ip.config.icmp_rate,
                std::time::Instant::now(),
            )),
        });
        let (sink, packets) = masque_queue::channel(ip.config.tunnel_queue.max(1));
        let (requests_tx, requests_rx) =
            masque_queue::channel(ip.config.max_pending_requests.max(1));
        let assigner = out.spawn(tunnel::assign_addresses(
            Arc::clone(ip),
            Arc::clone(&state),
            out.clone(),
            sink,
            requests_rx,
        ));
        let delivery = out.spawn(tunnel::deliver_to_client(
            Arc::clone(ip),
            Arc::clone(&state),
            out.clone(),
            packets,
        ));
        Metrics::inc(&metrics.ip_tunnels);
        Ok(Box::new(IpTunnel {
            ip: Arc::clone(ip),
            state,
            out,
            metrics,
            requests_tx,
            peer_assigned: Vec::new(),
            peer_routes: Vec::new(),
            icmp: Vec::new(),
            _tasks: [assigner, delivery],
        }))
    }
}
