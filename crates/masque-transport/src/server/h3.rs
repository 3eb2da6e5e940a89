//! HTTP/3 adapter (masque-h3): request heads, responses and QUIC datagrams.

use std::{net::SocketAddr, time::Duration};

use masque_h3::{RequestHead, RequestStream, ResponseHead};
use masque_proto::request::{Pseudo, form_from_pseudo};

use super::{PendingInner, PendingTunnel, TunnelLimits};
use crate::tunnel::{
    BodyRx, BodyTx, DatagramRx, DatagramTx, OpenTunnel, ResetReason, Transport, TunnelError,
    TunnelRequest, datagram::CapsuleSender,
};

pub(super) fn pending(
    head: &RequestHead,
    stream: RequestStream,
    peer: SocketAddr,
    limits: TunnelLimits,
) -> PendingTunnel {
    let form = form_from_pseudo(&Pseudo {
        method: head.method.as_str(),
        protocol: head.protocol.as_ref().map(|p| p.as_str()),
        scheme: head.scheme.as_ref().map(|s| s.as_str()),
        authority: head.authority.as_ref().map(|a| a.as_str()),
        path: head.path.as_ref().map(|p| p.as_str()),
    });
    PendingTunnel {
        request: TunnelRequest {
            transport: Transport::H3,
            form,
            headers: head.headers.clone(),
            peer,
            stream_id: stream.stream_id(),
        },
        inner: PendingInner::H3(stream),
        limits,
    }
}

/// Sends `head` on `stream`, within `deadline` if any. `Ok(false)`: the
/// deadline passed (the peer withheld stream credit) and the stream was reset.
async fn respond(
    stream: &mut RequestStream,
    head: &ResponseHead,
    deadline: Option<Duration>,
) -> Result<bool, masque_h3::Error> {
    let Some(deadline) = deadline else {
        return stream.send_response(head).await.map(|()| true);
    };
    match tokio::time::timeout(deadline, stream.send_response(head)).await {
        Ok(r) => r.map(|()| true),
        Err(_elapsed) => {
            reset_stream(stream, ResetReason::Cancelled);
            Ok(false)
        }
    }
}

pub(super) async fn reject(
    mut stream: RequestStream,
    status: http::StatusCode,
    headers: http::HeaderMap,
    deadline: Option<Duration>,
) -> bool {
    let mut head = ResponseHead::new(status);
    head.headers = headers;
    match respond(&mut stream, &head, deadline).await {
        Ok(true) => {
            let _ = stream.send.finish();
        }
        Ok(false) => return false,
        Err(_) => {}
    }
    // We will not read the rest of the request (RFC 9114 §4.1.1).
    stream.recv.stop(masque_h3::Code::NO_ERROR);
    true
}

pub(super) fn reset(mut stream: RequestStream, reason: ResetReason) {
    reset_stream(&mut stream, reason);
}

fn reset_stream(stream: &mut RequestStream, reason: ResetReason) {
    stream.send.reset(reason.h3_code());
    stream.recv.stop(reason.h3_code());
}

pub(super) async fn accept(
    mut stream: RequestStream,
    headers: http::HeaderMap,
    limits: TunnelLimits,
    deadline: Option<Duration>,
) -> Result<OpenTunnel, TunnelError> {
    let datagram_rx = stream.take_datagrams().map(DatagramRx::H3);
    let mut head = ResponseHead::new(http::StatusCode::OK);
    head.headers = headers;
    if !respond(&mut stream, &head, deadline).await? {
        return Err(TunnelError::Timeout("response HEADERS"));
    }
    let native = match &datagram_rx {
        Some(_) => match stream.send.datagram_sender().await {
            Ok(s) => Some(DatagramTx::H3(s)),
            // R9297-12: the peer did not enable HTTP/3 datagrams, so none may
            // be sent; DATAGRAM capsules on the stream instead (R9297-31).
            Err(masque_h3::Error::DatagramsUnsupported) => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let (datagram_tx, capsules) = match native {
        Some(tx) => (tx, None),
        None => {
            let (tx, rx) = CapsuleSender::channel(limits.capsule_queue, limits.max_capsule_payload);
            (DatagramTx::Capsule(tx), Some(rx))
        }
    };
    let (send, recv, _) = stream.into_parts();
    Ok(OpenTunnel {
        body_tx: BodyTx::H3(send),
        body_rx: BodyRx::H3(recv),
        datagram_tx,
        datagram_rx,
        capsules,
    })
}
