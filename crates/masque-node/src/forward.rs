//! `masque-node udp-forward`: relay a local UDP port through a CONNECT-UDP tunnel.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use masque_client::{ClientOptions, Target, TransportChoice};
use masque_transport::tls::ServerVerification;

/// `--transport`: the HTTP version of the tunnel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    /// The best available (HTTP/3 for now).
    #[default]
    Auto,
    /// HTTP/3 over QUIC (UDP).
    H3,
    /// HTTP/2 over TLS (TCP), extended CONNECT.
    H2,
    /// HTTP/1.1 over TLS (TCP), Upgrade: connect-udp.
    H1,
}

impl From<TransportArg> for TransportChoice {
    fn from(t: TransportArg) -> Self {
        match t {
            TransportArg::Auto => TransportChoice::Auto,
            TransportArg::H3 => TransportChoice::H3,
            TransportArg::H2 => TransportChoice::H2,
            TransportArg::H1 => TransportChoice::H1,
        }
    }
}

#[derive(Debug, Args)]
pub struct UdpForwardArgs {
    /// Proxy URL, e.g. https://localhost:4433
    #[arg(long, value_name = "URL")]
    pub proxy: String,
    /// Local UDP address to listen on, e.g. 127.0.0.1:5353
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Target HOST:PORT reached through the proxy, e.g. 9.9.9.9:53
    #[arg(long, value_name = "HOST:PORT")]
    pub target: String,
    /// Trust this PEM CA (or self-signed certificate) for the proxy.
    #[arg(long, value_name = "PEM", conflicts_with_all = ["pin", "insecure"])]
    pub ca: Option<PathBuf>,
    /// Accept exactly the proxy certificate with this SHA-256 fingerprint (hex).
    #[arg(long, value_name = "SHA256", conflicts_with = "insecure")]
    pub pin: Option<String>,
    /// Do not verify the proxy certificate at all (testing only).
    #[arg(long)]
    pub insecure: bool,
    /// File whose first token line (blank lines and # comments skipped) is
    /// sent as `Proxy-Authorization: Bearer <token>`.
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// HTTP version to the proxy: HTTP/3 on UDP, or HTTP/2 / HTTP/1.1 over
    /// TLS on TCP at the same port.
    #[arg(long, value_enum, default_value_t = TransportArg::Auto)]
    pub transport: TransportArg,
}

pub async fn run(args: UdpForwardArgs) -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let verification = if let Some(ca) = &args.ca {
        ServerVerification::custom_ca_from_pem_file(ca)?
    } else if let Some(pin) = &args.pin {
        ServerVerification::pinned_from_str(pin)?
    } else if args.insecure {
        ServerVerification::InsecureSkipVerify
    } else {
        ServerVerification::WebPki
    };
    let target = parse_target(&args.target)?;
    let mut options = ClientOptions {
        verification,
        transport: args.transport.into(),
        ..Default::default()
    };
    if let Some(path) = &args.auth_token_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let token = masque_server::auth::token_lines(&text)
            .next()
            .with_context(|| format!("no token in {}", path.display()))?;
        options = options.with_bearer_token(token)?;
    }
    eprintln!(
        "udp-forward: {} -> {} via {} ({})",
        args.listen,
        args.target,
        args.proxy,
        options.transport.transport()
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    masque_client::udp_forward(&args.proxy, args.listen, target, options, shutdown)
        .await
        .context("udp-forward")?;
    Ok(())
}

/// `host:port` or `[v6]:port`.
fn parse_target(s: &str) -> Result<Target> {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p),
        None => bail!("--target must be HOST:PORT"),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("--target has an empty host");
    }
    let port: u16 = port.parse().context("--target port")?;
    if port == 0 {
        bail!("--target port must be 1-65535");
    }
    Ok(Target::Udp {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_flag() {
        use clap::Parser;

        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            args: UdpForwardArgs,
        }
        let base = [
            "x",
            "--proxy",
            "https://p:1",
            "--listen",
            "127.0.0.1:1",
            "--target",
            "t:1",
        ];
        let cli = Cli::try_parse_from(base).unwrap();
        assert_eq!(cli.args.transport, TransportArg::Auto);
        for (flag, want) in [
            ("auto", TransportChoice::Auto),
            ("h3", TransportChoice::H3),
            ("h2", TransportChoice::H2),
            ("h1", TransportChoice::H1),
        ] {
            let argv = base.iter().copied().chain(["--transport", flag]);
            let cli = Cli::try_parse_from(argv).unwrap();
            assert_eq!(TransportChoice::from(cli.args.transport), want);
        }
        let argv = base.iter().copied().chain(["--transport", "h4"]);
        assert!(Cli::try_parse_from(argv).is_err());
    }

    #[test]
    fn targets() {
        assert!(matches!(
            parse_target("9.9.9.9:53"),
            Ok(Target::Udp { port: 53, .. })
        ));
        assert!(
            matches!(parse_target("[2001:db8::1]:443"), Ok(Target::Udp { ref host, .. }) if host == "2001:db8::1")
        );
        assert!(parse_target("example.org").is_err());
        assert!(parse_target("example.org:0").is_err());
        assert!(parse_target(":53").is_err());
    }
}
