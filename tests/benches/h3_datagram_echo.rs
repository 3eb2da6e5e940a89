//! HTTP/3 datagram echo throughput through masque-h3, as a ratio of raw quinn
//! DATAGRAM echo measured in the same run (1200-byte payloads, loopback).
//!
//! Run with `cargo xtask bench`. Prints a table and writes
//! target/bench/h3_datagram_echo.json. Never used as a timed assertion.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use bytes::Bytes;
use masque_tests::{client_endpoint, connect_h3, echo::EchoServer, self_signed, server_endpoint};
use tokio::sync::Semaphore;

const PAYLOAD: usize = 1200;
const WINDOW: usize = 512;
const WARMUP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(3);
const ROUNDS: usize = 3;

/// Sends through `send` under a window of `WINDOW` unanswered datagrams while
/// `on_echo` is credited by the receive side; returns echoes per second.
async fn run_window<S, F>(send: S, received: Arc<AtomicU64>, credits: Arc<Semaphore>) -> f64
where
    S: Fn() -> F + Send + 'static,
    F: std::future::Future<Output = bool> + Send,
{
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let credits2 = Arc::clone(&credits);
    let sender = tokio::spawn(async move {
        while !stop2.load(Ordering::Relaxed) {
            let Ok(p) = credits2.acquire().await else {
                break;
            };
            p.forget();
            if !send().await {
                break;
            }
        }
    });
    // Lost datagrams never return their credit: refill when progress stalls.
    let watchdog = {
        let received = Arc::clone(&received);
        let credits = Arc::clone(&credits);
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let now = received.load(Ordering::Relaxed);
                if now == last && credits.available_permits() == 0 {
                    credits.add_permits(WINDOW);
                }
                last = now;
            }
        })
    };
    tokio::time::sleep(WARMUP).await;
    let start_count = received.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(MEASURE).await;
    let n = received.load(Ordering::Relaxed) - start_count;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    credits.add_permits(WINDOW);
    let _ = sender.await;
    watchdog.abort();
    rate
}

async fn raw_quinn(cert: &masque_tests::TestCert) -> Result<f64> {
    let server = server_endpoint(cert, 16)?;
    let addr = server.local_addr()?;
    let srv = tokio::spawn(async move {
        if let Some(inc) = server.accept().await
            && let Ok(conn) = inc.await
        {
            while let Ok(dg) = conn.read_datagram().await {
                if conn.send_datagram_wait(dg).await.is_err() {
                    break;
                }
            }
        }
    });
    let ep = client_endpoint(cert, 16)?;
    let conn = ep.connect(addr, "localhost")?.await?;
    let received = Arc::new(AtomicU64::new(0));
    let credits = Arc::new(Semaphore::new(WINDOW));
    let rx_task = {
        let (conn, received, credits) = (conn.clone(), Arc::clone(&received), Arc::clone(&credits));
        tokio::spawn(async move {
            while conn.read_datagram().await.is_ok() {
                received.fetch_add(1, Ordering::Relaxed);
                credits.add_permits(1);
            }
        })
    };
    let payload = Bytes::from(vec![0u8; PAYLOAD]);
    let c = conn.clone();
    let rate = run_window(
        move || {
            let (c, p) = (c.clone(), payload.clone());
            async move { c.send_datagram_wait(p).await.is_ok() }
        },
        received,
        credits,
    )
    .await;
    conn.close(0u32.into(), b"done");
    rx_task.abort();
    srv.abort();
    Ok(rate)
}

async fn through_masque_h3(cert: &masque_tests::TestCert) -> Result<f64> {
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
    let rx_task = {
        let (received, credits) = (Arc::clone(&received), Arc::clone(&credits));
        tokio::spawn(async move {
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
    let payload = vec![0u8; PAYLOAD];
    let rate = run_window(
        move || {
            let tx = tx.clone();
            let mut b = tx.buffer(1 + PAYLOAD);
            b.payload_mut().extend_from_slice(&[0]); // context id 0
            b.payload_mut().extend_from_slice(&payload);
            async move { tx.send(b).await.is_ok() }
        },
        received,
        credits,
    )
    .await;
    conn.close(masque_h3::Code::NO_ERROR, b"done");
    rx_task.abort();
    drop(stream);
    Ok(rate)
}

fn main() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let cert = self_signed()?;
        let mut raw = Vec::new();
        let mut h3 = Vec::new();
        for _ in 0..ROUNDS {
            raw.push(raw_quinn(&cert).await?);
            h3.push(through_masque_h3(&cert).await?);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (r, h) = (median(&mut raw), median(&mut h3));
        let gbit = |rate: f64| rate * PAYLOAD as f64 * 8.0 / 1e9;
        println!("\nHTTP/3 datagram echo, {PAYLOAD}-byte payloads, window {WINDOW}, median of {ROUNDS} x {MEASURE:?}");
        println!("{:<28} {:>14} {:>10} {:>8}", "path", "datagrams/s", "Gbit/s", "ratio");
        println!("{:<28} {:>14.0} {:>10.3} {:>8.3}", "raw quinn DATAGRAM echo", r, gbit(r), 1.0);
        println!("{:<28} {:>14.0} {:>10.3} {:>8.3}", "masque-h3 HTTP datagrams", h, gbit(h), h / r);
        let json = format!(
            "{{\"bench\":\"h3_datagram_echo\",\"payload\":{PAYLOAD},\"raw_quinn_dps\":{r:.0},\"masque_h3_dps\":{h:.0},\"ratio\":{:.4},\"raw_rounds\":{raw:?},\"h3_rounds\":{h3:?}}}\n",
            h / r
        );
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("h3_datagram_echo.json"), json)?;
        Ok(())
    })
}
