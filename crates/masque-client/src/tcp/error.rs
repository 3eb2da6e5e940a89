//! Why a TCP tunnel's byte stream failed, as a typed error carried inside the
//! `io::Error`s of [`crate::TcpTunnel`].

use std::io;

use masque_transport::TunnelError;

/// Why a TCP tunnel's byte stream failed. [`TcpTunnel`](crate::TcpTunnel)'s
/// `AsyncRead` / `AsyncWrite` return it inside an `io::Error` of kind
/// [`TcpStreamError::kind`] (get it back with `io::Error::get_ref` and
/// `downcast_ref::<TcpStreamError>()`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TcpStreamError {
    /// The proxy reset the stream or stopped reading it (HTTP/3 code, HTTP/2
    /// reason), e.g. H3_CONNECT_ERROR (0x10f) or CONNECT_ERROR (0xa) when the
    /// target's connection was reset (CTCP-21/22).
    #[error("the proxy reset the tunnel (error code {code:#x})")]
    Reset { code: u64 },
    /// The stream ended without FINAL_DATA (connect-tcp, CTCP-22), or the
    /// HTTP/1.1 connection ended without a clean TLS close: the target's
    /// connection did not end with a FIN.
    #[error("the tunnel ended abortively (no FINAL_DATA or FIN)")]
    Abortive,
    /// The proxy broke the connect-tcp framing (DATA after FINAL_DATA,
    /// CTCP-04; a capsule cut short, R9297-24); we aborted the stream.
    #[error("malformed connect-tcp stream: {0}")]
    Malformed(String),
    /// The connection to the proxy failed.
    #[error("the connection to the proxy failed: {0}")]
    Transport(String),
    /// A write after [`shutdown`](tokio::io::AsyncWriteExt::shutdown).
    #[error("the tunnel's write side is shut down")]
    WriteShutdown,
    /// The tunnel was aborted locally ([`TcpWriteHalf::abort`](crate::TcpWriteHalf::abort),
    /// the write half dropped before a shutdown, or a malformed stream).
    #[error("the tunnel was aborted")]
    Aborted,
    /// The tunnel's task ended without a word (runtime shutdown).
    #[error("the tunnel is closed")]
    Closed,
}

impl TcpStreamError {
    /// The `io::ErrorKind` this error is reported with: resets and abortive
    /// ends are [`ConnectionReset`](io::ErrorKind::ConnectionReset), never a
    /// clean EOF.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Self::Reset { .. } | Self::Abortive => io::ErrorKind::ConnectionReset,
            Self::Malformed(_) => io::ErrorKind::InvalidData,
            Self::Transport(_) | Self::Aborted => io::ErrorKind::ConnectionAborted,
            Self::WriteShutdown => io::ErrorKind::BrokenPipe,
            Self::Closed => io::ErrorKind::NotConnected,
        }
    }

    pub(crate) fn io(&self) -> io::Error {
        io::Error::new(self.kind(), self.clone())
    }

    /// A transport failure: a reset with its code; on HTTP/1.1 an unclean end
    /// of the connection is [`Abortive`](Self::Abortive).
    pub(crate) fn from_transport(e: &TunnelError) -> Self {
        if let Some(code) = e.reset_code() {
            return Self::Reset { code };
        }
        match e {
            TunnelError::H3(masque_h3::Error::StreamStopped(code)) => Self::Reset { code: code.0 },
            TunnelError::Io(io)
                if matches!(
                    io.kind(),
                    io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                ) =>
            {
                Self::Abortive
            }
            other => Self::Transport(other.to_string()),
        }
    }
}
