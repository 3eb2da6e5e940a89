//! What the transport race is tested and measured against (shared by
//! `racer_netns.rs` and `benches/racer_fallback.rs` through `#[path]`): a
//! UDP relay in front of the node's QUIC listener that can drop everything
//! silently (a firewall that blocks UDP, without iptables), and a TLS front
//! that offers only ALPN `http/1.1` (a proxy without HTTP/2).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use anyhow::{Context, Result};
use masque_transport::tls::{ALPN_HTTP11, DevCert, ServerVerification, client_config};
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A UDP relay: datagrams from clients to `upstream` and back, one upstream
/// socket per client; while `dropping` is set, every datagram from a client
/// is dropped without a trace (no ICMP). Runs until its runtime stops.
pub struct UdpRelay {
    pub addr: SocketAddr,
    pub dropping: Arc<AtomicBool>,
    /// Datagrams received from clients, dropped or not.
    pub received: Arc<AtomicU64>,
}

impl UdpRelay {
    pub async fn start(bind: SocketAddr, upstream: SocketAddr, dropping: bool) -> Result<Self> {
        let front = Arc::new(UdpSocket::bind(bind).await.context("binding the relay")?);
        let relay = Self {
            addr: front.local_addr()?,
            dropping: Arc::new(AtomicBool::new(dropping)),
            received: Arc::new(AtomicU64::new(0)),
        };
        let (drop_all, received) = (Arc::clone(&relay.dropping), Arc::clone(&relay.received));
        tokio::spawn(async move {
            let mut peers: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                received.fetch_add(1, Ordering::Relaxed);
                if drop_all.load(Ordering::Relaxed) {
                    continue;
                }
                let up = match peers.get(&from) {
                    Some(up) => Arc::clone(up),
                    None => {
                        let local = SocketAddr::new(upstream.ip(), 0);
                        let Ok(up) = UdpSocket::bind(local).await else {
                            continue;
                        };
                        let up = Arc::new(up);
                        peers.insert(from, Arc::clone(&up));
                        let (back, front) = (Arc::clone(&up), Arc::clone(&front));
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 65536];
                            while let Ok(n) = back.recv(&mut buf).await {
                                let _ = front.send_to(&buf[..n], from).await;
                            }
                        });
                        up
                    }
                };
                let _ = up.send_to(&buf[..n], upstream).await;
            }
        });
        Ok(relay)
    }
}

/// A TLS listener on `bind` with the node's certificate that offers only
/// ALPN `http/1.1` (a client offering only `h2` gets the no_application_protocol
/// alert), passing each connection's plaintext to the node's TLS listener at
/// `node_tcp` over a TLS connection of its own with ALPN `http/1.1`. While
/// the returned flag is set it closes every connection at once instead (the
/// TLS handshake fails). Runs until its runtime stops; returns its address.
pub async fn h1_only_front(
    bind: SocketAddr,
    node_tcp: SocketAddr,
    cert: &DevCert,
) -> Result<(SocketAddr, Arc<AtomicBool>)> {
    let server = cert.server_tls().rustls_server_config(&[ALPN_HTTP11])?;
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let pin = ServerVerification::PinnedSha256(cert.fingerprint_sha256());
    let connector = TlsConnector::from(Arc::new(client_config(&pin, &[ALPN_HTTP11])?));
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let refusing = Arc::new(AtomicBool::new(false));
    let refuse = Arc::clone(&refusing);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if refuse.load(Ordering::Relaxed) {
                drop(tcp);
                continue;
            }
            let (acceptor, connector) = (acceptor.clone(), connector.clone());
            tokio::spawn(async move {
                let Ok(mut client) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(up) = TcpStream::connect(node_tcp).await else {
                    return;
                };
                let name = ServerName::IpAddress(node_tcp.ip().into());
                let Ok(mut node) = connector.connect(name, up).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut client, &mut node).await;
            });
        }
    });
    Ok((addr, refusing))
}
