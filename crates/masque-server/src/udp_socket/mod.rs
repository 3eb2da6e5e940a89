//! The proxy's target-side UDP socket for one CONNECT-UDP tunnel (RFC 9298), with batched I/O.
//!
//! # Why batching
//!
//! A plain `tokio::net::UdpSocket` makes one system call per datagram (measured here at about
//! 99k datagrams/s), while the client side of a tunnel (QUIC DATAGRAM frames through quinn, which
//! batches) sustains about 256k datagrams/s. Unless the target-side socket batches too it is the
//! tunnel's bottleneck, and its receive queue overflows under bursts.
//!
//! [`TargetSocket`] therefore does its I/O through [`quinn_udp::UdpSocketState`]:
//!
//! * **Receive**: [`TargetSocket::recv_batch`] makes one `recvmmsg(2)` call that fills up to
//!   [`quinn_udp::BATCH_SIZE`] (32) buffers of a caller-owned, reusable [`RecvBatch`]. With UDP GRO
//!   (enabled opportunistically by quinn-udp on Linux) the kernel may additionally coalesce several
//!   equal-sized datagrams of one flow into a single buffer; [`RecvBatch::iter`] splits such
//!   buffers again at their `stride`, so the caller always sees one `&[u8]` per datagram. Nothing is
//!   allocated per datagram: the caller copies each payload once into its outgoing QUIC datagram.
//!   [`TargetSocket::recv_shared`] receives into one [`RecvBatch`] per thread instead, lent for the
//!   duration of one synchronous callback: that is what the proxy uses, so 10,000 tunnels share
//!   two sets of buffers (one per worker) rather than holding 2 MiB of address space each. A batch
//!   that comes back short clears the socket's readiness at once (see `try_recv_into`).
//! * **Send**: [`TargetSocket::send`] sends one datagram (one `send(2)` on the connected socket);
//!   [`TargetSocket::try_send`] does the same without waiting, for synchronous callers.
//!   [`TargetSocket::send_batch`] (and the non-waiting [`TargetSocket::try_send_batch`]) sends a
//!   caller-owned [`SendBatch`]; runs of consecutive payloads of equal length (the last one of a
//!   run may be shorter) go out as a single `sendmsg(2)` with UDP GSO (`UDP_SEGMENT`), up to
//!   [`UdpSocketState::max_gso_segments`] datagrams and 65,507 bytes per call; everything else
//!   is sent one datagram per call. A GSO run the kernel rejects is resent one by one.
//!
//! The counters in [`TargetSocketStats`] (`recv_batches`, `send_syscalls`, ...) show what a batch
//! costs: [`TargetSocketStats::datagrams_per_recv_syscall`] and
//! [`TargetSocketStats::datagrams_per_send_syscall`].
//!
//! # Socket setup
//!
//! One socket per tunnel, of the target's address family (IPv4-mapped IPv6 targets are treated as
//! IPv4), bound to the unspecified address with an ephemeral port, **connected** to the target so
//! that the kernel filters out datagrams from other sources (R9298-18) and reports ICMP errors.
//! The kernel's default receive buffer (208 KiB) overflows at about 65k datagrams/s of 1200 bytes,
//! so [`UdpSocketConfig`] asks for 4 MiB receive / 1 MiB send buffers; the kernel caps these at
//! `net.core.rmem_max` / `wmem_max` (and Linux reports twice the granted value, which includes
//! its bookkeeping overhead). The sizes actually granted are in [`TargetSocket::buffer_sizes`]; a
//! warning is logged once per process when the kernel granted less than asked.
//!
//! quinn-udp sets `IP_MTU_DISCOVER = IP_PMTUDISC_PROBE` / `IPV6_DONTFRAG`: datagrams leave with
//! DF set and are never fragmented by this host; a payload too large for the egress interface
//! fails with `EMSGSIZE` and is dropped and counted (R9298-23: no IP fragmentation, too-large
//! datagrams are silently dropped).
//!
//! # ICMP errors
//!
//! Because the socket is connected, an ICMP error for one of its datagrams (port unreachable,
//! host/network unreachable, protocol unreachable, ...) is stored by the kernel on the socket and
//! reported, once, by the next receive or send call on it: `ECONNREFUSED` for ICMP port
//! unreachable. This does **not** make the socket unusable: the error is consumed by the call
//! that reports it, and later calls work normally. This module never closes the socket for it:
//!
//! * Every such error is counted in [`TargetSocketStats::icmp_unreachable`].
//! * With [`UdpSocketConfig::report_unreachable`] (the default), [`TargetSocket::recv_batch`]
//!   returns it as an `Err` with the original OS error (kind
//!   [`io::ErrorKind::ConnectionRefused`], `HostUnreachable`, `NetworkUnreachable`, ...);
//!   [`classify_error`] tells such an error apart from a fatal one (it returns
//!   [`ErrorClass::Unreachable`]). The caller decides: RFC 9298 §3.1 (R9298-20) asks the proxy to
//!   close the request stream when the OS reports the socket unusable, e.g. on ICMP unreachable.
//!   The socket remains usable, so a caller that chooses to keep the tunnel simply calls
//!   `recv_batch` again. With `report_unreachable = false` it is only counted.
//! * A send that hits such a pending error did not transmit its datagram (Linux checks the
//!   pending error before building the packet), so the send path retries that datagram once. If
//!   it consumed the error, the error is handed to the receive side: the next (or the currently
//!   waiting) `recv_batch` reports it, so the ICMP signal is not lost whichever task saw it first.
//!   `send`/`send_batch` themselves only fail for fatal socket errors; `try_send` returns an ICMP
//!   error only when its retry hit a second one (each ICMP error is reported exactly once).
//! * `recv_batch` waits for error readiness as well as readability, because an ICMP error wakes
//!   the socket with `EPOLLERR` alone; without that a receive-only tunnel would not notice it
//!   until the target sent data.
//! * Other per-datagram errors (`EMSGSIZE` from an ICMP "fragmentation needed" or an oversized
//!   payload, `ENOBUFS`, a firewall's `EPERM`, ...) are counted in `recv_errors` / `send_errors`
//!   and the datagram is dropped; UDP is unreliable and the tunnel goes on.
//!
//! # Kernel drops
//!
//! `SO_RXQ_OVFL` is not enabled: its counter travels in a control message that quinn-udp's
//! receive path does not hand out (reading it would mean our own `recvmmsg` and `unsafe` code),
//! and it would take control-message space quinn-udp sized for its own options. Instead
//! [`TargetSocket::kernel_drops`] reads the same per-socket counter (`sk_drops`) from the `drops`
//! column of `/proc/self/net/udp{,6}` (Linux only). That costs a scan of the namespace's UDP
//! socket table, so call it for diagnostics or periodic metrics, not per datagram.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use quinn_udp::{BATCH_SIZE, Transmit, UdpSockRef, UdpSocketState};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

