//! Churn soak: `cargo xtask soak [minutes]` (not a timed test; figures are
//! printed, leaks fail the run).
//!
//! 1. Churn: 10,000 tunnel open/close cycles per transport (HTTP/3,
//!    HTTP/2, HTTP/1.1) and kind (CONNECT-UDP with one datagram echoed,
//!    CONNECT-TCP with one byte echoed, CONNECT-IP with an address from the
//!    pool and one packet answered through the node's egress queue), 32 at a
//!    time, every tenth closed abruptly (dropped without a close, or
//!    aborted). Before and after, once the node reports no session left: the
//!    node's actors, the runtime's live tasks, this process's file
//!    descriptors and RSS. Actors, tasks and descriptors must be back where
//!    they were, RSS within `RSS_SLACK` of where it was, and the node's
//!    IpRegistry empty.
//! 2. Flood: datagrams at twice the node's measured echo capacity, through
//!    16 HTTP/3 tunnels, for `minutes` (default 1): RSS sampled every
//!    second must stay within `RSS_SLACK` of its start, and every datagram
//!    that did not come back is accounted for by a drop counter (the
//!    node's or the client's).
//!
//! The node and the clients share this process (one RSS, one fd table), as
//! in the other benchmarks. Writes target/bench/soak.json.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use masque_client::{IpPrefix, IpTarget, ProxyClient, Target, TcpMode, UdpSession};
use masque_server::{
    IpProxy, IpProxyConfig, Proxy, TcpProxyConfig, UdpProxyConfig,
    ip::{IpEgress, QueueEgress},
    policy::AddressPolicy,
};
use masque_tests::{
    node::{TestNode, actor_tree, eventually, udp_echo},
    tcp::tcp_echo,
    transport::{options_for, url},
};
use masque_transport::Transport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CYCLES: usize = 10_000;
const IN_FLIGHT: usize = 32;
/// RSS may end this far above where it started (allocator caches, runtime
/// buffers that grew once).
const RSS_SLACK: u64 = 64 << 20;
const FLOOD_TUNNELS: usize = 16;
const PAYLOAD: usize = 1200;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("soak: run with `cargo xtask soak [minutes]`");
        return Ok(());
    }
    let minutes: f64 = args
        .iter()
        .skip_while(|a| *a != "--minutes")
        .nth(1)
        .map(|m| m.parse())
        .transpose()
        .context("--minutes takes a number")?
        .unwrap_or(1.0);
    let cycles: usize = std::env::var("MASQUE_SOAK_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(CYCLES);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(minutes, cycles))
}

/// What is alive in the process.
#[derive(Debug, Clone, Copy)]
struct Census {
    actors: usize,
    tasks: usize,
    fds: usize,
    rss: u64,
}

fn census(node: &TestNode) -> Census {
    Census {
        actors: actor_tree(&node.node.supervisor().get_cell()).len(),
        tasks: tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()),
        rss: rss(),
    }
}

/// Resident set size in bytes, from /proc/self/statm.
fn rss() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    pages * 4096
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Udp,
    Tcp,
    Ip,
}

const KINDS: [Kind; 3] = [Kind::Udp, Kind::Tcp, Kind::Ip];

/// A node serving UDP, TCP and IP (a /16 pool, a queue for egress), with a
/// task answering each packet the tunnels send (source and destination
/// swapped, so it comes back to the tunnel).
async fn start_node() -> Result<TestNode> {
    let egress = Arc::new(QueueEgress::new(1024, 1500));
    let ip = IpProxy::new(
        IpProxyConfig {
            pools: vec!["10.250.0.0/16".parse()?],
            ..Default::default()
        },
        Arc::clone(&egress) as Arc<dyn IpEgress>,
    )?;
    let udp = UdpProxyConfig {
        policy: AddressPolicy {
            allow_private: true,
            own_addresses: vec![],
        },
        ..Default::default()
    };
    let handler = Proxy::new(udp, TcpProxyConfig::default()).with_ip(ip);
    let node = TestNode::with_handler(Arc::new(handler)).await?;
    let mut out = egress.take_receiver().context("egress receiver")?;
    let ingress = egress.ingress().context("egress started")?.clone();
    tokio::spawn(async move {
        while let Some(p) = out.recv().await {
            let mut back = p.to_vec();
            if back.len() >= 20 {
                let (src, dst) = (back[12..16].to_vec(), back[16..20].to_vec());
                back[12..16].copy_from_slice(&dst);
                back[16..20].copy_from_slice(&src);
                let _ = ingress.deliver(back.into());
            }
        }
    });
    Ok(node)
}

