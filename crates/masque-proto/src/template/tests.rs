//! Spec vectors (README vector 17, digest §12/§10/§8/§11 examples), proxy-side validation
//! rules with rejecting cases, and property tests (expand → match round trip, no panics).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

const VEC17_UDP: &str = "https://example.org/.well-known/masque/udp/{target_host}/{target_port}/";
const VEC17_IP: &str = "https://example.org/.well-known/masque/ip/{target}/{ipproto}/";

fn hp(host: &str, port: u16) -> HostPort {
    HostPort::new(Host::parse(host).unwrap(), port).unwrap()
}

fn udp_t(host: &str, port: u16) -> UdpTarget {
    UdpTarget::Host(hp(host, port))
}

fn prefix(addr: &str, len: u8) -> IpScope {
    IpScope::Prefix(IpPrefix::new(addr.parse().unwrap(), len).unwrap())
}

fn ip_t(target: IpScope, ipproto: IpProto) -> IpTarget {
    IpTarget { target, ipproto }
}

// ---------------------------------------------------------------- vectors (client expansion)

#[test]
fn vector17_r9298_13_udp_ipv6_expansion() {
    let t = UdpTemplate::parse(VEC17_UDP).unwrap();
    let e = t.expand(&udp_t("2001:db8::42", 443));
    assert_eq!(e.scheme, Some("https"));
    assert_eq!(e.authority, Some("example.org"));
    assert_eq!(e.path, "/.well-known/masque/udp/2001%3Adb8%3A%3A42/443/");
    assert_eq!(t.match_path(&e.path).unwrap(), udp_t("2001:db8::42", 443));
}

#[test]
fn r9298_13_udp_ipv4_expansion_vector() {
    let t = UdpTemplate::parse(VEC17_UDP).unwrap();
    assert_eq!(
        t.expand(&udp_t("192.0.2.6", 443)).path,
        "/.well-known/masque/udp/192.0.2.6/443/"
    );
}

#[test]
fn r9298_07_form_style_query_vector() {
    let t = UdpTemplate::parse("https://proxy.example.org:4443/masque{?target_host,target_port}")
        .unwrap();
    let e = t.expand(&udp_t("example.com", 53));
    assert_eq!(e.authority, Some("proxy.example.org:4443"));
    assert_eq!(e.path, "/masque?target_host=example.com&target_port=53");
    assert_eq!(t.match_path(&e.path).unwrap(), udp_t("example.com", 53));
}

#[test]
fn r9298_02_query_literal_template() {
    let t =
        UdpTemplate::parse("https://proxy.example.org:4443/masque?h={target_host}&p={target_port}")
            .unwrap();
    let e = t.expand(&udp_t("2001:db8::1", 8443));
    assert_eq!(e.path, "/masque?h=2001%3Adb8%3A%3A1&p=8443");
    assert_eq!(t.match_path(&e.path).unwrap(), udp_t("2001:db8::1", 8443));
}

#[test]
fn vector17_r9484_12_ip_prefix_any_proto() {
    let t = IpTemplate::parse(VEC17_IP).unwrap();
    let target = ip_t(prefix("2001:db8::", 32), IpProto::Any);
    let e = t.expand(&target).unwrap();
    assert_eq!(e.path, "/.well-known/masque/ip/2001%3Adb8%3A%3A%2F32/%2A/");
    assert_eq!(t.match_path(&e.path).unwrap(), target);
    // Literal `*` accepted as well (R9484 §4.6 examples).
    assert_eq!(
        t.match_path("/.well-known/masque/ip/2001%3Adb8%3A%3A%2F32/*/")
            .unwrap(),
        target
    );
}

