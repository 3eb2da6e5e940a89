//! Node configuration: built-in defaults < TOML file (`--config`) < flags.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use masque_server::{
    IpProxyConfig,
    admission::AdmissionLimits,
    config::{DEFAULT_QUIC_SOCKET_BUFFER, TcpListen},
    ip::IpPrefix,
    policy::TargetRule,
    resolver::LookupLimits,
    session::budget::PacketRate,
};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Flags of the proxy (also settable in the TOML file given by `--config`,
/// with the same names in snake_case).
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below; flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// UDP address of the HTTP/3 listener [default: 127.0.0.1:4433].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// TCP address of the TLS listener serving HTTP/2 and HTTP/1.1 (by ALPN)
    /// [default: the --listen address and port number; with port 0 the port
    /// HTTP/3 got, if free on TCP].
    #[arg(long, value_name = "ADDR", conflicts_with = "no_tcp")]
    pub tcp_listen: Option<SocketAddr>,
    /// Serve HTTP/3 only: no TLS/TCP listener (no HTTP/2, no HTTP/1.1).
    #[arg(long)]
    pub no_tcp: bool,
    /// PEM certificate chain; without it a self-signed development certificate
    /// is generated on first run in the state directory and reused.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Allow loopback, private and link-local targets (testing, private networks).
    #[arg(long)]
    pub allow_private: bool,
    /// Allow targets in CIDR[:PORTS] (e.g. 10.1.0.0/16:53, [fd00::1]:443,
    /// 192.0.2.0/24:1000-2000,3000), even inside loopback or private ranges;
    /// never the node's own listeners, multicast or broadcast. Repeatable;
    /// replaces the file's list. Order: docs/use/hardening.md.
    #[arg(long, value_name = "CIDR[:PORTS]")]
    pub allow_target: Vec<TargetRule>,
    /// Refuse targets in CIDR[:PORTS] (403 destination_ip_prohibited); beats
    /// --allow-target and --allow-private. Repeatable; replaces the file's list.
    #[arg(long, value_name = "CIDR[:PORTS]")]
    pub deny_target: Vec<TargetRule>,
    /// Tunnels one client connection may hold; more get 503 [default: 100].
    #[arg(long, value_name = "N")]
    pub max_tunnels_per_connection: Option<usize>,
    /// Connections the node holds in all, every transport; more are refused
    /// (the TLS listener stops accepting) [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Connections from one source address [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Handshakes (QUIC or TLS, up to the HTTP SETTINGS) in flight [default: 512].
    #[arg(long, value_name = "N")]
    pub max_handshakes: Option<usize>,
    /// Above this many QUIC handshakes in flight, clients with an unvalidated
    /// address get a QUIC Retry first; 0 = always [default: 64].
    #[arg(long, value_name = "N")]
    pub retry_above_handshakes: Option<usize>,
    /// Tunnels the node holds in all; more get 503 [default: 100000].
    #[arg(long, value_name = "N")]
    pub max_tunnels: Option<usize>,
    /// Seconds a connection may carry no tunnel before it gets GOAWAY and is
    /// closed; 0 = never [default: 120].
    #[arg(long, value_name = "SECS")]
    pub connection_idle_timeout: Option<u64>,
    /// DNS lookups in flight on the node; more get 503 at once [default: 64].
    #[arg(long, value_name = "N")]
    pub max_dns_lookups: Option<usize>,
    /// DNS lookups in flight for one client connection [default: 8].
    #[arg(long, value_name = "N")]
    pub max_dns_lookups_per_connection: Option<usize>,
    /// Log format [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Where the development certificate lives [default: $XDG_STATE_HOME/masque-node
    /// or ~/.local/state/masque-node].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Seconds without traffic before a tunnel is closed [default: 300].
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<u64>,
    /// Seconds open tunnels may drain on SIGINT/SIGTERM [default: 10].
    #[arg(long, value_name = "SECS")]
    pub drain_timeout: Option<u64>,
    /// Seconds for the TCP handshake with a TCP tunnel's target, over all its
    /// addresses; past it 504 connection_timeout [default: 10].
    #[arg(long, value_name = "SECS")]
    pub tcp_connect_timeout: Option<u64>,
    /// Seconds one write of a TCP tunnel may wait, to the client for stream
    /// credit or to the target for TCP window, before the tunnel is reset
    /// [default: 60].
    #[arg(long, value_name = "SECS")]
    pub stream_write_timeout: Option<u64>,
    /// Seconds a half-closed TCP tunnel (one direction finished) may carry
    /// nothing before it is closed [default: 60].
    #[arg(long, value_name = "SECS")]
    pub half_closed_timeout: Option<u64>,
    /// Relay: open every accepted tunnel again through this next-hop proxy
    /// (`https://host[:port]`) instead of reaching targets directly.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// Trust this PEM CA (or self-signed certificate) for the next hop.
    #[arg(long, value_name = "PEM", conflicts_with = "upstream_pin")]
    pub upstream_ca: Option<PathBuf>,
    /// Accept exactly the next hop's certificate with this SHA-256 (hex).
    #[arg(long, value_name = "SHA256")]
    pub upstream_pin: Option<String>,
    /// File with the bearer token for the next hop.
    #[arg(long, value_name = "FILE")]
    pub upstream_auth_token_file: Option<PathBuf>,
    /// HTTP version to the next hop [default: auto].
    #[arg(long, value_enum)]
    pub upstream_transport: Option<masque_node::client_args::TransportArg>,
    /// This node's name in Proxy-Status and, when relaying, in Via (loop
    /// detection) [default: masque-node; when relaying, masque- and a hash of
    /// the host name and listen address, distinct per node].
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// CONNECT-IP address pool, CIDR (repeatable, IPv4 and IPv6): clients'
    /// ADDRESS_REQUESTs are answered from it; the node keeps each pool's
    /// first host address. Without a pool CONNECT-IP is answered 501.
    #[arg(long = "ip-pool", value_name = "CIDR")]
    pub ip_pool: Vec<IpPrefix>,
    /// CONNECT-IP egress: create this TUN device, holding the node's address
    /// in each pool; packets of IP tunnels leave and arrive through it. Needs
    /// CAP_NET_ADMIN; see docs/use/vpn.md for forwarding and NAT.
    #[arg(long, value_name = "NAME")]
    pub ip_tun: Option<String>,
    /// MTU of the TUN device [default: 1500].
    #[arg(long, value_name = "BYTES")]
    pub ip_tun_mtu: Option<u16>,
    /// Route advertised to CONNECT-IP clients, CIDR (repeatable) [default:
    /// the tunnel's scope].
    #[arg(long = "ip-route", value_name = "CIDR")]
    pub ip_route: Vec<IpPrefix>,
    /// Packets queued for one CONNECT-IP tunnel from the TUN; more are
    /// dropped and counted [default: 512].
    #[arg(long, value_name = "N")]
    pub ip_tunnel_queue: Option<usize>,
    /// ADDRESS_REQUEST entries of one tunnel waiting for an answer; more are
    /// refused at once [default: 64].
    #[arg(long, value_name = "N")]
    pub ip_max_pending_requests: Option<usize>,
    /// ICMP messages per second one CONNECT-IP tunnel may make the node
    /// generate (errors, echo replies), bursts of half as many; 0 = unlimited
    /// [default: 100].
    #[arg(long, value_name = "PPS")]
    pub ip_icmp_rate: Option<u32>,
    /// Datagrams per second one UDP tunnel may send toward its target; more
    /// are dropped and counted; 0 = unlimited [default: 200000].
    #[arg(long, value_name = "PPS")]
    pub datagram_rate: Option<u32>,
    /// Datagrams one UDP tunnel may send at once above that rate
    /// [default: 20000].
    #[arg(long, value_name = "N")]
    pub datagram_burst: Option<u32>,
    /// Receive buffer asked for the QUIC socket, in bytes; the kernel caps it
    /// at net.core.rmem_max [default: 4194304].
    #[arg(long, value_name = "BYTES")]
    pub quic_recv_buffer: Option<usize>,
    /// Send buffer asked for the QUIC socket, in bytes; the kernel caps it at
    /// net.core.wmem_max [default: 4194304].
    #[arg(long, value_name = "BYTES")]
    pub quic_send_buffer: Option<usize>,
    /// TCP address serving the node's counters for Prometheus at
    /// http://ADDR/metrics [default: off].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Require `Proxy-Authorization: Bearer <token>` with one of the tokens in
    /// this file (one per line, # comments; at least 22 characters each;
    /// SIGHUP reloads it) [default: no authentication].
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    tcp_listen: Option<SocketAddr>,
    no_tcp: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    allow_private: Option<bool>,
    allow_target: Option<Vec<String>>,
    deny_target: Option<Vec<String>>,
    max_tunnels_per_connection: Option<usize>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    max_handshakes: Option<usize>,
    retry_above_handshakes: Option<usize>,
    max_tunnels: Option<usize>,
    connection_idle_timeout: Option<u64>,
    max_dns_lookups: Option<usize>,
    max_dns_lookups_per_connection: Option<usize>,
    log_format: Option<LogFormat>,
    state_dir: Option<PathBuf>,
    idle_timeout: Option<u64>,
    drain_timeout: Option<u64>,
    tcp_connect_timeout: Option<u64>,
    stream_write_timeout: Option<u64>,
    half_closed_timeout: Option<u64>,
    datagram_rate: Option<u32>,
    datagram_burst: Option<u32>,
    ip_pool: Option<Vec<String>>,
    ip_tun: Option<String>,
    ip_tun_mtu: Option<u16>,
    ip_route: Option<Vec<String>>,
    ip_tunnel_queue: Option<usize>,
    ip_max_pending_requests: Option<usize>,
    ip_icmp_rate: Option<u32>,
    quic_recv_buffer: Option<usize>,
    quic_send_buffer: Option<usize>,
    metrics_listen: Option<SocketAddr>,
    auth_token_file: Option<PathBuf>,
}

