//! The proxy: resolve configuration, load or generate the certificate, start
//! the node, print how to use it, and shut down gracefully on SIGINT/SIGTERM.

use std::{net::IpAddr, sync::Arc};

use anyhow::{Context, Result};
use masque_server::{
    IpProxy, IpProxyConfig, Node, Proxy, ProxyAuth, ServerConfig, SessionConfig, TcpProxyConfig,
    UdpProxyConfig,
    config::TcpListen,
    ip::TunEgress,
    policy::{AddressPolicy, OwnListeners, TargetRules},
};
use masque_transport::tls::{DevCert, ServerTls, format_fingerprint_colon};

use masque_node::{
    client_args::{ClientArgs, TransportArg},
    relay::{RelayProxy, Upstream, default_identity},
};

use crate::{
    config::{LogFormat, NodeConfig, ServeArgs},
    metrics_endpoint::MetricsEndpoint,
};

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The next hop and this node's Via identity, when relaying (`--upstream`).
fn relay(args: &ServeArgs, cfg: &NodeConfig) -> Result<Option<(Upstream, String)>> {
    let Some(url) = &args.upstream else {
        return Ok(None);
    };
    let client = ClientArgs {
        proxy: url.clone(),
        ca: args.upstream_ca.clone(),
        pin: args.upstream_pin.clone(),
        insecure: false,
        auth_token_file: args.upstream_auth_token_file.clone(),
        transport: args.upstream_transport.unwrap_or(TransportArg::Auto),
    };
    let upstream = Upstream::new(url, client.options()?)?;
    let identity = args
        .node_name
        .clone()
        .unwrap_or_else(|| default_identity(cfg.listen));
    Ok(Some((upstream, identity)))
}

/// CONNECT-IP (`--ip-pool`), with the TUN egress (`--ip-tun`) it needs.
fn ip_proxy(cfg: &NodeConfig) -> Result<Option<IpProxy>> {
    if cfg.ip_pool.is_empty() {
        if cfg.ip_tun.is_some() {
            anyhow::bail!("--ip-tun needs at least one --ip-pool");
        }
        return Ok(None);
    }
    let Some(name) = &cfg.ip_tun else {
        anyhow::bail!("--ip-pool needs an egress for the packets: --ip-tun NAME");
    };
    let tun = TunEgress::create(name, cfg.ip_tun_mtu, &cfg.ip_pool).with_context(|| {
        format!("creating TUN device {name} (needs CAP_NET_ADMIN and /dev/net/tun)")
    })?;
    let config = IpProxyConfig {
        pools: cfg.ip_pool.clone(),
        routes: (!cfg.ip_route.is_empty()).then(|| cfg.ip_route.clone()),
        tunnel_queue: cfg.ip_tunnel_queue,
        max_pending_requests: cfg.ip_max_pending_requests,
        icmp_rate: cfg.ip_icmp_rate,
        ..Default::default()
    };
    for pool in &config.pools {
        tracing::info!(%pool, tun = %tun.name(), "CONNECT-IP pool");
    }
    Ok(Some(
        IpProxy::new(config, Arc::new(tun)).context("--ip-pool")?,
    ))
}

