//! The self-signed development certificate, persisted in a state directory.

use std::{
    fs, io,
    io::Write,
    path::{Path, PathBuf},
};

use rustls::pki_types::CertificateDer;

use super::{ServerTls, TlsError, format_fingerprint_colon, format_fingerprint_hex};

/// File name of the development certificate (PEM) inside the state directory.
pub const DEV_CERT_FILE: &str = "dev-cert.pem";
/// File name of the development private key (PKCS#8 PEM) inside the state
/// directory; created with mode 0600 on unix.
pub const DEV_KEY_FILE: &str = "dev-key.pem";

/// Subject alternative names of the development certificate.
const DEV_CERT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
const DEV_CERT_CN: &str = "masque development certificate";

/// A self-signed ECDSA P-256 certificate for `localhost`, `127.0.0.1` and
/// `::1`, for development and tests.
///
/// [`load_or_generate`](Self::load_or_generate) keeps it in a state
/// directory so that its fingerprint — which clients pin or trust — stays
/// stable across restarts.
pub struct DevCert {
    tls: ServerTls,
    cert_pem: String,
    key_pem: String,
    paths: Option<(PathBuf, PathBuf)>,
    generated: bool,
}

impl DevCert {
    /// Loads the development certificate from `state_dir`
    /// ([`DEV_CERT_FILE`], [`DEV_KEY_FILE`]), or generates and stores a new
    /// one when either file is missing, is not parsable, or the key does not
    /// match the certificate. [`generated`](Self::generated) tells which.
    ///
    /// The directory is created if needed. Files are written to a temporary
    /// name and renamed into place, the key first and with mode 0600 on unix.
    /// Other I/O errors (e.g. permission denied while reading) are returned
    /// rather than papered over by regenerating.
    pub fn load_or_generate(state_dir: &Path) -> Result<DevCert, TlsError> {
        fs::create_dir_all(state_dir).map_err(|e| TlsError::io("creating", state_dir, e))?;
        let cert_path = state_dir.join(DEV_CERT_FILE);
        let key_path = state_dir.join(DEV_KEY_FILE);

        if let Some(existing) = load_existing(&cert_path, &key_path)? {
            return Ok(existing);
        }

        let (cert_pem, key_pem) = generate_pem()?;
        write_atomic(state_dir, DEV_KEY_FILE, key_pem.as_bytes(), true)?;
        write_atomic(state_dir, DEV_CERT_FILE, cert_pem.as_bytes(), false)?;
        let mut dev = Self::from_generated(cert_pem, key_pem)?;
        dev.paths = Some((cert_path, key_path));
        tracing::info!(
            cert = %state_dir.join(DEV_CERT_FILE).display(),
            fingerprint_sha256 = %dev.fingerprint_sha256_colon(),
            "generated a self-signed development certificate"
        );
        Ok(dev)
    }

    /// A fresh development certificate that only lives in memory (for tests).
    /// [`generated`](Self::generated) is `true`; there are no paths.
    pub fn ephemeral() -> Result<DevCert, TlsError> {
        let (cert_pem, key_pem) = generate_pem()?;
        Self::from_generated(cert_pem, key_pem)
    }

    fn from_generated(cert_pem: String, key_pem: String) -> Result<DevCert, TlsError> {
        let tls = ServerTls::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?;
        Ok(DevCert {
            tls,
            cert_pem,
            key_pem,
            paths: None,
            generated: true,
        })
    }

    /// Whether this call generated the certificate (first run, or the stored
    /// files were missing or unparsable), as opposed to reusing stored files.
    pub fn generated(&self) -> bool {
        self.generated
    }

    /// Path of the certificate PEM file; `None` for [`ephemeral`](Self::ephemeral).
    pub fn cert_path(&self) -> Option<&Path> {
        self.paths.as_ref().map(|(c, _)| c.as_path())
    }

    /// Path of the private key PEM file; `None` for [`ephemeral`](Self::ephemeral).
    pub fn key_path(&self) -> Option<&Path> {
        self.paths.as_ref().map(|(_, k)| k.as_path())
    }

