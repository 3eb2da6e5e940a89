//! The listeners under their supervisors, on real sockets: a killed TLS
//! listener comes back on the same address (one-for-one: the HTTP/3
//! listener is left alone), and shutdown learns from the tree when every
//! listener has drained.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use masque_client::Target;
use masque_registry::ListenerProtocol;
use masque_tests::{
    init_tracing,
    node::{TestNode, eventually, next_datagram, udp_echo},
    tls::{connect, handshake, read_until_closed, registered_listener},
    within,
};
use tokio::io::AsyncWriteExt;

/// The ListenerRegistry is process-wide and owned by the first node's tree
/// (decisions §22): a node that shuts down takes it along. These tests look
/// listeners up in it, so they run one at a time.
static ONE_NODE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const H2: &[u8] = b"h2";
const H1: &[u8] = b"http/1.1";

/// One-for-one restart: the TLS listener, found through the
/// ListenerRegistry and killed, comes back under its ListenerSupervisor on
/// the same TCP address (the node's socket, bound once), re-registers, and
/// completes TLS handshakes for both ALPN protocols; the HTTP/3 listener
/// keeps its incarnation and the tree stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_tls_listener_is_restarted_on_the_same_address() -> Result<()> {
    let _serial = ONE_NODE_AT_A_TIME.lock().await;
    init_tracing();
    let node = TestNode::start_with(true, None, |c| c.name = "tls-restart".into()).await?;
    let tcp = node.node.tcp_addr().context("a TLS listener")?;
    let root = node.node.supervisor().get_cell();
    let h3_before = masque_registry::lookup("tls-restart").context("HTTP/3 registered")?;
    let before = masque_registry::lookup("tls-restart/tls").context("TLS registered")?;
    assert_eq!(before.protocol, ListenerProtocol::Tls);
    assert_eq!(before.local_addr, tcp, "registered with its real port");
    assert_eq!(
        handshake(tcp, &node.cert, &[H2]).await?.as_deref(),
        Some(H2)
    );

    let listener = registered_listener(&root, "tls-restart/tls")?;
    listener.kill();
    eventually(
        "TLS listener restarted and re-registered",
        Duration::from_secs(5),
        || masque_registry::lookup("tls-restart/tls").is_some_and(|i| i.owner != before.owner),
    )
    .await?;
    let after = masque_registry::lookup("tls-restart/tls").context("re-registered")?;
    assert_eq!(after.local_addr, before.local_addr, "same address");
    assert_eq!(after.protocol, ListenerProtocol::Tls);
    for alpn in [H2, H1] {
        assert_eq!(
            handshake(tcp, &node.cert, &[alpn]).await?.as_deref(),
            Some(alpn),
            "the new listener serves"
        );
    }
    // No ALPN at all: HTTP/1.1 (the handshake completes).
    assert_eq!(handshake(tcp, &node.cert, &[]).await?, None);
    let h3_after = masque_registry::lookup("tls-restart").context("HTTP/3 registered")?;
    assert_eq!(
        h3_after.owner, h3_before.owner,
        "one-for-one: HTTP/3 untouched"
    );
    assert_eq!(root.get_status(), ractor::ActorStatus::Running);
    node.node.shutdown().await;
    Ok(())
}

/// Shutdown waits for the tree, not a clock: with a tunnel open it does not
/// finish (while idle connections are closed and the TCP port stops
/// accepting), and once that tunnel closes it finishes at once, long before
/// the drain timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_when_the_tree_has_drained() -> Result<()> {
    let _serial = ONE_NODE_AT_A_TIME.lock().await;
    init_tracing();
    let drain_timeout = Duration::from_secs(20);
    let node = TestNode::start_with(true, None, |c| {
        c.name = "drain-signal".into();
        c.drain_timeout = drain_timeout;
    })
    .await?;
    let tcp = node.node.tcp_addr().context("a TLS listener")?;
    let echo = udp_echo().await?;
    let target = Target::Udp {
        host: echo.ip().to_string(),
        port: echo.port(),
    };
    let mut tunnel = masque_client::connect(&node.url(), target, node.client_options()).await?;
    tunnel.send(b"before").await?;
    assert_eq!(&next_datagram(&mut tunnel, "echo").await?[..], b"before");
    // An idle HTTP/2 connection on the TLS listener: the client preface and
    // an empty SETTINGS frame (RFC 9113 §3.4), then nothing.
    let mut idle = connect(tcp, &node.cert, &[H2]).await?;
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await?;
    idle.flush().await?;
    let tls_listener = registered_listener(&node.node.supervisor().get_cell(), "drain-signal/tls")?;
    eventually("its router", Duration::from_secs(5), || {
        tls_listener.get_children().len() == 1
    })
    .await?;

    let started = Instant::now();
    let mut shutdown = tokio::spawn(node.node.shutdown());
    // The idle connection drains at once: its router stops, the connection
    // closes (after a GOAWAY).
    read_until_closed(&mut idle).await?;
    // The TCP port refuses new connections while draining.
    within("TCP connections refused", async {
        while tokio::net::TcpStream::connect(tcp).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await?;
    // The tunnel keeps the node draining.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown waits for the open tunnel"
    );
    tunnel.send(b"while draining").await?;
    assert_eq!(
        &next_datagram(&mut tunnel, "echo while draining").await?[..],
        b"while draining"
    );
    tunnel.close().await;
    within("shutdown after the last tunnel closed", &mut shutdown).await??;
    let took = started.elapsed();
    assert!(
        took < drain_timeout / 2,
        "shutdown took {took:?}: it waited for a clock, not for the tree"
    );
    Ok(())
}
