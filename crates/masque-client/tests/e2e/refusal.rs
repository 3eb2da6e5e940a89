//! Responses the client must refuse (R9298-22/31/32, R9297-20/25..27).

use masque_client::{ClientError, Target, connect};
use masque_proto::proxy_status::ProxyStatusError;
use masque_transport::Transport;

use crate::{
    per_transport,
    proxy::{Mode, PROXY_STATUS, Proxy},
    within,
};

per_transport!(
    refuses_2xx_with_content_length,
    refuses_2xx_without_capsule_protocol,
    non_2xx_names_status_and_proxy_status,
    invalid_target_is_not_sent,
);

async fn attempt(mode: Mode, t: Transport) -> anyhow::Result<ClientError> {
    let proxy = Proxy::start(mode)?;
    let target = Target::udp("192.0.2.6", 443);
    match within(connect(&proxy.url(), target, proxy.options(t))).await {
        Ok(_) => anyhow::bail!("{mode:?}: tunnel accepted"),
        Err(e) => Ok(e),
    }
}

/// R9297-20: a 2xx carrying content-length is not a tunnel.
///
/// On HTTP/1.1 hyper's server drops `Content-Length` from a 101 (RFC 9110
/// §8.6: a 1xx has no content), so this proxy cannot send one and the tunnel
/// opens; the client's check of a 101 with content fields is unit-tested
/// (`request::tests::h1_101_is_the_success_status`).
async fn refuses_2xx_with_content_length(t: Transport) -> anyhow::Result<()> {
    if t == Transport::H1 {
        let proxy = Proxy::start(Mode::ContentLength)?;
        let target = Target::udp("192.0.2.6", 443);
        let s = within(connect(&proxy.url(), target, proxy.options(t))).await?;
        assert!(!s.info().headers.contains_key("content-length"));
        return Ok(());
    }
    let err = attempt(Mode::ContentLength, t).await?;
    assert!(
        matches!(&err, ClientError::InvalidResponse { reason, .. } if reason.contains("content-length")),
        "{err}"
    );
    Ok(())
}

/// R9298-31, R9297-25..27: we sent capsule-protocol, so the 2xx must too.
async fn refuses_2xx_without_capsule_protocol(t: Transport) -> anyhow::Result<()> {
    let err = attempt(Mode::NoCapsuleProtocol, t).await?;
    assert!(
        matches!(&err, ClientError::InvalidResponse { reason, .. } if reason.contains("capsule-protocol")),
        "{err}"
    );
    Ok(())
}

/// R9298-22/32: a non-2xx names its status and the parsed Proxy-Status, on
/// every transport.
async fn non_2xx_names_status_and_proxy_status(t: Transport) -> anyhow::Result<()> {
    let err = attempt(Mode::Refuse, t).await?;
    let msg = err.to_string();
    let ClientError::Refused {
        status,
        proxy_status,
        details,
    } = err
    else {
        anyhow::bail!("{msg}");
    };
    assert_eq!(status, http::StatusCode::BAD_GATEWAY);
    assert_eq!(proxy_status.as_deref(), Some(PROXY_STATUS));
    assert_eq!(details[0].name, "masque-test");
    assert_eq!(
        details[0].error,
        Some(ProxyStatusError::DestinationIpProhibited)
    );
    assert!(
        msg.contains("502") && msg.contains("destination_ip_prohibited"),
        "{msg}"
    );
    Ok(())
}

/// R9298-10/12: an invalid target never reaches the proxy.
async fn invalid_target_is_not_sent(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    for target in [Target::udp("192.0.2.6", 0), Target::udp("", 53)] {
        let err = within(connect(&proxy.url(), target, proxy.options(t)))
            .await
            .unwrap_err();
        assert!(err.is_config_error(), "{err}");
    }
    assert!(proxy.seen().is_empty());
    Ok(())
}
