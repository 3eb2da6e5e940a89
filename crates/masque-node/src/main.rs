//! masque-node: a MASQUE proxy (HTTP/3 on UDP; HTTP/2 and HTTP/1.1 over TLS
//! on TCP, by default on the same port number) that works out of the box on
//! loopback with a generated development certificate, plus client commands
//! (`udp-forward`).

mod config;
mod forward;
mod metrics_endpoint;
mod serve;

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
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Some(Command::UdpForward(args)) => forward::run(args).await,
            None => serve::run(&cli.serve).await,
        }
    })
}
