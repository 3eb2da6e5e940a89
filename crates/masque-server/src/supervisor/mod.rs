//! Supervisors (Erlang: masque_sup and the per-listener supervisors). ractor
//! has no restart strategies, so [`Supervisor`] implements OTP's one-for-one
//! strategy over [`ChildSpec`]s: each child has a restart policy
//! ([`Restart::Permanent`] children are restarted when they end,
//! [`Restart::Temporary`] ones never) and a start function returning the
//! child's `ActorCell`. More than `max_restarts` restarts within `window` and
//! the supervisor gives up and stops, escalating to its own supervisor. It
//! overrides `handle_supervisor_evt`, whose default would stop it on the
//! first child death.
//!
//! One actor type plays both roles of the node's tree: the NodeSupervisor
//! (children: the ListenerRegistry and one ListenerSupervisor per listener)
//! and each ListenerSupervisor (child: one listener of either kind); see
//! [`node`](crate::node) for the tree and [`listener_supervisor`] for the
//! latter's spec.
//!
//! Draining is signalled by the tree, never polled: [`SupervisorMsg::Drain`]
//! goes to every child whose spec says how to drain it; each such child
//! answers [`SupervisorMsg::Drained`] once it has nothing left (a listener:
//! its last ConnectionRouter stopped), or counts as drained when it ends.
//! When every one has, the supervisor reports `Drained` to its own
//! supervisor and completes its `drained` watch (the node waits on the
//! root's).

use std::{
    collections::{HashSet, VecDeque},
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::watch;

#[cfg(test)]
mod tests;

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

/// OTP's restart types (`transient` is not needed yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Restarted whenever it ends (unless the supervisor drains).
    Permanent,
    /// Never restarted: forgotten when it ends.
    Temporary,
}

/// What a start function returns: the child, or `None` when there is
/// nothing to supervise (OTP's `ignore`, e.g. a registry another node of the
/// process already runs). An error fails the supervisor.
pub type StartResult = Result<Option<ActorCell>, ActorProcessingErr>;

type StartFn =
    Arc<dyn Fn(ActorCell) -> Pin<Box<dyn Future<Output = StartResult> + Send>> + Send + Sync>;
type DrainFn = Arc<dyn Fn(&ActorCell, Duration) -> bool + Send + Sync>;

/// How a supervisor starts, restarts and drains one child. Cheap to clone.
#[derive(Clone)]
pub struct ChildSpec {
    id: Arc<str>,
    restart: Restart,
    start: StartFn,
    drain: Option<DrainFn>,
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .field("drains", &self.drain.is_some())
            .finish_non_exhaustive()
    }
}

impl ChildSpec {
    /// `start` spawns the child linked to the supervisor cell it is given.
    pub fn new<F, Fut>(id: impl Into<Arc<str>>, restart: Restart, start: F) -> Self
    where
        F: Fn(ActorCell) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = StartResult> + Send + 'static,
    {
        Self {
            id: id.into(),
            restart,
            start: Arc::new(move |sup| Box::pin(start(sup))),
            drain: None,
        }
    }

    /// The child takes part in draining: `drain` passes the supervisor's
    /// `Drain(timeout)` to it (returning false if it could not be told), and
    /// the child answers [`SupervisorMsg::Drained`] when done.
    pub fn draining(
        mut self,
        drain: impl Fn(&ActorCell, Duration) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.drain = Some(Arc::new(drain));
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn restart(&self) -> Restart {
        self.restart
    }
}

/// Tells `child` (an actor whose messages are [`SupervisorMsg`]) to drain:
/// the drain function of a spec whose child is a [`Supervisor`].
pub fn drain_supervisor(child: &ActorCell, timeout: Duration) -> bool {
    child.send_message(SupervisorMsg::Drain(timeout)).is_ok()
}

/// Tells the supervisor of `myself` (if it is a [`Supervisor`]) that
/// `myself` has finished draining.
pub fn report_drained(myself: &ActorCell) {
    if let Some(sup) = myself.try_get_supervisor() {
        let _ = sup.send_message(SupervisorMsg::Drained(myself.get_id()));
    }
}

pub enum SupervisorMsg {
    /// Graceful shutdown: no restarts from now on; every draining child is
    /// told to drain within the timeout.
    Drain(Duration),
    /// A child finished draining (sent by the child, see [`report_drained`]).
    Drained(ActorId),
}

/// The one-for-one supervisor actor.
pub struct Supervisor;

pub struct SupervisorArgs {
    /// Names the supervisor in logs (e.g. `node`, `listener h3`).
    pub label: String,
    /// Started in order; a start failure fails the supervisor's start.
    pub children: Vec<ChildSpec>,
    pub intensity: RestartIntensity,
    /// Completed (set to true) once the supervisor has drained.
    pub drained: Option<watch::Sender<bool>>,
}

struct Child {
    spec: ChildSpec,
    cell: Option<ActorCell>,
}

pub struct SupervisorState {
    label: String,
    children: Vec<Child>,
    restarts: Restarts,
    drain: Option<Drain>,
    drained: Option<watch::Sender<bool>>,
}

/// Drain progress: the children still draining.
struct Drain {
    pending: HashSet<ActorId>,
    reported: bool,
}

impl SupervisorState {
    /// The index of the child running as `id`.
    fn find(&self, id: ActorId) -> Option<usize> {
        self.children
            .iter()
            .position(|c| c.cell.as_ref().is_some_and(|cell| cell.get_id() == id))
    }

