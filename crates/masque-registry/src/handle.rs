//! `ListenerRegistryHandle`: spawn the writer, write through it, read without it.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ractor::concurrency::JoinHandle;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorRef, RpcReplyPort};

use crate::actor::{ListenerRegistry, ListenerRegistryMsg, Op};
use crate::error::{RegisterOutcome, RegistryError, UnregisterOutcome};
use crate::info::{ListenerInfo, ListenerProtocol};
use crate::table::Table;

/// Well-known ractor name of the process-wide registry writer.
pub const REGISTRY_NAME: &str = "masque.listener_registry";

/// Upper bound on a write round trip to the writer.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`ListenerRegistryHandle::spawn`] returns: the writer and its join handle.
pub type Spawned = (ActorRef<ListenerRegistryMsg>, JoinHandle<()>);

static GLOBAL: OnceLock<ListenerRegistryHandle> = OnceLock::new();

/// A cheap, cloneable handle on one registry: its shared table and current writer.
///
/// Reads (`lookup`, `list`) take a short read lock on the table and never message the actor.
/// Writes are `call`s to the writer, so an entry is visible once `register` returns.
/// The table outlives writer incarnations: respawn with the same handle after a crash.
#[derive(Clone, Default)]
pub struct ListenerRegistryHandle {
    pub(crate) table: Arc<Table>,
}

/// Why a write could not reach the writer.
enum Unavailable {
    NotRunning,
    TimedOut,
}

impl ListenerRegistryHandle {
    /// A new, independent registry (not started). Useful for tests and embedded use.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide registry used by the crate's free functions.
    pub fn global() -> &'static Self {
        GLOBAL.get_or_init(Self::new)
    }

    /// Starts a writer for this registry, optionally under a ractor name.
    /// Fails with [`RegistryError::AlreadyRunning`] if a writer is live.
    pub async fn spawn(&self, name: Option<String>) -> Result<Spawned, RegistryError> {
        self.refuse_if_running()?;
        Ok(Actor::spawn(name, ListenerRegistry, self.clone()).await?)
    }

    /// Like [`spawn`](Self::spawn), linked to `supervisor` (which restarts it: call this again).
    pub async fn spawn_linked(
        &self,
        name: Option<String>,
        supervisor: ActorCell,
    ) -> Result<Spawned, RegistryError> {
        self.refuse_if_running()?;
        Ok(Actor::spawn_linked(name, ListenerRegistry, self.clone(), supervisor).await?)
    }

    /// The running writer, if any.
    pub fn actor(&self) -> Option<ActorRef<ListenerRegistryMsg>> {
        self.table.read().live_writer().cloned()
    }

    /// Whether a writer is running (reads return data only then).
    pub fn is_running(&self) -> bool {
        self.table.read().live_writer().is_some()
    }

    /// Registers (or replaces) `name`, owned and monitored via `owner`. `local_addr` must be
    /// the real bound address. Returns once the entry is visible, or says why not.
    pub async fn register(
        &self,
        name: impl Into<String>,
        local_addr: SocketAddr,
        protocol: ListenerProtocol,
        owner: ActorCell,
    ) -> RegisterOutcome {
        let info = ListenerInfo {
            name: name.into(),
            local_addr,
            protocol,
            owner: owner.get_id(),
        };
        match self.call(|reply| Op::Register { info, owner, reply }).await {
            Ok(outcome) => outcome,
            Err(Unavailable::NotRunning) => RegisterOutcome::NotRunning,
            Err(Unavailable::TimedOut) => RegisterOutcome::TimedOut,
        }
    }

    /// Removes `name`, whoever owns it.
    pub async fn unregister(&self, name: &str) -> UnregisterOutcome {
        let name = name.to_owned();
        match self.call(|reply| Op::Unregister { name, reply }).await {
            Ok(outcome) => outcome,
            Err(Unavailable::NotRunning) => UnregisterOutcome::NotRunning,
            Err(Unavailable::TimedOut) => UnregisterOutcome::TimedOut,
        }
    }

    /// The entry for `name`; `None` if absent or if the writer is not running.
    pub fn lookup(&self, name: &str) -> Option<ListenerInfo> {
        let table = self.table.read();
        table.live_writer()?;
        table.entries.get(name).map(|e| e.info.clone())
    }

    /// All entries sorted by name; empty if the writer is not running.
    pub fn list(&self) -> Vec<ListenerInfo> {
        let mut all: Vec<ListenerInfo> = {
            let table = self.table.read();
            if table.live_writer().is_none() {
                return Vec::new();
            }
            table.entries.values().map(|e| e.info.clone()).collect()
        };
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn refuse_if_running(&self) -> Result<(), RegistryError> {
        match self.actor() {
            Some(writer) => Err(RegistryError::AlreadyRunning(writer.get_id())),
            None => Ok(()),
        }
    }

    async fn call<T: Send + 'static>(
        &self,
        op: impl FnOnce(RpcReplyPort<T>) -> Op,
    ) -> Result<T, Unavailable> {
        let writer = self.actor().ok_or(Unavailable::NotRunning)?;
        let build = |reply| ListenerRegistryMsg(op(reply));
        match writer.call(build, Some(CALL_TIMEOUT)).await {
            Ok(CallResult::Success(value)) => Ok(value),
            Ok(CallResult::Timeout) => Err(Unavailable::TimedOut),
            Ok(CallResult::SenderError) | Err(_) => Err(Unavailable::NotRunning),
        }
    }
}
