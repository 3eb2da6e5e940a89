//! CONNECT-IP (RFC 9484) against the real node (masque-server's `Node` with
//! `Proxy::with_ip`, a pool per test and a `QueueEgress` the test reads and
//! feeds, no TUN): address assignment from the pool, the TTL rules (a TTL-1
//! packet from the client leaves the node untouched; one from the egress
//! expires at the node, which answers ICMP Time Exceeded itself), the
//! assign-id rule, and active and queue delivery. Each body runs per
//! transport.

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use masque_client::{
    Answer, AssignedAddress, ClientError, ClientOptions, CloseReason, IpAddressRange, IpEvent,
    IpPrefix, IpProto, IpScope, IpSession, IpTarget, TransportChoice, connect_ip,
};
use masque_proto::{icmp::parse_icmp_packet, packet::fill_ipv4_header_checksum};
use masque_queue::QueueRx;
use masque_server::{
    IpProxy, IpProxyConfig, Node, Proxy, QuicMtu, ServerConfig, TcpProxyConfig, UdpProxyConfig,
    ip::{Delivery, IpPrefix as PoolPrefix, QueueEgress},
    policy::AddressPolicy,
};
use masque_transport::{
    Transport,
    tls::{DevCert, ServerVerification},
};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc;

use crate::{WAIT, per_transport, within};

per_transport!(
    ip_address_from_pool_and_ttl_rules,
    ip_scope_routes_and_refusal,
    ip_assign_id_rule,
    ip_active_and_queue_modes,
);

const MTU: QuicMtu = QuicMtu {
    initial: 1452,
    min: 1452,
};

/// A node serving CONNECT-IP from `pool`, its egress a queue.
struct IpNode {
    node: Node,
    cert: DevCert,
    egress: Arc<QueueEgress>,
    /// What the node's tunnels sent out (bounded).
    out: QueueRx<Bytes>,
}

impl IpNode {
    async fn start(pool: &str) -> anyhow::Result<Self> {
        let cert = DevCert::ephemeral()?;
        let policy = AddressPolicy {
            allow_private: true,
            own_addresses: vec![],
        };
        let udp = UdpProxyConfig {
            policy,
            ..Default::default()
        };
        let egress = Arc::new(QueueEgress::new(256, 1500));
        let out = egress.take_receiver().expect("first take");
        let ip = IpProxy::new(
            IpProxyConfig {
                pools: vec![PoolPrefix::parse(pool)?],
                ..Default::default()
            },
            egress.clone(),
        )?;
        let proxy = Proxy::new(udp, TcpProxyConfig::default()).with_ip(ip);
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            drain_timeout: Duration::from_secs(2),
            quic_mtu: MTU,
            ..Default::default()
        };
        let node = Node::start(config, &cert.server_tls(), Arc::new(proxy)).await?;
        Ok(Self {
            node,
            cert,
            egress,
            out,
        })
    }

    fn url(&self, t: Transport) -> String {
        let addr = match t {
            Transport::H3 => self.node.local_addr(),
            _ => self.node.tcp_addr().expect("TCP"),
        };
        format!("https://localhost:{}", addr.port())
    }

    fn options(&self, t: Transport) -> ClientOptions {
        ClientOptions {
            transport: TransportChoice::from(t),
            verification: ServerVerification::CustomCa(vec![self.cert.cert_der().clone()]),
            initial_mtu: MTU.initial,
            min_mtu: MTU.min,
            ..Default::default()
        }
    }

    async fn open(&self, t: Transport) -> anyhow::Result<IpSession> {
        Ok(within(connect_ip(&self.url(t), &IpTarget::ANY, self.options(t))).await?)
    }

    /// Hands `packet` to the node as if its egress had received it.
    fn inject(&self, packet: &[u8]) -> Delivery {
        let ingress = self.egress.ingress().expect("the node attached its egress");
        ingress.deliver(Bytes::copy_from_slice(packet))
    }

    /// The next packet the node sent out matching `pred`, within 500 ms.
    async fn egress_packet(&mut self, pred: impl Fn(&[u8]) -> bool) -> Option<Bytes> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(Some(p)) = tokio::time::timeout_at(deadline, self.out.recv()).await {
            if pred(&p) {
                return Some(p);
            }
        }
        None
    }

    /// Sends `packet` from the client until it comes out of the node's
    /// egress (datagrams may be lost: up to 20 tries); returns what came out.
    async fn client_to_egress(
        &mut self,
        session: &IpSession,
        packet: &[u8],
    ) -> anyhow::Result<Bytes> {
        for _ in 0..20 {
            session.send_ip_packet(packet).await?;
            if let Some(p) = self.egress_packet(|p| same_flow(p, packet)).await {
                return Ok(p);
            }
        }
        anyhow::bail!("the packet never left the node")
    }
}

