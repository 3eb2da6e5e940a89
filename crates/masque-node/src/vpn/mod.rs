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

mod icmp;
mod routes;

use std::{
    io::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use masque_client::{
    AssignedAddress, ClientError, IpInfo, IpPrefix, IpSender, IpSession, IpTarget, MIN_IP_PACKET,
    connect_ip,
};
use tokio::task::JoinSet;

use icmp::{mtu_probe, too_big_reply};
use routes::{Families, Routes};

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

#[cfg(test)]
mod tests;
