//! Typed errors and write outcomes of the IP registry.
//!
//! As with the listener registry, an unavailable registry is an outcome, not an error
//! (`NotRunning`, `TimedOut`): sessions run without the actor tree. Errors are requests the
//! registry refuses: a bad prefix, an overlap, a dead session.

use std::net::IpAddr;

use ractor::{ActorId, SpawnErr};

use super::entry::{IpEntryInfo, IpRange};

/// A refused write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpRegistryError {
    /// The prefix length is longer than the address (32 for IPv4, 128 for IPv6).
    #[error("prefix length {prefix_len} is too long for {addr}")]
    InvalidPrefix {
        /// The address given.
        addr: IpAddr,
        /// The prefix length given.
        prefix_len: u8,
    },
    /// The range shares addresses with a registered range (of this or another session), and
    /// is not an exact repeat of it.
    #[error("{requested} overlaps the registered {existing}")]
    Conflict {
        /// The range asked for, host bits cleared.
        requested: IpRange,
        /// A registered range it overlaps (boxed: keeps the error small).
        existing: Box<IpEntryInfo>,
    },
    /// The session actor is stopping or stopped; nothing was registered.
    #[error("session {0} is not alive")]
    SessionNotAlive(ActorId),
}

/// Errors from starting the IP registry writer.
#[derive(Debug, thiserror::Error)]
pub enum IpSpawnError {
    /// A writer is already running for this registry handle.
    #[error("an IP registry writer is already running ({0})")]
    AlreadyRunning(ActorId),
    /// ractor refused to spawn the actor (name taken, `pre_start` failed, ...).
    #[error("failed to spawn the IP registry: {0}")]
    Spawn(#[from] SpawnErr),
}

/// Result of a register that was not refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpRegisterOutcome {
    /// The range is visible to lookups now.
    Registered(IpEntryInfo),
    /// The same session already had exactly this range with this context id; nothing changed
    /// (the first registration's sink stays).
    AlreadyRegistered(IpEntryInfo),
    /// The registry writer is not running; nothing was registered.
    NotRunning,
    /// The registry writer did not answer in time; the write may still be applied.
    TimedOut,
}

impl IpRegisterOutcome {
    /// True when the range is registered to the session (now or already).
    pub fn is_registered(&self) -> bool {
        matches!(self, Self::Registered(_) | Self::AlreadyRegistered(_))
    }
}

/// Result of releasing one range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpReleaseOutcome {
    /// The range was removed; here it is.
    Released(IpEntryInfo),
    /// No range with that start and prefix length was registered (a no-op).
    NotFound,
    /// The registry writer is not running; nothing was changed.
    NotRunning,
    /// The registry writer did not answer in time; the removal may still be applied.
    TimedOut,
}

/// Result of releasing every range of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpReleaseSessionOutcome {
    /// These ranges were removed (possibly none), in (version, start) order.
    Released(Vec<IpEntryInfo>),
    /// The registry writer is not running; nothing was changed.
    NotRunning,
    /// The registry writer did not answer in time; the removal may still be applied.
    TimedOut,
}
