//! The supervisor on its own, with tiny children: restart policies, the
//! intensity limit, `ignore`d starts, and drain completion signalled by the
//! tree.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use ractor::{ActorCell, ActorStatus};

use super::*;

/// Two restarts fit a window, a third within it does not; once the first two
/// are older than the window, restarts are allowed again.
#[test]
fn restart_intensity_window() {
    let window = Duration::from_millis(200);
    // "Within the window" needs the three calls to land within 200 ms, which a
    // loaded machine may not manage: an attempt that took longer proves
    // nothing and is tried again (the refusal is still required of every
    // attempt that was quick enough).
    for _attempt in 0..5 {
        let mut r = Restarts::new(RestartIntensity {
            max_restarts: 2,
            window,
        });
        let t0 = std::time::Instant::now();
        assert!(r.allow());
        assert!(r.allow());
        let third = r.allow();
        if t0.elapsed() >= window {
            continue;
        }
        assert!(!third, "a third restart within the window");
        // A sleep lasts at least this long, so both restarts are now older
        // than the window however slow the machine.
        std::thread::sleep(window + Duration::from_millis(10));
        assert!(r.allow(), "restarts allowed again after the window");
        return;
    }
    panic!("never three calls within {window:?}: the machine is too slow to tell");
}

/// A child that, told to drain, reports `Drained` at once (`Report`), never
/// (`Silent`), or stops itself (`Stop`).
#[derive(Clone, Copy)]
enum OnDrain {
    Report,
    Silent,
    Stop,
}

struct Leaf;

enum LeafMsg {
    Drain,
}

impl Actor for Leaf {
    type Msg = LeafMsg;
    type State = OnDrain;
    type Arguments = OnDrain;

    async fn pre_start(
        &self,
        _myself: ActorRef<LeafMsg>,
        on_drain: OnDrain,
    ) -> Result<OnDrain, ActorProcessingErr> {
        Ok(on_drain)
    }

    async fn handle(
        &self,
        myself: ActorRef<LeafMsg>,
        LeafMsg::Drain: LeafMsg,
        on_drain: &mut OnDrain,
    ) -> Result<(), ActorProcessingErr> {
        match on_drain {
            OnDrain::Report => report_drained(&myself.get_cell()),
            OnDrain::Silent => {}
            OnDrain::Stop => myself.stop(None),
        }
        Ok(())
    }
}

/// A leaf spec whose starts are counted.
fn leaf(id: &str, restart: Restart, on_drain: OnDrain, starts: &Arc<AtomicUsize>) -> ChildSpec {
    let starts = Arc::clone(starts);
    ChildSpec::new(id, restart, move |sup| {
        starts.fetch_add(1, Ordering::SeqCst);
        async move {
            let (r, _) = Actor::spawn_linked(None, Leaf, on_drain, sup).await?;
            Ok(Some(r.get_cell()))
        }
    })
    .draining(|cell, _| cell.send_message(LeafMsg::Drain).is_ok())
}

async fn start(
    children: Vec<ChildSpec>,
    intensity: RestartIntensity,
) -> (ActorRef<SupervisorMsg>, watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    let args = SupervisorArgs {
        label: "test".into(),
        children,
        intensity,
        drained: Some(tx),
    };
    let (sup, _) = Actor::spawn(None, Supervisor, args).await.unwrap();
    (sup, rx)
}

