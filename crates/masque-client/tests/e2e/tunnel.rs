//! Opening, using and closing tunnels.

use masque_client::{
    ClientError, ClientOptions, CloseReason, ProxyClient, Target, UdpSession, connect,
};

use crate::{
    exchange,
    proxy::{Mode, Proxy},
    within,
};

/// R9298-29, R9297-30: the request; R9298-39: payloads echo with Context ID 0.
#[tokio::test(flavor = "multi_thread")]
async fn connect_send_recv_echo() -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let target = Target::udp("192.0.2.6", 443);
    let mut s = within(connect(&proxy.url(), target, proxy.options())).await?;
    let info = s.info();
    assert_eq!(info.proxy, proxy.addr);
    assert_eq!(info.status, http::StatusCode::OK);
    assert_eq!(info.stream_id, 0);
    assert_eq!(info.headers["capsule-protocol"], "?1");
    assert!(
        (1100..=65527).contains(&info.max_payload_size),
        "{}",
        info.max_payload_size
    );
    within(exchange(&mut s, b"hello", b"hello")).await?;
    within(exchange(&mut s, b"", b"")).await?;
    let seen = proxy.seen();
    assert_eq!(seen[0].path, "/.well-known/masque/udp/192.0.2.6/443/");
    assert_eq!(
        seen[0].authority,
        format!("localhost:{}", proxy.addr.port())
    );
    assert_eq!(seen[0].capsule_protocol.as_deref(), Some("?1"));
    // Close: FIN, and the proxy's FIN comes back (not a timeout).
    let info = within(s.close()).await;
    assert_eq!(info.reason, CloseReason::ProxyFinished);
    Ok(())
}

/// R9298-11 (IPv6 percent-encoded) with a query template, given in the options
/// or as the proxy URL itself.
#[tokio::test(flavor = "multi_thread")]
async fn ipv6_target_with_query_template() -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let template = format!(
        "https://localhost:{}/masque{{?target_host,target_port}}",
        proxy.addr.port()
    );
    let options = ClientOptions {
        template: Some(template.clone()),
        ..proxy.options()
    };
    let target = Target::udp("2001:db8::42", 53);
    let mut s = within(connect(&proxy.url(), target.clone(), options)).await?;
    within(exchange(&mut s, b"v6", b"v6")).await?;
    s.close().await;
    let s = within(connect(&template, target, proxy.options())).await?;
    s.close().await;
    for seen in proxy.seen() {
        assert_eq!(
            seen.path,
            "/masque?target_host=2001%3Adb8%3A%3A42&target_port=53"
        );
    }
    assert_eq!(proxy.seen().len(), 2);
    Ok(())
}

/// R9297-31: DATAGRAM capsules on the stream are delivered; R9298-38: other
/// Context IDs are dropped and counted.
#[tokio::test(flavor = "multi_thread")]
async fn capsules_delivered_unknown_context_dropped() -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let target = Target::udp("192.0.2.6", 443);
    let mut s = within(connect(&proxy.url(), target, proxy.options())).await?;
    within(exchange(&mut s, b"capsule", b"from-capsule")).await?;
    assert!(s.stats().capsules_received >= 1);
    within(exchange(&mut s, b"unknown", b"after")).await?;
    assert!(s.stats().unknown_context_dropped >= 1, "{:?}", s.stats());
    s.close().await;
    Ok(())
}

/// R9298-41: a Context-ID-0 payload over 65527 bytes (here in a DATAGRAM
/// capsule) aborts the request stream.
#[tokio::test(flavor = "multi_thread")]
async fn oversize_capsule_aborts_stream() -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let target = Target::udp("192.0.2.6", 443);
    let mut s = within(connect(&proxy.url(), target, proxy.options())).await?;
    let mut ended = false;
    for _ in 0..20 {
        s.send(b"oversize").await?;
        let wait = tokio::time::timeout(std::time::Duration::from_millis(500), s.recv());
        if let Ok(None) = wait.await {
            ended = true;
            break;
        }
    }
    assert!(ended, "the tunnel did not end");
    let info = s.close_info().expect("ended");
    assert!(
        matches!(info.reason, CloseReason::ProtocolError(_)),
        "{info:?}"
    );
    assert!(matches!(s.send(b"late").await, Err(ClientError::Closed)));
    Ok(())
}

/// R9298-40: payloads over the current limit (or 65527) are refused by name.
#[tokio::test(flavor = "multi_thread")]
async fn payload_too_large_names_limit() -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let target = Target::udp("192.0.2.6", 443);
    let mut s = within(connect(&proxy.url(), target, proxy.options())).await?;
    let max = s.max_payload_size();
    let err = s.send(&vec![7; max + 1]).await.unwrap_err();
    match &err {
        ClientError::PayloadTooLarge { size, max: m } => assert_eq!((*size, *m), (max + 1, max)),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains(&max.to_string()), "{err}");
    let err = s.try_send(&vec![7; 65528]).unwrap_err();
    assert!(
        matches!(err, ClientError::PayloadTooLarge { size: 65528, .. }),
        "{err}"
    );
    // Exactly the limit fits.
    let full = vec![9; max];
    within(exchange(&mut s, &full, &full)).await?;
    s.close().await;
    Ok(())
}

/// The proxy's FIN ends `recv`; sending afterwards is refused.
#[tokio::test(flavor = "multi_thread")]
async fn proxy_fin_ends_tunnel() -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::CloseAfterFirst)?;
    let target = Target::udp("192.0.2.6", 443);
    let mut s = within(connect(&proxy.url(), target, proxy.options())).await?;
    s.send(b"once").await?;
    while within(s.recv()).await.is_some() {}
    let info = s.close_info().expect("ended");
    assert_eq!(info.reason, CloseReason::ProxyFinished);
    assert!(matches!(s.send(b"late").await, Err(ClientError::Closed)));
    Ok(())
}

/// 200 tunnels share one HTTP/3 connection via `UdpSession::open_on`.
#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_tunnels_on_one_connection() -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let client = within(ProxyClient::connect(&proxy.url(), proxy.options())).await?;
    let authority = format!("localhost:{}", proxy.addr.port());
    let options = proxy.options();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u16 {
        let conn = client.connection().clone();
        let (authority, options) = (authority.clone(), options.clone());
        tasks.spawn(async move {
            let target = Target::udp("192.0.2.7", 1000 + i);
            let mut s = UdpSession::open_on(&conn, &authority, &target, &options).await?;
            let msg = format!("tunnel {i}");
            exchange(&mut s, msg.as_bytes(), msg.as_bytes()).await?;
            Ok::<_, ClientError>(s)
        });
    }
    let mut sessions = Vec::new();
    while let Some(r) = within(tasks.join_next()).await {
        sessions.push(r??);
    }
    let mut ids: Vec<u64> = sessions.iter().map(|s| s.info().stream_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    assert_eq!(proxy.seen().len(), 200);
    for s in sessions {
        assert_eq!(within(s.close()).await.reason, CloseReason::ProxyFinished);
    }
    assert!(!client.is_closed());
    within(client.close()).await;
    assert!(client.is_closed());
    Ok(())
}
