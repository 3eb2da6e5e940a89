//! The session runtime for datagram tunnels (CONNECT-UDP now, CONNECT-IP next):
//! one task per tunnel that runs the handler's setup, answers the request, then
//! relays until either side ends. Written once against the transport-generic
//! `Tunnel` types: HTTP/3, HTTP/2 and HTTP/1.1 run this same code, and the
//! capsule, context-id and FIN rules are masque-proto's `TunnelCore`, shared
//! with the client.
//!
//! Data plane: client datagrams arrive from the connection's demultiplexer on a
//! bounded queue (HTTP/3) or as DATAGRAM capsules in the body, and go straight
//! to the handler's synchronous callback; the handler's own tasks send to the
//! client through `TunnelOutput`, whose capsule datagrams this task writes to
//! the body. No actor hop per packet.

use std::{future::Future, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use masque_proto::{
    capsule, headers,
    tunnel::{DatagramEvent, DatagramRules, DropReason, TunnelCore, TunnelEvent},
};
use masque_queue::{self as queue, QueueRx};
use masque_transport::{
    BodyRx, BodyTx, CapsuleQueue, OpenTunnel, PendingTunnel, ResetReason, Transport, TunnelError,
    TunnelRequest,
};

use crate::{
    config::SessionConfig,
    handler::{Action, CloseReason, Handler, Target, TunnelHandler},
    metrics::Metrics,
    output::{Activity, Control, TunnelOutput},
    session::{
        budget::PacketBudget,
        establish::{self, NotOpened, SetupFuture},
    },
    slot::TunnelSlot,
    task_group::TaskGroup,
};

/// Everything one session needs.
pub(crate) struct SessionSetup {
    pub pending: PendingTunnel,
    pub target: Target,
    /// The datagram rules of the target's protocol.
    pub rules: DatagramRules,
    pub slot: TunnelSlot,
    pub handler: Arc<dyn Handler>,
    pub env: SessionEnv,
}

/// The session's surroundings, used for its whole life.
pub(crate) struct SessionEnv {
    pub config: Arc<SessionConfig>,
    pub metrics: Arc<Metrics>,
    pub node_name: Arc<str>,
    /// Info for the handler. It ends when the session must end (actor stop,
    /// node shutdown): one queue is both, so an idle tunnel pays for one.
    pub info: QueueRx<Box<dyn std::any::Any + Send>>,
    /// The client connection's task group (for `TunnelOutput::spawn`).
    pub group: TaskGroup,
    /// The session actor (what registries monitor, e.g. the IpRegistry).
    pub session: ractor::ActorCell,
}

/// What one relay loop counts with: the node's counters and its transport.
struct Counters<'a> {
    metrics: &'a Metrics,
    transport: &'a crate::metrics::TransportCounters,
}

/// Counts the session open on creation and closed on drop: exactly once on
/// every path, including an aborted task.
pub(crate) struct OpenGuard(Arc<Metrics>);

impl OpenGuard {
    pub(crate) fn new(metrics: &Arc<Metrics>) -> Self {
        Metrics::inc(&metrics.sessions_opened);
        Self(Arc::clone(metrics))
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        Metrics::inc(&self.0.sessions_closed);
    }
}

/// Runs one tunnel to its end and returns why it ended.
pub(crate) async fn run(setup: SessionSetup) -> CloseReason {
    let SessionSetup {
        pending,
        target,
        rules,
        slot,
        handler,
        env: mut s,
    } = setup;
    let _open = OpenGuard::new(&s.metrics);
    let transport = pending.request.transport;
    let (control_tx, mut control_rx) = queue::channel(s.config.output_queue);
    let activity = Arc::new(Activity::new());
    let out = TunnelOutput::new(
        control_tx,
        s.config.output_queue,
        Arc::clone(&activity),
        Arc::clone(&s.metrics),
        s.group.clone(),
        transport,
        s.session.clone(),
    );
    // The set-up phase runs once: boxed, so the task's future, which lives as
    // long as the tunnel, is sized for the relay only (measured 5.8 -> 4.5 KiB).
    let established = Box::pin(establish(pending, target, handler, &mut s, &out)).await;
    let (tunnel, mut handler) = match established {
        Ok(v) => v,
        Err(reason) => return reason,
    };
    Metrics::inc(&s.metrics.tunnels_established);
    Metrics::inc(&s.metrics.transport(transport).tunnels);
    Box::pin(out.open(tunnel.datagram_tx.clone())).await;
    activity.touch();
    let core = TunnelCore::new(rules, s.config.max_capsule_size);
    let relay = Relay {
        core,
        transport,
        activity: &activity,
    };
    let reason = relay
        .run(&mut s, tunnel, &mut *handler, &mut control_rx, slot)
        .await;
    out.fail();
    call_terminate(&mut *handler, &reason, &s.metrics);
    reason
}

