//! Tunnel slots: how many tunnels a connection holds against its limit. A
//! slot is taken when a request passes the router's checks and freed when
//! its [`TunnelSlot`] drops: on a refusal, or when the session's relay ends,
//! before the stream is closed. So a client that saw its tunnel end can open
//! the next one at once, without a spurious 503 (the router learns of the
//! session actor's end only later). Each freed slot also tells its owner
//! (the router re-checks whether it is done), however the slot went away: a
//! refusal, the end of a relay, or a session task aborted with its actor.

use crate::admission::TunnelPermit;
use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

/// Called after a slot was freed.
type OnFree = Arc<dyn Fn() + Send + Sync>;

/// The slots of one connection.
pub(crate) struct Slots {
    count: Arc<AtomicUsize>,
    on_free: OnFree,
}

impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Slots({})", self.in_use())
    }
}

impl Slots {
    pub(crate) fn new(on_free: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            count: Arc::new(AtomicUsize::new(0)),
            on_free: Arc::new(on_free),
        }
    }

    pub(crate) fn in_use(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// A slot, holding the tunnel's place under the node-wide cap too.
    pub(crate) fn take(&self, node: TunnelPermit) -> TunnelSlot {
        self.count.fetch_add(1, Ordering::AcqRel);
        TunnelSlot {
            count: Arc::clone(&self.count),
            on_free: Arc::clone(&self.on_free),
            _node: Some(node),
        }
    }
}

/// One slot in use; dropping it frees it.
pub(crate) struct TunnelSlot {
    count: Arc<AtomicUsize>,
    on_free: OnFree,
    /// The node-wide place, freed with the slot.
    _node: Option<TunnelPermit>,
}

impl std::fmt::Debug for TunnelSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TunnelSlot")
    }
}

impl Drop for TunnelSlot {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        (self.on_free)();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_freed_by_drop_and_told() {
        let freed = Arc::new(AtomicUsize::new(0));
        let f = Arc::clone(&freed);
        let s = Slots::new(move || {
            f.fetch_add(1, Ordering::Relaxed);
        });
        let node = crate::admission::Admission::new(
            Default::default(),
            Arc::new(crate::metrics::Metrics::default()),
        );
        let a = s.take(node.tunnel().unwrap());
        let b = s.take(node.tunnel().unwrap());
        assert_eq!(s.in_use(), 2);
        drop(a);
        assert_eq!((s.in_use(), freed.load(Ordering::Relaxed)), (1, 1));
        drop(b);
        assert_eq!((s.in_use(), freed.load(Ordering::Relaxed)), (0, 2));
    }
}
