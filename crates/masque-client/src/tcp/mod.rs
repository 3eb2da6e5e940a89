//! TCP tunnels: connect-tcp (draft-ietf-httpbis-connect-tcp-11, extended
//! CONNECT / `Upgrade: connect-tcp`, the byte stream in DATA / FINAL_DATA
//! capsules) and classic CONNECT (RFC 9110 §9.3.6, RFC 9113 §8.5, RFC 9114
//! §4.4, raw bytes), over HTTP/3, HTTP/2 and HTTP/1.1.
//!
//! A [`TcpTunnel`] is `AsyncRead + AsyncWrite`. It runs two small tasks, one
//! per direction, each owning its half of the transport's body
//! ([`read`], [`write`]): a write keeps moving while the caller only reads, a
//! reset can cut into a write the proxy gives no credit for, and the halves
//! split for free ([`TcpTunnel::into_split`]). Every buffer is bounded: the
//! write side holds at most two pieces of 64 KiB, the read side a queue of
//! 32 received pieces (shared with the transport, or a burst of them gathered
//! into one) on top of the transport's own window.
//!
//! Closing (CTCP-19..22): `shutdown()` sends FINAL_DATA (connect-tcp) or ends
//! our side (classic: FIN / END_STREAM / TLS close_notify) and reading goes
//! on; the proxy's FINAL_DATA / FIN is EOF; a reset, or a connect-tcp stream
//! that ends without FINAL_DATA, is an `io::ErrorKind::ConnectionReset` error.
//! Dropping the tunnel before a shutdown resets the stream.

mod error;
mod events;
mod read;
mod write;

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
};

use http::{HeaderMap, StatusCode};
use masque_proto::{
    tcp::{Codepoints, TcpReceiver, TcpSender},
    template::TcpTemplate,
};
use masque_transport::{
    ClientConnection, OpenTunnel, Opened, ResetReason, Transport, client::ResponseHead,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use error::TcpStreamError;
pub use events::TcpTunnelEvent;
pub use read::TcpReadHalf;
pub use write::TcpWriteHalf;

use crate::{ClientError, ClientOptions, Target, request};

/// How a TCP tunnel is requested.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TcpMode {
    /// connect-tcp with the final token `connect-tcp` (its codepoints are
    /// masque-proto's [`FINAL`](masque_proto::tcp::FINAL)).
    #[default]
    ConnectTcp,
    /// connect-tcp with an interop token and its codepoints, e.g.
    /// [`masque_proto::tcp::DRAFT_11`] (`connect-tcp-07`) or
    /// [`DRAFT_12`](masque_proto::tcp::DRAFT_12) (`connect-tcp-12`).
    ConnectTcpToken(Codepoints),
    /// Classic `CONNECT host:port`: raw bytes, FIN = end of the stream.
    Classic,
}

impl TcpMode {
    /// The connect-tcp codepoints; `None` for classic CONNECT.
    pub fn codepoints(self) -> Option<Codepoints> {
        match self {
            Self::ConnectTcp => Some(masque_proto::tcp::FINAL),
            Self::ConnectTcpToken(c) => Some(c),
            Self::Classic => None,
        }
    }
}

/// What is known about an open TCP tunnel.
#[derive(Debug, Clone)]
pub struct TcpTunnelInfo {
    /// The proxy's address (UDP for HTTP/3, TCP otherwise).
    pub proxy: SocketAddr,
    /// The request stream id (HTTP/1.1: the tunnel's sequence number).
    pub stream_id: u64,
    pub transport: Transport,
    pub mode: TcpMode,
    /// The status the proxy answered with: 2xx, or 101 on an HTTP/1.1 upgrade.
    pub status: StatusCode,
    /// The response header fields.
    pub headers: HeaderMap,
}

/// An open TCP tunnel through the proxy: `AsyncRead + AsyncWrite`.
///
/// * `shutdown()` is a half-close: FINAL_DATA (connect-tcp) or the end of
///   our side (classic: FIN / END_STREAM / TLS close_notify); reading goes on
///   (CTCP-19/20).
/// * EOF on read is the proxy's FINAL_DATA / FIN. A reset, or a connect-tcp
///   stream that ends without FINAL_DATA, is an `io::Error` of kind
///   `ConnectionReset` carrying a [`TcpStreamError`] (CTCP-21/22).
/// * Dropping it (or its write half) before a shutdown aborts the tunnel:
///   stream reset (H3_REQUEST_CANCELLED / CANCEL), on HTTP/1.1 the
///   connection closed.
///
/// Two small tasks carry the bytes, one per direction: a write keeps moving
/// while the caller only reads (as with a kernel socket), an abort cuts into
/// a write the proxy gives no credit for, and [`into_split`](Self::into_split)
/// costs nothing. Buffers are bounded: at most two pieces of 64 KiB on the
/// way out (`poll_write` waits for room), and 32 received pieces on the
/// way in on top of the transport's window (HTTP/3 and HTTP/2 flow control,
/// TCP on HTTP/1.1), which holds the proxy back while nobody reads. Received
/// bytes are copied into the caller's buffer, and once more when a burst of
/// small pieces is gathered into one ([`TcpReadHalf::recv`] hands pieces out
/// without the first copy).
#[derive(Debug)]
pub struct TcpTunnel {
    read: TcpReadHalf,
    write: TcpWriteHalf,
    info: TcpTunnelInfo,
    conn: ClientConnection,
    /// The slot on a pooled connection this tunnel holds
    /// ([`crate::ProxyClient::connect_tcp`]); given back when the tunnel
    /// goes (after [`into_split`](Self::into_split): both halves).
    pub(crate) lease: Option<crate::pool::Lease>,
}

