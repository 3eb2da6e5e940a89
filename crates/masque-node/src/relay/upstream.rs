//! The next hop: its URL, the client options to reach it, and the connection
//! relayed tunnels open their streams on.
//!
//! One `ProxyClient` connection is shared by every relayed tunnel (HTTP/3 and
//! HTTP/2 multiplex them) and dialled again when it has closed. On HTTP/1.1
//! every tunnel needs a connection of its own: it is dialled per tunnel.

use std::str::FromStr;

use anyhow::{Context, Result, bail};
use masque_client::{
    ClientError, ClientOptions, IpSession, ProxyClient, Target, TcpMode, TcpTunnel,
    TransportChoice, UdpSession,
};
use masque_proto::template::IpTarget;
use tokio::sync::Mutex;

/// The next-hop proxy.
pub struct Upstream {
    url: String,
    authority: String,
    options: ClientOptions,
    shared: Mutex<Option<ProxyClient>>,
}

impl Upstream {
    /// `url` is `https://host[:port]`.
    pub fn new(url: &str, options: ClientOptions) -> Result<Self> {
        let uri = http::Uri::from_str(url).with_context(|| format!("--upstream {url}"))?;
        if uri.scheme_str() != Some("https") {
            bail!("--upstream {url}: the scheme must be https");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("--upstream {url}: no host"))?
            .to_string();
        Ok(Self {
            url: url.to_owned(),
            authority,
            options,
            shared: Mutex::new(None),
        })
    }

    /// `host[:port]` of the next hop (our `next-hop` in Proxy-Status).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The shared connection, dialled (again) when there is none or it closed.
    async fn shared(&self) -> Result<ProxyClient, ClientError> {
        let mut shared = self.shared.lock().await;
        match shared.as_ref() {
            Some(c) if !c.is_closed() => Ok(c.clone()),
            _ => {
                let c = ProxyClient::connect(&self.url, self.options.clone()).await?;
                *shared = Some(c.clone());
                Ok(c)
            }
        }
    }

    fn per_tunnel(&self) -> bool {
        self.options.transport == TransportChoice::H1
    }

    /// A CONNECT-UDP tunnel to `target` through the next hop, the request
    /// carrying `options` (ours plus the relayed request's `Via`).
    pub async fn open_udp(
        &self,
        target: &Target,
        options: &ClientOptions,
    ) -> Result<UdpSession, ClientError> {
        if self.per_tunnel() {
            let own = ProxyClient::connect(&self.url, options.clone()).await?;
            return own.open_udp(target).await;
        }
        let shared = self.shared().await?;
        UdpSession::open_with(shared.client_connection(), &self.authority, target, options).await
    }

    /// A CONNECT-IP tunnel with scope `target` through the next hop.
    pub async fn open_ip(
        &self,
        target: &IpTarget,
        options: &ClientOptions,
    ) -> Result<IpSession, ClientError> {
        if self.per_tunnel() {
            let own = ProxyClient::connect(&self.url, options.clone()).await?;
            return own.open_ip(target).await;
        }
        let shared = self.shared().await?;
        IpSession::open_with(shared.client_connection(), &self.authority, target, options).await
    }

    /// A TCP tunnel (`mode`) to `target` through the next hop.
    pub async fn open_tcp(
        &self,
        target: &Target,
        mode: TcpMode,
        options: &ClientOptions,
    ) -> Result<TcpTunnel, ClientError> {
        if self.per_tunnel() {
            let own = ProxyClient::connect(&self.url, options.clone()).await?;
            return own.open_tcp(target, mode).await;
        }
        let shared = self.shared().await?;
        TcpTunnel::open_with(
            shared.client_connection(),
            &self.authority,
            target,
            mode,
            options,
        )
        .await
    }
}
