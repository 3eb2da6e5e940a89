//! Server verification: pins, custom CA, Web PKI, on each transport.

use masque_client::{ClientError, ClientOptions, Target, TransportChoice, connect};
use masque_transport::{Transport, tls::ServerVerification};

use crate::{
    exchange, per_transport,
    proxy::{Mode, Proxy},
    within,
};

per_transport!(
    pinned_fingerprint_and_custom_ca_accept,
    wrong_pin_and_webpki_fail
);

fn with(verification: ServerVerification, t: Transport) -> ClientOptions {
    ClientOptions {
        verification,
        transport: TransportChoice::from(t),
        ..ClientOptions::default()
    }
}

async fn pinned_fingerprint_and_custom_ca_accept(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let target = Target::udp("192.0.2.6", 443);
    let pin = ServerVerification::pinned_from_str(&proxy.cert.fingerprint_sha256_colon())?;
    let ca = ServerVerification::CustomCa(vec![proxy.cert.cert_der().clone()]);
    for v in [pin, ca] {
        let mut s = within(connect(&proxy.url(), target.clone(), with(v, t))).await?;
        within(exchange(&mut s, b"tls", b"tls")).await?;
        s.close().await;
    }
    Ok(())
}

/// A certificate that does not verify fails the QUIC handshake (HTTP/3) or
/// the TLS handshake over TCP (HTTP/2; HTTP/1.1 when the tunnel dials).
async fn wrong_pin_and_webpki_fail(t: Transport) -> anyhow::Result<()> {
    let proxy = Proxy::start(Mode::Echo)?;
    let target = Target::udp("192.0.2.6", 443);
    for v in [
        ServerVerification::PinnedSha256([0x42; 32]),
        ServerVerification::WebPki,
    ] {
        let err = within(connect(&proxy.url(), target.clone(), with(v, t)))
            .await
            .unwrap_err();
        match t {
            Transport::H3 => assert!(matches!(err, ClientError::Connection(_)), "{err}"),
            _ => assert!(matches!(err, ClientError::Handshake(_)), "{err}"),
        }
        assert!(!err.is_config_error(), "{err}");
    }
    assert!(proxy.seen().is_empty());
    Ok(())
}
