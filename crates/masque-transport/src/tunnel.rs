//! One `Tunnel` abstraction over the HTTP transports. Session code (masque-server)
//! is written once against these types; each transport supplies an adapter. Only
//! HTTP/3 exists today: the enums gain HTTP/2 and HTTP/1.1 variants later without
//! touching sessions.
//!
//! Datagrams: on HTTP/3 they ride QUIC DATAGRAM frames; HTTP/2 and HTTP/1.1 will
//! carry them as DATAGRAM capsules in the body, which sessions already accept
//! (R9297 §3.5), so only [`DatagramTx`] / [`DatagramRx`] change per transport.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use masque_h3::{
    Code, DatagramBuf, DatagramReceiver, DatagramSender, RecvHalf, RequestHead, RequestStream,
    ResponseHead, SendHalf,
};

/// The HTTP version a tunnel arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    H3,
}

/// Why a tunnel was torn down abruptly; mapped to each transport's reset code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// Malformed message or capsule (R9297-22: H3_MESSAGE_ERROR / PROTOCOL_ERROR).
    Malformed,
    /// The target connection failed (H3_CONNECT_ERROR / CONNECT_ERROR).
    ConnectError,
    /// The tunnel is no longer wanted (H3_REQUEST_CANCELLED / CANCEL).
    Cancelled,
    /// Our own failure (H3_INTERNAL_ERROR / INTERNAL_ERROR).
    Internal,
}

impl ResetReason {
    fn h3_code(self) -> Code {
        match self {
            ResetReason::Malformed => Code::MESSAGE_ERROR,
            ResetReason::ConnectError => Code::CONNECT_ERROR,
            ResetReason::Cancelled => Code::REQUEST_CANCELLED,
            ResetReason::Internal => Code::INTERNAL_ERROR,
        }
    }
}

/// Transport errors seen by sessions.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error(transparent)]
    H3(#[from] masque_h3::Error),
}

impl TunnelError {
    /// The limit that a too-large datagram exceeded, if that is the error.
    pub fn datagram_limit(&self) -> Option<usize> {
        match self {
            TunnelError::H3(masque_h3::Error::DatagramTooLarge { max, .. }) => Some(*max),
            _ => None,
        }
    }
}

/// The request, independent of the transport it came on.
#[derive(Debug, Clone)]
pub struct TunnelRequest {
    pub transport: Transport,
    pub method: http::Method,
    /// Upgrade token (`:protocol` on HTTP/2 and HTTP/3, `Upgrade` on HTTP/1.1).
    pub protocol: Option<String>,
    pub authority: Option<String>,
    /// Path and query (`:path`).
    pub path: Option<String>,
    pub headers: http::HeaderMap,
    pub peer: SocketAddr,
    /// Stream id on HTTP/3 and HTTP/2, for logs.
    pub stream_id: u64,
}

impl TunnelRequest {
    pub fn from_h3(head: &RequestHead, peer: SocketAddr, stream_id: u64) -> Self {
        Self {
            transport: Transport::H3,
            method: head.method.clone(),
            protocol: head.protocol.as_ref().map(|p| p.as_str().to_owned()),
            authority: head.authority.as_ref().map(|a| a.as_str().to_owned()),
            path: head.path.as_ref().map(|p| p.as_str().to_owned()),
            headers: head.headers.clone(),
            peer,
            stream_id,
        }
    }
}

/// A server-side tunnel before its response: answer it once.
#[derive(Debug)]
pub struct PendingTunnel {
    pub request: TunnelRequest,
    inner: PendingInner,
}

#[derive(Debug)]
enum PendingInner {
    H3(RequestStream),
}

impl PendingTunnel {
    pub fn from_h3(head: &RequestHead, stream: RequestStream, peer: SocketAddr) -> Self {
        let request = TunnelRequest::from_h3(head, peer, stream.stream_id());
        Self {
            request,
            inner: PendingInner::H3(stream),
        }
    }

    /// Sends a final non-2xx response and ends the stream.
    pub async fn reject(self, status: http::StatusCode, headers: http::HeaderMap) {
        match self.inner {
            PendingInner::H3(mut stream) => {
                let mut head = ResponseHead::new(status);
                head.headers = headers;
                if stream.send_response(&head).await.is_ok() {
                    let _ = stream.send.finish();
                }
                // We will not read the rest of the request (RFC 9114 §4.1.1).
                stream.recv.stop(Code::NO_ERROR);
            }
        }
    }

    /// Resets the stream without a response.
    pub fn reset(self, reason: ResetReason) {
        match self.inner {
            PendingInner::H3(mut stream) => {
                stream.send.reset(reason.h3_code());
                stream.recv.stop(reason.h3_code());
            }
        }
    }

