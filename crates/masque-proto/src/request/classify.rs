//! [`RequestForm`] → the tunnel it asks for, against the node's templates.

use super::{CONNECT_IP, CONNECT_UDP, Refusal, RequestForm, authority};
use crate::proxy_status::TunnelFailure;
use crate::tcp::{self, Codepoints};
use crate::template::{
    HostPort, IpTarget, IpTemplate, MatchError, TcpTarget, TcpTemplate, UdpTarget, UdpTemplate,
};

/// The path templates the node serves, one per protocol (`parse_path` forms, or
/// the well-known defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    pub udp: UdpTemplate,
    pub ip: IpTemplate,
    pub tcp: TcpTemplate,
}

impl Default for Templates {
    /// The well-known paths (R9298-09, R9484-03, CTCP-30).
    fn default() -> Self {
        Self {
            udp: UdpTemplate::well_known(),
            ip: IpTemplate::well_known(),
            tcp: TcpTemplate::well_known(),
        }
    }
}

/// Request header fields that change the classification, already parsed by the
/// adapter (`headers::capsule_protocol`, `headers::connect_udp_bind`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestHeaders {
    /// `Capsule-Protocol: ?1` (R9297-25..27). Not required: sending it is a SHOULD
    /// (R9297-30, CTCP-16) and every token classified here implies capsules.
    pub capsule_protocol: bool,
    /// `Connect-UDP-Bind: ?1` (BIND-04, BIND-05).
    pub connect_udp_bind: bool,
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelTarget {
    /// connect-udp to one target (R9298 §3). With `connect_udp_bind` set this is
    /// bind with fallback (BIND-01); a node without bind serves it as plain
    /// connect-udp by not echoing the header.
    Udp(HostPort),
    /// connect-udp-bind with the wildcard target `*`/`*` and `Connect-UDP-Bind: ?1`
    /// (BIND-01, BIND-04): bind only, no fallback.
    UdpBind,
    /// connect-ip with its scope (R9484-14).
    Ip(IpTarget),
    /// connect-tcp (CTCP-01) under the final token or an interop one
    /// ([`Codepoints::for_token`]); `token` picks the capsule codepoints.
    Tcp { target: TcpTarget, token: String },
    /// Classic CONNECT to `host:port` (RFC 9110 §9.3.6).
    Classic(HostPort),
}

/// Matches a request form against the templates.
///
/// * Classic: `host:port`, port required and non-zero, IPv6 in brackets (CC-01,
///   CC-02, CC-09), else 400.
/// * `connect-udp`: the UDP template; no match 404; bad variables 400 (R9298-25,
///   R9298-10..12, BIND-03); `*`/`*` is [`TunnelTarget::UdpBind`] with
///   `Connect-UDP-Bind: ?1`, else 400 (BIND-01).
/// * `connect-ip`: the IP template; 404 / 400 likewise (R9484-14).
/// * `connect-tcp` and the interop tokens of [`Codepoints::for_token`]: the TCP
///   template; 404 / 400 likewise (CTCP-11). Whether the final token can be
///   served yet is the session's call (decisions §14).
/// * Any other token: 501 (XC-10).
///
/// `:authority` / `Host` play no part: the tunnel target comes from the path only
/// (XC-08).
pub fn classify(
    form: &RequestForm,
    h: &RequestHeaders,
    templates: &Templates,
) -> Result<TunnelTarget, Refusal> {
    let (protocol, path) = match form {
        RequestForm::Classic { authority } => {
            return authority::host_port(authority)
                .map(TunnelTarget::Classic)
                .map_err(|d| Refusal::malformed(format!("CONNECT target {d} (CC-02)")));
        }
        RequestForm::Extended { protocol, path, .. } => (protocol.to_ascii_lowercase(), path),
    };
    match protocol.as_str() {
        CONNECT_UDP => match templates.udp.match_path(path) {
            Ok(UdpTarget::Host(hp)) => Ok(TunnelTarget::Udp(hp)),
            Ok(UdpTarget::Wildcard) if h.connect_udp_bind => Ok(TunnelTarget::UdpBind),
            Ok(UdpTarget::Wildcard) => Err(Refusal::malformed(
                "wildcard target without connect-udp-bind (BIND-01, BIND-03)",
            )),
            Err(e) => Err(no_match(CONNECT_UDP, e)),
        },
        CONNECT_IP => templates
            .ip
            .match_path(path)
            .map(TunnelTarget::Ip)
            .map_err(|e| no_match(CONNECT_IP, e)),
        t if t == tcp::UPGRADE_TOKEN || Codepoints::for_token(t).is_some() => templates
            .tcp
            .match_path(path)
            .map(|target| TunnelTarget::Tcp {
                target,
                token: protocol.clone(),
            })
            .map_err(|e| no_match(&protocol, e)),
        t => Err(Refusal::new(
            TunnelFailure::NotImplemented,
            format!("upgrade token `{t}` is not served (XC-10)"),
        )),
    }
}

/// A template match failure: 404 for a path outside the template, else 400
/// ([`MatchError::http_status`], R9298-25).
fn no_match(protocol: &str, e: MatchError) -> Refusal {
    match e.http_status() {
        404 => Refusal::new(
            TunnelFailure::NotFound,
            format!("path matches no {protocol} template"),
        ),
        _ => Refusal::malformed(format!("{protocol}: {e}")),
    }
}
