//! `masque-node udp-forward`: relay a local UDP port through a CONNECT-UDP tunnel.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use clap::Args;
use masque_client::Target;

use crate::client_args::{ClientArgs, init_logging};

#[derive(Debug, Args)]
pub struct UdpForwardArgs {
    /// Local UDP address to listen on, e.g. 127.0.0.1:5353
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Target HOST:PORT reached through the proxy, e.g. 9.9.9.9:53
    #[arg(long, value_name = "HOST:PORT")]
    pub target: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: UdpForwardArgs) -> Result<()> {
    init_logging();
    let target = parse_target(&args.target)?;
    let options = args.client.options()?;
    eprintln!(
        "udp-forward: {} -> {} via {} ({})",
        args.listen,
        args.target,
        args.client.proxy,
        options.transport.transport()
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    masque_client::udp_forward(&args.client.proxy, args.listen, target, options, shutdown)
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
    use crate::client_args::TransportArg;
    use masque_client::TransportChoice;

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
        assert_eq!(cli.args.client.transport, TransportArg::Auto);
        for (flag, want) in [
            ("auto", TransportChoice::Auto),
            ("h3", TransportChoice::H3),
            ("h2", TransportChoice::H2),
            ("h1", TransportChoice::H1),
        ] {
            let argv = base.iter().copied().chain(["--transport", flag]);
            let cli = Cli::try_parse_from(argv).unwrap();
            assert_eq!(TransportChoice::from(cli.args.client.transport), want);
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
