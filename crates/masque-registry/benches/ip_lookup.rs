//! IpRegistry lookups: what the data plane pays per packet to find the owning session.
//!
//! Lookups per second and sampled latency (every 64th lookup is timed, so p50/p99 include
//! one `Instant::now()` pair) at 1k and 1M registered ranges, with 1 and 2 reader threads,
//! with and without a writer churning (register + release of other ranges at full speed).
//! Next to it, in the same run and under the same load, the obvious alternative: an
//! `RwLock<BTreeMap>` read under its lock (its churn writer takes the write lock directly,
//! without the registry's actor hop, so its churn runs much faster).
//!
//! Ranges are IPv4 /30s laid end to end from 10.0.0.0, owned by 16 session actors; every
//! lookup hits one (addresses drawn uniformly from the covered space). The machine has 2
//! cores: with 2 readers and a churning writer, 3 threads share them.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p masque-registry --bench ip_lookup`).
//! Prints a table and writes target/bench/ip_registry.json. Nothing is asserted.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use masque_registry::ip::{IpRegistryHandle, PacketSink, PacketSinkError};
use ractor::{Actor, ActorProcessingErr, ActorRef};

/// How long each configuration is measured.
const SLICE: Duration = Duration::from_millis(1200);
/// One lookup in this many is timed.
const SAMPLE_EVERY: u64 = 64;
/// Addresses each reader cycles through (precomputed: no RNG in the measured loop).
const PROBES: usize = 1 << 16;
const SESSIONS: usize = 16;
/// First address of the looked-up ranges (10.0.0.0) and of the churned ones (11.0.0.0).
const BASE: u32 = 0x0a00_0000;
const CHURN_BASE: u32 = 0x0b00_0000;

fn main() -> Result<()> {
    // `cargo test --all-targets` runs harness-less benches without `--bench`:
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmark: run with `cargo xtask bench`");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for entries in [1_000usize, 1_000_000] {
        let started = Instant::now();
        let reg = rt.block_on(populate(entries))?;
        let baseline = Arc::new(RwLock::new(baseline_map(entries)));
        println!(
            "{entries} ranges registered in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        for readers in [1usize, 2] {
            for churn in [false, true] {
                rows.push(measure_registry(&rt, &reg, entries, readers, churn)?);
                rows.push(measure_baseline(&baseline, entries, readers, churn));
            }
        }
        rt.block_on(reg.stop())?;
    }
    print_table(&rows);
    write_json(&rows)
}

/// A do-nothing session actor: the owner the registry monitors.
struct Idle;

impl Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

/// A sink that takes every packet (never called by the lookups measured here).
struct NullSink;

impl PacketSink for NullSink {
    fn try_send(&self, packet: Bytes) -> Result<(), PacketSinkError> {
        drop(packet);
        Ok(())
    }
}

struct Registry {
    handle: IpRegistryHandle,
    writer: ActorRef<masque_registry::ip::IpRegistryMsg>,
    sessions: Vec<ActorRef<()>>,
}

impl Registry {
    async fn stop(self) -> Result<()> {
        for s in &self.sessions {
            s.stop(None);
        }
        self.writer
            .stop_and_wait(None, Some(Duration::from_secs(30)))
            .await
            .context("stopping the registry writer")
    }
}

fn range_start(i: usize) -> u32 {
    BASE + 4 * u32::try_from(i).unwrap_or(u32::MAX / 8)
}

/// A started registry holding `entries` /30s, registered by 8 pipelined tasks.
async fn populate(entries: usize) -> Result<Registry> {
    let handle = IpRegistryHandle::new();
    let (writer, _) = handle.spawn(None).await?;
    let mut sessions = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        sessions.push(Actor::spawn(None, Idle, ()).await?.0);
    }
    let mut tasks = tokio::task::JoinSet::new();
    const TASKS: usize = 8;
    for t in 0..TASKS {
        let (handle, sessions) = (handle.clone(), sessions.clone());
        tasks.spawn(async move {
            for i in (t..entries).step_by(TASKS) {
                let addr = IpAddr::V4(Ipv4Addr::from(range_start(i)));
                let session = sessions[i % SESSIONS].get_cell();
                let out = handle.register(addr, 30, session, 0, NullSink).await?;
                anyhow::ensure!(out.is_registered(), "{addr}/30: {out:?}");
            }
            Ok(())
        });
    }
    for done in tasks.join_all().await {
        done?;
    }
    anyhow::ensure!(handle.all().len() == entries, "every range registered");
    Ok(Registry {
        handle,
        writer,
        sessions,
    })
}

