//! `Via` (RFC 9110 §7.6.3) for relayed requests, and finding ourselves in it.

use std::net::SocketAddr;

use masque_transport::{Transport, TunnelRequest};

/// The incoming request's `Via` members, then ours: `<protocol> <identity>`,
/// the protocol the request came on (`3`, `2`, `1.1`).
pub fn append(request: &TunnelRequest, identity: &str) -> String {
    let protocol = match request.transport {
        Transport::H3 => "3",
        Transport::H2 => "2",
        Transport::H1 => "1.1",
    };
    let mut members: Vec<String> = request
        .headers
        .get_all(http::header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    members.push(format!("{protocol} {identity}"));
    members.join(", ")
}

/// Whether a `Via` member of `headers` was added by `identity` (its
/// received-by, compared case-insensitively).
pub fn names_us(headers: &http::HeaderMap, identity: &str) -> bool {
    headers
        .get_all(http::header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|member| member.split_whitespace().nth(1))
        .any(|by| by.eq_ignore_ascii_case(identity))
}

/// A name that tells this node apart from other default-configured nodes,
/// even on the same host: `masque-` and 8 hex digits of a hash of the host
/// name and the listen address (stable across restarts).
pub fn default_identity(listen: SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{}|{listen}", host.trim()).as_bytes(),
    );
    let hex: String = digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("masque-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(via: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in via {
            h.append(http::header::VIA, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn finds_our_member_anywhere_in_the_list() {
        assert!(names_us(&headers(&["3 masque-a, 2 Masque-B"]), "masque-b"));
        assert!(names_us(
            &headers(&["1.1 proxy.example", "3 masque-a (comment)"]),
            "masque-a"
        ));
        assert!(!names_us(&headers(&["3 masque-ab"]), "masque-a"));
        assert!(!names_us(&headers(&[]), "masque-a"));
    }

    #[test]
    fn identities_differ_by_listen_address() {
        let a = default_identity("127.0.0.1:4433".parse().unwrap());
        let b = default_identity("127.0.0.1:4434".parse().unwrap());
        assert_ne!(a, b);
        assert_eq!(a, default_identity("127.0.0.1:4433".parse().unwrap()));
        assert!(a.starts_with("masque-") && a.len() == 15, "{a}");
    }
}
