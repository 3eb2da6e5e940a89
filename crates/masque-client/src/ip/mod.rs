//! connect-ip (RFC 9484) on the client: [`IpSession`] over HTTP/3, HTTP/2 or
//! HTTP/1.1, opened by [`crate::connect_ip`], [`crate::ProxyClient::open_ip`]
//! or [`IpSession::open_with`].
//!
//! The tunnel reuses connect-udp's machinery: the request path (template
//! `/.well-known/masque/ip/{target}/{ipproto}/`, `capsule-protocol: ?1`, the
//! response checks), masque-proto's `TunnelCore` with
//! [`DatagramRules::ip`](masque_proto::tunnel::DatagramRules::ip) in the
//! stream reader, and the transport's datagram sender (QUIC DATAGRAMs, or
//! DATAGRAM capsules). What is connect-ip's own:
//!
//! * [`state`]: sans-IO bookkeeping of ADDRESS_REQUEST / ADDRESS_ASSIGN /
//!   ROUTE_ADVERTISEMENT both ways (masque-proto's `OutgoingRequests`,
//!   `PendingRequests` and route validation); a malformed capsule aborts the
//!   stream;
//! * [`events`] and `rx`: delivery, switchable at run time, to an owner
//!   actor ([`IpEvent`], from a pump task) or to [`IpSession::recv`], which
//!   then reads the tunnel itself;
//! * [`sender`]: packets and capsules out;
//! * `writer`: a body writer that also writes the session's own capsules;
//! * R9484-50: an HTTP/3 tunnel whose QUIC datagrams cannot carry a
//!   1280-byte packet, at open or after 3 s of path MTU discovery, is
//!   refused ([`crate::ClientError::TunnelMtuTooSmall`]).

mod events;
mod rx;
mod sender;
mod session;
mod state;
mod writer;

#[cfg(test)]
mod tests;

pub use events::IpEvent;
pub use sender::{IpSender, MIN_IP_PACKET};
pub use session::IpSession;
pub use state::IpInfo;
pub(crate) use writer::ControlWriter;
