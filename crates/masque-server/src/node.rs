//! `Node`: starts the supervision tree for one HTTP/3 listener and one TLS
//! listener (HTTP/2 and HTTP/1.1 by ALPN), and hands back their addresses,
//! the metrics and a graceful shutdown.
//!
//! ```text
//! NodeSupervisor                 one-for-one, intensity-limited restarts
//! ├── ListenerRegistry           permanent
//! ├── IpRegistry                 permanent (CONNECT-IP ranges, masque_registry::ip)
//! ├── ListenerSupervisor "h3"    permanent
//! │   └── H3Listener             permanent (a clone of the node's UDP socket)
//! │       └── ConnectionRouter   temporary, one per connection
//! │           └── Session        temporary, one per tunnel
//! └── ListenerSupervisor "tls"   permanent (unless TCP is off)
//!     └── TlsListener            permanent (a clone of the node's TCP socket)
//!         └── ConnectionRouter   temporary, one per connection
//!             └── Session        temporary, one per tunnel
//! ```
//!
//! Both sockets are bound here, once, and shared by every incarnation of
//! their listener (as ranch keeps its listen socket in the supervisor): a
//! restarted listener never rebinds, so it cannot lose its port (port 0) or
//! race the dying listener for it.

use masque_registry::ip::IpRegistryHandle;
use std::{
    net::{SocketAddr, TcpListener},
    sync::Arc,
    time::Duration,
};

use masque_proto::template::TemplateError;
use masque_transport::{
    socket_buffers::{BufferSizes, bind_udp},
    tls::{ALPN_H2, ALPN_HTTP11, ServerTls, TlsError},
};
use ractor::{Actor, ActorRef};
use tokio::sync::watch;

use crate::{
    config::ServerConfig,
    context::ListenerContext,
    handler::Handler,
    listener::{h3_listener, tls_listener},
    metrics::Metrics,
    supervisor::{
        ChildSpec, Restart, RestartIntensity, Supervisor, SupervisorArgs, SupervisorMsg,
        listener_registry, listener_supervisor,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("invalid CONNECT-UDP template: {0}")]
    Template(#[from] TemplateError),
    #[error("supervision tree failed to start: {0}")]
    Spawn(String),
    #[error("listener failed to bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS listener failed to bind TCP {addr}: {source}")]
    BindTcp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("listener failed to start on {addr}")]
    Listener { addr: SocketAddr },
}

/// A running node.
pub struct Node {
    supervisor: ActorRef<SupervisorMsg>,
    join: tokio::task::JoinHandle<()>,
    local_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    metrics: Arc<Metrics>,
    drain_timeout: Duration,
    quic_buffers: BufferSizes,
    /// True once the tree has drained (every listener's routers stopped).
    drained: watch::Receiver<bool>,
    ip_registry: IpRegistryHandle,
}

/// What a node gives its handler at start ([`crate::Handler::attach`]).
#[derive(Clone)]
pub struct NodeServices {
    /// The node's counters.
    pub metrics: Arc<Metrics>,
    /// The node's IpRegistry (CONNECT-IP ranges; its writer is a permanent
    /// child of the node's tree).
    pub ip_registry: IpRegistryHandle,
}

