//! Supervisors (Erlang: masque_sup and the per-listener supervisors). ractor has
//! no restart strategies, so these implement one-for-one restart of permanent
//! children with an intensity limit: more than `max_restarts` within `window`
//! and the supervisor gives up and stops (escalating to its own supervisor).
//! Both override `handle_supervisor_evt`, whose default would stop them on the
//! first child death.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::watch;

use crate::{
    context::ListenerContext,
    listener::{H3Listener, ListenerArgs, ListenerMsg},
};

/// Restart budget of a supervisor.
#[derive(Debug, Clone, Copy)]
pub struct RestartIntensity {
    pub max_restarts: usize,
    pub window: Duration,
}

impl Default for RestartIntensity {
    /// OTP's default: 3 restarts in 5 seconds.
    fn default() -> Self {
        Self {
            max_restarts: 3,
            window: Duration::from_secs(5),
        }
    }
}

/// Restart history against a [`RestartIntensity`].
#[derive(Debug)]
struct Restarts {
    limit: RestartIntensity,
    times: VecDeque<Instant>,
}

impl Restarts {
    fn new(limit: RestartIntensity) -> Self {
        Self {
            limit,
            times: VecDeque::new(),
        }
    }

    /// Records a restart; false when the budget is exhausted.
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        while self
            .times
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.limit.window)
        {
            self.times.pop_front();
        }
        if self.times.len() >= self.limit.max_restarts {
            return false;
        }
        self.times.push_back(now);
        true
    }
}