async fn run(minutes: f64, cycles: usize) -> Result<()> {
    let node = start_node().await?;
    let udp = udp_echo().await?;
    let tcp = tcp_echo().await?;
    // Warm-up: one cycle of each, so lazily built state is not counted.
    for t in [Transport::H3, Transport::H2, Transport::H1] {
        for kind in KINDS {
            churn(&node, t, kind, udp, tcp, IN_FLIGHT, 1).await?;
        }
    }
    settle(&node).await?;
    let before = census(&node);
    println!(
        "\nchurn: {cycles} open/close cycles per transport and kind, {IN_FLIGHT} at a time, every tenth abrupt"
    );
    println!(
        "{:<10} {:>8} {:>10} {:>10}",
        "path", "cycles", "seconds", "cycles/s"
    );
    let mut rows = Vec::new();
    for t in [Transport::H3, Transport::H2, Transport::H1] {
        for kind in KINDS {
            let started = Instant::now();
            churn(&node, t, kind, udp, tcp, IN_FLIGHT, cycles).await?;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{:<10} {:>8} {:>10.1} {:>10.0}",
                format!("{t:?} {kind:?}"),
                cycles,
                secs,
                cycles as f64 / secs
            );
            rows.push(format!(
                "{{\"path\":\"{t:?} {kind:?}\",\"cycles\":{cycles},\"seconds\":{secs:.1}}}"
            ));
        }
    }
    settle(&node).await?;
    let after = census(&node);
    println!(
        "\n{:<10} {:>8} {:>8} {:>8} {:>10}",
        "", "actors", "tasks", "fds", "RSS MiB"
    );
    for (name, c) in [("before", before), ("after", after)] {
        println!(
            "{:<10} {:>8} {:>8} {:>8} {:>10.1}",
            name,
            c.actors,
            c.tasks,
            c.fds,
            c.rss as f64 / (1 << 20) as f64
        );
    }
    let ranges_left = node.node.ip_registry().all().len();
    println!("IpRegistry ranges left after the churn: {ranges_left}");
    let leaks = [
        (ranges_left > 0, "IpRegistry ranges"),
        (after.actors > before.actors, "actors"),
        (after.tasks > before.tasks, "tasks"),
        (after.fds > before.fds, "file descriptors"),
        (after.rss > before.rss + RSS_SLACK, "RSS"),
    ];
    let leaked: Vec<&str> = leaks.iter().filter(|(l, _)| *l).map(|(_, w)| *w).collect();

    let flood = flood(&node, udp, minutes).await?;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("soak.json"),
        format!(
            "{{\"churn\":[{}],\"before\":{{\"actors\":{},\"tasks\":{},\"fds\":{},\"rss\":{}}},\"after\":{{\"actors\":{},\"tasks\":{},\"fds\":{},\"rss\":{}}},\"flood\":{flood}}}\n",
            rows.join(","),
            before.actors,
            before.tasks,
            before.fds,
            before.rss,
            after.actors,
            after.tasks,
            after.fds,
            after.rss,
        ),
    )?;
    node.node.shutdown().await;
    if !leaked.is_empty() {
        bail!("leaked after the churn: {}", leaked.join(", "));
    }
    Ok(())
}

