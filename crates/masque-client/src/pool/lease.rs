//! [`Lease`]: one slot on a pooled connection, held by a session.

use std::sync::Arc;

use masque_transport::ClientConnection;
use ractor::ActorRef;

use super::owner::{OwnerHandle, OwnerMsg, Shared, SlotId};

/// A slot on a connection: a pooled HTTP/3 or HTTP/2 connection shared with
/// other tunnels, or a connection of its own (HTTP/1.1, which is never
/// pooled, and [`crate::ProxyClient::connect`]'s dedicated connection).
///
/// Open one tunnel on [`connection`](Self::connection) and keep the lease
/// as long as the tunnel: [`release`](Self::release) (idempotent) or drop
/// gives the slot back. Sessions opened by
/// [`crate::ProxyClient::connect_udp`] and its siblings hold theirs.
#[derive(Debug)]
pub struct Lease {
    conn: ClientConnection,
    slot: Option<Slot>,
}

#[derive(Debug)]
struct Slot {
    id: SlotId,
    shared: Arc<Shared>,
    owner: ActorRef<OwnerMsg>,
}

impl Lease {
    pub(crate) fn pooled(owner: &OwnerHandle, id: SlotId) -> Self {
        Self {
            conn: owner.shared.conn.clone(),
            slot: Some(Slot {
                id,
                shared: Arc::clone(&owner.shared),
                owner: owner.actor.clone(),
            }),
        }
    }

    /// A connection nobody else shares (nothing to give back).
    pub(crate) fn unpooled(conn: ClientConnection) -> Self {
        Self { conn, slot: None }
    }

    /// The connection to open the tunnel on.
    pub fn connection(&self) -> &ClientConnection {
        &self.conn
    }

    /// Whether the slot is on a pooled connection and not yet given back.
    pub fn is_pooled(&self) -> bool {
        self.slot.is_some()
    }

    /// The owner of the pooled connection, while the slot is held.
    pub fn owner(&self) -> Option<OwnerHandle> {
        self.slot.as_ref().map(|s| OwnerHandle {
            actor: s.owner.clone(),
            shared: Arc::clone(&s.shared),
        })
    }

    /// Gives the slot back; again is a no-op.
    pub fn release(&mut self) {
        if let Some(s) = self.slot.take()
            && s.shared.release(s.id)
        {
            let _ = s.owner.cast(OwnerMsg::Released { slot: s.id });
        }
    }

    /// The proxy refused the tunnel for its per-connection limit: the owner
    /// learns the limit; the slot goes back.
    pub(crate) fn limit_reached(&mut self) {
        if let Some(s) = &self.slot {
            s.shared.limit_reached(s.id);
        }
        self.release();
    }

    /// The connection refuses new tunnels (GOAWAY): no more slots on it.
    pub(crate) fn going_away(&mut self) {
        if let Some(s) = &self.slot {
            s.shared.set_closing();
        }
        self.release();
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.release();
    }
}
