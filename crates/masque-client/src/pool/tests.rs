//! Unit tests of the pool's bookkeeping: keys, slot counting and limits,
//! leases, and the owner actor's monitors and idle timer. The connection is
//! an HTTP/1.1 handle, which dials nothing until a tunnel opens.

use std::{sync::Arc, time::Duration};

use masque_transport::{ClientConfig, ClientConnection, Transport, tls::ServerVerification};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::{
    Lease, MaxStreams, PoolKey, TlsIdentity,
    owner::{NoSlot, OwnerArgs, OwnerHandle, OwnerMsg, Shared, UpstreamOwner},
};
use crate::{ClientOptions, TransportChoice};

const WAIT: Duration = Duration::from_secs(5);

async fn conn() -> ClientConnection {
    let addr = "127.0.0.1:9".parse().unwrap();
    ClientConnection::connect(Transport::H1, addr, "localhost", &ClientConfig::default())
        .await
        .expect("an HTTP/1.1 handle dials nothing")
}

fn key() -> PoolKey {
    PoolKey::new("https://proxy.example:4433", &ClientOptions::default()).unwrap()
}

async fn shared(max: MaxStreams) -> Arc<Shared> {
    Arc::new(Shared::new(key(), conn().await, max))
}

async fn owner(max: MaxStreams, idle: Option<Duration>) -> OwnerHandle {
    let shared = shared(max).await;
    let args = OwnerArgs {
        shared: Arc::clone(&shared),
        idle_timeout: idle,
        close_timeout: Duration::from_millis(100),
    };
    let (actor, _) = Actor::spawn(None, UpstreamOwner, args).await.unwrap();
    OwnerHandle { actor, shared }
}

/// Polls `f` until it holds, for at most [`WAIT`].
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn keys_separate_transport_port_tls_and_credential() {
    let base = ClientOptions::default();
    let k = |url: &str, o: &ClientOptions| PoolKey::new(url, o).unwrap();
    let a = k("https://Proxy.Example:4433", &base);
    assert_eq!(
        a,
        k("https://proxy.example:4433/", &base),
        "host case, slash"
    );
    assert_ne!(a, k("https://proxy.example:4434", &base));
    let h2 = ClientOptions {
        transport: TransportChoice::H2,
        ..ClientOptions::default()
    };
    assert_ne!(a, k("https://proxy.example:4433", &h2));
    let pinned = ClientOptions {
        verification: ServerVerification::PinnedSha256([7; 32]),
        ..ClientOptions::default()
    };
    let p = k("https://proxy.example:4433", &pinned);
    assert_ne!(a, p);
    assert_eq!(p.tls, TlsIdentity::PinnedSha256([7; 32]));
    let alice = base.clone().with_bearer_token("alice").unwrap();
    let bob = base.clone().with_bearer_token("bob").unwrap();
    let ka = k("https://proxy.example:4433", &alice);
    assert!(ka.has_auth() && !a.has_auth());
    assert_ne!(ka, k("https://proxy.example:4433", &bob));
    assert_eq!(ka, k("https://proxy.example:4433", &alice));
    assert!(
        !format!("{ka:?}").contains("alice"),
        "Debug hides the token"
    );
    assert_eq!(ka.to_string(), "auto://proxy.example:4433");
    let h1 = ClientOptions {
        transport: TransportChoice::H1,
        ..ClientOptions::default()
    };
    assert!(!k("https://proxy.example", &h1).is_pooled());
    assert!(a.is_pooled());
    assert!(PoolKey::new("http://proxy.example", &base).is_err());
}

