//! The transport race of `TransportChoice::Auto` (`masque_client::race_connect`)
//! across a veth link between two network namespaces the test creates and
//! deletes (root and iproute2 needed; without root it says so and passes):
//! a client namespace and a node namespace whose node serves HTTP/3 on its
//! own loopback, reached only through a UDP relay that can drop everything
//! (a firewall blocking UDP: no nftables or iptables needed).
//!
//! 1. UDP dropped → HTTP/2 wins, within its head start plus a margin;
//! 2. UDP dropped and a TLS front offering only `http/1.1` → HTTP/2 fails
//!    at once (no_application_protocol) and HTTP/1.1 wins without waiting
//!    out its head start;
//! 3. nothing listening → one error naming each transport's failure, within
//!    the deadline;
//! 4. the winner is remembered: with UDP open again, the next race to the
//!    same proxy goes to HTTP/2 and sends not one UDP datagram (the relay
//!    and the node's HTTP/3 connection count tell); another TLS identity is
//!    another proxy, whose race HTTP/3 wins;
//! 5. a failure of the remembered transport forgets it: the race goes on at
//!    once with the next one, and remembers the new winner.
//!
//! `race_on_loopback` (no root needed) checks the same fallback through
//! `ProxyClient::connect` with `TransportChoice::Auto`.
//!
//! Tunnels opened on the winners carry a datagram to an echo and back.

#[path = "racer_fixture.rs"]
mod fixture;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use masque_client::{
    ClientError, ClientOptions, ProxyClient, RaceOptions, Target, TransportChoice, UdpSession,
    race_connect,
};
use masque_server::{Metrics, TcpListen};
use masque_tests::{
    WAIT, init_tracing,
    netns::{NetNs, veth},
    node::{TestNode, eventually, udp_echo},
    within,
};
use masque_transport::{ClientConnection, Transport, tls::ServerVerification};

use fixture::{UdpRelay, h1_only_front};

const CLIENT_CIDR: &str = "10.91.0.1/24";
const NODE_CIDR: &str = "10.91.0.2/24";
const NODE: &str = "10.91.0.2";
/// HTTP/2 and HTTP/1.1 of the node itself; HTTP/3 through the relay.
const PORT: u16 = 4433;
/// The HTTP/1.1-only front; UDP dropped.
const H1_ONLY_PORT: u16 = 4434;
/// Nothing listens here, on either protocol.
const CLOSED_PORT: u16 = 4435;
/// What a loaded 2-core machine may add to a handshake on the link.
const MARGIN: Duration = Duration::from_millis(750);
const LIMIT: Duration = Duration::from_secs(60);

/// What the node's namespace hands the client's.
struct NodeSide {
    pin: [u8; 32],
    echo: SocketAddr,
    metrics: Arc<Metrics>,
    relay_dropping: Arc<AtomicBool>,
    relay_received: Arc<AtomicU64>,
    /// UDP to the HTTP/1.1-only front, and the front's refusal switch.
    h1_only_dropping: Arc<AtomicBool>,
    h1_only_refusing: Arc<AtomicBool>,
}

