//! `ConnectionRouter`: one actor per accepted connection, any transport
//! (Erlang: masque_server_connection). It owns the connection, takes its
//! requests, parses and polices them, and spawns one linked session per
//! tunnel. Datagrams never pass through it: masque-h3 demuxes them straight
//! to each session's queue, and on HTTP/2 and HTTP/1.1 they arrive in the
//! tunnel's own body. When it stops, every session of its connection stops.

use std::{sync::Arc, time::Duration};

use masque_proto::{
    headers::{
        self,
        auth::{PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, bearer_challenge},
    },
    proxy_status::TunnelFailure,
    request::{self, RequestHeaders, TunnelTarget},
    tcp::Codepoints,
};
use masque_transport::{PendingTunnel, ServerConnection};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::task::JoinHandle;

use crate::{
    admission::ConnectionPermit,
    auth::AuthFailure,
    context::ListenerContext,
    handler::{Refusal, StreamFraming, Target, TcpTarget},
    metrics::{H3Attached, H3Counters, Metrics},
    session::{SessionMsg, TunnelSession, actor::TunnelSessionArgs},
    slot::{Slots, TunnelSlot},
    task_group::TaskGroup,
};

pub enum RouterMsg {
    Request(Box<PendingTunnel>),
    /// Policy passed: start the session (internal).
    Accepted(Box<(PendingTunnel, Target, TunnelSlot)>),
    /// A tunnel slot was freed (internal; sent by the slot's drop).
    Released,
    ConnectionClosed,
    /// Graceful shutdown: GOAWAY, let tunnels end within `timeout`, then close.
    Drain(Duration),
    DrainDeadline,
    /// The connection may have carried no tunnel for the idle timeout
    /// (internal; at most one is pending per router).
    IdleCheck,
}

pub struct ConnectionRouter;

pub struct RouterArgs {
    pub(crate) conn: ServerConnection,
    /// The connection's place under the node's admission caps.
    pub(crate) permit: ConnectionPermit,
    pub(crate) ctx: Arc<ListenerContext>,
}

pub struct RouterState {
    conn: ServerConnection,
    _permit: ConnectionPermit,
    /// An HTTP/3 connection's own counters, reported in `/metrics`.
    _h3_counters: Option<H3Attached>,
    ctx: Arc<ListenerContext>,
    /// Tunnels counted against the limit: in policy check or running.
    slots: Slots,
    draining: bool,
    /// Since when the connection carries no tunnel (`None`: it does).
    idle_since: Option<tokio::time::Instant>,
    /// The pending `IdleCheck` timer (one per router, however many requests
    /// come and go); aborted with the router so no task outlives it.
    idle_timer: Option<JoinHandle<Result<(), ractor::MessagingErr<RouterMsg>>>>,
    accept_task: JoinHandle<()>,
    /// Where the handlers' data-plane tasks of this connection run, e.g. every
    /// tunnel's target reader (`TunnelOutput::spawn`, decisions §29).
    group: TaskGroup,
}

impl Drop for RouterState {
    fn drop(&mut self) {
        self.accept_task.abort();
        if let Some(t) = self.idle_timer.take() {
            t.abort();
        }
        self.conn.close();
    }
}

