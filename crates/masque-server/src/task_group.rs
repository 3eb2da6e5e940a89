//! `TaskGroup`: the long-lived data-plane futures of one client connection
//! (every tunnel's target reader, through `TunnelOutput::spawn`), polled by
//! one tokio task. The connection's `ConnectionRouter` owns the group.
//!
//! Why: with one reader task per tunnel, every burst from every target wakes
//! a task of its own, and on a multi-threaded runtime most of those wake-ups
//! cross threads. In one group, futures woken while the group's task is
//! queued or running are served in the same poll, so many tunnels on one
//! connection cost a few wake-ups, not one per tunnel and burst (measured in
//! `tests/benches/node_udp_echo.rs`; decisions §29). The connection's QUIC
//! state is driven by one task anyway, so the group costs it no parallelism.
//! Each future still waits on its own: one tunnel held up by backpressure does
//! not hold up the others.
//!
//! A member's panic, in a poll or while it is dropped, ends that member only
//! (it is caught, logged and reported to the member's `on_panic`); aborting a
//! member ([`TunnelTask::abort`], or dropping its handle) ends it at its next
//! poll. The group's task ends once every [`TaskGroup`] handle is gone and its
//! members have finished. Members get no cooperative budget of their own: a
//! member that can stay ready for long must spend tokio's budget (tokio's
//! channels and `consume_budget` do; `TargetSocket` receives do), or it holds
//! up the group.

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

/// A member as the group's task holds it, and the future inside a member.
type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

#[derive(Default)]
struct Incoming {
    members: Vec<BoxFuture>,
    /// The group task's waker while it waits.
    waker: Option<Waker>,
    /// Every handle is gone: no member can join any more.
    closed: bool,
    /// The group's task is gone (runtime shutdown): new members are dropped.
    dead: bool,
    /// The group's task was spawned (with the first member: a connection that
    /// never opens a tunnel costs no task).
    started: bool,
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

/// A handle to one group; cloning shares it. The group's task starts with the
/// first member, so `spawn` must be called in a tokio runtime.
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
}

impl TunnelTask {
    /// Ends the future at its next poll.
    pub fn abort(&self) {
        self.abort.abort();
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
        Self {
            handle: Arc::new(Handle { shared }),
        }
    }

    /// Adds `future` to the group; it runs until it completes or the returned
    /// handle is aborted or dropped. If it panics while polled, `on_panic` runs
    /// (once, its own panic contained too).
    pub(crate) fn spawn(
        &self,
        future: impl Future<Output = ()> + Send + 'static,
        on_panic: impl FnOnce() + Send + 'static,
    ) -> TunnelTask {
        let (abort, registration) = AbortHandle::new_pair();
        let contained = Contained {
            future: Some(Box::pin(future)),
            on_panic: Some(Box::new(on_panic)),
        };
        let member: BoxFuture = Box::pin(Abortable::new(contained, registration).map(drop));
        let task = TunnelTask { abort };
        let mut incoming = self.handle.shared.lock();
        if incoming.dead {
            drop(incoming);
            // Dropped here, outside the lock.
            drop(member);
            return task;
        }
        incoming.members.push(member);
        if !incoming.started {
            incoming.started = true;
            drop(incoming);
            // The guard is the task's argument, so it marks the group dead
            // even if the task is dropped before its first poll.
            let shared = Arc::clone(&self.handle.shared);
            tokio::spawn(drive(DeadOnDrop(shared)));
            return task;
        }
        Shared::wake(incoming);
        task
    }
}

/// A member's future with its panics contained: in a poll (reported to
/// `on_panic`) and in its drop.
struct Contained {
    future: Option<BoxFuture>,
    on_panic: Option<Box<dyn FnOnce() + Send>>,
}

impl Contained {
    fn drop_future(&mut self) {
        if let Some(f) = self.future.take()
            && std::panic::catch_unwind(AssertUnwindSafe(|| drop(f))).is_err()
        {
            tracing::error!("a tunnel task panicked while being dropped");
        }
    }
}

impl Future for Contained {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let Some(future) = this.future.as_mut() else {
            return Poll::Ready(());
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => {
                this.drop_future();
                Poll::Ready(())
            }
            Err(_) => {
                tracing::error!("a tunnel task panicked");
                this.drop_future();
                if let Some(on_panic) = this.on_panic.take()
                    && std::panic::catch_unwind(AssertUnwindSafe(on_panic)).is_err()
                {
                    tracing::error!("a tunnel task's panic report panicked");
                }
                Poll::Ready(())
            }
        }
    }
}

impl Drop for Contained {
    fn drop(&mut self) {
        self.drop_future();
    }
}

/// Marks the group dead when its task goes (completion or runtime shutdown)
/// and drops members that never joined, so none is left holding the group.
struct DeadOnDrop(Arc<Shared>);

impl Drop for DeadOnDrop {
    fn drop(&mut self) {
        let stranded = {
            let mut incoming = self.0.lock();
            incoming.dead = true;
            std::mem::take(&mut incoming.members)
        };
        drop(stranded);
    }
}

