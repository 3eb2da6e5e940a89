//! The `IpRegistry` writer actor: the only writer of the shared range maps.
//!
//! It monitors every session that registers a range and releases all of the session's
//! ranges when it terminates or fails, however it ends (DOWN-style cleanup). On (re)start it
//! adopts ranges left by a previous incarnation whose sessions are still alive and drops the
//! rest.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};

use super::entry::{IpEntryInfo, IpRange, IpVersion, Route};
use super::error::{IpRegisterOutcome, IpRegistryError, IpReleaseOutcome, IpSpawnError};
use super::handle::IpRegistryHandle;
use super::table::Table;
use crate::table::is_alive;

/// The IP registry writer actor. Start it with [`crate::ip::spawn`] or
/// [`IpRegistryHandle::spawn`](crate::IpRegistryHandle::spawn) (or spawn
/// `IpRegistry::default()` with an [`IpRegistryHandle`] as its argument).
///
/// The actor value itself closes lookups when its incarnation ends: ractor drops it as soon
/// as the actor's task ends, however the actor ended, whereas the state of a killed actor
/// travels in the termination event to the supervisor and is dropped only when that has
/// handled it.
#[derive(Default)]
pub struct IpRegistry {
    incarnation: OnceLock<Incarnation>,
}

/// The writer this actor value became; dropping it detaches that writer from the table.
struct Incarnation {
    table: Arc<Table>,
    writer: ActorId,
}

impl Drop for Incarnation {
    fn drop(&mut self) {
        detach(&self.table, self.writer);
    }
}

/// Removes `writer` from the table (closing lookups) unless a newer writer replaced it.
fn detach(table: &Table, writer: ActorId) {
    let mut slot = table.writer();
    if slot.current().is_some_and(|w| w.get_id() == writer) {
        slot.clear();
    }
}

/// Opaque message type of [`IpRegistry`]; build writes with the handle's methods.
pub struct IpRegistryMsg(pub(crate) Op);

/// The write operations.
pub(crate) enum Op {
    Register {
        route: Arc<Route>,
        reply: RpcReplyPort<Result<IpRegisterOutcome, IpRegistryError>>,
    },
    Release {
        range: IpRange,
        reply: RpcReplyPort<IpReleaseOutcome>,
    },
    ReleaseSession {
        session: ActorId,
        reply: RpcReplyPort<Vec<IpEntryInfo>>,
    },
}

/// A range's key: its family and first address.
type Key = (IpVersion, u128);

/// A monitored session and the ranges it owns.
struct Session {
    cell: ActorCell,
    ranges: BTreeSet<Key>,
}

/// Writer state. Dropping it unmonitors every session and (if the actor value has not done it
/// already) detaches the writer from the table, which closes lookups; ranges stay for the
/// next incarnation to re-check.
pub struct IpRegistryState {
    myself: ActorCell,
    table: Arc<Table>,
    sessions: HashMap<ActorId, Session>,
}

