//! URI template parsing and server-side matching (RFC 9298 §3, RFC 9484 §3, connect-tcp).
#![no_main]
use libfuzzer_sys::fuzz_target;
use masque_proto::template::{IpTemplate, TcpTemplate, UdpTemplate};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = UdpTemplate::well_known().match_path(s);
    let _ = IpTemplate::well_known().match_path(s);
    let _ = TcpTemplate::well_known().match_path(s);
    if let Ok(t) = UdpTemplate::parse("https://h.example/m{?target_host,target_port}") {
        let _ = t.match_path(s);
    }
    let _ = UdpTemplate::parse(s);
    let _ = IpTemplate::parse_path(s);
    let _ = TcpTemplate::parse(s);
});
