//! `Proxy`: the node's handler. It joins the CONNECT-UDP service
//! ([`UdpProxy`]), the stream service ([`TcpProxy`]) and, when the node has
//! address pools, CONNECT-IP ([`IpProxy`]) over one outbound policy and one
//! DNS budget.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use masque_proto::{
    connect_ip::{self, IpAddressRange},
    proxy_status::TunnelFailure,
    template::{Host, HostPort, IpProto, IpScope, IpTarget},
};
use masque_transport::TunnelRequest;

use crate::{
    handler::{Handler, Refusal, Target, TargetStream, TcpTarget, TunnelHandler, TunnelOutput},
    ip::IpProxy,
    metrics::Metrics,
    tcp_proxy::{TcpProxy, TcpProxyConfig},
    udp_proxy::{UdpProxy, UdpProxyConfig},
};

/// The node's handler: CONNECT-UDP through a [`UdpProxy`], stream tunnels
/// through a [`TcpProxy`] sharing its outbound policy and DNS budget.
#[derive(Debug, Clone)]
pub struct Proxy {
    udp: UdpProxy,
    tcp: TcpProxy,
    /// CONNECT-IP, when the node has address pools.
    ip: Option<IpProxy>,
}

impl Proxy {
    pub fn new(udp: UdpProxyConfig, tcp: TcpProxyConfig) -> Self {
        let udp = UdpProxy::new(udp);
        let tcp = TcpProxy::new(&udp, tcp);
        Self { udp, tcp, ip: None }
    }

    /// Serves CONNECT-IP with `ip` (without it, CONNECT-IP is answered 501).
    pub fn with_ip(mut self, ip: IpProxy) -> Self {
        self.ip = Some(ip);
        self
    }

    /// The scope of a CONNECT-IP request as ranges (R9484 §4.6): `*` is every address,
    /// a hostname is resolved within the DNS budget (R9484-15) and each address, like
    /// an address literal, must pass the outbound policy.
    async fn ip_scope(
        &self,
        request: &TunnelRequest,
        target: &IpTarget,
        metrics: &Metrics,
    ) -> Result<Vec<IpAddressRange>, Refusal> {
        let ipproto = match target.ipproto {
            IpProto::Any => 0,
            IpProto::Proto(p) => p,
        };
        let prefixes: Vec<(IpAddr, u8)> = match &target.target {
            IpScope::Any => return Ok(connect_ip::any_scope(ipproto)),
            IpScope::Prefix(p) => vec![(p.addr(), p.prefix_len())],
            IpScope::Addr(a) => {
                self.udp.check(SocketAddr::new(*a, 1))?;
                vec![(*a, full_len(a))]
            }
            IpScope::Name(name) => {
                let hp = HostPort {
                    host: Host::Name(name.clone()),
                    port: std::num::NonZeroU16::MIN,
                };
                let addrs = self.udp.resolve_host(request, &hp, metrics).await?;
                self.udp
                    .allowed(addrs)?
                    .into_iter()
                    .map(|a| (a.ip(), full_len(&a.ip())))
                    .collect()
            }
        };
        Ok(connect_ip::scope_ranges(&prefixes, ipproto))
    }
}

fn full_len(a: &IpAddr) -> u8 {
    if a.is_ipv4() { 32 } else { 128 }
}

#[async_trait::async_trait]
impl Handler for Proxy {
    async fn accept(&self, request: &TunnelRequest, target: &Target) -> Result<(), Refusal> {
        if matches!(target, Target::Ip(_)) && self.ip.is_none() {
            return Err(Refusal::new(TunnelFailure::NotImplemented)
                .with_details("this node has no CONNECT-IP address pool (--ip-pool)"));
        }
        self.udp.accept(request, target).await
    }

    fn attach(&self, node: &crate::node::NodeServices) {
        if let Some(ip) = &self.ip {
            ip.attach(&node.metrics, Some(&node.ip_registry));
        }
    }

    async fn init(
        &self,
        request: &TunnelRequest,
        target: &Target,
        out: TunnelOutput,
    ) -> Result<Box<dyn TunnelHandler>, Refusal> {
        match (target, &self.ip) {
            (Target::Ip(scope), Some(ip)) => {
                let scope = self.ip_scope(request, scope, out.metrics()).await?;
                ip.init(scope, out)
            }
            (Target::Ip(_), None) => Err(Refusal::new(TunnelFailure::NotImplemented)),
            _ => self.udp.init(request, target, out).await,
        }
    }

    async fn connect(
        &self,
        request: &TunnelRequest,
        target: &TcpTarget,
        metrics: &Arc<Metrics>,
    ) -> Result<TargetStream, Refusal> {
        self.tcp.connect(request, target, metrics).await
    }
}
