//! CONNECT-UDP across a real link with a small MTU: the node and its client in
//! one network namespace, the UDP target in another, joined by a veth pair with
//! a 1280-byte MTU (`masque_tests::netns`; needs root). Requirement ids:
//! R9298-23, R9298-42.

use std::{
    io::Read,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use masque_client::Target;
use masque_tests::{
    init_tracing,
    netns::{NetNs, veth},
    node::{TestNode, eventually, next_datagram},
};
use socket2::{Domain, Protocol, Socket, Type};

/// IPv6's minimum link MTU, which IPv4 takes too.
const LINK_MTU: u32 = 1280;
const TARGET_PORT: u16 = 9000;
const LIMIT: Duration = Duration::from_secs(60);

/// One address family's set-up: the link's two ends and the packet headers.
#[derive(Clone, Copy)]
struct Family {
    node_cidr: &'static str,
    target_cidr: &'static str,
    target_ip: &'static str,
    /// IP + UDP header bytes.
    headers: usize,
}

const IPV4: Family = Family {
    node_cidr: "10.201.0.1/30",
    target_cidr: "10.201.0.2/30",
    target_ip: "10.201.0.2",
    headers: 20 + 8,
};

const IPV6: Family = Family {
    node_cidr: "fd00:201::1/64",
    target_cidr: "fd00:201::2/64",
    target_ip: "fd00:201::2",
    headers: 40 + 8,
};

impl Family {
    /// The largest UDP payload one packet on the link carries.
    fn fits(self) -> usize {
        LINK_MTU as usize - self.headers
    }

    fn target(self) -> Result<SocketAddr> {
        Ok(SocketAddr::new(
            self.target_ip.parse::<IpAddr>()?,
            TARGET_PORT,
        ))
    }

    fn is_v4(self) -> bool {
        self.headers == IPV4.headers
    }
}

/// One IPv4 datagram to the target's port, as the target's host delivered it.
#[derive(Debug)]
struct Seen {
    dont_fragment: bool,
    udp_payload: usize,
}

/// What the target received: payload sizes it echoed, and every IPv4 datagram
/// for its port (from a raw socket on the same host, which sees datagrams after
/// reassembly: a fragmented one would show here without DF, and in `echoed`
/// at its full size).
#[derive(Debug, Default)]
struct TargetLog {
    echoed: Vec<usize>,
    packets: Vec<Seen>,
}

/// R9298-23/-42 over IPv4: datagrams leave the node with DF set and are never
/// fragmented; a payload too large for the link toward the target (alone or in
/// a burst, i.e. a GSO run) is dropped and counted, and the tunnel goes on.
#[test]
fn r9298_23_42_ipv4_too_large_for_the_link_is_dropped_never_fragmented() -> Result<()> {
    too_large_for_the_link(IPV4)
}

/// R9298-23/-42 over IPv6 (IPV6_DONTFRAG): the same, with the target's address
/// an IPv6 literal.
#[test]
fn r9298_23_42_ipv6_too_large_for_the_link_is_dropped_never_fragmented() -> Result<()> {
    too_large_for_the_link(IPV6)
}

fn too_large_for_the_link(family: Family) -> Result<()> {
    init_tracing();
    let node_ns = NetNs::create("node")?;
    let target_ns = NetNs::create("target")?;
    veth(
        &node_ns,
        family.node_cidr,
        &target_ns,
        family.target_cidr,
        LINK_MTU,
    )?;
    let fits = family.fits();

    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready) = mpsc::channel();
    let target = {
        let stop = Arc::clone(&stop);
        target_ns.spawn(move || udp_target(family, &stop, ready_tx))?
    };
    ready
        .recv_timeout(LIMIT)
        .context("the target did not start")?;

    let proxy = node_ns.run(move || async move {
        let node = TestNode::start(true).await?;
        let target = Target::Udp {
            host: family.target_ip.to_owned(),
            port: TARGET_PORT,
        };
        let mut s = masque_client::connect(&node.url(), target, node.client_options()).await?;
        ensure!(
            s.max_payload_size() > fits + 50,
            "the tunnel carries only {} bytes",
            s.max_payload_size()
        );
        // Fits the link exactly: echoed.
        s.send(&vec![1u8; fits]).await?;
        assert_eq!(next_datagram(&mut s, "the echo").await?.len(), fits);
        // One byte over, alone; then a burst of equal sizes (a GSO run).
        s.send(&vec![2u8; fits + 1]).await?;
        for _ in 0..8 {
            s.send(&vec![3u8; fits + 50]).await?;
        }
        let m = node.node.metrics();
        eventually("9 drops counted", Duration::from_secs(10), || {
            m.snapshot().datagrams_to_target_dropped >= 9
        })
        .await?;
        // The tunnel goes on.
        s.send(&vec![4u8; fits]).await?;
        let back = next_datagram(&mut s, "the echo after the drops").await?;
        assert_eq!(&back[..], &vec![4u8; fits][..]);
        let dropped = m.snapshot().datagrams_to_target_dropped;
        s.close().await;
        node.node.shutdown().await;
        Ok(dropped)
    })?;
    let dropped = proxy.join(LIMIT);
    stop.store(true, Ordering::Relaxed);
    let log = target.join(LIMIT)?;
    let dropped = dropped?;

    assert_eq!(dropped, 9, "exactly the oversize datagrams are dropped");
    assert_eq!(log.echoed, [fits, fits], "only what fits the link arrives");
    if !family.is_v4() {
        // IPv6 has no DF bit; a fragmented datagram would have arrived whole.
        return Ok(());
    }
    assert_eq!(log.packets.len(), 2, "{:?}", log.packets);
    for p in &log.packets {
        assert!(p.dont_fragment, "sent without DF: {p:?}");
        assert_eq!(p.udp_payload, fits);
    }
    Ok(())
}

/// The UDP target: echoes datagrams on its address and records the IPv4
/// packets for that port, until `stop` (or the time limit).
fn udp_target(family: Family, stop: &AtomicBool, ready: mpsc::Sender<()>) -> Result<TargetLog> {
    let sock = std::net::UdpSocket::bind(family.target()?)?;
    sock.set_read_timeout(Some(Duration::from_millis(20)))?;
    // A raw socket gets a copy of every IPv4 UDP datagram this host delivers
    // (after reassembly), IP header included (none arrive in the IPv6 case).
    let mut raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP))?;
    raw.set_nonblocking(true)?;
    let _ = ready.send(());
    let mut log = TargetLog::default();
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + LIMIT;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            sock.send_to(&buf[..n], from)?;
            log.echoed.push(n);
        }
        while let Ok(n) = raw.read(&mut buf) {
            if let Some(p) = parse_ipv4_udp(&buf[..n]) {
                log.packets.push(p);
            }
        }
    }
    Ok(log)
}

/// An IPv4 packet carrying UDP to TARGET_PORT; `None` for anything else.
fn parse_ipv4_udp(pkt: &[u8]) -> Option<Seen> {
    let ihl = usize::from(pkt.first()? & 0x0f) * 4;
    let flags = u16::from_be_bytes([*pkt.get(6)?, *pkt.get(7)?]);
    let udp = pkt.get(ihl..)?;
    let port = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    (port == TARGET_PORT).then(|| Seen {
        dont_fragment: flags & 0x4000 != 0,
        udp_payload: len.saturating_sub(8),
    })
}
