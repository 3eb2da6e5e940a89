//! connect-ip against the in-test proxy ([`crate::proxy`]), for what a real
//! node never does: a malformed ADDRESS_ASSIGN (the client aborts the
//! stream, reports [`IpEvent::Error`] and [`IpEvent::Closed`]), and an
//! ADDRESS_REQUEST from the proxy that the client answers (the assign-id
//! rule's accepting side). The script is chosen by the request's target
//! address ([`IpScript`]).

use std::net::IpAddr;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use masque_client::{
    AssignedAddress, ClientError, CloseReason, IpEvent, IpProto, IpScope, IpSession, IpTarget,
    connect_ip,
};
use masque_proto::{
    capsule::{self, Capsule},
    connect_ip::{self as cip, ConnectIpError},
    request::RequestForm,
    tunnel::{DatagramRules, TunnelCore, TunnelEvent},
};
use masque_transport::{BodyTx, PendingTunnel, Transport, TunnelRequest};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc;

use crate::{
    WAIT, per_transport,
    proxy::{Mode, Proxy},
    within,
};

per_transport!(
    malformed_address_assign_aborts,
    malformed_capsule_reaches_the_owner,
    proxy_address_request_answered,
);

/// What the proxy does with a connect-ip tunnel, by target address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpScript {
    /// After 200 ms (time for the test to switch modes), ADDRESS_ASSIGN with
    /// IP version 5 (R9484-24); then reads to the end.
    Malformed,
    /// ADDRESS_REQUEST id 9; each ADDRESS_ASSIGN from the client is answered
    /// with an unprompted 192.0.2.99/32; FIN after the client's.
    Requests,
}

impl IpScript {
    const ALL: [(IpScript, &'static str); 2] = [
        (IpScript::Malformed, "192.0.2.1"),
        (IpScript::Requests, "192.0.2.2"),
    ];

    fn target(self) -> IpTarget {
        let addr = Self::ALL
            .iter()
            .find(|(s, _)| *s == self)
            .map_or("192.0.2.1", |(_, a)| a);
        IpTarget {
            target: IpScope::Addr(addr.parse().expect("address")),
            ipproto: IpProto::Any,
        }
    }

    /// The script of a connect-ip request (`…/{target}/{ipproto}/`).
    pub fn of(r: &TunnelRequest) -> Option<Self> {
        let Ok(RequestForm::Extended { protocol, path, .. }) = &r.form else {
            return None;
        };
        if protocol != "connect-ip" {
            return None;
        }
        let target = path.trim_end_matches('/').rsplit('/').nth(1)?;
        Self::ALL
            .iter()
            .find(|(_, a)| *a == target)
            .map(|(s, _)| *s)
    }
}

fn capsule_bytes(ty: u64, value: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    capsule::encode(ty, value, &mut b);
    b.freeze()
}

/// Serves one connect-ip tunnel by `script`.
pub async fn run(script: IpScript, p: PendingTunnel) {
    let mut h = HeaderMap::new();
    h.insert("capsule-protocol", HeaderValue::from_static("?1"));
    let Ok(t) = p.accept(h).await else {
        return;
    };
    let (mut tx, mut rx) = (t.body_tx, t.body_rx);
    match script {
        IpScript::Malformed => {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let bad = [0x00, 0x05, 0xc0, 0x00, 0x02, 0x01, 0x20];
            if tx
                .send(capsule_bytes(cip::ADDRESS_ASSIGN, &bad))
                .await
                .is_err()
            {
                return;
            }
            // Until the client's abort.
            while let Ok(Some(_)) = rx.recv().await {}
        }
        IpScript::Requests => {
            let request = [0x09, 0x04, 0, 0, 0, 0, 0x20];
            if tx
                .send(capsule_bytes(cip::ADDRESS_REQUEST, &request))
                .await
                .is_err()
            {
                return;
            }
            let mut core = TunnelCore::new(DatagramRules::ip(), capsule::DEFAULT_MAX_CAPSULE_SIZE);
            loop {
                match rx.recv().await {
                    Ok(Some(b)) => {
                        core.push_body(b);
                        while let Ok(Some(ev)) = core.next_event() {
                            if let TunnelEvent::Capsule(c) = ev
                                && !answer(&mut tx, &c).await
                            {
                                return;
                            }
                        }
                    }
                    Ok(None) => {
                        tx.finish().await;
                        return;
                    }
                    Err(_) => return,
                }
            }
        }
    }
}

/// Answers a client's ADDRESS_ASSIGN (answering our request 9) with an
/// unprompted assignment of our own.
async fn answer(tx: &mut BodyTx, c: &Capsule) -> bool {
    let Ok(entries) = cip::decode_address_assign(&c.value) else {
        return true;
    };
    if c.ty != cip::ADDRESS_ASSIGN || !entries.iter().any(|e| e.request_id == 9) {
        return true;
    }
    let ours = [0x00, 0x04, 0xc0, 0x00, 0x02, 0x63, 0x20];
    tx.send(capsule_bytes(cip::ADDRESS_ASSIGN, &ours))
        .await
        .is_ok()
}

async fn open(proxy: &Proxy, t: Transport, script: IpScript) -> anyhow::Result<IpSession> {
    Ok(within(connect_ip(&proxy.url(), &script.target(), proxy.options(t))).await?)
}

/// Queue mode: the malformed capsule aborts the stream; `recv` ends and
/// `close_info` names the protocol error.
async fn malformed_address_assign_aborts(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let mut session = open(&proxy, t, IpScript::Malformed).await?;
    // A wait for an address ends with the tunnel, not at its limit.
    let started = std::time::Instant::now();
    let waited = session.wait_for(WAIT, |i| !i.assigned.is_empty()).await;
    assert!(matches!(waited, Err(ClientError::Closed)), "{waited:?}");
    assert!(started.elapsed() < WAIT / 2);
    match within(session.recv(WAIT)).await {
        Err(ClientError::Closed) => {}
        other => anyhow::bail!("expected the end of the tunnel, got {other:?}"),
    }
    let info = session.close_info().expect("closed");
    assert!(
        matches!(&info.reason, CloseReason::ProtocolError(m) if m.contains("R9484-24")),
        "{info:?}"
    );
    assert!(
        session.ip_info().assigned.is_empty(),
        "nothing was assigned"
    );
    assert!(matches!(
        session.request_addresses(&[masque_client::IpPrefix::new(
            std::net::Ipv4Addr::UNSPECIFIED.into(),
            32
        )?]),
        Err(ClientError::Closed)
    ));
    Ok(())
}

/// An owner actor that hands events to the test.
struct Owner;

impl Actor for Owner {
    type Msg = IpEvent;
    type State = mpsc::UnboundedSender<IpEvent>;
    type Arguments = mpsc::UnboundedSender<IpEvent>;

