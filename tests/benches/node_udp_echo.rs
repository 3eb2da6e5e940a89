//! The proxy node end to end, on loopback, in three phases:
//!
//! 1. **Throughput**: CONNECT-UDP echo through an in-process node (masque-client ->
//!    node -> batched UDP echo target -> back), 1200-byte payloads, over 1 tunnel and
//!    over 16 tunnels on one connection, as a ratio of raw quinn DATAGRAM echo measured
//!    in the same run. A bare relay (`bare_relay.rs`: the same UDP legs without
//!    HTTP/3, sessions or actors) with 1 and 16 tunnels is measured alongside, so
//!    the node's own overhead and the cost of the extra UDP leg show apart. All
//!    paths are set up once and measured in alternating short slices (as in
//!    `h3_datagram_echo`), so drift in the machine's speed hits all alike. Then the
//!    price of a target-socket run (`masque_tests::run_cost`): a loopback GSO run
//!    measured alone, and each relay's CPU per datagram fitted as `base + per_run / run`.
//! 2. **Tunnel setups per second** on one connection: N concurrent CONNECT-UDP requests
//!    with a bounded in-flight window, until every 2xx arrived (client cost included).
//! 3. **RSS per idle tunnel**: the `masque-node` binary as a separate process (built
//!    here with `cargo build --release -p masque-node`, or `MASQUE_NODE_BIN`), 10,000
//!    tunnels each with one echoed datagram, VmRSS before and after.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p masque-tests --bench
//! node_udp_echo`; `-- --only throughput|setup|rss` runs one phase, for profiling;
//! `-- --workers N` changes the runtime's worker threads from 2).
//! Prints a table and writes target/bench/node_udp_echo.json after a full run.
//! Targets are reported, never asserted.

use std::{
    future::Future,
    io::IoSliceMut,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use masque_client::{ClientOptions, ProxyClient, Target, UdpSession};
use masque_server::MetricsSnapshot;
mod bare_relay;

use bare_relay::bare_relay;
use masque_tests::{
    bench::{Path, Slice, median, raw_quinn, udp_sessions_path},
    node::TestNode,
    run_cost::{RunCostFit, loopback_run, max_gso_segments},
    self_signed,
};
use masque_transport::tls::{ServerVerification, parse_pin};
use quinn::udp::{BATCH_SIZE, RecvMeta, Transmit, UdpSocketState};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Interest},
    task::{JoinHandle, JoinSet},
};

const PAYLOAD: usize = 1200;
/// Unanswered datagrams per path (spread over the tunnels of a multi-tunnel path).
const WINDOW: usize = 128;
const SLICE: Duration = Duration::from_millis(250);
/// Rounds of one slice per path (the order rotates every round).
const ROUNDS: usize = 16;
const MANY_TUNNELS: usize = 16;
/// Default worker threads (`--workers`).
const WORKERS: usize = 2;
const THROUGHPUT_TARGET: f64 = 0.75;

const SETUP_TUNNELS: usize = 5_000;
const SETUP_IN_FLIGHT: usize = 256;
const SETUP_ROUNDS: usize = 3;
const SETUP_TARGET: f64 = 10_000.0;
/// Per-request limit in the setup phase (a request stalled on stream credit
/// fails after this).
const REUSE_TIMEOUT: Duration = Duration::from_secs(3);

const RSS_TUNNELS: usize = 10_000;
const RSS_CONNECTIONS: usize = 10;
const RSS_TARGET_KIB: f64 = 16.0;
/// Tunnels closed and reopened after the measurement, for the churn figure.
const CHURN_TUNNELS: usize = 1_000;
/// File descriptors the node needs besides one per tunnel.
const FD_MARGIN: u64 = 1_024;

fn main() -> Result<()> {
    // `cargo test --all-targets` runs harness-less benches without `--bench`:
    // benchmarks only measure under `cargo bench` / `cargo xtask bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmark: run with `cargo xtask bench`");
        return Ok(());
    }
    let only = only_phase()?;
    let workers = worker_threads()?;
    let want = |p: &str| only.as_deref().is_none_or(|o| o == p);
    // Build the node binary before measuring anything, so the build does not load
    // the machine during a measurement.
    let node_bin = if want("rss") {
        Some(node_binary()?)
    } else {
        None
    };
    // Blocking sockets, measured before the runtime starts.
    let loopback = if want("throughput") {
        loopback_runs()?
    } else {
        Vec::new()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let echo = EchoTarget::start()?;
        let node = TestNode::start_with(true, None, |c| {
            c.max_tunnels_per_connection = SETUP_TUNNELS + 64;
        })
        .await?;
        let mut report = Report::default();
        if want("throughput") {
            let start = Instant::now();
            let mut t = throughput(&node, &echo, workers).await?;
            t.loopback = loopback;
            t.print();
            println!("(phase took {:.1} s)", start.elapsed().as_secs_f64());
            report.throughput = Some(t);
        }
        if want("setup") {
            let start = Instant::now();
            let s = setup_rate(&node, &echo).await?;
            s.print();
            println!("(phase took {:.1} s)", start.elapsed().as_secs_f64());
            report.setup = Some(s);
        }
        node.node.shutdown().await;
        if let Some(bin) = node_bin {
            let start = Instant::now();
            let r = rss_per_tunnel(&bin, &echo).await?;
            r.print();
            println!("(phase took {:.1} s)", start.elapsed().as_secs_f64());
            report.rss = Some(r);
        }
        report.write()
    })
}

/// `--only <phase>` from the bench arguments (cargo adds `--bench`; others ignored).
fn only_phase() -> Result<Option<String>> {
    let args: Vec<String> = std::env::args().collect();
    let Some(i) = args.iter().position(|a| a == "--only") else {
        return Ok(None);
    };
    match args.get(i + 1).map(String::as_str) {
        Some(p @ ("throughput" | "setup" | "rss")) => Ok(Some(p.to_owned())),
        other => bail!("--only takes throughput, setup or rss, not {other:?}"),
    }
}

/// `--workers <n>`: worker threads of the runtime that runs the client, the
/// node and the echo target (default 2, this machine's cores). Everything,
/// raw quinn included, runs on them, so ratios stay comparable; with 1 the
/// cost of cross-thread wake-ups drops out (decisions §29).
fn worker_threads() -> Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    let Some(i) = args.iter().position(|a| a == "--workers") else {
        return Ok(WORKERS);
    };
    match args.get(i + 1).and_then(|n| n.parse::<usize>().ok()) {
        Some(n) if n > 0 => Ok(n),
        _ => bail!("--workers takes a positive number"),
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn udp_target(addr: SocketAddr) -> Target {
    Target::udp(addr.ip().to_string(), addr.port())
}

fn gbit(rate: f64) -> f64 {
    rate * PAYLOAD as f64 * 8.0 / 1e9
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

// ---------------------------------------------------------------------------
// The UDP echo target: batched receive (recvmmsg + GRO) and GSO send-back
// through quinn-udp, so it is never the bottleneck.
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct EchoCounters {
    datagrams: AtomicU64,
    recv_syscalls: AtomicU64,
    /// Receive buffers: one per datagram, or one per GRO-coalesced run (which
    /// is what one GSO send of the node's target socket arrives as).
    buffers: AtomicU64,
    send_syscalls: AtomicU64,
    send_errors: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default)]
struct EchoStats {
    datagrams: u64,
    recv_syscalls: u64,
    buffers: u64,
    send_syscalls: u64,
    send_errors: u64,
}

impl EchoCounters {
    fn snapshot(&self) -> EchoStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EchoStats {
            datagrams: get(&self.datagrams),
            recv_syscalls: get(&self.recv_syscalls),
            buffers: get(&self.buffers),
            send_syscalls: get(&self.send_syscalls),
            send_errors: get(&self.send_errors),
        }
    }
}

