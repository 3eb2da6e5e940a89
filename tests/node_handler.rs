//! The `Handler` contract end to end, with a scripted handler in place of
//! UdpProxy: output queued before the 2xx arrives in order after it, panics
//! in `init` are a 502 and after `init` a reset with `terminate` run once,
//! capsules of unknown types reach the handler, and tasks a handler runs with
//! `TunnelOutput::spawn` live and die with their tunnel.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result};
use bytes::Bytes;
use masque_client::Target;
use masque_proto::capsule::{self, Capsule};
use masque_server::{
    Action, CloseReason, Handler, Refusal, Target as ServerTarget, TunnelHandler, TunnelOutput,
    TunnelTask,
};
use masque_tests::{
    init_tracing,
    node::{TestNode, eventually, expect_refusal},
    within,
};
use masque_transport::TunnelRequest;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Script {
    /// `init` sends three datagrams before returning; the tunnel echoes.
    EarlyOutput,
    PanicInInit,
    PanicOnDatagram,
    /// `init` spawns (with `TunnelOutput::spawn`) a ticker that sends
    /// "tick" every 20 ms.
    Ticker,
    /// `init` spawns a task that, at the client's first datagram, sends
    /// "last words" and panics.
    PanicInTask,
}

/// What the handler saw, in order.
type Log = Arc<Mutex<Vec<String>>>;

struct Scripted {
    script: Script,
    log: Log,
}

fn note(log: &Log, what: String) {
    log.lock().unwrap_or_else(|p| p.into_inner()).push(what);
}

