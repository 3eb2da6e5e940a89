//! Responses the client must refuse (R9298-22/31/32, R9297-20/25..27).

use masque_client::{ClientError, Target, connect};
use masque_proto::proxy_status::ProxyStatusError;

use crate::{
    proxy::{Mode, PROXY_STATUS, Proxy},
    within,
};

async fn attempt(mode: Mode) -> anyhow::Result<ClientError> {
    let proxy = Proxy::start(mode)?;
    let target = Target::udp("192.0.2.6", 443);
    match within(connect(&proxy.url(), target, proxy.options())).await {
        Ok(_) => anyhow::bail!("{mode:?}: tunnel accepted"),
        Err(e) => Ok(e),
    }
}

/// R9297-20: a 2xx carrying content-length is not a tunnel.
#[tokio::test(flavor = "multi_thread")]
async fn refuses_2xx_with_content_length() -> anyhow::Result<()> {
    let err = attempt(Mode::ContentLength).await?;
    assert!(
        matches!(&err, ClientError::InvalidResponse { reason, .. } if reason.contains("content-length")),
        "{err}"
    );
    Ok(())
}

/// R9298-31, R9297-25..27: we sent capsule-protocol, so the 2xx must too.
#[tokio::test(flavor = "multi_thread")]
async fn refuses_2xx_without_capsule_protocol() -> anyhow::Result<()> {
    let err = attempt(Mode::NoCapsuleProtocol).await?;
    assert!(
        matches!(&err, ClientError::InvalidResponse { reason, .. } if reason.contains("capsule-protocol")),
        "{err}"
    );
    Ok(())
}

/// R9298-22/32: a non-2xx names its status and the parsed Proxy-Status.
#[tokio::test(flavor = "multi_thread")]
async fn non_2xx_names_status_and_proxy_status() -> anyhow::Result<()> {
    let err = attempt(Mode::Refuse).await?;
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
#[tokio::test(flavor = "multi_thread")]
async fn invalid_target_is_not_sent() -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    for target in [Target::udp("192.0.2.6", 0), Target::udp("", 53)] {
        let err = within(connect(&proxy.url(), target, proxy.options()))
            .await
            .unwrap_err();
        assert!(err.is_config_error(), "{err}");
    }
    assert!(proxy.seen().is_empty());
    Ok(())
}
