//! The next hop: its URL and the client options to reach it. Every relayed
//! tunnel is opened through an `UpstreamPool`: the node's own, a permanent
//! child of its supervisor ([`Upstream::pool_spec`]), or masque-client's
//! process-wide one when the relay runs without a node:
//! on HTTP/3 and HTTP/2 the tunnels share pooled connections, an owner per
//! connection, a new one dialled when every owner is full (and the racer picks
//! the transport when it is `auto`); on HTTP/1.1 each tunnel dials its own.
//! The pool key leaves out request headers other than the credentials, so the
//! per-request `Via` costs no connection of its own.

use std::{
    str::FromStr,
    sync::{Arc, Mutex, PoisonError},
};

use anyhow::{Context, Result, bail};
use masque_client::{
    ClientError, ClientOptions, IpSession, PoolConfig, ProxyClient, Target, TcpMode, TcpTunnel,
    UdpSession, UpstreamPool,
};
use masque_proto::template::IpTarget;
use masque_server::supervisor::{ChildSpec, Restart};

/// The next-hop proxy.
pub struct Upstream {
    url: String,
    authority: String,
    options: ClientOptions,
    /// Parsed once (URL, TLS); each tunnel takes it with its own headers.
    /// On the process-wide pool until the node's pool starts, then on it (a
    /// restarted pool replaces it).
    base: Arc<Mutex<ProxyClient>>,
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
        let base = ProxyClient::new(url, options.clone())?;
        Ok(Self {
            url: url.to_owned(),
            authority,
            options,
            base: Arc::new(Mutex::new(base)),
        })
    }

    /// `host[:port]` of the next hop (our `next-hop` in Proxy-Status).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The pooled client sending `headers` (ours plus the relayed request's
    /// `Via`): no URL parsing or TLS set-up per tunnel.
    fn client(&self, headers: http::HeaderMap) -> ProxyClient {
        let base = self.base.lock().unwrap_or_else(PoisonError::into_inner);
        base.with_headers(headers)
    }

    /// The node's pool of connections to the next hop, a permanent child of
    /// its supervisor: each (re)start spawns an `UpstreamPool` linked to the
    /// supervisor and points the relay at it.
    pub fn pool_spec(&self) -> ChildSpec {
        let (url, options, base) = (
            self.url.clone(),
            self.options.clone(),
            Arc::clone(&self.base),
        );
        ChildSpec::new("upstream-pool", Restart::Permanent, move |sup| {
            let (url, options, base) = (url.clone(), options.clone(), Arc::clone(&base));
            async move {
                let pool = UpstreamPool::spawn_linked(sup, PoolConfig::default()).await?;
                let client = ProxyClient::new_in(&url, options, &pool)?;
                *base.lock().unwrap_or_else(PoisonError::into_inner) = client;
                Ok(Some(pool.actor().get_cell()))
            }
        })
    }

    /// A CONNECT-UDP tunnel to `target` through the next hop.
    pub async fn open_udp(
        &self,
        target: &Target,
        headers: http::HeaderMap,
    ) -> Result<UdpSession, ClientError> {
        self.client(headers).connect_udp(target).await
    }

    /// A CONNECT-IP tunnel with scope `target` through the next hop.
    pub async fn open_ip(
        &self,
        target: &IpTarget,
        headers: http::HeaderMap,
    ) -> Result<IpSession, ClientError> {
        self.client(headers).connect_ip(target).await
    }

    /// A TCP tunnel (`mode`) to `target` through the next hop.
    pub async fn open_tcp(
        &self,
        target: &Target,
        mode: TcpMode,
        headers: http::HeaderMap,
    ) -> Result<TcpTunnel, ClientError> {
        self.client(headers).connect_tcp(target, mode).await
    }
}
