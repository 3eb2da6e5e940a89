//! TCP tunnels through the node with masque-client's `TcpTunnel`: each test
//! body runs for connect-tcp and for classic CONNECT, over HTTP/3, HTTP/2 and
//! HTTP/1.1 (`name::connect_tcp::h3`, `name::classic::h1`, ...): byte-exact
//! echo, half-close (CTCP-19/20), many tunnels on one connection, refusals
//! with their Proxy-Status (CTCP-27), a target reset read as an error and
//! never as EOF (CTCP-21/22), and a slow reader holding the target back
//! (flow control end to end, CTCP-32). Every wait is bounded.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use masque_client::{
    ClientError, ProxyClient, Target, TcpMode, TcpStreamError, TcpTunnel, TcpTunnelEvent,
    tcp_codepoints::{DRAFT_11, DRAFT_12},
};
use masque_tests::{
    node::{TestNode, actor_tree, eventually, expect_refusal},
    per_transport,
    tcp::{tcp_echo, tcp_refused_addr, tcp_resetter},
    transport::{Transport, options_for, url},
    within,
};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::{mpsc, oneshot},
};

/// For each named `async fn(Transport, TcpMode) -> Result<()>`, one test per
/// mode and transport: `name::connect_tcp::{h3,h2,h1}` and
/// `name::classic::{h3,h2,h1}` (`per_transport!` takes no mode). `shared:`
/// bodies are about one connection carrying many tunnels: HTTP/3 and HTTP/2
/// only (HTTP/1.1 dials a connection per tunnel).
macro_rules! per_mode {
    (@test $name:ident, $mode:expr, $t:ident, $T:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $t() -> anyhow::Result<()> {
            super::super::$name(masque_tests::transport::Transport::$T, $mode).await
        }
    };
    (@modes $name:ident, $($t:ident = $T:ident),*) => {
        mod $name {
            mod connect_tcp {
                $(per_mode!(@test $name, masque_client::TcpMode::ConnectTcp, $t, $T);)*
            }
            mod classic {
                $(per_mode!(@test $name, masque_client::TcpMode::Classic, $t, $T);)*
            }
        }
    };
    (shared: $($name:ident),* $(,)?) => {$(
        per_mode!(@modes $name, h3 = H3, h2 = H2);
    )*};
    ($($name:ident),* $(,)?) => {$(
        per_mode!(@modes $name, h3 = H3, h2 = H2, h1 = H1);
    )*};
}

per_mode!(
    echo_one_mebibyte_byte_exact,
    half_close_the_rest_of_the_echo_then_eof,
    refused_target_is_502_connection_refused,
    target_reset_mid_transfer_is_a_read_error,
    private_target_is_403_destination_ip_prohibited,
    slow_reader_holds_the_target_back,
    events_carry_data_fin_and_closed,
    forward_to_owner_actor,
    drop_without_shutdown_resets_the_target,
    tunnels_leave_no_tasks_behind,
);
per_mode!(shared: hundred_concurrent_tunnels_on_one_connection);
per_transport!(interop_tokens_echo);

const MIB: usize = 1 << 20;

/// A TCP target for a socket address.
fn tcp(addr: SocketAddr) -> Target {
    Target::tcp(addr.ip().to_string(), addr.port())
}

/// [`masque_client::connect_tcp`] within the test wait: the tunnel, or why
/// the client refused it.
async fn try_open(
    node: &TestNode,
    t: Transport,
    mode: TcpMode,
    target: SocketAddr,
) -> Result<Result<TcpTunnel, ClientError>> {
    within(
        "the TCP tunnel request",
        masque_client::connect_tcp(&url(node, t), tcp(target), mode, options_for(node, t)),
    )
    .await
}

async fn open(
    node: &TestNode,
    t: Transport,
    mode: TcpMode,
    target: SocketAddr,
) -> Result<TcpTunnel> {
    let tunnel = try_open(node, t, mode, target).await??;
    ensure!(tunnel.transport() == t, "tunnel on {}", tunnel.transport());
    Ok(tunnel)
}

