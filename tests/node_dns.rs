//! The DNS budget (issue "Hard to break" §5): lookups in flight are bounded
//! node-wide and per client connection, below tokio's blocking pool, so slow
//! names cannot take every lookup thread. A lookup over the budget is refused
//! at once with 503 + `connection_limit_reached`; tunnels to literal
//! addresses never wait for the budget; a lookup keeps its share until its
//! work ends, even after its request got 504 `dns_timeout`; and the budget
//! comes back when the slow lookups end. Every wait is bounded.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use masque_client::{ClientError, ProxyClient, Target, UdpSession};
use masque_server::{
    UdpProxy, UdpProxyConfig,
    policy::AddressPolicy,
    resolver::{LookupLimits, LookupPermit, ResolveError, Resolver},
};
use masque_tests::{
    init_tracing,
    node::{TestNode, eventually, expect_refusal, udp_echo},
    per_transport,
    transport::{self, Transport, echo_tag, options_for, url},
    within,
};
use tokio::sync::watch;

per_transport!(
    lookups_over_the_node_budget_are_503_at_once,
    timed_out_lookups_keep_their_budget_until_they_end,
);

mod per_connection {
    use masque_tests::transport::Transport;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn h3() -> anyhow::Result<()> {
        super::lookups_over_the_connection_budget_are_503(Transport::H3).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn h2() -> anyhow::Result<()> {
        super::lookups_over_the_connection_budget_are_503(Transport::H2).await
    }
}

/// Stalls until the gate opens, then resolves to the echo target.
const SLOW: &str = "slow.example";
/// Resolves at once to the echo target.
const FAST: &str = "fast.example";
/// A refusal over the budget must come well before any DNS timeout.
const FAST_REFUSAL: Duration = Duration::from_secs(2);

/// [`SLOW`] waits for the gate; [`FAST`] answers at once; other names are
/// NXDOMAIN. With `detached`, a lookup's work runs on a task of its own that
/// holds the budget permit, like getaddrinfo on a blocking thread: giving
/// up on the lookup (timeout, cancellation) does not end the work.
struct GateResolver {
    ip: IpAddr,
    open: watch::Sender<bool>,
    detached: bool,
    /// [`SLOW`] lookups whose work has not ended.
    stalled: Arc<AtomicUsize>,
}

/// Counts one stalled lookup until dropped.
struct Stalled(Arc<AtomicUsize>);

impl Drop for Stalled {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl GateResolver {
    fn new(ip: IpAddr, detached: bool) -> Arc<Self> {
        Arc::new(Self {
            ip,
            open: watch::channel(false).0,
            detached,
            stalled: Arc::default(),
        })
    }

    fn stalled(&self) -> usize {
        self.stalled.load(Ordering::SeqCst)
    }

    fn release(&self) {
        self.open.send_replace(true);
    }

    /// The work of one [`SLOW`] lookup: counted while it waits for the gate.
    fn slow_work(&self) -> impl Future<Output = ()> + Send + 'static {
        self.stalled.fetch_add(1, Ordering::SeqCst);
        let stalled = Stalled(Arc::clone(&self.stalled));
        let mut open = self.open.subscribe();
        async move {
            let _stalled = stalled;
            let _ = open.wait_for(|open| *open).await;
        }
    }
}

#[async_trait::async_trait]
impl Resolver for GateResolver {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        if host.eq_ignore_ascii_case(SLOW) {
            self.slow_work().await;
        } else if !host.eq_ignore_ascii_case(FAST) {
            return Err(ResolveError::NotFound);
        }
        Ok(vec![SocketAddr::new(self.ip, port)])
    }

    async fn resolve_holding(
        &self,
        host: &str,
        port: u16,
        permit: LookupPermit,
    ) -> Result<Vec<SocketAddr>, ResolveError> {
        if !(self.detached && host.eq_ignore_ascii_case(SLOW)) {
            let _permit = permit;
            return self.resolve(host, port).await;
        }
        let work = self.slow_work();
        // Not aborted when this future is dropped: the "thread" stays busy.
        let _ = tokio::spawn(async move {
            let _permit = permit;
            work.await;
        })
        .await;
        Ok(vec![SocketAddr::new(self.ip, port)])
    }
}

