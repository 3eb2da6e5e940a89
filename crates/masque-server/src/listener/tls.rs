//! `TlsListener`: HTTP/2 and HTTP/1.1 over TLS on one TCP port (Erlang:
//! masque_h2_server and masque_h1_server; here one listener, the protocol
//! chosen by ALPN). It accepts on a clone of the node's listening socket
//! (bound once by `Node::start`), registers its real address in the
//! ListenerRegistry, and runs each connection's handshakes off the actor:
//! TLS within `tls_handshake_timeout`, then by ALPN `h2` -> the HTTP/2
//! handshake (`h2.handshake_timeout`), `http/1.1` or no ALPN -> HTTP/1.1.
//! The established connection gets a linked ConnectionRouter, as on HTTP/3.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use masque_registry::ListenerProtocol;
use masque_transport::{ServerConnection, tls::ALPN_H2};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::{
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};
use tokio_rustls::TlsAcceptor;

use super::{ListenerMsg, Routers, drain_listener};
use crate::admission::{ConnectionPermit, HandshakePermit};
use crate::{
    context::ListenerContext,
    supervisor::{ChildSpec, Restart},
};

/// Pause after a failed `accept` (out of file descriptors, say), so the
/// loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

pub struct TlsListener;

pub struct TlsListenerArgs {
    pub(crate) ctx: Arc<ListenerContext>,
    /// rustls with ALPN `h2`, `http/1.1`.
    pub(crate) acceptor: TlsAcceptor,
    /// The node's listening socket (bound once by `Node::start`); each
    /// incarnation accepts on a clone of it.
    pub(crate) socket: Arc<std::net::TcpListener>,
}

pub struct TlsListenerState {
    socket: Arc<std::net::TcpListener>,
    /// Accepts and owns the handshakes in flight (aborting it ends them and
    /// closes this incarnation's clone of the socket).
    accept_task: JoinHandle<()>,
    routers: Routers,
}

