//! Server verification: pins, custom CA, Web PKI.

use masque_client::{ClientError, ClientOptions, Target, connect};
use masque_transport::tls::ServerVerification;

use crate::{
    exchange,
    proxy::{Mode, Proxy},
    within,
};

fn with(verification: ServerVerification) -> ClientOptions {
    ClientOptions {
        verification,
        ..ClientOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pinned_fingerprint_and_custom_ca_accept() -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let target = Target::udp("192.0.2.6", 443);
    let pin = ServerVerification::pinned_from_str(&proxy.cert.fingerprint_sha256_colon())?;
    let ca = ServerVerification::CustomCa(vec![proxy.cert.cert_der().clone()]);
    for v in [pin, ca] {
        let mut s = within(connect(&proxy.url(), target.clone(), with(v))).await?;
        within(exchange(&mut s, b"tls", b"tls")).await?;
        s.close().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_pin_and_webpki_fail() -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let target = Target::udp("192.0.2.6", 443);
    for v in [
        ServerVerification::PinnedSha256([0x42; 32]),
        ServerVerification::WebPki,
    ] {
        let err = within(connect(&proxy.url(), target.clone(), with(v)))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Connection(_)), "{err}");
    }
    assert!(proxy.seen().is_empty());
    Ok(())
}
