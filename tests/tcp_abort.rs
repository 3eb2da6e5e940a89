//! Clients that leave the node's TLS/TCP listener abruptly or cleanly, at
//! every phase of a connection, on real loopback sockets. The peer is
//! independent of our code: `tests/interop/tcp_abort.py` (a hand-written
//! HTTP/1.1 upgrade client on Python's `ssl`, and Python `h2` for HTTP/2),
//! which stops at sync points so the test can look at the node while the
//! connections are open, then leaves as told: a TCP reset (SO_LINGER 0 and
//! close), TLS close_notify + FIN, or END_STREAM.
//!
//! After each departure, within a bound, the node must have let go of
//! everything: every session closed (`sessions_closed == sessions_opened`),
//! every connection closed (`connections_closed == connections_accepted`),
//! the ConnectionRouter and session actors gone from the supervision tree,
//! the process's open file descriptors and the runtime's live tasks back to
//! their baseline, no target resolution left pending, and a fresh tunnel
//! over the same transport works. Every counter is checked against its exact
//! expected change.
//!
//! Every handshake, head and init timeout of the node is set far above the
//! test's bounds, so what frees the resources is the node noticing the
//! client's departure, never a timer.
//!
//! The node runs in this process, so descriptor and task counts are
//! process-wide: the tests of this binary run one at a time (`serial`), each
//! on its own runtime.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use masque_server::{
    MetricsSnapshot, UdpProxy, UdpProxyConfig,
    metrics::TransportSnapshot,
    policy::AddressPolicy,
    resolver::{ResolveError, Resolver},
};
use masque_tests::{
    init_tracing, interop_python,
    node::{TestNode, actor_tree, eventually},
    peer::{PeerArgs, field, number},
    tls::open_fds,
    within,
};
use masque_transport::Transport;
use ractor::ActorCell;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout},
    task::JoinHandle,
};

/// The node's handshake, head and init timeouts: far above every bound of
/// the test, so that none of them is what ends a connection here.
const NEVER: Duration = Duration::from_secs(300);
/// Bound for one step of the Python peer (it bounds its own steps at 10 s;
/// a phase opens 20 connections).
const PEER_STEP: Duration = Duration::from_secs(60);
/// Bound for the node to let go of everything after the clients left.
const SETTLE: Duration = Duration::from_secs(10);
/// The host name the test resolver never answers.
const STALL_HOST: &str = "stall.test";
const SCRIPT: &str = "tcp_abort.py";

// ------------------------------------------------------------------ serial

/// Runs one test alone (descriptor and task counts are process-wide) on a
/// runtime of its own, shut down before the next test starts.
fn serial<F: Future<Output = Result<()>>>(test: impl FnOnce() -> F) -> Result<()> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let r = rt.block_on(test());
    rt.shutdown_timeout(Duration::from_secs(5));
    r
}

// ------------------------------------------------------------------ resolver

/// Resolves nothing: [`STALL_HOST`] stays pending forever (counted while it
/// is, so the test sees a request sitting in `init` and its cancellation);
/// any other name is NXDOMAIN.
#[derive(Default)]
struct StallResolver {
    calls: AtomicUsize,
    pending: Arc<AtomicUsize>,
}

