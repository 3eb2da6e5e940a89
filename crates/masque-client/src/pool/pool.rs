//! [`UpstreamPool`]: pooled connections by [`PoolKey`] (Erlang
//! `masque_upstream_pool`). One actor keeps, per key, the owners of its
//! connections and at most one dial in flight with the checkouts waiting
//! for it.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use masque_transport::{ClientConnection, Transport};
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort,
    SupervisionEvent, rpc::CallResult,
};
use tokio::{sync::OnceCell, task::JoinHandle};

use super::{
    Lease, MaxStreams, PoolError, PoolKey,
    owner::{OwnerArgs, OwnerHandle, Shared, UpstreamOwner},
};
use crate::{ClientError, client::Dialer};

/// Settings of a pool.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Tunnels per pooled connection ([`MaxStreams::Dynamic`]: what the
    /// peer allows, the default).
    pub max_streams: MaxStreams,
    /// A connection without tunnels for this long is closed and forgotten;
    /// `None`: kept until it ends. Default 30 s.
    pub idle_timeout: Option<Duration>,
    /// Checkouts that may wait for dials, per key; more are refused
    /// ([`PoolError::TooManyWaiters`]). Default 4096.
    pub max_waiters: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_streams: MaxStreams::Dynamic,
            idle_timeout: Some(Duration::from_secs(30)),
            max_waiters: 4096,
        }
    }
}

/// A running pool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct UpstreamPool {
    actor: ActorRef<PoolMsg>,
}

/// The process-wide pool, started by the first [`UpstreamPool::global`].
static GLOBAL: Mutex<Option<UpstreamPool>> = Mutex::new(None);

/// The runtime the process-wide pool runs on.
static GLOBAL_RUNTIME: OnceCell<tokio::runtime::Handle> = OnceCell::const_new();

/// Starts the global pool's runtime on a thread of its own, which keeps it
/// running for the rest of the process.
async fn start_runtime() -> Result<tokio::runtime::Handle, PoolError> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("masque-pool")
        .enable_all()
        .build()
        .map_err(|e| PoolError::Spawn(e.to_string()))?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("masque-pool".to_owned())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))
        .map_err(|e| PoolError::Spawn(e.to_string()))?;
    Ok(handle)
}

impl UpstreamPool {
    /// Starts a pool of its own (e.g. per test, or with other settings).
    pub async fn spawn(config: PoolConfig) -> Result<Self, PoolError> {
        let (actor, _) = Actor::spawn(None, PoolActor, config)
            .await
            .map_err(|e| PoolError::Spawn(e.to_string()))?;
        Ok(Self { actor })
    }

    /// Starts a pool linked to `supervisor` (e.g. a node's supervisor),
    /// which sees it end.
    pub async fn spawn_linked(
        supervisor: ActorCell,
        config: PoolConfig,
    ) -> Result<Self, PoolError> {
        let (actor, _) = Actor::spawn_linked(None, PoolActor, config, supervisor)
            .await
            .map_err(|e| PoolError::Spawn(e.to_string()))?;
        Ok(Self { actor })
    }

    /// The process-wide pool with [`PoolConfig::default`], started on first
    /// use (and again if it was stopped). It runs, with the connections it
    /// dials, on a runtime of its own (thread `masque-pool`) that lives as
    /// long as the process, so it outlives whichever runtime called first;
    /// sessions run on their callers' runtimes. A node that wants its pool
    /// on its own runtime and in its tree uses [`spawn_linked`](Self::spawn_linked).
    pub async fn global() -> Result<Self, PoolError> {
        let current = || {
            GLOBAL
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .filter(Self::is_running)
        };
        if let Some(pool) = current() {
            return Ok(pool);
        }
        let runtime = GLOBAL_RUNTIME.get_or_try_init(start_runtime).await?;
        let fresh = runtime
            .spawn(Self::spawn(PoolConfig::default()))
            .await
            .map_err(|e| PoolError::Spawn(e.to_string()))??;
        let mut slot = GLOBAL.lock().unwrap_or_else(|p| p.into_inner());
        match slot.clone().filter(Self::is_running) {
            // Another caller won the race: use its pool.
            Some(pool) => {
                fresh.actor.stop(None);
                Ok(pool)
            }
            None => {
                *slot = Some(fresh.clone());
                Ok(fresh)
            }
        }
    }

    fn is_running(&self) -> bool {
        self.actor.get_status() < ActorStatus::Stopping
    }

    /// The pool actor.
    pub fn actor(&self) -> &ActorRef<PoolMsg> {
        &self.actor
    }

