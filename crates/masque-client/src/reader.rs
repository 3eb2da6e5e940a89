//! One task per tunnel reads the body through masque-proto's `TunnelCore`, the
//! same capsule / context-id / FIN rules the proxy's sessions use: UDP payloads
//! of DATAGRAM capsules are delivered like QUIC datagrams (R9297-31), other
//! capsule types go to the protocol's [`CapsuleHook`] (connect-udp skips them,
//! R9297-17; connect-ip parses its own), and the body's end (FIN, reset,
//! connection loss) ends the tunnel.

use std::sync::Arc;

use bytes::Bytes;
use masque_proto::{
    capsule::Capsule,
    tunnel::{DatagramEvent, DropReason, TunnelCore, TunnelEvent},
};
use masque_transport::{BodyRx, ResetReason, TunnelError};
use tokio::sync::mpsc;

use crate::{
    close::{CloseReason, Counters},
    sender::Inner,
};

/// Counts a dropped datagram (R9298-38; too short for a Context ID).
pub(crate) fn count_drop(counters: &Counters, reason: DropReason) {
    match reason {
        DropReason::UnknownContext => Counters::inc(&counters.unknown_context),
        DropReason::NoContextId => Counters::inc(&counters.malformed),
    }
}

/// What the reader does with a capsule of another type than DATAGRAM: `Ok`
/// to go on (a type the protocol skips, R9297-17, or one it handled), `Err`
/// with the reason when the capsule is malformed, which aborts the request
/// stream (R9297-22; connect-ip: R9484 error table).
pub(crate) type CapsuleHook = Box<dyn FnMut(Capsule) -> Result<(), String> + Send>;

/// The hook of protocols that know no capsule type besides DATAGRAM
/// (connect-udp, R9297-17: GREASE included).
pub(crate) fn skip_capsules() -> CapsuleHook {
    Box::new(|_| Ok(()))
}

/// Reads the body until it ends or the session's receiver goes away. UDP
/// payloads from DATAGRAM capsules go to `tx` (full queue: drop and count),
/// other capsules to `on_capsule`.
pub(crate) async fn run(
    mut rx: BodyRx,
    inner: Arc<Inner>,
    tx: mpsc::Sender<Bytes>,
    mut core: TunnelCore,
    mut on_capsule: CapsuleHook,
) {
    let reason = loop {
        let next = tokio::select! {
            r = rx.recv() => r,
            () = tx.closed() => {
                rx.stop(ResetReason::Cancelled);
                break CloseReason::Local;
            }
        };
        match next {
            Ok(Some(chunk)) => {
                core.push_body(chunk);
                if let Err(e) = drain(&mut core, &inner, &tx, &mut on_capsule) {
                    // R9297-22, R9298-41, R9484 errors: abort the request stream.
                    inner.abort(ResetReason::Malformed);
                    rx.stop(ResetReason::Malformed);
                    break CloseReason::ProtocolError(e);
                }
            }
            // R9297-24: a FIN inside a capsule is malformed.
            Ok(None) => match core.on_fin() {
                Ok(()) => {
                    inner.finish();
                    break CloseReason::ProxyFinished;
                }
                Err(e) => {
                    inner.abort(ResetReason::Malformed);
                    break CloseReason::ProtocolError(e.to_string());
                }
            },
            Err(e) => break on_error(e, &inner),
        }
    };
    tracing::debug!(stream = inner.stream_id, ?reason, "tunnel stream ended");
    inner.set_close(reason);
}

/// The body failed: a reset by the proxy, the connection's end, or a protocol
/// error of the transport.
fn on_error(e: TunnelError, inner: &Inner) -> CloseReason {
    // A stream reset (HTTP/3 RESET_STREAM, HTTP/2 RST_STREAM). `reset_code` is
    // not asked for `TunnelError::H2`: its reason there is a GOAWAY's or a
    // library error's, resets were mapped to `TunnelError::Reset` already.
    let reset = match &e {
        TunnelError::H2(_) => None,
        e => e.reset_code(),
    };
    if let Some(code) = reset {
        inner.abort(ResetReason::Cancelled);
        return CloseReason::Reset(code);
    }
    match e {
        TunnelError::H3(masque_h3::Error::Connection(c)) => {
            CloseReason::ConnectionLost(c.to_string())
        }
        // HTTP/2 connection errors and GOAWAY, and the TCP / TLS connection of
        // HTTP/1.1 (a close without TLS close_notify is not a clean FIN).
        e @ (TunnelError::H2(_) | TunnelError::H1(_) | TunnelError::Io(_)) => {
            inner.abort(ResetReason::Cancelled);
            CloseReason::ConnectionLost(e.to_string())
        }
        e => {
            inner.abort(ResetReason::Malformed);
            CloseReason::ProtocolError(e.to_string())
        }
    }
}

/// Handles every complete event in the core; `Err` names why the stream
/// must be aborted.
fn drain(
    core: &mut TunnelCore,
    inner: &Inner,
    tx: &mpsc::Sender<Bytes>,
    on_capsule: &mut CapsuleHook,
) -> Result<(), String> {
    while let Some(event) = core.next_event().map_err(|e| e.to_string())? {
        match event {
            TunnelEvent::Datagram(DatagramEvent::Payload { payload, .. }) => {
                Counters::inc(&inner.counters.capsules);
                if tx.try_send(payload).is_err() {
                    Counters::inc(&inner.counters.capsule_queue_full);
                }
            }
            TunnelEvent::Datagram(DatagramEvent::Dropped(reason)) => {
                count_drop(&inner.counters, reason);
            }
            TunnelEvent::Capsule(c) => on_capsule(c)?,
        }
    }
    Ok(())
}