#[test]
fn r9484_scope_path_vectors() {
    let t = IpTemplate::well_known();
    let v4 = ip_t(prefix("192.0.2.0", 24), IpProto::Proto(17));
    assert_eq!(
        t.expand(&v4).unwrap().path,
        "/.well-known/masque/ip/192.0.2.0%2F24/17/"
    );
    assert_eq!(
        t.match_path("/.well-known/masque/ip/192.0.2.0%2F24/17/")
            .unwrap(),
        v4
    );
    assert_eq!(
        t.expand(&IpTarget::ANY).unwrap().path,
        "/.well-known/masque/ip/%2A/%2A/"
    );
    assert_eq!(
        t.match_path("/.well-known/masque/ip/*/*/").unwrap(),
        IpTarget::ANY
    );
    assert_eq!(
        t.match_path("/.well-known/masque/ip/%2a/%2A/").unwrap(),
        IpTarget::ANY
    );
    let name = ip_t(
        IpScope::Name(DnsName::new("example.com").unwrap()),
        IpProto::Proto(6),
    );
    assert_eq!(
        t.expand(&name).unwrap().path,
        "/.well-known/masque/ip/example.com/6/"
    );
    let addr = ip_t(
        IpScope::Addr(Ipv4Addr::new(192, 0, 2, 1).into()),
        IpProto::Any,
    );
    assert_eq!(
        t.match_path("/.well-known/masque/ip/192.0.2.1/*/").unwrap(),
        addr
    );
}

#[test]
fn vector17_bind_02_wildcard_expansion() {
    let t = UdpTemplate::parse(VEC17_UDP).unwrap();
    let e = t.expand(&UdpTarget::Wildcard);
    assert_eq!(e.path, "/.well-known/masque/udp/%2A/%2A/");
    assert_eq!(t.match_path(&e.path).unwrap(), UdpTarget::Wildcard);
}

#[test]
fn ctcp_02_examples() {
    let t = TcpTemplate::parse("https://request-proxy.example/proxy{?target_host,target_port}")
        .unwrap();
    let e = t.expand(&hp("2001:db8::1", 443));
    assert_eq!(e.authority, Some("request-proxy.example"));
    assert_eq!(
        e.path,
        "/proxy?target_host=2001%3Adb8%3A%3A1&target_port=443"
    );
    assert_eq!(t.match_path(&e.path).unwrap(), hp("2001:db8::1", 443));
    assert_eq!(
        t.expand(&hp("192.0.2.1", 443)).path,
        "/proxy?target_host=192.0.2.1&target_port=443"
    );
    let d = TcpTemplate::well_known();
    assert_eq!(
        d.expand(&hp("example.com", 22)).path,
        "/.well-known/masque/tcp/example.com/22/"
    );
    assert_eq!(
        d.match_path("/.well-known/masque/tcp/example.com/22/")
            .unwrap(),
        hp("example.com", 22)
    );
}

#[test]
fn r9298_09_default_templates() {
    assert_eq!(
        UdpTemplate::well_known().template().as_str(),
        DEFAULT_UDP_PATH
    );
    assert_eq!(
        IpTemplate::well_known().template().as_str(),
        DEFAULT_IP_PATH
    );
    assert_eq!(
        TcpTemplate::well_known().template().as_str(),
        DEFAULT_TCP_PATH
    );
    let t = UdpTemplate::with_authority("proxy.example:4443").unwrap();
    assert_eq!(
        t.template().as_str(),
        "https://proxy.example:4443/.well-known/masque/udp/{target_host}/{target_port}/"
    );
    let e = t.expand(&udp_t("192.0.2.6", 443));
    assert_eq!(
        (e.scheme, e.authority),
        (Some("https"), Some("proxy.example:4443"))
    );
    assert_eq!(e.path, "/.well-known/masque/udp/192.0.2.6/443/");
    assert!(UdpTemplate::with_authority("").is_err());
    assert!(UdpTemplate::with_authority("a/b{").is_err());
    assert!(IpTemplate::with_authority("a b").is_err());
    let wk = UdpTemplate::well_known();
    let e = wk.expand(&udp_t("192.0.2.6", 443));
    assert_eq!((e.scheme, e.authority), (None, None));
}

