//! One `Tunnel` abstraction over the HTTP transports. Session code (server and
//! client) is written once against these types; each transport supplies an
//! adapter (`crate::server::{h3, h2, h1}`, `crate::client`).
//!
//! Datagrams: on HTTP/3 they ride QUIC DATAGRAM frames; HTTP/2, HTTP/1.1 and
//! HTTP/3 without datagram support carry them as DATAGRAM capsules in the
//! body (RFC 9297 §3.5). That fallback lives inside [`DatagramTx`]: its
//! capsule variant queues encoded capsules that the owner of the
//! [`BodyTx`] writes ([`OpenTunnel::capsules`]), so no handler ever branches
//! on the transport.

pub(crate) mod body;
pub(crate) mod datagram;

use std::net::SocketAddr;

use masque_h3::Code;
use masque_proto::request::{Refusal as FormRefusal, RequestForm};

pub use body::{BodyRx, BodyTx};
pub use datagram::{CapsuleQueue, CapsuleSender, DatagramRx, DatagramTx, OutDatagram};

/// The HTTP version a tunnel arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    H3,
    H2,
    H1,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::H3, Transport::H2, Transport::H1];

    /// Short lower-case name (`h3`, `h2`, `h1`), as in metrics labels and CLI flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::H3 => "h3",
            Transport::H2 => "h2",
            Transport::H1 => "h1",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a tunnel was torn down abruptly; mapped to each transport's reset code
/// (HTTP/1.1 has none: the connection is closed).
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
    pub(crate) fn h3_code(self) -> Code {
        match self {
            ResetReason::Malformed => Code::MESSAGE_ERROR,
            ResetReason::ConnectError => Code::CONNECT_ERROR,
            ResetReason::Cancelled => Code::REQUEST_CANCELLED,
            ResetReason::Internal => Code::INTERNAL_ERROR,
        }
    }

    /// RFC 9113 §7 error codes.
    pub(crate) fn h2_reason(self) -> h2::Reason {
        match self {
            ResetReason::Malformed => h2::Reason::PROTOCOL_ERROR,
            ResetReason::ConnectError => h2::Reason::CONNECT_ERROR,
            ResetReason::Cancelled => h2::Reason::CANCEL,
            ResetReason::Internal => h2::Reason::INTERNAL_ERROR,
        }
    }
}

/// Transport errors seen by sessions.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error(transparent)]
    H3(#[from] masque_h3::Error),
    #[error("HTTP/2: {0}")]
    H2(#[from] h2::Error),
    #[error("HTTP/1.1: {0}")]
    H1(#[from] hyper::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The peer reset the stream (HTTP/2 or HTTP/3 code).
    #[error("stream reset by the peer (code {0:#x})")]
    Reset(u64),
    #[error("the tunnel is closed")]
    Closed,
    /// The capsule queue toward the body writer is full; the datagram was dropped.
    #[error("datagram queue full; dropped")]
    QueueFull,
    #[error("datagram of {size} bytes exceeds the {max}-byte limit")]
    DatagramTooLarge { size: usize, max: usize },
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("TLS: {0}")]
    Tls(String),
}

impl TunnelError {
    /// The limit that a too-large datagram exceeded, if that is the error.
    pub fn datagram_limit(&self) -> Option<usize> {
        match self {
            TunnelError::H3(masque_h3::Error::DatagramTooLarge { max, .. }) => Some(*max),
            TunnelError::DatagramTooLarge { max, .. } => Some(*max),
            _ => None,
        }
    }

    /// The reset code when the peer reset the stream.
    pub fn reset_code(&self) -> Option<u64> {
        match self {
            TunnelError::H3(masque_h3::Error::StreamReset(c)) => Some(c.0),
            TunnelError::Reset(c) => Some(*c),
            // What is left in `H2` (see `body::h2_error`) is no stream reset:
            // GOAWAY, a connection or a library error.
            _ => None,
        }
    }
}

/// The request, independent of the transport it came on: each adapter fills
/// in the normalised form (RFC 8441 / RFC 9220 extended CONNECT, HTTP/1.1
/// `GET` + `Upgrade`, classic CONNECT on all three).
#[derive(Debug, Clone)]
pub struct TunnelRequest {
    pub transport: Transport,
    /// What the request asks for, or why it is malformed (the adapter's
    /// pseudo-header / request-line rules, answered 400 by the router).
    pub form: Result<RequestForm, FormRefusal>,
    pub headers: http::HeaderMap,
    pub peer: SocketAddr,
    /// Stream id on HTTP/3 and HTTP/2 (0 on HTTP/1.1), for logs.
    pub stream_id: u64,
}

/// An established tunnel, split for concurrent use.
#[derive(Debug)]
pub struct OpenTunnel {
    pub body_tx: BodyTx,
    pub body_rx: BodyRx,
    /// Always present: native HTTP/3 datagrams, or DATAGRAM capsules queued
    /// for the body writer (see [`OpenTunnel::capsules`]).
    pub datagram_tx: DatagramTx,
    /// `None` where datagrams arrive as DATAGRAM capsules in the body.
    pub datagram_rx: Option<DatagramRx>,
    /// Encoded DATAGRAM capsules from `datagram_tx` (capsule transports only):
    /// whoever owns `body_tx` writes them, in order, between its own writes.
    pub capsules: Option<CapsuleQueue>,
}
