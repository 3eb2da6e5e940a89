//! URI templates for MASQUE: the RFC 6570 level-3 subset that RFC 9298 §2 (connect-udp),
//! RFC 9484 §3 (connect-ip), connect-tcp §3 and connect-udp-listen §2 (bind) allow.
//!
//! * **Parse** once ([`UdpTemplate::parse`], [`IpTemplate::parse`], [`TcpTemplate::parse`], or
//!   `parse_path` for path-only server routes): R9298-01..08, R9484-01..03, CTCP-01.
//! * **Expand** on the client: a typed target → `:scheme`, `:authority`, `:path`
//!   (R9298-13, R9484-12, CTCP-02), with RFC 6570 simple-string percent-encoding
//!   (R9298-11, R9484-05/06, BIND-02).
//! * **Match** on the proxy: a request `:path` → a strictly validated typed target
//!   (R9298-10/11/12/14, R9484-04..08/14, BIND-01/03). Matching is one pass over the path and
//!   allocates only for a hostname; every failure is a [`MatchError`] (400, or 404 for
//!   [`MatchError::NoMatch`]).
//!
//! ```
//! use masque_proto::template::{Host, HostPort, UdpTarget, UdpTemplate};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let t = UdpTemplate::parse("https://example.org/.well-known/masque/udp/{target_host}/{target_port}/")?;
//! // Client: expand (README vector 17).
//! let target = UdpTarget::Host(HostPort::new(Host::parse("2001:db8::42")?, 443)?);
//! let req = t.expand(&target);
//! assert_eq!((req.scheme, req.authority), (Some("https"), Some("example.org")));
//! assert_eq!(req.path, "/.well-known/masque/udp/2001%3Adb8%3A%3A42/443/");
//! // Proxy: match and validate.
//! assert_eq!(t.match_path(&req.path)?, target);
//! # Ok(()) }
//! ```

mod error;
mod syntax;
mod target;

#[cfg(test)]
mod tests;

use core::fmt;

pub use error::{
    ExpandError, HostError, IpProtoError, MatchError, PortError, PrefixError, TemplateError,
};
pub use syntax::{MAX_TEMPLATE_LEN, Template};
pub use target::{
    DnsName, Host, HostPort, IpPrefix, IpProto, IpScope, IpTarget, TcpTarget, UdpTarget,
};

pub(crate) use syntax::{is_authority_byte, is_scheme_byte};
use target::DECODE_BUF_LEN;
pub(crate) use target::parse_port;

/// Default connect-udp template path (R9298 §1, R9298-09).
pub const DEFAULT_UDP_PATH: &str = "/.well-known/masque/udp/{target_host}/{target_port}/";
/// Default connect-ip template path (R9484 §1, R9484-03).
pub const DEFAULT_IP_PATH: &str = "/.well-known/masque/ip/{target}/{ipproto}/";
/// Default connect-tcp template path (connect-tcp §1, CTCP-30).
pub const DEFAULT_TCP_PATH: &str = "/.well-known/masque/tcp/{target_host}/{target_port}/";

/// The protocol a template is for; it fixes the known variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// RFC 9298 (and connect-udp-listen): `target_host`, `target_port`, both required.
    ConnectUdp,
    /// RFC 9484: `target`, `ipproto`, both optional (R9484-02).
    ConnectIp,
    /// connect-tcp draft: `target_host`, `target_port`, both required (CTCP-01).
    ConnectTcp,
}

impl Protocol {
    /// The default template path (R9298-09, R9484-03, CTCP-30).
    pub const fn default_path(self) -> &'static str {
        match self {
            Self::ConnectUdp => DEFAULT_UDP_PATH,
            Self::ConnectIp => DEFAULT_IP_PATH,
            Self::ConnectTcp => DEFAULT_TCP_PATH,
        }
    }

    /// Variables of the default template, in order.
    const fn default_vars(self) -> [Var; 2] {
        match self {
            Self::ConnectUdp | Self::ConnectTcp => [Var::TargetHost, Var::TargetPort],
            Self::ConnectIp => [Var::Target, Var::Ipproto],
        }
    }

    /// R9298-05 / CTCP-01 (required) vs R9484-02 (optional).
    const fn required(self) -> &'static [Var] {
        match self {
            Self::ConnectUdp | Self::ConnectTcp => &[Var::TargetHost, Var::TargetPort],
            Self::ConnectIp => &[],
        }
    }

    /// Looks up a variable name (case-sensitive, RFC 6570 §2.3).
    fn variable(self, name: &[u8]) -> Option<Var> {
        self.default_vars()
            .into_iter()
            .find(|v| v.name().as_bytes() == name)
    }
}

/// A template variable MASQUE defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Var {
    /// `target_host` (R9298 §3, CTCP-01).
    TargetHost,
    /// `target_port` (R9298 §3, CTCP-01).
    TargetPort,
    /// `target` (R9484-04).
    Target,
    /// `ipproto` (R9484-04).
    Ipproto,
}

impl Var {
    const COUNT: usize = 4;

