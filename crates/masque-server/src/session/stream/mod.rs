//! The session runtime for stream tunnels (CONNECT-TCP, classic CONNECT):
//! the shared spine (the handler connects the target before the 2xx, or the
//! refusal), then one task relays both directions until both have ended.
//! Written once over the transport-generic tunnel types: HTTP/3, HTTP/2 and
//! HTTP/1.1 run this same code.
//!
//! - Backpressure both ways, no buffer beyond one read chunk per direction:
//!   a direction reads again only once its last write completed, so a slow
//!   target slows the client through stream flow control, and a slow client
//!   slows the target through TCP's window.
//! - Half-close per direction: the client's FIN (FINAL_DATA, or the end of
//!   the body for classic CONNECT) shuts down the target's write side; the
//!   target's FIN becomes FINAL_DATA (or the end of our body). The HTTP
//!   stream ends cleanly once both directions have (CTCP-19..21).
//! - Anything else ends it abruptly: the stream is reset (HTTP/1.1: the
//!   connection closes without close_notify) and the target connection is
//!   reset (CTCP-21, CTCP-22).

mod target;

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use masque_proto::{
    capsule, headers,
    proxy_status::ProxyStatus,
    tcp::{StreamEnd, TcpEvent, TcpReceiver, TcpSender},
};
use masque_transport::{BodyRx, BodyTx, OpenTunnel, PendingTunnel, ResetReason, TunnelRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use self::target::{TargetRead, TargetWrite};
use crate::{
    config::SessionConfig,
    handler::{Action, CloseReason, Handler, StreamFraming, TargetStream, TcpTarget},
    metrics::Metrics,
    output::Activity,
    session::{
        establish::{NotOpened, SetupFuture, establish, setup_fn},
        runtime::{OpenGuard, SessionEnv, bounded},
    },
    slot::TunnelSlot,
};

/// Everything one stream session needs.
pub(crate) struct StreamSetup {
    pub pending: PendingTunnel,
    pub target: TcpTarget,
    pub slot: TunnelSlot,
    pub handler: Arc<dyn Handler>,
    pub env: SessionEnv,
}

/// Bytes read from the target per write to the client.
const READ_CHUNK: usize = 32 * 1024;
/// Room for a DATA capsule header in front of a chunk: a 4-byte type and a
/// length below 2^30 (4 bytes).
const HEAD_ROOM: usize = 8;

/// Runs one stream tunnel to its end and returns why it ended.
pub(crate) async fn run(setup: StreamSetup) -> CloseReason {
    let StreamSetup {
        pending,
        target,
        slot,
        handler,
        env: mut s,
    } = setup;
    let _open = OpenGuard::new(&s.metrics);
    let transport = pending.request.transport;
    let framing = target.framing;
    let response = response_headers(framing, &s.node_name);
    let metrics = Arc::clone(&s.metrics);
    let setup = setup_fn(
        move |request: &TunnelRequest| -> SetupFuture<'_, TargetStream> {
            Box::pin(async move { handler.connect(request, &target, &metrics).await })
        },
    );
    let (tunnel, stream) = match Box::pin(establish(pending, &mut s, setup, response)).await {
        Ok(v) => v,
        Err(NotOpened { reason, setup }) => {
            if let Some(stream) = setup {
                target::abort_whole(stream);
            }
            return reason;
        }
    };
    Metrics::inc(&s.metrics.tunnels_established);
    Metrics::inc(&s.metrics.tcp_tunnels);
    Metrics::inc(&s.metrics.transport(transport).tunnels);
    relay(&mut s, tunnel, stream, framing, slot).await
}

/// The 2xx's headers: `Capsule-Protocol: ?1` for CONNECT-TCP (CTCP-10,
/// CTCP-16), and a `Proxy-Status` naming the node on every success (CTCP-27).
fn response_headers(framing: StreamFraming, node_name: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    if let StreamFraming::Capsules(_) = framing {
        h.insert(
            headers::CAPSULE_PROTOCOL,
            http::HeaderValue::from_static(headers::SF_TRUE),
        );
    }
    if let Ok(v) = http::HeaderValue::from_str(&ProxyStatus::new(node_name).to_header_value()) {
        h.insert(headers::PROXY_STATUS, v);
    }
    h
}

/// How one direction ended.
type DirectionEnd = Result<(), CloseReason>;

