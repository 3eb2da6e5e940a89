//! The tunnel's byte stream: request/response body on HTTP/3 and HTTP/2, the
//! upgraded connection on HTTP/1.1. Writes wait for the peer's credit
//! (HTTP/3 stream flow control, HTTP/2 `reserve_capacity`/`poll_capacity`,
//! TCP); reads release credit as the session consumes them.

use std::{future::poll_fn, time::Duration};

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use masque_h3::{RecvHalf, SendHalf};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter, ReadHalf, WriteHalf};

use super::{ResetReason, TunnelError};

/// The upgraded HTTP/1.1 connection (either role).
pub(crate) type H1Io = TokioIo<Upgraded>;

/// How long a clean close of an HTTP/1.1 tunnel may take (TLS close_notify
/// and the TCP FIN) before the connection is simply dropped.
const H1_SHUTDOWN_LIMIT: Duration = Duration::from_secs(1);

/// Read size for HTTP/1.1 tunnels.
const H1_READ_CHUNK: usize = 16 * 1024;

/// Writes body bytes (capsules or raw stream bytes) with backpressure.
#[derive(Debug)]
pub enum BodyTx {
    H3(SendHalf),
    /// Gathering: [`BodyTx::feed`] collects small writes, [`BodyTx::flush`]
    /// sends them as one DATA frame (h2 takes its stream lock per call).
    H2(H2Tx),
    /// Buffered: [`BodyTx::feed`] gathers writes, [`BodyTx::flush`] sends them
    /// (one TLS record and one system call for a burst of capsules).
    H1(BufWriter<WriteHalf<H1Io>>),
}

/// Held by both halves of a client's HTTP/2 stream: the stream counts
/// against the proxy's SETTINGS_MAX_CONCURRENT_STREAMS until both are gone
/// (see `client::h2`). `None` on the server.
pub(crate) type StreamSlot = Option<std::sync::Arc<tokio::sync::OwnedSemaphorePermit>>;

/// The sending half of an HTTP/2 stream with its gather buffer.
#[derive(Debug)]
pub struct H2Tx {
    stream: h2::SendStream<Bytes>,
    pending: bytes::BytesMut,
    _slot: StreamSlot,
}

/// Writes at least this long are sent as they are, not gathered.
const H2_GATHER_LIMIT: usize = 16 * 1024;

impl BodyTx {
    pub(crate) fn h2(stream: h2::SendStream<Bytes>, slot: StreamSlot) -> Self {
        BodyTx::H2(H2Tx {
            stream,
            pending: bytes::BytesMut::new(),
            _slot: slot,
        })
    }

    /// Writes and flushes `data`.
    pub async fn send(&mut self, data: Bytes) -> Result<(), TunnelError> {
        self.feed(data).await?;
        self.flush().await
    }

    /// Writes `data`, possibly keeping it buffered until [`flush`](Self::flush)
    /// (HTTP/1.1 only; the other transports send at once).
    pub async fn feed(&mut self, data: Bytes) -> Result<(), TunnelError> {
        match self {
            BodyTx::H3(s) => Ok(s.send_data(data).await?),
            BodyTx::H2(s) if data.len() >= H2_GATHER_LIMIT && s.pending.is_empty() => {
                h2_send(&mut s.stream, data).await
            }
            BodyTx::H2(s) => {
                s.pending.extend_from_slice(&data);
                if s.pending.len() >= H2_GATHER_LIMIT {
                    let chunk = s.pending.split().freeze();
                    h2_send(&mut s.stream, chunk).await?;
                }
                Ok(())
            }
            BodyTx::H1(w) => Ok(w.write_all(&data).await?),
        }
    }

    pub async fn flush(&mut self) -> Result<(), TunnelError> {
        match self {
            BodyTx::H3(_) => Ok(()),
            BodyTx::H2(s) if s.pending.is_empty() => Ok(()),
            BodyTx::H2(s) => {
                let chunk = s.pending.split().freeze();
                h2_send(&mut s.stream, chunk).await
            }
            BodyTx::H1(w) => Ok(w.flush().await?),
        }
    }