/// A node whose UDP proxy resolves with `resolver` within `limits`.
async fn start(
    resolver: Arc<GateResolver>,
    limits: LookupLimits,
    dns_timeout: Duration,
) -> Result<TestNode> {
    let proxy = UdpProxy::new(UdpProxyConfig {
        policy: AddressPolicy {
            allow_private: true,
            own_addresses: vec![],
        },
        dns_timeout,
        resolver,
        lookups: limits,
        ..Default::default()
    });
    TestNode::with_handler_config(Arc::new(proxy), |_| {}).await
}

/// A tunnel request to `host` on a connection of its own, within
/// [`WAIT`](masque_tests::WAIT).
async fn try_connect(
    node: &TestNode,
    t: Transport,
    host: &str,
    port: u16,
) -> Result<Result<UdpSession, ClientError>> {
    transport::try_connect(node, t, Target::udp(host, port), options_for(node, t)).await
}

/// A request over the budget: 503 `connection_limit_reached`, quickly.
async fn expect_budget_refusal(
    what: &str,
    request: impl Future<Output = Result<Result<UdpSession, ClientError>>>,
) -> Result<()> {
    let started = Instant::now();
    let refused = request.await?;
    let took = started.elapsed();
    expect_refusal(refused, 503, "connection_limit_reached").context(what.to_owned())?;
    ensure!(took < FAST_REFUSAL, "{what}: refused after {took:?}");
    Ok(())
}

/// §5: with `max_concurrent_lookups` = N lookups stalled, the N+1th is
/// refused 503 at once (counted), while a tunnel to a literal address still
/// works; once the stalled ones end (their tunnels open), names resolve
/// again.
async fn lookups_over_the_node_budget_are_503_at_once(t: Transport) -> Result<()> {
    init_tracing();
    const N: usize = 3;
    let echo_addr = udp_echo().await?;
    let resolver = GateResolver::new(echo_addr.ip(), false);
    let limits = LookupLimits {
        max_concurrent_lookups: N,
        max_concurrent_lookups_per_connection: 8,
    };
    let node = Arc::new(start(Arc::clone(&resolver), limits, Duration::from_secs(30)).await?);
    let stalled: Vec<_> = (0..N)
        .map(|_| {
            let node = Arc::clone(&node);
            tokio::spawn(async move { try_connect(&node, t, SLOW, echo_addr.port()).await })
        })
        .collect();
    eventually("N lookups stalled", Duration::from_secs(10), || {
        resolver.stalled() == N
    })
    .await?;
    let refused_before = node.node.metrics().snapshot().tunnels_refused_limit;

    expect_budget_refusal(
        "the lookup over the node budget",
        try_connect(&node, t, FAST, echo_addr.port()),
    )
    .await
    .context(t)?;
    assert_eq!(
        node.node.metrics().snapshot().tunnels_refused_limit,
        refused_before + 1,
        "{t}: the refusal is counted"
    );
    let mut literal = try_connect(&node, t, &echo_addr.ip().to_string(), echo_addr.port())
        .await?
        .context("a literal-address tunnel while the budget is spent")?;
    echo_tag(&mut literal, b"literal").await.context(t)?;
    assert_eq!(resolver.stalled(), N, "{t}: still stalled");

    resolver.release();
    for (i, s) in stalled.into_iter().enumerate() {
        let mut s = within("a stalled request", s)
            .await???
            .with_context(|| format!("{t}: stalled lookup {i} after release"))?;
        echo_tag(&mut s, format!("stalled {i}").as_bytes()).await?;
    }
    let mut named = try_connect(&node, t, FAST, echo_addr.port())
        .await?
        .context("a name after the budget came back")?;
    echo_tag(&mut named, b"named").await.context(t)?;
    let node = Arc::into_inner(node).context("the requests are done")?;
    within("node shutdown", node.node.shutdown()).await?;
    Ok(())
}

