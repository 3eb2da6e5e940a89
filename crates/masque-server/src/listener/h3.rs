//! `H3Listener`: owns one QUIC endpoint (Erlang: masque_server) on a clone of
//! the node's UDP socket, registers its real address in the
//! ListenerRegistry, runs QUIC and HTTP/3 handshakes off the actor and
//! spawns a linked ConnectionRouter per connection.

use std::{net::SocketAddr, sync::Arc};

use masque_registry::ListenerProtocol;
use masque_transport::{ServerConnection, TunnelLimits};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::{
    sync::watch,
    task::{JoinHandle, JoinSet},
};

use super::{ListenerMsg, Routers, drain_listener};
use crate::{
    context::ListenerContext,
    supervisor::{ChildSpec, Restart},
};

pub struct H3Listener;

pub struct H3ListenerArgs {
    pub(crate) ctx: Arc<ListenerContext>,
    pub(crate) server_config: quinn::ServerConfig,
    /// A clone of the node's socket (bound once by `Node::start`).
    pub(crate) socket: std::net::UdpSocket,
    /// Where the bound address is published (port 0 resolved).
    pub(crate) bound: watch::Sender<Option<SocketAddr>>,
}

pub struct H3ListenerState {
    endpoint: quinn::Endpoint,
    /// Accepts and owns the handshakes in flight (aborting it ends them).
    accept_task: JoinHandle<()>,
    routers: Routers,
}

impl Drop for H3ListenerState {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.endpoint
            .close(masque_h3::Code::NO_ERROR.into(), b"listener stopped");
    }
}

/// The child spec of the H3 listener: permanent; each incarnation gets a
/// clone of `socket`.
pub(crate) fn h3_listener(
    ctx: Arc<ListenerContext>,
    server_config: quinn::ServerConfig,
    socket: Arc<std::net::UdpSocket>,
    bound: watch::Sender<Option<SocketAddr>>,
) -> ChildSpec {
    ChildSpec::new("h3-listener", Restart::Permanent, move |sup| {
        let args = socket.try_clone().map(|socket| H3ListenerArgs {
            ctx: Arc::clone(&ctx),
            server_config: server_config.clone(),
            socket,
            bound: bound.clone(),
        });
        async move {
            let (listener, _) = Actor::spawn_linked(None, H3Listener, args?, sup).await?;
            Ok(Some(listener.get_cell()))
        }
    })
    .draining(drain_listener)
}

impl Actor for H3Listener {
    type Msg = ListenerMsg;
    type State = H3ListenerState;
    type Arguments = H3ListenerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ListenerMsg>,
        args: H3ListenerArgs,
    ) -> Result<H3ListenerState, ActorProcessingErr> {
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(args.server_config),
            args.socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        let addr = endpoint.local_addr()?;
        let outcome = masque_registry::register(
            args.ctx.config.name.clone(),
            addr,
            ListenerProtocol::H3,
            myself.get_cell(),
        )
        .await;
        tracing::info!(%addr, name = %args.ctx.config.name, registered = outcome.is_registered(), "HTTP/3 listener up");
        args.bound.send_replace(Some(addr));
        let accept_task = tokio::spawn(accept(
            endpoint.clone(),
            args.ctx.config.h3.clone(),
            args.ctx.config.tunnel_limits,
            myself,
        ));
        Ok(H3ListenerState {
            endpoint,
            accept_task,
            routers: Routers::new(args.ctx),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ListenerMsg>,
        msg: ListenerMsg,
        state: &mut H3ListenerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ListenerMsg::Established(conn) => state.routers.spawn(&myself, conn).await,
            ListenerMsg::Drain(timeout) => {
                // No new connections; existing ones get GOAWAY and drain.
                state.endpoint.set_server_config(None);
                state.accept_task.abort();
                state.routers.drain(&myself, timeout);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<ListenerMsg>,
        evt: SupervisionEvent,
        state: &mut H3ListenerState,
    ) -> Result<(), ActorProcessingErr> {
        // (The default implementation would stop the listener.)
        state.routers.child_event(&myself, evt);
        Ok(())
    }
}

/// Accepts QUIC connections until the endpoint closes; each handshake (QUIC,
/// then HTTP/3 SETTINGS) runs on a task of its own, so one slow client
/// cannot stall accepting, and they all end with this task.
async fn accept(
    endpoint: quinn::Endpoint,
    h3: masque_h3::Config,
    limits: TunnelLimits,
    listener: ActorRef<ListenerMsg>,
) {
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    handshakes.spawn(handshake(incoming, h3.clone(), limits, listener.clone()));
                }
                None => return,
            },
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
        }
    }
}

async fn handshake(
    incoming: quinn::Incoming,
    h3: masque_h3::Config,
    limits: TunnelLimits,
    listener: ActorRef<ListenerMsg>,
) {
    let quic = match incoming.await {
        Ok(q) => q,
        Err(e) => {
            tracing::debug!(error = %e, "QUIC handshake failed");
            return;
        }
    };
    match masque_h3::Connection::server(quic, h3).await {
        Ok(conn) => {
            let conn = ServerConnection::h3(conn, limits);
            if listener.cast(ListenerMsg::Established(conn)).is_err() {
                tracing::debug!("listener gone before the connection was handed over");
            }
        }
        Err(e) => tracing::debug!(error = %e, "HTTP/3 setup failed"),
    }
}
