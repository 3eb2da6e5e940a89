//! `masque-node vpn`: a remote-access VPN client over CONNECT-IP (RFC 9484).
//!
//! Opens one connect-ip tunnel (full scope, `*`/`*`), asks the proxy for an
//! IPv4 and an IPv6 address (R9484-27; a refusal or no answer for IPv6 is not
//! fatal), brings up a TUN device with what was assigned, installs the routes
//! the proxy advertised (`ip route replace PREFIX dev TUN`) and relays packets
//! both ways. Only routes of a family the tunnel has an address in are
//! installed. Routes that would carry the tunnel's own traffic are never
//! installed: the proxy's address is cut out of every advertised range, so a
//! full route (0.0.0.0–255.255.255.255) becomes the set of prefixes that
//! covers everything but the proxy, which stays reachable through the
//! existing routes. Route updates from the proxy are applied as they come.
//! Ctrl-C / SIGTERM remove routes and device and exit 0; the tunnel's loss
//! does the same and exits non-zero.

use std::{
    io::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use masque_client::{
    AssignedAddress, ClientError, IpAddressRange, IpInfo, IpPrefix, IpSender, IpSession, IpTarget,
    MIN_IP_PACKET, connect_ip,
};
use tokio::{process::Command, task::JoinSet};

use crate::client_args::{ClientArgs, init_logging};

/// Largest MTU given to the TUN device when the tunnel has no smaller limit
/// (DATAGRAM capsules carry up to 64 KiB; Ethernet-sized packets avoid
/// fragmentation beyond the proxy).
const DEFAULT_MTU: usize = 1500;

#[derive(Debug, Args)]
pub struct VpnArgs {
    /// Name of the TUN device to create.
    #[arg(long, value_name = "NAME", default_value = "masque0")]
    pub tun: String,
    /// Seconds to wait for the proxy's ADDRESS_ASSIGN.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub assign_timeout: u64,
    /// TUN MTU (default: what one tunnel datagram carries, at most 1500,
    /// at least 1280).
    #[arg(long, value_name = "BYTES")]
    pub mtu: Option<u16>,
    /// Do not install the proxy's routes (only the TUN's own prefix is routed).
    #[arg(long)]
    pub no_routes: bool,
    /// Skip the IPv6 MTU probe (R9484-49) when the path is known to carry
    /// 1280-byte packets by other means.
    #[arg(long)]
    pub no_mtu_probe: bool,
    /// Seconds of silence after which an HTTP/3 connection counts as lost
    /// (QUIC idle timeout; keep-alives go every 15 s, so at least 20).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub idle_timeout: u64,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: VpnArgs) -> Result<()> {
    init_logging();
    // Ctrl-C / SIGTERM are caught from the start, so that none is missed
    // (or kills the process) between the steps; before the TUN exists they
    // just stop.
    let mut stop = Stop::new()?;
    let mut options = args.client.options()?;
    options.idle_timeout = Duration::from_secs(args.idle_timeout.max(20));
    let opened = tokio::select! {
        s = connect_ip(&args.client.proxy, &IpTarget::ANY, options) => s,
        () = stop.wait() => return Ok(()),
    };
    let session = opened.context("opening the CONNECT-IP tunnel")?;
    let proxy = session.info().proxy.ip();
    serve(&args, session, proxy, stop).await
}

/// Ctrl-C and SIGTERM, listened to from creation on.
struct Stop {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Stop {
    fn new() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

async fn serve(
    args: &VpnArgs,
    mut session: IpSession,
    proxy: IpAddr,
    mut stop: Stop,
) -> Result<()> {
    let any4 = IpPrefix::new(Ipv4Addr::UNSPECIFIED.into(), 32)?;
    let any6 = IpPrefix::new(Ipv6Addr::UNSPECIFIED.into(), 128)?;
    session.request_addresses(&[any4, any6])?;
    let limit = Duration::from_secs(args.assign_timeout.max(1));
    let info = tokio::select! {
        i = wait_assigned(&session, limit) => i?,
        () = stop.wait() => {
            session.close().await;
            return Ok(());
        }
    };
    let v4 = info.assigned.iter().find(|a| a.ip.is_ipv4()).copied();
    let v6 = info.assigned.iter().find(|a| a.ip.is_ipv6()).copied();
    if v4.is_none() && v6.is_none() {
        bail!(
            "the proxy assigned no address (refused: {:?})",
            info.refused
        );
    }
    if let Some(a) = v6
        && let IpAddr::V6(me) = a.ip
        && !args.no_mtu_probe
    {
        let probed = tokio::select! {
            r = mtu_probe(&mut session, me) => r,
            () = stop.wait() => {
                session.close().await;
                return Ok(());
            }
        };
        if let Err(e) = probed {
            session.close().await;
            return Err(e);
        }
    }
    let mtu = args.mtu.map_or_else(
        || {
            let m = session.sender().max_packet_size();
            m.clamp(MIN_IP_PACKET, DEFAULT_MTU)
        },
        usize::from,
    );
    let mtu = u16::try_from(mtu).unwrap_or(1500);
    let mut builder = tun_rs::DeviceBuilder::new().name(&args.tun).mtu(mtu);
    if let Some(a) = v4
        && let IpAddr::V4(ip) = a.ip
    {
        builder = builder.ipv4(ip, a.prefix_len, None);
    }
    if let Some(a) = v6
        && let IpAddr::V6(ip) = a.ip
    {
        builder = builder.ipv6(ip, a.prefix_len);
    }
    let dev = Arc::new(
        builder
            .build_async()
            .with_context(|| format!("creating TUN device {} (needs CAP_NET_ADMIN)", args.tun))?,
    );
    let families = Families {
        v4: v4.is_some(),
        v6: v6.is_some(),
    };
    let mut routes = Routes::new(&args.tun, proxy, families);
    if !args.no_routes {
        routes.apply(&info.routes).await;
    }
    let addrs: Vec<String> = [v4, v6].iter().flatten().map(show_addr).collect();
    println!(
        "vpn up: tun={} addr={} routes={} mtu={mtu} proxy={proxy}",
        args.tun,
        addrs.join(","),
        routes.shown(),
    );
    let _ = std::io::stdout().flush();

    let sender = session.sender();
    let mut relay = JoinSet::new();
    relay.spawn(up(Arc::clone(&dev), sender.clone()));
    let mut installed = info.routes;
    let outcome = loop {
        tokio::select! {
            () = stop.wait() => break Ok(()),
            r = relay.join_next() => {
                break Err(match r {
                    Some(Ok(e)) => e,
                    _ => anyhow!("the TUN relay stopped"),
                });
            }
            p = session.recv(Duration::from_secs(3600)) => match p {
                Ok(p) => {
                    // A full TUN queue or a packet the kernel refuses is a drop.
                    if let Err(e) = dev.send(&p).await {
                        tracing::debug!(error = %e, "TUN write failed, packet dropped");
                    }
                }
                Err(ClientError::Timeout(_)) => {}
                Err(_) => {
                    let why = session
                        .close_info()
                        .map_or_else(|| "closed".to_owned(), |c| format!("{:?}", c.reason));
                    break Err(anyhow!("the tunnel was lost: {why}"));
                }
            },
            i = sender.wait_for(Duration::from_secs(3600), |i| i.routes != installed) => {
                if let Ok(i) = i {
                    installed = i.routes;
                    if !args.no_routes {
                        routes.apply(&installed).await;
                        eprintln!("vpn: routes now {}", routes.shown());
                    }
                }
            }
        }
    };
    relay.abort_all();
    routes.clear().await;
    drop(dev);
    let closed = session.close().await;
    tracing::info!(reason = ?closed.reason, "vpn down");
    eprintln!("vpn down: tun={}", args.tun);
    outcome
}

/// Waits for every request to be answered; after the limit, what was
/// assigned so far is enough if it has an address. Then gives the routes a
/// moment to follow the ADDRESS_ASSIGN.
async fn wait_assigned(session: &IpSession, limit: Duration) -> Result<IpInfo> {
    let info = match session
        .wait_for(limit, |i| i.pending_requests.is_empty())
        .await
    {
        Ok(i) => i,
        Err(ClientError::Timeout(_)) => {
            let i = session.ip_info();
            if i.assigned.is_empty() {
                bail!("no ADDRESS_ASSIGN from the proxy within {limit:?}");
            }
            i
        }
        Err(e) => return Err(anyhow!(e).context("waiting for an address")),
    };
    if info.routes.is_empty() {
        let grace = Duration::from_millis(500);
        if let Ok(i) = session.wait_for(grace, |i| !i.routes.is_empty()).await {
            return Ok(i);
        }
    }
    Ok(info)
}

fn show_addr(a: &AssignedAddress) -> String {
    format!("{}/{}", a.ip, a.prefix_len)
}

/// TUN → tunnel, until the tunnel refuses packets for good.
async fn up(dev: Arc<tun_rs::AsyncDevice>, sender: IpSender) -> anyhow::Error {
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match dev.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) => return anyhow!(e).context("reading the TUN device"),
        };
        let Some(packet) = buf.get(..n) else { continue };
        match sender.send_ip_packet(packet).await {
            Ok(()) => {}
            Err(ClientError::Closed) => return anyhow!("the tunnel was closed"),
            // R9484-55: too big for the tunnel now (the path shrank below
            // the TUN's MTU): dropped, and the sender told the size.
            Err(ClientError::PayloadTooLarge { max, .. }) => {
                if let Some(icmp) = too_big_reply(packet, max)
                    && let Err(e) = dev.send(&icmp).await
                {
                    tracing::debug!(error = %e, "ICMP Packet Too Big not written");
                }
            }
            // Not IP, a full queue: this packet only.
            Err(e) => tracing::debug!(error = %e, "packet to the tunnel dropped"),
        }
    }
}

