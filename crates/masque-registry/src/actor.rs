//! The `ListenerRegistry` writer actor: the only writer of the shared table.
//!
//! It monitors every owner that registers and drops the owner's entries when it terminates
//! or fails (DOWN-style cleanup). On (re)start it adopts entries left by a previous
//! incarnation whose owners are still alive and drops the rest, so it never serves a dead
//! listener and live listeners need not re-register.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};

use crate::error::{RegisterOutcome, RegistryError, UnregisterOutcome};
use crate::handle::ListenerRegistryHandle;
use crate::info::ListenerInfo;
use crate::table::{Entry, Table, is_alive};

/// The registry writer actor. Start it with [`crate::spawn`] or
/// [`ListenerRegistryHandle::spawn`](crate::ListenerRegistryHandle::spawn).
pub struct ListenerRegistry;

/// Opaque message type of [`ListenerRegistry`]; build writes with the handle's methods.
pub struct ListenerRegistryMsg(pub(crate) Op);

/// The write operations.
pub(crate) enum Op {
    Register {
        info: ListenerInfo,
        owner: ActorCell,
        reply: RpcReplyPort<RegisterOutcome>,
    },
    Unregister {
        name: String,
        reply: RpcReplyPort<UnregisterOutcome>,
    },
}

/// A monitored owner and the names it currently owns.
struct Owner {
    cell: ActorCell,
    names: HashSet<String>,
}

/// Writer state. Dropping it (stop, failure or kill) unmonitors every owner and detaches
/// the writer from the table; entries stay for the next incarnation to re-check.
pub struct RegistryState {
    myself: ActorCell,
    table: Arc<Table>,
    owners: HashMap<ActorId, Owner>,
}

impl Actor for ListenerRegistry {
    type Msg = ListenerRegistryMsg;
    type State = RegistryState;
    /// The registry to write; a supervisor may also spawn the actor directly with it.
    type Arguments = ListenerRegistryHandle;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        registry: ListenerRegistryHandle,
    ) -> Result<Self::State, ActorProcessingErr> {
        let table = registry.table;
        let mut state = RegistryState {
            myself: myself.get_cell(),
            table: Arc::clone(&table),
            owners: HashMap::new(),
        };
        let mut guard = table.write();
        if let Some(other) = guard.live_writer() {
            return Err(RegistryError::AlreadyRunning(other.get_id()).into());
        }
        let previous = std::mem::take(&mut guard.entries);
        let total = previous.len();
        for (name, entry) in previous {
            if state.watch(&entry.owner) {
                state.own(entry.owner.clone(), name.clone());
                guard.entries.insert(name, entry);
            }
        }
        guard.writer = Some(myself);
        tracing::debug!(
            adopted = guard.entries.len(),
            total,
            "listener registry started"
        );
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg.0 {
            Op::Register { info, owner, reply } => {
                let _ = reply.send(state.register(info, owner));
            }
            Op::Unregister { name, reply } => {
                let _ = reply.send(state.unregister(&name));
            }
        }
        Ok(())
    }

    /// Owner deaths arrive here through monitors. Never stops the registry.
    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(who, _, _)
            | SupervisionEvent::ActorFailed(who, _) => {
                state.owner_down(who.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}

impl RegistryState {
    /// Monitors `owner` if not yet monitored; returns whether it is alive. A dead, newly
    /// monitored owner is unmonitored again.
    fn watch(&mut self, owner: &ActorCell) -> bool {
        let known = self.owners.contains_key(&owner.get_id());
        if !known {
            self.myself.monitor(owner.clone());
        }
        let alive = is_alive(owner.get_status());
        if !alive && !known {
            self.myself.unmonitor(owner.clone());
        }
        alive
    }

    /// Records that `owner` owns `name` (the owner must already be monitored).
    fn own(&mut self, owner: ActorCell, name: String) {
        self.owners
            .entry(owner.get_id())
            .or_insert_with(|| Owner {
                cell: owner,
                names: HashSet::new(),
            })
            .names
            .insert(name);
    }

    /// Forgets that `owner` owns `name`; unmonitors it when it owns nothing else.
    fn release(&mut self, owner: ActorId, name: &str) {
        let Some(entry) = self.owners.get_mut(&owner) else {
            return;
        };
        entry.names.remove(name);
        if entry.names.is_empty()
            && let Some(gone) = self.owners.remove(&owner)
        {
            self.myself.unmonitor(gone.cell);
        }
    }

    fn register(&mut self, info: ListenerInfo, owner: ActorCell) -> RegisterOutcome {
        if !self.watch(&owner) {
            return RegisterOutcome::OwnerNotAlive;
        }
        let name = info.name.clone();
        self.own(owner.clone(), name.clone());
        let entry = Entry { info, owner };
        let new_owner = entry.owner.get_id();
        let replaced = self.table.write().entries.insert(name.clone(), entry);
        if let Some(old) = &replaced {
            let old_owner = old.owner.get_id();
            if old_owner != new_owner {
                self.release(old_owner, &name);
            }
        }
        tracing::debug!(%name, owner = %new_owner, "listener registered");
        RegisterOutcome::Registered {
            replaced: replaced.map(|e| e.info),
        }
    }

    fn unregister(&mut self, name: &str) -> UnregisterOutcome {
        let removed = self.table.write().entries.remove(name);
        match removed {
            Some(entry) => {
                self.release(entry.owner.get_id(), name);
                UnregisterOutcome::Removed(entry.info)
            }
            None => UnregisterOutcome::NotFound,
        }
    }

    /// DOWN: drop every entry the dead owner still owns.
    fn owner_down(&mut self, id: ActorId) {
        let Some(owner) = self.owners.remove(&id) else {
            return;
        };
        let mut table = self.table.write();
        for name in &owner.names {
            if table
                .entries
                .get(name)
                .is_some_and(|e| e.owner.get_id() == id)
            {
                table.entries.remove(name);
            }
        }
        tracing::debug!(owner = %id, names = ?owner.names, "listener owner down, entries removed");
    }
}

impl Drop for RegistryState {
    fn drop(&mut self) {
        for (_, owner) in self.owners.drain() {
            self.myself.unmonitor(owner.cell);
        }
        let mut table = self.table.write();
        if table
            .writer
            .as_ref()
            .is_some_and(|w| w.get_id() == self.myself.get_id())
        {
            table.writer = None;
        }
    }
}