#[tokio::test]
async fn slots_count_up_to_the_limit_and_release_once() {
    let s = shared(MaxStreams::Limit(2)).await;
    let a = s.try_acquire().unwrap();
    let b = s.try_acquire().unwrap();
    assert_ne!(a, b);
    assert_eq!(s.try_acquire(), Err(NoSlot::Full));
    assert!(s.info().idle_since.is_none());
    assert!(s.release(a));
    assert!(!s.release(a), "a second release is a no-op");
    assert_eq!(s.info().streams_in_use, 1);
    let c = s.try_acquire().unwrap();
    assert!(s.release(b) && s.release(c));
    let info = s.info();
    assert_eq!((info.streams_in_use, info.max_streams), (0, Some(2)));
    assert!(info.idle_since.is_some());
    s.set_closing();
    assert_eq!(s.try_acquire(), Err(NoSlot::Closing));
}

#[tokio::test]
async fn a_refusal_teaches_the_limit() {
    // HTTP/1.1 tells no limit: unbounded until the peer refuses.
    let s = shared(MaxStreams::Dynamic).await;
    assert_eq!(s.info().max_streams, None);
    let held: Vec<_> = (0..5).map(|_| s.try_acquire().unwrap()).collect();
    let refused = s.try_acquire().unwrap();
    s.limit_reached(refused);
    assert!(s.release(refused));
    assert_eq!(s.info().max_streams, Some(5));
    assert_eq!(s.try_acquire(), Err(NoSlot::Full));
    // A configured limit above what was learned does not raise it.
    let s = shared(MaxStreams::Limit(8)).await;
    let first = s.try_acquire().unwrap();
    let second = s.try_acquire().unwrap();
    s.limit_reached(second);
    assert_eq!(s.info().max_streams, Some(1));
    drop((held, first));
}

#[tokio::test]
async fn lease_drop_and_release_give_the_slot_back_once() {
    let o = owner(MaxStreams::Limit(4), None).await;
    let slot = o.shared.try_acquire().unwrap();
    let mut lease = Lease::pooled(&o, slot);
    assert!(lease.is_pooled());
    assert_eq!(o.info().streams_in_use, 1);
    lease.release();
    lease.release();
    assert!(!lease.is_pooled());
    assert_eq!(o.info().streams_in_use, 0);
    let lease = Lease::pooled(&o, o.shared.try_acquire().unwrap());
    assert_eq!(o.info().streams_in_use, 1);
    drop(lease);
    assert_eq!(o.info().streams_in_use, 0);
    let unpooled = Lease::unpooled(conn().await);
    assert!(!unpooled.is_pooled() && unpooled.owner().is_none());
    o.actor.stop(None);
}

/// An actor that does nothing; tests end it.
struct Idle;

impl Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

#[tokio::test]
async fn the_owner_releases_the_slots_of_a_holder_that_ends() {
    let o = owner(MaxStreams::Dynamic, None).await;
    let (holder, task) = Actor::spawn(None, Idle, ()).await.unwrap();
    let leases: Vec<_> = (0..3)
        .map(|_| {
            let slot = o.shared.try_acquire().unwrap();
            o.actor
                .cast(OwnerMsg::Watch {
                    slot,
                    holder: holder.get_cell(),
                })
                .unwrap();
            Lease::pooled(&o, slot)
        })
        .collect();
    let other = Lease::pooled(&o, o.shared.try_acquire().unwrap());
    assert_eq!(o.info().streams_in_use, 4);
    holder.kill();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    eventually("the holder's three slots back", || {
        o.info().streams_in_use == 1
    })
    .await;
    drop(leases);
    assert_eq!(o.info().streams_in_use, 1, "no second release");
    // A holder already gone when watched gives its slot back at once.
    let slot = o.shared.try_acquire().unwrap();
    let _late = Lease::pooled(&o, slot);
    o.actor
        .cast(OwnerMsg::Watch {
            slot,
            holder: holder.get_cell(),
        })
        .unwrap();
    eventually("the dead holder's slot back", || {
        o.info().streams_in_use == 1
    })
    .await;
    drop(other);
    o.actor.stop(None);
}

