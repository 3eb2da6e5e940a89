//! The public description of a registered listener.

use std::net::SocketAddr;

use ractor::ActorId;

/// Which wire protocol family a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerProtocol {
    /// HTTP/3 over QUIC (UDP).
    H3,
    /// TLS over TCP, serving HTTP/2 and HTTP/1.1 on one port (selected by ALPN).
    Tls,
}

/// A named listener and the address it is REALLY bound to.
///
/// `local_addr` is the resolved address: a listener bound to port 0 must register the port
/// the OS picked (e.g. `UdpSocket::local_addr()`), never the configured `:0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerInfo {
    /// Registry key, unique per registry.
    pub name: String,
    /// The bound address, port 0 already resolved.
    pub local_addr: SocketAddr,
    /// Protocol family served on `local_addr`.
    pub protocol: ListenerProtocol,
    /// The actor that owns the listener; its death removes the entry.
    pub owner: ActorId,
}
