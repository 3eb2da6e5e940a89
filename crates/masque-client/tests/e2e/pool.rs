//! The connection pool against the real node: tunnels share pooled HTTP/3
//! and HTTP/2 connections (counted by the node), the pool dials a second
//! connection at the peer's stream limit, an idle connection is closed and
//! forgotten, a crashed session gives its slot back, a failed dial reaches
//! every checkout waiting for it, HTTP/1.1 is never pooled. Each test has
//! a pool of its own; every wait is bounded.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use masque_client::{
    ClientError, ClientOptions, MaxStreams, PoolConfig, ProxyClient, Target, TcpMode,
    TransportChoice, UdpSession, UpstreamPool, pool::PoolError,
};
use masque_server::{
    Node, Proxy, QuicMtu, ServerConfig, TcpProxyConfig, UdpProxyConfig, policy::AddressPolicy,
};
use masque_transport::{
    Transport,
    tls::{DevCert, ServerVerification},
};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, UdpSocket},
};

use crate::{exchange, within};

const MTU: QuicMtu = QuicMtu {
    initial: 1452,
    min: 1452,
};

struct PoolNode {
    node: Node,
    cert: DevCert,
}

impl PoolNode {
    async fn start(max_tunnels_per_connection: usize) -> anyhow::Result<Self> {
        let cert = DevCert::ephemeral()?;
        let proxy = UdpProxyConfig {
            policy: AddressPolicy {
                allow_private: true,
                own_addresses: vec![],
            },
            ..Default::default()
        };
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            drain_timeout: Duration::from_secs(2),
            quic_mtu: MTU,
            max_tunnels_per_connection,
            ..Default::default()
        };
        let handler = Arc::new(Proxy::new(proxy, TcpProxyConfig::default()));
        let node = Node::start(config, &cert.server_tls(), handler).await?;
        Ok(Self { node, cert })
    }

    fn url(&self, t: Transport) -> String {
        let addr = match t {
            Transport::H3 => self.node.local_addr(),
            _ => self.node.tcp_addr().expect("TCP"),
        };
        format!("https://localhost:{}", addr.port())
    }

    fn options(&self, t: Transport) -> ClientOptions {
        ClientOptions {
            transport: TransportChoice::from(t),
            verification: ServerVerification::CustomCa(vec![self.cert.cert_der().clone()]),
            initial_mtu: MTU.initial,
            min_mtu: MTU.min,
            ..Default::default()
        }
    }

    fn client(&self, t: Transport, pool: &UpstreamPool) -> anyhow::Result<ProxyClient> {
        Ok(ProxyClient::new_in(&self.url(t), self.options(t), pool)?)
    }

    /// Connections the node accepted over `t`.
    fn connections(&self, t: Transport) -> u64 {
        self.node.metrics().transport(t).snapshot().connections
    }

    async fn shutdown(self) {
        within(self.node.shutdown()).await;
    }
}

async fn udp_echo() -> anyhow::Result<SocketAddr> {
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    let addr = sock.local_addr()?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let _ = sock.send_to(&buf[..n], from).await;
        }
    });
    Ok(addr)
}

fn udp(addr: SocketAddr) -> Target {
    Target::udp(addr.ip().to_string(), addr.port())
}

/// Slots in use on each owner alive, in no particular order.
async fn in_use(pool: &UpstreamPool) -> anyhow::Result<Vec<usize>> {
    let owners = pool.owners().await?;
    Ok(owners.iter().map(|o| o.info().streams_in_use).collect())
}

