//! The local fronts of masque-node, in-process against an in-process node
//! (loopback targets allowed): `socks5` and `http-proxy` driven by curl over
//! HTTP/3 and HTTP/2, CONNECT to an HTTPS origin signed by a test CA, a
//! hand-written SOCKS5 UDP ASSOCIATE exchange, username/password
//! authentication, refusals mapped to SOCKS5 codes and HTTP statuses, the
//! loopback-only listen rule, and headless Chromium through both fronts.
//! Every wait is bounded; everything is on loopback.

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use masque_client::{ClientOptions, TransportChoice};
use masque_node::{
    client_args::{FrontCounters, FrontError, FrontSettings, FrontStats, Ready, SharedClient},
    http_proxy::{self, HttpProxyConfig},
    socks5::{self, Socks5Config},
    socks5_wire::Credentials,
};
use masque_server::{
    Node, Proxy, QuicMtu, ServerConfig, TcpProxyConfig, UdpProxyConfig, policy::AddressPolicy,
};
use masque_transport::tls::{DevCert, ServerTls, ServerVerification};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::oneshot,
    task::JoinHandle,
};

/// The bound on every single wait.
const WAIT: Duration = Duration::from_secs(30);

const LOOPBACK_MTU: QuicMtu = QuicMtu {
    initial: 1452,
    min: 1452,
};

async fn within<T>(what: &str, f: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(WAIT, f)
        .await
        .with_context(|| format!("{what}: no result within {WAIT:?}"))
}

struct TestNode {
    node: Node,
    cert: DevCert,
}

impl TestNode {
    /// A node on 127.0.0.1:0 that may reach loopback targets.
    async fn start() -> Result<Self> {
        let cert = DevCert::ephemeral()?;
        let udp = UdpProxyConfig {
            policy: AddressPolicy {
                allow_private: true,
                own_addresses: vec![],
            },
            ..Default::default()
        };
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            drain_timeout: Duration::from_secs(2),
            quic_mtu: LOOPBACK_MTU,
            ..Default::default()
        };
        let proxy = Proxy::new(udp, TcpProxyConfig::default());
        let node = Node::start(config, &cert.server_tls(), Arc::new(proxy)).await?;
        Ok(Self { node, cert })
    }

    /// The proxy URL for `transport`: the UDP port for HTTP/3, the TCP one
    /// for HTTP/2 and HTTP/1.1 (the same number unless that port was taken
    /// on TCP when the node started).
    fn url(&self, transport: TransportChoice) -> String {
        let port = match transport {
            TransportChoice::H2 | TransportChoice::H1 => self
                .node
                .tcp_addr()
                .map_or(self.node.local_addr().port(), |a| a.port()),
            _ => self.node.local_addr().port(),
        };
        format!("https://localhost:{port}")
    }

    fn client(&self, transport: TransportChoice) -> Arc<SharedClient> {
        let options = ClientOptions {
            verification: ServerVerification::CustomCa(vec![self.cert.cert_der().clone()]),
            initial_mtu: LOOPBACK_MTU.initial,
            min_mtu: LOOPBACK_MTU.min,
            transport,
            ..Default::default()
        };
        Arc::new(SharedClient::new(self.url(transport), options))
    }
}

/// A running front: its address, live counters, and how to stop it.
struct Front {
    addr: SocketAddr,
    stats: Arc<FrontStats>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<FrontCounters, FrontError>>,
}

impl Front {
    async fn start<F, Fut>(serve: F) -> Result<Self>
    where
        F: FnOnce(Box<dyn Future<Output = ()> + Send + Unpin>, oneshot::Sender<Ready>) -> Fut,
        Fut: Future<Output = Result<FrontCounters, FrontError>> + Send + 'static,
    {
        // The fronts' log (refusals with their reasons) lands in the output
        // of a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_test_writer()
            .try_init();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let shutdown = Box::new(Box::pin(async move {
            let _ = stop_rx.await;
        }));
        let task = tokio::spawn(serve(shutdown, ready_tx));
        let ready = within("front ready", ready_rx)
            .await?
            .context("the front stopped before it was ready")?;
        Ok(Self {
            addr: ready.addr,
            stats: ready.stats,
            stop: Some(stop_tx),
            task,
        })
    }

