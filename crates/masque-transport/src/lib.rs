//! Transport layer of masque: one [`tunnel`] abstraction that sessions use on
//! any HTTP version, the [`server`] face of the three transports (one
//! connection type over HTTP/3, HTTP/2 and HTTP/1.1), and [`tls`]
//! configuration (rustls with an explicit ring provider, development
//! certificates, client verification options).

pub mod client;
pub mod server;
pub mod socket_buffers;
pub mod tls;
pub mod tunnel;

pub use client::{ClientConfig, ClientConnection, OpenError, Opened, TunnelHead, TunnelWriter};
pub use server::{CancelWatch, H1Config, H2Config, PendingTunnel, ServerConnection, TunnelLimits};
pub use tunnel::{
    BodyRx, BodyTx, CapsuleQueue, CapsuleSender, DatagramRx, DatagramTx, OpenTunnel, OutDatagram,
    ResetReason, Transport, TunnelError, TunnelRequest,
};
