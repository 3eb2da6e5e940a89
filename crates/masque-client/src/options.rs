//! What to connect to ([`Target`]) and how ([`ClientOptions`]).

use masque_transport::socket_buffers::DEFAULT_QUIC_SOCKET_BUFFER;
use std::{net::SocketAddr, time::Duration};

use masque_proto::{
    headers::auth::{PROXY_AUTHORIZATION, is_token68},
    template::{Host, HostPort, TcpTarget, UdpTarget},
};
use masque_transport::{
    ClientConfig, Transport, TunnelLimits,
    client::{H2ClientConfig, QuicClientConfig},
    tls::ServerVerification,
};

use crate::ClientError;

/// The far end of a tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Target {
    /// A UDP target for connect-udp (RFC 9298 §3). `host` is a DNS name or an IP
    /// literal (IPv6 with or without brackets; it is percent-encoded on expansion,
    /// R9298-11). Port 0 is refused (R9298-12).
    Udp { host: String, port: u16 },
    /// A TCP target for connect-tcp or classic CONNECT
    /// ([`crate::ProxyClient::open_tcp`]). Same host rules as
    /// [`Target::Udp`]; port 0 is refused (CTCP-01).
    Tcp { host: String, port: u16 },
}

impl Target {
    /// A connect-udp target.
    pub fn udp(host: impl Into<String>, port: u16) -> Self {
        Self::Udp {
            host: host.into(),
            port,
        }
    }

    /// A TCP target (connect-tcp, classic CONNECT).
    pub fn tcp(host: impl Into<String>, port: u16) -> Self {
        Self::Tcp {
            host: host.into(),
            port,
        }
    }

    fn host_port(&self) -> (&str, u16) {
        match self {
            Self::Udp { host, port } | Self::Tcp { host, port } => (host, *port),
        }
    }

    fn invalid(&self, reason: impl Into<String>) -> ClientError {
        let (host, port) = self.host_port();
        ClientError::InvalidTarget {
            target: format!("{host}:{port}"),
            reason: reason.into(),
        }
    }

    /// The validated host and port: rejects empty hosts, zone identifiers,
    /// malformed names and port 0 (R9298-10/11/12, CTCP-01).
    fn validated(&self) -> Result<HostPort, ClientError> {
        let (host, port) = self.host_port();
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let host = Host::parse(bare).map_err(|e| self.invalid(e.to_string()))?;
        HostPort::new(host, port).map_err(|e| self.invalid(e.to_string()))
    }

    /// The validated template target (R9298-10/11/12): rejects empty hosts, zone
    /// identifiers, malformed names and port 0 before anything is sent.
    pub(crate) fn to_udp_target(&self) -> Result<UdpTarget, ClientError> {
        if !matches!(self, Self::Udp { .. }) {
            return Err(self.invalid("a TCP target cannot be a connect-udp tunnel"));
        }
        Ok(UdpTarget::Host(self.validated()?))
    }

    /// The validated connect-tcp / classic CONNECT target (CTCP-01).
    pub(crate) fn to_tcp_target(&self) -> Result<TcpTarget, ClientError> {
        if !matches!(self, Self::Tcp { .. }) {
            return Err(self.invalid("a UDP target cannot be a TCP tunnel"));
        }
        self.validated()
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self {
            Self::Udp { .. } => "udp",
            Self::Tcp { .. } => "tcp",
        };
        let (host, port) = self.host_port();
        if host.contains(':') && !host.starts_with('[') {
            write!(f, "{scheme}://[{host}]:{port}")
        } else {
            write!(f, "{scheme}://{host}:{port}")
        }
    }
}

/// Which HTTP version carries the tunnels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportChoice {
    /// The best available, found by a race ([`RaceOptions`]): HTTP/3 at
    /// once, HTTP/2 and HTTP/1.1 after head starts; the first to complete its
    /// handshake and settings check wins, and is remembered per proxy.
    /// [`transport`](Self::transport) names HTTP/3, where the race starts.
    #[default]
    Auto,
    /// HTTP/3 over QUIC: QUIC DATAGRAMs (DATAGRAM capsules if the proxy has none).
    H3,
    /// HTTP/2 over TLS (extended CONNECT, RFC 8441): DATAGRAM capsules.
    H2,
    /// HTTP/1.1 over TLS (`GET` + `Upgrade: connect-udp`, 101): DATAGRAM
    /// capsules, one TLS connection per tunnel.
    H1,
}