impl Drop for TlsListenerState {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// The child spec of the TLS listener: permanent; each incarnation gets a
/// clone of `socket`.
pub(crate) fn tls_listener(
    ctx: Arc<ListenerContext>,
    acceptor: TlsAcceptor,
    socket: Arc<std::net::TcpListener>,
) -> ChildSpec {
    ChildSpec::new("tls-listener", Restart::Permanent, move |sup| {
        let args = TlsListenerArgs {
            ctx: Arc::clone(&ctx),
            acceptor: acceptor.clone(),
            socket: Arc::clone(&socket),
        };
        async move {
            let (listener, _) = Actor::spawn_linked(None, TlsListener, args, sup).await?;
            Ok(Some(listener.get_cell()))
        }
    })
    .draining(drain_listener)
}

impl Actor for TlsListener {
    type Msg = ListenerMsg;
    type State = TlsListenerState;
    type Arguments = TlsListenerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ListenerMsg>,
        args: TlsListenerArgs,
    ) -> Result<TlsListenerState, ActorProcessingErr> {
        let socket = args.socket.try_clone()?;
        socket.set_nonblocking(true)?;
        let listener = TcpListener::from_std(socket)?;
        let addr = listener.local_addr()?;
        let name = args.ctx.config.tls_name();
        let outcome =
            masque_registry::register(name.clone(), addr, ListenerProtocol::Tls, myself.get_cell())
                .await;
        tracing::info!(%addr, %name, registered = outcome.is_registered(), "TLS listener (HTTP/2, HTTP/1.1) up");
        let accept_task = tokio::spawn(accept(
            listener,
            args.acceptor,
            Arc::clone(&args.ctx),
            myself,
        ));
        Ok(TlsListenerState {
            socket: args.socket,
            accept_task,
            routers: Routers::new(args.ctx),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ListenerMsg>,
        msg: ListenerMsg,
        state: &mut TlsListenerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ListenerMsg::Established(conn, permit) => {
                state.routers.spawn(&myself, conn, permit).await
            }
            ListenerMsg::Drain(timeout) => {
                state.accept_task.abort();
                // Draining is the node's last act: refuse new connections at
                // once (and reset those waiting in the backlog) rather than
                // leave them unanswered until the node stops. On Linux this
                // stops the socket listening; no incarnation accepts again.
                if let Err(e) =
                    socket2::SockRef::from(&*state.socket).shutdown(std::net::Shutdown::Read)
                {
                    tracing::debug!(error = %e, "shutting down the TCP listening socket");
                }
                state.routers.drain(&myself, timeout);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<ListenerMsg>,
        evt: SupervisionEvent,
        state: &mut TlsListenerState,
    ) -> Result<(), ActorProcessingErr> {
        // (The default implementation would stop the listener.)
        state.routers.child_event(&myself, evt);
        Ok(())
    }
}

/// Accepts TCP connections; each one's handshakes run on a task of their own
/// (one slow client cannot stall accepting), all ending with this task.
async fn accept(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ctx: Arc<ListenerContext>,
    me: ActorRef<ListenerMsg>,
) {
    let admission = Arc::clone(&ctx.admission);
    let mut handshakes = JoinSet::new();
    loop {
        // At the node's connection or handshake cap, stop accepting until a
        // place frees (new connections wait in the kernel's backlog).
        let room = async {
            loop {
                let freed = admission.freed();
                if admission.has_room() {
                    return;
                }
                freed.await;
            }
        };
        tokio::select! {
            accepted = async { room.await; listener.accept().await } => match accepted {
                Ok((tcp, peer)) => {
                    // Over the per-address cap (or a race past the total
                    // one): closed at once.
                    let Ok(permit) = admission.connection(peer.ip()) else {
                        continue;
                    };
                    let Some(hs) = admission.handshake() else {
                        continue;
                    };
                    handshakes.spawn(handshake(
                        tcp,
                        peer,
                        acceptor.clone(),
                        Arc::clone(&ctx),
                        me.clone(),
                        (permit, hs),
                    ));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "TCP accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
        }
    }
}

/// TLS, then HTTP/2 or HTTP/1.1 by ALPN; the connection goes to the listener.
async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    ctx: Arc<ListenerContext>,
    listener: ActorRef<ListenerMsg>,
    (permit, hs): (ConnectionPermit, HandshakePermit),
) {
    let config = &ctx.config;
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(config.tls_handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, timeout = ?config.tls_handshake_timeout, "TLS handshake timed out");
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(ALPN_H2);
    let conn = if h2 {
        match ServerConnection::h2(tls, peer, &config.h2, config.tunnel_limits).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "HTTP/2 handshake failed");
                return;
            }
        }
    } else {
        // ALPN `http/1.1`, or none: a client that offers no ALPN speaks
        // HTTP/1.1 (rustls refuses an offer without a protocol in common).
        let watch = peer_watch(tls.get_ref().0);
        ServerConnection::h1(tls, peer, &config.h1, config.tunnel_limits, watch)
    };
    drop(hs);
    tracing::debug!(%peer, transport = %conn.transport(), "TLS connection established");
    if listener
        .cast(ListenerMsg::Established(conn, permit))
        .is_err()
    {
        tracing::debug!(%peer, "listener gone before the connection was handed over");
    }
}

/// A second handle on the connection's socket (a dup of its descriptor), so
/// that a request being set up sees the client's reset while hyper does not
/// read. `None` (no watch, the request is bounded by `init_timeout`) if the
/// descriptor cannot be duplicated.
fn peer_watch(tcp: &TcpStream) -> Option<TcpStream> {
    use std::os::fd::AsFd;
    let fd = tcp.as_fd().try_clone_to_owned().ok()?;
    // The duplicate shares the original's O_NONBLOCK (one open file).
    TcpStream::from_std(std::net::TcpStream::from(fd)).ok()
}
