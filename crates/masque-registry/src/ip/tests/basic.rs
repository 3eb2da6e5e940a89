//! Register, lookup, packets to the sink, normalisation, repeats, conflicts, edge prefixes,
//! release, release_session, not-started tolerance.

use anyhow::Context as _;
use bytes::Bytes;

use super::{ip, session, sink, started};
use crate::ip::{
    IpRange, IpRegisterOutcome, IpRegistryError, IpRegistryHandle, IpReleaseOutcome,
    IpReleaseSessionOutcome, IpVersion, PacketSinkError,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_then_lookup_hands_packets_to_the_session_sink() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (owner, _) = session().await?;
    let (tx, mut rx) = sink(8);
    let out = reg
        .register(ip("192.0.2.0"), 24, owner.get_cell(), 7, tx)
        .await?;
    let IpRegisterOutcome::Registered(info) = out else {
        anyhow::bail!("expected Registered, got {out:?}");
    };
    assert_eq!(info.range, IpRange::new(ip("192.0.2.0"), 24)?);
    assert_eq!((info.session, info.context_id), (owner.get_id(), 7));

    for inside in ["192.0.2.0", "192.0.2.1", "192.0.2.128", "192.0.2.255"] {
        let entry = reg.lookup(ip(inside)).context(inside)?;
        assert_eq!(entry.info(), info);
        assert_eq!(entry.session_id(), owner.get_id());
        assert_eq!(entry.context_id(), 7);
    }
    for outside in ["192.0.1.255", "192.0.3.0", "0.0.0.0", "::ffff:192.0.2.1"] {
        assert!(reg.lookup(ip(outside)).is_none(), "{outside}");
    }

    let entry = reg.lookup(ip("192.0.2.9")).context("routed")?;
    entry.try_send(Bytes::from_static(b"packet"))?;
    assert_eq!(rx.try_recv(), Some(Bytes::from_static(b"packet")));
    assert_eq!(reg.all(), vec![info]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_closed_sink_says_so() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (owner, _) = session().await?;
    let (tx, rx) = sink(1);
    let out = reg
        .register(ip("2001:db8::"), 64, owner.get_cell(), 0, tx)
        .await?;
    assert!(out.is_registered());
    let entry = reg.lookup(ip("2001:db8::42")).context("routed")?;
    entry.try_send(Bytes::from_static(b"1"))?;
    assert_eq!(
        entry.try_send(Bytes::from_static(b"2")),
        Err(PacketSinkError::Full)
    );
    drop(rx);
    assert_eq!(
        entry.try_send(Bytes::from_static(b"3")),
        Err(PacketSinkError::Closed)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_bits_are_cleared_on_register_and_release() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (owner, _) = session().await?;
    let out = reg
        .register(ip("10.1.2.77"), 24, owner.get_cell(), 0, sink(1).0)
        .await?;
    let IpRegisterOutcome::Registered(info) = out else {
        anyhow::bail!("expected Registered, got {out:?}");
    };
    assert_eq!(info.range.start(), ip("10.1.2.0"));
    assert_eq!(info.range.end(), ip("10.1.2.255"));
    assert_eq!(info.range.to_string(), "10.1.2.0/24");
    assert!(reg.lookup(ip("10.1.2.0")).is_some());
    let released = reg.release(ip("10.1.2.200"), 24).await?;
    assert_eq!(released, IpReleaseOutcome::Released(info));
    assert!(reg.lookup(ip("10.1.2.77")).is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_repeat_by_the_same_session_is_idempotent() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (owner, _) = session().await?;
    let (other, _) = session().await?;
    let (first_tx, mut first_rx) = sink(4);
    let first = reg
        .register(ip("198.51.100.0"), 28, owner.get_cell(), 3, first_tx)
        .await?;
    let IpRegisterOutcome::Registered(info) = first else {
        anyhow::bail!("expected Registered, got {first:?}");
    };
    let (second_tx, mut second_rx) = sink(4);
    let again = reg
        .register(ip("198.51.100.5"), 28, owner.get_cell(), 3, second_tx)
        .await?;
    assert_eq!(again, IpRegisterOutcome::AlreadyRegistered(info.clone()));
    assert_eq!(reg.all().len(), 1, "no second entry");
    let entry = reg.lookup(ip("198.51.100.1")).context("routed")?;
    entry.try_send(Bytes::from_static(b"p"))?;
    assert!(first_rx.try_recv().is_some(), "the first sink is kept");
    assert!(second_rx.try_recv().is_none());

    let other_ctx = reg
        .register(ip("198.51.100.0"), 28, owner.get_cell(), 4, sink(1).0)
        .await;
    assert!(
        matches!(&other_ctx, Err(IpRegistryError::Conflict { existing, .. }) if **existing == info),
        "another context id is a conflict: {other_ctx:?}"
    );
    let other_session = reg
        .register(ip("198.51.100.0"), 28, other.get_cell(), 3, sink(1).0)
        .await;
    assert!(
        matches!(&other_session, Err(IpRegistryError::Conflict { existing, .. }) if **existing == info),
        "another session is a conflict: {other_session:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_ranges_are_refused_whichever_side_they_overlap() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (a, _) = session().await?;
    let (b, _) = session().await?;
    let out = reg
        .register(ip("10.0.1.0"), 24, a.get_cell(), 0, sink(1).0)
        .await?;
    assert!(out.is_registered());
    // Contained (predecessor covers it), containing (successor inside it), same start.
    for (addr, len) in [
        ("10.0.1.128", 25),
        ("10.0.1.255", 32),
        ("10.0.0.0", 16),
        ("10.0.0.0", 23),
        ("0.0.0.0", 0),
        ("10.0.1.0", 24),
        ("10.0.1.0", 26),
    ] {
        let out = reg
            .register(ip(addr), len, b.get_cell(), 0, sink(1).0)
            .await;
        let Err(IpRegistryError::Conflict {
            requested,
            existing,
        }) = out
        else {
            anyhow::bail!("{addr}/{len} must conflict, got {out:?}");
        };
        assert_eq!(requested, IpRange::new(ip(addr), len)?);
        assert_eq!(existing.session, a.get_id());
    }
    // Neighbours on both sides and the same bits in the other family are fine.
    for (addr, len) in [("10.0.0.0", 24), ("10.0.2.0", 24), ("::a00:100", 120)] {
        let out = reg
            .register(ip(addr), len, b.get_cell(), 0, sink(1).0)
            .await?;
        assert!(out.is_registered(), "{addr}/{len}: {out:?}");
    }
    assert_eq!(reg.all().len(), 4);
    assert_eq!(
        reg.lookup(ip("10.0.1.7")).map(|e| e.session_id()),
        Some(a.get_id())
    );
    assert_eq!(
        reg.lookup(ip("10.0.2.7")).map(|e| e.session_id()),
        Some(b.get_id())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_longer_than_the_address_are_refused() -> anyhow::Result<()> {
    let (owner, _) = session().await?;
    let stopped = IpRegistryHandle::new();
    let (reg, _writer) = started().await?;
    for handle in [&stopped, &reg] {
        for (addr, len) in [("192.0.2.1", 33), ("2001:db8::1", 129), ("::", 255)] {
            let want = IpRegistryError::InvalidPrefix {
                addr: ip(addr),
                prefix_len: len,
            };
            let out = handle
                .register(ip(addr), len, owner.get_cell(), 0, sink(1).0)
                .await;
            assert_eq!(out, Err(want.clone()));
            assert_eq!(handle.release(ip(addr), len).await, Err(want));
        }
    }
    assert!(reg.all().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_slash_32_and_slash_0_edges() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (owner, _) = session().await?;
    for addr in ["0.0.0.0", "255.255.255.255", "203.0.113.9"] {
        let out = reg
            .register(ip(addr), 32, owner.get_cell(), 0, sink(1).0)
            .await?;
        assert!(out.is_registered(), "{addr}");
        let entry = reg.lookup(ip(addr)).context(addr)?;
        assert_eq!(entry.range().start(), entry.range().end());
    }
    assert!(reg.lookup(ip("203.0.113.8")).is_none());
    assert!(reg.lookup(ip("203.0.113.10")).is_none());
    assert!(reg.lookup(ip("255.255.255.254")).is_none());
    assert!(reg.lookup(ip("0.0.0.1")).is_none());
    assert!(reg.lookup(ip("::")).is_none(), "IPv6 is another map");

    let out = reg
        .register(ip("1.2.3.4"), 0, owner.get_cell(), 0, sink(1).0)
        .await;
    assert!(matches!(out, Err(IpRegistryError::Conflict { .. })));
    let out = reg.release_session(owner.get_id()).await;
    assert!(matches!(out, IpReleaseSessionOutcome::Released(r) if r.len() == 3));
    let out = reg
        .register(ip("1.2.3.4"), 0, owner.get_cell(), 0, sink(1).0)
        .await?;
    let IpRegisterOutcome::Registered(info) = out else {
        anyhow::bail!("expected Registered, got {out:?}");
    };
    assert_eq!(info.range.to_string(), "0.0.0.0/0");
    assert_eq!(info.range.end(), ip("255.255.255.255"));
    for addr in ["0.0.0.0", "127.0.0.1", "255.255.255.255"] {
        assert!(reg.lookup(ip(addr)).is_some(), "{addr}");
    }
    assert!(reg.lookup(ip("::ffff:127.0.0.1")).is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_slash_128_and_slash_0_edges() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (owner, _) = session().await?;
    let max = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    for addr in ["::", max, "2001:db8::1"] {
        let out = reg
            .register(ip(addr), 128, owner.get_cell(), 0, sink(1).0)
            .await?;
        assert!(out.is_registered(), "{addr}");
        assert!(reg.lookup(ip(addr)).is_some(), "{addr}");
    }
    for addr in [
        "::1",
        "2001:db8::",
        "2001:db8::2",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
    ] {
        assert!(reg.lookup(ip(addr)).is_none(), "{addr}");
    }
    assert!(reg.lookup(ip("0.0.0.0")).is_none(), "IPv4 is another map");
    let out = reg.release_session(owner.get_id()).await;
    assert!(matches!(out, IpReleaseSessionOutcome::Released(r) if r.len() == 3));

    let out = reg
        .register(ip("2001:db8::1"), 0, owner.get_cell(), 9, sink(1).0)
        .await?;
    let IpRegisterOutcome::Registered(info) = out else {
        anyhow::bail!("expected Registered, got {out:?}");
    };
    assert_eq!(info.range.to_string(), "::/0");
    assert_eq!(info.range.version(), IpVersion::V6);
    assert_eq!(info.range.end(), ip(max));
    for addr in ["::", "::ffff:10.0.0.1", max] {
        assert_eq!(
            reg.lookup(ip(addr)).map(|e| e.context_id()),
            Some(9),
            "{addr}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_is_a_no_op_when_absent_or_of_another_length() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (owner, _) = session().await?;
    assert_eq!(
        reg.release(ip("10.0.0.0"), 8).await?,
        IpReleaseOutcome::NotFound
    );
    let out = reg
        .register(ip("10.0.0.0"), 8, owner.get_cell(), 0, sink(1).0)
        .await?;
    assert!(out.is_registered());
    assert_eq!(
        reg.release(ip("10.0.0.0"), 9).await?,
        IpReleaseOutcome::NotFound,
        "same start, other length"
    );
    assert_eq!(
        reg.release(ip("10.0.0.0"), 7).await?,
        IpReleaseOutcome::NotFound
    );
    assert!(reg.lookup(ip("10.200.0.1")).is_some());
    assert!(matches!(
        reg.release(ip("10.0.0.0"), 8).await?,
        IpReleaseOutcome::Released(_)
    ));
    assert_eq!(
        reg.release(ip("10.0.0.0"), 8).await?,
        IpReleaseOutcome::NotFound
    );
    assert!(reg.all().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_session_releases_every_range_of_that_session_only() -> anyhow::Result<()> {
    let (reg, _writer) = started().await?;
    let (a, _) = session().await?;
    let (b, _) = session().await?;
    for (addr, len) in [
        ("192.0.2.0", 25),
        ("2001:db8:1::", 48),
        ("198.51.100.7", 32),
    ] {
        let out = reg
            .register(ip(addr), len, a.get_cell(), 0, sink(1).0)
            .await?;
        assert!(out.is_registered());
    }
    let out = reg
        .register(ip("192.0.2.128"), 25, b.get_cell(), 0, sink(1).0)
        .await?;
    assert!(out.is_registered());

    let IpReleaseSessionOutcome::Released(released) = reg.release_session(a.get_id()).await else {
        anyhow::bail!("writer running");
    };
    let ranges: Vec<String> = released.iter().map(|i| i.range.to_string()).collect();
    assert_eq!(
        ranges,
        ["192.0.2.0/25", "198.51.100.7/32", "2001:db8:1::/48"]
    );
    assert!(reg.lookup(ip("192.0.2.1")).is_none());
    assert!(reg.lookup(ip("2001:db8:1::1")).is_none());
    assert!(reg.lookup(ip("192.0.2.129")).is_some());
    assert_eq!(
        reg.release_session(a.get_id()).await,
        IpReleaseSessionOutcome::Released(Vec::new())
    );
    assert_eq!(reg.all().len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_started_registry_is_a_tolerant_no_op() -> anyhow::Result<()> {
    let reg = IpRegistryHandle::new();
    let (owner, _) = session().await?;
    assert!(!reg.is_running());
    let out = reg
        .register(ip("192.0.2.1"), 32, owner.get_cell(), 0, sink(1).0)
        .await?;
    assert_eq!(out, IpRegisterOutcome::NotRunning);
    assert_eq!(
        reg.release(ip("192.0.2.1"), 32).await?,
        IpReleaseOutcome::NotRunning
    );
    assert_eq!(
        reg.release_session(owner.get_id()).await,
        IpReleaseSessionOutcome::NotRunning
    );
    assert!(reg.lookup(ip("192.0.2.1")).is_none());
    assert!(reg.all().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_racing_writes_only_ever_see_a_range_holding_the_address() -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let (reg, _writer) = started().await?;
    let (a, _) = session().await?;
    let (b, _) = session().await?;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let reader = {
        let (reg, stop, seen) = (reg.clone(), Arc::clone(&stop), Arc::clone(&seen));
        std::thread::spawn(move || {
            let mut x = 0u32;
            while !stop.load(Ordering::Relaxed) {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let addr = std::net::IpAddr::V4((0x0a00_0000 | (x >> 22)).into());
                if let Some(entry) = reg.lookup(addr) {
                    assert!(entry.range().contains(addr), "{addr} in {:?}", entry);
                    seen.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    // Alternate a /24 of `a` with four /26s of `b` over the same addresses, at least 200
    // times and until the reader has found ranges (bounded).
    let deadline = tokio::time::Instant::now() + super::WAIT;
    for round in 0.. {
        if round >= 200
            && (seen.load(Ordering::Relaxed) >= 100 || tokio::time::Instant::now() > deadline)
        {
            break;
        }
        let out = reg
            .register(ip("10.0.0.0"), 24, a.get_cell(), round, sink(1).0)
            .await?;
        assert!(out.is_registered());
        assert!(matches!(
            reg.release(ip("10.0.0.0"), 24).await?,
            IpReleaseOutcome::Released(_)
        ));
        for quarter in 0..4u8 {
            let addr = std::net::IpAddr::V4([10, 0, 0, quarter * 64].into());
            let out = reg
                .register(addr, 26, b.get_cell(), round, sink(1).0)
                .await?;
            assert!(out.is_registered());
        }
        let released = reg.release_session(b.get_id()).await;
        assert!(matches!(released, IpReleaseSessionOutcome::Released(r) if r.len() == 4));
    }
    stop.store(true, Ordering::Relaxed);
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader panicked"))?;
    assert!(seen.load(Ordering::Relaxed) > 0, "the reader saw ranges");
    Ok(())
}