/// Counts one pending resolution until dropped (the session gave up on it).
struct Pending(Arc<AtomicUsize>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl Resolver for StallResolver {
    async fn resolve(&self, host: &str, _port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        if !host.eq_ignore_ascii_case(STALL_HOST) {
            return Err(ResolveError::NotFound);
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.pending.fetch_add(1, Ordering::SeqCst);
        let _pending = Pending(Arc::clone(&self.pending));
        std::future::pending().await
    }
}

// ------------------------------------------------------------------ node

/// A node with its TLS/TCP listener, a UDP echo target, the stalling
/// resolver and the interop Python.
struct Env {
    node: TestNode,
    peer: PeerArgs,
    resolver: Arc<StallResolver>,
    root: ActorCell,
    python: PathBuf,
}

/// What must come back once the clients are gone.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    fds: usize,
    tasks: usize,
    actors: usize,
}

/// The counters at one instant: the node's and each transport's.
#[derive(Debug, Clone, Copy)]
struct Counters {
    m: MetricsSnapshot,
    h1: TransportSnapshot,
    h2: TransportSnapshot,
    h3: TransportSnapshot,
}

/// Fails unless each named counter of `$now` is exactly `$base`'s plus the
/// given change.
macro_rules! ensure_deltas {
    ($what:expr, $now:expr, $base:expr, { $($field:ident: $delta:expr),* $(,)? }) => {{
        let (now, base) = (&$now, &$base);
        $(
            ensure!(
                now.$field - base.$field == $delta,
                "{}: {} changed by {}, expected {}\nnow:  {:?}\nbase: {:?}",
                $what,
                stringify!($field),
                now.$field - base.$field,
                $delta,
                now,
                base
            );
        )*
    }};
}

/// The node's state while clients are connected: what must be there.
#[derive(Debug, Clone, Copy)]
struct Live {
    /// ConnectionRouters plus session actors.
    actors: usize,
    /// Descriptors the node holds for the clients (TCP sockets, target
    /// sockets); what this process holds for the peer itself is added.
    fds: usize,
    /// Sessions running.
    sessions: u64,
    /// Target resolutions pending.
    resolving: usize,
}

impl Env {
    async fn start(name: &str) -> Result<Self> {
        let resolver = Arc::new(StallResolver::default());
        let proxy = UdpProxy::new(UdpProxyConfig {
            policy: AddressPolicy {
                allow_private: true,
                own_addresses: vec![],
            },
            dns_timeout: NEVER,
            resolver: Arc::clone(&resolver) as Arc<dyn Resolver>,
            ..Default::default()
        });
        let node = TestNode::with_handler_config(Arc::new(proxy), |c| {
            c.name = format!("tcp-abort-{name}");
            c.tls_handshake_timeout = NEVER;
            c.h2.handshake_timeout = NEVER;
            c.h1.head_timeout = NEVER;
            c.session.init_timeout = NEVER;
        })
        .await?;
        let peer = PeerArgs::start(&node).await?;
        let python = interop_python()?;
        let root = node.node.supervisor().get_cell();
        Ok(Self {
            node,
            peer,
            resolver,
            root,
            python,
        })
    }

    fn counters(&self) -> Counters {
        let m = self.node.node.metrics();
        Counters {
            m: m.snapshot(),
            h1: m.transport(Transport::H1).snapshot(),
            h2: m.transport(Transport::H2).snapshot(),
            h3: m.transport(Transport::H3).snapshot(),
        }
    }

    fn actors(&self) -> usize {
        actor_tree(&self.root).len()
    }

    fn tasks() -> usize {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    }

    /// Warms up both transports (one tunnel each, ended cleanly: whatever is
    /// created lazily, in the node or in this process for a peer, belongs to
    /// the baseline), waits for the node to let go of them, then measures.
    async fn baseline(&self) -> Result<Baseline> {
        let actors = self.actors();
        // No descriptor count yet: nothing checks them during the warm-up.
        let warm = Baseline {
            fds: 0,
            tasks: 0,
            actors,
        };
        self.tunnel(&warm, &["--transport", "h1", "--end", "close"], &[])
            .await?;
        self.tunnel(
            &warm,
            &["--transport", "h2", "--end", "end_stream"],
            &["streams-ended"],
        )
        .await?;
        eventually("warm-up connections gone", SETTLE, || {
            let c = self.counters().m;
            self.actors() == actors
                && c.connections_accepted == 2
                && c.connections_closed == 2
                && c.sessions_closed == 2
                && c.sessions_opened == 2
        })
        .await
        .with_context(|| format!("{} actors: {:?}", self.actors(), self.counters()))?;
        // Let any in-flight teardown finish before counting descriptors.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(Baseline {
            fds: open_fds()?,
            tasks: Self::tasks(),
            actors,
        })
    }

    /// Starts the peer with `args`; returns once it runs, before it connects.
    async fn peer(&self, base: &Baseline, args: &[&str]) -> Result<Peer> {
        Peer::spawn(self, base, args).await
    }

    /// Runs `tunnel` with `args`, answering `go` at "tunnels-open" and at each
    /// of `more` stages; returns the summary.
    async fn tunnel(&self, base: &Baseline, args: &[&str], more: &[&str]) -> Result<String> {
        let mut all = vec!["tunnel"];
        all.extend_from_slice(args);
        let mut p = self.peer(base, &all).await?;
        p.ready("tunnels-open").await?;
        p.go().await?;
        for stage in more {
            p.ready(stage).await?;
            p.go().await?;
        }
        p.finish().await
    }

    /// Waits (bounded) until the node holds exactly `live` on top of `base`
    /// while `peer` runs.
    async fn live(&self, base: &Baseline, peer: &Peer, live: Live, what: &str) -> Result<()> {
        let want_fds = base.fds + peer.fds + live.fds;
        let want_actors = base.actors + live.actors;
        let r = eventually(what, SETTLE, || {
            let m = self.counters().m;
            self.actors() == want_actors
                && open_fds().ok() == Some(want_fds)
                && m.sessions_opened - m.sessions_closed == live.sessions
                && self.resolver.pending.load(Ordering::SeqCst) == live.resolving
        })
        .await;
        r.with_context(|| {
            let m = self.counters().m;
            format!(
                "{what}: actors {} (want {want_actors}), fds {:?} (want {want_fds}), \
                 sessions running {} (want {}), resolutions pending {} (want {})",
                self.actors(),
                open_fds().ok(),
                m.sessions_opened - m.sessions_closed,
                live.sessions,
                self.resolver.pending.load(Ordering::SeqCst),
                live.resolving,
            )
        })
    }

    /// Waits (bounded) until the node let go of every client: sessions and
    /// connections all closed, no router or session actor, descriptors and
    /// live tasks back to `base`, no resolution pending. The counters then.
    async fn settled(&self, base: &Baseline, what: &str) -> Result<Counters> {
        let done = || {
            let m = self.counters().m;
            m.sessions_closed == m.sessions_opened
                && m.connections_closed == m.connections_accepted
                && self.actors() == base.actors
                && open_fds().ok() == Some(base.fds)
                && Self::tasks() <= base.tasks
                && self.resolver.pending.load(Ordering::SeqCst) == 0
        };
        let r = eventually(what, SETTLE, done).await;
        r.with_context(|| {
            format!(
                "after {what}, within {SETTLE:?}: actors {} (baseline {}), fds {:?} \
                 (baseline {}), tasks {} (baseline {}), resolutions pending {}\n{:?}",
                self.actors(),
                base.actors,
                open_fds().ok(),
                base.fds,
                Self::tasks(),
                base.tasks,
                self.resolver.pending.load(Ordering::SeqCst),
                self.counters()
            )
        })?;
        Ok(self.counters())
    }

    /// A fresh tunnel over `transport` works (three datagrams echoed, then a
    /// clean end), and leaves nothing behind either.
    async fn fresh_tunnel(&self, transport: Transport, base: &Baseline, what: &str) -> Result<()> {
        let before = self.counters();
        let out = match transport {
            Transport::H1 => {
                self.tunnel(base, &["--transport", "h1", "--end", "close"], &[])
                    .await?
            }
            Transport::H2 => {
                self.tunnel(
                    base,
                    &["--transport", "h2", "--end", "end_stream"],
                    &["streams-ended"],
                )
                .await?
            }
            Transport::H3 => bail!("not over TCP"),
        };
        ensure!(number(&out, "echoed")? == 3, "{what}: {out}");
        let what = format!("a fresh {transport} tunnel after {what}");
        let after = self.settled(base, &what).await?;
        ensure_deltas!(what, after.m, before.m, {
            connections_accepted: 1,
            connections_closed: 1,
            tunnel_requests: 1,
            tunnels_established: 1,
            tunnels_refused: 0,
            sessions_opened: 1,
            sessions_closed: 1,
            datagrams_to_target: 3,
            datagrams_from_target: 3,
            capsules_malformed: 0,
        });
        Ok(())
    }
}

