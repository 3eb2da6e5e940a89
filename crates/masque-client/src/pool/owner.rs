//! [`UpstreamOwner`]: the actor that owns one pooled HTTP/3 or HTTP/2
//! connection (Erlang `masque_upstream_owner`).
//!
//! The slot count lives in [`Shared`], behind a mutex, so the pool hands out
//! slots and a dropped [`Lease`](super::Lease) gives its slot back without an
//! actor hop; the actor does what needs a mailbox: monitors the sessions
//! holding slots, the idle timer, and noticing the connection's end.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use masque_transport::{ClientConnection, Transport};
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::task::JoinHandle;

use super::{MaxStreams, PoolKey};

/// One slot on an owner's connection, unique per owner.
pub(crate) type SlotId = u64;

/// A snapshot of one pooled connection ([`OwnerHandle::info`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerInfo {
    pub key: PoolKey,
    pub transport: Transport,
    /// The proxy's address.
    pub peer: SocketAddr,
    /// Slots held by sessions now.
    pub streams_in_use: usize,
    /// The limit in force now: the configured number, the peer's (HTTP/2
    /// SETTINGS_MAX_CONCURRENT_STREAMS) or what the peer showed by refusing
    /// a tunnel with 503 `connection_limit_reached`. `None`: unbounded so far.
    pub max_streams: Option<usize>,
    /// Since when no slot is held; `None` while one is.
    pub idle_since: Option<Instant>,
    /// No new slots: the connection is closing or closed.
    pub closing: bool,
}

/// Why an owner gave no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoSlot {
    Full,
    Closing,
}

#[derive(Debug)]
struct Slots {
    live: HashSet<SlotId>,
    next: SlotId,
    closing: bool,
    /// What the peer showed by refusing a tunnel for its connection limit.
    learned_max: Option<usize>,
    idle_since: Option<Instant>,
    /// Bumped by every acquire: an idle timer armed before is stale.
    generation: u64,
}

/// What the pool, the leases and the owner actor share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub key: PoolKey,
    pub conn: ClientConnection,
    max: MaxStreams,
    slots: Mutex<Slots>,
}