    /// The certificate (DER).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        self.tls.end_entity()
    }

    /// The certificate (PEM), e.g. to hand to a client as its CA file.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key (PKCS#8 PEM, unless a stored file used another format).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// SHA-256 of the certificate's DER encoding.
    pub fn fingerprint_sha256(&self) -> [u8; 32] {
        self.tls.fingerprint_sha256()
    }

    /// [`fingerprint_sha256`](Self::fingerprint_sha256) as lowercase hex without separators.
    pub fn fingerprint_sha256_hex(&self) -> String {
        format_fingerprint_hex(&self.fingerprint_sha256())
    }

    /// [`fingerprint_sha256`](Self::fingerprint_sha256) as colon-separated
    /// uppercase hex (`AB:CD:…`), as OpenSSL and browsers show it.
    pub fn fingerprint_sha256_colon(&self) -> String {
        format_fingerprint_colon(&self.fingerprint_sha256())
    }

    /// The certificate and key as [`ServerTls`].
    pub fn server_tls(&self) -> ServerTls {
        self.tls.clone()
    }
}

impl From<DevCert> for ServerTls {
    fn from(dev: DevCert) -> Self {
        dev.tls
    }
}

impl From<&DevCert> for ServerTls {
    fn from(dev: &DevCert) -> Self {
        dev.server_tls()
    }
}

impl std::fmt::Debug for DevCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCert")
            .field("cert_path", &self.cert_path())
            .field("key_path", &self.key_path())
            .field("generated", &self.generated)
            .field("fingerprint_sha256", &self.fingerprint_sha256_colon())
            .finish_non_exhaustive()
    }
}

/// Reads the stored pair; `Ok(None)` means "missing or unusable: regenerate".
fn load_existing(cert_path: &Path, key_path: &Path) -> Result<Option<DevCert>, TlsError> {
    let Some(cert_bytes) = read_if_exists(cert_path)? else {
        return Ok(None);
    };
    let Some(key_bytes) = read_if_exists(key_path)? else {
        tracing::warn!(key = %key_path.display(), "development key is missing; regenerating");
        return Ok(None);
    };
    let parsed = match (String::from_utf8(cert_bytes), String::from_utf8(key_bytes)) {
        (Ok(cert_pem), Ok(key_pem)) => ServerTls::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())
            .map(|tls| (tls, cert_pem, key_pem))
            .map_err(|e| e.to_string()),
        _ => Err("not UTF-8".to_owned()),
    };
    let (tls, cert_pem, key_pem) = match parsed {
        Ok(ok) => ok,
        Err(reason) => {
            tracing::warn!(
                cert = %cert_path.display(),
                key = %key_path.display(),
                %reason,
                "stored development certificate is unusable; regenerating"
            );
            return Ok(None);
        }
    };
    warn_if_key_readable_by_others(key_path);
    Ok(Some(DevCert {
        tls,
        cert_pem,
        key_pem,
        paths: Some((cert_path.to_path_buf(), key_path.to_path_buf())),
        generated: false,
    }))
}

fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>, TlsError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TlsError::io("reading", path, e)),
    }
}