/// All-nodes link-local multicast: the probe's destination when the peer's
/// address is unknown (R9484-49).
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// Echo data that makes the probe a 1280-byte IPv6 packet (40 + 8 + 1232).
const PROBE_DATA: usize = 1232;

/// R9484-49: an endpoint with an IPv6 address must know that the tunnel
/// carries 1280-byte packets: an ICMPv6 Echo Request with 1232 data bytes
/// to `ff02::1` from `me` must be answered (3 tries, 2 s each), else the
/// tunnel is torn down. Other packets that arrive meanwhile are dropped (the
/// TUN is not up yet).
pub async fn mtu_probe(session: &mut IpSession, me: Ipv6Addr) -> Result<()> {
    use masque_proto::icmp::{DEFAULT_TTL, EchoKind, write_echo_packet};

    let data = vec![0x6d; PROBE_DATA];
    let id = u16::try_from(std::process::id() & 0xffff).unwrap_or(1);
    for seq in 1..=3u16 {
        let mut probe = Vec::with_capacity(1280);
        write_echo_packet(
            &mut probe,
            EchoKind::Request,
            me.into(),
            ALL_NODES.into(),
            DEFAULT_TTL,
            id,
            seq,
            &data,
        )
        .context("building the MTU probe")?;
        session
            .send_ip_packet(&probe)
            .await
            .context("the tunnel cannot carry a 1280-byte IPv6 packet (R9484-49)")?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match session.recv(left).await {
                Ok(p) if is_probe_reply(&p, id, seq) => return Ok(()),
                Ok(_) => {}
                Err(ClientError::Timeout(_)) => break,
                Err(e) => return Err(anyhow!(e).context("waiting for the MTU probe's reply")),
            }
        }
    }
    bail!(
        "no reply to a 1280-byte ICMPv6 Echo Request to ff02::1 through the tunnel: it cannot \
         carry IPv6 (R9484-49); --no-mtu-probe skips the check"
    )
}

