//! The `Handler` trait, mirroring the Erlang `masque_handler` behaviour.
//!
//! Lifecycle of one tunnel:
//! 1. [`Handler::accept`]: policy, before any session exists (allow lists,
//!    private-address guard, limits). A refusal is answered with its status and
//!    `Proxy-Status`.
//! 2. [`Handler::init`]: runs before the 2xx (DNS, sockets, target connect). It
//!    may already send through its [`TunnelOutput`]: that output is queued and
//!    flushed, in order, right after the 2xx. A refusal becomes the mapped error
//!    response; a panic becomes 502 `proxy_internal_error`.
//! 3. The returned [`TunnelHandler`] gets client datagrams, unknown capsules and
//!    info messages as synchronous callbacks returning an [`Action`] (they run
//!    on the session's data-plane task: no allocation, no actor hop).
//! 4. [`TunnelHandler::terminate`] runs once when the tunnel ends for any reason
//!    the session observes (a panic in a callback resets the stream first).
//!
//! Stream tunnels (CONNECT-TCP, classic CONNECT) take steps 1 and 2 as
//! [`Handler::accept`] and [`Handler::connect`]: `connect` returns the byte
//! stream to the target, opened before the 2xx, and the session relays it
//! with backpressure both ways and per-direction half-close (decisions §40).

use std::any::Any;

use bytes::Bytes;
use masque_proto::{
    capsule::Capsule,
    proxy_status::{ProxyStatus, TunnelFailure},
    tcp::Codepoints,
    template::{HostPort, IpTarget, UdpTarget},
};
use masque_transport::TunnelRequest;
use tokio::io::{AsyncRead, AsyncWrite};

pub use crate::output::TunnelOutput;

/// What the request asks the proxy to reach (the matched template variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// CONNECT-UDP (RFC 9298).
    Udp(UdpTarget),
    /// A TCP stream: CONNECT-TCP or classic CONNECT.
    Tcp(TcpTarget),
    /// CONNECT-IP (RFC 9484): the request's scope.
    Ip(IpTarget),
}

impl Target {
    /// The target's address when the request named an IP literal (what the
    /// outbound policy can judge before any session); `None` for a name or
    /// a wildcard.
    pub fn literal_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Target::Udp(UdpTarget::Host(hp)) | Target::Tcp(TcpTarget { target: hp, .. }) => {
                literal(hp)
            }
            Target::Udp(UdpTarget::Wildcard) | Target::Ip(_) => None,
        }
    }
}

/// The socket address of `hp` when its host is an IP literal.
pub(crate) fn literal(hp: &HostPort) -> Option<std::net::SocketAddr> {
    use masque_proto::template::Host;
    let ip: std::net::IpAddr = match &hp.host {
        Host::V4(a) => (*a).into(),
        Host::V6(a) => (*a).into(),
        Host::Name(_) => return None,
    };
    Some(std::net::SocketAddr::new(ip, hp.port.get()))
}

/// The target of a stream tunnel and how its bytes are framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpTarget {
    pub target: HostPort,
    pub framing: StreamFraming,
}

/// How the tunnel's body carries the TCP byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFraming {
    /// CONNECT-TCP: DATA / FINAL_DATA capsules with the codepoints of the
    /// request's token (draft-ietf-httpbis-connect-tcp §3).
    Capsules(Codepoints),
    /// Classic CONNECT: raw bytes, the end of the body is the FIN (RFC 9110
    /// §9.3.6, RFC 9113 §8.5, RFC 9114 §4.4).
    Raw,
}

/// Any byte stream a handler can hand to a stream tunnel.
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> ByteStream for T {}

/// The byte stream to a stream tunnel's target, opened by [`Handler::connect`].
pub enum TargetStream {
    /// A TCP connection: an aborted tunnel resets it (RST, CTCP-22).
    Tcp(tokio::net::TcpStream),
    /// Anything else (an in-process service, a test double): an aborted
    /// tunnel drops it.
    Io(Box<dyn ByteStream>),
}