// ------------------------------------------------------------------ the peer

/// One run of the Python peer: JSON lines out, `go` in.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: JoinHandle<String>,
    what: String,
    seen: Vec<String>,
    /// Descriptors this process holds for the peer (its pipes, and a pidfd
    /// where tokio reaps with one), measured before it connects.
    fds: usize,
}

impl Peer {
    async fn spawn(env: &Env, base: &Baseline, args: &[&str]) -> Result<Self> {
        let mut child = env
            .peer
            .command(&env.python, SCRIPT)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {SCRIPT} with {}", env.python.display()))?;
        let stdin = child.stdin.take().context("peer stdin")?;
        let stdout = child.stdout.take().context("peer stdout")?;
        let mut err = child.stderr.take().context("peer stderr")?;
        let stderr = tokio::spawn(async move {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s).await;
            s
        });
        let mut peer = Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            stderr,
            what: format!("{SCRIPT} {}", args.join(" ")),
            seen: Vec::new(),
            fds: 0,
        };
        peer.ready("start").await?;
        peer.fds = open_fds()?.saturating_sub(base.fds);
        peer.go().await?;
        Ok(peer)
    }

    async fn line(&mut self) -> Result<String> {
        let next = tokio::time::timeout(PEER_STEP, self.lines.next_line()).await;
        let line = match next {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => bail!("{}: ended after {:?}", self.what, self.seen),
            Ok(Err(e)) => bail!("{}: reading its output: {e}", self.what),
            Err(_) => bail!(
                "{}: silent for {PEER_STEP:?} after {:?}",
                self.what,
                self.seen
            ),
        };
        println!("{}: {line}", self.what);
        self.seen.push(line.clone());
        Ok(line)
    }

    /// The next line must be the sync point `stage`; returns it.
    async fn ready(&mut self, stage: &str) -> Result<String> {
        let line = self.line().await?;
        if field(&line, "event") != Some("\"ready\"") {
            let err = self.stderr().await;
            bail!("{}: expected ready {stage}, got {line}\n{err}", self.what);
        }
        ensure!(
            field(&line, "stage") == Some(&format!("\"{stage}\"")),
            "{}: expected ready {stage}, got {line}",
            self.what
        );
        Ok(line)
    }

    async fn go(&mut self) -> Result<()> {
        within("telling the peer to go on", async {
            self.stdin.write_all(b"go\n").await?;
            self.stdin.flush().await
        })
        .await??;
        Ok(())
    }

    async fn stderr(&mut self) -> String {
        let _ = tokio::time::timeout(PEER_STEP, self.child.wait()).await;
        match tokio::time::timeout(Duration::from_secs(5), &mut self.stderr).await {
            Ok(Ok(s)) => s,
            _ => String::new(),
        }
    }

    /// The summary line (which must say `"ok": true`); the peer has exited
    /// and its pipes are closed on return.
    async fn finish(mut self) -> Result<String> {
        let line = self.line().await?;
        let status = tokio::time::timeout(PEER_STEP, self.child.wait())
            .await
            .with_context(|| format!("{}: still running after its summary", self.what))??;
        let err = self.stderr().await;
        ensure!(
            status.success() && field(&line, "ok") == Some("true"),
            "{} failed ({status}): {line}\n{err}",
            self.what
        );
        Ok(line)
    }
}

