//! TCP tunnels against the in-test proxy's scripts ([`TcpScript`]): what the
//! node never shows. Unknown capsule types are skipped (CTCP-07); FINAL_DATA
//! is EOF; data after FINAL_DATA, a capsule cut short, a stream ending
//! without FINAL_DATA and a reset are errors, never a clean EOF (CTCP-04,
//! R9297-24, CTCP-22, CTCP-21); a connect-tcp 2xx without `capsule-protocol`
//! is refused. The request forms are checked as the proxy saw them.

use std::io::ErrorKind;

use masque_client::{
    ClientError, ProxyClient, Target, TcpMode, TcpStreamError, TcpTunnel, TcpTunnelEvent,
};
use masque_transport::Transport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    per_transport,
    proxy::{Mode, Proxy, TcpScript},
    within,
};

per_transport!(
    greased_stream_reads_through_unknown_capsules_to_eof,
    classic_bytes_and_fin,
    data_after_final_data_is_malformed,
    stream_end_without_final_data_is_connection_reset,
    truncated_capsule_is_invalid_data,
    reset_is_connection_reset_in_both_modes,
    connect_tcp_2xx_without_capsule_protocol_is_refused,
    request_forms,
    open_with_a_shared_connection_and_target_kinds,
);

async fn open(
    proxy: &Proxy,
    t: Transport,
    mode: TcpMode,
    script: TcpScript,
) -> Result<TcpTunnel, ClientError> {
    let client = within(ProxyClient::connect(&proxy.url(), proxy.options(t))).await?;
    within(client.open_tcp(&Target::tcp("127.0.0.1", script.port()), mode)).await
}

/// Reads to the end: the bytes, and the error if it ended with one.
async fn read_all(tunnel: &mut TcpTunnel) -> (Vec<u8>, Option<std::io::Error>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 3];
    loop {
        match within(tunnel.read(&mut buf)).await {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Some(e)),
        }
    }
}

fn typed(e: &std::io::Error) -> Option<&TcpStreamError> {
    e.get_ref().and_then(|e| e.downcast_ref::<TcpStreamError>())
}

/// CTCP-07: unknown capsule types around DATA / FINAL_DATA are skipped;
/// FINAL_DATA's payload is the last bytes, then EOF; after our shutdown the
/// stream ends cleanly (Closed(Ok)).
async fn greased_stream_reads_through_unknown_capsules_to_eof(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let tunnel = open(&proxy, t, TcpMode::ConnectTcp, TcpScript::Greased).await?;
    let (mut write, mut events) = tunnel.into_events(4);
    let mut got = Vec::new();
    loop {
        match within(events.recv()).await {
            Some(TcpTunnelEvent::Data(b)) => got.extend_from_slice(&b),
            Some(TcpTunnelEvent::Fin) => break,
            other => anyhow::bail!("{other:?}"),
        }
    }
    assert_eq!(got, b"hello world");
    within(write.shutdown()).await?;
    assert_eq!(
        within(events.recv()).await,
        Some(TcpTunnelEvent::Closed(Ok(())))
    );
    Ok(())
}

/// Classic CONNECT: the body is the byte stream, its end is EOF.
async fn classic_bytes_and_fin(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let mut tunnel = open(&proxy, t, TcpMode::Classic, TcpScript::Greased).await?;
    within(tunnel.shutdown()).await?;
    let (got, err) = read_all(&mut tunnel).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, b"hello world");
    Ok(())
}

/// CTCP-04: DATA after FINAL_DATA: the bytes up to FINAL_DATA and EOF have
/// been handed on, then the stream is malformed: Closed(Err(Malformed)).
async fn data_after_final_data_is_malformed(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let tunnel = open(&proxy, t, TcpMode::ConnectTcp, TcpScript::DataAfterFinal).await?;
    let (_write, mut events) = tunnel.into_events(4);
    let mut got = Vec::new();
    let last = loop {
        match within(events.recv()).await {
            Some(TcpTunnelEvent::Data(b)) => got.extend_from_slice(&b),
            Some(TcpTunnelEvent::Fin) => {}
            other => break other,
        }
    };
    assert_eq!(got, b"ab", "nothing after FINAL_DATA is data");
    assert!(
        matches!(
            last,
            Some(TcpTunnelEvent::Closed(Err(TcpStreamError::Malformed(_))))
        ),
        "{last:?}"
    );
    Ok(())
}

/// CTCP-22: a stream that ends without FINAL_DATA is a ConnectionReset
/// error after the bytes it carried, not EOF.
async fn stream_end_without_final_data_is_connection_reset(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let mut tunnel = open(&proxy, t, TcpMode::ConnectTcp, TcpScript::NoFinalData).await?;
    let (got, err) = read_all(&mut tunnel).await;
    assert_eq!(got, b"partial");
    let err = err.expect("an end without FINAL_DATA must be an error");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err:?}");
    assert_eq!(typed(&err), Some(&TcpStreamError::Abortive));
    Ok(())
}

