//! MASQUE client: connect-udp tunnels (RFC 9298) through an HTTP/3 proxy.
//!
//! * [`connect`] opens one tunnel on its own connection; [`ProxyClient`] keeps a
//!   connection and opens many ([`UdpSession::open_on`] does the same on any
//!   `masque_h3::Connection`).
//! * [`UdpSession`] sends and receives UDP payloads (Context ID 0), reports
//!   [`SessionInfo`] and ends with [`UdpSession::close`]. [`UdpSession::into_events`]
//!   (bounded channel) and [`UdpSession::forward_to`] (an owner actor) turn it
//!   into [`ClientEvent`]s plus a cloneable [`UdpSender`].
//! * [`udp_forward`] is the CLI's local UDP port forwarder.
//!
//! Requirement ids (`R9298-nn`, `R9297-nn`) refer to `/work/shared/specs` digests.
#![forbid(unsafe_code)]

mod client;
mod close;
mod error;
mod events;
mod forward;
mod options;
mod proxy_url;
mod reader;
mod request;
mod sender;
mod session;

pub use client::ProxyClient;
pub use close::{CloseInfo, CloseReason, SessionStats};
pub use error::ClientError;
pub use events::ClientEvent;
pub use forward::udp_forward;
pub use options::{ClientOptions, Target};
pub use proxy_url::DEFAULT_PORT;
pub use sender::UdpSender;
pub use session::{LATE_DATAGRAM_LINGER, SessionInfo, UdpSession};

/// Opens one connect-udp tunnel on a new connection and returns once the
/// proxy's 2xx arrived (R9298-31).
///
/// `proxy_url` is `https://host[:port]` (port 443 by default; the template is
/// RFC 9298's `/.well-known/masque/udp/{target_host}/{target_port}/` on that
/// origin, R9298-09) or a whole URI template such as
/// `https://proxy:4433/masque{?target_host,target_port}`; `options.template`
/// overrides both. The request is extended CONNECT `:protocol connect-udp` with
/// `capsule-protocol: ?1` and datagrams (R9298-29). Refused: non-2xx
/// ([`ClientError::Refused`] with the status and `Proxy-Status`, R9298-22/32), a
/// 2xx with content or without `capsule-protocol: ?1` (R9297-20/25..27). The
/// returned session owns the connection: closing it closes the connection.
pub async fn connect(
    proxy_url: &str,
    target: Target,
    options: ClientOptions,
) -> Result<UdpSession, ClientError> {
    let client = ProxyClient::connect(proxy_url, options).await?;
    let mut session = client.open_udp(&target).await?;
    session.owned = Some(client.endpoint().clone());
    Ok(session)
}