impl TransportChoice {
    /// The transport this choice connects with.
    pub fn transport(self) -> Transport {
        match self {
            Self::Auto | Self::H3 => Transport::H3,
            Self::H2 => Transport::H2,
            Self::H1 => Transport::H1,
        }
    }

    /// `auto`, `h3`, `h2`, `h1`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::H3 => "h3",
            Self::H2 => "h2",
            Self::H1 => "h1",
        }
    }
}

impl From<Transport> for TransportChoice {
    fn from(t: Transport) -> Self {
        match t {
            Transport::H3 => Self::H3,
            Transport::H2 => Self::H2,
            Transport::H1 => Self::H1,
        }
    }
}

impl std::fmt::Display for TransportChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How [`TransportChoice::Auto`] races the transports (the Erlang
/// `masque_racer`). Attempts start in order, HTTP/3, HTTP/2, HTTP/1.1, the
/// first at once, the second `h2_delay` and the third `h1_delay` after the
/// race began, or at once when an earlier attempt fails (ICMP unreachable,
/// connection refused, a handshake error, the wrong ALPN or settings). A
/// remembered winner goes first, the others follow at the same offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaceOptions {
    /// When the second attempt (HTTP/2) starts at the latest (250 ms).
    pub h2_delay: Duration,
    /// When the third attempt (HTTP/1.1) starts at the latest, from the
    /// race's start (500 ms; never before `h2_delay`).
    pub h1_delay: Duration,
    /// The whole race, name resolution included (5 s); then every
    /// transport's failure is reported ([`ClientError::RaceFailed`]).
    pub deadline: Duration,
    /// How long a winner is remembered per proxy (host, port and TLS
    /// identity) so the next connect tries it first (5 min; zero: never).
    /// A failure of the remembered transport forgets it.
    pub remember: Duration,
}

impl Default for RaceOptions {
    fn default() -> Self {
        Self {
            h2_delay: Duration::from_millis(250),
            h1_delay: Duration::from_millis(500),
            deadline: Duration::from_secs(5),
            remember: Duration::from_secs(300),
        }
    }
}

/// Not one of `auto`, `h3`, `h2`, `h1`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown transport {0:?} (expected auto, h3, h2 or h1)")]
pub struct UnknownTransport(pub String);

impl std::str::FromStr for TransportChoice {
    type Err = UnknownTransport;

    /// Case-insensitive; `http/3`, `http/2`, `http/1.1` are accepted too.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => Self::Auto,
            "h3" | "http/3" => Self::H3,
            "h2" | "http/2" => Self::H2,
            "h1" | "http/1.1" => Self::H1,
            _ => return Err(UnknownTransport(s.to_owned())),
        })
    }
}

