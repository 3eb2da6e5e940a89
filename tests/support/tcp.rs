//! TCP targets for the TCP-tunnel tests: an echo server that keeps the
//! directions apart (it echoes until the client's FIN, then sends its own),
//! an address nobody listens on, and a server that resets mid-transfer.

use std::{net::SocketAddr, time::Duration};

use anyhow::Result;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A TCP echo server on 127.0.0.1:0. Each connection echoes what it reads;
/// at the client's FIN it sends what is left and then its own FIN (so a
/// half-closed tunnel still carries the echo back). Stops with the runtime.
pub async fn tcp_echo() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                    let _ = w.shutdown().await;
                }
            });
        }
    });
    Ok(addr)
}

/// A loopback address where nothing listens: a connect gets a RST.
pub fn tcp_refused_addr() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    drop(l);
    Ok(addr)
}

/// A server that reads `after` bytes of each connection, then resets it
/// (SO_LINGER 0 and close: an RST, no FIN).
pub async fn tcp_resetter(after: usize) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; after.max(1)];
                let _ = tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf)).await;
                let _ = s.set_zero_linger();
                drop(s);
            });
        }
    });
    Ok(addr)
}

/// Connects to `addr` directly (a baseline for benchmarks).
pub async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}