    async fn socks5(
        node: &TestNode,
        transport: TransportChoice,
        creds: Option<Credentials>,
    ) -> Result<Self> {
        Self::socks5_with(
            FrontSettings::new("127.0.0.1:0".parse()?),
            node.client(transport),
            creds,
        )
        .await
    }

    async fn socks5_with(
        settings: FrontSettings,
        client: Arc<SharedClient>,
        creds: Option<Credentials>,
    ) -> Result<Self> {
        let config = Socks5Config {
            settings,
            credentials: creds,
            client,
        };
        Self::start(|shutdown, ready| socks5::serve(config, shutdown, ready)).await
    }

    async fn http(node: &TestNode, transport: TransportChoice) -> Result<Self> {
        let config = HttpProxyConfig {
            settings: FrontSettings::new("127.0.0.1:0".parse()?),
            client: node.client(transport),
        };
        Self::start(|shutdown, ready| http_proxy::serve(config, shutdown, ready)).await
    }

    /// Stops the front; its final counters.
    async fn stop(mut self) -> Result<FrontCounters> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        Ok(within("front stop", &mut self.task).await???)
    }
}

const MARKER: &str = "masque-front-marker-7f3a";

/// The page every origin serves: the marker and the request line it got.
fn page(request_line: &str) -> String {
    format!(
        "<!doctype html><html><head><title>t</title></head><body><p id=\"m\">{MARKER}</p><pre>{request_line}</pre></body></html>\n"
    )
}

/// Reads a request head and answers it with [`page`], then closes.
async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) -> Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await?;
        if n == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or_default().to_owned();
    let body = page(&line);
    let resp = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(resp.as_bytes()).await?;
    s.shutdown().await?;
    Ok(())
}

/// A plain-HTTP origin on 127.0.0.1:0.
async fn http_origin() -> Result<SocketAddr> {
    http_origin_on("127.0.0.1:0").await
}

async fn http_origin_on(addr: &str) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(WAIT, answer(s)).await;
            });
        }
    });
    Ok(addr)
}

/// A test CA and an HTTPS origin for `localhost` on 127.0.0.1:0 whose
/// certificate it signed; returns the origin's address and the CA's PEM.
async fn https_origin() -> Result<(SocketAddr, String)> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "masque fronts test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()])?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_pem = leaf.signed_by(&leaf_key, &issuer)?.pem();
    let tls = ServerTls::from_pem(leaf_pem.as_bytes(), leaf_key.serialize_pem().as_bytes())?;
    let acceptor =
        tokio_rustls::TlsAcceptor::from(Arc::new(tls.rustls_server_config(&[b"http/1.1"])?));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(WAIT, async {
                    if let Ok(tls) = acceptor.accept(s).await {
                        let _ = answer(tls).await;
                    }
                })
                .await;
            });
        }
    });
    Ok((addr, ca_pem))
}

/// A UDP echo target on 127.0.0.1:0.
async fn udp_echo() -> Result<SocketAddr> {
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    let addr = sock.local_addr()?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let _ = sock.send_to(&buf[..n], from).await;
        }
    });
    Ok(addr)
}