/// The handler's `init` on the shared spine, then the 2xx with
/// `Capsule-Protocol: ?1` (or the refusal already sent).
async fn establish(
    pending: PendingTunnel,
    target: Target,
    handler: Arc<dyn Handler>,
    s: &mut SessionEnv,
    out: &TunnelOutput,
) -> Result<(OpenTunnel, Box<dyn TunnelHandler>), CloseReason> {
    let mut response = http::HeaderMap::new();
    response.insert(
        headers::CAPSULE_PROTOCOL,
        http::HeaderValue::from_static(headers::SF_TRUE),
    );
    let init_out = out.clone();
    let setup = establish::setup_fn(
        move |request: &TunnelRequest| -> SetupFuture<'_, Box<dyn TunnelHandler>> {
            Box::pin(async move { handler.init(request, &target, init_out).await })
        },
    );
    match establish::establish(pending, s, setup, response).await {
        Ok(v) => Ok(v),
        Err(NotOpened { reason, setup }) => {
            out.fail();
            if let Some(mut handler) = setup {
                call_terminate(&mut *handler, &reason, &s.metrics);
            }
            Err(reason)
        }
    }
}

fn call_terminate(handler: &mut dyn TunnelHandler, reason: &CloseReason, metrics: &Metrics) {
    if std::panic::catch_unwind(AssertUnwindSafe(|| handler.terminate(reason))).is_err() {
        Metrics::inc(&metrics.handler_panics);
    }
}

/// The relay of one established tunnel.
struct Relay<'a> {
    core: TunnelCore,
    transport: Transport,
    activity: &'a Activity,
}

