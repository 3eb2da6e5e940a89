//! The connect-udp request (R9298-13, R9298-29) and the checks on its response
//! (R9298-22, R9298-31/32, R9297-20, R9297-25..27). Sans-IO.

use std::str::FromStr;

use http::{
    HeaderMap, HeaderValue, StatusCode,
    uri::{Authority, PathAndQuery, Scheme},
};
use masque_h3::message::check_capsule_protocol_fields;
use masque_proto::{
    headers::{self, CAPSULE_PROTOCOL, PROXY_STATUS, SF_TRUE},
    proxy_status,
    request::{CONNECT_IP, CONNECT_UDP},
    tcp::Codepoints,
    template::{Host, IpTarget, IpTemplate, TcpTarget, TcpTemplate, UdpTarget, UdpTemplate},
};
use masque_transport::{
    Transport,
    client::{ResponseHead, TunnelHead},
};

use crate::ClientError;

/// The template for requests: `explicit` if given (R9298-08: refused when invalid),
/// else RFC 9298's default on the proxy's origin (R9298-09).
pub(crate) fn template(
    authority: &str,
    explicit: Option<&str>,
) -> Result<UdpTemplate, ClientError> {
    Ok(match explicit {
        Some(t) => UdpTemplate::parse(t)?,
        None => UdpTemplate::with_authority(authority)?,
    })
}

/// The connect-tcp template: `explicit` if given, else the default
/// `/.well-known/masque/tcp/{target_host}/{target_port}/` on the proxy's
/// origin (CTCP-01, CTCP-30).
pub(crate) fn tcp_template(
    authority: &str,
    explicit: Option<&str>,
) -> Result<TcpTemplate, ClientError> {
    Ok(match explicit {
        Some(t) => TcpTemplate::parse(t)?,
        None => TcpTemplate::with_authority(authority)?,
    })
}

/// The connect-ip template: `explicit` if given (R9484-03: refused when
/// invalid), else RFC 9484's default
/// `/.well-known/masque/ip/{target}/{ipproto}/` on the proxy's origin.
pub(crate) fn ip_template(
    authority: &str,
    explicit: Option<&str>,
) -> Result<IpTemplate, ClientError> {
    Ok(match explicit {
        Some(t) => IpTemplate::parse(t)?,
        None => IpTemplate::with_authority(authority)?,
    })
}

/// Extended CONNECT `:protocol connect-ip` (HTTP/1.1: `GET` + `Upgrade:
/// connect-ip`) with `:scheme`, `:authority` and `:path` from the expanded
/// template (R9484-12, R9484-18, R9484-20), `capsule-protocol: ?1` and HTTP
/// datagrams. A scope the template cannot express (no `target` / `ipproto`
/// variable for a non-`*` value, R9484-02) is refused before sending.
pub(crate) fn build_ip(
    template: &IpTemplate,
    target: &IpTarget,
    extra: &HeaderMap,
) -> Result<TunnelHead, ClientError> {
    let bad = |reason: String| ClientError::InvalidTarget {
        target: format!("{target:?}"),
        reason,
    };
    let e = template.expand(target).map_err(|e| bad(e.to_string()))?;
    let scheme =
        Scheme::from_str(e.scheme.unwrap_or("https")).map_err(|_| bad("bad scheme".to_owned()))?;
    let authority = Authority::from_str(
        e.authority
            .ok_or(bad("template has no authority".to_owned()))?,
    )
    .map_err(|_| bad("template authority is not a valid :authority".to_owned()))?;
    let path =
        PathAndQuery::from_str(&e.path).map_err(|_| bad("expanded path is invalid".to_owned()))?;
    let mut head = TunnelHead::extended(CONNECT_IP, authority.as_str(), path.as_str());
    head.scheme = scheme;
    head.datagrams = true;
    head.headers = extra.clone();
    head.headers
        .insert(CAPSULE_PROTOCOL, HeaderValue::from_static(SF_TRUE));
    Ok(head)
}