/// Waits until the node has no session and no tunnel left.
async fn settle(node: &TestNode) -> Result<()> {
    let m = node.node.metrics();
    eventually("every session ended", Duration::from_secs(60), || {
        m.active_sessions() == 0
    })
    .await?;
    // Connections close after their last tunnel (HTTP/1.1) or when dropped.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

/// `cycles` tunnels opened, used once and closed, `window` at a time, on
/// one connection (a fresh one per tunnel on HTTP/1.1).
async fn churn(
    node: &TestNode,
    t: Transport,
    kind: Kind,
    udp: std::net::SocketAddr,
    tcp: std::net::SocketAddr,
    window: usize,
    cycles: usize,
) -> Result<()> {
    let shared = match t {
        Transport::H1 => None,
        _ => Some(Arc::new(
            ProxyClient::connect(&url(node, t), options_for(node, t)).await?,
        )),
    };
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..window.min(cycles) {
        let (shared, next) = (shared.clone(), Arc::clone(&next));
        let (url, options) = (url(node, t), options_for(node, t));
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= cycles {
                    return anyhow::Ok(());
                }
                let client = match &shared {
                    Some(c) => Arc::clone(c),
                    None => Arc::new(ProxyClient::connect(&url, options.clone()).await?),
                };
                let abrupt = i % 10 == 9;
                match kind {
                    Kind::Udp => udp_cycle(&client, udp, abrupt).await,
                    Kind::Tcp => tcp_cycle(&client, tcp, abrupt).await,
                    Kind::Ip => ip_cycle(&client, abrupt).await,
                }
                .with_context(|| format!("{t:?} {kind:?} cycle {i}"))?;
                if shared.is_none() {
                    client.close().await;
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    if let Some(c) = shared {
        c.close().await;
    }
    Ok(())
}

/// One CONNECT-IP tunnel: an address from the pool, a packet out and its
/// answer back, then closed (or dropped).
async fn ip_cycle(client: &ProxyClient, abrupt: bool) -> Result<()> {
    let mut s = client.open_ip(&IpTarget::ANY).await?;
    s.request_addresses(&[IpPrefix::new(std::net::Ipv4Addr::UNSPECIFIED.into(), 32)?])?;
    let info = s
        .wait_for(Duration::from_secs(10), |i| !i.assigned.is_empty())
        .await?;
    let std::net::IpAddr::V4(me) = info.assigned[0].ip else {
        bail!("an IPv4 address");
    };
    let mut p = vec![0u8; 32];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&32u16.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&me.octets());
    p[16..20].copy_from_slice(&[192, 0, 2, 1]);
    p[24..26].copy_from_slice(&12u16.to_be_bytes());
    masque_proto::packet::fill_ipv4_header_checksum(&mut p)?;
    let mut echoed = false;
    for _ in 0..5 {
        s.send_ip_packet(&p).await?;
        if s.recv(Duration::from_millis(500)).await.is_ok() {
            echoed = true;
            break;
        }
    }
    ensure!(echoed, "no IP echo");
    if abrupt {
        drop(s);
    } else {
        s.close().await;
    }
    Ok(())
}

async fn udp_cycle(client: &ProxyClient, echo: std::net::SocketAddr, abrupt: bool) -> Result<()> {
    let target = Target::Udp {
        host: echo.ip().to_string(),
        port: echo.port(),
    };
    let mut s: UdpSession = client.open_udp(&target).await?;
    // Datagrams may be lost: a few tries.
    let mut echoed = false;
    for _ in 0..5 {
        s.send(b"soak").await?;
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(500), s.recv()).await {
            echoed = true;
            break;
        }
    }
    ensure!(echoed, "no echo");
    if abrupt {
        drop(s);
    } else {
        s.close().await;
    }
    Ok(())
}

async fn tcp_cycle(client: &ProxyClient, echo: std::net::SocketAddr, abrupt: bool) -> Result<()> {
    let target = Target::Tcp {
        host: echo.ip().to_string(),
        port: echo.port(),
    };
    let mut t = client.open_tcp(&target, TcpMode::ConnectTcp).await?;
    t.write_all(b"x").await?;
    let mut b = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(10), t.read_exact(&mut b))
        .await
        .context("no echo")??;
    if abrupt {
        t.abort();
    } else {
        t.shutdown().await?;
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), t.read_to_end(&mut rest))
            .await
            .context("no FIN")??;
    }
    Ok(())
}