impl Relay<'_> {
    /// Relays until either side ends; then closes our side as the reason demands.
    async fn run(
        mut self,
        s: &mut SessionEnv,
        tunnel: OpenTunnel,
        handler: &mut dyn TunnelHandler,
        control: &mut QueueRx<Control>,
        slot: TunnelSlot,
    ) -> CloseReason {
        let OpenTunnel {
            mut body_tx,
            mut body_rx,
            datagram_rx,
            capsules,
            ..
        } = tunnel;
        let mut datagrams = datagram_rx;
        let mut capsules = capsules;
        let n = Counters {
            metrics: &s.metrics,
            transport: s.metrics.transport(self.transport),
        };
        let mut budget = PacketBudget::new(s.config.datagram_rate, std::time::Instant::now());
        let idle = s.config.idle_timeout;
        // Every write to the client is bounded: while one waits for stream
        // credit, neither the idle timer nor shutdown is polled.
        let deadline = s.config.write_deadline;
        // One timer per idle period, re-armed from the last activity when it
        // fires early: an idle tunnel costs no periodic wake-ups.
        let idle_timer = tokio::time::sleep(idle);
        tokio::pin!(idle_timer);
        let mut body_open = true;
        let mut reason = loop {
            tokio::select! {
                d = recv_datagram(&mut datagrams) => match d {
                    Some(d) => {
                        self.activity.touch();
                        budget.refill(std::time::Instant::now());
                        if let Some(r) = on_burst(handler, &self.core, d, &mut datagrams, &n, &mut budget) {
                            break r;
                        }
                    }
                    // The connection ended under us.
                    None => break CloseReason::ClientAborted,
                },
                chunk = body_rx.recv(), if body_open => match chunk {
                    Ok(Some(bytes)) => {
                        self.activity.touch();
                        self.core.push_body(bytes);
                        budget.refill(std::time::Instant::now());
                        if let Some(r) = drain_events(handler, &mut self.core, &n, &mut budget) {
                            break r;
                        }
                    }
                    Ok(None) => {
                        body_open = false;
                        // R9297-24: a FIN inside a capsule is malformed.
                        if let Err(e) = self.core.on_fin() {
                            Metrics::inc(&n.metrics.capsules_malformed);
                            break CloseReason::ProtocolError(e.to_string());
                        }
                        break CloseReason::ClientClosed;
                    }
                    Err(_) => break CloseReason::ClientAborted,
                },
                c = recv_capsule(&mut capsules) => match c {
                    Some(first) => {
                        let w = bounded(deadline, write_capsules(&mut body_tx, first, capsules.as_mut(), &n)).await;
                        if let Some(r) = write_failed(w, &n) {
                            break r;
                        }
                    }
                    None => capsules = None,
                },
                c = control.recv() => {
                    let bytes = match c {
                        Some(Control::Capsule(c)) => {
                            let mut buf = BytesMut::with_capacity(capsule::header_len(c.ty, c.value.len()) + c.value.len());
                            c.encode(&mut buf);
                            buf.freeze()
                        }
                        Some(Control::End(action)) => break CloseReason::Handler(action),
                        // Only `TunnelOutput::spawn` closes the queue: a task of
                        // the handler panicked (counted there).
                        None => break CloseReason::HandlerPanic,
                    };
                    Metrics::inc(&n.transport.capsules_to_client);
                    if let Some(r) = write_failed(bounded(deadline, body_tx.send(bytes)).await, &n) {
                        break r;
                    }
                }
                m = s.info.recv() => match m {
                    Some(m) => {
                        let action = catch(|| handler.info(m), n.metrics);
                        if let Some(r) = after(action) {
                            break r;
                        }
                    }
                    // Closed by the actor (stop, node shutdown) or the actor is gone.
                    None => break CloseReason::Shutdown,
                },
                _ = &mut idle_timer => {
                    let quiet = self.activity.idle_for();
                    if quiet >= idle {
                        Metrics::inc(&n.metrics.idle_timeouts);
                        break CloseReason::IdleTimeout;
                    }
                    idle_timer.as_mut().reset(tokio::time::Instant::now() + (idle - quiet));
                }
            }
        };
        // Queued output goes out before a clean end (FIN after the data).
        if reset_for(&reason).is_none()
            && let Some(q) = capsules.as_mut()
            && let Some(first) = q.try_recv()
        {
            let w = bounded(deadline, write_capsules(&mut body_tx, first, Some(q), &n)).await;
            if let Some(CloseReason::WriteStalled) = write_failed(w, &n) {
                reason = CloseReason::WriteStalled;
            }
        }
        // Free the slot before the client can see the end.
        drop(slot);
        close_stream(&reason, &mut body_tx, &mut body_rx, body_open).await;
        reason
    }
}

/// `f` within `deadline`; `None` when the deadline passed first.
pub(crate) async fn bounded<T>(deadline: Duration, f: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(deadline, f).await.ok()
}

/// Why the relay ends after a bounded write, if it must: the client went away
/// (`ClientAborted`) or withheld credit past the deadline (`WriteStalled`,
/// counted).
fn write_failed(w: Option<Result<(), TunnelError>>, n: &Counters<'_>) -> Option<CloseReason> {
    match w {
        Some(Ok(())) => None,
        Some(Err(_)) => Some(CloseReason::ClientAborted),
        None => {
            Metrics::inc(&n.metrics.writes_timed_out);
            tracing::debug!(
                "the client withheld stream credit past the write deadline: stream reset"
            );
            Some(CloseReason::WriteStalled)
        }
    }
}

async fn recv_datagram(rx: &mut Option<masque_transport::DatagramRx>) -> Option<Bytes> {
    match rx {
        Some(rx) => rx.recv().await,
        // Transports without a datagram channel carry DATAGRAM capsules only.
        None => std::future::pending().await,
    }
}