// ------------------------------------------------------------------ scenarios

/// One connection with `tunnels` tunnels (`datagrams` echoed on each) that
/// ends with `end`; checks the node while it is open, then that it let go
/// of everything and counted exactly that connection. The summary.
async fn tunnel_then(
    env: &Env,
    base: &Baseline,
    transport: Transport,
    tunnels: usize,
    datagrams: u64,
    end: &str,
) -> Result<String> {
    let what = format!("{transport} with {tunnels} tunnel(s), then {end}");
    let before = env.counters();
    let t = match transport {
        Transport::H1 => "h1",
        Transport::H2 => "h2",
        Transport::H3 => bail!("not over TCP"),
    };
    let (n, d) = (tunnels.to_string(), datagrams.to_string());
    let mut p = env
        .peer(
            base,
            &[
                "tunnel",
                "--transport",
                t,
                "--tunnels",
                &n,
                "--datagrams",
                &d,
                "--end",
                end,
            ],
        )
        .await?;
    let ready = p.ready("tunnels-open").await?;
    let total = tunnels as u64 * datagrams;
    ensure!(number(&ready, "echoed")? == total, "{ready}");
    // A router and a session per tunnel; the node's TCP socket and a target
    // socket per tunnel.
    let open = Live {
        actors: 1 + tunnels,
        fds: 1 + tunnels,
        sessions: tunnels as u64,
        resolving: 0,
    };
    env.live(base, &p, open, &format!("{what}: open")).await?;
    p.go().await?;
    if end == "end_stream" {
        p.ready("streams-ended").await?;
        // Every session ended; the router and its connection live on.
        let streams_ended = Live {
            actors: 1,
            fds: 1,
            sessions: 0,
            resolving: 0,
        };
        env.live(base, &p, streams_ended, &format!("{what}: streams ended"))
            .await?;
        p.go().await?;
    }
    let out = p.finish().await?;
    let after = env.settled(base, &what).await?;
    ensure_deltas!(what, after.m, before.m, {
        connections_accepted: 1,
        connections_closed: 1,
        tunnel_requests: tunnels as u64,
        tunnels_established: tunnels as u64,
        tunnels_refused: 0,
        sessions_opened: tunnels as u64,
        sessions_closed: tunnels as u64,
        datagrams_from_client: total,
        datagrams_to_target: total,
        datagrams_from_target: total,
        datagrams_to_client_dropped: 0,
        capsules_malformed: 0,
        idle_timeouts: 0,
        handler_panics: 0,
    });
    let (now, was, other_now, other_was) = match transport {
        Transport::H1 => (after.h1, before.h1, after.h2, before.h2),
        _ => (after.h2, before.h2, after.h1, before.h1),
    };
    ensure_deltas!(what, now, was, {
        connections: 1,
        requests: tunnels as u64,
        tunnels: tunnels as u64,
        datagrams_from_client: total,
        datagrams_to_client: total,
    });
    ensure!(
        other_now == other_was,
        "{what}: counted on the other transport"
    );
    ensure!(after.h3 == before.h3, "{what}: counted on HTTP/3");
    Ok(out)
}