impl EchoStats {
    fn since(self, b: Self) -> Self {
        Self {
            datagrams: self.datagrams - b.datagrams,
            recv_syscalls: self.recv_syscalls - b.recv_syscalls,
            buffers: self.buffers - b.buffers,
            send_syscalls: self.send_syscalls - b.send_syscalls,
            send_errors: self.send_errors - b.send_errors,
        }
    }

    fn add(&mut self, d: Self) {
        self.datagrams += d.datagrams;
        self.recv_syscalls += d.recv_syscalls;
        self.buffers += d.buffers;
        self.send_syscalls += d.send_syscalls;
        self.send_errors += d.send_errors;
    }

    /// Datagrams per receive buffer: per send system call of the node's target
    /// sockets (a GSO send arrives as one GRO buffer on loopback).
    fn per_node_send(&self) -> f64 {
        self.datagrams as f64 / self.buffers.max(1) as f64
    }

    /// Datagrams per GSO send of the echo target, i.e. at most what one receive
    /// of a node target socket can get.
    fn per_echo_send(&self) -> f64 {
        self.datagrams as f64 / self.send_syscalls.max(1) as f64
    }
}

struct EchoTarget {
    addr: SocketAddr,
    counters: Arc<EchoCounters>,
    task: JoinHandle<()>,
}

impl Drop for EchoTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EchoTarget {
    /// Binds 127.0.0.1:0 with 4 MiB socket buffers and starts echoing.
    fn start() -> Result<Self> {
        let std_sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
        std_sock.set_nonblocking(true)?;
        let state = UdpSocketState::new((&std_sock).into())?;
        state.set_recv_buffer_size((&std_sock).into(), 4 << 20)?;
        state.set_send_buffer_size((&std_sock).into(), 4 << 20)?;
        let sock = tokio::net::UdpSocket::from_std(std_sock)?;
        let addr = sock.local_addr()?;
        let counters = Arc::new(EchoCounters::default());
        let task = tokio::spawn(echo_loop(sock, state, Arc::clone(&counters)));
        Ok(Self {
            addr,
            counters,
            task,
        })
    }

    fn stats(&self) -> EchoStats {
        self.counters.snapshot()
    }
}

async fn echo_loop(sock: tokio::net::UdpSocket, state: UdpSocketState, c: Arc<EchoCounters>) {
    const SLOT: usize = 65_536;
    let mut storage = vec![0u8; BATCH_SIZE * SLOT];
    let mut metas = [RecvMeta::default(); BATCH_SIZE];
    let max_segments = state.max_gso_segments().min(64);
    let mut runs: Vec<Run> = Vec::new();
    loop {
        if sock.readable().await.is_err() {
            return;
        }
        let filled = {
            let mut chunks = storage.chunks_mut(SLOT);
            let mut iovs: [IoSliceMut<'_>; BATCH_SIZE] =
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or(&mut [])));
            match sock.try_io(Interest::READABLE, || {
                state.recv((&sock).into(), &mut iovs, &mut metas)
            }) {
                Ok(n) => n,
                // WouldBlock, or e.g. a stray ICMP error: keep echoing.
                Err(_) => continue,
            }
        };
        c.recv_syscalls.fetch_add(1, Ordering::Relaxed);
        c.buffers.fetch_add(filled as u64, Ordering::Relaxed);
        // Gather each sender's datagrams into runs of equal size, one GSO send each.
        runs.clear();
        for (i, meta) in metas[..filled].iter().enumerate() {
            let data = &storage[i * SLOT..i * SLOT + meta.len];
            let stride = if meta.stride == 0 {
                meta.len
            } else {
                meta.stride
            };
            let segments = meta.len.div_ceil(stride.max(1));
            if segments > 1 && segments <= max_segments && !runs.iter().any(|r| r.addr == meta.addr)
            {
                // A GRO buffer (one sender, equal segments, maybe a shorter last
                // one) is exactly what a GSO send takes: echo it as it is.
                c.datagrams.fetch_add(segments as u64, Ordering::Relaxed);
                let t = Transmit {
                    destination: meta.addr,
                    ecn: None,
                    contents: data,
                    segment_size: Some(stride),
                    src_ip: None,
                };
                echo_send(&sock, &state, &t, &c).await;
                continue;
            }
            for d in data.chunks(stride.max(1)) {
                c.datagrams.fetch_add(1, Ordering::Relaxed);
                let run = match runs.iter_mut().position(|r| r.addr == meta.addr) {
                    Some(k) if runs[k].fits(d.len(), max_segments) => &mut runs[k],
                    Some(k) => {
                        runs[k].send(&sock, &state, &c).await;
                        runs[k].segment = d.len();
                        &mut runs[k]
                    }
                    None => {
                        runs.push(Run::new(meta.addr, d.len()));
                        runs.last_mut().expect("just pushed")
                    }
                };
                run.buf.extend_from_slice(d);
                run.count += 1;
            }
        }
        for run in &mut runs {
            run.send(&sock, &state, &c).await;
        }
    }
}

/// Datagrams of one size for one destination, sent back with one GSO call.
struct Run {
    addr: SocketAddr,
    segment: usize,
    count: usize,
    buf: Vec<u8>,
}

impl Run {
    fn new(addr: SocketAddr, segment: usize) -> Self {
        Self {
            addr,
            segment,
            count: 0,
            buf: Vec::new(),
        }
    }

    fn fits(&self, len: usize, max_segments: usize) -> bool {
        self.count == 0
            || (len == self.segment && self.count < max_segments && self.buf.len() + len <= 65_507)
    }

    async fn send(
        &mut self,
        sock: &tokio::net::UdpSocket,
        state: &UdpSocketState,
        c: &EchoCounters,
    ) {
        if self.count == 0 {
            return;
        }
        let t = Transmit {
            destination: self.addr,
            ecn: None,
            contents: &self.buf,
            segment_size: (self.count > 1).then_some(self.segment),
            src_ip: None,
        };
        echo_send(sock, state, &t, c).await;
        self.buf.clear();
        self.count = 0;
    }
}