pub async fn run(args: &ServeArgs) -> Result<()> {
    let cfg = NodeConfig::resolve(args)?;
    init_logging(cfg.log_format);
    let (tls, cert_path) = match &cfg.tls {
        Some((cert, key)) => (
            ServerTls::from_pem_files(cert, key).context("loading --tls-cert/--tls-key")?,
            cert.clone(),
        ),
        None => {
            let dev = DevCert::load_or_generate(&cfg.state_dir).with_context(|| {
                format!("development certificate in {}", cfg.state_dir.display())
            })?;
            let path = dev.cert_path().map(|p| p.to_path_buf()).unwrap_or_default();
            if dev.generated() {
                tracing::info!(path = %path.display(), "generated a development certificate");
            }
            (dev.server_tls(), path)
        }
    };
    // The node's own addresses, never a target (both listeners').
    let tcp_ip = match cfg.tcp_listen {
        TcpListen::SameAsH3 => Some(cfg.listen.ip()),
        TcpListen::At(addr) => Some(addr.ip()),
        TcpListen::Off => None,
    };
    let mut own: Vec<IpAddr> = [Some(cfg.listen.ip()), tcp_ip]
        .into_iter()
        .flatten()
        .filter(|ip| !ip.is_unspecified())
        .collect();
    own.dedup();
    let on_loopback = cfg.listen.ip().is_loopback() && tcp_ip.is_none_or(|ip| ip.is_loopback());
    // The listeners themselves are never targets (a loop), even with
    // --allow-private or --allow-target: the addresses asked for now, the
    // bound ones (port 0 resolved) as soon as the node has them.
    let own_listeners = OwnListeners::new(
        [Some(cfg.listen), tcp_addr_asked(&cfg)]
            .into_iter()
            .flatten(),
    );
    let udp = UdpProxyConfig {
        policy: AddressPolicy {
            allow_private: cfg.allow_private,
            own_addresses: own,
        },
        targets: TargetRules {
            allow: cfg.allow_target.clone(),
            deny: cfg.deny_target.clone(),
            own_listeners: own_listeners.clone(),
        },
        lookups: cfg.lookups,
        ..Default::default()
    };
    let proxy = Proxy::new(
        udp,
        TcpProxyConfig {
            connect_timeout: cfg.tcp_connect_timeout,
            ..Default::default()
        },
    );
    let proxy = match ip_proxy(&cfg)? {
        Some(ip) => proxy.with_ip(ip),
        None => proxy,
    };
    for rule in &cfg.deny_target {
        tracing::info!(%rule, "outbound policy: deny");
    }
    for rule in &cfg.allow_target {
        tracing::info!(%rule, "outbound policy: allow");
    }
    let auth = match &cfg.auth_token_file {
        Some(path) => load_tokens(path)?,
        None => ProxyAuth::default(),
    };
    if auth.is_open() && !on_loopback {
        tracing::warn!(
            listen = %cfg.listen,
            tcp_listen = ?tcp_ip,
            "no proxy authentication (--auth-token-file): anyone who reaches this address can use the proxy"
        );
    } else if !auth.is_open() {
        tracing::info!("proxy authentication: bearer tokens required");
    }
    let relay = relay(args, &cfg)?;
    let node_name = match (&args.node_name, &relay) {
        (Some(name), _) => name.clone(),
        (None, Some((_, identity))) => identity.clone(),
        (None, None) => ServerConfig::default().node_name,
    };
    let handler: Arc<dyn masque_server::Handler> = match relay {
        Some((upstream, identity)) => {
            if !cfg.ip_pool.is_empty() {
                anyhow::bail!(
                    "a relaying node assigns no addresses (the last hop does): drop --ip-pool"
                );
            }
            tracing::info!(upstream = %upstream.authority(), %identity, "relaying every tunnel through the next hop");
            if cfg.allow_private || !cfg.allow_target.is_empty() || !cfg.deny_target.is_empty() {
                tracing::warn!(
                    "--allow-private, --allow-target and --deny-target do not apply on a relaying node: the last hop's policy decides"
                );
            }
            Arc::new(RelayProxy::new(upstream, identity))
        }
        None => Arc::new(proxy),
    };
    let server = ServerConfig {
        node_name,
        listen: cfg.listen,
        tcp_listen: cfg.tcp_listen,
        // A clone shares the token set: SIGHUP replaces it for the listener.
        auth: auth.clone(),
        max_tunnels_per_connection: cfg.max_tunnels_per_connection,
        admission: cfg.admission,
        connection_idle_timeout: cfg.connection_idle_timeout,
        drain_timeout: cfg.drain_timeout,
        quic_recv_buffer: cfg.quic_recv_buffer,
        quic_send_buffer: cfg.quic_send_buffer,
        session: SessionConfig {
            idle_timeout: cfg.idle_timeout,
            stream_write_timeout: cfg.stream_write_timeout,
            half_closed_timeout: cfg.half_closed_timeout,
            datagram_rate: cfg.datagram_rate,
            ..Default::default()
        },
        ..Default::default()
    };
    let node = Node::start(server, &tls, handler)
        .await
        .context("starting the node")?;
    own_listeners.set(
        [Some(node.local_addr()), node.tcp_addr()]
            .into_iter()
            .flatten(),
    );
    match node.tcp_addr() {
        Some(tcp) => {
            tracing::info!(udp = %node.local_addr(), %tcp, "serving HTTP/3 on UDP, HTTP/2 and HTTP/1.1 on TLS/TCP")
        }
        None => tracing::info!(udp = %node.local_addr(), "serving HTTP/3 on UDP (TCP off)"),
    }
    let metrics = match cfg.metrics_listen {
        Some(addr) => {
            if !addr.ip().is_loopback() {
                tracing::warn!(%addr, "the metrics endpoint has no authentication: keep it on a management network");
            }
            Some(MetricsEndpoint::start(addr, Arc::clone(node.metrics())).await?)
        }
        None => None,
    };
    // The kernel's drops on our UDP sockets, so that every drop shows in /metrics.
    #[cfg(target_os = "linux")]
    let _drop_sampler = AbortOnDrop(masque_server::kernel_drops::spawn_udp_drop_sampler(
        Arc::clone(node.metrics()),
        std::time::Duration::from_secs(1),
    ));
    // Handlers first, banner second: whoever reads the banner may signal at once.
    let mut signals = Signals::install()?;
    print_banner(
        &node,
        &cert_path,
        &format_fingerprint_colon(&tls.fingerprint_sha256()),
        metrics.as_ref().map(MetricsEndpoint::local_addr),
        cfg.auth_token_file.as_deref(),
    );
    while signals.wait().await == Signal::Reload {
        reload_tokens(cfg.auth_token_file.as_deref(), &auth);
    }
    tracing::info!("shutting down: GOAWAY, draining open tunnels");
    node.shutdown().await;
    drop(metrics);
    tracing::info!("stopped");
    Ok(())
}

