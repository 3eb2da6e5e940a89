//! masque-node: a MASQUE proxy (HTTP/3 on UDP; HTTP/2 and HTTP/1.1 over TLS
//! on TCP, by default on the same port number) that works out of the box on
//! loopback with a generated development certificate, plus client commands
//! (`udp-forward`, `socks5`, `http-proxy`, `vpn`; in the library, `masque_node`).

mod config;
mod metrics_endpoint;
mod serve;

use masque_node::{forward, http_proxy, socks5, vpn};

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "masque-node",
    version,
    about = "MASQUE proxy node (HTTP/3 on UDP; HTTP/2 and HTTP/1.1 over TLS on TCP, same port)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: config::ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Relay a local UDP port through a CONNECT-UDP tunnel (e.g. DNS through the proxy).
    UdpForward(forward::UdpForwardArgs),
    /// A local SOCKS5 server (RFC 1928): CONNECT through TCP tunnels, UDP
    /// ASSOCIATE through CONNECT-UDP tunnels.
    Socks5(socks5::Socks5Args),
    /// A local plain-HTTP proxy: CONNECT and http:// requests through TCP tunnels.
    HttpProxy(http_proxy::HttpProxyArgs),
    /// A VPN client over CONNECT-IP: a TUN device with the address the proxy
    /// assigns and the routes it advertises (needs CAP_NET_ADMIN).
    Vpn(vpn::VpnArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Some(Command::UdpForward(args)) => forward::run(args).await,
            Some(Command::Socks5(args)) => socks5::run(args).await,
            Some(Command::HttpProxy(args)) => http_proxy::run(args).await,
            Some(Command::Vpn(args)) => vpn::run(args).await,
            None => serve::run(&cli.serve).await,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--allow-target` / `--deny-target` repeat and parse CIDR[:PORTS] up front.
    #[test]
    fn target_rule_flags() {
        let cli = Cli::try_parse_from([
            "masque-node",
            "--allow-target",
            "10.0.0.0/8:53",
            "--allow-target",
            "[fd00::1]:443,8443",
            "--deny-target",
            "10.9.0.0/16",
        ])
        .unwrap();
        let shown = |v: &[masque_server::policy::TargetRule]| {
            v.iter().map(ToString::to_string).collect::<Vec<_>>()
        };
        assert_eq!(
            shown(&cli.serve.allow_target),
            ["10.0.0.0/8:53", "fd00::1/128:443,8443"]
        );
        assert_eq!(shown(&cli.serve.deny_target), ["10.9.0.0/16"]);
        for bad in ["10.0.0.1/8", "10.0.0.0/8:99999", "example.com"] {
            assert!(
                Cli::try_parse_from(["masque-node", "--deny-target", bad]).is_err(),
                "{bad}"
            );
        }
    }
}
