//! One test body, three transports: what a client needs to reach a
//! [`TestNode`] over HTTP/3 (UDP), HTTP/2 or HTTP/1.1 (its TLS/TCP listener),
//! and [`per_transport!`](crate::per_transport) to run an async body once per
//! transport.

use std::net::SocketAddr;

use anyhow::{Context, Result, ensure};
use masque_client::{ClientOptions, TransportChoice};
pub use masque_transport::Transport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{node::TestNode, within};

/// The node's address for `t`: the UDP socket for HTTP/3, the TLS/TCP listener
/// otherwise. With port 0 the two may differ (the TCP port is the UDP one only
/// when that was free), so tests never assume they match.
pub fn proxy_addr(node: &TestNode, t: Transport) -> SocketAddr {
    match t {
        Transport::H3 => node.node.local_addr(),
        Transport::H2 | Transport::H1 => node
            .node
            .tcp_addr()
            .expect("the test node listens on TLS/TCP"),
    }
}

/// `localhost:<port>` of the listener carrying `t` (`:authority` / `Host`).
pub fn authority(node: &TestNode, t: Transport) -> String {
    format!("localhost:{}", proxy_addr(node, t).port())
}

/// The proxy URL for `t`.
pub fn url(node: &TestNode, t: Transport) -> String {
    format!("https://{}", authority(node, t))
}

/// [`TestNode::client_options`] (trust the node's certificate, loopback MTU)
/// on transport `t`.
pub fn options_for(node: &TestNode, t: Transport) -> ClientOptions {
    ClientOptions {
        transport: TransportChoice::from(t),
        ..node.client_options()
    }
}

/// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 §6.5.2).
pub const H2_SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// The parameters of the node's first HTTP/2 SETTINGS frame, read off the
/// wire (TLS with ALPN `h2`, our preface, then the server's preface, which
/// starts with SETTINGS, RFC 9113 §3.4). masque-client does not expose the
/// peer's settings, so this reads them itself.
pub async fn h2_server_settings(node: &TestNode) -> Result<Vec<(u16, u32)>> {
    let addr = proxy_addr(node, Transport::H2);
    let mut tls = crate::tls::connect(addr, &node.cert, &[b"h2"]).await?;
    ensure!(
        tls.get_ref().1.alpn_protocol() == Some(b"h2"),
        "the node did not choose h2"
    );
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // An empty SETTINGS frame: length 0, type 0x4, flags 0, stream 0.
    preface.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    within("sending the HTTP/2 preface", tls.write_all(&preface)).await??;
    within("flushing the HTTP/2 preface", tls.flush()).await??;
    let mut header = [0u8; 9];
    within("the server's first frame", tls.read_exact(&mut header)).await??;
    let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let (ty, flags) = (header[3], header[4]);
    ensure!(
        ty == 0x4 && flags & 0x1 == 0,
        "the server's preface starts with frame type {ty:#x} flags {flags:#x}, not SETTINGS"
    );
    ensure!(len.is_multiple_of(6), "SETTINGS payload of {len} bytes");
    let mut payload = vec![0u8; len];
    within("the SETTINGS payload", tls.read_exact(&mut payload)).await??;
    Ok(payload
        .chunks_exact(6)
        .map(|p| {
            (
                u16::from_be_bytes([p[0], p[1]]),
                u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
            )
        })
        .collect())
}

/// The value of `id` in `settings`, if the frame carried it.
pub fn setting(settings: &[(u16, u32)], id: u16) -> Result<u32> {
    settings
        .iter()
        .rev()
        .find(|(i, _)| *i == id)
        .map(|(_, v)| *v)
        .with_context(|| format!("SETTINGS without parameter {id:#x}: {settings:?}"))
}

/// For each named `async fn(Transport) -> anyhow::Result<()>`, a module of
/// three `#[tokio::test]`s running it over each transport: `name::h3`,
/// `name::h2`, `name::h1` (so `cargo test name::h2` picks one, `cargo test
/// name` all three).
#[macro_export]
macro_rules! per_transport {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use $crate::transport::Transport;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn h3() -> anyhow::Result<()> {
                super::$name(Transport::H3).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn h2() -> anyhow::Result<()> {
                super::$name(Transport::H2).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn h1() -> anyhow::Result<()> {
                super::$name(Transport::H1).await
            }
        }
    )*};
}

/// A CONNECT-UDP target for a socket address.
pub fn udp_target(addr: SocketAddr) -> masque_client::Target {
    masque_client::Target::udp(addr.ip().to_string(), addr.port())
}

/// [`masque_client::connect`] to `target` over `t` with `options`, within
/// [`WAIT`](crate::WAIT): the tunnel, or why the client refused it.
pub async fn try_connect(
    node: &TestNode,
    t: Transport,
    target: masque_client::Target,
    options: ClientOptions,
) -> Result<Result<masque_client::UdpSession, masque_client::ClientError>> {
    within(
        "the tunnel request",
        masque_client::connect(&url(node, t), target, options),
    )
    .await
}

/// Sends `tag` until its echo comes back (datagrams may be lost: up to 10
/// tries of 500 ms); anything else arriving is cross-talk.
pub async fn echo_tag(s: &mut masque_client::UdpSession, tag: &[u8]) -> Result<()> {
    for _ in 0..10 {
        s.send(tag).await?;
        match tokio::time::timeout(std::time::Duration::from_millis(500), s.recv()).await {
            Ok(Some(back)) => {
                ensure!(back[..] == *tag, "cross-talk: sent {tag:?}, got {back:?}");
                return Ok(());
            }
            Ok(None) => anyhow::bail!("the tunnel ended"),
            Err(_) => {}
        }
    }
    anyhow::bail!("no echo of {tag:?} in 10 tries")
}