    /// Ends our side cleanly: FIN (HTTP/3), END_STREAM (HTTP/2), or flush,
    /// TLS close_notify and TCP FIN (HTTP/1.1, bounded in time).
    pub async fn finish(&mut self) {
        match self {
            BodyTx::H3(s) => {
                let _ = s.finish();
            }
            BodyTx::H2(s) => {
                let data = s.pending.split().freeze();
                let _ = s.stream.send_data(data, true);
            }
            BodyTx::H1(w) => {
                let _ = tokio::time::timeout(H1_SHUTDOWN_LIMIT, w.shutdown()).await;
            }
        }
    }

    /// Ends our side abruptly. HTTP/1.1 has no stream reset: the caller drops
    /// the connection (both halves), which closes it.
    pub fn reset(&mut self, reason: ResetReason) {
        match self {
            BodyTx::H3(s) => s.reset(reason.h3_code()),
            BodyTx::H2(s) => s.stream.send_reset(reason.h2_reason()),
            BodyTx::H1(_) => {}
        }
    }
}

/// HTTP/2 DATA with flow control: reserve what is pending, send what the
/// peer's windows grant, wait for more (never buffer beyond the grant).
async fn h2_send(s: &mut h2::SendStream<Bytes>, mut data: Bytes) -> Result<(), TunnelError> {
    while !data.is_empty() {
        s.reserve_capacity(data.len());
        let granted = match poll_fn(|cx| s.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            Some(Err(e)) => return Err(h2_error(e)),
            None => return Err(TunnelError::Closed),
        };
        if granted == 0 {
            continue;
        }
        let chunk = data.split_to(granted.min(data.len()));
        s.send_data(chunk, false).map_err(h2_error)?;
    }
    Ok(())
}

pub(crate) fn h2_error(e: h2::Error) -> TunnelError {
    match e.reason() {
        Some(r) if e.is_reset() => TunnelError::Reset(u64::from(u32::from(r))),
        _ => TunnelError::H2(e),
    }
}

/// Reads body bytes.
// HTTP/3 is the common variant, read on the hot path: not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum BodyRx {
    H3(RecvHalf),
    H2(H2Rx),
    H1(H1Reader),
}

/// The receiving half of an HTTP/2 stream.
#[derive(Debug)]
pub struct H2Rx {
    stream: h2::RecvStream,
    _slot: StreamSlot,
}

impl BodyRx {
    pub(crate) fn h2(stream: h2::RecvStream, slot: StreamSlot) -> Self {
        BodyRx::H2(H2Rx {
            stream,
            _slot: slot,
        })
    }
}

/// The read half of an upgraded HTTP/1.1 connection with its buffer: chunks
/// are split off one buffer, which is reused once the session dropped them.
#[derive(Debug)]
pub struct H1Reader {
    io: ReadHalf<H1Io>,
    buf: bytes::BytesMut,
}

impl H1Reader {
    pub(crate) fn new(io: ReadHalf<H1Io>) -> Self {
        Self {
            io,
            buf: bytes::BytesMut::new(),
        }
    }
}

impl BodyRx {
    /// Next chunk; `None` at a clean end of the peer's side.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, TunnelError> {
        match self {
            BodyRx::H3(r) => Ok(r.recv_data().await?),
            BodyRx::H2(r) => match r.stream.data().await {
                Some(Ok(chunk)) => {
                    // The session handles each chunk before it asks for the
                    // next, so the credit given back is what it consumed.
                    let _ = r.stream.flow_control().release_capacity(chunk.len());
                    Ok(Some(chunk))
                }
                Some(Err(e)) => Err(h2_error(e)),
                None => Ok(None),
            },
            BodyRx::H1(r) => {
                r.buf.reserve(H1_READ_CHUNK);
                match r.io.read_buf(&mut r.buf).await? {
                    0 => Ok(None),
                    _ => Ok(Some(r.buf.split().freeze())),
                }
            }
        }
    }

    /// Tells the peer we read no more (HTTP/3 STOP_SENDING). On HTTP/2 the
    /// stream is reset when its last handle is dropped; on HTTP/1.1 the
    /// connection closes with the tunnel.
    pub fn stop(&mut self, reason: ResetReason) {
        match self {
            BodyRx::H3(r) => r.stop(reason.h3_code()),
            BodyRx::H2(_) | BodyRx::H1(_) => {}
        }
    }
}
