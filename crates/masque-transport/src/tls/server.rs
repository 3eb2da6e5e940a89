//! Server-side key material and configurations.

use std::{fmt, path::Path, sync::Arc};

use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer},
    sign::CertifiedKey,
};

use super::{
    TlsError, alpn_vec, fingerprint_sha256, load_certs_pem_file, load_private_key_pem_file,
    parse_certs_pem, parse_private_key_pem, provider,
};

/// A server certificate chain and its private key, checked to be usable
/// with [`provider()`](super::provider) and to match each other.
///
/// The private key is never printed by `Debug`.
pub struct ServerTls {
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl ServerTls {
    /// Loads a PEM certificate chain (end-entity first) and a PEM private key
    /// (PKCS#8, PKCS#1/RSA or SEC1) from files.
    pub fn from_pem_files(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let cert_chain = load_certs_pem_file(cert_path)?;
        let key = load_private_key_pem_file(key_path)?;
        Self::checked(
            cert_chain,
            key,
            format!("{} + {}", cert_path.display(), key_path.display()),
        )
    }

    /// Like [`from_pem_files`](Self::from_pem_files), from in-memory PEM.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let cert_chain = parse_certs_pem(cert_pem, "certificate PEM")?;
        let key = parse_private_key_pem(key_pem, "private key PEM")?;
        Self::checked(cert_chain, key, "in-memory PEM".to_owned())
    }

    /// From DER values: `cert_chain` must be non-empty, end-entity first.
    pub fn from_der(
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        Self::checked(cert_chain, key, "DER key material".to_owned())
    }

    fn checked(
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        origin: String,
    ) -> Result<Self, TlsError> {
        if cert_chain.is_empty() {
            return Err(TlsError::NoCertificates { origin });
        }
        // Parses the key with the provider and compares its public key with
        // the end-entity certificate's (when the key type allows it).
        CertifiedKey::from_der(cert_chain.clone(), key.clone_key(), &provider())
            .map_err(|source| TlsError::KeyPair { origin, source })?;
        Ok(Self { cert_chain, key })
    }

    /// The certificate chain, end-entity first.
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.cert_chain
    }

    /// The end-entity certificate.
    pub fn end_entity(&self) -> &CertificateDer<'static> {
        // Construction guarantees a non-empty chain.
        &self.cert_chain[0]
    }

    /// SHA-256 of the end-entity certificate's DER — the value a client pins
    /// with [`ServerVerification::PinnedSha256`](super::ServerVerification::PinnedSha256).
    pub fn fingerprint_sha256(&self) -> [u8; 32] {
        fingerprint_sha256(self.end_entity())
    }

    /// A QUIC server configuration: TLS 1.3 only, the given ALPN protocols,
    /// no 0-RTT (`max_early_data_size = 0`) and the given transport settings.
    pub fn quic_server_config(
        &self,
        alpn: &[&[u8]],
        transport: Arc<quinn::TransportConfig>,
    ) -> Result<quinn::ServerConfig, TlsError> {
        let tls = self.build(&[&rustls::version::TLS13], alpn)?;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
        let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        cfg.transport_config(transport);
        Ok(cfg)
    }

    /// A rustls server configuration for TCP listeners (HTTP/2, HTTP/1.1):
    /// TLS 1.2 and 1.3, the given ALPN protocols, no 0-RTT.
    pub fn rustls_server_config(&self, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, TlsError> {
        self.build(&[&rustls::version::TLS13, &rustls::version::TLS12], alpn)
    }

    /// The rustls configuration for `versions`; 0-RTT disabled.
    pub(super) fn build(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Result<rustls::ServerConfig, TlsError> {
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_single_cert(self.cert_chain.clone(), self.key.clone_key())?;
        tls.alpn_protocols = alpn_vec(alpn);
        tls.max_early_data_size = 0;
        Ok(tls)
    }
}

impl Clone for ServerTls {
    fn clone(&self) -> Self {
        Self {
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("chain_len", &self.cert_chain.len())
            .field(
                "fingerprint_sha256",
                &super::format_fingerprint_colon(&self.fingerprint_sha256()),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DevCert, test_fixtures::*};
    use super::*;

    #[test]
    fn loads_pkcs8_rsa_and_sec1_keys() {
        // rcgen writes PKCS#8.
        let dev = DevCert::ephemeral().unwrap();
        let tls = ServerTls::from_pem(dev.cert_pem().as_bytes(), dev.key_pem().as_bytes()).unwrap();
        assert_eq!(tls.fingerprint_sha256(), dev.fingerprint_sha256());
        assert!(matches!(tls.key, PrivateKeyDer::Pkcs8(_)));

        let rsa = ServerTls::from_pem(RSA_CERT.as_bytes(), RSA_PKCS1_KEY.as_bytes()).unwrap();
        assert!(matches!(rsa.key, PrivateKeyDer::Pkcs1(_)));
        rsa.rustls_server_config(&[b"h2"]).unwrap();

        let ec = ServerTls::from_pem(EC_CERT.as_bytes(), EC_SEC1_KEY.as_bytes()).unwrap();
        assert!(matches!(ec.key, PrivateKeyDer::Sec1(_)));
        ec.quic_server_config(&[b"h3"], Arc::default()).unwrap();
    }

    #[test]
    fn rejects_mismatched_key() {
        let err = ServerTls::from_pem(RSA_CERT.as_bytes(), EC_SEC1_KEY.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::KeyPair { .. }), "{err}");
        let a = DevCert::ephemeral().unwrap();
        let b = DevCert::ephemeral().unwrap();
        let err = ServerTls::from_pem(a.cert_pem().as_bytes(), b.key_pem().as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::KeyPair { .. }), "{err}");
    }

    #[test]
    fn configs_have_expected_settings() {
        let tls = DevCert::ephemeral().unwrap().server_tls();
        let cfg = tls.rustls_server_config(&[b"h2", b"http/1.1"]).unwrap();
        assert_eq!(
            cfg.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert_eq!(cfg.max_early_data_size, 0);
        assert!(format!("{tls:?}").contains("fingerprint_sha256"));
        assert!(!format!("{tls:?}").contains("key:"));
    }

    #[test]
    fn from_files() {
        let dir = super::super::dev_cert::tests::temp_dir("server-files");
        let cert = dir.join("c.pem");
        let key = dir.join("k.pem");
        std::fs::write(&cert, EC_CERT).unwrap();
        std::fs::write(&key, EC_SEC1_KEY).unwrap();
        let tls = ServerTls::from_pem_files(&cert, &key).unwrap();
        assert_eq!(tls.cert_chain().len(), 1);
        let err = ServerTls::from_pem_files(&key, &key).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificates { .. }), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