/// `len` bytes of a pattern that shifts with the position (a reordering or a
/// lost piece cannot go unnoticed).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add((i >> 8) as u8 ^ seed)
        })
        .collect()
}

/// Reads to EOF within `limit`.
async fn read_to_eof(tunnel: &mut (impl AsyncReadExt + Unpin), limit: Duration) -> Result<Vec<u8>> {
    let mut back = Vec::new();
    tokio::time::timeout(limit, tunnel.read_to_end(&mut back))
        .await
        .context("reading to EOF: not in time")?
        .context("reading to EOF")?;
    Ok(back)
}

fn first_mismatch(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// 1 MiB written (in 10 000-byte writes, so pieces and capsules never line
/// up with anything) while the echo is read; our shutdown, then the
/// target's FIN is EOF; the bytes come back exactly.
async fn echo_one_mebibyte_byte_exact(t: Transport, mode: TcpMode) -> Result<()> {
    let node = TestNode::start(true).await?;
    let root = node.node.supervisor().get_cell();
    let actors_before = actor_tree(&root).len();
    let tunnel = open(&node, t, mode, tcp_echo().await?).await?;
    let data = pattern(MIB, 7);
    let (mut read, mut write) = tunnel.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        for chunk in sent.chunks(10_000) {
            write.write_all(chunk).await?;
        }
        write.shutdown().await?;
        anyhow::Ok(write)
    });
    let back = read_to_eof(&mut read, Duration::from_secs(30)).await?;
    let write = within("the writer", writer).await???;
    ensure!(
        back.len() == data.len(),
        "{} bytes echoed, {} sent",
        back.len(),
        data.len()
    );
    ensure!(
        back == data,
        "echo differs at byte {:?}",
        first_mismatch(&back, &data)
    );
    // Both sides closed cleanly: the node counts no reset, its session ends,
    // and the connection that `connect_tcp` opened for this one tunnel goes
    // with it (no router or session actor left).
    drop((read, write));
    let m = node.node.metrics();
    eventually("the node's session to end", Duration::from_secs(5), || {
        m.active_sessions() == 0
    })
    .await?;
    let snap = m.snapshot();
    ensure!(
        snap.tcp_tunnels == 1 && snap.tcp_tunnels_reset == 0,
        "tcp_tunnels {}, tcp_tunnels_reset {}",
        snap.tcp_tunnels,
        snap.tcp_tunnels_reset
    );
    eventually(
        "the connection's actors to go",
        Duration::from_secs(5),
        || actor_tree(&root).len() == actors_before,
    )
    .await?;
    Ok(())
}

/// CTCP-19/20: we write, half-close before reading anything; writing is
/// refused from then on, the whole echo still arrives, then EOF (and EOF
/// again).
async fn half_close_the_rest_of_the_echo_then_eof(t: Transport, mode: TcpMode) -> Result<()> {
    let node = TestNode::start(true).await?;
    let mut tunnel = open(&node, t, mode, tcp_echo().await?).await?;
    let data = pattern(200_000, 3);
    within("writing", tunnel.write_all(&data)).await??;
    within("the half-close", tunnel.shutdown()).await??;
    let err = tunnel
        .write_all(b"late")
        .await
        .expect_err("a write after shutdown must fail");
    ensure!(
        err.kind() == std::io::ErrorKind::BrokenPipe,
        "write after shutdown: {err}"
    );
    let back = read_to_eof(&mut tunnel, Duration::from_secs(20)).await?;
    ensure!(
        back == data,
        "{} of {} bytes echoed after the half-close, first difference at {:?}",
        back.len(),
        data.len(),
        first_mismatch(&back, &data)
    );
    let mut more = [0u8; 16];
    let n = within("a read after EOF", tunnel.read(&mut more)).await??;
    ensure!(n == 0, "{n} bytes after EOF");
    Ok(())
}