/// Extended CONNECT with `:protocol` = `codepoints.token` (HTTP/1.1: `GET` +
/// `Upgrade: <token>`), `:scheme`, `:authority` and `:path` from the expanded
/// template (CTCP-02, CTCP-08, CTCP-14) and `capsule-protocol: ?1` (CTCP-16).
/// No HTTP datagrams. `extra` fields are added first.
pub(crate) fn build_tcp(
    template: &TcpTemplate,
    target: &TcpTarget,
    codepoints: Codepoints,
    extra: &HeaderMap,
) -> Result<TunnelHead, ClientError> {
    let e = template.expand(target);
    let bad = |reason: &'static str| ClientError::InvalidTarget {
        target: format!("{target:?}"),
        reason: reason.to_owned(),
    };
    let scheme = Scheme::from_str(e.scheme.unwrap_or("https")).map_err(|_| bad("bad scheme"))?;
    let authority = Authority::from_str(e.authority.ok_or(bad("template has no authority"))?)
        .map_err(|_| bad("template authority is not a valid :authority"))?;
    let path = PathAndQuery::from_str(&e.path).map_err(|_| bad("expanded path is invalid"))?;
    let mut head = TunnelHead::extended(codepoints.token, authority.as_str(), path.as_str());
    head.scheme = scheme;
    head.headers = extra.clone();
    head.headers
        .insert(CAPSULE_PROTOCOL, HeaderValue::from_static(SF_TRUE));
    Ok(head)
}

/// Classic `CONNECT host:port` (RFC 9110 §9.3.6; HTTP/2 and HTTP/3:
/// `:authority` only, RFC 9113 §8.5, RFC 9114 §4.4); IPv6 literals in
/// brackets. `extra` fields are sent with it.
pub(crate) fn build_classic(target: &TcpTarget, extra: &HeaderMap) -> TunnelHead {
    let authority = match &target.host {
        Host::V6(a) => format!("[{a}]:{}", target.port),
        host => format!("{host}:{}", target.port),
    };
    let mut head = TunnelHead::classic(authority);
    head.headers = extra.clone();
    head
}

/// Accepts a classic CONNECT response: any 2xx is the tunnel (RFC 9110
/// §9.3.6, its Content-Length / Transfer-Encoding ignored); anything else is a
/// refusal with its `Proxy-Status`.
pub(crate) fn check_classic_response(head: &ResponseHead) -> Result<(), ClientError> {
    if head.status.is_success() {
        Ok(())
    } else {
        Err(refused(head))
    }
}

/// Extended CONNECT `:protocol connect-udp` (HTTP/1.1: `GET` + `Upgrade:
/// connect-udp`) with `:scheme`, `:authority` and `:path` from the expanded
/// template (R9298-13, R9298-29, R9298-24) and `capsule-protocol: ?1`
/// (R9297-30), with HTTP datagrams. `extra` fields are added first.
pub(crate) fn build(
    template: &UdpTemplate,
    target: &UdpTarget,
    extra: &HeaderMap,
) -> Result<TunnelHead, ClientError> {
    let e = template.expand(target);
    let bad = |reason: &'static str| ClientError::InvalidTarget {
        target: format!("{target:?}"),
        reason: reason.to_owned(),
    };
    // Absolute templates always have both (R9298-02); path-only ones cannot reach here.
    let scheme = Scheme::from_str(e.scheme.unwrap_or("https")).map_err(|_| bad("bad scheme"))?;
    let authority = Authority::from_str(e.authority.ok_or(bad("template has no authority"))?)
        .map_err(|_| bad("template authority is not a valid :authority"))?;
    let path = PathAndQuery::from_str(&e.path).map_err(|_| bad("expanded path is invalid"))?;
    let mut head = TunnelHead::extended(CONNECT_UDP, authority.as_str(), path.as_str());
    head.scheme = scheme;
    head.datagrams = true;
    head.headers = extra.clone();
    head.headers
        .insert(CAPSULE_PROTOCOL, HeaderValue::from_static(SF_TRUE));
    Ok(head)
}

/// Whether `status` opens the tunnel on `transport`: 2xx, or the 101 of an
/// HTTP/1.1 upgrade (RFC 9298 §3.3 / §3.2).
fn is_tunnel_status(status: StatusCode, transport: Transport) -> bool {
    status.is_success() || (transport == Transport::H1 && status == StatusCode::SWITCHING_PROTOCOLS)
}

