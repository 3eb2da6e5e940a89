//! masque-node: a MASQUE proxy (CONNECT-UDP over HTTP/3) that works out of the
//! box on loopback with a generated development certificate, plus client
//! commands (`udp-forward`).

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
    about = "MASQUE proxy node (CONNECT-UDP over HTTP/3)"
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
