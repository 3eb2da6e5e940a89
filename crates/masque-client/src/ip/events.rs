//! What a connect-ip tunnel reports, and where it goes: to an owner actor
//! (active mode, every event) or, in queue mode, packets to
//! [`super::IpSession::recv`], which reads the tunnel's bounded queues
//! itself (address and route changes are then read with
//! [`super::IpSession::ip_info`] / [`super::IpSession::wait_for`]).

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use masque_proto::{
    capsule::Capsule,
    connect_ip::{Answer, AssignedAddress, ConnectIpError, IpAddressRange, RequestedAddress},
};
use ractor::ActorRef;
use tokio::sync::{mpsc, watch};

use super::state::{IpState, Received};
use crate::{CloseInfo, reader::CapsuleHook};

/// What a connect-ip tunnel reports to its owner actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpEvent {
    /// An IP packet from the peer (Context ID 0, R9484-43).
    Packet(Bytes),
    /// The peer's ADDRESS_ASSIGN: the addresses assigned to us now (refusals
    /// left out, R9484-26) and the answers to our requests it carried
    /// (R9484-33).
    AddressAssigned {
        assigned: Vec<AssignedAddress>,
        answers: Vec<Answer>,
    },
    /// The peer asks us for addresses (ADDRESS_REQUEST): answer with
    /// [`super::IpSession::assign_addresses`] using the same request ids.
    AddressRequested(Vec<RequestedAddress>),
    /// The peer's complete route list (ROUTE_ADVERTISEMENT, R9484-36).
    RoutesAdvertised(Vec<IpAddressRange>),
    /// The peer sent a malformed connect-ip capsule; the stream was aborted
    /// and [`IpEvent::Closed`] follows.
    Error(ConnectIpError),
    /// The tunnel ended; the last event.
    Closed(CloseInfo),
}

/// Where packets and events go.
#[derive(Debug, Clone, Default)]
pub(crate) enum Mode {
    /// Packets for `IpSession::recv`; other events only change the state.
    #[default]
    Queue,
    /// Everything to the owner actor.
    Active(ActorRef<IpEvent>),
}

/// What the session, its senders, the reader's capsule hook and the packet
/// pump share.
#[derive(Debug)]
pub(crate) struct Core {
    pub state: Mutex<IpState>,
    pub mode: Mutex<Mode>,
    /// Bumped on every change of the state and at the tunnel's end.
    pub changed: watch::Sender<u64>,
    /// The session's capsules, for the body writer (bounded).
    pub control: mpsc::Sender<Bytes>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Single calls under the lock; a poisoned lock holds consistent state.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Core {
    pub fn new(control: mpsc::Sender<Bytes>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(IpState::default()),
            mode: Mutex::new(Mode::Queue),
            changed: watch::channel(0).0,
            control,
        })
    }

    pub fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Hands a control event to the owner in active mode (queue mode keeps
    /// only the state). False when the owner is gone.
    pub fn emit(&self, ev: IpEvent) -> bool {
        match &*lock(&self.mode) {
            Mode::Active(owner) => owner.send_message(ev).is_ok(),
            Mode::Queue => true,
        }
    }

    /// The reader's hook: connect-ip capsules update the state and become
    /// events; a malformed one aborts the stream (the reader does that on
    /// `Err`). Other types are skipped (R9297-17).
    pub fn capsule_hook(self: &Arc<Self>) -> CapsuleHook {
        let core = Arc::clone(self);
        Box::new(move |c: Capsule| {
            let received = lock(&core.state).on_capsule(c.ty, &c.value);
            let ev = match received {
                Ok(Received::Other) => return Ok(()),
                Ok(Received::Assigned { assigned, answers }) => {
                    IpEvent::AddressAssigned { assigned, answers }
                }
                Ok(Received::Requested { requests, reply }) => {
                    if let Some(reply) = reply
                        && core.control.try_send(reply).is_err()
                    {
                        tracing::debug!("connect-ip: refusal of over-limit requests dropped");
                    }
                    IpEvent::AddressRequested(requests)
                }
                Ok(Received::Routes(r)) => IpEvent::RoutesAdvertised(r),
                Err(e) => {
                    core.emit(IpEvent::Error(e));
                    return Err(format!("malformed connect-ip capsule 0x{:x}: {e}", c.ty));
                }
            };
            core.notify();
            core.emit(ev);
            Ok(())
        })
    }
}
