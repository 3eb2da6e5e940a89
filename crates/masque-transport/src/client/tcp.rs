//! TLS over TCP for the HTTP/2 and HTTP/1.1 clients.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use rustls::pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::{TlsConnector, client::TlsStream};

use super::ConnectError;

/// Where and how to dial: the proxy, its TLS name, the TLS configuration
/// (shared, so HTTP/1.1 dials resume TLS sessions), the expected ALPN.
#[derive(Debug, Clone)]
pub(super) struct TlsDialer {
    addr: SocketAddr,
    bind: Option<IpAddr>,
    name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    alpn: &'static [u8],
    /// HTTP/1.1 servers may not speak ALPN at all.
    alpn_optional: bool,
}

impl TlsDialer {
    pub(super) fn new(
        addr: SocketAddr,
        bind: Option<SocketAddr>,
        server_name: &str,
        tls: rustls::ClientConfig,
        alpn: &'static [u8],
        alpn_optional: bool,
    ) -> Result<Self, ConnectError> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| ConnectError::ServerName(server_name.to_owned()))?;
        Ok(Self {
            addr,
            bind: bind.map(|b| b.ip()),
            name,
            tls: Arc::new(tls),
            alpn,
            alpn_optional,
        })
    }

    /// TCP (no Nagle: capsules carry datagrams) and the TLS handshake.
    pub(super) async fn dial(&self) -> Result<TlsStream<TcpStream>, ConnectError> {
        let socket = match self.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(ip) = self.bind {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let tcp = socket.connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = TlsConnector::from(Arc::clone(&self.tls))
            .connect(self.name.clone(), tcp)
            .await
            .map_err(ConnectError::TlsHandshake)?;
        let negotiated = tls.get_ref().1.alpn_protocol();
        let ok = match negotiated {
            Some(p) => p == self.alpn,
            None => self.alpn_optional,
        };
        if !ok {
            return Err(ConnectError::Alpn {
                expected: std::str::from_utf8(self.alpn).unwrap_or("?"),
                negotiated: negotiated.map(|p| String::from_utf8_lossy(p).into_owned()),
            });
        }
        Ok(tls)
    }
}