mod batch;

pub use batch::{Datagrams, RecvBatch, SendBatch};

thread_local! {
    /// The receive buffers [`TargetSocket::recv_shared`] lends, one set per thread, allocated
    /// on first use.
    static SHARED_BATCH: std::cell::RefCell<Option<RecvBatch>> =
        const { std::cell::RefCell::new(None) };
}

/// Size of one receive slot: large enough for any UDP payload (at most 65,527 bytes over IPv6,
/// 65,507 over IPv4) and for a GRO-coalesced buffer, which the kernel keeps under 64 KiB.
pub const RECV_SLOT_SIZE: usize = 65_535;

/// Default number of receive slots in a [`RecvBatch`] (also the most one `recvmmsg` call fills).
pub const DEFAULT_RECV_SLOTS: usize = BATCH_SIZE;

/// Default requested receive buffer (`SO_RCVBUF`): 4 MiB.
pub const DEFAULT_RECV_BUFFER: usize = 4 * 1024 * 1024;

/// Default requested send buffer (`SO_SNDBUF`): 1 MiB.
pub const DEFAULT_SEND_BUFFER: usize = 1024 * 1024;

/// Largest total payload of one GSO `sendmsg`: the IPv4 limit (65,535 − 20 − 8), used for both
/// families.
const MAX_GSO_BYTES: usize = 65_507;

/// Largest number of segments per GSO call (`UDP_MAX_SEGMENTS` of older Linux kernels).
const MAX_GSO_SEGMENTS: usize = 64;