async fn recv_capsule(rx: &mut Option<CapsuleQueue>) -> Option<Bytes> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Writes `first` and the capsules queued behind it (at most a burst), then
/// flushes once, counting them.
async fn write_capsules(
    body: &mut BodyTx,
    first: Bytes,
    rest: Option<&mut CapsuleQueue>,
    n: &Counters<'_>,
) -> Result<(), masque_transport::TunnelError> {
    let written = match rest {
        Some(q) => q.write_burst(body, first, BURST).await?,
        None => body.send(first).await.map(|()| 1)?,
    };
    Metrics::add(&n.transport.capsules_to_client, written as u64);
    Ok(())
}

/// Most datagrams taken from the queue per wake-up before the handler flushes.
const BURST: usize = 64;

/// The first datagram of a wake-up plus those already queued behind it, then
/// one `flush`. Never waits for more (R9298-46).
fn on_burst(
    handler: &mut dyn TunnelHandler,
    core: &TunnelCore,
    first: Bytes,
    rx: &mut Option<masque_transport::DatagramRx>,
    n: &Counters<'_>,
    budget: &mut PacketBudget,
) -> Option<CloseReason> {
    let mut next = Some(first);
    let mut taken = 0;
    while let Some(d) = next.take() {
        if let Some(r) = on_datagram(handler, core, d, n, budget) {
            return Some(r);
        }
        taken += 1;
        if taken < BURST {
            next = rx.as_mut().and_then(|rx| rx.try_recv());
        }
    }
    after(catch(|| handler.flush(), n.metrics))
}

/// A datagram from the client (QUIC DATAGRAM or DATAGRAM capsule, R9297-31).
fn on_datagram(
    handler: &mut dyn TunnelHandler,
    core: &TunnelCore,
    d: Bytes,
    n: &Counters<'_>,
    budget: &mut PacketBudget,
) -> Option<CloseReason> {
    match core.on_datagram(d) {
        Ok(event) => on_datagram_event(handler, event, n, budget),
        Err(e) => {
            // R9298-41: a context-0 payload over 65527 bytes aborts the stream.
            Metrics::inc(&n.metrics.datagrams_dropped_oversize);
            Some(CloseReason::ProtocolError(e.to_string()))
        }
    }
}

fn on_datagram_event(
    handler: &mut dyn TunnelHandler,
    event: DatagramEvent,
    n: &Counters<'_>,
    budget: &mut PacketBudget,
) -> Option<CloseReason> {
    match event {
        DatagramEvent::Payload {
            context_id,
            payload,
        } => {
            Metrics::inc(&n.metrics.datagrams_from_client);
            Metrics::inc(&n.transport.datagrams_from_client);
            // Over the tunnel's packet budget toward the target: dropped.
            if !budget.take() {
                Metrics::inc(&n.metrics.datagrams_dropped_rate);
                return None;
            }
            after(catch(|| handler.datagram(context_id, payload), n.metrics))
        }
        // R9298-38: unknown context ids are dropped (and counted), never an error.
        DatagramEvent::Dropped(DropReason::UnknownContext) => {
            Metrics::inc(&n.metrics.datagrams_dropped_unknown_context);
            None
        }
        // Our choice (RFC 9297 digest §6): too short for a context id -> drop.
        DatagramEvent::Dropped(DropReason::NoContextId) => {
            Metrics::inc(&n.metrics.datagrams_dropped_malformed);
            None
        }
    }
}