/// Sends one transmit, waiting while the send buffer is full.
async fn echo_send(
    sock: &tokio::net::UdpSocket,
    state: &UdpSocketState,
    t: &Transmit<'_>,
    c: &EchoCounters,
) {
    loop {
        match sock.try_io(Interest::WRITABLE, || state.try_send(sock.into(), t)) {
            Ok(()) => {
                c.send_syscalls.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if sock.writable().await.is_err() {
                    return;
                }
            }
            Err(_) => {
                c.send_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Kernel drop counters (`drops` column of /proc/self/net/udp) of this process's
// sockets, grouped by role.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default)]
struct KernelDrops {
    /// The echo target's socket.
    echo: u64,
    /// The node's target sockets (connected to the echo target).
    node_targets: u64,
    /// The node's QUIC listener.
    node_listener: u64,
    /// Everything else of ours: client endpoints, the raw quinn pair.
    other: u64,
}

impl KernelDrops {
    fn read(echo: SocketAddr, node: SocketAddr) -> Option<Self> {
        let ours = own_socket_inodes();
        let table = std::fs::read_to_string("/proc/self/net/udp").ok()?;
        let port_of = |field: &str| {
            field
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
        };
        let mut d = Self::default();
        for line in table.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 13 || !ours.iter().any(|i| i == f[9]) {
                continue;
            }
            let drops: u64 = f[12].parse().unwrap_or(0);
            let (local, remote) = (port_of(f[1]), port_of(f[2]));
            if local == Some(echo.port()) {
                d.echo += drops;
            } else if remote == Some(echo.port()) {
                d.node_targets += drops;
            } else if local == Some(node.port()) {
                d.node_listener += drops;
            } else {
                d.other += drops;
            }
        }
        Some(d)
    }

    fn since(self, before: Self) -> Self {
        Self {
            echo: self.echo.saturating_sub(before.echo),
            node_targets: self.node_targets.saturating_sub(before.node_targets),
            node_listener: self.node_listener.saturating_sub(before.node_listener),
            other: self.other.saturating_sub(before.other),
        }
    }
}

/// Inodes of the sockets this process holds (from /proc/self/fd).
fn own_socket_inodes() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let link = std::fs::read_link(e.ok()?.path()).ok()?;
        let s = link.to_str()?;
        Some(s.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
    })
    .collect()
}

// ---------------------------------------------------------------------------
// Phase 1: throughput, alternating slices.
// ---------------------------------------------------------------------------

/// CONNECT-UDP echo through the node over `tunnels` tunnels of one new client
/// connection; the sender goes round robin over the tunnels.
async fn through_node(
    node: &TestNode,
    echo: SocketAddr,
    tunnels: usize,
) -> Result<(Path, ProxyClient)> {
    let client = ProxyClient::connect(&node.url(), node.client_options()).await?;
    let mut sessions = Vec::new();
    for _ in 0..tunnels {
        sessions.push(client.open_udp(&udp_target(echo)).await?);
    }
    let path = udp_sessions_path(sessions, PAYLOAD, WINDOW, SLICE)?;
    Ok((path, client))
}

/// One path's figures over the whole run.
#[derive(Debug, Clone)]
struct PathResult {
    name: &'static str,
    /// Echo rate of each slice.
    slices: Vec<f64>,
    /// Process CPU seconds per echoed datagram, and busy cores, over all slices.
    cpu_per_echo: f64,
    cores: f64,
    /// The echo target's counters during this path's slices.
    echo: EchoStats,
    /// Per-round ratio to the raw quinn slice of the same round.
    ratios: Vec<f64>,
    /// For a node path: per-round ratio to the bare relay with as many tunnels.
    bare_ratios: Option<Vec<f64>>,
    refills: u64,
}

impl PathResult {
    fn rate(&self) -> f64 {
        mean(&self.slices)
    }
}

struct Throughput {
    raw: PathResult,
    paths: Vec<PathResult>,
    metrics: MetricsSnapshot,
    kernel_drops: Option<KernelDrops>,
    /// masque-h3 datagrams the node clients sent, and the client-side drops.
    client_h3: masque_h3::StatsSnapshot,
    lost_packets: Vec<(&'static str, u64)>,
    /// Client side QUIC packets per send system call (quinn counts receives
    /// per packet, so there is no receive figure).
    quic_batching: Vec<(&'static str, f64)>,
    /// Worker threads of the runtime everything ran on.
    workers: usize,
    /// Kernel price of one loopback run: (datagrams, send us, receive us).
    loopback: Vec<(usize, f64, f64)>,
}

/// [`loopback_run`] for a few run lengths (those the GSO limits here allow).
fn loopback_runs() -> Result<Vec<(usize, f64, f64)>> {
    let max = (65_507 / PAYLOAD).min(max_gso_segments());
    [1, 4, 8, 16, max]
        .into_iter()
        .filter(|&n| n <= max)
        .map(|n| loopback_run(n, PAYLOAD, 20_000).map(|(s, r)| (n, s, r)))
        .collect()
}

async fn throughput(node: &TestNode, echo: &EchoTarget, workers: usize) -> Result<Throughput> {
    let cert = self_signed()?;
    let (raw_path, _raw_ep, raw_conn) = raw_quinn(&cert, PAYLOAD, WINDOW, SLICE).await?;
    let (bare1_path, _b1_ep, bare1_conn) =
        bare_relay(&cert, echo.addr, 1, PAYLOAD, WINDOW, SLICE).await?;
    let (bare16_path, _b16_ep, bare16_conn) =
        bare_relay(&cert, echo.addr, MANY_TUNNELS, PAYLOAD, WINDOW, SLICE).await?;
    let (one_path, one_client) = through_node(node, echo.addr, 1).await?;
    let (many_path, many_client) = through_node(node, echo.addr, MANY_TUNNELS).await?;
    let names = [
        "raw quinn DATAGRAM echo",
        "bare relay, 1 tunnel",
        "node, 1 tunnel",
        "bare relay, 16 tunnels",
        "node, 16 tunnels",
    ];
    // For each node path, the bare relay path with as many tunnels.
    let bare_of = [None, None, Some(1), None, Some(3)];
    let quics = [
        raw_conn,
        bare1_conn,
        one_client.h3_connection().context("HTTP/3")?.quic().clone(),
        bare16_conn,
        many_client
            .h3_connection()
            .context("HTTP/3")?
            .quic()
            .clone(),
    ];
    let paths = [&raw_path, &bare1_path, &one_path, &bare16_path, &many_path];
    // Warm-up slice each (PMTUD, allocator, congestion window).
    for p in paths {
        p.measure().await;
    }
    let drops_before = KernelDrops::read(echo.addr, node.node.local_addr());
    let metrics_before = node.node.metrics().snapshot();
    let h3_stats = |c: &ProxyClient| c.h3_connection().map(|c| c.stats()).unwrap_or_default();
    let h3_before = [&one_client, &many_client].map(h3_stats);
    let mut slices = vec![Vec::new(); paths.len()];
    let mut echo_stats = vec![EchoStats::default(); paths.len()];
    for round in 0..ROUNDS {
        // Rotate the order so no path always follows the same one.
        for k in 0..paths.len() {
            let i = (round + k) % paths.len();
            let before = echo.stats();
            slices[i].push(paths[i].measure().await);
            echo_stats[i].add(echo.stats().since(before));
        }
    }
    let metrics = diff_metrics(node.node.metrics().snapshot(), metrics_before);
    let kernel_drops = KernelDrops::read(echo.addr, node.node.local_addr())
        .zip(drops_before)
        .map(|(a, b)| a.since(b));
    let h3_after = [&one_client, &many_client].map(h3_stats);
    let delta = |f: fn(&masque_h3::StatsSnapshot) -> u64| -> u64 {
        (0..2).map(|i| f(&h3_after[i]) - f(&h3_before[i])).sum()
    };
    let client_h3 = masque_h3::StatsSnapshot {
        datagrams_sent: delta(|s| s.datagrams_sent),
        datagrams_received: delta(|s| s.datagrams_received),
        datagrams_dropped_queue_full: delta(|s| s.datagrams_dropped_queue_full),
        ..Default::default()
    };
    // A path that stalled: say whether its connection was closed, and why.
    for (name, c) in names.iter().zip(&quics) {
        if let Some(reason) = c.close_reason() {
            println!("connection of path {name:?} closed during the run: {reason}");
        }
    }
    let stats: Vec<quinn::ConnectionStats> = quics.iter().map(quinn::Connection::stats).collect();
    let lost_packets = names
        .iter()
        .zip(&stats)
        .map(|(n, s)| (*n, s.path.lost_packets))
        .collect();
    let quic_batching = names
        .iter()
        .zip(&stats)
        .map(|(n, s)| {
            let tx = &s.udp_tx;
            (*n, tx.datagrams as f64 / tx.ios.max(1) as f64)
        })
        .collect();
    let ratios_to = |i: usize, base: usize| -> Vec<f64> {
        slices[i]
            .iter()
            .zip(&slices[base])
            .map(|(s, r)| s.rate() / r.rate())
            .collect()
    };
    let results: Vec<PathResult> = (0..paths.len())
        .map(|i| {
            let (echoed, secs, cpu) = slices[i].iter().fold((0, 0.0, 0.0), |a, s| {
                (a.0 + s.echoed, a.1 + s.secs, a.2 + s.cpu)
            });
            PathResult {
                name: names[i],
                ratios: ratios_to(i, 0),
                bare_ratios: bare_of[i].map(|f| ratios_to(i, f)),
                slices: slices[i].iter().map(Slice::rate).collect(),
                cpu_per_echo: cpu / echoed.max(1) as f64,
                cores: cpu / secs,
                echo: echo_stats[i],
                refills: paths[i].refills.load(Ordering::Relaxed),
            }
        })
        .collect();
    drop((raw_path, bare1_path, bare16_path, one_path, many_path));
    one_client.close().await;
    many_client.close().await;
    let mut results = results.into_iter();
    let raw = results.next().context("raw path")?;
    Ok(Throughput {
        raw,
        paths: results.collect(),
        metrics,
        kernel_drops,
        client_h3,
        lost_packets,
        quic_batching,
        workers,
        loopback: Vec::new(),
    })
}

/// Field-wise `after - before` of two metrics snapshots.
fn diff_metrics(a: MetricsSnapshot, b: MetricsSnapshot) -> MetricsSnapshot {
    MetricsSnapshot {
        datagrams_from_client: a.datagrams_from_client - b.datagrams_from_client,
        datagrams_dropped_unknown_context: a.datagrams_dropped_unknown_context
            - b.datagrams_dropped_unknown_context,
        datagrams_dropped_malformed: a.datagrams_dropped_malformed - b.datagrams_dropped_malformed,
        datagrams_dropped_oversize: a.datagrams_dropped_oversize - b.datagrams_dropped_oversize,
        datagrams_to_target: a.datagrams_to_target - b.datagrams_to_target,
        datagrams_to_target_dropped: a.datagrams_to_target_dropped - b.datagrams_to_target_dropped,
        datagrams_from_target: a.datagrams_from_target - b.datagrams_from_target,
        datagrams_to_client_dropped: a.datagrams_to_client_dropped - b.datagrams_to_client_dropped,
        icmp_unreachable: a.icmp_unreachable - b.icmp_unreachable,
        output_dropped: a.output_dropped - b.output_dropped,
        ..a
    }
}

impl Throughput {
    fn print(&self) {
        println!(
            "\n[1] CONNECT-UDP echo through the node vs raw quinn DATAGRAM echo: {PAYLOAD}-byte payloads, \
             window {WINDOW}, {ROUNDS} rounds of one {SLICE:?} slice per path (order rotating), {} worker threads",
            self.workers
        );
        println!(
            "{:<24} {:>12} {:>7} {:>6} {:>7} {:>7} {:>8} {:>6} {:>8}",
            "path (mean)",
            "datagrams/s",
            "Gbit/s",
            "ratio",
            "median",
            "vs bare",
            "us CPU",
            "cores",
            "refills"
        );
        let r = self.raw.rate();
        for p in std::iter::once(&self.raw).chain(&self.paths) {
            let bare = p
                .bare_ratios
                .as_ref()
                .map_or_else(|| "-".to_owned(), |f| format!("{:.3}", median(f)));
            println!(
                "{:<24} {:>12.0} {:>7.3} {:>6.3} {:>7.3} {:>7} {:>8.2} {:>6.2} {:>8}",
                p.name,
                p.rate(),
                gbit(p.rate()),
                p.rate() / r,
                median(&p.ratios),
                bare,
                p.cpu_per_echo * 1e6,
                p.cores,
                p.refills
            );
        }
        println!(
            "target: node/raw >= {THROUGHPUT_TARGET}. ratio = mean rate / mean raw rate; median = of per-round ratios; \
             vs bare = median per-round ratio to the bare relay with as many tunnels (the same UDP sockets and \
             batching with no HTTP/3, sessions, actors or policy: 1 - it is the node's own overhead); \
             us CPU = CPU time of this whole process (client, node, echo target) per echoed datagram; \
             cores = busy cores meanwhile (2 = CPU-bound); refills = stall-watchdog window refills, i.e. losses"
        );
        let m = &self.metrics;
        println!(
            "node counters over the run: from_client {} to_target {} (dropped {}) from_target {} \
             to_client_dropped {} output_dropped {} unknown_ctx {} malformed {} oversize {} icmp {}",
            m.datagrams_from_client,
            m.datagrams_to_target,
            m.datagrams_to_target_dropped,
            m.datagrams_from_target,
            m.datagrams_to_client_dropped,
            m.output_dropped,
            m.datagrams_dropped_unknown_context,
            m.datagrams_dropped_malformed,
            m.datagrams_dropped_oversize,
            m.icmp_unreachable
        );
        let h = &self.client_h3;
        println!(
            "clients (masque-h3): sent {} received {} queue_full_dropped {}; \
             sent but not seen by the node's handler: {}",
            h.datagrams_sent,
            h.datagrams_received,
            h.datagrams_dropped_queue_full,
            h.datagrams_sent.saturating_sub(m.datagrams_from_client)
        );
        match &self.kernel_drops {
            Some(k) => println!(
                "kernel UDP drops (sk_drops): echo target {} node target sockets {} node listener {} other {}",
                k.echo, k.node_targets, k.node_listener, k.other
            ),
            None => println!("kernel UDP drops: /proc/self/net/udp not readable"),
        }
        for p in &self.paths {
            let e = &p.echo;
            println!(
                "{}: echo target got {:.1} datagrams per relay target-socket send (GSO run), \
                 {:.1} per recvmmsg; it sent {:.1} per GSO send (at most what one relay receive gets); {} send errors",
                p.name,
                e.per_node_send(),
                e.datagrams as f64 / e.recv_syscalls.max(1) as f64,
                e.per_echo_send(),
                e.send_errors
            );
        }
        let lost: Vec<String> = self
            .lost_packets
            .iter()
            .map(|(n, l)| format!("{n} {l}"))
            .collect();
        println!("QUIC lost packets (client side): {}", lost.join(", "));
        let batching: Vec<String> = self
            .quic_batching
            .iter()
            .map(|(n, tx)| format!("{n} {tx:.1}"))
            .collect();
        println!(
            "QUIC packets per send system call (client side, over the whole run): {}",
            batching.join(", ")
        );
        self.print_run_cost();
    }

    /// The two paths of one relay with 1 and with [`MANY_TUNNELS`] tunnels.
    fn pair(&self, one: &str, many: &str) -> Option<(&PathResult, &PathResult)> {
        let find = |n: &str| self.paths.iter().find(|p| p.name == n);
        find(one).zip(find(many))
    }

    /// The run-cost model (`masque_tests::run_cost`) fitted to this run, and the
    /// run length the target needs.
    fn run_cost(&self, one: &str, many: &str) -> Option<(RunCostFit, f64)> {
        let (a, b) = self.pair(one, many)?;
        let point = |p: &PathResult| (p.cpu_per_echo * 1e6, p.echo.per_node_send());
        Some((RunCostFit::fit(point(a), point(b))?, b.echo.per_node_send()))
    }

    fn print_run_cost(&self) {
        let runs: Vec<String> = self
            .loopback
            .iter()
            .map(|(n, s, r)| {
                format!(
                    "{n}: {s:.2} + {r:.2} us ({:.2} us per datagram)",
                    (s + r) / *n as f64
                )
            })
            .collect();
        println!(
            "\n[1b] the price of a target-socket run. Kernel time of one loopback GSO send + GRO receive \
             of n {PAYLOAD}-byte datagrams, no relay: {}",
            runs.join("; ")
        );
        let budget = self.raw.cpu_per_echo * 1e6 / THROUGHPUT_TARGET;
        for (name, one, many) in [
            (
                "bare relay",
                "bare relay, 1 tunnel",
                "bare relay, 16 tunnels",
            ),
            ("node", "node, 1 tunnel", "node, 16 tunnels"),
        ] {
            match self.run_cost(one, many) {
                Some((f, got)) => println!(
                    "{name}: CPU per datagram = {:.2} us + {:.2} us per run (fitted to its 1- and \
                     {MANY_TUNNELS}-tunnel paths); {THROUGHPUT_TARGET}x of raw quinn ({budget:.2} us) needs runs of {}; \
                     {MANY_TUNNELS} tunnels got {got:.1}, and a window of {WINDOW} allows at most {} per tunnel",
                    f.base_us,
                    f.per_run_us,
                    f.run_needed(budget).map_or_else(
                        || "any length: out of reach".to_owned(),
                        |n| format!(">= {n:.1}")
                    ),
                    WINDOW / MANY_TUNNELS
                ),
                None => println!("{name}: run lengths too close to fit the run-cost model"),
            }
        }
    }

    fn json(&self) -> String {
        let path = |p: &PathResult| {
            format!(
                "{{\"name\":\"{}\",\"dps\":{:.0},\"gbit\":{:.4},\"ratio\":{:.4},\"cpu_us_per_echo\":{:.3},\"cores\":{:.3},\
                 \"median_round_ratio\":{:.4},\"median_round_ratio_to_bare_relay\":{},\"refills\":{},\"echo_dgrams_per_node_send\":{:.2},\"echo_dgrams_per_echo_send\":{:.2},\"slices\":{:.0?}}}",
                p.name,
                p.rate(),
                gbit(p.rate()),
                p.rate() / self.raw.rate(),
                p.cpu_per_echo * 1e6,
                p.cores,
                median(&p.ratios),
                p.bare_ratios
                    .as_ref()
                    .map_or_else(|| "null".to_owned(), |f| format!("{:.4}", median(f))),
                p.refills,
                p.echo.per_node_send(),
                p.echo.per_echo_send(),
                p.slices
            )
        };
        let paths: Vec<String> = std::iter::once(&self.raw)
            .chain(&self.paths)
            .map(path)
            .collect();
        let m = &self.metrics;
        let k = self.kernel_drops.unwrap_or_default();
        let loopback: Vec<String> = self
            .loopback
            .iter()
            .map(|(n, s, r)| format!("{{\"datagrams\":{n},\"send_us\":{s:.3},\"recv_us\":{r:.3}}}"))
            .collect();
        let budget = self.raw.cpu_per_echo * 1e6 / THROUGHPUT_TARGET;
        let run_cost = |one: &str, many: &str| {
            self.run_cost(one, many).map_or_else(
                || "null".to_owned(),
                |(f, got)| {
                    format!(
                        "{{\"base_us\":{:.3},\"per_run_us\":{:.3},\"run_needed\":{},\"run_got\":{got:.2}}}",
                        f.base_us,
                        f.per_run_us,
                        f.run_needed(budget).map_or_else(|| "null".to_owned(), |n| format!("{n:.2}"))
                    )
                },
            )
        };
        format!(
            "{{\"payload\":{PAYLOAD},\"window\":{WINDOW},\"workers\":{},\"target_ratio\":{THROUGHPUT_TARGET},\"paths\":[{}],\
             \"node_metrics\":{{\"datagrams_from_client\":{},\"datagrams_to_target\":{},\"datagrams_to_target_dropped\":{},\
             \"datagrams_from_target\":{},\"datagrams_to_client_dropped\":{},\"output_dropped\":{}}},\
             \"client_h3\":{{\"sent\":{},\"received\":{},\"queue_full_dropped\":{}}},\
             \"kernel_drops\":{{\"available\":{},\"echo\":{},\"node_targets\":{},\"node_listener\":{},\"other\":{}}},\
             \"loopback_runs\":[{}],\"run_cost\":{{\"bare_relay\":{},\"node\":{}}}}}",
            self.workers,
            paths.join(","),
            m.datagrams_from_client,
            m.datagrams_to_target,
            m.datagrams_to_target_dropped,
            m.datagrams_from_target,
            m.datagrams_to_client_dropped,
            m.output_dropped,
            self.client_h3.datagrams_sent,
            self.client_h3.datagrams_received,
            self.client_h3.datagrams_dropped_queue_full,
            self.kernel_drops.is_some(),
            k.echo,
            k.node_targets,
            k.node_listener,
            k.other,
            loopback.join(","),
            run_cost("bare relay, 1 tunnel", "bare relay, 16 tunnels"),
            run_cost("node, 1 tunnel", "node, 16 tunnels"),
        )
    }
}

// ---------------------------------------------------------------------------
// Opening and closing many tunnels with a bounded window.
// ---------------------------------------------------------------------------

/// Runs `open(i)` for `i in 0..n` with at most `window` in flight; fails on the
/// first error (the rest are aborted).
async fn open_many<F, Fut>(n: usize, window: usize, open: F) -> Result<Vec<UdpSession>>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<UdpSession>> + Send + 'static,
{
    let (sessions, mut errors) = open_all(n, window, true, open).await;
    match errors.pop() {
        Some(e) => Err(e),
        None => Ok(sessions),
    }
}

/// Like [`open_many`]; with `fail_fast` false it runs every attempt and returns
/// the failures next to the sessions.
async fn open_all<F, Fut>(
    n: usize,
    window: usize,
    fail_fast: bool,
    open: F,
) -> (Vec<UdpSession>, Vec<anyhow::Error>)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<UdpSession>> + Send + 'static,
{
    let mut set = JoinSet::new();
    let (mut sessions, mut errors) = (Vec::with_capacity(n), Vec::new());
    let mut next = 0;
    loop {
        while next < n && set.len() < window {
            let fut = open(next);
            set.spawn(async move { fut.await.with_context(|| format!("tunnel {next}")) });
            next += 1;
        }
        match set.join_next().await {
            Some(Ok(Ok(s))) => sessions.push(s),
            Some(Ok(Err(e))) => errors.push(e),
            Some(Err(e)) => errors.push(e.into()),
            None => break,
        }
        if fail_fast && !errors.is_empty() {
            break;
        }
    }
    (sessions, errors)
}

/// Closes every session (FIN, wait for the node's FIN), `window` at a time.
async fn close_many(sessions: Vec<UdpSession>, window: usize) {
    let mut set = JoinSet::new();
    for s in sessions {
        if set.len() >= window {
            set.join_next().await;
        }
        set.spawn(s.close());
    }
    while set.join_next().await.is_some() {}
}

/// Adds a hint when an error looks like file descriptor exhaustion.
fn fd_hint(e: anyhow::Error) -> anyhow::Error {
    let text = format!("{e:#}");
    if text.contains("Too many open files") || text.contains("os error 24") {
        e.context("out of file descriptors: each tunnel holds a UDP socket in the node; raise `ulimit -n`")
    } else {
        e
    }
}

// ---------------------------------------------------------------------------
// Phase 2: tunnel setups per second on one connection.
// ---------------------------------------------------------------------------

struct SetupRate {
    /// One per round, each on a fresh connection.
    rounds: Vec<Round>,
    reuse: Reuse,
}

struct Round {
    setup: f64,
    close: f64,
    latency: Latency,
}

/// Time from request to 2xx, milliseconds.
#[derive(Debug, Clone, Copy)]
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Latency {
    fn of(ms: &[f64]) -> Self {
        let mut v = ms.to_vec();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)));
        Self {
            p50: at(0.5).copied().unwrap_or(0.0),
            p99: at(0.99).copied().unwrap_or(0.0),
            max: v.last().copied().unwrap_or(0.0),
        }
    }
}

