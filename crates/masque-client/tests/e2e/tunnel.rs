//! Opening, using and closing tunnels, on each transport.

use masque_client::{
    ClientError, ClientOptions, CloseReason, ProxyClient, Target, UdpSession, connect,
};
use masque_transport::Transport;

use crate::{
    exchange, per_transport,
    proxy::{Mode, Proxy},
    within,
};

per_transport!(
    connect_send_recv_echo,
    ipv6_target_with_query_template,
    capsules_delivered_unknown_context_dropped,
    oversize_capsule_aborts_stream,
    payload_too_large_names_limit,
    proxy_fin_ends_tunnel,
    two_hundred_tunnels_on_one_client,
);

/// R9298-29, R9297-30: the request (R9298-24 on HTTP/1.1: a 101); R9298-39:
/// payloads echo with Context ID 0.
async fn connect_send_recv_echo(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let target = Target::udp("192.0.2.6", 443);
    let mut s = within(connect(&proxy.url(), target, proxy.options(t))).await?;
    let info = s.info();
    assert_eq!(info.proxy, proxy.addr);
    let (status, first_id) = match t {
        Transport::H3 => (http::StatusCode::OK, 0),
        Transport::H2 => (http::StatusCode::OK, 1),
        Transport::H1 => (http::StatusCode::SWITCHING_PROTOCOLS, 0),
    };
    assert_eq!(info.status, status);
    assert_eq!(info.stream_id, first_id);
    assert_eq!(info.headers["capsule-protocol"], "?1");
    let range = match t {
        // QUIC datagrams: the path's size.
        Transport::H3 => 1100..=65527,
        // One DATAGRAM capsule within the proxy's 64 KiB capsule bound.
        _ => 65000..=65527,
    };
    assert!(
        range.contains(&info.max_payload_size),
        "{}",
        info.max_payload_size
    );
    within(exchange(&mut s, b"hello", b"hello")).await?;
    within(exchange(&mut s, b"", b"")).await?;
    let seen = proxy.seen();
    assert_eq!(seen[0].transport, t);
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
async fn ipv6_target_with_query_template(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let template = format!(
        "https://localhost:{}/masque{{?target_host,target_port}}",
        proxy.addr.port()
    );
    let options = ClientOptions {
        template: Some(template.clone()),
        ..proxy.options(t)
    };
    let target = Target::udp("2001:db8::42", 53);
    let mut s = within(connect(&proxy.url(), target.clone(), options)).await?;
    within(exchange(&mut s, b"v6", b"v6")).await?;
    s.close().await;
    let s = within(connect(&template, target, proxy.options(t))).await?;
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

/// R9297-31: DATAGRAM capsules on the stream are delivered (on HTTP/3 beside
/// QUIC datagrams); R9298-38: other Context IDs are dropped and counted.
async fn capsules_delivered_unknown_context_dropped(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let target = Target::udp("192.0.2.6", 443);
    let mut s = within(connect(&proxy.url(), target, proxy.options(t))).await?;
    within(exchange(&mut s, b"capsule", b"from-capsule")).await?;
    assert!(s.stats().capsules_received >= 1);
    within(exchange(&mut s, b"unknown", b"after")).await?;
    assert!(s.stats().unknown_context_dropped >= 1, "{:?}", s.stats());
    s.close().await;
    Ok(())
}

/// R9298-41: a Context-ID-0 payload over 65527 bytes (here in a DATAGRAM
/// capsule) aborts the request stream.
async fn oversize_capsule_aborts_stream(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let target = Target::udp("192.0.2.6", 443);
    let mut s = within(connect(&proxy.url(), target, proxy.options(t))).await?;
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
async fn payload_too_large_names_limit(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let target = Target::udp("192.0.2.6", 443);
    let mut s = within(connect(&proxy.url(), target, proxy.options(t))).await?;
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
async fn proxy_fin_ends_tunnel(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::CloseAfterFirst)?;
    let target = Target::udp("192.0.2.6", 443);
    let mut s = within(connect(&proxy.url(), target, proxy.options(t))).await?;
    s.send(b"once").await?;
    while within(s.recv()).await.is_some() {}
    let info = s.close_info().expect("ended");
    assert_eq!(info.reason, CloseReason::ProxyFinished);
    assert!(matches!(s.send(b"late").await, Err(ClientError::Closed)));
    Ok(())
}

/// 200 tunnels on one client: one HTTP/3 or HTTP/2 connection, one connection
/// per tunnel on HTTP/1.1 (`UdpSession::open_with`).
async fn two_hundred_tunnels_on_one_client(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let client = within(ProxyClient::connect(&proxy.url(), proxy.options(t))).await?;
    assert_eq!(client.transport(), t);
    assert_eq!(client.h3_connection().is_some(), t == Transport::H3);
    let authority = format!("localhost:{}", proxy.addr.port());
    let options = proxy.options(t);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u16 {
        let conn = client.client_connection().clone();
        let (authority, options) = (authority.clone(), options.clone());
        tasks.spawn(async move {
            let target = Target::udp("192.0.2.7", 1000 + i);
            let mut s = UdpSession::open_with(&conn, &authority, &target, &options).await?;
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

/// `UdpSession::open_on` shares a `masque_h3::Connection` (HTTP/3 only).
#[tokio::test(flavor = "multi_thread")]
async fn open_on_shares_an_h3_connection() -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let options = proxy.options(Transport::H3);
    let client = within(ProxyClient::connect(&proxy.url(), options.clone())).await?;
    let conn = anyhow::Context::context(client.h3_connection(), "HTTP/3")?.clone();
    let authority = format!("localhost:{}", proxy.addr.port());
    let mut sessions = Vec::new();
    for i in 0..3u16 {
        let target = Target::udp("192.0.2.7", 1000 + i);
        let mut s = within(UdpSession::open_on(&conn, &authority, &target, &options)).await?;
        within(exchange(&mut s, b"shared", b"shared")).await?;
        assert_eq!(
            s.h3_connection().map(|c| c.quic().stable_id()),
            Some(conn.quic().stable_id())
        );
        sessions.push(s);
    }
    assert_eq!(conn.active_requests(), 3);
    for s in sessions {
        assert_eq!(within(s.close()).await.reason, CloseReason::ProxyFinished);
    }
    within(client.close()).await;
    Ok(())
}
