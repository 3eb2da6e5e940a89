//! A bounded multi-producer, single-consumer queue that holds no memory while
//! empty and never-used.
//!
//! Why not `tokio::sync::mpsc`: a tokio channel allocates a 32-slot block when
//! it is created (about 1–2 KiB per channel for the item types used here), and
//! a proxy keeps several channels per tunnel for tens of thousands of mostly
//! idle tunnels. This queue is one `Arc` with a `VecDeque` that grows on the
//! first push and gives back a large buffer once drained. Pushes never wait:
//! a full queue hands the item back (the caller drops and counts it), which is
//! the data plane's drop-on-full rule.
//!
//! The lock is held only for a push or a pop, never across a wake-up or a
//! drop of queued items. Receiving takes part in tokio's cooperative budget,
//! as tokio's own channels do, so a queue that is always full cannot keep
//! its consumer from yielding.

use std::{
    collections::VecDeque,
    future::poll_fn,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};

/// Capacity a drained queue keeps: steady bursts up to this size reuse their
/// buffer (no allocation per burst); a larger burst's excess is released
/// once drained (the buffer never grows back past what traffic needs).
const KEEP_CAPACITY: usize = 64;

#[derive(Debug)]
struct Shared<T> {
    state: Mutex<State<T>>,
    capacity: usize,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    /// The receiver's waker while it waits.
    waker: Option<Waker>,
    senders: usize,
    /// Closed by a sender (`QueueTx::close`) or because the receiver is gone.
    closed: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every critical section leaves the state consistent: a poisoned lock
        // (a panic elsewhere while holding it) is safe to keep using.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the receiver, outside the lock.
    fn wake(mut state: MutexGuard<'_, State<T>>) {
        let waker = state.waker.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Creates a queue that holds at most `capacity` items (at least 1).
pub fn channel<T>(capacity: usize) -> (QueueTx<T>, QueueRx<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            waker: None,
            senders: 1,
            closed: false,
        }),
        capacity: capacity.max(1),
    });
    (
        QueueTx {
            shared: Arc::clone(&shared),
        },
        QueueRx { shared },
    )
}

/// Why a push failed; the item comes back.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    Full(T),
    Closed(T),
}

/// The sending side. Cloning adds a sender; the receiver sees the end once
/// every sender is gone or one of them called [`QueueTx::close`].
#[derive(Debug)]
pub struct QueueTx<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for QueueTx<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for QueueTx<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.senders -= 1;
        if state.senders == 0 {
            Shared::wake(state);
        }
    }
}

impl<T> QueueTx<T> {
    /// Pushes without waiting.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(TrySendError::Closed(item));
        }
        if state.items.len() >= self.shared.capacity {
            return Err(TrySendError::Full(item));
        }
        state.items.push_back(item);
        Shared::wake(state);
        Ok(())
    }

    /// Ends the queue for everyone: the receiver gets what is queued, then `None`.
    pub fn close(&self) {
        let mut state = self.shared.lock();
        state.closed = true;
        Shared::wake(state);
    }

    /// True once the receiver is gone or the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }
}

/// The receiving side.
#[derive(Debug)]
pub struct QueueRx<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Drop for QueueRx<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.waker = None;
        // Queued items go now, not when the last sender lets go, and outside
        // the lock: their own `Drop` may use a queue.
        let items = std::mem::take(&mut state.items);
        drop(state);
        drop(items);
    }
}

impl<T> QueueRx<T> {
    /// The next item; `None` once the queue is empty and ended.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let mut state = self.shared.lock();
        if let Some(item) = pop(&mut state) {
            coop.made_progress();
            return Poll::Ready(Some(item));
        }
        if state.closed || state.senders == 0 {
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(w) => w.clone_from(cx.waker()),
            None => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// An item already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<T> {
        pop(&mut self.shared.lock())
    }

