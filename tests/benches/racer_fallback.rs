//! Time to the first tunnel with `TransportChoice::Auto`'s race
//! (`masque_client::race_connect`, then a connect-udp tunnel opened on the
//! winner and one datagram echoed), median of N runs, on loopback (no root
//! needed): the node's HTTP/3 listener is reached through a UDP relay on the
//! port of its TLS listener (`racer_fixture.rs`), which forwards or drops
//! every datagram.
//!
//! * `h3`: UDP passes, HTTP/3 wins;
//! * `fallback`: UDP dropped, HTTP/2 wins after its 250 ms head start;
//! * `remembered`: UDP dropped, HTTP/2 remembered from the run before, so
//!   it starts at once.
//!
//! `h3` and `fallback` remember nothing (`RaceOptions::remember` zero), so
//! every run races. Prints a table and writes target/bench/racer_fallback.json
//! (workspace target dir). Nothing is asserted but the winners.

// The HTTP/1.1-only front in there is the netns test's, not used here.
#[allow(dead_code)]
#[path = "../racer_fixture.rs"]
mod fixture;

use std::{
    net::SocketAddr,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use masque_client::{ClientOptions, RaceOptions, Target, UdpSession, race_connect};
use masque_server::TcpListen;
use masque_tests::{
    bench::median,
    node::{TestNode, udp_echo},
    within,
};
use masque_transport::{Transport, tls::ServerVerification};

use fixture::UdpRelay;

/// Runs per mode (`RACER_RUNS` overrides).
const RUNS: usize = 15;

fn main() -> Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmark: run with `cargo xtask bench`");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run())
}

async fn run() -> Result<()> {
    let runs = std::env::var("RACER_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RUNS);
    let echo = udp_echo().await?;
    // The relay takes a UDP port; the node's TLS listener the same TCP port.
    let probe = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let port_addr = probe.local_addr()?;
    drop(probe);
    let node = TestNode::start_with(true, None, |c| {
        c.tcp_listen = TcpListen::At(port_addr);
    })
    .await
    .context("starting the node (the TCP port may be taken: run again)")?;
    let relay = UdpRelay::start(port_addr, node.node.local_addr(), false).await?;
    let url = format!("https://{}", relay.addr);
    let fresh = ClientOptions {
        verification: ServerVerification::PinnedSha256(node.cert.fingerprint_sha256()),
        race: RaceOptions {
            remember: Duration::ZERO,
            ..RaceOptions::default()
        },
        ..node.client_options()
    };
    let remembering = ClientOptions {
        race: RaceOptions::default(),
        ..fresh.clone()
    };

    let mut rows = Vec::new();
    for (mode, drop_udp, options, winner) in [
        ("h3", false, &fresh, Transport::H3),
        ("fallback", true, &fresh, Transport::H2),
        ("remembered", true, &remembering, Transport::H2),
    ] {
        relay.dropping.store(drop_udp, Ordering::Relaxed);
        if mode == "remembered" {
            // The race that leaves HTTP/2 remembered.
            first_tunnel(&url, options, echo, winner).await?;
        }
        let mut ms = Vec::with_capacity(runs);
        for _ in 0..runs {
            ms.push(first_tunnel(&url, options, echo, winner).await?);
        }
        let (min, max) = ms
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        rows.push((mode, winner, median(&ms), min, max));
    }
    node.node.shutdown().await;

    println!("time to the first tunnel ({runs} runs each, ms)");
    println!(
        "{:<12} {:<7} {:>8} {:>8} {:>8}",
        "mode", "winner", "median", "min", "max"
    );
    let mut json = Vec::new();
    for (mode, winner, med, min, max) in &rows {
        println!(
            "{mode:<12} {:<7} {med:>8.1} {min:>8.1} {max:>8.1}",
            winner.as_str()
        );
        json.push(format!(
            "{{\"mode\":\"{mode}\",\"winner\":\"{}\",\"runs\":{runs},\"median_ms\":{med:.2},\"min_ms\":{min:.2},\"max_ms\":{max:.2}}}",
            winner.as_str()
        ));
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("racer_fallback.json"),
        format!("[{}]\n", json.join(",")),
    )?;
    Ok(())
}

/// Milliseconds from the race's start to a tunnel open on the winner (one
/// datagram echoed after, untimed); the connection is closed after.
async fn first_tunnel(
    url: &str,
    options: &ClientOptions,
    echo: SocketAddr,
    winner: Transport,
) -> Result<f64> {
    let started = Instant::now();
    let conn = within("the race", race_connect(url, options)).await??;
    let authority = url.trim_start_matches("https://");
    let target = Target::udp(echo.ip().to_string(), echo.port());
    let mut session = within(
        "the tunnel",
        UdpSession::open_with(&conn, authority, &target, options),
    )
    .await??;
    let took = started.elapsed().as_secs_f64() * 1e3;
    ensure!(
        conn.transport() == winner,
        "{:?} won, not {winner:?}",
        conn.transport()
    );
    session.send(b"raced").await?;
    let back = within("the echo", session.recv()).await?;
    ensure!(back.as_deref() == Some(&b"raced"[..]), "echo {back:?}");
    session.close().await;
    conn.shutdown(Duration::from_secs(1)).await;
    Ok(took)
}