    pub const fn name(self) -> &'static str {
        match self {
            Self::TargetHost => "target_host",
            Self::TargetPort => "target_port",
            Self::Target => "target",
            Self::Ipproto => "ipproto",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A client request derived from a template (R9298-13/29, R9484-12/20, CTCP-02/14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded<'t> {
    /// `:scheme` (absolute templates; `None` for path-only ones).
    pub scheme: Option<&'t str>,
    /// `:authority` / H1 `Host` (absolute templates; `None` for path-only ones).
    pub authority: Option<&'t str>,
    /// `:path` / H1 origin-form request target: path and query.
    pub path: String,
}

impl<'t> Expanded<'t> {
    fn new(t: &'t Template, path: String) -> Self {
        Self {
            scheme: t.scheme(),
            authority: t.authority(),
            path,
        }
    }
}

/// Builds `https://{authority}{default path}` after checking `authority` as a template would.
fn with_authority(protocol: Protocol, authority: &str) -> Result<Template, TemplateError> {
    // Validate through the parser (authority syntax, R9298-02/04/06), then use the
    // parse-free constructor so the result is identical to the other defaults.
    Template::parse(
        protocol,
        &format!("https://{authority}{}", protocol.default_path()),
    )?;
    Ok(Template::well_known(protocol, Some(authority)))
}

/// Decodes one required capture.
fn decoded<'b>(
    caps: &syntax::Captures<'_>,
    var: Var,
    buf: &'b mut [u8; DECODE_BUF_LEN],
) -> Result<&'b [u8], MatchError> {
    // Required variables are always captured (checked at parse time); an absent one
    // can only mean an empty value.
    target::decode(var, caps.get(var).unwrap_or_default(), buf)
}

/// Shared host/port matcher for connect-udp and connect-tcp.
fn match_host_port(t: &Template, path: &str, wildcard_ok: bool) -> Result<UdpTarget, MatchError> {
    let caps = t.captures(path)?;
    let (mut hbuf, mut pbuf) = ([0; DECODE_BUF_LEN], [0; DECODE_BUF_LEN]);
    let host = decoded(&caps, Var::TargetHost, &mut hbuf)?;
    let port = decoded(&caps, Var::TargetPort, &mut pbuf)?;
    let (host_any, port_any) = (host == b"*", port == b"*");
    if !wildcard_ok {
        if host_any {
            return Err(MatchError::WildcardNotAllowed(Var::TargetHost));
        }
        if port_any {
            return Err(MatchError::WildcardNotAllowed(Var::TargetPort));
        }
    } else if host_any && port_any {
        return Ok(UdpTarget::Wildcard);
    } else if host_any || port_any {
        return Err(MatchError::PartialWildcard);
    }
    let port = target::parse_port(port)?;
    let host = target::parse_host(host)?;
    Ok(UdpTarget::Host(HostPort { host, port }))
}

/// A connect-udp template (RFC 9298 §2; also connect-udp-listen, BIND-01/02).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpTemplate(Template);

impl UdpTemplate {
    /// Absolute template (R9298-01..08).
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        Template::parse(Protocol::ConnectUdp, template).map(Self)
    }

    /// Path-only template for proxy routes (R9298-01, 03..07).
    pub fn parse_path(template: &str) -> Result<Self, TemplateError> {
        Template::parse_path(Protocol::ConnectUdp, template).map(Self)
    }

    /// Path-only [`DEFAULT_UDP_PATH`] (R9298-09: proxies SHOULD serve it).
    pub fn well_known() -> Self {
        Self(Template::well_known(Protocol::ConnectUdp, None))
    }

    /// `https://{authority}` + [`DEFAULT_UDP_PATH`] (R9298-09: client knowing only host:port).
    pub fn with_authority(authority: &str) -> Result<Self, TemplateError> {
        with_authority(Protocol::ConnectUdp, authority).map(Self)
    }

    pub fn template(&self) -> &Template {
        &self.0
    }

    /// R9298-13: the request for `target`; [`UdpTarget::Wildcard`] gives `%2A`/`%2A` (BIND-02).
    pub fn expand(&self, target: &UdpTarget) -> Expanded<'_> {
        let mut path = String::new();
        self.expand_path_into(target, &mut path);
        Expanded::new(&self.0, path)
    }

    /// Appends the `:path` for `target` to `out` (reuse a buffer across requests).
    pub fn expand_path_into(&self, target: &UdpTarget, out: &mut String) {
        self.0.expand_with(out, |var, out| match (target, var) {
            (UdpTarget::Wildcard, _) => target::encode_wildcard(out),
            (UdpTarget::Host(hp), Var::TargetPort) => target::encode_port(out, hp.port),
            (UdpTarget::Host(hp), _) => target::encode_host(out, &hp.host),
        });
    }

    /// R9298-14: extracts, percent-decodes and validates the target from a request `:path`.
    /// `*`/`*` (literal or `%2A`) yields [`UdpTarget::Wildcard`] (BIND-01); exactly one `*` is
    /// [`MatchError::PartialWildcard`] (BIND-03). Whether bind was negotiated
    /// (`Connect-UDP-Bind: ?1`, BIND-04) is for the caller to check.
    pub fn match_path(&self, path: &str) -> Result<UdpTarget, MatchError> {
        match_host_port(&self.0, path, true)
    }
}