/// Whether `p` is the Echo Reply to probe `id`/`seq` with all its data.
fn is_probe_reply(p: &[u8], id: u16, seq: u16) -> bool {
    match masque_proto::icmp::parse_icmp_packet(p) {
        Ok((_, m)) => {
            m.is_v6
                && m.ty == 129
                && m.echo_id_seq() == Some((id, seq))
                && m.body.len() == PROBE_DATA
        }
        Err(_) => false,
    }
}

/// ICMP Packet Too Big (ICMPv4 Fragmentation Needed for DF packets) about
/// `packet`, for the host that sent it into the TUN: from the RFC 7600
/// dummy address (IPv4) or a link-local address (IPv6), since a source that
/// is one of the host's own addresses would be dropped as martian. `None`
/// where ICMP rules forbid an error (ICMP about ICMP errors, no DF, ...).
fn too_big_reply(packet: &[u8], mtu: usize) -> Option<Vec<u8>> {
    let source = match packet.first()? >> 4 {
        4 => IpAddr::V4(masque_proto::connect_ip::forward::IPV4_DUMMY),
        6 => IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
        _ => return None,
    };
    let kind = masque_proto::icmp::IcmpErrorKind::PacketTooBig {
        mtu: u32::try_from(mtu).ok()?,
    };
    let mut out = Vec::new();
    masque_proto::icmp::write_error(
        &mut out,
        packet,
        kind,
        source,
        masque_proto::icmp::DEFAULT_TTL,
    )
    .ok()?;
    Some(out)
}