#[test]
fn expand_path_into_appends() {
    let t = UdpTemplate::well_known();
    let mut buf = String::from("x");
    t.expand_path_into(&udp_t("a.example", 1), &mut buf);
    assert_eq!(buf, "x/.well-known/masque/udp/a.example/1/");
}

#[test]
fn multi_variable_simple_expression() {
    let t = UdpTemplate::parse("https://h/u/{target_host,target_port}/").unwrap();
    let e = t.expand(&udp_t("2001:db8::1", 53));
    assert_eq!(e.path, "/u/2001%3Adb8%3A%3A1,53/");
    assert_eq!(t.match_path(&e.path).unwrap(), udp_t("2001:db8::1", 53));
}

#[test]
fn r9484_02_absent_variables_mean_any() {
    let t = IpTemplate::parse("https://masque.example.org/?user=bob").unwrap();
    assert_eq!(t.expand(&IpTarget::ANY).unwrap().path, "/?user=bob");
    assert_eq!(t.match_path("/?user=bob").unwrap(), IpTarget::ANY);
    assert_eq!(t.match_path("/?user=eve"), Err(MatchError::NoMatch));
    let scoped = ip_t(prefix("10.0.0.0", 8), IpProto::Any);
    assert_eq!(
        t.expand(&scoped),
        Err(ExpandError::ScopeNotExpressible(Var::Target))
    );
    let t = IpTemplate::parse("https://h/ip{?target}").unwrap();
    assert_eq!(
        t.expand(&ip_t(IpScope::Any, IpProto::Proto(6))),
        Err(ExpandError::ScopeNotExpressible(Var::Ipproto))
    );
    assert_eq!(t.match_path("/ip?target=10.0.0.0%2F8").unwrap(), scoped);
    let mut out = String::new();
    assert!(
        t.expand_path_into(&ip_t(IpScope::Any, IpProto::Proto(6)), &mut out)
            .is_err()
    );
    assert!(out.is_empty());
}

// ---------------------------------------------------------------- proxy-side matching rules

fn udp_match(rest: &str) -> Result<UdpTarget, MatchError> {
    UdpTemplate::well_known().match_path(&format!("/.well-known/masque/udp/{rest}"))
}

fn ip_match(rest: &str) -> Result<IpTarget, MatchError> {
    IpTemplate::well_known().match_path(&format!("/.well-known/masque/ip/{rest}"))
}

fn tcp_match(rest: &str) -> Result<TcpTarget, MatchError> {
    TcpTemplate::well_known().match_path(&format!("/.well-known/masque/tcp/{rest}"))
}

#[test]
fn r9298_14_percent_decoding_case_insensitive() {
    assert_eq!(
        udp_match("2001%3adb8%3a%3a42/443/").unwrap(),
        udp_t("2001:db8::42", 443)
    );
    assert_eq!(
        udp_match("%31%39%32.0.2.6/%34%34%33/").unwrap(),
        udp_t("192.0.2.6", 443)
    );
    assert_eq!(
        udp_match("2001%3Adb8%3A%3A42%/443/"),
        Err(MatchError::PercentEncoding(Var::TargetHost))
    );
    assert_eq!(
        udp_match("a.example/44%3/"),
        Err(MatchError::PercentEncoding(Var::TargetPort))
    );
    // Single decoding pass: `%253A` is a literal `%3A`, not a colon.
    assert_eq!(
        udp_match("2001%253Adb8%253A%253A42/443/"),
        Err(HostError::InvalidChar.into())
    );
}

#[test]
fn r9298_10_empty_values_rejected() {
    assert_eq!(udp_match("/443/"), Err(MatchError::Empty(Var::TargetHost)));
    assert_eq!(
        udp_match("a.example//"),
        Err(MatchError::Empty(Var::TargetPort))
    );
    assert_eq!(tcp_match("//"), Err(MatchError::Empty(Var::TargetHost)));
    assert_eq!(ip_match("/6/"), Err(MatchError::Empty(Var::Target)));
    assert_eq!(ip_match("*//"), Err(MatchError::Empty(Var::Ipproto)));
    let q = UdpTemplate::parse("https://h/m{?target_host,target_port}").unwrap();
    assert_eq!(
        q.match_path("/m?target_host=&target_port=1"),
        Err(MatchError::Empty(Var::TargetHost))
    );
}