impl Node {
    /// Binds both sockets, starts the tree and waits until the listeners are up.
    pub async fn start(
        mut config: ServerConfig,
        tls: &ServerTls,
        handler: Arc<dyn Handler>,
    ) -> Result<Node, NodeError> {
        // SETTINGS_MAX_CONCURRENT_STREAMS is the tunnel limit.
        config.h2 = config.effective_h2();
        let metrics = Arc::new(Metrics::default());
        let ip_registry = IpRegistryHandle::new();
        handler.attach(&NodeServices {
            metrics: Arc::clone(&metrics),
            ip_registry: ip_registry.clone(),
        });
        // Room for the tunnels allowed plus a few more streams, so excess
        // requests get a 503 rather than waiting for stream credit
        // (`transport_config` adds the share quinn withholds).
        let streams = u32::try_from(config.max_tunnels_per_connection + 16).unwrap_or(u32::MAX);
        let mut transport = masque_h3::transport_config(streams);
        config.quic_mtu.apply(&mut transport);
        let transport = Arc::new(transport);
        let server_config = tls.quic_server_config(&[b"h3"], transport)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(
            tls.rustls_server_config(&[ALPN_H2, ALPN_HTTP11])?,
        ));
        let drain_timeout = config.drain_timeout;
        let listen = config.listen;
        let (socket, quic_buffers) = bind_udp(
            listen,
            config.quic_recv_buffer,
            config.quic_send_buffer,
            "QUIC listener socket buffers",
        )
        .map_err(|source| NodeError::Bind {
            addr: listen,
            source,
        })?;
        let udp_addr = socket.local_addr().map_err(|source| NodeError::Bind {
            addr: listen,
            source,
        })?;
        tracing::info!(
            %listen,
            recv_buffer = quic_buffers.recv,
            send_buffer = quic_buffers.send,
            "QUIC listener socket bound"
        );
        let tcp = match config.tcp_listen_addr() {
            Some(asked) => {
                // Same address as HTTP/3 with port 0: follow the port UDP got.
                let follow = matches!(config.tcp_listen, crate::config::TcpListen::SameAsH3)
                    && asked.port() == 0;
                let socket =
                    bind_tcp(asked, follow.then_some(udp_addr.port())).map_err(|source| {
                        NodeError::BindTcp {
                            addr: asked,
                            source,
                        }
                    })?;
                let addr = socket.local_addr().map_err(|source| NodeError::BindTcp {
                    addr: asked,
                    source,
                })?;
                tracing::info!(%addr, "TLS listener socket bound");
                Some((Arc::new(socket), addr))
            }
            None => None,
        };
        let ctx = Arc::new(ListenerContext::new(config, handler, Arc::clone(&metrics))?);
        let (bound, mut bound_rx) = watch::channel(None);
        let mut children = vec![
            listener_registry(),
            ip_registry_spec(ip_registry.clone()),
            listener_supervisor(
                "listener h3",
                h3_listener(Arc::clone(&ctx), server_config, Arc::new(socket), bound),
                RestartIntensity::default(),
            ),
        ];
        children.extend(ctx.handler.children());
        if let Some((socket, _)) = &tcp {
            children.push(listener_supervisor(
                "listener tls",
                tls_listener(Arc::clone(&ctx), acceptor, Arc::clone(socket)),
                RestartIntensity::default(),
            ));
        }
        let (drained_tx, drained) = watch::channel(false);
        let args = SupervisorArgs {
            label: "node".into(),
            children,
            intensity: RestartIntensity::default(),
            drained: Some(drained_tx),
        };
        let (supervisor, join) = Actor::spawn(None, Supervisor, args)
            .await
            .map_err(|e| NodeError::Spawn(e.to_string()))?;
        let local_addr = match bound_rx.wait_for(Option::is_some).await {
            Ok(a) => a.ok_or(NodeError::Listener { addr: listen })?,
            Err(_) => return Err(NodeError::Listener { addr: listen }),
        };
        Ok(Node {
            supervisor,
            join,
            local_addr,
            tcp_addr: tcp.map(|(_, addr)| addr),
            metrics,
            drain_timeout,
            quic_buffers,
            drained,
            ip_registry,
        })
    }

    /// The bound UDP address of the HTTP/3 listener (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound TCP address of the TLS listener (HTTP/2 and HTTP/1.1; port
    /// 0 resolved); `None` when TCP is off.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The node's IpRegistry (lookups, a diagnostic snapshot with `all()`).
    pub fn ip_registry(&self) -> &IpRegistryHandle {
        &self.ip_registry
    }

    /// The listener socket's buffer sizes as the kernel granted them
    /// (`ServerConfig::quic_recv_buffer` / `quic_send_buffer`; on Linux
    /// twice the granted bytes, which include bookkeeping).
    pub fn quic_buffer_sizes(&self) -> BufferSizes {
        self.quic_buffers
    }

    /// The root supervisor (for embedding the node in a larger actor tree).
    pub fn supervisor(&self) -> &ActorRef<SupervisorMsg> {
        &self.supervisor
    }

    /// Graceful shutdown: stop accepting, GOAWAY on every connection, let open
    /// tunnels drain up to the configured timeout (the tree says when every
    /// listener's connections are gone), then stop the tree.
    pub async fn shutdown(self) {
        let _ = self
            .supervisor
            .cast(SupervisorMsg::Drain(self.drain_timeout));
        let mut drained = self.drained;
        let bound = self.drain_timeout + Duration::from_secs(1);
        // An error means the tree is already gone: nothing left to wait for.
        if tokio::time::timeout(bound, drained.wait_for(|d| *d))
            .await
            .is_err()
        {
            tracing::debug!(timeout = ?bound, "drain did not finish in time; stopping the tree");
        }
        self.supervisor.stop(Some("shutdown".into()));
        let _ = tokio::time::timeout(Duration::from_secs(5), self.join).await;
    }
}

/// The spec of this node's IpRegistry writer (permanent). Each node has its
/// own registry, so nodes of one process (tests, embedders) never share or
/// outlive each other's ranges; a restarted writer keeps the handle's table.
fn ip_registry_spec(registry: IpRegistryHandle) -> ChildSpec {
    ChildSpec::new("ip-registry", Restart::Permanent, move |sup| {
        let registry = registry.clone();
        async move {
            match registry.spawn_linked(None, sup).await {
                Ok((r, _)) => Ok(Some(r.get_cell())),
                Err(e) => {
                    tracing::warn!(error = %e, "IpRegistry not started by this node");
                    Ok(None)
                }
            }
        }
    })
}

/// Binds the TLS listener's TCP socket at `addr`. With `follow` (the UDP
/// port, when `addr` asked for port 0 on the HTTP/3 address), the same port
/// number if it is free on TCP, else an ephemeral one.
fn bind_tcp(addr: SocketAddr, follow: Option<u16>) -> std::io::Result<TcpListener> {
    let socket = match follow {
        Some(port) => match TcpListener::bind(SocketAddr::new(addr.ip(), port)) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(port, error = %e, "UDP port not free on TCP; an ephemeral one instead");
                TcpListener::bind(addr)?
            }
        },
        None => TcpListener::bind(addr)?,
    };
    socket.set_nonblocking(true)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_follows_the_udp_port_when_free() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        // A port just seen free on TCP (as the UDP socket's port would be).
        let port = TcpListener::bind(any).unwrap().local_addr().unwrap().port();
        let same = bind_tcp(any, Some(port)).unwrap();
        assert_eq!(same.local_addr().unwrap().port(), port, "the same number");
        // Taken on TCP: an ephemeral port instead, no error.
        let other = bind_tcp(any, Some(port)).unwrap();
        assert_ne!(other.local_addr().unwrap().port(), port);
        // An explicit port that is taken is an error.
        assert!(bind_tcp(SocketAddr::new(any.ip(), port), None).is_err());
    }
}