/// The baseline's value: what the registry hands out, behind one `Arc`.
struct BaselineRoute {
    end: u128,
    #[allow(dead_code)]
    context_id: u64,
}

type Baseline = BTreeMap<u128, Arc<BaselineRoute>>;

fn baseline_map(entries: usize) -> Baseline {
    (0..entries)
        .map(|i| {
            let start = u128::from(range_start(i));
            (
                start,
                Arc::new(BaselineRoute {
                    end: start + 3,
                    context_id: 0,
                }),
            )
        })
        .collect()
}

fn baseline_lookup(map: &RwLock<Baseline>, bits: u128) -> Option<Arc<BaselineRoute>> {
    let map = map.read().unwrap_or_else(|p| p.into_inner());
    let (_, route) = map.range(..=bits).next_back()?;
    (route.end >= bits).then(|| Arc::clone(route))
}

/// Uniform addresses over the covered space (xorshift, fixed seed per reader).
fn probes(entries: usize, seed: u64) -> Vec<u32> {
    let span = 4 * u64::try_from(entries).unwrap_or(u64::MAX / 8);
    let mut x = seed | 1;
    (0..PROBES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            BASE + u32::try_from(x % span).unwrap_or(0)
        })
        .collect()
}

/// What one reader thread saw.
struct ReaderResult {
    lookups: u64,
    samples: Vec<u32>,
}

/// Runs `lookup` over the probes until `stop`, timing every `SAMPLE_EVERY`th call.
fn reader(probes: &[u32], stop: &AtomicBool, lookup: impl Fn(u32) -> bool) -> ReaderResult {
    let mut samples = Vec::with_capacity(1 << 20);
    let mut lookups = 0u64;
    let mut found = 0u64;
    'outer: loop {
        for chunk in probes.chunks(1024) {
            if stop.load(Ordering::Relaxed) {
                break 'outer;
            }
            for &addr in chunk {
                lookups += 1;
                if lookups.is_multiple_of(SAMPLE_EVERY) {
                    let t = Instant::now();
                    found += u64::from(black_box(lookup(black_box(addr))));
                    let ns = t.elapsed().as_nanos();
                    samples.push(u32::try_from(ns).unwrap_or(u32::MAX));
                } else {
                    found += u64::from(black_box(lookup(black_box(addr))));
                }
            }
        }
    }
    assert_eq!(found, lookups, "every probe lies in a registered range");
    ReaderResult { lookups, samples }
}

struct Row {
    implementation: &'static str,
    entries: usize,
    readers: usize,
    churn: bool,
    lookups_per_s: f64,
    p50_ns: u32,
    p99_ns: u32,
    churn_ops_per_s: f64,
}

fn summarise(
    implementation: &'static str,
    entries: usize,
    readers: usize,
    churn: bool,
    results: Vec<ReaderResult>,
    elapsed: Duration,
    churn_ops: u64,
) -> Row {
    let lookups: u64 = results.iter().map(|r| r.lookups).sum();
    let mut samples: Vec<u32> = results.into_iter().flat_map(|r| r.samples).collect();
    samples.sort_unstable();
    let pct = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples.get(i).copied().unwrap_or(0)
    };
    let secs = elapsed.as_secs_f64();
    Row {
        implementation,
        entries,
        readers,
        churn,
        lookups_per_s: lookups as f64 / secs,
        p50_ns: pct(0.50),
        p99_ns: pct(0.99),
        churn_ops_per_s: churn_ops as f64 / secs,
    }
}

/// Starts `readers` threads running `lookup`, lets them run for [`SLICE`], stops them.
fn run_readers<F>(entries: usize, readers: usize, lookup: F) -> (Vec<ReaderResult>, Duration)
where
    F: Fn(u32) -> bool + Send + Sync + Clone + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..readers)
        .map(|r| {
            let probes = probes(entries, 0x9e37_79b9_7f4a_7c15 ^ r as u64);
            let (stop, lookup) = (Arc::clone(&stop), lookup.clone());
            thread::spawn(move || reader(&probes, &stop, lookup))
        })
        .collect();
    let started = Instant::now();
    thread::sleep(SLICE);
    stop.store(true, Ordering::Relaxed);
    let results = threads
        .into_iter()
        .map(|t| t.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
        .collect();
    (results, started.elapsed())
}

