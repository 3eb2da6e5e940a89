//! `--metrics-listen`: the node's counters over HTTP/1.1 for Prometheus
//! (`GET /metrics`, text exposition format 0.0.4).
//!
//! A deliberately small server: one request per connection (`Connection:
//! close`), a request head of at most [`MAX_HEAD`] bytes read within a head
//! timeout (5 s), at most 16 connections at once (the next accept waits for a
//! free slot), each connection ended after a deadline (7 s); see [`Limits`].
//! Bad input gets a status, never a hang: 400 for a malformed request line or
//! an HTTP/1.1 request without `Host`, 404 for another path, 405 for another
//! method, 408 for a head that does not arrive in time, 431 for one too large.

mod http;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use masque_server::Metrics;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinHandle,
};

/// Largest request head read (request line and header fields).
pub const MAX_HEAD: usize = 8 * 1024;

/// Time and connection limits of the endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time a client has to send its request head (then 408).
    pub head_timeout: Duration,
    /// Time a connection may last in all: the head, then writing the response
    /// and the lingering close.
    pub deadline: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            head_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(7),
            max_connections: 16,
        }
    }
}

/// The running endpoint; dropping it stops accepting.
pub struct MetricsEndpoint {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MetricsEndpoint {
    /// Binds `listen` (TCP) and serves `metrics` from it.
    pub async fn start(listen: SocketAddr, metrics: Arc<Metrics>) -> Result<Self> {
        Self::start_with(listen, metrics, Limits::default()).await
    }

    /// [`start`](Self::start) with other limits.
    pub async fn start_with(
        listen: SocketAddr,
        metrics: Arc<Metrics>,
        limits: Limits,
    ) -> Result<Self> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the metrics listener on {listen}"))?;
        let addr = listener.local_addr()?;
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let task = tokio::spawn(async move {
            loop {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                let (stream, _) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // EMFILE and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "metrics listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let metrics = Arc::clone(&metrics);
                tokio::spawn(async move {
                    let served = serve(stream, &metrics, limits.head_timeout);
                    let _ = tokio::time::timeout(limits.deadline, served).await;
                    drop(slot);
                });
            }
        });
        Ok(Self { addr, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// One request, one response, then close. A head that does not complete in
/// time gets 408 (the caller's timeout cuts a client that does not read).
async fn serve(
    mut stream: TcpStream,
    metrics: &Metrics,
    head_timeout: Duration,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(head_timeout, async {
        loop {
            if let Some(end) = find_head_end(&head) {
                head.truncate(end);
                return Ok(true);
            }
            if head.len() > MAX_HEAD {
                return Ok(false);
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(false);
            }
            head.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let response = match read {
        Ok(Ok(true)) => respond(&head, || metrics.render_prometheus()),
        Ok(Ok(false)) if head.len() > MAX_HEAD => Response::status(431),
        Ok(Ok(false)) => return Ok(()), // closed before a whole head: nobody to answer
        Ok(Err(e)) => return Err(e),
        Err(_) => Response::status(408),
    };
    stream.write_all(&response.encode()).await?;
    stream.shutdown().await?;
    // Lingering close: closing with unread input would reset the connection,
    // and a reset may destroy the response before the client read it (a 431
    // leaves the rest of an oversized head unread). Read and discard what
    // follows, bounded in bytes and by the caller's deadline.
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => discarded += n,
        }
    }
    Ok(())
}

/// Input read and dropped after the response before closing.
const LINGER_BYTES: usize = 64 * 1024;

use http::find_head_end;
pub use http::{Response, respond};

#[cfg(test)]
mod tests {
    use super::*;

    /// Over real sockets: a head that stops halfway gets 408 (and the response
    /// is readable: the connection is not cut before it), a full request gets
    /// the exposition, and a slot freed by the slow client serves the next.
    #[tokio::test]
    async fn slow_head_gets_408_over_tcp() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let limits = Limits {
            head_timeout: Duration::from_millis(200),
            deadline: Duration::from_secs(2),
            max_connections: 1,
        };
        let metrics = Arc::new(Metrics::default());
        let ep = MetricsEndpoint::start_with("127.0.0.1:0".parse().unwrap(), metrics, limits)
            .await
            .unwrap();
        let addr = ep.local_addr();
        let exchange = |request: &'static [u8]| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(request).await.unwrap();
            let mut response = String::new();
            tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut response))
                .await
                .expect("the server answers within its limits")
                .unwrap();
            response
        };
        let slow = exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await;
        assert!(
            slow.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{slow}"
        );
        let ok = exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("masque_sessions_active 0\n"), "{ok}");
    }
}
