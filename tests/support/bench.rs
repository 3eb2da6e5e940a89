//! Shared harness of the throughput benchmarks (`tests/benches/`): echo
//! paths measured in alternating slices, and the raw quinn reference.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Result, ensure};
use bytes::Bytes;
use masque_client::{UdpSender, UdpSession};
use tokio::{
    sync::{Semaphore, watch},
    task::JoinHandle,
};

use crate::{TestCert, client_endpoint, server_endpoint};

/// The middle value (upper middle for an even count); 0 for none.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Sends one datagram; an error stops the path's sender (and is printed).
pub type SendFn =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// One echo path: a sender under a window of unanswered datagrams, gated by
/// `enabled`, and receive counters that return credit.
pub struct Path {
    received: Arc<AtomicU64>,
    enabled: watch::Sender<bool>,
    /// Times the stall watchdog refilled the window (datagrams were lost).
    pub refills: Arc<AtomicU64>,
    slice: Duration,
    tasks: Vec<JoinHandle<()>>,
}

impl Path {
    /// `receivers` are the tasks that count echoes into `received` and return
    /// credit; they are aborted with the path. `credits` started with `window`
    /// permits; each slice runs for `slice`.
    pub fn start(
        send: SendFn,
        received: Arc<AtomicU64>,
        credits: Arc<Semaphore>,
        mut receivers: Vec<JoinHandle<()>>,
        window: usize,
        slice: Duration,
    ) -> Self {
        let (enabled, mut gate) = watch::channel(false);
        let sender = {
            let credits = Arc::clone(&credits);
            tokio::spawn(async move {
                loop {
                    if !*gate.borrow_and_update() {
                        if gate.changed().await.is_err() {
                            return;
                        }
                        continue;
                    }
                    let Ok(p) = credits.acquire().await else {
                        return;
                    };
                    p.forget();
                    if let Err(e) = send().await {
                        println!("a path's sender stopped: {e}");
                        return;
                    }
                }
            })
        };
        // Lost datagrams never return their credit: refill when progress stalls.
        let refills = Arc::new(AtomicU64::new(0));
        let watchdog = {
            let (received, refills) = (Arc::clone(&received), Arc::clone(&refills));
            tokio::spawn(async move {
                let mut last = 0;
                loop {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let now = received.load(Ordering::Relaxed);
                    if now == last && credits.available_permits() == 0 {
                        credits.add_permits(window);
                        refills.fetch_add(1, Ordering::Relaxed);
                    }
                    last = now;
                }
            })
        };
        receivers.extend([sender, watchdog]);
        Self {
            received,
            enabled,
            refills,
            slice,
            tasks: receivers,
        }
    }

    /// Runs the path for one slice.
    pub async fn measure(&self) -> Slice {
        let before = self.received.load(Ordering::Relaxed);
        let cpu_before = process_cpu_secs();
        let start = Instant::now();
        self.enabled.send_replace(true);
        tokio::time::sleep(self.slice).await;
        self.enabled.send_replace(false);
        let secs = start.elapsed().as_secs_f64();
        let echoed = self.received.load(Ordering::Relaxed) - before;
        let cpu = process_cpu_secs() - cpu_before;
        // Let the in-flight window drain before the next path runs.
        tokio::time::sleep(Duration::from_millis(20)).await;
        Slice { echoed, secs, cpu }
    }
}

impl Drop for Path {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// One slice of one path: echoes, wall time, and the CPU time this process
/// (client, node, echo target and all) used meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct Slice {
    pub echoed: u64,
    pub secs: f64,
    pub cpu: f64,
}

impl Slice {
    pub fn rate(&self) -> f64 {
        self.echoed as f64 / self.secs
    }
}

/// User + system CPU time of this process so far, from /proc/self/stat (0 when
/// unreadable). Clock ticks are 10 ms: meaningful over many slices only.
pub fn process_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name: state is field 3, utime 14, stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / CLOCK_TICKS
}

/// `sysconf(_SC_CLK_TCK)` on Linux (100 on every common configuration).
const CLOCK_TICKS: f64 = 100.0;

