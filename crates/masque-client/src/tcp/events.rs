//! TCP tunnel events for actor users (an owner actor) and for library users
//! (a bounded channel), like [`crate::ClientEvent`] for connect-udp.

use bytes::Bytes;
use ractor::ActorRef;
use tokio::sync::mpsc;

use super::{TcpReadHalf, TcpStreamError, TcpTunnel, TcpWriteHalf};

/// What a TCP tunnel reports to its owner, in this order: any number of
/// `Data`, then `Fin` (the proxy's FINAL_DATA / FIN) unless the stream
/// failed, then `Closed`, the last event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpTunnelEvent {
    /// The next bytes of the stream, as they arrived (no copy).
    Data(Bytes),
    /// The proxy closed its side: no more data.
    Fin,
    /// The read side ended: `Ok` after a clean end of the stream, or why it
    /// failed (a reset or an end without FINAL_DATA is
    /// [`TcpStreamError::Reset`] / [`TcpStreamError::Abortive`]).
    Closed(Result<(), TcpStreamError>),
}

/// Where the events go.
enum Sink {
    Actor(ActorRef<TcpTunnelEvent>),
    Channel(mpsc::Sender<TcpTunnelEvent>),
}

impl Sink {
    /// False once nobody takes events any more.
    async fn deliver(&self, ev: TcpTunnelEvent) -> bool {
        match self {
            Sink::Actor(a) => a.send_message(ev).is_ok(),
            Sink::Channel(c) => c.send(ev).await.is_ok(),
        }
    }
}

/// Reads `read` to its end, handing every event to `sink`; stops early when
/// nobody takes them.
async fn pump(read: &mut TcpReadHalf, sink: &Sink) {
    let deliver = |ev| sink.deliver(ev);
    loop {
        match read.next_piece().await {
            Ok(Some(b)) => {
                if !deliver(TcpTunnelEvent::Data(b)).await {
                    return;
                }
            }
            Ok(None) => {
                if !deliver(TcpTunnelEvent::Fin).await {
                    return;
                }
                let end = read.end().await;
                deliver(TcpTunnelEvent::Closed(end)).await;
                return;
            }
            Err(e) => {
                deliver(TcpTunnelEvent::Closed(Err(e))).await;
                return;
            }
        }
    }
}

impl TcpTunnel {
    /// Delivers the tunnel's read side to `owner` from a spawned task (actor
    /// users): [`TcpTunnelEvent::Data`], [`TcpTunnelEvent::Fin`], then
    /// [`TcpTunnelEvent::Closed`]. Returns the write half. When the owner
    /// stops, the task stops reading (the write half decides about our side).
    ///
    /// ractor mailboxes are unbounded: an owner that cannot keep up should
    /// use [`into_events`](Self::into_events), whose channel holds the proxy
    /// back through the transport's flow control.
    pub fn forward_to(self, owner: ActorRef<TcpTunnelEvent>) -> TcpWriteHalf {
        let (mut read, write) = self.into_split();
        tokio::spawn(async move {
            let sink = Sink::Actor(owner.clone());
            tokio::select! {
                () = pump(&mut read, &sink) => {}
                _ = owner.wait(None) => {}
            }
        });
        write
    }

    /// Splits the tunnel into its write half and a channel of at most
    /// `capacity` events (at least 1); the task waits while the channel is
    /// full, so nothing grows without bound. Dropping the receiver stops
    /// reading.
    pub fn into_events(self, capacity: usize) -> (TcpWriteHalf, mpsc::Receiver<TcpTunnelEvent>) {
        let (mut read, write) = self.into_split();
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(async move {
            let sink = Sink::Channel(tx.clone());
            tokio::select! {
                () = pump(&mut read, &sink) => {}
                () = tx.closed() => {}
            }
        });
        (write, rx)
    }
}