/// Relays both directions until both ended cleanly or one failed, then ends
/// the stream and the target as that demands.
async fn relay(
    s: &mut SessionEnv,
    tunnel: OpenTunnel,
    stream: TargetStream,
    framing: StreamFraming,
    slot: TunnelSlot,
) -> CloseReason {
    let OpenTunnel {
        mut body_tx,
        mut body_rx,
        ..
    } = tunnel;
    let (mut read, mut write, fd) = target::split(stream);
    let config = Arc::clone(&s.config);
    let metrics = Arc::clone(&s.metrics);
    let activity = Activity::new();
    activity.touch();
    let reason = {
        let up = upstream(
            &mut body_rx,
            &mut write,
            framing,
            &config,
            &metrics,
            &activity,
        );
        let down = downstream(
            &mut read,
            &mut body_tx,
            framing,
            &config,
            &metrics,
            &activity,
        );
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        let idle_timer = tokio::time::sleep(config.idle_timeout);
        tokio::pin!(idle_timer);
        loop {
            let limit = if up_done || down_done {
                config.half_closed_timeout
            } else {
                config.idle_timeout
            };
            tokio::select! {
                r = &mut up, if !up_done => match r {
                    Ok(()) => up_done = true,
                    Err(reason) => break reason,
                },
                r = &mut down, if !down_done => match r {
                    Ok(()) => down_done = true,
                    Err(reason) => break reason,
                },
                m = s.info.recv() => match m {
                    // No callbacks on stream tunnels: info has no taker.
                    Some(_) => Metrics::inc(&metrics.info_dropped),
                    None => break CloseReason::Shutdown,
                },
                () = &mut idle_timer => {
                    let quiet = activity.idle_for();
                    if quiet >= limit {
                        Metrics::inc(&metrics.idle_timeouts);
                        break CloseReason::IdleTimeout;
                    }
                    idle_timer.as_mut().reset(tokio::time::Instant::now() + (limit - quiet));
                }
            }
            if up_done && down_done {
                break CloseReason::ClientClosed;
            }
        }
    };
    // Free the slot before the client can see the end.
    drop(slot);
    match reset_for(&reason) {
        None => {
            // Classic CONNECT already ended our body at the target's FIN;
            // CONNECT-TCP sent FINAL_DATA then and ends the stream now that
            // both directions are done (CTCP-21).
            if let StreamFraming::Capsules(_) = framing {
                body_tx.finish().await;
            }
            drop((read, write, fd));
        }
        Some(r) => {
            Metrics::inc(&metrics.tcp_tunnels_reset);
            body_tx.reset(r);
            body_rx.stop(r);
            target::abort(read, write, fd);
        }
    }
    reason
}

/// How `reason` ends a stream tunnel: `None` only when both directions
/// ended cleanly (CTCP-21); every other end is abrupt.
fn reset_for(reason: &CloseReason) -> Option<ResetReason> {
    match reason {
        CloseReason::ClientClosed => None,
        CloseReason::ProtocolError(_) | CloseReason::Handler(Action::Malformed) => {
            Some(ResetReason::Malformed)
        }
        CloseReason::HandlerPanic => Some(ResetReason::Internal),
        CloseReason::ClientAborted | CloseReason::WriteStalled | CloseReason::Shutdown => {
            Some(ResetReason::Cancelled)
        }
        CloseReason::TargetFailed(_)
        | CloseReason::IdleTimeout
        | CloseReason::Handler(Action::Abort | Action::Close | Action::Continue) => {
            Some(ResetReason::ConnectError)
        }
    }
}

/// Client to target: body chunks (the payloads of DATA capsules, or raw
/// bytes) written to the target, each within `stream_write_timeout`; the
/// client's FIN shuts down the target's write side. Ends when the body ends.
async fn upstream(
    body: &mut BodyRx,
    target: &mut TargetWrite,
    framing: StreamFraming,
    config: &SessionConfig,
    metrics: &Metrics,
    activity: &Activity,
) -> DirectionEnd {
    let mut rx = match framing {
        StreamFraming::Capsules(cp) => Some(TcpReceiver::new(cp)),
        StreamFraming::Raw => None,
    };
    loop {
        let chunk = match body.recv().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(_) => return Err(CloseReason::ClientAborted),
        };
        activity.touch();
        let Some(rx) = rx.as_mut() else {
            to_target(target, &chunk, config, metrics).await?;
            continue;
        };
        rx.push(chunk);
        loop {
            match rx.next_event() {
                Ok(Some(TcpEvent::Data(d))) => to_target(target, &d, config, metrics).await?,
                Ok(Some(TcpEvent::Fin)) => shutdown_target(target, config).await?,
                Ok(None) => break,
                Err(e) => {
                    Metrics::inc(&metrics.capsules_malformed);
                    return Err(CloseReason::ProtocolError(e.to_string()));
                }
            }
        }
    }
    match rx.map(|rx| rx.finish()) {
        // Classic CONNECT: the end of the body is the client's FIN.
        None => shutdown_target(target, config).await,
        Some(Ok(StreamEnd::Graceful)) => Ok(()),
        // CTCP-22: the body ended without FINAL_DATA: the target is reset.
        Some(Ok(StreamEnd::Abortive)) => Err(CloseReason::ClientAborted),
        Some(Err(e)) => {
            Metrics::inc(&metrics.capsules_malformed);
            Err(CloseReason::ProtocolError(e.to_string()))
        }
    }
}

