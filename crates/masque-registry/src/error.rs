//! Typed errors and write outcomes.
//!
//! Writes never fail with an error: when the registry is unavailable they return an outcome
//! that says so, letting library users run listeners without the whole actor tree.

use ractor::{ActorId, SpawnErr};

use crate::info::ListenerInfo;

/// Errors from starting the registry writer.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A writer is already running for this registry handle.
    #[error("a listener registry writer is already running ({0})")]
    AlreadyRunning(ActorId),
    /// ractor refused to spawn the actor (name taken, `pre_start` failed, ...).
    #[error("failed to spawn the listener registry: {0}")]
    Spawn(#[from] SpawnErr),
}

/// Result of [`register`](crate::ListenerRegistryHandle::register).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// The entry is visible to `lookup`/`list` now. `replaced` is the entry it overwrote.
    Registered {
        /// Previous entry under the same name, if any.
        replaced: Option<ListenerInfo>,
    },
    /// The owner actor is stopping or stopped; nothing was registered.
    OwnerNotAlive,
    /// The registry writer is not running; nothing was registered.
    NotRunning,
    /// The registry writer did not answer in time; the write may still be applied.
    TimedOut,
}

impl RegisterOutcome {
    /// True when the entry was stored.
    pub fn is_registered(&self) -> bool {
        matches!(self, Self::Registered { .. })
    }
}

/// Result of [`unregister`](crate::ListenerRegistryHandle::unregister).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnregisterOutcome {
    /// The entry was removed; here it is.
    Removed(ListenerInfo),
    /// No entry had that name.
    NotFound,
    /// The registry writer is not running; nothing was changed.
    NotRunning,
    /// The registry writer did not answer in time; the removal may still be applied.
    TimedOut,
}
