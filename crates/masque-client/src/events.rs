//! Event delivery for library users (a bounded channel) and for actor users (a
//! task that forwards to an owner actor).

use bytes::Bytes;
use ractor::ActorRef;
use tokio::sync::mpsc;

use crate::{
    UdpSender, UdpSession,
    close::{CloseInfo, CloseReason},
};

/// What a tunnel reports to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A UDP payload from the target (Context ID 0).
    Datagram(Bytes),
    /// The tunnel ended; the last event.
    Closed(CloseInfo),
}

impl UdpSession {
    fn final_event(&self) -> ClientEvent {
        ClientEvent::Closed(self.close_info().unwrap_or(CloseInfo {
            reason: CloseReason::Local,
            stats: self.stats(),
        }))
    }

    /// Splits the tunnel into a sender and a bounded event channel (capacity
    /// `options.event_capacity`). A task moves payloads into the channel and
    /// waits when it is full, so the HTTP/3 per-stream queue fills and drops
    /// (counted in `Connection::stats`) instead of memory growing. Ends with
    /// [`ClientEvent::Closed`]; dropping the receiver stops the task and reading.
    pub fn into_events(mut self) -> (UdpSender, mpsc::Receiver<ClientEvent>) {
        let (tx, rx) = mpsc::channel(self.event_capacity);
        let sender = self.sender.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    p = self.recv() => match p {
                        Some(p) => {
                            if tx.send(ClientEvent::Datagram(p)).await.is_err() {
                                return;
                            }
                        }
                        None => {
                            let _ = tx.send(self.final_event()).await;
                            return;
                        }
                    },
                    () = tx.closed() => return,
                }
            }
        });
        (sender, rx)
    }

    /// Delivers this tunnel's events to `owner` from a spawned task (actor
    /// users): every payload as [`ClientEvent::Datagram`], then
    /// [`ClientEvent::Closed`]. The task ends when the tunnel ends or the owner
    /// stops; in the latter case the tunnel is finished (FIN).
    ///
    /// ractor mailboxes are unbounded: an owner that cannot keep up should use
    /// [`into_events`](Self::into_events), which applies backpressure.
    pub fn forward_to(mut self, owner: ActorRef<ClientEvent>) -> UdpSender {
        let sender = self.sender.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    p = self.recv() => {
                        let last = p.is_none();
                        let ev = p.map_or_else(|| self.final_event(), ClientEvent::Datagram);
                        if owner.send_message(ev).is_err() {
                            break;
                        }
                        if last {
                            return;
                        }
                    }
                    _ = owner.wait(None) => break,
                }
            }
            // The owner is gone: nobody reads this tunnel any more.
            self.close().await;
        });
        sender
    }
}