/// Polls `f` every 20 ms until it holds, for at most 10 s.
async fn eventually<F, Fut>(what: &str, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + crate::WAIT;
    while tokio::time::Instant::now() < deadline {
        if f().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("timed out waiting for {what}")
}

/// `n` tunnels opened at once on `client`, each with one echo.
async fn open_many(
    client: &ProxyClient,
    echo: SocketAddr,
    n: u32,
) -> anyhow::Result<Vec<UdpSession>> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let client = client.clone();
        tasks.spawn(async move {
            let mut s = client.connect_udp(&udp(echo)).await?;
            let msg = format!("pooled tunnel {i}");
            exchange(&mut s, msg.as_bytes(), msg.as_bytes()).await?;
            Ok::<_, ClientError>(s)
        });
    }
    let mut sessions = Vec::new();
    while let Some(r) = within(tasks.join_next()).await {
        sessions.push(r??);
    }
    Ok(sessions)
}

#[tokio::test(flavor = "multi_thread")]
async fn hundred_tunnels_share_one_h3_connection() -> anyhow::Result<()> {
    hundred_tunnels_share_one_connection(Transport::H3).await
}

#[tokio::test(flavor = "multi_thread")]
async fn hundred_tunnels_share_one_h2_connection() -> anyhow::Result<()> {
    hundred_tunnels_share_one_connection(Transport::H2).await
}

/// 100 tunnels, opened at once through one pool (so 99 checkouts wait for
/// the first dial), ride one connection; dropping them frees every slot.
async fn hundred_tunnels_share_one_connection(t: Transport) -> anyhow::Result<()> {
    let node = PoolNode::start(100).await?;
    let echo = udp_echo().await?;
    let pool = UpstreamPool::spawn(PoolConfig::default()).await?;
    let client = node.client(t, &pool)?;
    let sessions = open_many(&client, echo, 100).await?;
    assert_eq!(sessions.len(), 100);
    assert_eq!(
        node.connections(t),
        1,
        "{t}: the node accepted one connection"
    );
    let owners = pool.owners().await?;
    assert_eq!(owners.len(), 1, "{t}");
    let info = owners[0].info();
    assert_eq!(info.transport, t);
    assert_eq!(info.streams_in_use, 100);
    if t == Transport::H2 {
        // SETTINGS_MAX_CONCURRENT_STREAMS of the node.
        assert_eq!(info.max_streams, Some(100));
    }
    let stream_ids: std::collections::HashSet<u64> =
        sessions.iter().map(|s| s.info().stream_id).collect();
    assert_eq!(stream_ids.len(), 100, "one stream each");
    drop(sessions);
    eventually("every slot back", || async {
        Ok(in_use(&pool).await? == vec![0])
    })
    .await?;
    // The next tunnel reuses the warm connection.
    let mut s = within(client.connect_udp(&udp(echo))).await?;
    within(exchange(&mut s, b"again", b"again")).await?;
    assert_eq!(node.connections(t), 1, "{t}");
    pool.stop();
    node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn eleventh_tunnel_opens_a_second_h3_connection() -> anyhow::Result<()> {
    second_owner_at_peer_limit(Transport::H3).await
}

#[tokio::test(flavor = "multi_thread")]
async fn eleventh_tunnel_opens_a_second_h2_connection() -> anyhow::Result<()> {
    second_owner_at_peer_limit(Transport::H2).await
}

/// The node allows 10 tunnels per connection (HTTP/2: its
/// SETTINGS_MAX_CONCURRENT_STREAMS; HTTP/3: a 503 `connection_limit_reached`
/// for the 11th, which the owner learns from): 11 tunnels take two.
async fn second_owner_at_peer_limit(t: Transport) -> anyhow::Result<()> {
    let node = PoolNode::start(10).await?;
    let echo = udp_echo().await?;
    let pool = UpstreamPool::spawn(PoolConfig::default()).await?;
    let client = node.client(t, &pool)?;
    let mut sessions = open_many(&client, echo, 10).await?;
    assert_eq!(node.connections(t), 1, "{t}");
    let mut eleventh = within(client.connect_udp(&udp(echo))).await?;
    within(exchange(&mut eleventh, b"eleven", b"eleven")).await?;
    assert_eq!(node.connections(t), 2, "{t}: a second connection");
    let mut counts = in_use(&pool).await?;
    counts.sort_unstable();
    assert_eq!(counts, vec![1, 10], "{t}");
    for o in pool.owners().await? {
        let info = o.info();
        if info.streams_in_use == 10 {
            assert_eq!(info.max_streams, Some(10), "{t}: the peer's limit");
        }
    }
    // Every tunnel still carries its traffic.
    for s in &mut sessions {
        within(exchange(s, b"still", b"still")).await?;
    }
    pool.stop();
    node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connection_is_closed_and_forgotten() -> anyhow::Result<()> {
    let t = Transport::H3;
    let node = PoolNode::start(100).await?;
    let echo = udp_echo().await?;
    let config = PoolConfig {
        idle_timeout: Some(Duration::from_millis(300)),
        ..Default::default()
    };
    let pool = UpstreamPool::spawn(config).await?;
    let client = node.client(t, &pool)?;
    let mut s = within(client.connect_udp(&udp(echo))).await?;
    within(exchange(&mut s, b"idle", b"idle")).await?;
    let owner = pool.owners().await?.pop().expect("one owner");
    let conn = owner.connection().clone();
    // Busy for longer than the idle timeout: the timer is not armed.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(pool.owners().await?.len(), 1);
    assert!(!conn.is_closed());
    within(s.close()).await;
    assert!(owner.info().idle_since.is_some());
    eventually("the idle owner forgotten", || async {
        Ok(pool.owners().await?.is_empty())
    })
    .await?;
    assert!(conn.is_closed(), "the owner closed its connection");
    eventually("the node saw the close", || async {
        Ok(node.node.metrics().snapshot().connections_closed == 1)
    })
    .await?;
    // A new checkout dials again.
    let mut s = within(client.connect_udp(&udp(echo))).await?;
    within(exchange(&mut s, b"fresh", b"fresh")).await?;
    assert_eq!(node.connections(t), 2);
    pool.stop();
    node.shutdown().await;
    Ok(())
}

/// A test actor holding a session in its state; `Panic` makes it fail.
struct Holder;

enum HolderMsg {
    Hold(Box<UdpSession>),
    Panic,
}

impl Actor for Holder {
    type Msg = HolderMsg;
    type State = Option<Box<UdpSession>>;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<HolderMsg>,
        _args: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(None)
    }

    async fn handle(
        &self,
        _myself: ActorRef<HolderMsg>,
        msg: HolderMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HolderMsg::Hold(s) => *state = Some(s),
            HolderMsg::Panic => panic!("session actor crashes on purpose"),
        }
        Ok(())
    }
}

