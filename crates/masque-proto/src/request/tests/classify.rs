//! `classify` rows: RFC 9298 §3, RFC 9484 §4, connect-tcp §3, connect-udp-listen §2,
//! RFC 9220 §3, RFC 9110 §9.3.6.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::template::{Host, HostPort, IpPrefix, IpProto, IpScope, IpTarget, UdpTemplate};

fn hp(host: Host, port: u16) -> HostPort {
    HostPort::new(host, port).unwrap()
}

fn v4(a: [u8; 4]) -> Host {
    Host::V4(Ipv4Addr::from(a))
}

fn udp_form(path: &str) -> RequestForm {
    extended("connect-udp", path)
}

fn extended(protocol: &str, path: &str) -> RequestForm {
    RequestForm::Extended {
        protocol: protocol.into(),
        authority: "proxy.example".into(),
        path: path.into(),
    }
}

fn classic_form(a: &str) -> RequestForm {
    RequestForm::Classic {
        authority: a.into(),
    }
}

#[test]
fn classify_table() {
    let plain = RequestHeaders::default();
    let bind = RequestHeaders {
        connect_udp_bind: true,
        ..plain
    };
    let tcp_path = "/.well-known/masque/tcp/example.com/443/";
    let tcp_target = hp(Host::parse("example.com").unwrap(), 443);
    let ip_any = "/.well-known/masque/ip/*/*/";
    let rows: Vec<(&str, RequestForm, RequestHeaders, Want<TunnelTarget>)> = vec![
        (
            "R9298-14: connect-udp target",
            udp_form(UDP_PATH),
            plain,
            Is(TunnelTarget::Udp(hp(v4([192, 0, 2, 6]), 443))),
        ),
        (
            "R9298-11: connect-udp IPv6 target",
            udp_form("/.well-known/masque/udp/2001%3Adb8%3A%3A42/443/"),
            plain,
            Is(TunnelTarget::Udp(hp(
                Host::V6("2001:db8::42".parse().unwrap()),
                443,
            ))),
        ),
        (
            "CC-12: token compared case-insensitively",
            extended("CONNECT-UDP", UDP_PATH),
            plain,
            Is(TunnelTarget::Udp(hp(v4([192, 0, 2, 6]), 443))),
        ),
        (
            "R9298-12, R9298-25: port 0",
            udp_form("/.well-known/masque/udp/192.0.2.6/0/"),
            plain,
            Status(400),
        ),
        (
            "R9298-11, R9298-25: zone identifier",
            udp_form("/.well-known/masque/udp/fe80%3A%3A1%2525eth0/53/"),
            plain,
            Status(400),
        ),
        (
            "R9298-10, R9298-25: empty target_host",
            udp_form("/.well-known/masque/udp//443/"),
            plain,
            Status(400),
        ),
        (
            "RFC 9298 §3.1: path outside the template",
            udp_form("/elsewhere"),
            plain,
            Status(404),
        ),
        (
            "BIND-01, BIND-04: wildcard with Connect-UDP-Bind: ?1",
            udp_form("/.well-known/masque/udp/%2A/%2A/"),
            bind,
            Is(TunnelTarget::UdpBind),
        ),
        (
            "BIND-01, BIND-03: wildcard without Connect-UDP-Bind",
            udp_form("/.well-known/masque/udp/%2A/%2A/"),
            plain,
            Status(400),
        ),
        (
            "BIND-03: one wildcard",
            udp_form("/.well-known/masque/udp/%2A/443/"),
            bind,
            Status(400),
        ),
        (
            "BIND-01: concrete target with Connect-UDP-Bind: bind with fallback",
            udp_form(UDP_PATH),
            bind,
            Is(TunnelTarget::Udp(hp(v4([192, 0, 2, 6]), 443))),
        ),
        (
            "R9484-14: connect-ip full tunnel",
            extended("connect-ip", ip_any),
            plain,
            Is(TunnelTarget::Ip(IpTarget::ANY)),
        ),
        (
            "R9484-04: connect-ip prefix and protocol",
            extended("connect-ip", "/.well-known/masque/ip/192.0.2.0%2F24/17/"),
            plain,
            Is(TunnelTarget::Ip(IpTarget {
                target: IpScope::Prefix(
                    IpPrefix::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0)), 24).unwrap(),
                ),
                ipproto: IpProto::Proto(17),
            })),
        ),
        (
            "R9484-07, R9484-14: host bits set",
            extended("connect-ip", "/.well-known/masque/ip/192.0.2.1%2F24/17/"),
            plain,
            Status(400),
        ),
        (
            "R9484-08: ipproto 256",
            extended("connect-ip", "/.well-known/masque/ip/*/256/"),
            plain,
            Status(400),
        ),
        (
            "RFC 9484 §4: path outside the template",
            extended("connect-ip", UDP_PATH),
            plain,
            Status(404),
        ),
        (
            "CTCP-01: connect-tcp",
            extended("connect-tcp", tcp_path),
            plain,
            Is(TunnelTarget::Tcp {
                target: tcp_target.clone(),
                token: "connect-tcp".into(),
            }),
        ),
        (
            "decisions §14: connect-tcp-07 interop token (draft -11)",
            extended("connect-tcp-07", tcp_path),
            plain,
            Is(TunnelTarget::Tcp {
                target: tcp_target.clone(),
                token: "connect-tcp-07".into(),
            }),
        ),
        (
            "decisions §14: connect-tcp-12 interop token (editor's copy)",
            extended("connect-tcp-12", tcp_path),
            plain,
            Is(TunnelTarget::Tcp {
                target: tcp_target,
                token: "connect-tcp-12".into(),
            }),
        ),
        (
            "CTCP-01: no wildcard for connect-tcp",
            extended("connect-tcp", "/.well-known/masque/tcp/%2A/%2A/"),
            plain,
            Status(400),
        ),
        (
            "CTCP-11: connect-tcp port 0",
            extended("connect-tcp", "/.well-known/masque/tcp/example.com/0/"),
            plain,
            Status(400),
        ),
        (
            "CTCP-01: path outside the tcp template",
            extended("connect-tcp", UDP_PATH),
            plain,
            Status(404),
        ),
        (
            "XC-10 (RFC 9220 §3): unknown token",
            extended("foo", UDP_PATH),
            plain,
            Status(501),
        ),
        (
            "XC-10: an old connect-tcp interop token",
            extended("connect-tcp-05", tcp_path),
            plain,
            Status(501),
        ),
        (
            "XC-10: websocket is not served",
            extended("websocket", "/"),
            plain,
            Status(501),
        ),
        (
            "CC-09 (RFC 9110 §9.3.6): classic host:port",
            classic_form("example.com:443"),
            plain,
            Is(TunnelTarget::Classic(hp(
                Host::parse("example.com").unwrap(),
                443,
            ))),
        ),
        (
            "CC-09: classic IPv4",
            classic_form("192.0.2.1:22"),
            plain,
            Is(TunnelTarget::Classic(hp(v4([192, 0, 2, 1]), 22))),
        ),
        (
            "CC-09: classic [IPv6]:port",
            classic_form("[2001:db8::1]:443"),
            plain,
            Is(TunnelTarget::Classic(hp(
                Host::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                443,
            ))),
        ),
        (
            "CC-01, CC-18: classic without a port",
            classic_form("example.com"),
            plain,
            Status(400),
        ),
        (
            "CC-02: classic port 0",
            classic_form("example.com:0"),
            plain,
            Status(400),
        ),
        (
            "CC-02: classic port 65536",
            classic_form("example.com:65536"),
            plain,
            Status(400),
        ),
        (
            "CC-02: classic non-decimal port",
            classic_form("example.com:https"),
            plain,
            Status(400),
        ),
        (
            "CC-09: classic unbracketed IPv6",
            classic_form("2001:db8::1:443"),
            plain,
            Status(400),
        ),
        (
            "CC-09: classic bracketed name",
            classic_form("[example.com]:443"),
            plain,
            Status(400),
        ),
        (
            "R9298-11 (our host rules): classic IPv6 zone identifier",
            classic_form("[fe80::1%25eth0]:443"),
            plain,
            Status(400),
        ),
        (
            "RFC 9110 §4.2.4: classic userinfo",
            classic_form("u@example.com:443"),
            plain,
            Status(400),
        ),
        (
            "our host rules: classic numeric final label",
            classic_form("1.2.3:443"),
            plain,
            Status(400),
        ),
    ];
    let templates = Templates::default();
    for (rule, form, h, want) in &rows {
        check(rule, classify(form, h, &templates), want);
    }
}

/// XC-08: the tunnel target comes from the path, never from `:authority`; a
/// `parse_path` template other than the well-known one is matched (R9298-09).
#[test]
fn xc08_authority_ignored_and_custom_template() {
    let templates = Templates {
        udp: UdpTemplate::parse_path("/masque{?target_host,target_port}").unwrap(),
        ..Templates::default()
    };
    let form = RequestForm::Extended {
        protocol: "connect-udp".into(),
        authority: "192.0.2.99:9".into(),
        path: "/masque?target_host=example.com&target_port=53".into(),
    };
    assert_eq!(
        classify(&form, &RequestHeaders::default(), &templates),
        Result::Ok(TunnelTarget::Udp(hp(
            Host::parse("example.com").unwrap(),
            53
        )))
    );
    let well_known = udp_form(UDP_PATH);
    assert_eq!(
        classify(&well_known, &RequestHeaders::default(), &templates).map_err(|r| r.status),
        Err(404)
    );
}
