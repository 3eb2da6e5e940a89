//! Bad input on the TLS listener's TCP port, on real sockets: half a
//! ClientHello then silence, bytes that are not TLS, and garbage after a
//! completed handshake on HTTP/1.1 and on HTTP/2. After each the connection
//! is closed, the listener still completes a fresh handshake, and nothing is
//! left behind: the process's open file descriptors, the runtime's live
//! tasks and the listener's ractor children return to their baseline.
//!
//! One test in its own binary: the descriptor and task counts are
//! process-wide, so no other test may run beside it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use masque_tests::{
    init_tracing,
    node::TestNode,
    tls::{Footprint, client_hello, connect, handshake, read_until_closed, registered_listener},
    within,
};
use tokio::{io::AsyncWriteExt, net::TcpStream};

const H2: &[u8] = b"h2";
const H1: &[u8] = b"http/1.1";
const TLS_TIMEOUT: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_the_tcp_port_leaves_nothing_behind() -> Result<()> {
    init_tracing();
    let node = TestNode::start_with(true, None, |c| {
        c.name = "tls-bad-input".into();
        c.tls_handshake_timeout = TLS_TIMEOUT;
    })
    .await?;
    let addr = node.node.tcp_addr().context("a TLS listener")?;
    let cert = &node.cert;
    let listener = registered_listener(&node.node.supervisor().get_cell(), "tls-bad-input/tls")?;
    // Warm up both protocols (lazily created resources belong to the
    // baseline), then wait for their routers to go.
    for alpn in [H2, H1] {
        assert_eq!(handshake(addr, cert, &[alpn]).await?.as_deref(), Some(alpn));
    }
    within("warm-up routers gone", async {
        while !listener.get_children().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await?;
    let baseline = Footprint::of(&listener)?;
    let still_serves = async |what: &str| -> Result<()> {
        baseline.settles(&listener, what).await?;
        for alpn in [H2, H1] {
            let chosen = handshake(addr, cert, &[alpn]).await?;
            ensure!(
                chosen.as_deref() == Some(alpn),
                "after {what}: ALPN {chosen:?}"
            );
        }
        baseline.settles(&listener, what).await
    };

    // 1. Half a ClientHello, then silence: cut off by the handshake timeout,
    // not before (the half is valid so far).
    let hello = client_hello(cert, &[H2, H1])?;
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(&hello[..hello.len() / 2]).await?;
    let sent = Instant::now();
    let got = read_until_closed(&mut s).await?;
    let waited = sent.elapsed();
    assert!(
        got.is_empty(),
        "nothing answers half a ClientHello: {got:?}"
    );
    assert!(
        waited >= TLS_TIMEOUT * 3 / 5,
        "closed after {waited:?}, before the handshake timeout"
    );
    drop(s);
    still_serves("half a ClientHello").await?;

    // 2. Bytes that are not TLS: plain HTTP, then binary noise.
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
        &[0xffu8; 64][..],
    ] {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(junk).await?;
        let got = read_until_closed(&mut s).await?;
        // At most a TLS alert record (content type 21).
        assert!(
            got.is_empty() || got[0] == 21,
            "answer to non-TLS bytes: {got:?}"
        );
        drop(s);
        still_serves("bytes that are not TLS").await?;
    }

    // 3. HTTP/1.1 negotiated, then garbage: 400 (or a bare close).
    let mut t = connect(addr, cert, &[H1]).await?;
    t.write_all(b"\x00\x01 not a request line\r\n\r\n").await?;
    t.flush().await?;
    let got = read_until_closed(&mut t).await?;
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 400"),
        "answer to a garbage request: {:?}",
        String::from_utf8_lossy(&got)
    );
    drop(t);
    still_serves("garbage on HTTP/1.1").await?;

    // 4. HTTP/2 negotiated, then a bad preface: closed, after the server's
    // SETTINGS (and WINDOW_UPDATE) and at most a GOAWAY.
    let mut t = connect(addr, cert, &[H2]).await?;
    t.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await?;
    t.flush().await?;
    let got = read_until_closed(&mut t).await?;
    let types = frame_types(&got)?;
    assert!(
        types.iter().all(|t| matches!(t, 0x4 | 0x7 | 0x8)),
        "frames before the close: {types:?}"
    );
    drop(t);
    still_serves("a bad HTTP/2 preface").await?;

    // 5. A well-formed HTTP/1.1 request that is no tunnel: a status, and the
    // connection closes (RFC 9931).
    let mut t = connect(addr, cert, &[H1]).await?;
    t.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await?;
    t.flush().await?;
    let got = String::from_utf8_lossy(&read_until_closed(&mut t).await?).to_lowercase();
    assert!(got.starts_with("http/1.1 "), "a status line: {got:?}");
    assert!(got.contains("\r\nconnection: close\r\n"), "{got:?}");
    drop(t);
    still_serves("a GET").await?;

    node.node.shutdown().await;
    Ok(())
}

/// The types of the HTTP/2 frames in `bytes` (RFC 9113 §4.1); a truncated
/// frame is an error.
fn frame_types(mut bytes: &[u8]) -> Result<Vec<u8>> {
    let mut types = Vec::new();
    while !bytes.is_empty() {
        ensure!(bytes.len() >= 9, "truncated frame header: {bytes:?}");
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        types.push(bytes[3]);
        ensure!(bytes.len() >= 9 + len, "truncated frame");
        bytes = &bytes[9 + len..];
    }
    Ok(types)
}
