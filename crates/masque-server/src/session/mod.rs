//! Tunnel sessions: one actor per tunnel (temporary, never restarted: its stream
//! is gone), each running a transport-generic runtime task.

pub(crate) mod runtime;
pub mod udp;

pub use udp::{SessionMsg, UdpSession};
