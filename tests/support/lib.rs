//! Shared fixtures for the end-to-end tests and benchmarks: certificates, quinn
//! endpoints on loopback with an explicit rustls provider (ring), and an HTTP/3
//! echo server built on masque-h3.

pub mod bench;
pub mod echo;
pub mod netns;
pub mod peer;
pub mod run_cost;
pub mod tcp;
pub mod tls;
pub mod transport;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A self-signed certificate for localhost / 127.0.0.1.
#[derive(Debug)]
pub struct TestCert {
    pub cert: CertificateDer<'static>,
    pub key: PrivatePkcs8KeyDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn self_signed() -> Result<TestCert> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
    Ok(TestCert {
        cert: ck.cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()),
        cert_pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
    })
}

impl TestCert {
    /// Writes the certificate PEM to a unique temp file (for Python peers).
    pub fn write_pem(&self) -> Result<PathBuf> {
        let path = std::env::temp_dir().join(format!(
            "masque-test-cert-{}-{}.pem",
            std::process::id(),
            unique()
        ));
        std::fs::write(&path, &self.cert_pem)?;
        Ok(path)
    }

    pub fn write_key_pem(&self) -> Result<PathBuf> {
        let path = std::env::temp_dir().join(format!(
            "masque-test-key-{}-{}.pem",
            std::process::id(),
            unique()
        ));
        std::fs::write(&path, &self.key_pem)?;
        Ok(path)
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A QUIC server endpoint on 127.0.0.1:0 speaking ALPN h3.
pub fn server_endpoint(cert: &TestCert, max_streams: u32) -> Result<quinn::Endpoint> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.cert.clone()],
            PrivateKeyDer::Pkcs8(cert.key.clone_key()),
        )?;
    tls.alpn_protocols = vec![b"h3".to_vec()];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(Arc::new(loopback_transport(max_streams)));
    quinn_endpoint(Some(cfg))
}

/// A QUIC client endpoint trusting `cert`.
pub fn client_endpoint(cert: &TestCert, max_streams: u32) -> Result<quinn::Endpoint> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.clone())?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(Arc::new(loopback_transport(max_streams)));
    let mut ep = quinn_endpoint(None)?;
    ep.set_default_client_config(cfg);
    Ok(ep)
}

/// A quinn endpoint on 127.0.0.1 whose socket asks for the same buffers as the
/// node's and masque-client's (4 MiB each way), so the raw quinn references
/// in the benchmarks run on equal terms with them.
fn quinn_endpoint(server: Option<quinn::ServerConfig>) -> Result<quinn::Endpoint> {
    use masque_transport::socket_buffers::{DEFAULT_QUIC_SOCKET_BUFFER, bind_udp};
    let (socket, _) = bind_udp(
        "127.0.0.1:0".parse()?,
        DEFAULT_QUIC_SOCKET_BUFFER,
        DEFAULT_QUIC_SOCKET_BUFFER,
        "test QUIC socket buffers",
    )?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )?)
}

/// masque-h3's recommended transport with the loopback MTU of
/// [`node::LOOPBACK_MTU`] (1200-byte payloads fit from the first packet and
/// keep fitting under losses).
pub fn loopback_transport(max_streams: u32) -> quinn::TransportConfig {
    let mut t = masque_h3::transport_config(max_streams);
    node::LOOPBACK_MTU.apply(&mut t);
    t.max_idle_timeout(Some(Duration::from_secs(30).try_into().expect("30s fits")));
    t
}

/// Connects and starts HTTP/3 as a client.
pub async fn connect_h3(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
) -> Result<masque_h3::Connection> {
    let quic = endpoint
        .connect(addr, "localhost")?
        .await
        .context("QUIC handshake")?;
    Ok(masque_h3::Connection::client(quic, masque_h3::Config::default()).await?)
}

/// The interop Python (a venv with the pinned aioquic and h2) that
/// `cargo xtask test` prepares. Missing it is an error, never a silent skip.
pub fn interop_python() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("MASQUE_INTEROP_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/interop-venv/bin/python");
    if venv.exists() {
        return Ok(venv);
    }
    anyhow::bail!(
        "interop peers are not installed: run `cargo xtask test` (or `cargo xtask interop-env`) first"
    )
}

/// Path of a Python interop script under tests/interop/.
pub fn interop_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("interop")
        .join(name)
}

/// Upper bound for one step of a test that waits on a peer or another task:
/// a response, body bytes, a datagram's echo, a task's end. (Tests that
/// resend lost datagrams keep their own shorter per-attempt bounds.)
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `f` for at most [`WAIT`]; expiry is an error saying that `what` did
/// not happen, so a stalled peer fails the test instead of hanging it.
pub async fn within<F: std::future::Future>(what: &str, f: F) -> Result<F::Output> {
    tokio::time::timeout(WAIT, f)
        .await
        .map_err(|_| anyhow::anyhow!("{what}: not within {WAIT:?}"))
}

/// Logs to the test output when RUST_LOG is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// An extended CONNECT request head (`https`), e.g. for `connect-udp`.
pub fn extended_connect(protocol: &str, authority: &str, path: &str) -> masque_h3::RequestHead {
    masque_h3::RequestHead::extended_connect(
        protocol.parse().expect("valid :protocol token"),
        http::uri::Scheme::HTTPS,
        authority.parse().expect("valid authority"),
        path.parse().expect("valid path"),
    )
}

/// A GET request head (`https`).
pub fn get(authority: &str, path: &str) -> masque_h3::RequestHead {
    let mut head = masque_h3::RequestHead::new(http::Method::GET);
    head.scheme = Some(http::uri::Scheme::HTTPS);
    head.authority = Some(authority.parse().expect("valid authority"));
    head.path = Some(path.parse().expect("valid path"));
    head
}

pub mod node;
