//! TLS configuration for masque: the one place that builds rustls and quinn
//! crypto configurations.
//!
//! * [`provider`] — the explicit `ring` [`CryptoProvider`] every configuration
//!   is built with. No process-wide default provider is ever installed.
//! * [`ServerTls`] — a certificate chain and private key (loaded from PEM
//!   files), turned into a QUIC server configuration (TLS 1.3 only) or a rustls
//!   server configuration for TCP listeners (TLS 1.2 and 1.3).
//! * [`DevCert`] — a self-signed development certificate for `localhost`,
//!   `127.0.0.1` and `::1`, persisted in a state directory and reused across
//!   runs, with its SHA-256 fingerprint for pinning.
//! * [`ServerVerification`] — how a client checks the server: Web PKI roots,
//!   a custom CA, a pinned certificate fingerprint, or (explicitly) nothing;
//!   turned into configurations by [`client_config`] and [`quic_client_config`].

mod client;
mod dev_cert;
mod pin;
mod server;
mod verify;

#[cfg(test)]
mod handshake_tests;
#[cfg(test)]
mod test_fixtures;

use std::{
    io,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use rustls::{
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer},
};

pub use client::{ServerVerification, client_config, quic_client_config};
pub use dev_cert::{DEV_CERT_FILE, DEV_KEY_FILE, DevCert};
pub use pin::{
    PinError, fingerprint_sha256, format_fingerprint_colon, format_fingerprint_hex, parse_pin,
};
pub use server::ServerTls;
pub use verify::PinMismatch;

/// ALPN protocol identifier of HTTP/3.
pub const ALPN_H3: &[u8] = b"h3";
/// ALPN protocol identifier of HTTP/2 over TLS.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol identifier of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Errors raised while loading key material or building TLS configurations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read, written or created.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        /// What was being done (`"reading"`, `"writing"`, ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// PEM input was malformed (bad base64, unterminated section, ...).
    #[error("malformed PEM in {origin}: {source}")]
    Pem {
        /// Where the PEM came from (a path, or a description).
        origin: String,
        /// The parser's error.
        #[source]
        source: io::Error,
    },
    /// PEM input contained no `CERTIFICATE` section.
    #[error("no PEM certificate found in {origin}")]
    NoCertificates {
        /// Where the PEM came from.
        origin: String,
    },
    /// PEM input contained no private key (PKCS#8, PKCS#1/RSA or SEC1).
    #[error("no PEM private key (PKCS#8, RSA or SEC1) found in {origin}")]
    NoPrivateKey {
        /// Where the PEM came from.
        origin: String,
    },
    /// The private key is unsupported by the crypto provider, or does not
    /// match the end-entity certificate.
    #[error("unusable certificate/private key pair from {origin}: {source}")]
    KeyPair {
        /// Where the key material came from.
        origin: String,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// A CA certificate could not be used as a trust anchor.
    #[error("CA certificate #{index} is not a usable trust anchor: {source}")]
    InvalidCa {
        /// Position of the certificate in the list (0-based).
        index: usize,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// [`ServerVerification::CustomCa`] was given no certificate.
    #[error("custom CA list is empty")]
    EmptyCaList,
    /// rustls rejected the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The rustls configuration cannot be used for QUIC.
    #[error("QUIC TLS configuration: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// Generating the development certificate failed.
    #[error("generating development certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A certificate pin could not be parsed.
    #[error("invalid certificate pin: {0}")]
    InvalidPin(#[from] PinError),
}

impl TlsError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        TlsError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The crypto provider (ring) that every configuration of this module uses.
///
/// The provider is passed explicitly to the rustls builders; this never
/// installs a process-wide default, so it cannot conflict with other crates
/// that do. The same `Arc` is returned on every call.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Reads all PEM certificates from `path`, in file order.
///
/// Other PEM sections (keys, CRLs, ...) are skipped. A file without any
/// certificate is an error ([`TlsError::NoCertificates`]).
pub fn load_certs_pem_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(path)?;
    parse_certs_pem(&bytes, &path.display().to_string())
}

/// Reads the first PEM private key (PKCS#8, PKCS#1/RSA or SEC1) from `path`.
pub fn load_private_key_pem_file(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file(path)?;
    parse_private_key_pem(&bytes, &path.display().to_string())
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::io("reading", path, e))
}

/// Parses all PEM certificates in `pem`; `origin` names the input in errors.
pub(crate) fn parse_certs_pem(
    pem: &[u8],
    origin: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut reader = pem;
    let certs = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            origin: origin.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates {
            origin: origin.to_owned(),
        });
    }
    Ok(certs)
}

/// Parses the first PEM private key in `pem`; `origin` names the input in errors.
pub(crate) fn parse_private_key_pem(
    pem: &[u8],
    origin: &str,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let mut reader = pem;
    rustls_pemfile::private_key(&mut reader)
        .map_err(|source| TlsError::Pem {
            origin: origin.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsError::NoPrivateKey {
            origin: origin.to_owned(),
        })
}

/// Copies an ALPN list into the owned form rustls wants.
fn alpn_vec(alpn: &[&[u8]]) -> Vec<Vec<u8>> {
    alpn.iter().map(|p| p.to_vec()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_is_shared_ring() {
        let a = provider();
        let b = provider();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!a.cipher_suites.is_empty());
        assert!(!a.signature_verification_algorithms.all.is_empty());
    }

    #[test]
    fn pem_without_certificates_is_rejected() {
        let err = parse_certs_pem(b"nothing here\n", "test").unwrap_err();
        assert!(matches!(err, TlsError::NoCertificates { .. }), "{err}");
        let err = parse_private_key_pem(b"", "test").unwrap_err();
        assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err}");
    }

    #[test]
    fn malformed_pem_is_rejected() {
        let pem = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let err = parse_certs_pem(pem, "test").unwrap_err();
        assert!(matches!(err, TlsError::Pem { .. }), "{err}");
    }

    #[test]
    fn missing_file_reports_path() {
        let path = Path::new("/nonexistent/masque/cert.pem");
        let err = load_certs_pem_file(path).unwrap_err();
        assert!(matches!(err, TlsError::Io { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/masque/cert.pem"));
    }
}
