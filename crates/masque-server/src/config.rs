//! Server configuration. Every limit has a default (DESIGN.md §6).

use std::{net::SocketAddr, time::Duration};

use masque_proto::{capsule::DEFAULT_MAX_CAPSULE_SIZE, template};
use masque_transport::{H1Config, H2Config, TunnelLimits};

/// Limits applied to every tunnel session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Bound on one capsule being received (RFC 9297 §3.3 / R9297-34).
    pub max_capsule_size: usize,
    /// No traffic either way for this long ends the tunnel (R9298-21: ≥ 2 min).
    pub idle_timeout: Duration,
    /// How long `Handler::init` may take before the request fails (504).
    pub init_timeout: Duration,
    /// Handler output queued before the 2xx (datagrams) and capsules queued
    /// for the stream writer; beyond it output is dropped and counted.
    pub output_queue: usize,
    /// Info messages queued for a session; beyond it they are dropped and counted.
    pub info_queue: usize,
    /// Longest one write to the client may wait for stream credit (the
    /// response HEADERS, a capsule, a burst of DATAGRAM capsules). A peer that
    /// withholds credit longer gets its stream reset (counted in
    /// `writes_timed_out`), so it cannot park the session for good.
    pub write_deadline: Duration,
    /// Stream tunnels: longest one write may wait, to the client for stream
    /// credit or to the target for TCP window, before the tunnel is reset
    /// (longer than `write_deadline`: a reader may pause a download).
    pub stream_write_timeout: Duration,
    /// Stream tunnels with one direction finished (half-closed): no traffic
    /// for this long ends the tunnel (a quiet open one waits `idle_timeout`).
    pub half_closed_timeout: Duration,
    /// Datagram tunnels: packets per second (and burst) one tunnel may send
    /// toward its target; over it datagrams are dropped and counted
    /// (`datagrams_dropped_rate`). `None`: unlimited.
    pub datagram_rate: Option<crate::session::budget::PacketRate>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_capsule_size: DEFAULT_MAX_CAPSULE_SIZE,
            idle_timeout: Duration::from_secs(300),
            init_timeout: Duration::from_secs(15),
            output_queue: 64,
            info_queue: 64,
            write_deadline: Duration::from_secs(10),
            stream_write_timeout: Duration::from_secs(60),
            half_closed_timeout: Duration::from_secs(60),
            datagram_rate: Some(crate::session::budget::PacketRate::default()),
        }
    }
}

/// Where the TLS/TCP listener (HTTP/2 and HTTP/1.1, chosen by ALPN) binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TcpListen {
    /// The address and port number of the HTTP/3 listener (`listen`), so one
    /// port number serves all three HTTP versions (the default). When
    /// `listen` has port 0, TCP takes the port the UDP socket actually got
    /// if that port is free on TCP, else an ephemeral port of its own
    /// (`Node::tcp_addr` tells which). With an explicit port, a TCP port
    /// already in use is a start-up error.
    #[default]
    SameAsH3,
    /// This address (port 0: an ephemeral port).
    At(SocketAddr),
    /// No TLS/TCP listener: HTTP/3 only.
    Off,
}