/// Raw quinn DATAGRAM echo of `payload`-byte datagrams: the reference both
/// benchmarks measure against, with `window` unanswered datagrams.
pub async fn raw_quinn(
    cert: &TestCert,
    payload: usize,
    window: usize,
    slice: Duration,
) -> Result<(Path, quinn::Endpoint, quinn::Connection)> {
    let server = server_endpoint(cert, 16)?;
    let addr = server.local_addr()?;
    let srv = server.clone();
    tokio::spawn(async move {
        if let Some(inc) = srv.accept().await
            && let Ok(conn) = inc.await
        {
            while let Ok(dg) = conn.read_datagram().await {
                if conn.send_datagram_wait(dg).await.is_err() {
                    break;
                }
            }
        }
    });
    let payload = Bytes::from(vec![0u8; payload]);
    quinn_client_path(cert, addr, vec![payload], window, slice).await
}

/// A raw quinn client path to a DATAGRAM echo server at `server`: sends
/// `payloads` round robin, each echo returns one credit of `window`.
pub async fn quinn_client_path(
    cert: &TestCert,
    server: SocketAddr,
    payloads: Vec<Bytes>,
    window: usize,
    slice: Duration,
) -> Result<(Path, quinn::Endpoint, quinn::Connection)> {
    ensure!(!payloads.is_empty(), "no payload to send");
    let ep = client_endpoint(cert, 16)?;
    let conn = ep.connect(server, "localhost")?.await?;
    let received = Arc::new(AtomicU64::new(0));
    let credits = Arc::new(Semaphore::new(window));
    let receiver = {
        let (conn, received, credits) = (conn.clone(), Arc::clone(&received), Arc::clone(&credits));
        tokio::spawn(async move {
            while conn.read_datagram().await.is_ok() {
                received.fetch_add(1, Ordering::Relaxed);
                credits.add_permits(1);
            }
        })
    };
    let payloads: Arc<[Bytes]> = payloads.into();
    let next = Arc::new(AtomicUsize::new(0));
    let c = conn.clone();
    let send: SendFn = Box::new(move || {
        let i = next.fetch_add(1, Ordering::Relaxed) % payloads.len();
        let (c, p) = (c.clone(), payloads[i].clone());
        Box::pin(async move { c.send_datagram_wait(p).await.map_err(|e| e.to_string()) })
    });
    Ok((
        Path::start(send, received, credits, vec![receiver], window, slice),
        ep,
        conn,
    ))
}

/// CONNECT-UDP echo over `sessions`: `payload`-byte datagrams sent round
/// robin over them, each echo returns one credit of `window`. Fails unless
/// every tunnel carries `payload` bytes.
pub fn udp_sessions_path(
    sessions: Vec<UdpSession>,
    payload: usize,
    window: usize,
    slice: Duration,
) -> Result<Path> {
    ensure!(!sessions.is_empty(), "no tunnel to send on");
    let received = Arc::new(AtomicU64::new(0));
    let credits = Arc::new(Semaphore::new(window));
    let mut senders: Vec<UdpSender> = Vec::new();
    let mut receivers = Vec::new();
    for mut session in sessions {
        ensure!(
            session.max_payload_size() >= payload,
            "tunnel carries only {} bytes",
            session.max_payload_size()
        );
        senders.push(session.sender());
        let (received, credits) = (Arc::clone(&received), Arc::clone(&credits));
        receivers.push(tokio::spawn(async move {
            while session.recv().await.is_some() {
                received.fetch_add(1, Ordering::Relaxed);
                credits.add_permits(1);
            }
        }));
    }
    let senders: Arc<[UdpSender]> = senders.into();
    let next = Arc::new(AtomicUsize::new(0));
    let payload: Arc<[u8]> = vec![0u8; payload].into();
    let send: SendFn = Box::new(move || {
        let i = next.fetch_add(1, Ordering::Relaxed) % senders.len();
        let (senders, payload) = (Arc::clone(&senders), Arc::clone(&payload));
        Box::pin(async move { senders[i].send(&payload).await.map_err(|e| e.to_string()) })
    });
    Ok(Path::start(
        send, received, credits, receivers, window, slice,
    ))
}