impl std::fmt::Debug for TargetStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetStream::Tcp(s) => f.debug_tuple("Tcp").field(s).finish(),
            TargetStream::Io(_) => f.write_str("Io(..)"),
        }
    }
}

/// A refused tunnel: one entry of the failure table plus optional detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub failure: TunnelFailure,
    /// Free-text `details` parameter (RFC 9209 §2.1.5).
    pub details: Option<String>,
    /// DNS response code for `dns_error` (RFC 9209 §2.3.2).
    pub rcode: Option<String>,
    /// The next hop refused the tunnel (a relaying node): its answer is passed
    /// back instead of `failure`'s (`failure` still names the refusal in the
    /// node's counters).
    pub next_hop: Option<NextHopRefusal>,
}

/// What the next hop answered when it refused a relayed tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHopRefusal {
    /// Its status, passed back as ours.
    pub status: u16,
    /// Who it is (`next-hop`, RFC 9209 §2.1.2), e.g. `proxy.example:443`.
    pub next_hop: String,
    /// Its `Proxy-Status` field value, if any: kept in front of our member (the
    /// member closest to the origin comes first, RFC 9209 §2).
    pub proxy_status: Option<String>,
}

impl Refusal {
    pub fn new(failure: TunnelFailure) -> Self {
        Self {
            failure,
            details: None,
            rcode: None,
            next_hop: None,
        }
    }

    /// The next hop's refusal, passed back: its status, its `Proxy-Status`
    /// members, then ours with `next-hop` and `received-status` (RFC 9209
    /// §2.1.2, §2.1.4).
    pub fn from_next_hop(answer: NextHopRefusal) -> Self {
        Self {
            next_hop: Some(answer),
            ..Self::new(TunnelFailure::DestinationUnavailable)
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    pub fn with_rcode(mut self, rcode: impl Into<String>) -> Self {
        self.rcode = Some(rcode.into());
        self
    }

    /// HTTP status and `Proxy-Status` header value for this refusal (the one
    /// failure table in masque-proto decides both).
    pub fn response(&self, node_name: &str) -> (u16, String) {
        if let Some(hop) = &self.next_hop {
            let mut ours = ProxyStatus::new(node_name);
            ours.next_hop = Some(hop.next_hop.clone());
            ours.received_status = Some(hop.status);
            ours.details = self.details.clone();
            let value = match &hop.proxy_status {
                Some(theirs) => format!("{theirs}, {}", ours.to_header_value()),
                None => ours.to_header_value(),
            };
            return (hop.status, value);
        }
        let (status, _) = self.failure.response();
        let mut ps: ProxyStatus = self.failure.proxy_status(node_name);
        ps.details = self.details.clone();
        ps.rcode = self.rcode.clone();
        (status, ps.to_header_value())
    }

    /// The response to send: status and headers carrying `Proxy-Status`.
    pub fn http_response(&self, node_name: &str) -> (http::StatusCode, http::HeaderMap) {
        let (status, proxy_status) = self.response(node_name);
        let mut headers = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(&proxy_status) {
            headers.insert(masque_proto::headers::PROXY_STATUS, v);
        }
        let status = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
        (status, headers)
    }
}

impl From<TunnelFailure> for Refusal {
    fn from(f: TunnelFailure) -> Self {
        Refusal::new(f)
    }
}

/// What a callback asks the session to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// End the tunnel cleanly (FIN).
    Close,
    /// End the tunnel abruptly (stream reset, H3_CONNECT_ERROR on HTTP/3).
    Abort,
    /// The client sent a capsule the handler found malformed (R9297-22): reset
    /// the stream as malformed (H3_MESSAGE_ERROR, PROTOCOL_ERROR on HTTP/2).
    Malformed,
}

/// Why a tunnel ended, as seen by [`TunnelHandler::terminate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client finished its side of the stream.
    ClientClosed,
    /// The client reset the stream or the connection went away.
    ClientAborted,
    /// A callback returned [`Action::Close`] or [`Action::Abort`].
    Handler(Action),
    /// No traffic either way for the configured idle timeout.
    IdleTimeout,
    /// A malformed capsule or oversized datagram (the stream was reset).
    ProtocolError(String),
    /// A callback panicked (the stream was reset).
    HandlerPanic,
    /// The node or the connection is shutting down.
    Shutdown,
    /// A write to the client outlived `SessionConfig::write_deadline`: the
    /// peer withheld stream credit (the stream was reset).
    WriteStalled,
    /// The target of a stream tunnel failed: it reset the connection, or
    /// took no data for `SessionConfig::stream_write_timeout` (the stream
    /// was reset with H3_CONNECT_ERROR / CONNECT_ERROR, CTCP-21).
    TargetFailed(String),
}

