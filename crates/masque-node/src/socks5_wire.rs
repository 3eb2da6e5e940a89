//! SOCKS5 wire formats, sans-IO (bytes in, values out; std only, so the fuzz
//! crate includes this file as it is): the method greeting and selection
//! (RFC 1928 §3), username/password sub-negotiation (RFC 1929 §2), the
//! request and reply (RFC 1928 §4, §6) and the UDP request header
//! (RFC 1928 §7).
//!
//! The stream parsers take what has arrived so far and return `Ok(None)`
//! while the message is incomplete, `Ok(Some((value, consumed)))` once it is
//! whole (bytes after it, e.g. a client's early data, are the caller's), or
//! an error that ends the connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The protocol version byte.
pub const VERSION: u8 = 5;
/// The username/password sub-negotiation version (RFC 1929 §2).
pub const USER_PASS_VERSION: u8 = 1;

/// Authentication methods (RFC 1928 §3).
pub mod method {
    pub const NO_AUTH: u8 = 0x00;
    pub const USER_PASS: u8 = 0x02;
    pub const NONE_ACCEPTABLE: u8 = 0xFF;
}

/// Request commands (RFC 1928 §4).
pub mod cmd {
    pub const CONNECT: u8 = 0x01;
    pub const BIND: u8 = 0x02;
    pub const UDP_ASSOCIATE: u8 = 0x03;
}

/// Reply codes (RFC 1928 §6).
pub mod reply {
    pub const SUCCEEDED: u8 = 0x00;
    pub const GENERAL_FAILURE: u8 = 0x01;
    pub const NOT_ALLOWED: u8 = 0x02;
    pub const NETWORK_UNREACHABLE: u8 = 0x03;
    pub const HOST_UNREACHABLE: u8 = 0x04;
    pub const CONNECTION_REFUSED: u8 = 0x05;
    pub const TTL_EXPIRED: u8 = 0x06;
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x07;
    pub const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;
}

/// Address types (RFC 1928 §5).
pub mod atyp {
    pub const IPV4: u8 = 0x01;
    pub const DOMAIN: u8 = 0x03;
    pub const IPV6: u8 = 0x04;
}

/// Longest request: VER CMD RSV ATYP, a 255-byte name with its length, PORT.
pub const MAX_REQUEST: usize = 4 + 1 + 255 + 2;
/// Longest greeting: VER NMETHODS and 255 methods.
pub const MAX_GREETING: usize = 2 + 255;
/// Longest username/password message.
pub const MAX_USER_PASS: usize = 2 + 255 + 1 + 255;

/// A destination: an IP address, or a domain name left for the proxy to resolve.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Addr {
    Ip(SocketAddr),
    Domain(String, u16),
}

impl Addr {
    /// The host as the proxy takes it: the name, or the IP literal (no brackets).
    pub fn host(&self) -> String {
        match self {
            Self::Ip(a) => a.ip().to_string(),
            Self::Domain(d, _) => d.clone(),
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Self::Ip(a) => a.port(),
            Self::Domain(_, p) => *p,
        }
    }