/// Two sessions crash: one that panics with its tunnel in its state (the
/// lease goes with the state), one that is killed while its tunnel lives on
/// elsewhere (the owner's monitor gives the slot back). A later drop of that
/// tunnel does not release twice.
#[tokio::test(flavor = "multi_thread")]
async fn crashed_sessions_give_their_slots_back() -> anyhow::Result<()> {
    let t = Transport::H3;
    let node = PoolNode::start(100).await?;
    let echo = udp_echo().await?;
    let pool = UpstreamPool::spawn(PoolConfig::default()).await?;
    let client = node.client(t, &pool)?;
    let mut steady = within(client.connect_udp(&udp(echo))).await?;
    let (panicker, panicker_task) = Actor::spawn(None, Holder, ()).await?;
    let (killed, killed_task) = Actor::spawn(None, Holder, ()).await?;
    let held = within(client.held_by(panicker.get_cell()).connect_udp(&udp(echo))).await?;
    panicker.cast(HolderMsg::Hold(Box::new(held)))?;
    let orphan = within(client.held_by(killed.get_cell()).connect_udp(&udp(echo))).await?;
    eventually("three slots", || async {
        Ok(in_use(&pool).await? == vec![3])
    })
    .await?;

    panicker.cast(HolderMsg::Panic)?;
    within(panicker_task).await?;
    eventually("the panicked session's slot back", || async {
        Ok(in_use(&pool).await? == vec![2])
    })
    .await?;

    killed.kill();
    within(killed_task).await?;
    eventually("the killed session's slot back", || async {
        Ok(in_use(&pool).await? == vec![1])
    })
    .await?;
    // Its tunnel still exists; dropping it now gives back nothing more.
    drop(orphan);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(in_use(&pool).await?, vec![1]);
    within(exchange(&mut steady, b"unaffected", b"unaffected")).await?;
    drop(steady);
    eventually("no slot held", || async {
        Ok(in_use(&pool).await? == vec![0])
    })
    .await?;
    assert_eq!(node.connections(t), 1);
    assert_eq!(pool.close_all().await?, 1);
    eventually("the node saw the close", || async {
        Ok(node.node.metrics().snapshot().connections_closed == 1)
    })
    .await?;
    eventually("the pool forgot the owner", || async {
        Ok(pool.owners().await?.is_empty())
    })
    .await?;
    pool.stop();
    node.shutdown().await;
    Ok(())
}

