//! Node counters (atomics, read without an actor hop) and their Prometheus text
//! exposition. Every drop on the data plane has a counter here.

use masque_proto::connect_ip::PacketDrop;
use masque_proto::proxy_status::{ProxyStatusError, TunnelFailure};
use masque_transport::Transport;
use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

macro_rules! metrics {
    ($($name:ident: $help:literal,)*) => {
        /// Counters of one node.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(#[doc = $help] pub $name: AtomicU64,)*
            /// The same traffic split by the HTTP version it came on.
            pub by_transport: ByTransport,
            /// Refused tunnel requests by their Proxy-Status error.
            pub refusals: Refusals,
            /// The HTTP/3 connections' own counters, live and closed.
            pub h3: H3Counters,
            /// CONNECT-IP packets dropped by the forwarding rules, by reason.
            pub ip_drops: IpDrops,
        }

        /// A copy of [`Metrics`] at one instant.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct MetricsSnapshot {
            $(#[doc = $help] pub $name: u64,)*
        }

        impl Metrics {
            pub fn snapshot(&self) -> MetricsSnapshot {
                MetricsSnapshot { $($name: self.$name.load(Relaxed),)* }
            }

            /// Prometheus text format (version 0.0.4), names prefixed `masque_`:
            /// every counter, then the gauge `masque_sessions_active`.
            pub fn render_prometheus(&self) -> String {
                let mut out = String::new();
                $(
                    let _ = writeln!(out, "# HELP masque_{} {}", stringify!($name), $help);
                    let _ = writeln!(out, "# TYPE masque_{} counter", stringify!($name));
                    let _ = writeln!(out, "masque_{} {}", stringify!($name), self.$name.load(Relaxed));
                )*
                let _ = writeln!(out, "# HELP masque_sessions_active session runtimes running now");
                let _ = writeln!(out, "# TYPE masque_sessions_active gauge");
                let _ = writeln!(out, "masque_sessions_active {}", self.active_sessions());
                self.by_transport.render(&mut out);
                self.refusals.render(&mut out);
                self.h3.render(&mut out);
                self.ip_drops.render(&mut out);
                out
            }
        }
    };
}