    /// Sends the 2xx and returns the open tunnel's halves.
    pub async fn accept(self, headers: http::HeaderMap) -> Result<OpenTunnel, TunnelError> {
        match self.inner {
            PendingInner::H3(mut stream) => {
                let datagram_rx = stream.take_datagrams().map(DatagramRx::H3);
                let mut head = ResponseHead::new(http::StatusCode::OK);
                head.headers = headers;
                stream.send_response(&head).await?;
                let datagram_tx = match &datagram_rx {
                    Some(_) => match stream.send.datagram_sender().await {
                        Ok(s) => Some(DatagramTx::H3(s)),
                        // R9297-12: the peer did not enable HTTP/3 datagrams, so
                        // none may be sent; the tunnel carries DATAGRAM capsules
                        // on the stream instead (R9297-31).
                        Err(masque_h3::Error::DatagramsUnsupported) => None,
                        Err(e) => return Err(e.into()),
                    },
                    None => None,
                };
                let (send, recv, _) = stream.into_parts();
                Ok(OpenTunnel {
                    body_tx: BodyTx::H3(send),
                    body_rx: BodyRx::H3(recv),
                    datagram_tx,
                    datagram_rx,
                })
            }
        }
    }
}

/// An established tunnel, split for concurrent use.
#[derive(Debug)]
pub struct OpenTunnel {
    pub body_tx: BodyTx,
    pub body_rx: BodyRx,
    /// `None` when the peer cannot take HTTP/3 datagrams: send DATAGRAM
    /// capsules on `body_tx` instead.
    pub datagram_tx: Option<DatagramTx>,
    pub datagram_rx: Option<DatagramRx>,
}

/// Writes body bytes (capsules or raw stream bytes) with backpressure.
#[derive(Debug)]
pub enum BodyTx {
    H3(SendHalf),
}

impl BodyTx {
    pub async fn send(&mut self, data: Bytes) -> Result<(), TunnelError> {
        match self {
            BodyTx::H3(s) => Ok(s.send_data(data).await?),
        }
    }

    /// Ends our side cleanly (FIN).
    pub fn finish(&mut self) {
        match self {
            BodyTx::H3(s) => {
                let _ = s.finish();
            }
        }
    }

    pub fn reset(&mut self, reason: ResetReason) {
        match self {
            BodyTx::H3(s) => s.reset(reason.h3_code()),
        }
    }
}

/// Reads body bytes.
#[derive(Debug)]
pub enum BodyRx {
    H3(RecvHalf),
}

impl BodyRx {
    /// Next chunk; `None` at a clean end of the peer's side.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, TunnelError> {
        match self {
            BodyRx::H3(r) => Ok(r.recv_data().await?),
        }
    }

    pub fn stop(&mut self, reason: ResetReason) {
        match self {
            BodyRx::H3(r) => r.stop(reason.h3_code()),
        }
    }
}

/// Sends HTTP datagrams. Cheap to clone.
#[derive(Debug, Clone)]
pub enum DatagramTx {
    H3(DatagramSender),
}

/// A datagram being built by [`DatagramTx::buffer`]: append the payload
/// (context id first) to [`OutDatagram::payload_mut`].
#[derive(Debug)]
pub enum OutDatagram {
    H3(DatagramBuf),
}

impl OutDatagram {
    /// Bytes after the transport's prefix (context id and payload).
    pub fn payload_len(&self) -> usize {
        match self {
            OutDatagram::H3(b) => b.payload().len(),
        }
    }

    /// The buffer; the transport's prefix is already in it and must stay.
    pub fn payload_mut(&mut self) -> &mut BytesMut {
        match self {
            OutDatagram::H3(b) => b.payload_mut(),
        }
    }
}

impl DatagramTx {
    /// Largest HTTP datagram payload (context id included) that fits now.
    pub fn max_payload_size(&self) -> Option<usize> {
        match self {
            DatagramTx::H3(s) => s.max_payload_size(),
        }
    }

    pub fn buffer(&self, payload_capacity: usize) -> OutDatagram {
        match self {
            DatagramTx::H3(s) => OutDatagram::H3(s.buffer(payload_capacity)),
        }
    }

    /// Sends, waiting for room (backpressure).
    pub async fn send(&self, d: OutDatagram) -> Result<(), TunnelError> {
        match (self, d) {
            (DatagramTx::H3(s), OutDatagram::H3(b)) => Ok(s.send(b).await?),
        }
    }

    /// Sends without waiting; a full send buffer is an error (caller counts it).
    pub fn try_send(&self, d: OutDatagram) -> Result<(), TunnelError> {
        match (self, d) {
            (DatagramTx::H3(s), OutDatagram::H3(b)) => Ok(s.try_send(b)?),
        }
    }
}

/// Receives HTTP datagram payloads (context id first).
#[derive(Debug)]
pub enum DatagramRx {
    H3(DatagramReceiver),
}

impl DatagramRx {
    pub async fn recv(&mut self) -> Option<Bytes> {
        match self {
            DatagramRx::H3(r) => r.recv().await,
        }
    }

    /// A datagram already queued, without waiting (draining a burst).
    pub fn try_recv(&mut self) -> Option<Bytes> {
        match self {
            DatagramRx::H3(r) => r.try_recv(),
        }
    }
}