/// Same IPv4 identification, source and destination (TTL and checksum may differ).
fn same_flow(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.get(4..6) == b.get(4..6) && a.get(12..20) == b.get(12..20)
}

/// A distinct pool per test and transport: the IpRegistry is process-wide.
fn pool(test: u8, t: Transport) -> String {
    let n = match t {
        Transport::H3 => 0,
        Transport::H2 => 1,
        Transport::H1 => 2,
    };
    format!("10.{}.{}.0/24", 200 + test, n)
}

fn any_v4() -> IpPrefix {
    IpPrefix::new(Ipv4Addr::UNSPECIFIED.into(), 32).expect("prefix")
}

/// Requests one IPv4 address and waits for it.
async fn get_v4(session: &IpSession) -> anyhow::Result<Ipv4Addr> {
    let ids = session.request_addresses(&[any_v4()])?;
    assert!(ids.iter().all(|&id| id != 0));
    let info = session
        .wait_for(WAIT, |i| i.pending_requests.is_empty())
        .await?;
    let a = info
        .assigned
        .iter()
        .find(|a| a.ip.is_ipv4())
        .ok_or_else(|| anyhow::anyhow!("no IPv4 assigned: {info:?}"))?;
    assert_eq!(a.prefix_len, 32);
    match a.ip {
        IpAddr::V4(ip) => Ok(ip),
        IpAddr::V6(_) => unreachable!("filtered"),
    }
}

/// An IPv4 UDP packet from `src` with `ttl` and identification `id`, checksummed.
fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, id: u16) -> Vec<u8> {
    let payload = b"connect-ip test";
    let total = 20 + 8 + payload.len();
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, ttl, 17, 0, 0];
    p[2..4].copy_from_slice(&u16::try_from(total).expect("small").to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&33434u16.to_be_bytes());
    p.extend_from_slice(
        &u16::try_from(8 + payload.len())
            .expect("small")
            .to_be_bytes(),
    );
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    fill_ipv4_header_checksum(&mut p).expect("IPv4");
    p
}

/// Whether `p` is an ICMPv4 Time Exceeded (type 11 code 0) to `to`.
fn is_time_exceeded(p: &[u8], to: Ipv4Addr) -> bool {
    match parse_icmp_packet(p) {
        Ok((ip, icmp)) => ip.destination() == IpAddr::V4(to) && icmp.ty == 11 && icmp.code == 0,
        Err(_) => false,
    }
}

const FAR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