/// 100 tunnels at once on one connection (the node's default
/// SETTINGS_MAX_CONCURRENT_STREAMS): each echoes its own bytes, no
/// cross-talk, each ends cleanly.
async fn hundred_concurrent_tunnels_on_one_connection(t: Transport, mode: TcpMode) -> Result<()> {
    let node = TestNode::start(true).await?;
    let echo = tcp_echo().await?;
    let client = within(
        "the connection",
        ProxyClient::connect(&url(&node, t), options_for(&node, t)),
    )
    .await??;
    let mut tasks = Vec::new();
    for i in 0..100u8 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut tunnel = client.open_tcp(&tcp(echo), mode).await?;
            let data = pattern(20_000 + usize::from(i) * 97, i);
            tunnel.write_all(&data).await?;
            tunnel.shutdown().await?;
            let back = read_to_eof(&mut tunnel, Duration::from_secs(30)).await?;
            ensure!(
                back == data,
                "tunnel {i} (stream {}): {} of {} bytes, first difference at {:?}",
                tunnel.stream_id(),
                back.len(),
                data.len(),
                first_mismatch(&back, &data)
            );
            anyhow::Ok(tunnel.stream_id())
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .context("100 tunnels: not in time")???,
        );
    }
    ids.sort_unstable();
    ids.dedup();
    ensure!(ids.len() == 100, "{} distinct streams", ids.len());
    ensure!(!client.is_closed(), "the shared connection ended");
    Ok(())
}

/// A target that refuses the connection: 502 with
/// `Proxy-Status: ...; error=connection_refused` (CTCP-27).
async fn refused_target_is_502_connection_refused(t: Transport, mode: TcpMode) -> Result<()> {
    let node = TestNode::start(true).await?;
    let result = try_open(&node, t, mode, tcp_refused_addr()?).await?;
    expect_refusal(result, 502, "connection_refused")?;
    Ok(())
}