/// The TCP listener address asked for (its port may still be 0).
fn tcp_addr_asked(cfg: &NodeConfig) -> Option<std::net::SocketAddr> {
    match cfg.tcp_listen {
        TcpListen::SameAsH3 => Some(cfg.listen),
        TcpListen::At(addr) => Some(addr),
        TcpListen::Off => None,
    }
}

fn print_banner(
    node: &Node,
    cert: &std::path::Path,
    fingerprint: &str,
    metrics: Option<std::net::SocketAddr>,
    auth_token_file: Option<&std::path::Path>,
) {
    let addr = node.local_addr();
    let host = if addr.ip().is_loopback() {
        "localhost".to_string()
    } else {
        addr.ip().to_string()
    };
    let pin = fingerprint.replace(':', "").to_lowercase();
    // One line, UDP first: scripts take the first address after "listening on".
    let tcp = node
        .tcp_addr()
        .map(|t| format!(" and {t} (HTTP/2 + HTTP/1.1, TLS over TCP)"))
        .unwrap_or_default();
    println!(
        "masque-node {} listening on {addr} (HTTP/3, UDP){tcp}",
        env!("CARGO_PKG_VERSION")
    );
    println!("certificate: {}", cert.display());
    if let Some(m) = metrics {
        println!("metrics: http://{m}/metrics");
    }
    println!("sha-256 fingerprint: {fingerprint}");
    println!("try it (DNS through the proxy, then `dig @127.0.0.1 -p 5353 example.org`):");
    let auth = auth_token_file
        .map(|p| format!(" --auth-token-file {}", p.display()))
        .unwrap_or_default();
    println!(
        "  masque-node udp-forward --proxy https://{host}:{} --listen 127.0.0.1:5353 --target 9.9.9.9:53 --pin {pin}{auth}",
        addr.port()
    );
}

/// SIGHUP: the token file again; a file that does not load keeps the old set.
fn reload_tokens(file: Option<&std::path::Path>, auth: &ProxyAuth) {
    let Some(path) = file else {
        tracing::info!("SIGHUP: nothing to reload (no --auth-token-file)");
        return;
    };
    match load_tokens(path) {
        Ok(new) => {
            auth.replace(&new);
            tracing::info!(file = %path.display(), "SIGHUP: bearer tokens reloaded");
        }
        Err(e) => tracing::error!(
            error = format!("{e:#}"),
            "SIGHUP: tokens not reloaded, the old ones stay"
        ),
    }
}

/// The bearer tokens of `--auth-token-file`.
fn load_tokens(path: &std::path::Path) -> Result<ProxyAuth> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    ProxyAuth::parse_token_file(&text)
        .with_context(|| format!("bearer tokens in {}", path.display()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// SIGTERM or SIGINT: drain and exit.
    Stop,
    /// SIGHUP: reload the bearer tokens.
    Reload,
}

/// SIGTERM, SIGINT and SIGHUP, installed before the node announces itself.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn wait(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            // `None`: the signal driver is gone (runtime shutting down).
            r = self.hup.recv() => if r.is_some() { Signal::Reload } else { Signal::Stop },
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
