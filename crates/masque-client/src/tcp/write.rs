//! The write side of a TCP tunnel: [`TcpWriteHalf`] (the `AsyncWrite` face)
//! hands one encoded piece at a time to a small task that owns the body's
//! [`BodyTx`] and writes it with the transport's backpressure.
//!
//! Bounded: at most two pieces exist at once (one waiting in the slot, one
//! being written), each at most [`MAX_PIECE`] payload bytes plus its capsule
//! header; `poll_write` is `Pending` while the slot is taken. The task is what
//! keeps a write moving when the caller polls nothing else (`write_all` then
//! a read, without `flush`), as a kernel socket would.

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};

use bytes::{BufMut, Bytes, BytesMut};
use masque_proto::{capsule::MAX_HEADER_LEN, tcp::TcpSender};
use masque_transport::{BodyTx, ResetReason};
use tokio::sync::{Notify, watch};

use super::TcpStreamError;

/// Most payload bytes per piece (one DATA capsule, or raw bytes in classic
/// mode): larger writes are accepted in parts.
pub(crate) const MAX_PIECE: usize = 64 * 1024;

/// The encode buffer grows by at least this much: small writes are carved
/// out of one block (no allocation each), and a block whose pieces were all
/// written is reused in place by the next `reserve`.
const WRITE_BLOCK: usize = 4 * 1024;

#[derive(Debug, Default)]
struct State {
    /// The next piece for the task.
    slot: Option<Bytes>,
    /// The task is writing a piece.
    writing: bool,
    /// Our side is to end cleanly once the slot is written.
    finish: bool,
    /// Our side is to be reset at once (the handle was dropped before a
    /// shutdown, or the reader found the proxy's stream malformed).
    abort: Option<ResetReason>,
    /// How the task ended; `None` while it runs.
    ended: Option<Result<(), TcpStreamError>>,
    /// The handle waiting for room, a flush or the end.
    waker: Option<Waker>,
}

/// What the handle, its task and the tunnel's reader share.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the task: a piece queued, finish or abort commanded.
    task: Notify,
    /// Set on an abort: the reader stops too (the whole tunnel is aborted;
    /// on HTTP/1.1 that is what closes the connection).
    aborted: watch::Sender<bool>,
}

impl Shared {
    fn new() -> Self {
        Self {
            state: Mutex::default(),
            task: Notify::new(),
            aborted: watch::Sender::new(false),
        }
    }

