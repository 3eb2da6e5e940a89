//! HTTP/2 and HTTP/3 request pseudo-header fields → [`RequestForm`].

use super::{Refusal, RequestForm, authority};
use crate::headers::list;
use crate::template::is_scheme_byte;

/// The pseudo-header fields of an HTTP/2 or HTTP/3 request as received (absent
/// fields `None`, values unmodified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pseudo<'a> {
    pub method: &'a str,
    pub protocol: Option<&'a str>,
    pub scheme: Option<&'a str>,
    pub authority: Option<&'a str>,
    pub path: Option<&'a str>,
}

/// The form of an HTTP/2 or HTTP/3 request.
///
/// * `:protocol` present (extended CONNECT): `:method` must be `CONNECT` (XC-11);
///   `:protocol` a token (XC-06); `:scheme`, `:path` and `:authority` present and
///   non-empty (XC-07, RFC 8441 §4, RFC 9220 §3, R9298-29, CTCP-14); `:path`
///   starts with `/` (R9298-03 via R9298-29); `:authority` without userinfo
///   (RFC 9113 §8.3.1, RFC 9114 §4.3.1). Any other scheme than `https` is
///   accepted here: the digests do not require refusing it (R9298-29 only asks
///   for the template's scheme).
/// * `CONNECT` without `:protocol` (classic): `:authority` only, no `:scheme`, no
///   `:path` (CC-13, RFC 9113 §8.5; CC-18, RFC 9114 §4.4).
/// * Any other method without `:protocol`: not a tunnel request, 405.
///
/// Violations of the first two are malformed messages (400, see
/// [`Refusal::is_malformed`]). Methods are case-sensitive (RFC 9110 §9.1).
pub fn form_from_pseudo(p: &Pseudo<'_>) -> Result<RequestForm, Refusal> {
    let connect = p.method == "CONNECT";
    let Some(protocol) = p.protocol else {
        if !connect {
            return Err(Refusal::not_a_tunnel(format!(
                "{} is not a tunnel request",
                p.method
            )));
        }
        return classic(p);
    };
    if !connect {
        return Err(Refusal::malformed(format!(
            ":protocol on a {} request (XC-11)",
            p.method
        )));
    }
    if !list::is_token(protocol.as_bytes()) {
        return Err(Refusal::malformed(":protocol is not a token (XC-06)"));
    }
    let scheme = required(p.scheme, ":scheme")?;
    let path = required(p.path, ":path")?;
    let authority = required(p.authority, ":authority")?;
    let scheme_ok =
        scheme.starts_with(|c: char| c.is_ascii_alphabetic()) && scheme.bytes().all(is_scheme_byte);
    if !scheme_ok {
        return Err(Refusal::malformed(
            ":scheme is not a URI scheme (RFC 3986 section 3.1)",
        ));
    }
    let path_ok =
        path.starts_with('/') && !path.contains('#') && path.bytes().all(|c| c.is_ascii_graphic());
    if !path_ok {
        return Err(Refusal::malformed(
            ":path is not an absolute path and query (R9298-29)",
        ));
    }
    if !authority::is_valid(authority) {
        return Err(Refusal::malformed(
            ":authority is not a valid authority (RFC 9114 section 4.3.1)",
        ));
    }
    Ok(RequestForm::Extended {
        protocol: protocol.to_ascii_lowercase(),
        authority: authority.to_owned(),
        path: path.to_owned(),
    })
}

/// Classic CONNECT: `:authority` only (CC-13, CC-18).
fn classic(p: &Pseudo<'_>) -> Result<RequestForm, Refusal> {
    if p.scheme.is_some() {
        return Err(Refusal::malformed(
            "CONNECT without :protocol has :scheme (CC-13, CC-18)",
        ));
    }
    if p.path.is_some() {
        return Err(Refusal::malformed(
            "CONNECT without :protocol has :path (CC-13, CC-18)",
        ));
    }
    let authority = p
        .authority
        .filter(|a| !a.is_empty())
        .ok_or_else(|| Refusal::malformed("CONNECT without :authority (CC-13, CC-18)"))?;
    Ok(RequestForm::Classic {
        authority: authority.to_owned(),
    })
}

/// An extended CONNECT pseudo-header that must be present and non-empty (XC-07).
fn required<'a>(v: Option<&'a str>, name: &str) -> Result<&'a str, Refusal> {
    v.filter(|v| !v.is_empty()).ok_or_else(|| {
        Refusal::malformed(format!(
            "extended CONNECT without {name} or with an empty one (XC-07)"
        ))
    })
}