    /// Resolves once the queue has ended (closed, or every sender gone),
    /// leaving queued items in place.
    ///
    /// It shares the receiver's one waker slot with [`recv`](Self::recv):
    /// poll both from the same task (e.g. in one `select!`), never from two.
    pub async fn ended(&self) {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            if state.closed || state.senders == 0 {
                return Poll::Ready(());
            }
            match &mut state.waker {
                Some(w) => w.clone_from(cx.waker()),
                None => state.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn pop<T>(state: &mut State<T>) -> Option<T> {
    let item = state.items.pop_front();
    if state.items.is_empty() && state.items.capacity() > KEEP_CAPACITY {
        // A large burst is over: give back the excess (once per burst).
        state.items.shrink_to(KEEP_CAPACITY);
    }
    item
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn order_bound_and_drop_on_full() {
        let (tx, mut rx) = channel(3);
        for i in 0..3 {
            tx.try_send(i).unwrap();
        }
        assert_eq!(tx.try_send(9), Err(TrySendError::Full(9)));
        assert_eq!(rx.len(), 3);
        assert_eq!(rx.recv().await, Some(0));
        assert_eq!(rx.try_recv(), Some(1));
        tx.try_send(3).unwrap();
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn ends_when_every_sender_is_gone() {
        let (tx, mut rx) = channel(4);
        let tx2 = tx.clone();
        tx.try_send(1).unwrap();
        drop(tx);
        let waiter = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(v) = rx.recv().await {
                got.push(v);
            }
            got
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        tx2.try_send(2).unwrap();
        drop(tx2);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("receiver woken at the end")
            .unwrap();
        assert_eq!(got, vec![1, 2]);
    }

    #[tokio::test]
    async fn close_ends_and_keeps_queued_items() {
        let (tx, mut rx) = channel(4);
        tx.try_send(1).unwrap();
        let other = tx.clone();
        other.close();
        assert!(tx.is_closed());
        assert_eq!(tx.try_send(2), Err(TrySendError::Closed(2)));
        tokio::time::timeout(Duration::from_secs(5), rx.ended())
            .await
            .expect("ended resolves");
        assert_eq!(rx.recv().await, Some(1));
        let end = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("recv ends after close");
        assert_eq!(end, None);
    }

    #[tokio::test]
    async fn receiver_gone_refuses_and_frees() {
        let (tx, rx) = channel(4);
        tx.try_send(vec![0u8; 1000]).unwrap();
        drop(rx);
        assert!(tx.is_closed());
        assert!(matches!(tx.try_send(vec![]), Err(TrySendError::Closed(_))));
        assert_eq!(tx.shared.lock().items.capacity(), 0);
    }

    #[test]
    fn nothing_allocated_until_used_and_bursts_released() {
        let (tx, mut rx) = channel::<u64>(1024);
        assert_eq!(tx.shared.lock().items.capacity(), 0);
        for i in 0..500 {
            tx.try_send(i).unwrap();
        }
        while rx.try_recv().is_some() {}
        assert!(tx.shared.lock().items.capacity() <= KEEP_CAPACITY);
    }

    /// Like tokio's channels, an always-ready queue still makes its
    /// consumer yield once the task's budget is spent.
    #[tokio::test]
    async fn receiving_spends_the_cooperative_budget() {
        let (tx, mut rx) = channel::<u32>(10_000);
        for i in 0..10_000 {
            tx.try_send(i).unwrap();
        }
        let mut pending_seen = false;
        let mut got = 0;
        poll_fn(|cx| {
            loop {
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(_)) => got += 1,
                    Poll::Ready(None) => unreachable!("senders alive"),
                    Poll::Pending => {
                        pending_seen = true;
                        return Poll::Ready(());
                    }
                }
            }
        })
        .await;
        assert!(pending_seen && got < 10_000, "never yielded ({got} items)");
        // The rest is still there after the yield.
        tokio::task::yield_now().await;
        assert_eq!(rx.recv().await, Some(got));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_producers_lose_nothing_below_the_bound() {
        const PER: u64 = 10_000;
        let (tx, mut rx) = channel::<u64>(usize::MAX);
        let producers: Vec<_> = (0..4u64)
            .map(|p| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    for i in 0..PER {
                        tx.try_send(p * PER + i).unwrap();
                        if i % 64 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        let mut seen = vec![false; 4 * PER as usize];
        let mut last = [None::<u64>; 4];
        // Bounded: a lost wake-up would leave the receiver waiting forever.
        let drained = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(v) = rx.recv().await {
                let p = (v / PER) as usize;
                // Per-producer order is kept.
                assert!(last[p].is_none_or(|l| l < v));
                last[p] = Some(v);
                seen[v as usize] = true;
            }
        })
        .await;
        assert!(
            drained.is_ok(),
            "the queue did not end after its producers finished"
        );
        for p in producers {
            p.await.unwrap();
        }
        assert!(seen.iter().all(|s| *s));
    }
}
