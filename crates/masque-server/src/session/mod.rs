//! Tunnel sessions: one actor per tunnel (temporary, never restarted: its stream
//! is gone), each running a transport-generic runtime task: the datagram
//! runtime (`runtime`) or the stream runtime (`stream`), on one spine
//! (`establish`).

pub mod actor;
pub mod budget;
pub(crate) mod establish;
pub(crate) mod runtime;
pub(crate) mod stream;

pub use actor::{SessionMsg, TunnelSession};
