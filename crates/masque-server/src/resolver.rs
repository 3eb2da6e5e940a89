//! Target name resolution for proxy handlers (R9298-16: resolve before
//! answering). Pluggable so deployments can use their own resolver and tests
//! can be deterministic; the default asks the system (getaddrinfo).
//!
//! Lookups are bounded (issue "Hard to break" §5, the DNS budget): a system
//! lookup runs getaddrinfo on one of tokio's blocking threads (512 by
//! default), and one that times out keeps its thread busy until getaddrinfo
//! gives up, tens of seconds later. Unbounded, a handful of slow names per
//! second would exhaust that pool and deny every tunnel to a name. A
//! [`LookupBudget`] caps the lookups in flight, node-wide and per client
//! connection ([`LookupLimits`]); a lookup over either cap is refused at once
//! (503 + `connection_limit_reached`, which a client may retry later) rather
//! than queued: waiting would only hold the request for a budget that frees
//! on the scale of the DNS timeouts. Each lookup holds a [`LookupPermit`] for
//! as long as its work runs, which for the system resolver is until
//! getaddrinfo returns, not until the caller's `dns_timeout` (504) or its
//! cancellation.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use masque_proto::proxy_status::TunnelFailure;

use crate::{handler::Refusal, metrics::Metrics};

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

    /// [`resolve`](Self::resolve) as one lookup of the [`LookupBudget`]:
    /// `permit` must stay alive for as long as the lookup occupies anything.
    /// The default holds it while the returned future lives, right for a
    /// resolver whose work stops when its future is dropped (on the caller's
    /// timeout or cancellation). A resolver whose work outlives its future,
    /// like [`SystemResolver`] on a blocking thread, moves the permit into
    /// that work instead.
    async fn resolve_holding(
        &self,
        host: &str,
        port: u16,
        permit: LookupPermit,
    ) -> Result<Vec<SocketAddr>, ResolveError> {
        let _permit = permit;
        self.resolve(host, port).await
    }
}

/// The system resolver: getaddrinfo on one of tokio's blocking threads.
/// Callers bound it with a timeout; a budgeted lookup
/// ([`Resolver::resolve_holding`]) keeps its permit on that thread until
/// getaddrinfo returns, whatever the caller does meanwhile.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait::async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        system_lookup(host, port, None).await
    }

    async fn resolve_holding(
        &self,
        host: &str,
        port: u16,
        permit: LookupPermit,
    ) -> Result<Vec<SocketAddr>, ResolveError> {
        system_lookup(host, port, Some(permit)).await
    }
}

/// getaddrinfo on a blocking thread (what `tokio::net::lookup_host` does),
/// with `permit` released by that thread when the call returns: dropping this
/// future (timeout, cancellation) does not stop the thread, so neither may it
/// give the permit back.
async fn system_lookup(
    host: &str,
    port: u16,
    permit: Option<LookupPermit>,
) -> Result<Vec<SocketAddr>, ResolveError> {
    let host = host.to_owned();
    let lookup = tokio::task::spawn_blocking(move || {
        let addrs = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port));
        drop(permit);
        addrs
    });
    match lookup.await {
        Ok(Ok(addrs)) => {
            let v: Vec<SocketAddr> = addrs.collect();
            if v.is_empty() {
                Err(ResolveError::NotFound)
            } else {
                Ok(v)
            }
        }
        // getaddrinfo does not expose the DNS rcode portably; "no such name"
        // style failures and others both surface as io errors here.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Err(ResolveError::NotFound),
        Ok(Err(e)) => {
            let text = e.to_string();
            if text.contains("not known") || text.contains("No address") {
                Err(ResolveError::NotFound)
            } else {
                Err(ResolveError::Failed(text))
            }
        }
        Err(e) => Err(ResolveError::Failed(format!("lookup thread: {e}"))),
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

/// How many lookups may run at once. Both stay well under tokio's blocking
/// pool (512 threads by default), so tunnels to literal addresses, and the
/// node's other blocking work, keep their threads whatever the names asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupLimits {
    /// Lookups in flight on the whole node (default 64).
    pub max_concurrent_lookups: usize,
    /// Lookups in flight for one client connection, told apart by its peer
    /// address (default 8), so one client cannot take the node's budget.
    /// HTTP/1.1 dials a connection per tunnel: there this bounds per peer
    /// address and port, and only the node-wide cap binds a client.
    pub max_concurrent_lookups_per_connection: usize,
}

impl Default for LookupLimits {
    fn default() -> Self {
        Self {
            max_concurrent_lookups: 64,
            max_concurrent_lookups_per_connection: 8,
        }
    }
}

/// The lookups in flight, against [`LookupLimits`]. One per handler (so one
/// per node); each lookup holds a [`LookupPermit`].
#[derive(Debug)]
pub struct LookupBudget {
    limits: LookupLimits,
    state: Mutex<InFlight>,
}

#[derive(Debug, Default)]
struct InFlight {
    total: usize,
    /// Only connections with a lookup in flight have an entry.
    per_connection: HashMap<SocketAddr, usize>,
}

/// A lookup refused by the [`LookupBudget`]: which cap it hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BudgetExceeded {
    #[error("{0} DNS lookups in flight on this node")]
    Node(usize),
    #[error("{0} DNS lookups in flight for this connection")]
    Connection(usize),
}

