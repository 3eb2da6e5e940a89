//! [`ProxyClient`]: one connection to a proxy (HTTP/3, HTTP/2 or HTTP/1.1, see
//! [`crate::TransportChoice`]) that opens many tunnels, and the dialer behind it.

use std::{net::SocketAddr, sync::Arc};

use masque_proto::template::{IpTarget, IpTemplate, TcpTemplate, UdpTemplate};
use masque_transport::{ClientConfig, ClientConnection, Transport, socket_buffers::BufferSizes};
use tokio::time::timeout;

use crate::{
    ClientError, ClientOptions, IpSession, Target, TcpMode, TcpTunnel, UdpSession,
    proxy_url::{self, ProxyUrl},
    request,
};

/// Everything needed to (re)connect to one proxy, validated up front.
#[derive(Debug, Clone)]
pub(crate) struct Dialer {
    url: ProxyUrl,
    template: Arc<UdpTemplate>,
    tcp_template: Arc<TcpTemplate>,
    ip_template: Arc<IpTemplate>,
    config: ClientConfig,
    options: Arc<ClientOptions>,
}

impl Dialer {
    /// Parses the URL and template (R9298-08) and checks that the TLS
    /// configuration builds (server name = URL host). Only configuration errors here.
    pub fn new(proxy_url: &str, options: ClientOptions) -> Result<Self, ClientError> {
        let url = proxy_url::parse(proxy_url)?;
        let explicit = options.template.as_deref().or(url.template.as_deref());
        let template = request::template(&url.authority, explicit)?;
        let tcp_template = request::tcp_template(&url.authority, options.tcp_template.as_deref())?;
        let ip_template = request::ip_template(&url.authority, options.ip_template.as_deref())?;
        // A bad CA list or pin is a configuration error, found before dialing.
        masque_transport::tls::client_config(&options.verification, &[])?;
        Ok(Self {
            url,
            template: Arc::new(template),
            tcp_template: Arc::new(tcp_template),
            ip_template: Arc::new(ip_template),
            config: options.client_config(),
            options: Arc::new(options),
        })
    }

    /// Checks that `target` can be requested with this template.
    pub fn check_target(&self, target: &Target) -> Result<(), ClientError> {
        request::build(
            &self.template,
            &target.to_udp_target()?,
            &self.options.headers,
        )
        .map(drop)
    }

    /// Resolves the proxy and connects over the chosen transport, all within
    /// `connect_timeout`.
    pub async fn connect(&self) -> Result<ProxyClient, ClientError> {
        let limit = self.options.connect_timeout;
        let transport = self.options.transport.transport();
        let dial = async {
            let addr = self.resolve().await?;
            ClientConnection::connect(transport, addr, &self.url.host, &self.config)
                .await
                .map_err(|e| ClientError::from_connect(e, limit))
        };
        let conn = timeout(limit, dial)
            .await
            .map_err(|_| ClientError::Timeout(limit))??;
        Ok(ProxyClient {
            conn,
            template: Arc::clone(&self.template),
            tcp_template: Arc::clone(&self.tcp_template),
            ip_template: Arc::clone(&self.ip_template),
            options: Arc::clone(&self.options),
        })
    }

    async fn resolve(&self) -> Result<SocketAddr, ClientError> {
        let (host, port) = (self.url.host.as_str(), self.url.port);
        let resolve_err = |reason: String| ClientError::Resolve {
            host: host.to_owned(),
            reason,
        };
        tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| resolve_err(e.to_string()))?
            .next()
            .ok_or_else(|| resolve_err("no address".to_owned()))
    }
}

/// One connection to a proxy; open any number of tunnels on it (up to the
/// proxy's stream limit). Cheap to clone. On HTTP/3 and HTTP/2 the connection
/// closes when every clone and every tunnel opened on it are gone, or on
/// [`close`](Self::close); on HTTP/1.1 each tunnel has its own connection.
#[derive(Debug, Clone)]
pub struct ProxyClient {
    conn: ClientConnection,
    template: Arc<UdpTemplate>,
    tcp_template: Arc<TcpTemplate>,
    ip_template: Arc<IpTemplate>,
    options: Arc<ClientOptions>,
}

impl ProxyClient {
    /// Connects to `proxy_url` (see [`crate::connect`] for its forms) over
    /// `options.transport`. On HTTP/1.1 this only resolves the proxy: each
    /// tunnel dials its own connection.
    pub async fn connect(proxy_url: &str, options: ClientOptions) -> Result<Self, ClientError> {
        Dialer::new(proxy_url, options)?.connect().await
    }

    /// Opens a connect-udp tunnel to `target` on this connection.
    pub async fn open_udp(&self, target: &Target) -> Result<UdpSession, ClientError> {
        UdpSession::open(&self.conn, &self.template, target, &self.options).await
    }

    /// Opens a TCP tunnel to `target` (a [`Target::Tcp`]) on this connection:
    /// connect-tcp (extended CONNECT, HTTP/1.1 `Upgrade`) with the token of
    /// `mode`, or classic CONNECT. See [`crate::connect_tcp`].
    pub async fn open_tcp(&self, target: &Target, mode: TcpMode) -> Result<TcpTunnel, ClientError> {
        TcpTunnel::open(&self.conn, &self.tcp_template, target, mode, &self.options).await
    }

    /// Opens a connect-ip tunnel (RFC 9484) for `target` on this connection
    /// (`IpTarget::ANY`: a full tunnel). See [`crate::connect_ip`].
    pub async fn open_ip(&self, target: &IpTarget) -> Result<IpSession, ClientError> {
        IpSession::open(&self.conn, &self.ip_template, target, &self.options).await
    }

    /// The HTTP version of this connection.
    pub fn transport(&self) -> Transport {
        self.conn.transport()
    }

    /// The QUIC socket's buffer sizes as the kernel granted them
    /// ([`ClientOptions::socket_recv_buffer`] / `socket_send_buffer`; on
    /// Linux twice the granted bytes, which include bookkeeping). Zero on
    /// HTTP/2 and HTTP/1.1, which have no QUIC socket.
    pub fn socket_buffer_sizes(&self) -> BufferSizes {
        self.conn
            .socket_buffers()
            .unwrap_or(BufferSizes { recv: 0, send: 0 })
    }

    /// The HTTP/3 connection, if this client runs HTTP/3.
    pub fn h3_connection(&self) -> Option<&masque_h3::Connection> {
        self.conn.as_h3()
    }

    /// The connection, any transport (e.g. for [`UdpSession::open_with`]).
    pub fn client_connection(&self) -> &ClientConnection {
        &self.conn
    }

    /// The proxy's address (UDP for HTTP/3, TCP otherwise).
    pub fn remote_addr(&self) -> SocketAddr {
        self.conn.peer()
    }

    /// Whether the connection has ended (HTTP/1.1: whether it was closed).
    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    /// Graceful close: GOAWAY (HTTP/3; HTTP/2: no new streams), up to
    /// `close_timeout` for open tunnels to end, then CONNECTION_CLOSE
    /// (H3_NO_ERROR) or the TCP connection's end, and a bounded wait for it.
    pub async fn close(&self) {
        self.conn.shutdown(self.options.close_timeout).await;
    }
}