/// Reopening tunnels on a connection whose earlier tunnels were all closed.
struct Reuse {
    reopened: usize,
    /// Requests of the reopening that reached the node (the rest never got
    /// stream credit).
    reached_node: u64,
    first_error: Option<String>,
}

async fn setup_rate(node: &TestNode, echo: &EchoTarget) -> Result<SetupRate> {
    let target = udp_target(echo.addr);
    let options = ClientOptions {
        connect_timeout: REUSE_TIMEOUT,
        ..node.client_options()
    };
    let mut rounds = Vec::new();
    let mut client: Option<ProxyClient> = None;
    for round in 1..=SETUP_ROUNDS {
        // A fresh connection per round: the rate is not mixed up with stream
        // credit left over from an earlier round (checked separately below).
        let fresh = ProxyClient::connect(&node.url(), options.clone()).await?;
        if let Some(old) = client.replace(fresh.clone()) {
            old.close().await;
        }
        let r = setup_round(node, &fresh, &target)
            .await
            .with_context(|| format!("setup round {round}"))?;
        rounds.push(r);
    }
    let client = client.context("no setup round ran")?;
    let reuse = reuse_check(node, &client, &target).await;
    client.close().await;
    Ok(SetupRate { rounds, reuse })
}

/// Opens SETUP_TUNNELS tunnels on `client` (timed until every 2xx arrived),
/// then closes them all (timed) and waits until the node has cleaned up.
async fn setup_round(node: &TestNode, client: &ProxyClient, target: &Target) -> Result<Round> {
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(SETUP_TUNNELS)));
    let start = Instant::now();
    let sessions = open_many(SETUP_TUNNELS, SETUP_IN_FLIGHT, |_| {
        let (client, target) = (client.clone(), target.clone());
        let latencies = Arc::clone(&latencies);
        async move {
            let t = Instant::now();
            let s = client.open_udp(&target).await?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            latencies.lock().unwrap_or_else(|p| p.into_inner()).push(ms);
            Ok(s)
        }
    })
    .await;
    let sessions = match sessions {
        Ok(s) => s,
        Err(e) => {
            print_stall(node, client);
            return Err(fd_hint(e));
        }
    };
    let setup = SETUP_TUNNELS as f64 / start.elapsed().as_secs_f64();
    let latency = Latency::of(&latencies.lock().unwrap_or_else(|p| p.into_inner()));
    let start = Instant::now();
    close_many(sessions, SETUP_IN_FLIGHT).await;
    let close = SETUP_TUNNELS as f64 / start.elapsed().as_secs_f64();
    wait_node_idle(node).await;
    Ok(Round {
        setup,
        close,
        latency,
    })
}

