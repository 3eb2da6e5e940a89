//! The transport race of [`TransportChoice::Auto`](crate::TransportChoice)
//! (the Erlang `masque_racer`): HTTP/3 at once, HTTP/2 after a head start,
//! HTTP/1.1 after another ([`RaceOptions`]); the first attempt that completes
//! its handshake and settings check wins, the others are cancelled and their
//! connections closed. A failure starts the next attempt at once. The winner
//! is remembered per proxy (host, port, TLS identity) so the next race starts
//! with it.
//!
//! What wins, per transport:
//! * HTTP/3: the QUIC handshake and the proxy's SETTINGS with
//!   `SETTINGS_ENABLE_CONNECT_PROTOCOL` and `SETTINGS_H3_DATAGRAM`;
//! * HTTP/2: TLS with ALPN `h2`, the preface, and SETTINGS with
//!   `SETTINGS_ENABLE_CONNECT_PROTOCOL`;
//! * HTTP/1.1: TLS with ALPN `http/1.1` (or none), probed with one dial.
//!
//! The timing and the memory are sans-IO ([`Schedule`], [`Memory`]); [`race`]
//! runs them on tokio.

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    net::SocketAddr,
    sync::{LazyLock, Mutex},
    time::{Duration, Instant},
};

use masque_transport::{
    ClientConfig, ClientConnection, Transport, client::ConnectError, tls::ServerVerification,
};
use tokio::sync::{mpsc, watch};

use crate::{ClientError, ClientOptions, RaceOptions, proxy_url::ProxyUrl};

#[cfg(test)]
mod tests;

/// The order attempts start in when nothing is remembered.
const ORDER: [Transport; 3] = [Transport::H3, Transport::H2, Transport::H1];

/// How long a cancelled or failed attempt waits for its connection to close.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Where one attempt stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Not started; starts at its offset or when an earlier attempt fails.
    Waiting,
    Running,
    Failed(String),
}

#[derive(Debug, Clone)]
struct Slot {
    transport: Transport,
    /// From the race's start; lowered to zero when an earlier attempt fails.
    start_at: Duration,
    state: State,
}

/// The race's timing, sans-IO: which attempts start when, and what to
/// report when none wins. Times are offsets from the race's start.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    slots: Vec<Slot>,
    deadline: Duration,
}

impl Schedule {
    /// HTTP/3, HTTP/2, HTTP/1.1, with `first` (a remembered winner) moved to
    /// the front; the first slot starts at 0, the second at `h2_delay`, the
    /// third at `h1_delay` (at least `h2_delay`).
    pub(crate) fn new(first: Option<Transport>, race: &RaceOptions) -> Self {
        let mut order = ORDER.to_vec();
        if let Some(f) = first {
            order.retain(|t| *t != f);
            order.insert(0, f);
        }
        let offsets = [
            Duration::ZERO,
            race.h2_delay,
            race.h1_delay.max(race.h2_delay),
        ];
        let slots = order
            .into_iter()
            .zip(offsets)
            .map(|(transport, start_at)| Slot {
                transport,
                start_at,
                state: State::Waiting,
            })
            .collect();
        Self {
            slots,
            deadline: race.deadline,
        }
    }

    /// The attempts to start at `elapsed` (marked running), in order.
    pub(crate) fn due(&mut self, elapsed: Duration) -> Vec<Transport> {
        if elapsed >= self.deadline {
            return Vec::new();
        }
        self.slots
            .iter_mut()
            .filter(|s| s.state == State::Waiting && s.start_at <= elapsed)
            .map(|s| {
                s.state = State::Running;
                s.transport
            })
            .collect()
    }

    /// When the next waiting attempt starts, if any does before the deadline.
    pub(crate) fn next_start(&self) -> Option<Duration> {
        self.slots
            .iter()
            .filter(|s| s.state == State::Waiting)
            .map(|s| s.start_at)
            .min()
            .filter(|at| *at < self.deadline)
    }

    /// `t` failed: the first attempt still waiting starts at once.
    pub(crate) fn failed(&mut self, t: Transport, reason: String) {
        if let Some(s) = self.slots.iter_mut().find(|s| s.transport == t) {
            s.state = State::Failed(reason);
        }
        if let Some(next) = self.slots.iter_mut().find(|s| s.state == State::Waiting) {
            next.start_at = Duration::ZERO;
        }
    }

    /// Every attempt failed: nothing can win any more.
    pub(crate) fn all_failed(&self) -> bool {
        self.slots
            .iter()
            .all(|s| matches!(s.state, State::Failed(_)))
    }