/// The address families the tunnel has an address in: routes of another
/// family would only blackhole its traffic.
#[derive(Debug, Clone, Copy)]
struct Families {
    v4: bool,
    v6: bool,
}

impl Families {
    fn has(self, addr: IpAddr) -> bool {
        if addr.is_ipv4() { self.v4 } else { self.v6 }
    }
}

/// The routes installed through the TUN device.
#[derive(Debug)]
struct Routes {
    dev: String,
    proxy: IpAddr,
    families: Families,
    installed: Vec<(IpAddr, u8)>,
}

impl Routes {
    fn new(dev: &str, proxy: IpAddr, families: Families) -> Self {
        Self {
            dev: dev.to_owned(),
            proxy,
            families,
            installed: Vec::new(),
        }
    }

    fn shown(&self) -> String {
        if self.installed.is_empty() {
            return "none".to_owned();
        }
        let v: Vec<String> = self
            .installed
            .iter()
            .map(|(a, l)| format!("{a}/{l}"))
            .collect();
        v.join(",")
    }

    /// Installs the prefixes of `ranges` (minus the proxy's address) and
    /// removes the ones no longer advertised.
    async fn apply(&mut self, ranges: &[IpAddressRange]) {
        let mut want = route_prefixes(ranges, self.proxy);
        want.retain(|(a, _)| self.families.has(*a));
        for p in self.installed.clone() {
            if !want.contains(&p) {
                self.ip_route("del", p).await;
            }
        }
        self.installed.retain(|p| want.contains(p));
        for p in want {
            if !self.installed.contains(&p) && self.ip_route("replace", p).await {
                self.installed.push(p);
            }
        }
    }

    async fn clear(&mut self) {
        for p in std::mem::take(&mut self.installed) {
            self.ip_route("del", p).await;
        }
    }

    /// `ip -4|-6 route VERB PREFIX dev DEV`; false (logged) on failure.
    async fn ip_route(&self, verb: &str, (addr, len): (IpAddr, u8)) -> bool {
        let family = if addr.is_ipv4() { "-4" } else { "-6" };
        let prefix = format!("{addr}/{len}");
        let out = Command::new("ip")
            .args([family, "route", verb, &prefix, "dev", &self.dev])
            .output()
            .await;
        match out {
            Ok(o) if o.status.success() => true,
            Ok(o) => {
                tracing::warn!(
                    route = %prefix,
                    verb,
                    stderr = %String::from_utf8_lossy(&o.stderr).trim(),
                    "ip route failed"
                );
                false
            }
            Err(e) => {
                tracing::warn!(route = %prefix, verb, error = %e, "running ip failed");
                false
            }
        }
    }
}

/// The prefixes to route through the tunnel: every advertised range (any
/// protocol; the kernel routes by address only) as CIDR prefixes, with the
/// proxy's own address cut out, without duplicates.
fn route_prefixes(ranges: &[IpAddressRange], proxy: IpAddr) -> Vec<(IpAddr, u8)> {
    let mut out = Vec::new();
    for r in ranges {
        let (v4, start, end) = match (r.start, r.end) {
            (IpAddr::V4(s), IpAddr::V4(e)) => {
                (true, u128::from(u32::from(s)), u128::from(u32::from(e)))
            }
            (IpAddr::V6(s), IpAddr::V6(e)) => (false, u128::from(s), u128::from(e)),
            _ => continue,
        };
        let own = match proxy {
            IpAddr::V4(p) if v4 => Some(u128::from(u32::from(p))),
            IpAddr::V6(p) if !v4 => Some(u128::from(p)),
            _ => None,
        };
        let mut pieces = vec![(start, end)];
        if let Some(p) = own.filter(|p| (start..=end).contains(p)) {
            pieces = Vec::new();
            if p > start {
                pieces.push((start, p - 1));
            }
            if p < end {
                pieces.push((p + 1, end));
            }
        }
        let bits = if v4 { 32 } else { 128 };
        for (s, e) in pieces {
            for (a, len) in cidrs(s, e, bits) {
                let addr = if v4 {
                    IpAddr::V4(Ipv4Addr::from(u32::try_from(a).unwrap_or(0)))
                } else {
                    IpAddr::V6(Ipv6Addr::from(a))
                };
                if !out.contains(&(addr, len)) {
                    out.push((addr, len));
                }
            }
        }
    }
    out
}

