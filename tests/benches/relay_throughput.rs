//! Relay CONNECT-UDP throughput as a ratio of a direct tunnel, measured in the
//! same run: client → node B → UDP echo (direct) against client → node A
//! (`masque_node::relay::RelayProxy`) → node B → the same echo (relayed), all
//! in-process on loopback over HTTP/3, 1200-byte payloads, 1 tunnel and 16
//! tunnels on one connection, window 128, alternating 250 ms slices
//! (`masque_tests::bench::Path`), 8 rounds, median. The relay's CPU per
//! datagram shows as the process's CPU per echo next to the direct path's.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p masque-tests --bench
//! relay_throughput`). Prints a table and writes
//! target/bench/relay_throughput.json. Nothing is asserted.

use std::{sync::Arc, time::Duration};

use anyhow::Result;
use masque_client::ProxyClient;
use masque_node::relay::{RelayProxy, Upstream};
use masque_tests::{
    bench::{Path, median, udp_sessions_path},
    node::{TestNode, udp_echo},
    transport::{Transport, options_for, udp_target, url},
};

const PAYLOAD: usize = 1200;
const WINDOW: usize = 128;
const SLICE: Duration = Duration::from_millis(250);
const ROUNDS: usize = 8;

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<()> {
    let b = TestNode::start(true).await?;
    let hop = Upstream::new(&url(&b, Transport::H3), options_for(&b, Transport::H3))?;
    let a = TestNode::with_handler(Arc::new(RelayProxy::new(hop, "masque-a"))).await?;
    let echo = udp_echo().await?;
    let mut rows = Vec::new();
    for tunnels in [1usize, 16] {
        let direct = path(&b, tunnels, echo).await?;
        let relayed = path(&a, tunnels, echo).await?;
        let (mut d, mut r, mut d_cpu, mut r_cpu) = (vec![], vec![], vec![], vec![]);
        for _ in 0..ROUNDS {
            let s = direct.measure().await;
            d.push(s.rate());
            d_cpu.push(s.cpu * 1e6 / s.echoed.max(1) as f64);
            let s = relayed.measure().await;
            r.push(s.rate());
            r_cpu.push(s.cpu * 1e6 / s.echoed.max(1) as f64);
        }
        rows.push((
            tunnels,
            median(&d),
            median(&r),
            median(&d_cpu),
            median(&r_cpu),
        ));
    }
    println!("\nrelay CONNECT-UDP vs direct, HTTP/3, {PAYLOAD}-byte echo, window {WINDOW}");
    println!(
        "{:<8} {:>12} {:>12} {:>8} {:>14} {:>14}",
        "tunnels", "direct/s", "relayed/s", "ratio", "direct µs cpu", "relayed µs cpu"
    );
    let mut json = Vec::new();
    for (n, d, r, dc, rc) in &rows {
        println!(
            "{n:<8} {d:>12.0} {r:>12.0} {:>7.2}x {dc:>14.1} {rc:>14.1}",
            r / d
        );
        json.push(format!(
            "{{\"tunnels\":{n},\"direct\":{d:.0},\"relayed\":{r:.0},\"ratio\":{:.3},\"direct_cpu_us\":{dc:.1},\"relayed_cpu_us\":{rc:.1}}}",
            r / d
        ));
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("relay_throughput.json"),
        format!("[{}]\n", json.join(",")),
    )?;
    Ok(())
}

/// `tunnels` CONNECT-UDP tunnels to `echo` through `node`, on one connection.
async fn path(node: &TestNode, tunnels: usize, echo: std::net::SocketAddr) -> Result<Path> {
    let client =
        ProxyClient::connect(&url(node, Transport::H3), options_for(node, Transport::H3)).await?;
    let mut sessions = Vec::new();
    for _ in 0..tunnels {
        sessions.push(client.open_udp(&udp_target(echo)).await?);
    }
    udp_sessions_path(sessions, PAYLOAD, WINDOW, SLICE)
}
