//! MASQUE client: connect-udp tunnels (RFC 9298) through a proxy over HTTP/3,
//! HTTP/2 (extended CONNECT, RFC 8441) or HTTP/1.1 (`Upgrade: connect-udp`),
//! chosen by [`ClientOptions::transport`]; [`TransportChoice::Auto`] (the
//! default) races them ([`RaceOptions`], [`race_connect`]): HTTP/3 at once,
//! HTTP/2 and HTTP/1.1 after head starts, the winner remembered per proxy.
//! The transports are
//! `masque_transport::ClientConnection`; the capsule, context-id and FIN rules
//! are masque-proto's `TunnelCore`, shared with the proxy.
//!
//! * [`connect`] opens one tunnel on its own connection; [`ProxyClient`] keeps a
//!   connection and opens many ([`UdpSession::open_on`] does the same on any
//!   `masque_h3::Connection`, [`UdpSession::open_with`] on any
//!   `masque_transport::ClientConnection`).
//! * [`UdpSession`] sends and receives UDP payloads (Context ID 0), reports
//!   [`SessionInfo`] and ends with [`UdpSession::close`]. [`UdpSession::into_events`]
//!   (bounded channel) and [`UdpSession::forward_to`] (an owner actor) turn it
//!   into [`ClientEvent`]s plus a cloneable [`UdpSender`].
//! * [`udp_forward`] is the CLI's local UDP port forwarder.
//! * [`connect_ip`] and [`ProxyClient::open_ip`] open connect-ip tunnels
//!   (RFC 9484): an [`IpSession`] sends and receives IP packets, requests
//!   and assigns addresses and advertises routes, delivering to a bounded
//!   queue or to an owner actor ([`IpEvent`]).
//! * [`connect_tcp`] and [`ProxyClient::open_tcp`] open TCP tunnels
//!   (connect-tcp or classic CONNECT, [`TcpMode`]): a [`TcpTunnel`] is
//!   `AsyncRead + AsyncWrite` with `shutdown` as a half-close;
//!   [`TcpTunnel::forward_to`] / [`TcpTunnel::into_events`] turn its read side
//!   into [`TcpTunnelEvent`]s.
//!
//! Requirement ids (`R9298-nn`, `R9297-nn`) are those of docs/reference/conformance.md.
#![forbid(unsafe_code)]

mod client;
mod close;
mod error;
mod events;
mod forward;
mod ip;
mod options;
pub mod pool;
mod proxy_url;
mod racer;
mod reader;
mod request;
mod sender;
mod session;
mod tcp;

pub use client::ProxyClient;
pub use close::{CloseInfo, CloseReason, SessionStats};
pub use error::ClientError;
pub use events::ClientEvent;
pub use forward::udp_forward;
pub use ip::{IpEvent, IpInfo, IpSender, IpSession, MIN_IP_PACKET};
/// connect-tcp capsule codepoints per upgrade token, for
/// [`TcpMode::ConnectTcpToken`] (`DRAFT_11`, `DRAFT_12`, `FINAL`, `SERVED`).
pub use masque_proto::tcp::{self as tcp_codepoints, Codepoints as TcpCodepoints};
/// connect-ip scopes, prefixes, and capsule entries ([`IpSession`]'s arguments).
pub use masque_proto::{
    connect_ip::{Answer, AssignedAddress, IpAddressRange, RequestedAddress},
    template::{IpPrefix, IpProto, IpScope, IpTarget},
};
pub use options::{ClientOptions, RaceOptions, Target, TransportChoice, UnknownTransport};
pub use pool::{Lease, MaxStreams, PoolConfig, PoolKey, UpstreamPool};
pub use proxy_url::DEFAULT_PORT;
pub use racer::race_connect;
pub use sender::UdpSender;
pub use session::{LATE_DATAGRAM_LINGER, SessionInfo, UdpSession};
pub use tcp::{
    TcpMode, TcpReadHalf, TcpStreamError, TcpTunnel, TcpTunnelEvent, TcpTunnelInfo, TcpWriteHalf,
};

