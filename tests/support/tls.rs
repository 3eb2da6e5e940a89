//! TLS over TCP to a test node's TLS listener (HTTP/2 and HTTP/1.1 chosen
//! by ALPN), raw bytes on it, and the resources a leak check counts: the
//! process's open file descriptors, the runtime's live tasks and a
//! listener's ractor children.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use masque_transport::tls::{DevCert, ServerVerification};
use ractor::ActorCell;
use tokio::{
    io::{AsyncRead, AsyncReadExt},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream, rustls::pki_types::ServerName};

use crate::{node::actor_tree, within};

/// A client configuration trusting exactly `cert`, offering `alpn`.
pub fn client_config(cert: &DevCert, alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>> {
    let verification = ServerVerification::CustomCa(vec![cert.cert_der().clone()]);
    Ok(Arc::new(masque_transport::tls::client_config(
        &verification,
        alpn,
    )?))
}

/// TCP connect and TLS handshake offering `alpn` (none if empty), within
/// [`WAIT`](crate::WAIT) each.
pub async fn connect(
    addr: SocketAddr,
    cert: &DevCert,
    alpn: &[&[u8]],
) -> Result<TlsStream<TcpStream>> {
    let tcp = within("TCP connect", TcpStream::connect(addr)).await??;
    let connector = TlsConnector::from(client_config(cert, alpn)?);
    let tls = connector.connect(ServerName::try_from("localhost")?, tcp);
    within("TLS handshake", tls).await?.context("TLS handshake")
}

/// A full TLS handshake offering `alpn`; the protocol the server chose.
pub async fn handshake(
    addr: SocketAddr,
    cert: &DevCert,
    alpn: &[&[u8]],
) -> Result<Option<Vec<u8>>> {
    let tls = connect(addr, cert, alpn).await?;
    Ok(tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
}

/// The bytes of a real ClientHello (offering `alpn`) as a client would send
/// them first.
pub fn client_hello(cert: &DevCert, alpn: &[&[u8]]) -> Result<Vec<u8>> {
    let mut conn = rustls::ClientConnection::new(
        client_config(cert, alpn)?,
        ServerName::try_from("localhost")?,
    )?;
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello)?;
    }
    Ok(hello)
}

/// Reads until the peer closes (EOF or a reset), within [`WAIT`](crate::WAIT);
/// everything received before.
pub async fn read_until_closed(s: &mut (impl AsyncRead + Unpin)) -> Result<Vec<u8>> {
    within("the server to close the connection", async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                // A reset (or a TLS error on a closed stream) is a close too.
                Err(_) => return got,
            }
        }
    })
    .await
}

/// Open file descriptors of this process.
pub fn open_fds() -> Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")
        .context("/proc/self/fd")?
        .count())
}

/// The actor registered under `name` in the ListenerRegistry, found in the
/// tree under `root`.
pub fn registered_listener(root: &ActorCell, name: &str) -> Result<ActorCell> {
    let info = masque_registry::lookup(name).with_context(|| format!("{name} registered"))?;
    actor_tree(root)
        .into_iter()
        .find(|a| a.get_id() == info.owner)
        .with_context(|| format!("{name}'s owner in the tree"))
}

/// What must come back after a connection ends: the process's open file
/// descriptors, the runtime's live tasks and a listener's ractor children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    pub fds: usize,
    pub tasks: usize,
    pub children: usize,
}

impl Footprint {
    /// Now, for `listener` (call inside the runtime under test).
    pub fn of(listener: &ActorCell) -> Result<Self> {
        Ok(Self {
            fds: open_fds()?,
            tasks: tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
            children: listener.get_children().len(),
        })
    }

    /// Waits (bounded) until `listener` is back to this footprint (or below
    /// it); the error tells what stayed behind after `what`.
    pub async fn settles(&self, listener: &ActorCell, what: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + crate::WAIT;
        loop {
            let now = Self::of(listener)?;
            if now.fds <= self.fds && now.tasks <= self.tasks && now.children <= self.children {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("after {what}: {now:?} did not return to {self:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
