//! `H3Listener`: owns one QUIC endpoint (Erlang: masque_server) on a clone of
//! the node's UDP socket, registers its real address in the
//! ListenerRegistry, runs QUIC and HTTP/3 handshakes off the actor and
//! spawns a linked ConnectionRouter per connection.

use crate::{
    admission::{ConnectionPermit, HandshakePermit},
    metrics::Metrics,
};
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
        let accept_task = tokio::spawn(accept(endpoint.clone(), Arc::clone(&args.ctx), myself));
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
            ListenerMsg::Established(conn, permit) => {
                state.routers.spawn(&myself, conn, permit).await
            }
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
/// Admission first (decisions §36): over the node's connection, per-address
/// or handshake caps the connection is refused before any state is kept;
/// above the Retry threshold an unvalidated address gets a Retry.
async fn accept(
    endpoint: quinn::Endpoint,
    ctx: Arc<ListenerContext>,
    listener: ActorRef<ListenerMsg>,
) {
    let (h3, limits) = (ctx.config.h3.clone(), ctx.config.tunnel_limits);
    let admission = &ctx.admission;
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    let Ok(permit) = admission.connection(incoming.remote_address().ip()) else {
                        incoming.refuse();
                        continue;
                    };
                    if admission.handshakes_in_flight() >= admission.limits().retry_above_handshakes
                        && !incoming.remote_address_validated()
                        && incoming.may_retry()
                    {
                        if incoming.retry().is_ok() {
                            Metrics::inc(&ctx.metrics.quic_retries_sent);
                        }
                        continue;
                    }
                    let Some(hs) = admission.handshake() else {
                        incoming.refuse();
                        continue;
                    };
                    let listener = listener.clone();
                    let setup = H3Setup {
                        config: h3.clone(),
                        limits,
                        timeout: ctx.config.h3_setup_timeout,
                        metrics: Arc::clone(&ctx.metrics),
                    };
                    handshakes.spawn(handshake(incoming, setup, listener, permit, hs));
                }
                None => return,
            },
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
        }
    }
}

/// What the HTTP/3 setup after the QUIC handshake needs.
struct H3Setup {
    config: masque_h3::Config,
    limits: TunnelLimits,
    /// `ServerConfig::h3_setup_timeout`.
    timeout: std::time::Duration,
    metrics: Arc<Metrics>,
}

async fn handshake(
    incoming: quinn::Incoming,
    setup: H3Setup,
    listener: ActorRef<ListenerMsg>,
    permit: ConnectionPermit,
    handshake: HandshakePermit,
) {
    let quic = match incoming.await {
        Ok(q) => q,
        Err(e) => {
            tracing::debug!(error = %e, "QUIC handshake failed");
            return;
        }
    };
    // Opening the control and QPACK streams and writing SETTINGS wait for the
    // peer's stream limit and credit: bounded, so a client that grants none
    // cannot hold a handshake permit (and this task) for good.
    let H3Setup {
        config,
        limits,
        timeout,
        metrics,
    } = setup;
    let started =
        tokio::time::timeout(timeout, masque_h3::Connection::server(quic.clone(), config)).await;
    drop(handshake);
    let started = match started {
        Ok(r) => r,
        Err(_elapsed) => {
            Metrics::inc(&metrics.h3_setup_timeouts);
            tracing::debug!(peer = %quic.remote_address(), "HTTP/3 setup timed out: connection closed");
            quic.close(masque_h3::Code::NO_ERROR.into(), b"HTTP/3 setup timed out");
            return;
        }
    };
    match started {
        Ok(conn) => {
            let conn = ServerConnection::h3(conn, limits);
            if listener
                .cast(ListenerMsg::Established(conn, permit))
                .is_err()
            {
                tracing::debug!("listener gone before the connection was handed over");
            }
        }
        Err(e) => tracing::debug!(error = %e, "HTTP/3 setup failed"),
    }
}