#[test]
fn r9298_11_ipv6_encoding_zone_and_brackets() {
    assert_eq!(
        udp_match("fe80%3A%3A1%25eth0/443/"),
        Err(HostError::ZoneId.into())
    );
    assert_eq!(
        udp_match("fe80%3A%3A1%2525eth0/443/"),
        Err(HostError::ZoneId.into())
    );
    assert_eq!(
        udp_match("%5B2001%3Adb8%3A%3A1%5D/443/"),
        Err(HostError::InvalidIpv6.into())
    );
    assert_eq!(
        udp_match("2001%3Adb8%3A%3A1%3A/443/"),
        Err(HostError::InvalidIpv6.into())
    );
    // Unencoded `:` or `[` is not part of a value: the path does not fit the template.
    assert!(matches!(
        udp_match("2001:db8::1/443/"),
        Err(MatchError::Malformed { .. })
    ));
    assert!(matches!(
        udp_match("[2001%3Adb8%3A%3A1]/443/"),
        Err(MatchError::Malformed { .. })
    ));
    assert_eq!(
        tcp_match("fe80%3A%3A1%25eth0/443/"),
        Err(HostError::ZoneId.into())
    );
}

#[test]
fn r9298_12_port_validation() {
    assert_eq!(udp_match("h.example/1/").unwrap(), udp_t("h.example", 1));
    assert_eq!(
        udp_match("h.example/65535/").unwrap(),
        udp_t("h.example", 65535)
    );
    assert_eq!(udp_match("h.example/0/"), Err(PortError::Zero.into()));
    assert_eq!(
        udp_match("h.example/65536/"),
        Err(PortError::OutOfRange.into())
    );
    assert_eq!(
        udp_match("h.example/0443/"),
        Err(PortError::LeadingZero.into())
    );
    assert_eq!(
        udp_match("h.example/%2B443/"),
        Err(PortError::NotDecimal.into())
    );
    assert_eq!(
        udp_match("h.example/-1/"),
        Err(PortError::NotDecimal.into())
    );
    assert_eq!(
        udp_match("h.example/%20443/"),
        Err(PortError::NotDecimal.into())
    );
    assert_eq!(
        udp_match("h.example/443a/"),
        Err(PortError::NotDecimal.into())
    );
    assert_eq!(
        udp_match("h.example/1%2E0/"),
        Err(PortError::NotDecimal.into())
    );
    assert!(matches!(
        udp_match("h.example/+443/"),
        Err(MatchError::Malformed { .. })
    ));
    assert_eq!(tcp_match("h.example/0/"), Err(PortError::Zero.into()));
    assert_eq!(
        tcp_match("h.example/99999/"),
        Err(PortError::OutOfRange.into())
    );
}

#[test]
fn hostname_validation_on_match() {
    assert_eq!(
        udp_match("-bad.example/1/"),
        Err(HostError::HyphenAtLabelEdge.into())
    );
    assert_eq!(
        udp_match("bad..example/1/"),
        Err(HostError::EmptyLabel.into())
    );
    assert_eq!(
        udp_match("example.com./1/"),
        Err(HostError::EmptyLabel.into())
    );
    assert_eq!(
        udp_match("ex%21ample/1/"),
        Err(HostError::InvalidChar.into())
    );
    assert_eq!(
        udp_match("ex%00ample/1/"),
        Err(HostError::InvalidChar.into())
    );
    assert_eq!(
        udp_match("ex%C3%A9mple/1/"),
        Err(HostError::InvalidChar.into())
    );
    assert_eq!(udp_match("a*b/1/"), Err(HostError::InvalidChar.into()));
    assert_eq!(
        udp_match("0x7f000001/1/"),
        Err(HostError::NumericFinalLabel.into())
    );
    assert_eq!(
        udp_match("010.0.0.1/1/"),
        Err(HostError::InvalidIpv4.into())
    );
    assert_eq!(udp_match("127.1/1/"), Err(HostError::InvalidIpv4.into()));
    let label = "a".repeat(64);
    assert_eq!(
        udp_match(&format!("{label}/1/")),
        Err(HostError::LabelTooLong.into())
    );
    let long = ["a".repeat(63).as_str(); 4].join(".");
    assert_eq!(
        udp_match(&format!("{long}/1/")),
        Err(MatchError::TooLong(Var::TargetHost))
    );
    assert_eq!(
        udp_match(&format!("{}/1/", &long[..253])).map(|_| ()),
        Ok(())
    );
    assert_eq!(
        udp_match(&format!("{}%2E/1/", &long[..252])),
        Err(HostError::EmptyLabel.into())
    );
}