/// The target resets its connection after 64 KiB: the tunnel's read side
/// fails with ConnectionReset, never a clean EOF (CTCP-21/22).
async fn target_reset_mid_transfer_is_a_read_error(t: Transport, mode: TcpMode) -> Result<()> {
    let node = TestNode::start(true).await?;
    let tunnel = open(&node, t, mode, tcp_resetter(64 * 1024).await?).await?;
    let (mut read, mut write) = tunnel.into_split();
    // Keeps writing until the tunnel fails; its errors are not the point.
    let writer = tokio::spawn(async move {
        let chunk = pattern(16 * 1024, 1);
        for _ in 0..256 {
            if write.write_all(&chunk).await.is_err() {
                break;
            }
        }
        write
    });
    let mut buf = vec![0u8; 64 * 1024];
    let err = loop {
        match within("the reset", read.read(&mut buf)).await? {
            Ok(0) => bail!("the reset target's tunnel ended with a clean EOF"),
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    ensure!(
        err.kind() == std::io::ErrorKind::ConnectionReset,
        "read error {err:?}, expected ConnectionReset"
    );
    let typed = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<TcpStreamError>())
        .with_context(|| format!("no TcpStreamError in {err:?}"))?;
    ensure!(
        matches!(
            typed,
            TcpStreamError::Reset { .. } | TcpStreamError::Abortive
        ),
        "{typed:?}"
    );
    // The same error again, not EOF.
    let again = within("a read after the error", read.read(&mut buf)).await?;
    ensure!(again.is_err(), "a read after the reset returned {again:?}");
    writer.abort();
    Ok(())
}

/// A node that does not allow private targets refuses a loopback one: 403
/// with `error=destination_ip_prohibited`.
async fn private_target_is_403_destination_ip_prohibited(
    t: Transport,
    mode: TcpMode,
) -> Result<()> {
    let node = TestNode::start(false).await?;
    let result = try_open(&node, t, mode, tcp_echo().await?).await?;
    expect_refusal(result, 403, "destination_ip_prohibited")?;
    Ok(())
}

/// Most bytes a target may get written while the client reads nothing. What
/// may legitimately sit between them: the target's socket send buffer and the
/// node's receive buffer (loopback autotuning, a few MiB), the node's own
/// bounded queues, the transport's window (HTTP/2 1 MiB per stream, QUIC
/// stream window, or the TLS connection's socket buffers on HTTP/1.1) and the
/// client's queue of four pieces: far below 16 MiB, while an unbounded buffer
/// anywhere takes all 64 MiB in well under the wait.
const SLOW_READER_BOUND: u64 = 16 * MIB as u64;

/// A target that sends 64 MiB into a tunnel whose client reads nothing: the
/// target's writes stall below [`SLOW_READER_BOUND`] (nothing on the way
/// buffers without bound), and once the client reads, the bytes flow again.
async fn slow_reader_holds_the_target_back(t: Transport, mode: TcpMode) -> Result<()> {
    let node = TestNode::start(true).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let target = listener.local_addr()?;
    let written = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&written);
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let chunk = vec![0x5au8; 64 * 1024];
        for _ in 0..(64 * MIB / chunk.len()) {
            if s.write_all(&chunk).await.is_err() {
                return;
            }
            count.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        let _ = s.shutdown().await;
    });
    let mut tunnel = open(&node, t, mode, target).await?;
    // Let the pipeline fill: a stall is when the count stops moving.
    let mut last = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = written.load(Ordering::Relaxed);
        if now == last && now > 0 {
            break;
        }
        last = now;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stalled = written.load(Ordering::Relaxed);
    ensure!(
        stalled < SLOW_READER_BOUND,
        "the target wrote {} MiB while the client read nothing (bound {} MiB)",
        stalled / MIB as u64,
        SLOW_READER_BOUND / MIB as u64
    );
    ensure!(stalled > 0, "the target wrote nothing at all");
    // Reading releases it: another 8 MiB arrive.
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0usize;
    while got < 8 * MIB {
        let n = within("reading after the stall", tunnel.read(&mut buf)).await??;
        ensure!(n > 0, "EOF after {got} bytes");
        got += n;
    }
    ensure!(
        written.load(Ordering::Relaxed) > stalled,
        "the target did not resume after the client read"
    );
    Ok(())
}

/// `into_events`: the echo as Data events, then Fin, then Closed(Ok).
async fn events_carry_data_fin_and_closed(t: Transport, mode: TcpMode) -> Result<()> {
    let node = TestNode::start(true).await?;
    let tunnel = open(&node, t, mode, tcp_echo().await?).await?;
    let (mut write, mut events) = tunnel.into_events(8);
    let data = pattern(100_000, 9);
    within("writing", write.write_all(&data)).await??;
    within("the half-close", write.shutdown()).await??;
    let mut back = Vec::new();
    loop {
        match within("the next event", events.recv()).await? {
            Some(TcpTunnelEvent::Data(b)) => back.extend_from_slice(&b),
            Some(TcpTunnelEvent::Fin) => break,
            other => bail!("{other:?} before Fin ({} bytes in)", back.len()),
        }
    }
    ensure!(back == data, "{} of {} bytes", back.len(), data.len());
    match within("the Closed event", events.recv()).await? {
        Some(TcpTunnelEvent::Closed(Ok(()))) => {}
        other => bail!("after Fin: {other:?}"),
    }
    ensure!(
        within("the end of the events", events.recv())
            .await?
            .is_none(),
        "events after Closed"
    );
    Ok(())
}

/// An owner actor that hands the tunnel's events to the test.
struct Owner;

impl Actor for Owner {
    type Msg = TcpTunnelEvent;
    type State = mpsc::UnboundedSender<TcpTunnelEvent>;
    type Arguments = mpsc::UnboundedSender<TcpTunnelEvent>;

    async fn pre_start(
        &self,
        _me: ActorRef<TcpTunnelEvent>,
        out: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(out)
    }