/// Checkouts waiting for one dial all get its error.
#[tokio::test(flavor = "multi_thread")]
async fn failed_dial_reaches_every_waiter() -> anyhow::Result<()> {
    // A TCP port with nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let pool = UpstreamPool::spawn(PoolConfig::default()).await?;
    let options = ClientOptions {
        transport: TransportChoice::H2,
        connect_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let client = ProxyClient::new_in(
        &format!("https://127.0.0.1:{}", closed.port()),
        options,
        &pool,
    )?;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let client = client.clone();
        tasks.spawn(async move { client.connect_udp(&Target::udp("127.0.0.1", 9)).await });
    }
    let mut errors = 0;
    while let Some(r) = within(tasks.join_next()).await {
        let err = r?.expect_err("nobody listens");
        assert!(
            matches!(err, ClientError::Pool(PoolError::Dial(_))),
            "{err}"
        );
        errors += 1;
    }
    assert_eq!(errors, 5);
    assert!(pool.owners().await?.is_empty());
    pool.stop();
    Ok(())
}

/// HTTP/1.1 is never pooled: each tunnel has its own connection.
#[tokio::test(flavor = "multi_thread")]
async fn h1_is_not_pooled() -> anyhow::Result<()> {
    let t = Transport::H1;
    let node = PoolNode::start(100).await?;
    let echo = udp_echo().await?;
    let pool = UpstreamPool::spawn(PoolConfig::default()).await?;
    let client = node.client(t, &pool)?;
    let sessions = open_many(&client, echo, 3).await?;
    assert_eq!(node.connections(t), 3);
    assert!(pool.owners().await?.is_empty());
    drop(sessions);
    pool.stop();
    node.shutdown().await;
    Ok(())
}

/// The process-wide pool serves `ProxyClient::new`; a fixed limit below
/// the peer's is kept.
#[tokio::test(flavor = "multi_thread")]
async fn global_pool_and_fixed_limit() -> anyhow::Result<()> {
    let t = Transport::H2;
    let node = PoolNode::start(100).await?;
    let echo = udp_echo().await?;
    let client = ProxyClient::new(&node.url(t), node.options(t))?;
    let mut s = within(client.connect_udp(&udp(echo))).await?;
    within(exchange(&mut s, b"global", b"global")).await?;
    let global = UpstreamPool::global().await?;
    let key = client.pool_key().expect("pooled").clone();
    let mine: Vec<_> = global
        .owners()
        .await?
        .into_iter()
        .filter(|o| o.info().key == key)
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].info().streams_in_use, 1);
    drop(s);

    let config = PoolConfig {
        max_streams: MaxStreams::Limit(2),
        ..Default::default()
    };
    let pool = UpstreamPool::spawn(config).await?;
    let client = node.client(t, &pool)?;
    let _sessions = open_many(&client, echo, 3).await?;
    let mut counts = in_use(&pool).await?;
    counts.sort_unstable();
    assert_eq!(counts, vec![1, 2]);
    pool.stop();
    node.shutdown().await;
    Ok(())
}

