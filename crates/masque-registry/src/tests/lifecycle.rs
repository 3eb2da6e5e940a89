//! Owner deaths (DOWN cleanup), writer restarts, the process-wide registry.

use anyhow::Context as _;
use ractor::{Actor, ActorStatus};

use super::{OwnerMsg, addr, eventually, joined, owner, started};
use crate::{
    ListenerProtocol, ListenerRegistry, ListenerRegistryHandle, REGISTRY_NAME, RegisterOutcome,
    RegistryError, UnregisterOutcome,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_owner_removes_all_its_entries_only() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (doomed, doomed_join) = owner().await?;
    let (survivor, _) = owner().await?;
    for name in ["a", "b"] {
        let out = reg
            .register(name, addr(1), ListenerProtocol::H3, doomed.get_cell())
            .await;
        assert!(out.is_registered());
    }
    let out = reg
        .register("c", addr(2), ListenerProtocol::Tls, survivor.get_cell())
        .await;
    assert!(out.is_registered());
    doomed.kill();
    joined(doomed_join).await?;
    assert!(eventually(|| reg.lookup("a").is_none() && reg.lookup("b").is_none()).await);
    assert!(reg.lookup("c").is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_owner_is_removed_and_registry_keeps_running() -> anyhow::Result<()> {
    let (reg, (writer, _)) = started().await?;
    let (failing, failing_join) = owner().await?;
    let out = reg
        .register("f", addr(1), ListenerProtocol::H3, failing.get_cell())
        .await;
    assert!(out.is_registered());
    failing.cast(OwnerMsg::Fail)?;
    joined(failing_join).await?;
    assert!(eventually(|| reg.lookup("f").is_none()).await);
    assert_eq!(writer.get_status(), ActorStatus::Running);
    assert!(reg.is_running());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_owner_death_does_not_remove_the_new_entry() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (old, old_join) = owner().await?;
    let (new, _) = owner().await?;
    let first = reg
        .register("n", addr(1), ListenerProtocol::H3, old.get_cell())
        .await;
    let second = reg
        .register("n", addr(2), ListenerProtocol::H3, new.get_cell())
        .await;
    assert!(first.is_registered() && second.is_registered());
    old.stop(None);
    joined(old_join).await?;
    // A later write is processed after any DOWN of `old`, so the check is not racy.
    assert_eq!(reg.unregister("absent").await, UnregisterOutcome::NotFound);
    let info = reg.lookup("n").context("new owner's entry kept")?;
    assert_eq!(info.owner, new.get_id());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_a_dead_owner_is_refused() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (dead, dead_join) = owner().await?;
    dead.stop(None);
    joined(dead_join).await?;
    let out = reg
        .register("d", addr(1), ListenerProtocol::H3, dead.get_cell())
        .await;
    assert_eq!(out, RegisterOutcome::OwnerNotAlive);
    assert_eq!(reg.lookup("d"), None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_registry_keeps_live_owners_and_drops_dead_ones() -> anyhow::Result<()> {
    let (sup, _) = owner().await?;
    let reg = ListenerRegistryHandle::new();
    let (writer, writer_join) = reg.spawn_linked(None, sup.get_cell()).await?;
    let (live, _) = owner().await?;
    let (dies, dies_join) = owner().await?;
    assert!(
        reg.register("live", addr(1), ListenerProtocol::H3, live.get_cell())
            .await
            .is_registered()
    );
    assert!(
        reg.register("dies", addr(2), ListenerProtocol::Tls, dies.get_cell())
            .await
            .is_registered()
    );

    writer.kill();
    joined(writer_join).await?;
    assert!(!reg.is_running());
    assert_eq!(
        reg.lookup("live"),
        None,
        "no reads while the writer is down"
    );
    dies.kill();
    joined(dies_join).await?;

    let (_writer, _) = reg.spawn_linked(None, sup.get_cell()).await?;
    assert!(
        reg.lookup("live").is_some(),
        "live owner adopted without re-registering"
    );
    assert_eq!(reg.lookup("dies"), None, "dead owner's entry not served");
    live.kill();
    assert!(
        eventually(|| reg.lookup("live").is_none()).await,
        "adopted owner is monitored"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_writer_on_the_same_registry_is_refused() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let again = reg.spawn(None).await;
    assert!(matches!(again, Err(RegistryError::AlreadyRunning(_))));
    let direct = Actor::spawn(None, ListenerRegistry, reg.clone()).await;
    assert!(direct.is_err(), "pre_start refuses a second live writer");
    assert!(reg.is_running());
    Ok(())
}

/// The only test touching the process-wide registry (tests share one process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_functions_are_no_ops_until_spawned_then_serve() -> anyhow::Result<()> {
    let (listener, _) = owner().await?;
    let out = crate::register("g", addr(1), ListenerProtocol::H3, listener.get_cell()).await;
    assert_eq!(out, RegisterOutcome::NotRunning);
    assert_eq!(crate::unregister("g").await, UnregisterOutcome::NotRunning);
    assert_eq!(crate::lookup("g"), None);
    assert!(crate::list().is_empty());

    let (writer, writer_join) = crate::spawn().await?;
    assert!(ractor::registry::where_is(REGISTRY_NAME).is_some());
    let out = crate::register("g", addr(1), ListenerProtocol::H3, listener.get_cell()).await;
    assert!(out.is_registered());
    assert_eq!(crate::lookup("g").map(|i| i.local_addr), Some(addr(1)));
    assert_eq!(crate::list().len(), 1);

    writer.stop(None);
    joined(writer_join).await?;
    assert_eq!(crate::lookup("g"), None);
    Ok(())
}