    /// The unspecified IPv4 address, port 0.
    pub fn unspecified() -> Self {
        Self::Ip(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
    }

    /// ATYP, address and port as on the wire.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Ip(SocketAddr::V4(a)) => {
                out.push(atyp::IPV4);
                out.extend_from_slice(&a.ip().octets());
            }
            Self::Ip(SocketAddr::V6(a)) => {
                out.push(atyp::IPV6);
                out.extend_from_slice(&a.ip().octets());
            }
            Self::Domain(d, _) => {
                // Parsed names are at most 255 bytes; longer ones are cut
                // rather than written with a wrong length.
                let name = &d.as_bytes()[..d.len().min(255)];
                out.push(atyp::DOMAIN);
                out.push(name.len() as u8);
                out.extend_from_slice(name);
            }
        }
        out.extend_from_slice(&self.port().to_be_bytes());
    }

    /// ATYP, address and port at the start of `buf`: `Ok(None)` when
    /// incomplete, else the address and the bytes it took.
    fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, WireError> {
        let Some(&ty) = buf.first() else {
            return Ok(None);
        };
        let (len, addr_len) = match ty {
            atyp::IPV4 => (1 + 4 + 2, 4),
            atyp::IPV6 => (1 + 16 + 2, 16),
            atyp::DOMAIN => {
                let Some(&n) = buf.get(1) else {
                    return Ok(None);
                };
                if n == 0 {
                    return Err(WireError::EmptyDomain);
                }
                (2 + usize::from(n) + 2, usize::from(n))
            }
            other => return Err(WireError::AddressType(other)),
        };
        if buf.len() < len {
            return Ok(None);
        }
        let port = u16::from_be_bytes([buf[len - 2], buf[len - 1]]);
        let addr = match ty {
            atyp::IPV4 => {
                let mut o = [0u8; 4];
                o.copy_from_slice(&buf[1..1 + addr_len]);
                Self::Ip(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(o)), port))
            }
            atyp::IPV6 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&buf[1..1 + addr_len]);
                Self::Ip(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port))
            }
            _ => {
                let name = std::str::from_utf8(&buf[2..2 + addr_len])
                    .map_err(|_| WireError::DomainNotUtf8)?;
                Self::Domain(name.to_owned(), port)
            }
        };
        Ok(Some((addr, len)))
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(a) => write!(f, "{a}"),
            Self::Domain(d, p) => write!(f, "{d}:{p}"),
        }
    }
}

/// A malformed message: the connection (or the datagram) is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Not SOCKS version 5 (or not sub-negotiation version 1).
    Version(u8),
    /// A greeting offering no method.
    NoMethods,
    /// An ATYP other than 1, 3, 4 (reply 0x08).
    AddressType(u8),
    /// A domain name of length 0.
    EmptyDomain,
    /// A domain name that is not UTF-8.
    DomainNotUtf8,
    /// An empty username or password (RFC 1929 allows 1..255 bytes).
    EmptyCredential,
    /// A UDP datagram shorter than its header.
    Truncated,
    /// A UDP header whose RSV field is not zero.
    Reserved,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Version(v) => write!(f, "unsupported version {v}"),
            Self::NoMethods => f.write_str("no authentication method offered"),
            Self::AddressType(t) => write!(f, "unsupported address type {t}"),
            Self::EmptyDomain => f.write_str("empty domain name"),
            Self::DomainNotUtf8 => f.write_str("domain name is not UTF-8"),
            Self::EmptyCredential => f.write_str("empty username or password"),
            Self::Truncated => f.write_str("datagram shorter than its header"),
            Self::Reserved => f.write_str("reserved field is not zero"),
        }
    }
}

impl std::error::Error for WireError {}

/// The method greeting: the methods offered.
pub fn parse_greeting(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, WireError> {
    let Some(&ver) = buf.first() else {
        return Ok(None);
    };
    if ver != VERSION {
        return Err(WireError::Version(ver));
    }
    let Some(&n) = buf.get(1) else {
        return Ok(None);
    };
    if n == 0 {
        return Err(WireError::NoMethods);
    }
    let len = 2 + usize::from(n);
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some((buf[2..len].to_vec(), len)))
}

/// The method selection message.
pub fn encode_method(method: u8) -> [u8; 2] {
    [VERSION, method]
}

/// RFC 1929 credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: Vec<u8>,
    pub password: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &String::from_utf8_lossy(&self.username))
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Equal to `other`, in time that depends on the lengths only.
    pub fn matches(&self, other: &Credentials) -> bool {
        fn eq(a: &[u8], b: &[u8]) -> bool {
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        }
        // Both compared, always.
        let user = eq(&self.username, &other.username);
        let pass = eq(&self.password, &other.password);
        user & pass
    }
}