/// CIDR prefixes from the configuration file.
fn prefixes(name: &str, values: Option<Vec<String>>) -> Result<Vec<IpPrefix>> {
    values
        .unwrap_or_default()
        .iter()
        .map(|v| v.parse().with_context(|| format!("{name}: `{v}`")))
        .collect()
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub listen: SocketAddr,
    pub tcp_listen: TcpListen,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub allow_private: bool,
    /// `--allow-target` (flags, else the file's `allow_target`).
    pub allow_target: Vec<TargetRule>,
    /// `--deny-target` (flags, else the file's `deny_target`).
    pub deny_target: Vec<TargetRule>,
    pub max_tunnels_per_connection: usize,
    /// `--max-connections`, `--max-handshakes`, `--max-tunnels` and co.
    pub admission: AdmissionLimits,
    /// `--connection-idle-timeout` (`None`: 0, never).
    pub connection_idle_timeout: Option<Duration>,
    /// `--max-dns-lookups`, `--max-dns-lookups-per-connection`.
    pub lookups: LookupLimits,
    pub log_format: LogFormat,
    pub state_dir: PathBuf,
    pub idle_timeout: Duration,
    pub drain_timeout: Duration,
    /// `--tcp-connect-timeout`.
    pub tcp_connect_timeout: Duration,
    /// `--stream-write-timeout`.
    pub stream_write_timeout: Duration,
    /// `--half-closed-timeout`.
    pub half_closed_timeout: Duration,
    /// `--datagram-rate`, `--datagram-burst` (`None`: unlimited).
    pub datagram_rate: Option<PacketRate>,
    /// `--ip-pool` (flags, else the file's `ip_pool`).
    pub ip_pool: Vec<IpPrefix>,
    /// `--ip-tun`.
    pub ip_tun: Option<String>,
    /// `--ip-tun-mtu`.
    pub ip_tun_mtu: u16,
    /// `--ip-route` (empty: the scope).
    pub ip_route: Vec<IpPrefix>,
    /// `--ip-tunnel-queue`.
    pub ip_tunnel_queue: usize,
    /// `--ip-max-pending-requests`.
    pub ip_max_pending_requests: usize,
    /// `--ip-icmp-rate` (`None`: unlimited).
    pub ip_icmp_rate: Option<PacketRate>,
    pub quic_recv_buffer: usize,
    pub quic_send_buffer: usize,
    pub metrics_listen: Option<SocketAddr>,
    pub auth_token_file: Option<PathBuf>,
}