/// Settings for a [`TargetSocket`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpSocketConfig {
    /// Requested `SO_RCVBUF` in bytes (default 4 MiB). The kernel caps it at `net.core.rmem_max`.
    pub recv_buffer_size: usize,
    /// Requested `SO_SNDBUF` in bytes (default 1 MiB). The kernel caps it at `net.core.wmem_max`.
    pub send_buffer_size: usize,
    /// Use UDP GSO in [`TargetSocket::send_batch`] when the platform supports it (default true).
    pub gso: bool,
    /// Return ICMP-unreachable errors from [`TargetSocket::recv_batch`] (default true) instead of
    /// only counting them. See the module documentation.
    pub report_unreachable: bool,
}

impl Default for UdpSocketConfig {
    fn default() -> Self {
        Self {
            recv_buffer_size: DEFAULT_RECV_BUFFER,
            send_buffer_size: DEFAULT_SEND_BUFFER,
            gso: true,
            report_unreachable: true,
        }
    }
}

pub use masque_transport::socket_buffers::BufferSizes;
use masque_transport::socket_buffers::size_buffers;

/// How an I/O error from a [`TargetSocket`] affects the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// An ICMP unreachable error (port, host, network or protocol unreachable) reported
    /// asynchronously on the connected socket. The socket remains usable.
    Unreachable,
    /// A per-datagram problem (too large, no buffer space, filtered, ...): that datagram is
    /// lost, the socket remains usable.
    Transient,
    /// Anything else: the socket should be considered broken.
    Fatal,
}

/// Classifies an error returned by (or seen inside) a [`TargetSocket`] operation.
pub fn classify_error(err: &io::Error) -> ErrorClass {
    use io::ErrorKind as K;
    match err.kind() {
        K::ConnectionRefused | K::HostUnreachable | K::NetworkUnreachable => {
            return ErrorClass::Unreachable;
        }
        K::WouldBlock
        | K::Interrupted
        | K::NetworkDown
        | K::ConnectionReset
        | K::TimedOut
        | K::PermissionDenied
        | K::OutOfMemory => return ErrorClass::Transient,
        _ => {}
    }
    match err.raw_os_error() {
        Some(libc::EHOSTDOWN | libc::ENONET | libc::ENOPROTOOPT) => ErrorClass::Unreachable,
        Some(libc::EMSGSIZE | libc::ENOBUFS | libc::EPROTO | libc::EOPNOTSUPP) => {
            ErrorClass::Transient
        }
        _ => ErrorClass::Fatal,
    }
}

/// A snapshot of a [`TargetSocket`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetSocketStats {
    /// Datagrams received from the target (after splitting GRO buffers).
    pub datagrams_received: u64,
    /// Payload bytes received from the target.
    pub bytes_received: u64,
    /// Successful receive system calls (`recvmmsg`), each returning one batch.
    pub recv_batches: u64,
    /// Buffers filled by those calls; fewer than `datagrams_received` when GRO coalesced.
    pub recv_buffers: u64,
    /// Receive attempts that found nothing (`EAGAIN`): wasted system calls.
    pub recv_would_block: u64,
    /// Datagrams handed to the kernel for the target.
    pub datagrams_sent: u64,
    /// Payload bytes handed to the kernel for the target.
    pub bytes_sent: u64,
    /// Successful send system calls (`send` or GSO `sendmsg`).
    pub send_syscalls: u64,
    /// Of those, GSO calls carrying more than one datagram.
    pub gso_sends: u64,
    /// Send attempts that found the send buffer full (`EAGAIN`).
    pub send_would_block: u64,
    /// ICMP unreachable errors reported by the kernel (port unreachable = `ECONNREFUSED`, and host,
    /// network, protocol unreachable), on either the receive or the send path.
    pub icmp_unreachable: u64,
    /// Other non-fatal errors seen by receive calls (e.g. `EMSGSIZE` from ICMP "fragmentation
    /// needed").
    pub recv_errors: u64,
    /// Datagrams dropped on send because of a non-fatal error (too large, no buffer space, ...).
    pub send_errors: u64,
}

impl TargetSocketStats {
    /// Average datagrams per successful receive system call (0 when nothing was received).
    pub fn datagrams_per_recv_syscall(&self) -> f64 {
        ratio(self.datagrams_received, self.recv_batches)
    }

