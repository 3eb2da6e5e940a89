//! masque-h3 client against the masque-h3 server on loopback: concurrency,
//! GOAWAY, datagram limits, graceful shutdown.

use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use masque_h3::{Error, RequestHead};
use masque_tests::{
    client_endpoint, connect_h3, echo::EchoServer, init_tracing, self_signed, within,
};

fn udp_head(port: u16, i: usize) -> RequestHead {
    let mut head = masque_tests::extended_connect(
        "connect-udp",
        &format!("localhost:{port}"),
        &format!(
            "/.well-known/masque/udp/192.0.2.{}/{}/",
            i % 250 + 1,
            1000 + i
        ),
    );
    head.headers
        .insert("capsule-protocol", http::HeaderValue::from_static("?1"));
    head
}

/// 1000 concurrent request streams on one connection, each with a datagram and
/// body bytes echoed back to the right stream (no cross-talk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_streams_one_connection() -> Result<()> {
    init_tracing();
    const N: usize = 1000;
    let cert = self_signed()?;
    let server = EchoServer::start(&cert, 1100)?;
    let ep = client_endpoint(&cert, 16)?;
    let conn = connect_h3(&ep, server.addr).await?;
    let mut streams = Vec::with_capacity(N);
    for i in 0..N {
        let head = udp_head(server.addr.port(), i);
        let open = conn.open_request(&head, true);
        streams.push(within(&format!("stream {i}: stream credit"), open).await??);
    }
    assert_eq!(conn.active_requests(), N);
    let mut tasks = Vec::with_capacity(N);
    for (i, mut s) in streams.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let resp = within(&format!("stream {i}: response"), s.recv_response()).await??;
            anyhow::ensure!(resp.status == 200, "status {}", resp.status);
            let mut rx = s.take_datagrams().context("receiver")?;
            let tx = s.send.datagram_sender().await?;
            let tag = format!("stream-{i}");
            s.send.send_data(Bytes::from(tag.clone())).await?;
            let mut body = Vec::new();
            while body.len() < tag.len() {
                let chunk = within(&format!("stream {i}: body echo"), s.recv.recv_data()).await??;
                body.extend_from_slice(&chunk.context("early FIN")?);
            }
            anyhow::ensure!(body == tag.as_bytes(), "body cross-talk on {i}");
            // Datagrams may be lost in principle; retry a few times, bounded.
            for attempt in 0..5 {
                tx.send_payload(format!("\0{tag}").as_bytes()).await?;
                if let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
                    anyhow::ensure!(&d[1..] == tag.as_bytes(), "datagram cross-talk on {i}");
                    break;
                }
                anyhow::ensure!(attempt < 4, "no datagram echo on {i}");
            }
            s.send.finish()?;
            let end = within(&format!("stream {i}: FIN"), s.recv.recv_data()).await??;
            anyhow::ensure!(end.is_none(), "FIN expected");
            Ok(())
        }));
    }
    // Every wait inside the tasks is bounded, so are these joins.
    for t in tasks {
        t.await??;
    }
    let stats = conn.stats();
    assert_eq!(stats.datagrams_dropped_unknown_stream, 0);
    Ok(())
}

/// RFC 9114 §5.2: after the server's GOAWAY the client refuses new requests
/// while open ones keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_from_server_stops_new_requests() -> Result<()> {
    init_tracing();
    let cert = self_signed()?;
    let server = EchoServer::start(&cert, 64)?;
    let ep = client_endpoint(&cert, 16)?;
    let conn = connect_h3(&ep, server.addr).await?;
    let mut tunnel = conn
        .open_request(&udp_head(server.addr.port(), 0), true)
        .await?;
    assert_eq!(
        within("tunnel response", tunnel.recv_response())
            .await??
            .status,
        200
    );
    let get = masque_tests::get(&format!("localhost:{}", server.addr.port()), "/goaway");
    let mut s = conn.open_request(&get, false).await?;
    s.send.finish()?;
    assert_eq!(
        within("GET /goaway response", s.recv_response())
            .await??
            .status,
        200
    );
    let mut refused = false;
    for _ in 0..50 {
        match conn
            .open_request(&udp_head(server.addr.port(), 1), true)
            .await
        {
            Err(Error::GoingAway) => {
                refused = true;
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => return Err(e.into()),
        }
    }
    assert!(refused, "client kept opening requests after GOAWAY");
    // The tunnel opened before GOAWAY still works.
    tunnel
        .send
        .send_data(Bytes::from_static(b"still here"))
        .await?;
    let echo = within("echo after GOAWAY", tunnel.recv.recv_data()).await??;
    assert_eq!(&echo.context("echo")?[..], b"still here");
    Ok(())
}