#[async_trait::async_trait]
impl Handler for Scripted {
    async fn init(
        &self,
        request: &TunnelRequest,
        _target: &ServerTarget,
        out: TunnelOutput,
    ) -> Result<Box<dyn TunnelHandler>, Refusal> {
        if request.headers.contains_key("proxy-authorization") {
            note(&self.log, "init saw proxy-authorization".into());
        }
        match self.script {
            Script::PanicInInit => panic!("scripted panic in init"),
            Script::EarlyOutput => {
                for p in [&b"early-1"[..], b"early-2", b"early-3"] {
                    out.send_datagram(0, p)
                        .await
                        .expect("queued before the 2xx");
                }
            }
            Script::PanicOnDatagram => {}
            Script::Ticker => {
                let (ticker_out, log) = (out.clone(), Arc::clone(&self.log));
                let ticker = out.spawn(async move {
                    let _dropped = NoteOnDrop(log, "ticker dropped");
                    if !ticker_out.opened().await {
                        return;
                    }
                    loop {
                        let _ = ticker_out.send_datagram(0, b"tick").await;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                });
                return Ok(Box::new(Tunnel {
                    script: self.script,
                    out,
                    log: Arc::clone(&self.log),
                    trigger: None,
                    _tasks: vec![ticker],
                }));
            }
            Script::PanicInTask => {
                let (trigger, mut go) = tokio::sync::mpsc::channel::<()>(1);
                let task_out = out.clone();
                let task = out.spawn(async move {
                    if go.recv().await.is_some() {
                        let _ = task_out.send_datagram(0, b"last words").await;
                        panic!("scripted panic in a spawned task");
                    }
                });
                return Ok(Box::new(Tunnel {
                    script: self.script,
                    out,
                    log: Arc::clone(&self.log),
                    trigger: Some(trigger),
                    _tasks: vec![task],
                }));
            }
        }
        Ok(Box::new(Tunnel {
            script: self.script,
            out,
            log: Arc::clone(&self.log),
            trigger: None,
            _tasks: Vec::new(),
        }))
    }
}

struct Tunnel {
    script: Script,
    out: TunnelOutput,
    log: Log,
    /// `PanicInTask`: a client datagram sets the spawned task off.
    trigger: Option<tokio::sync::mpsc::Sender<()>>,
    /// Aborted when the tunnel (this handler) goes.
    _tasks: Vec<TunnelTask>,
}

/// Notes `.1` in the log when dropped.
struct NoteOnDrop(Log, &'static str);

impl Drop for NoteOnDrop {
    fn drop(&mut self) {
        note(&self.0, self.1.to_owned());
    }
}

impl TunnelHandler for Tunnel {
    fn datagram(&mut self, context_id: u64, payload: Bytes) -> Action {
        if self.script == Script::PanicOnDatagram {
            panic!("scripted panic on a datagram");
        }
        if let Some(trigger) = &self.trigger {
            let _ = trigger.try_send(());
            return Action::Continue;
        }
        note(&self.log, format!("datagram {context_id}"));
        let out = self.out.clone();
        tokio::spawn(async move {
            let _ = out.send_datagram(0, &payload).await;
        });
        Action::Continue
    }

    fn capsule(&mut self, capsule: Capsule) -> Action {
        note(
            &self.log,
            format!("capsule {:#x} {:?}", capsule.ty, capsule.value),
        );
        Action::Continue
    }

    fn terminate(&mut self, reason: &CloseReason) {
        note(&self.log, format!("terminate {reason:?}"));
    }
}

async fn node(script: Script) -> Result<(TestNode, Log)> {
    init_tracing();
    let log = Log::default();
    let handler = Scripted {
        script,
        log: Arc::clone(&log),
    };
    Ok((TestNode::with_handler(Arc::new(handler)).await?, log))
}

fn target() -> Target {
    Target::Udp {
        host: "192.0.2.1".into(),
        port: 9,
    }
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The tunnel ends as for a handler panic: reset with H3_INTERNAL_ERROR, the
/// session closed, `terminate(HandlerPanic)` the only entry, one panic counted.
async fn ends_as_handler_panic(
    s: &mut masque_client::UdpSession,
    node: &TestNode,
    log: &Log,
) -> Result<()> {
    let end = tokio::time::timeout(Duration::from_secs(5), s.recv())
        .await
        .context("the tunnel did not end")?;
    assert!(end.is_none(), "the tunnel ends");
    let info = s.close_info().context("close reason")?;
    assert_eq!(
        info.reason,
        masque_client::CloseReason::Reset(masque_h3::Code::INTERNAL_ERROR.0),
        "{info:?}"
    );
    let m = node.node.metrics();
    eventually("session closed", Duration::from_secs(5), || {
        m.active_sessions() == 0
    })
    .await?;
    assert_eq!(entries(log), vec!["terminate HandlerPanic".to_owned()]);
    assert_eq!(m.snapshot().handler_panics, 1);
    Ok(())
}

/// Output produced before the 2xx is queued and flushed in order after it
/// (issue: "Handler output produced before the 2xx is queued and flushed in
/// order after it"); then the tunnel works, and `terminate` runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_before_the_2xx_arrives_in_order_after_it() -> Result<()> {
    let (node, log) = node(Script::EarlyOutput).await?;
    let mut s = masque_client::connect(&node.url(), target(), node.client_options()).await?;
    for want in [&b"early-1"[..], b"early-2", b"early-3"] {
        let got = tokio::time::timeout(Duration::from_secs(5), s.recv())
            .await
            .context("early datagram never arrived")?
            .context("tunnel ended")?;
        assert_eq!(&got[..], want);
    }
    s.send(b"ping").await?;
    let back = tokio::time::timeout(Duration::from_secs(5), s.recv())
        .await?
        .context("tunnel ended")?;
    assert_eq!(&back[..], b"ping");
    s.close().await;
    let m = node.node.metrics();
    eventually("session closed", Duration::from_secs(5), || {
        m.active_sessions() == 0
    })
    .await?;
    assert_eq!(
        entries(&log),
        vec!["datagram 0".to_owned(), "terminate ClientClosed".to_owned()]
    );
    node.node.shutdown().await;
    Ok(())
}

/// A panic in `init` is a 502 + proxy_internal_error; the node stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_panic_in_init_is_502() -> Result<()> {
    let (node, _log) = node(Script::PanicInInit).await?;
    for _ in 0..2 {
        let opened = masque_client::connect(&node.url(), target(), node.client_options()).await;
        expect_refusal(opened, 502, "proxy_internal_error")?;
    }
    let snap = node.node.metrics().snapshot();
    assert_eq!(snap.handler_panics, 2);
    assert_eq!(snap.sessions_opened, snap.sessions_closed);
    node.node.shutdown().await;
    Ok(())
}

/// A panic in a callback after `init` resets the stream (H3_INTERNAL_ERROR),
/// runs `terminate` with `HandlerPanic`, and leaves the connection usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_panic_after_init_resets_and_terminates() -> Result<()> {
    let (node, log) = node(Script::PanicOnDatagram).await?;
    let client = masque_client::ProxyClient::connect(&node.url(), node.client_options()).await?;
    let mut s = client.open_udp(&target()).await?;
    s.send(b"boom").await?;
    ends_as_handler_panic(&mut s, &node, &log).await?;
    // The connection carries on: another tunnel opens.
    let again = client.open_udp(&target()).await?;
    again.close().await;
    node.node.shutdown().await;
    Ok(())
}

