//! [`ProxyClient`]: one QUIC + HTTP/3 connection to a proxy that opens many
//! tunnels, and the dialer behind it.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use masque_h3::Code;
use masque_proto::template::UdpTemplate;
use masque_transport::{
    socket_buffers::{BufferSizes, bind_udp},
    tls::{ALPN_H3, quic_client_config},
};
use tokio::time::timeout;

use crate::{
    ClientError, ClientOptions, Target, UdpSession,
    proxy_url::{self, ProxyUrl},
    request,
};

/// Smallest QUIC MTU (RFC 9000 §14) and the largest UDP payload.
const MTU_RANGE: (u16, u16) = (1200, 65527);

/// Everything needed to (re)connect to one proxy, validated up front.
#[derive(Debug, Clone)]
pub(crate) struct Dialer {
    url: ProxyUrl,
    template: Arc<UdpTemplate>,
    quic: quinn::ClientConfig,
    options: Arc<ClientOptions>,
}

impl Dialer {
    /// Parses the URL and template (R9298-08) and builds TLS (ALPN h3, server
    /// name = URL host) and transport settings. Only configuration errors here.
    pub fn new(proxy_url: &str, options: ClientOptions) -> Result<Self, ClientError> {
        let url = proxy_url::parse(proxy_url)?;
        let explicit = options.template.as_deref().or(url.template.as_deref());
        let template = request::template(&url.authority, explicit)?;
        let mut transport = masque_h3::transport_config(0);
        let initial_mtu = options.initial_mtu.clamp(MTU_RANGE.0, MTU_RANGE.1);
        transport
            .initial_mtu(initial_mtu)
            .min_mtu(options.min_mtu.clamp(MTU_RANGE.0, initial_mtu))
            .max_idle_timeout(options.idle_timeout.try_into().ok());
        let quic = quic_client_config(&options.verification, &[ALPN_H3], Arc::new(transport))?;
        Ok(Self {
            url,
            template: Arc::new(template),
            quic,
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

    /// Resolves the proxy, binds an endpoint and runs the QUIC handshake and
    /// HTTP/3 start, all within `connect_timeout`.
    pub async fn connect(&self) -> Result<ProxyClient, ClientError> {
        let limit = self.options.connect_timeout;
        let (endpoint, quic, socket_buffers) = timeout(limit, self.handshake())
            .await
            .map_err(|_| ClientError::Timeout(limit))??;
        let conn = masque_h3::Connection::client(quic, self.options.h3.clone()).await?;
        Ok(ProxyClient {
            endpoint,
            socket_buffers,
            conn,
            template: Arc::clone(&self.template),
            options: Arc::clone(&self.options),
        })
    }

    async fn handshake(
        &self,
    ) -> Result<(quinn::Endpoint, quinn::Connection, BufferSizes), ClientError> {
        let (host, port) = (self.url.host.as_str(), self.url.port);
        let resolve_err = |reason: String| ClientError::Resolve {
            host: host.to_owned(),
            reason,
        };
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| resolve_err(e.to_string()))?
            .next()
            .ok_or_else(|| resolve_err("no address".to_owned()))?;
        let bind = self.options.bind.unwrap_or(match addr {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        });
        let (socket, buffers) = bind_udp(
            bind,
            self.options.socket_recv_buffer,
            self.options.socket_send_buffer,
            "client QUIC socket buffers",
        )?;
        let mut endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            None,
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        endpoint.set_default_client_config(self.quic.clone());
        let quic = endpoint.connect(addr, host)?.await?;
        Ok((endpoint, quic, buffers))
    }
}

/// One QUIC + HTTP/3 connection to a proxy; open any number of tunnels on it
/// (up to the proxy's stream limit). Cheap to clone. The connection closes when
/// every clone and every tunnel opened on it are gone, or on [`close`](Self::close).
#[derive(Debug, Clone)]
pub struct ProxyClient {
    endpoint: quinn::Endpoint,
    socket_buffers: BufferSizes,
    conn: masque_h3::Connection,
    template: Arc<UdpTemplate>,
    options: Arc<ClientOptions>,
}

impl ProxyClient {
    /// Connects to `proxy_url` (see [`crate::connect`] for its forms).
    pub async fn connect(proxy_url: &str, options: ClientOptions) -> Result<Self, ClientError> {
        Dialer::new(proxy_url, options)?.connect().await
    }

    /// Opens a connect-udp tunnel to `target` on this connection.
    pub async fn open_udp(&self, target: &Target) -> Result<UdpSession, ClientError> {
        UdpSession::open(&self.conn, &self.template, target, &self.options).await
    }

    /// The QUIC socket's buffer sizes as the kernel granted them
    /// ([`ClientOptions::socket_recv_buffer`] / `socket_send_buffer`; on
    /// Linux twice the granted bytes, which include bookkeeping).
    pub fn socket_buffer_sizes(&self) -> BufferSizes {
        self.socket_buffers
    }

    /// The HTTP/3 connection (e.g. for [`UdpSession::open_on`] or statistics).
    pub fn connection(&self) -> &masque_h3::Connection {
        &self.conn
    }

    /// The proxy's UDP address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.conn.quic().remote_address()
    }

    /// Whether the QUIC connection has ended.
    pub fn is_closed(&self) -> bool {
        self.conn.quic().close_reason().is_some()
    }

    pub(crate) fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// Graceful close: GOAWAY, up to `close_timeout` for open tunnels to end,
    /// then CONNECTION_CLOSE (H3_NO_ERROR) and a bounded wait for the endpoint.
    pub async fn close(&self) {
        let limit = self.options.close_timeout;
        if self.conn.shutdown(limit).await.is_err() {
            self.conn.close(Code::NO_ERROR, b"");
        }
        let _ = timeout(limit.min(Duration::from_secs(1)), self.endpoint.wait_idle()).await;
    }
}