impl TcpTunnel {
    /// Opens a TCP tunnel on a connection of any transport (e.g. one shared
    /// with UDP sessions, like [`crate::UdpSession::open_with`]).
    /// `authority` is the proxy's `host[:port]`, used for the default
    /// connect-tcp template when `options.tcp_template` is `None`; the
    /// connection-level fields of `options` (TLS, MTU, bind) are not used.
    pub async fn open_with(
        conn: &ClientConnection,
        authority: &str,
        target: &Target,
        mode: TcpMode,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let template = request::tcp_template(authority, options.tcp_template.as_deref())?;
        Self::open(conn, &template, target, mode, options).await
    }

    /// Opens a TCP tunnel to `target` (a [`Target::Tcp`]) on `conn`.
    /// connect-tcp uses `template`; classic CONNECT names the target in
    /// `:authority` / the request target. Refusals are
    /// [`ClientError::Refused`] with the status and `Proxy-Status`.
    pub(crate) async fn open(
        conn: &ClientConnection,
        template: &TcpTemplate,
        target: &Target,
        mode: TcpMode,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let hp = target.to_tcp_target()?;
        let codepoints = mode.codepoints();
        let head = match codepoints {
            Some(c) => request::build_tcp(template, &hp, c, &options.headers)?,
            None => request::build_classic(&hp, &options.headers),
        };
        let Opened {
            response,
            tunnel,
            stream_id,
        } = conn
            .open(&head)
            .await
            .map_err(|e| ClientError::from_open(e, options.connect_timeout))?;
        let checked = match codepoints {
            Some(_) => request::check_response(&response, conn.transport()),
            None => request::check_classic_response(&response),
        };
        let OpenTunnel {
            mut body_tx,
            mut body_rx,
            ..
        } = tunnel;
        if let Err(e) = checked {
            body_tx.reset(ResetReason::Cancelled);
            body_rx.stop(ResetReason::Cancelled);
            return Err(e);
        }
        let write = TcpWriteHalf::spawn(body_tx, codepoints.map(TcpSender::new), stream_id);
        let read = TcpReadHalf::spawn(
            body_rx,
            codepoints.map(TcpReceiver::new),
            write.shared(),
            options.close_timeout,
            stream_id,
        );
        let ResponseHead { status, headers } = response;
        tracing::debug!(stream = stream_id, %target, ?mode, transport = %conn.transport(), "TCP tunnel open");
        Ok(Self {
            read,
            write,
            info: TcpTunnelInfo {
                proxy: conn.peer(),
                stream_id,
                transport: conn.transport(),
                mode,
                status,
                headers,
            },
            conn: conn.clone(),
            lease: None,
        })
    }

    /// Proxy, stream id, transport, mode and the response.
    pub fn info(&self) -> &TcpTunnelInfo {
        &self.info
    }

    /// The request stream id (HTTP/1.1: the tunnel's sequence number).
    pub fn stream_id(&self) -> u64 {
        self.info.stream_id
    }

    /// The HTTP version carrying the tunnel.
    pub fn transport(&self) -> Transport {
        self.info.transport
    }

    /// The proxy's address.
    pub fn peer(&self) -> SocketAddr {
        self.info.proxy
    }

    /// The connection carrying this tunnel.
    pub fn client_connection(&self) -> &ClientConnection {
        &self.conn
    }

    /// The HTTP/3 connection carrying this tunnel, if it runs on HTTP/3.
    pub fn h3_connection(&self) -> Option<&masque_h3::Connection> {
        self.conn.as_h3()
    }

    /// Resets the tunnel now (both directions): H3_REQUEST_CANCELLED / CANCEL;
    /// on HTTP/1.1 the connection closes.
    pub fn abort(self) {
        self.write.abort();
        // Dropping the read half stops reading (STOP_SENDING on HTTP/3).
    }

    /// The two halves, usable from different tasks. A connection opened by
    /// [`crate::connect_tcp`] stays open until both halves are gone (HTTP/3
    /// and HTTP/2 end it once no tunnel uses it).
    pub fn into_split(self) -> (TcpReadHalf, TcpWriteHalf) {
        let Self {
            mut read,
            mut write,
            lease,
            ..
        } = self;
        if let Some(lease) = lease.map(std::sync::Arc::new) {
            read.lease = Some(std::sync::Arc::clone(&lease));
            write.lease = Some(lease);
        }
        (read, write)
    }

    /// The read half, e.g. for [`TcpReadHalf::recv`] (chunks without a copy).
    pub fn read_half(&mut self) -> &mut TcpReadHalf {
        &mut self.read
    }

    /// The write half.
    pub fn write_half(&mut self) -> &mut TcpWriteHalf {
        &mut self.write
    }
}

impl AsyncRead for TcpTunnel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().read).poll_read(cx, buf)
    }
}

impl AsyncWrite for TcpTunnel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().write).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().write).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().write).poll_shutdown(cx)
    }
}