/// curl with `args`; its stdout, or an error with its stderr.
async fn curl(args: &[&str]) -> Result<String> {
    let out = within(
        "curl",
        tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "20"])
            .args(args)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("http_proxy")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await??;
    ensure!(
        out.status.success(),
        "curl {args:?}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn temp_dir(tag: &str) -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("masque-fronts-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

async fn socks5_curl(transport: TransportChoice) -> Result<()> {
    let node = TestNode::start().await?;
    let origin = http_origin().await?;
    let front = Front::socks5(&node, transport, None).await?;
    // A name the proxy resolves, and an IPv4 literal.
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("http://{host}:{}/socks/{host}", origin.port());
        let body = curl(&["--socks5-hostname", &front.addr.to_string(), &url]).await?;
        ensure!(body.contains(MARKER), "{body}");
        ensure!(
            body.contains(&format!("GET /socks/{host} HTTP/1.1")),
            "{body}"
        );
    }
    let mut tunnels = 2;
    // IPv6 (ATYP 4), where the machine has ::1.
    if let Ok(v6) = http_origin_on("[::1]:0").await {
        let url = format!("http://[::1]:{}/socks/v6", v6.port());
        let body = curl(&["--socks5-hostname", &front.addr.to_string(), &url]).await?;
        ensure!(body.contains("GET /socks/v6 HTTP/1.1"), "{body}");
        tunnels += 1;
    }
    let c = front.stop().await?;
    ensure!(
        c.connections == tunnels && c.tunnels_opened == tunnels,
        "{c:?}"
    );
    ensure!(c.bytes_up > 0 && c.bytes_down > 0, "{c:?}");
    ensure!(c.tunnels_refused == 0 && c.handshake_failures == 0, "{c:?}");
    node.node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_curl_over_h3() -> Result<()> {
    socks5_curl(TransportChoice::H3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_curl_over_h2() -> Result<()> {
    socks5_curl(TransportChoice::H2).await
}

async fn http_proxy_curl(transport: TransportChoice) -> Result<()> {
    let node = TestNode::start().await?;
    let origin = http_origin().await?;
    let front = Front::http(&node, transport).await?;
    let proxy = format!("http://{}", front.addr);
    // Absolute-form, rewritten to origin-form.
    let url = format!("http://localhost:{}/plain?q=1", origin.port());
    let body = curl(&["-x", &proxy, &url]).await?;
    ensure!(body.contains(MARKER), "{body}");
    ensure!(body.contains("GET /plain?q=1 HTTP/1.1"), "{body}");
    // CONNECT (curl's --proxytunnel) to the same origin.
    let url = format!("http://127.0.0.1:{}/tunnelled", origin.port());
    let body = curl(&["-p", "-x", &proxy, &url]).await?;
    ensure!(body.contains("GET /tunnelled HTTP/1.1"), "{body}");
    let c = front.stop().await?;
    ensure!(c.tunnels_opened == 2 && c.tunnels_refused == 0, "{c:?}");
    ensure!(c.bytes_up > 0 && c.bytes_down > 0, "{c:?}");
    node.node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_proxy_curl_over_h3() -> Result<()> {
    http_proxy_curl(TransportChoice::H3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_proxy_curl_over_h2() -> Result<()> {
    http_proxy_curl(TransportChoice::H2).await
}

/// CONNECT to an HTTPS origin whose certificate a test CA signed; curl
/// trusts that CA only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_proxy_connect_to_https_origin() -> Result<()> {
    let node = TestNode::start().await?;
    let (origin, ca_pem) = https_origin().await?;
    let dir = temp_dir("https")?;
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &ca_pem)?;
    let front = Front::http(&node, TransportChoice::H3).await?;
    let url = format!("https://localhost:{}/secure", origin.port());
    let body = curl(&[
        "-x",
        &format!("http://{}", front.addr),
        "--cacert",
        ca.to_str().context("path")?,
        &url,
    ])
    .await?;
    ensure!(
        body.contains(MARKER) && body.contains("GET /secure HTTP/1.1"),
        "{body}"
    );
    // Through socks5 too.
    let socks = Front::socks5(&node, TransportChoice::H2, None).await?;
    let body = curl(&[
        "--socks5-hostname",
        &socks.addr.to_string(),
        "--cacert",
        ca.to_str().context("path")?,
        &url,
    ])
    .await?;
    ensure!(body.contains(MARKER), "{body}");
    front.stop().await?;
    socks.stop().await?;
    node.node.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// Reads exactly `n` bytes, bounded.
async fn read_n(s: &mut TcpStream, n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    within("socks5 read", s.read_exact(&mut buf)).await??;
    Ok(buf)
}

/// A SOCKS5 reply with an IPv4 or IPv6 bound address: (code, address).
async fn read_reply(s: &mut TcpStream) -> Result<(u8, SocketAddr)> {
    let head = read_n(s, 4).await?;
    ensure!(head[0] == 5 && head[2] == 0, "reply head {head:?}");
    let addr = match head[3] {
        1 => {
            let b = read_n(s, 6).await?;
            SocketAddr::from(([b[0], b[1], b[2], b[3]], u16::from_be_bytes([b[4], b[5]])))
        }
        4 => {
            let b = read_n(s, 18).await?;
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&b[..16]);
            SocketAddr::from((ip, u16::from_be_bytes([b[16], b[17]])))
        }
        t => bail!("reply ATYP {t}"),
    };
    Ok((head[1], addr))
}

/// A CONNECT request for an IPv4 address.
fn connect_request(cmd: u8, addr: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(a) = addr else {
        panic!("IPv4 only here")
    };
    let mut r = vec![5, cmd, 0, 1];
    r.extend_from_slice(&a.ip().octets());
    r.extend_from_slice(&a.port().to_be_bytes());
    r
}

/// UDP ASSOCIATE by hand: datagrams to a UDP echo target come back
/// byte-exact with the RFC 1928 §7 header; FRAG ≠ 0 is dropped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_udp_associate_echo() -> Result<()> {
    let node = TestNode::start().await?;
    let echo = udp_echo().await?;
    let front = Front::socks5(&node, TransportChoice::H3, None).await?;
    let mut ctrl = within("connect", TcpStream::connect(front.addr)).await??;
    ctrl.write_all(&[5, 1, 0]).await?;
    ensure!(read_n(&mut ctrl, 2).await? == [5, 0]);
    let udp = UdpSocket::bind("127.0.0.1:0").await?;
    ctrl.write_all(&connect_request(3, udp.local_addr()?))
        .await?;
    let (code, relay) = read_reply(&mut ctrl).await?;
    ensure!(code == 0, "UDP ASSOCIATE answered {code}");
    ensure!(relay.ip().is_loopback() && relay.port() != 0, "{relay}");

    let SocketAddr::V4(e) = echo else {
        bail!("IPv4 echo")
    };
    let mut header = vec![0, 0, 0, 1];
    header.extend_from_slice(&e.ip().octets());
    header.extend_from_slice(&e.port().to_be_bytes());
    // A fragment first: dropped, counted.
    let mut frag = header.clone();
    frag[2] = 1;
    frag.extend_from_slice(b"fragment");
    udp.send_to(&frag, relay).await?;

    let mut buf = vec![0u8; 65536];
    for (i, size) in [1usize, 100, 1200].into_iter().enumerate() {
        let payload: Vec<u8> = (0..size).map(|j| (i * 31 + j) as u8).collect();
        let mut dgram = header.clone();
        dgram.extend_from_slice(&payload);
        // UDP may drop; a few tries, each bounded.
        let mut got = None;
        for _ in 0..5 {
            udp.send_to(&dgram, relay).await?;
            if let Ok(r) =
                tokio::time::timeout(Duration::from_secs(3), udp.recv_from(&mut buf)).await
            {
                got = Some(r?);
                break;
            }
        }
        let (n, from) = got.context("no echo through the UDP association")?;
        ensure!(
            from == relay,
            "datagram from {from}, expected the relay {relay}"
        );
        ensure!(buf[..n] == dgram[..], "echo of {size} bytes differs");
    }
    let snapshot = front.stats.snapshot();
    ensure!(snapshot.udp_frag_dropped == 1, "{snapshot:?}");
    ensure!(
        snapshot.tunnels_opened == 1,
        "one tunnel for one destination: {snapshot:?}"
    );
    drop(ctrl);
    // Final counts: a reply is counted just after it was sent.
    let c = front.stop().await?;
    ensure!(c.udp_datagrams_up >= 3 && c.bytes_up >= 1301, "{c:?}");
    ensure!(c.udp_datagrams_down >= 3 && c.bytes_down >= 1301, "{c:?}");
    node.node.shutdown().await;
    Ok(())
}

/// Username/password (RFC 1929): right credentials (curl, and by hand)
/// pass, wrong ones and no-auth are refused and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_username_password() -> Result<()> {
    let node = TestNode::start().await?;
    let origin = http_origin().await?;
    let creds = Credentials {
        username: b"alice".to_vec(),
        password: b"s3cret pw".to_vec(),
    };
    let front = Front::socks5(&node, TransportChoice::H2, Some(creds)).await?;
    let url = format!("http://127.0.0.1:{}/authed", origin.port());
    let body = curl(&[
        "-x",
        &format!("socks5h://alice:s3cret%20pw@{}", front.addr),
        &url,
    ])
    .await?;
    ensure!(body.contains("GET /authed HTTP/1.1"), "{body}");

    // Wrong password: status 1, then the connection ends.
    let mut s = within("connect", TcpStream::connect(front.addr)).await??;
    s.write_all(&[5, 1, 2]).await?;
    ensure!(read_n(&mut s, 2).await? == [5, 2]);
    s.write_all(&[1, 5, b'a', b'l', b'i', b'c', b'e', 2, b'n', b'o'])
        .await?;
    ensure!(read_n(&mut s, 2).await? == [1, 1]);
    let mut rest = [0u8; 1];
    ensure!(within("close", s.read(&mut rest)).await?? == 0);

    // No acceptable method: only no-auth offered.
    let mut s = within("connect", TcpStream::connect(front.addr)).await??;
    s.write_all(&[5, 1, 0]).await?;
    ensure!(read_n(&mut s, 2).await? == [5, 0xFF]);

    // Right credentials by hand, then CONNECT.
    let mut s = within("connect", TcpStream::connect(front.addr)).await??;
    s.write_all(&[5, 2, 0, 2]).await?;
    ensure!(read_n(&mut s, 2).await? == [5, 2]);
    let mut auth = vec![1, 5];
    auth.extend_from_slice(b"alice");
    auth.push(9);
    auth.extend_from_slice(b"s3cret pw");
    s.write_all(&auth).await?;
    ensure!(read_n(&mut s, 2).await? == [1, 0]);
    s.write_all(&connect_request(1, origin)).await?;
    let (code, _) = read_reply(&mut s).await?;
    ensure!(code == 0, "CONNECT answered {code}");
    s.write_all(b"GET /by-hand HTTP/1.1\r\nhost: x\r\n\r\n")
        .await?;
    let mut resp = Vec::new();
    within("response", s.read_to_end(&mut resp)).await??;
    ensure!(String::from_utf8_lossy(&resp).contains("GET /by-hand HTTP/1.1"));

    let c = front.stop().await?;
    ensure!(c.auth_failures == 2, "{c:?}");
    ensure!(c.tunnels_opened == 2, "{c:?}");
    node.node.shutdown().await;
    Ok(())
}

/// A refused tunnel: SOCKS5 reply 0x05 (connection_refused) and HTTP 502
/// with the node's Proxy-Status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_mapped() -> Result<()> {
    let node = TestNode::start().await?;
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?
    };
    let socks = Front::socks5(&node, TransportChoice::H3, None).await?;
    let mut s = within("connect", TcpStream::connect(socks.addr)).await??;
    s.write_all(&[5, 1, 0]).await?;
    ensure!(read_n(&mut s, 2).await? == [5, 0]);
    s.write_all(&connect_request(1, closed)).await?;
    let (code, _) = read_reply(&mut s).await?;
    ensure!(
        code == 0x05,
        "reply {code:#04x}, expected connection refused"
    );

    let http = Front::http(&node, TransportChoice::H3).await?;
    let out = within(
        "curl",
        tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "20", "-o", "/dev/null", "-D", "-"])
            .args(["-x", &format!("http://{}", http.addr)])
            .arg(format!("http://127.0.0.1:{}/", closed.port()))
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .kill_on_drop(true)
            .output(),
    )
    .await??;
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    ensure!(head.starts_with("http/1.1 502"), "{head}");
    ensure!(
        head.contains("proxy-status:") && head.contains("error=connection_refused"),
        "{head}"
    );
    ensure!(socks.stop().await?.tunnels_refused == 1);
    ensure!(http.stop().await?.tunnels_refused == 1);
    node.node.shutdown().await;
    Ok(())
}