/// How the node closed its side, as the peer saw it.
fn node_closed(out: &str) -> Option<&str> {
    field(out, "node_closed")
}

/// Case 1: HTTP/1.1: a TCP reset in the middle of a tunnel.
#[test]
fn h1_reset_mid_tunnel_leaves_nothing_behind() -> Result<()> {
    serial(|| async {
        let env = Env::start("h1-rst").await?;
        let base = env.baseline().await?;
        tunnel_then(&env, &base, Transport::H1, 1, 5, "rst").await?;
        env.fresh_tunnel(Transport::H1, &base, "a reset").await?;
        env.node.node.shutdown().await;
        Ok(())
    })
}

/// Case 1: HTTP/2: a TCP reset in the middle of one tunnel, then of ten.
#[test]
fn h2_reset_mid_tunnel_leaves_nothing_behind() -> Result<()> {
    serial(|| async {
        let env = Env::start("h2-rst").await?;
        let base = env.baseline().await?;
        tunnel_then(&env, &base, Transport::H2, 1, 5, "rst").await?;
        env.fresh_tunnel(Transport::H2, &base, "a reset").await?;
        tunnel_then(&env, &base, Transport::H2, 10, 3, "rst").await?;
        env.fresh_tunnel(Transport::H2, &base, "a reset with ten tunnels")
            .await?;
        env.node.node.shutdown().await;
        Ok(())
    })
}

