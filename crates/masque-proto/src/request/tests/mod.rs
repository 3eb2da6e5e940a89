//! Table tests: one row per rule per form, each naming its RFC section / id.

mod classify;
mod h1;
mod pseudo;

use proptest::prelude::*;

use super::*;
use h1::{connect, get};
use pseudo::pseudo;

const UDP_PATH: &str = "/.well-known/masque/udp/192.0.2.6/443/";

/// The expected outcome of a row: a value, or a refusal status.
#[derive(Debug)]
enum Want<T> {
    Ok(T),
    Status(u16),
}
use Want::{Ok as Is, Status};

/// The failure each status goes with (the module's status table).
fn failure_for(status: u16) -> Option<TunnelFailure> {
    match status {
        400 => Some(TunnelFailure::MalformedRequest),
        404 => Some(TunnelFailure::NotFound),
        405 => None,
        501 => Some(TunnelFailure::NotImplemented),
        s => panic!("no status {s} in the table"),
    }
}

fn check<T: PartialEq + core::fmt::Debug>(rule: &str, got: Result<T, Refusal>, want: &Want<T>) {
    match (got, want) {
        (Result::Ok(v), Is(w)) => assert_eq!(&v, w, "{rule}"),
        (Err(r), Status(s)) => {
            assert_eq!(r.status, *s, "{rule}: {r:?}");
            assert_eq!(r.failure, failure_for(*s), "{rule}: {r:?}");
            assert_eq!(r.is_malformed(), *s == 400, "{rule}");
            assert!(!r.details.is_empty(), "{rule}");
        }
        (got, want) => panic!("{rule}: got {got:?}, want {want:?}"),
    }
}

fn ext(protocol: &str, authority: &str, path: &str) -> Want<RequestForm> {
    Is(RequestForm::Extended {
        protocol: protocol.into(),
        authority: authority.into(),
        path: path.into(),
    })
}

fn classic(authority: &str) -> Want<RequestForm> {
    Is(RequestForm::Classic {
        authority: authority.into(),
    })
}

/// The same tunnel asked over HTTP/3 (extended CONNECT, RFC 9298 §3.4) and
/// HTTP/1.1 (Upgrade, RFC 9298 §3.2) classifies the same; so does classic CONNECT
/// (RFC 9114 §4.4 / RFC 9112 §3.2.3).
#[test]
fn r9298_24_29_same_target_over_every_version() {
    let t = Templates::default();
    let h = RequestHeaders::default();
    let h3 = form_from_pseudo(&pseudo(
        "CONNECT",
        Some("connect-udp"),
        Some("https"),
        Some("example.org"),
        Some(UDP_PATH),
    ))
    .unwrap();
    let h1 = get(UDP_PATH).form().unwrap();
    assert_eq!(h3, h1);
    assert_eq!(classify(&h3, &h, &t), classify(&h1, &h, &t));
    let c3 = form_from_pseudo(&pseudo(
        "CONNECT",
        None,
        None,
        Some("[2001:db8::1]:443"),
        None,
    ))
    .unwrap();
    let c1 = connect("[2001:db8::1]:443", "[2001:db8::1]:443")
        .form()
        .unwrap();
    assert_eq!(c3, c1);
    assert!(matches!(
        classify(&c1, &h, &t),
        Result::Ok(TunnelTarget::Classic(_))
    ));
}

/// RFC 9209 §2.3.16 / §2.3.29, PS-04: the `Proxy-Status` member of each refusal.
#[test]
fn ps_refusal_proxy_status() {
    let ps = |r: Refusal| r.proxy_status("n").map(|m| m.to_header_value());
    assert_eq!(
        ps(Refusal::malformed("bad port")),
        Some("n; error=http_request_error; status-code=400; details=\"bad port\"".into())
    );
    assert_eq!(
        ps(Refusal::new(TunnelFailure::NotFound, "x")),
        Some("n; error=http_request_error; status-code=404; details=\"x\"".into())
    );
    assert_eq!(
        ps(Refusal::new(TunnelFailure::NotImplemented, "y")),
        Some("n; error=proxy_internal_response; details=\"y\"".into())
    );
    assert_eq!(ps(Refusal::not_a_tunnel("z")), None);
    // An explicit status overrides the table's in `status-code`.
    let mut r = Refusal::malformed("w");
    r.status = 422;
    assert_eq!(
        ps(r),
        Some("n; error=http_request_error; status-code=422; details=\"w\"".into())
    );
    assert_eq!(Refusal::malformed("d").to_string(), "400: d");
}

proptest! {
    /// Arbitrary heads never panic and always yield a form or a refusal whose
    /// status is in the table.
    #[test]
    fn prop_arbitrary_requests_never_panic(
        method in prop_oneof![Just("CONNECT".to_owned()), Just("GET".to_owned()), "[A-Za-z]{0,8}"],
        protocol in proptest::option::of("[ -~]{0,16}"),
        scheme in proptest::option::of("[ -~]{0,8}"),
        authority in proptest::option::of("[ -~]{0,24}"),
        path in proptest::option::of("[ -~]{0,40}"),
        host in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..3),
        connection in proptest::collection::vec("[ -~]{0,16}", 0..3),
        upgrade in proptest::collection::vec("[ -~]{0,16}", 0..3),
        bind in any::<bool>(),
    ) {
        let t = Templates::default();
        let h = RequestHeaders { capsule_protocol: true, connect_udp_bind: bind };
        let p = Pseudo {
            method: &method,
            protocol: protocol.as_deref(),
            scheme: scheme.as_deref(),
            authority: authority.as_deref(),
            path: path.as_deref(),
        };
        let host: Vec<&[u8]> = host.iter().map(Vec::as_slice).collect();
        let connection: Vec<&[u8]> = connection.iter().map(|s| s.as_bytes()).collect();
        let upgrade: Vec<&[u8]> = upgrade.iter().map(|s| s.as_bytes()).collect();
        let target = path.as_deref().or(authority.as_deref()).unwrap_or("/");
        let h1 = H1Head { method: &method, target, host: &host, connection: &connection, upgrade: &upgrade };
        for form in [form_from_pseudo(&p), form_from_h1(&h1)] {
            let r = form.and_then(|f| classify(&f, &h, &t).map(|_| ()));
            if let Err(r) = r {
                prop_assert_eq!(r.failure, failure_for(r.status));
            }
        }
    }
}