/// The listeners of one node and the policy of the tunnels they accept.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Name of the HTTP/3 listener in the ListenerRegistry; the TLS/TCP
    /// listener registers as [`tls_name`](Self::tls_name) (`"{name}/tls"`).
    pub name: String,
    /// UDP address of the HTTP/3 listener.
    pub listen: SocketAddr,
    /// TCP address of the TLS listener (HTTP/2 and HTTP/1.1).
    pub tcp_listen: TcpListen,
    /// `Proxy-Status` member name (RFC 9209 §2).
    pub node_name: String,
    /// Tunnels one connection may hold; more get 503 + `connection_limit_reached`.
    pub max_tunnels_per_connection: usize,
    /// A connection that carries no tunnel (and no request being set up) for
    /// this long gets GOAWAY and is closed, on every transport (the QUIC
    /// keep-alive would keep an idle client's connection up for good).
    /// `None`: never.
    pub connection_idle_timeout: Option<Duration>,
    /// Node-wide caps: connections (in all, per source address), handshakes
    /// in flight, QUIC Retry threshold, tunnels in all.
    pub admission: crate::admission::AdmissionLimits,
    /// Who may open tunnels (default: anyone; R9298-52). Checked first: a
    /// request without valid credentials gets 407 before anything else.
    pub auth: crate::auth::ProxyAuth,
    /// CONNECT-UDP URI template path (RFC 9298 §3).
    pub udp_template: String,
    /// How long open tunnels may drain on shutdown before they are cut.
    pub drain_timeout: Duration,
    pub session: SessionConfig,
    pub h3: masque_h3::Config,
    /// HTTP/2 settings. `Node::start` sets `max_concurrent_streams` to
    /// `max_tunnels_per_connection`, whatever it was.
    pub h2: H2Config,
    /// HTTP/1.1 request head bounds.
    pub h1: H1Config,
    /// Per-tunnel limits every transport applies.
    pub tunnel_limits: TunnelLimits,
    /// Time a TCP client has to complete the TLS handshake; a client that
    /// stalls (half a ClientHello, then silence) is cut off after it. The
    /// HTTP/2 preface and SETTINGS exchange then has `h2.handshake_timeout`.
    pub tls_handshake_timeout: Duration,
    /// Time a QUIC client has, after the QUIC handshake, for HTTP/3 setup
    /// (the node opens its control and QPACK streams and writes SETTINGS); a
    /// client that grants no unidirectional stream or no credit is closed
    /// after it (counted in `h3_setup_timeouts`).
    pub h3_setup_timeout: Duration,
    /// Longest a connection's GOAWAY (drain, idle close) may wait for credit
    /// on the control stream; then the router goes on without it.
    pub goaway_timeout: Duration,
    /// QUIC path MTU: where quinn starts (PMTUD raises it) and the floor its
    /// black-hole detection never goes below. Both are clamped to
    /// 1200..=65527 and `min <= initial`. The defaults assume nothing about
    /// the path; raise the floor on paths known to carry more.
    pub quic_mtu: QuicMtu,
    /// `SO_RCVBUF` / `SO_SNDBUF` asked for the listener's UDP socket, which
    /// carries every client's QUIC packets (default 4 MiB each; the kernel's
    /// 208 KiB default holds well under a millisecond of a busy node's
    /// traffic). Best effort: the kernel caps them at `net.core.rmem_max` /
    /// `wmem_max` and a warning is logged; `Node::quic_buffer_sizes` tells
    /// what was granted.
    pub quic_recv_buffer: usize,
    pub quic_send_buffer: usize,
}

/// Default [`ServerConfig::quic_recv_buffer`] and `quic_send_buffer`.
pub use masque_transport::socket_buffers::DEFAULT_QUIC_SOCKET_BUFFER;

/// See [`ServerConfig::quic_mtu`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuicMtu {
    pub initial: u16,
    pub min: u16,
}

impl Default for QuicMtu {
    fn default() -> Self {
        Self {
            initial: 1200,
            min: 1200,
        }
    }
}

impl QuicMtu {
    /// Applies the (clamped) values to a quinn transport configuration.
    pub fn apply(self, t: &mut quinn::TransportConfig) {
        let initial = self.initial.clamp(1200, 65527);
        t.initial_mtu(initial)
            .min_mtu(self.min.clamp(1200, initial));
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            name: "h3".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 4433)),
            tcp_listen: TcpListen::SameAsH3,
            node_name: "masque-node".into(),
            max_tunnels_per_connection: 100,
            connection_idle_timeout: Some(Duration::from_secs(120)),
            admission: crate::admission::AdmissionLimits::default(),
            auth: crate::auth::ProxyAuth::default(),
            udp_template: template::DEFAULT_UDP_PATH.into(),
            drain_timeout: Duration::from_secs(10),
            session: SessionConfig::default(),
            h3: masque_h3::Config::default(),
            h2: H2Config {
                max_concurrent_streams: 100,
                ..H2Config::default()
            },
            h1: H1Config::default(),
            tunnel_limits: TunnelLimits::default(),
            tls_handshake_timeout: Duration::from_secs(10),
            h3_setup_timeout: Duration::from_secs(10),
            goaway_timeout: Duration::from_secs(1),
            quic_mtu: QuicMtu::default(),
            quic_recv_buffer: DEFAULT_QUIC_SOCKET_BUFFER,
            quic_send_buffer: DEFAULT_QUIC_SOCKET_BUFFER,
        }
    }
}

impl ServerConfig {
    /// Name of the TLS/TCP listener in the ListenerRegistry.
    pub fn tls_name(&self) -> String {
        format!("{}/tls", self.name)
    }

    /// The TCP address asked for, resolved against `listen` (port 0 not yet
    /// resolved); `None` when the TLS listener is off.
    pub(crate) fn tcp_listen_addr(&self) -> Option<SocketAddr> {
        match self.tcp_listen {
            TcpListen::SameAsH3 => Some(self.listen),
            TcpListen::At(addr) => Some(addr),
            TcpListen::Off => None,
        }
    }

    /// The HTTP/2 settings in force: SETTINGS_MAX_CONCURRENT_STREAMS is the
    /// tunnel limit of a connection.
    pub(crate) fn effective_h2(&self) -> H2Config {
        H2Config {
            max_concurrent_streams: u32::try_from(self.max_tunnels_per_connection)
                .unwrap_or(u32::MAX),
            ..self.h2.clone()
        }
    }
}