/// §5: a lookup over `dns_timeout` is 504 `dns_timeout`, but its work (a
/// blocking thread, for the system resolver) keeps its share of the budget
/// until it ends: with N timed out and still running, the next lookup is
/// 503; when they end, lookups work again.
async fn timed_out_lookups_keep_their_budget_until_they_end(t: Transport) -> Result<()> {
    init_tracing();
    const N: usize = 2;
    let echo_addr = udp_echo().await?;
    let resolver = GateResolver::new(echo_addr.ip(), true);
    let limits = LookupLimits {
        max_concurrent_lookups: N,
        max_concurrent_lookups_per_connection: 8,
    };
    let node = start(Arc::clone(&resolver), limits, Duration::from_millis(200)).await?;
    for i in 0..N {
        let timed_out = try_connect(&node, t, SLOW, echo_addr.port()).await?;
        expect_refusal(timed_out, 504, "dns_timeout")
            .with_context(|| format!("{t}: lookup {i}"))?;
    }
    assert_eq!(resolver.stalled(), N, "{t}: the timed-out work still runs");
    expect_budget_refusal(
        "a lookup while timed-out ones still run",
        try_connect(&node, t, FAST, echo_addr.port()),
    )
    .await
    .context(t)?;
    let mut literal = try_connect(&node, t, &echo_addr.ip().to_string(), echo_addr.port())
        .await?
        .context("a literal-address tunnel while the budget is spent")?;
    echo_tag(&mut literal, b"literal").await.context(t)?;

    resolver.release();
    eventually("the stalled work ended", Duration::from_secs(10), || {
        resolver.stalled() == 0
    })
    .await?;
    let mut named = try_connect(&node, t, FAST, echo_addr.port())
        .await?
        .context("a name after the timed-out lookups ended")?;
    echo_tag(&mut named, b"named").await.context(t)?;
    within("node shutdown", node.node.shutdown()).await?;
    Ok(())
}

/// §5: one connection may have `max_concurrent_lookups_per_connection`
/// lookups in flight; its next is 503 while another connection's lookups
/// still resolve. (HTTP/3 and HTTP/2: HTTP/1.1 has one tunnel per
/// connection.)
async fn lookups_over_the_connection_budget_are_503(t: Transport) -> Result<()> {
    init_tracing();
    const PER_CONNECTION: usize = 2;
    let echo_addr = udp_echo().await?;
    let resolver = GateResolver::new(echo_addr.ip(), false);
    let limits = LookupLimits {
        max_concurrent_lookups: 64,
        max_concurrent_lookups_per_connection: PER_CONNECTION,
    };
    let node = start(Arc::clone(&resolver), limits, Duration::from_secs(30)).await?;
    let client = Arc::new(
        within(
            "connect",
            ProxyClient::connect(&url(&node, t), options_for(&node, t)),
        )
        .await??,
    );
    let stalled: Vec<_> = (0..PER_CONNECTION)
        .map(|_| {
            let client = Arc::clone(&client);
            let target = Target::udp(SLOW, echo_addr.port());
            tokio::spawn(async move { within("a stalled request", client.open_udp(&target)).await })
        })
        .collect();
    eventually(
        "the connection's lookups stalled",
        Duration::from_secs(10),
        || resolver.stalled() == PER_CONNECTION,
    )
    .await?;

    let target = Target::udp(FAST, echo_addr.port());
    expect_budget_refusal("the connection's lookup over its budget", async {
        within("the tunnel request", client.open_udp(&target)).await
    })
    .await
    .context(t)?;
    let mut other = try_connect(&node, t, FAST, echo_addr.port())
        .await?
        .context("another connection's lookup")?;
    echo_tag(&mut other, b"other").await.context(t)?;

    resolver.release();
    for (i, s) in stalled.into_iter().enumerate() {
        let mut s = within("a stalled request", s)
            .await???
            .with_context(|| format!("{t}: stalled lookup {i} after release"))?;
        echo_tag(&mut s, format!("stalled {i}").as_bytes()).await?;
    }
    let mut again = within("the tunnel request", client.open_udp(&target))
        .await?
        .context("the connection's lookup after release")?;
    echo_tag(&mut again, b"again").await.context(t)?;
    within("node shutdown", node.node.shutdown()).await?;
    Ok(())
}