#[test]
fn bind_01_03_wildcard_rules() {
    assert_eq!(udp_match("%2A/%2A/").unwrap(), UdpTarget::Wildcard);
    assert_eq!(udp_match("*/*/").unwrap(), UdpTarget::Wildcard);
    assert_eq!(udp_match("%2a/*/").unwrap(), UdpTarget::Wildcard);
    assert_eq!(udp_match("%2A/443/"), Err(MatchError::PartialWildcard));
    assert_eq!(
        udp_match("192.0.2.1/%2A/"),
        Err(MatchError::PartialWildcard)
    );
    assert_eq!(udp_match("%2A/443/").unwrap_err().http_status(), 400);
    assert_eq!(udp_match("%2A%2A/443/"), Err(HostError::InvalidChar.into()));
    // BIND-01: a concrete target stays a plain connect-udp target.
    assert_eq!(
        udp_match("192.0.2.1/443/").unwrap(),
        udp_t("192.0.2.1", 443)
    );
}

#[test]
fn ctcp_01_no_wildcard_for_tcp() {
    assert_eq!(
        tcp_match("%2A/%2A/"),
        Err(MatchError::WildcardNotAllowed(Var::TargetHost))
    );
    assert_eq!(
        tcp_match("*/443/"),
        Err(MatchError::WildcardNotAllowed(Var::TargetHost))
    );
    assert_eq!(
        tcp_match("h.example/*/"),
        Err(MatchError::WildcardNotAllowed(Var::TargetPort))
    );
}

#[test]
fn r9484_04_05_target_syntax() {
    assert_eq!(
        ip_match("example.com/*/").unwrap(),
        ip_t(
            IpScope::Name(DnsName::new("example.com").unwrap()),
            IpProto::Any
        )
    );
    assert_eq!(
        ip_match("example.com%2F24/*/"),
        Err(PrefixError::NotAnAddress.into())
    );
    assert_eq!(
        ip_match("%2A%2F0/*/"),
        Err(PrefixError::NotAnAddress.into())
    );
    assert_eq!(
        ip_match("fe80%3A%3A%25eth0/*/"),
        Err(HostError::ZoneId.into())
    );
    assert_eq!(
        ip_match("fe80%3A%3A%25eth0%2F64/*/"),
        Err(HostError::ZoneId.into())
    );
    assert_eq!(
        ip_match("10.0.0.0%2F008/*/"),
        Err(PrefixError::LengthSyntax.into())
    );
    assert_eq!(
        ip_match("10.0.0.0%2F/*/"),
        Err(PrefixError::LengthSyntax.into())
    );
    assert_eq!(
        ip_match("10.0.0.0%2Fx/*/"),
        Err(PrefixError::LengthSyntax.into())
    );
    assert_eq!(
        ip_match("2001%3Adb8%3A%3A%2F0032/*/"),
        Err(PrefixError::LengthSyntax.into())
    );
    // A literal `/` splits the path: it never reaches the value.
    assert!(matches!(
        ip_match("10.0.0.0/8/*/"),
        Err(MatchError::Malformed { .. })
    ));
    assert_eq!(
        ip_match("10.0.0.0%2F08/*/").unwrap(),
        ip_t(prefix("10.0.0.0", 8), IpProto::Any)
    );
}