fn child(sup: &ActorRef<SupervisorMsg>, n: usize) -> ActorCell {
    let mut c = sup.get_children();
    c.sort_by_key(|c| c.get_id().pid());
    c.swap_remove(n)
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn permanent_restarts_temporary_does_not() {
    let (p, t) = (Arc::default(), Arc::default());
    let (sup, _) = start(
        vec![
            leaf("p", Restart::Permanent, OnDrain::Report, &p),
            leaf("t", Restart::Temporary, OnDrain::Report, &t),
        ],
        RestartIntensity::default(),
    )
    .await;
    assert_eq!(sup.get_children().len(), 2);
    let (first_p, first_t) = (child(&sup, 0), child(&sup, 1));
    first_p.kill();
    eventually("permanent child restarted", || {
        p.load(Ordering::SeqCst) == 2
    })
    .await;
    eventually("restarted child linked", || {
        sup.get_children().len() == 2
            && sup
                .get_children()
                .iter()
                .all(|c| c.get_id() != first_p.get_id())
    })
    .await;
    first_t.stop(None);
    eventually("temporary child gone", || sup.get_children().len() == 1).await;
    // A child reports its end before it unlinks, so the supervisor already
    // has the temporary child's end queued. Supervision events are handled in
    // order: once a later death (the permanent child's) has been answered
    // with a restart, the temporary's end has been handled too.
    child(&sup, 0).kill();
    eventually("permanent child restarted again", || {
        p.load(Ordering::SeqCst) == 3
    })
    .await;
    eventually("restarted child linked", || sup.get_children().len() == 1).await;
    assert_eq!(t.load(Ordering::SeqCst), 1, "temporary never restarted");
    assert_eq!(sup.get_status(), ActorStatus::Running);
    sup.stop(None);
}

#[tokio::test]
async fn intensity_exceeded_stops_the_supervisor() {
    let n = Arc::default();
    let (sup, _) = start(
        vec![leaf("p", Restart::Permanent, OnDrain::Report, &n)],
        RestartIntensity {
            max_restarts: 2,
            window: Duration::from_secs(10),
        },
    )
    .await;
    for restarts in 1..=2 {
        child(&sup, 0).kill();
        eventually("restart", || n.load(Ordering::SeqCst) == restarts + 1).await;
        eventually("linked", || sup.get_children().len() == 1).await;
    }
    child(&sup, 0).kill();
    sup.wait(Some(Duration::from_secs(5)))
        .await
        .expect("the supervisor gives up after the third death");
    assert_eq!(n.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn ignored_start_is_not_supervised() {
    let (sup, drained) = start(
        vec![ChildSpec::new("nothing", Restart::Permanent, |_| async {
            Ok(None)
        })],
        RestartIntensity::default(),
    )
    .await;
    assert!(sup.get_children().is_empty());
    sup.cast(SupervisorMsg::Drain(Duration::from_secs(1)))
        .unwrap();
    let mut drained = drained;
    tokio::time::timeout(Duration::from_secs(5), drained.wait_for(|d| *d))
        .await
        .expect("nothing to drain: drained at once")
        .unwrap();
    sup.stop(None);
}

#[tokio::test]
async fn a_failing_start_fails_the_supervisor_start() {
    let args = SupervisorArgs {
        label: "test".into(),
        children: vec![ChildSpec::new("bad", Restart::Permanent, |_| async {
            Err("no".into())
        })],
        intensity: RestartIntensity::default(),
        drained: None,
    };
    assert!(Actor::spawn(None, Supervisor, args).await.is_err());
}

/// Drained only when every draining child has reported or ended; children
/// without a drain function do not count; nothing restarts meanwhile. Nested
/// supervisors report up the tree.
#[tokio::test]
async fn drain_completes_from_the_tree() {
    let n = Arc::default();
    let inner = |on_drain| {
        let leaf = leaf("leaf", Restart::Permanent, on_drain, &n);
        ChildSpec::new("inner", Restart::Permanent, move |sup| {
            let args = SupervisorArgs {
                label: "inner".into(),
                children: vec![leaf.clone()],
                intensity: RestartIntensity::default(),
                drained: None,
            };
            async move {
                let (r, _) = Actor::spawn_linked(None, Supervisor, args, sup).await?;
                Ok(Some(r.get_cell()))
            }
        })
        .draining(drain_supervisor)
    };
    let mut bystander = leaf("bystander", Restart::Permanent, OnDrain::Silent, &n);
    bystander.drain = None;
    let (sup, mut drained) = start(
        vec![
            inner(OnDrain::Report),
            inner(OnDrain::Stop),
            inner(OnDrain::Silent),
            bystander,
        ],
        RestartIntensity::default(),
    )
    .await;
    assert_eq!(n.load(Ordering::SeqCst), 4);
    sup.cast(SupervisorMsg::Drain(Duration::from_secs(1)))
        .unwrap();
    // The silent leaf holds the drain up.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!*drained.borrow(), "a child is still draining");
    // The stopped leaf was not restarted.
    assert_eq!(n.load(Ordering::SeqCst), 4, "no restarts while draining");
    // Ending the silent leaf (e.g. killed) counts as drained.
    for c in sup.get_children() {
        for leaf in c.get_children() {
            leaf.kill();
        }
    }
    tokio::time::timeout(Duration::from_secs(5), drained.wait_for(|d| *d))
        .await
        .expect("drained once every child is done")
        .unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 4, "no restarts while draining");
    sup.stop(None);
}

/// Counts the live states of its incarnations.
struct Holder;

struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Actor for Holder {
    type Msg = ();
    type State = Held;
    type Arguments = Arc<AtomicUsize>;

    async fn pre_start(
        &self,
        _myself: ActorRef<()>,
        alive: Arc<AtomicUsize>,
    ) -> Result<Held, ActorProcessingErr> {
        alive.fetch_add(1, Ordering::SeqCst);
        Ok(Held(alive))
    }
}

/// A restarted child's old state, which ractor hands up in the supervision
/// event when the child stops or is killed, is gone before the new
/// incarnation starts (what a listener holds on a shared socket must not
/// overlap with its successor's).
#[tokio::test]
async fn old_state_is_dropped_before_the_restart() {
    let alive = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let spec = {
        let (alive, seen) = (Arc::clone(&alive), Arc::clone(&seen));
        ChildSpec::new("holder", Restart::Permanent, move |sup| {
            seen.lock().unwrap().push(alive.load(Ordering::SeqCst));
            let alive = Arc::clone(&alive);
            async move {
                let (r, _) = Actor::spawn_linked(None, Holder, alive, sup).await?;
                Ok(Some(r.get_cell()))
            }
        })
    };
    let (sup, _) = start(vec![spec], RestartIntensity::default()).await;
    child(&sup, 0).stop(None);
    eventually("restarted after a stop", || seen.lock().unwrap().len() == 2).await;
    eventually("linked", || sup.get_children().len() == 1).await;
    child(&sup, 0).kill();
    eventually("restarted after a kill", || seen.lock().unwrap().len() == 3).await;
    assert_eq!(*seen.lock().unwrap(), vec![0, 0, 0]);
    eventually("one incarnation alive", || {
        alive.load(Ordering::SeqCst) == 1
    })
    .await;
    sup.stop(None);
}
