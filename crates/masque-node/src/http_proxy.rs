//! `masque-node http-proxy`: a local plain-HTTP proxy (HTTP/1.1, hyper).
//! `CONNECT host:port` answers 200 once a TCP tunnel through the proxy is
//! open, then carries bytes both ways; an absolute-form request
//! (`GET http://host/path`) goes through its own TCP tunnel to host:port,
//! rewritten to origin-form (one request per tunnel). Tunnels the proxy
//! refuses are answered 403 / 502 / 504 with its `Proxy-Status`.

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc};

use anyhow::Result;
use bytes::Bytes;
use clap::Args;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use masque_client::{ClientError, Target};
use tokio::{net::TcpStream, sync::oneshot, task::JoinSet};

use crate::client_args::{
    ClientArgs, Counted, FrontArgs, FrontCounters, FrontError, FrontSettings, FrontStats, Ready,
    SharedClient, accept_loop, announce, bind, init_logging, stop_signal,
};

/// The name in our own `Proxy-Status` entries.
const PROXY_NAME: &str = "masque-http-proxy";

#[derive(Debug, Args)]
pub struct HttpProxyArgs {
    /// Local TCP address of the HTTP proxy.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub front: FrontArgs,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Everything [`serve`] needs.
#[derive(Debug, Clone)]
pub struct HttpProxyConfig {
    pub settings: FrontSettings,
    pub client: Arc<SharedClient>,
}

/// The command: serve until Ctrl-C / SIGTERM, log the counters.
pub async fn run(args: HttpProxyArgs) -> Result<()> {
    init_logging();
    let options = args.client.options()?;
    let transport = options.transport;
    let config = HttpProxyConfig {
        settings: args.front.settings(args.listen),
        client: Arc::new(SharedClient::new(args.client.proxy.clone(), options)),
    };
    let (ready_tx, ready_rx) = oneshot::channel::<Ready>();
    let proxy = args.client.proxy.clone();
    let mode = args.front.mode.as_str();
    let banner = async move {
        if let Ok(ready) = ready_rx.await {
            println!(
                "http-proxy: listening on {} -> {proxy} ({transport}, {mode})",
                ready.addr
            );
            println!("try it: curl -x http://{} https://example.com/", ready.addr);
        }
    };
    let (served, ()) = tokio::join!(serve(config, stop_signal(), ready_tx), banner);
    let counters = served?;
    tracing::info!(%counters, "http-proxy: stopped");
    Ok(())
}

/// Serves the HTTP proxy on `config.settings.listen` until `shutdown`;
/// `ready` gets the bound address and the live counters. Returns the final
/// counters.
pub async fn serve(
    config: HttpProxyConfig,
    shutdown: impl Future<Output = ()>,
    ready: oneshot::Sender<Ready>,
) -> Result<FrontCounters, FrontError> {
    let listener = bind(&config.settings).await?;
    let addr = listener.local_addr().map_err(|source| FrontError::Bind {
        addr: config.settings.listen,
        source,
    })?;
    let stats = Arc::new(FrontStats::default());
    announce(ready, addr, &stats);
    tracing::info!(%addr, proxy = config.client.url(), "http-proxy: listening");
    let config = Arc::new(config);
    let counters = accept_loop(
        "http-proxy",
        listener,
        &config.settings,
        Arc::clone(&stats),
        shutdown,
        |stream, peer| {
            let config = Arc::clone(&config);
            let stats = Arc::clone(&stats);
            async move { connection(stream, peer, config, stats).await }
        },
    )
    .await;
    config.client.close().await;
    Ok(counters)
}

type Body = BoxBody<Bytes, hyper::Error>;

/// The tasks a local connection starts (CONNECT relays, origin
/// connections): they belong to it, so cutting the connection at shutdown
/// cuts them too (dropping a `JoinSet` aborts its tasks).
#[derive(Clone, Default)]
struct Tasks(Arc<std::sync::Mutex<JoinSet<()>>>);

impl Tasks {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut set = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Finished ones go first: a keep-alive connection may carry many.
        while set.try_join_next().is_some() {}
        set.spawn(task);
    }