/// Case 2: HTTP/1.1: TLS close_notify + FIN in the middle of a tunnel (on a
/// capsule boundary): the tunnel ends cleanly, and the node closes its side
/// with close_notify too.
#[test]
fn h1_clean_close_mid_tunnel_leaves_nothing_behind() -> Result<()> {
    serial(|| async {
        let env = Env::start("h1-close").await?;
        let base = env.baseline().await?;
        let out = tunnel_then(&env, &base, Transport::H1, 1, 5, "close").await?;
        ensure!(
            node_closed(&out) == Some("\"close_notify\""),
            "the node ended a cleanly closed tunnel without close_notify: {out}"
        );
        env.fresh_tunnel(Transport::H1, &base, "a clean close")
            .await?;
        env.node.node.shutdown().await;
        Ok(())
    })
}

/// Case 2: HTTP/2: END_STREAM on a tunnel is answered with END_STREAM and ends its
/// session while the connection lives on; the connection's own clean end
/// (GOAWAY, close_notify, FIN) then ends the router.
#[test]
fn h2_end_stream_mid_tunnel_leaves_nothing_behind() -> Result<()> {
    serial(|| async {
        let env = Env::start("h2-end-stream").await?;
        let base = env.baseline().await?;
        let out = tunnel_then(&env, &base, Transport::H2, 3, 4, "end_stream").await?;
        ensure!(number(&out, "end_stream_answered")? == 3, "{out}");
        ensure!(node_closed(&out).is_some(), "{out}");
        env.fresh_tunnel(Transport::H2, &base, "END_STREAM").await?;
        env.node.node.shutdown().await;
        Ok(())
    })
}

/// Case 2: HTTP/2: the whole TCP connection closed cleanly (close_notify + FIN,
/// no END_STREAM, no GOAWAY) with ten tunnels open: every session and the
/// router end, and the node closes its side.
#[test]
fn h2_clean_close_with_ten_tunnels_open_leaves_nothing_behind() -> Result<()> {
    serial(|| async {
        let env = Env::start("h2-close").await?;
        let base = env.baseline().await?;
        let out = tunnel_then(&env, &base, Transport::H2, 10, 3, "close").await?;
        ensure!(node_closed(&out).is_some(), "{out}");
        env.fresh_tunnel(Transport::H2, &base, "a clean close with ten tunnels")
            .await?;
        env.node.node.shutdown().await;
        Ok(())
    })
}

/// Connections per phase and transport.
const PER_PHASE: usize = 20;

/// `PER_PHASE` connections stopped at `phase` (over `transport`), checked
/// while they are, then all reset at once; checks that the node let go of
/// everything and counted exactly what reached it.
async fn phase(env: &Env, base: &Baseline, phase: &str, transport: &str) -> Result<()> {
    phase_with(env, base, phase, transport, &[]).await
}

