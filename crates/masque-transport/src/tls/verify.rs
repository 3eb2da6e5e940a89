//! Custom server certificate verifiers: pinned fingerprint and insecure.
//!
//! Both still verify the handshake signature (TLS 1.2 and 1.3) with the
//! provider's algorithms, so the peer must hold the private key of the
//! certificate it presents.

use std::sync::Arc;

use rustls::{
    CertificateError, DigitallySignedStruct, Error, OtherError, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime},
};

use super::{fingerprint_sha256, format_fingerprint_colon};

/// The error inside the `rustls::Error` a pinned handshake fails with when
/// the server's certificate does not match the pin.
///
/// rustls reports it with `Debug` (`invalid peer certificate: Other(...)`),
/// so `Debug` shows the fingerprints as colon-separated hex too.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "server certificate SHA-256 {} does not match the pinned {}",
    format_fingerprint_colon(.actual),
    format_fingerprint_colon(.expected)
)]
pub struct PinMismatch {
    /// The pinned fingerprint.
    pub expected: [u8; 32],
    /// The fingerprint of the certificate the server presented.
    pub actual: [u8; 32],
}

impl std::fmt::Debug for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinMismatch")
            .field("expected", &format_fingerprint_colon(&self.expected))
            .field("actual", &format_fingerprint_colon(&self.actual))
            .finish()
    }
}

/// What a [`FixedVerifier`] accepts.
#[derive(Debug, Clone, Copy)]
enum Accept {
    /// Exactly the end-entity certificate whose DER has this SHA-256; name,
    /// validity period and issuer are not checked.
    Pinned([u8; 32]),
    /// Any certificate. Only built on explicit request.
    Any,
}

/// A server certificate verifier that does not walk a PKI: either a pinned
/// fingerprint or, on explicit request, anything. Handshake signatures are
/// verified either way.
#[derive(Debug)]
pub(super) struct FixedVerifier {
    accept: Accept,
    algorithms: WebPkiSupportedAlgorithms,
}

impl FixedVerifier {
    pub(super) fn pinned(pin: [u8; 32], algorithms: WebPkiSupportedAlgorithms) -> Arc<Self> {
        Arc::new(Self {
            accept: Accept::Pinned(pin),
            algorithms,
        })
    }

    pub(super) fn insecure(algorithms: WebPkiSupportedAlgorithms) -> Arc<Self> {
        Arc::new(Self {
            accept: Accept::Any,
            algorithms,
        })
    }
}

impl ServerCertVerifier for FixedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let actual = fingerprint_sha256(end_entity);
        match self.accept {
            Accept::Pinned(pin) if actual == pin => Ok(ServerCertVerified::assertion()),
            Accept::Pinned(expected) => {
                let mismatch = PinMismatch { expected, actual };
                tracing::debug!(%mismatch, "rejecting server certificate");
                Err(Error::InvalidCertificate(CertificateError::Other(
                    OtherError(Arc::new(mismatch)),
                )))
            }
            Accept::Any => {
                tracing::debug!(
                    server_name = ?server_name,
                    fingerprint_sha256 = %format_fingerprint_colon(&actual),
                    "accepting server certificate without verification"
                );
                Ok(ServerCertVerified::assertion())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{DevCert, provider};

    fn check(v: &dyn ServerCertVerifier, cert: &CertificateDer<'_>) -> Result<(), Error> {
        let name = ServerName::try_from("unrelated.example").unwrap();
        v.verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn pinned_verifier_matches_exact_certificate() {
        let algs = provider().signature_verification_algorithms;
        let a = DevCert::ephemeral().unwrap();
        let b = DevCert::ephemeral().unwrap();
        let v = FixedVerifier::pinned(a.fingerprint_sha256(), algs);
        check(&*v, a.cert_der()).unwrap();
        let err = check(&*v, b.cert_der()).unwrap_err();
        let Error::InvalidCertificate(CertificateError::Other(other)) = &err else {
            panic!("unexpected error {err:?}");
        };
        assert!(
            other.0.to_string().contains("does not match the pinned"),
            "{err}"
        );
        assert!(!v.supported_verify_schemes().is_empty());
    }

    #[test]
    fn insecure_verifier_accepts_anything() {
        let algs = provider().signature_verification_algorithms;
        let v = FixedVerifier::insecure(algs);
        check(&*v, DevCert::ephemeral().unwrap().cert_der()).unwrap();
        check(&*v, &CertificateDer::from(vec![1u8, 2, 3])).unwrap();
    }
}
