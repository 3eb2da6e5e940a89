//! Request streams (RFC 9114 §4.1): HEADERS, DATA with backpressure, trailers,
//! FIN and resets, plus the server's request acceptor.

use std::{
    future::{Future, poll_fn},
    pin::pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::{
    Code,
    connection::{Handle, Shared, Side, wait_peer_settings},
    datagram::{DatagramReceiver, DatagramSender},
    error::Error,
    frame::{self, Frame, FrameDecoder, ty},
    message::{RequestHead, ResponseHead},
    stats::Stats,
};

/// Keeps the connection's open-request count, for graceful drain.
#[derive(Debug)]
struct Active(Arc<Shared>);

impl Active {
    fn new(shared: &Arc<Shared>) -> Arc<Self> {
        shared.active_requests.fetch_add(1, Ordering::AcqRel);
        Arc::new(Active(Arc::clone(shared)))
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active_requests.fetch_sub(1, Ordering::AcqRel);
        self.0.requests_changed.notify_waiters();
    }
}

/// What keeps a stream half's connection and request accounting alive.
#[derive(Debug, Clone)]
struct Keep {
    _active: Arc<Active>,
    _handle: Option<Arc<Handle>>,
}

/// One request stream, both directions. Split it with [`RequestStream::into_parts`]
/// to read and write from different tasks.
#[derive(Debug)]
pub struct RequestStream {
    pub send: SendHalf,
    pub recv: RecvHalf,
    datagrams: Option<DatagramReceiver>,
}

impl RequestStream {
    pub(crate) fn new(
        shared: Arc<Shared>,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        datagrams: bool,
        is_connect: bool,
    ) -> Self {
        let stream_id = quinn::VarInt::from(send.id()).into_inner();
        let keep = Keep {
            _active: Active::new(&shared),
            _handle: None,
        };
        let datagrams = datagrams.then(|| {
            shared
                .router
                .register(stream_id, shared.config.datagram_queue_capacity)
        });
        let send_open = Arc::new(AtomicBool::new(true));
        Self {
            send: SendHalf {
                shared: Arc::clone(&shared),
                send,
                stream_id,
                send_open,
                keep: keep.clone(),
            },
            recv: RecvHalf {
                decoder: FrameDecoder::new(shared.config.max_field_section_size * 2 + 1024),
                shared,
                recv,
                pending: Bytes::new(),
                state: RecvState::Head,
                is_connect,
                trailers: None,
                gate: ReadGate::new(),
                batch: None,
                keep,
            },
            datagrams,
        }
    }

    /// Ties the stream to a user handle so the connection outlives it.
    pub(crate) fn attach(&mut self, handle: Arc<Handle>) {
        self.send.keep._handle = Some(Arc::clone(&handle));
        self.recv.keep._handle = Some(handle);
    }

    pub fn stream_id(&self) -> u64 {
        self.send.stream_id
    }

    /// Takes the receiver of this stream's HTTP datagrams. Present for extended
    /// CONNECT requests (server) or when the client asked for datagrams.
    pub fn take_datagrams(&mut self) -> Option<DatagramReceiver> {
        self.datagrams.take()
    }

    /// Server: sends the response head (1xx, 2xx, error...).
    pub async fn send_response(&mut self, head: &ResponseHead) -> Result<(), Error> {
        self.send.send_response(head).await
    }

    /// Client: reads the final response head, skipping 1xx interim responses.
    pub async fn recv_response(&mut self) -> Result<ResponseHead, Error> {
        self.recv.recv_response().await
    }

    pub(crate) async fn send_request(&mut self, head: &RequestHead) -> Result<(), Error> {
        let mut block = Vec::with_capacity(128);
        head.encode(&mut block)?;
        self.send.write_headers(&block).await
    }

    pub fn into_parts(self) -> (SendHalf, RecvHalf, Option<DatagramReceiver>) {
        (self.send, self.recv, self.datagrams)
    }
}

/// The sending side of a request stream.
#[derive(Debug)]
pub struct SendHalf {
    shared: Arc<Shared>,
    send: quinn::SendStream,
    stream_id: u64,
    /// False once FIN or RESET was sent (R9297-05: no datagrams after that).
    send_open: Arc<AtomicBool>,
    keep: Keep,
}

impl SendHalf {
    pub fn stream_id(&self) -> u64 {
        self.stream_id
    }

    async fn write_headers(&mut self, block: &[u8]) -> Result<(), Error> {
        let mut buf = BytesMut::with_capacity(block.len() + 16);
        frame::encode_frame(ty::HEADERS, block, &mut buf);
        self.send.write_chunk(buf.freeze()).await?;
        Ok(())
    }

    pub async fn send_response(&mut self, head: &ResponseHead) -> Result<(), Error> {
        let mut block = Vec::with_capacity(64);
        head.encode(&mut block)?;
        self.write_headers(&block).await
    }

    /// Sends trailers (a header section without pseudo-headers).
    pub async fn send_trailers(&mut self, trailers: &http::HeaderMap) -> Result<(), Error> {
        let mut block = Vec::with_capacity(64);
        crate::message::encode_trailers(trailers, &mut block)?;
        self.write_headers(&block).await
    }

    /// Sends body bytes in one DATA frame, waiting for stream flow-control credit.
    pub async fn send_data(&mut self, data: Bytes) -> Result<(), Error> {
        if data.is_empty() {
            return Ok(());
        }
        let mut hdr = [0u8; 16];
        let mut w = &mut hdr[..];
        frame::encode_header(ty::DATA, data.len() as u64, &mut w);
        let hdr_len = 16 - w.len();
        self.send.write_all(&hdr[..hdr_len]).await?;
        self.send.write_chunk(data).await?;
        Ok(())
    }

    /// Ends our side cleanly (FIN).
    pub fn finish(&mut self) -> Result<(), Error> {
        self.send_open.store(false, Ordering::Release);
        self.send.finish().map_err(|_| Error::SendClosed)
    }

    /// Abruptly ends our side with `code` (RESET_STREAM).
    pub fn reset(&mut self, code: Code) {
        self.send_open.store(false, Ordering::Release);
        let _ = self.send.reset(code.into());
    }

    /// Resolves when the peer stops reading (STOP_SENDING) or the stream is done.
    pub async fn stopped(&mut self) -> Option<Code> {
        match self.send.stopped().await {
            Ok(Some(code)) => Some(Code(code.into_inner())),
            _ => None,
        }
    }

    /// A sender of HTTP datagrams for this stream. Waits for the peer's SETTINGS:
    /// datagrams need SETTINGS_H3_DATAGRAM=1 both ways (R9297-12) and QUIC datagram
    /// support (R9297-15).
    pub async fn datagram_sender(&self) -> Result<DatagramSender, Error> {
        let peer = wait_peer_settings(&self.shared).await?;
        if !peer.h3_datagram || self.shared.quic.max_datagram_size().is_none() {
            return Err(Error::DatagramsUnsupported);
        }
        Ok(DatagramSender::new(
            self.shared.quic.clone(),
            self.stream_id,
            Arc::clone(&self.send_open),
            Arc::clone(&self.shared.stats),
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecvState {
    /// Before the (final) header section.
    Head,
    Body,
    /// Trailers received; only FIN may follow.
    Trailers,
    Done,
}

/// The receiving side of a request stream.
#[derive(Debug)]
pub struct RecvHalf {
    shared: Arc<Shared>,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    pending: Bytes,
    state: RecvState,
    /// CONNECT streams carry only DATA after the head (RFC 9114 §4.4, CC-20).
    is_connect: bool,
    trailers: Option<http::HeaderMap>,
    gate: ReadGate,
    /// Chunks quinn handed over in one read beyond the first, taken before
    /// quinn is asked again (allocated the first time a read brings more
    /// than one).
    batch: Option<Box<ChunkBatch>>,
    keep: Keep,
}

/// Chunks taken from quinn in one `read_chunks` call. quinn stores a
/// stream's data as the STREAM frames arrived (about 1.2 KB each on a
/// 1500-byte path) and every read takes the connection's lock, which its
/// driver holds while it decrypts: one read per chunk made a bulk stream
/// contend for that lock once per packet. Reading up to [`READ_BATCH`]
/// chunks per lock ends that.
#[derive(Debug, Default)]
struct ChunkBatch {
    chunks: [Bytes; READ_BATCH],
    next: usize,
    len: usize,
}

/// Chunks taken per read of a quinn stream.
const READ_BATCH: usize = 8;

/// Polls quinn's stream only after quinn woke it.
///
/// A tunnel's session task selects over its stream and its datagram queue,
/// so it is woken for every burst of datagrams, and every poll of a quinn
/// stream takes the connection's lock, the lock quinn's driver holds while
/// it works. The gate hands quinn its own waker and remembers whether quinn
/// used it; until then a poll only records the caller's waker.
#[derive(Debug)]
struct ReadGate {
    flag: Arc<GateFlag>,
    /// `flag` as a waker, made once.
    waker: Waker,
}

#[derive(Debug)]
struct GateFlag {
    /// Set by quinn's wake-up (and after a ready read: more may be there).
    woken: AtomicBool,
    /// The task polling the stream.
    task: Mutex<Option<Waker>>,
}

impl Wake for GateFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            t.wake();
        }
    }
}

impl ReadGate {
    fn new() -> Self {
        let flag = Arc::new(GateFlag {
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        Self {
            waker: Waker::from(Arc::clone(&flag)),
            flag,
        }
    }

    /// Polls `inner` with the gate's waker if quinn woke it since its last
    /// `Pending`; otherwise only records the caller's waker.
    fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        inner: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        {
            // Register before checking the flag, so a wake-up in between is seen.
            let mut task = self.flag.task.lock().unwrap_or_else(|p| p.into_inner());
            match &mut *task {
                Some(t) => t.clone_from(cx.waker()),
                None => *task = Some(cx.waker().clone()),
            }
        }
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let ready = inner(&mut Context::from_waker(&self.waker));
        if ready.is_ready() {
            self.flag.woken.store(true, Ordering::Release);
        }
        ready
    }
}

impl RecvHalf {
    /// The next chunk of the stream: one taken earlier, or up to
    /// [`READ_BATCH`] from quinn's `read_chunks` through the [`ReadGate`].
    /// Cancel safe (quinn hands chunks over only when the read completes).
    async fn read_chunk(&mut self) -> Result<Option<Bytes>, quinn::ReadError> {
        if let Some(b) = self.batch.as_mut()
            && b.next < b.len
        {
            let chunk = std::mem::take(&mut b.chunks[b.next]);
            b.next += 1;
            return Ok(Some(chunk));
        }
        let mut chunks: [Bytes; READ_BATCH] = Default::default();
        let Self { gate, recv, .. } = self;
        let n = poll_fn(|cx| {
            gate.poll(cx, |cx| {
                let read = pin!(recv.read_chunks(&mut chunks));
                read.poll(cx)
            })
        })
        .await?;
        let Some(n) = n else {
            return Ok(None);
        };
        let [first, rest @ ..] = &mut chunks;
        let first = std::mem::take(first);
        if n > 1 {
            let b = self.batch.get_or_insert_with(Box::default);
            for (slot, chunk) in b.chunks.iter_mut().zip(rest.iter_mut().take(n - 1)) {
                *slot = std::mem::take(chunk);
            }
            b.next = 0;
            b.len = n - 1;
        }
        Ok(Some(first))
    }

    /// Next frame; `None` at a clean FIN. Frame errors close the connection.
    async fn next_frame(&mut self) -> Result<Option<Frame>, Error> {
        loop {
            match self.decoder.decode(&mut self.pending) {
                Ok(Some(f)) => return self.check_request_frame(f).map(Some),
                Ok(None) => {}
                Err(e) => return Err(self.shared.fail(e.code, e.reason)),
            }
            match self.read_chunk().await? {
                Some(c) => self.pending = c,
                None => {
                    if let Err(e) = self.decoder.finish() {
                        return Err(self.shared.fail(e.code, e.reason));
                    }
                    return Ok(None);
                }
            }
        }
    }

    /// RFC 9114 §7.2: control frames on a request stream are H3_FRAME_UNEXPECTED.
    fn check_request_frame(&self, f: Frame) -> Result<Frame, Error> {
        match f {
            Frame::Data(_) | Frame::Headers(_) => Ok(f),
            // §7.2.5: we never send MAX_PUSH_ID, so any push id is beyond it.
            Frame::PushPromise if self.shared.side == Side::Client => Err(self
                .shared
                .fail(Code::ID_ERROR, "PUSH_PROMISE without MAX_PUSH_ID")),
            _ => Err(self
                .shared
                .fail(Code::FRAME_UNEXPECTED, "control frame on request stream")),
        }
    }

    /// Reads the next header section block.
    async fn read_head_block(&mut self, what: &'static str) -> Result<Bytes, Error> {
        match self.next_frame().await? {
            Some(Frame::Headers(block)) => Ok(block),
            // §4.1: DATA before HEADERS is H3_FRAME_UNEXPECTED.
            Some(_) => Err(self
                .shared
                .fail(Code::FRAME_UNEXPECTED, "DATA before HEADERS")),
            None => Err(Error::UnexpectedEnd(what)),
        }
    }

    fn decode_block(&self, block: &Bytes) -> Result<Vec<crate::qpack::HeaderField>, Error> {
        let max = self.shared.config.max_field_section_size;
        crate::qpack::decode_field_section_shared(block, max).map_err(|e| {
            if e.is_connection_error() {
                // RFC 9204 §2.2: decoding failures are QPACK_DECOMPRESSION_FAILED.
                self.shared.fail(e.code(), "QPACK decoding failed");
            }
            Error::Qpack(e)
        })
    }

    pub(crate) async fn recv_request_head(&mut self) -> Result<RequestHead, Error> {
        let block = self.read_head_block("request header section").await?;
        let fields = self.decode_block(&block)?;
        // We always advertise SETTINGS_ENABLE_CONNECT_PROTOCOL=1.
        let head = RequestHead::from_fields(fields, true)?;
        self.is_connect = head.is_connect();
        self.state = RecvState::Body;
        Ok(head)
    }

    pub async fn recv_response(&mut self) -> Result<ResponseHead, Error> {
        loop {
            let block = self.read_head_block("response header section").await?;
            let fields = self.decode_block(&block)?;
            let head = ResponseHead::from_fields(fields)?;
            // RFC 9114 §4.1: interim responses precede the final one (101 is
            // rejected as malformed by `from_fields`, §4.5).
            if head.status.is_informational() {
                continue;
            }
            self.state = RecvState::Body;
            return Ok(head);
        }
    }

    /// Next piece of the body (DATA payload); `None` at FIN. Trailers, if any,
    /// are then available from [`RecvHalf::trailers`].
    pub async fn recv_data(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            let frame = match self.next_frame().await? {
                Some(f) => f,
                None => {
                    self.state = RecvState::Done;
                    return Ok(None);
                }
            };
            match (frame, self.state) {
                (Frame::Data(b), RecvState::Body) => {
                    if !b.is_empty() {
                        return Ok(Some(b));
                    }
                }
                (Frame::Headers(block), RecvState::Body) if !self.is_connect => {
                    let fields = self.decode_block(&block)?;
                    self.trailers = Some(crate::message::trailers_from_fields(fields)?);
                    self.state = RecvState::Trailers;
                }
                // CC-20 / XC-16 (RFC 9114 §4.4): only DATA after a CONNECT head;
                // §4.1: nothing after trailers.
                _ => {
                    return Err(self
                        .shared
                        .fail(Code::FRAME_UNEXPECTED, "frame not allowed in this state"));
                }
            }
        }
    }

    pub fn trailers(&self) -> Option<&http::HeaderMap> {
        self.trailers.as_ref()
    }

    /// Asks the peer to stop sending (STOP_SENDING).
    pub fn stop(&mut self, code: Code) {
        let _ = self.recv.stop(code.into());
        // quinn dropped the gate's waker: let a later read reach quinn (and
        // learn the stream is stopped) instead of waiting for a wake-up.
        self.gate.flag.woken.store(true, Ordering::Release);
    }

    pub fn stream_id(&self) -> u64 {
        quinn::VarInt::from(self.recv.id()).into_inner()
    }
}

/// Server: accepts request streams, reads and validates each header section, and
/// hands well-formed requests to `Connection::accept`.
pub(crate) async fn accept_requests(
    shared: Arc<Shared>,
    tx: mpsc::Sender<(RequestHead, RequestStream)>,
) {
    while let Ok((mut send, mut recv)) = shared.quic.accept_bi().await {
        let id = quinn::VarInt::from(recv.id()).into_inner();
        shared.next_request_id.fetch_max(id + 4, Ordering::AcqRel);
        if shared.goaway_sent().is_some_and(|g| id >= g) {
            // §5.2: beyond our GOAWAY: not processed, safe for the client to retry.
            Stats::inc(&shared.stats.requests_rejected_goaway);
            let _ = send.reset(Code::REQUEST_REJECTED.into());
            let _ = recv.stop(Code::REQUEST_REJECTED.into());
            continue;
        }
        let shared = Arc::clone(&shared);
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut stream = RequestStream::new(Arc::clone(&shared), send, recv, false, false);
            let timeout = shared.config.request_header_timeout;
            let head = match tokio::time::timeout(timeout, stream.recv.recv_request_head()).await {
                Ok(Ok(head)) => head,
                Ok(Err(Error::Malformed(e))) => {
                    // ERR-05: malformed request -> stream error H3_MESSAGE_ERROR.
                    tracing::debug!(error = %e, stream = id, "malformed request");
                    Stats::inc(&shared.stats.requests_malformed);
                    stream.send.reset(Code::MESSAGE_ERROR);
                    stream.recv.stop(Code::MESSAGE_ERROR);
                    return;
                }
                Ok(Err(Error::Qpack(e))) => {
                    // Not a connection error: e.g. a header section over our
                    // SETTINGS_MAX_FIELD_SECTION_SIZE (RFC 9114 §4.2.2).
                    stream.send.reset(e.code());
                    stream.recv.stop(e.code());
                    return;
                }
                Ok(Err(Error::UnexpectedEnd(_))) | Err(_) => {
                    // ERR-07: the request never completed.
                    stream.send.reset(Code::REQUEST_INCOMPLETE);
                    stream.recv.stop(Code::REQUEST_INCOMPLETE);
                    return;
                }
                Ok(Err(_)) => return,
            };
            if head.protocol.is_some() {
                // Extended CONNECT may carry datagrams: route them before the
                // application sees the request, so none are lost to the race.
                stream.datagrams = Some(
                    shared
                        .router
                        .register(id, shared.config.datagram_queue_capacity),
                );
            }
            let _ = tx.send((head, stream)).await;
        });
    }
}