/// Unknown capsule types reach `TunnelHandler::capsule`; DATAGRAM capsules are
/// datagrams (R9297-31).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_capsules_reach_the_handler() -> Result<()> {
    let (node, log) = node(Script::EarlyOutput).await?;
    let client = masque_client::ProxyClient::connect(&node.url(), node.client_options()).await?;
    let mut head = masque_tests::extended_connect(
        "connect-udp",
        &format!("localhost:{}", node.node.local_addr().port()),
        "/.well-known/masque/udp/192.0.2.1/9/",
    );
    head.headers
        .insert("capsule-protocol", http::HeaderValue::from_static("?1"));
    let mut stream = client
        .h3_connection()
        .context("HTTP/3")?
        .open_request(&head, true)
        .await?;
    let resp = within("tunnel response", stream.recv_response()).await??;
    assert_eq!(resp.status, 200);
    let mut body = Vec::new();
    for (ty, value) in [
        (0x2au64, &b"unknown"[..]),
        (capsule::DATAGRAM, b"\x00via-capsule"),
    ] {
        capsule::encode_header(ty, value.len(), &mut body);
        body.extend_from_slice(value);
    }
    stream.send.send_data(body.into()).await?;
    let want = vec![
        "capsule 0x2a b\"unknown\"".to_owned(),
        "datagram 0".to_owned(),
    ];
    eventually("handler saw both capsules", Duration::from_secs(5), || {
        entries(&log) == want
    })
    .await?;
    stream.send.finish()?;
    let m = node.node.metrics();
    eventually("session closed", Duration::from_secs(5), || {
        m.active_sessions() == 0
    })
    .await?;
    assert_eq!(
        entries(&log).last().map(String::as_str),
        Some("terminate ClientClosed")
    );
    node.node.shutdown().await;
    Ok(())
}

/// A task spawned with `TunnelOutput::spawn` (in the connection's task group)
/// runs while its tunnel lives and is dropped with the tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_tasks_live_and_end_with_their_tunnel() -> Result<()> {
    let (node, log) = node(Script::Ticker).await?;
    let mut s = masque_client::connect(&node.url(), target(), node.client_options()).await?;
    for _ in 0..3 {
        let got = tokio::time::timeout(Duration::from_secs(5), s.recv())
            .await
            .context("no tick")?
            .context("tunnel ended")?;
        assert_eq!(&got[..], b"tick");
    }
    s.close().await;
    let m = node.node.metrics();
    eventually("session closed", Duration::from_secs(5), || {
        m.active_sessions() == 0
    })
    .await?;
    eventually("ticker dropped", Duration::from_secs(5), || {
        entries(&log).iter().any(|e| e == "ticker dropped")
    })
    .await?;
    assert_eq!(
        entries(&log),
        vec![
            "terminate ClientClosed".to_owned(),
            "ticker dropped".to_owned()
        ]
    );
    node.node.shutdown().await;
    Ok(())
}

/// A panic in a task spawned with `TunnelOutput::spawn` is a handler panic:
/// output it queued first still arrives, then the stream is reset
/// (H3_INTERNAL_ERROR), `terminate` sees `HandlerPanic`, it is counted, and
/// the connection's other tunnels carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_task_panic_ends_its_tunnel_only() -> Result<()> {
    let (node, log) = node(Script::PanicInTask).await?;
    let client = masque_client::ProxyClient::connect(&node.url(), node.client_options()).await?;
    let mut s = client.open_udp(&target()).await?;
    s.send(b"go").await?;
    let got = tokio::time::timeout(Duration::from_secs(5), s.recv())
        .await
        .context("no last words")?
        .context("tunnel ended before its last words")?;
    assert_eq!(&got[..], b"last words");
    ends_as_handler_panic(&mut s, &node, &log).await?;
    // The connection and its task group carry on: another tunnel works.
    let mut again = client.open_udp(&target()).await?;
    again.send(b"go").await?;
    let words = tokio::time::timeout(Duration::from_secs(5), again.recv())
        .await
        .context("no last words on the second tunnel")?;
    assert_eq!(words.as_deref(), Some(&b"last words"[..]));
    node.node.shutdown().await;
    Ok(())
}

/// R9298-52: the credentials are the node's business. With bearer tokens
/// configured, a handler serving an authenticated request never sees its
/// `Proxy-Authorization` field (so it cannot log it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_never_see_proxy_credentials() -> Result<()> {
    init_tracing();
    const TOKEN: &str = "handler-test-token-0123456789";
    let log = Log::default();
    let handler = Scripted {
        script: Script::EarlyOutput,
        log: Arc::clone(&log),
    };
    let node = TestNode::with_handler_config(Arc::new(handler), |c| {
        c.auth = masque_server::ProxyAuth::bearer_tokens([TOKEN]).expect("valid token");
    })
    .await?;
    let options = node.client_options().with_bearer_token(TOKEN)?;
    let mut s = masque_client::connect(&node.url(), target(), options).await?;
    let first = tokio::time::timeout(Duration::from_secs(5), s.recv())
        .await
        .context("no early datagram")?
        .context("tunnel ended")?;
    assert_eq!(&first[..], b"early-1", "the tunnel was served");
    s.close().await;
    let m = node.node.metrics();
    eventually("session closed", Duration::from_secs(5), || {
        m.active_sessions() == 0
    })
    .await?;
    assert!(
        !entries(&log)
            .iter()
            .any(|e| e.contains("proxy-authorization")),
        "{:?}",
        entries(&log)
    );
    node.node.shutdown().await;
    Ok(())
}