fn died(evt: &SupervisionEvent) -> Option<&ActorCell> {
    match evt {
        SupervisionEvent::ActorTerminated(who, _, _) | SupervisionEvent::ActorFailed(who, _) => {
            Some(who)
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// ListenerSupervisor: one per listener; its permanent child is the H3Listener.

pub enum ListenerSupMsg {
    Drain(Duration),
}

pub struct ListenerSupervisor;

#[derive(Clone)]
pub struct ListenerSupArgs {
    pub(crate) ctx: Arc<ListenerContext>,
    pub(crate) server_config: quinn::ServerConfig,
    /// The node's bound UDP socket; each listener incarnation gets a clone.
    pub(crate) socket: Arc<std::net::UdpSocket>,
    pub(crate) bound: watch::Sender<Option<SocketAddr>>,
    pub(crate) intensity: RestartIntensity,
}

pub struct ListenerSupState {
    args: ListenerSupArgs,
    listener: ActorRef<ListenerMsg>,
    restarts: Restarts,
    draining: bool,
}

async fn spawn_listener(
    args: &ListenerSupArgs,
    sup: ActorCell,
) -> Result<ActorRef<ListenerMsg>, ActorProcessingErr> {
    let largs = ListenerArgs {
        ctx: Arc::clone(&args.ctx),
        server_config: args.server_config.clone(),
        socket: args.socket.try_clone()?,
        bound: args.bound.clone(),
    };
    let (listener, _) = Actor::spawn_linked(None, H3Listener, largs, sup).await?;
    Ok(listener)
}

impl Actor for ListenerSupervisor {
    type Msg = ListenerSupMsg;
    type State = ListenerSupState;
    type Arguments = ListenerSupArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ListenerSupMsg>,
        args: ListenerSupArgs,
    ) -> Result<ListenerSupState, ActorProcessingErr> {
        let listener = spawn_listener(&args, myself.get_cell()).await?;
        Ok(ListenerSupState {
            restarts: Restarts::new(args.intensity),
            args,
            listener,
            draining: false,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<ListenerSupMsg>,
        msg: ListenerSupMsg,
        state: &mut ListenerSupState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ListenerSupMsg::Drain(t) => {
                state.draining = true;
                let _ = state.listener.cast(ListenerMsg::Drain(t));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<ListenerSupMsg>,
        evt: SupervisionEvent,
        state: &mut ListenerSupState,
    ) -> Result<(), ActorProcessingErr> {
        let Some(who) = died(&evt) else { return Ok(()) };
        if who.get_id() != state.listener.get_id() || state.draining {
            return Ok(());
        }
        if !state.restarts.allow() {
            tracing::error!("listener restart intensity exceeded; giving up");
            myself.stop(Some("restart intensity exceeded".into()));
            return Ok(());
        }
        tracing::warn!("H3Listener died; restarting");
        state.listener = spawn_listener(&state.args, myself.get_cell()).await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// NodeSupervisor: the root. Permanent children: the ListenerRegistry and one
// ListenerSupervisor per listener.

pub enum NodeMsg {
    Drain(Duration),
}

pub struct NodeSupervisor;

pub struct NodeSupArgs {
    pub(crate) listeners: Vec<ListenerSupArgs>,
    pub(crate) intensity: RestartIntensity,
}

pub struct NodeSupState {
    listeners: Vec<(ListenerSupArgs, ActorRef<ListenerSupMsg>)>,
    registry: Option<ActorCell>,
    restarts: Restarts,
    draining: bool,
}

async fn spawn_registry(sup: ActorCell) -> Option<ActorCell> {
    match masque_registry::spawn_linked(sup).await {
        Ok((r, _)) => Some(r.get_cell()),
        Err(e) => {
            // Already running elsewhere in this process (another node): the
            // registry is shared and tolerant, so carry on without owning it.
            tracing::debug!(error = %e, "ListenerRegistry not started by this node");
            None
        }
    }
}

impl Actor for NodeSupervisor {
    type Msg = NodeMsg;
    type State = NodeSupState;
    type Arguments = NodeSupArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<NodeMsg>,
        args: NodeSupArgs,
    ) -> Result<NodeSupState, ActorProcessingErr> {
        let registry = spawn_registry(myself.get_cell()).await;
        let mut listeners = Vec::new();
        for l in args.listeners {
            let (r, _) =
                Actor::spawn_linked(None, ListenerSupervisor, l.clone(), myself.get_cell()).await?;
            listeners.push((l, r));
        }
        Ok(NodeSupState {
            listeners,
            registry,
            restarts: Restarts::new(args.intensity),
            draining: false,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<NodeMsg>,
        msg: NodeMsg,
        state: &mut NodeSupState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NodeMsg::Drain(t) => {
                state.draining = true;
                for (_, l) in &state.listeners {
                    let _ = l.cast(ListenerSupMsg::Drain(t));
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<NodeMsg>,
        evt: SupervisionEvent,
        state: &mut NodeSupState,
    ) -> Result<(), ActorProcessingErr> {
        let Some(who) = died(&evt) else { return Ok(()) };
        if state.draining {
            return Ok(());
        }
        let id = who.get_id();
        let is_registry = state.registry.as_ref().is_some_and(|r| r.get_id() == id);
        let listener = state.listeners.iter().position(|(_, r)| r.get_id() == id);
        if !is_registry && listener.is_none() {
            return Ok(());
        }
        if !state.restarts.allow() {
            tracing::error!("node restart intensity exceeded; stopping the node");
            myself.stop(Some("restart intensity exceeded".into()));
            return Ok(());
        }
        if is_registry {
            tracing::warn!("ListenerRegistry died; restarting");
            state.registry = spawn_registry(myself.get_cell()).await;
        }
        if let Some(i) = listener {
            tracing::warn!("ListenerSupervisor died; restarting");
            let args = state.listeners[i].0.clone();
            let (r, _) =
                Actor::spawn_linked(None, ListenerSupervisor, args, myself.get_cell()).await?;
            state.listeners[i].1 = r;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_intensity_window() {
        let mut r = Restarts::new(RestartIntensity {
            max_restarts: 2,
            window: Duration::from_millis(50),
        });
        assert!(r.allow());
        assert!(r.allow());
        assert!(!r.allow());
        std::thread::sleep(Duration::from_millis(60));
        assert!(r.allow());
    }
}