    async fn pre_start(
        &self,
        _me: ActorRef<IpEvent>,
        out: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(out)
    }

    async fn handle(
        &self,
        _me: ActorRef<IpEvent>,
        ev: IpEvent,
        out: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let _ = out.send(ev);
        Ok(())
    }
}

/// Active mode: the owner gets `Error` (the decoder's verdict) then `Closed`.
async fn malformed_capsule_reaches_the_owner(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let (tx, mut events) = mpsc::unbounded_channel();
    let (owner, handle) = Actor::spawn(None, Owner, tx).await?;
    // The proxy waits 200 ms before its malformed capsule: time to switch.
    let mut session = open(&proxy, t, IpScript::Malformed).await?;
    session.set_active(owner.clone());
    let mut got = Vec::new();
    while let Some(ev) = within(events.recv()).await {
        let last = matches!(ev, IpEvent::Closed(_));
        got.push(ev);
        if last {
            break;
        }
    }
    let Some(IpEvent::Closed(info)) = got.pop() else {
        anyhow::bail!("no Closed: {got:?}");
    };
    assert!(
        matches!(info.reason, CloseReason::ProtocolError(_)),
        "{info:?}"
    );
    assert_eq!(
        got,
        [IpEvent::Error(ConnectIpError::UnsupportedIpVersion(5))]
    );
    owner.stop(None);
    within(handle).await?;
    Ok(())
}

/// The proxy asks for an address (id 9): the client sees it pending, may
/// answer it (and only it) once, and the proxy's reply arrives.
async fn proxy_address_request_answered(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let session = open(&proxy, t, IpScript::Requests).await?;
    let info = session
        .wait_for(WAIT, |i| !i.peer_requests.is_empty())
        .await?;
    assert_eq!(info.peer_requests.len(), 1);
    assert_eq!(info.peer_requests[0].request_id, 9);
    let ten = AssignedAddress {
        request_id: 10,
        ip: "10.9.0.2".parse()?,
        prefix_len: 32,
    };
    assert!(matches!(
        session.assign_addresses(&[ten]),
        Err(ClientError::UnknownRequestId(10))
    ));
    let nine = AssignedAddress {
        request_id: 9,
        ..ten
    };
    session.assign_addresses(&[nine])?;
    assert!(session.ip_info().peer_requests.is_empty());
    // The proxy saw it and answers with an unprompted assignment.
    let info = session.wait_for(WAIT, |i| !i.assigned.is_empty()).await?;
    assert_eq!(info.assigned[0].ip, IpAddr::from([192, 0, 2, 99]));
    assert_eq!(info.assigned[0].request_id, 0);
    // Repeating the answer in a later complete set is fine; a refusal of a
    // request no longer outstanding is not.
    session.assign_addresses(&[nine])?;
    let refusal = AssignedAddress {
        request_id: 9,
        ip: "0.0.0.0".parse()?,
        prefix_len: 32,
    };
    assert!(matches!(
        session.assign_addresses(&[refusal]),
        Err(ClientError::UnknownRequestId(9))
    ));
    let closed = within(session.close()).await;
    assert_eq!(closed.reason, CloseReason::ProxyFinished);
    Ok(())
}