/// Beyond loopback only with --allow-remote: the library refuses, and so
/// does the command line, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_listen_needs_allow_remote() -> Result<()> {
    let client = Arc::new(SharedClient::new(
        "https://localhost:1",
        ClientOptions::default(),
    ));
    let config = Socks5Config {
        settings: FrontSettings::new("0.0.0.0:0".parse()?),
        credentials: None,
        client: Arc::clone(&client),
    };
    let (tx, _rx) = oneshot::channel();
    let r = socks5::serve(config, std::future::pending(), tx).await;
    ensure!(matches!(r, Err(FrontError::RemoteListen(_))), "{r:?}");
    let config = HttpProxyConfig {
        settings: FrontSettings::new("0.0.0.0:0".parse()?),
        client,
    };
    let (tx, _rx) = oneshot::channel();
    let r = http_proxy::serve(config, std::future::pending(), tx).await;
    ensure!(matches!(r, Err(FrontError::RemoteListen(_))), "{r:?}");

    for cmd in ["socks5", "http-proxy"] {
        let out = within(
            cmd,
            tokio::process::Command::new(env!("CARGO_BIN_EXE_masque-node"))
                .args([cmd, "--proxy", "https://localhost:1", "--insecure"])
                .args(["--listen", "0.0.0.0:0"])
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await??;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "{cmd}: exited 0");
        ensure!(
            err.contains("--allow-remote") && err.contains("loopback"),
            "{cmd}: {err}"
        );
    }
    Ok(())
}