#[test]
fn r9484_06_prefix_length_range() {
    assert_eq!(
        ip_match("192.0.2.0%2F33/*/"),
        Err(PrefixError::LengthOutOfRange.into())
    );
    assert_eq!(
        ip_match("2001%3Adb8%3A%3A%2F129/*/"),
        Err(PrefixError::LengthOutOfRange.into())
    );
    assert_eq!(
        ip_match("0.0.0.0%2F0/*/").unwrap(),
        ip_t(prefix("0.0.0.0", 0), IpProto::Any)
    );
    assert_eq!(
        ip_match("%3A%3A%2F0/*/").unwrap(),
        ip_t(prefix("::", 0), IpProto::Any)
    );
    assert_eq!(
        ip_match("192.0.2.1%2F32/*/").unwrap(),
        ip_t(prefix("192.0.2.1", 32), IpProto::Any)
    );
    assert_eq!(
        ip_match("2001%3Adb8%3A%3A1%2F128/*/").unwrap(),
        ip_t(prefix("2001:db8::1", 128), IpProto::Any)
    );
}

#[test]
fn r9484_07_host_bits_must_be_zero() {
    assert_eq!(
        ip_match("192.0.2.1%2F24/*/"),
        Err(PrefixError::HostBitsSet.into())
    );
    assert_eq!(
        ip_match("2001%3Adb8%3A%3A1%2F32/*/"),
        Err(PrefixError::HostBitsSet.into())
    );
    assert_eq!(
        ip_match("192.0.2.0%2F24/*/").unwrap(),
        ip_t(prefix("192.0.2.0", 24), IpProto::Any)
    );
}

#[test]
fn r9484_08_ipproto_range() {
    assert_eq!(
        ip_match("*/0/").unwrap(),
        ip_t(IpScope::Any, IpProto::Proto(0))
    );
    assert_eq!(
        ip_match("*/255/").unwrap(),
        ip_t(IpScope::Any, IpProto::Proto(255))
    );
    assert_eq!(
        ip_match("*/017/").unwrap(),
        ip_t(IpScope::Any, IpProto::Proto(17))
    );
    assert_eq!(ip_match("*/256/"), Err(IpProtoError::OutOfRange.into()));
    assert_eq!(ip_match("*/1000/"), Err(IpProtoError::NotDecimal.into()));
    assert_eq!(ip_match("*/-1/"), Err(IpProtoError::NotDecimal.into()));
    assert_eq!(ip_match("*/%2B6/"), Err(IpProtoError::NotDecimal.into()));
    assert_eq!(ip_match("*/tcp/"), Err(IpProtoError::NotDecimal.into()));
}