#[cfg(unix)]
fn warn_if_key_readable_by_others(key_path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(key_path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                key = %key_path.display(),
                mode = format_args!("{mode:o}"),
                "development private key is accessible by other users; consider chmod 600"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_key_readable_by_others(_key_path: &Path) {}

/// A new self-signed certificate and its PKCS#8 key, both PEM.
fn generate_pem() -> Result<(String, String), TlsError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(
        DEV_CERT_NAMES
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>(),
    )?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, DEV_CERT_CN);
    params.distinguished_name = dn;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes `dir/name` via a uniquely named temporary file and a rename, so a
/// reader never sees a partial file. `private` files get mode 0600 on unix.
fn write_atomic(dir: &Path, name: &str, contents: &[u8], private: bool) -> Result<(), TlsError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);

    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let dest = dir.join(name);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;

    let result = opts
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(contents)?;
            f.sync_all()
        })
        .map_err(|e| TlsError::io("writing", &tmp, e))
        .and_then(|()| fs::rename(&tmp, &dest).map_err(|e| TlsError::io("renaming", &dest, e)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use rustls::{
        client::{WebPkiServerVerifier, danger::ServerCertVerifier},
        pki_types::{ServerName, UnixTime},
    };

    use super::*;
    use crate::tls::{parse_pin, provider};

    /// A fresh, empty directory under the system temp dir.
    pub(crate) fn temp_dir(tag: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "masque-tls-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn dev_cert_generated_then_reused() {
        let dir = temp_dir("reuse");
        let state = dir.join("nested/state");
        let first = DevCert::load_or_generate(&state).unwrap();
        assert!(first.generated());
        assert_eq!(first.cert_path(), Some(state.join(DEV_CERT_FILE).as_path()));
        assert_eq!(first.key_path(), Some(state.join(DEV_KEY_FILE).as_path()));
        assert!(state.join(DEV_CERT_FILE).is_file());
        assert!(state.join(DEV_KEY_FILE).is_file());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(state.join(DEV_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary files left behind.
        assert_eq!(fs::read_dir(&state).unwrap().count(), 2);

        let second = DevCert::load_or_generate(&state).unwrap();
        assert!(!second.generated());
        assert_eq!(second.fingerprint_sha256(), first.fingerprint_sha256());
        assert_eq!(second.cert_pem(), first.cert_pem());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn dev_cert_regenerated_when_key_corrupt() {
        let dir = temp_dir("corrupt");
        let first = DevCert::load_or_generate(&dir).unwrap();
        fs::write(
            dir.join(DEV_KEY_FILE),
            "-----BEGIN PRIVATE KEY-----\nnot base64!\n",
        )
        .unwrap();
        let second = DevCert::load_or_generate(&dir).unwrap();
        assert!(second.generated());
        assert_ne!(second.fingerprint_sha256(), first.fingerprint_sha256());
        let third = DevCert::load_or_generate(&dir).unwrap();
        assert!(!third.generated());
        assert_eq!(third.fingerprint_sha256(), second.fingerprint_sha256());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn dev_cert_regenerated_when_missing_or_mismatched() {
        let dir = temp_dir("missing");
        let first = DevCert::load_or_generate(&dir).unwrap();
        fs::remove_file(dir.join(DEV_CERT_FILE)).unwrap();
        let second = DevCert::load_or_generate(&dir).unwrap();
        assert!(second.generated());
        assert_ne!(second.fingerprint_sha256(), first.fingerprint_sha256());

        // A valid key that belongs to another certificate.
        fs::write(
            dir.join(DEV_KEY_FILE),
            DevCert::ephemeral().unwrap().key_pem(),
        )
        .unwrap();
        let third = DevCert::load_or_generate(&dir).unwrap();
        assert!(third.generated());
        assert_ne!(third.fingerprint_sha256(), second.fingerprint_sha256());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn dev_cert_fingerprint_formats() {
        let dev = DevCert::ephemeral().unwrap();
        assert!(dev.generated());
        assert_eq!(dev.cert_path(), None);
        let hex = dev.fingerprint_sha256_hex();
        let colon = dev.fingerprint_sha256_colon();
        assert_eq!(hex.len(), 64);
        assert_eq!(colon.len(), 95);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        );
        assert!(
            colon
                .bytes()
                .all(|b| b == b':' || b.is_ascii_digit() || b.is_ascii_uppercase())
        );
        assert_eq!(colon.replace(':', "").to_lowercase(), hex);
        assert_eq!(parse_pin(&hex).unwrap(), dev.fingerprint_sha256());
        assert_eq!(parse_pin(&colon).unwrap(), dev.fingerprint_sha256());
        assert_eq!(
            dev.fingerprint_sha256(),
            crate::tls::fingerprint_sha256(dev.cert_der())
        );
    }

    #[test]
    fn dev_cert_is_valid_for_its_names_only() {
        let dev = DevCert::ephemeral().unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(dev.cert_der().clone()).unwrap();
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap();
        let check = |name: &str| {
            verifier.verify_server_cert(
                dev.cert_der(),
                &[],
                &ServerName::try_from(name.to_owned()).unwrap(),
                &[],
                UnixTime::now(),
            )
        };
        for name in DEV_CERT_NAMES {
            check(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(check("example.com").is_err());
        assert!(check("127.0.0.2").is_err());
    }
}
