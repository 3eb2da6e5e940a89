//! `TaskGroup`: the long-lived data-plane futures of one client connection
//! (e.g. every tunnel's target-socket reader), polled by one tokio task.
//!
//! Why: with one task per tunnel, every burst from every target wakes its own
//! task, and on a multi-threaded runtime most of those wake-ups cross threads.
//! In one group, sockets that become ready while the group's task is queued or
//! running are served in the same poll, so many tunnels on one connection cost
//! a few wake-ups, not one per tunnel and burst (measured in
//! `tests/benches/node_udp_echo.rs`; decisions §29). Each future still waits on
//! its own: one tunnel held up by backpressure does not hold up the others.
//!
//! A future's panic ends that future only (it is caught); aborting a member
//! ([`GroupMember::abort`], or dropping the member) ends it at its next poll.
//! The group's task ends once every [`TaskGroup`] handle is gone and its
//! members have finished.

use std::{
    collections::HashMap,
    future::{Future, poll_fn},
    hash::Hash,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, Weak},
    task::{Poll, Waker},
};

use futures_util::{
    FutureExt, StreamExt,
    future::{AbortHandle, Abortable},
    stream::FuturesUnordered,
};

type Member = Pin<Box<dyn Future<Output = ()> + Send>>;

#[derive(Default)]
struct Incoming {
    members: Vec<Member>,
    /// The group task's waker while it waits.
    waker: Option<Waker>,
    /// Every handle is gone: no member can join any more.
    closed: bool,
}

struct Shared {
    incoming: Mutex<Incoming>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Incoming> {
        // Each critical section is a push, a drain or a flag: a poisoned lock
        // leaves consistent state.
        self.incoming.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(mut incoming: MutexGuard<'_, Incoming>) {
        let waker = incoming.waker.take();
        drop(incoming);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A handle to one group; cloning shares it. Must be created in a tokio
/// runtime (it spawns the group's task).
#[derive(Clone)]
pub(crate) struct TaskGroup {
    handle: Arc<Handle>,
}

/// Closes the group when the last [`TaskGroup`] goes.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut incoming = self.shared.lock();
        incoming.closed = true;
        Shared::wake(incoming);
    }
}

/// One member of a group: aborts it when dropped.
#[derive(Debug)]
pub(crate) struct GroupMember {
    abort: AbortHandle,
}

impl GroupMember {
    pub(crate) fn abort(&self) {
        self.abort.abort();
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

impl TaskGroup {
    pub(crate) fn new() -> Self {
        let shared = Arc::new(Shared {
            incoming: Mutex::new(Incoming::default()),
        });
        tokio::spawn(drive(Arc::clone(&shared)));
        Self {
            handle: Arc::new(Handle { shared }),
        }
    }

    /// Adds `future` to the group; it runs until it completes or the returned
    /// member is aborted or dropped.
    pub(crate) fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) -> GroupMember {
        let (abort, registration) = AbortHandle::new_pair();
        let member = Abortable::new(AssertUnwindSafe(future).catch_unwind(), registration);
        let mut incoming = self.handle.shared.lock();
        incoming.members.push(Box::pin(member.map(drop)));
        Shared::wake(incoming);
        GroupMember { abort }
    }
}

/// The group's task: takes new members, polls the woken ones.
async fn drive(shared: Arc<Shared>) {
    let mut members: FuturesUnordered<Member> = FuturesUnordered::new();
    poll_fn(|cx| {
        let closed = {
            let mut incoming = shared.lock();
            members.extend(incoming.members.drain(..));
            match &mut incoming.waker {
                Some(w) => w.clone_from(cx.waker()),
                None => incoming.waker = Some(cx.waker().clone()),
            }
            incoming.closed
        };
        // FuturesUnordered polls only the members whose wakers fired, and
        // yields on its own after one round over them.
        loop {
            match members.poll_next_unpin(cx) {
                Poll::Ready(Some(())) => {}
                Poll::Ready(None) if closed => return Poll::Ready(()),
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await;
}

/// Groups by key (e.g. the client connection's address), created on first
/// use and forgotten once their last handle is gone.
pub(crate) struct TaskGroups<K> {
    groups: Mutex<HashMap<K, Weak<Handle>>>,
}

impl<K: Hash + Eq + Clone> TaskGroups<K> {
    pub(crate) fn new() -> Self {
        Self {
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// The live group for `key`, or a new one.
    pub(crate) fn get(&self, key: &K) -> TaskGroup {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = groups.get(key).and_then(Weak::upgrade) {
            return TaskGroup { handle };
        }
        // Forget groups that ended, so the map follows the live connections.
        groups.retain(|_, g| g.strong_count() > 0);
        let group = TaskGroup::new();
        groups.insert(key.clone(), Arc::downgrade(&group.handle));
        group
    }

    #[cfg(test)]
    fn live(&self) -> usize {
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.values().filter(|g| g.strong_count() > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    use super::*;

    /// Every member runs; a panicking member ends alone; an aborted one stops;
    /// the group's task ends after its last handle.
    #[tokio::test]
    async fn members_run_alone_and_the_group_ends_with_its_handles() {
        let group = TaskGroup::new();
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let d = Arc::clone(&done);
        let waiting = group.spawn(async move {
            let _ = rx.await;
            d.fetch_add(1, Ordering::SeqCst);
        });
        let _panicking = group.spawn(async { panic!("member panic") });
        let forever = group.spawn(std::future::pending());
        let d = Arc::clone(&done);
        let _quick = group.spawn(async move {
            d.fetch_add(1, Ordering::SeqCst);
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(done.load(Ordering::SeqCst), 1, "the quick member ran");
        tx.send(()).expect("member waits");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            done.load(Ordering::SeqCst),
            2,
            "the panic ended no one else"
        );
        drop(waiting);
        let alive = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        forever.abort();
        drop(forever);
        drop(group);
        for _ in 0..100 {
            if tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
                < alive
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the group's task outlived its handles and members");
    }

    /// One group per key while it has handles; a new one after.
    #[tokio::test]
    async fn groups_are_shared_by_key_and_forgotten() {
        let groups = TaskGroups::new();
        let a = groups.get(&1);
        let a2 = groups.get(&1);
        assert!(Arc::ptr_eq(&a.handle, &a2.handle));
        let b = groups.get(&2);
        assert!(!Arc::ptr_eq(&a.handle, &b.handle));
        assert_eq!(groups.live(), 2);
        drop((a, a2));
        assert_eq!(groups.live(), 1);
        let a3 = groups.get(&1);
        assert_eq!(groups.live(), 2);
        drop((a3, b));
        assert_eq!(groups.live(), 0);
    }
}
