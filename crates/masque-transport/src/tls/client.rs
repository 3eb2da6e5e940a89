//! Client-side configurations and server verification options.

use std::{fmt, path::Path, sync::Arc};

use rustls::{RootCertStore, client::danger::ServerCertVerifier, pki_types::CertificateDer};

use super::{
    TlsError, alpn_vec, format_fingerprint_colon, load_certs_pem_file, parse_pin, provider,
    verify::FixedVerifier,
};

/// How a client verifies the server's certificate.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum ServerVerification {
    /// Web PKI: chains to the Mozilla roots bundled by `webpki-roots`, valid
    /// now and for the server name. The default.
    #[default]
    WebPki,
    /// Like [`WebPki`](Self::WebPki), but trusting only these CA (or
    /// self-signed) certificates. See [`custom_ca_from_pem_file`](Self::custom_ca_from_pem_file).
    CustomCa(Vec<CertificateDer<'static>>),
    /// Accept exactly the end-entity certificate whose DER SHA-256 is this
    /// value, ignoring its names, validity period and issuer. The handshake
    /// signature is still verified. See [`parse_pin`](super::parse_pin).
    PinnedSha256([u8; 32]),
    /// Accept any certificate. Only for debugging; a warning is logged each
    /// time a configuration is built with it.
    InsecureSkipVerify,
}

impl ServerVerification {
    /// [`CustomCa`](Self::CustomCa) with every certificate of a PEM file.
    pub fn custom_ca_from_pem_file(path: &Path) -> Result<Self, TlsError> {
        Ok(Self::CustomCa(load_certs_pem_file(path)?))
    }

    /// [`PinnedSha256`](Self::PinnedSha256) from a hex fingerprint (see [`parse_pin`]).
    pub fn pinned_from_str(pin: &str) -> Result<Self, TlsError> {
        Ok(Self::PinnedSha256(parse_pin(pin)?))
    }
}

impl fmt::Debug for ServerVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WebPki => f.write_str("WebPki"),
            Self::CustomCa(certs) => write!(f, "CustomCa({} certificates)", certs.len()),
            Self::PinnedSha256(pin) => {
                write!(f, "PinnedSha256({})", format_fingerprint_colon(pin))
            }
            Self::InsecureSkipVerify => f.write_str("InsecureSkipVerify"),
        }
    }
}

/// A rustls client configuration for TCP (HTTP/2, HTTP/1.1): TLS 1.2 and
/// 1.3, the given ALPN protocols, server verification as chosen.
pub fn client_config(
    verification: &ServerVerification,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, TlsError> {
    build(
        verification,
        alpn,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
    )
}

/// A QUIC client configuration: TLS 1.3 only, the given ALPN protocols,
/// server verification as chosen, and the given transport settings.
pub fn quic_client_config(
    verification: &ServerVerification,
    alpn: &[&[u8]],
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ClientConfig, TlsError> {
    let tls = build(verification, alpn, &[&rustls::version::TLS13])?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(transport);
    Ok(cfg)
}

fn build(
    verification: &ServerVerification,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let builder =
        rustls::ClientConfig::builder_with_provider(provider).with_protocol_versions(versions)?;
    let builder = match verification {
        ServerVerification::WebPki => builder.with_root_certificates(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
        ServerVerification::CustomCa(certs) => {
            if certs.is_empty() {
                return Err(TlsError::EmptyCaList);
            }
            let mut roots = RootCertStore::empty();
            for (index, cert) in certs.iter().enumerate() {
                roots
                    .add(cert.clone())
                    .map_err(|source| TlsError::InvalidCa { index, source })?;
            }
            builder.with_root_certificates(roots)
        }
        ServerVerification::PinnedSha256(pin) => {
            let verifier: Arc<dyn ServerCertVerifier> = FixedVerifier::pinned(*pin, algorithms);
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
        }
        ServerVerification::InsecureSkipVerify => {
            tracing::warn!(
                "TLS server certificate verification is DISABLED (insecure-skip-verify): \
                 any server, including an attacker in the path, will be accepted"
            );
            let verifier: Arc<dyn ServerCertVerifier> = FixedVerifier::insecure(algorithms);
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
        }
    };
    let mut tls = builder.with_no_client_auth();
    tls.alpn_protocols = alpn_vec(alpn);
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{ALPN_H3, DevCert, dev_cert::tests::temp_dir};

    #[test]
    fn default_is_webpki() {
        assert_eq!(ServerVerification::default(), ServerVerification::WebPki);
        let cfg = client_config(&ServerVerification::default(), &[b"h2", b"http/1.1"]).unwrap();
        assert_eq!(
            cfg.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn empty_or_invalid_custom_ca_is_rejected() {
        let err = client_config(&ServerVerification::CustomCa(vec![]), &[ALPN_H3]).unwrap_err();
        assert!(matches!(err, TlsError::EmptyCaList), "{err}");
        let bogus = ServerVerification::CustomCa(vec![CertificateDer::from(vec![0x30, 0x00])]);
        let err = client_config(&bogus, &[ALPN_H3]).unwrap_err();
        assert!(matches!(err, TlsError::InvalidCa { index: 0, .. }), "{err}");
    }

    #[test]
    fn custom_ca_from_pem_file_and_pin_from_str() {
        let dir = temp_dir("ca-file");
        let dev = DevCert::load_or_generate(&dir).unwrap();
        let path = dev.cert_path().unwrap();
        let v = ServerVerification::custom_ca_from_pem_file(path).unwrap();
        assert_eq!(
            v,
            ServerVerification::CustomCa(vec![dev.cert_der().clone()])
        );
        let v = ServerVerification::pinned_from_str(&dev.fingerprint_sha256_colon()).unwrap();
        assert_eq!(
            v,
            ServerVerification::PinnedSha256(dev.fingerprint_sha256())
        );
        assert!(format!("{v:?}").contains(&dev.fingerprint_sha256_colon()));
        assert!(ServerVerification::pinned_from_str("abcd").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
