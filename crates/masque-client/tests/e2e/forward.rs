//! `udp_forward`: a local UDP client talks through the tunnel.

use std::{net::SocketAddr, time::Duration};

use masque_client::{ClientError, Target, udp_forward};
use masque_transport::Transport;
use tokio::{net::UdpSocket, sync::oneshot};

use crate::{
    per_transport,
    proxy::{Mode, Proxy},
    within,
};

per_transport!(
    udp_forward_relays_exchange,
    udp_forward_reopens_closed_tunnel
);

/// A free loopback port (bind, read, release).
fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?)
}

/// Sends `msg` to `to` until the echo returns (20 tries of 500 ms).
async fn ping(sock: &UdpSocket, to: SocketAddr, msg: &[u8]) -> anyhow::Result<()> {
    let mut buf = [0u8; 2048];
    for _ in 0..20 {
        sock.send_to(msg, to).await?;
        if let Ok(r) =
            tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await
        {
            let (n, _) = r?;
            if &buf[..n] == msg {
                return Ok(());
            }
        }
    }
    anyhow::bail!("no echo for {:?}", String::from_utf8_lossy(msg))
}

/// A forwarder on a free local port through a test proxy in `mode`; the
/// sender stops it.
type Forwarder = (
    Proxy,
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), ClientError>>,
);

fn start_forwarder(mode: Mode, t: Transport) -> anyhow::Result<Forwarder> {
    let proxy = Proxy::start(mode)?;
    let listen = free_port()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let (url, options) = (proxy.url(), proxy.options(t));
    let target = Target::udp("192.0.2.6", 443);
    let fwd =
        tokio::spawn(async move { udp_forward(&url, listen, target, options, stopped).await });
    Ok((proxy, listen, stop, fwd))
}

async fn udp_forward_relays_exchange(t: Transport) -> anyhow::Result<()> {
    let (proxy, listen, stop, fwd) = start_forwarder(Mode::Echo, t)?;
    let local = UdpSocket::bind("127.0.0.1:0").await?;
    within(ping(&local, listen, b"through the tunnel")).await?;
    within(ping(&local, listen, b"again")).await?;
    // A second local peer takes over the return path.
    let other = UdpSocket::bind("127.0.0.1:0").await?;
    within(ping(&other, listen, b"second peer")).await?;
    let _ = stop.send(());
    within(fwd).await??;
    assert_eq!(proxy.seen().len(), 1, "one tunnel for all peers");
    Ok(())
}

async fn udp_forward_reopens_closed_tunnel(t: Transport) -> anyhow::Result<()> {
    let (proxy, listen, stop, fwd) = start_forwarder(Mode::CloseAfterFirst, t)?;
    let local = UdpSocket::bind("127.0.0.1:0").await?;
    within(ping(&local, listen, b"first")).await?;
    within(ping(&local, listen, b"after reopen")).await?;
    assert!(proxy.seen().len() >= 2, "{}", proxy.seen().len());
    let _ = stop.send(());
    within(fwd).await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn udp_forward_config_errors_fail_fast() -> anyhow::Result<()> {
    let listen = free_port()?;
    let never = std::future::pending::<()>();
    let err = within(udp_forward(
        "https://localhost:1",
        listen,
        Target::udp("192.0.2.6", 0),
        Default::default(),
        never,
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::InvalidTarget { .. }), "{err}");
    let err = within(udp_forward(
        "ftp://x",
        listen,
        Target::udp("192.0.2.6", 53),
        Default::default(),
        std::future::pending::<()>(),
    ))
    .await
    .unwrap_err();
    assert!(err.is_config_error(), "{err}");
    Ok(())
}
