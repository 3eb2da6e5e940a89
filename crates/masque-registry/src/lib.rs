//! Registries read without an actor hop.
//!
//! [`ListenerRegistry`] mirrors the Erlang `quic_server_registry`: named listeners with their
//! real bound address (port 0 resolved by the listener before registering).
//!
//! - One writer actor per registry owns all writes and monitors each owner actor; when an owner
//!   terminates or fails, its entries are removed (DOWN-style cleanup).
//! - Readers ([`lookup`], [`list`]) read a shared `RwLock<HashMap>` directly, never the actor.
//! - Not started: writes return `NotRunning`, `lookup` is `None`, `list` is empty.
//! - Restart: a new writer adopts entries whose owners are still alive (re-monitoring them)
//!   and drops the others, so dead listeners are never served and live ones need not
//!   re-register. While no writer runs, reads return nothing.
//!
//! The free functions use the process-wide registry ([`ListenerRegistryHandle::global`]),
//! whose writer runs under the ractor name [`REGISTRY_NAME`]. Independent registries are
//! made with [`ListenerRegistryHandle::new`].
//!
//! [`IpRegistryHandle`] (module [`ip`]) mirrors the Erlang `masque_ip_session_registry`: it
//! maps CONNECT-IP address ranges to the session that owns them, with the same writer-actor
//! shape, but readers search a lock-free skip list so the data plane can route each packet
//! without a lock or an actor hop. See the [`ip`] module for its design.

mod actor;
mod error;
mod handle;
mod info;
pub mod ip;
mod table;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;

use ractor::ActorCell;

pub use actor::{ListenerRegistry, ListenerRegistryMsg, RegistryState};
pub use error::{RegisterOutcome, RegistryError, UnregisterOutcome};
pub use handle::{ListenerRegistryHandle, REGISTRY_NAME, Spawned};
pub use info::{ListenerInfo, ListenerProtocol};
pub use ip::{
    IP_REGISTRY_NAME, IpEntry, IpEntryInfo, IpRange, IpRegisterOutcome, IpRegistry,
    IpRegistryError, IpRegistryHandle, IpRegistryMsg, IpRegistryState, IpReleaseOutcome,
    IpReleaseSessionOutcome, IpSpawnError, IpSpawned, IpVersion, PacketSink, PacketSinkError,
};

/// Starts the process-wide writer under [`REGISTRY_NAME`].
pub async fn spawn() -> Result<Spawned, RegistryError> {
    ListenerRegistryHandle::global()
        .spawn(Some(REGISTRY_NAME.to_owned()))
        .await
}

/// Starts the process-wide writer under [`REGISTRY_NAME`], linked to `supervisor`.
pub async fn spawn_linked(supervisor: ActorCell) -> Result<Spawned, RegistryError> {
    ListenerRegistryHandle::global()
        .spawn_linked(Some(REGISTRY_NAME.to_owned()), supervisor)
        .await
}

/// Registers `name` in the process-wide registry; see [`ListenerRegistryHandle::register`].
pub async fn register(
    name: impl Into<String>,
    local_addr: SocketAddr,
    protocol: ListenerProtocol,
    owner: ActorCell,
) -> RegisterOutcome {
    ListenerRegistryHandle::global()
        .register(name, local_addr, protocol, owner)
        .await
}

/// Removes `name` from the process-wide registry.
pub async fn unregister(name: &str) -> UnregisterOutcome {
    ListenerRegistryHandle::global().unregister(name).await
}

/// Looks `name` up in the process-wide registry (no actor hop).
pub fn lookup(name: &str) -> Option<ListenerInfo> {
    ListenerRegistryHandle::global().lookup(name)
}

/// Every entry of the process-wide registry, sorted by name (no actor hop).
pub fn list() -> Vec<ListenerInfo> {
    ListenerRegistryHandle::global().list()
}