    /// Average datagrams per successful send system call (0 when nothing was sent).
    pub fn datagrams_per_send_syscall(&self) -> f64 {
        ratio(self.datagrams_sent, self.send_syscalls)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[derive(Debug, Default)]
struct Counters {
    datagrams_received: AtomicU64,
    bytes_received: AtomicU64,
    recv_batches: AtomicU64,
    recv_buffers: AtomicU64,
    recv_would_block: AtomicU64,
    datagrams_sent: AtomicU64,
    bytes_sent: AtomicU64,
    send_syscalls: AtomicU64,
    gso_sends: AtomicU64,
    send_would_block: AtomicU64,
    icmp_unreachable: AtomicU64,
    recv_errors: AtomicU64,
    send_errors: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// quinn-udp 0.5 probes GSO/GRO support on fresh `[::]:0` sockets inside every
/// `UdpSocketState::new`. Closing a GRO-enabled IPv6 socket can switch the
/// kernel's `udpv6_encap_needed_key` static key off, and the next probe
/// switches it on again: each toggle patches kernel text and interrupts every
/// CPU (measured: about a quarter of tunnel-setup CPU). One GRO-enabled IPv6
/// socket held for the life of the process keeps the key on. Best effort: a
/// host without IPv6 simply skips it.
fn keep_gro_key_enabled() {
    static HOLDER: std::sync::OnceLock<Option<std::net::UdpSocket>> = std::sync::OnceLock::new();
    HOLDER.get_or_init(|| {
        let socket = std::net::UdpSocket::bind("[::]:0").ok()?;
        // `UdpSocketState::new` enables UDP_GRO on the socket it is given.
        UdpSocketState::new(UdpSockRef::from(&socket)).ok()?;
        Some(socket)
    });
}

/// Result of handing one datagram (or one GSO run) to the kernel.
enum Sent {
    /// Transmitted.
    Ok,
    /// Dropped because of this non-fatal error (ICMP errors already counted, nothing else).
    Dropped(io::Error),
    /// A GSO send failed for a reason other than an ICMP error: resend one by one.
    GsoFailed(io::Error),
}

/// The target-side UDP socket of one CONNECT-UDP tunnel. See the module documentation.
///
/// All methods take `&self`: one task may receive while another sends.
#[derive(Debug)]
pub struct TargetSocket {
    io: UdpSocket,
    state: UdpSocketState,
    peer: SocketAddr,
    local: SocketAddr,
    buffers: BufferSizes,
    gso: bool,
    report_unreachable: bool,
    counters: Counters,
    /// Raw OS error of an ICMP unreachable consumed by the send path, for `recv_batch` to report
    /// (0 = none).
    pending_unreachable: AtomicI32,
    /// Wakes a `recv_batch` waiting for readiness when `pending_unreachable` is set.
    unreachable_notify: Notify,
}

impl TargetSocket {
    /// Creates the socket for a tunnel to `target`: family of the target, non-blocking, bound to
    /// the unspecified address and an ephemeral port, buffers sized from `cfg`, connected to
    /// `target`. Must be called within a Tokio runtime.
    pub fn connect(target: SocketAddr, cfg: &UdpSocketConfig) -> io::Result<Self> {
        let peer = SocketAddr::new(target.ip().to_canonical(), target.port());
        let unspecified: IpAddr = match peer {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let socket = Socket::new(Domain::for_address(peer), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_nonblocking(true)?;
        let buffers = size_buffers(
            socket2::SockRef::from(&socket),
            cfg.recv_buffer_size,
            cfg.send_buffer_size,
            "target UDP socket buffers",
        )?;
        socket.bind(&SockAddr::from(SocketAddr::new(unspecified, 0)))?;
        socket.connect(&SockAddr::from(peer))?;

        let io = UdpSocket::from_std(std::net::UdpSocket::from(socket))?;
        keep_gro_key_enabled();
        let state = UdpSocketState::new(UdpSockRef::from(&io))?;
        let local = io.local_addr()?;
        tracing::debug!(
            %peer, %local, recv_buffer = buffers.recv, send_buffer = buffers.send,
            max_gso_segments = state.max_gso_segments(), gro_segments = state.gro_segments(),
            "target UDP socket connected"
        );
        Ok(Self {
            io,
            state,
            peer,
            local,
            buffers,
            gso: cfg.gso,
            report_unreachable: cfg.report_unreachable,
            counters: Counters::default(),
            pending_unreachable: AtomicI32::new(0),
            unreachable_notify: Notify::new(),
        })
    }

    /// The target this socket is connected to (IPv4-mapped IPv6 addresses made IPv4).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The local address and ephemeral port the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Socket buffer sizes the kernel granted.
    pub fn buffer_sizes(&self) -> BufferSizes {
        self.buffers
    }

    /// Datagrams per GSO send this platform allows (1 = no GSO). May drop to 1 at run time if
    /// the kernel or driver rejects GSO.
    pub fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Datagrams the kernel may coalesce into one receive buffer (1 = no GRO).
    pub fn gro_segments(&self) -> usize {
        self.state.gro_segments()
    }

    /// Waits until the socket has something to read (or an error to report),
    /// without reading. Lets callers allocate a [`RecvBatch`] only once traffic
    /// arrives, so an idle tunnel holds no receive buffers.
    pub async fn readable(&self) -> io::Result<()> {
        self.io
            .ready(Interest::READABLE | Interest::ERROR)
            .await
            .map(drop)
    }

    /// Receives the next batch of datagrams from the target into `batch`, replacing its previous
    /// contents, and returns how many datagrams it holds (at least 1).
    ///
    /// Waits for the socket, then makes one `recvmmsg` call filling up to `batch.slots()`
    /// buffers. ICMP unreachable errors are counted and, with
    /// [`UdpSocketConfig::report_unreachable`], returned (the socket stays usable: call again to
    /// keep receiving); other per-datagram errors are counted and skipped. Any other error is
    /// fatal for the socket. Cancel safe: no datagram is lost if the future is dropped.
    pub async fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        self.recv_with(|attempt| self.try_recv_into(batch, attempt))
            .await
    }

    /// Like [`recv_batch`](Self::recv_batch), but receives into buffers shared by every socket
    /// on this thread and hands the batch to `each` before returning its result.
    ///
    /// The batch is only borrowed synchronously, inside one poll, so any number of tunnels
    /// share one set of receive buffers per worker thread: an idle tunnel holds none, and a
    /// busy one does not keep 2 MiB of its own. `each` must copy out what it keeps.
    pub async fn recv_shared<R>(&self, mut each: impl FnMut(&RecvBatch) -> R) -> io::Result<R> {
        self.recv_with(|attempt| {
            SHARED_BATCH.with_borrow_mut(|batch| {
                let batch = batch.get_or_insert_with(RecvBatch::default);
                Ok(self.try_recv_into(batch, attempt)?.map(|_| each(batch)))
            })
        })
        .await
    }

    /// The receive loop: readiness, one attempt (`Ok(None)`: nothing there), error policy.
    async fn recv_with<R>(
        &self,
        mut attempt_recv: impl FnMut(Interest) -> io::Result<Option<R>>,
    ) -> io::Result<R> {
        let interest = Interest::READABLE | Interest::ERROR;
        loop {
            // Readiness and `try_io` spend no cooperative budget, so a socket
            // that always has data would never let its task yield: spend one
            // unit per attempt (before receiving, so a yield never holds a
            // received batch). Readers share a task per connection
            // (decisions §29), where that would hold up every other tunnel.
            tokio::task::coop::consume_budget().await;
            if self.report_unreachable
                && let Some(err) = self.take_pending_unreachable()
            {
                return Err(err);
            }
            let ready = tokio::select! {
                biased;
                ready = self.io.ready(interest) => ready?,
                () = self.unreachable_notify.notified(), if self.report_unreachable => continue,
            };
            // `try_io` must get a single interest: tokio (1.54) masks a combined one such as
            // `READABLE | ERROR` to nothing and then never runs the closure. Readable first (the
            // call also reports a pending error); error-only readiness is cleared by the
            // `WouldBlock` that follows consuming the error.
            let attempt = if ready.is_readable() || ready.is_read_closed() {
                Interest::READABLE
            } else {
                Interest::ERROR
            };
            match attempt_recv(attempt) {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(e) => match classify_error(&e) {
                    ErrorClass::Unreachable => {
                        bump(&self.counters.icmp_unreachable, 1);
                        tracing::trace!(peer = %self.peer, error = %e, "ICMP unreachable on receive");
                        if self.report_unreachable {
                            return Err(e);
                        }
                    }
                    ErrorClass::Transient => {
                        if e.kind() != io::ErrorKind::Interrupted {
                            bump(&self.counters.recv_errors, 1);
                            tracing::trace!(peer = %self.peer, error = %e, "receive error ignored");
                        }
                    }
                    ErrorClass::Fatal => return Err(e),
                },
            }
        }
    }

    /// One `recvmmsg` into `batch`: `Ok(Some(datagrams))`, or `Ok(None)` when nothing was
    /// there (readiness cleared).
    ///
    /// A batch that came back short of `batch.slots()` means the socket's queue is empty, so
    /// the readiness is cleared right away (tokio clears it only on `WouldBlock`) instead of
    /// making a second call just to get `EAGAIN`. Clearing is safe: tokio clears only the
    /// readiness event it handed out, and a datagram that arrived after the call raises a new
    /// one.
    fn try_recv_into(&self, batch: &mut RecvBatch, attempt: Interest) -> io::Result<Option<usize>> {
        batch.clear();
        let slots = batch.slots;
        let mut chunks = batch.storage.chunks_mut(RECV_SLOT_SIZE);
        let mut iovs: [IoSliceMut<'_>; BATCH_SIZE] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or(&mut [])));
        let metas = &mut batch.metas[..slots];
        let mut short = None;
        let res = self.io.try_io(attempt, || {
            match self
                .state
                .recv(UdpSockRef::from(&self.io), &mut iovs[..slots], metas)
            {
                Ok(filled) if filled > 0 && filled < slots => {
                    short = Some(filled);
                    Err(io::ErrorKind::WouldBlock.into())
                }
                other => other,
            }
        });
        let filled = match (res, short) {
            (_, Some(filled)) => filled,
            (Ok(0), None) => return Ok(None),
            (Ok(filled), None) => filled,
            (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => {
                bump(&self.counters.recv_would_block, 1);
                return Ok(None);
            }
            (Err(e), None) => return Err(e),
        };
        let (datagrams, bytes) = batch.set_filled(filled);
        let c = &self.counters;
        bump(&c.recv_batches, 1);
        bump(&c.recv_buffers, filled as u64);
        bump(&c.datagrams_received, datagrams as u64);
        bump(&c.bytes_received, bytes as u64);
        Ok(Some(datagrams))
    }

    /// Sends one datagram to the target (one `send` system call, waiting while the send buffer is
    /// full).
    ///
    /// Returns `Ok` also when the datagram was dropped because of a non-fatal error (counted in
    /// [`TargetSocketStats::send_errors`]); an ICMP unreachable consumed here is counted, the
    /// datagram retried once, and the error handed to [`recv_batch`](Self::recv_batch). `Err`
    /// means the socket is broken. Cancel safe (the datagram was either sent or not).
    pub async fn send(&self, payload: &[u8]) -> io::Result<()> {
        loop {
            self.io.writable().await?;
            match self
                .io
                .try_io(Interest::WRITABLE, || self.transmit_now(payload, None))
            {
                Ok(Sent::Ok) => self.count_sent(1, payload.len(), false),
                Ok(Sent::Dropped(err) | Sent::GsoFailed(err)) => {
                    bump(&self.counters.send_errors, 1);
                    self.hand_unreachable_to_receiver(&err);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
            return Ok(());
        }
    }

    /// Sends one datagram now, without waiting: for synchronous callers.
    ///
    /// One `send` system call on the connected socket (two after an ICMP error, see below),
    /// independent of Tokio's readiness state. Errors, to be sorted with [`classify_error`]:
    ///
    /// * [`io::ErrorKind::WouldBlock`]: the send buffer is full, the datagram was not sent;
    /// * [`ErrorClass::Transient`]: the datagram was dropped (also counted in `send_errors`);
    /// * [`ErrorClass::Unreachable`]: only if the retry after an ICMP error hit another one; the
    ///   datagram was dropped. The first ICMP error is, as with [`send`](Self::send), counted and
    ///   handed to [`recv_batch`](Self::recv_batch), and the datagram retried: each ICMP error is
    ///   reported exactly once, here or there;
    /// * [`ErrorClass::Fatal`]: the socket is broken.
    pub fn try_send(&self, payload: &[u8]) -> io::Result<()> {
        match self.transmit_now(payload, None)? {
            Sent::Ok => {
                self.count_sent(1, payload.len(), false);
                Ok(())
            }
            Sent::Dropped(err) | Sent::GsoFailed(err) => {
                bump(&self.counters.send_errors, 1);
                Err(err)
            }
        }
    }

    /// Sends every datagram of `batch` to the target and empties it; returns how many were
    /// handed to the kernel (the rest were dropped on non-fatal errors and counted).
    ///
    /// Consecutive payloads of equal length (the last of a run may be shorter) are sent with one
    /// GSO `sendmsg` when [`UdpSocketConfig::gso`] is on and the platform supports it; the rest
    /// one `send` each. If the kernel rejects a GSO send (other than for an ICMP error), that run
    /// is sent again one datagram at a time. Errors as for [`send`](Self::send). If the future is
    /// dropped, or a fatal error is returned, `batch` keeps exactly the datagrams not yet sent.
    pub async fn send_batch(&self, batch: &mut SendBatch) -> io::Result<usize> {
        let mut sent = 0;
        while !batch.is_empty() {
            self.io.writable().await?;
            match self
                .io
                .try_io(Interest::WRITABLE, || self.send_batch_now(batch, &mut sent))
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        batch.clear();
        Ok(sent)
    }

    /// Like [`send_batch`](Self::send_batch) but without waiting, for synchronous callers: sends
    /// until `batch` is empty (then clears it) or the send buffer is full; returns how many
    /// datagrams were handed to the kernel. What could not be sent stays in `batch` (check
    /// [`SendBatch::is_empty`]; [`SendBatch::clear`] to drop it). `Err` only for a fatal error.
    pub fn try_send_batch(&self, batch: &mut SendBatch) -> io::Result<usize> {
        let mut sent = 0;
        match self.send_batch_now(batch, &mut sent) {
            Ok(()) => batch.clear(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(sent)
    }

    /// Sends from `batch` until it is empty (`Ok`) or the send buffer is full (`WouldBlock`);
    /// progress is recorded in `batch`, the number of datagrams sent added to `sent`.
    fn send_batch_now(&self, batch: &mut SendBatch, sent: &mut usize) -> io::Result<()> {
        while batch.next < batch.lens.len() {
            let (count, segment, bytes) = self.next_run(batch);
            let gso = count > 1;
            let contents = &batch.buf[batch.next_offset..batch.next_offset + bytes];
            match self.transmit_now(contents, gso.then_some(segment))? {
                Sent::Ok => {
                    self.count_sent(count, bytes, gso);
                    *sent += count;
                }
                Sent::Dropped(err) => {
                    bump(&self.counters.send_errors, count as u64);
                    self.hand_unreachable_to_receiver(&err);
                }
                Sent::GsoFailed(err) => {
                    tracing::debug!(
                        peer = %self.peer, count, segment, error = %err,
                        "GSO send failed; sending these datagrams one by one"
                    );
                    batch.singles_until = batch.next + count;
                    continue;
                }
            }
            batch.next += count;
            batch.next_offset += bytes;
        }
        Ok(())
    }

    /// The GSO run starting at `batch.next`: (datagrams, segment size, bytes).
    fn next_run(&self, batch: &SendBatch) -> (usize, usize, usize) {
        let lens = &batch.lens[batch.next..];
        let segment = lens[0];
        let max_segments = if self.gso && segment > 0 && batch.next >= batch.singles_until {
            self.state
                .max_gso_segments()
                .min(MAX_GSO_SEGMENTS)
                .min(MAX_GSO_BYTES / segment)
        } else {
            1
        };
        let mut count = 1;
        let mut bytes = segment;
        while count < max_segments && count < lens.len() {
            let len = lens[count];
            if len == 0 || len > segment || bytes + len > MAX_GSO_BYTES {
                break;
            }
            count += 1;
            bytes += len;
            if len < segment {
                break; // a shorter datagram can only end a GSO run
            }
        }
        (count, segment, bytes)
    }

    /// Hands `contents` to the kernel now, as one datagram or (with `segment_size`) one GSO run.
    ///
    /// `Err` only for `WouldBlock` (nothing sent) and fatal errors. After an ICMP error (which
    /// means this datagram was not sent) the error is counted and handed to the receive side, and
    /// the send retried once; a second failure drops the datagram.
    fn transmit_now(&self, contents: &[u8], segment_size: Option<usize>) -> io::Result<Sent> {
        let mut retried = false;
        loop {
            let res = match segment_size {
                None => socket2::SockRef::from(&self.io).send(contents).map(drop),
                Some(segment) => {
                    let transmit = Transmit {
                        destination: self.peer,
                        ecn: None,
                        contents,
                        segment_size: Some(segment),
                        src_ip: None,
                    };
                    self.state.try_send(UdpSockRef::from(&self.io), &transmit)
                }
            };
            let err = match res {
                Ok(()) => return Ok(Sent::Ok),
                Err(e) => e,
            };
            match err.kind() {
                io::ErrorKind::WouldBlock => {
                    bump(&self.counters.send_would_block, 1);
                    return Err(err);
                }
                io::ErrorKind::Interrupted => continue,
                _ => {}
            }
            let class = classify_error(&err);
            if class == ErrorClass::Unreachable {
                // The pending error of an earlier datagram; this one was not sent.
                bump(&self.counters.icmp_unreachable, 1);
                tracing::trace!(peer = %self.peer, error = %err, "ICMP unreachable on send");
            } else if segment_size.is_some() {
                return Ok(Sent::GsoFailed(err));
            }
            match class {
                ErrorClass::Fatal => return Err(err),
                _ if !retried => {
                    retried = true;
                    self.hand_unreachable_to_receiver(&err);
                }
                _ => {
                    tracing::trace!(peer = %self.peer, error = %err, "datagram dropped on send");
                    return Ok(Sent::Dropped(err));
                }
            }
        }
    }

    fn count_sent(&self, datagrams: usize, bytes: usize, gso: bool) {
        let c = &self.counters;
        bump(&c.send_syscalls, 1);
        bump(&c.datagrams_sent, datagrams as u64);
        bump(&c.bytes_sent, bytes as u64);
        if gso {
            bump(&c.gso_sends, 1);
        }
    }

    /// Lets `recv_batch` report an ICMP unreachable error the send path consumed.
    fn hand_unreachable_to_receiver(&self, err: &io::Error) {
        if self.report_unreachable
            && classify_error(err) == ErrorClass::Unreachable
            && let Some(code) = err.raw_os_error()
        {
            self.pending_unreachable.store(code, Ordering::Release);
            self.unreachable_notify.notify_one();
        }
    }

    fn take_pending_unreachable(&self) -> Option<io::Error> {
        if self.pending_unreachable.load(Ordering::Relaxed) == 0 {
            return None;
        }
        match self.pending_unreachable.swap(0, Ordering::Acquire) {
            0 => None,
            code => Some(io::Error::from_raw_os_error(code)),
        }
    }

    /// A snapshot of the counters (cheap: atomic loads only).
    pub fn stats(&self) -> TargetSocketStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TargetSocketStats {
            datagrams_received: get(&c.datagrams_received),
            bytes_received: get(&c.bytes_received),
            recv_batches: get(&c.recv_batches),
            recv_buffers: get(&c.recv_buffers),
            recv_would_block: get(&c.recv_would_block),
            datagrams_sent: get(&c.datagrams_sent),
            bytes_sent: get(&c.bytes_sent),
            send_syscalls: get(&c.send_syscalls),
            gso_sends: get(&c.gso_sends),
            send_would_block: get(&c.send_would_block),
            icmp_unreachable: get(&c.icmp_unreachable),
            recv_errors: get(&c.recv_errors),
            send_errors: get(&c.send_errors),
        }
    }

    /// Datagrams the kernel dropped because this socket's receive buffer was full (its
    /// `sk_drops`, the counter `SO_RXQ_OVFL` would report), read from `/proc/self/net/udp` or
    /// `udp6`. `Ok(None)` when not available (not Linux, or the socket is not listed).
    ///
    /// Scans the network namespace's whole UDP socket table: for diagnostics and periodic
    /// metrics, not for the data path.
    pub fn kernel_drops(&self) -> io::Result<Option<u64>> {
        #[cfg(target_os = "linux")]
        {
            use crate::kernel_drops::{parse_proc_udp, socket_inode};
            use std::os::fd::AsRawFd;
            let link = std::fs::read_link(format!("/proc/self/fd/{}", self.io.as_raw_fd()))?;
            let Some(inode) = socket_inode(&link.to_string_lossy()) else {
                return Ok(None);
            };
            let table = match self.local {
                SocketAddr::V4(_) => "/proc/self/net/udp",
                SocketAddr::V6(_) => "/proc/self/net/udp6",
            };
            let table = std::fs::read_to_string(table)?;
            Ok(parse_proc_udp(&table).find_map(|(i, drops)| (i == inode).then_some(drops)))
        }
        #[cfg(not(target_os = "linux"))]
        {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests;