async fn to_target(
    target: &mut TargetWrite,
    data: &[u8],
    config: &SessionConfig,
    metrics: &Metrics,
) -> DirectionEnd {
    match bounded(config.stream_write_timeout, target.write_all(data)).await {
        Some(Ok(())) => {
            Metrics::add(&metrics.tcp_bytes_to_target, data.len() as u64);
            Ok(())
        }
        Some(Err(e)) => Err(CloseReason::TargetFailed(e.to_string())),
        None => {
            Metrics::inc(&metrics.writes_timed_out);
            Err(CloseReason::TargetFailed(
                "the target took no data for stream_write_timeout".into(),
            ))
        }
    }
}

/// The client's FIN: the target's write side is shut down (CTCP-20).
async fn shutdown_target(target: &mut TargetWrite, config: &SessionConfig) -> DirectionEnd {
    match bounded(config.stream_write_timeout, target.shutdown()).await {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(CloseReason::TargetFailed(e.to_string())),
        None => Err(CloseReason::TargetFailed("target shutdown stalled".into())),
    }
}

/// Target to client: what the target sends, one chunk at a time (a DATA
/// capsule each, its header written in front of the payload in the same
/// buffer), each write within `stream_write_timeout`; the target's FIN
/// becomes FINAL_DATA (CTCP-19) or the end of our body.
async fn downstream(
    target: &mut TargetRead,
    body: &mut BodyTx,
    framing: StreamFraming,
    config: &SessionConfig,
    metrics: &Metrics,
    activity: &Activity,
) -> DirectionEnd {
    let mut sender = match framing {
        StreamFraming::Capsules(cp) => Some(TcpSender::new(cp)),
        StreamFraming::Raw => None,
    };
    let room = if sender.is_some() { HEAD_ROOM } else { 0 };
    let mut buf = BytesMut::new();
    loop {
        buf.reserve(room + READ_CHUNK);
        buf.put_bytes(0, room);
        let n = match target.read_buf(&mut (&mut buf).limit(READ_CHUNK)).await {
            Ok(n) => n,
            Err(e) => return Err(CloseReason::TargetFailed(e.to_string())),
        };
        activity.touch();
        if n == 0 {
            break;
        }
        Metrics::add(&metrics.tcp_bytes_from_target, n as u64);
        let chunk = match sender.as_mut() {
            Some(sender) => framed(sender, &mut buf, n),
            None => buf.split().freeze(),
        };
        to_client(body, chunk, config, metrics).await?;
    }
    match sender.as_mut() {
        Some(sender) => {
            let mut fin = BytesMut::with_capacity(HEAD_ROOM);
            // A fresh sender never refuses: FINAL_DATA is its last capsule.
            if sender.encode(&[], true, &mut fin).is_ok() {
                to_client(body, fin.freeze(), config, metrics).await?;
            }
        }
        // Nothing is pending (every write above was sent and flushed): the
        // end of our body is the FIN.
        None => body.finish().await,
    }
    Ok(())
}

/// The DATA capsule for the `n` bytes read behind the head room of `buf`:
/// its header written just in front of them, no copy.
fn framed(sender: &mut TcpSender, buf: &mut BytesMut, n: usize) -> Bytes {
    let ty_len = capsule::header_len(sender.codepoints().data, n);
    let start = HEAD_ROOM - ty_len;
    let mut head = &mut buf[start..HEAD_ROOM];
    // DATA before FINAL_DATA: the sender takes it.
    let _ = sender.encode_header(n, false, &mut head);
    let mut chunk = buf.split().freeze();
    chunk.advance(start);
    chunk
}

async fn to_client(
    body: &mut BodyTx,
    chunk: Bytes,
    config: &SessionConfig,
    metrics: &Metrics,
) -> DirectionEnd {
    match bounded(config.stream_write_timeout, body.send(chunk)).await {
        Some(Ok(())) => Ok(()),
        Some(Err(_)) => Err(CloseReason::ClientAborted),
        None => {
            Metrics::inc(&metrics.writes_timed_out);
            Err(CloseReason::WriteStalled)
        }
    }
}

#[cfg(test)]
mod tests;
