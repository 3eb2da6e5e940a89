//! Time to the first tunnel through the connection pool: a connect-udp
//! tunnel opened on a warm pooled connection (the pool already holds one
//! to the node) against a cold one (a fresh pool, so the checkout dials:
//! QUIC or TCP + TLS handshake and the HTTP start, then the request). Per
//! transport (HTTP/3, HTTP/2), the median of N alternating runs, against an
//! in-process node on loopback.
//!
//! Run with `cargo xtask bench`; prints a table and writes
//! target/bench/pool_first_tunnel.json. Nothing is asserted.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Result;
use masque_client::{
    ClientOptions, PoolConfig, ProxyClient, Target, TransportChoice, UpstreamPool,
};
use masque_server::{Node, QuicMtu, ServerConfig, UdpProxy, UdpProxyConfig, policy::AddressPolicy};
use masque_tests::bench::median;
use masque_transport::{
    Transport,
    tls::{DevCert, ServerVerification},
};
use tokio::time::Instant;

const RUNS: usize = 30;
const MTU: QuicMtu = QuicMtu {
    initial: 1452,
    min: 1452,
};

struct Bench {
    node: Node,
    cert: DevCert,
    target: Target,
}

impl Bench {
    fn url(&self, t: Transport) -> String {
        let addr = match t {
            Transport::H3 => self.node.local_addr(),
            _ => self.node.tcp_addr().expect("TCP"),
        };
        format!("https://localhost:{}", addr.port())
    }

    fn options(&self, t: Transport) -> ClientOptions {
        ClientOptions {
            transport: TransportChoice::from(t),
            verification: ServerVerification::CustomCa(vec![self.cert.cert_der().clone()]),
            initial_mtu: MTU.initial,
            min_mtu: MTU.min,
            ..Default::default()
        }
    }

    /// Microseconds until `connect_udp` on `client` returned an open tunnel.
    async fn first_tunnel(&self, client: &ProxyClient) -> Result<f64> {
        let start = Instant::now();
        let session = client.connect_udp(&self.target).await?;
        let took = start.elapsed().as_secs_f64() * 1e6;
        drop(session);
        Ok(took)
    }

    /// A fresh pool each time: the checkout dials.
    async fn cold(&self, t: Transport) -> Result<f64> {
        let pool = UpstreamPool::spawn(PoolConfig::default()).await?;
        let client = ProxyClient::new_in(&self.url(t), self.options(t), &pool)?;
        let took = self.first_tunnel(&client).await?;
        for owner in pool.owners().await? {
            owner.close();
        }
        pool.stop();
        Ok(took)
    }
}

async fn udp_echo() -> Result<SocketAddr> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let addr = sock.local_addr()?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let _ = sock.send_to(&buf[..n], from).await;
        }
    });
    Ok(addr)
}

fn main() -> Result<()> {
    // `cargo test --all-targets` runs harness-less benches without `--bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmark: run with `cargo xtask bench`");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let cert = DevCert::ephemeral()?;
        let proxy = UdpProxyConfig {
            policy: AddressPolicy {
                allow_private: true,
                own_addresses: vec![],
            },
            ..Default::default()
        };
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            drain_timeout: Duration::from_secs(2),
            quic_mtu: MTU,
            ..Default::default()
        };
        let node = Node::start(config, &cert.server_tls(), Arc::new(UdpProxy::new(proxy))).await?;
        let echo = udp_echo().await?;
        let bench = Bench {
            node,
            cert,
            target: Target::udp(echo.ip().to_string(), echo.port()),
        };
        println!("\nTime to the first tunnel through the pool, median of {RUNS} runs (µs)");
        println!("{:<10} {:>12} {:>12} {:>8}", "transport", "warm", "cold", "cold/warm");
        let mut rows = Vec::new();
        for t in [Transport::H3, Transport::H2] {
            let warm_pool = UpstreamPool::spawn(PoolConfig::default()).await?;
            let warm_client = ProxyClient::new_in(&bench.url(t), bench.options(t), &warm_pool)?;
            // Dial once and warm up both paths.
            bench.first_tunnel(&warm_client).await?;
            bench.cold(t).await?;
            let (mut warm, mut cold) = (Vec::new(), Vec::new());
            for i in 0..RUNS {
                if i % 2 == 0 {
                    warm.push(bench.first_tunnel(&warm_client).await?);
                    cold.push(bench.cold(t).await?);
                } else {
                    cold.push(bench.cold(t).await?);
                    warm.push(bench.first_tunnel(&warm_client).await?);
                }
            }
            let (w, c) = (median(&warm), median(&cold));
            println!("{:<10} {w:>12.0} {c:>12.0} {:>8.1}", t.as_str(), c / w);
            rows.push(format!(
                "{{\"transport\":\"{}\",\"warm_us\":{w:.0},\"cold_us\":{c:.0},\"warm_runs\":{warm:.0?},\"cold_runs\":{cold:.0?}}}",
                t.as_str()
            ));
            warm_pool.stop();
        }
        let json = format!(
            "{{\"bench\":\"pool_first_tunnel\",\"runs\":{RUNS},\"results\":[{}]}}\n",
            rows.join(",")
        );
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("pool_first_tunnel.json"), json)?;
        bench.node.shutdown().await;
        Ok(())
    })
}