/// [`phase`] with extra arguments for the peer.
async fn phase_with(
    env: &Env,
    base: &Baseline,
    phase: &str,
    transport: &str,
    extra: &[&str],
) -> Result<()> {
    let what = format!("{PER_PHASE} resets at phase {phase} {extra:?} over {transport}");
    let before = env.counters();
    let calls_before = env.resolver.calls.load(Ordering::SeqCst);
    let count = PER_PHASE.to_string();
    let mut args = vec![
        "phase",
        "--phase",
        phase,
        "--transport",
        transport,
        "--count",
        &count,
    ];
    args.extend_from_slice(extra);
    let mut p = env.peer(base, &args).await?;
    let ready = p.ready(phase).await?;
    ensure!(
        number(&ready, "connections")? == PER_PHASE as u64,
        "{ready}"
    );
    let n = PER_PHASE;
    let h2 = transport == "h2";
    // What reaches the node at this phase: connections with a router (TLS
    // done, and on HTTP/2 the client preface read), requests, and sessions
    // (sitting in `init` on the stalled resolution, or relaying).
    let (routers, requests, tunnels) = match phase {
        "tls" => (0, 0, 0),
        // HTTP/2: only the even half sent the client preface.
        "idle" if h2 => (n / 2, 0, 0),
        "idle" => (n, 0, 0),
        "head" | "tunnel" => (n, n, if phase == "tunnel" { n } else { 0 }),
        _ => bail!("unknown phase {phase}"),
    };
    let sessions = requests;
    let open = Live {
        actors: routers + sessions,
        // Every TCP connection is the node's (in the TLS or HTTP/2
        // handshake, or with a router), plus a target socket per tunnel;
        // an HTTP/1.1 connection whose request is not answered yet also
        // holds its peer watch (a dup of its socket, closed on the answer).
        fds: n
            + tunnels
            + if !h2 && matches!(phase, "idle" | "head") {
                routers
            } else {
                0
            },
        sessions: sessions as u64,
        resolving: if phase == "head" { n } else { 0 },
    };
    env.live(base, &p, open, &format!("{what}: before the resets"))
        .await?;
    let during = env.counters();
    ensure!(
        during.m.connections_accepted - before.m.connections_accepted == routers as u64,
        "{what}: {:?}",
        during.m
    );
    p.go().await?;
    let out = p.finish().await?;
    ensure!(number(&out, "reset")? == n as u64, "{out}");
    let after = env.settled(base, &what).await?;
    let (routers, requests, sessions, tunnels) = (
        routers as u64,
        requests as u64,
        sessions as u64,
        tunnels as u64,
    );
    ensure_deltas!(what, after.m, before.m, {
        connections_accepted: routers,
        connections_closed: routers,
        tunnel_requests: requests,
        tunnels_established: tunnels,
        // A request cut off in `init` is no refusal: nobody gets an answer.
        tunnels_refused: 0,
        sessions_opened: sessions,
        sessions_closed: sessions,
        datagrams_from_client: tunnels,
        datagrams_to_target: tunnels,
        datagrams_from_target: tunnels,
        capsules_malformed: 0,
        idle_timeouts: 0,
        handler_panics: 0,
    });
    let (now, was) = if h2 {
        (after.h2, before.h2)
    } else {
        (after.h1, before.h1)
    };
    if phase == "tls" {
        ensure!(
            after.h1 == before.h1 && after.h2 == before.h2,
            "{what}: a connection cut off in its TLS handshake was counted: {after:?}"
        );
    } else {
        ensure_deltas!(what, now, was, {
            connections: routers,
            requests: requests,
            tunnels: tunnels,
            datagrams_from_client: tunnels,
            datagrams_to_client: tunnels,
        });
    }
    ensure!(after.h3 == before.h3, "{what}: counted on HTTP/3");
    let resolutions = env.resolver.calls.load(Ordering::SeqCst) - calls_before;
    ensure!(
        resolutions == if phase == "head" { n } else { 0 },
        "{what}: {resolutions} resolutions"
    );
    Ok(())
}