/// Server-side policy and per-tunnel setup. One value serves every tunnel of a
/// node, so it is shared (`Arc<dyn Handler>`).
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Policy check before any session exists.
    async fn accept(&self, request: &TunnelRequest, target: &Target) -> Result<(), Refusal> {
        let _ = (request, target);
        Ok(())
    }

    /// Sets the tunnel up before the 2xx. Output sent through `out` is delivered
    /// after the 2xx, in order.
    async fn init(
        &self,
        request: &TunnelRequest,
        target: &Target,
        out: TunnelOutput,
    ) -> Result<Box<dyn TunnelHandler>, Refusal>;

    /// Permanent children the handler needs under the node's supervisor,
    /// started with the node's tree and restarted by it (e.g. a relay's
    /// connection pool). The default has none.
    fn children(&self) -> Vec<crate::supervisor::ChildSpec> {
        Vec::new()
    }

    /// Called once by [`crate::Node::start`], before any tunnel, with the
    /// node's counters and registries: start background work that feeds
    /// tunnels (e.g. a TUN reader). The default does nothing.
    fn attach(&self, node: &crate::node::NodeServices) {
        let _ = node;
    }

    /// Opens the target of a stream tunnel before the 2xx (CTCP-09: the TCP
    /// connection is tried before any status is sent). The default serves no
    /// stream tunnels: 501.
    /// `metrics` are the node's (e.g. for the DNS counters).
    async fn connect(
        &self,
        request: &TunnelRequest,
        target: &TcpTarget,
        metrics: &std::sync::Arc<crate::metrics::Metrics>,
    ) -> Result<TargetStream, Refusal> {
        let _ = (request, target, metrics);
        Err(Refusal::new(TunnelFailure::NotImplemented)
            .with_details("this node's handler serves no stream tunnels"))
    }
}

/// Per-tunnel callbacks. They run on the session's data-plane task and must not
/// block; use the [`TunnelOutput`] (or tasks the handler spawned in `init`) for
/// anything slow. A long-lived data-plane task such as a target reader belongs
/// in [`TunnelOutput::spawn`]: the connection's readers then share one task.
pub trait TunnelHandler: Send + 'static {
    /// An HTTP datagram from the client for a context the session knows
    /// (context 0 for CONNECT-UDP; unknown contexts are dropped and counted by
    /// the session). `payload` excludes the context id.
    fn datagram(&mut self, context_id: u64, payload: Bytes) -> Action;

    /// Called after each burst of [`datagram`](Self::datagram) calls: the
    /// datagrams that were already queued when the session woke up (the session
    /// never waits to fill a burst, R9298-46). Handlers that buffer outgoing
    /// packets send them here (e.g. one GSO system call for the burst).
    fn flush(&mut self) -> Action {
        Action::Continue
    }

    /// A capsule of a type the session does not handle itself (R9297-17: the
    /// default ignores it).
    fn capsule(&mut self, capsule: Capsule) -> Action {
        let _ = capsule;
        Action::Continue
    }

    /// A message sent to the session actor with `SessionMsg::Info`.
    fn info(&mut self, message: Box<dyn Any + Send>) -> Action {
        let _ = message;
        Action::Continue
    }

    /// Called once when the tunnel ends.
    fn terminate(&mut self, reason: &CloseReason) {
        let _ = reason;
    }
}
