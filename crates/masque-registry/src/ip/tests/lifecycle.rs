//! Session deaths (DOWN cleanup, however the session ends), writer restarts, the
//! process-wide registry.

use ractor::{Actor, ActorStatus};

use super::{SessionMsg, eventually, ip, joined, session, sink, started};
use crate::ip::{
    IP_REGISTRY_NAME, IpRegisterOutcome, IpRegistry, IpRegistryError, IpRegistryHandle,
    IpReleaseOutcome, IpSpawnError,
};

/// Registers three ranges (IPv4 and IPv6) to the session `doomed` and one to `survivor`.
async fn populate(
    reg: &IpRegistryHandle,
    doomed: &ractor::ActorCell,
    survivor: &ractor::ActorCell,
) -> anyhow::Result<()> {
    for (addr, len) in [("192.0.2.0", 24), ("192.0.3.1", 32), ("2001:db8::", 64)] {
        let out = reg
            .register(ip(addr), len, doomed.clone(), 0, sink(1).0)
            .await?;
        assert!(out.is_registered(), "{addr}/{len}");
    }
    let out = reg
        .register(ip("198.51.100.0"), 24, survivor.clone(), 0, sink(1).0)
        .await?;
    assert!(out.is_registered());
    Ok(())
}

fn doomed_ranges_gone(reg: &IpRegistryHandle) -> bool {
    ["192.0.2.1", "192.0.3.1", "2001:db8::1"]
        .iter()
        .all(|a| reg.lookup(ip(a)).is_none())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_session_releases_all_its_ranges_only() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (doomed, doomed_join) = session().await?;
    let (survivor, _) = session().await?;
    populate(&reg, &doomed.get_cell(), &survivor.get_cell()).await?;
    doomed.kill();
    joined(doomed_join).await?;
    assert!(eventually(|| doomed_ranges_gone(&reg)).await);
    assert!(reg.lookup(ip("198.51.100.1")).is_some());
    assert_eq!(reg.all().len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_session_normally_releases_all_its_ranges() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (doomed, doomed_join) = session().await?;
    let (survivor, _) = session().await?;
    populate(&reg, &doomed.get_cell(), &survivor.get_cell()).await?;
    doomed.stop(Some("session closed".into()));
    joined(doomed_join).await?;
    assert!(eventually(|| doomed_ranges_gone(&reg)).await);
    assert_eq!(reg.all().len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_session_is_released_and_registry_keeps_running() -> anyhow::Result<()> {
    let (reg, (writer, _)) = started().await?;
    let (doomed, doomed_join) = session().await?;
    let (survivor, _) = session().await?;
    populate(&reg, &doomed.get_cell(), &survivor.get_cell()).await?;
    doomed.cast(SessionMsg::Fail)?;
    joined(doomed_join).await?;
    assert!(eventually(|| doomed_ranges_gone(&reg)).await);
    assert_eq!(writer.get_status(), ActorStatus::Running);
    assert!(reg.is_running());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_then_re_registered_range_survives_the_old_owner_death() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (old, old_join) = session().await?;
    let (new, _) = session().await?;
    let out = reg
        .register(ip("10.9.0.0"), 16, old.get_cell(), 0, sink(1).0)
        .await?;
    assert!(out.is_registered());
    assert!(matches!(
        reg.release(ip("10.9.0.0"), 16).await?,
        IpReleaseOutcome::Released(_)
    ));
    let out = reg
        .register(ip("10.9.0.0"), 16, new.get_cell(), 1, sink(1).0)
        .await?;
    assert!(out.is_registered());
    old.kill();
    joined(old_join).await?;
    // A later write is processed after any DOWN of `old`.
    assert_eq!(
        reg.release(ip("10.10.0.0"), 16).await?,
        IpReleaseOutcome::NotFound
    );
    assert_eq!(
        reg.lookup(ip("10.9.1.1")).map(|e| e.session_id()),
        Some(new.get_id())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_a_dead_session_is_refused() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (dead, dead_join) = session().await?;
    dead.stop(None);
    joined(dead_join).await?;
    let out = reg
        .register(ip("192.0.2.1"), 32, dead.get_cell(), 0, sink(1).0)
        .await;
    assert_eq!(out, Err(IpRegistryError::SessionNotAlive(dead.get_id())));
    assert!(reg.lookup(ip("192.0.2.1")).is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_registry_keeps_live_sessions_and_drops_dead_ones() -> anyhow::Result<()> {
    let (sup, _) = session().await?;
    let reg = IpRegistryHandle::new();
    let (writer, writer_join) = reg.spawn_linked(None, sup.get_cell()).await?;
    let (live, _) = session().await?;
    let (dies, dies_join) = session().await?;
    let out = reg
        .register(ip("192.0.2.0"), 24, live.get_cell(), 0, sink(1).0)
        .await?;
    assert!(out.is_registered());
    let out = reg
        .register(ip("2001:db8::"), 32, dies.get_cell(), 0, sink(1).0)
        .await?;
    assert!(out.is_registered());

    writer.kill();
    joined(writer_join).await?;
    assert!(!reg.is_running());
    assert!(
        reg.lookup(ip("192.0.2.1")).is_none(),
        "no lookups while the writer is down"
    );
    assert!(reg.all().is_empty());
    dies.kill();
    joined(dies_join).await?;

    let (_writer, _) = reg.spawn_linked(None, sup.get_cell()).await?;
    assert!(
        reg.lookup(ip("192.0.2.1")).is_some(),
        "live session adopted without re-registering"
    );
    assert!(
        reg.lookup(ip("2001:db8::1")).is_none(),
        "dead session's range dropped"
    );
    assert_eq!(reg.all().len(), 1);
    live.kill();
    assert!(
        eventually(|| reg.lookup(ip("192.0.2.1")).is_none()).await,
        "adopted session is monitored"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_writer_on_the_same_registry_is_refused() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let again = reg.spawn(None).await;
    assert!(matches!(again, Err(IpSpawnError::AlreadyRunning(_))));
    let direct = Actor::spawn(None, IpRegistry::default(), reg.clone()).await;
    assert!(direct.is_err(), "pre_start refuses a second live writer");
    assert!(reg.is_running());
    Ok(())
}

/// The only test touching the process-wide IP registry (tests share one process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_functions_are_no_ops_until_spawned_then_serve() -> anyhow::Result<()> {
    let (owner, _) = session().await?;
    let out = crate::ip::register(ip("192.0.2.1"), 32, owner.get_cell(), 0, sink(1).0).await?;
    assert_eq!(out, IpRegisterOutcome::NotRunning);
    assert!(crate::ip::lookup(ip("192.0.2.1")).is_none());
    assert!(crate::ip::all().is_empty());

    let (writer, writer_join) = crate::ip::spawn().await?;
    assert!(ractor::registry::where_is(IP_REGISTRY_NAME).is_some());
    let out = crate::ip::register(ip("192.0.2.1"), 32, owner.get_cell(), 0, sink(1).0).await?;
    assert!(out.is_registered());
    assert!(crate::ip::lookup(ip("192.0.2.1")).is_some());
    assert_eq!(crate::ip::all().len(), 1);
    assert!(matches!(
        crate::ip::release(ip("192.0.2.1"), 32).await?,
        IpReleaseOutcome::Released(_)
    ));
    let out = crate::ip::register(ip("192.0.2.1"), 32, owner.get_cell(), 0, sink(1).0).await?;
    assert!(out.is_registered());
    assert!(matches!(
        crate::ip::release_session(owner.get_id()).await,
        crate::ip::IpReleaseSessionOutcome::Released(r) if r.len() == 1
    ));

    writer.stop(None);
    joined(writer_join).await?;
    assert!(crate::ip::lookup(ip("192.0.2.1")).is_none());
    Ok(())
}
