//! Errors of the HTTP/3 layer.

use std::time::Duration;

use crate::{Code, message::MalformedError, qpack::DecodeError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The QUIC connection ended (closed by either side, timed out, ...).
    #[error("connection closed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// We detected a connection error and closed the connection with `code`.
    #[error("HTTP/3 connection error {code}: {reason}")]
    Protocol { code: Code, reason: &'static str },
    /// The peer reset the stream we were reading.
    #[error("stream reset by peer: {0}")]
    StreamReset(Code),
    /// The peer asked us to stop sending on this stream.
    #[error("stream stopped by peer: {0}")]
    StreamStopped(Code),
    /// A message (request/response head) broke RFC 9114 §4.1.2; the stream was
    /// reset with H3_MESSAGE_ERROR (ERR-05).
    #[error("malformed message: {0}")]
    Malformed(#[from] MalformedError),
    /// A header block could not be decompressed.
    #[error("QPACK: {0}")]
    Qpack(#[from] DecodeError),
    /// The peer's SETTINGS lack something the request needs (XC-04, R9297-12).
    #[error("peer does not support {0}")]
    PeerSettingMissing(&'static str),
    #[error("peer SETTINGS not received within {0:?}")]
    SettingsTimeout(Duration),
    /// The peer sent GOAWAY; no new requests on this connection.
    #[error("connection is going away")]
    GoingAway,
    #[error("request stream ended before a complete {0}")]
    UnexpectedEnd(&'static str),
    #[error("datagram payload of {size} bytes exceeds the {max}-byte limit of this tunnel")]
    DatagramTooLarge { size: usize, max: usize },
    #[error("HTTP datagrams are not available on this connection")]
    DatagramsUnsupported,
    #[error("datagram send buffer is full")]
    DatagramBufferFull,
    /// Our side of the stream is finished or reset (R9297-05 forbids datagrams now).
    #[error("send side of the stream is closed")]
    SendClosed,
}

impl Error {
    pub(crate) fn protocol(code: Code, reason: &'static str) -> Self {
        Error::Protocol { code, reason }
    }
}

impl From<quinn::ReadError> for Error {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::Reset(code) => Error::StreamReset(Code(code.into_inner())),
            quinn::ReadError::ConnectionLost(c) => Error::Connection(c),
            quinn::ReadError::ClosedStream => Error::UnexpectedEnd("stream (already closed)"),
            quinn::ReadError::IllegalOrderedRead | quinn::ReadError::ZeroRttRejected => {
                Error::protocol(Code::INTERNAL_ERROR, "stream read state")
            }
        }
    }
}

impl From<quinn::WriteError> for Error {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::Stopped(code) => Error::StreamStopped(Code(code.into_inner())),
            quinn::WriteError::ConnectionLost(c) => Error::Connection(c),
            quinn::WriteError::ClosedStream | quinn::WriteError::ZeroRttRejected => {
                Error::SendClosed
            }
        }
    }
}