    /// Waits for every task (none is added any more).
    async fn join(self) {
        let mut set = std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        while set.join_next().await.is_some() {}
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<HttpProxyConfig>,
    stats: Arc<FrontStats>,
) {
    let head_timeout = config.settings.handshake_timeout;
    let tasks = Tasks::default();
    let service = {
        let stats = Arc::clone(&stats);
        let tasks = tasks.clone();
        service_fn(move |req| {
            let config = Arc::clone(&config);
            let stats = Arc::clone(&stats);
            let tasks = tasks.clone();
            async move { Ok::<_, Infallible>(handle(req, &config, &stats, &tasks).await) }
        })
    };
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(e) = result {
        if e.is_timeout() || e.is_parse() {
            stats.handshake_failed();
        }
        tracing::debug!(%peer, error = %e, "http-proxy: connection ended");
    }
    tasks.join().await;
}

async fn handle(
    req: Request<Incoming>,
    config: &HttpProxyConfig,
    stats: &Arc<FrontStats>,
    tasks: &Tasks,
) -> Response<Body> {
    if req.method() == Method::CONNECT {
        return connect(req, config, stats, tasks).await;
    }
    forward(req, config, stats, tasks).await
}

/// `CONNECT host:port`: open the tunnel, answer 200, then relay the
/// upgraded connection.
async fn connect(
    req: Request<Incoming>,
    config: &HttpProxyConfig,
    stats: &Arc<FrontStats>,
    tasks: &Tasks,
) -> Response<Body> {
    let Some((host, port)) = req
        .uri()
        .authority()
        .and_then(|a| a.port_u16().map(|p| (a.host().to_owned(), p)))
    else {
        return plain(StatusCode::BAD_REQUEST, "CONNECT needs host:port\n");
    };
    let tunnel = match open(&host, port, config, stats).await {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let stats = Arc::clone(stats);
    tasks.spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let mut local = TokioIo::new(upgraded);
                let mut tunnel = Counted::new(tunnel, stats);
                if let Err(e) = tokio::io::copy_bidirectional(&mut local, &mut tunnel).await {
                    tracing::debug!(%host, port, error = %e, "http-proxy: CONNECT relay ended");
                }
            }
            Err(e) => tracing::debug!(error = %e, "http-proxy: CONNECT upgrade failed"),
        }
    });
    Response::new(empty())
}

/// An absolute-form request: its own tunnel to the origin, sent there in
/// origin-form with `Connection: close`, the response streamed back.
async fn forward(
    mut req: Request<Incoming>,
    config: &HttpProxyConfig,
    stats: &Arc<FrontStats>,
    tasks: &Tasks,
) -> Response<Body> {
    let uri = req.uri().clone();
    let Some(authority) = uri.authority().cloned() else {
        return plain(
            StatusCode::BAD_REQUEST,
            "this is a proxy: send absolute-form requests (http://host/path) or CONNECT\n",
        );
    };
    if uri.scheme_str() != Some("http") {
        return plain(
            StatusCode::BAD_REQUEST,
            "only http:// URLs are forwarded; use CONNECT for https\n",
        );
    }
    let host = authority.host().to_owned();
    let port = authority.port_u16().unwrap_or(80);
    let tunnel = match open(&host, port, config, stats).await {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    *req.uri_mut() = match path.parse::<Uri>() {
        Ok(u) => u,
        Err(_) => return plain(StatusCode::BAD_REQUEST, "bad request target\n"),
    };
    strip_hop_by_hop(req.headers_mut());
    let headers = req.headers_mut();
    if !headers.contains_key(header::HOST)
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(header::HOST, v);
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    let io = TokioIo::new(Counted::new(tunnel, Arc::clone(stats)));
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(io).await {
        Ok(x) => x,
        Err(e) => return origin_error(&e),
    };
    tasks.spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "http-proxy: origin connection ended");
        }
    });
    match sender.send_request(req).await {
        Ok(mut resp) => {
            strip_hop_by_hop(resp.headers_mut());
            resp.map(BodyExt::boxed)
        }
        Err(e) => origin_error(&e),
    }
}

/// A TCP tunnel to host:port, or the response that says why not.
async fn open(
    host: &str,
    port: u16,
    config: &HttpProxyConfig,
    stats: &FrontStats,
) -> Result<masque_client::TcpTunnel, Response<Body>> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let target = Target::tcp(host, port);
    match config.client.open_tcp(&target, config.settings.mode).await {
        Ok(t) => {
            stats.tunnel_opened();
            Ok(t)
        }
        Err(e) => {
            stats.tunnel_refused();
            tracing::info!(%target, error = %e, "http-proxy: tunnel not opened");
            Err(refusal(&e))
        }
    }
}

/// 403 / 502 / 504 for a tunnel that did not open, with the node's
/// `Proxy-Status` when it sent one, else ours.
pub fn refusal(e: &ClientError) -> Response<Body> {
    let (status, proxy_status) = match e {
        ClientError::Refused {
            status,
            proxy_status,
            ..
        } => {
            let status = match status.as_u16() {
                403 => StatusCode::FORBIDDEN,
                504 => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            };
            (status, proxy_status.clone())
        }
        ClientError::Timeout(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            Some(format!("{PROXY_NAME}; error=connection_timeout")),
        ),
        _ => (
            StatusCode::BAD_GATEWAY,
            Some(format!("{PROXY_NAME}; error=proxy_internal_error")),
        ),
    };
    let mut resp = plain(status, &format!("tunnel not opened: {e}\n"));
    if let Some(v) = proxy_status.and_then(|v| HeaderValue::from_str(&v).ok()) {
        resp.headers_mut().insert("proxy-status", v);
    }
    resp
}

fn origin_error(e: &hyper::Error) -> Response<Body> {
    tracing::debug!(error = %e, "http-proxy: origin request failed");
    let mut resp = plain(StatusCode::BAD_GATEWAY, "the origin did not answer\n");
    resp.headers_mut().insert(
        "proxy-status",
        HeaderValue::from_static("masque-http-proxy; error=http_protocol_error"),
    );
    resp
}

/// Drops the hop-by-hop fields (RFC 9110 §7.6.1), those named in
/// `Connection` included.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    for name in [
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "upgrade",
    ] {
        headers.remove(name);
    }
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::copy_from_slice(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