    async fn handle(
        &self,
        _me: ActorRef<TcpTunnelEvent>,
        ev: TcpTunnelEvent,
        out: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let _ = out.send(ev);
        Ok(())
    }
}

/// `forward_to`: an owner actor gets the echo as Data, then Fin and
/// Closed(Ok); the write half stays with the caller.
async fn forward_to_owner_actor(t: Transport, mode: TcpMode) -> Result<()> {
    let node = TestNode::start(true).await?;
    let tunnel = open(&node, t, mode, tcp_echo().await?).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (owner, handle) = Actor::spawn(None, Owner, tx).await?;
    let mut write = tunnel.forward_to(owner.clone());
    let data = pattern(50_000, 5);
    within("writing", write.write_all(&data)).await??;
    within("the half-close", write.shutdown()).await??;
    let mut back = Vec::new();
    let last = loop {
        match within("the owner's next event", rx.recv()).await? {
            Some(TcpTunnelEvent::Data(b)) => back.extend_from_slice(&b),
            other => break other,
        }
    };
    ensure!(back == data, "{} of {} bytes", back.len(), data.len());
    ensure!(
        last == Some(TcpTunnelEvent::Fin),
        "after the data: {last:?}"
    );
    let closed = within("the Closed event", rx.recv()).await?;
    ensure!(
        closed == Some(TcpTunnelEvent::Closed(Ok(()))),
        "after Fin: {closed:?}"
    );
    owner.stop(None);
    within("the owner's stop", handle).await??;
    Ok(())
}

/// How a target's connection ended, as the target saw it.
#[derive(Debug, PartialEq, Eq)]
enum TargetEnd {
    /// A FIN: read returned 0.
    Fin,
    /// An error (RST).
    Reset(std::io::ErrorKind),
}

/// A target that reports how many bytes it read and how its connection
/// ended, for one connection; after a FIN it sends its own.
async fn observed_target() -> Result<(SocketAddr, oneshot::Receiver<(usize, TargetEnd)>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0;
        let end = loop {
            match s.read(&mut buf).await {
                Ok(0) => break TargetEnd::Fin,
                Ok(n) => total += n,
                Err(e) => break TargetEnd::Reset(e.kind()),
            }
        };
        if end == TargetEnd::Fin {
            // Our side ends too, so a clean tunnel ends cleanly both ways.
            let _ = s.shutdown().await;
        }
        let _ = tx.send((total, end));
        // Keep the socket until the peer is done with it.
        let _ = s.read(&mut buf).await;
    });
    Ok((addr, rx))
}

/// CTCP-21/22: a write half dropped without a shutdown aborts the tunnel
/// (even with the read half still held): the node resets the target's
/// connection (RST, not FIN) and the read half fails instead of seeing EOF.
/// A tunnel shut down first ends the target's connection with a FIN.
async fn drop_without_shutdown_resets_the_target(t: Transport, mode: TcpMode) -> Result<()> {
    let node = TestNode::start(true).await?;
    let (addr, ended) = observed_target().await?;
    let mut tunnel = open(&node, t, mode, addr).await?;
    within("writing", tunnel.write_all(b"before the drop")).await??;
    within("the flush", tunnel.flush()).await??;
    // Give the bytes time to reach the target before the abort.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut read, write) = tunnel.into_split();
    drop(write);
    let (_, end) = within("the target's end", ended).await??;
    ensure!(
        matches!(end, TargetEnd::Reset(_)),
        "a dropped write half ended the target with {end:?}"
    );
    let mut buf = [0u8; 64];
    let after = within("a read after the abort", read.read(&mut buf)).await?;
    ensure!(after.is_err(), "a read after the abort returned {after:?}");
    let m = node.node.metrics();
    eventually(
        "the node to count the reset",
        Duration::from_secs(5),
        || m.snapshot().tcp_tunnels_reset == 1,
    )
    .await?;

    let (addr, ended) = observed_target().await?;
    let mut tunnel = open(&node, t, mode, addr).await?;
    within("writing", tunnel.write_all(b"before the shutdown")).await??;
    within("the half-close", tunnel.shutdown()).await??;
    let (n, end) = within("the target's end", ended).await??;
    ensure!(
        end == TargetEnd::Fin,
        "a shut-down tunnel ended the target with {end:?}"
    );
    ensure!(
        n == b"before the shutdown".len(),
        "the target read {n} bytes"
    );
    let rest = read_to_eof(&mut tunnel, Duration::from_secs(10)).await?;
    ensure!(rest.is_empty(), "{} bytes from a silent target", rest.len());
    drop(tunnel);
    eventually("the node's sessions to end", Duration::from_secs(5), || {
        m.active_sessions() == 0
    })
    .await?;
    ensure!(
        m.snapshot().tcp_tunnels_reset == 1,
        "the clean tunnel was counted as reset"
    );
    Ok(())
}

