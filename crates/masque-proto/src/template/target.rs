//! Typed targets and the codec for one variable value: RFC 6570 simple-string encoding on the
//! client (R9298-11, R9484-05/06, BIND-02) and percent-decoding plus strict validation on the
//! proxy (R9298-10/11/12/14, R9484-04..08, BIND-03).

use core::fmt::{self, Write as _};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::num::NonZeroU16;
use core::str::FromStr;

use super::Var;
use super::error::{HostError, IpProtoError, MatchError, PortError, PrefixError};

/// Longest hostname in presentation form without the trailing dot (RFC 1035 §2.3.4).
const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;
/// Decode buffer: the longest valid decoded value is a 253-byte hostname.
pub(super) const DECODE_BUF_LEN: usize = MAX_NAME_LEN;

/// A validated DNS hostname (`reg-name` in R9298 §3 / R9484-04, restricted by our rules):
/// 1-253 bytes, dot-separated labels of 1-63 ASCII letters, digits, `-` or `_`, no label
/// starting or ending with `-`, and a last label that does not look numeric.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnsName(Box<str>);

impl DnsName {
    /// Validates `name` (plain text, not percent-encoded).
    pub fn new(name: &str) -> Result<Self, HostError> {
        validate_dns_name(name.as_bytes())?;
        Ok(Self(name.into()))
    }

    /// The name as given (case preserved).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DnsName {
    type Err = HostError;
    fn from_str(s: &str) -> Result<Self, HostError> {
        Self::new(s)
    }
}

