//! `authority` values of requests (RFC 3986 §3.2): `:authority`, `Host`, the
//! authority-form request-target of CONNECT and the authority of an absolute-form
//! target. Userinfo is refused everywhere (RFC 9110 §4.2.4, RFC 9113 §8.3.1,
//! RFC 9114 §4.3.1; `Host = uri-host [ ":" port ]`, RFC 9110 §7.2).

use crate::template::{Host, HostPort, is_authority_byte, parse_port};

/// Splits `uri-host [ ":" port ]` into the host (an IP-literal keeps its brackets)
/// and the port text. `None`: not that syntax (characters outside RFC 3986
/// authority, userinfo, unbracketed IPv6, text after `]`, a non-digit port).
pub(super) fn split(a: &str) -> Option<(&str, Option<&str>)> {
    if !a.bytes().all(|c| is_authority_byte(c) && c != b'@') {
        return None;
    }
    let (host, port) = if a.starts_with('[') {
        let end = a.find(']')? + 1;
        let (host, rest) = a.split_at(end);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match a.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    // Brackets only around a whole IP-literal.
    let inner = host
        .strip_prefix('[')
        .map_or(host, |h| h.trim_end_matches(']'));
    let bad_host = inner.contains('[') || inner.contains(']');
    let bad_port = port.is_some_and(|p| !p.bytes().all(|c| c.is_ascii_digit()));
    if bad_host || bad_port {
        return None;
    }
    Some((host, port))
}

/// A syntactically valid, non-empty authority without userinfo.
pub(super) fn is_valid(a: &str) -> bool {
    split(a).is_some_and(|(host, _)| !host.is_empty())
}

/// The `host:port` of a classic CONNECT (RFC 9110 §9.3.6, RFC 9112 §3.2.3): the
/// port is required, decimal 1-65535 (CC-01, CC-02); an IPv6 host is in brackets
/// (CC-09). Hosts follow [`Host::parse`] (no zone identifiers, strict IPv4,
/// hostname rules). The error is the text for `details`.
pub(super) fn host_port(a: &str) -> Result<HostPort, String> {
    let (host, port) = split(a).ok_or_else(|| format!("`{a}` is not host:port"))?;
    let port = port
        .filter(|p| !p.is_empty())
        .ok_or_else(|| format!("`{a}` has no port"))?;
    let port = parse_port(port.as_bytes()).map_err(|e| format!("`{a}`: {e}"))?;
    let host = match host.strip_prefix('[') {
        Some(v6) => match Host::parse(v6.trim_end_matches(']')) {
            Ok(h @ Host::V6(_)) => h,
            _ => return Err(format!("`{a}`: invalid IPv6 literal")),
        },
        None => Host::parse(host).map_err(|e| format!("`{a}`: {e}"))?,
    };
    Ok(HostPort { host, port })
}

/// Whether two authorities name the same host and port: hosts compared without
/// regard to case; a missing port is `default_port`, and when that is `None` too
/// a missing port matches any (a CONNECT `Host` without the port).
pub(super) fn same(a: &str, b: &str, default_port: Option<u16>) -> bool {
    let (Some((ha, pa)), Some((hb, pb))) = (split(a), split(b)) else {
        return false;
    };
    let port = |p: Option<&str>| match p.filter(|p| !p.is_empty()) {
        Some(p) => p.parse::<u16>().ok().map(Some),
        None => Some(default_port),
    };
    match (port(pa), port(pb)) {
        (Some(pa), Some(pb)) => {
            ha.eq_ignore_ascii_case(hb) && (pa.is_none() || pb.is_none() || pa == pb)
        }
        // A port above 65535 names nothing.
        _ => false,
    }
}