/// Accepts only a tunnel status that follows the Capsule Protocol rules, on
/// every transport.
///
/// * not 2xx (on HTTP/1.1 not 101 either; 3xx too, redirects are not followed):
///   [`ClientError::Refused`] with the status and the `Proxy-Status` value
///   (R9298-22, R9298-32);
/// * Content-Length / Content-Type / Transfer-Encoding, or 204..206: invalid (R9297-20);
/// * no `capsule-protocol: ?1` although we sent it: invalid (R9298-31, R9297-25..27;
///   `?0`, a non-Boolean or a repeated field mean "absent").
pub(crate) fn check_response(head: &ResponseHead, transport: Transport) -> Result<(), ClientError> {
    let status = head.status;
    if !is_tunnel_status(status, transport) {
        return Err(refused(head));
    }
    let invalid = |reason: String| ClientError::InvalidResponse { status, reason };
    if matches!(status.as_u16(), 204..=206) {
        return Err(invalid(format!("{status} cannot use the Capsule Protocol")));
    }
    check_capsule_protocol_fields(&head.headers).map_err(|e| invalid(e.to_string()))?;
    let lines = head.headers.get_all(CAPSULE_PROTOCOL);
    if !headers::capsule_protocol(lines.iter().map(HeaderValue::as_bytes)) {
        return Err(invalid(format!("{status} without capsule-protocol: ?1")));
    }
    Ok(())
}

/// A refusal: the status with the `Proxy-Status` value, raw and parsed
/// (R9298-22, R9298-32).
pub(crate) fn refused(head: &ResponseHead) -> ClientError {
    let proxy_status = joined(&head.headers, PROXY_STATUS);
    let details = proxy_status
        .as_deref()
        .and_then(|v| proxy_status::parse(v.as_bytes()).ok())
        .unwrap_or_default();
    ClientError::Refused {
        status: head.status,
        proxy_status,
        details,
    }
}