    /// Why each transport did not win, for [`ClientError::RaceFailed`]:
    /// its failure, or that the deadline passed while it ran or waited.
    pub(crate) fn failure(&self) -> ClientError {
        let why = |t: Transport| match self.slots.iter().find(|s| s.transport == t) {
            Some(Slot {
                state: State::Failed(reason),
                ..
            }) => reason.clone(),
            Some(Slot {
                state: State::Running,
                ..
            }) => format!("no handshake within the {:?} deadline", self.deadline),
            _ => format!("not started within the {:?} deadline", self.deadline),
        };
        ClientError::RaceFailed {
            h3: why(Transport::H3),
            h2: why(Transport::H2),
            h1: why(Transport::H1),
        }
    }
}

/// A proxy as the memory knows it: host (case-folded), port, and a hash of
/// how its certificate is checked (two nodes behind one name with different
/// pins are different proxies).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RaceKey {
    host: String,
    port: u16,
    identity: u64,
}

impl RaceKey {
    pub(crate) fn new(host: &str, port: u16, verification: &ServerVerification) -> Self {
        let mut h = DefaultHasher::new();
        match verification {
            ServerVerification::WebPki => 0u8.hash(&mut h),
            ServerVerification::CustomCa(certs) => {
                1u8.hash(&mut h);
                for c in certs {
                    c.as_ref().hash(&mut h);
                }
            }
            ServerVerification::PinnedSha256(pin) => {
                2u8.hash(&mut h);
                pin.hash(&mut h);
            }
            ServerVerification::InsecureSkipVerify => 3u8.hash(&mut h),
        }
        Self {
            host: host.to_ascii_lowercase(),
            port,
            identity: h.finish(),
        }
    }
}

/// Winners per proxy, each until its expiry; sans-IO (the caller passes
/// the time).
#[derive(Debug, Default)]
pub(crate) struct Memory {
    winners: HashMap<RaceKey, (Transport, Instant)>,
}

