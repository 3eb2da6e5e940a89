//! The masque proxy server: an actor tree on ractor + tokio that mirrors the
//! Erlang `masque` supervision tree (see [`node`]), the [`handler::Handler`]
//! trait, and the built-in CONNECT-UDP handler [`udp_proxy::UdpProxy`].

pub mod admission;
pub mod auth;
pub mod config;
mod context;
pub mod handler;
pub mod ip;
#[cfg(target_os = "linux")]
pub mod kernel_drops;
mod listener;
pub mod metrics;
pub mod node;
mod output;
pub mod policy;
mod proxy;
pub mod resolver;
mod router;
pub mod session;
mod slot;
pub mod supervisor;
mod task_group;
pub mod tcp_proxy;
pub mod udp_proxy;
pub mod udp_socket;

pub use auth::ProxyAuth;
pub use config::{QuicMtu, ServerConfig, SessionConfig, TcpListen};
pub use handler::{
    Action, ByteStream, CloseReason, Handler, Refusal, StreamFraming, Target, TargetStream,
    TcpTarget, TunnelHandler, TunnelOutput,
};
pub use ip::{IpProxy, IpProxyConfig};
pub use metrics::{Metrics, MetricsSnapshot};
pub use node::{Node, NodeError};
pub use output::OutputError;
pub use proxy::Proxy;
pub use task_group::TunnelTask;
pub use tcp_proxy::{TcpProxy, TcpProxyConfig};
pub use udp_proxy::{UdpProxy, UdpProxyConfig};