fn measure_registry(
    rt: &tokio::runtime::Runtime,
    reg: &Registry,
    entries: usize,
    readers: usize,
    churn: bool,
) -> Result<Row> {
    let ops = Arc::new(AtomicU64::new(0));
    let churning = Arc::new(AtomicBool::new(churn));
    let churner = churn.then(|| {
        let (handle, session) = (reg.handle.clone(), reg.sessions[0].get_cell());
        let (ops, churning) = (Arc::clone(&ops), Arc::clone(&churning));
        rt.spawn(async move {
            let mut i = 0u32;
            while churning.load(Ordering::Relaxed) {
                let addr = IpAddr::V4(Ipv4Addr::from(CHURN_BASE + 4 * (i % 65_536)));
                i = i.wrapping_add(1);
                let out = handle
                    .register(addr, 30, session.clone(), 1, NullSink)
                    .await?;
                anyhow::ensure!(out.is_registered(), "churn register: {out:?}");
                handle.release(addr, 30).await?;
                ops.fetch_add(2, Ordering::Relaxed);
            }
            Ok(())
        })
    });
    let handle = reg.handle.clone();
    let (results, elapsed) = run_readers(entries, readers, move |bits| {
        handle.lookup(IpAddr::V4(Ipv4Addr::from(bits))).is_some()
    });
    let churn_ops = ops.load(Ordering::Relaxed);
    churning.store(false, Ordering::Relaxed);
    if let Some(task) = churner {
        rt.block_on(task)??;
    }
    Ok(summarise(
        "IpRegistry (SkipMap)",
        entries,
        readers,
        churn,
        results,
        elapsed,
        churn_ops,
    ))
}

fn measure_baseline(
    map: &Arc<RwLock<Baseline>>,
    entries: usize,
    readers: usize,
    churn: bool,
) -> Row {
    let ops = Arc::new(AtomicU64::new(0));
    let churning = Arc::new(AtomicBool::new(churn));
    let churner = churn.then(|| {
        let (map, ops, churning) = (Arc::clone(map), Arc::clone(&ops), Arc::clone(&churning));
        thread::spawn(move || {
            let mut i = 0u32;
            while churning.load(Ordering::Relaxed) {
                let start = u128::from(CHURN_BASE + 4 * (i % 65_536));
                i = i.wrapping_add(1);
                let route = Arc::new(BaselineRoute {
                    end: start + 3,
                    context_id: 1,
                });
                map.write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(start, route);
                map.write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&start);
                ops.fetch_add(2, Ordering::Relaxed);
            }
        })
    });
    let reader_map = Arc::clone(map);
    let (results, elapsed) = run_readers(entries, readers, move |bits| {
        baseline_lookup(&reader_map, u128::from(bits)).is_some()
    });
    let churn_ops = ops.load(Ordering::Relaxed);
    churning.store(false, Ordering::Relaxed);
    if let Some(t) = churner {
        t.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
    }
    summarise(
        "RwLock<BTreeMap>",
        entries,
        readers,
        churn,
        results,
        elapsed,
        churn_ops,
    )
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<22} {:>9} {:>7} {:>6} {:>14} {:>8} {:>8} {:>14}",
        "implementation",
        "entries",
        "readers",
        "churn",
        "lookups/s",
        "p50 ns",
        "p99 ns",
        "churn ops/s"
    );
    for r in rows {
        println!(
            "{:<22} {:>9} {:>7} {:>6} {:>14.0} {:>8} {:>8} {:>14.0}",
            r.implementation,
            r.entries,
            r.readers,
            if r.churn { "yes" } else { "no" },
            r.lookups_per_s,
            r.p50_ns,
            r.p99_ns,
            r.churn_ops_per_s,
        );
    }
}

fn write_json(rows: &[Row]) -> Result<()> {
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"implementation\":\"{}\",\"entries\":{},\"readers\":{},\"churn\":{},\
                 \"lookups_per_s\":{:.0},\"p50_ns\":{},\"p99_ns\":{},\"churn_ops_per_s\":{:.0}}}",
                r.implementation,
                r.entries,
                r.readers,
                r.churn,
                r.lookups_per_s,
                r.p50_ns,
                r.p99_ns,
                r.churn_ops_per_s
            )
        })
        .collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("ip_registry.json");
    std::fs::write(
        &path,
        format!(
            "{{\"bench\":\"ip_registry\",\"sample_every\":{SAMPLE_EVERY},\"slice_ms\":{},\"rows\":[{}]}}\n",
            SLICE.as_millis(),
            items.join(",")
        ),
    )?;
    println!("\nwrote {}", path.display());
    Ok(())
}