impl Memory {
    /// The remembered winner for `key`, unless it expired (then forgotten).
    pub(crate) fn get(&mut self, key: &RaceKey, now: Instant) -> Option<Transport> {
        match self.winners.get(key) {
            Some((t, until)) if now < *until => Some(*t),
            Some(_) => {
                self.winners.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remembers `t` for `key` until `now + ttl` (zero: remembers nothing).
    /// Expired entries of other proxies go too.
    pub(crate) fn remember(&mut self, key: RaceKey, t: Transport, now: Instant, ttl: Duration) {
        self.winners.retain(|_, (_, until)| now < *until);
        match now.checked_add(ttl) {
            Some(until) if !ttl.is_zero() => {
                self.winners.insert(key, (t, until));
            }
            _ => {
                self.winners.remove(&key);
            }
        }
    }

    /// Forgets `key`'s winner if it is `t` (a failure of another transport
    /// says nothing about the remembered one).
    pub(crate) fn forget(&mut self, key: &RaceKey, t: Transport) {
        if self.winners.get(key).is_some_and(|(w, _)| *w == t) {
            self.winners.remove(key);
        }
    }
}

/// The process-wide memory of winners.
static MEMORY: LazyLock<Mutex<Memory>> = LazyLock::new(Mutex::default);

fn memory() -> std::sync::MutexGuard<'static, Memory> {
    MEMORY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Races the transports to `proxy` ([`TransportChoice::Auto`](crate::TransportChoice))
/// and returns the winner's connection, within `options.race.deadline`
/// (resolving the proxy's name included). A resolution failure is
/// [`ClientError::Resolve`]; no winner is [`ClientError::RaceFailed`] with
/// each transport's failure. `options.transport` is not looked at.
pub(crate) async fn race(
    proxy: &ProxyUrl,
    options: &ClientOptions,
) -> Result<ClientConnection, ClientError> {
    let race = options.race;
    let started = tokio::time::Instant::now();
    let deadline = started + race.deadline;
    let key = RaceKey::new(&proxy.host, proxy.port, &options.verification);
    let remembered = memory().get(&key, Instant::now());
    let addr = tokio::time::timeout_at(deadline, resolve(&proxy.host, proxy.port))
        .await
        .map_err(|_| ClientError::Timeout(race.deadline))??;
    let mut schedule = Schedule::new(remembered, &race);
    let config = options.client_config();
    // Dropping `cancel` tells every attempt still running to stop and close.
    let (cancel, cancelled) = watch::channel(());
    let (done_tx, mut done) = mpsc::channel(ORDER.len());
    let outcome = loop {
        for t in schedule.due(started.elapsed()) {
            tracing::debug!(transport = t.as_str(), proxy = %addr, "race: attempt starts");
            let (host, config, cancelled) = (proxy.host.clone(), config.clone(), cancelled.clone());
            let done_tx = done_tx.clone();
            tokio::spawn(async move {
                let result = attempt(t, addr, &host, &config, cancelled).await;
                if let Err(mpsc::error::SendError((_, Ok(conn)))) = done_tx.send((t, result)).await
                {
                    // The race ended without us: not wanted.
                    close(&conn).await;
                }
            });
        }
        let next = schedule.next_start().map(|at| started + at);
        tokio::select! {
            Some((t, result)) = done.recv() => match result {
                Ok(conn) => break Ok(conn),
                Err(reason) => {
                    tracing::debug!(transport = t.as_str(), %reason, "race: attempt failed");
                    if remembered == Some(t) {
                        memory().forget(&key, t);
                    }
                    schedule.failed(t, reason);
                    if schedule.all_failed() {
                        break Err(schedule.failure());
                    }
                }
            },
            () = sleep_until_some(next) => {}
            () = tokio::time::sleep_until(deadline) => break Err(schedule.failure()),
        }
    };
    // The losers: those still running see `cancel` dropped and close their
    // connections; a connection that came up meanwhile is closed here.
    drop(cancel);
    done.close();
    while let Ok((_, r)) = done.try_recv() {
        if let Ok(conn) = r {
            tokio::spawn(async move { close(&conn).await });
        }
    }
    match outcome {
        Ok(conn) => {
            let t = conn.transport();
            tracing::debug!(transport = t.as_str(), proxy = %addr, took = ?started.elapsed(), "race: won");
            memory().remember(key, t, Instant::now(), race.remember);
            Ok(conn)
        }
        Err(e) => {
            if let Some(t) = remembered {
                memory().forget(&key, t);
            }
            Err(e)
        }
    }
}

/// Races the transports to `proxy_url` (as [`crate::connect`] takes it) and
/// returns the connection of the first that completed its handshake and
/// settings check (see [`crate::RaceOptions`]); the winner is remembered
/// for the next race to this proxy. Open tunnels on it with
/// [`crate::UdpSession::open_with`], [`crate::TcpTunnel::open_with`] or
/// [`crate::IpSession::open_with`]. [`crate::ProxyClient::connect`] with
/// [`crate::TransportChoice::Auto`] runs the same race.
pub async fn race_connect(
    proxy_url: &str,
    options: &ClientOptions,
) -> Result<ClientConnection, ClientError> {
    let url = crate::proxy_url::parse(proxy_url)?;
    // A bad CA list or pin is a configuration error, found before dialing.
    masque_transport::tls::client_config(&options.verification, &[])?;
    race(&url, options).await
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, ClientError> {
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

async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One attempt: connect over `t`, then its settings check. Stops (closing
/// what it opened) when `cancelled`'s sender is dropped.
async fn attempt(
    t: Transport,
    addr: SocketAddr,
    host: &str,
    config: &ClientConfig,
    mut cancelled: watch::Receiver<()>,
) -> Result<ClientConnection, String> {
    let conn = tokio::select! {
        r = ClientConnection::connect(t, addr, host, config) => r.map_err(|e| describe(&e))?,
        _ = cancelled.changed() => return Err("cancelled".to_owned()),
    };
    let checked = tokio::select! {
        r = check(&conn) => r,
        _ = cancelled.changed() => Err("cancelled".to_owned()),
    };
    match checked {
        Ok(()) => Ok(conn),
        Err(e) => {
            close(&conn).await;
            Err(e)
        }
    }
}

/// The settings check of a connection that is up (see the module docs).
async fn check(conn: &ClientConnection) -> Result<(), String> {
    match conn.transport() {
        Transport::H3 => {
            let Some(h3) = conn.as_h3() else {
                return Err("not an HTTP/3 connection".to_owned());
            };
            let s = h3
                .peer_settings()
                .await
                .map_err(|e| format!("HTTP/3 SETTINGS: {e}"))?;
            match (s.enable_connect_protocol, s.h3_datagram) {
                (true, true) => Ok(()),
                (false, _) => Err(
                    "the proxy's HTTP/3 SETTINGS do not enable extended CONNECT \
                     (SETTINGS_ENABLE_CONNECT_PROTOCOL)"
                        .to_owned(),
                ),
                (true, false) => Err("the proxy's HTTP/3 SETTINGS do not enable HTTP datagrams \
                     (SETTINGS_H3_DATAGRAM)"
                    .to_owned()),
            }
        }
        Transport::H2 => match conn.h2_extended_connect() {
            Some(true) => Ok(()),
            Some(false) => Err(
                "the proxy's HTTP/2 SETTINGS do not enable extended CONNECT \
                                (SETTINGS_ENABLE_CONNECT_PROTOCOL)"
                    .to_owned(),
            ),
            None => Err("the HTTP/2 connection is going away".to_owned()),
        },
        Transport::H1 => conn.probe().await.map_err(|e| describe(&e)),
    }
}

/// A connection failure as one line (with its cause, e.g. the I/O error
/// under a TLS handshake failure).
fn describe(e: &ConnectError) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

/// Closes a connection the race does not want (H3_NO_ERROR; HTTP/2: the
/// driver stops), with a bounded wait.
async fn close(conn: &ClientConnection) {
    conn.close();
    conn.wait_closed(CLOSE_WAIT).await;
}
