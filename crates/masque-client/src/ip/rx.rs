//! The receive side of an [`super::IpSession`]. In queue mode
//! [`super::IpSession::recv`] reads the tunnel itself (QUIC datagrams and
//! DATAGRAM capsules, as connect-udp's `recv` does: no task, no extra
//! queue); in active mode a pump task owns it and hands every packet to the
//! owner actor, and gives it back when the session returns to queue mode.

use std::time::Duration;

use bytes::Bytes;
use tokio::{
    task::JoinHandle,
    time::{Instant, sleep_until, timeout, timeout_at},
};

use super::{
    IpSender,
    events::{IpEvent, Mode, lock},
};
use crate::{
    ClientError,
    close::{CloseInfo, CloseReason},
    session::Incoming,
};

/// What a stopped pump gives back: the tunnel's receive side and a packet it
/// had taken but could not deliver (the mode changed under it).
type Returned = Option<(Incoming, Option<Bytes>)>;

#[derive(Debug)]
pub(super) enum Rx {
    /// Queue mode: `recv` reads the tunnel; `carried` comes first.
    Direct {
        incoming: Incoming,
        carried: Option<Bytes>,
    },
    /// A pump owns the receive side. It reads the mode for every packet:
    /// to the owner while active; back in queue mode it returns the receive
    /// side with that packet, which `recv` takes.
    Pumped(PumpTask),
    /// The tunnel ended and its last packet was handed out.
    Ended,
}

impl Rx {
    pub fn new(incoming: Incoming) -> Self {
        Self::Direct {
            incoming,
            carried: None,
        }
    }

    /// Active mode (the caller set the mode's owner): a pump delivers every
    /// packet to it, a carried one first.
    pub fn activate(&mut self, sender: &IpSender) {
        match std::mem::replace(self, Self::Ended) {
            Self::Direct { incoming, carried } => {
                if let Some(p) = carried {
                    deliver(sender, p);
                }
                *self = Self::Pumped(spawn(pump(incoming, sender.clone())));
            }
            // Still running: it reads the new mode with its next packet.
            Self::Pumped(task) if !task.0.is_finished() => *self = Self::Pumped(task),
            // It returned the receive side: pump again from there.
            Self::Pumped(task) => {
                *self = Self::Pumped(spawn(restart(task, sender.clone())));
            }
            Self::Ended => {
                deliver_event(sender, IpEvent::Closed(close_info(sender)));
            }
        }
    }

    /// The next packet in queue mode, waiting up to `limit`.
    pub async fn recv(&mut self, limit: Duration) -> Result<Bytes, ClientError> {
        let deadline = Instant::now() + limit;
        loop {
            match self {
                Self::Direct { incoming, carried } => {
                    if let Some(p) = carried.take() {
                        return Ok(p);
                    }
                    return match timeout_at(deadline, incoming.recv()).await {
                        Ok(Some(p)) => Ok(p),
                        Ok(None) => {
                            *self = Self::Ended;
                            Err(ClientError::Closed)
                        }
                        Err(_) => Err(ClientError::Timeout(limit)),
                    };
                }
                Self::Pumped(task) => {
                    // The pump returns once it meets queue mode (with the
                    // packet it took), the owner's end or the tunnel's.
                    let returned = tokio::select! {
                        r = &mut task.0 => r.ok().flatten(),
                        () = sleep_until(deadline) => return Err(ClientError::Timeout(limit)),
                    };
                    *self = match returned {
                        Some((incoming, carried)) => Self::Direct { incoming, carried },
                        None => Self::Ended,
                    };
                }
                Self::Ended => return Err(ClientError::Closed),
            }
        }
    }

    /// For `close`: waits up to `limit` for the tunnel's end, discarding
    /// packets in queue mode; an active pump delivers up to the end (with
    /// [`IpEvent::Closed`]) and is stopped after `limit`.
    pub async fn finish(&mut self, limit: Duration) {
        match self {
            Self::Direct { incoming, .. } => incoming.drain(limit).await,
            Self::Pumped(task) => {
                if timeout(limit, &mut task.0).await.is_err() {
                    task.0.abort();
                }
            }
            Self::Ended => {}
        }
        *self = Self::Ended;
    }
}

/// The pump's task, stopped when dropped (with the session).
#[derive(Debug)]
pub(super) struct PumpTask(JoinHandle<Returned>);

impl Drop for PumpTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn spawn(f: impl std::future::Future<Output = Returned> + Send + 'static) -> PumpTask {
    PumpTask(tokio::spawn(f))
}

fn close_info(sender: &IpSender) -> CloseInfo {
    let inner = &sender.inner;
    CloseInfo {
        reason: inner.close_reason().unwrap_or(CloseReason::Local),
        stats: inner.counters.snapshot(),
    }
}

/// An event for the mode's owner; false when there is none or it is gone.
fn deliver_event(sender: &IpSender, ev: IpEvent) -> bool {
    match &*lock(&sender.core.mode) {
        Mode::Active(owner) => owner.send_message(ev).is_ok(),
        Mode::Queue => false,
    }
}

fn deliver(sender: &IpSender, p: Bytes) -> bool {
    deliver_event(sender, IpEvent::Packet(p))
}

/// Waits for a pump that returned, then pumps again from where it stopped.
async fn restart(mut old: PumpTask, sender: IpSender) -> Returned {
    let (incoming, carried) = (&mut old.0).await.ok().flatten()?;
    if let Some(p) = carried {
        if !matches!(*lock(&sender.core.mode), Mode::Active(_)) {
            return Some((incoming, Some(p)));
        }
        deliver(&sender, p);
    }
    pump(incoming, sender).await
}

/// Delivers every packet to the mode's owner until the mode is queue again
/// (returns the receive side and that packet), the owner is gone (finishes
/// the tunnel, returns the receive side) or the tunnel ended
/// ([`IpEvent::Closed`] to the owner, returns nothing).
async fn pump(mut incoming: Incoming, sender: IpSender) -> Returned {
    loop {
        let Some(p) = incoming.recv().await else {
            deliver_event(&sender, IpEvent::Closed(close_info(&sender)));
            sender.core.notify();
            return None;
        };
        let mut mode = lock(&sender.core.mode);
        match &*mode {
            Mode::Active(owner) => {
                if owner.send_message(IpEvent::Packet(p)).is_err() {
                    // The owner stopped: nobody reads this tunnel any more.
                    tracing::debug!("connect-ip owner gone, finishing the tunnel");
                    *mode = Mode::Queue;
                    sender.inner.finish();
                    return Some((incoming, None));
                }
            }
            // Back to queue mode: the packet goes back with the tunnel.
            Mode::Queue => return Some((incoming, Some(p))),
        }
    }
}