/// Every complete event in the body, with a `flush` after each [`BURST`]
/// datagrams (one chunk can hold ~21,000 tiny DATAGRAM capsules) and at the
/// end.
fn drain_events(
    handler: &mut dyn TunnelHandler,
    core: &mut TunnelCore,
    n: &Counters<'_>,
    budget: &mut PacketBudget,
) -> Option<CloseReason> {
    let mut in_burst = 0;
    loop {
        match core.next_event() {
            Ok(Some(TunnelEvent::Datagram(event))) => {
                Metrics::inc(&n.transport.capsules_from_client);
                if let Some(r) = on_datagram_event(handler, event, n, budget) {
                    return Some(r);
                }
                in_burst += 1;
                if in_burst == BURST {
                    in_burst = 0;
                    if let Some(r) = after(catch(|| handler.flush(), n.metrics)) {
                        return Some(r);
                    }
                }
            }
            Ok(Some(TunnelEvent::Capsule(c))) => {
                Metrics::inc(&n.transport.capsules_from_client);
                if let Some(r) = after(catch(|| handler.capsule(c), n.metrics)) {
                    // A capsule the handler found malformed resets the stream
                    // like one the core rejected, and is counted the same.
                    if r == CloseReason::Handler(Action::Malformed) {
                        Metrics::inc(&n.metrics.capsules_malformed);
                    }
                    return Some(r);
                }
            }
            Ok(None) => return after(catch(|| handler.flush(), n.metrics)),
            Err(e) => {
                // R9297-22: a capsule error is a malformed message; R9298-41
                // a DATAGRAM capsule with a UDP payload over 65527 bytes aborts
                // the stream as well: the stream is reset for that capsule
                // (`capsules_malformed`) and the payload counted as oversize.
                if let masque_proto::tunnel::TunnelCoreError::PayloadTooLarge(_) = e {
                    Metrics::inc(&n.metrics.datagrams_dropped_oversize);
                }
                Metrics::inc(&n.metrics.capsules_malformed);
                return Some(CloseReason::ProtocolError(e.to_string()));
            }
        }
    }
}

/// Runs a callback; a panic becomes `HandlerPanic` (the stream gets reset).
fn catch(f: impl FnOnce() -> Action, metrics: &Metrics) -> Result<Action, ()> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|_| {
        Metrics::inc(&metrics.handler_panics);
    })
}

fn after(action: Result<Action, ()>) -> Option<CloseReason> {
    match action {
        Ok(Action::Continue) => None,
        Ok(a) => Some(CloseReason::Handler(a)),
        Err(()) => Some(CloseReason::HandlerPanic),
    }
}

/// How `reason` ends our side: `None` is a clean end (FIN).
fn reset_for(reason: &CloseReason) -> Option<ResetReason> {
    match reason {
        CloseReason::ClientClosed
        | CloseReason::IdleTimeout
        | CloseReason::Shutdown
        | CloseReason::Handler(Action::Close | Action::Continue) => None,
        CloseReason::ProtocolError(_) | CloseReason::Handler(Action::Malformed) => {
            Some(ResetReason::Malformed)
        }
        CloseReason::Handler(Action::Abort) | CloseReason::TargetFailed(_) => {
            Some(ResetReason::ConnectError)
        }
        CloseReason::HandlerPanic => Some(ResetReason::Internal),
        CloseReason::ClientAborted | CloseReason::WriteStalled => Some(ResetReason::Cancelled),
    }
}