#[test]
fn race_falls_back_reports_and_remembers() -> Result<()> {
    init_tracing();
    // SAFETY: geteuid(2) takes no arguments, touches no memory and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: network namespaces need root");
        return Ok(());
    }
    let client_ns = NetNs::create("racec")?;
    let node_ns = NetNs::create("racen")?;
    veth(&client_ns, CLIENT_CIDR, &node_ns, NODE_CIDR, 1500)?;

    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node_side = node_ns.run(move || async move {
        let node_tcp: SocketAddr = format!("{NODE}:{PORT}").parse()?;
        let node = TestNode::start_with(true, None, |c| {
            // HTTP/3 on the namespace's loopback: clients reach it only
            // through the relay.
            c.listen = "127.0.0.1:0".parse().expect("address");
            c.tcp_listen = TcpListen::At(node_tcp);
        })
        .await?;
        let quic = node.node.local_addr();
        let relay = UdpRelay::start(node_tcp, quic, true).await?;
        ensure!(relay.addr == node_tcp, "the relay is on {}", relay.addr);
        let h1_only: SocketAddr = format!("{NODE}:{H1_ONLY_PORT}").parse()?;
        let h1_only_relay = UdpRelay::start(h1_only, quic, true).await?;
        let (_, h1_only_refusing) = h1_only_front(h1_only, node_tcp, &node.cert).await?;
        let echo = udp_echo().await?;
        ready_tx.send(NodeSide {
            pin: node.cert.fingerprint_sha256(),
            echo,
            metrics: Arc::clone(node.node.metrics()),
            relay_dropping: Arc::clone(&relay.dropping),
            relay_received: Arc::clone(&relay.received),
            h1_only_dropping: Arc::clone(&h1_only_relay.dropping),
            h1_only_refusing,
        })?;
        let _ = tokio::time::timeout(LIMIT, stop_rx).await;
        node.node.shutdown().await;
        anyhow::Ok(())
    })?;
    let side = match ready_rx.recv_timeout(LIMIT) {
        Ok(side) => side,
        Err(_) => {
            drop(stop_tx);
            return node_side
                .join(LIMIT)
                .and_then(|()| bail!("the node did not start"));
        }
    };
    let client = client_ns.run(move || async move { scenarios(side).await })?;
    let result = client.join(LIMIT);
    let _ = stop_tx.send(());
    node_side.join(LIMIT)?;
    result
}

fn options(pin: [u8; 32]) -> ClientOptions {
    ClientOptions {
        verification: ServerVerification::PinnedSha256(pin),
        ..Default::default()
    }
}

