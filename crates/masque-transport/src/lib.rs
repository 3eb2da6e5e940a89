//! Transport layer of masque: one [`tunnel`] abstraction that sessions use on any
//! HTTP version, and [`tls`] configuration (rustls with an explicit ring provider,
//! development certificates, client verification options).

pub mod socket_buffers;
pub mod tls;
pub mod tunnel;

pub use tunnel::{
    BodyRx, BodyTx, DatagramRx, DatagramTx, OpenTunnel, OutDatagram, PendingTunnel, ResetReason,
    Transport, TunnelError, TunnelRequest,
};