/// The interop tokens `connect-tcp-07` (draft -11 codepoints) and
/// `connect-tcp-12` carry an echo byte-exact with their own capsule types.
async fn interop_tokens_echo(t: Transport) -> Result<()> {
    let node = TestNode::start(true).await?;
    let echo = tcp_echo().await?;
    for cp in [DRAFT_11, DRAFT_12] {
        let mut tunnel = open(&node, t, TcpMode::ConnectTcpToken(cp), echo).await?;
        let data = pattern(300_000, 11);
        within("writing", tunnel.write_all(&data)).await??;
        within("the half-close", tunnel.shutdown()).await??;
        let back = read_to_eof(&mut tunnel, Duration::from_secs(20)).await?;
        ensure!(
            back == data,
            "{}: {} of {} bytes, first difference at {:?}",
            cp.token,
            back.len(),
            data.len(),
            first_mismatch(&back, &data)
        );
    }
    Ok(())
}

/// Tunnels closed cleanly and tunnels dropped mid-transfer (a write waiting
/// for credit, unread data queued) leave no task behind, the client's nor
/// the node's (they share the runtime): the count of live tasks returns to
/// what it was with the connection and no tunnel.
async fn tunnels_leave_no_tasks_behind(t: Transport, mode: TcpMode) -> Result<()> {
    let node = TestNode::start(true).await?;
    let echo = tcp_echo().await?;
    let rt = tokio::runtime::Handle::current().metrics();
    let client = within(
        "the connection",
        ProxyClient::connect(&url(&node, t), options_for(&node, t)),
    )
    .await??;
    let cycle = async |clean: bool| -> Result<()> {
        let mut tunnel = client.open_tcp(&tcp(echo), mode).await?;
        if clean {
            tunnel.write_all(b"ping").await?;
            tunnel.shutdown().await?;
            let back = read_to_eof(&mut tunnel, Duration::from_secs(10)).await?;
            ensure!(back == b"ping", "{back:?}");
        } else {
            // Enough that the echo fills every window and queue on the way.
            let data = pattern(4 * MIB, 2);
            let _ = tokio::time::timeout(Duration::from_millis(300), tunnel.write_all(&data)).await;
        }
        Ok(())
    };
    // One full cycle first: the connection's own tasks exist from here on.
    within("the first tunnel", cycle(true)).await??;
    let m = node.node.metrics();
    eventually("the first session to end", Duration::from_secs(5), || {
        m.active_sessions() == 0
    })
    .await?;
    let baseline = rt.num_alive_tasks();
    for i in 0..10 {
        within("a tunnel", cycle(i % 2 == 0)).await??;
    }
    eventually(
        "the node's sessions to end",
        Duration::from_secs(10),
        || m.active_sessions() == 0,
    )
    .await?;
    eventually(
        "tasks back to the baseline",
        Duration::from_secs(10),
        || rt.num_alive_tasks() <= baseline,
    )
    .await
    .with_context(|| format!("{} live tasks, {baseline} before", rt.num_alive_tasks()))?;
    Ok(())
}