    /// The owners alive now, of every key.
    pub async fn owners(&self) -> Result<Vec<OwnerHandle>, PoolError> {
        match self
            .actor
            .call(|r| PoolMsg(Op::Owners(r)), Some(Duration::from_secs(5)))
            .await
        {
            Ok(CallResult::Success(owners)) => Ok(owners),
            _ => Err(PoolError::NotRunning),
        }
    }

    /// Closes every pooled connection now (their tunnels end) and returns
    /// how many; the pool goes on and dials again when asked. For a node's
    /// shutdown, after its tunnels drained.
    pub async fn close_all(&self) -> Result<usize, PoolError> {
        let owners = self.owners().await?;
        for owner in &owners {
            owner.close();
        }
        Ok(owners.len())
    }

    /// Stops the pool; its owners close their connections (tunnels on them end).
    pub fn stop(&self) {
        self.actor.stop(None);
    }

    /// A slot on a connection of `key` (a new one dialled with `dialer` when
    /// every one is full), within `limit`. `holder`'s end releases the slot.
    pub(crate) async fn checkout(
        &self,
        key: &PoolKey,
        dialer: &Arc<Dialer>,
        holder: Option<ActorCell>,
        limit: Duration,
    ) -> Result<Lease, ClientError> {
        let msg = |reply| {
            PoolMsg(Op::Checkout {
                key: key.clone(),
                dialer: Arc::clone(dialer),
                holder: holder.clone(),
                reply,
            })
        };
        match self.actor.call(msg, Some(limit)).await {
            Ok(CallResult::Success(lease)) => Ok(lease?),
            Ok(CallResult::Timeout) => Err(ClientError::Timeout(limit)),
            Ok(CallResult::SenderError) | Err(_) => Err(PoolError::NotRunning.into()),
        }
    }
}

/// Opaque message type of the pool actor; use [`UpstreamPool`]'s methods.
pub struct PoolMsg(Op);

enum Op {
    Checkout {
        key: PoolKey,
        dialer: Arc<Dialer>,
        holder: Option<ActorCell>,
        reply: RpcReplyPort<Result<Lease, PoolError>>,
    },
    /// A dial of `key` ended.
    Dialed {
        key: PoolKey,
        result: Result<ClientConnection, Arc<ClientError>>,
    },
    Owners(RpcReplyPort<Vec<OwnerHandle>>),
}

/// The pool actor ([`UpstreamPool`] is its handle).
#[derive(Debug, Default)]
pub struct PoolActor;

struct Waiter {
    holder: Option<ActorCell>,
    reply: RpcReplyPort<Result<Lease, PoolError>>,
}

struct Dial {
    dialer: Arc<Dialer>,
    waiters: VecDeque<Waiter>,
    task: JoinHandle<()>,
}

/// Pool state. Dropping it stops dials in flight (their waiters see the
/// pool gone) and unmonitors the owners, which live on until idle.
pub struct PoolState {
    myself: ActorCell,
    config: PoolConfig,
    owners: HashMap<PoolKey, Vec<OwnerHandle>>,
    keys: HashMap<ActorId, PoolKey>,
    dials: HashMap<PoolKey, Dial>,
}

impl Drop for PoolState {
    fn drop(&mut self) {
        for (_, dial) in self.dials.drain() {
            dial.task.abort();
        }
        // The owners are the pool's: they end with it (a node's pool under
        // its supervisor closes its connections when the node stops).
        for owner in self.owners.values().flatten() {
            self.myself.unmonitor(owner.actor.get_cell());
            owner.close();
        }
    }
}

impl Actor for PoolActor {
    type Msg = PoolMsg;
    type State = PoolState;
    type Arguments = PoolConfig;

