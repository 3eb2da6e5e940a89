//! HTTP/1.1 client adapter (hyper): one TLS connection (ALPN `http/1.1`) per
//! tunnel. `GET <path>` + `Upgrade: <token>` must be answered with a 101 that
//! names the token and carries `Connection: upgrade` (RFC 9110 §7.8, RFC 9298
//! §3.2); `CONNECT host:port` with a 2xx. Bytes the proxy sent right after its
//! answer stay in hyper's upgraded connection.

use std::{
    net::SocketAddr,
    str::FromStr,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use http_body_util::Empty;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use masque_proto::{headers::list, request::RequestForm};
use tokio::task::AbortHandle;

use super::{
    ClientConfig, ConnectError, OpenError, Opened, ResponseHead, TunnelHead, capsule_datagrams,
    tcp::TlsDialer,
};
use crate::{
    server::TunnelLimits,
    tls::{ALPN_HTTP11, client_config},
    tunnel::{BodyRx, BodyTx, OpenTunnel, TunnelError, body::H1Reader},
};

/// HTTP/1.1 limits of a client.
#[derive(Debug, Clone)]
pub struct H1ClientConfig {
    /// Bytes of the response head (hyper's read buffer; at least 8192).
    pub max_head_size: usize,
    /// Header fields in the response head.
    pub max_headers: usize,
}

impl Default for H1ClientConfig {
    fn default() -> Self {
        Self {
            max_head_size: 16 * 1024,
            max_headers: 64,
        }
    }
}

#[derive(Debug)]
pub(super) struct H1Client {
    dialer: TlsDialer,
    config: H1ClientConfig,
    closed: AtomicBool,
    /// Tunnel sequence numbers (stand-ins for stream ids).
    next_id: AtomicU64,
}

/// Aborts the connection task unless disarmed (a request given up on must not
/// leave its connection behind).
struct AbortOnDrop(Option<AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

impl H1Client {
    pub(super) fn new(
        addr: SocketAddr,
        server_name: &str,
        config: &ClientConfig,
    ) -> Result<Self, ConnectError> {
        let tls = client_config(&config.verification, &[ALPN_HTTP11])?;
        Ok(Self {
            // A server without ALPN speaks HTTP/1.1.
            dialer: TlsDialer::new(addr, config.bind, server_name, tls, ALPN_HTTP11, true)?,
            config: config.h1.clone(),
            closed: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
        })
    }

    pub(super) async fn open(
        &self,
        head: &TunnelHead,
        limits: TunnelLimits,
        limit: Duration,
    ) -> Result<Opened, OpenError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(OpenError::GoingAway);
        }
        let request = request(head)?;
        let exchange = async {
            let io = self.dialer.dial().await?;
            let mut b = http1::Builder::new();
            b.max_buf_size(self.config.max_head_size.max(8192))
                .max_headers(self.config.max_headers);
            let (mut send, conn) = b
                .handshake::<_, Empty<Bytes>>(TokioIo::new(io))
                .await
                .map_err(TunnelError::from)?;
            // `with_upgrades`, or the upgraded connection never arrives.
            let driver = tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(error = %e, "HTTP/1.1 client connection ended");
                }
            });
            let mut guard = AbortOnDrop(Some(driver.abort_handle()));
            let mut response = send
                .send_request(request)
                .await
                .map_err(TunnelError::from)?;
            let head_out = ResponseHead {
                status: response.status(),
                headers: response.headers().clone(),
            };
            match verdict(head.protocol(), head_out.status, &head_out.headers) {
                Verdict::Tunnel => {}
                // Dropping the connection closes it (RFC 9931: nothing more is
                // sent on a connection whose upgrade or CONNECT failed).
                Verdict::Refused => return Err(OpenError::Refused(head_out)),
                Verdict::Invalid(reason) => {
                    return Err(OpenError::InvalidUpgrade {
                        status: head_out.status,
                        reason,
                    });
                }
            }
            let upgraded = hyper::upgrade::on(&mut response)
                .await
                .map_err(TunnelError::from)?;
            // The connection task handed the connection over and ends.
            guard.0 = None;
            Ok::<_, OpenError>((head_out, upgraded))
        };
        let (response, upgraded) = tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| OpenError::Timeout("HTTP/1.1 dial and response"))??;
        let (read, write) = tokio::io::split(TokioIo::new(upgraded));
        let (datagram_tx, capsules) = capsule_datagrams(limits);
        Ok(Opened {
            response,
            tunnel: OpenTunnel {
                body_tx: BodyTx::H1(tokio::io::BufWriter::new(write)),
                body_rx: BodyRx::H1(H1Reader::new(read)),
                datagram_tx,
                datagram_rx: None,
                capsules: Some(capsules),
            },
            stream_id: self.next_id.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// One TLS dial within `limit`, then close_notify (bounded too): the
    /// proxy is reachable and agreed to HTTP/1.1.
    pub(super) async fn probe(&self, limit: Duration) -> Result<(), ConnectError> {
        let mut io = tokio::time::timeout(limit, self.dialer.dial())
            .await
            .map_err(|_| ConnectError::Timeout("TCP and TLS handshake"))??;
        let close = tokio::io::AsyncWriteExt::shutdown(&mut io);
        let _ = tokio::time::timeout(limit, close).await;
        Ok(())
    }

    /// New tunnels are refused; open ones end with their own connections.
    pub(super) fn goaway(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// The HTTP/1.1 request: `GET <path>` with `Host`, `Connection: Upgrade` and
/// `Upgrade: <token>` (RFC 9298 §3.2), or `CONNECT host:port` with `Host`
/// (RFC 9112 §3.2.3). The caller's fields come first; ours replace theirs.
fn request(head: &TunnelHead) -> Result<http::Request<Empty<Bytes>>, OpenError> {
    let invalid = |what: &str| OpenError::InvalidRequest(what.to_owned());
    let value = |v: &str, what: &str| HeaderValue::from_str(v).map_err(|_| invalid(what));
    let mut headers = head.headers.clone();
    let (method, uri) = match &head.form {
        RequestForm::Extended {
            protocol,
            authority,
            path,
        } => {
            headers.insert(header::HOST, value(authority, "Host")?);
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            headers.insert(header::UPGRADE, value(protocol, "Upgrade")?);
            let uri = Uri::from_str(path).map_err(|_| invalid("request-target"))?;
            if uri.authority().is_some() || !path.starts_with('/') {
                return Err(invalid("request-target"));
            }
            (Method::GET, uri)
        }
        RequestForm::Classic { authority } => {
            headers.insert(header::HOST, value(authority, "Host")?);
            let uri = Uri::from_str(authority).map_err(|_| invalid("CONNECT target"))?;
            if uri.authority().is_none() || uri.path_and_query().is_some_and(|p| p != "/") {
                return Err(invalid("CONNECT target"));
            }
            (Method::CONNECT, uri)
        }
    };
    let mut request = http::Request::new(Empty::new());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// What an HTTP/1.1 final response means for a tunnel request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// 101 switching to our protocol (upgrade), or 2xx (classic CONNECT).
    Tunnel,
    /// A failure response: the proxy refused.
    Refused,
    /// A "success" that is no valid switch (RFC 9110 §7.8).
    Invalid(String),
}

/// Judges the final response to an upgrade for `protocol` (`None`: classic
/// CONNECT).
///
/// * Upgrade: only 101 is a tunnel, and only when `Upgrade` names exactly our
///   token (any case, RFC 9110 §7.8) and `Connection` lists `upgrade` (RFC 9110
///   §7.6.1 / §7.8: a sender of `Upgrade` must list it). A 2xx means the proxy
///   ignored the upgrade: not a tunnel either. Anything else is a refusal.
/// * Classic CONNECT: 2xx is a tunnel (RFC 9110 §9.3.6), anything else a refusal.
pub(crate) fn verdict(protocol: Option<&str>, status: StatusCode, headers: &HeaderMap) -> Verdict {
    let Some(token) = protocol else {
        return if status.is_success() {
            Verdict::Tunnel
        } else {
            Verdict::Refused
        };
    };
    if status.is_success() {
        return Verdict::Invalid(format!(
            "{status} instead of 101 (Switching Protocols): the upgrade was ignored"
        ));
    }
    if status != StatusCode::SWITCHING_PROTOCOLS {
        return Verdict::Refused;
    }
    let lines = |name: header::HeaderName| -> Vec<&[u8]> {
        headers
            .get_all(name)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect()
    };
    let (upgrade, connection) = (lines(header::UPGRADE), lines(header::CONNECTION));
    let offered: Vec<&[u8]> = list::elements(&upgrade).collect();
    match offered.as_slice() {
        [] => return Verdict::Invalid("101 without an Upgrade field".to_owned()),
        [one] if one.eq_ignore_ascii_case(token.as_bytes()) => {}
        other => {
            let named: Vec<String> = other
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            return Verdict::Invalid(format!(
                "101 switches to `{}`, not `{token}`",
                named.join(", ")
            ));
        }
    }
    if !list::elements(&connection).any(|t| t.eq_ignore_ascii_case(b"upgrade")) {
        return Verdict::Invalid("101 without `upgrade` in Connection".to_owned());
    }
    Verdict::Tunnel
}