/// The username/password request (RFC 1929 §2).
pub fn parse_user_pass(buf: &[u8]) -> Result<Option<(Credentials, usize)>, WireError> {
    let Some(&ver) = buf.first() else {
        return Ok(None);
    };
    if ver != USER_PASS_VERSION {
        return Err(WireError::Version(ver));
    }
    let Some(&ulen) = buf.get(1) else {
        return Ok(None);
    };
    let ulen = usize::from(ulen);
    let Some(&plen) = buf.get(2 + ulen) else {
        return Ok(None);
    };
    let plen = usize::from(plen);
    let len = 3 + ulen + plen;
    if buf.len() < len {
        return Ok(None);
    }
    if ulen == 0 || plen == 0 {
        return Err(WireError::EmptyCredential);
    }
    Ok(Some((
        Credentials {
            username: buf[2..2 + ulen].to_vec(),
            password: buf[3 + ulen..len].to_vec(),
        },
        len,
    )))
}

/// The username/password status: 0 accepted, anything else refused.
pub fn encode_user_pass_status(ok: bool) -> [u8; 2] {
    [USER_PASS_VERSION, if ok { 0 } else { 1 }]
}

/// A request (RFC 1928 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub cmd: u8,
    pub addr: Addr,
}

/// The request. An unknown ATYP is [`WireError::AddressType`] (answer 0x08).
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, WireError> {
    if buf.len() < 3 {
        if let Some(&ver) = buf.first().filter(|&&v| v != VERSION) {
            return Err(WireError::Version(ver));
        }
        return Ok(None);
    }
    if buf[0] != VERSION {
        return Err(WireError::Version(buf[0]));
    }
    let cmd = buf[1];
    // RSV (buf[2]) is ignored, as most servers do.
    Ok(Addr::parse(&buf[3..])?.map(|(addr, n)| (Request { cmd, addr }, 3 + n)))
}

/// A reply (RFC 1928 §6) with the bound address.
pub fn encode_reply(code: u8, bound: &Addr) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 16 + 2);
    out.extend_from_slice(&[VERSION, code, 0]);
    bound.encode(&mut out);
    out
}

/// A UDP request header (RFC 1928 §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpHeader {
    /// Fragment number; this relay only takes 0 (whole datagrams).
    pub frag: u8,
    pub addr: Addr,
    /// Where the payload starts.
    pub len: usize,
}

/// The header of a whole UDP datagram from the client.
pub fn parse_udp(datagram: &[u8]) -> Result<UdpHeader, WireError> {
    if datagram.len() < 3 {
        return Err(WireError::Truncated);
    }
    if datagram[0] != 0 || datagram[1] != 0 {
        return Err(WireError::Reserved);
    }
    let frag = datagram[2];
    match Addr::parse(&datagram[3..])? {
        Some((addr, n)) => Ok(UdpHeader {
            frag,
            addr,
            len: 3 + n,
        }),
        None => Err(WireError::Truncated),
    }
}