    async fn pre_start(
        &self,
        myself: ActorRef<PoolMsg>,
        config: PoolConfig,
    ) -> Result<PoolState, ActorProcessingErr> {
        Ok(PoolState {
            myself: myself.get_cell(),
            config,
            owners: HashMap::new(),
            keys: HashMap::new(),
            dials: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<PoolMsg>,
        msg: PoolMsg,
        state: &mut PoolState,
    ) -> Result<(), ActorProcessingErr> {
        match msg.0 {
            Op::Checkout {
                key,
                dialer,
                holder,
                reply,
            } => {
                if let Some(lease) = state.try_serve(&key, holder.as_ref()) {
                    let _ = reply.send(Ok(lease));
                    return Ok(());
                }
                let limit = state.config.max_waiters;
                let waiter = Waiter { holder, reply };
                match state.dials.get_mut(&key) {
                    Some(d) if d.waiters.len() >= limit => {
                        let _ = waiter.reply.send(Err(PoolError::TooManyWaiters { limit }));
                    }
                    Some(d) => d.waiters.push_back(waiter),
                    None => state.start_dial(&myself, key, dialer, VecDeque::from([waiter])),
                }
            }
            Op::Dialed { key, result } => state.dialed(&myself, key, result).await,
            Op::Owners(reply) => {
                let _ = reply.send(state.owners.values().flatten().cloned().collect());
            }
        }
        Ok(())
    }

    /// An owner ended: its entry goes.
    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<PoolMsg>,
        event: SupervisionEvent,
        state: &mut PoolState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorTerminated(who, _, _) | SupervisionEvent::ActorFailed(who, _) =
            event
            && let Some(key) = state.keys.remove(&who.get_id())
            && let Some(owners) = state.owners.get_mut(&key)
        {
            owners.retain(|o| o.actor.get_id() != who.get_id());
            if owners.is_empty() {
                state.owners.remove(&key);
            }
            tracing::debug!(%key, owner = %who.get_id(), "upstream owner gone");
        }
        Ok(())
    }
}

impl PoolState {
    /// A slot on an owner of `key` with room, if any.
    fn try_serve(&self, key: &PoolKey, holder: Option<&ActorCell>) -> Option<Lease> {
        self.owners
            .get(key)?
            .iter()
            .find_map(|owner| owner.acquire_stream(holder))
    }

    fn start_dial(
        &mut self,
        myself: &ActorRef<PoolMsg>,
        key: PoolKey,
        dialer: Arc<Dialer>,
        waiters: VecDeque<Waiter>,
    ) {
        let (me, k, d) = (myself.clone(), key.clone(), Arc::clone(&dialer));
        let task = tokio::spawn(async move {
            let result = d.dial().await.map_err(Arc::new);
            let _ = me.cast(PoolMsg(Op::Dialed { key: k, result }));
        });
        tracing::debug!(%key, "pool: dialling");
        self.dials.insert(
            key,
            Dial {
                dialer,
                waiters,
                task,
            },
        );
    }

    async fn dialed(
        &mut self,
        myself: &ActorRef<PoolMsg>,
        key: PoolKey,
        result: Result<ClientConnection, Arc<ClientError>>,
    ) {
        let Some(dial) = self.dials.remove(&key) else {
            return;
        };
        let conn = match result {
            Ok(conn) => conn,
            Err(e) => {
                for w in dial.waiters {
                    let _ = w.reply.send(Err(PoolError::Dial(Arc::clone(&e))));
                }
                return;
            }
        };
        if conn.transport() == Transport::H1 {
            // HTTP/1.1 (e.g. what the racer found) shares nothing: each
            // tunnel dials its own connection through this handle.
            for w in dial.waiters {
                let _ = w.reply.send(Ok(Lease::unpooled(conn.clone())));
            }
            return;
        }
        let shared = Arc::new(Shared::new(key.clone(), conn, self.config.max_streams));
        let args = OwnerArgs {
            shared: Arc::clone(&shared),
            idle_timeout: self.config.idle_timeout,
            close_timeout: dial.dialer.options().close_timeout,
        };
        let actor = match Actor::spawn(None, UpstreamOwner, args).await {
            Ok((actor, _)) => actor,
            Err(e) => {
                // The connection goes with `shared`; the pool stays up.
                let e = PoolError::Spawn(e.to_string());
                for w in dial.waiters {
                    let _ = w.reply.send(Err(e.clone()));
                }
                return;
            }
        };
        self.myself.monitor(actor.get_cell());
        self.keys.insert(actor.get_id(), key.clone());
        self.owners
            .entry(key.clone())
            .or_default()
            .push(OwnerHandle { actor, shared });
        let (mut left, mut served) = (VecDeque::new(), 0);
        for w in dial.waiters {
            if w.reply.is_closed() {
                continue;
            }
            match self.try_serve(&key, w.holder.as_ref()) {
                Some(lease) => {
                    served += 1;
                    let _ = w.reply.send(Ok(lease));
                }
                None => left.push_back(w),
            }
        }
        if served == 0 {
            // A fresh connection that takes no tunnel (the peer allows
            // none): dialling again would not help.
            for w in left {
                let _ = w.reply.send(Err(PoolError::NoCapacity));
            }
        } else if !left.is_empty() {
            // Every connection of the key is full again: one more.
            self.start_dial(myself, key, dial.dialer, left);
        }
    }
}
