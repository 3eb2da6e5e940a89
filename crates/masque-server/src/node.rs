//! `Node`: starts the supervision tree for one HTTP/3 listener and hands back
//! its address, metrics and a graceful shutdown.
//!
//! ```text
//! NodeSupervisor                 one-for-one, intensity-limited restarts
//! ├── ListenerRegistry           permanent
//! └── ListenerSupervisor         permanent
//!     └── H3Listener             permanent (rebinds on restart)
//!         └── ConnectionRouter   temporary, one per connection
//!             └── UdpSession     temporary, one per tunnel
//! ```

use std::{net::SocketAddr, sync::Arc, time::Duration};

use masque_proto::template::{TemplateError, UdpTemplate};
use masque_transport::{
    socket_buffers::{BufferSizes, bind_udp},
    tls::{ServerTls, TlsError},
};
use ractor::{Actor, ActorRef};
use tokio::sync::watch;

use crate::{
    config::ServerConfig,
    context::ListenerContext,
    handler::Handler,
    metrics::Metrics,
    supervisor::{ListenerSupArgs, NodeMsg, NodeSupArgs, NodeSupervisor, RestartIntensity},
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
    #[error("listener failed to start on {addr}")]
    Listener { addr: SocketAddr },
}

/// A running node.
pub struct Node {
    supervisor: ActorRef<NodeMsg>,
    join: tokio::task::JoinHandle<()>,
    local_addr: SocketAddr,
    metrics: Arc<Metrics>,
    drain_timeout: Duration,
    quic_buffers: BufferSizes,
}

impl Node {
    /// Starts the tree and waits until the listener is bound.
    pub async fn start(
        config: ServerConfig,
        tls: &ServerTls,
        handler: Arc<dyn Handler>,
    ) -> Result<Node, NodeError> {
        let metrics = Arc::new(Metrics::default());
        // Room for the tunnels allowed plus a few more streams, so excess
        // requests get a 503 rather than waiting for stream credit
        // (`transport_config` adds the share quinn withholds).
        let streams = u32::try_from(config.max_tunnels_per_connection + 16).unwrap_or(u32::MAX);
        let mut transport = masque_h3::transport_config(streams);
        config.quic_mtu.apply(&mut transport);
        let transport = Arc::new(transport);
        let server_config = tls.quic_server_config(&[b"h3"], transport)?;
        let udp_template = UdpTemplate::parse_path(&config.udp_template)?;
        let drain_timeout = config.drain_timeout;
        let listen = config.listen;
        // Bound once, here, and shared with every listener incarnation (as
        // ranch keeps its listen socket in the supervisor): a restarted
        // listener never rebinds, so it cannot lose its port (port 0) or
        // race the dying listener for it.
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
        tracing::info!(
            %listen,
            recv_buffer = quic_buffers.recv,
            send_buffer = quic_buffers.send,
            "QUIC listener socket bound"
        );
        let ctx = Arc::new(ListenerContext {
            session: Arc::new(config.session.clone()),
            node_name: config.node_name.as_str().into(),
            handler,
            metrics: Arc::clone(&metrics),
            udp_template,
            config,
        });
        let (bound, mut bound_rx) = watch::channel(None);
        let args = NodeSupArgs {
            listeners: vec![ListenerSupArgs {
                ctx,
                server_config,
                socket: Arc::new(socket),
                bound,
                intensity: RestartIntensity::default(),
            }],
            intensity: RestartIntensity::default(),
        };
        let (supervisor, join) = Actor::spawn(None, NodeSupervisor, args)
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
            metrics,
            drain_timeout,
            quic_buffers,
        })
    }

    /// The bound UDP address of the HTTP/3 listener (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The listener socket's buffer sizes as the kernel granted them
    /// (`ServerConfig::quic_recv_buffer` / `quic_send_buffer`; on Linux
    /// twice the granted bytes, which include bookkeeping).
    pub fn quic_buffer_sizes(&self) -> BufferSizes {
        self.quic_buffers
    }

    /// The root supervisor (for embedding the node in a larger actor tree).
    pub fn supervisor(&self) -> &ActorRef<NodeMsg> {
        &self.supervisor
    }

    /// Graceful shutdown: stop accepting, GOAWAY on every connection, let open
    /// tunnels drain up to the configured timeout, then stop the tree.
    pub async fn shutdown(self) {
        let _ = self.supervisor.cast(NodeMsg::Drain(self.drain_timeout));
        let deadline = tokio::time::Instant::now() + self.drain_timeout + Duration::from_secs(1);
        while tokio::time::Instant::now() < deadline {
            let s = self.metrics.snapshot();
            if s.connections_closed >= s.connections_accepted {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.supervisor.stop(Some("shutdown".into()));
        let _ = tokio::time::timeout(Duration::from_secs(5), self.join).await;
    }
}
