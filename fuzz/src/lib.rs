//! The bodies of the fuzz targets, one module each, so that the libFuzzer
//! binaries (`fuzz_targets/*.rs`, built by cargo-fuzz on nightly) and the
//! stable replay test (`tests/replay.rs`, run by `cargo xtask test` over
//! `seeds/<target>/`) run the same code.

/// Connect-UDP-Bind capsules/payloads, and the connect-tcp receiver fed the
/// input as a body in chunks whose size comes from the input.
pub mod bind_tcp_capsules {
    use bytes::Bytes;
    use masque_proto::{
        bind::{self, BindCapsule},
        tcp::{DRAFT_11, TcpEvent, TcpReceiver},
    };

    /// One fuzz input.
    pub fn run(data: &[u8]) {
        let Some((&ty, value)) = data.split_first() else {
            return;
        };
        let _ = BindCapsule::decode(0x11 + u64::from(ty % 3), value);
        let _ = bind::parse_uncompressed(Bytes::copy_from_slice(value));
        let mut rx = TcpReceiver::new(DRAFT_11);
        let mut fin = false;
        for chunk in value.chunks(usize::from(ty % 7) + 1) {
            rx.push(Bytes::copy_from_slice(chunk));
            loop {
                match rx.next_event() {
                    Ok(Some(TcpEvent::Data(d))) => {
                        assert!(!d.is_empty() && !fin, "data after FIN");
                    }
                    Ok(Some(TcpEvent::Fin)) => {
                        assert!(!fin, "two FINs");
                        fin = true;
                    }
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
        }
        let _ = rx.finish();
    }
}

/// CapsuleDecoder fed the input in chunks whose sizes come from the input itself.
pub mod capsule_decoder {
    use bytes::Bytes;
    use masque_proto::capsule::{CapsuleDecoder, OversizePolicy};

    /// One fuzz input.
    pub fn run(data: &[u8]) {
        let Some((&cfg, rest)) = data.split_first() else {
            return;
        };
        let mut dec = CapsuleDecoder::with_max_size(1 + usize::from(cfg) * 64);
        if cfg & 1 == 1 {
            dec = dec.oversize_policy(OversizePolicy::SkipDatagram);
        }
        let step = usize::from(cfg % 13) + 1;
        for chunk in rest.chunks(step) {
            dec.push(Bytes::copy_from_slice(chunk));
            loop {
                match dec.next_capsule() {
                    Ok(Some(c)) => assert!(c.value.len() <= dec.max_size()),
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
        }
        let _ = dec.finish();
    }
}

/// ADDRESS_ASSIGN / ADDRESS_REQUEST / ROUTE_ADVERTISEMENT values (RFC 9484 §4.7).
pub mod connect_ip_capsules {
    use masque_proto::connect_ip::ConnectIpCapsule;

    /// One fuzz input.
    pub fn run(data: &[u8]) {
        let Some((&ty, value)) = data.split_first() else {
            return;
        };
        let ty = u64::from(ty % 4);
        if let Ok(Some(c)) = ConnectIpCapsule::decode(ty, value) {
            // Whatever decodes re-encodes to something that decodes to the same
            // capsule (bytes may differ: non-minimal varints are legal, QV-03).
            let mut out = Vec::new();
            c.encode(&mut out).expect("decoded capsule re-encodes");
            let again = ConnectIpCapsule::decode(ty, &out)
                .expect("re-decodes")
                .expect("same type");
            assert_eq!(again, c);
        }
    }
}

/// HTTP/3 datagram and context-id parsing (RFC 9297 §2.1, RFC 9298 §5).
pub mod datagram {
    use bytes::Bytes;
    use masque_proto::datagram;

    /// One fuzz input.
    pub fn run(data: &[u8]) {
        if let Ok((qsid, rest)) = datagram::parse_h3_datagram_slice(data) {
            assert!(qsid < 1 << 60);
            assert!(rest.len() < data.len());
        }
        if let Ok((_, payload)) = datagram::parse_udp_payload(Bytes::copy_from_slice(data)) {
            assert!(payload.len() <= datagram::MAX_UDP_PAYLOAD);
        }
        let _ = datagram::parse_context_slice(data);
    }
}

/// HTTP/3 frame decoder (chunked) and SETTINGS payloads (RFC 9114 §7).
pub mod h3_frames {
    use bytes::Bytes;
    use masque_h3::{frame::FrameDecoder, settings::Settings};

    /// One fuzz input.
    pub fn run(data: &[u8]) {
        let _ = Settings::decode(data);
        let Some((&step, rest)) = data.split_first() else {
            return;
        };
        let mut dec = FrameDecoder::new(4096);
        for chunk in rest.chunks(usize::from(step % 17) + 1) {
            let mut input = Bytes::copy_from_slice(chunk);
            loop {
                match dec.decode(&mut input) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
            assert!(input.is_empty());
        }
        let _ = dec.finish();
    }
}

/// IP packet views, TTL decrement and ICMP parsing/synthesis (RFC 9484 §8, ICMP digest).
pub mod ip_icmp {
    use masque_proto::{
        icmp::{self, IcmpErrorKind},
        packet::{self, IpPacket},
    };
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// One fuzz input.
    pub fn run(data: &[u8]) {
        let _ = IpPacket::parse(data);
        let _ = IpPacket::parse_quoted(data);
        let _ = icmp::parse_icmp_packet(data);
        let mut copy = data.to_vec();
        let _ = packet::decrement_ttl(&mut copy);
        for source in [
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            for kind in [
                IcmpErrorKind::TimeExceeded,
                IcmpErrorKind::PacketTooBig { mtu: 1280 },
            ] {
                let mut out = Vec::new();
                if icmp::write_error(&mut out, data, kind, source, 64).is_ok() {
                    // Never more than the minimum MTU of the family (ICMP-10, ICMP-11).
                    assert!(out.len() <= if source.is_ipv4() { 576 } else { 1280 });
                    assert!(icmp::parse_icmp_packet(&out).is_ok());
                }
            }
        }
        let mut out = Vec::new();
        let _ = icmp::write_echo_reply(&mut out, data, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 64);
    }
}

/// QPACK field sections (RFC 9204, zero-capacity table) and HTTP/3 message heads.
pub mod qpack_decode {
    use masque_h3::{RequestHead, ResponseHead, message, qpack};

    /// One fuzz input.
    pub fn run(data: &[u8]) {
        let Ok(fields) = qpack::decode_field_section(data, 16 * 1024) else {
            return;
        };
        if let Ok(req) = RequestHead::from_fields(fields.clone(), true) {
            let mut out = Vec::new();
            req.encode(&mut out)
                .expect("a validated request re-encodes");
            let back = qpack::decode_field_section(&out, 1 << 20).expect("our encoding decodes");
            assert_eq!(
                RequestHead::from_fields(back, true).expect("still valid"),
                req
            );
        }
        let _ = ResponseHead::from_fields(fields.clone());
        let _ = message::trailers_from_fields(fields);
        let _ = qpack::EncoderStreamReader::new().push(data);
        let _ = qpack::DecoderStreamReader::new().push(data);
    }
}

/// Request forms and classification (RFC 8441 §4, RFC 9112 §3.2, RFC 9298 §3):
/// arbitrary heads never panic, and every refusal has a status.
pub mod request_classify {
    use masque_proto::request::{
        H1Head, Pseudo, RequestHeaders, Templates, classify, form_from_h1, form_from_pseudo,
    };

    /// One fuzz input.
    pub fn run(data: &[u8]) {
        // Fields separated by 0xff: method, protocol, scheme, authority, path/target,
        // Host, Connection, Upgrade.
        let mut f = data.split(|&b| b == 0xff);
        let mut next = || f.next().unwrap_or_default();
        let text = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_owned);
        let (method, protocol, scheme, authority, path) = (next(), next(), next(), next(), next());
        let (host, connection, upgrade) = (next(), next(), next());
        let Some(method) = text(method) else { return };
        let (protocol, scheme, authority, path) =
            (text(protocol), text(scheme), text(authority), text(path));
        let templates = Templates::default();
        let h = RequestHeaders {
            capsule_protocol: true,
            connect_udp_bind: data.len().is_multiple_of(2),
        };
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
    }
}

/// Header field parsers: capsule-protocol, proxy-public-address, Proxy-Status,
/// and the Bearer credentials of Proxy-Authorization.
pub mod structured_fields {
    use masque_proto::{headers, proxy_status};

    /// One fuzz input.
    pub fn run(data: &[u8]) {
        let _ = headers::sf::parse_item(data);
        let _ = headers::sf::parse_list(data);
        let _ = headers::parse_sf_boolean(data);
        let _ = headers::parse_proxy_public_address(data);
        if let Some(t) = headers::auth::bearer_token(data) {
            assert!(headers::auth::is_token68(t));
        }
        if let Ok(members) = proxy_status::parse(data) {
            for m in members {
                // What we parse we can write back and parse again.
                let again = proxy_status::parse(m.to_header_value().as_bytes()).expect("re-parse");
                assert_eq!(again.len(), 1);
            }
        }
    }
}

/// URI template parsing and server-side matching (RFC 9298 §3, RFC 9484 §3, connect-tcp).
pub mod template_match {
    use masque_proto::template::{IpTemplate, TcpTemplate, UdpTemplate};

    /// One fuzz input.
    pub fn run(data: &[u8]) {
        let Ok(s) = std::str::from_utf8(data) else {
            return;
        };
        let _ = UdpTemplate::well_known().match_path(s);
        let _ = IpTemplate::well_known().match_path(s);
        let _ = TcpTemplate::well_known().match_path(s);
        if let Ok(t) = UdpTemplate::parse("https://h.example/m{?target_host,target_port}") {
            let _ = t.match_path(s);
        }
        let _ = UdpTemplate::parse(s);
        let _ = IpTemplate::parse_path(s);
        let _ = TcpTemplate::parse(s);
    }
}

/// TunnelCore (RFC 9297 §3, RFC 9298 §5): the body fed in chunks whose sizes come
/// from the input, QUIC datagrams taken from the same bytes; errors must stick;
/// capsules over the bound are skipped (or judged by their Context ID) without
/// being buffered.
pub mod tunnel_core {
    use bytes::Bytes;
    use masque_proto::tunnel::{DatagramRules, TunnelCore, TunnelEvent};

    /// One fuzz input.
    pub fn run(data: &[u8]) {
        let Some((&cfg, rest)) = data.split_first() else {
            return;
        };
        let rules = if cfg & 1 == 1 {
            DatagramRules::ip()
        } else {
            DatagramRules::udp()
        };
        let max = if cfg & 2 == 2 {
            64 * 1024
        } else {
            usize::from(cfg)
        };
        let mut core = TunnelCore::new(rules, max);
        let step = usize::from(cfg % 13) + 1;
        let mut failed = None;
        for chunk in rest.chunks(step) {
            core.push_body(Bytes::copy_from_slice(chunk));
            loop {
                match core.next_event() {
                    Ok(Some(TunnelEvent::Capsule(c))) => assert!(c.value.len() <= max),
                    Ok(Some(TunnelEvent::Datagram(_))) => assert!(failed.is_none()),
                    Ok(None) => {
                        assert!(failed.is_none());
                        // R9297-17/-34: an oversize capsule is skipped, never
                        // buffered: at most the bound (or a Context ID) plus a header.
                        assert!(core.buffered_len() <= max.max(8) + 16);
                        break;
                    }
                    Err(e) => {
                        assert!(failed.as_ref().is_none_or(|f| *f == e));
                        failed = Some(e);
                        break;
                    }
                }
            }
            let d = core.on_datagram(Bytes::copy_from_slice(chunk));
            assert_eq!(d.is_err(), failed.is_some());
        }
        match core.on_fin() {
            Ok(()) => assert!(failed.is_none()),
            Err(e) => {
                assert!(failed.as_ref().is_none_or(|f| *f == e));
                assert!(core.next_event().is_err());
                assert!(core.on_fin().is_err());
            }
        }
    }
}

/// HTTP/1.1 request head normalisation (RFC 9112 §3.2, RFC 9110 §7.8, RFC 9298
/// §3.2): the input is a head, `METHOD SP TARGET SP VERSION` then field lines; every
/// `Host`, `Connection` and `Upgrade` line is handed over raw. The form never
/// panics, a refusal is 400 or 405, and what is accepted is self-consistent.
pub mod h1_head {
    use masque_proto::request::{H1Head, RequestForm, form_from_h1};

    /// One fuzz input.
    pub fn run(data: &[u8]) {
        let mut lines = data
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let Some(Ok(start)) = lines.next().map(std::str::from_utf8) else {
            return;
        };
        // `METHOD SP request-target SP HTTP-version`; the version is not looked at.
        let mut parts = start.splitn(3, ' ');
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (mut host, mut connection, mut upgrade) = (Vec::new(), Vec::new(), Vec::new());
        for line in lines {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            if name.eq_ignore_ascii_case(b"host") {
                host.push(value);
            } else if name.eq_ignore_ascii_case(b"connection") {
                connection.push(value);
            } else if name.eq_ignore_ascii_case(b"upgrade") {
                upgrade.push(value);
            }
        }
        let h = H1Head {
            method,
            target,
            host: &host,
            connection: &connection,
            upgrade: &upgrade,
        };
        match form_from_h1(&h) {
            Ok(RequestForm::Classic { authority }) => {
                assert_eq!(method, "CONNECT");
                assert_eq!(authority, target);
            }
            Ok(RequestForm::Extended {
                protocol,
                authority: _,
                path,
            }) => {
                assert_eq!(method, "GET");
                assert!(path.starts_with('/'), "path {path:?}");
                assert!(!path.contains('#'));
                assert!(!protocol.is_empty());
                assert_eq!(protocol, protocol.to_ascii_lowercase());
            }
            Err(r) => assert!(matches!(r.status, 400 | 405), "status {}", r.status),
        }
    }
}

/// The QPACK/HPACK Huffman code (RFC 7541 §5.2, Appendix B): decoding never
/// panics, stays within its limit and the 8/5 bound, and whatever decodes
/// re-encodes to the same bytes (the code is canonical, padding is all ones);
/// encoding any input decodes back to it.
pub mod huffman {
    use masque_h3::qpack::huffman;

    /// One fuzz input.
    pub fn run(data: &[u8]) {
        let Some((&cfg, rest)) = data.split_first() else {
            return;
        };
        let limit = if cfg & 1 == 1 {
            usize::MAX
        } else {
            usize::from(cfg)
        };
        let mut out = b"prefix".to_vec();
        if huffman::decode(rest, limit, &mut out).is_ok() {
            let decoded = &out[6..];
            assert!(decoded.len() <= limit);
            assert!(decoded.len() <= rest.len() * 8 / 5);
            let mut again = Vec::new();
            huffman::encode(decoded, &mut again);
            assert_eq!(again, rest, "canonical re-encoding");
        }
        let mut enc = Vec::new();
        huffman::encode(rest, &mut enc);
        assert_eq!(enc.len(), huffman::encoded_len(rest));
        let mut back = Vec::new();
        huffman::decode(&enc, usize::MAX, &mut back).expect("our encoding decodes");
        assert_eq!(back, rest);
    }
}

/// masque-node's metrics endpoint HTTP, std only, included as it is.
#[path = "../../crates/masque-node/src/metrics_endpoint/http.rs"]
#[allow(dead_code)]
mod metrics_http_impl;

/// The `--metrics-listen` endpoint's request handling: wherever the head is
/// cut, `find_head_end` stays within it, `respond` never panics and answers
/// one of the statuses it documents, and the response encodes with a
/// Content-Length that matches its body.
pub mod metrics_http {
    use crate::metrics_http_impl::{find_head_end, respond};

    /// One fuzz input.
    pub fn run(data: &[u8]) {
        let head = match find_head_end(data) {
            Some(end) => {
                assert!(end <= data.len());
                &data[..end]
            }
            None => data,
        };
        let r = respond(head, || "masque_x 1\n".to_owned());
        assert!(
            matches!(r.status, 200 | 400 | 404 | 405),
            "status {}",
            r.status
        );
        let wire = r.encode();
        let text = String::from_utf8_lossy(&wire);
        assert!(text.starts_with(&format!("HTTP/1.1 {} ", r.status)));
        assert!(text.contains(&format!("content-length: {}\r\n", r.body.len())));
    }
}

/// masque-node's SOCKS5 wire module, std only, included as it is (masque-node
/// itself is too heavy a dependency for the fuzz crate).
#[path = "../../crates/masque-node/src/socks5_wire.rs"]
#[allow(dead_code)]
mod socks5_wire_impl;

/// The SOCKS5 wire formats of `masque-node socks5` (RFC 1928 greeting,
/// request and UDP header; RFC 1929 username/password). The parsers never
/// panic; a whole message is `Ok(None)` at every shorter prefix; what parses
/// re-encodes to what parses back the same.
pub mod socks5_wire {
    use crate::socks5_wire_impl::{self as wire, Addr, Credentials};

    /// Every prefix shorter than a whole message is incomplete.
    fn prefixes_incomplete<T: std::fmt::Debug, E: std::fmt::Debug>(
        data: &[u8],
        parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, E>,
    ) -> Option<(T, usize)> {
        let (value, n) = parse(data).ok()??;
        assert!(n <= data.len());
        for end in 0..n {
            assert!(
                matches!(parse(&data[..end]), Ok(None)),
                "prefix {end} of a {n}-byte message"
            );
        }
        Some((value, n))
    }

    /// One fuzz input: the first byte picks the parser.
    pub fn run(data: &[u8]) {
        let Some((&which, rest)) = data.split_first() else {
            return;
        };
        match which % 4 {
            0 => {
                if let Some((methods, n)) = prefixes_incomplete(rest, wire::parse_greeting) {
                    assert_eq!(methods.len() + 2, n);
                }
            }
            1 => {
                if let Some((c, n)) = prefixes_incomplete(rest, wire::parse_user_pass) {
                    assert_eq!(c.username.len() + c.password.len() + 3, n);
                    let same = Credentials {
                        username: c.username.clone(),
                        password: c.password.clone(),
                    };
                    assert!(c.matches(&same));
                }
            }
            2 => {
                if let Some((req, n)) = prefixes_incomplete(rest, wire::parse_request) {
                    assert!(n <= wire::MAX_REQUEST);
                    // A reply has the request's layout: it parses back.
                    let reply = wire::encode_reply(wire::reply::SUCCEEDED, &req.addr);
                    let (back, m) = wire::parse_request(&reply)
                        .expect("our reply parses")
                        .expect("whole");
                    assert_eq!((back.addr, m), (req.addr, reply.len()));
                }
            }
            _ => {
                if let Ok(h) = wire::parse_udp(rest) {
                    assert!(h.len <= rest.len());
                    let payload = &rest[h.len..];
                    let out = wire::encode_udp(&h.addr, payload);
                    let back = wire::parse_udp(&out).expect("our datagram parses");
                    assert_eq!((back.frag, &back.addr), (0, &h.addr));
                    assert_eq!(&out[back.len..], payload);
                    let _ = Addr::host(&h.addr);
                }
            }
        }
    }
}

/// A target's body: runs one input, panics on a finding.
pub type Body = fn(&[u8]);

/// The peer's HTTP/3 control stream state machine (RFC 9114 §6.2.1, §7.2),
/// fed in chunks from both sides: SETTINGS first and once, GOAWAY ids never
/// growing, and no event after an error.
pub mod h3_control {
    use bytes::Bytes;
    use masque_h3::{
        Side,
        control_state::{ControlEvent, ControlStream},
    };

    /// One fuzz input: the first byte picks our side and the chunk size.
    pub fn run(data: &[u8]) {
        let Some((&cfg, rest)) = data.split_first() else {
            return;
        };
        let side = if cfg & 1 == 0 {
            Side::Server
        } else {
            Side::Client
        };
        let mut control = ControlStream::new(side);
        let mut events = Vec::new();
        let mut last_goaway = u64::MAX;
        let mut settings = 0;
        for chunk in rest.chunks(usize::from(cfg >> 1) + 1) {
            let before = events.len();
            if control
                .on_bytes(Bytes::copy_from_slice(chunk), &mut events)
                .is_err()
            {
                return;
            }
            for e in &events[before..] {
                match e {
                    ControlEvent::Settings(_) => settings += 1,
                    ControlEvent::GoAway(id) => {
                        assert!(*id <= last_goaway, "GOAWAY id grew");
                        last_goaway = *id;
                    }
                    ControlEvent::MaxPushId => assert!(side == Side::Server),
                }
                assert_eq!(settings, 1, "SETTINGS first and only once");
            }
        }
    }
}

/// The per-packet forwarding rules of a CONNECT-IP endpoint (RFC 9484 §7.2)
/// on arbitrary bytes, both directions: never a panic; a forwarded packet is
/// one whole packet, and toward the peer its TTL went down by exactly one.
pub mod ip_forward {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use masque_proto::{
        connect_ip::{AssignedAddress, ForwardRules, LocalAddrs, Verdict, any_scope},
        packet::IpPacket,
    };

    /// One fuzz input: the first byte picks the egress MTU and the datagram bound.
    pub fn run(data: &[u8]) {
        let Some((&cfg, packet)) = data.split_first() else {
            return;
        };
        let mut rules = ForwardRules::new(any_scope(0));
        rules.set_assigned([
            AssignedAddress {
                request_id: 1,
                ip: IpAddr::V4(Ipv4Addr::new(10, 200, 0, 2)),
                prefix_len: 32,
            },
            AssignedAddress {
                request_id: 2,
                ip: IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0)),
                prefix_len: 64,
            },
        ]);
        let mtu = 1200 + usize::from(cfg) * 4;
        let local = LocalAddrs {
            v4: Some(Ipv4Addr::new(10, 200, 0, 1)),
            v6: Some(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
        };
        let mut icmp = Vec::new();
        match rules.from_peer(packet, mtu) {
            Verdict::Forward => {
                let p = IpPacket::parse(packet).expect("forwarded: parses");
                assert_eq!(p.declared_len(), packet.len());
                assert!(packet.len() <= mtu);
            }
            Verdict::AnswerEcho => {
                let _ = ForwardRules::write_echo_reply(&mut icmp, packet, local);
            }
            Verdict::Drop {
                icmp: Some(kind), ..
            } => {
                let _ = ForwardRules::write_icmp(&mut icmp, packet, kind, local);
            }
            Verdict::Drop { .. } => {}
        }
        let mut copy = packet.to_vec();
        let ttl_before = IpPacket::parse(packet).ok().map(|p| p.ttl());
        if rules.to_peer(&mut copy, Some(mtu)) == Verdict::Forward {
            let after = IpPacket::parse(&copy).expect("forwarded: parses").ttl();
            assert_eq!(Some(after + 1), ttl_before, "TTL down by one");
        }
    }
}

/// Every target: its name (the binary and the `seeds/` folder) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("bind_tcp_capsules", bind_tcp_capsules::run),
    ("capsule_decoder", capsule_decoder::run),
    ("connect_ip_capsules", connect_ip_capsules::run),
    ("datagram", datagram::run),
    ("h1_head", h1_head::run),
    ("h3_control", h3_control::run),
    ("h3_frames", h3_frames::run),
    ("huffman", huffman::run),
    ("ip_forward", ip_forward::run),
    ("ip_icmp", ip_icmp::run),
    ("metrics_http", metrics_http::run),
    ("qpack_decode", qpack_decode::run),
    ("request_classify", request_classify::run),
    ("socks5_wire", socks5_wire::run),
    ("structured_fields", structured_fields::run),
    ("template_match", template_match::run),
    ("tunnel_core", tunnel_core::run),
];