/// Whether `prog` is on PATH.
fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
}

/// A throwaway HOME whose NSS database trusts `ca_pem` as a CA (Chromium
/// reads `$HOME/.pki/nssdb`).
async fn nss_home(dir: &Path, ca_pem: &str) -> Result<()> {
    let db = dir.join(".pki/nssdb");
    std::fs::create_dir_all(&db)?;
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ca_pem)?;
    let db_arg = format!("sql:{}", db.display());
    for args in [
        vec!["-d", &db_arg, "-N", "--empty-password"],
        vec![
            "-d",
            &db_arg,
            "-A",
            "-t",
            "C,,",
            "-n",
            "masque-fronts-test",
            "-i",
            ca.to_str().context("path")?,
        ],
    ] {
        let out = within(
            "certutil",
            tokio::process::Command::new("certutil")
                .args(&args)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await??;
        ensure!(
            out.status.success(),
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Headless Chromium loading `url` through `proxy`: its exit status, the
/// DOM it printed and the end of its log.
async fn chromium(home: &Path, proxy: &str, url: &str) -> Result<(String, String)> {
    let profile = home.join(format!("profile-{}", proxy.replace([':', '/', '.'], "_")));
    let child = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            // Loopback is bypassed by default; the test's origin is on it.
            "--proxy-bypass-list=<-loopback>",
        ])
        .arg(format!("--proxy-server={proxy}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=5000", "--dump-dom", url])
        .env("HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .context("chromium did not finish within 90 s")??;
    let log = String::from_utf8_lossy(&out.stderr)
        .lines()
        .rev()
        .take(20)
        .collect::<Vec<_>>()
        .join("\n");
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        format!("{}; {log}", out.status),
    ))
}

