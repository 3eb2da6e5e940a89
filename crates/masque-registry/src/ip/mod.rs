//! `IpRegistry`: which CONNECT-IP session (RFC 9484) owns an address, read by the data plane
//! without an actor hop. It mirrors the Erlang `masque_ip_session_registry`.
//!
//! The node's data plane reads an IP packet from a TUN device, looks its destination up here
//! and hands the packet straight to the owning session's [`PacketSink`] (a bounded,
//! drop-on-full queue such as `masque_queue::QueueTx<Bytes>`), then the session sends it as
//! an HTTP datagram with the entry's context id.
//!
//! # Design
//!
//! - **Maps.** One [`crossbeam_skiplist::SkipMap`] per address family, keyed by the first
//!   address of a range as a `u128` (IPv4 in the low 32 bits), valued `Arc<Route>`: the
//!   range (end, prefix length), the session's `ActorCell`, the context id and the sink.
//!   Separate maps keep the key a bare `u128` and a lookup never has to skip over the other
//!   family.
//! - **Lookup** ([`IpRegistryHandle::lookup`]) takes no lock and never messages the actor:
//!   the entry with the largest start ≤ addr (`upper_bound(Included)`), kept if its end ≥
//!   addr. Ranges never overlap, so that entry is the only candidate. Cost per lookup: one
//!   atomic load (is a writer running?), one epoch pin and skip-list search, one `Arc`
//!   increment for the returned [`IpEntry`]; no allocation. The sink is the unsized tail of
//!   the route (`Arc<Route<dyn PacketSink>>`), so route and sink are one allocation made once
//!   at registration, and `IpEntry::try_send` is one dynamic call. A lookup racing a
//!   release may still return the range being released: the packet goes to the session that
//!   owned the address when the lookup started (its sink says `Closed` if it is gone).
//! - **Writes** (register, release, release_session) go through one writer actor
//!   ([`IpRegistry`]), so they are serialised and the overlap check cannot race another
//!   write. A new range is refused ([`IpRegistryError::Conflict`]) when it shares an address
//!   with any registered range: since ranges are disjoint, checking the predecessor (largest
//!   start ≤ new start) and the successor (smallest start > new start) suffices. An exact
//!   repeat (same range, session and context id) is [`IpRegisterOutcome::AlreadyRegistered`]
//!   and keeps the first sink. So at most one range covers any address: there is no
//!   longest-prefix match, on purpose (one owner per address, as in the Erlang registry).
//! - **Normalisation.** `addr/prefix_len` is masked to the prefix (`10.0.0.5/24` registers
//!   `10.0.0.0/24`), since CONNECT-IP's ADDRESS_ASSIGN may carry a host address with a
//!   prefix. A prefix longer than the family is refused ([`IpRegistryError::InvalidPrefix`]).
//!   The family comes from the `IpAddr`, so an IPv4-mapped IPv6 address is IPv6.
//! - **Sessions.** The writer monitors each registering session (ractor monitors) and
//!   releases all of its ranges when it terminates or fails, however it ends (stop, error,
//!   panic, kill). A dead session cannot register ([`IpRegistryError::SessionNotAlive`]).
//! - **Not started.** Writes return `NotRunning`, lookups `None`, [`IpRegistryHandle::all`]
//!   is empty, so library users can run sessions without the actor tree.
//! - **Restart.** The maps live in the handle, not in the actor. A new writer adopts the
//!   ranges whose sessions are still alive (re-monitoring them) and drops the others. While
//!   no writer runs, lookups return nothing (packets are dropped, as with no route).
//!
//! The free functions here use the process-wide registry ([`IpRegistryHandle::global`]),
//! whose writer runs under the ractor name [`IP_REGISTRY_NAME`]; the node starts it as a
//! permanent child of its root supervisor. Independent registries are made with
//! [`IpRegistryHandle::new`].

mod actor;
mod entry;
mod error;
mod handle;
mod table;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

use ractor::{ActorCell, ActorId};

pub use actor::{IpRegistry, IpRegistryMsg, IpRegistryState};
pub use entry::{IpEntry, IpEntryInfo, IpRange, IpVersion, PacketSink, PacketSinkError};
pub use error::{
    IpRegisterOutcome, IpRegistryError, IpReleaseOutcome, IpReleaseSessionOutcome, IpSpawnError,
};
pub use handle::{IP_REGISTRY_NAME, IpRegistryHandle, IpSpawned};

/// Starts the process-wide writer under [`IP_REGISTRY_NAME`].
pub async fn spawn() -> Result<IpSpawned, IpSpawnError> {
    IpRegistryHandle::global()
        .spawn(Some(IP_REGISTRY_NAME.to_owned()))
        .await
}

/// Starts the process-wide writer under [`IP_REGISTRY_NAME`], linked to `supervisor`.
pub async fn spawn_linked(supervisor: ActorCell) -> Result<IpSpawned, IpSpawnError> {
    IpRegistryHandle::global()
        .spawn_linked(Some(IP_REGISTRY_NAME.to_owned()), supervisor)
        .await
}

/// Registers a range in the process-wide registry; see [`IpRegistryHandle::register`].
pub async fn register<S: PacketSink>(
    addr: IpAddr,
    prefix_len: u8,
    session: ActorCell,
    context_id: u64,
    sink: S,
) -> Result<IpRegisterOutcome, IpRegistryError> {
    IpRegistryHandle::global()
        .register(addr, prefix_len, session, context_id, sink)
        .await
}

/// Releases a range of the process-wide registry; see [`IpRegistryHandle::release`].
pub async fn release(addr: IpAddr, prefix_len: u8) -> Result<IpReleaseOutcome, IpRegistryError> {
    IpRegistryHandle::global().release(addr, prefix_len).await
}

/// Releases every range of `session` in the process-wide registry.
pub async fn release_session(session: ActorId) -> IpReleaseSessionOutcome {
    IpRegistryHandle::global().release_session(session).await
}

/// The range holding `addr` in the process-wide registry (no actor hop, no lock).
pub fn lookup(addr: IpAddr) -> Option<IpEntry> {
    IpRegistryHandle::global().lookup(addr)
}

/// Every range of the process-wide registry (diagnostics).
pub fn all() -> Vec<IpEntryInfo> {
    IpRegistryHandle::global().all()
}