/// Datagrams larger than the tunnel allows are refused before they reach
/// quinn's queue, with an error naming the limit, and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_datagram_refused_and_counted() -> Result<()> {
    init_tracing();
    let cert = self_signed()?;
    let server = EchoServer::start(&cert, 64)?;
    let ep = client_endpoint(&cert, 16)?;
    let conn = connect_h3(&ep, server.addr).await?;
    let mut s = conn
        .open_request(&udp_head(server.addr.port(), 0), true)
        .await?;
    assert_eq!(
        within("tunnel response", s.recv_response()).await??.status,
        200
    );
    let tx = s.send.datagram_sender().await?;
    let max = tx.max_payload_size().context("datagrams enabled")?;
    match tx.send_payload(&vec![0u8; max + 1]).await {
        Err(Error::DatagramTooLarge { size, max: m }) => {
            assert_eq!((size, m), (max + 1, max));
        }
        other => panic!("expected DatagramTooLarge, got {other:?}"),
    }
    assert_eq!(conn.stats().datagrams_refused_too_large, 1);
    // The largest allowed payload goes through and comes back.
    let mut rx = s.take_datagrams().context("receiver")?;
    tx.send_payload(&vec![7u8; max]).await?;
    let back = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await?
        .context("echo")?;
    assert_eq!(back.len(), max);
    // R9297-05: no datagrams after our side finished.
    s.send.finish()?;
    assert!(matches!(
        tx.send_payload(b"\0late").await,
        Err(Error::SendClosed)
    ));
    Ok(())
}

/// Graceful shutdown: GOAWAY, open requests drain, then the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_shutdown_drains_then_closes() -> Result<()> {
    init_tracing();
    let cert = self_signed()?;
    let server = EchoServer::start(&cert, 64)?;
    let ep = client_endpoint(&cert, 16)?;
    let conn = connect_h3(&ep, server.addr).await?;
    let mut s = conn
        .open_request(&udp_head(server.addr.port(), 0), true)
        .await?;
    assert_eq!(
        within("tunnel response", s.recv_response()).await??.status,
        200
    );
    // The shutdown is driven here, in this task, rather than spawned: a
    // spawned task might not have run at all by the time we look, and "not
    // finished" would then hold whether or not shutdown waits.
    let stream_frames = || conn.quic().stats().frame_tx.stream;
    let before = stream_frames();
    let mut shutdown = std::pin::pin!(conn.shutdown(Duration::from_secs(10)));
    // First its GOAWAY goes out (a STREAM frame on the control stream: the
    // only data this side sends now), so the shutdown is under way...
    within("GOAWAY sent", async {
        while stream_frames() == before {
            tokio::select! {
                biased;
                r = &mut shutdown => anyhow::bail!(
                    "shutdown ended before its GOAWAY went out, tunnel open: {r:?}"
                ),
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
        Ok(())
    })
    .await??;
    // ...then it keeps waiting, polled all along, while the tunnel is open.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut shutdown)
            .await
            .is_err(),
        "shutdown must wait for the open tunnel"
    );
    assert!(
        conn.quic().close_reason().is_none(),
        "closed with the tunnel open"
    );
    s.send.finish()?;
    assert!(within("FIN answered", s.recv.recv_data()).await??.is_none());
    drop(s);
    tokio::time::timeout(Duration::from_secs(5), shutdown).await??;
    let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await?;
    assert!(
        matches!(reason, quinn::ConnectionError::LocallyClosed),
        "{reason:?}"
    );
    Ok(())
}
