//! `form_from_pseudo` rows: RFC 8441 §4, RFC 9220 §3, RFC 9113 §8.5, RFC 9114 §4.4.

use super::*;

pub(super) fn pseudo<'a>(
    method: &'a str,
    protocol: Option<&'a str>,
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: Option<&'a str>,
) -> Pseudo<'a> {
    Pseudo {
        method,
        protocol,
        scheme,
        authority,
        path,
    }
}

#[test]
fn form_from_pseudo_table() {
    let (c, s, a, p) = (
        "CONNECT",
        Some("https"),
        Some("example.org"),
        Some(UDP_PATH),
    );
    let u = Some("connect-udp");
    let rows: Vec<(&str, Pseudo<'_>, Want<RequestForm>)> = vec![
        (
            "R9298-29 (RFC 9298 §3.4): extended CONNECT connect-udp",
            pseudo(c, u, s, a, p),
            ext("connect-udp", "example.org", UDP_PATH),
        ),
        (
            "CTCP-14: extended CONNECT connect-tcp",
            pseudo(
                c,
                Some("connect-tcp"),
                s,
                a,
                Some("/p?target_host=a&target_port=1"),
            ),
            ext(
                "connect-tcp",
                "example.org",
                "/p?target_host=a&target_port=1",
            ),
        ),
        (
            "CC-12 (RFC 9110 §7.8): token lower-cased",
            pseudo(c, Some("Connect-UDP"), s, a, p),
            ext("connect-udp", "example.org", UDP_PATH),
        ),
        (
            "XC-10 (RFC 9220 §3): unknown token is a form; classify answers 501",
            pseudo(c, Some("foo"), s, a, p),
            ext("foo", "example.org", UDP_PATH),
        ),
        (
            "R9298-29: any URI scheme is accepted (digests do not refuse http)",
            pseudo(c, u, Some("http"), a, p),
            ext("connect-udp", "example.org", UDP_PATH),
        ),
        (
            "XC-11 (RFC 9113 §8.3): :protocol on GET",
            pseudo("GET", u, s, a, p),
            Status(400),
        ),
        (
            "XC-11, RFC 9110 §9.1: :protocol on `connect` (methods are case-sensitive)",
            pseudo("connect", u, s, a, p),
            Status(400),
        ),
        (
            "XC-06: :protocol not a token",
            pseudo(c, Some("connect udp"), s, a, p),
            Status(400),
        ),
        (
            "XC-06: empty :protocol",
            pseudo(c, Some(""), s, a, p),
            Status(400),
        ),
        (
            "XC-07 (RFC 8441 §4): no :scheme",
            pseudo(c, u, None, a, p),
            Status(400),
        ),
        (
            "XC-07: empty :scheme",
            pseudo(c, u, Some(""), a, p),
            Status(400),
        ),
        (
            "RFC 3986 §3.1: :scheme not a scheme",
            pseudo(c, u, Some("1https"), a, p),
            Status(400),
        ),
        (
            "XC-07 (RFC 8441 §4): no :path",
            pseudo(c, u, s, a, None),
            Status(400),
        ),
        (
            "XC-07: empty :path",
            pseudo(c, u, s, a, Some("")),
            Status(400),
        ),
        (
            "R9298-29, R9298-03: :path not starting with /",
            pseudo(c, u, s, a, Some("*")),
            Status(400),
        ),
        (
            "R9298-04: :path with a fragment",
            pseudo(c, u, s, a, Some("/a#b")),
            Status(400),
        ),
        (
            "RFC 9114 §4.3.1: :path with a space",
            pseudo(c, u, s, a, Some("/a b")),
            Status(400),
        ),
        (
            "XC-07, RFC 9220 §3: no :authority",
            pseudo(c, u, s, None, p),
            Status(400),
        ),
        (
            "XC-07: empty :authority",
            pseudo(c, u, s, Some(""), p),
            Status(400),
        ),
        (
            "RFC 9114 §4.3.1: userinfo in :authority",
            pseudo(c, u, s, Some("u@example.org"), p),
            Status(400),
        ),
        (
            "RFC 3986 §3.2: :authority with a space",
            pseudo(c, u, s, Some("a b"), p),
            Status(400),
        ),
        (
            "CC-18 (RFC 9114 §4.4): classic CONNECT",
            pseudo(c, None, None, Some("192.0.2.1:443"), None),
            classic("192.0.2.1:443"),
        ),
        (
            "CC-13 (RFC 9113 §8.5): classic CONNECT with :scheme",
            pseudo(c, None, s, Some("192.0.2.1:443"), None),
            Status(400),
        ),
        (
            "CC-13 (RFC 9113 §8.5): classic CONNECT with :path",
            pseudo(c, None, None, Some("192.0.2.1:443"), p),
            Status(400),
        ),
        (
            "CC-18 (RFC 9114 §4.4): classic CONNECT without :authority",
            pseudo(c, None, None, None, None),
            Status(400),
        ),
        (
            "CC-18: classic CONNECT with empty :authority",
            pseudo(c, None, None, Some(""), None),
            Status(400),
        ),
        (
            "RFC 9110 §9.3.1: GET is not a tunnel request",
            pseudo("GET", None, s, a, p),
            Status(405),
        ),
        (
            "RFC 9110 §9.1: `connect` is not CONNECT",
            pseudo("connect", None, None, a, None),
            Status(405),
        ),
        (
            "RFC 9110 §9.3.3: POST is not a tunnel request",
            pseudo("POST", None, s, a, p),
            Status(405),
        ),
    ];
    for (rule, p, want) in &rows {
        check(rule, form_from_pseudo(p), want);
    }
}
