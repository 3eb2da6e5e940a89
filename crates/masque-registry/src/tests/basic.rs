//! Register, lookup, list, replace, unregister, concurrency, not-started tolerance.

use std::collections::BTreeSet;

use anyhow::Context as _;
use tokio::net::UdpSocket;

use super::{addr, owner, started};
use crate::{ListenerProtocol, ListenerRegistryHandle, RegisterOutcome, UnregisterOutcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_then_lookup_returns_the_entry_with_owner_id() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (listener, _) = owner().await?;
    let out = reg
        .register(
            "h3-main",
            addr(4433),
            ListenerProtocol::H3,
            listener.get_cell(),
        )
        .await;
    assert_eq!(out, RegisterOutcome::Registered { replaced: None });
    let info = reg
        .lookup("h3-main")
        .context("entry visible once register returns")?;
    assert_eq!(info.name, "h3-main");
    assert_eq!(info.local_addr, addr(4433));
    assert_eq!(info.protocol, ListenerProtocol::H3);
    assert_eq!(info.owner, listener.get_id());
    assert_eq!(reg.lookup("missing"), None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_zero_listener_is_registered_with_its_real_bound_port() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (listener, _) = owner().await?;
    let socket = UdpSocket::bind(addr(0)).await?;
    let bound = socket.local_addr()?;
    assert_ne!(bound.port(), 0);
    let out = reg
        .register("quic", bound, ListenerProtocol::H3, listener.get_cell())
        .await;
    assert!(out.is_registered());
    let info = reg.lookup("quic").context("registered")?;
    assert_eq!(info.local_addr.port(), bound.port());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_register_replaces_entry_and_returns_the_old_one() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (first, _) = owner().await?;
    let (second, _) = owner().await?;
    let out = reg
        .register("edge", addr(1000), ListenerProtocol::Tls, first.get_cell())
        .await;
    assert!(out.is_registered());
    let out = reg
        .register("edge", addr(2000), ListenerProtocol::H3, second.get_cell())
        .await;
    let RegisterOutcome::Registered {
        replaced: Some(old),
    } = out
    else {
        anyhow::bail!("expected a replacement, got {out:?}");
    };
    assert_eq!((old.local_addr, old.owner), (addr(1000), first.get_id()));
    let now = reg.lookup("edge").context("still registered")?;
    assert_eq!((now.local_addr, now.owner), (addr(2000), second.get_id()));
    assert_eq!(reg.list().len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregister_removes_entry_then_reports_not_found() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (listener, _) = owner().await?;
    let out = reg
        .register("gone", addr(1), ListenerProtocol::Tls, listener.get_cell())
        .await;
    assert!(out.is_registered());
    assert!(
        matches!(reg.unregister("gone").await, UnregisterOutcome::Removed(i) if i.name == "gone")
    );
    assert_eq!(reg.lookup("gone"), None);
    assert_eq!(reg.unregister("gone").await, UnregisterOutcome::NotFound);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_returns_every_entry_sorted_by_name() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (listener, _) = owner().await?;
    for (name, port) in [("c", 3), ("a", 1), ("b", 2)] {
        let out = reg
            .register(name, addr(port), ListenerProtocol::Tls, listener.get_cell())
            .await;
        assert!(out.is_registered());
    }
    let names: Vec<_> = reg
        .list()
        .into_iter()
        .map(|i| (i.name, i.local_addr.port()))
        .collect();
    assert_eq!(names, [("a".into(), 1), ("b".into(), 2), ("c".into(), 3)]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_registrations_are_all_visible() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (listener, _) = owner().await?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50u16 {
        let (reg, cell) = (reg.clone(), listener.get_cell());
        tasks.spawn(async move {
            reg.register(
                format!("l{i:02}"),
                addr(10_000 + i),
                ListenerProtocol::H3,
                cell,
            )
            .await
        });
    }
    let outcomes = tokio::time::timeout(super::WAIT, tasks.join_all()).await?;
    assert!(outcomes.iter().all(RegisterOutcome::is_registered));
    let listed: BTreeSet<_> = reg.list().into_iter().map(|i| i.name).collect();
    assert_eq!(listed.len(), 50);
    for i in 0..50u16 {
        let info = reg.lookup(&format!("l{i:02}")).context("visible")?;
        assert_eq!(info.local_addr.port(), 10_000 + i);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_started_registry_is_a_tolerant_no_op() -> anyhow::Result<()> {
    let reg = ListenerRegistryHandle::new();
    let (listener, _) = owner().await?;
    assert!(!reg.is_running());
    let out = reg
        .register("x", addr(1), ListenerProtocol::H3, listener.get_cell())
        .await;
    assert_eq!(out, RegisterOutcome::NotRunning);
    assert_eq!(reg.unregister("x").await, UnregisterOutcome::NotRunning);
    assert_eq!(reg.lookup("x"), None);
    assert!(reg.list().is_empty());
    Ok(())
}