/// The group's task: takes new members, polls the woken ones.
async fn drive(dead_on_drop: DeadOnDrop) {
    let shared = &dead_on_drop.0;
    let mut members: FuturesUnordered<BoxFuture> = FuturesUnordered::new();
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

    /// Upper bound for every wait in these tests.
    const WAIT: Duration = Duration::from_secs(5);

    /// Waits (bounded) until the future that [`tracked`] returned with `rx` is gone.
    async fn gone(rx: tokio::sync::oneshot::Receiver<()>, what: &str) {
        let _ = tokio::time::timeout(WAIT, rx)
            .await
            .unwrap_or_else(|_| panic!("{what} did not end within {WAIT:?}"));
    }

    /// `future`, and a receiver that resolves once it is gone (finished,
    /// panicked, aborted or dropped unpolled).
    fn tracked(
        future: impl Future<Output = ()> + Send + 'static,
    ) -> (
        impl Future<Output = ()> + Send + 'static,
        tokio::sync::oneshot::Receiver<()>,
    ) {
        let (gone_tx, gone) = tokio::sync::oneshot::channel::<()>();
        (
            async move {
                let _gone = gone_tx;
                future.await;
            },
            gone,
        )
    }

    fn counter() -> (Arc<AtomicUsize>, impl FnOnce() + Send + 'static) {
        let n = Arc::new(AtomicUsize::new(0));
        let m = Arc::clone(&n);
        (n, move || {
            m.fetch_add(1, Ordering::SeqCst);
        })
    }

    /// Every member runs; a panicking member ends alone and reports it; an
    /// aborted one stops; the group's task ends after its last handle.
    #[tokio::test]
    async fn members_run_alone_and_the_group_ends_with_its_handles() {
        let alive = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let before = alive();
        let group = TaskGroup::new();
        assert_eq!(alive(), before, "no task until the first member");
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let d = Arc::clone(&done);
        let (waiting, waiting_gone) = tracked(async move {
            let _ = rx.await;
            d.fetch_add(1, Ordering::SeqCst);
        });
        let _waiting = group.spawn(waiting, || {});
        let (panics, on_panic) = counter();
        let (panicking, panicking_gone) = tracked(async { panic!("member panic") });
        let _panicking = group.spawn(panicking, on_panic);
        let (forever, forever_gone) = tracked(std::future::pending());
        let forever = group.spawn(forever, || {});
        let d = Arc::clone(&done);
        let (quick, quick_gone) = tracked(async move {
            d.fetch_add(1, Ordering::SeqCst);
        });
        let _quick = group.spawn(quick, || {});
        gone(quick_gone, "the quick member").await;
        gone(panicking_gone, "the panicking member").await;
        assert_eq!(panics.load(Ordering::SeqCst), 1, "the panic was reported");
        assert_eq!(done.load(Ordering::SeqCst), 1, "the quick member ran");
        tx.send(()).expect("the member waits");
        gone(waiting_gone, "the waiting member").await;
        assert_eq!(
            done.load(Ordering::SeqCst),
            2,
            "the panic ended no one else"
        );
        forever.abort();
        gone(forever_gone, "the aborted member").await;
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
        let member = group.spawn(
            async move {
                let _keep = tx;
                std::future::pending::<()>().await;
            },
            || {},
        );
        drop(member);
        // The member's future (and the sender it holds) is dropped.
        let dropped = tokio::time::timeout(WAIT, rx)
            .await
            .expect("the member's future was not dropped");
        assert!(dropped.is_err());
    }

    /// A member whose drop panics ends alone: the group keeps serving the
    /// others and takes new members.
    #[tokio::test]
    async fn a_panic_while_dropping_a_member_is_contained() {
        struct PanicOnDrop;
        impl Drop for PanicOnDrop {
            fn drop(&mut self) {
                panic!("member drop panic");
            }
        }
        let group = TaskGroup::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u8>(4);
        let t = tx.clone();
        let _ticker = group.spawn(
            async move {
                for i in 0..u8::MAX {
                    if t.send(i).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            },
            || {},
        );
        let (armed_tx, armed) = tokio::sync::oneshot::channel::<()>();
        let (bomb, bomb_gone) = tracked(async move {
            let _bomb = PanicOnDrop;
            let _ = armed_tx.send(());
            std::future::pending::<()>().await;
        });
        let bomb = group.spawn(bomb, || {});
        tokio::time::timeout(WAIT, armed)
            .await
            .expect("the member never ran")
            .expect("the member ran");
        bomb.abort();
        gone(bomb_gone, "the aborted bomb").await;
        // Only ticks sent after the bomb went count.
        while rx.try_recv().is_ok() {}
        let mut tick = async || {
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("the ticker still runs")
                .expect("the ticker still runs")
        };
        let first = tick().await;
        let later = tick().await;
        assert!(later > first);
        // A closed channel: the late member's send returns at once.
        drop(rx);
        let (late, late_gone) = tracked(async move {
            let _ = tx.send(u8::MAX).await;
        });
        let _late = group.spawn(late, || {});
        tokio::time::timeout(Duration::from_secs(5), late_gone)
            .await
            .expect("a new member runs")
            .expect_err("it finished, dropping its sender");
    }

    /// Once the group's task is gone (runtime shutdown), a new member is
    /// dropped at once instead of waiting forever.
    #[test]
    fn members_of_a_dead_group_are_dropped() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        // One member starts the group's task, which the runtime then drops.
        let group = rt.block_on(async {
            let group = TaskGroup::new();
            let first = group.spawn(std::future::pending(), || {});
            (group, first)
        });
        drop(rt);
        let (group, _first) = group;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let _member = group.spawn(
            async move {
                let _keep = tx;
                std::future::pending::<()>().await;
            },
            || {},
        );
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(1)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected),
            "the member's future was dropped"
        );
    }
}
