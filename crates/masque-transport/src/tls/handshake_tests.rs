//! End-to-end handshakes: QUIC on loopback with quinn, and rustls (the TCP
//! configurations) in memory.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use rustls::pki_types::ServerName;

use super::*;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A quinn server on 127.0.0.1 that completes handshakes and holds each
/// connection until the peer closes it.
struct QuicServer {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl QuicServer {
    fn start(tls: &ServerTls) -> Result<Self> {
        let cfg = tls.quic_server_config(&[ALPN_H3], Arc::default())?;
        let endpoint = quinn::Endpoint::server(cfg, "127.0.0.1:0".parse()?)?;
        let addr = endpoint.local_addr()?;
        let ep = endpoint.clone();
        let task = tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                tokio::spawn(async move {
                    if let Ok(conn) = incoming.await {
                        let _ = tokio::time::timeout(TIMEOUT, conn.closed()).await;
                    }
                });
            }
        });
        Ok(Self {
            endpoint,
            addr,
            task,
        })
    }

    async fn stop(self) {
        self.endpoint.close(0u32.into(), b"test over");
        let _ = tokio::time::timeout(TIMEOUT, self.endpoint.wait_idle()).await;
        self.task.abort();
    }
}

/// Connects with `verification`; `Ok(Err(_))` is a failed handshake.
async fn quic_connect(
    addr: SocketAddr,
    verification: &ServerVerification,
) -> Result<std::result::Result<(), quinn::ConnectionError>> {
    let cfg = quic_client_config(verification, &[ALPN_H3], Arc::default())?;
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let connecting = endpoint.connect_with(cfg, addr, "localhost")?;
    let outcome = tokio::time::timeout(TIMEOUT, connecting)
        .await
        .context("QUIC handshake timed out")?;
    let result = match outcome {
        Ok(conn) => {
            let alpn = conn
                .handshake_data()
                .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                .and_then(|d| d.protocol);
            if alpn.as_deref() != Some(ALPN_H3) {
                bail!("negotiated ALPN {alpn:?}, expected h3");
            }
            conn.close(0u32.into(), b"bye");
            Ok(())
        }
        Err(e) => Err(e),
    };
    let _ = tokio::time::timeout(TIMEOUT, endpoint.wait_idle()).await;
    Ok(result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_handshake_with_each_verification() -> Result<()> {
    let dir = dev_cert::tests::temp_dir("quic");
    let dev = DevCert::load_or_generate(&dir)?;
    let server = QuicServer::start(&dev.server_tls())?;
    let other = DevCert::ephemeral()?;

    let ca = ServerVerification::custom_ca_from_pem_file(
        dev.cert_path().context("persisted dev cert has a path")?,
    )?;
    let cases = [
        ("custom CA", ca, true),
        (
            "right pin",
            ServerVerification::pinned_from_str(&dev.fingerprint_sha256_hex())?,
            true,
        ),
        (
            "pin of another certificate",
            ServerVerification::PinnedSha256(other.fingerprint_sha256()),
            false,
        ),
        ("Web PKI", ServerVerification::WebPki, false),
        (
            "insecure skip verify",
            ServerVerification::InsecureSkipVerify,
            true,
        ),
    ];
    let mut failures = Vec::new();
    for (name, verification, expect_ok) in &cases {
        match quic_connect(server.addr, verification).await? {
            Ok(()) if *expect_ok => {}
            Err(e) if !*expect_ok => {
                // Rejected by our verifier, not e.g. by a timeout.
                let msg = e.to_string();
                eprintln!("{name}: {msg}");
                if !msg.contains("certificate") {
                    failures.push(format!("{name}: unexpected error {msg}"));
                }
                if *name == "pin of another certificate" && !msg.contains("PinMismatch") {
                    failures.push(format!("{name}: error does not explain the pin: {msg}"));
                }
            }
            Ok(()) => failures.push(format!("{name}: handshake succeeded, expected failure")),
            Err(e) => failures.push(format!("{name}: handshake failed: {e}")),
        }
    }
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    Ok(())
}

/// Runs a rustls handshake in memory; bounded number of flights.
fn tcp_handshake(
    server: rustls::ServerConfig,
    client: rustls::ClientConfig,
) -> Result<rustls::ClientConnection> {
    let mut c = rustls::Connection::Client(rustls::ClientConnection::new(
        Arc::new(client),
        ServerName::try_from("localhost")?,
    )?);
    let mut s = rustls::Connection::Server(rustls::ServerConnection::new(Arc::new(server))?);
    for _ in 0..16 {
        if !c.is_handshaking() && !s.is_handshaking() {
            return match c {
                rustls::Connection::Client(c) => Ok(c),
                rustls::Connection::Server(_) => bail!("client turned into a server"),
            };
        }
        pump(&mut c, &mut s).context("client -> server")?;
        pump(&mut s, &mut c).context("server -> client")?;
    }
    bail!("handshake did not complete")
}

fn pump(from: &mut rustls::Connection, to: &mut rustls::Connection) -> Result<()> {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf)?;
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd)?;
        to.process_new_packets()?;
    }
    Ok(())
}

#[test]
fn tcp_handshake_tls13_and_tls12() -> Result<()> {
    let dev = DevCert::ephemeral()?;
    let other = DevCert::ephemeral()?;
    let tls = dev.server_tls();
    let tls12_only = tls.build(&[&rustls::version::TLS12], &[ALPN_H2])?;

    let pinned = ServerVerification::PinnedSha256(dev.fingerprint_sha256());
    let wrong_pin = ServerVerification::PinnedSha256(other.fingerprint_sha256());
    let ca = ServerVerification::CustomCa(vec![dev.cert_der().clone()]);
    let alpn: &[&[u8]] = &[ALPN_H2, ALPN_HTTP11];

    for (verification, expect_ok) in [
        (&ca, true),
        (&pinned, true),
        (&ServerVerification::InsecureSkipVerify, true),
        (&wrong_pin, false),
        (&ServerVerification::WebPki, false),
    ] {
        for (server, version) in [
            (
                tls.rustls_server_config(&[ALPN_H2])?,
                rustls::ProtocolVersion::TLSv1_3,
            ),
            (tls12_only.clone(), rustls::ProtocolVersion::TLSv1_2),
        ] {
            let result = tcp_handshake(server, client_config(verification, alpn)?);
            match (result, expect_ok) {
                (Ok(conn), true) => {
                    assert_eq!(conn.protocol_version(), Some(version), "{verification:?}");
                    assert_eq!(conn.alpn_protocol(), Some(ALPN_H2), "{verification:?}");
                }
                (Err(_), false) => {}
                (Ok(_), false) => bail!("{verification:?} {version:?}: expected failure"),
                (Err(e), true) => bail!("{verification:?} {version:?}: {e:#}"),
            }
        }
    }
    Ok(())
}