/// All lines of a field joined with `, ` (RFC 9110 §5.3), lossy for non-UTF-8.
fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let parts: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use masque_proto::{proxy_status::ProxyStatusError, request::RequestForm, template::HostPort};

    use super::*;

    const ALL: [Transport; 3] = Transport::ALL;

    fn target(host: &str, port: u16) -> UdpTarget {
        UdpTarget::Host(HostPort::new(Host::parse(host).unwrap(), port).unwrap())
    }

    trait IntoHost {
        fn into_host(self) -> HostPort;
    }

    impl IntoHost for UdpTarget {
        fn into_host(self) -> HostPort {
            match self {
                UdpTarget::Host(hp) => hp,
                UdpTarget::Wildcard => panic!("wildcard"),
            }
        }
    }

    fn response(status: u16, fields: &[(&'static str, &'static str)]) -> ResponseHead {
        let mut headers = HeaderMap::new();
        for (k, v) in fields {
            headers.append(*k, HeaderValue::from_static(v));
        }
        ResponseHead {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
        }
    }

    fn extended(head: &TunnelHead) -> (&str, &str, &str) {
        match &head.form {
            RequestForm::Extended {
                protocol,
                authority,
                path,
            } => (protocol, authority, path),
            other => panic!("{other:?}"),
        }
    }

    /// R9298-13/29 and the spec's test vectors (§12).
    #[test]
    fn r9298_29_request_from_default_and_query_templates() {
        let t = template("example.org", None).unwrap();
        let head = build(&t, &target("2001:db8::42", 443), &HeaderMap::new()).unwrap();
        assert_eq!(
            extended(&head),
            (
                "connect-udp",
                "example.org",
                "/.well-known/masque/udp/2001%3Adb8%3A%3A42/443/"
            )
        );
        assert_eq!(head.scheme, Scheme::HTTPS);
        assert!(head.datagrams);
        assert_eq!(head.headers[CAPSULE_PROTOCOL], "?1");

        let q = "https://proxy.example.org:4443/masque{?target_host,target_port}";
        let t = template("ignored", Some(q)).unwrap();
        let head = build(&t, &target("example.com", 53), &HeaderMap::new()).unwrap();
        let (_, authority, path) = extended(&head);
        assert_eq!(authority, "proxy.example.org:4443");
        assert_eq!(path, "/masque?target_host=example.com&target_port=53");
    }

    /// CTCP-02/14/16: the connect-tcp request from the default template, per
    /// token; classic CONNECT brackets IPv6.
    #[test]
    fn ctcp_02_request_and_classic_authority() {
        let t = tcp_template("proxy.example:4433", None).unwrap();
        for cp in masque_proto::tcp::SERVED {
            let head = build_tcp(
                &t,
                &target("2001:db8::42", 443).into_host(),
                cp,
                &HeaderMap::new(),
            )
            .unwrap();
            assert_eq!(
                extended(&head),
                (
                    cp.token,
                    "proxy.example:4433",
                    "/.well-known/masque/tcp/2001%3Adb8%3A%3A42/443/"
                )
            );
            assert!(!head.datagrams);
            assert_eq!(head.headers[CAPSULE_PROTOCOL], "?1");
        }
        let head = build_classic(&target("2001:db8::42", 443).into_host(), &HeaderMap::new());
        assert_eq!(
            head.form,
            RequestForm::Classic {
                authority: "[2001:db8::42]:443".into()
            }
        );
        let head = build_classic(&target("example.com", 80).into_host(), &HeaderMap::new());
        assert_eq!(
            head.form,
            RequestForm::Classic {
                authority: "example.com:80".into()
            }
        );
        assert!(check_classic_response(&response(200, &[("content-length", "0")])).is_ok());
        assert!(matches!(
            check_classic_response(&response(
                502,
                &[("proxy-status", "masque-node; error=connection_refused")]
            )),
            Err(ClientError::Refused { status, ref details, .. })
                if status == 502 && details[0].error == Some(ProxyStatusError::ConnectionRefused)
        ));
    }

    /// R9484-12/20 and the digest's scope vectors: connect-ip from the
    /// default template; a scope the template cannot express is refused
    /// before sending (R9484-02).
    #[test]
    fn r9484_20_connect_ip_request() {
        use masque_proto::template::{IpPrefix, IpProto, IpScope};

        let t = ip_template("proxy.example:4433", None).unwrap();
        let scope = IpTarget {
            target: IpScope::Prefix(IpPrefix::new("192.0.2.0".parse().unwrap(), 24).unwrap()),
            ipproto: IpProto::Proto(17),
        };
        let head = build_ip(&t, &scope, &HeaderMap::new()).unwrap();
        assert_eq!(
            extended(&head),
            (
                "connect-ip",
                "proxy.example:4433",
                "/.well-known/masque/ip/192.0.2.0%2F24/17/"
            )
        );
        assert!(head.datagrams);
        assert_eq!(head.headers[CAPSULE_PROTOCOL], "?1");
        let v6 = IpTarget {
            target: IpScope::Prefix(IpPrefix::new("2001:db8::".parse().unwrap(), 32).unwrap()),
            ipproto: IpProto::Any,
        };
        let head = build_ip(&t, &v6, &HeaderMap::new()).unwrap();
        assert_eq!(
            extended(&head).2,
            "/.well-known/masque/ip/2001%3Adb8%3A%3A%2F32/%2A/"
        );
        // A template without variables only expresses the full scope.
        let full = ip_template("ignored", Some("https://p.example/vpn")).unwrap();
        assert_eq!(
            extended(&build_ip(&full, &IpTarget::ANY, &HeaderMap::new()).unwrap()).2,
            "/vpn"
        );
        let err = build_ip(&full, &scope, &HeaderMap::new()).unwrap_err();
        assert!(matches!(err, ClientError::InvalidTarget { .. }), "{err}");
    }

    /// R9298-08: an invalid template is refused before sending.
    #[test]
    fn r9298_08_bad_template_refused() {
        for bad in [
            "https://p.example/masque/{target_host}",
            "https://p.example/{#target_host,target_port}",
            "/relative/{target_host}/{target_port}",
        ] {
            assert!(matches!(
                template("p.example", Some(bad)),
                Err(ClientError::Template(_))
            ));
        }
    }

    #[test]
    fn extra_headers_are_sent() {
        let mut extra = HeaderMap::new();
        extra.insert("proxy-authorization", HeaderValue::from_static("Bearer x"));
        extra.insert(CAPSULE_PROTOCOL, HeaderValue::from_static("?0"));
        let t = template("p.example", None).unwrap();
        let head = build(&t, &target("192.0.2.6", 443), &extra).unwrap();
        assert_eq!(head.headers["proxy-authorization"], "Bearer x");
        assert_eq!(head.headers[CAPSULE_PROTOCOL], "?1");
    }

    /// R9298-31, R9297-25/26: any 2xx with `?1` (unknown parameters ignored),
    /// on every transport.
    #[test]
    fn r9298_31_accepts_2xx_with_capsule_protocol() {
        for t in ALL {
            check_response(&response(200, &[("capsule-protocol", "?1")]), t).unwrap();
            check_response(&response(202, &[("capsule-protocol", "?1;foo=bar")]), t).unwrap();
        }
    }

    /// R9298-24 / RFC 9298 §3.3: on HTTP/1.1 the upgrade succeeds with a 101,
    /// which carries the Capsule Protocol like a 2xx; HTTP/2 and HTTP/3 have
    /// no 101.
    #[test]
    fn h1_101_is_the_success_status() {
        let ok = response(101, &[("capsule-protocol", "?1")]);
        check_response(&ok, Transport::H1).unwrap();
        for t in [Transport::H2, Transport::H3] {
            assert!(matches!(
                check_response(&ok, t),
                Err(ClientError::Refused { status, .. }) if status == 101
            ));
        }
        let err = check_response(&response(101, &[]), Transport::H1).unwrap_err();
        assert!(
            matches!(&err, ClientError::InvalidResponse { reason, .. } if reason.contains("capsule-protocol")),
            "{err}"
        );
        let err = check_response(
            &response(101, &[("capsule-protocol", "?1"), ("content-length", "0")]),
            Transport::H1,
        )
        .unwrap_err();
        assert!(matches!(err, ClientError::InvalidResponse { .. }), "{err}");
    }

    /// R9298-22/32: non-2xx is a failure naming the status and Proxy-Status,
    /// on every transport (HTTP/1.1 included: a 502 to the upgrade).
    #[test]
    fn r9298_32_non_2xx_refused_with_proxy_status() {
        for t in ALL {
            let err = check_response(
                &response(
                    502,
                    &[(
                        "proxy-status",
                        "masque-node; error=destination_ip_prohibited",
                    )],
                ),
                t,
            )
            .unwrap_err();
            let ClientError::Refused {
                status,
                proxy_status,
                details,
            } = &err
            else {
                panic!("{err}");
            };
            assert_eq!(*status, StatusCode::BAD_GATEWAY);
            assert_eq!(
                proxy_status.as_deref(),
                Some("masque-node; error=destination_ip_prohibited")
            );
            assert_eq!(details[0].name, "masque-node");
            assert_eq!(
                details[0].error,
                Some(ProxyStatusError::DestinationIpProhibited)
            );
            let msg = err.to_string();
            assert!(
                msg.contains("502") && msg.contains("destination_ip_prohibited"),
                "{msg}"
            );
            // 3xx is a failure too; an unparsable Proxy-Status keeps the raw value.
            let err = check_response(
                &response(302, &[("capsule-protocol", "?1"), ("proxy-status", "((")]),
                t,
            )
            .unwrap_err();
            assert!(matches!(
                err,
                ClientError::Refused { ref details, ref proxy_status, .. }
                    if details.is_empty() && proxy_status.as_deref() == Some("((")
            ));
            let err = check_response(&response(404, &[]), t).unwrap_err();
            assert!(matches!(
                err,
                ClientError::Refused {
                    proxy_status: None,
                    ..
                }
            ));
        }
    }

    /// R9297-20 and R9297-25..27.
    #[test]
    fn r9297_20_27_invalid_2xx_refused() {
        for t in ALL {
            for fields in [
                &[("capsule-protocol", "?1"), ("content-length", "0")][..],
                &[("capsule-protocol", "?1"), ("content-type", "text/plain")],
                &[],
                &[("capsule-protocol", "?0")],
                &[("capsule-protocol", "1")],
                &[("capsule-protocol", "?1"), ("capsule-protocol", "?1")],
            ] {
                let err = check_response(&response(200, fields), t).unwrap_err();
                assert!(
                    matches!(err, ClientError::InvalidResponse { .. }),
                    "{fields:?}: {err}"
                );
            }
            let err = check_response(&response(204, &[("capsule-protocol", "?1")]), t).unwrap_err();
            assert!(matches!(err, ClientError::InvalidResponse { .. }));
        }
    }
}