/// Queue mode: hands packets from the egress to the node until one reaches
/// the client's queue (datagrams may be lost: up to 20 tries).
async fn egress_to_client(
    node: &IpNode,
    session: &mut IpSession,
    packet: &[u8],
) -> anyhow::Result<Bytes> {
    for _ in 0..20 {
        assert_eq!(node.inject(packet), Delivery::Queued);
        match session.recv(Duration::from_millis(500)).await {
            Ok(p) if same_flow(&p, packet) => return Ok(p),
            Ok(_) | Err(ClientError::Timeout(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("no packet reached the client")
}

async fn ip_address_from_pool_and_ttl_rules(t: Transport) -> anyhow::Result<()> {
    let pool = pool(0, t);
    let mut node = IpNode::start(&pool).await?;
    let mut session = node.open(t).await?;
    let me = get_v4(&session).await?;
    let net: PoolPrefix = PoolPrefix::parse(&pool)?;
    let IpAddr::V4(base) = net.addr else {
        unreachable!("an IPv4 pool")
    };
    assert_eq!(me.octets()[..3], base.octets()[..3], "{me} from {pool}");
    // The node keeps the pool's first host for itself.
    assert_ne!(me.octets()[3], 1);
    assert!(
        !session.ip_info().routes.is_empty(),
        "the node advertises the scope"
    );

    // Client -> egress: leaving the tunnel is no routing hop, TTL 1 passes
    // untouched (R9484-47).
    let out = udp_packet(me, FAR, 1, 0x0101);
    let left = node.client_to_egress(&session, &out).await?;
    assert_eq!(&left[..], &out[..]);

    // Egress -> client: entering the tunnel decrements the TTL; at 1 the
    // packet expires at the node, which answers ICMP Time Exceeded to the
    // sender itself and delivers nothing.
    let expiring = udp_packet(FAR, me, 1, 0x0202);
    assert_eq!(node.inject(&expiring), Delivery::Queued);
    let icmp = node.egress_packet(|p| is_time_exceeded(p, FAR)).await;
    assert!(icmp.is_some(), "the node answered Time Exceeded");
    match session.recv(Duration::from_millis(300)).await {
        Err(ClientError::Timeout(_)) => {}
        other => anyhow::bail!("an expired packet was delivered: {other:?}"),
    }
    let arriving = udp_packet(FAR, me, 2, 0x0303);
    let got = egress_to_client(&node, &mut session, &arriving).await?;
    assert_eq!(got[8], 1, "TTL decremented once");

    // Not an IP packet: refused before sending.
    assert!(matches!(
        session.send_ip_packet(b"\x10hello").await,
        Err(ClientError::InvalidPacket(_))
    ));
    let closed = within(session.close()).await;
    assert!(
        matches!(
            closed.reason,
            CloseReason::ProxyFinished | CloseReason::Local
        ),
        "{closed:?}"
    );
    node.node.shutdown().await;
    Ok(())
}

/// A scoped request (198.51.100.0/24, UDP): the node advertises exactly the
/// scope (R9484-09/36); an IPv6 request to an IPv4-only pool is refused
/// with the all-zero answer (R9484-33) while IPv4 is granted.
async fn ip_scope_routes_and_refusal(t: Transport) -> anyhow::Result<()> {
    let node = IpNode::start(&pool(3, t)).await?;
    let scope = IpTarget {
        target: IpScope::Prefix(IpPrefix::new("198.51.100.0".parse()?, 24)?),
        ipproto: IpProto::Proto(17),
    };
    let session = within(connect_ip(&node.url(t), &scope, node.options(t))).await?;
    let any_v6 = IpPrefix::new(std::net::Ipv6Addr::UNSPECIFIED.into(), 128)?;
    let ids = session.request_addresses(&[any_v4(), any_v6])?;
    assert_eq!(ids.len(), 2);
    let info = session
        .wait_for(WAIT, |i| {
            i.pending_requests.is_empty() && !i.routes.is_empty()
        })
        .await?;
    assert_eq!(
        info.routes,
        [IpAddressRange {
            start: "198.51.100.0".parse()?,
            end: "198.51.100.255".parse()?,
            ipproto: 17,
        }]
    );
    assert_eq!(info.assigned.len(), 1, "{info:?}");
    assert!(info.assigned[0].ip.is_ipv4());
    assert_eq!(info.refused.len(), 1, "{info:?}");
    assert_eq!(info.refused[0].request_id, ids[1]);
    within(session.close()).await;
    node.node.shutdown().await;
    Ok(())
}

/// ADDRESS_ASSIGN to the node: id 0 always goes; a non-zero id that answers
/// no ADDRESS_REQUEST of the node is refused locally and nothing is sent.
async fn ip_assign_id_rule(t: Transport) -> anyhow::Result<()> {
    let mut node = IpNode::start(&pool(1, t)).await?;
    let session = node.open(t).await?;
    let peer = AssignedAddress {
        request_id: 5,
        ip: "192.0.2.9".parse()?,
        prefix_len: 32,
    };
    assert!(matches!(
        session.assign_addresses(&[peer]),
        Err(ClientError::UnknownRequestId(5))
    ));
    assert!(session.ip_info().assigned_to_peer.is_empty());
    let unprompted = AssignedAddress {
        request_id: 0,
        ..peer
    };
    session.assign_addresses(&[unprompted])?;
    assert_eq!(session.ip_info().assigned_to_peer, [unprompted]);
    // Capsule types the session manages are not sent raw.
    assert!(matches!(
        session.send_capsule(0x01, &[]),
        Err(ClientError::ReservedCapsuleType(1))
    ));
    // The tunnel is still fine with the node.
    let me = get_v4(&session).await?;
    node.client_to_egress(&session, &udp_packet(me, FAR, 64, 0x0404))
        .await?;
    within(session.close()).await;
    node.node.shutdown().await;
    Ok(())
}

/// An owner actor that hands events to the test.
struct Owner;

impl Actor for Owner {
    type Msg = IpEvent;
    type State = mpsc::UnboundedSender<IpEvent>;
    type Arguments = mpsc::UnboundedSender<IpEvent>;

    async fn pre_start(
        &self,
        _me: ActorRef<IpEvent>,
        out: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(out)
    }

    async fn handle(
        &self,
        _me: ActorRef<IpEvent>,
        ev: IpEvent,
        out: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let _ = out.send(ev);
        Ok(())
    }
}

/// Queue mode, then active (events and packets to the owner), then queue
/// again, on one tunnel; the owner's end finishes the tunnel.
async fn ip_active_and_queue_modes(t: Transport) -> anyhow::Result<()> {
    let node = IpNode::start(&pool(2, t)).await?;
    let mut session = node.open(t).await?;
    let me = get_v4(&session).await?;
    let packet = udp_packet(FAR, me, 64, 0x0505);
    egress_to_client(&node, &mut session, &packet).await?;

    let (tx, mut events) = mpsc::unbounded_channel();
    let (owner, handle) = Actor::spawn(None, Owner, tx).await?;
    session.set_active(owner.clone());
    assert!(session.is_active());
    // An address request answered while active: an AddressAssigned event
    // with the answer; packets go to the owner too.
    let ids = session.request_addresses(&[any_v4()])?;
    let (mut answered, mut delivered) = (false, false);
    for _ in 0..20 {
        if answered && delivered {
            break;
        }
        assert_eq!(node.inject(&packet), Delivery::Queued);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, events.recv()).await {
            match ev {
                IpEvent::AddressAssigned { answers, .. } => {
                    answered |= answers.iter().any(|a| {
                        matches!(a, Answer::Granted { request, .. } if ids.contains(&request.request_id))
                    });
                }
                IpEvent::Packet(p) => delivered |= same_flow(&p, &packet),
                other => anyhow::bail!("unexpected {other:?}"),
            }
        }
    }
    assert!(answered, "AddressAssigned reached the owner");
    assert!(delivered, "packets reached the owner");
    // In active mode nothing goes to the queue.
    assert!(matches!(
        session.recv(Duration::from_millis(100)).await,
        Err(ClientError::Timeout(_))
    ));

    session.set_queue();
    assert!(!session.is_active());
    egress_to_client(&node, &mut session, &packet).await?;

    // Active again, then the owner stops: the next packet finds it gone and
    // the tunnel is finished.
    session.set_active(owner.clone());
    owner.stop(None);
    within(handle).await?;
    let mut closed = false;
    for _ in 0..40 {
        let _ = node.inject(&packet);
        match session
            .send_ip_packet(&udp_packet(me, FAR, 64, 0x0606))
            .await
        {
            Err(ClientError::Closed) => {
                closed = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(closed, "the tunnel finished once the owner was gone");
    within(session.close()).await;
    node.node.shutdown().await;
    Ok(())
}
