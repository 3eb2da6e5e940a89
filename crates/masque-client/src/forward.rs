//! `udp_forward`: a local UDP port relayed through one connect-udp tunnel, like
//! `socat UDP-LISTEN:… ` in front of a MASQUE proxy.

use std::{
    future::Future,
    net::SocketAddr,
    pin::pin,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::{Duration, Instant},
};

use tokio::net::UdpSocket;

use crate::{ClientError, ClientOptions, Target, UdpSession, client::Dialer};

/// First delay before re-opening a failed or closed tunnel.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Largest delay between attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A tunnel that stayed up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(5);
/// Receive buffer: the largest UDP payload (R9298-40).
const BUF_LEN: usize = masque_proto::datagram::MAX_UDP_PAYLOAD;

/// Drops on the relay, logged when the forwarder stops.
#[derive(Debug, Default)]
struct Drops {
    to_tunnel: AtomicU64,
    to_local: AtomicU64,
}

enum Outcome {
    Shutdown,
    TunnelEnded,
}

/// Binds a UDP socket on `listen` and relays it through one connect-udp tunnel
/// to `target` until `shutdown` resolves.
///
/// * Datagrams from any local peer go into the tunnel; datagrams from the tunnel
///   go to the **most recent** local peer address. One peer at a time, like
///   `socat UDP-LISTEN`: a second local client takes over the return path.
/// * Nothing is buffered beyond the bounded queues: a payload that does not fit
///   (full send buffer, over the path's datagram size) or a local socket that
///   would block drops the datagram and counts it.
/// * When the tunnel or the connection ends, it is re-opened (reusing the
///   connection while it lives) with exponential backoff from 100 ms to 10 s.
///
/// Errors: only configuration errors (URL, template, target, TLS) and failing to
/// bind `listen`; network failures are retried.
pub async fn udp_forward(
    proxy_url: &str,
    listen: SocketAddr,
    target: Target,
    options: ClientOptions,
    shutdown: impl Future,
) -> Result<(), ClientError> {
    let dialer = Dialer::new(proxy_url, options)?;
    dialer.check_target(&target)?;
    let socket = UdpSocket::bind(listen).await?;
    tracing::info!(listen = %socket.local_addr()?, %target, "UDP forwarder listening");
    let mut shutdown = pin!(shutdown);
    let mut client = None;
    let mut peer = None;
    let mut backoff = BACKOFF_MIN;
    let drops = Drops::default();
    loop {
        let attempt = async {
            let c = match client.take() {
                Some(c) => c,
                None => dialer.connect().await?,
            };
            let s = c.open_udp(&target).await;
            // Reuse the connection only while tunnels open on it.
            if s.is_ok() {
                client = Some(c);
            }
            s
        };
        let opened = tokio::select! {
            _ = &mut shutdown => break,
            r = attempt => r,
        };
        let retry = match opened {
            Ok(session) => {
                let started = Instant::now();
                let out = relay(&socket, session, &mut peer, &drops, shutdown.as_mut()).await;
                if matches!(out, Outcome::Shutdown) {
                    break;
                }
                if started.elapsed() >= STABLE_AFTER {
                    backoff = BACKOFF_MIN;
                }
                tracing::info!(%target, "tunnel ended; re-opening");
                backoff
            }
            Err(e) if e.is_config_error() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, %target, retry_in = ?backoff, "tunnel failed");
                backoff
            }
        };
        if client.as_ref().is_some_and(|c| c.is_closed()) {
            client = None;
        }
        tokio::select! {
            _ = &mut shutdown => break,
            () = tokio::time::sleep(retry) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    if let Some(c) = client {
        c.close().await;
    }
    tracing::info!(
        dropped_to_tunnel = drops.to_tunnel.load(Relaxed),
        dropped_to_local = drops.to_local.load(Relaxed),
        "UDP forwarder stopped"
    );
    Ok(())
}

/// Relays between `socket` and one tunnel until either ends or `shutdown`.
async fn relay<F: Future + ?Sized>(
    socket: &UdpSocket,
    mut session: UdpSession,
    peer: &mut Option<SocketAddr>,
    drops: &Drops,
    mut shutdown: std::pin::Pin<&mut F>,
) -> Outcome {
    let sender = session.sender();
    let mut buf = vec![0u8; BUF_LEN];
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                session.close().await;
                return Outcome::Shutdown;
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                *peer = Some(from);
                match sender.try_send(buf.get(..n).unwrap_or_default()) {
                    Ok(()) => {}
                    Err(ClientError::BufferFull | ClientError::PayloadTooLarge { .. }) => {
                        drops.to_tunnel.fetch_add(1, Relaxed);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "tunnel send failed");
                        return Outcome::TunnelEnded;
                    }
                }
            }
            p = session.recv() => {
                let Some(p) = p else { return Outcome::TunnelEnded };
                let Some(to) = *peer else {
                    // Nobody to answer yet.
                    drops.to_local.fetch_add(1, Relaxed);
                    continue;
                };
                if socket.try_send_to(&p, to).is_err() {
                    drops.to_local.fetch_add(1, Relaxed);
                }
            }
        }
    }
}