metrics! {
    connections_accepted: "connections (any transport) that completed their handshakes and got a router",
    connections_closed: "connections whose ConnectionRouter stopped",
    connections_idle_closed: "connections closed (after GOAWAY) for carrying no tunnel for connection_idle_timeout",
    connections_refused_limit: "connections refused: the node holds admission.max_connections",
    connections_refused_per_ip: "connections refused: their source address holds admission.max_connections_per_ip",
    handshakes_refused_limit: "connections refused: admission.max_handshakes handshakes in flight",
    quic_retries_sent: "QUIC Retry packets sent to validate a client's address under handshake load",
    tunnels_refused_node_limit: "requests refused with 503: the node holds admission.max_tunnels tunnels",
    tunnel_requests: "requests received (any method)",
    tunnels_refused: "requests answered with a non-2xx status",
    tunnels_refused_limit: "requests refused with 503 connection_limit_reached",
    tunnels_refused_auth: "requests refused with 407 for missing or invalid proxy credentials",
    tunnels_established: "tunnels that got their 2xx",
    sessions_opened: "session runtimes started (one per accepted tunnel request)",
    sessions_closed: "session runtimes ended (exactly once per opened session)",
    datagrams_from_client: "HTTP datagrams received from clients and handed to handlers",
    datagrams_dropped_unknown_context: "client datagrams for context ids the session does not know",
    datagrams_dropped_malformed: "client datagrams too short for a context id",
    datagrams_dropped_oversize: "UDP payloads over the 65527-byte limit or the socket's capacity",
    datagrams_dropped_rate: "client datagrams dropped over their tunnel's packet budget toward the target (session.datagram_rate)",
    datagrams_to_target: "UDP payloads sent to targets",
    datagrams_to_target_dropped: "UDP payloads the target socket could not take (buffer full)",
    datagrams_from_target: "UDP payloads received from targets",
    datagrams_to_client_dropped: "target payloads that could not be sent to the client",
    icmp_unreachable: "ICMP unreachable errors reported by target sockets (tunnel kept)",
    capsules_malformed: "streams reset for a malformed or oversized capsule",
    output_dropped: "handler output dropped because its queue was full",
    info_dropped: "info messages dropped because the session queue was full",
    handler_panics: "handler callbacks that panicked",
    idle_timeouts: "tunnels closed by the idle timeout",
    writes_timed_out: "streams reset because a write to the client (response, capsules) outlived session.write_deadline",
    h3_setup_timeouts: "QUIC connections closed because HTTP/3 setup outlived h3_setup_timeout",
    goaway_timeouts: "GOAWAY frames abandoned after goaway_timeout without stream credit",
    tcp_tunnels: "stream tunnels (CONNECT-TCP, classic CONNECT) that got their 2xx",
    tcp_tunnels_reset: "stream tunnels that ended abruptly (stream reset, target reset)",
    tcp_bytes_to_target: "bytes written to the targets of stream tunnels",
    tcp_bytes_from_target: "bytes read from the targets of stream tunnels",
    udp_kernel_drops: "datagrams the kernel dropped from this process's UDP sockets (QUIC listener, target sockets) before the node read them (Linux /proc/net/udp drops, sampled each second by masque-node)",
    ip_tunnels: "CONNECT-IP tunnels set up (before their 2xx)",
    ip_addresses_assigned: "CONNECT-IP address blocks assigned from the pools and registered",
    ip_address_requests_refused: "ADDRESS_REQUEST entries answered with the all-zero refusal (pool exhausted, family not served)",
    ip_packets_to_egress: "IP packets from clients sent out of the egress (TUN)",
    ip_packets_from_egress: "IP packets read from the egress (TUN) and handed to a session",
    ip_packets_to_client: "IP packets sent to clients in HTTP datagrams",
    ip_egress_no_session: "IP packets read from the egress for addresses no session holds",
    ip_egress_queue_full: "IP packets from the egress dropped: their session's queue was full",
    ip_egress_send_failed: "IP packets the egress (TUN) could not take",
    ip_icmp_rate_limited: "ICMP messages not generated: the tunnel's ICMP budget (ip_icmp_rate) was spent",
    ip_icmp_sent: "ICMP errors and echo replies the node generated for CONNECT-IP packets",
    ip_mtu_refused: "HTTP/3 CONNECT-IP tunnels aborted: their datagrams cannot carry a 1280-byte packet",
}

