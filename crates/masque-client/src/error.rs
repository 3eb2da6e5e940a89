//! Errors of the client library. Every failure is typed; nothing panics on
//! input from the proxy or the user.

use std::time::Duration;

use http::StatusCode;
use masque_proto::proxy_status::ProxyStatus;
use masque_transport::{
    TunnelError,
    client::{ConnectError, OpenError},
};

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
    /// An HTTP/2 or HTTP/1.1 failure (connection or stream error, reset).
    #[error("{0}")]
    Transport(masque_transport::TunnelError),
    /// Setting up TLS over TCP failed (HTTP/2, HTTP/1.1): the certificate did
    /// not verify (a wrong pin shows up here), or the proxy refused the HTTP
    /// version (ALPN).
    #[error("connecting to the proxy: {0}")]
    Handshake(ConnectError),
    /// The proxy does not enable extended CONNECT (HTTP/2 and HTTP/3
    /// `SETTINGS_ENABLE_CONNECT_PROTOCOL`, RFC 8441 §3, RFC 9220 §3); nothing was sent.
    #[error("the proxy does not support extended CONNECT on this connection")]
    ExtendedConnectUnsupported,
    /// The connection is going away (GOAWAY, or closed locally): open the
    /// tunnel on a new connection.
    #[error("the connection to the proxy is going away")]
    GoingAway,
    /// [`crate::TransportChoice::Auto`]: no transport completed its
    /// handshake and settings check within the race's deadline; why, per
    /// transport ([`crate::RaceOptions`]).
    #[error("no transport reached the proxy: HTTP/3: {h3}; HTTP/2: {h2}; HTTP/1.1: {h1}")]
    RaceFailed { h3: String, h2: String, h1: String },
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
    /// A connect-ip capsule that cannot be sent as asked (invalid prefix or
    /// range, overlapping routes, too many outstanding requests, ...).
    #[error("connect-ip: {0}")]
    ConnectIp(#[from] masque_proto::connect_ip::ConnectIpError),
    /// An ADDRESS_ASSIGN entry whose non-zero request id answers no
    /// outstanding ADDRESS_REQUEST of the peer (R9484-23, R9484-33).
    #[error("request id {0} answers no outstanding ADDRESS_REQUEST of the peer")]
    UnknownRequestId(u64),
    /// The HTTP/3 path's QUIC datagrams cannot carry a 1280-byte IP packet
    /// (R9484-50); the request stream was aborted.
    #[error(
        "the tunnel carries IP packets of at most {max} bytes, connect-ip needs {required} (R9484-50)"
    )]
    TunnelMtuTooSmall { max: usize, required: usize },
    /// Not something a connect-ip tunnel carries (not IPv4 or IPv6, R9484-43).
    #[error("invalid IP packet: {0}")]
    InvalidPacket(&'static str),
    /// The connection pool could not hand out a connection
    /// ([`crate::ProxyClient::new`]).
    #[error("connection pool: {0}")]
    Pool(#[from] crate::pool::PoolError),
    /// A capsule type the connect-ip session manages itself (DATAGRAM,
    /// ADDRESS_ASSIGN, ADDRESS_REQUEST, ROUTE_ADVERTISEMENT).
    #[error("capsule type 0x{0:x} is managed by the session")]
    ReservedCapsuleType(u64),
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

    /// Maps a datagram send failure. `prefix` is the Context ID length,
    /// subtracted from the sizes the transport reports.
    pub(crate) fn from_send(e: TunnelError, prefix: usize) -> Self {
        match e {
            TunnelError::H3(e) => Self::from_h3_send(e, prefix),
            TunnelError::DatagramTooLarge { size, max } => Self::PayloadTooLarge {
                size: size.saturating_sub(prefix),
                max: max.saturating_sub(prefix),
            },
            TunnelError::QueueFull => Self::BufferFull,
            TunnelError::Closed => Self::Closed,
            other => Self::Transport(other),
        }
    }

    /// Maps a failure to set up a connection; `limit` is the configured timeout.
    pub(crate) fn from_connect(e: ConnectError, limit: Duration) -> Self {
        match e {
            ConnectError::Config(e) => Self::Tls(e),
            ConnectError::ServerName(name) => Self::InvalidProxyUrl {
                url: name,
                reason: "the host is not a valid TLS server name",
            },
            ConnectError::Io(e) => Self::Io(e),
            ConnectError::QuicStart(e) => Self::Connect(e),
            ConnectError::Quic(e) => Self::Connection(e),
            ConnectError::Http(e) => Self::from_tunnel(e),
            ConnectError::Timeout(_) => Self::Timeout(limit),
            other => Self::Handshake(other),
        }
    }

    /// Maps a failure to open a tunnel (a refusal is [`ClientError::Refused`]).
    pub(crate) fn from_open(e: OpenError, limit: Duration) -> Self {
        match e {
            OpenError::Refused(head) => crate::request::refused(&head),
            OpenError::ExtendedConnectDisabled => Self::ExtendedConnectUnsupported,
            OpenError::InvalidUpgrade { status, reason } => {
                Self::InvalidResponse { status, reason }
            }
            OpenError::InvalidRequest(reason) => Self::InvalidTarget {
                target: String::new(),
                reason,
            },
            OpenError::GoingAway => Self::GoingAway,
            OpenError::Connect(e) => Self::from_connect(e, limit),
            OpenError::Tunnel(e) => Self::from_tunnel(e),
            OpenError::Timeout(_) => Self::Timeout(limit),
            _ => Self::Closed,
        }
    }

    pub(crate) fn from_tunnel(e: TunnelError) -> Self {
        match e {
            TunnelError::H3(masque_h3::Error::GoingAway) => Self::GoingAway,
            TunnelError::H3(masque_h3::Error::Connection(e)) => Self::Connection(e),
            TunnelError::H3(e) => Self::H3(e),
            TunnelError::Io(e) => Self::Io(e),
            other => Self::Transport(other),
        }
    }

    fn from_h3_send(e: masque_h3::Error, prefix: usize) -> Self {
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