/// A TCP echo target on loopback.
async fn tcp_echo() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(addr)
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_and_udp_tunnels_share_a_pooled_h3_connection() -> anyhow::Result<()> {
    tcp_and_udp_share(Transport::H3).await
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_and_udp_tunnels_share_a_pooled_h2_connection() -> anyhow::Result<()> {
    tcp_and_udp_share(Transport::H2).await
}

/// connect-tcp and classic CONNECT tunnels take slots on the same pooled
/// connection as connect-udp ones, and give them back when dropped.
async fn tcp_and_udp_share(t: Transport) -> anyhow::Result<()> {
    let node = PoolNode::start(100).await?;
    let (echo, tcp) = (udp_echo().await?, tcp_echo().await?);
    let pool = UpstreamPool::spawn(PoolConfig::default()).await?;
    let client = node.client(t, &pool)?;
    let mut u = within(client.connect_udp(&udp(echo))).await?;
    within(exchange(&mut u, b"udp", b"udp")).await?;
    let target = Target::tcp(tcp.ip().to_string(), tcp.port());
    let mut tunnels = Vec::new();
    for mode in [TcpMode::ConnectTcp, TcpMode::Classic] {
        let mut tunnel = within(client.connect_tcp(&target, mode)).await?;
        tunnel.write_all(b"through the pool").await?;
        let mut back = [0u8; 16];
        within(tunnel.read_exact(&mut back)).await?;
        assert_eq!(&back, b"through the pool", "{t} {mode:?}");
        tunnels.push(tunnel);
    }
    assert_eq!(in_use(&pool).await?, vec![3], "{t}");
    assert_eq!(node.connections(t), 1, "{t}");
    // A split tunnel holds its slot until both halves are gone.
    let (read, write) = tunnels.pop().expect("two tunnels").into_split();
    drop(read);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        in_use(&pool).await?,
        vec![3],
        "{t}: the write half holds it"
    );
    drop(write);
    assert_eq!(in_use(&pool).await?, vec![2], "{t}");
    drop(tunnels);
    eventually("the TCP tunnels' slots back", || async {
        Ok(in_use(&pool).await? == vec![1])
    })
    .await?;
    pool.stop();
    node.shutdown().await;
    Ok(())
}

/// `TransportChoice::Auto` dials through the racer (HTTP/3 wins on
/// loopback) and the winner is pooled like any other connection.
#[tokio::test(flavor = "multi_thread")]
async fn auto_races_once_and_pools_the_winner() -> anyhow::Result<()> {
    let node = PoolNode::start(100).await?;
    let echo = udp_echo().await?;
    let pool = UpstreamPool::spawn(PoolConfig::default()).await?;
    let options = ClientOptions {
        transport: TransportChoice::Auto,
        ..node.options(Transport::H3)
    };
    // HTTP/2 and HTTP/1.1 race to the TCP listener at the same port number
    // only when it is free; the HTTP/3 URL names the UDP port.
    let client = ProxyClient::new_in(&node.url(Transport::H3), options, &pool)?;
    let sessions = open_many(&client, echo, 5).await?;
    let owners = pool.owners().await?;
    assert_eq!(owners.len(), 1);
    let info = owners[0].info();
    assert_eq!(info.key.transport, TransportChoice::Auto);
    assert_eq!(info.streams_in_use, 5);
    // Every tunnel rides the winner.
    assert_eq!(
        node.node
            .metrics()
            .transport(info.transport)
            .snapshot()
            .tunnels,
        5
    );
    drop(sessions);
    pool.stop();
    node.shutdown().await;
    Ok(())
}