impl Actor for IpRegistry {
    type Msg = IpRegistryMsg;
    type State = IpRegistryState;
    /// The registry to write; a supervisor may also spawn the actor directly with it.
    type Arguments = IpRegistryHandle;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        registry: IpRegistryHandle,
    ) -> Result<Self::State, ActorProcessingErr> {
        let table = registry.table;
        let mut state = IpRegistryState {
            myself: myself.get_cell(),
            table: Arc::clone(&table),
            sessions: HashMap::new(),
        };
        let mut writer = table.writer();
        if let Some(other) = writer.live() {
            return Err(IpSpawnError::AlreadyRunning(other.get_id()).into());
        }
        let (mut adopted, mut total) = (0usize, 0usize);
        for map in table.maps() {
            for entry in map.iter() {
                total += 1;
                let route = entry.value();
                if state.watch(&route.session) {
                    state.own(&route.session, key(&route.range));
                    adopted += 1;
                } else {
                    entry.remove();
                }
            }
        }
        writer.install(myself.clone());
        let _ = self.incarnation.set(Incarnation {
            table: Arc::clone(&table),
            writer: myself.get_id(),
        });
        tracing::debug!(adopted, total, "IP registry started");
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg.0 {
            Op::Register { route, reply } => {
                let _ = reply.send(state.register(route));
            }
            Op::Release { range, reply } => {
                let _ = reply.send(state.release(&range));
            }
            Op::ReleaseSession { session, reply } => {
                let _ = reply.send(state.release_session(session, true));
            }
        }
        Ok(())
    }

    /// Session deaths arrive here through monitors. Never stops the registry.
    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(who, _, _)
            | SupervisionEvent::ActorFailed(who, _) => {
                let id = who.get_id();
                let released = state.release_session(id, false);
                if !released.is_empty() {
                    tracing::debug!(session = %id, ranges = released.len(), "IP session down, ranges released");
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn key(range: &IpRange) -> Key {
    (range.version(), range.start_bits())
}

impl IpRegistryState {
    /// Monitors `session` if not yet monitored; returns whether it is alive. A dead, newly
    /// monitored session is unmonitored again. ractor marks an actor `Stopping` before it
    /// notifies monitors, so "monitor, then check" cannot miss a death.
    fn watch(&mut self, session: &ActorCell) -> bool {
        let known = self.sessions.contains_key(&session.get_id());
        if !known {
            self.myself.monitor(session.clone());
        }
        let alive = is_alive(session.get_status());
        if !alive && !known {
            self.myself.unmonitor(session.clone());
        }
        alive
    }

    /// Unmonitors `session` if it owns no range (after a refused register).
    fn unwatch_if_idle(&mut self, session: &ActorCell) {
        if !self.sessions.contains_key(&session.get_id()) {
            self.myself.unmonitor(session.clone());
        }
    }

    /// Records that `session` (already monitored) owns the range at `key`.
    fn own(&mut self, session: &ActorCell, key: Key) {
        self.sessions
            .entry(session.get_id())
            .or_insert_with(|| Session {
                cell: session.clone(),
                ranges: BTreeSet::new(),
            })
            .ranges
            .insert(key);
    }

    /// Forgets that `session` owns `key`; unmonitors it when it owns nothing else.
    fn disown(&mut self, session: ActorId, key: Key) {
        let Some(owner) = self.sessions.get_mut(&session) else {
            return;
        };
        owner.ranges.remove(&key);
        if owner.ranges.is_empty()
            && let Some(gone) = self.sessions.remove(&session)
        {
            self.myself.unmonitor(gone.cell);
        }
    }

    fn register(&mut self, route: Arc<Route>) -> Result<IpRegisterOutcome, IpRegistryError> {
        let session = route.session.clone();
        if !self.watch(&session) {
            return Err(IpRegistryError::SessionNotAlive(session.get_id()));
        }
        if let Some(existing) = self.table.overlapping(&route.range) {
            self.unwatch_if_idle(&session);
            let info = existing.info();
            let repeat = existing.range == route.range
                && info.session == session.get_id()
                && existing.context_id == route.context_id;
            return if repeat {
                Ok(IpRegisterOutcome::AlreadyRegistered(info))
            } else {
                Err(IpRegistryError::Conflict {
                    requested: route.range,
                    existing: Box::new(info),
                })
            };
        }
        let info = route.info();
        let key = key(&route.range);
        self.table.map(key.0).insert(key.1, route);
        self.own(&session, key);
        tracing::debug!(range = %info.range, session = %info.session, "IP range registered");
        Ok(IpRegisterOutcome::Registered(info))
    }

    fn release(&mut self, range: &IpRange) -> IpReleaseOutcome {
        let info = {
            let map = self.table.map(range.version());
            let Some(found) = map.get(&range.start_bits()) else {
                return IpReleaseOutcome::NotFound;
            };
            if found.value().range != *range {
                return IpReleaseOutcome::NotFound;
            }
            found.remove();
            found.value().info()
        };
        self.disown(info.session, key(range));
        tracing::debug!(range = %info.range, session = %info.session, "IP range released");
        IpReleaseOutcome::Released(info)
    }

    /// Removes every range `session` owns; unmonitors it when asked (not after its death).
    fn release_session(&mut self, session: ActorId, unmonitor: bool) -> Vec<IpEntryInfo> {
        let Some(owner) = self.sessions.remove(&session) else {
            return Vec::new();
        };
        if unmonitor {
            self.myself.unmonitor(owner.cell);
        }
        let mut released = Vec::with_capacity(owner.ranges.len());
        for (version, start) in owner.ranges {
            let map = self.table.map(version);
            if let Some(found) = map.get(&start)
                && found.value().session.get_id() == session
            {
                released.push(found.value().info());
                found.remove();
            }
        }
        released
    }
}

impl Drop for IpRegistryState {
    fn drop(&mut self) {
        for (_, session) in self.sessions.drain() {
            self.myself.unmonitor(session.cell);
        }
        detach(&self.table, self.myself.get_id());
    }
}
