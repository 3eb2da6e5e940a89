//! Tests of the target socket on loopback.

use super::*;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

/// A plain tokio UDP peer on loopback that echoes everything back.
async fn echo_peer() -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = sock.local_addr()?;
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if sock.send_to(&buf[..n], from).await.is_err() {
                break;
            }
        }
    });
    Ok((addr, task))
}

/// Receives until `want` datagrams arrived or nothing came for `idle`; returns them.
async fn collect(sock: &TargetSocket, want: usize, idle: Duration) -> Result<Vec<Vec<u8>>> {
    let mut batch = RecvBatch::default();
    let mut out = Vec::new();
    while out.len() < want {
        match timeout(idle, sock.recv_batch(&mut batch)).await {
            Err(_) => break,
            Ok(res) => {
                let n = res?;
                ensure!(n == batch.iter().len(), "count mismatch");
                out.extend(batch.iter().map(<[u8]>::to_vec));
            }
        }
    }
    Ok(out)
}

fn payload(seq: u32, len: usize) -> Vec<u8> {
    let mut p = vec![(seq % 251) as u8; len];
    let n = len.min(4);
    p[..n].copy_from_slice(&seq.to_be_bytes()[..n]);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_socket_echo_roundtrip() -> Result<()> {
    let (peer, task) = echo_peer().await?;
    let sock = TargetSocket::connect(peer, &UdpSocketConfig::default())?;
    assert_eq!(sock.peer_addr(), peer);
    assert!(sock.local_addr().port() != 0);

    // Synchronous sends work at once on a fresh socket (no waiting for Tokio readiness).
    sock.try_send(b"first")?;
    assert_eq!(collect(&sock, 1, WAIT).await?, vec![b"first".to_vec()]);
    let mut batch = SendBatch::new();
    for i in 0..10 {
        batch.push(&payload(i, 300));
    }
    assert_eq!(sock.try_send_batch(&mut batch)?, 10);
    assert!(batch.is_empty());
    let got = collect(&sock, 10, WAIT).await?;
    assert_eq!(got, (0..10).map(|i| payload(i, 300)).collect::<Vec<_>>());

    // Single sends, one at a time.
    for i in 0..50u32 {
        let p = payload(i, 100 + i as usize);
        sock.send(&p).await?;
        let got = collect(&sock, 1, WAIT).await?;
        assert_eq!(got, vec![p]);
    }
    // A batch with mixed sizes: GSO runs and singles; echoes come back in order.
    let mut sent = Vec::new();
    for i in 0..40u32 {
        let len = match i % 10 {
            0..=5 => 1200,
            6 => 700, // ends a GSO run
            7 => 0,   // empty datagram
            _ => 1500,
        };
        let p = payload(i, len);
        batch.push(&p);
        sent.push(p);
    }
    assert_eq!(sock.send_batch(&mut batch).await?, 40);
    assert!(batch.is_empty());
    let got = collect(&sock, 40, WAIT).await?;
    assert_eq!(got, sent);

    let stats = sock.stats();
    assert_eq!(stats.datagrams_sent, 101);
    assert_eq!(stats.datagrams_received, 101);
    assert_eq!(stats.send_errors, 0);
    assert_eq!(stats.icmp_unreachable, 0);
    if sock.max_gso_segments() > 1 {
        // 1 for the 10 × 300 bytes, at least 4 in the mixed batch.
        assert!(stats.gso_sends >= 5, "{stats:?}");
    }
    eprintln!("echo stats: {stats:?}");
    task.abort();
    Ok(())
}

/// Many sockets lend one set of receive buffers per thread: each gets
/// exactly its own datagrams, and a short batch clears the readiness so no
/// second `recvmmsg` is made just to see `EAGAIN`.
#[tokio::test(flavor = "current_thread")]
async fn udp_socket_shared_buffers_serve_many_sockets() -> Result<()> {
    const SOCKETS: usize = 8;
    const EACH: usize = 5;
    let peer = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let mut socks = Vec::new();
    for _ in 0..SOCKETS {
        socks.push(TargetSocket::connect(
            peer.local_addr()?,
            &UdpSocketConfig::default(),
        )?);
    }
    for (i, sock) in socks.iter().enumerate() {
        for k in 0..EACH {
            peer.send_to(&payload((i * 100 + k) as u32, 200 + i), sock.local_addr())?;
        }
    }
    for (i, sock) in socks.iter().enumerate() {
        let mut got = Vec::new();
        while got.len() < EACH {
            let batch = timeout(
                WAIT,
                sock.recv_shared(|b| b.iter().map(<[u8]>::to_vec).collect::<Vec<_>>()),
            )
            .await
            .context("no datagram")??;
            got.extend(batch);
        }
        let want: Vec<_> = (0..EACH)
            .map(|k| payload((i * 100 + k) as u32, 200 + i))
            .collect();
        assert_eq!(got, want, "socket {i}");
        let stats = sock.stats();
        assert_eq!(stats.datagrams_received, EACH as u64);
        // Short batches cleared the readiness themselves: no call hit EAGAIN.
        assert_eq!(stats.recv_would_block, 0, "socket {i}: {stats:?}");
    }
    // Nothing left: waiting again makes no call at all (an uncleared
    // readiness would make one that gets EAGAIN).
    let idle = timeout(Duration::from_millis(50), socks[0].recv_shared(|_| ())).await;
    assert!(idle.is_err(), "nothing was sent");
    assert_eq!(socks[0].stats().recv_would_block, 0);
    // The next datagram is still seen after readiness was cleared.
    peer.send_to(b"late", socks[0].local_addr())?;
    let late = timeout(
        WAIT,
        socks[0].recv_shared(|b| b.iter().map(<[u8]>::to_vec).collect::<Vec<_>>()),
    )
    .await
    .context("late datagram lost")??;
    assert_eq!(late, vec![b"late".to_vec()]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_socket_burst_is_received_in_batches() -> Result<()> {
    const COUNT: u32 = 10_000;
    let peer = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let sock = TargetSocket::connect(peer.local_addr()?, &UdpSocketConfig::default())?;
    peer.connect(sock.local_addr())?;

    let sender = std::thread::spawn(move || -> io::Result<()> {
        for i in 0..COUNT {
            peer.send(&payload(i, 1200))?;
        }
        Ok(())
    });
    let got = collect(&sock, COUNT as usize, Duration::from_secs(1)).await?;
    sender.join().expect("sender panicked")?;

    let stats = sock.stats();
    let drops = sock.kernel_drops()?;
    eprintln!(
        "burst: received {} of {COUNT}, kernel drops {drops:?}, {:.2} datagrams per recvmmsg, \
         {stats:?}",
        got.len(),
        stats.datagrams_per_recv_syscall()
    );
    // Datagrams arrive in order on loopback; check the sequence numbers that did arrive.
    let seqs: Vec<u32> = got
        .iter()
        .map(|d| u32::from_be_bytes(d[..4].try_into().expect("4 bytes")))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert!(got.iter().all(|d| d.len() == 1200));
    assert!(
        got.len() >= COUNT as usize * 9 / 10,
        "lost too many: {}",
        got.len()
    );
    if let Some(drops) = drops {
        assert!(got.len() as u64 + drops <= u64::from(COUNT));
    }
    assert!(
        stats.datagrams_per_recv_syscall() > 1.0,
        "no batching under burst: {stats:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_socket_gso_send_arrives_as_separate_datagrams() -> Result<()> {
    let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let sock = TargetSocket::connect(peer.local_addr()?, &UdpSocketConfig::default())?;

    let mut batch = SendBatch::with_capacity(64, 64 * 1000);
    for i in 0..64 {
        batch.push(&payload(i, 1000));
    }
    assert_eq!(sock.send_batch(&mut batch).await?, 64);

    let mut buf = vec![0u8; 65_536];
    for i in 0..64 {
        let (n, from) = timeout(WAIT, peer.recv_from(&mut buf))
            .await
            .context("datagram missing")??;
        assert_eq!(from.port(), sock.local_addr().port());
        assert_eq!(&buf[..n], &payload(i, 1000)[..], "datagram {i}");
    }
    let stats = sock.stats();
    eprintln!(
        "GSO: max_gso_segments {}, {stats:?}",
        sock.max_gso_segments()
    );
    assert_eq!(stats.datagrams_sent, 64);
    if sock.max_gso_segments() >= 64 {
        assert_eq!(stats.send_syscalls, 1, "{stats:?}");
        assert_eq!(stats.gso_sends, 1);
    }

    // 64 × 1200 bytes exceed one GSO call's 65,507 bytes: split into two calls.
    for i in 0..64 {
        batch.push(&payload(i, 1200));
    }
    assert_eq!(sock.send_batch(&mut batch).await?, 64);
    for i in 0..64 {
        let (n, _) = timeout(WAIT, peer.recv_from(&mut buf)).await??;
        assert_eq!(&buf[..n], &payload(i, 1200)[..]);
    }
    if sock.max_gso_segments() >= 64 {
        assert_eq!(sock.stats().send_syscalls, 3);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_socket_gro_buffers_are_split_into_datagrams() -> Result<()> {
    // The peer sends one GSO run of 40 × 1000 + 1 × 500 bytes; on Linux loopback a receiver
    // with GRO enabled gets it as one coalesced buffer, which `RecvBatch::iter` must split.
    let peer = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let sock = TargetSocket::connect(peer.local_addr()?, &UdpSocketConfig::default())?;
    let state = UdpSocketState::new(UdpSockRef::from(&peer))?;
    let mut contents = Vec::new();
    let mut expected = Vec::new();
    for i in 0..41 {
        let p = payload(i, if i == 40 { 500 } else { 1000 });
        contents.extend_from_slice(&p);
        expected.push(p);
    }
    let segment_size = (state.max_gso_segments() >= 41).then_some(1000);
    let destination = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), sock.local_addr().port());
    if segment_size.is_some() {
        let transmit = Transmit {
            destination,
            ecn: None,
            contents: &contents,
            segment_size,
            src_ip: None,
        };
        state.try_send(UdpSockRef::from(&peer), &transmit)?;
    } else {
        for p in &expected {
            peer.send_to(p, destination)?;
        }
    }
    let got = collect(&sock, expected.len(), Duration::from_secs(1)).await?;
    let stats = sock.stats();
    eprintln!("GRO: gro_segments {}, {stats:?}", sock.gro_segments());
    assert_eq!(got, expected);
    if segment_size.is_some() && sock.gro_segments() > 1 {
        assert!(stats.recv_buffers < stats.datagrams_received, "{stats:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_socket_icmp_port_unreachable_is_not_fatal() -> Result<()> {
    // A closed local port: bind, note the port, close.
    let closed = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?;
    let sock = TargetSocket::connect(closed, &UdpSocketConfig::default())?;

    // Receive side: the ICMP error wakes the waiting receiver and is reported, not fatal.
    sock.send(b"probe 1").await?;
    let mut batch = RecvBatch::new(4);
    let err = timeout(WAIT, sock.recv_batch(&mut batch))
        .await
        .context("ICMP error not reported")?
        .expect_err("no data can arrive from a closed port");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    assert_eq!(classify_error(&err), ErrorClass::Unreachable);
    assert_eq!(sock.stats().icmp_unreachable, 1);

    // Send side: the pending error is consumed by the next send, which retries its datagram
    // and hands the error to the receive side.
    sock.send(b"probe 2").await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    sock.send(b"probe 3").await?;
    let err = timeout(WAIT, sock.recv_batch(&mut batch))
        .await
        .context("ICMP error not reported")?
        .expect_err("no data");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    let stats = sock.stats();
    assert!(stats.icmp_unreachable >= 2, "{stats:?}");
    assert_eq!(stats.datagrams_sent, 3, "{stats:?}");
    assert_eq!(stats.send_errors, 0, "{stats:?}");

    // The synchronous path behaves the same: the retry sends the datagram, `try_send`
    // returns Ok and the receive side reports the error.
    sock.try_send(b"probe 4")?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    sock.try_send(b"probe 5")?;
    let err = timeout(WAIT, sock.recv_batch(&mut batch))
        .await
        .context("ICMP error not reported")?
        .expect_err("no data");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    assert_eq!(sock.stats().datagrams_sent, 5);

    // The socket still works: open the port and talk to it.
    let Ok(peer) = UdpSocket::bind(closed).await else {
        eprintln!("port {closed} taken meanwhile; skipping the reuse check");
        return Ok(());
    };
    // Drain ICMP errors still pending from probe 3.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = timeout(Duration::from_millis(50), sock.recv_batch(&mut batch)).await;
    sock.send(b"hello").await?;
    let mut buf = [0u8; 64];
    let (n, from) = timeout(WAIT, peer.recv_from(&mut buf)).await??;
    assert_eq!(&buf[..n], b"hello");
    peer.send_to(b"world", from).await?;
    let n = timeout(WAIT, sock.recv_batch(&mut batch)).await??;
    assert_eq!(n, 1);
    assert_eq!(batch.iter().next(), Some(&b"world"[..]));

    // Count-only mode: the error is never returned.
    let closed = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?;
    let cfg = UdpSocketConfig {
        report_unreachable: false,
        ..UdpSocketConfig::default()
    };
    let quiet = TargetSocket::connect(closed, &cfg)?;
    quiet.send(b"probe").await?;
    let res = timeout(Duration::from_millis(300), quiet.recv_batch(&mut batch)).await;
    assert!(res.is_err(), "recv_batch returned: {res:?}");
    assert_eq!(quiet.stats().icmp_unreachable, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_socket_reports_buffer_sizes() -> Result<()> {
    let target = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 9);
    let sock = TargetSocket::connect(target, &UdpSocketConfig::default())?;
    let sizes = sock.buffer_sizes();
    eprintln!("default config: {sizes:?}");
    #[cfg(target_os = "linux")]
    {
        let max = |f: &str| -> Result<usize> { Ok(std::fs::read_to_string(f)?.trim().parse()?) };
        let rmem_max = max("/proc/sys/net/core/rmem_max")?;
        let wmem_max = max("/proc/sys/net/core/wmem_max")?;
        assert!(sizes.recv >= DEFAULT_RECV_BUFFER.min(rmem_max), "{sizes:?}");
        assert!(sizes.send >= DEFAULT_SEND_BUFFER.min(wmem_max), "{sizes:?}");
    }

    let small = UdpSocketConfig {
        recv_buffer_size: 64 * 1024,
        send_buffer_size: 32 * 1024,
        ..UdpSocketConfig::default()
    };
    let sizes = TargetSocket::connect(target, &small)?.buffer_sizes();
    eprintln!("64 KiB / 32 KiB requested: {sizes:?}");
    assert!(
        sizes.recv >= 64 * 1024 && sizes.recv < 1024 * 1024,
        "{sizes:?}"
    );
    assert!(
        sizes.send >= 32 * 1024 && sizes.send < 1024 * 1024,
        "{sizes:?}"
    );

    // IPv6 targets get an IPv6 socket; IPv4-mapped ones an IPv4 socket.
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:9".parse()?;
    let sock = TargetSocket::connect(mapped, &UdpSocketConfig::default())?;
    assert_eq!(sock.peer_addr(), target);
    assert!(sock.local_addr().is_ipv4());
    if let Ok(v6) = TargetSocket::connect("[::1]:9".parse()?, &UdpSocketConfig::default()) {
        assert!(v6.local_addr().is_ipv6());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_socket_counts_kernel_drops() -> Result<()> {
    const COUNT: usize = 2_000;
    let peer = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let cfg = UdpSocketConfig {
        recv_buffer_size: 16 * 1024,
        ..UdpSocketConfig::default()
    };
    let sock = TargetSocket::connect(peer.local_addr()?, &cfg)?;
    peer.connect(sock.local_addr())?;
    // Nobody reads while the peer floods: the small buffer overflows.
    for i in 0..COUNT {
        peer.send(&payload(i as u32, 1000))?;
    }
    let Some(drops) = sock.kernel_drops()? else {
        eprintln!("kernel drop counter not available here");
        return Ok(());
    };
    let got = collect(&sock, COUNT, Duration::from_millis(300)).await?;
    eprintln!("small buffer: received {}, kernel drops {drops}", got.len());
    assert!(drops > 0);
    assert!(got.len() + drops as usize <= COUNT);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_socket_gso_run_splitting() -> Result<()> {
    let sock = TargetSocket::connect("127.0.0.1:9".parse()?, &UdpSocketConfig::default())?;
    let runs = |lens: &[usize], singles_until: usize| {
        let mut batch = SendBatch::new();
        for &len in lens {
            batch.push(&vec![0; len]);
        }
        batch.singles_until = singles_until;
        let mut runs = Vec::new();
        while batch.next < batch.lens.len() {
            let (count, segment, bytes) = sock.next_run(&batch);
            runs.push((count, segment));
            batch.next += count;
            batch.next_offset += bytes;
        }
        runs
    };
    if sock.max_gso_segments() < 64 {
        eprintln!("no GSO here: every datagram is sent alone");
        assert_eq!(runs(&[10, 10], 0), vec![(1, 10), (1, 10)]);
        return Ok(());
    }
    // Equal lengths form a run; a shorter one ends it; a longer one starts a new one.
    assert_eq!(runs(&[10, 10, 10, 5, 10], 0), vec![(4, 10), (1, 10)]);
    assert_eq!(
        runs(&[10, 20, 20, 0, 0], 0),
        vec![(1, 10), (2, 20), (1, 0), (1, 0)]
    );
    // At most 64 segments and 65,507 bytes per call.
    assert_eq!(runs(&[100; 130], 0), vec![(64, 100), (64, 100), (2, 100)]);
    assert_eq!(runs(&[1200; 64], 0), vec![(54, 1200), (10, 1200)]);
    assert_eq!(runs(&[40_000; 2], 0), vec![(1, 40_000), (1, 40_000)]);
    // After a failed GSO send the run is resent one by one.
    assert_eq!(runs(&[10, 10, 10, 10], 2), vec![(1, 10), (1, 10), (2, 10)]);
    // GSO off by configuration.
    let cfg = UdpSocketConfig {
        gso: false,
        ..UdpSocketConfig::default()
    };
    let plain = TargetSocket::connect("127.0.0.1:9".parse()?, &cfg)?;
    let mut batch = SendBatch::new();
    batch.push(&[1; 10]);
    batch.push(&[2; 10]);
    assert_eq!(plain.next_run(&batch), (1, 10, 10));
    Ok(())
}

#[test]
fn udp_socket_classifies_errors() {
    let e = |code| io::Error::from_raw_os_error(code);
    assert_eq!(
        classify_error(&e(libc::ECONNREFUSED)),
        ErrorClass::Unreachable
    );
    assert_eq!(
        classify_error(&e(libc::EHOSTUNREACH)),
        ErrorClass::Unreachable
    );
    assert_eq!(
        classify_error(&e(libc::ENETUNREACH)),
        ErrorClass::Unreachable
    );
    assert_eq!(
        classify_error(&e(libc::ENOPROTOOPT)),
        ErrorClass::Unreachable
    );
    assert_eq!(classify_error(&e(libc::EMSGSIZE)), ErrorClass::Transient);
    assert_eq!(classify_error(&e(libc::ENOBUFS)), ErrorClass::Transient);
    assert_eq!(classify_error(&e(libc::EBADF)), ErrorClass::Fatal);
}

/// A socket that always has data still lets the other tasks of its thread
/// run: each receive spends tokio's cooperative budget. (Target readers share
/// one task per connection; one flooded tunnel must not hold up the rest.)
#[test]
fn a_flooded_socket_yields_to_its_neighbours() -> Result<()> {
    use std::sync::{Arc, atomic::AtomicBool};
    let flooder = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let flooder_addr = flooder.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (ran_tx, ran_rx) = std::sync::mpsc::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
    let reader_stop = Arc::clone(&stop);
    // One thread, one runtime: if the reader never yields, its neighbour
    // never runs.
    let reader = std::thread::spawn(move || -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let sock = TargetSocket::connect(flooder_addr, &UdpSocketConfig::default())?;
            addr_tx.send(sock.local_addr())?;
            // The first batch arrives before the neighbour exists.
            sock.recv_shared(|_| ()).await?;
            tokio::spawn(async move {
                let _ = ran_tx.send(());
            });
            // Bounded in time; the flooder's last datagram wakes a receive
            // that waits on a drained socket after the stop.
            let deadline = std::time::Instant::now() + 4 * WAIT;
            while !reader_stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                // Slower than the flood: every batch comes back full, so
                // the socket stays ready.
                sock.recv_shared(|_| std::thread::sleep(Duration::from_millis(1)))
                    .await?;
            }
            Ok(())
        })
    });
    let target = addr_rx.recv_timeout(WAIT)?;
    let flood_stop = Arc::clone(&stop);
    let flood = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let payload = [7u8; 1200];
        while !flood_stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(20) {
            let _ = flooder.send_to(&payload, target);
        }
        // Sent after the stop: a reader waiting on an empty socket wakes,
        // sees the stop and ends.
        let _ = flooder.send_to(&payload, target);
    });
    let ran = ran_rx.recv_timeout(WAIT);
    stop.store(true, Ordering::Relaxed);
    flood
        .join()
        .map_err(|_| anyhow::anyhow!("flooder panicked"))?;
    ran.context("the neighbour task never ran: the reader held the thread")?;
    let joined_by = std::time::Instant::now() + WAIT;
    while !reader.is_finished() {
        anyhow::ensure!(
            std::time::Instant::now() < joined_by,
            "the reader did not stop after the flood ended"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    Ok(())
}