/// Datagrams at twice the measured capacity for `minutes`; returns JSON.
async fn flood(node: &TestNode, echo: std::net::SocketAddr, minutes: f64) -> Result<String> {
    let client =
        ProxyClient::connect(&url(node, Transport::H3), options_for(node, Transport::H3)).await?;
    let target = Target::Udp {
        host: echo.ip().to_string(),
        port: echo.port(),
    };
    let mut senders = Vec::new();
    let received = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..FLOOD_TUNNELS {
        let s = client.open_udp(&target).await?;
        let (tx, mut events) = s.into_events();
        let received = Arc::clone(&received);
        readers.push(tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if let masque_client::ClientEvent::Datagram(_) = e {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        senders.push(tx);
    }
    let payload = vec![7u8; PAYLOAD];
    // Capacity: echoes per second while sending as fast as try_send lets us.
    let measure = Duration::from_secs(2);
    let started = Instant::now();
    let mut sent = 0u64;
    let before = received.load(Ordering::Relaxed);
    while started.elapsed() < measure {
        for s in &senders {
            if s.try_send(&payload).is_ok() {
                sent += 1;
            }
        }
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let capacity = (received.load(Ordering::Relaxed) - before) as f64 / measure.as_secs_f64();
    let rate = (capacity * 2.0).max(1000.0);
    println!(
        "\nflood: capacity {capacity:.0} echoes/s measured; sending {rate:.0}/s for {minutes} min on {FLOOD_TUNNELS} HTTP/3 tunnels"
    );
    let m = node.node.metrics();
    // The kernel's drops on every UDP socket of this process (node, client, echo).
    let sampler = masque_server::kernel_drops::spawn_udp_drop_sampler(
        Arc::clone(m),
        Duration::from_millis(500),
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let node_before = m.snapshot();
    let rss_start = rss();
    let mut rss_max = rss_start;
    let (sent_before, recv_before) = (sent, received.load(Ordering::Relaxed));
    let mut refused = 0u64;
    let duration = Duration::from_secs_f64(minutes * 60.0);
    let started = Instant::now();
    let tick = Duration::from_millis(10);
    let per_tick = (rate * tick.as_secs_f64()).ceil() as u64;
    let mut next_sample = Instant::now();
    let mut interval = tokio::time::interval(tick);
    while started.elapsed() < duration {
        interval.tick().await;
        for i in 0..per_tick {
            let s = &senders[i as usize % senders.len()];
            match s.try_send(&payload) {
                Ok(()) => sent += 1,
                Err(_) => refused += 1,
            }
        }
        if Instant::now() >= next_sample {
            rss_max = rss_max.max(rss());
            next_sample += Duration::from_secs(1);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    sampler.abort();
    let flood_sent = sent - sent_before;
    let flood_received = received.load(Ordering::Relaxed) - recv_before;
    let node_after = m.snapshot();
    let h3 = m.h3.snapshot();
    let node_drops = (node_after.datagrams_to_target_dropped
        - node_before.datagrams_to_target_dropped)
        + (node_after.datagrams_to_client_dropped - node_before.datagrams_to_client_dropped)
        + (node_after.datagrams_dropped_rate - node_before.datagrams_dropped_rate);
    let kernel_drops = node_after.udp_kernel_drops - node_before.udp_kernel_drops;
    println!(
        "{:<34} {:>12}",
        "datagrams offered by the client",
        flood_sent + refused
    );
    println!(
        "{:<34} {:>12}",
        "  refused by the client (buffer full)", refused
    );
    println!("{:<34} {:>12}", "  sent", flood_sent);
    println!("{:<34} {:>12}", "  echoed back", flood_received);
    println!("{:<34} {:>12}", "  node drops (counted)", node_drops);
    println!(
        "{:<34} {:>12}",
        "  HTTP/3 queue-full drops (node)", h3.datagrams_dropped_queue_full
    );
    println!(
        "{:<34} {:>12}",
        "  kernel UDP socket drops (counted)", kernel_drops
    );
    println!(
        "{:<34} {:>12}",
        "  lost uncounted",
        flood_sent.saturating_sub(
            flood_received + node_drops + h3.datagrams_dropped_queue_full + kernel_drops
        )
    );
    println!(
        "{:<34} {:>9.1} -> {:.1} MiB (max)",
        "RSS",
        rss_start as f64 / (1 << 20) as f64,
        rss_max as f64 / (1 << 20) as f64
    );
    drop(senders);
    for r in readers {
        r.abort();
    }
    client.close().await;
    ensure!(
        rss_max <= rss_start + RSS_SLACK,
        "RSS grew from {rss_start} to {rss_max} bytes under the flood"
    );
    Ok(format!(
        "{{\"capacity\":{capacity:.0},\"rate\":{rate:.0},\"sent\":{flood_sent},\"refused\":{refused},\"echoed\":{flood_received},\"node_drops\":{node_drops},\"h3_queue_full\":{},\"kernel_drops\":{kernel_drops},\"rss_start\":{rss_start},\"rss_max\":{rss_max}}}",
        h3.datagrams_dropped_queue_full
    ))
}
