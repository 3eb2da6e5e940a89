//! Test support: a disposable owner actor, a started registry, bounded waits.

mod basic;
mod lifecycle;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::{ListenerRegistryHandle, ListenerRegistryMsg};

/// Upper bound for every wait in these tests.
const WAIT: Duration = Duration::from_secs(2);

/// Stand-in for a listener actor; also used as a do-nothing supervisor.
struct Owner;

/// `Fail` makes the owner return an error from `handle` (an `ActorFailed` event).
enum OwnerMsg {
    Fail,
}

impl Actor for Owner {
    type Msg = OwnerMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<OwnerMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<OwnerMsg>,
        msg: OwnerMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            OwnerMsg::Fail => Err("owner failed on purpose".into()),
        }
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<OwnerMsg>,
        _: SupervisionEvent,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

type Running<M> = (ActorRef<M>, JoinHandle<()>);

async fn owner() -> anyhow::Result<Running<OwnerMsg>> {
    Ok(Actor::spawn(None, Owner, ()).await?)
}

/// A fresh, independent registry with its writer started (unnamed, so tests run in parallel).
async fn started() -> anyhow::Result<(ListenerRegistryHandle, Running<ListenerRegistryMsg>)> {
    let handle = ListenerRegistryHandle::new();
    let spawned = handle.spawn(None).await?;
    Ok((handle, spawned))
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

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}