    /// Reports `Drained` once nothing is pending.
    fn check_drained(&mut self, myself: &ActorCell) {
        let Some(drain) = &mut self.drain else { return };
        if drain.reported || !drain.pending.is_empty() {
            return;
        }
        drain.reported = true;
        tracing::debug!(supervisor = %self.label, "drained");
        if let Some(tx) = &self.drained {
            tx.send_replace(true);
        }
        report_drained(myself);
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let mut children = Vec::with_capacity(args.children.len());
        for spec in args.children {
            let cell = (spec.start)(myself.get_cell())
                .await
                .map_err(|e| format!("{}: child {} failed to start: {e}", args.label, spec.id))?;
            children.push(Child { spec, cell });
        }
        Ok(SupervisorState {
            label: args.label,
            children,
            restarts: Restarts::new(args.intensity),
            drain: None,
            drained: args.drained,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Drain(timeout) => {
                if state.drain.is_some() {
                    return Ok(());
                }
                let mut pending = HashSet::new();
                for child in &state.children {
                    if let (Some(cell), Some(drain)) = (&child.cell, &child.spec.drain)
                        && drain(cell, timeout)
                    {
                        pending.insert(cell.get_id());
                    }
                }
                state.drain = Some(Drain {
                    pending,
                    reported: false,
                });
                state.check_drained(&myself.get_cell());
            }
            SupervisorMsg::Drained(id) => {
                if let Some(drain) = &mut state.drain {
                    drain.pending.remove(&id);
                }
                state.check_drained(&myself.get_cell());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        evt: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (id, failure) = match &evt {
            SupervisionEvent::ActorTerminated(who, _, _) => (who.get_id(), None),
            SupervisionEvent::ActorFailed(who, e) => (who.get_id(), Some(e.to_string())),
            _ => return Ok(()),
        };
        // A child that stopped (or was killed) hands its final state up in
        // the event: drop it now, before any restart, so that what the old
        // incarnation held (a listener's accept task on a shared socket) is
        // gone before the new one starts, as when an OTP process exits.
        drop(evt);
        let Some(i) = state.find(id) else {
            return Ok(());
        };
        let child_id = Arc::clone(&state.children[i].spec.id);
        state.children[i].cell = None;
        if let Some(drain) = &mut state.drain {
            // Draining: nothing restarts; an ended child has nothing left.
            drain.pending.remove(&id);
            state.check_drained(&myself.get_cell());
            return Ok(());
        }
        match state.children[i].spec.restart {
            Restart::Temporary => {
                state.children.remove(i);
                return Ok(());
            }
            Restart::Permanent => {}
        }
        if !state.restarts.allow() {
            tracing::error!(supervisor = %state.label, child = %child_id, "restart intensity exceeded; giving up");
            myself.stop(Some("restart intensity exceeded".into()));
            return Ok(());
        }
        match failure {
            Some(e) => {
                tracing::warn!(supervisor = %state.label, child = %child_id, error = %e, "child failed; restarting")
            }
            None => {
                tracing::warn!(supervisor = %state.label, child = %child_id, "child ended; restarting")
            }
        }
        let start = Arc::clone(&state.children[i].spec.start);
        state.children[i].cell = start(myself.get_cell()).await?;
        Ok(())
    }
}

/// The spec of a ListenerSupervisor: a permanent [`Supervisor`] whose one
/// permanent child is `listener` (either kind), restarted one-for-one within
/// `intensity`. It drains when its listener has.
pub fn listener_supervisor(
    label: impl Into<String>,
    listener: ChildSpec,
    intensity: RestartIntensity,
) -> ChildSpec {
    let label: String = label.into();
    let id = label.clone();
    ChildSpec::new(id, Restart::Permanent, move |sup| {
        let args = SupervisorArgs {
            label: label.clone(),
            children: vec![listener.clone()],
            intensity,
            drained: None,
        };
        async move {
            let (r, _) = Actor::spawn_linked(None, Supervisor, args, sup).await?;
            Ok(Some(r.get_cell()))
        }
    })
    .draining(drain_supervisor)
}

/// The spec of the ListenerRegistry writer (permanent). When another node of
/// this process already runs it, this node carries on without owning it
/// (the registry is process-wide and tolerant): the start is `ignore`d.
pub fn listener_registry() -> ChildSpec {
    ChildSpec::new("listener-registry", Restart::Permanent, |sup| async move {
        match masque_registry::spawn_linked(sup).await {
            Ok((r, _)) => Ok(Some(r.get_cell())),
            Err(e) => {
                tracing::debug!(error = %e, "ListenerRegistry not started by this node");
                Ok(None)
            }
        }
    })
}
