//! Event delivery: bounded channel and owner actor.

use std::time::Duration;

use masque_client::{ClientError, ClientEvent, CloseReason, Target, connect};
use masque_transport::Transport;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc;

use crate::{
    per_transport,
    proxy::{Mode, Proxy},
    within,
};

per_transport!(
    into_events_delivers_datagram_then_closed,
    forward_to_owner_actor_until_it_stops,
);

async fn into_events_delivers_datagram_then_closed(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::CloseAfterFirst)?;
    let target = Target::udp("192.0.2.6", 443);
    let s = within(connect(&proxy.url(), target, proxy.options(t))).await?;
    let (sender, mut events) = s.into_events();
    sender.send(b"one").await?;
    let mut got = Vec::new();
    while let Some(ev) = within(events.recv()).await {
        got.push(ev);
    }
    let Some(ClientEvent::Closed(info)) = got.pop() else {
        anyhow::bail!("no Closed event: {got:?}");
    };
    assert_eq!(info.reason, CloseReason::ProxyFinished);
    // The datagram may be lost on the wire, but nothing else may arrive.
    assert!(
        got.iter()
            .all(|e| *e == ClientEvent::Datagram("one".into()))
    );
    Ok(())
}

/// An owner actor that hands events to the test.
struct Owner;

impl Actor for Owner {
    type Msg = ClientEvent;
    type State = mpsc::UnboundedSender<ClientEvent>;
    type Arguments = mpsc::UnboundedSender<ClientEvent>;

    async fn pre_start(
        &self,
        _me: ActorRef<ClientEvent>,
        out: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(out)
    }

    async fn handle(
        &self,
        _me: ActorRef<ClientEvent>,
        ev: ClientEvent,
        out: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let _ = out.send(ev);
        Ok(())
    }
}

async fn forward_to_owner_actor_until_it_stops(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let target = Target::udp("192.0.2.6", 443);
    let s = within(connect(&proxy.url(), target, proxy.options(t))).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (owner, handle) = Actor::spawn(None, Owner, tx).await?;
    let sender = s.forward_to(owner.clone());
    // Datagrams may be lost: retry until one echo reaches the actor.
    let mut delivered = false;
    for _ in 0..20 {
        sender.send(b"to-actor").await?;
        if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            assert_eq!(ev, ClientEvent::Datagram("to-actor".into()));
            delivered = true;
            break;
        }
    }
    assert!(delivered);
    // The owner stops: the forwarder finishes the tunnel.
    owner.stop(None);
    within(handle).await?;
    within(async {
        while !matches!(sender.send(b"x").await, Err(ClientError::Closed)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    Ok(())
}
