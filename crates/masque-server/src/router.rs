//! `ConnectionRouter`: one actor per accepted HTTP/3 connection (Erlang:
//! masque_server_connection). It owns the connection, takes its requests,
//! parses and polices them, and spawns one linked session per tunnel. Datagrams
//! never pass through it: masque-h3 demuxes them straight to each session's
//! queue. When it stops, every session of its connection stops.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use masque_h3::{Connection, RequestHead, RequestStream};
use masque_proto::{
    headers::{
        self,
        auth::{PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, bearer_challenge},
    },
    proxy_status::TunnelFailure,
    template::{MatchError, UdpTarget},
};
use masque_transport::{PendingTunnel, TunnelRequest};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::task::JoinHandle;

use crate::{
    auth::AuthFailure,
    context::ListenerContext,
    handler::{Refusal, Target},
    metrics::Metrics,
    session::{SessionMsg, UdpSession, udp::UdpSessionArgs},
    task_group::TaskGroup,
};

pub enum RouterMsg {
    Request(Box<(RequestHead, RequestStream)>),
    /// Policy passed: start the session (internal).
    Accepted(Box<(PendingTunnel, Target)>),
    /// Policy refused or the request failed before a session (internal).
    Released,
    ConnectionClosed,
    /// Graceful shutdown: GOAWAY, let tunnels end within `timeout`, then close.
    Drain(Duration),
    DrainDeadline,
}

pub struct ConnectionRouter;

pub struct RouterArgs {
    pub(crate) conn: Connection,
    pub(crate) ctx: Arc<ListenerContext>,
}

pub struct RouterState {
    conn: Connection,
    ctx: Arc<ListenerContext>,
    peer: SocketAddr,
    /// Tunnels counted against the limit: in policy check or running.
    tunnels: usize,
    draining: bool,
    accept_task: JoinHandle<()>,
    /// Where the handlers' data-plane tasks of this connection run, e.g. every
    /// tunnel's target reader (`TunnelOutput::spawn`, decisions §29).
    group: TaskGroup,
}

