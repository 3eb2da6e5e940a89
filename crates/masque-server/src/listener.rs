//! `H3Listener`: owns one QUIC endpoint (Erlang: masque_server). It binds in
//! `pre_start` (so a restart rebinds), registers its real address in the
//! ListenerRegistry, and spawns a linked ConnectionRouter per connection.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use masque_registry::ListenerProtocol;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    context::ListenerContext,
    router::{ConnectionRouter, RouterArgs, RouterMsg},
};

pub enum ListenerMsg {
    Incoming(Box<quinn::Incoming>),
    Established(masque_h3::Connection),
    /// Stop accepting, drain every connection within the timeout.
    Drain(Duration),
}

pub struct H3Listener;

pub struct ListenerArgs {
    pub(crate) ctx: Arc<ListenerContext>,
    pub(crate) server_config: quinn::ServerConfig,
    /// A clone of the node's socket (bound once by `Node::start`).
    pub(crate) socket: std::net::UdpSocket,
    /// Where the bound address is published (port 0 resolved).
    pub(crate) bound: watch::Sender<Option<SocketAddr>>,
}

pub struct ListenerState {
    ctx: Arc<ListenerContext>,
    endpoint: quinn::Endpoint,
    accept_task: JoinHandle<()>,
}

impl Drop for ListenerState {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.endpoint
            .close(masque_h3::Code::NO_ERROR.into(), b"listener stopped");
    }
}

impl Actor for H3Listener {
    type Msg = ListenerMsg;
    type State = ListenerState;
    type Arguments = ListenerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ListenerMsg>,
        args: ListenerArgs,
    ) -> Result<ListenerState, ActorProcessingErr> {
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
        let ep = endpoint.clone();
        let me = myself.clone();
        let accept_task = tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                if me.cast(ListenerMsg::Incoming(Box::new(incoming))).is_err() {
                    return;
                }
            }
        });
        Ok(ListenerState {
            ctx: args.ctx,
            endpoint,
            accept_task,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ListenerMsg>,
        msg: ListenerMsg,
        state: &mut ListenerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ListenerMsg::Incoming(incoming) => {
                // The handshake runs off the actor so one slow client cannot stall
                // accepting.
                let me = myself.clone();
                let h3 = state.ctx.config.h3.clone();
                tokio::spawn(async move {
                    let quic = match (*incoming).await {
                        Ok(q) => q,
                        Err(e) => {
                            tracing::debug!(error = %e, "handshake failed");
                            return;
                        }
                    };
                    match masque_h3::Connection::server(quic, h3).await {
                        Ok(conn) => {
                            let _ = me.cast(ListenerMsg::Established(conn));
                        }
                        Err(e) => tracing::debug!(error = %e, "HTTP/3 setup failed"),
                    }
                });
            }
            ListenerMsg::Established(conn) => {
                let args = RouterArgs {
                    conn,
                    ctx: Arc::clone(&state.ctx),
                };
                if let Err(e) =
                    Actor::spawn_linked(None, ConnectionRouter, args, myself.get_cell()).await
                {
                    tracing::warn!(error = %e, "ConnectionRouter failed to start");
                }
            }
            ListenerMsg::Drain(timeout) => {
                // No new connections; existing ones get GOAWAY and drain.
                state.endpoint.set_server_config(None);
                state.accept_task.abort();
                for child in myself.get_children() {
                    let _ = child.send_message(RouterMsg::Drain(timeout));
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<ListenerMsg>,
        evt: SupervisionEvent,
        _state: &mut ListenerState,
    ) -> Result<(), ActorProcessingErr> {
        // Routers are temporary: one ending (its connection closed) is normal.
        // (The default implementation would stop the listener.)
        if let SupervisionEvent::ActorFailed(who, e) = evt {
            tracing::warn!(actor = %who.get_id(), error = %e, "ConnectionRouter failed");
        }
        Ok(())
    }
}
