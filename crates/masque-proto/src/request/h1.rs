//! HTTP/1.1 request head → [`RequestForm`].

use super::{Refusal, RequestForm, authority};
use crate::headers::list;

/// The parts of an HTTP/1.1 request head the form depends on: method,
/// request-target, and every field line of `Host`, `Connection` and `Upgrade`
/// (raw values; the adapter splits nothing). For an HTTP/1.0 request pass no
/// `Upgrade` lines: they must be ignored there (RFC 9110 §7.8, CC-12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H1Head<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub host: &'a [&'a [u8]],
    pub connection: &'a [&'a [u8]],
    pub upgrade: &'a [&'a [u8]],
}

/// The form of an HTTP/1.1 request.
///
/// * Every request: exactly one `Host` with a valid value, else 400 (RFC 9112 §3.2,
///   CC-10).
/// * `CONNECT host:port`: authority-form target with a port (RFC 9112 §3.2.3,
///   CC-01, CC-09); `Host` must name the same host, and the same port when it has
///   one (RFC 9112 §3.2 asks for the identical authority; a `Host` without the
///   port is accepted). `Connection` / `Upgrade` are ignored. → Classic.
/// * `GET` with `Connection: upgrade` (a token of the list, any case, over all
///   lines) and an `Upgrade` naming exactly one protocol (R9298-24, CTCP-08,
///   RFC 9110 §7.8) → Extended, the token lower-cased (CC-12). The target is
///   origin-form (authority = `Host`) or absolute-form `http`/`https` (authority =
///   the URI's; `Host` must match it, default port from the scheme; RFC 9112
///   §3.2.2, R9298-24).
/// * `GET` with neither header: not a tunnel request, 405. `GET` with only one of
///   them, several protocols in `Upgrade`, or a bad target: malformed, 400
///   (R9298-25; our choice: the client meant an upgrade and got it wrong).
/// * Any other method, with or without `Upgrade`: not a tunnel request, 405
///   (RFC 9298 §3.2 and connect-tcp §3.1 use `GET` only).
pub fn form_from_h1(h: &H1Head<'_>) -> Result<RequestForm, Refusal> {
    let host = host(h.host)?;
    let target_ok = !h.target.is_empty()
        && !h.target.contains('#')
        && h.target.bytes().all(|c| c.is_ascii_graphic());
    if !target_ok {
        return Err(Refusal::malformed(
            "invalid request-target (RFC 9112 section 3.2)",
        ));
    }
    match h.method {
        "CONNECT" => connect(h.target, host),
        "GET" => upgrade(h, host),
        m => Err(Refusal::not_a_tunnel(format!(
            "{m} is not a tunnel request"
        ))),
    }
}

/// Exactly one `Host` line with a valid (possibly empty) value (RFC 9112 §3.2).
fn host<'a>(lines: &[&'a [u8]]) -> Result<&'a str, Refusal> {
    let [line] = lines else {
        return Err(Refusal::malformed(format!(
            "{} Host fields, exactly one required (RFC 9112 section 3.2)",
            lines.len()
        )));
    };
    let value = core::str::from_utf8(list::trim_ows(line)).ok();
    match value {
        Some(v) if v.is_empty() || authority::is_valid(v) => Ok(v),
        _ => Err(Refusal::malformed(
            "invalid Host value (RFC 9112 section 3.2)",
        )),
    }
}

/// `CONNECT host:port` (RFC 9112 §3.2.3).
fn connect(target: &str, host: &str) -> Result<RequestForm, Refusal> {
    let host_port = matches!(
        authority::split(target),
        Some((h, Some(p))) if !h.is_empty() && !p.is_empty()
    );
    if !host_port {
        return Err(Refusal::malformed(format!(
            "CONNECT target `{target}` is not host:port (CC-01, CC-09)"
        )));
    }
    if !authority::same(host, target, None) {
        return Err(Refusal::malformed(format!(
            "Host `{host}` does not match the CONNECT target `{target}` (RFC 9112 section 3.2)"
        )));
    }
    Ok(RequestForm::Classic {
        authority: target.to_owned(),
    })
}

/// `GET` + `Upgrade` (RFC 9110 §7.8, RFC 9298 §3.2).
fn upgrade(h: &H1Head<'_>, host: &str) -> Result<RequestForm, Refusal> {
    let conn_upgrade = list::elements(h.connection).any(|t| t.eq_ignore_ascii_case(b"upgrade"));
    let mut offered = list::elements(h.upgrade);
    let (first, second) = (offered.next(), offered.next());
    let protocol = match (conn_upgrade, first, second) {
        (false, None, _) => {
            return Err(Refusal::not_a_tunnel(
                "GET without Upgrade is not a tunnel request",
            ));
        }
        (false, Some(_), _) => {
            return Err(Refusal::malformed(
                "Upgrade without `upgrade` in Connection (RFC 9110 section 7.8, R9298-24)",
            ));
        }
        (true, None, _) => {
            return Err(Refusal::malformed(
                "Connection: upgrade without Upgrade (R9298-24)",
            ));
        }
        (true, Some(_), Some(_)) => {
            return Err(Refusal::malformed(
                "Upgrade offers several protocols, exactly one expected (R9298-24)",
            ));
        }
        (true, Some(p), None) => p,
    };
    // `protocol-name [ "/" protocol-version ]` (RFC 9110 §7.8); kept whole.
    let valid = protocol.split(|&c| c == b'/').all(list::is_token)
        && protocol.iter().filter(|&&c| c == b'/').count() <= 1;
    let protocol = core::str::from_utf8(protocol)
        .ok()
        .filter(|_| valid)
        .ok_or_else(|| {
            Refusal::malformed("Upgrade value is not a protocol (RFC 9110 section 7.8)")
        })?;
    let (authority, path) = target(h.target, host)?;
    Ok(RequestForm::Extended {
        protocol: protocol.to_ascii_lowercase(),
        authority: authority.to_owned(),
        path,
    })
}

/// Authority and path of an origin-form or absolute-form target (RFC 9112 §3.2.1,
/// §3.2.2).
fn target<'a>(target: &'a str, host: &'a str) -> Result<(&'a str, String), Refusal> {
    if target.starts_with('/') {
        if host.is_empty() {
            return Err(Refusal::malformed("empty Host (RFC 9112 section 3.2)"));
        }
        return Ok((host, target.to_owned()));
    }
    let bad = || {
        Refusal::malformed(format!(
            "request-target `{target}` is neither origin-form nor an http(s) absolute-form (RFC 9112 section 3.2)"
        ))
    };
    let (scheme, rest) = target.split_once("://").ok_or_else(bad)?;
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        443
    } else if scheme.eq_ignore_ascii_case("http") {
        80
    } else {
        return Err(bad());
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (uri_authority, path) = rest.split_at(end);
    if !authority::is_valid(uri_authority) || path.contains('#') {
        return Err(bad());
    }
    if !authority::same(host, uri_authority, Some(default_port)) {
        return Err(Refusal::malformed(
            "Host does not match the absolute-form target (RFC 9112 section 3.2)",
        ));
    }
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    Ok((uri_authority, path))
}
