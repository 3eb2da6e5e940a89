//! Listeners: [`H3Listener`](h3::H3Listener) (QUIC, Erlang: masque_server) and
//! [`TlsListener`](tls::TlsListener) (TLS over TCP serving HTTP/2 and HTTP/1.1 by ALPN, Erlang:
//! masque_h2_server / masque_h1_server). Neither binds: `Node::start` binds
//! each socket once and every incarnation of a listener uses a clone, so a
//! restart never loses its port. Both run handshakes off the actor, hand
//! established connections to themselves as [`ListenerMsg::Established`],
//! and spawn one linked, temporary ConnectionRouter per connection; both
//! drain the same way ([`Routers`]).

mod h3;
mod tls;

use crate::admission::ConnectionPermit;
use std::{collections::HashMap, sync::Arc, time::Duration};

use masque_transport::ServerConnection;
use ractor::{Actor, ActorId, ActorRef, SupervisionEvent};

pub(crate) use self::{h3::h3_listener, tls::tls_listener};
use crate::{
    context::ListenerContext,
    router::{ConnectionRouter, RouterArgs, RouterMsg},
    supervisor::report_drained,
};

/// The messages of either listener kind.
pub enum ListenerMsg {
    /// A connection that completed its handshakes: spawn its router, which
    /// holds the connection's admission permit.
    Established(ServerConnection, ConnectionPermit),
    /// Stop accepting; pass Drain to every router; report `Drained` to the
    /// supervisor once the last router has stopped.
    Drain(Duration),
}

/// The drain function of a listener's child spec.
pub(crate) fn drain_listener(cell: &ractor::ActorCell, timeout: Duration) -> bool {
    cell.send_message(ListenerMsg::Drain(timeout)).is_ok()
}

/// The ConnectionRouters of one listener, and its drain progress.
pub(crate) struct Routers {
    ctx: Arc<ListenerContext>,
    live: HashMap<ActorId, ActorRef<RouterMsg>>,
    draining: bool,
    reported: bool,
}

impl Routers {
    pub(crate) fn new(ctx: Arc<ListenerContext>) -> Self {
        Self {
            ctx,
            live: HashMap::new(),
            draining: false,
            reported: false,
        }
    }

    /// Spawns the router of `conn`, linked to the listener; a connection that
    /// completes after Drain is closed instead.
    pub(crate) async fn spawn(
        &mut self,
        myself: &ActorRef<ListenerMsg>,
        conn: ServerConnection,
        permit: ConnectionPermit,
    ) {
        if self.draining {
            tracing::debug!(peer = %conn.peer(), "connection established while draining; closed");
            conn.close();
            return;
        }
        let args = RouterArgs {
            conn,
            permit,
            ctx: Arc::clone(&self.ctx),
        };
        match Actor::spawn_linked(None, ConnectionRouter, args, myself.get_cell()).await {
            Ok((router, _)) => {
                self.live.insert(router.get_id(), router);
            }
            Err(e) => tracing::warn!(error = %e, "ConnectionRouter failed to start"),
        }
    }

    /// Drain begins: every router gets `Drain(timeout)`.
    pub(crate) fn drain(&mut self, myself: &ActorRef<ListenerMsg>, timeout: Duration) {
        if self.draining {
            return;
        }
        self.draining = true;
        for router in self.live.values() {
            let _ = router.cast(RouterMsg::Drain(timeout));
        }
        self.check(myself);
    }

    /// A child event. Routers are temporary: one ending (its connection
    /// closed) is normal, never restarted.
    pub(crate) fn child_event(&mut self, myself: &ActorRef<ListenerMsg>, evt: SupervisionEvent) {
        let who = match &evt {
            SupervisionEvent::ActorTerminated(who, _, _) => who,
            SupervisionEvent::ActorFailed(who, e) => {
                tracing::warn!(actor = %who.get_id(), error = %e, "ConnectionRouter failed");
                who
            }
            _ => return,
        };
        self.live.remove(&who.get_id());
        self.check(myself);
    }

    /// Reports `Drained` once, when draining and no router is left.
    fn check(&mut self, myself: &ActorRef<ListenerMsg>) {
        if self.draining && !self.reported && self.live.is_empty() {
            self.reported = true;
            tracing::debug!(listener = %myself.get_id(), "listener drained");
            report_drained(&myself.get_cell());
        }
    }
}