impl Shared {
    pub fn new(key: PoolKey, conn: ClientConnection, max: MaxStreams) -> Self {
        Self {
            key,
            conn,
            max,
            slots: Mutex::new(Slots {
                live: HashSet::new(),
                next: 0,
                closing: false,
                learned_max: None,
                idle_since: Some(Instant::now()),
                generation: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn limit(&self, slots: &Slots) -> Option<usize> {
        let configured = match self.max {
            MaxStreams::Limit(n) => Some(n),
            MaxStreams::Dynamic => self.conn.peer_max_streams(),
        };
        match (configured, slots.learned_max) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes a slot if the connection is open and below its limit.
    pub fn try_acquire(&self) -> Result<SlotId, NoSlot> {
        let mut s = self.lock();
        if s.closing || self.conn.is_closed() {
            s.closing = true;
            return Err(NoSlot::Closing);
        }
        if self.limit(&s).is_some_and(|max| s.live.len() >= max) {
            return Err(NoSlot::Full);
        }
        let slot = s.next;
        s.next += 1;
        s.live.insert(slot);
        s.idle_since = None;
        s.generation += 1;
        Ok(slot)
    }

    /// Gives `slot` back; false if it was not held (released twice).
    pub fn release(&self, slot: SlotId) -> bool {
        let mut s = self.lock();
        let held = s.live.remove(&slot);
        if held && s.live.is_empty() {
            s.idle_since = Some(Instant::now());
        }
        held
    }

    pub fn is_live(&self, slot: SlotId) -> bool {
        self.lock().live.contains(&slot)
    }

    /// The peer refused a tunnel for its connection limit while `slot` was
    /// being opened: the other slots held now are what it allows.
    pub fn limit_reached(&self, slot: SlotId) {
        let mut s = self.lock();
        let others = s.live.len() - usize::from(s.live.contains(&slot));
        s.learned_max = Some(s.learned_max.map_or(others, |m| m.min(others)).max(1));
    }

    /// No new slots (GOAWAY seen, idle close, connection ended).
    pub fn set_closing(&self) {
        self.lock().closing = true;
    }

    /// The generation to arm an idle timer for, if no slot is held.
    fn idle_generation(&self) -> Option<u64> {
        let s = self.lock();
        (s.live.is_empty() && !s.closing).then_some(s.generation)
    }

    /// Marks the owner closing if it is still idle in `generation`.
    fn close_if_idle(&self, generation: u64) -> bool {
        let mut s = self.lock();
        let idle = s.live.is_empty() && !s.closing && s.generation == generation;
        if idle {
            s.closing = true;
        }
        idle
    }

    pub fn info(&self) -> OwnerInfo {
        let s = self.lock();
        OwnerInfo {
            key: self.key.clone(),
            transport: self.conn.transport(),
            peer: self.conn.peer(),
            streams_in_use: s.live.len(),
            max_streams: self.limit(&s),
            idle_since: s.idle_since,
            closing: s.closing,
        }
    }
}

/// A running owner: its actor and the state it shares. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OwnerHandle {
    pub(crate) actor: ActorRef<OwnerMsg>,
    pub(crate) shared: Arc<Shared>,
}

impl OwnerHandle {
    /// Transport, peer, slots in use and the limit, without an actor hop.
    pub fn info(&self) -> OwnerInfo {
        self.shared.info()
    }

    /// The owner actor.
    pub fn actor(&self) -> &ActorRef<OwnerMsg> {
        &self.actor
    }

    /// The pooled connection.
    pub fn connection(&self) -> &ClientConnection {
        &self.shared.conn
    }

    /// A slot on this connection (the Erlang owner's `acquire_stream`), or
    /// `None` when it is full or closing. `holder`, if given, is monitored:
    /// its end gives the slot back, as does dropping the lease
    /// (`release_stream`: [`Lease::release`](super::Lease::release)).
    pub fn acquire_stream(&self, holder: Option<&ActorCell>) -> Option<super::Lease> {
        let slot = self.shared.try_acquire().ok()?;
        if let Some(holder) = holder {
            // Queued before the lease exists, so before its release.
            let _ = self.actor.cast(OwnerMsg::Watch {
                slot,
                holder: holder.clone(),
            });
        }
        Some(super::Lease::pooled(self, slot))
    }

    /// Closes the connection now (open tunnels end) and stops the owner.
    pub fn close(&self) {
        self.shared.set_closing();
        let _ = self.actor.cast(OwnerMsg::Close);
    }
}

/// Messages of [`UpstreamOwner`]; slots are taken through the pool.
#[derive(Debug)]
pub enum OwnerMsg {
    /// Monitor `holder`, which holds `slot`: its end releases the slot.
    Watch { slot: SlotId, holder: ActorCell },
    /// A lease gave `slot` back (its slot count is already updated).
    Released { slot: SlotId },
    /// The idle timer of `generation` ran out.
    IdleExpired { generation: u64 },
    /// The connection ended.
    ConnectionEnded,
    /// Close the connection now and stop.
    Close,
}

/// How an owner starts: its connection (dialled by the pool) and settings.
#[derive(Debug)]
pub struct OwnerArgs {
    pub(crate) shared: Arc<Shared>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) close_timeout: Duration,
}

/// The owner actor of one pooled connection.
#[derive(Debug, Default)]
pub struct UpstreamOwner;

/// Owner state. Dropping it (however the actor ended, a kill included)
/// marks the connection closing for the pool and stops the timer and watcher.
pub struct OwnerState {
    myself: ActorCell,
    shared: Arc<Shared>,
    idle_timeout: Option<Duration>,
    close_timeout: Duration,
    holders: HashMap<ActorId, (ActorCell, HashSet<SlotId>)>,
    slot_holder: HashMap<SlotId, ActorId>,
    timer: Option<JoinHandle<()>>,
    watcher: JoinHandle<()>,
}

impl Drop for OwnerState {
    fn drop(&mut self) {
        self.shared.set_closing();
        self.watcher.abort();
        if let Some(t) = self.timer.take() {
            t.abort();
        }
        for (_, (cell, _)) in self.holders.drain() {
            self.myself.unmonitor(cell);
        }
    }
}

impl Actor for UpstreamOwner {
    type Msg = OwnerMsg;
    type State = OwnerState;
    type Arguments = OwnerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<OwnerMsg>,
        args: OwnerArgs,
    ) -> Result<OwnerState, ActorProcessingErr> {
        let conn = args.shared.conn.clone();
        let me = myself.clone();
        let watcher = tokio::spawn(async move {
            conn.closed().await;
            let _ = me.cast(OwnerMsg::ConnectionEnded);
        });
        let mut state = OwnerState {
            myself: myself.get_cell(),
            shared: args.shared,
            idle_timeout: args.idle_timeout,
            close_timeout: args.close_timeout,
            holders: HashMap::new(),
            slot_holder: HashMap::new(),
            timer: None,
            watcher,
        };
        state.arm_idle(&myself);
        tracing::debug!(key = %state.shared.key, peer = %state.shared.conn.peer(), "upstream owner started");
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<OwnerMsg>,
        msg: OwnerMsg,
        state: &mut OwnerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            OwnerMsg::Watch { slot, holder } => state.watch(slot, holder),
            OwnerMsg::Released { slot } => {
                state.forget_slot(slot);
                state.arm_idle(&myself);
            }
            OwnerMsg::IdleExpired { generation } => {
                if state.shared.close_if_idle(generation) {
                    tracing::debug!(key = %state.shared.key, "pooled connection idle: closing");
                    state.shared.conn.shutdown(state.close_timeout).await;
                    myself.stop(Some("idle".to_owned()));
                }
            }
            OwnerMsg::ConnectionEnded => {
                state.shared.set_closing();
                tracing::debug!(key = %state.shared.key, "pooled connection ended");
                myself.stop(Some("connection ended".to_owned()));
            }
            OwnerMsg::Close => {
                state.shared.set_closing();
                state.shared.conn.close();
                myself.stop(Some("closed".to_owned()));
            }
        }
        Ok(())
    }

    /// A session holding slots ended: its slots go back.
    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<OwnerMsg>,
        event: SupervisionEvent,
        state: &mut OwnerState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorTerminated(who, _, _) | SupervisionEvent::ActorFailed(who, _) =
            event
            && let Some((_, slots)) = state.holders.remove(&who.get_id())
        {
            let mut released = 0;
            for slot in slots {
                state.slot_holder.remove(&slot);
                released += usize::from(state.shared.release(slot));
            }
            tracing::debug!(holder = %who.get_id(), released, "session holding slots ended");
            state.arm_idle(&myself);
        }
        Ok(())
    }
}

