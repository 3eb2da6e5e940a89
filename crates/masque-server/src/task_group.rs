//! `TaskGroup`: the long-lived data-plane futures of one client connection
//! (every tunnel's target reader, through `TunnelOutput::spawn`), polled by
//! one tokio task. The connection's `ConnectionRouter` owns the group.
//!
//! Why: with one reader task per tunnel, every burst from every target wakes
//! a task of its own, and on a multi-threaded runtime most of those wake-ups
//! cross threads. In one group, futures woken while the group's task is queued or
//! running are served in the same poll, so many tunnels on one connection cost
//! a few wake-ups, not one per tunnel and burst (measured in
//! `tests/benches/node_udp_echo.rs`; decisions §29). The connection's QUIC
//! state is driven by one task anyway, so the group costs it no parallelism.
//! Each future still waits on its own: one tunnel held up by backpressure does
//! not hold up the others.
//!
//! A future's panic ends that future only (it is caught); aborting a member
//! ([`TunnelTask::abort`], or dropping it) ends it at its next poll. The
//! group's task ends once every [`TaskGroup`] handle is gone and its members
//! have finished.

use std::{
    future::{Future, poll_fn},
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Poll, Waker},
};

use futures_util::{
    FutureExt, StreamExt,
    future::{AbortHandle, Abortable},
    stream::FuturesUnordered,
};
use tokio::sync::oneshot;

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

impl std::fmt::Debug for TaskGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskGroup").finish_non_exhaustive()
    }
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

/// A future running in its connection's task group (from
/// [`TunnelOutput::spawn`](crate::TunnelOutput::spawn)): dropping the handle
/// aborts it, as [`abort`](Self::abort) does.
#[derive(Debug)]
pub struct TunnelTask {
    abort: AbortHandle,
    /// Resolves once the future is gone (finished, panicked or aborted).
    done: oneshot::Receiver<()>,
}

impl TunnelTask {
    /// Ends the future at its next poll.
    pub fn abort(&self) {
        self.abort.abort();
    }

    /// Waits until the future is gone: finished, panicked or aborted.
    pub async fn finished(&mut self) {
        let _ = (&mut self.done).await;
    }
}

impl Drop for TunnelTask {
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
    /// handle is aborted or dropped.
    pub(crate) fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) -> TunnelTask {
        let (abort, registration) = AbortHandle::new_pair();
        let (done_tx, done) = oneshot::channel();
        let member = Abortable::new(AssertUnwindSafe(future).catch_unwind(), registration);
        // `done_tx` goes with the future, whichever way it ends.
        let member = member.map(move |_| drop(done_tx));
        let mut incoming = self.handle.shared.lock();
        incoming.members.push(Box::pin(member));
        Shared::wake(incoming);
        TunnelTask { abort, done }
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

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    use super::*;

    /// Every member runs; a panicking member ends alone; an aborted one stops;
    /// `finished` sees each end; the group's task ends after its last handle.
    #[tokio::test]
    async fn members_run_alone_and_the_group_ends_with_its_handles() {
        let alive = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let before = alive();
        let group = TaskGroup::new();
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let d = Arc::clone(&done);
        let mut waiting = group.spawn(async move {
            let _ = rx.await;
            d.fetch_add(1, Ordering::SeqCst);
        });
        let mut panicking = group.spawn(async { panic!("member panic") });
        let mut forever = group.spawn(std::future::pending());
        let d = Arc::clone(&done);
        let mut quick = group.spawn(async move {
            d.fetch_add(1, Ordering::SeqCst);
        });
        quick.finished().await;
        panicking.finished().await;
        assert_eq!(done.load(Ordering::SeqCst), 1, "the quick member ran");
        tx.send(()).expect("the member waits");
        waiting.finished().await;
        assert_eq!(
            done.load(Ordering::SeqCst),
            2,
            "the panic ended no one else"
        );
        forever.abort();
        forever.finished().await;
        assert_eq!(alive(), before + 1, "only the group's task");
        drop(group);
        for _ in 0..100 {
            if alive() == before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the group's task outlived its handles and members");
    }

    /// Dropping a member's handle aborts it.
    #[tokio::test]
    async fn dropped_handle_aborts_its_member() {
        let group = TaskGroup::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let member = group.spawn(async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        drop(member);
        // The member's future (and the sender it holds) is dropped.
        assert!(rx.await.is_err());
    }
}
