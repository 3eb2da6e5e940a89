//! `IpRegistryHandle`: spawn the writer, write through it, look up without it.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ractor::concurrency::JoinHandle;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorId, ActorRef, RpcReplyPort};

use super::actor::{IpRegistry, IpRegistryMsg, Op};
use super::entry::{IpEntry, IpEntryInfo, IpRange, PacketSink, Route, key_of};
use super::error::{
    IpRegisterOutcome, IpRegistryError, IpReleaseOutcome, IpReleaseSessionOutcome, IpSpawnError,
};
use super::table::Table;

/// Well-known ractor name of the process-wide IP registry writer.
pub const IP_REGISTRY_NAME: &str = "masque.ip_registry";

/// Upper bound on a write round trip to the writer.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`IpRegistryHandle::spawn`] returns: the writer and its join handle.
pub type IpSpawned = (ActorRef<IpRegistryMsg>, JoinHandle<()>);

static GLOBAL: OnceLock<IpRegistryHandle> = OnceLock::new();

/// A cheap, cloneable handle on one IP registry: its shared maps and current writer.
///
/// [`lookup`](Self::lookup) reads the maps directly (no lock, no actor, no allocation).
/// Writes are `call`s to the writer, so a range is visible once `register` returns. The maps
/// outlive writer incarnations: respawn with the same handle after a crash.
#[derive(Clone, Default)]
pub struct IpRegistryHandle {
    pub(crate) table: Arc<Table>,
}

/// Why a write could not reach the writer.
enum Unavailable {
    NotRunning,
    TimedOut,
}

impl IpRegistryHandle {
    /// A new, independent registry (not started). Useful for tests and embedded use.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide registry used by the [`crate::ip`] free functions.
    pub fn global() -> &'static Self {
        GLOBAL.get_or_init(Self::new)
    }

    /// Starts a writer for this registry, optionally under a ractor name.
    /// Fails with [`IpSpawnError::AlreadyRunning`] if a writer is live.
    pub async fn spawn(&self, name: Option<String>) -> Result<IpSpawned, IpSpawnError> {
        self.refuse_if_running()?;
        Ok(Actor::spawn(name, IpRegistry::default(), self.clone()).await?)
    }

    /// Like [`spawn`](Self::spawn), linked to `supervisor` (which restarts it: call this again).
    pub async fn spawn_linked(
        &self,
        name: Option<String>,
        supervisor: ActorCell,
    ) -> Result<IpSpawned, IpSpawnError> {
        self.refuse_if_running()?;
        Ok(Actor::spawn_linked(name, IpRegistry::default(), self.clone(), supervisor).await?)
    }

    /// The running writer, if any.
    pub fn actor(&self) -> Option<ActorRef<IpRegistryMsg>> {
        self.table.writer().live().cloned()
    }

    /// Whether a writer is running (lookups answer only then).
    pub fn is_running(&self) -> bool {
        self.actor().is_some()
    }

    /// Registers `addr/prefix_len` (host bits cleared: `10.0.0.5/24` is `10.0.0.0/24`) to
    /// `session`, which the registry monitors: the range goes when the session ends. Packets
    /// to the range are handed to `sink`; `context_id` travels with them.
    ///
    /// A range overlapping a registered one is refused ([`IpRegistryError::Conflict`]),
    /// unless it is an exact repeat (same range, session and context id), which is
    /// [`IpRegisterOutcome::AlreadyRegistered`] and keeps the first sink. The prefix is
    /// checked before the writer is asked, so a bad one is an error even when not running.
    pub async fn register<S: PacketSink>(
        &self,
        addr: IpAddr,
        prefix_len: u8,
        session: ActorCell,
        context_id: u64,
        sink: S,
    ) -> Result<IpRegisterOutcome, IpRegistryError> {
        let range = IpRange::new(addr, prefix_len)?;
        // One allocation: the route with the sink as its unsized tail.
        let route: Arc<Route> = Arc::new(Route {
            range,
            session,
            context_id,
            sink,
        });
        match self.call(|reply| Op::Register { route, reply }).await {
            Ok(outcome) => outcome,
            Err(Unavailable::NotRunning) => Ok(IpRegisterOutcome::NotRunning),
            Err(Unavailable::TimedOut) => Ok(IpRegisterOutcome::TimedOut),
        }
    }

    /// Releases the range `addr/prefix_len` (host bits cleared), whoever owns it. A range
    /// with another prefix length at the same start is not touched ([`IpReleaseOutcome::NotFound`]).
    pub async fn release(
        &self,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<IpReleaseOutcome, IpRegistryError> {
        let range = IpRange::new(addr, prefix_len)?;
        Ok(
            match self.call(|reply| Op::Release { range, reply }).await {
                Ok(outcome) => outcome,
                Err(Unavailable::NotRunning) => IpReleaseOutcome::NotRunning,
                Err(Unavailable::TimedOut) => IpReleaseOutcome::TimedOut,
            },
        )
    }

    /// Releases every range of `session` (and stops monitoring it).
    pub async fn release_session(&self, session: ActorId) -> IpReleaseSessionOutcome {
        match self
            .call(|reply| Op::ReleaseSession { session, reply })
            .await
        {
            Ok(released) => IpReleaseSessionOutcome::Released(released),
            Err(Unavailable::NotRunning) => IpReleaseSessionOutcome::NotRunning,
            Err(Unavailable::TimedOut) => IpReleaseSessionOutcome::TimedOut,
        }
    }

    /// The range holding `addr`, with its session's sink; `None` if no range holds it or no
    /// writer runs. Lock-free and allocation-free: one atomic load, one skip-list search
    /// (epoch-pinned), one `Arc` increment for the returned entry.
    pub fn lookup(&self, addr: IpAddr) -> Option<IpEntry> {
        let (version, bits) = key_of(addr);
        self.table.lookup(version, bits)
    }

    /// Every registered range, IPv4 first, each family by start; empty if no writer runs.
    /// A diagnostic snapshot: it allocates, and ranges written meanwhile may or may not show.
    pub fn all(&self) -> Vec<IpEntryInfo> {
        if !self.table.serving() {
            return Vec::new();
        }
        self.table.snapshot()
    }

    fn refuse_if_running(&self) -> Result<(), IpSpawnError> {
        match self.actor() {
            Some(writer) => Err(IpSpawnError::AlreadyRunning(writer.get_id())),
            None => Ok(()),
        }
    }

    async fn call<T: Send + 'static>(
        &self,
        op: impl FnOnce(RpcReplyPort<T>) -> Op,
    ) -> Result<T, Unavailable> {
        let writer = self.actor().ok_or(Unavailable::NotRunning)?;
        let build = |reply| IpRegistryMsg(op(reply));
        match writer.call(build, Some(CALL_TIMEOUT)).await {
            Ok(CallResult::Success(value)) => Ok(value),
            Ok(CallResult::Timeout) => Err(Unavailable::TimedOut),
            Ok(CallResult::SenderError) | Err(_) => Err(Unavailable::NotRunning),
        }
    }
}