/// [`chromium`], which must show the page's marker.
async fn chromium_dump(home: &Path, proxy: &str, url: &str) -> Result<String> {
    let (dom, log) = chromium(home, proxy, url).await?;
    ensure!(
        dom.contains(MARKER),
        "chromium through {proxy}: no marker in the DOM: {dom}\nlog: {log}"
    );
    Ok(dom)
}

/// A real browser: headless Chromium loads an HTTPS page (certificate
/// signed by a test CA in a throwaway NSS database, no
/// --ignore-certificate-errors) through http-proxy and through socks5.
/// Runs when chromium and certutil are on PATH; with
/// MASQUE_REQUIRE_BROWSER=1 their absence fails the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_through_both_fronts() -> Result<()> {
    let required = std::env::var("MASQUE_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let missing: Vec<_> = ["chromium", "certutil"]
        .into_iter()
        .filter(|p| !on_path(p))
        .collect();
    if !missing.is_empty() {
        ensure!(
            !required,
            "MASQUE_REQUIRE_BROWSER=1 but {missing:?} not on PATH (apt-get install chromium libnss3-tools)"
        );
        eprintln!("skipped: {missing:?} not on PATH (set MASQUE_REQUIRE_BROWSER=1 to require)");
        return Ok(());
    }
    let node = TestNode::start().await?;
    let (origin, ca_pem) = https_origin().await?;
    let home = temp_dir("chromium")?;
    nss_home(&home, &ca_pem).await?;
    let url = format!("https://localhost:{}/browser", origin.port());
    let http = Front::http(&node, TransportChoice::H3).await?;
    let dom = chromium_dump(&home, &format!("http://{}", http.addr), &url).await?;
    ensure!(dom.contains("GET /browser HTTP/1.1"), "{dom}");
    let socks = Front::socks5(&node, TransportChoice::H2, None).await?;
    chromium_dump(&home, &format!("socks5://{}", socks.addr), &url).await?;
    // The control: without the CA in its NSS database the same page does
    // not load (so the trust above is what made it load).
    let untrusting = temp_dir("chromium-no-ca")?;
    let (dom, _) = chromium(&untrusting, &format!("http://{}", http.addr), &url).await?;
    ensure!(
        !dom.contains(MARKER),
        "loaded without trusting the CA: {dom}"
    );
    let _ = std::fs::remove_dir_all(untrusting);
    let h = http.stop().await?;
    let s = socks.stop().await?;
    ensure!(
        h.tunnels_opened >= 1 && s.tunnels_opened >= 1,
        "{h:?} {s:?}"
    );
    node.node.shutdown().await;
    let _ = std::fs::remove_dir_all(home);
    Ok(())
}