/// Client settings. Every field has a sane default ([`ClientOptions::default`]).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The HTTP version ([`TransportChoice::Auto`], the race, by default).
    pub transport: TransportChoice,
    /// Head starts, deadline and memory of [`TransportChoice::Auto`]'s race.
    pub race: RaceOptions,
    /// How the proxy's certificate is checked (Web PKI by default).
    pub verification: ServerVerification,
    /// A full connect-udp URI template, e.g.
    /// `https://proxy.example:4433/masque{?target_host,target_port}`. `None`: the
    /// RFC 9298 default `/.well-known/masque/udp/{target_host}/{target_port}/` on
    /// the proxy URL's origin (R9298-09).
    pub template: Option<String>,
    /// A full connect-tcp URI template, e.g.
    /// `https://proxy.example:4433/tcp{?target_host,target_port}`. `None`: the
    /// default `/.well-known/masque/tcp/{target_host}/{target_port}/` on the
    /// proxy URL's origin (CTCP-01, CTCP-30).
    pub tcp_template: Option<String>,
    /// A full connect-ip URI template, e.g.
    /// `https://proxy.example:4433/ip{?target,ipproto}`. `None`: RFC 9484's
    /// default `/.well-known/masque/ip/{target}/{ipproto}/` on the proxy
    /// URL's origin (R9484-03).
    pub ip_template: Option<String>,
    /// Extra request header fields (e.g. `proxy-authorization`).
    pub headers: http::HeaderMap,
    /// Local address of the QUIC endpoint (TCP transports use its IP only);
    /// `None`: `0.0.0.0:0` or `[::]:0` by the proxy's address family.
    pub bind: Option<SocketAddr>,
    /// QUIC initial MTU; clamped to 1200..=65527. 1452 lets 1200-byte payloads
    /// fit from the first packet on common paths; PMTUD raises it later.
    pub initial_mtu: u16,
    /// The smallest MTU the path is known to carry; quinn's black-hole
    /// detection never drops below it (clamped to 1200..=`initial_mtu`). The
    /// default 1200 assumes nothing; on a path known to carry more (loopback,
    /// a data-center network) a higher floor keeps a burst of losses from
    /// shrinking datagrams below the payloads the tunnel carries.
    pub min_mtu: u16,
    /// QUIC idle timeout (keep-alives every 15 s keep idle tunnels up).
    pub idle_timeout: Duration,
    /// Limit for the handshake, and separately for each tunnel request to get its
    /// response (on HTTP/1.1, which dials per tunnel, the dial included).
    pub connect_timeout: Duration,
    /// How long [`crate::UdpSession::close`] waits for the proxy's FIN.
    pub close_timeout: Duration,
    /// Capacity of the event channel of [`crate::UdpSession::into_events`] and of the
    /// per-tunnel queue of DATAGRAM capsules read from the stream; also the queue of
    /// DATAGRAM capsules waiting to be written (HTTP/2, HTTP/1.1), beyond which
    /// sends fail with [`ClientError::BufferFull`].
    pub event_capacity: usize,
    /// HTTP/3 layer limits.
    pub h3: masque_h3::Config,
    /// HTTP/2 windows and limits.
    pub h2: H2ClientConfig,
    /// `SO_RCVBUF` / `SO_SNDBUF` asked for the QUIC endpoint's socket
    /// (default 4 MiB each). Best effort: the kernel caps them at
    /// `net.core.rmem_max` / `wmem_max` (a warning is logged once);
    /// [`crate::ProxyClient::socket_buffer_sizes`] tells what was granted.
    pub socket_recv_buffer: usize,
    pub socket_send_buffer: usize,
}

impl ClientOptions {
    /// Sends `Proxy-Authorization: Bearer <token>` with every tunnel request
    /// (R9298-52), replacing any earlier one. The value is marked sensitive,
    /// so `Debug` output and logs do not show it.
    pub fn with_bearer_token(mut self, token: &str) -> Result<Self, ClientError> {
        if !is_token68(token.as_bytes()) {
            return Err(ClientError::InvalidCredentials {
                reason: "a token68 is letters, digits, - . _ ~ + /, then = padding",
            });
        }
        let mut value = http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            ClientError::InvalidCredentials {
                reason: "not a header value",
            }
        })?;
        value.set_sensitive(true);
        self.headers.insert(PROXY_AUTHORIZATION, value);
        Ok(self)
    }
}

