use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn rule(s: &str) -> TargetRule {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn policy(allow_private: bool) -> AddressPolicy {
    AddressPolicy {
        allow_private,
        own_addresses: vec![],
    }
}

/// One row per range of the table: an address inside it, the range's RFC,
/// and whether `allow_private` opens it.
const RANGES: &[(&str, &str, bool)] = &[
    ("0.1.2.3", "RFC 791", false),
    ("10.1.2.3", "RFC 1918", true),
    ("100.64.0.1", "RFC 6598", true),
    ("127.0.0.1", "RFC 1122", true),
    ("169.254.169.254", "RFC 3927", true),
    ("172.16.0.1", "RFC 1918", true),
    ("192.0.0.8", "RFC 6890", true),
    ("192.168.1.1", "RFC 1918", true),
    ("198.19.255.1", "RFC 2544", true),
    ("224.0.0.1", "RFC 1112", false),
    ("240.0.0.1", "RFC 1112", false),
    ("255.255.255.255", "RFC 919", false),
    ("::", "RFC 4291", false),
    ("::1", "RFC 4291", true),
    ("::10.0.0.1", "RFC 4291", false),
    ("64:ff9b::8.8.8.8", "RFC 6052", true),
    ("64:ff9b:1::1", "RFC 8215", true),
    ("fd00::1", "RFC 4193", true),
    ("fe80::1", "RFC 4291", true),
    ("fec0::1", "RFC 3879", true),
    ("ff02::1", "RFC 4291", false),
];

/// R9298-53: every range of the table is refused by default (403
/// destination_ip_prohibited); `allow_private` opens exactly the `Private`
/// ones.
#[test]
fn r9298_53_every_range_refused_by_default() {
    for &(a, rfc, opened) in RANGES {
        let addr = SocketAddr::new(ip(a), 53);
        let range = table::lookup(ip(a)).unwrap_or_else(|| panic!("{a}: in no range"));
        assert!(range.rfc.contains(rfc), "{a}: {} is not {rfc}", range.rfc);
        assert_eq!(range.unlock == Unlock::Private, opened, "{a}");
        let denied = policy(false).check(&TargetRules::default(), addr);
        assert_eq!(denied, Err(Denied::Range(range)), "{a} by default");
        let refusal = denied.unwrap_err().refusal();
        assert_eq!(refusal.failure, TunnelFailure::DestinationProhibited);
        assert_eq!(
            policy(true).check(&TargetRules::default(), addr).is_ok(),
            opened,
            "{a} with allow_private"
        );
    }
    // Every range has its row.
    for r in table::TABLE {
        assert!(
            RANGES.iter().any(|(a, ..)| table::lookup(ip(a)) == Some(r)),
            "no test row for {r:?}"
        );
    }
}

#[test]
fn ranges_edges_and_public_addresses() {
    let p = policy(false);
    let none = TargetRules::default();
    for bad in [
        "198.18.0.0:1",
        "192.0.0.255:1",
        "[::ffff:127.0.0.1]:1",
        "[::ffff:10.0.0.1]:1",
        "[64:ff9b::a00:1]:1",
        "[febf::1]:1",
    ] {
        assert!(p.check(&none, sa(bad)).is_err(), "{bad} must be refused");
    }
    for good in [
        "8.8.8.8:53",
        "198.17.255.255:53",
        "198.20.0.0:53",
        "192.0.1.1:53",
        "192.0.2.1:53",
        "223.255.255.255:53",
        "[2001:db8::1]:53",
        "[::ffff:8.8.8.8]:53",
        "[2606:4700::1]:1",
        "[64:ff9b:2::1]:53",
    ] {
        assert!(p.check(&none, sa(good)).is_ok(), "{good} must be allowed");
    }
}

/// The NAT64 well-known prefix is judged again as the IPv4 address it
/// embeds (RFC 6052): opening the prefix does not open what is behind it.
#[test]
fn nat64_embedded_ipv4_is_checked() {
    let rules = TargetRules {
        allow: vec![rule("64:ff9b::/96")],
        ..Default::default()
    };
    let p = policy(false);
    assert!(p.check(&rules, sa("[64:ff9b::808:808]:53")).is_ok());
    for (bad, why) in [
        ("[64:ff9b::a00:1]:53", "RFC 1918"),
        ("[64:ff9b::7f00:1]:53", "RFC 1122"),
        ("[64:ff9b::e000:1]:53", "RFC 1112"),
        ("[64:ff9b::ffff:ffff]:53", "RFC 919"),
    ] {
        match p.check(&rules, sa(bad)) {
            Err(Denied::Range(r)) => assert!(r.rfc.contains(why), "{bad}: {r:?}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    // allow_private opens the prefix and private IPv4, not multicast behind it.
    let open = policy(true);
    let none = TargetRules::default();
    assert!(open.check(&none, sa("[64:ff9b::a00:1]:53")).is_ok());
    assert!(open.check(&none, sa("[64:ff9b::e000:1]:53")).is_err());
    // A deny rule on the IPv4 address applies through the prefix.
    let deny = TargetRules {
        deny: vec![rule("8.8.8.8")],
        ..Default::default()
    };
    assert!(matches!(
        open.check(&deny, sa("[64:ff9b::808:808]:53")),
        Err(Denied::DenyRule(_))
    ));
    assert_eq!(
        table::nat64_embedded("64:ff9b::c000:201".parse().unwrap()),
        Some("192.0.2.1".parse().unwrap())
    );
    assert_eq!(
        table::nat64_embedded("64:ff9b:1::c000:201".parse().unwrap()),
        None
    );
}

/// R9298-53: the node's own addresses are refused by default on any port.
#[test]
fn r9298_53_own_addresses() {
    let p = AddressPolicy {
        allow_private: false,
        own_addresses: vec![ip("203.0.113.7")],
    };
    assert!(!p.allows(ip("203.0.113.7")));
    assert!(!p.allows(ip("::ffff:203.0.113.7")));
    assert!(p.allows(ip("203.0.113.8")));
    let open = AddressPolicy {
        allow_private: true,
        ..p
    };
    assert!(open.allows(ip("203.0.113.7")), "loopback testing");
}

/// The listeners are refused even with `allow_private` and an allow rule:
/// a tunnel to the node itself is a loop (508 proxy_loop_detected).
#[test]
fn own_listeners_are_never_targets() {
    let rules = TargetRules {
        allow: vec![rule("0.0.0.0/0"), rule("::/0")],
        own_listeners: OwnListeners::new([sa("127.0.0.1:4433"), sa("127.0.0.1:8443")]),
        ..Default::default()
    };
    let p = policy(true);
    for own in [
        "127.0.0.1:4433",
        "127.0.0.1:8443",
        "[::ffff:127.0.0.1]:4433",
    ] {
        let d = p.check(&rules, sa(own)).unwrap_err();
        assert!(
            matches!(d, Denied::OwnListener(a) if a.ip() == ip("127.0.0.1")),
            "{own}"
        );
        let r = d.refusal();
        assert_eq!(r.failure, TunnelFailure::ProxyLoopDetected);
        assert_eq!(r.response("n").0, 508);
        assert!(r.response("n").1.contains("error=proxy_loop_detected"));
    }
    // Other ports and other loopback addresses of a specific listener: fine.
    assert!(p.check(&rules, sa("127.0.0.1:4434")).is_ok());
    assert!(p.check(&rules, sa("127.0.0.2:4433")).is_ok());
    // Through NAT64 too.
    assert!(matches!(
        p.check(&rules, sa("[64:ff9b::7f00:1]:4433")),
        Err(Denied::OwnListener(_))
    ));
    // Port 0 listeners (not bound yet) are ignored; `set` replaces.
    rules.own_listeners.set([sa("127.0.0.1:0")]);
    assert!(rules.own_listeners.listeners().is_empty());
    assert!(p.check(&rules, sa("127.0.0.1:4433")).is_ok());
}

/// A wildcard listener owns its port on loopback and every interface address.
#[test]
fn wildcard_listener_owns_its_port_on_every_local_address() {
    let rules = TargetRules {
        own_listeners: OwnListeners::new([sa("0.0.0.0:4433"), sa("[::]:5533")]),
        ..Default::default()
    };
    let p = policy(true);
    let locals = interface_addresses().unwrap();
    assert!(locals.contains(&ip("127.0.0.1")), "{locals:?}");
    for local in locals.iter().chain([ip("127.0.0.9"), ip("::1")].iter()) {
        for port in [4433, 5533] {
            let addr = SocketAddr::new(*local, port);
            assert!(
                matches!(p.check(&rules, addr), Err(Denied::OwnListener(_))),
                "{addr}"
            );
        }
        assert!(p.check(&rules, SocketAddr::new(*local, 4434)).is_ok());
    }
    // Not a local address: not a loop.
    assert!(p.check(&rules, sa("8.8.8.8:4433")).is_ok());
}

#[test]
fn rule_parsing() {
    type Ports = &'static [(u16, u16)];
    let cases: &[(&str, &str, Ports)] = &[
        ("10.0.0.0/8", "10.0.0.0/8", &[]),
        ("10.0.0.0/8:53", "10.0.0.0/8", &[(53, 53)]),
        ("192.0.2.1", "192.0.2.1/32", &[]),
        ("192.0.2.1:1000-2000", "192.0.2.1/32", &[(1000, 2000)]),
        ("0.0.0.0/0:53,443", "0.0.0.0/0", &[(53, 53), (443, 443)]),
        ("2001:db8::/32", "2001:db8::/32", &[]),
        (
            "2001:db8::/32:53,8000-8080",
            "2001:db8::/32",
            &[(53, 53), (8000, 8080)],
        ),
        ("::1", "::1/128", &[]),
        ("[2001:db8::1]:53", "2001:db8::1/128", &[(53, 53)]),
        ("[2001:db8::/32]:53", "2001:db8::/32", &[(53, 53)]),
        ("[::1]", "::1/128", &[]),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8", &[]),
        (" 10.0.0.0/8 ", "10.0.0.0/8", &[]),
    ];
    for &(input, net, ports) in cases {
        let r = rule(input);
        assert_eq!(r.net.to_string(), net, "{input}");
        assert_eq!(r.ports, ports, "{input}");
        // Display round-trips.
        assert_eq!(rule(&r.to_string()), r, "{input}");
    }
    for bad in [
        "",
        "10.0.0.1/8",
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/8:",
        "10.0.0.0/8:70000",
        "10.0.0.0/8:2000-1000",
        "10.0.0.0/8:53,",
        "10.0.0.0/8:a",
        "example.com",
        "example.com:53",
        "[10.0.0.1]:53",
        "[2001:db8::1",
        "[2001:db8::1]53",
        "2001:db8::1:53:x",
    ] {
        assert!(bad.parse::<TargetRule>().is_err(), "{bad:?} must not parse");
    }
    let r = rule("10.0.0.0/8:53,1000-2000");
    assert!(r.matches(sa("10.1.1.1:53")));
    assert!(r.matches(sa("10.1.1.1:1500")));
    assert!(!r.matches(sa("10.1.1.1:54")));
    assert!(!r.matches(sa("11.1.1.1:53")));
    assert!(
        !r.matches(sa("[::ffff:10.1.1.1]:53")),
        "callers canonicalise"
    );
}

/// The order: own listeners > hard ranges > deny > allow > private ranges >
/// own addresses > allowed.
#[test]
fn evaluation_order() {
    let base = TargetRules {
        own_listeners: OwnListeners::new([sa("127.0.0.1:4433")]),
        ..Default::default()
    };
    let with = |allow: &[&str], deny: &[&str]| TargetRules {
        allow: allow.iter().map(|s| rule(s)).collect(),
        deny: deny.iter().map(|s| rule(s)).collect(),
        ..base.clone()
    };
    let closed = AddressPolicy {
        allow_private: false,
        own_addresses: vec![ip("203.0.113.7")],
    };
    let open = AddressPolicy {
        allow_private: true,
        ..closed.clone()
    };
    // 1. An allow rule never opens the node's own listener.
    let r = with(&["127.0.0.0/8"], &[]);
    assert!(matches!(
        closed.check(&r, sa("127.0.0.1:4433")),
        Err(Denied::OwnListener(_))
    ));
    assert!(
        closed.check(&r, sa("127.0.0.1:53")).is_ok(),
        "allow opens loopback"
    );
    // 2. Nor the ranges nothing unlocks.
    let r = with(&["224.0.0.0/4", "0.0.0.0/0"], &[]);
    assert!(matches!(
        open.check(&r, sa("224.0.0.1:53")),
        Err(Denied::Range(_))
    ));
    assert!(matches!(
        open.check(&r, sa("0.0.0.0:53")),
        Err(Denied::Range(_))
    ));
    assert!(matches!(
        open.check(&r, sa("240.0.0.1:53")),
        Err(Denied::Range(_))
    ));
    // 3. Deny beats allow, and beats allow_private.
    let r = with(&["10.0.0.0/8"], &["10.0.0.0/24:53"]);
    assert!(matches!(
        open.check(&r, sa("10.0.0.1:53")),
        Err(Denied::DenyRule(_))
    ));
    assert!(
        closed.check(&r, sa("10.0.0.1:54")).is_ok(),
        "other port: allowed"
    );
    assert!(
        closed.check(&r, sa("10.0.1.1:53")).is_ok(),
        "outside the deny"
    );
    // Deny applies to public addresses, by port.
    let r = with(&[], &["8.8.8.8:53", "2001:db8::/32"]);
    assert!(matches!(
        open.check(&r, sa("8.8.8.8:53")),
        Err(Denied::DenyRule(_))
    ));
    assert!(open.check(&r, sa("8.8.8.8:443")).is_ok());
    assert!(matches!(
        open.check(&r, sa("[2001:db8::5]:1")),
        Err(Denied::DenyRule(_))
    ));
    // 4. Allow opens a private range only on its ports.
    let r = with(&["192.168.0.0/16:53"], &[]);
    assert!(closed.check(&r, sa("192.168.1.1:53")).is_ok());
    assert!(matches!(
        closed.check(&r, sa("192.168.1.1:54")),
        Err(Denied::Range(_))
    ));
    // 5. The node's own addresses: refused unless allow_private or allowed.
    assert_eq!(
        closed.check(&base, sa("203.0.113.7:53")),
        Err(Denied::OwnAddress)
    );
    assert!(open.check(&base, sa("203.0.113.7:53")).is_ok());
    let r = with(&["203.0.113.7:53"], &[]);
    assert!(closed.check(&r, sa("203.0.113.7:53")).is_ok());
    // 6. Public: allowed.
    assert!(closed.check(&base, sa("8.8.8.8:53")).is_ok());
}
