//! `form_from_h1` rows: RFC 9112 §3.2, RFC 9110 §7.8 and §9.3.6, RFC 9298 §3.2.

use super::*;

pub(super) struct H1<'a> {
    method: &'a str,
    target: &'a str,
    host: Vec<&'a [u8]>,
    connection: Vec<&'a [u8]>,
    upgrade: Vec<&'a [u8]>,
}

/// `GET <target>` with `Host: example.org`, `Connection: Upgrade`, `Upgrade: connect-udp`.
pub(super) fn get(target: &str) -> H1<'_> {
    H1 {
        method: "GET",
        target,
        host: vec![b"example.org"],
        connection: vec![b"Upgrade"],
        upgrade: vec![b"connect-udp"],
    }
}

/// `CONNECT <target>` with `Host: <host>`.
pub(super) fn connect<'a>(target: &'a str, host: &'a str) -> H1<'a> {
    H1 {
        method: "CONNECT",
        target,
        host: vec![host.as_bytes()],
        connection: vec![],
        upgrade: vec![],
    }
}

impl<'a> H1<'a> {
    fn host(mut self, host: &[&'a [u8]]) -> Self {
        self.host = host.to_vec();
        self
    }
    fn connection(mut self, c: &[&'a [u8]]) -> Self {
        self.connection = c.to_vec();
        self
    }
    fn upgrade(mut self, u: &[&'a [u8]]) -> Self {
        self.upgrade = u.to_vec();
        self
    }
    fn method(mut self, m: &'a str) -> Self {
        self.method = m;
        self
    }
    pub(super) fn form(&self) -> Result<RequestForm, Refusal> {
        form_from_h1(&H1Head {
            method: self.method,
            target: self.target,
            host: &self.host,
            connection: &self.connection,
            upgrade: &self.upgrade,
        })
    }
}

#[test]
fn form_from_h1_table() {
    let udp = |a: &str, p: &str| ext("connect-udp", a, p);
    let rows: Vec<(&str, H1<'_>, Want<RequestForm>)> = vec![
        (
            "R9298-24 (RFC 9298 §3.2): GET + Upgrade connect-udp, origin-form",
            get(UDP_PATH),
            udp("example.org", UDP_PATH),
        ),
        (
            "CTCP-08: GET + Upgrade connect-tcp",
            get("/tcp?h=a&p=1").upgrade(&[b"connect-tcp"]),
            ext("connect-tcp", "example.org", "/tcp?h=a&p=1"),
        ),
        (
            "CC-12 (RFC 9110 §7.8): Upgrade token is case-insensitive, lower-cased",
            get(UDP_PATH).upgrade(&[b"Connect-UDP"]),
            udp("example.org", UDP_PATH),
        ),
        (
            "RFC 9110 §7.6.1, §5.3: `upgrade` in a Connection list over two lines, any case",
            get(UDP_PATH).connection(&[b"keep-alive", b" close , UPGRADE "]),
            udp("example.org", UDP_PATH),
        ),
        (
            "RFC 9110 §5.6.1: Upgrade list with OWS and empty elements",
            get(UDP_PATH).upgrade(&[b" , connect-udp ,", b""]),
            udp("example.org", UDP_PATH),
        ),
        (
            "RFC 9110 §7.8: protocol-name/protocol-version kept whole",
            get(UDP_PATH).upgrade(&[b"websocket/13"]),
            ext("websocket/13", "example.org", UDP_PATH),
        ),
        (
            "R9298-24, RFC 9110 §7.8: Upgrade without `upgrade` in Connection",
            get(UDP_PATH).connection(&[b"keep-alive"]),
            Status(400),
        ),
        (
            "R9298-24, RFC 9110 §7.8: Upgrade without any Connection",
            get(UDP_PATH).connection(&[]),
            Status(400),
        ),
        (
            "R9298-24: Connection: upgrade without Upgrade",
            get(UDP_PATH).upgrade(&[]),
            Status(400),
        ),
        (
            "R9298-24: Connection: upgrade with an empty Upgrade",
            get(UDP_PATH).upgrade(&[b" "]),
            Status(400),
        ),
        (
            "R9298-24: Upgrade offers two protocols on one line",
            get(UDP_PATH).upgrade(&[b"connect-udp, websocket"]),
            Status(400),
        ),
        (
            "R9298-24: Upgrade offers two protocols on two lines",
            get(UDP_PATH).upgrade(&[b"connect-udp", b"connect-udp"]),
            Status(400),
        ),
        (
            "RFC 9110 §7.8: Upgrade value is not a protocol",
            get(UDP_PATH).upgrade(&[b"connect udp"]),
            Status(400),
        ),
        (
            "RFC 9110 §7.8: Upgrade value with two versions",
            get(UDP_PATH).upgrade(&[b"a/b/c"]),
            Status(400),
        ),
        (
            "RFC 9110 §7.8: GET without Upgrade or Connection is not a tunnel request",
            get("/").connection(&[]).upgrade(&[]),
            Status(405),
        ),
        (
            "RFC 9110 §7.6.1: GET with Connection: keep-alive only is not a tunnel request",
            get("/").connection(&[b"keep-alive"]).upgrade(&[]),
            Status(405),
        ),
        (
            "RFC 9298 §3.2: POST + Upgrade is not a tunnel request",
            get(UDP_PATH).method("POST"),
            Status(405),
        ),
        (
            "RFC 9110 §9.3.2: HEAD is not a tunnel request",
            get(UDP_PATH).method("HEAD"),
            Status(405),
        ),
        (
            "RFC 9110 §9.1: `get` is not GET",
            get(UDP_PATH).method("get"),
            Status(405),
        ),
        (
            "CC-10 (RFC 9112 §3.2): no Host",
            get(UDP_PATH).host(&[]),
            Status(400),
        ),
        (
            "CC-10 (RFC 9112 §3.2): two Host lines",
            get(UDP_PATH).host(&[b"example.org", b"example.org"]),
            Status(400),
        ),
        (
            "RFC 9112 §3.2: no Host is 400 before 405",
            get("/").method("POST").host(&[]),
            Status(400),
        ),
        (
            "RFC 9112 §3.2: invalid Host value",
            get(UDP_PATH).host(&[b"a b"]),
            Status(400),
        ),
        (
            "RFC 9110 §7.2: Host with userinfo",
            get(UDP_PATH).host(&[b"u@example.org"]),
            Status(400),
        ),
        (
            "RFC 9112 §3.2: empty Host with an origin-form target",
            get(UDP_PATH).host(&[b""]),
            Status(400),
        ),
        (
            "RFC 9112 §3.2: Host OWS trimmed",
            get(UDP_PATH).host(&[b" example.org:8443 "]),
            udp("example.org:8443", UDP_PATH),
        ),
        (
            "RFC 9112 §3.2.2, R9298-24: absolute-form, Host matches",
            get("https://example.org/.well-known/masque/udp/192.0.2.6/443/"),
            udp("example.org", UDP_PATH),
        ),
        (
            "RFC 9112 §3.2.2: absolute-form, scheme case-insensitive, Host with the default port",
            get("HTTPS://example.org/x").host(&[b"EXAMPLE.org:443"]),
            udp("example.org", "/x"),
        ),
        (
            "RFC 9112 §3.2.2: absolute-form with a port, Host with the same port",
            get("https://example.org:8443/x").host(&[b"example.org:8443"]),
            udp("example.org:8443", "/x"),
        ),
        (
            "RFC 9112 §3.2.2: absolute-form, Host names another host",
            get("https://other.example/x"),
            Status(400),
        ),
        (
            "RFC 9112 §3.2.2: absolute-form, Host names another port",
            get("https://example.org:8443/x"),
            Status(400),
        ),
        (
            "RFC 9112 §3.2.1: absolute-form with an empty path",
            get("http://example.org?q=1").host(&[b"example.org:80"]),
            udp("example.org", "/?q=1"),
        ),
        (
            "RFC 9112 §3.2.2: absolute-form with a non-http scheme",
            get("ftp://example.org/x"),
            Status(400),
        ),
        (
            "RFC 9110 §4.2.4: absolute-form with userinfo",
            get("https://u@example.org/x"),
            Status(400),
        ),
        (
            "RFC 9112 §3.2.3: authority-form target on GET",
            get("example.org:443"),
            Status(400),
        ),
        (
            "RFC 9112 §3.2.4: asterisk-form target on GET",
            get("*"),
            Status(400),
        ),
        (
            "RFC 9112 §3.2: target with a fragment",
            get("/a#b"),
            Status(400),
        ),
        (
            "RFC 9112 §3.2: target with a control character",
            get("/a\u{1}b"),
            Status(400),
        ),
        (
            "CC-09 (RFC 9112 §3.2.3): CONNECT host:port",
            connect("example.com:443", "example.com:443"),
            classic("example.com:443"),
        ),
        (
            "CC-09: CONNECT [IPv6]:port",
            connect("[2001:db8::1]:443", "[2001:DB8::1]:443"),
            classic("[2001:db8::1]:443"),
        ),
        (
            "RFC 9110 §9.3.6: CONNECT, Host without the port is accepted",
            connect("example.com:443", "example.com"),
            classic("example.com:443"),
        ),
        (
            "RFC 9112 §3.2: CONNECT, Host names another host",
            connect("example.com:443", "example.org:443"),
            Status(400),
        ),
        (
            "RFC 9112 §3.2: CONNECT, Host names another port",
            connect("example.com:443", "example.com:80"),
            Status(400),
        ),
        (
            "CC-01, CC-02: CONNECT without a port",
            connect("example.com", "example.com"),
            Status(400),
        ),
        (
            "CC-02: CONNECT with an empty port",
            connect("example.com:", "example.com"),
            Status(400),
        ),
        (
            "CC-09: CONNECT with an origin-form target",
            connect("/x", "example.com"),
            Status(400),
        ),
        (
            "CC-09: CONNECT with an unbracketed IPv6 target",
            connect("2001:db8::1:443", "example.com"),
            Status(400),
        ),
        (
            "CC-10: CONNECT without Host",
            connect("example.com:443", "x").host(&[]),
            Status(400),
        ),
        (
            "RFC 9110 §9.3.6: CONNECT ignores Upgrade",
            connect("example.com:443", "example.com:443")
                .upgrade(&[b"connect-udp"])
                .connection(&[b"upgrade"]),
            classic("example.com:443"),
        ),
    ];
    for (rule, h, want) in &rows {
        check(rule, h.form(), want);
    }
}