/// Waits (bounded) until the node has no session left.
async fn wait_node_idle(node: &TestNode) {
    let m = node.node.metrics();
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.active_sessions() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// After a round's tunnels were all closed, opens as many again on the same
/// connection: every one must get its stream credit back (a node that leaks
/// credit on close makes some wait for MAX_STREAMS until they time out).
async fn reuse_check(node: &TestNode, client: &ProxyClient, target: &Target) -> Reuse {
    let requests_before = node.node.metrics().snapshot().tunnel_requests;
    let (sessions, errors) = open_all(SETUP_TUNNELS, SETUP_IN_FLIGHT, false, |_| {
        let (client, target) = (client.clone(), target.clone());
        async move { Ok(client.open_udp(&target).await?) }
    })
    .await;
    let reached_node = node.node.metrics().snapshot().tunnel_requests - requests_before;
    let reopened = sessions.len();
    close_many(sessions, SETUP_IN_FLIGHT).await;
    wait_node_idle(node).await;
    Reuse {
        reopened,
        reached_node,
        first_error: errors.first().map(|e| format!("{e:#}")),
    }
}

/// What the node and the client connection looked like when a setup failed.
fn print_stall(node: &TestNode, client: &ProxyClient) {
    let m = node.node.metrics().snapshot();
    let Some(conn) = client.h3_connection() else {
        return;
    };
    let q = conn.quic().stats();
    println!(
        "setup failed; node: requests {} established {} refused {} (limit {}) sessions open {} closed {}; \
         client: active requests {}, MAX_STREAMS(bidi) frames received {}, STREAMS_BLOCKED(bidi) sent {}, \
         streams reset received {}",
        m.tunnel_requests,
        m.tunnels_established,
        m.tunnels_refused,
        m.tunnels_refused_limit,
        m.sessions_opened,
        m.sessions_closed,
        conn.active_requests(),
        q.frame_rx.max_streams_bidi,
        q.frame_tx.streams_blocked_bidi,
        q.frame_rx.reset_stream
    );
}

impl SetupRate {
    fn median_setup(&self) -> f64 {
        median(&self.rounds.iter().map(|r| r.setup).collect::<Vec<_>>())
    }

    fn print(&self) {
        println!(
            "\n[2] tunnel setups on ONE connection: {SETUP_TUNNELS} concurrent CONNECT-UDP requests, \
             at most {SETUP_IN_FLIGHT} in flight, wall time until every 2xx arrived"
        );
        println!(
            "{:<8} {:>10} {:>10} {:>12} {:>12} {:>12}",
            "round", "setups/s", "closes/s", "2xx p50 ms", "p99 ms", "max ms"
        );
        for (i, r) in self.rounds.iter().enumerate() {
            println!(
                "{:<8} {:>10.0} {:>10.0} {:>12.1} {:>12.1} {:>12.1}",
                i + 1,
                r.setup,
                r.close,
                r.latency.p50,
                r.latency.p99,
                r.latency.max
            );
        }
        println!(
            "median {:.0} setups/s (target >= {SETUP_TARGET:.0}); the client's own cost (masque-client, \
             same 2-core runtime as the node) is included",
            self.median_setup()
        );
        let r = &self.reuse;
        println!(
            "reuse: after closing all {SETUP_TUNNELS} tunnels of round {SETUP_ROUNDS}, reopened {} of {SETUP_TUNNELS} \
             on the same connection; {} requests reached the node, {} failed{}",
            r.reopened,
            r.reached_node,
            SETUP_TUNNELS - r.reopened,
            match &r.first_error {
                Some(e) => format!(
                    " (first: {e}): requests that never reached the node within {REUSE_TIMEOUT:?} \
                     waited for stream credit (MAX_STREAMS) that closed tunnels did not return in time"
                ),
                None => String::new(),
            }
        );
    }

    fn json(&self) -> String {
        let setups: Vec<f64> = self.rounds.iter().map(|r| r.setup).collect();
        let closes: Vec<f64> = self.rounds.iter().map(|r| r.close).collect();
        let p99: Vec<f64> = self.rounds.iter().map(|r| r.latency.p99).collect();
        format!(
            "{{\"tunnels\":{SETUP_TUNNELS},\"in_flight\":{SETUP_IN_FLIGHT},\"median_setups_per_s\":{:.0},\
             \"target\":{SETUP_TARGET},\"setups_per_s\":{setups:.0?},\"closes_per_s\":{closes:.0?},\"p99_ms\":{p99:.1?},\
             \"includes_client_cost\":true,\"reuse\":{{\"reopened\":{},\"reached_node\":{},\"failed\":{}}}}}",
            self.median_setup(),
            self.reuse.reopened,
            self.reuse.reached_node,
            SETUP_TUNNELS - self.reuse.reopened
        )
    }
}

// ---------------------------------------------------------------------------
// Phase 3: RSS per idle tunnel, node in its own process.
// ---------------------------------------------------------------------------

/// `MASQUE_NODE_BIN`, or `cargo build --release -p masque-node` and its output.
fn node_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("MASQUE_NODE_BIN") {
        return Ok(p.into());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("building masque-node (release) for the RSS phase...");
    let status = std::process::Command::new(&cargo)
        .current_dir(workspace_root())
        .args(["build", "--release", "-p", "masque-node", "--quiet"])
        .status()
        .with_context(|| format!("running {cargo} build"))?;
    ensure!(status.success(), "building masque-node failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let bin = target.join("release").join("masque-node");
    ensure!(bin.exists(), "{} not found after the build", bin.display());
    Ok(bin)
}

/// (soft, hard) RLIMIT_NOFILE of this process, from /proc/self/limits.
fn nofile_limits() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut f = line["Max open files".len()..].split_whitespace();
    let parse = |s: Option<&str>| match s? {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    };
    Some((parse(f.next())?, parse(f.next())?))
}

/// The command that starts the node with enough file descriptors: directly when
/// the inherited soft limit suffices, else through `prlimit` up to the hard limit.
fn node_command(
    bin: &std::path::Path,
    state_dir: &std::path::Path,
) -> Result<tokio::process::Command> {
    let need = RSS_TUNNELS as u64 + FD_MARGIN;
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--allow-private",
        "--max-tunnels-per-connection",
        &RSS_TUNNELS.to_string(),
        "--idle-timeout",
        "3600",
        "--state-dir",
    ]
    .map(str::to_owned);
    let mut cmd = match nofile_limits() {
        Some((soft, _)) if soft >= need => tokio::process::Command::new(bin),
        Some((soft, hard)) if hard >= need => {
            println!("raising the node's open-files limit from {soft} to {need} (prlimit)");
            let mut c = tokio::process::Command::new("prlimit");
            c.arg(format!("--nofile={need}:{hard}")).arg(bin);
            c
        }
        Some((soft, hard)) => bail!(
            "the node needs {need} open files for {RSS_TUNNELS} tunnels (one UDP socket each), \
             but the limit is {soft} (hard {hard}): raise it with `ulimit -n {need}`"
        ),
        None => {
            println!("warning: open-files limit unknown; the node needs {need}");
            tokio::process::Command::new(bin)
        }
    };
    cmd.args(args)
        .arg(state_dir)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    Ok(cmd)
}

