//! [`PoolKey`]: which pooled connections a tunnel may share.

use std::fmt;

use masque_proto::headers::auth::PROXY_AUTHORIZATION;
use masque_transport::tls::ServerVerification;

use crate::{ClientError, ClientOptions, TransportChoice, proxy_url};

/// The identity of a pooled connection: tunnels with equal keys may share
/// one. Transport choice, proxy host and port, how the proxy's certificate
/// is checked, and the `Proxy-Authorization` credential sent with every
/// tunnel request (compared byte for byte, never shown by `Debug`).
///
/// Everything else in [`ClientOptions`] (MTU, windows, bind address,
/// timeouts) is taken from the first client of a key that dials.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub transport: TransportChoice,
    pub host: String,
    pub port: u16,
    pub tls: TlsIdentity,
    auth: Option<Vec<u8>>,
}

/// [`ServerVerification`] as a hashable value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsIdentity {
    WebPki,
    /// The DER of each trusted certificate, in order.
    CustomCa(Vec<Vec<u8>>),
    PinnedSha256([u8; 32]),
    InsecureSkipVerify,
}

impl From<&ServerVerification> for TlsIdentity {
    fn from(v: &ServerVerification) -> Self {
        match v {
            ServerVerification::CustomCa(certs) => {
                Self::CustomCa(certs.iter().map(|c| c.as_ref().to_vec()).collect())
            }
            ServerVerification::PinnedSha256(pin) => Self::PinnedSha256(*pin),
            ServerVerification::InsecureSkipVerify => Self::InsecureSkipVerify,
            _ => Self::WebPki,
        }
    }
}

impl PoolKey {
    /// The key of tunnels to `proxy_url` with `options`; a URL that does not
    /// parse is [`ClientError::InvalidProxyUrl`] (or `Template`).
    pub fn new(proxy_url: &str, options: &ClientOptions) -> Result<Self, ClientError> {
        let url = proxy_url::parse(proxy_url)?;
        Ok(Self::from_parts(&url, options))
    }

    pub(crate) fn from_parts(url: &proxy_url::ProxyUrl, options: &ClientOptions) -> Self {
        Self {
            transport: options.transport,
            host: url.host.to_ascii_lowercase(),
            port: url.port,
            tls: TlsIdentity::from(&options.verification),
            auth: options
                .headers
                .get(PROXY_AUTHORIZATION)
                .map(|v| v.as_bytes().to_vec()),
        }
    }

    /// Whether tunnels of this key share connections: HTTP/1.1 carries one
    /// tunnel per connection and is never pooled.
    pub fn is_pooled(&self) -> bool {
        self.transport != TransportChoice::H1
    }

    /// Whether a credential is part of the key.
    pub fn has_auth(&self) -> bool {
        self.auth.is_some()
    }
}

impl fmt::Debug for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolKey")
            .field("transport", &self.transport)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl fmt::Display for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{}://{host}:{}", self.transport, self.port)
    }
}