impl Actor for ConnectionRouter {
    type Msg = RouterMsg;
    type State = RouterState;
    type Arguments = RouterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RouterMsg>,
        args: RouterArgs,
    ) -> Result<RouterState, ActorProcessingErr> {
        Metrics::inc(&args.ctx.metrics.connections_accepted);
        Metrics::inc(
            &args
                .ctx
                .metrics
                .transport(args.conn.transport())
                .connections,
        );
        let conn = args.conn.clone();
        let myself_for_slots = myself.clone();
        let accept_task = tokio::spawn(async move {
            while let Some(req) = conn.accept().await {
                if myself.cast(RouterMsg::Request(Box::new(req))).is_err() {
                    return;
                }
            }
            let _ = myself.cast(RouterMsg::ConnectionClosed);
        });
        let idle_timer = args
            .ctx
            .config
            .connection_idle_timeout
            .map(|t| myself_for_slots.send_after(t, || RouterMsg::IdleCheck));
        let h3_counters = args
            .conn
            .as_h3()
            .map(|c| H3Counters::attach(&args.ctx.metrics, c.stats_handle()));
        Ok(RouterState {
            _permit: args.permit,
            _h3_counters: h3_counters,
            idle_since: Some(tokio::time::Instant::now()),
            idle_timer,
            conn: args.conn,
            ctx: args.ctx,
            slots: {
                let me = myself_for_slots;
                Slots::new(move || {
                    // Gone router: its connection is closing anyway.
                    let _ = me.cast(RouterMsg::Released);
                })
            },
            draining: false,
            accept_task,
            group: TaskGroup::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<RouterMsg>,
        msg: RouterMsg,
        state: &mut RouterState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RouterMsg::Request(req) => {
                on_request(&myself, state, *req);
                // A request, even a refused one, is activity.
                state.idle_since = None;
                arm_idle(&myself, state);
            }
            RouterMsg::Accepted(acc) => {
                let (pending, target, slot) = *acc;
                let args = TunnelSessionArgs {
                    pending,
                    target,
                    slot,
                    handler: Arc::clone(&state.ctx.handler),
                    config: Arc::clone(&state.ctx.session),
                    metrics: Arc::clone(&state.ctx.metrics),
                    node_name: Arc::clone(&state.ctx.node_name),
                    group: state.group.clone(),
                };
                if let Err(e) =
                    Actor::spawn_linked(None, TunnelSession, args, myself.get_cell()).await
                {
                    // Its slot went with its arguments (and told us).
                    tracing::warn!(error = %e, "session failed to start");
                }
            }
            RouterMsg::Released => release(&myself, state),
            RouterMsg::ConnectionClosed => {
                stop_sessions(&myself).await;
                myself.stop(Some("connection closed".into()));
            }
            RouterMsg::Drain(timeout) => {
                state.draining = true;
                goaway(state).await;
                if state.slots.in_use() == 0 {
                    myself.stop(Some("drained".into()));
                } else {
                    myself.send_after(timeout, || RouterMsg::DrainDeadline);
                }
            }
            RouterMsg::DrainDeadline => {
                stop_sessions(&myself).await;
                myself.stop(Some("drain deadline".into()));
            }
            RouterMsg::IdleCheck => {
                state.idle_timer = None;
                let Some(t) = state.ctx.config.connection_idle_timeout else {
                    return Ok(());
                };
                match state.idle_since {
                    _ if state.draining || state.slots.in_use() > 0 => {}
                    Some(since) if since.elapsed() >= t => {
                        Metrics::inc(&state.ctx.metrics.connections_idle_closed);
                        goaway(state).await;
                        myself.stop(Some("idle".into()));
                    }
                    Some(since) => {
                        let rest = t - since.elapsed();
                        state.idle_timer = Some(myself.send_after(rest, || RouterMsg::IdleCheck));
                    }
                    None => {}
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RouterMsg>,
        evt: SupervisionEvent,
        state: &mut RouterState,
    ) -> Result<(), ActorProcessingErr> {
        // Sessions are temporary: a finished or failed one frees its slot and is
        // never restarted. (The default implementation would stop the router.)
        match evt {
            SupervisionEvent::ActorTerminated(..) | SupervisionEvent::ActorFailed(..) => {
                release(&myself, state);
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<RouterMsg>,
        state: &mut RouterState,
    ) -> Result<(), ActorProcessingErr> {
        Metrics::inc(&state.ctx.metrics.connections_closed);
        Ok(())
    }
}

/// A tunnel (or its refusal) is done and its slot already freed: the
/// router stops when that was the last one of a draining or HTTP/1.1
/// connection.
fn release(myself: &ActorRef<RouterMsg>, state: &mut RouterState) {
    if state.slots.in_use() > 0 {
        return;
    }
    arm_idle(myself, state);
    if state.draining {
        myself.stop(Some("drained".into()));
    } else if state.conn.single_tunnel() {
        // HTTP/1.1: the connection carried its one tunnel (or its refusal).
        myself.stop(Some("tunnel done".into()));
    }
}

/// GOAWAY, bounded by `goaway_timeout`: on HTTP/3 it is written to the
/// control stream, and a peer that withholds credit must not park the actor.
/// Past the deadline the router goes on without it (counted).
async fn goaway(state: &RouterState) {
    let limit = state.ctx.config.goaway_timeout;
    if tokio::time::timeout(limit, state.conn.goaway())
        .await
        .is_err()
    {
        Metrics::inc(&state.ctx.metrics.goaway_timeouts);
        tracing::debug!("GOAWAY not sent within goaway_timeout: the peer withholds credit");
    }
}

/// With no tunnel left, an idle period starts now: unless a request comes
/// first, `IdleCheck` closes the connection after the idle timeout.
fn arm_idle(myself: &ActorRef<RouterMsg>, state: &mut RouterState) {
    let Some(t) = state.ctx.config.connection_idle_timeout else {
        return;
    };
    if state.slots.in_use() > 0 {
        state.idle_since = None;
        return;
    }
    state.idle_since = Some(tokio::time::Instant::now());
    if state.idle_timer.is_none() {
        state.idle_timer = Some(myself.send_after(t, || RouterMsg::IdleCheck));
    }
}

/// Stops every session gracefully (FIN + terminate), bounded in time.
async fn stop_sessions(myself: &ActorRef<RouterMsg>) {
    for child in myself.get_children() {
        let _ = child.send_message(SessionMsg::Close);
    }
    myself
        .stop_children_and_wait(
            Some("connection ending".into()),
            Some(Duration::from_secs(2)),
        )
        .await;
}

/// The request pipeline up to the session: form, credentials, limit,
/// classification, policy.
fn on_request(myself: &ActorRef<RouterMsg>, state: &mut RouterState, mut pending: PendingTunnel) {
    let ctx = &state.ctx;
    Metrics::inc(&ctx.metrics.tunnel_requests);
    Metrics::inc(&ctx.metrics.transport(pending.request.transport).requests);
    let refuse = |pending, answer| {
        tokio::spawn(reject(
            pending,
            answer,
            Arc::clone(&ctx.metrics),
            ctx.session.write_deadline,
        ));
    };
    // Malformed pseudo-headers or request line: never a tunnel (RFC 9114
    // §4.1.2, RFC 9113 §8.5, RFC 9112 §3), answered 400 (a stream error on
    // HTTP/2 and HTTP/3 would say less).
    let form = match &pending.request.form {
        Ok(form) => form.clone(),
        Err(refusal) => {
            let answer = form_refusal(refusal, ctx);
            return refuse(pending, answer);
        }
    };
    if let Err(failure) = ctx.config.auth.check(&pending.request.headers) {
        Metrics::inc(&ctx.metrics.tunnels_refused_auth);
        return refuse(pending, auth_required(failure, ctx));
    }
    // Consumed here: handlers never see the credentials.
    pending.request.headers.remove(PROXY_AUTHORIZATION);
    if state.slots.in_use() >= ctx.config.max_tunnels_per_connection {
        Metrics::inc(&ctx.metrics.tunnels_refused_limit);
        ctx.metrics
            .refusals
            .count(TunnelFailure::ConnectionLimitReached);
        let answer =
            Refusal::new(TunnelFailure::ConnectionLimitReached).http_response(&ctx.node_name);
        return refuse(pending, answer);
    }
    let Some(node_permit) = ctx.admission.tunnel() else {
        ctx.metrics
            .refusals
            .count(TunnelFailure::ConnectionLimitReached);
        let answer = Refusal::new(TunnelFailure::ConnectionLimitReached)
            .with_details("the node holds its tunnel limit")
            .http_response(&ctx.node_name);
        return refuse(pending, answer);
    };
    let target = match classify(&form, &pending.request.headers, ctx) {
        Ok(t) => t,
        Err(answer) => return refuse(pending, answer),
    };
    let slot = state.slots.take(node_permit);
    let me = myself.clone();
    let ctx = Arc::clone(ctx);
    tokio::spawn(async move {
        match ctx.handler.accept(&pending.request, &target).await {
            Ok(()) => {
                let accepted = Box::new((pending, target, slot));
                if let Err(e) = me.cast(RouterMsg::Accepted(accepted)) {
                    // The router is gone: the connection is closing.
                    tracing::debug!(error = %e, "router stopped before the session started");
                }
            }
            Err(refusal) => {
                ctx.metrics.refusals.count(refusal.failure);
                let answer = refusal.http_response(&ctx.node_name);
                let deadline = ctx.session.write_deadline;
                reject(pending, answer, Arc::clone(&ctx.metrics), deadline).await;
                // Dropping the slot tells the router.
                drop(slot);
            }
        }
    });
}

/// An answer to a request that does not become a tunnel.
type Answer = (http::StatusCode, http::HeaderMap);

/// 407 with a Bearer challenge (RFC 9110 §15.5.8) and a `Proxy-Status` that
/// says whether credentials were missing or wrong.
fn auth_required(failure: AuthFailure, ctx: &ListenerContext) -> Answer {
    let details = match failure {
        AuthFailure::Missing => "proxy authentication required",
        AuthFailure::Invalid => "invalid proxy credentials",
    };
    ctx.metrics
        .refusals
        .count(TunnelFailure::ProxyAuthenticationRequired);
    let (status, mut headers) = Refusal::new(TunnelFailure::ProxyAuthenticationRequired)
        .with_details(details)
        .http_response(&ctx.node_name);
    if let Ok(v) = http::HeaderValue::from_str(&bearer_challenge(&ctx.node_name)) {
        headers.insert(PROXY_AUTHENTICATE, v);
    }
    (status, headers)
}

/// What the request asks for (the pure classifier in masque-proto), or the
/// answer to send. Tunnel kinds without a session yet get 501.
fn classify(
    form: &request::RequestForm,
    fields: &http::HeaderMap,
    ctx: &ListenerContext,
) -> Result<Target, Answer> {
    let lines = |name| fields.get_all(name).iter().map(|v| v.as_bytes());
    let h = RequestHeaders {
        capsule_protocol: headers::capsule_protocol(lines(headers::CAPSULE_PROTOCOL)),
        connect_udp_bind: headers::connect_udp_bind(lines(headers::CONNECT_UDP_BIND)),
    };
    let target = request::classify(form, &h, &ctx.templates).map_err(|r| form_refusal(&r, ctx))?;
    let unsupported = match target {
        TunnelTarget::Udp(t) => return Ok(Target::Udp(t.into())),
        TunnelTarget::Tcp { target, token } => {
            // The classifier only lets served tokens through.
            let Some(codepoints) = Codepoints::for_token(&token) else {
                let refusal = request::Refusal::new(
                    TunnelFailure::NotImplemented,
                    format!("upgrade token `{token}` is not served"),
                );
                return Err(form_refusal(&refusal, ctx));
            };
            return Ok(Target::Tcp(TcpTarget {
                target,
                framing: StreamFraming::Capsules(codepoints),
            }));
        }
        TunnelTarget::Classic(target) => {
            return Ok(Target::Tcp(TcpTarget {
                target,
                framing: StreamFraming::Raw,
            }));
        }
        TunnelTarget::Ip(scope) => return Ok(Target::Ip(scope)),
        TunnelTarget::UdpBind => "connect-udp-bind",
    };
    let refusal = request::Refusal::new(
        TunnelFailure::NotImplemented,
        format!("{unsupported} is not supported by this node yet"),
    );
    Err(form_refusal(&refusal, ctx))
}

/// The answer to a refusal of the classifier: its status, and its
/// Proxy-Status with the details (none where the node answers as an origin
/// server, PS-04: a request that is no tunnel request at all).
fn form_refusal(r: &request::Refusal, ctx: &ListenerContext) -> Answer {
    if let Some(f) = r.failure {
        ctx.metrics.refusals.count(f);
    }
    let status = http::StatusCode::from_u16(r.status).unwrap_or(http::StatusCode::BAD_REQUEST);
    let mut headers = http::HeaderMap::new();
    if let Some(ps) = r.proxy_status(&ctx.node_name)
        && let Ok(v) = http::HeaderValue::from_str(&ps.to_header_value())
    {
        headers.insert(headers::PROXY_STATUS, v);
    }
    (status, headers)
}

/// Answers a request that never becomes a session, within `deadline`: a
/// client that withholds credit for the answer gets the stream reset.
async fn reject(pending: PendingTunnel, answer: Answer, metrics: Arc<Metrics>, deadline: Duration) {
    Metrics::inc(&metrics.tunnels_refused);
    let (status, headers) = answer;
    if !pending.reject_within(status, headers, deadline).await {
        Metrics::inc(&metrics.writes_timed_out);
    }
}
