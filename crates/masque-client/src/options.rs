//! What to connect to ([`Target`]) and how ([`ClientOptions`]).

use masque_transport::socket_buffers::DEFAULT_QUIC_SOCKET_BUFFER;
use std::{net::SocketAddr, time::Duration};

use masque_proto::{
    headers::auth::{PROXY_AUTHORIZATION, is_token68},
    template::{Host, HostPort, UdpTarget},
};
use masque_transport::tls::ServerVerification;

use crate::ClientError;

/// The far end of a tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Target {
    /// A UDP target for connect-udp (RFC 9298 §3). `host` is a DNS name or an IP
    /// literal (IPv6 with or without brackets; it is percent-encoded on expansion,
    /// R9298-11). Port 0 is refused (R9298-12).
    Udp { host: String, port: u16 },
}

impl Target {
    /// A connect-udp target.
    pub fn udp(host: impl Into<String>, port: u16) -> Self {
        Self::Udp {
            host: host.into(),
            port,
        }
    }

    /// The validated template target (R9298-10/11/12): rejects empty hosts, zone
    /// identifiers, malformed names and port 0 before anything is sent.
    pub(crate) fn to_udp_target(&self) -> Result<UdpTarget, ClientError> {
        let Self::Udp { host, port } = self;
        let invalid = |reason: String| ClientError::InvalidTarget {
            target: format!("{host}:{port}"),
            reason,
        };
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let host = Host::parse(bare).map_err(|e| invalid(e.to_string()))?;
        let hp = HostPort::new(host, *port).map_err(|e| invalid(e.to_string()))?;
        Ok(UdpTarget::Host(hp))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self::Udp { host, port } = self;
        if host.contains(':') && !host.starts_with('[') {
            write!(f, "udp://[{host}]:{port}")
        } else {
            write!(f, "udp://{host}:{port}")
        }
    }
}

/// Client settings. Every field has a sane default ([`ClientOptions::default`]).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How the proxy's certificate is checked (Web PKI by default).
    pub verification: ServerVerification,
    /// A full connect-udp URI template, e.g.
    /// `https://proxy.example:4433/masque{?target_host,target_port}`. `None`: the
    /// RFC 9298 default `/.well-known/masque/udp/{target_host}/{target_port}/` on
    /// the proxy URL's origin (R9298-09).
    pub template: Option<String>,
    /// Extra request header fields (e.g. `proxy-authorization`).
    pub headers: http::HeaderMap,
    /// Local address of the QUIC endpoint; `None`: `0.0.0.0:0` or `[::]:0` by the
    /// proxy's address family.
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
    /// response.
    pub connect_timeout: Duration,
    /// How long [`crate::UdpSession::close`] waits for the proxy's FIN.
    pub close_timeout: Duration,
    /// Capacity of the event channel of [`crate::UdpSession::into_events`] and of the
    /// per-tunnel queue of DATAGRAM capsules read from the stream.
    pub event_capacity: usize,
    /// HTTP/3 layer limits.
    pub h3: masque_h3::Config,
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

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            verification: ServerVerification::default(),
            template: None,
            headers: http::HeaderMap::new(),
            bind: None,
            initial_mtu: 1452,
            min_mtu: 1200,
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(2),
            event_capacity: 256,
            h3: masque_h3::Config::default(),
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
    fn display_brackets_ipv6() {
        assert_eq!(Target::udp("::1", 53).to_string(), "udp://[::1]:53");
        assert_eq!(Target::udp("a.example", 5).to_string(), "udp://a.example:5");
    }
}