impl NodeConfig {
    pub fn resolve(args: &ServeArgs) -> Result<Self> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let tls = match (
            args.tls_cert.clone().or(file.tls_cert),
            args.tls_key.clone().or(file.tls_key),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => bail!("tls_cert and tls_key must be given together"),
        };
        let max_tunnels = args
            .max_tunnels_per_connection
            .or(file.max_tunnels_per_connection)
            .unwrap_or(100);
        if max_tunnels == 0 {
            bail!("max_tunnels_per_connection must be at least 1");
        }
        if file.no_tcp == Some(true) && file.tcp_listen.is_some() {
            bail!("tcp_listen and no_tcp = true contradict each other");
        }
        // Either flag beats the file.
        let tcp_listen = if args.no_tcp {
            TcpListen::Off
        } else if let Some(addr) = args.tcp_listen {
            TcpListen::At(addr)
        } else if file.no_tcp == Some(true) {
            TcpListen::Off
        } else {
            file.tcp_listen.map_or(TcpListen::SameAsH3, TcpListen::At)
        };
        let allow_target = target_rules("allow_target", &args.allow_target, &file.allow_target)?;
        let deny_target = target_rules("deny_target", &args.deny_target, &file.deny_target)?;
        let admission_defaults = AdmissionLimits::default();
        let admission = AdmissionLimits {
            max_connections: at_least_one(
                "max_connections",
                args.max_connections.or(file.max_connections),
                admission_defaults.max_connections,
            )?,
            max_connections_per_ip: at_least_one(
                "max_connections_per_ip",
                args.max_connections_per_ip.or(file.max_connections_per_ip),
                admission_defaults.max_connections_per_ip,
            )?,
            max_handshakes: at_least_one(
                "max_handshakes",
                args.max_handshakes.or(file.max_handshakes),
                admission_defaults.max_handshakes,
            )?,
            // 0 is meaningful: a Retry for every unvalidated address.
            retry_above_handshakes: args
                .retry_above_handshakes
                .or(file.retry_above_handshakes)
                .unwrap_or(admission_defaults.retry_above_handshakes),
            max_tunnels: at_least_one(
                "max_tunnels",
                args.max_tunnels.or(file.max_tunnels),
                admission_defaults.max_tunnels,
            )?,
        };
        let connection_idle_timeout = match args
            .connection_idle_timeout
            .or(file.connection_idle_timeout)
        {
            Some(0) => None,
            Some(secs) => Some(Duration::from_secs(secs)),
            None => masque_server::ServerConfig::default().connection_idle_timeout,
        };
        let lookup_defaults = LookupLimits::default();
        let lookups = LookupLimits {
            max_concurrent_lookups: at_least_one(
                "max_dns_lookups",
                args.max_dns_lookups.or(file.max_dns_lookups),
                lookup_defaults.max_concurrent_lookups,
            )?,
            max_concurrent_lookups_per_connection: at_least_one(
                "max_dns_lookups_per_connection",
                args.max_dns_lookups_per_connection
                    .or(file.max_dns_lookups_per_connection),
                lookup_defaults.max_concurrent_lookups_per_connection,
            )?,
        };
        let idle = args.idle_timeout.or(file.idle_timeout).unwrap_or(300);
        if idle == 0 {
            bail!("idle_timeout must be at least 1 second");
        }
        let secs = |name: &str, v: Option<u64>, default: u64| -> Result<Duration> {
            match v.unwrap_or(default) {
                0 => bail!("{name} must be at least 1 second"),
                n => Ok(Duration::from_secs(n)),
            }
        };
        let tcp_connect_timeout = secs(
            "tcp_connect_timeout",
            args.tcp_connect_timeout.or(file.tcp_connect_timeout),
            10,
        )?;
        let stream_write_timeout = secs(
            "stream_write_timeout",
            args.stream_write_timeout.or(file.stream_write_timeout),
            60,
        )?;
        let half_closed_timeout = secs(
            "half_closed_timeout",
            args.half_closed_timeout.or(file.half_closed_timeout),
            60,
        )?;
        let rate_default = PacketRate::default();
        let datagram_rate = match args
            .datagram_rate
            .or(file.datagram_rate)
            .unwrap_or(rate_default.per_second)
        {
            0 => None,
            per_second => Some(PacketRate {
                per_second,
                burst: at_least_one(
                    "datagram_burst",
                    args.datagram_burst
                        .or(file.datagram_burst)
                        .map(|b| b as usize),
                    rate_default.burst as usize,
                )?
                .try_into()
                .unwrap_or(u32::MAX),
            }),
        };
        Ok(Self {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 4433))),
            tcp_listen,
            tls,
            allow_private: args.allow_private || file.allow_private.unwrap_or(false),
            allow_target,
            deny_target,
            max_tunnels_per_connection: max_tunnels,
            admission,
            connection_idle_timeout,
            lookups,
            log_format: args
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            state_dir: args
                .state_dir
                .clone()
                .or(file.state_dir)
                .unwrap_or_else(default_state_dir),
            idle_timeout: Duration::from_secs(idle),
            tcp_connect_timeout,
            stream_write_timeout,
            half_closed_timeout,
            datagram_rate,
            ip_pool: if args.ip_pool.is_empty() {
                prefixes("ip_pool", file.ip_pool)?
            } else {
                args.ip_pool.clone()
            },
            ip_tun: args.ip_tun.clone().or(file.ip_tun),
            ip_tun_mtu: match args.ip_tun_mtu.or(file.ip_tun_mtu).unwrap_or(1500) {
                m if m < 1280 => bail!("ip_tun_mtu must be at least 1280 (RFC 9484 §7.2)"),
                m => m,
            },
            ip_route: if args.ip_route.is_empty() {
                prefixes("ip_route", file.ip_route)?
            } else {
                args.ip_route.clone()
            },
            ip_tunnel_queue: at_least_one(
                "ip_tunnel_queue",
                args.ip_tunnel_queue.or(file.ip_tunnel_queue),
                IpProxyConfig::default().tunnel_queue,
            )?,
            ip_max_pending_requests: at_least_one(
                "ip_max_pending_requests",
                args.ip_max_pending_requests
                    .or(file.ip_max_pending_requests),
                IpProxyConfig::default().max_pending_requests,
            )?,
            ip_icmp_rate: match args.ip_icmp_rate.or(file.ip_icmp_rate) {
                Some(0) => None,
                Some(per_second) => Some(PacketRate {
                    per_second,
                    burst: (per_second / 2).max(1),
                }),
                None => IpProxyConfig::default().icmp_rate,
            },
            drain_timeout: Duration::from_secs(
                args.drain_timeout.or(file.drain_timeout).unwrap_or(10),
            ),
            quic_recv_buffer: args
                .quic_recv_buffer
                .or(file.quic_recv_buffer)
                .unwrap_or(DEFAULT_QUIC_SOCKET_BUFFER),
            quic_send_buffer: args
                .quic_send_buffer
                .or(file.quic_send_buffer)
                .unwrap_or(DEFAULT_QUIC_SOCKET_BUFFER),
            metrics_listen: args.metrics_listen.or(file.metrics_listen),
            auth_token_file: args.auth_token_file.clone().or(file.auth_token_file),
        })
    }
}