async fn scenarios(side: NodeSide) -> Result<()> {
    let url = format!("https://{NODE}:{PORT}");
    let race = RaceOptions::default();
    let h3_connections = || {
        side.metrics
            .by_transport
            .get(Transport::H3)
            .connections
            .load(Ordering::Relaxed)
    };

    // 1. UDP dropped: HTTP/3 never answers, HTTP/2 starts after its head
    //    start and wins.
    let (conn, took) = timed(race_connect(&url, &options(side.pin))).await?;
    let conn = conn.context("UDP dropped")?;
    ensure!(
        conn.transport() == Transport::H2,
        "UDP dropped: {:?} won",
        conn.transport()
    );
    ensure!(
        took >= race.h2_delay && took < race.h2_delay + MARGIN,
        "UDP dropped: HTTP/2 won after {took:?}"
    );
    echo_through(&conn, &format!("{NODE}:{PORT}"), side.echo)
        .await
        .context("HTTP/2 tunnel")?;
    conn.shutdown(Duration::from_secs(1)).await;

    // 4. Remembered: UDP passes again, yet the next race goes to HTTP/2
    //    and sends nothing over UDP. Long head starts, so that a slow
    //    handshake on a loaded machine cannot let HTTP/3 start.
    side.relay_dropping.store(false, Ordering::Relaxed);
    let (udp_before, h3_before) = (
        side.relay_received.load(Ordering::Relaxed),
        h3_connections(),
    );
    let patient = ClientOptions {
        race: RaceOptions {
            h2_delay: Duration::from_secs(3),
            h1_delay: Duration::from_secs(3),
            ..race
        },
        ..options(side.pin)
    };
    let (conn, took) = timed(race_connect(&url, &patient)).await?;
    let conn = conn.context("remembered")?;
    ensure!(
        conn.transport() == Transport::H2,
        "remembered: {:?} won",
        conn.transport()
    );
    ensure!(
        took < patient.race.h2_delay,
        "remembered: HTTP/2 won after {took:?}"
    );
    let udp_after = side.relay_received.load(Ordering::Relaxed);
    ensure!(
        udp_after == udp_before && h3_connections() == h3_before,
        "remembered HTTP/2, yet HTTP/3 started: {} datagrams, {} connections",
        udp_after - udp_before,
        h3_connections() - h3_before
    );
    conn.shutdown(Duration::from_secs(1)).await;
    // Another TLS identity is another proxy: nothing remembered, and HTTP/3
    // (through the relay, open now) wins.
    let other = ClientOptions {
        verification: ServerVerification::InsecureSkipVerify,
        ..Default::default()
    };
    let (conn, _) = timed(race_connect(&url, &other)).await?;
    let conn = conn.context("another identity")?;
    ensure!(
        conn.transport() == Transport::H3,
        "another identity: {:?} won",
        conn.transport()
    );
    ensure!(
        h3_connections() == h3_before + 1,
        "the node counted no HTTP/3 connection"
    );
    echo_through(&conn, &format!("{NODE}:{PORT}"), side.echo)
        .await
        .context("HTTP/3 tunnel")?;
    conn.shutdown(Duration::from_secs(1)).await;

    // 2. UDP dropped and no HTTP/2: HTTP/2 fails on ALPN and HTTP/1.1
    //    starts at once, not at its head start (3 s here, to tell).
    let url = format!("https://{NODE}:{H1_ONLY_PORT}");
    let late_h1 = ClientOptions {
        race: RaceOptions {
            h1_delay: Duration::from_secs(3),
            ..race
        },
        ..options(side.pin)
    };
    let (conn, took) = timed(race_connect(&url, &late_h1)).await?;
    let conn = conn.context("HTTP/1.1 only")?;
    ensure!(
        conn.transport() == Transport::H1,
        "HTTP/1.1 only: {:?} won",
        conn.transport()
    );
    ensure!(
        took >= race.h2_delay && took < race.h2_delay + MARGIN,
        "HTTP/1.1 only: HTTP/1.1 won after {took:?}"
    );
    echo_through(&conn, &format!("{NODE}:{H1_ONLY_PORT}"), side.echo)
        .await
        .context("HTTP/1.1 tunnel")?;
    conn.shutdown(Duration::from_secs(1)).await;

    // 5. The remembered HTTP/1.1 fails (the front closes every connection,
    //    UDP passes now): it is forgotten and HTTP/3, second in line, starts
    //    at once (not after its 3 s) and wins; the next race remembers it.
    side.h1_only_refusing.store(true, Ordering::Relaxed);
    side.h1_only_dropping.store(false, Ordering::Relaxed);
    let (conn, took) = timed(race_connect(&url, &patient)).await?;
    let conn = conn.context("remembered HTTP/1.1 failing")?;
    ensure!(
        conn.transport() == Transport::H3 && took < patient.race.h2_delay,
        "remembered HTTP/1.1 failing: {:?} won after {took:?}",
        conn.transport()
    );
    conn.shutdown(Duration::from_secs(1)).await;
    side.h1_only_refusing.store(false, Ordering::Relaxed);
    let (conn, _) = timed(race_connect(&url, &patient)).await?;
    let conn = conn.context("HTTP/3 remembered")?;
    ensure!(
        conn.transport() == Transport::H3,
        "after the failure: {:?} won, HTTP/3 is not remembered",
        conn.transport()
    );
    conn.shutdown(Duration::from_secs(1)).await;

    // 3. Nothing listens: TCP is refused at once (HTTP/2, then HTTP/1.1 at
    //    once); HTTP/3 hears nothing until the deadline.
    let url = format!("https://{NODE}:{CLOSED_PORT}");
    let short = ClientOptions {
        race: RaceOptions {
            deadline: Duration::from_secs(2),
            ..race
        },
        ..options(side.pin)
    };
    let (r, took) = timed(race_connect(&url, &short)).await?;
    let Err(ClientError::RaceFailed { h3, h2, h1 }) = r else {
        bail!("nothing listening: {r:?}");
    };
    ensure!(
        took < short.race.deadline + MARGIN,
        "nothing listening: the error came after {took:?}"
    );
    for (name, why) in [("HTTP/2", &h2), ("HTTP/1.1", &h1)] {
        ensure!(why.contains("refused"), "{name}: {why}");
    }
    ensure!(
        !h3.is_empty() && !h3.contains("not started"),
        "HTTP/3: {h3}"
    );
    Ok(())
}