impl ClientOptions {
    /// The transport layer's view of these options.
    pub(crate) fn client_config(&self) -> ClientConfig {
        ClientConfig {
            verification: self.verification.clone(),
            connect_timeout: self.connect_timeout,
            open_timeout: self.connect_timeout,
            bind: self.bind,
            quic: QuicClientConfig {
                initial_mtu: self.initial_mtu,
                min_mtu: self.min_mtu,
                idle_timeout: self.idle_timeout,
                socket_recv_buffer: self.socket_recv_buffer,
                socket_send_buffer: self.socket_send_buffer,
            },
            h3: self.h3.clone(),
            h2: self.h2.clone(),
            limits: TunnelLimits {
                capsule_queue: self.event_capacity.max(1),
                ..TunnelLimits::default()
            },
            ..ClientConfig::default()
        }
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            transport: TransportChoice::default(),
            race: RaceOptions::default(),
            verification: ServerVerification::default(),
            template: None,
            tcp_template: None,
            ip_template: None,
            headers: http::HeaderMap::new(),
            bind: None,
            initial_mtu: 1452,
            min_mtu: 1200,
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(2),
            event_capacity: 256,
            h3: masque_h3::Config::default(),
            h2: H2ClientConfig::default(),
            socket_recv_buffer: DEFAULT_QUIC_SOCKET_BUFFER,
            socket_send_buffer: DEFAULT_QUIC_SOCKET_BUFFER,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r9298_10_11_12_targets_are_validated() {
        assert!(Target::udp("example.com", 53).to_udp_target().is_ok());
        assert!(Target::udp("[2001:db8::42]", 443).to_udp_target().is_ok());
        assert!(Target::udp("2001:db8::42", 443).to_udp_target().is_ok());
        for bad in [
            Target::udp("", 53),
            Target::udp("example.com", 0),
            Target::udp("fe80::1%25eth0", 53),
            Target::udp("bad host", 53),
        ] {
            let err = bad.to_udp_target().unwrap_err();
            assert!(matches!(err, ClientError::InvalidTarget { .. }), "{err}");
            assert!(err.is_config_error());
        }
    }

    #[test]
    fn bearer_token_header_is_sensitive() {
        let o = ClientOptions::default()
            .with_bearer_token("abc-DEF_123")
            .unwrap();
        let v = &o.headers[PROXY_AUTHORIZATION];
        assert_eq!(v, "Bearer abc-DEF_123");
        assert!(v.is_sensitive());
        assert!(
            !format!("{o:?}").contains("abc-DEF_123"),
            "Debug leaks the token"
        );
        let err = ClientOptions::default()
            .with_bearer_token("a b")
            .unwrap_err();
        assert!(err.is_config_error(), "{err}");
    }

    #[test]
    fn transport_choice_parses_and_defaults_to_h3() {
        assert_eq!(ClientOptions::default().transport, TransportChoice::Auto);
        assert_eq!(TransportChoice::Auto.transport(), Transport::H3);
        for (s, c) in [
            ("auto", TransportChoice::Auto),
            ("H3", TransportChoice::H3),
            ("h2", TransportChoice::H2),
            ("http/1.1", TransportChoice::H1),
            ("h1", TransportChoice::H1),
        ] {
            assert_eq!(s.parse::<TransportChoice>(), Ok(c));
        }
        assert!("h4".parse::<TransportChoice>().is_err());
        for t in Transport::ALL {
            assert_eq!(TransportChoice::from(t).transport(), t);
            assert_eq!(TransportChoice::from(t).to_string(), t.as_str());
        }
    }

    #[test]
    fn tcp_targets_are_validated_and_kept_apart_from_udp() {
        assert!(Target::tcp("example.com", 443).to_tcp_target().is_ok());
        assert!(Target::tcp("[2001:db8::42]", 443).to_tcp_target().is_ok());
        for bad in [
            Target::tcp("", 80),
            Target::tcp("example.com", 0),
            Target::tcp("bad host", 80),
            Target::udp("example.com", 80),
        ] {
            let err = bad.to_tcp_target().unwrap_err();
            assert!(matches!(err, ClientError::InvalidTarget { .. }), "{err}");
        }
        let err = Target::tcp("example.com", 80).to_udp_target().unwrap_err();
        assert!(matches!(err, ClientError::InvalidTarget { .. }), "{err}");
        assert_eq!(Target::tcp("::1", 22).to_string(), "tcp://[::1]:22");
    }

    #[test]
    fn display_brackets_ipv6() {
        assert_eq!(Target::udp("::1", 53).to_string(), "udp://[::1]:53");
        assert_eq!(Target::udp("a.example", 5).to_string(), "udp://a.example:5");
    }
}