impl AsRef<str> for DnsName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `target_host` (R9298 §3): `IPv6address / IPv4address / reg-name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    Name(DnsName),
}

impl Host {
    /// Parses an unencoded host: IPv6 without brackets or zone, strict dotted-quad IPv4,
    /// or a [`DnsName`].
    pub fn parse(s: &str) -> Result<Self, HostError> {
        parse_host(s.as_bytes())
    }
}

impl FromStr for Host {
    type Err = HostError;
    fn from_str(s: &str) -> Result<Self, HostError> {
        Self::parse(s)
    }
}

impl From<IpAddr> for Host {
    fn from(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(a) => Self::V4(a),
            IpAddr::V6(a) => Self::V6(a),
        }
    }
}

impl From<DnsName> for Host {
    fn from(n: DnsName) -> Self {
        Self::Name(n)
    }
}

impl fmt::Display for Host {
    /// Plain form (IPv6 without brackets), not percent-encoded.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(a) => a.fmt(f),
            Self::V6(a) => a.fmt(f),
            Self::Name(n) => n.fmt(f),
        }
    }
}

/// A concrete host and port: the connect-udp target (R9298 §3) and the connect-tcp target
/// (CTCP-01). Port 0 is unrepresentable (R9298-12).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: Host,
    pub port: NonZeroU16,
}

impl HostPort {
    /// R9298-12: port 0 is rejected.
    pub fn new(host: Host, port: u16) -> Result<Self, PortError> {
        let port = NonZeroU16::new(port).ok_or(PortError::Zero)?;
        Ok(Self { host, port })
    }
}

/// connect-tcp target (CTCP-01): always a concrete host and port.
pub type TcpTarget = HostPort;

/// connect-udp target: a concrete host and port (R9298 §3, also BIND-01 "bind with fallback"),
/// or the connect-udp-listen wildcard `*`/`*` (BIND-01/02, bind only).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UdpTarget {
    Host(HostPort),
    /// Both variables `*`, sent as `%2A` (BIND-02).
    Wildcard,
}

impl From<HostPort> for UdpTarget {
    fn from(hp: HostPort) -> Self {
        Self::Host(hp)
    }
}

/// A canonical IP prefix (R9484-06/07): length within the family, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

impl IpPrefix {
    /// R9484-06: `len` ≤ 32 / 128; R9484-07: bits after `len` must be zero.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        let host_bits_set = match addr {
            IpAddr::V4(a) => {
                if len > 32 {
                    return Err(PrefixError::LengthOutOfRange);
                }
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                u32::from(a) & !mask != 0
            }
            IpAddr::V6(a) => {
                if len > 128 {
                    return Err(PrefixError::LengthOutOfRange);
                }
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                u128::from(a) & !mask != 0
            }
        };
        if host_bits_set {
            return Err(PrefixError::HostBitsSet);
        }
        Ok(Self { addr, len })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }
}

/// The connect-ip `target` (R9484-04).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IpScope {
    /// `*`, or no `target` variable in the template (R9484-02).
    Any,
    /// A single address without a prefix length.
    Addr(IpAddr),
    /// An address with `%2F` prefix length.
    Prefix(IpPrefix),
    /// A hostname the proxy resolves (R9484-09, R9484-15).
    Name(DnsName),
}

/// The connect-ip `ipproto` (R9484-04/08).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpProto {
    /// `*`, or no `ipproto` variable in the template (R9484-02).
    Any,
    Proto(u8),
}

/// connect-ip request scope (R9484 §4.6).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IpTarget {
    pub target: IpScope,
    pub ipproto: IpProto,
}

impl IpTarget {
    /// Full tunnel: `*` / `*`.
    pub const ANY: Self = Self {
        target: IpScope::Any,
        ipproto: IpProto::Any,
    };
}

// ---------------------------------------------------------------------------------------------
// Encoding (client side)
// ---------------------------------------------------------------------------------------------

/// RFC 3986 `unreserved`: the only characters RFC 6570 simple expansion passes through.
pub(super) const fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// A `fmt::Write` that applies RFC 6570 §3.2.2 simple-string encoding: everything outside
/// `unreserved` becomes `%XX` (upper-case hex), so `:` → `%3A` (R9298-11), `/` → `%2F`
/// (R9484-06), `*` → `%2A` (BIND-02).
struct PctEncoder<'a>(&'a mut String);

impl fmt::Write for PctEncoder<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for &c in s.as_bytes() {
            if is_unreserved(c) {
                self.0.push(char::from(c));
            } else {
                self.0.push('%');
                self.0.push(char::from(HEX[usize::from(c >> 4)]));
                self.0.push(char::from(HEX[usize::from(c & 0x0f)]));
            }
        }
        Ok(())
    }
}

/// Writes `value` percent-encoded. Writing to a `String` cannot fail, so the `fmt::Result`
/// carries no information.
fn encode(out: &mut String, value: fmt::Arguments<'_>) {
    let _ = PctEncoder(out).write_fmt(value);
}

pub(super) fn encode_host(out: &mut String, host: &Host) {
    encode(out, format_args!("{host}"));
}

pub(super) fn encode_port(out: &mut String, port: NonZeroU16) {
    encode(out, format_args!("{port}"));
}

pub(super) fn encode_wildcard(out: &mut String) {
    encode(out, format_args!("*"));
}

pub(super) fn encode_scope(out: &mut String, scope: &IpScope) {
    match scope {
        IpScope::Any => encode_wildcard(out),
        IpScope::Addr(a) => encode(out, format_args!("{a}")),
        IpScope::Prefix(p) => encode(out, format_args!("{}/{}", p.addr, p.len)),
        IpScope::Name(n) => encode(out, format_args!("{n}")),
    }
}

pub(super) fn encode_ipproto(out: &mut String, proto: IpProto) {
    match proto {
        IpProto::Any => encode_wildcard(out),
        IpProto::Proto(p) => encode(out, format_args!("{p}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding and validation (proxy side)
// ---------------------------------------------------------------------------------------------

const fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// R9298-14: percent-decodes `raw` (hex case-insensitive, one pass: `%253A` stays `%3A`)
/// into `buf`, without allocating. Empty values are rejected (R9298-10, R9484-02).
pub(super) fn decode<'b>(
    var: Var,
    raw: &str,
    buf: &'b mut [u8; DECODE_BUF_LEN],
) -> Result<&'b [u8], MatchError> {
    if raw.is_empty() {
        return Err(MatchError::Empty(var));
    }
    let mut bytes = raw.bytes();
    let mut n = 0;
    while let Some(c) = bytes.next() {
        let c = if c == b'%' {
            let hi = bytes.next().and_then(hex_val);
            let lo = bytes.next().and_then(hex_val);
            match (hi, lo) {
                (Some(hi), Some(lo)) => (hi << 4) | lo,
                _ => return Err(MatchError::PercentEncoding(var)),
            }
        } else {
            c
        };
        let slot = buf.get_mut(n).ok_or(MatchError::TooLong(var))?;
        *slot = c;
        n += 1;
    }
    Ok(buf.get(..n).unwrap_or_default())
}

/// Parses a decoded host: `IPv6address` (no zone, R9298-11), `IPv4address` (strict dotted
/// quad), or a hostname per [`DnsName`]. Allocates only for a hostname.
pub(super) fn parse_host(b: &[u8]) -> Result<Host, HostError> {
    if b.is_empty() {
        return Err(HostError::Empty);
    }
    if b.contains(&b':') {
        return parse_v6(b).map(Host::V6);
    }
    if b.iter().all(|&c| c.is_ascii_digit() || c == b'.') {
        return parse_v4(b).map(Host::V4);
    }
    validate_dns_name(b)?;
    // Validation admitted ASCII only, so this conversion cannot fail.
    let name = core::str::from_utf8(b).map_err(|_| HostError::InvalidChar)?;
    Ok(Host::Name(DnsName(name.into())))
}

/// R9298-11 / R9484-05: IPv6 without brackets and without zone id.
fn parse_v6(b: &[u8]) -> Result<Ipv6Addr, HostError> {
    if b.contains(&b'%') {
        return Err(HostError::ZoneId);
    }
    core::str::from_utf8(b)
        .ok()
        .and_then(|s| Ipv6Addr::from_str(s).ok())
        .ok_or(HostError::InvalidIpv6)
}

/// Strict dotted quad; `core` rejects leading zeros, shorthand and hex forms.
fn parse_v4(b: &[u8]) -> Result<Ipv4Addr, HostError> {
    core::str::from_utf8(b)
        .ok()
        .and_then(|s| Ipv4Addr::from_str(s).ok())
        .ok_or(HostError::InvalidIpv4)
}

/// Hostname rules (our choice, documented on [`DnsName`]).
fn validate_dns_name(b: &[u8]) -> Result<(), HostError> {
    if b.is_empty() {
        return Err(HostError::Empty);
    }
    if b.len() > MAX_NAME_LEN {
        return Err(HostError::TooLong);
    }
    let mut last: &[u8] = &[];
    for label in b.split(|&c| c == b'.') {
        if label.is_empty() {
            return Err(HostError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(HostError::LabelTooLong);
        }
        if !label
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err(HostError::InvalidChar);
        }
        if label.first() == Some(&b'-') || label.last() == Some(&b'-') {
            return Err(HostError::HyphenAtLabelEdge);
        }
        last = label;
    }
    let numeric = last.iter().all(u8::is_ascii_digit)
        || matches!(last, [b'0', b'x' | b'X', rest @ ..] if rest.iter().all(u8::is_ascii_hexdigit));
    if numeric {
        return Err(HostError::NumericFinalLabel);
    }
    Ok(())
}

/// R9298-12: decimal 1-65535, digits only, no leading zero (our choice).
pub(crate) fn parse_port(b: &[u8]) -> Result<NonZeroU16, PortError> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return Err(PortError::NotDecimal);
    }
    if b == b"0" {
        return Err(PortError::Zero);
    }
    if b.first() == Some(&b'0') {
        return Err(PortError::LeadingZero);
    }
    if b.len() > 5 {
        return Err(PortError::OutOfRange);
    }
    let v = b
        .iter()
        .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
    u16::try_from(v)
        .ok()
        .and_then(NonZeroU16::new)
        .ok_or(PortError::OutOfRange)
}

/// Decimal of at most `max_digits` digits (leading zeros allowed, as `1*nDIGIT` in R9484-04).
fn small_decimal(b: &[u8], max_digits: usize) -> Option<u16> {
    if b.is_empty() || b.len() > max_digits || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        b.iter()
            .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0')),
    )
}

/// R9484-04/05/06/07: `IPv6prefix / IPv4prefix / reg-name / "*"`, already decoded
/// (`%2F` is `/` here, `*` is the wildcard).
pub(super) fn parse_scope(b: &[u8]) -> Result<IpScope, MatchError> {
    if b == b"*" {
        return Ok(IpScope::Any);
    }
    let Some(slash) = b.iter().position(|&c| c == b'/') else {
        return Ok(match parse_host(b)? {
            Host::V4(a) => IpScope::Addr(a.into()),
            Host::V6(a) => IpScope::Addr(a.into()),
            Host::Name(n) => IpScope::Name(n),
        });
    };
    let (addr, len) = (
        b.get(..slash).unwrap_or_default(),
        b.get(slash + 1..).unwrap_or_default(),
    );
    let (addr, max_digits): (IpAddr, usize) = if addr.contains(&b':') {
        (parse_v6(addr)?.into(), 3)
    } else if !addr.is_empty() && addr.iter().all(|&c| c.is_ascii_digit() || c == b'.') {
        (parse_v4(addr)?.into(), 2)
    } else {
        return Err(PrefixError::NotAnAddress.into());
    };
    let len = small_decimal(len, max_digits).ok_or(PrefixError::LengthSyntax)?;
    let len = u8::try_from(len).map_err(|_| PrefixError::LengthOutOfRange)?;
    Ok(IpScope::Prefix(IpPrefix::new(addr, len)?))
}

/// R9484-04/08: `1*3DIGIT` with value 0-255, or `*`.
pub(super) fn parse_ipproto(b: &[u8]) -> Result<IpProto, IpProtoError> {
    if b == b"*" {
        return Ok(IpProto::Any);
    }
    let v = small_decimal(b, 3).ok_or(IpProtoError::NotDecimal)?;
    u8::try_from(v)
        .map(IpProto::Proto)
        .map_err(|_| IpProtoError::OutOfRange)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc_host(h: &str) -> String {
        let mut s = String::new();
        encode_host(&mut s, &Host::parse(h).unwrap());
        s
    }

    #[test]
    fn r9298_11_ipv6_colons_encoded_no_brackets() {
        assert_eq!(enc_host("2001:db8::42"), "2001%3Adb8%3A%3A42");
        assert_eq!(enc_host("192.0.2.6"), "192.0.2.6");
        assert_eq!(enc_host("Example-1.com"), "Example-1.com");
    }

    #[test]
    fn r9484_06_prefix_slash_and_bind_02_star_encoded() {
        let mut s = String::new();
        let p = IpPrefix::new("2001:db8::".parse().unwrap(), 32).unwrap();
        encode_scope(&mut s, &IpScope::Prefix(p));
        s.push('|');
        encode_wildcard(&mut s);
        assert_eq!(s, "2001%3Adb8%3A%3A%2F32|%2A");
    }

    #[test]
    fn r9298_14_decode_case_insensitive_single_pass() {
        let mut buf = [0; DECODE_BUF_LEN];
        assert_eq!(
            decode(Var::TargetHost, "a%3ab%3A", &mut buf).unwrap(),
            b"a:b:"
        );
        assert_eq!(decode(Var::TargetHost, "%253A", &mut buf).unwrap(), b"%3A");
        for bad in ["%", "%3", "%G1", "a%3", "%%33"] {
            assert_eq!(
                decode(Var::TargetHost, bad, &mut buf),
                Err(MatchError::PercentEncoding(Var::TargetHost)),
                "{bad}"
            );
        }
    }

    #[test]
    fn r9298_10_decode_rejects_empty_and_overlong() {
        let mut buf = [0; DECODE_BUF_LEN];
        assert_eq!(
            decode(Var::TargetPort, "", &mut buf),
            Err(MatchError::Empty(Var::TargetPort))
        );
        let long = "a".repeat(DECODE_BUF_LEN + 1);
        assert_eq!(
            decode(Var::TargetHost, &long, &mut buf),
            Err(MatchError::TooLong(Var::TargetHost))
        );
        assert!(decode(Var::TargetHost, &long[1..], &mut buf).is_ok());
    }

    #[test]
    fn r9298_11_host_parse_rules() {
        assert_eq!(Host::parse("fe80::1%eth0"), Err(HostError::ZoneId));
        assert_eq!(Host::parse("[2001:db8::1]"), Err(HostError::InvalidIpv6));
        assert_eq!(Host::parse("2001:db8::1::2"), Err(HostError::InvalidIpv6));
        assert_eq!(
            Host::parse("::ffff:192.0.2.1"),
            Ok(Host::V6("::ffff:192.0.2.1".parse().unwrap()))
        );
        assert_eq!(
            Host::parse("192.0.2.1"),
            Ok(Host::V4(Ipv4Addr::new(192, 0, 2, 1)))
        );
        for bad4 in ["256.0.0.1", "1.2.3", "010.0.0.1", "1.2.3.4.5", "1..2.3"] {
            assert_eq!(Host::parse(bad4), Err(HostError::InvalidIpv4), "{bad4}");
        }
        assert_eq!(Host::parse(""), Err(HostError::Empty));
    }

    #[test]
    fn hostname_rules() {
        assert!(Host::parse("a").is_ok());
        assert!(Host::parse("_srv.Example-1.com").is_ok());
        assert!(Host::parse("0x.example").is_ok());
        let label63 = "a".repeat(63);
        assert!(DnsName::new(&format!("{label63}.com")).is_ok());
        assert_eq!(
            DnsName::new(&format!("{label63}a.com")),
            Err(HostError::LabelTooLong)
        );
        let name253 = [label63.as_str(); 4].join(".")[..253].to_owned();
        assert!(DnsName::new(&name253).is_ok(), "{}", name253.len());
        assert_eq!(
            DnsName::new(&format!("{name253}a")),
            Err(HostError::TooLong)
        );
        assert_eq!(DnsName::new("example.com."), Err(HostError::EmptyLabel));
        assert_eq!(DnsName::new(".example.com"), Err(HostError::EmptyLabel));
        assert_eq!(DnsName::new("a..b"), Err(HostError::EmptyLabel));
        assert_eq!(DnsName::new("-a.com"), Err(HostError::HyphenAtLabelEdge));
        assert_eq!(DnsName::new("a-.com"), Err(HostError::HyphenAtLabelEdge));
        for bad in [
            "a b",
            "a*b",
            "ex%ample",
            "exa\u{e9}mple",
            "a,b",
            "a~b",
            "a\0b",
        ] {
            assert_eq!(DnsName::new(bad), Err(HostError::InvalidChar), "{bad:?}");
        }
        for numeric in ["foo.123", "0x7f000001", "a.0X1F", "0x"] {
            assert_eq!(
                DnsName::new(numeric),
                Err(HostError::NumericFinalLabel),
                "{numeric}"
            );
        }
    }

    #[test]
    fn r9298_12_port_rules() {
        assert_eq!(parse_port(b"1").map(NonZeroU16::get), Ok(1));
        assert_eq!(parse_port(b"65535").map(NonZeroU16::get), Ok(65535));
        assert_eq!(parse_port(b"0"), Err(PortError::Zero));
        assert_eq!(parse_port(b"00"), Err(PortError::LeadingZero));
        assert_eq!(parse_port(b"0443"), Err(PortError::LeadingZero));
        assert_eq!(parse_port(b"65536"), Err(PortError::OutOfRange));
        assert_eq!(
            parse_port(b"99999999999999999999999"),
            Err(PortError::OutOfRange)
        );
        for bad in [
            &b""[..],
            b"+443",
            b"-1",
            b"44a",
            b" 443",
            b"443 ",
            b"0x1bb",
            b"4.4",
        ] {
            assert_eq!(parse_port(bad), Err(PortError::NotDecimal), "{bad:?}");
        }
        assert_eq!(
            HostPort::new(Host::V4(Ipv4Addr::LOCALHOST), 0),
            Err(PortError::Zero)
        );
    }

    #[test]
    fn r9484_06_07_prefix_rules() {
        let v4: IpAddr = Ipv4Addr::new(192, 0, 2, 0).into();
        assert!(IpPrefix::new(v4, 24).is_ok());
        assert!(IpPrefix::new(Ipv4Addr::UNSPECIFIED.into(), 0).is_ok());
        assert!(IpPrefix::new(Ipv6Addr::UNSPECIFIED.into(), 0).is_ok());
        assert!(IpPrefix::new(Ipv6Addr::LOCALHOST.into(), 128).is_ok());
        assert_eq!(IpPrefix::new(v4, 33), Err(PrefixError::LengthOutOfRange));
        assert_eq!(
            IpPrefix::new(Ipv6Addr::UNSPECIFIED.into(), 129),
            Err(PrefixError::LengthOutOfRange)
        );
        assert_eq!(
            IpPrefix::new(Ipv4Addr::new(192, 0, 2, 1).into(), 24),
            Err(PrefixError::HostBitsSet)
        );
        assert_eq!(
            IpPrefix::new(Ipv4Addr::new(128, 0, 0, 0).into(), 0),
            Err(PrefixError::HostBitsSet)
        );
        assert_eq!(
            IpPrefix::new(Ipv6Addr::LOCALHOST.into(), 127),
            Err(PrefixError::HostBitsSet)
        );
    }

    #[test]
    fn r9484_04_scope_and_ipproto_syntax() {
        assert_eq!(parse_scope(b"*"), Ok(IpScope::Any));
        assert!(matches!(parse_scope(b"10.0.0.0/8"), Ok(IpScope::Prefix(_))));
        assert!(matches!(
            parse_scope(b"10.0.0.0/08"),
            Ok(IpScope::Prefix(_))
        ));
        assert!(matches!(parse_scope(b"::/000"), Ok(IpScope::Prefix(_))));
        assert_eq!(
            parse_scope(b"10.0.0.0/008"),
            Err(PrefixError::LengthSyntax.into())
        );
        assert_eq!(
            parse_scope(b"::/0128"),
            Err(PrefixError::LengthSyntax.into())
        );
        assert_eq!(
            parse_scope(b"10.0.0.0/"),
            Err(PrefixError::LengthSyntax.into())
        );
        assert_eq!(
            parse_scope(b"10.0.0.0/+8"),
            Err(PrefixError::LengthSyntax.into())
        );
        assert_eq!(
            parse_scope(b"10.0.0.0/8/8"),
            Err(PrefixError::LengthSyntax.into())
        );
        assert_eq!(
            parse_scope(b"::/999"),
            Err(PrefixError::LengthOutOfRange.into())
        );
        assert_eq!(
            parse_scope(b"::/256"),
            Err(PrefixError::LengthOutOfRange.into())
        );
        assert_eq!(
            parse_scope(b"example.com/24"),
            Err(PrefixError::NotAnAddress.into())
        );
        assert_eq!(parse_scope(b"*/0"), Err(PrefixError::NotAnAddress.into()));
        assert_eq!(parse_scope(b"/24"), Err(PrefixError::NotAnAddress.into()));
        assert_eq!(
            parse_scope(b"fe80::%eth0/64"),
            Err(HostError::ZoneId.into())
        );
        assert_eq!(parse_ipproto(b"*"), Ok(IpProto::Any));
        assert_eq!(parse_ipproto(b"0"), Ok(IpProto::Proto(0)));
        assert_eq!(parse_ipproto(b"017"), Ok(IpProto::Proto(17)));
        assert_eq!(parse_ipproto(b"255"), Ok(IpProto::Proto(255)));
        assert_eq!(parse_ipproto(b"256"), Err(IpProtoError::OutOfRange));
        for bad in [&b""[..], b"1234", b"0017", b"-1", b"+6", b"6a", b"**"] {
            assert_eq!(parse_ipproto(bad), Err(IpProtoError::NotDecimal), "{bad:?}");
        }
    }
}