/// Ends our side of the stream as `reason` demands. A clean end finishes it;
/// errors reset it. Either way our side is closed, so the connection's stream
/// credit is never leaked (HTTP/1.1: the connection closes with its tunnel).
async fn close_stream(reason: &CloseReason, tx: &mut BodyTx, rx: &mut BodyRx, body_open: bool) {
    let reset = reset_for(reason);
    match reset {
        None => tx.finish().await,
        Some(r) => tx.reset(r),
    }
    if body_open {
        rx.stop(reset.unwrap_or(ResetReason::Cancelled));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Recorder(Vec<(u64, Bytes)>);

    impl TunnelHandler for Recorder {
        fn datagram(&mut self, ctx: u64, payload: Bytes) -> Action {
            self.0.push((ctx, payload));
            Action::Continue
        }
    }

    fn counters(m: &Metrics) -> Counters<'_> {
        Counters {
            metrics: m,
            transport: m.transport(Transport::H2),
        }
    }

    fn unlimited() -> PacketBudget {
        PacketBudget::new(None, std::time::Instant::now())
    }

    fn udp_core(max: usize) -> TunnelCore {
        TunnelCore::new(DatagramRules::udp(), max)
    }

    /// R9298-38 / R9297-31: context 0 reaches the handler (also from a DATAGRAM
    /// capsule); unknown contexts and context-less datagrams are counted drops.
    #[test]
    fn r9298_38_contexts_and_datagram_capsules() {
        let m = Metrics::default();
        let n = counters(&m);
        let mut h = Recorder(Vec::new());
        let mut core = udp_core(capsule::DEFAULT_MAX_CAPSULE_SIZE);
        assert!(
            on_datagram(
                &mut h,
                &core,
                Bytes::from_static(b"\x00abc"),
                &n,
                &mut unlimited()
            )
            .is_none()
        );
        assert!(
            on_datagram(
                &mut h,
                &core,
                Bytes::from_static(b"\x06abc"),
                &n,
                &mut unlimited()
            )
            .is_none()
        );
        assert!(on_datagram(&mut h, &core, Bytes::new(), &n, &mut unlimited()).is_none());
        // DATAGRAM capsule ctx 0 "xy", GREASE capsule, DATAGRAM capsule ctx 0 "z".
        core.push_body(Bytes::from_static(&[
            0, 3, 0, b'x', b'y', 0x17, 1, 0xaa, 0, 2, 0, b'z',
        ]));
        assert!(drain_events(&mut h, &mut core, &n, &mut unlimited()).is_none());
        let got: Vec<_> = h.0.iter().map(|(c, p)| (*c, p.clone())).collect();
        assert_eq!(
            got,
            vec![
                (0, Bytes::from_static(b"abc")),
                (0, Bytes::from_static(b"xy")),
                (0, Bytes::from_static(b"z"))
            ]
        );
        let s = m.snapshot();
        assert_eq!(s.datagrams_dropped_unknown_context, 1);
        assert_eq!(s.datagrams_dropped_malformed, 1);
        assert_eq!(s.datagrams_from_client, 3);
        let t = m.transport(Transport::H2).snapshot();
        assert_eq!((t.datagrams_from_client, t.capsules_from_client), (3, 3));
    }

    /// R9298-41: a context-0 payload of 65528 bytes in a capsule aborts.
    #[test]
    fn r9298_41_oversize_capsule_payload_aborts() {
        let m = Metrics::default();
        let n = counters(&m);
        let mut h = Recorder(Vec::new());
        let core = udp_core(capsule::DEFAULT_MAX_CAPSULE_SIZE);
        let d = vec![0u8; 65529];
        assert!(matches!(
            on_datagram(&mut h, &core, Bytes::from(d), &n, &mut unlimited()),
            Some(CloseReason::ProtocolError(_))
        ));
        let ok = vec![0u8; 65528];
        assert!(on_datagram(&mut h, &core, Bytes::from(ok), &n, &mut unlimited()).is_none());
    }

    /// Counts datagrams and flushes.
    #[derive(Default)]
    struct Flushes {
        datagrams: usize,
        flushes: usize,
    }

    impl TunnelHandler for Flushes {
        fn datagram(&mut self, _: u64, _: Bytes) -> Action {
            self.datagrams += 1;
            Action::Continue
        }

        fn flush(&mut self) -> Action {
            self.flushes += 1;
            Action::Continue
        }
    }

    /// §5 of the hardening issue: one body chunk of 1,000 tiny DATAGRAM
    /// capsules reaches the handler in bursts of at most 64 (a flush after
    /// each), and the tunnel's packet budget lets its burst through and
    /// drops the rest, counted.
    #[test]
    fn capsule_path_bursts_and_packet_budget() {
        let mut wire = Vec::new();
        for _ in 0..1000 {
            capsule::encode(capsule::DATAGRAM, b"\x00x", &mut wire);
        }
        let m = Metrics::default();
        let mut core = udp_core(capsule::DEFAULT_MAX_CAPSULE_SIZE);
        core.push_body(Bytes::from(wire.clone()));
        let mut h = Flushes::default();
        assert!(drain_events(&mut h, &mut core, &counters(&m), &mut unlimited()).is_none());
        assert_eq!(h.datagrams, 1000);
        assert_eq!(h.flushes, 1000 / BURST + 1);

        let rate = crate::session::budget::PacketRate {
            per_second: 1,
            burst: 300,
        };
        let mut budget = PacketBudget::new(Some(rate), std::time::Instant::now());
        let mut core = udp_core(capsule::DEFAULT_MAX_CAPSULE_SIZE);
        core.push_body(Bytes::from(wire));
        let mut h = Flushes::default();
        assert!(drain_events(&mut h, &mut core, &counters(&m), &mut budget).is_none());
        assert_eq!(h.datagrams, 300);
        assert_eq!(m.snapshot().datagrams_dropped_rate, 700);
    }

    struct Panicker;

    impl TunnelHandler for Panicker {
        fn datagram(&mut self, _: u64, _: Bytes) -> Action {
            panic!("handler bug")
        }
    }

    /// A panicking callback ends the tunnel with HandlerPanic (reset), counted.
    #[test]
    fn handler_panic_is_contained() {
        let m = Metrics::default();
        let core = udp_core(64);
        let r = on_datagram(
            &mut Panicker,
            &core,
            Bytes::from_static(b"\x00x"),
            &counters(&m),
            &mut unlimited(),
        );
        assert_eq!(r, Some(CloseReason::HandlerPanic));
        assert_eq!(m.snapshot().handler_panics, 1);
    }

    /// R9297-17, R9298-38: a GREASE capsule and an unknown-context DATAGRAM
    /// capsule over the bound are skipped unbuffered (the latter counted as an
    /// unknown-context drop), not a reset; the tunnel keeps delivering.
    #[test]
    fn r9297_17_oversize_unknown_capsules_skipped() {
        let m = Metrics::default();
        let n = counters(&m);
        let mut h = Recorder(Vec::new());
        let mut core = udp_core(4);
        let mut wire = Vec::new();
        capsule::encode(0x17, &[7; 5000], &mut wire);
        capsule::encode(capsule::DATAGRAM, &[6; 5000], &mut wire);
        capsule::encode(capsule::DATAGRAM, b"\x00z", &mut wire);
        for c in wire.chunks(100) {
            core.push_body(Bytes::copy_from_slice(c));
            assert!(drain_events(&mut h, &mut core, &n, &mut unlimited()).is_none());
        }
        assert_eq!(h.0, vec![(0, Bytes::from_static(b"z"))]);
        let s = m.snapshot();
        assert_eq!(s.datagrams_dropped_unknown_context, 1);
        assert_eq!(s.capsules_malformed, 0);
        assert_eq!(core.skipped_capsules(), 1);
    }

    /// R9298-41: a context-0 DATAGRAM capsule whose UDP payload exceeds 65527
    /// bytes ends the tunnel, within the capsule bound or over it (then as soon
    /// as its Context ID arrives); counted as an oversize payload and a reset
    /// for a capsule.
    #[test]
    fn r9298_41_oversize_datagram_capsule_aborts() {
        for len in [1 + 65528usize, 100_000] {
            let m = Metrics::default();
            let mut core = udp_core(capsule::DEFAULT_MAX_CAPSULE_SIZE);
            let mut wire = Vec::new();
            capsule::encode_header(capsule::DATAGRAM, len, &mut wire);
            // All of a capsule within the bound, the Context ID of one over it.
            wire.resize(wire.len() + len.min(capsule::DEFAULT_MAX_CAPSULE_SIZE), 0);
            core.push_body(Bytes::from(wire));
            let r = drain_events(
                &mut Recorder(Vec::new()),
                &mut core,
                &counters(&m),
                &mut unlimited(),
            );
            assert!(matches!(r, Some(CloseReason::ProtocolError(_))), "{len}");
            let s = m.snapshot();
            assert_eq!((s.datagrams_dropped_oversize, s.capsules_malformed), (1, 1));
        }
    }

    /// R9297-22: a malformed capsule (a context-0 DATAGRAM over the bound) ends
    /// the tunnel.
    #[test]
    fn r9297_22_malformed_capsule() {
        let m = Metrics::default();
        let mut core = udp_core(4);
        core.push_body(Bytes::from_static(&[0, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8]));
        let r = drain_events(
            &mut Recorder(Vec::new()),
            &mut core,
            &counters(&m),
            &mut unlimited(),
        );
        assert!(matches!(r, Some(CloseReason::ProtocolError(_))));
        assert_eq!(m.snapshot().capsules_malformed, 1);
    }
}