#[test]
fn r9298_25_structure_errors_and_status() {
    // Another resource: 404.
    assert_eq!(
        UdpTemplate::well_known().match_path("/.well-known/masque/ip/*/*/"),
        Err(MatchError::NoMatch)
    );
    assert_eq!(
        UdpTemplate::well_known().match_path(""),
        Err(MatchError::NoMatch)
    );
    assert_eq!(MatchError::NoMatch.http_status(), 404);
    // Ours but malformed: 400.
    let extra = udp_match("h.example/443/x");
    assert_eq!(extra, Err(MatchError::Malformed { offset: 38 }));
    assert_eq!(extra.unwrap_err().http_status(), 400);
    assert!(matches!(
        udp_match("h.example/443"),
        Err(MatchError::Malformed { .. })
    ));
    assert!(matches!(
        udp_match("h.example/443/?x=1"),
        Err(MatchError::Malformed { .. })
    ));
    assert!(matches!(
        udp_match("h.example/443/#f"),
        Err(MatchError::Malformed { .. })
    ));
    assert!(matches!(
        udp_match("h.example/1/2/"),
        Err(MatchError::Malformed { .. })
    ));
    // Form-style query: positional, exact keys.
    let q = UdpTemplate::parse("https://h/m{?target_host,target_port}").unwrap();
    assert_eq!(q.match_path("/m"), Err(MatchError::Malformed { offset: 2 }));
    assert!(matches!(
        q.match_path("/m?target_port=1&target_host=a"),
        Err(MatchError::Malformed { .. })
    ));
    assert!(matches!(
        q.match_path("/m?target_host=a&target_port=1&x=2"),
        Err(MatchError::Malformed { .. })
    ));
    assert!(matches!(
        q.match_path("/m?target_hos=a&target_port=1"),
        Err(MatchError::Malformed { .. })
    ));
    assert!(matches!(
        q.match_path("/m?target_host"),
        Err(MatchError::Malformed { .. })
    ));
    // Literal percent-encoded template text matches case-insensitively.
    let p = UdpTemplate::parse_path("/m%7Eu/{target_host}/{target_port}").unwrap();
    assert_eq!(
        p.match_path("/m%7eu/a.example/1").unwrap(),
        udp_t("a.example", 1)
    );
}

// ---------------------------------------------------------------- property tests

fn arb_dns_name() -> impl Strategy<Value = DnsName> {
    let label = "[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,20}[a-zA-Z0-9_])?";
    let tld = "[a-zA-Z_][a-zA-Z0-9_]{0,5}";
    (prop::collection::vec(label, 0..4), tld).prop_filter_map("valid name", |(mut labels, tld)| {
        labels.push(tld);
        DnsName::new(&labels.join(".")).ok()
    })
}

fn arb_host() -> impl Strategy<Value = Host> {
    prop_oneof![
        any::<u32>().prop_map(|a| Host::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| Host::V6(Ipv6Addr::from(a))),
        arb_dns_name().prop_map(Host::Name),
    ]
}

fn arb_host_port() -> impl Strategy<Value = HostPort> {
    (arb_host(), 1..=u16::MAX)
        .prop_map(|(h, p)| HostPort::new(h, p).unwrap_or_else(|_| unreachable!()))
}

fn arb_udp() -> impl Strategy<Value = UdpTarget> {
    prop_oneof![4 => arb_host_port().prop_map(UdpTarget::Host), 1 => Just(UdpTarget::Wildcard)]
}

fn arb_ip_target() -> impl Strategy<Value = IpTarget> {
    let v4 = (any::<u32>(), 0u8..=32).prop_map(|(a, l)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(l)).unwrap_or(0);
        IpPrefix::new(Ipv4Addr::from(a & mask).into(), l).unwrap_or_else(|_| unreachable!())
    });
    let v6 = (any::<u128>(), 0u8..=128).prop_map(|(a, l)| {
        let mask = u128::MAX.checked_shl(128 - u32::from(l)).unwrap_or(0);
        IpPrefix::new(Ipv6Addr::from(a & mask).into(), l).unwrap_or_else(|_| unreachable!())
    });
    let scope = prop_oneof![
        Just(IpScope::Any),
        any::<IpAddr>().prop_map(IpScope::Addr),
        v4.prop_map(IpScope::Prefix),
        v6.prop_map(IpScope::Prefix),
        arb_dns_name().prop_map(IpScope::Name),
    ];
    let proto = prop_oneof![Just(IpProto::Any), any::<u8>().prop_map(IpProto::Proto)];
    (scope, proto).prop_map(|(target, ipproto)| IpTarget { target, ipproto })
}

const HP_TEMPLATES: &[&str] = &[
    "https://example.org/.well-known/masque/udp/{target_host}/{target_port}/",
    "https://proxy.example.org:4443/masque?h={target_host}&p={target_port}",
    "https://proxy.example.org:4443/masque{?target_host,target_port}",
    "https://h/x/{target_host,target_port}",
    "https://h/x/{target_port}/{target_host}",
    "https://h/x{?target_port}{&target_host}",
];