/// Client: a server-initiated bidirectional stream is a connection error
/// H3_STREAM_CREATION_ERROR (RFC 9114 §6.1).
pub(crate) async fn refuse_server_bidi(shared: Arc<Shared>) {
    if shared.quic.accept_bi().await.is_ok() {
        shared.fail(
            Code::STREAM_CREATION_ERROR,
            "server-initiated bidirectional stream",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// The inner poll (quinn's, taking the connection lock) runs only after
    /// its own waker fired; the caller's waker is always the one woken.
    #[test]
    fn read_gate_polls_inner_only_after_its_wake_up() {
        let gate = ReadGate::new();
        let polls = AtomicUsize::new(0);
        let caller = Arc::new(GateFlag {
            woken: AtomicBool::new(false),
            task: Mutex::new(None),
        });
        let caller_waker = Waker::from(Arc::clone(&caller));
        let mut cx = Context::from_waker(&caller_waker);
        let stored: Mutex<Option<Waker>> = Mutex::new(None);
        let poll = |cx: &mut Context<'_>, ready: bool| {
            gate.poll(cx, |inner| {
                polls.fetch_add(1, Ordering::Relaxed);
                *stored.lock().unwrap() = Some(inner.waker().clone());
                if ready {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
        };
        // First poll goes through; then the gate stays shut however often the
        // task is polled (woken by other branches of its select).
        assert!(poll(&mut cx, false).is_pending());
        for _ in 0..10 {
            assert!(poll(&mut cx, false).is_pending());
        }
        assert_eq!(polls.load(Ordering::Relaxed), 1);
        // quinn wakes its waker: the caller is woken and the next poll goes through.
        let inner_waker = stored.lock().unwrap().take();
        inner_waker.expect("inner registered a waker").wake();
        assert!(caller.woken.load(Ordering::Acquire));
        assert!(poll(&mut cx, true).is_ready());
        // After a ready read the next poll goes straight through (more may be there).
        assert!(poll(&mut cx, false).is_pending());
        assert_eq!(polls.load(Ordering::Relaxed), 3);
    }
}