/// A running node process with its listening address and certificate pin.
struct NodeProcess {
    child: tokio::process::Child,
    pid: u32,
    addr: SocketAddr,
    pin: [u8; 32],
    state_dir: PathBuf,
}

impl NodeProcess {
    async fn spawn(bin: &std::path::Path) -> Result<Self> {
        let state_dir =
            std::env::temp_dir().join(format!("masque-bench-node-{}", std::process::id()));
        std::fs::create_dir_all(&state_dir)?;
        let mut child = node_command(bin, &state_dir)?
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("node exited at once")?;
        let stdout = child.stdout.take().context("node stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut addr, mut pin) = (None, None);
        let banner = async {
            while let Some(line) = lines.next_line().await? {
                if let Some((_, rest)) = line.split_once(" listening on ") {
                    let a = rest.split_whitespace().next().unwrap_or_default();
                    addr = Some(
                        a.parse::<SocketAddr>()
                            .with_context(|| format!("address in {line:?}"))?,
                    );
                } else if let Some(fp) = line.strip_prefix("sha-256 fingerprint: ") {
                    pin = Some(parse_pin(fp)?);
                }
                if addr.is_some() && pin.is_some() {
                    return Ok(());
                }
            }
            bail!("node exited before printing its banner")
        };
        tokio::time::timeout(Duration::from_secs(30), banner)
            .await
            .context("no banner from the node within 30 s")??;
        // Keep draining stdout so the node never blocks on (or dies of) a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            pid,
            addr: addr.context("address")?,
            pin: pin.context("pin")?,
            state_dir,
        })
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    fn options(&self) -> ClientOptions {
        ClientOptions {
            verification: ServerVerification::PinnedSha256(self.pin),
            ..Default::default()
        }
    }

