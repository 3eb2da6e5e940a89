//! The shared read-mostly table the writer publishes into and readers query directly.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ractor::{ActorCell, ActorRef, ActorStatus};

use crate::actor::ListenerRegistryMsg;
use crate::info::ListenerInfo;

/// One published entry. The owner's cell is kept (not only its id) so that a respawned
/// writer can re-monitor owners that are still alive.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) info: ListenerInfo,
    pub(crate) owner: ActorCell,
}

/// Contents of the table. Only the writer actor mutates `entries`.
#[derive(Default)]
pub(crate) struct TableInner {
    /// The current writer incarnation, if one has started.
    pub(crate) writer: Option<ActorRef<ListenerRegistryMsg>>,
    pub(crate) entries: HashMap<String, Entry>,
}

impl TableInner {
    /// The writer, if it has not begun stopping.
    pub(crate) fn live_writer(&self) -> Option<&ActorRef<ListenerRegistryMsg>> {
        self.writer.as_ref().filter(|w| is_alive(w.get_status()))
    }
}

/// Lock wrapper; a poisoned lock is still usable (every mutation is a single map operation).
#[derive(Default)]
pub(crate) struct Table {
    inner: RwLock<TableInner>,
}

impl Table {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, TableInner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, TableInner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An actor that has not begun stopping. ractor sets `Stopping` before notifying monitors,
/// so "monitor, then check this" cannot miss a death.
pub(crate) fn is_alive(status: ActorStatus) -> bool {
    status < ActorStatus::Stopping
}
