//! MASQUE header fields: names and value codecs.
//!
//! `Capsule-Protocol` (RFC 9297 §3.4) and `Connect-UDP-Bind` (listen-13 §6) are
//! Structured Field Booleans; `Proxy-Public-Address` (listen-13 §7) is an SF List of
//! Strings. Field-line handling: a field given on several lines combines into a List
//! (RFC 8941 §3.1), which is never a valid Item, so the Boolean readers take every
//! field line and treat more than one as "absent" (R9297-25, BIND-05).

pub mod auth;
pub mod list;
pub mod sf;

use std::net::{IpAddr, SocketAddr};

/// `capsule-protocol` (lowercase for HTTP/2 and HTTP/3, R9297-30).
pub const CAPSULE_PROTOCOL: &str = "capsule-protocol";
/// `connect-udp-bind` (BIND-04).
pub const CONNECT_UDP_BIND: &str = "connect-udp-bind";
/// `proxy-public-address` (BIND-07).
pub const PROXY_PUBLIC_ADDRESS: &str = "proxy-public-address";
/// `proxy-status` (RFC 9209).
pub const PROXY_STATUS: &str = "proxy-status";
/// The value to send for an SF Boolean `true` (R9297-30, BIND-04).
pub const SF_TRUE: &str = "?1";

/// Parses one field line as an SF Item that must be a Boolean; unknown parameters
/// are ignored (R9297-26, BIND-05). `None`: not a valid Boolean Item (R9297-25).
pub fn parse_sf_boolean(value: &[u8]) -> Option<bool> {
    match sf::parse_item(value).ok()?.bare {
        sf::BareItem::Boolean(b) => Some(b),
        _ => None,
    }
}

/// Reads a Boolean header given all its field lines. `true` only for exactly one
/// line holding a valid `?1` Item; `?0`, any other type, an unparsable value, an
/// absent header or a repeated header all mean "absent / false" (R9297-25..27,
/// BIND-05).
pub fn sf_boolean_field<'a, I>(lines: I) -> bool
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut it = lines.into_iter();
    match (it.next(), it.next()) {
        (Some(v), None) => parse_sf_boolean(v) == Some(true),
        _ => false,
    }
}

/// `Capsule-Protocol` is in effect (R9297-25, R9297-26, R9297-27).
pub fn capsule_protocol<'a, I>(lines: I) -> bool
where
    I: IntoIterator<Item = &'a [u8]>,
{
    sf_boolean_field(lines)
}

/// `Connect-UDP-Bind` is set to true (BIND-04, BIND-05).
pub fn connect_udp_bind<'a, I>(lines: I) -> bool
where
    I: IntoIterator<Item = &'a [u8]>,
{
    sf_boolean_field(lines)
}

/// Why a `Proxy-Public-Address` value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublicAddressError {
    /// Not a valid SF List.
    #[error(transparent)]
    Syntax(#[from] sf::SfError),
    /// A member is not a String (BIND-07).
    #[error("member {0} is not a string")]
    NotAString(usize),
    /// A member is not `IPv4:port` or `[IPv6]:port` (BIND-07).
    #[error("member {0} is not an ip:port literal")]
    InvalidAddress(usize),
    /// The proxy must report at least one address (BIND-06, BIND-07).
    #[error("no address")]
    Empty,
}

/// Parses `Proxy-Public-Address` (BIND-07): an SF List of Strings
/// `"192.0.2.45:54321"` / `"[2001:db8::1234]:54321"`. Parameters are ignored. IPv6
/// zone identifiers are refused (the ABNF uses RFC 3986 IP-literal).
pub fn parse_proxy_public_address(value: &[u8]) -> Result<Vec<SocketAddr>, PublicAddressError> {
    let items = sf::parse_list(value)?;
    if items.is_empty() {
        return Err(PublicAddressError::Empty);
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match &item.bare {
            sf::BareItem::String(s) => {
                parse_ip_port(s).ok_or(PublicAddressError::InvalidAddress(i))
            }
            _ => Err(PublicAddressError::NotAString(i)),
        })
        .collect()
}

/// `IPv4address ":" port` or `"[" IPv6address "]" ":" port`, no zone identifier.
fn parse_ip_port(s: &str) -> Option<SocketAddr> {
    if s.contains('%') {
        return None;
    }
    let (host, port) = s.rsplit_once(':')?;
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok()?;
    let ip: IpAddr = match host.strip_prefix('[') {
        Some(v6) => IpAddr::V6(v6.strip_suffix(']')?.parse().ok()?),
        None => IpAddr::V4(host.parse().ok()?),
    };
    Some(SocketAddr::new(ip, port))
}

