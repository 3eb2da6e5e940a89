//! Pooled connections to proxies (the Erlang `masque_upstream_pool` and
//! `masque_upstream_owner`): tunnels to the same proxy, over the same
//! transport, with the same TLS identity and credential ([`PoolKey`]) share
//! HTTP/3 and HTTP/2 connections.
//!
//! * [`UpstreamOwner`]: one actor per pooled connection. It owns the
//!   `ClientConnection` (dialled by the pool and handed over), counts the
//!   slots sessions hold on it up to [`MaxStreams`], monitors the sessions
//!   (actors) that hold slots so that a crashed one gives its slot back, and
//!   closes the connection (GOAWAY, CONNECTION_CLOSE) and stops once no slot
//!   was held for [`PoolConfig::idle_timeout`]. When the connection ends it
//!   stops; the tunnels on it end with it.
//! * [`UpstreamPool`]: one actor keeping the owners per key and at most one
//!   dial per key in flight; checkouts while it runs wait for it (bounded by
//!   the connect timeout) and all get its error if it fails. It monitors its
//!   owners and forgets one when it ends. [`UpstreamPool::global`] is the
//!   process-wide instance; [`UpstreamPool::spawn_linked`] starts one under
//!   a supervisor.
//! * [`Lease`]: a slot, held by the session opened on it; dropping it or
//!   [`Lease::release`] (idempotent) gives the slot back.
//!
//! **The owner never touches a packet.** A session opens its tunnel on the
//! owner's connection with the same functions as on a dedicated one
//! (`UdpSession::open_with`, `TcpTunnel::open_with`, `IpSession::open`) and
//! its data flows between the session and the connection: masque-transport's
//! HTTP/3 driver already demultiplexes QUIC datagrams per request stream,
//! HTTP/2 streams are the `h2` crate's. The owner only keeps the count.
//!
//! HTTP/1.1 is never pooled: it carries one tunnel per TLS connection, which
//! the session owns. A checkout for it hands out a connection handle that
//! dials per tunnel.
//!
//! [`MaxStreams::Dynamic`] follows the peer: HTTP/2's
//! SETTINGS_MAX_CONCURRENT_STREAMS as it stands; on HTTP/3, where quinn does
//! not expose the peer's stream credit, a tunnel refused with 503
//! `connection_limit_reached` teaches the owner the limit (the slots held at
//! that moment) and the tunnel is retried on another connection. A GOAWAY
//! makes the owner take no new slots.

mod key;
mod lease;
mod owner;
#[allow(clippy::module_inception)]
mod pool;

#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use key::{PoolKey, TlsIdentity};
pub use lease::Lease;
pub use owner::{OwnerArgs, OwnerHandle, OwnerInfo, OwnerMsg, OwnerState, UpstreamOwner};
pub use pool::{PoolActor, PoolConfig, PoolMsg, PoolState, UpstreamPool};

use crate::ClientError;

/// How many tunnels one pooled connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxStreams {
    /// At most this many (and never more than the peer allows).
    Limit(usize),
    /// What the peer allows (see the module documentation).
    #[default]
    Dynamic,
}

/// Why the pool could not hand out a slot.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// Dialling a new connection failed; every checkout waiting for that
    /// dial gets the same error.
    #[error("dialling the proxy: {0}")]
    Dial(#[source] Arc<ClientError>),
    /// Too many checkouts wait for a dial of this key.
    #[error("more than {limit} checkouts wait for a connection")]
    TooManyWaiters { limit: usize },
    /// A freshly dialled connection took no tunnel (the peer allows none).
    #[error("a new connection to the proxy takes no tunnels")]
    NoCapacity,
    /// The pool actor is not running.
    #[error("the connection pool is not running")]
    NotRunning,
    /// The pool actor could not be started.
    #[error("starting the connection pool: {0}")]
    Spawn(String),
}