/// The process-wide pool outlives no runtime: a runtime that shut down took
/// its pool (and owners) with it, and the next runtime's client gets a new
/// one instead of the dead one.
#[test]
fn global_pool_survives_its_runtime() -> anyhow::Result<()> {
    for round in 0..2 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        rt.block_on(async {
            let t = Transport::H3;
            let node = PoolNode::start(100).await?;
            let echo = udp_echo().await?;
            let client = ProxyClient::new(&node.url(t), node.options(t))?;
            let mut s = within(client.connect_udp(&udp(echo))).await?;
            within(exchange(&mut s, b"round", b"round")).await?;
            assert_eq!(node.connections(t), 1, "round {round}");
            drop(s);
            node.shutdown().await;
            anyhow::Ok(())
        })?;
        rt.shutdown_timeout(Duration::from_secs(2));
    }
    Ok(())
}

/// When the pooled connection closes, its owner stops, the pool forgets it
/// and the tunnels on it end; the next tunnel dials anew.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_connection_ends_its_owner_and_tunnels() -> anyhow::Result<()> {
    for t in [Transport::H3, Transport::H2] {
        let node = PoolNode::start(100).await?;
        let echo = udp_echo().await?;
        let pool = UpstreamPool::spawn(PoolConfig::default()).await?;
        let client = node.client(t, &pool)?;
        let mut s = within(client.connect_udp(&udp(echo))).await?;
        within(exchange(&mut s, b"before", b"before")).await?;
        let owner = pool.owners().await?.pop().expect("one owner");
        // The connection ends under the owner (here: closed locally).
        owner.connection().close();
        assert_eq!(within(s.recv()).await, None, "{t}: the tunnel ended");
        eventually("the owner forgotten", || async {
            Ok(pool.owners().await?.is_empty())
        })
        .await?;
        let mut s = within(client.connect_udp(&udp(echo))).await?;
        within(exchange(&mut s, b"after", b"after")).await?;
        assert_eq!(node.connections(t), 2, "{t}");
        pool.stop();
        node.shutdown().await;
    }
    Ok(())
}

/// connect-ip sessions take slots on the same pooled connection as
/// connect-udp ones (the node serves CONNECT-IP from an address pool).
#[tokio::test(flavor = "multi_thread")]
async fn ip_sessions_share_a_pooled_connection() -> anyhow::Result<()> {
    use masque_client::IpTarget;
    use masque_server::{
        IpProxy, IpProxyConfig,
        ip::{IpPrefix as AddressPool, QueueEgress},
    };
    for t in [Transport::H3, Transport::H2] {
        let cert = DevCert::ephemeral()?;
        let udp_config = UdpProxyConfig {
            policy: AddressPolicy {
                allow_private: true,
                own_addresses: vec![],
            },
            ..Default::default()
        };
        let egress = Arc::new(QueueEgress::new(64, 1500));
        let ip = IpProxy::new(
            IpProxyConfig {
                pools: vec![AddressPool::parse("10.88.0.0/24")?],
                ..Default::default()
            },
            egress,
        )?;
        let handler = Proxy::new(udp_config, TcpProxyConfig::default()).with_ip(ip);
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            drain_timeout: Duration::from_secs(2),
            quic_mtu: MTU,
            ..Default::default()
        };
        let node = PoolNode {
            node: Node::start(config, &cert.server_tls(), Arc::new(handler)).await?,
            cert,
        };
        let echo = udp_echo().await?;
        let pool = UpstreamPool::spawn(PoolConfig::default()).await?;
        let client = node.client(t, &pool)?;
        let mut u = within(client.connect_udp(&udp(echo))).await?;
        within(exchange(&mut u, b"udp", b"udp")).await?;
        let mut ips = Vec::new();
        for _ in 0..3 {
            ips.push(within(client.connect_ip(&IpTarget::ANY)).await?);
        }
        assert_eq!(in_use(&pool).await?, vec![4], "{t}");
        assert_eq!(node.connections(t), 1, "{t}");
        assert_eq!(
            node.node.metrics().transport(t).snapshot().tunnels,
            4,
            "{t}"
        );
        drop(ips);
        eventually("the IP sessions' slots back", || async {
            Ok(in_use(&pool).await? == vec![1])
        })
        .await?;
        pool.stop();
        node.shutdown().await;
    }
    Ok(())
}