impl LookupBudget {
    pub fn new(limits: LookupLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            state: Mutex::new(InFlight::default()),
        })
    }

    pub fn limits(&self) -> LookupLimits {
        self.limits
    }

    /// Lookups in flight now (node-wide).
    pub fn in_flight(&self) -> usize {
        self.lock().total
    }

    /// A permit for one lookup of `connection` (the client's peer address),
    /// or which cap is reached. Never waits.
    pub fn try_acquire(
        self: &Arc<Self>,
        connection: SocketAddr,
    ) -> Result<LookupPermit, BudgetExceeded> {
        let mut s = self.lock();
        if s.total >= self.limits.max_concurrent_lookups {
            return Err(BudgetExceeded::Node(s.total));
        }
        let mine = s.per_connection.get(&connection).copied().unwrap_or(0);
        if mine >= self.limits.max_concurrent_lookups_per_connection {
            return Err(BudgetExceeded::Connection(mine));
        }
        s.total += 1;
        s.per_connection.insert(connection, mine + 1);
        Ok(LookupPermit {
            budget: Arc::clone(self),
            connection,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InFlight> {
        // The counts stay consistent under any panic (no code between the
        // updates of one lock can panic): a poisoned lock is still right.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One lookup's share of the [`LookupBudget`], given back when dropped.
#[derive(Debug)]
pub struct LookupPermit {
    budget: Arc<LookupBudget>,
    connection: SocketAddr,
}

impl Drop for LookupPermit {
    fn drop(&mut self) {
        let mut s = self.budget.lock();
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_connection.get_mut(&self.connection) {
            *n -= 1;
            if *n == 0 {
                s.per_connection.remove(&self.connection);
            }
        }
    }
}

/// Resolves `host` for a tunnel of the client at `connection` within the
/// budget and `timeout`, answering as a tunnel refusal: over the budget 503
/// `connection_limit_reached` at once (counted in `tunnels_refused_limit`),
/// NXDOMAIN or a failure 502 `dns_error`, too slow 504 `dns_timeout` (the
/// permit stays with the lookup's work until that ends).
pub async fn resolve_within_budget(
    resolver: &dyn Resolver,
    budget: &Arc<LookupBudget>,
    timeout: Duration,
    connection: SocketAddr,
    host: &str,
    port: u16,
    metrics: &Metrics,
) -> Result<Vec<SocketAddr>, Refusal> {
    let permit = match budget.try_acquire(connection) {
        Ok(p) => p,
        Err(e) => {
            Metrics::inc(&metrics.tunnels_refused_limit);
            tracing::debug!(%connection, host, error = %e, "DNS lookup refused");
            return Err(
                Refusal::new(TunnelFailure::ConnectionLimitReached).with_details(e.to_string())
            );
        }
    };
    let lookup = resolver.resolve_holding(host, port, permit);
    match tokio::time::timeout(timeout, lookup).await {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(ResolveError::NotFound)) => {
            Err(Refusal::new(TunnelFailure::DnsError).with_rcode("NXDOMAIN"))
        }
        Ok(Err(ResolveError::Failed(e))) => Err(Refusal::new(TunnelFailure::DnsError)
            .with_rcode("SERVFAIL")
            .with_details(e)),
        Err(_) => Err(Refusal::new(TunnelFailure::DnsTimeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    /// §5: the node-wide and per-connection caps each refuse the lookup
    /// over them, and dropped permits give their share back.
    #[test]
    fn budget_caps_node_and_connection() {
        let budget = LookupBudget::new(LookupLimits {
            max_concurrent_lookups: 3,
            max_concurrent_lookups_per_connection: 2,
        });
        let a1 = budget.try_acquire(peer(1)).unwrap();
        let a2 = budget.try_acquire(peer(1)).unwrap();
        assert_eq!(
            budget.try_acquire(peer(1)).unwrap_err(),
            BudgetExceeded::Connection(2)
        );
        let b1 = budget.try_acquire(peer(2)).unwrap();
        assert_eq!(
            budget.try_acquire(peer(3)).unwrap_err(),
            BudgetExceeded::Node(3)
        );
        assert_eq!(budget.in_flight(), 3);
        drop(a1);
        let a3 = budget.try_acquire(peer(1)).unwrap();
        drop((a2, a3, b1));
        assert_eq!(budget.in_flight(), 0);
        assert!(budget.lock().per_connection.is_empty(), "no stale entries");
    }

    /// §5: a system lookup gives its permit back when getaddrinfo returns,
    /// and the default `resolve_holding` when its future ends.
    #[tokio::test]
    async fn permits_end_with_the_lookup() {
        let budget = LookupBudget::new(LookupLimits::default());
        let permit = budget.try_acquire(peer(1)).unwrap();
        let got = SystemResolver
            .resolve_holding("127.0.0.1", 53, permit)
            .await
            .unwrap();
        assert_eq!(got, vec![SocketAddr::from(([127, 0, 0, 1], 53))]);
        assert_eq!(budget.in_flight(), 0);
        let permit = budget.try_acquire(peer(1)).unwrap();
        let r = StaticResolver::default()
            .resolve_holding("x.example", 53, permit)
            .await;
        assert_eq!(r, Err(ResolveError::NotFound));
        assert_eq!(budget.in_flight(), 0);
    }
}