/// Formats `Proxy-Public-Address` (BIND-07). IPv6 scope ids are not written.
pub fn format_proxy_public_address(addrs: &[SocketAddr]) -> String {
    let mut out = String::new();
    for (i, a) in addrs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let s = match a {
            SocketAddr::V4(v4) => format!("{}:{}", v4.ip(), v4.port()),
            SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
        };
        sf::write_string_lossy(&s, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(v: &str) -> bool {
        capsule_protocol([v.as_bytes()])
    }

    /// Spec README vector 18, R9297-25/26/27: `?1` and `?1;x=1` are true.
    #[test]
    fn r9297_26_capsule_protocol_true_forms() {
        assert!(one("?1"));
        assert!(one("?1;x=1"));
        assert!(one("?1;foo=bar"));
        assert!(one(" ?1 "));
        assert_eq!(parse_sf_boolean(b"?0"), Some(false));
    }

    /// Spec README vector 18, R9297-25/27: `?0`, `1`, `true`, `?1, ?1`, two field
    /// lines, absent → treated as absent.
    #[test]
    fn r9297_25_capsule_protocol_absent_forms() {
        for v in [
            "?0", "1", "true", "?1, ?1", "", "?1;", "\"?1\"", "?1 ;x=1", "?2",
        ] {
            assert!(!one(v), "{v:?}");
        }
        assert!(!capsule_protocol([&b"?1"[..], &b"?1"[..]]));
        assert!(!capsule_protocol(std::iter::empty::<&[u8]>()));
    }

    /// Spec README vector 18, BIND-04/05: `connect-udp-bind: ?1`.
    #[test]
    fn bind_05_connect_udp_bind() {
        assert!(connect_udp_bind([&b"?1"[..]]));
        assert!(connect_udp_bind([&b"?1;unknown"[..]]));
        assert!(!connect_udp_bind([&b"?0"[..]]));
        assert!(!connect_udp_bind([&b"?1"[..], &b"?1"[..]]));
        assert!(!connect_udp_bind([&b"1"[..]]));
    }

    /// Spec README vector 18, BIND-07: proxy-public-address parse and format.
    #[test]
    fn bind_07_proxy_public_address_vector() {
        let v = "\"192.0.2.45:54321\", \"[2001:db8::1234]:54321\"";
        let addrs = parse_proxy_public_address(v.as_bytes()).unwrap();
        assert_eq!(
            addrs,
            [
                "192.0.2.45:54321".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1234]:54321".parse().unwrap(),
            ]
        );
        assert_eq!(format_proxy_public_address(&addrs), v);
    }

    /// BIND-07: invalid members.
    #[test]
    fn bind_07_proxy_public_address_invalid() {
        use PublicAddressError as E;
        assert_eq!(parse_proxy_public_address(b""), Err(E::Empty));
        assert_eq!(
            parse_proxy_public_address(b"\"192.0.2.1:1\", tok"),
            Err(E::NotAString(1))
        );
        for bad in [
            "\"192.0.2.1\"",
            "\"2001:db8::1:443\"",
            "\"[fe80::1%25eth0]:1\"",
            "\"[fe80::1%2]:1\"",
            "\"192.0.2.1:65536\"",
            "\"192.0.2.1:+1\"",
            "\"[192.0.2.1]:1\"",
            "\"host:1\"",
            "\"192.0.2.1:\"",
        ] {
            assert_eq!(
                parse_proxy_public_address(bad.as_bytes()),
                Err(E::InvalidAddress(0)),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_proxy_public_address(b"\"a"),
            Err(E::Syntax(_))
        ));
    }

    proptest! {
        #[test]
        fn proxy_public_address_roundtrip(
            v4 in proptest::collection::vec((any::<[u8; 4]>(), any::<u16>()), 0..3),
            v6 in proptest::collection::vec((any::<[u8; 16]>(), any::<u16>()), 0..3),
        ) {
            let mut addrs: Vec<SocketAddr> = v4.iter().map(|(ip, p)| SocketAddr::from((*ip, *p))).collect();
            addrs.extend(v6.iter().map(|(ip, p)| SocketAddr::from((*ip, *p))));
            prop_assume!(!addrs.is_empty());
            let s = format_proxy_public_address(&addrs);
            prop_assert_eq!(parse_proxy_public_address(s.as_bytes()), Ok(addrs));
        }

        #[test]
        fn sf_boolean_roundtrip(b in any::<bool>(), params in "(;[a-z][a-z0-9]{0,3}(=[0-9]{1,3})?){0,3}") {
            let v = format!("{}{}", if b { "?1" } else { "?0" }, params);
            prop_assert_eq!(parse_sf_boolean(v.as_bytes()), Some(b));
        }

        /// Parsing arbitrary bytes never panics.
        #[test]
        fn parse_arbitrary_never_panics(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_sf_boolean(&b);
            let _ = parse_proxy_public_address(&b);
        }
    }
}
