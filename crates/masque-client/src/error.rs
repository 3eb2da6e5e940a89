//! Errors of the client library. Every failure is typed; nothing panics on
//! input from the proxy or the user.

use std::time::Duration;

use http::StatusCode;
use masque_proto::proxy_status::ProxyStatus;

/// Why a tunnel could not be opened or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The proxy URL is not `https://host[:port][/]` (nor a URI template).
    #[error("invalid proxy URL {url:?}: {reason}")]
    InvalidProxyUrl { url: String, reason: &'static str },
    /// The URI template breaks RFC 9298 §2; no request was sent (R9298-08).
    #[error("invalid URI template: {0}")]
    Template(#[from] masque_proto::template::TemplateError),
    /// The target host or port cannot be expressed (R9298-10/11/12).
    #[error("invalid target {target:?}: {reason}")]
    InvalidTarget { target: String, reason: String },

    /// A bearer token that cannot be sent (not a token68).
    #[error("invalid proxy bearer token: {reason}")]
    InvalidCredentials { reason: &'static str },
    /// DNS resolution of the proxy host failed or returned no address.
    #[error("resolving proxy host {host:?}: {reason}")]
    Resolve { host: String, reason: String },
    /// A local socket could not be bound or used.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS configuration could not be built (bad CA list, pin, ...).
    #[error("TLS configuration: {0}")]
    Tls(#[from] masque_transport::tls::TlsError),
    /// quinn refused to start the connection (bad server name, endpoint stopped, ...).
    #[error("starting QUIC connection: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The QUIC handshake failed or the connection ended (a certificate that
    /// does not verify, e.g. a wrong pin, shows up here).
    #[error("QUIC connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// An HTTP/3 failure (missing SETTINGS, stream reset, malformed response...).
    #[error("HTTP/3: {0}")]
    H3(#[from] masque_h3::Error),
    /// The proxy did not answer within the configured time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The proxy answered with a non-2xx status (R9298-22, R9298-32). `proxy_status`
    /// is the raw `Proxy-Status` value; `details` its parsed members (RFC 9209).
    #[error("proxy refused the tunnel: {status}{}", fmt_proxy_status(.proxy_status))]
    Refused {
        status: StatusCode,
        proxy_status: Option<String>,
        details: Vec<ProxyStatus>,
    },
    /// A 2xx response that breaks the Capsule Protocol rules (R9298-31, R9297-20,
    /// R9297-25..27); the request was aborted.
    #[error("invalid response from proxy ({status}): {reason}")]
    InvalidResponse { status: StatusCode, reason: String },
    /// The payload does not fit in one datagram of this tunnel right now, or is
    /// over the 65527-byte connect-udp limit (R9298-40).
    #[error("UDP payload of {size} bytes exceeds the {max}-byte limit of this tunnel")]
    PayloadTooLarge { size: usize, max: usize },
    /// `try_send` found the datagram send buffer full; the payload was dropped.
    #[error("datagram send buffer is full")]
    BufferFull,
    /// The proxy does not accept HTTP datagrams on this connection (R9297-12).
    #[error("HTTP datagrams are not available on this connection")]
    DatagramsUnsupported,
    /// The tunnel is closed (our side finished it, or the stream or connection ended).
    #[error("tunnel is closed")]
    Closed,
}

fn fmt_proxy_status(v: &Option<String>) -> String {
    match v {
        Some(v) => format!(" (Proxy-Status: {v})"),
        None => String::new(),
    }
}

impl ClientError {
    /// Errors in the configuration (URL, template, target, TLS material): retrying
    /// cannot help.
    pub fn is_config_error(&self) -> bool {
        matches!(
            self,
            Self::InvalidProxyUrl { .. }
                | Self::Template(_)
                | Self::InvalidTarget { .. }
                | Self::InvalidCredentials { .. }
                | Self::Tls(_)
        )
    }

    /// Maps a datagram send failure of masque-h3. `prefix` is the Context ID
    /// length, subtracted from the sizes masque-h3 reports.
    pub(crate) fn from_send(e: masque_h3::Error, prefix: usize) -> Self {
        match e {
            masque_h3::Error::DatagramTooLarge { size, max } => Self::PayloadTooLarge {
                size: size.saturating_sub(prefix),
                max: max.saturating_sub(prefix),
            },
            masque_h3::Error::DatagramBufferFull => Self::BufferFull,
            masque_h3::Error::DatagramsUnsupported => Self::DatagramsUnsupported,
            masque_h3::Error::SendClosed => Self::Closed,
            masque_h3::Error::Connection(c) => Self::Connection(c),
            other => Self::H3(other),
        }
    }
}
