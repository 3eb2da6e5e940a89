//! Target name resolution for proxy handlers (R9298-16: resolve before
//! answering). Pluggable so deployments can use their own resolver and tests
//! can be deterministic; the default asks the system (getaddrinfo).

use std::net::SocketAddr;

/// Why resolution failed; mapped to `dns_error` (502) or `dns_timeout` (504).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The name does not exist (rcode NXDOMAIN).
    #[error("name not found")]
    NotFound,
    /// The resolver failed (rcode SERVFAIL or a local failure).
    #[error("resolution failed: {0}")]
    Failed(String),
}

/// Resolves a host name to socket addresses.
#[async_trait::async_trait]
pub trait Resolver: Send + Sync + 'static {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError>;
}

/// The system resolver, via tokio's `lookup_host` (getaddrinfo on a blocking
/// thread). Callers bound it with a timeout.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait::async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        match tokio::net::lookup_host((host, port)).await {
            Ok(addrs) => {
                let v: Vec<SocketAddr> = addrs.collect();
                if v.is_empty() {
                    Err(ResolveError::NotFound)
                } else {
                    Ok(v)
                }
            }
            // getaddrinfo does not expose the DNS rcode portably; "no such name"
            // style failures and others both surface as io errors here.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ResolveError::NotFound),
            Err(e) => {
                let text = e.to_string();
                if text.contains("not known") || text.contains("No address") {
                    Err(ResolveError::NotFound)
                } else {
                    Err(ResolveError::Failed(text))
                }
            }
        }
    }
}

/// A fixed table, for tests and static deployments: names not in it are
/// NXDOMAIN.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    pub entries: Vec<(String, Vec<std::net::IpAddr>)>,
}

#[async_trait::async_trait]
impl Resolver for StaticResolver {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        self.entries
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(host))
            .map(|(_, ips)| ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
            .ok_or(ResolveError::NotFound)
    }
}
