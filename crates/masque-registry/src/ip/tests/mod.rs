//! Test support: a disposable session actor, a sink that is a real data-plane queue, a
//! started registry, bounded waits.

mod basic;
mod lifecycle;
mod model;

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use masque_queue::{QueueRx, QueueTx};
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::{IpRegistryHandle, IpRegistryMsg};

/// Upper bound for every wait in these tests.
const WAIT: Duration = Duration::from_secs(2);

/// Stand-in for an IpSession actor; also used as a do-nothing supervisor.
struct Session;

/// `Fail` makes the session return an error from `handle` (an `ActorFailed` event).
enum SessionMsg {
    Fail,
}

impl Actor for Session {
    type Msg = SessionMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<SessionMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<SessionMsg>,
        msg: SessionMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SessionMsg::Fail => Err("session failed on purpose".into()),
        }
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<SessionMsg>,
        _: SupervisionEvent,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

type Running<M> = (ActorRef<M>, JoinHandle<()>);

async fn session() -> anyhow::Result<Running<SessionMsg>> {
    Ok(Actor::spawn(None, Session, ()).await?)
}

/// A fresh, independent registry with its writer started (unnamed, so tests run in parallel).
async fn started() -> anyhow::Result<(IpRegistryHandle, Running<IpRegistryMsg>)> {
    let handle = IpRegistryHandle::new();
    let spawned = handle.spawn(None).await?;
    Ok((handle, spawned))
}

/// A sink as a session would make it: the data plane's bounded queue.
fn sink(capacity: usize) -> (QueueTx<Bytes>, QueueRx<Bytes>) {
    masque_queue::channel(capacity)
}

/// Polls `cond` every 10 ms for at most [`WAIT`].
async fn eventually(cond: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// Waits (bounded) for an actor to finish.
async fn joined(handle: JoinHandle<()>) -> anyhow::Result<()> {
    tokio::time::timeout(WAIT, handle).await??;
    Ok(())
}

fn ip(s: &str) -> IpAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("bad test address {s}: {e}"))
}