    /// Resolves once the tunnel was aborted.
    pub(crate) fn aborted(&self) -> watch::Receiver<bool> {
        self.aborted.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Short critical sections; a poisoned lock still holds consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resets our side now (what is queued is dropped). No effect once the
    /// task ended or a reset was commanded.
    pub(crate) fn abort(&self, reason: ResetReason) {
        let mut s = self.lock();
        if s.ended.is_none() && s.abort.is_none() {
            s.abort = Some(reason);
            drop(s);
            self.task.notify_one();
            self.aborted.send_replace(true);
        }
    }

    fn end(&self, result: Result<(), TcpStreamError>) {
        let waker = {
            let mut s = self.lock();
            s.slot = None;
            s.writing = false;
            s.ended.get_or_insert(result);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The write half of a [`TcpTunnel`](crate::TcpTunnel): `AsyncWrite` whose
/// `poll_shutdown` half-closes the tunnel (FINAL_DATA on connect-tcp,
/// FIN / END_STREAM / TLS close on classic CONNECT) while reading goes on.
/// Dropping it before a shutdown aborts the tunnel (stream reset; on
/// HTTP/1.1 the connection closes), as [`abort`](Self::abort) does.
#[derive(Debug)]
pub struct TcpWriteHalf {
    shared: Arc<Shared>,
    encoder: Encoder,
    /// The FINAL_DATA / finish command was given.
    shutdown: bool,
    stream_id: u64,
    /// The pooled slot, shared with the read half after a split.
    pub(crate) lease: Option<Arc<crate::pool::Lease>>,
}

impl TcpWriteHalf {
    /// Spawns the task that writes `body`.
    pub(crate) fn spawn(body: BodyTx, framing: Option<TcpSender>, stream_id: u64) -> Self {
        let shared = Arc::new(Shared::new());
        tokio::spawn(run(body, Arc::clone(&shared)));
        Self {
            shared,
            encoder: Encoder::new(framing),
            shutdown: false,
            stream_id,
            lease: None,
        }
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// The tunnel's request stream id (HTTP/1.1: its sequence number).
    pub fn stream_id(&self) -> u64 {
        self.stream_id
    }

    /// Aborts the tunnel now: our side is reset (queued bytes are dropped)
    /// and reading stops (the read half then fails with
    /// [`TcpStreamError::Aborted`]).
    pub fn abort(&self) {
        self.shared.abort(ResetReason::Cancelled);
    }

    /// Waits until the slot is free; the task's end as an error.
    fn poll_room(&self, cx: &mut Context<'_>) -> Poll<Result<(), TcpStreamError>> {
        let mut s = self.shared.lock();
        if let Some(end) = &s.ended {
            return Poll::Ready(Err(match end {
                Err(e) => e.clone(),
                Ok(()) => TcpStreamError::WriteShutdown,
            }));
        }
        if s.slot.is_some() {
            s.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn queue(&self, piece: Bytes, finish: bool) {
        {
            let mut s = self.shared.lock();
            s.slot = Some(piece).filter(|p| !p.is_empty());
            s.finish |= finish;
        }
        self.shared.task.notify_one();
    }
}

impl tokio::io::AsyncWrite for TcpWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.shutdown {
            return Poll::Ready(Err(TcpStreamError::WriteShutdown.io()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if let Err(e) = std::task::ready!(this.poll_room(cx)) {
            return Poll::Ready(Err(e.io()));
        }
        let n = buf.len().min(MAX_PIECE);
        let piece = this.encoder.piece(&buf[..n], false).map_err(|e| e.io())?;
        this.queue(piece, false);
        Poll::Ready(Ok(n))
    }

    /// Ready once every byte written so far was handed to the transport.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.shared.lock();
        match &s.ended {
            Some(Err(e)) => return Poll::Ready(Err(e.io())),
            Some(Ok(())) => return Poll::Ready(Ok(())),
            None => {}
        }
        if s.slot.is_none() && !s.writing {
            return Poll::Ready(Ok(()));
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Half-close: after what was written, FINAL_DATA (connect-tcp) and the
    /// end of our side of the stream (FIN, END_STREAM, TLS close_notify and
    /// TCP FIN); ready once it is sent. Reading goes on.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.shutdown {
            if let Err(e) = std::task::ready!(this.poll_room(cx)) {
                return Poll::Ready(Err(e.io()));
            }
            let last = match &this.encoder.framing {
                Some(_) => this.encoder.piece(&[], true).map_err(|e| e.io())?,
                None => Bytes::new(),
            };
            this.shutdown = true;
            this.queue(last, true);
        }
        let mut s = this.shared.lock();
        match &s.ended {
            Some(Ok(())) => Poll::Ready(Ok(())),
            Some(Err(e)) => Poll::Ready(Err(e.io())),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for TcpWriteHalf {
    fn drop(&mut self) {
        if !self.shutdown {
            // Dropped without a half-close: abort (CTCP-21), never a FIN that
            // would look like the end of the data.
            self.shared.abort(ResetReason::Cancelled);
        }
    }
}

/// Builds the pieces: the capsule header (connect-tcp) and the payload in
/// one buffer, split off a block that is reused once the transport dropped
/// what was carved out of it.
#[derive(Debug)]
struct Encoder {
    /// connect-tcp framing; `None` on classic CONNECT (raw bytes).
    framing: Option<TcpSender>,
    buf: BytesMut,
}

impl Encoder {
    fn new(framing: Option<TcpSender>) -> Self {
        Self {
            framing,
            buf: BytesMut::new(),
        }
    }

    /// `payload` (empty for FINAL_DATA) as one piece.
    fn piece(&mut self, payload: &[u8], fin: bool) -> Result<Bytes, TcpStreamError> {
        let need = MAX_HEADER_LEN + payload.len();
        if self.buf.capacity() < need {
            self.buf.reserve(need.max(WRITE_BLOCK));
        }
        if let Some(sender) = &mut self.framing {
            sender
                .encode_header(payload.len(), fin, &mut self.buf)
                .map_err(|_| TcpStreamError::WriteShutdown)?;
        }
        self.buf.put_slice(payload);
        Ok(self.buf.split().freeze())
    }
}

enum Step {
    Write(Bytes),
    Finish,
    Abort(ResetReason),
    Wait,
}

/// The writer task: the slot's pieces in order, then the finish, or a reset
/// as soon as one is commanded (even in the middle of a write the peer does
/// not grant credit for).
async fn run(mut body: BodyTx, shared: Arc<Shared>) {
    loop {
        let (step, waker) = {
            let mut s = shared.lock();
            let step = if let Some(r) = s.abort {
                Step::Abort(r)
            } else if let Some(piece) = s.slot.take() {
                s.writing = true;
                Step::Write(piece)
            } else if s.finish {
                Step::Finish
            } else {
                Step::Wait
            };
            // The slot is free again: the handle may queue the next piece
            // while this one is written.
            let waker = matches!(step, Step::Write(_))
                .then(|| s.waker.take())
                .flatten();
            (step, waker)
        };
        if let Some(w) = waker {
            w.wake();
        }
        match step {
            Step::Wait => shared.task.notified().await,
            Step::Abort(r) => {
                body.reset(r);
                shared.end(Err(TcpStreamError::Aborted));
                return;
            }
            Step::Finish => {
                body.finish().await;
                shared.end(Ok(()));
                return;
            }
            Step::Write(piece) => {
                let outcome = {
                    let send = body.send(piece);
                    tokio::pin!(send);
                    loop {
                        tokio::select! {
                            r = &mut send => break Some(r),
                            () = shared.task.notified() => {
                                if shared.lock().abort.is_some() {
                                    break None;
                                }
                            }
                        }
                    }
                };
                match outcome {
                    // Aborted mid-write: the loop resets.
                    None => {}
                    Some(Ok(())) => {
                        let waker = {
                            let mut s = shared.lock();
                            s.writing = false;
                            s.waker.take()
                        };
                        if let Some(w) = waker {
                            w.wake();
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "TCP tunnel write failed");
                        body.reset(ResetReason::Cancelled);
                        shared.end(Err(TcpStreamError::from_transport(&e)));
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use masque_proto::tcp::{FINAL, TcpEvent, TcpReceiver};

    use super::*;

    /// A connect-tcp piece is one DATA capsule; FINAL_DATA closes the
    /// stream and nothing may follow it.
    #[test]
    fn pieces_are_capsules_and_nothing_follows_final_data() {
        let mut e = Encoder::new(Some(TcpSender::new(FINAL)));
        let mut rx = TcpReceiver::new(FINAL);
        rx.push(e.piece(b"hello", false).unwrap());
        assert_eq!(
            rx.next_event().unwrap(),
            Some(TcpEvent::Data("hello".into()))
        );
        assert_eq!(rx.next_event().unwrap(), None);
        rx.push(e.piece(&[], true).unwrap());
        assert_eq!(rx.next_event().unwrap(), Some(TcpEvent::Fin));
        assert_eq!(e.piece(b"late", false), Err(TcpStreamError::WriteShutdown));
        let mut raw = Encoder::new(None);
        assert_eq!(&raw.piece(b"raw", false).unwrap()[..], b"raw");
    }

    /// Small writes are carved out of one block; once its pieces are gone
    /// the block is reused, so steady writing allocates nothing.
    #[test]
    fn small_pieces_share_and_reuse_one_block() {
        let mut e = Encoder::new(None);
        let a = e.piece(&[1; 100], false).unwrap();
        let b = e.piece(&[2; 100], false).unwrap();
        // Contiguous in the same allocation.
        assert_eq!(a.as_ptr().wrapping_add(100), b.as_ptr());
        let first = a.as_ptr();
        drop((a, b));
        // Use up the block, then the next piece reclaims it.
        let mut pieces = Vec::new();
        while e.buf.capacity() >= MAX_HEADER_LEN + 100 {
            pieces.push(e.piece(&[3; 100], false).unwrap());
        }
        drop(pieces);
        let again = e.piece(&[4; 100], false).unwrap();
        assert_eq!(again.as_ptr(), first, "the block was not reused");
    }
}