/// A datagram to the client: header (FRAG 0) and payload.
pub fn encode_udp(from: &Addr, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + 2 + 255 + 2 + payload.len());
    out.extend_from_slice(&[0, 0, 0]);
    from.encode(&mut out);
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting() {
        assert_eq!(parse_greeting(&[]), Ok(None));
        assert_eq!(parse_greeting(&[5]), Ok(None));
        assert_eq!(parse_greeting(&[5, 2, 0]), Ok(None));
        assert_eq!(parse_greeting(&[5, 2, 0, 2, 9]), Ok(Some((vec![0, 2], 4))));
        assert_eq!(parse_greeting(&[4, 1, 0]), Err(WireError::Version(4)));
        assert_eq!(parse_greeting(&[5, 0]), Err(WireError::NoMethods));
    }

    #[test]
    fn user_pass() {
        let msg = [1, 1, b'u', 2, b'p', b'w'];
        for end in 0..msg.len() {
            assert_eq!(parse_user_pass(&msg[..end]), Ok(None), "{end}");
        }
        let (c, n) = parse_user_pass(&msg).unwrap().unwrap();
        assert_eq!(n, 6);
        assert_eq!(
            (c.username.as_slice(), c.password.as_slice()),
            (&b"u"[..], &b"pw"[..])
        );
        assert!(format!("{c:?}").contains("redacted") && !format!("{c:?}").contains("pw"));
        assert_eq!(
            parse_user_pass(&[1, 0, 1, b'p']),
            Err(WireError::EmptyCredential)
        );
        assert_eq!(parse_user_pass(&[5, 1]), Err(WireError::Version(5)));
        let other = Credentials {
            username: b"u".to_vec(),
            password: b"px".to_vec(),
        };
        assert!(c.matches(&c.clone()) && !c.matches(&other));
    }

    #[test]
    fn requests() {
        let v4 = [5, 1, 0, 1, 127, 0, 0, 1, 0x1F, 0x90, 0xAA];
        let (r, n) = parse_request(&v4).unwrap().unwrap();
        assert_eq!(n, 10);
        assert_eq!(r.cmd, cmd::CONNECT);
        assert_eq!(r.addr, Addr::Ip("127.0.0.1:8080".parse().unwrap()));
        for end in 0..10 {
            assert_eq!(parse_request(&v4[..end]), Ok(None), "{end}");
        }
        let mut name = vec![5, 3, 0, 3, 11];
        name.extend_from_slice(b"example.com");
        name.extend_from_slice(&443u16.to_be_bytes());
        let (r, _) = parse_request(&name).unwrap().unwrap();
        assert_eq!(r.addr, Addr::Domain("example.com".into(), 443));
        assert_eq!(r.addr.host(), "example.com");
        let mut v6 = vec![5, 1, 0, 4];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0, 80]);
        let (r, _) = parse_request(&v6).unwrap().unwrap();
        assert_eq!(r.addr.host(), "::1");
        assert_eq!(
            parse_request(&[5, 1, 0, 9, 0]),
            Err(WireError::AddressType(9))
        );
        assert_eq!(parse_request(&[5, 1, 0, 3, 0]), Err(WireError::EmptyDomain));
        assert_eq!(parse_request(&[4]), Err(WireError::Version(4)));
        assert_eq!(
            parse_request(&[5, 1, 0, 3, 1, 0xFF, 0, 1]),
            Err(WireError::DomainNotUtf8)
        );
    }

    #[test]
    fn replies_round_trip() {
        for addr in [
            Addr::unspecified(),
            Addr::Ip("[2001:db8::1]:53".parse().unwrap()),
            Addr::Domain("a.example".into(), 7),
        ] {
            let r = encode_reply(reply::SUCCEEDED, &addr);
            // A reply has the request's layout.
            let (back, n) = parse_request(&r).unwrap().unwrap();
            assert_eq!((back.addr, n, back.cmd), (addr.clone(), r.len(), 0));
            let d = encode_udp(&addr, b"payload");
            let h = parse_udp(&d).unwrap();
            assert_eq!((h.frag, &h.addr, &d[h.len..]), (0, &addr, &b"payload"[..]));
        }
    }

    #[test]
    fn udp_headers() {
        assert_eq!(parse_udp(&[0, 0]), Err(WireError::Truncated));
        assert_eq!(parse_udp(&[0, 1, 0, 1]), Err(WireError::Reserved));
        assert_eq!(parse_udp(&[0, 0, 0, 1, 1, 2]), Err(WireError::Truncated));
        let h = parse_udp(&[0, 0, 3, 1, 10, 0, 0, 1, 0, 53, 9]).unwrap();
        assert_eq!(h.frag, 3);
        assert_eq!(h.len, 10);
    }
}