macro_rules! transport_counters {
    ($($name:ident: $help:literal,)*) => {
        /// Counters of one transport (HTTP/3, HTTP/2 or HTTP/1.1).
        #[derive(Debug, Default)]
        pub struct TransportCounters {
            $(#[doc = $help] pub $name: AtomicU64,)*
        }

        /// A copy of [`TransportCounters`] at one instant.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct TransportSnapshot {
            $(#[doc = $help] pub $name: u64,)*
        }

        impl TransportCounters {
            pub fn snapshot(&self) -> TransportSnapshot {
                TransportSnapshot { $($name: self.$name.load(Relaxed),)* }
            }
        }

        impl ByTransport {
            /// `masque_transport_<name>{transport="h3"}` for each counter.
            fn render(&self, out: &mut String) {
                $(
                    let _ = writeln!(out, "# HELP masque_transport_{} {} (by transport)", stringify!($name), $help);
                    let _ = writeln!(out, "# TYPE masque_transport_{} counter", stringify!($name));
                    for t in Transport::ALL {
                        let v = self.get(t).$name.load(Relaxed);
                        let _ = writeln!(out, "masque_transport_{}{{transport=\"{}\"}} {}", stringify!($name), t.as_str(), v);
                    }
                )*
            }
        }
    };
}

transport_counters! {
    connections: "connections accepted",
    requests: "requests received",
    tunnels: "tunnels that got their 2xx (101 on HTTP/1.1)",
    datagrams_from_client: "HTTP datagrams received from clients (QUIC DATAGRAM or DATAGRAM capsule)",
    datagrams_to_client: "HTTP datagrams sent to clients",
    capsules_from_client: "capsules received from clients (DATAGRAM capsules included)",
    capsules_to_client: "capsules sent to clients (DATAGRAM capsules included)",
}

/// [`TransportCounters`] for each of the three transports.
#[derive(Debug, Default)]
pub struct ByTransport {
    h3: TransportCounters,
    h2: TransportCounters,
    h1: TransportCounters,
}

impl ByTransport {
    pub fn get(&self, t: Transport) -> &TransportCounters {
        match t {
            Transport::H3 => &self.h3,
            Transport::H2 => &self.h2,
            Transport::H1 => &self.h1,
        }
    }
}

/// Refused tunnel requests, one counter per RFC 9209 error type, exposed as
/// `masque_tunnels_refused_by_error{error="connection_refused"}`.
#[derive(Debug, Default)]
pub struct Refusals {
    by_error: [AtomicU64; ProxyStatusError::ALL.len()],
}

impl Refusals {
    /// Counts one refusal answered with `failure`'s Proxy-Status error.
    pub fn count(&self, failure: TunnelFailure) {
        let (_, error) = failure.response();
        Metrics::inc(&self.by_error[error as usize]);
    }

    /// Refusals so far with `error`.
    pub fn get(&self, error: ProxyStatusError) -> u64 {
        self.by_error[error as usize].load(Relaxed)
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP masque_tunnels_refused_by_error tunnel requests refused, by Proxy-Status error"
        );
        let _ = writeln!(out, "# TYPE masque_tunnels_refused_by_error counter");
        for e in ProxyStatusError::ALL {
            let n = self.get(e);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "masque_tunnels_refused_by_error{{error=\"{}\"}} {n}",
                    e.token()
                );
            }
        }
    }
}

/// CONNECT-IP packets dropped by the forwarding rules
/// (`masque_proto::connect_ip::PacketDrop`), exposed as
/// `masque_ip_packets_dropped{reason="source_not_assigned"}`.
#[derive(Debug, Default)]
pub struct IpDrops {
    by_reason: [AtomicU64; PacketDrop::ALL.len()],
}

impl IpDrops {
    /// Counts one dropped packet.
    pub fn count(&self, reason: PacketDrop) {
        Metrics::inc(&self.by_reason[reason.index()]);
    }

    /// Drops so far for `reason`.
    pub fn get(&self, reason: PacketDrop) -> u64 {
        self.by_reason[reason.index()].load(Relaxed)
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP masque_ip_packets_dropped CONNECT-IP packets dropped by the forwarding rules, by reason"
        );
        let _ = writeln!(out, "# TYPE masque_ip_packets_dropped counter");
        for r in PacketDrop::ALL {
            let _ = writeln!(
                out,
                "masque_ip_packets_dropped{{reason=\"{}\"}} {}",
                r.label(),
                self.get(r)
            );
        }
    }
}

/// masque-h3's per-connection counters (datagram queue drops, requests
/// refused after GOAWAY, malformed requests) summed over the node: the live
/// connections' at scrape time plus what closed connections counted. A
/// connection is attached by its router and folded in when it stops; nothing
/// here is touched per packet.
#[derive(Debug, Default)]
pub struct H3Counters {
    live: std::sync::Mutex<std::collections::HashMap<u64, std::sync::Arc<masque_h3::Stats>>>,
    next: AtomicU64,
    closed: std::sync::Mutex<masque_h3::StatsSnapshot>,
}

/// One HTTP/3 connection's counters in [`H3Counters`]; folded in on drop.
#[derive(Debug)]
pub struct H3Attached {
    id: u64,
    owner: std::sync::Arc<Metrics>,
}