/// A count given (flag, else file) or its default; 0 is refused (it would
/// refuse everything).
fn at_least_one(key: &str, given: Option<usize>, default: usize) -> Result<usize> {
    match given {
        Some(0) => bail!("{key} must be at least 1"),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

/// A target rule list: the flags if any were given, else the file's.
fn target_rules(
    key: &str,
    flags: &[TargetRule],
    file: &Option<Vec<String>>,
) -> Result<Vec<TargetRule>> {
    if !flags.is_empty() {
        return Ok(flags.to_vec());
    }
    file.iter()
        .flatten()
        .map(|s| {
            s.parse::<TargetRule>()
                .with_context(|| format!("{key} in the config file"))
        })
        .collect()
}

fn load_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("masque-node");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/state/masque-node"),
        None => PathBuf::from(".masque-node"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = NodeConfig::resolve(&ServeArgs::default()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:4433".parse().unwrap());
        assert_eq!(c.tcp_listen, TcpListen::SameAsH3, "TCP on the same port");
        assert_eq!(c.max_tunnels_per_connection, 100);
        assert!(!c.allow_private);
        assert_eq!(c.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.quic_recv_buffer, 4 << 20);
        assert_eq!(c.quic_send_buffer, 4 << 20);
        assert_eq!(c.metrics_listen, None, "no metrics listener unless asked");
        assert!(c.allow_target.is_empty() && c.deny_target.is_empty());
        assert_eq!(c.admission, AdmissionLimits::default());
        assert_eq!(c.connection_idle_timeout, Some(Duration::from_secs(120)));
        assert_eq!(c.lookups, LookupLimits::default());
    }

    /// CONNECT-IP settings: TOML keys, flags over the file, a bad pool and a
    /// TUN MTU under 1280 refused with the key named.
    #[test]
    fn connect_ip_file_then_flags() {
        let dir = std::env::temp_dir().join(format!("masque-node-ip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.toml");
        std::fs::write(
            &path,
            "ip_pool = [\"10.200.0.0/24\", \"fd00:200::/64\"]\nip_tun = \"mq0\"\n\
             ip_route = [\"10.82.0.0/24\"]\nip_tunnel_queue = 64\n",
        )
        .unwrap();
        let mut args = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = NodeConfig::resolve(&args).unwrap();
        let shown: Vec<String> = c.ip_pool.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.200.0.0/24", "fd00:200::/64"]);
        assert_eq!(c.ip_tun.as_deref(), Some("mq0"));
        assert_eq!(c.ip_route.len(), 1);
        assert_eq!((c.ip_tun_mtu, c.ip_tunnel_queue), (1500, 64));
        assert_eq!(c.ip_max_pending_requests, 64, "the default");
        args.ip_pool = vec!["10.9.0.0/16".parse().unwrap()];
        args.ip_tun_mtu = Some(1400);
        let c = NodeConfig::resolve(&args).unwrap();
        assert_eq!(c.ip_pool.len(), 1, "flags replace the file's pools");
        assert_eq!(c.ip_tun_mtu, 1400);
        args.ip_tun_mtu = Some(1000);
        let e = format!("{:#}", NodeConfig::resolve(&args).unwrap_err());
        assert!(e.contains("1280"), "{e}");
        std::fs::write(&path, "ip_pool = [\"10.200.0.1/24\"]\n").unwrap();
        let e = format!(
            "{:#}",
            NodeConfig::resolve(&ServeArgs {
                config: Some(path.clone()),
                ..Default::default()
            })
            .unwrap_err()
        );
        assert!(e.contains("ip_pool") && e.contains("host bits"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The admission, connection idle and DNS limits: TOML keys, flags over
    /// the file, 0 refused where it would refuse everything.
    #[test]
    fn limits_file_then_flags() {
        let dir = std::env::temp_dir().join(format!("masque-node-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.toml");
        std::fs::write(
            &path,
            "max_connections = 50\nmax_connections_per_ip = 5\nmax_handshakes = 20\n\
             retry_above_handshakes = 0\nmax_tunnels = 500\nconnection_idle_timeout = 0\n\
             max_dns_lookups = 16\nmax_dns_lookups_per_connection = 2\n",
        )
        .unwrap();
        let mut args = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = NodeConfig::resolve(&args).unwrap();
        assert_eq!(
            c.admission,
            AdmissionLimits {
                max_connections: 50,
                max_connections_per_ip: 5,
                max_handshakes: 20,
                retry_above_handshakes: 0,
                max_tunnels: 500,
            }
        );
        assert_eq!(c.connection_idle_timeout, None, "0 = never");
        assert_eq!(
            c.lookups,
            LookupLimits {
                max_concurrent_lookups: 16,
                max_concurrent_lookups_per_connection: 2,
            }
        );
        args.max_connections = Some(7);
        args.max_connections_per_ip = Some(3);
        args.max_handshakes = Some(4);
        args.retry_above_handshakes = Some(2);
        args.max_tunnels = Some(9);
        args.connection_idle_timeout = Some(30);
        args.max_dns_lookups = Some(6);
        args.max_dns_lookups_per_connection = Some(1);
        let c = NodeConfig::resolve(&args).unwrap();
        assert_eq!(
            c.admission,
            AdmissionLimits {
                max_connections: 7,
                max_connections_per_ip: 3,
                max_handshakes: 4,
                retry_above_handshakes: 2,
                max_tunnels: 9,
            },
            "flags override the file"
        );
        assert_eq!(c.connection_idle_timeout, Some(Duration::from_secs(30)));
        assert_eq!(
            c.lookups,
            LookupLimits {
                max_concurrent_lookups: 6,
                max_concurrent_lookups_per_connection: 1,
            }
        );
        for key in [
            "max_connections",
            "max_connections_per_ip",
            "max_handshakes",
            "max_tunnels",
            "max_dns_lookups",
            "max_dns_lookups_per_connection",
        ] {
            std::fs::write(&path, format!("{key} = 0\n")).unwrap();
            let e = format!(
                "{:#}",
                NodeConfig::resolve(&ServeArgs {
                    config: Some(path.clone()),
                    ..Default::default()
                })
                .unwrap_err()
            );
            assert!(e.contains(key) && e.contains("at least 1"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The TCP-tunnel limits: defaults, the file, flags over the file, and
    /// 0 refused.
    #[test]
    fn tcp_limits_file_then_flags() {
        let c = NodeConfig::resolve(&ServeArgs::default()).unwrap();
        assert_eq!(
            (
                c.tcp_connect_timeout,
                c.stream_write_timeout,
                c.half_closed_timeout
            ),
            (
                Duration::from_secs(10),
                Duration::from_secs(60),
                Duration::from_secs(60)
            )
        );
        let dir = std::env::temp_dir().join(format!("masque-node-tcp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.toml");
        std::fs::write(
            &path,
            "tcp_connect_timeout = 3\nstream_write_timeout = 20\nhalf_closed_timeout = 7\n",
        )
        .unwrap();
        let mut args = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        let c = NodeConfig::resolve(&args).unwrap();
        assert_eq!(
            (
                c.tcp_connect_timeout,
                c.stream_write_timeout,
                c.half_closed_timeout
            ),
            (
                Duration::from_secs(3),
                Duration::from_secs(20),
                Duration::from_secs(7)
            )
        );
        args.half_closed_timeout = Some(9);
        let c = NodeConfig::resolve(&args).unwrap();
        assert_eq!(c.half_closed_timeout, Duration::from_secs(9));
        assert_eq!(c.datagram_rate, Some(PacketRate::default()));
        args.datagram_rate = Some(1000);
        args.datagram_burst = Some(50);
        let c = NodeConfig::resolve(&args).unwrap();
        assert_eq!(
            c.datagram_rate,
            Some(PacketRate {
                per_second: 1000,
                burst: 50
            })
        );
        args.datagram_rate = Some(0);
        assert_eq!(NodeConfig::resolve(&args).unwrap().datagram_rate, None);
        args.tcp_connect_timeout = Some(0);
        assert!(NodeConfig::resolve(&args).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `allow_target` / `deny_target`: TOML lists, replaced by the flags;
    /// a malformed rule is a start-up error naming the key.
    #[test]
    fn target_rules_file_then_flags() {
        let dir = std::env::temp_dir().join(format!("masque-node-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.toml");
        std::fs::write(
            &path,
            "allow_target = [\"10.1.0.0/16:53\", \"[fd00::1]:443\"]\ndeny_target = [\"10.1.2.0/24\"]\n",
        )
        .unwrap();
        let mut args = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = NodeConfig::resolve(&args).unwrap();
        let shown = |v: &[TargetRule]| v.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        assert_eq!(
            shown(&c.allow_target),
            ["10.1.0.0/16:53", "fd00::1/128:443"]
        );
        assert_eq!(shown(&c.deny_target), ["10.1.2.0/24"]);
        args.deny_target = vec!["192.0.2.0/24:1000-2000".parse().unwrap()];
        let c = NodeConfig::resolve(&args).unwrap();
        assert_eq!(
            shown(&c.deny_target),
            ["192.0.2.0/24:1000-2000"],
            "flags replace"
        );
        assert_eq!(c.allow_target.len(), 2, "the file's allow list stays");
        std::fs::write(&path, "deny_target = [\"10.0.0.1/8\"]\n").unwrap();
        args.deny_target.clear();
        let e = format!("{:#}", NodeConfig::resolve(&args).unwrap_err());
        assert!(e.contains("deny_target") && e.contains("host bits"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn file_then_flags() {
        let dir = std::env::temp_dir().join(format!("masque-node-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\nallow_private = true\nmax_tunnels_per_connection = 7\nlog_format = \"json\"\nquic_recv_buffer = 1048576\nmetrics_listen = \"127.0.0.1:9100\"\n",
        )
        .unwrap();
        let mut args = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = NodeConfig::resolve(&args).unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert!(c.allow_private);
        assert_eq!(c.max_tunnels_per_connection, 7);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.quic_recv_buffer, 1 << 20);
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9100".parse().unwrap()));
        args.quic_recv_buffer = Some(2 << 20);
        assert_eq!(
            NodeConfig::resolve(&args).unwrap().quic_recv_buffer,
            2 << 20
        );
        args.max_tunnels_per_connection = Some(3);
        assert_eq!(
            NodeConfig::resolve(&args)
                .unwrap()
                .max_tunnels_per_connection,
            3
        );
        assert_eq!(c.tcp_listen, TcpListen::SameAsH3);
        args.tcp_listen = Some("127.0.0.1:8443".parse().unwrap());
        assert_eq!(
            NodeConfig::resolve(&args).unwrap().tcp_listen,
            TcpListen::At("127.0.0.1:8443".parse().unwrap())
        );
        args.tcp_listen = None;
        args.no_tcp = true;
        assert_eq!(
            NodeConfig::resolve(&args).unwrap().tcp_listen,
            TcpListen::Off
        );
        args.no_tcp = false;
        std::fs::write(&path, "tcp_listen = \"127.0.0.1:9443\"\n").unwrap();
        assert_eq!(
            NodeConfig::resolve(&args).unwrap().tcp_listen,
            TcpListen::At("127.0.0.1:9443".parse().unwrap())
        );
        args.no_tcp = true;
        assert_eq!(
            NodeConfig::resolve(&args).unwrap().tcp_listen,
            TcpListen::Off,
            "the flag overrides the file"
        );
        args.no_tcp = false;
        std::fs::write(&path, "no_tcp = true\n").unwrap();
        assert_eq!(
            NodeConfig::resolve(&args).unwrap().tcp_listen,
            TcpListen::Off
        );
        args.tcp_listen = Some("127.0.0.1:8443".parse().unwrap());
        assert_eq!(
            NodeConfig::resolve(&args).unwrap().tcp_listen,
            TcpListen::At("127.0.0.1:8443".parse().unwrap()),
            "the flag overrides the file"
        );
        args.tcp_listen = None;
        std::fs::write(&path, "no_tcp = true\ntcp_listen = \"127.0.0.1:9443\"\n").unwrap();
        assert!(NodeConfig::resolve(&args).is_err(), "contradiction refused");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\nbogus = 1\n").unwrap();
        assert!(
            NodeConfig::resolve(&args).is_err(),
            "unknown keys are refused"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