    /// The node's memory now.
    fn mem(&self) -> Result<Mem> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let field = |name: &str| -> Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("{name} missing in /proc/{}/status", self.pid))?;
            Ok(line[name.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()?)
        };
        Ok(Mem {
            rss: field("VmRSS:")?,
            anon: field("RssAnon:")?,
            pte: field("VmPTE:")?,
        })
    }

    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    async fn kill(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// Memory of the node process, KiB (from /proc/<pid>/status).
#[derive(Debug, Clone, Copy)]
struct Mem {
    rss: u64,
    anon: u64,
    /// Page tables: kernel memory, not part of VmRSS.
    pte: u64,
}

impl Mem {
    /// KiB per tunnel of each field, from `before` to `self`.
    fn per(self, before: Mem, tunnels: usize) -> (f64, f64, f64) {
        let d = |a: u64, b: u64| a.saturating_sub(b) as f64 / tunnels as f64;
        (
            d(self.rss, before.rss),
            d(self.anon, before.anon),
            d(self.pte, before.pte),
        )
    }
}

struct RssResult {
    idle: Mem,
    /// With the client connections, no tunnel.
    connected: Mem,
    /// With every tunnel.
    tunnels: Mem,
    /// After closing CHURN_TUNNELS of them, and after opening as many again.
    churn_closed: Mem,
    churn_reopened: Mem,
    open_secs: f64,
    node_fds: usize,
}

impl RssResult {
    fn per_tunnel(&self) -> f64 {
        self.tunnels.per(self.connected, RSS_TUNNELS).0
    }

    fn per_reopened(&self) -> f64 {
        self.churn_reopened.per(self.churn_closed, CHURN_TUNNELS).0
    }

    fn print(&self) {
        println!(
            "\n[3] memory of a separate masque-node process with {RSS_TUNNELS} idle tunnels \
             ({RSS_CONNECTIONS} connections x {}, one echoed datagram per tunnel)",
            RSS_TUNNELS / RSS_CONNECTIONS
        );
        println!(
            "{:<34} {:>10} {:>10} {:>10}",
            "node state", "VmRSS KiB", "RssAnon", "VmPTE"
        );
        let rows = [
            ("idle", self.idle),
            ("+ connections", self.connected),
            ("+ all tunnels", self.tunnels),
            ("churn: closed some", self.churn_closed),
            ("churn: reopened as many", self.churn_reopened),
        ];
        for (name, m) in rows {
            println!("{name:<34} {:>10} {:>10} {:>10}", m.rss, m.anon, m.pte);
        }
        let (rss, anon, pte) = self.tunnels.per(self.connected, RSS_TUNNELS);
        println!(
            "per idle tunnel: {rss:.2} KiB VmRSS (target <= {RSS_TARGET_KIB}; RssAnon {anon:.2}, \
             plus {pte:.2} KiB page tables outside VmRSS); incl. connection state: {:.2} KiB",
            self.tunnels.per(self.idle, RSS_TUNNELS).0
        );
        let (rss, _, pte) = self.churn_reopened.per(self.churn_closed, CHURN_TUNNELS);
        println!(
            "after churn (close {CHURN_TUNNELS}, reopen {CHURN_TUNNELS}): {rss:.2} KiB VmRSS per reopened \
             tunnel, page tables {pte:.2} KiB"
        );
        println!(
            "node fds {}; {RSS_TUNNELS} tunnels opened (with echo) in {:.2} s ({:.0}/s over {RSS_CONNECTIONS} connections)",
            self.node_fds,
            self.open_secs,
            RSS_TUNNELS as f64 / self.open_secs
        );
    }

    fn json(&self) -> String {
        let mem = |m: Mem| {
            format!(
                "{{\"rss\":{},\"anon\":{},\"pte\":{}}}",
                m.rss, m.anon, m.pte
            )
        };
        format!(
            "{{\"tunnels\":{RSS_TUNNELS},\"connections\":{RSS_CONNECTIONS},\"per_tunnel_kib\":{:.3},\
             \"target_kib\":{RSS_TARGET_KIB},\"per_reopened_tunnel_after_churn_kib\":{:.3},\"churn_tunnels\":{CHURN_TUNNELS},\
             \"kib\":{{\"idle\":{},\"connected\":{},\"tunnels\":{},\"churn_closed\":{},\"churn_reopened\":{}}},\
             \"node_fds\":{},\"open_with_echo_secs\":{:.3}}}",
            self.per_tunnel(),
            self.per_reopened(),
            mem(self.idle),
            mem(self.connected),
            mem(self.tunnels),
            mem(self.churn_closed),
            mem(self.churn_reopened),
            self.node_fds,
            self.open_secs
        )
    }
}

/// Opens one tunnel and waits for one datagram to come back through it, so the
/// node's side (target socket, reader task, buffers) is fully set up.
async fn open_echoed(client: ProxyClient, target: Target, i: usize) -> Result<UdpSession> {
    let mut s = client.open_udp(&target).await?;
    let tag = (i as u64).to_be_bytes();
    for _ in 0..3 {
        s.send(&tag).await?;
        if let Ok(Some(back)) = tokio::time::timeout(Duration::from_secs(2), s.recv()).await {
            ensure!(back[..] == tag, "tunnel {i} got someone else's datagram");
            return Ok(s);
        }
    }
    bail!("no echo through tunnel {i}")
}

async fn rss_per_tunnel(bin: &std::path::Path, echo: &EchoTarget) -> Result<RssResult> {
    let node = NodeProcess::spawn(bin).await?;
    let result = rss_measure(&node, echo).await;
    node.kill().await;
    result
}

async fn rss_measure(node: &NodeProcess, echo: &EchoTarget) -> Result<RssResult> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = node.mem()?;
    let mut clients = Vec::new();
    for _ in 0..RSS_CONNECTIONS {
        clients.push(ProxyClient::connect(&node.url(), node.options()).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connected = node.mem()?;
    let target = udp_target(echo.addr);
    let open = |n: usize| {
        open_many(n, SETUP_IN_FLIGHT, |i| {
            open_echoed(clients[i % RSS_CONNECTIONS].clone(), target.clone(), i)
        })
    };
    let start = Instant::now();
    let mut sessions = open(RSS_TUNNELS).await.map_err(fd_hint)?;
    let open_secs = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tunnels = node.mem()?;
    let node_fds = node.open_fds();

    // Churn, as a long-running node sees it: memory freed by closed tunnels is
    // what new tunnels get.
    let closing: Vec<UdpSession> = sessions.drain(..CHURN_TUNNELS).collect();
    close_many(closing, SETUP_IN_FLIGHT).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while node.open_fds() + CHURN_TUNNELS > node_fds && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let churn_closed = node.mem()?;
    let reopened = open(CHURN_TUNNELS).await.map_err(fd_hint)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let churn_reopened = node.mem()?;

    for c in &clients {
        if let Some(c) = c.h3_connection() {
            c.close(masque_h3::Code::NO_ERROR, b"bench over");
        }
    }
    drop((sessions, reopened));
    Ok(RssResult {
        idle,
        connected,
        tunnels,
        churn_closed,
        churn_reopened,
        open_secs,
        node_fds,
    })
}

// ---------------------------------------------------------------------------
// Output.
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Report {
    throughput: Option<Throughput>,
    setup: Option<SetupRate>,
    rss: Option<RssResult>,
}

impl Report {
    fn write(&self) -> Result<()> {
        let (Some(t), Some(s), Some(r)) = (&self.throughput, &self.setup, &self.rss) else {
            println!("\npartial run (--only): target/bench/node_udp_echo.json not written");
            return Ok(());
        };
        let json = format!(
            "{{\"bench\":\"node_udp_echo\",\"throughput\":{},\"setup\":{},\"rss\":{}}}\n",
            t.json(),
            s.json(),
            r.json()
        );
        let dir = workspace_root().join("target/bench");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("node_udp_echo.json"), json)?;
        println!("\nwrote target/bench/node_udp_echo.json");
        Ok(())
    }
}