impl OwnerState {
    /// Monitors `holder` for `slot`, unless the slot is gone already; a
    /// holder found dead gives the slot back at once. ractor marks an actor
    /// stopping before it notifies monitors, so "monitor, then check"
    /// cannot miss an end.
    fn watch(&mut self, slot: SlotId, holder: ActorCell) {
        if !self.shared.is_live(slot) {
            return;
        }
        let id = holder.get_id();
        let known = self.holders.contains_key(&id);
        if !known {
            self.myself.monitor(holder.clone());
        }
        if holder.get_status() >= ractor::ActorStatus::Stopping {
            if !known {
                self.myself.unmonitor(holder);
            }
            self.shared.release(slot);
            return;
        }
        self.holders
            .entry(id)
            .or_insert_with(|| (holder, HashSet::new()))
            .1
            .insert(slot);
        self.slot_holder.insert(slot, id);
    }

    /// `slot` is no longer held: unmonitor its holder if that held only it.
    fn forget_slot(&mut self, slot: SlotId) {
        let Some(id) = self.slot_holder.remove(&slot) else {
            return;
        };
        if let Some((_, slots)) = self.holders.get_mut(&id) {
            slots.remove(&slot);
            if slots.is_empty()
                && let Some((cell, _)) = self.holders.remove(&id)
            {
                self.myself.unmonitor(cell);
            }
        }
    }

    /// Starts the idle timer when no slot is held (replacing an older one).
    fn arm_idle(&mut self, myself: &ActorRef<OwnerMsg>) {
        let (Some(limit), Some(generation)) = (self.idle_timeout, self.shared.idle_generation())
        else {
            return;
        };
        if let Some(t) = self.timer.take() {
            t.abort();
        }
        let me = myself.clone();
        self.timer = Some(tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            let _ = me.cast(OwnerMsg::IdleExpired { generation });
        }));
    }
}
