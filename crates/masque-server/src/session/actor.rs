//! `TunnelSession`: the actor of one tunnel (Erlang: masque_server_udp_session
//! and its siblings). It owns the runtime task that carries the data plane,
//! the datagram runtime (CONNECT-UDP) or the stream runtime (CONNECT-TCP,
//! classic CONNECT), and takes only control messages: info for the handler,
//! close.
//!
//! Cleanup is DOWN-style and total: the task stops when the actor stops for any
//! reason (its handle aborts on drop, even when the actor is killed with its
//! ConnectionRouter), and the actor stops when the task ends.

use std::{any::Any, sync::Arc, time::Duration};

use masque_proto::tunnel::DatagramRules;
use masque_queue::{self as queue, QueueTx};
use masque_transport::PendingTunnel;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;

use crate::{
    config::SessionConfig,
    handler::{CloseReason, Handler, Target},
    metrics::Metrics,
    session::{
        runtime::{self, SessionEnv, SessionSetup},
        stream::{self, StreamSetup},
    },
    slot::TunnelSlot,
    task_group::TaskGroup,
};

/// Messages a session actor takes (control plane only).
#[derive(Debug)]
pub enum SessionMsg {
    /// Delivered to `TunnelHandler::info` (bounded queue; full -> dropped, counted).
    Info(Box<dyn Any + Send>),
    /// Ends the tunnel, e.g. on node shutdown: a datagram tunnel cleanly
    /// (FIN after queued output), a stream tunnel with a reset (a FIN would
    /// tell the client its byte stream was complete).
    Close,
    /// The runtime task ended (internal).
    #[doc(hidden)]
    Ended(CloseReason),
}

pub struct TunnelSession;

/// Spawn arguments.
pub struct TunnelSessionArgs {
    pub(crate) pending: PendingTunnel,
    pub(crate) target: Target,
    /// Its place under the connection's tunnel limit, freed when the relay ends.
    pub(crate) slot: TunnelSlot,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) config: Arc<SessionConfig>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) node_name: Arc<str>,
    /// The client connection's task group, for the handler's data-plane tasks.
    pub(crate) group: TaskGroup,
}

/// Aborts the runtime task when the actor's state goes away (stop or kill).
pub struct TunnelSessionState {
    task: JoinHandle<()>,
    /// Info for the handler; closing it tells the runtime to end the tunnel.
    info: QueueTx<Box<dyn Any + Send>>,
    metrics: Arc<Metrics>,
}

impl Drop for TunnelSessionState {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs a session's runtime on its own task, not the connection's group: the
/// runtime runs handler callbacks, and a slow one must not hold up the
/// connection's other tunnels (an A/B with runtimes in the group measured no
/// gain). The actor hears when it ends.
fn spawn_runtime(
    run: impl std::future::Future<Output = CloseReason> + Send + 'static,
    myself: ActorRef<SessionMsg>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let reason = run.await;
        tracing::debug!(?reason, "tunnel ended");
        // The actor may already be stopping; then nobody needs the news.
        let _ = myself.cast(SessionMsg::Ended(reason));
    })
}

/// How long a stopping session waits for its task to close the stream cleanly.
const STOP_GRACE: Duration = Duration::from_secs(1);

impl Actor for TunnelSession {
    type Msg = SessionMsg;
    type State = TunnelSessionState;
    type Arguments = TunnelSessionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SessionMsg>,
        args: TunnelSessionArgs,
    ) -> Result<TunnelSessionState, ActorProcessingErr> {
        let (info, info_rx) = queue::channel(args.config.info_queue);
        let metrics = Arc::clone(&args.metrics);
        let env = SessionEnv {
            config: args.config,
            metrics: args.metrics,
            node_name: args.node_name,
            info: info_rx,
            group: args.group,
            session: myself.get_cell(),
        };
        let task = match args.target {
            Target::Tcp(target) => spawn_runtime(
                stream::run(StreamSetup {
                    pending: args.pending,
                    target,
                    slot: args.slot,
                    handler: args.handler,
                    env,
                }),
                myself,
            ),
            target @ (Target::Udp(_) | Target::Ip(_)) => spawn_runtime(
                runtime::run(SessionSetup {
                    pending: args.pending,
                    rules: match target {
                        Target::Ip(_) => DatagramRules::ip(),
                        _ => DatagramRules::udp(),
                    },
                    target,
                    slot: args.slot,
                    handler: args.handler,
                    env,
                }),
                myself,
            ),
        };
        Ok(TunnelSessionState {
            task,
            info,
            metrics,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        msg: SessionMsg,
        state: &mut TunnelSessionState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SessionMsg::Info(m) => {
                if state.info.try_send(m).is_err() {
                    Metrics::inc(&state.metrics.info_dropped);
                }
            }
            SessionMsg::Close => state.info.close(),
            SessionMsg::Ended(_) => myself.stop(None),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SessionMsg>,
        state: &mut TunnelSessionState,
    ) -> Result<(), ActorProcessingErr> {
        // Graceful path: let the runtime finish the stream and run `terminate`.
        state.info.close();
        let _ = tokio::time::timeout(STOP_GRACE, &mut state.task).await;
        Ok(())
    }
}