/// R9297-24: a capsule cut short by the end of the stream is malformed.
async fn truncated_capsule_is_invalid_data(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let mut tunnel = open(&proxy, t, TcpMode::ConnectTcp, TcpScript::Truncated).await?;
    let (_, err) = read_all(&mut tunnel).await;
    let err = err.expect("a truncated capsule must be an error");
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err:?}");
    assert!(
        matches!(typed(&err), Some(TcpStreamError::Malformed(_))),
        "{err:?}"
    );
    Ok(())
}

/// CTCP-21: a reset (H3_CONNECT_ERROR, CONNECT_ERROR; HTTP/1.1: the
/// connection dropped) is ConnectionReset on both modes, after the bytes
/// before it.
async fn reset_is_connection_reset_in_both_modes(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    for mode in [TcpMode::ConnectTcp, TcpMode::Classic] {
        let mut tunnel = open(&proxy, t, mode, TcpScript::Reset).await?;
        let (got, err) = read_all(&mut tunnel).await;
        assert_eq!(got, b"x", "{mode:?}");
        let err = err.unwrap_or_else(|| panic!("{mode:?}: a reset must be an error"));
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{mode:?}: {err:?}");
        let expected = match t {
            Transport::H3 => TcpStreamError::Reset { code: 0x10f },
            Transport::H2 => TcpStreamError::Reset { code: 0xa },
            Transport::H1 => TcpStreamError::Abortive,
        };
        assert_eq!(typed(&err), Some(&expected), "{mode:?}");
    }
    Ok(())
}

/// A connect-tcp 2xx (101) without `capsule-protocol: ?1` is no tunnel.
async fn connect_tcp_2xx_without_capsule_protocol_is_refused(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let err = open(&proxy, t, TcpMode::ConnectTcp, TcpScript::NoCapsuleProtocol)
        .await
        .expect_err("no capsule-protocol");
    assert!(matches!(err, ClientError::InvalidResponse { .. }), "{err}");
    Ok(())
}

/// CTCP-02/08/14/16: connect-tcp on the default template with
/// `capsule-protocol: ?1`, with the interop tokens too; classic CONNECT
/// names the target in `:authority` / the request target.
async fn request_forms(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let port = TcpScript::Greased.port();
    for mode in [
        TcpMode::ConnectTcp,
        TcpMode::ConnectTcpToken(masque_client::tcp_codepoints::DRAFT_11),
        TcpMode::ConnectTcpToken(masque_client::tcp_codepoints::DRAFT_12),
        TcpMode::Classic,
    ] {
        let mut tunnel = open(&proxy, t, mode, TcpScript::Greased).await?;
        within(tunnel.shutdown()).await?;
        let (got, err) = read_all(&mut tunnel).await;
        assert!(err.is_none(), "{mode:?}: {err:?}");
        assert_eq!(got, b"hello world", "{mode:?}");
        let seen = proxy.seen().pop().expect("a request");
        assert_eq!(seen.transport, t);
        if mode == TcpMode::Classic {
            assert_eq!(seen.authority, format!("127.0.0.1:{port}"));
            assert_eq!(seen.capsule_protocol, None);
        } else {
            assert_eq!(
                seen.path,
                format!("/.well-known/masque/tcp/127.0.0.1/{port}/")
            );
            assert_eq!(seen.authority, format!("localhost:{}", proxy.addr.port()));
            assert_eq!(seen.capsule_protocol.as_deref(), Some("?1"));
        }
    }
    Ok(())
}

/// `TcpTunnel::open_with` on a connection obtained elsewhere; a UDP target
/// is refused before anything is sent (and a TCP target by `open_udp`).
async fn open_with_a_shared_connection_and_target_kinds(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let options = proxy.options(t);
    let client = within(ProxyClient::connect(&proxy.url(), options.clone())).await?;
    let authority = format!("localhost:{}", proxy.addr.port());
    let target = Target::tcp("127.0.0.1", TcpScript::Greased.port());
    let mut tunnel = within(TcpTunnel::open_with(
        client.client_connection(),
        &authority,
        &target,
        TcpMode::ConnectTcp,
        &options,
    ))
    .await?;
    within(tunnel.shutdown()).await?;
    let (got, err) = read_all(&mut tunnel).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, b"hello world");
    let requests = proxy.seen().len();
    let err = within(client.open_tcp(&Target::udp("127.0.0.1", 1001), TcpMode::ConnectTcp))
        .await
        .expect_err("a UDP target");
    assert!(matches!(err, ClientError::InvalidTarget { .. }), "{err}");
    let err = within(client.open_udp(&Target::tcp("127.0.0.1", 1001)))
        .await
        .expect_err("a TCP target");
    assert!(matches!(err, ClientError::InvalidTarget { .. }), "{err}");
    assert_eq!(proxy.seen().len(), requests, "nothing was sent");
    Ok(())
}