/// One proxy connection for every local client; a connection that closed
/// is replaced by the next tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_connection_is_remade_when_closed() -> Result<()> {
    let node = TestNode::start().await?;
    let origin = http_origin().await?;
    let client = node.client(TransportChoice::H3);
    let front = Front::socks5_with(
        FrontSettings::new("127.0.0.1:0".parse()?),
        Arc::clone(&client),
        None,
    )
    .await?;
    let url = format!("http://127.0.0.1:{}/shared", origin.port());
    for _ in 0..3 {
        let body = curl(&["--socks5-hostname", &front.addr.to_string(), &url]).await?;
        ensure!(body.contains("GET /shared HTTP/1.1"), "{body}");
    }
    ensure!(client.connects() == 1, "{} connections", client.connects());
    // Closed behind the front's back (as a proxy restart or idle close would).
    within("close", client.client().await?.close()).await?;
    let body = curl(&["--socks5-hostname", &front.addr.to_string(), &url]).await?;
    ensure!(body.contains("GET /shared HTTP/1.1"), "{body}");
    ensure!(client.connects() == 2, "{} connections", client.connects());
    let c = front.stop().await?;
    ensure!(c.tunnels_opened == 4 && c.tunnels_refused == 0, "{c:?}");
    node.node.shutdown().await;
    Ok(())
}

/// --max-connections closes the connections beyond it at once;
/// --handshake-timeout closes a client that says nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_connections_are_bounded() -> Result<()> {
    let client = Arc::new(SharedClient::new(
        "https://localhost:1",
        ClientOptions::default(),
    ));
    let mut settings = FrontSettings::new("127.0.0.1:0".parse()?);
    settings.max_connections = 1;
    settings.handshake_timeout = Duration::from_secs(1);
    let front = Front::socks5_with(settings, client, None).await?;
    let mut silent = within("connect", TcpStream::connect(front.addr)).await??;
    within("accepted", async {
        while front.stats.snapshot().connections == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await?;
    let mut second = within("connect", TcpStream::connect(front.addr)).await??;
    let mut buf = [0u8; 8];
    // Closed at once (EOF or reset).
    let r = within("second closed", second.read(&mut buf)).await?;
    ensure!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    let started = tokio::time::Instant::now();
    let r = within("silent closed", silent.read(&mut buf)).await?;
    ensure!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    ensure!(started.elapsed() < Duration::from_secs(10));
    let c = front.stop().await?;
    ensure!(c.connections_rejected == 1, "{c:?}");
    ensure!(c.handshake_failures == 1, "{c:?}");
    Ok(())
}