/// A connect-tcp template (connect-tcp §3, CTCP-01).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpTemplate(Template);

impl TcpTemplate {
    /// Absolute template (CTCP-01 → R9298-01..08).
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        Template::parse(Protocol::ConnectTcp, template).map(Self)
    }

    /// Path-only template for proxy routes.
    pub fn parse_path(template: &str) -> Result<Self, TemplateError> {
        Template::parse_path(Protocol::ConnectTcp, template).map(Self)
    }

    /// Path-only [`DEFAULT_TCP_PATH`].
    pub fn well_known() -> Self {
        Self(Template::well_known(Protocol::ConnectTcp, None))
    }

    /// `https://{authority}` + [`DEFAULT_TCP_PATH`] (CTCP-30 retry with the default template).
    pub fn with_authority(authority: &str) -> Result<Self, TemplateError> {
        with_authority(Protocol::ConnectTcp, authority).map(Self)
    }

    pub fn template(&self) -> &Template {
        &self.0
    }

    /// CTCP-02: the request for `target`.
    pub fn expand(&self, target: &TcpTarget) -> Expanded<'_> {
        let mut path = String::new();
        self.expand_path_into(target, &mut path);
        Expanded::new(&self.0, path)
    }

    /// Appends the `:path` for `target` to `out`.
    pub fn expand_path_into(&self, target: &TcpTarget, out: &mut String) {
        self.0.expand_with(out, |var, out| match var {
            Var::TargetPort => target::encode_port(out, target.port),
            _ => target::encode_host(out, &target.host),
        });
    }

    /// CTCP-01: extracts and validates the target; no wildcard.
    pub fn match_path(&self, path: &str) -> Result<TcpTarget, MatchError> {
        match match_host_port(&self.0, path, false)? {
            UdpTarget::Host(hp) => Ok(hp),
            UdpTarget::Wildcard => Err(MatchError::WildcardNotAllowed(Var::TargetHost)),
        }
    }
}

/// A connect-ip template (RFC 9484 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpTemplate(Template);

impl IpTemplate {
    /// Absolute template (R9484-01..03); `target`/`ipproto` are optional (R9484-02).
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        Template::parse(Protocol::ConnectIp, template).map(Self)
    }

    /// Path-only template for proxy routes.
    pub fn parse_path(template: &str) -> Result<Self, TemplateError> {
        Template::parse_path(Protocol::ConnectIp, template).map(Self)
    }

    /// Path-only [`DEFAULT_IP_PATH`] (R9484-03).
    pub fn well_known() -> Self {
        Self(Template::well_known(Protocol::ConnectIp, None))
    }

    /// `https://{authority}` + [`DEFAULT_IP_PATH`] (R9484-03).
    pub fn with_authority(authority: &str) -> Result<Self, TemplateError> {
        with_authority(Protocol::ConnectIp, authority).map(Self)
    }

    pub fn template(&self) -> &Template {
        &self.0
    }

    /// R9484-12: the request for `target`. A template without `target` / `ipproto` can only
    /// request `*` for it (R9484-02).
    pub fn expand(&self, target: &IpTarget) -> Result<Expanded<'_>, ExpandError> {
        let mut path = String::new();
        self.expand_path_into(target, &mut path)?;
        Ok(Expanded::new(&self.0, path))
    }

    /// Appends the `:path` for `target` to `out` (nothing is appended on error).
    pub fn expand_path_into(&self, target: &IpTarget, out: &mut String) -> Result<(), ExpandError> {
        if target.target != IpScope::Any && !self.0.has_variable(Var::Target) {
            return Err(ExpandError::ScopeNotExpressible(Var::Target));
        }
        if target.ipproto != IpProto::Any && !self.0.has_variable(Var::Ipproto) {
            return Err(ExpandError::ScopeNotExpressible(Var::Ipproto));
        }
        self.0.expand_with(out, |var, out| match var {
            Var::Ipproto => target::encode_ipproto(out, target.ipproto),
            _ => target::encode_scope(out, &target.target),
        });
        Ok(())
    }

    /// R9484-14: extracts, percent-decodes and validates the scope (R9484-04..08); a
    /// variable absent from the template means `*` (R9484-02).
    pub fn match_path(&self, path: &str) -> Result<IpTarget, MatchError> {
        let caps = self.0.captures(path)?;
        let mut buf = [0; DECODE_BUF_LEN];
        let ipproto = match caps.get(Var::Ipproto) {
            Some(raw) => target::parse_ipproto(target::decode(Var::Ipproto, raw, &mut buf)?)?,
            None => IpProto::Any,
        };
        let scope = match caps.get(Var::Target) {
            Some(raw) => target::parse_scope(target::decode(Var::Target, raw, &mut buf)?)?,
            None => IpScope::Any,
        };
        Ok(IpTarget {
            target: scope,
            ipproto,
        })
    }
}
