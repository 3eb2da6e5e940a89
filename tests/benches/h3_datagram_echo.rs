//! HTTP/3 datagram echo throughput through masque-h3, as a ratio of raw quinn
//! DATAGRAM echo measured in the same run (1200-byte payloads, loopback).
//!
//! Both paths are set up once and then measured in alternating short slices, so
//! drift in the machine's speed hits both alike. Run with `cargo xtask bench`;
//! prints a table and writes target/bench/h3_datagram_echo.json. Never used as a
//! timed assertion.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use masque_tests::{
    TestCert,
    bench::{Path, SendFn, median, raw_quinn},
    client_endpoint, connect_h3,
    echo::EchoServer,
    self_signed,
};
use tokio::sync::Semaphore;

const PAYLOAD: usize = 1200;
const WINDOW: usize = 128;
const SLICE: Duration = Duration::from_millis(250);
const PAIRS: usize = 24;

async fn through_masque_h3(cert: &TestCert) -> Result<(Path, EchoServer, masque_h3::Connection)> {
    let server = EchoServer::start(cert, 16)?;
    let ep = client_endpoint(cert, 16)?;
    let conn = connect_h3(&ep, server.addr).await?;
    let mut head = masque_tests::extended_connect(
        "connect-udp",
        &format!("localhost:{}", server.addr.port()),
        "/.well-known/masque/udp/192.0.2.1/443/",
    );
    head.headers
        .insert("capsule-protocol", http::HeaderValue::from_static("?1"));
    let mut stream = conn.open_request(&head, true).await?;
    anyhow::ensure!(stream.recv_response().await?.status == 200);
    let mut rx = stream.take_datagrams().context("receiver")?;
    let tx = stream.send.datagram_sender().await?;
    let received = Arc::new(AtomicU64::new(0));
    let credits = Arc::new(Semaphore::new(WINDOW));
    let receiver = {
        let (received, credits) = (Arc::clone(&received), Arc::clone(&credits));
        tokio::spawn(async move {
            // Keeps the stream (and its datagram route) open for the whole run.
            let _stream = stream;
            let mut batch = Vec::with_capacity(64);
            loop {
                let n = rx.recv_many(&mut batch, 64).await;
                if n == 0 {
                    break;
                }
                batch.clear();
                received.fetch_add(n as u64, Ordering::Relaxed);
                credits.add_permits(n);
            }
        })
    };
    let payload: Arc<[u8]> = vec![0u8; PAYLOAD].into();
    let send: SendFn = Box::new(move || {
        let tx = tx.clone();
        let mut b = tx.buffer(1 + PAYLOAD);
        b.payload_mut().extend_from_slice(&[0]); // context id 0 (RFC 9298 §5)
        b.payload_mut().extend_from_slice(&payload);
        Box::pin(async move { tx.send(b).await.map_err(|e| e.to_string()) })
    });
    Ok((
        Path::start(send, received, credits, vec![receiver], WINDOW, SLICE),
        server,
        conn,
    ))
}

fn main() -> Result<()> {
    // `cargo test --all-targets` runs harness-less benches without `--bench`:
    // benchmarks only measure under `cargo bench` / `cargo xtask bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmark: run with `cargo xtask bench`");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let cert = self_signed()?;
        let (raw_path, _raw_ep, _raw_conn) = raw_quinn(&cert, PAYLOAD, WINDOW, SLICE).await?;
        let (h3_path, _h3_server, _h3_conn) = through_masque_h3(&cert).await?;
        // Warm-up slice each (PMTUD, allocator, congestion window).
        raw_path.measure().await;
        h3_path.measure().await;
        let (mut raw, mut h3) = (Vec::new(), Vec::new());
        for i in 0..PAIRS {
            // Alternate which path goes first so neither always follows the other.
            if i % 2 == 0 {
                raw.push(raw_path.measure().await.rate());
                h3.push(h3_path.measure().await.rate());
            } else {
                h3.push(h3_path.measure().await.rate());
                raw.push(raw_path.measure().await.rate());
            }
        }
        let ratios: Vec<f64> = raw.iter().zip(&h3).map(|(r, h)| h / r).collect();
        let (r, h) = (raw.iter().sum::<f64>() / PAIRS as f64, h3.iter().sum::<f64>() / PAIRS as f64);
        let ratio = h / r;
        let gbit = |rate: f64| rate * PAYLOAD as f64 * 8.0 / 1e9;
        println!(
            "\nHTTP/3 datagram echo, {PAYLOAD}-byte payloads, window {WINDOW}, {PAIRS} alternating slices of {SLICE:?} per path"
        );
        println!("{:<28} {:>14} {:>10} {:>8}", "path (mean)", "datagrams/s", "Gbit/s", "ratio");
        println!("{:<28} {:>14.0} {:>10.3} {:>8.3}", "raw quinn DATAGRAM echo", r, gbit(r), 1.0);
        println!("{:<28} {:>14.0} {:>10.3} {:>8.3}", "masque-h3 HTTP datagrams", h, gbit(h), ratio);
        println!("median of per-slice ratios: {:.3} (target >= 0.95)", median(&ratios));
        let json = format!(
            "{{\"bench\":\"h3_datagram_echo\",\"payload\":{PAYLOAD},\"raw_quinn_dps\":{r:.0},\"masque_h3_dps\":{h:.0},\"ratio\":{ratio:.4},\"median_slice_ratio\":{:.4},\"raw_slices\":{raw:.0?},\"h3_slices\":{h3:.0?}}}\n",
            median(&ratios)
        );
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("h3_datagram_echo.json"), json)?;
        Ok(())
    })
}
