//! The shared maps the writer publishes into and the data plane reads directly.

use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crossbeam_skiplist::SkipMap;
use ractor::ActorRef;

use super::actor::IpRegistryMsg;
use super::entry::{IpEntry, IpEntryInfo, IpRange, IpVersion, Route};
use crate::table::is_alive;

/// One family's ranges, keyed by their first address. Ranges never overlap, so the range
/// holding an address, if any, is the one with the largest start at or below it.
pub(crate) type RangeMap = SkipMap<u128, Arc<Route>>;

/// The registry's shared state. Only the writer actor inserts or removes ranges; readers
/// never lock anything.
pub(crate) struct Table {
    v4: RangeMap,
    v6: RangeMap,
    /// True while a writer runs: lookups answer only then. Changed under `writer`'s lock.
    serving: AtomicBool,
    /// The current writer incarnation, if one has started.
    writer: Mutex<Option<ActorRef<IpRegistryMsg>>>,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            v4: SkipMap::new(),
            v6: SkipMap::new(),
            serving: AtomicBool::new(false),
            writer: Mutex::new(None),
        }
    }
}

/// The writer slot, locked. Only writes and starts/stops take it.
pub(crate) struct WriterSlot<'a> {
    guard: MutexGuard<'a, Option<ActorRef<IpRegistryMsg>>>,
    serving: &'a AtomicBool,
}

impl WriterSlot<'_> {
    /// The writer, if it has not begun stopping.
    pub(crate) fn live(&self) -> Option<&ActorRef<IpRegistryMsg>> {
        self.guard.as_ref().filter(|w| is_alive(w.get_status()))
    }

    /// The writer, stopping or not.
    pub(crate) fn current(&self) -> Option<&ActorRef<IpRegistryMsg>> {
        self.guard.as_ref()
    }

    /// Installs `writer` and opens lookups.
    pub(crate) fn install(&mut self, writer: ActorRef<IpRegistryMsg>) {
        *self.guard = Some(writer);
        self.serving.store(true, Ordering::Release);
    }

    /// Removes the writer and closes lookups.
    pub(crate) fn clear(&mut self) {
        *self.guard = None;
        self.serving.store(false, Ordering::Release);
    }
}

impl Table {
    pub(crate) fn map(&self, version: IpVersion) -> &RangeMap {
        match version {
            IpVersion::V4 => &self.v4,
            IpVersion::V6 => &self.v6,
        }
    }

    /// Both maps, IPv4 first.
    pub(crate) fn maps(&self) -> [&RangeMap; 2] {
        [&self.v4, &self.v6]
    }

    pub(crate) fn writer(&self) -> WriterSlot<'_> {
        WriterSlot {
            guard: self.writer.lock().unwrap_or_else(PoisonError::into_inner),
            serving: &self.serving,
        }
    }

    /// Whether lookups are answered (a writer runs).
    pub(crate) fn serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }

    /// The range holding `bits`: the largest start ≤ `bits`, if its end ≥ `bits`. No lock,
    /// no allocation; one `Arc` increment for the returned entry.
    pub(crate) fn lookup(&self, version: IpVersion, bits: u128) -> Option<IpEntry> {
        if !self.serving() {
            return None;
        }
        let found = self.map(version).upper_bound(Bound::Included(&bits))?;
        let route = found.value();
        (route.range.end_bits() >= bits).then(|| IpEntry(Arc::clone(route)))
    }

    /// A registered range sharing an address with `range`, if any. Registered ranges are
    /// disjoint, so only two can: the predecessor (largest start ≤ `range`'s start, if it
    /// reaches that start) and the successor (smallest start > it, if it starts within).
    pub(crate) fn overlapping(&self, range: &IpRange) -> Option<Arc<Route>> {
        let map = self.map(range.version());
        let start = range.start_bits();
        if let Some(before) = map.upper_bound(Bound::Included(&start))
            && before.value().range.end_bits() >= start
        {
            return Some(Arc::clone(before.value()));
        }
        map.lower_bound(Bound::Excluded(&start))
            .filter(|after| *after.key() <= range.end_bits())
            .map(|after| Arc::clone(after.value()))
    }

    /// Every range, IPv4 first, each family by start.
    pub(crate) fn snapshot(&self) -> Vec<IpEntryInfo> {
        let mut all = Vec::new();
        for map in self.maps() {
            all.extend(map.iter().map(|e| e.value().info()));
        }
        all
    }
}
