//! Server configuration. Every limit has a default (DESIGN.md §6).

use std::{net::SocketAddr, time::Duration};

use masque_proto::{capsule::DEFAULT_MAX_CAPSULE_SIZE, template};

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
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_capsule_size: DEFAULT_MAX_CAPSULE_SIZE,
            idle_timeout: Duration::from_secs(300),
            init_timeout: Duration::from_secs(15),
            output_queue: 64,
            info_queue: 64,
        }
    }
}

/// One HTTP/3 listener and the policy of the tunnels it accepts.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Name in the ListenerRegistry.
    pub name: String,
    pub listen: SocketAddr,
    /// `Proxy-Status` member name (RFC 9209 §2).
    pub node_name: String,
    /// Tunnels one connection may hold; more get 503 + `connection_limit_reached`.
    pub max_tunnels_per_connection: usize,
    /// Who may open tunnels (default: anyone; R9298-52). Checked first: a
    /// request without valid credentials gets 407 before anything else.
    pub auth: crate::auth::ProxyAuth,
    /// CONNECT-UDP URI template path (RFC 9298 §3).
    pub udp_template: String,
    /// How long open tunnels may drain on shutdown before they are cut.
    pub drain_timeout: Duration,
    pub session: SessionConfig,
    pub h3: masque_h3::Config,
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
            node_name: "masque-node".into(),
            max_tunnels_per_connection: 100,
            auth: crate::auth::ProxyAuth::default(),
            udp_template: template::DEFAULT_UDP_PATH.into(),
            drain_timeout: Duration::from_secs(10),
            session: SessionConfig::default(),
            h3: masque_h3::Config::default(),
            quic_mtu: QuicMtu::default(),
            quic_recv_buffer: DEFAULT_QUIC_SOCKET_BUFFER,
            quic_send_buffer: DEFAULT_QUIC_SOCKET_BUFFER,
        }
    }
}