#[tokio::test]
async fn the_idle_timer_stops_the_owner_only_when_idle() {
    let o = owner(MaxStreams::Dynamic, Some(Duration::from_millis(100))).await;
    let lease = Lease::pooled(&o, o.shared.try_acquire().unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!o.info().closing, "a held slot keeps it");
    assert!(o.actor.get_status() < ractor::ActorStatus::Stopping);
    drop(lease);
    let actor = o.actor.get_cell();
    eventually("the idle owner stopped", || {
        actor.get_status() == ractor::ActorStatus::Stopped
    })
    .await;
    assert!(o.info().closing);
    assert!(o.connection().is_closed(), "the connection was closed");
    assert_eq!(o.shared.try_acquire(), Err(NoSlot::Closing));
}

#[tokio::test]
async fn no_idle_timeout_keeps_the_owner() {
    let o = owner(MaxStreams::Dynamic, None).await;
    drop(Lease::pooled(&o, o.shared.try_acquire().unwrap()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!o.info().closing);
    o.close();
    let actor = o.actor.get_cell();
    eventually("the closed owner stopped", || {
        actor.get_status() == ractor::ActorStatus::Stopped
    })
    .await;
}

#[test]
fn a_pooled_client_checks_its_configuration_and_dials_nothing() {
    // No runtime: `new` only parses and checks.
    let c = crate::ProxyClient::new("https://nowhere.invalid:4433", ClientOptions::default())
        .expect("nothing is dialled or resolved");
    assert!(c.is_pooled());
    assert!(c.connection().is_none() && c.h3_connection().is_none());
    assert!(!c.is_closed());
    assert_eq!(
        c.transport(),
        Transport::H3,
        "auto, as dialled without a race"
    );
    assert_eq!(c.pool_key().map(|k| k.port), Some(4433));
    for bad in ["http://proxy.example", "https://proxy.example/path"] {
        let err = crate::ProxyClient::new(bad, ClientOptions::default()).unwrap_err();
        assert!(err.is_config_error(), "{bad}: {err}");
    }
    let bad_pin = ClientOptions {
        verification: ServerVerification::CustomCa(vec![vec![0u8; 3].into()]),
        ..ClientOptions::default()
    };
    let err = crate::ProxyClient::new("https://proxy.example", bad_pin).unwrap_err();
    assert!(err.is_config_error(), "{err}");
}

#[tokio::test]
async fn acquire_stream_respects_the_limit_and_watches_its_holder() {
    let o = owner(MaxStreams::Limit(2), None).await;
    let (holder, task) = Actor::spawn(None, Idle, ()).await.unwrap();
    let cell = holder.get_cell();
    let held = o.acquire_stream(Some(&cell)).expect("a free slot");
    let plain = o.acquire_stream(None).expect("a second slot");
    assert!(o.acquire_stream(None).is_none(), "full at 2");
    holder.stop(None);
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    eventually("the stopped holder's slot back", || {
        o.info().streams_in_use == 1
    })
    .await;
    let again = o.acquire_stream(None).expect("room again");
    drop((held, plain, again));
    assert_eq!(o.info().streams_in_use, 0);
    o.close();
    assert!(o.acquire_stream(None).is_none(), "closing");
}

#[test]
fn with_headers_keeps_the_key_unless_the_credential_changes() {
    let c =
        crate::ProxyClient::new("https://proxy.example:4433", ClientOptions::default()).unwrap();
    let mut via = http::HeaderMap::new();
    via.insert("via", http::HeaderValue::from_static("1.1 relay"));
    let v = c.with_headers(via.clone());
    assert_eq!(v.pool_key(), c.pool_key(), "Via is no part of the key");
    via.insert(
        "proxy-authorization",
        http::HeaderValue::from_static("Bearer abc"),
    );
    let a = c.with_headers(via);
    assert_ne!(a.pool_key(), c.pool_key());
    assert!(a.pool_key().is_some_and(PoolKey::has_auth));
}