/// The smallest list of CIDR prefixes covering `start..=end` in a `bits`-bit
/// address space.
fn cidrs(mut start: u128, end: u128, bits: u32) -> Vec<(u128, u8)> {
    let mut out = Vec::new();
    while start <= end {
        // The largest block aligned at `start` that stays within `end`.
        let mut size_log = start.trailing_zeros().min(bits);
        while size_log > 0 && block_last(start, size_log) > end {
            size_log -= 1;
        }
        out.push((start, u8::try_from(bits - size_log).unwrap_or(0)));
        let last = block_last(start, size_log);
        if last >= end {
            break;
        }
        start = last + 1;
    }
    out
}

/// The last address of the block of 2^`size_log` addresses at `start`.
fn block_last(start: u128, size_log: u32) -> u128 {
    match 1u128.checked_shl(size_log) {
        Some(size) if size_log < 128 => start.saturating_add(size - 1),
        _ => u128::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r4(a: &str, b: &str) -> IpAddressRange {
        IpAddressRange {
            start: a.parse().unwrap(),
            end: b.parse().unwrap(),
            ipproto: 0,
        }
    }

    fn shown(v: &[(IpAddr, u8)]) -> Vec<String> {
        v.iter().map(|(a, l)| format!("{a}/{l}")).collect()
    }

    #[test]
    fn ranges_become_prefixes() {
        let proxy: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            shown(&route_prefixes(&[r4("10.0.0.0", "10.255.255.255")], proxy)),
            ["10.0.0.0/8"]
        );
        assert_eq!(
            shown(&route_prefixes(
                &[r4("192.0.2.0", "192.0.2.41")],
                "10.0.0.1".parse().unwrap()
            )),
            ["192.0.2.0/27", "192.0.2.32/29", "192.0.2.40/31"]
        );
        assert_eq!(
            shown(&route_prefixes(&[r4("10.1.2.3", "10.1.2.3")], proxy)),
            ["10.1.2.3/32"]
        );
    }

    /// The proxy's address is cut out: a full route leaves it on the
    /// existing routes; a range holding only it gives nothing.
    #[test]
    fn proxy_address_is_never_routed_into_the_tunnel() {
        let proxy: IpAddr = "128.0.0.0".parse().unwrap();
        let p = route_prefixes(&[r4("0.0.0.0", "255.255.255.255")], proxy);
        assert_eq!(p.first(), Some(&("0.0.0.0".parse().unwrap(), 1)));
        assert_eq!(p.len(), 1 + 31);
        assert!(
            !p.iter()
                .any(|(a, l)| *l == 0 || (*a == proxy && *l <= 32 && *l == 32))
        );
        let covered: u128 = p.iter().map(|(_, l)| 1u128 << (32 - u32::from(*l))).sum();
        assert_eq!(covered, (1u128 << 32) - 1);
        assert!(route_prefixes(&[r4("128.0.0.0", "128.0.0.0")], proxy).is_empty());
        // Another family is untouched.
        let v6 = IpAddressRange {
            start: "::".parse().unwrap(),
            end: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
            ipproto: 0,
        };
        assert_eq!(shown(&route_prefixes(&[v6], proxy)), ["::/0"]);
        let v4all = route_prefixes(&[r4("0.0.0.0", "255.255.255.255")], "::1".parse().unwrap());
        assert_eq!(shown(&v4all), ["0.0.0.0/0"]);
    }

    /// R9484-55: a DF packet too big for the tunnel gets ICMP Fragmentation
    /// Needed naming the size, from the RFC 7600 dummy address; a packet
    /// without DF gets nothing.
    #[test]
    fn too_big_reply_for_df_packets() {
        let mut p = vec![0x45, 0, 0x05, 0xdc, 0, 1, 0x40, 0, 64, 17, 0, 0];
        p.extend_from_slice(&[10, 77, 0, 2, 198, 51, 100, 7]);
        p.resize(1500, 0);
        masque_proto::packet::fill_ipv4_header_checksum(&mut p).unwrap();
        let icmp = too_big_reply(&p, 1400).expect("DF set");
        let (ip, msg) = masque_proto::icmp::parse_icmp_packet(&icmp).unwrap();
        assert_eq!(ip.source(), IpAddr::from([192, 0, 0, 8]));
        assert_eq!(ip.destination(), IpAddr::from([10, 77, 0, 2]));
        assert_eq!((msg.ty, msg.code), (3, 4));
        assert_eq!(msg.mtu(), Some(1400));
        p[6] = 0; // no DF
        masque_proto::packet::fill_ipv4_header_checksum(&mut p).unwrap();
        assert!(too_big_reply(&p, 1400).is_none());
        assert!(too_big_reply(b"\x10junk", 1400).is_none());
    }

    /// R9484-49 against an in-process node with an IPv6 pool: the 1280-byte
    /// all-nodes echo is answered, on every transport.
    #[tokio::test(flavor = "multi_thread")]
    async fn mtu_probe_answered_by_the_node() -> anyhow::Result<()> {
        use std::sync::Arc;

        use masque_client::{ClientOptions, TransportChoice};
        use masque_server::{
            IpProxy, IpProxyConfig, Node, Proxy, QuicMtu, ServerConfig, TcpProxyConfig,
            UdpProxyConfig,
            ip::{IpPrefix as Pool, QueueEgress},
        };
        use masque_transport::{
            Transport,
            tls::{DevCert, ServerVerification},
        };

        let mtu = QuicMtu {
            initial: 1452,
            min: 1452,
        };
        let cert = DevCert::ephemeral()?;
        let ip = IpProxy::new(
            IpProxyConfig {
                pools: vec![Pool::parse("fd00:7749::/64")?],
                ..Default::default()
            },
            Arc::new(QueueEgress::new(64, 1500)),
        )?;
        let proxy = Proxy::new(UdpProxyConfig::default(), TcpProxyConfig::default()).with_ip(ip);
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            quic_mtu: mtu,
            drain_timeout: Duration::from_secs(1),
            ..Default::default()
        };
        let node = Node::start(config, &cert.server_tls(), Arc::new(proxy)).await?;
        for t in Transport::ALL {
            let port = match t {
                Transport::H3 => node.local_addr().port(),
                _ => node.tcp_addr().context("TCP")?.port(),
            };
            let options = ClientOptions {
                transport: TransportChoice::from(t),
                verification: ServerVerification::CustomCa(vec![cert.cert_der().clone()]),
                initial_mtu: mtu.initial,
                min_mtu: mtu.min,
                ..Default::default()
            };
            let url = format!("https://localhost:{port}");
            let mut session = connect_ip(&url, &IpTarget::ANY, options).await?;
            session.request_addresses(&[IpPrefix::new(Ipv6Addr::UNSPECIFIED.into(), 128)?])?;
            let info = wait_assigned(&session, Duration::from_secs(10)).await?;
            let Some(IpAddr::V6(me)) = info.assigned.first().map(|a| a.ip) else {
                anyhow::bail!("no IPv6 address: {info:?}");
            };
            mtu_probe(&mut session, me)
                .await
                .with_context(|| format!("over {t}"))?;
            session.close().await;
        }
        node.shutdown().await;
        Ok(())
    }

    #[test]
    fn probe_reply_recognised() {
        use masque_proto::icmp::{EchoKind, write_echo_packet, write_echo_reply};
        let me: IpAddr = "fd00::2".parse().unwrap();
        let mut req = Vec::new();
        write_echo_packet(
            &mut req,
            EchoKind::Request,
            me,
            ALL_NODES.into(),
            64,
            7,
            1,
            &[1; 1232],
        )
        .unwrap();
        let mut reply = Vec::new();
        write_echo_reply(&mut reply, &req, "fd00::1".parse().unwrap(), 64).unwrap();
        assert!(is_probe_reply(&reply, 7, 1));
        assert!(!is_probe_reply(&reply, 7, 2));
        assert!(!is_probe_reply(&req, 7, 1), "a request is no reply");
    }

    /// Routes of a family without an address are not installed.
    #[test]
    fn families_filter() {
        let f = Families {
            v4: true,
            v6: false,
        };
        assert!(f.has("10.0.0.1".parse().unwrap()));
        assert!(!f.has("::1".parse().unwrap()));
    }

    #[test]
    fn vpn_flags() {
        use clap::Parser;

        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            args: VpnArgs,
        }
        let cli = Cli::try_parse_from(["x", "--proxy", "https://p:1", "--insecure"]).unwrap();
        assert_eq!(cli.args.tun, "masque0");
        assert_eq!(cli.args.assign_timeout, 10);
        assert_eq!(cli.args.idle_timeout, 30);
        let cli = Cli::try_parse_from([
            "x",
            "--proxy",
            "https://p:1",
            "--tun",
            "vpn7",
            "--transport",
            "h2",
            "--mtu",
            "1400",
        ])
        .unwrap();
        assert_eq!(cli.args.tun, "vpn7");
        assert_eq!(cli.args.mtu, Some(1400));
        assert!(
            Cli::try_parse_from(["x", "--tun", "t"]).is_err(),
            "--proxy is required"
        );
    }
}