/// Opens one connect-udp tunnel on a new connection and returns once the
/// proxy's 2xx arrived (R9298-31).
///
/// `proxy_url` is `https://host[:port]` (port 443 by default; the template is
/// RFC 9298's `/.well-known/masque/udp/{target_host}/{target_port}/` on that
/// origin, R9298-09) or a whole URI template such as
/// `https://proxy:4433/masque{?target_host,target_port}`; `options.template`
/// overrides both. The request is extended CONNECT `:protocol connect-udp`
/// (HTTP/1.1: `GET` + `Upgrade: connect-udp`) with `capsule-protocol: ?1` and
/// datagrams (R9298-29, R9298-24). Refused on every transport: a status other
/// than 2xx (101 on HTTP/1.1) ([`ClientError::Refused`] with the status and
/// `Proxy-Status`, R9298-22/32), a success with content or without
/// `capsule-protocol: ?1` (R9297-20/25..27). The returned session owns the
/// connection: closing it closes the connection.
pub async fn connect(
    proxy_url: &str,
    target: Target,
    options: ClientOptions,
) -> Result<UdpSession, ClientError> {
    let client = ProxyClient::connect(proxy_url, options).await?;
    let mut session = client.open_udp(&target).await?;
    session.owned = true;
    Ok(session)
}

/// Opens one TCP tunnel to `target` (a [`Target::Tcp`]) on a new connection
/// and returns once the proxy accepted it. `mode` picks connect-tcp (the
/// template is `options.tcp_template`, else
/// `/.well-known/masque/tcp/{target_host}/{target_port}/` on the proxy URL's
/// origin) or classic CONNECT. A refusal is [`ClientError::Refused`] with the
/// status and `Proxy-Status` (e.g. 502 `connection_refused`, 403
/// `destination_ip_prohibited`). The connection ends when the tunnel does.
///
/// ```no_run
/// use masque_client::{ClientOptions, Target, TcpMode, connect_tcp};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let mut tunnel = connect_tcp(
///     "https://proxy.example:4433",
///     Target::tcp("example.org", 80),
///     TcpMode::ConnectTcp,
///     ClientOptions::default(),
/// )
/// .await?;
/// tunnel.write_all(b"GET / HTTP/1.0\r\nHost: example.org\r\n\r\n").await?;
/// tunnel.shutdown().await?; // FINAL_DATA: we send nothing more, reading goes on
/// let mut page = Vec::new();
/// tunnel.read_to_end(&mut page).await?; // EOF at the proxy's FINAL_DATA
/// # Ok(())
/// # }
/// ```
pub async fn connect_tcp(
    proxy_url: &str,
    target: Target,
    mode: TcpMode,
    options: ClientOptions,
) -> Result<TcpTunnel, ClientError> {
    let client = ProxyClient::connect(proxy_url, options).await?;
    client.open_tcp(&target, mode).await
}

/// Opens one connect-ip tunnel (RFC 9484) for `target` on a new connection
/// and returns once the proxy accepted it (R9484-17/21). `IpTarget::ANY` asks
/// for a full tunnel; the template is `options.ip_template`, else
/// `/.well-known/masque/ip/{target}/{ipproto}/` on the proxy URL's origin.
/// Over HTTP/3 a path whose QUIC datagrams cannot carry a 1280-byte packet is
/// [`ClientError::TunnelMtuTooSmall`] (R9484-50). The connection ends when
/// the session is closed.
///
/// ```no_run
/// use std::{net::Ipv4Addr, time::Duration};
/// use masque_client::{ClientOptions, IpPrefix, IpTarget, connect_ip};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let session = connect_ip("https://proxy.example:4433", &IpTarget::ANY, ClientOptions::default()).await?;
/// session.request_addresses(&[IpPrefix::new(Ipv4Addr::UNSPECIFIED.into(), 32)?])?;
/// let info = session
///     .wait_for(Duration::from_secs(10), |i| i.pending_requests.is_empty())
///     .await?;
/// println!("assigned {:?}, routes {:?}", info.assigned, info.routes);
/// # Ok(())
/// # }
/// ```
pub async fn connect_ip(
    proxy_url: &str,
    target: &IpTarget,
    options: ClientOptions,
) -> Result<IpSession, ClientError> {
    let client = ProxyClient::connect(proxy_url, options).await?;
    let mut session = client.open_ip(target).await?;
    session.owned = true;
    Ok(session)
}
