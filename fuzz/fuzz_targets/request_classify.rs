//! Request forms and classification (RFC 8441 §4, RFC 9112 §3.2, RFC 9298 §3):
//! arbitrary heads never panic, and every refusal has a status.
#![no_main]
use libfuzzer_sys::fuzz_target;
use masque_proto::request::{
    H1Head, Pseudo, RequestHeaders, Templates, classify, form_from_h1, form_from_pseudo,
};

fuzz_target!(|data: &[u8]| {
    // Fields separated by 0xff: method, protocol, scheme, authority, path/target,
    // Host, Connection, Upgrade.
    let mut f = data.split(|&b| b == 0xff);
    let mut next = || f.next().unwrap_or_default();
    let text = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_owned);
    let (method, protocol, scheme, authority, path) =
        (next(), next(), next(), next(), next());
    let (host, connection, upgrade) = (next(), next(), next());
    let Some(method) = text(method) else { return };
    let (protocol, scheme, authority, path) =
        (text(protocol), text(scheme), text(authority), text(path));
    let templates = Templates::default();
    let h = RequestHeaders { capsule_protocol: true, connect_udp_bind: data.len() % 2 == 0 };
    let p = Pseudo {
        method: &method,
        protocol: protocol.as_deref().filter(|s| !s.is_empty()),
        scheme: scheme.as_deref(),
        authority: authority.as_deref(),
        path: path.as_deref(),
    };
    let (host, connection, upgrade) = ([host], [connection], [upgrade]);
    let h1 = H1Head {
        method: &method,
        target: path.as_deref().unwrap_or("/"),
        host: &host,
        connection: &connection,
        upgrade: &upgrade,
    };
    for form in [form_from_pseudo(&p), form_from_h1(&h1)] {
        if let Err(r) = form.and_then(|f| classify(&f, &h, &templates).map(|_| ())) {
            assert!(matches!(r.status, 400 | 404 | 405 | 501));
        }
    }
});