impl Drop for RouterState {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.conn.close(masque_h3::Code::NO_ERROR, b"");
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
        let conn = args.conn.clone();
        let accept_task = tokio::spawn(async move {
            while let Some(req) = conn.accept().await {
                if myself.cast(RouterMsg::Request(Box::new(req))).is_err() {
                    return;
                }
            }
            let _ = myself.cast(RouterMsg::ConnectionClosed);
        });
        Ok(RouterState {
            peer: args.conn.quic().remote_address(),
            conn: args.conn,
            ctx: args.ctx,
            tunnels: 0,
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
            RouterMsg::Request(req) => on_request(&myself, state, *req),
            RouterMsg::Accepted(acc) => {
                let (pending, target) = *acc;
                let args = UdpSessionArgs {
                    pending,
                    target,
                    handler: Arc::clone(&state.ctx.handler),
                    config: Arc::clone(&state.ctx.session),
                    metrics: Arc::clone(&state.ctx.metrics),
                    node_name: Arc::clone(&state.ctx.node_name),
                    group: state.group.clone(),
                };
                if let Err(e) = Actor::spawn_linked(None, UdpSession, args, myself.get_cell()).await
                {
                    tracing::warn!(error = %e, "session failed to start");
                    state.tunnels = state.tunnels.saturating_sub(1);
                }
            }
            RouterMsg::Released => release(&myself, state),
            RouterMsg::ConnectionClosed => {
                stop_sessions(&myself).await;
                myself.stop(Some("connection closed".into()));
            }
            RouterMsg::Drain(timeout) => {
                state.draining = true;
                let _ = state.conn.goaway().await;
                if state.tunnels == 0 {
                    myself.stop(Some("drained".into()));
                } else {
                    myself.send_after(timeout, || RouterMsg::DrainDeadline);
                }
            }
            RouterMsg::DrainDeadline => {
                stop_sessions(&myself).await;
                myself.stop(Some("drain deadline".into()));
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

fn release(myself: &ActorRef<RouterMsg>, state: &mut RouterState) {
    state.tunnels = state.tunnels.saturating_sub(1);
    if state.draining && state.tunnels == 0 {
        myself.stop(Some("drained".into()));
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

/// The request pipeline up to the session: credentials, limit, parse, policy.
fn on_request(
    myself: &ActorRef<RouterMsg>,
    state: &mut RouterState,
    req: (RequestHead, RequestStream),
) {
    let (head, stream) = req;
    let ctx = &state.ctx;
    Metrics::inc(&ctx.metrics.tunnel_requests);
    let mut pending = PendingTunnel::from_h3(&head, stream, state.peer);
    if let Err(failure) = ctx.config.auth.check(&pending.request.headers) {
        Metrics::inc(&ctx.metrics.tunnels_refused_auth);
        tokio::spawn(reject(
            pending,
            auth_required(failure, ctx),
            Arc::clone(&ctx.metrics),
        ));
        return;
    }
    // Consumed here: handlers never see the credentials.
    pending.request.headers.remove(PROXY_AUTHORIZATION);
    if state.tunnels >= ctx.config.max_tunnels_per_connection {
        Metrics::inc(&ctx.metrics.tunnels_refused_limit);
        let answer =
            Refusal::new(TunnelFailure::ConnectionLimitReached).http_response(&ctx.node_name);
        tokio::spawn(reject(pending, answer, Arc::clone(&ctx.metrics)));
        return;
    }
    let target = match parse_target(&pending.request, ctx) {
        Ok(t) => t,
        Err(answer) => {
            tokio::spawn(reject(pending, answer, Arc::clone(&ctx.metrics)));
            return;
        }
    };
    state.tunnels += 1;
    let me = myself.clone();
    let ctx = Arc::clone(ctx);
    tokio::spawn(async move {
        match ctx.handler.accept(&pending.request, &target).await {
            Ok(()) => {
                if let Err(e) = me.cast(RouterMsg::Accepted(Box::new((pending, target)))) {
                    // The router is gone: the connection is closing.
                    tracing::debug!(error = %e, "router stopped before the session started");
                }
            }
            Err(refusal) => {
                let answer = refusal.http_response(&ctx.node_name);
                reject(pending, answer, Arc::clone(&ctx.metrics)).await;
                let _ = me.cast(RouterMsg::Released);
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
    let (status, mut headers) = Refusal::new(TunnelFailure::ProxyAuthenticationRequired)
        .with_details(details)
        .http_response(&ctx.node_name);
    if let Ok(v) = http::HeaderValue::from_str(&bearer_challenge(&ctx.node_name)) {
        headers.insert(PROXY_AUTHENTICATE, v);
    }
    (status, headers)
}

/// What the request asks for; errors carry the answer to send.
fn parse_target(req: &TunnelRequest, ctx: &ListenerContext) -> Result<Target, Answer> {
    let bare = |status| (status, http::HeaderMap::new());
    // The status is ours; the Proxy-Status says why (RFC 9209 §2.3.16).
    let explained = |status, details: String| {
        let refusal = Refusal::new(TunnelFailure::MalformedRequest).with_details(details);
        (status, refusal.http_response(&ctx.node_name).1)
    };
    if req.method != http::Method::CONNECT {
        return Err(bare(http::StatusCode::METHOD_NOT_ALLOWED));
    }
    if req.protocol.as_deref() != Some("connect-udp") {
        // XC-10: an upgrade token we do not serve (yet): 501.
        return Err(bare(http::StatusCode::NOT_IMPLEMENTED));
    }
    let path = req.path.as_deref().unwrap_or_default();
    let target = ctx.udp_template.match_path(path).map_err(|e| match e {
        MatchError::NoMatch => bare(http::StatusCode::NOT_FOUND),
        // R9298-25: malformed template variables -> 400.
        _ => explained(http::StatusCode::BAD_REQUEST, e.to_string()),
    })?;
    if matches!(target, UdpTarget::Wildcard) {
        let lines = req.headers.get_all(headers::CONNECT_UDP_BIND).iter();
        return Err(if headers::connect_udp_bind(lines.map(|v| v.as_bytes())) {
            explained(
                http::StatusCode::NOT_IMPLEMENTED,
                "connect-udp-bind is not supported by this node".into(),
            )
        } else {
            // BIND-01/-03: a wildcard target only makes sense with the bind header.
            explained(
                http::StatusCode::BAD_REQUEST,
                "wildcard target without connect-udp-bind".into(),
            )
        });
    }
    Ok(Target::Udp(target))
}

/// Answers a request that never becomes a session.
async fn reject(pending: PendingTunnel, answer: Answer, metrics: Arc<Metrics>) {
    Metrics::inc(&metrics.tunnels_refused);
    let (status, headers) = answer;
    pending.reject(status, headers).await;
}