impl Drop for H3Attached {
    fn drop(&mut self) {
        let h3 = &self.owner.h3;
        let gone = lock(&h3.live).remove(&self.id);
        if let Some(stats) = gone {
            add(&mut lock(&h3.closed), &stats.snapshot());
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn add(to: &mut masque_h3::StatsSnapshot, s: &masque_h3::StatsSnapshot) {
    to.datagrams_received += s.datagrams_received;
    to.datagrams_dropped_queue_full += s.datagrams_dropped_queue_full;
    to.datagrams_dropped_unknown_stream += s.datagrams_dropped_unknown_stream;
    to.datagrams_sent += s.datagrams_sent;
    to.datagrams_refused_too_large += s.datagrams_refused_too_large;
    to.datagrams_refused_buffer_full += s.datagrams_refused_buffer_full;
    to.requests_rejected_goaway += s.requests_rejected_goaway;
    to.requests_malformed += s.requests_malformed;
}

impl H3Counters {
    /// Reports `stats` (a connection's) until the returned guard drops.
    pub fn attach(
        metrics: &std::sync::Arc<Metrics>,
        stats: std::sync::Arc<masque_h3::Stats>,
    ) -> H3Attached {
        let id = metrics.h3.next.fetch_add(1, Relaxed);
        lock(&metrics.h3.live).insert(id, stats);
        H3Attached {
            id,
            owner: std::sync::Arc::clone(metrics),
        }
    }

    /// The sum over every HTTP/3 connection so far.
    pub fn snapshot(&self) -> masque_h3::StatsSnapshot {
        let mut total = *lock(&self.closed);
        for s in lock(&self.live).values() {
            add(&mut total, &s.snapshot());
        }
        total
    }

    fn render(&self, out: &mut String) {
        let s = self.snapshot();
        for (name, help, v) in [
            (
                "h3_datagrams_dropped_queue_full",
                "HTTP/3 datagrams dropped: their tunnel's receive queue was full",
                s.datagrams_dropped_queue_full,
            ),
            (
                "h3_datagrams_dropped_unknown_stream",
                "HTTP/3 datagrams for no open tunnel (quarter stream id unknown)",
                s.datagrams_dropped_unknown_stream,
            ),
            (
                "h3_datagrams_refused_buffer_full",
                "HTTP/3 datagrams not sent: QUIC's datagram send buffer was full",
                s.datagrams_refused_buffer_full,
            ),
            (
                "h3_datagrams_refused_too_large",
                "HTTP/3 datagrams not sent: larger than the path allows",
                s.datagrams_refused_too_large,
            ),
            (
                "h3_requests_rejected_goaway",
                "HTTP/3 requests refused for arriving after our GOAWAY",
                s.requests_rejected_goaway,
            ),
            (
                "h3_requests_malformed",
                "HTTP/3 requests reset as malformed (H3_MESSAGE_ERROR)",
                s.requests_malformed,
            ),
        ] {
            let _ = writeln!(out, "# HELP masque_{name} {help}");
            let _ = writeln!(out, "# TYPE masque_{name} counter");
            let _ = writeln!(out, "masque_{name} {v}");
        }
    }
}

impl Metrics {
    /// The counters of transport `t`.
    pub fn transport(&self, t: Transport) -> &TransportCounters {
        self.by_transport.get(t)
    }

    #[inline]
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    #[inline]
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    /// Sessions currently running.
    pub fn active_sessions(&self) -> u64 {
        let s = self.snapshot();
        s.sessions_opened.saturating_sub(s.sessions_closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_lists_every_counter() {
        let m = Metrics::default();
        Metrics::inc(&m.sessions_opened);
        let text = m.render_prometheus();
        assert!(text.contains("masque_sessions_opened 1\n"));
        assert!(text.contains("# TYPE masque_idle_timeouts counter"));
        assert!(text.contains("# TYPE masque_sessions_active gauge\nmasque_sessions_active 1\n"));
        assert_eq!(m.active_sessions(), 1);
        Metrics::inc(&m.transport(Transport::H2).tunnels);
        let text = m.render_prometheus();
        assert!(
            text.contains("masque_transport_tunnels{transport=\"h2\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("masque_transport_tunnels{transport=\"h1\"} 0\n"));
        m.refusals.count(TunnelFailure::ConnectionRefused);
        let text = m.render_prometheus();
        assert!(
            text.contains("masque_tunnels_refused_by_error{error=\"connection_refused\"} 1\n"),
            "{text}"
        );
    }
}