/// Runs `f`, bounded, and how long it took.
async fn timed<T>(f: impl Future<Output = T>) -> Result<(T, Duration)> {
    let started = Instant::now();
    let r = within("the race", f).await?;
    Ok((r, started.elapsed()))
}

/// A connect-udp tunnel on `conn` to `echo`: one datagram there and back.
async fn echo_through(conn: &ClientConnection, authority: &str, echo: SocketAddr) -> Result<()> {
    let target = Target::udp(echo.ip().to_string(), echo.port());
    let mut session = within(
        "opening the tunnel",
        UdpSession::open_with(conn, authority, &target, &ClientOptions::default()),
    )
    .await??;
    session.send(b"raced").await?;
    let back = within("the echo", session.recv()).await?;
    ensure!(back.as_deref() == Some(&b"raced"[..]), "echo {back:?}");
    session.close().await;
    Ok(())
}

/// The fallback without namespaces (no root needed), through
/// `ProxyClient::connect` with `TransportChoice::Auto` (the default): on
/// loopback the node's HTTP/3 listener is reached through the dropping
/// relay on its TLS port; UDP dropped → HTTP/2, UDP passing → HTTP/3.
#[test]
fn race_on_loopback() -> Result<()> {
    init_tracing();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
        let node = TestNode::start_with(true, None, |c| c.tcp_listen = TcpListen::At(port))
            .await
            .context("starting the node (the TCP port may be taken: run again)")?;
        let relay = UdpRelay::start(port, node.node.local_addr(), true).await?;
        let echo = udp_echo().await?;
        let url = format!("https://{}", relay.addr);
        let options = ClientOptions {
            race: RaceOptions {
                remember: Duration::ZERO,
                ..RaceOptions::default()
            },
            ..options(node.cert.fingerprint_sha256())
        };
        ensure!(
            options.transport == TransportChoice::Auto,
            "not the default"
        );
        for (drop_udp, winner) in [(true, Transport::H2), (false, Transport::H3)] {
            relay.dropping.store(drop_udp, Ordering::Relaxed);
            let client = within("the race", ProxyClient::connect(&url, options.clone())).await??;
            ensure!(
                client.transport() == winner,
                "UDP dropped {drop_udp}: {:?} won",
                client.transport()
            );
            let mut session = within(
                "the tunnel",
                client.open_udp(&Target::udp(echo.ip().to_string(), echo.port())),
            )
            .await??;
            session.send(b"raced").await?;
            let back = within("the echo", session.recv()).await?;
            ensure!(back.as_deref() == Some(&b"raced"[..]), "echo {back:?}");
            session.close().await;
            client.close().await;
        }
        // All three at once: one wins, the others are cancelled and their
        // connections closed (the node sees only the winner's stay open;
        // HTTP/1.1's is its probe, closed too).
        let open = || {
            let m = node.node.metrics();
            m.connections_accepted.load(Ordering::Relaxed)
                - m.connections_closed.load(Ordering::Relaxed)
        };
        eventually("the earlier connections closed", WAIT, || open() == 0).await?;
        let together = ClientOptions {
            race: RaceOptions {
                h2_delay: Duration::ZERO,
                h1_delay: Duration::ZERO,
                ..options.race
            },
            ..options.clone()
        };
        let client = within("the race", ProxyClient::connect(&url, together)).await??;
        let winner = client.transport();
        let left_open = u64::from(winner != Transport::H1);
        eventually(&format!("the losers closed ({winner:?} won)"), WAIT, || {
            open() == left_open
        })
        .await?;
        client.close().await;
        eventually("the winner closed", WAIT, || open() == 0).await?;
        node.node.shutdown().await;
        Ok(())
    })
}