/// Case 3: Twenty connections reset at each phase (during the TLS handshake;
/// after it, before any request; after the request head, before the
/// response; mid-tunnel), over both transports: after each batch the node is
/// back to its baseline, and at the end the listener still serves both.
#[test]
fn resets_at_every_phase_leave_nothing_behind() -> Result<()> {
    serial(|| async {
        let env = Env::start("phases").await?;
        let base = env.baseline().await?;
        let start = env.counters();
        phase(&env, &base, "tls", "h1").await?;
        for transport in ["h1", "h2"] {
            for p in ["idle", "head", "tunnel"] {
                phase(&env, &base, p, transport).await?;
            }
        }
        let end = env.settled(&base, "every phase").await?;
        // None for the TLS phase; 20 + 10 idle routers (half the HTTP/2 ones
        // never sent the preface); 2 x 20 with a request head; 2 x 20 with a
        // tunnel.
        ensure_deltas!("every phase", end.m, start.m, {
            connections_accepted: 110,
            connections_closed: 110,
            tunnel_requests: 80,
            sessions_opened: 80,
            sessions_closed: 80,
            tunnels_established: 40,
        });
        env.fresh_tunnel(Transport::H1, &base, "every phase")
            .await?;
        env.fresh_tunnel(Transport::H2, &base, "every phase")
            .await?;
        env.node.node.shutdown().await;
        Ok(())
    })
}

/// A client that sent a DATAGRAM capsule right behind its request head
/// (HTTP/1.1: in the same write, as `h1_connect_udp.py same-write` does) and
/// is reset while the tunnel is still in `init`.
///
/// With bytes already buffered behind the head, hyper does not watch the
/// socket while the response is pending (hyper 1.x
/// `Conn::mid_message_detect_eof` returns `Pending` when its read buffer is
/// not empty); the node sees the reset through its peer watch (a dup of the
/// socket, peeked while the request is set up). Without it the router, the
/// session, the TCP socket and the tasks were held for the whole `init` (up
/// to `session.init_timeout`), and a 504 was counted for a client long gone.
#[test]
fn resets_after_a_head_with_an_early_capsule_leave_nothing_behind() -> Result<()> {
    serial(|| async {
        let env = Env::start("early-capsule").await?;
        let base = env.baseline().await?;
        for transport in ["h2", "h1"] {
            phase_with(&env, &base, "head", transport, &["--early-capsule"]).await?;
        }
        env.fresh_tunnel(Transport::H1, &base, "early capsules")
            .await?;
        env.node.node.shutdown().await;
        Ok(())
    })
}

/// HTTP/2 requests cancelled with RST_STREAM while their tunnels are still in
/// `init`, on a connection that stays open: each session must end at once
/// (its resolution dropped), the router must stay. The session runtime
/// watches its stream during `init` (`PendingTunnel::watch`); without that,
/// a cancelled request kept its session, its tunnel slot and its resolution
/// until `init` ended, then got a 504 on a stream that no longer existed.
#[test]
fn h2_stream_reset_during_init_ends_the_session() -> Result<()> {
    serial(|| async {
        let env = Env::start("h2-cancel").await?;
        let base = env.baseline().await?;
        let before = env.counters();
        let n = 5;
        let count = n.to_string();
        let mut p = env.peer(&base, &["cancel", "--count", &count]).await?;
        p.ready("requested").await?;
        let requested = Live {
            actors: 1 + n,
            fds: 1,
            sessions: n as u64,
            resolving: n,
        };
        env.live(&base, &p, requested, "requests in init").await?;
        p.go().await?;
        p.ready("cancelled").await?;
        let cancelled = Live {
            actors: 1,
            fds: 1,
            sessions: 0,
            resolving: 0,
        };
        env.live(&base, &p, cancelled, "requests cancelled, connection open")
            .await?;
        p.go().await?;
        p.finish().await?;
        let after = env.settled(&base, "cancelled requests").await?;
        ensure_deltas!("cancelled requests", after.m, before.m, {
            connections_accepted: 1,
            connections_closed: 1,
            tunnel_requests: n as u64,
            tunnels_established: 0,
            tunnels_refused: 0,
            sessions_opened: n as u64,
            sessions_closed: n as u64,
        });
        env.fresh_tunnel(Transport::H2, &base, "cancelled requests")
            .await?;
        env.node.node.shutdown().await;
        Ok(())
    })
}
