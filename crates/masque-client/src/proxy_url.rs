//! The proxy URL: `https://host[:port][/]`, or a whole connect-udp URI template
//! whose origin is the proxy. Parsed with `http::Uri` (no `url` crate here).

use std::str::FromStr;

use http::uri::{Authority, Uri};
use masque_proto::template::UdpTemplate;

use crate::ClientError;

/// Default port of `https` (RFC 9110 §4.2.2).
pub const DEFAULT_PORT: u16 = 443;

/// Where to connect, and the template's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProxyUrl {
    /// Host without brackets: the TLS server name and what DNS resolves.
    pub host: String,
    pub port: u16,
    /// The authority as written (`host[:port]`), for the default template.
    pub authority: String,
    /// Set when the URL itself was a URI template.
    pub template: Option<String>,
}

pub(crate) fn parse(url: &str) -> Result<ProxyUrl, ClientError> {
    let invalid = |reason| ClientError::InvalidProxyUrl {
        url: url.to_owned(),
        reason,
    };
    if url.contains('{') {
        // A template given as the URL (R9298-02: absolute, so it names the origin).
        let t = UdpTemplate::parse(url)?;
        if t.template().scheme() != Some("https") {
            return Err(invalid("the scheme must be https"));
        }
        let authority = t
            .template()
            .authority()
            .ok_or(invalid("the template has no authority"))?;
        let authority = Authority::from_str(authority).map_err(|_| invalid("bad authority"))?;
        let mut p = from_authority(&authority).map_err(invalid)?;
        p.template = Some(url.to_owned());
        return Ok(p);
    }
    let uri = Uri::from_str(url).map_err(|_| invalid("not a URI"))?;
    if uri.scheme_str() != Some("https") {
        return Err(invalid("the scheme must be https"));
    }
    let authority = uri.authority().ok_or(invalid("no host"))?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid(
            "a path or query needs a URI template ({target_host} and {target_port})",
        ));
    }
    from_authority(authority).map_err(invalid)
}

fn from_authority(a: &Authority) -> Result<ProxyUrl, &'static str> {
    if a.as_str().contains('@') {
        return Err("userinfo is not allowed");
    }
    let host = a.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err("empty host");
    }
    let port = match a.port_u16() {
        Some(0) => return Err("port 0"),
        Some(p) => p,
        None if a.as_str().ends_with(':') => return Err("empty port"),
        None => DEFAULT_PORT,
    };
    Ok(ProxyUrl {
        host: host.to_owned(),
        port,
        authority: a.as_str().to_owned(),
        template: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_forms() {
        let p = parse("https://localhost:4433").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("localhost", 4433));
        assert_eq!(p.authority, "localhost:4433");
        let p = parse("https://proxy.example/").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.example", 443));
        let p = parse("https://[::1]:8443").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 8443));
        assert_eq!(p.authority, "[::1]:8443");
        assert_eq!(p.template, None);
    }

    #[test]
    fn template_as_url() {
        let t = "https://proxy.example:4443/masque{?target_host,target_port}";
        let p = parse(t).unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.example", 4443));
        assert_eq!(p.template.as_deref(), Some(t));
        // R9298-08: a bad template is refused before anything is sent.
        let err = parse("https://proxy.example/masque{+target_host}").unwrap_err();
        assert!(matches!(err, ClientError::Template(_)), "{err}");
    }

    #[test]
    fn refused_urls() {
        for bad in [
            "http://proxy.example",
            "proxy.example:443",
            "https://user@proxy.example",
            "https://proxy.example/masque",
            "https://proxy.example/?q=1",
            "https://proxy.example:0",
            "",
            "https://",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.is_config_error(), "{bad}: {err}");
        }
    }
}