const IP_TEMPLATES: &[&str] = &[
    "https://example.org/.well-known/masque/ip/{target}/{ipproto}/",
    "https://h/masque/ip?t={target}&i={ipproto}",
    "https://h/masque/ip{?target,ipproto}",
    "https://h/masque/ip/{ipproto,target}",
];

proptest! {
    #[test]
    fn prop_r9298_13_14_udp_expand_match_roundtrip(t in arb_udp(), k in 0..HP_TEMPLATES.len()) {
        let tpl = UdpTemplate::parse(HP_TEMPLATES[k]).unwrap();
        let e = tpl.expand(&t);
        prop_assert!(e.path.bytes().all(|c| (0x21..=0x7e).contains(&c)));
        prop_assert_eq!(tpl.match_path(&e.path), Ok(t));
    }

    #[test]
    fn prop_ctcp_02_tcp_expand_match_roundtrip(t in arb_host_port(), k in 0..HP_TEMPLATES.len()) {
        let tpl = TcpTemplate::parse(HP_TEMPLATES[k]).unwrap();
        let e = tpl.expand(&t);
        prop_assert_eq!(tpl.match_path(&e.path), Ok(t));
    }

    #[test]
    fn prop_r9484_12_14_ip_expand_match_roundtrip(t in arb_ip_target(), k in 0..IP_TEMPLATES.len()) {
        let tpl = IpTemplate::parse(IP_TEMPLATES[k]).unwrap();
        let e = tpl.expand(&t).unwrap();
        prop_assert_eq!(tpl.match_path(&e.path), Ok(t));
    }

    #[test]
    fn prop_match_arbitrary_strings_never_panics(s in "\\PC*", k in 0..HP_TEMPLATES.len()) {
        let _ = UdpTemplate::parse(HP_TEMPLATES[k]).unwrap().match_path(&s);
        let _ = TcpTemplate::parse(HP_TEMPLATES[k]).unwrap().match_path(&s);
        let _ = IpTemplate::parse(IP_TEMPLATES[k % IP_TEMPLATES.len()]).unwrap().match_path(&s);
    }

    #[test]
    fn prop_match_pathlike_strings_never_panics(
        a in "[%*0-9a-fA-F:./_~x-]{0,40}",
        b in "[%*0-9a-fA-F:./_~x-]{0,12}",
        tail in "[/?&#=]{0,2}",
    ) {
        let udp = UdpTemplate::well_known();
        let ip = IpTemplate::well_known();
        let _ = udp.match_path(&format!("/.well-known/masque/udp/{a}/{b}/{tail}"));
        let _ = TcpTemplate::well_known().match_path(&format!("/.well-known/masque/tcp/{a}/{b}/{tail}"));
        let _ = ip.match_path(&format!("/.well-known/masque/ip/{a}/{b}/{tail}"));
        let _ = UdpTemplate::parse(HP_TEMPLATES[2]).unwrap()
            .match_path(&format!("/masque?target_host={a}&target_port={b}{tail}"));
    }

    #[test]
    fn prop_template_parse_never_panics(s in "\\PC*", t in "[{}?&,+#./;:*%a-z_0-9=/-]{0,48}") {
        for p in [Protocol::ConnectUdp, Protocol::ConnectIp, Protocol::ConnectTcp] {
            let _ = Template::parse(p, &s);
            let _ = Template::parse_path(p, &s);
            let _ = Template::parse(p, &format!("https://h/{t}"));
            let _ = Template::parse_path(p, &format!("/{t}"));
        }
    }

    #[test]
    fn prop_parsed_templates_expand_and_match(t in "[{}?&,a-z_/=-]{0,40}", target in arb_udp()) {
        // Whatever the parser accepts must expand to something the matcher accepts back.
        if let Ok(tpl) = UdpTemplate::parse_path(&format!("/{t}")) {
            let e = tpl.expand(&target);
            prop_assert_eq!(tpl.match_path(&e.path), Ok(target));
        }
    }
}
