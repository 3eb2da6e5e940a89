//! Typed HTTP/3 request and response heads (RFC 9114 §4.1–§4.4) and their
//! conversion from and to QPACK field sections.
//!
//! Decoding validates everything that makes a message malformed at the field
//! level: pseudo-header rules (RFC 9114 §4.3), lowercase names and
//! connection-specific fields (§4.2, XC-12, XC-13), field value characters
//! (§10.3), classic CONNECT (§4.4, CC-18) and extended CONNECT (RFC 8441 §4 /
//! RFC 9220 §3, XC-04, XC-07, XC-11). A [`MalformedError`] must be answered with
//! a stream error H3_MESSAGE_ERROR (ERR-05, RFC 9114 §4.1.2); a server may send
//! a 400 response first.
//!
//! Encoding runs the same semantic checks, so a head that encodes also decodes
//! (apart from XC-04, which depends on the peer's SETTINGS).
//!
//! Not checked here: whether `:protocol` names a protocol we serve (XC-10,
//! answer 501), content-length against DATA (RFC 9114 §4.1.2), and the
//! Capsule Protocol rules, which apply only once a request uses capsules: see
//! [`check_capsule_protocol_fields`] and [`ResponseHead::check_capsule_protocol`].

use std::borrow::Cow;
use std::fmt;

use http::header::{self, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, StatusCode};

use crate::Code;
use crate::qpack::{self, FieldLine, HeaderField};

/// Why a request, response or trailer section is malformed (RFC 9114 §4.1.2).
/// Every variant is answered with H3_MESSAGE_ERROR ([`MalformedError::code`], ERR-05).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedError {
    /// A pseudo-header after a regular field (RFC 9114 §4.3).
    #[error("pseudo-header field after a regular field")]
    PseudoHeaderAfterRegular,
    /// A pseudo-header that HTTP/3 does not define (RFC 9114 §4.3).
    #[error("unknown pseudo-header field")]
    UnknownPseudoHeader,
    /// A defined pseudo-header in the wrong kind of message: `:status` in a
    /// request, a request pseudo-header in a response, `:scheme`/`:path` on a
    /// classic CONNECT (CC-18), `:protocol` on a non-CONNECT request or a
    /// response (XC-11), any pseudo-header in trailers (RFC 9114 §4.3).
    #[error("pseudo-header field {0} not allowed here")]
    UnexpectedPseudoHeader(&'static str),
    /// A pseudo-header given twice (RFC 9114 §4.3.1, §4.3.2; XC-11).
    #[error("duplicate pseudo-header field {0}")]
    DuplicatePseudoHeader(&'static str),
    /// A mandatory pseudo-header is absent (RFC 9114 §4.3.1, §4.3.2, §4.4; XC-07).
    #[error("missing pseudo-header field {0}")]
    MissingPseudoHeader(&'static str),
    /// A pseudo-header value that does not parse (RFC 9114 §4.3.1).
    #[error("invalid value for pseudo-header field {0}")]
    InvalidPseudoHeaderValue(&'static str),
    /// An empty `:path` (RFC 9114 §4.3.1; XC-07).
    #[error("empty :path")]
    EmptyPath,
    /// `:authority` with userinfo (RFC 9114 §4.3.1).
    #[error(":authority contains userinfo")]
    AuthorityUserinfo,
    /// An http/https request with neither `:authority` nor `Host`, or with
    /// both but different (RFC 9114 §4.3.1).
    #[error(":authority and Host missing or different")]
    AuthorityHostMismatch,
    /// Classic CONNECT `:authority` without a port (CC-18, CC-01).
    #[error("CONNECT :authority has no port")]
    ConnectAuthorityWithoutPort,
    /// `:protocol` while we did not send SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (XC-04).
    #[error(":protocol received without SETTINGS_ENABLE_CONNECT_PROTOCOL")]
    ConnectProtocolNotEnabled,
    /// An uppercase character in a field name (RFC 9114 §4.2, XC-13).
    #[error("uppercase character in field name")]
    UppercaseFieldName,
    /// A field name that is not a token (RFC 9114 §4.1.2, §10.3).
    #[error("invalid field name")]
    InvalidFieldName,
    /// A field value with a character outside `field-content` (CTL, leading or
    /// trailing whitespace) (RFC 9114 §10.3, RFC 9110 §5.5).
    #[error("invalid value for field {0}")]
    InvalidFieldValue(HeaderName),
    /// A connection-specific field (RFC 9114 §4.2, XC-12).
    #[error("connection-specific field {0}")]
    ConnectionSpecificField(HeaderName),
    /// `te` with a value other than "trailers" (RFC 9114 §4.2, XC-12).
    #[error("te field with a value other than \"trailers\"")]
    InvalidTe,
    /// More than one `Host` field.
    #[error("more than one host field")]
    DuplicateHost,
    /// More fields than [`HeaderMap`] can hold (2^15).
    #[error("too many fields")]
    TooManyFields,
    /// Content-Length, Content-Type or Transfer-Encoding on a message that uses
    /// the Capsule Protocol (R9297-20).
    #[error("{0} on a message using the Capsule Protocol")]
    CapsuleProtocolWithContent(HeaderName),
    /// A 101 response: HTTP/3 has no HTTP Upgrade and no 101 (RFC 9114 §4.5).
    #[error("101 (Switching Protocols) is not used in HTTP/3")]
    Status101,
    /// 204, 205 or 206 on a response that uses the Capsule Protocol (R9297-20).
    #[error("status {0} on a response using the Capsule Protocol")]
    CapsuleProtocolStatus(StatusCode),
    /// Sending `capsule-protocol` on a response that is neither 101 nor 2xx
    /// (R9297-29; raised by [`ResponseHead::encode`] only).
    #[error("capsule-protocol on a {0} response")]
    CapsuleProtocolOnFailure(StatusCode),
}

impl MalformedError {
    /// H3_MESSAGE_ERROR, as a stream error (ERR-05, RFC 9114 §4.1.2).
    pub const fn code(&self) -> Code {
        Code::MESSAGE_ERROR
    }
}

/// The value of the `:protocol` pseudo-header (RFC 8441 §4, XC-06): an HTTP
/// Upgrade Token, i.e. an RFC 9110 §5.6.2 `token`. Any token is accepted here;
/// whether we serve it is the application's decision (XC-10: 501 if not).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Protocol(Cow<'static, str>);

impl Protocol {
    /// RFC 9298.
    pub const CONNECT_UDP: Protocol = Protocol(Cow::Borrowed("connect-udp"));
    /// RFC 9484.
    pub const CONNECT_IP: Protocol = Protocol(Cow::Borrowed("connect-ip"));
    /// draft-ietf-httpbis-connect-tcp.
    pub const CONNECT_TCP: Protocol = Protocol(Cow::Borrowed("connect-tcp"));
    /// RFC 8441 / RFC 9220.
    pub const WEBSOCKET: Protocol = Protocol(Cow::Borrowed("websocket"));

    /// Parses a token; `None` if `value` is empty or has a non-`tchar` byte.
    pub fn from_bytes(value: &[u8]) -> Option<Self> {
        if value.is_empty() || !value.iter().all(|&b| is_tchar(b)) {
            return None;
        }
        // All tchars are ASCII, hence valid UTF-8.
        std::str::from_utf8(value)
            .ok()
            .map(|s| Protocol(Cow::Owned(s.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Protocol {
    type Err = MalformedError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Protocol::from_bytes(s.as_bytes())
            .ok_or(MalformedError::InvalidPseudoHeaderValue(":protocol"))
    }
}

/// A request header section (RFC 9114 §4.3.1).
///
/// Three shapes are valid (checked by [`RequestHead::from_fields`] and
/// [`RequestHead::encode`]):
/// * ordinary: `:scheme` and `:path` present, `protocol` `None`;
/// * classic CONNECT (CC-18): `method` CONNECT, only `:authority` (with port);
/// * extended CONNECT (XC-07): `method` CONNECT with `protocol`, `:scheme`,
///   `:authority` and `:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    pub scheme: Option<Scheme>,
    pub authority: Option<Authority>,
    /// Origin-form (`/…`, optional `?query`) or asterisk-form (`*`): the forms
    /// RFC 9114 §4.3.1 allows for http/https and all [`PathAndQuery`] holds.
    pub path: Option<PathAndQuery>,
    pub protocol: Option<Protocol>,
    pub headers: HeaderMap,
}

/// A response header section (RFC 9114 §4.3.2), interim (1xx) or final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pseudo {
    Method,
    Scheme,
    Authority,
    Path,
    Protocol,
    Status,
}

impl Pseudo {
    fn parse(name: &[u8]) -> Option<Self> {
        Some(match name {
            b":method" => Pseudo::Method,
            b":scheme" => Pseudo::Scheme,
            b":authority" => Pseudo::Authority,
            b":path" => Pseudo::Path,
            b":protocol" => Pseudo::Protocol,
            b":status" => Pseudo::Status,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Pseudo::Method => ":method",
            Pseudo::Scheme => ":scheme",
            Pseudo::Authority => ":authority",
            Pseudo::Path => ":path",
            Pseudo::Protocol => ":protocol",
            Pseudo::Status => ":status",
        }
    }
}

impl RequestHead {
    /// A request with only a method; fill in the rest.
    pub fn new(method: Method) -> Self {
        Self {
            method,
            scheme: None,
            authority: None,
            path: None,
            protocol: None,
            headers: HeaderMap::new(),
        }
    }

    /// Classic CONNECT to `authority` (`host:port`, CC-18).
    pub fn connect(authority: Authority) -> Self {
        Self {
            authority: Some(authority),
            ..Self::new(Method::CONNECT)
        }
    }

    /// Extended CONNECT (XC-06, XC-07).
    pub fn extended_connect(
        protocol: Protocol,
        scheme: Scheme,
        authority: Authority,
        path: PathAndQuery,
    ) -> Self {
        Self {
            scheme: Some(scheme),
            authority: Some(authority),
            path: Some(path),
            protocol: Some(protocol),
            ..Self::new(Method::CONNECT)
        }
    }

    /// Builds and validates a request from a decoded header section.
    ///
    /// `enable_connect_protocol` is the SETTINGS_ENABLE_CONNECT_PROTOCOL value
    /// we (the server) sent: without it, `:protocol` is malformed (XC-04).
    /// Fields with the QPACK `N` bit become sensitive [`HeaderValue`]s.
    pub fn from_fields(
        fields: impl IntoIterator<Item = HeaderField>,
        enable_connect_protocol: bool,
    ) -> Result<Self, MalformedError> {
        let mut method = None;
        let mut scheme = None;
        let mut authority = None;
        let mut path = None;
        let mut protocol = None;
        let mut headers = HeaderMap::new();
        let mut regular_seen = false;
        for field in fields {
            let Some(pseudo) = pseudo_header(&field, regular_seen)? else {
                regular_seen = true;
                append_regular(&mut headers, field)?;
                continue;
            };
            let v = &field.value;
            let invalid = || MalformedError::InvalidPseudoHeaderValue(pseudo.name());
            match pseudo {
                Pseudo::Method => set_once(&mut method, pseudo, || {
                    Method::from_bytes(v).map_err(|_| invalid())
                })?,
                Pseudo::Scheme => set_once(&mut scheme, pseudo, || {
                    if v.is_empty() {
                        return Err(invalid());
                    }
                    Scheme::try_from(&v[..]).map_err(|_| invalid())
                })?,
                Pseudo::Authority => set_once(&mut authority, pseudo, || {
                    Authority::from_maybe_shared(v.clone()).map_err(|_| invalid())
                })?,
                Pseudo::Path => set_once(&mut path, pseudo, || {
                    if v.is_empty() {
                        return Err(MalformedError::EmptyPath);
                    }
                    // `PathAndQuery` would silently drop a fragment; `:path`
                    // never has one (RFC 9114 §4.3.1).
                    if v.contains(&b'#') {
                        return Err(invalid());
                    }
                    PathAndQuery::from_maybe_shared(v.clone()).map_err(|_| invalid())
                })?,
                Pseudo::Protocol => set_once(&mut protocol, pseudo, || {
                    Protocol::from_bytes(v).ok_or_else(invalid)
                })?,
                Pseudo::Status => return Err(MalformedError::UnexpectedPseudoHeader(":status")),
            }
        }
        let head = RequestHead {
            method: method.ok_or(MalformedError::MissingPseudoHeader(":method"))?,
            scheme,
            authority,
            path,
            protocol,
            headers,
        };
        if head.protocol.is_some() && !enable_connect_protocol {
            return Err(MalformedError::ConnectProtocolNotEnabled);
        }
        head.validate()?;
        Ok(head)
    }

    /// Whether the method is CONNECT, classic or extended.
    pub fn is_connect(&self) -> bool {
        self.method == Method::CONNECT
    }

    /// Whether this is an extended CONNECT (`:protocol` present, XC-06).
    pub fn is_extended_connect(&self) -> bool {
        self.method == Method::CONNECT && self.protocol.is_some()
    }

    /// Whether this is a classic CONNECT (CC-18).
    pub fn is_classic_connect(&self) -> bool {
        self.method == Method::CONNECT && self.protocol.is_none()
    }

    /// Pseudo-header combination rules (RFC 9114 §4.3.1, §4.4; XC-07, XC-11, CC-18).
    fn validate(&self) -> Result<(), MalformedError> {
        if let Some(a) = &self.authority
            && a.as_str().contains('@')
        {
            return Err(MalformedError::AuthorityUserinfo);
        }
        if self.protocol.is_some() {
            // XC-11: `:protocol` only on CONNECT.
            if self.method != Method::CONNECT {
                return Err(MalformedError::UnexpectedPseudoHeader(":protocol"));
            }
            // XC-07: `:scheme`, `:path` (and `:authority`) must be present.
            if self.authority.is_none() {
                return Err(MalformedError::MissingPseudoHeader(":authority"));
            }
        } else if self.method == Method::CONNECT {
            // CC-18 (RFC 9114 §4.4): only `:authority`, as host:port.
            if self.scheme.is_some() {
                return Err(MalformedError::UnexpectedPseudoHeader(":scheme"));
            }
            if self.path.is_some() {
                return Err(MalformedError::UnexpectedPseudoHeader(":path"));
            }
            let authority = self
                .authority
                .as_ref()
                .ok_or(MalformedError::MissingPseudoHeader(":authority"))?;
            if authority.port_u16().is_none() {
                return Err(MalformedError::ConnectAuthorityWithoutPort);
            }
            return Ok(());
        }
        // Ordinary requests and extended CONNECT (XC-07): `:scheme` and `:path`.
        let scheme = self
            .scheme
            .as_ref()
            .ok_or(MalformedError::MissingPseudoHeader(":scheme"))?;
        let path = self
            .path
            .as_ref()
            .ok_or(MalformedError::MissingPseudoHeader(":path"))?;
        if is_http_scheme(scheme) {
            // RFC 9114 §4.3.1: origin-form, or `*` for OPTIONS.
            let p = path.as_str();
            if !(p.starts_with('/') || (p == "*" && self.method == Method::OPTIONS)) {
                return Err(MalformedError::InvalidPseudoHeaderValue(":path"));
            }
            // RFC 9114 §4.3.1: `:authority` or Host, equal if both.
            let mut hosts = self.headers.get_all(header::HOST).iter();
            let host = hosts.next();
            if hosts.next().is_some() {
                return Err(MalformedError::DuplicateHost);
            }
            match (&self.authority, host) {
                (None, None) => return Err(MalformedError::AuthorityHostMismatch),
                (Some(a), Some(h)) if a.as_str().as_bytes() != h.as_bytes() => {
                    return Err(MalformedError::AuthorityHostMismatch);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The field lines of this head: pseudo-headers first (RFC 9114 §4.3),
    /// then `headers` (sensitive values get the QPACK `N` bit). Call
    /// [`RequestHead::encode`] unless you need the lines themselves.
    pub fn field_lines(&self) -> impl Iterator<Item = FieldLine<'_>> {
        let pseudo = [
            Some((":method", self.method.as_str())),
            self.scheme.as_ref().map(|s| (":scheme", s.as_str())),
            self.authority.as_ref().map(|a| (":authority", a.as_str())),
            self.path.as_ref().map(|p| (":path", p.as_str())),
            self.protocol.as_ref().map(|p| (":protocol", p.as_str())),
        ];
        pseudo
            .into_iter()
            .flatten()
            .map(FieldLine::from)
            .chain(regular_lines(&self.headers))
    }

    /// Validates this head like [`RequestHead::from_fields`] would (except
    /// XC-04, which is the connection's check) and appends its QPACK field
    /// section to `buf`. On error nothing is written.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), MalformedError> {
        self.validate()?;
        check_outgoing(&self.headers)?;
        qpack::encode_field_section(self.field_lines(), buf);
        Ok(())
    }

    /// R9297-20: a request using the Capsule Protocol carries no
    /// Content-Length, Content-Type or Transfer-Encoding.
    pub fn check_capsule_protocol(&self) -> Result<(), MalformedError> {
        check_capsule_protocol_fields(&self.headers)
    }
}

impl ResponseHead {
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
        }
    }

    /// Builds and validates a response from a decoded header section
    /// (RFC 9114 §4.3.2): exactly one `:status` of three digits, not 101
    /// (RFC 9114 §4.5), no other pseudo-header (XC-11 for `:protocol`).
    pub fn from_fields(
        fields: impl IntoIterator<Item = HeaderField>,
    ) -> Result<Self, MalformedError> {
        let mut status = None;
        let mut headers = HeaderMap::new();
        let mut regular_seen = false;
        for field in fields {
            match pseudo_header(&field, regular_seen)? {
                None => {
                    regular_seen = true;
                    append_regular(&mut headers, field)?;
                }
                Some(Pseudo::Status) => set_once(&mut status, Pseudo::Status, || {
                    StatusCode::from_bytes(&field.value)
                        .map_err(|_| MalformedError::InvalidPseudoHeaderValue(":status"))
                })?,
                Some(other) => return Err(MalformedError::UnexpectedPseudoHeader(other.name())),
            }
        }
        let head = ResponseHead {
            status: status.ok_or(MalformedError::MissingPseudoHeader(":status"))?,
            headers,
        };
        head.validate()?;
        Ok(head)
    }

    fn validate(&self) -> Result<(), MalformedError> {
        if self.status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(MalformedError::Status101);
        }
        Ok(())
    }

    /// `:status` then `headers`; see [`RequestHead::field_lines`].
    pub fn field_lines(&self) -> impl Iterator<Item = FieldLine<'_>> {
        std::iter::once(FieldLine::from((":status", self.status.as_str())))
            .chain(regular_lines(&self.headers))
    }

    /// Validates `headers` (RFC 9114 §4.2; R9297-29: no `capsule-protocol` on
    /// a response other than 101 or 2xx) and appends the QPACK field section.
    /// On error nothing is written.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), MalformedError> {
        self.validate()?;
        check_outgoing(&self.headers)?;
        if self.headers.contains_key(CAPSULE_PROTOCOL) && !may_use_capsule_protocol(self.status) {
            return Err(MalformedError::CapsuleProtocolOnFailure(self.status));
        }
        qpack::encode_field_section(self.field_lines(), buf);
        Ok(())
    }

    /// R9297-20 for a response that uses the Capsule Protocol: no
    /// Content-Length, Content-Type or Transfer-Encoding, and not 204, 205 or 206.
    pub fn check_capsule_protocol(&self) -> Result<(), MalformedError> {
        if matches!(self.status.as_u16(), 204..=206) {
            return Err(MalformedError::CapsuleProtocolStatus(self.status));
        }
        check_capsule_protocol_fields(&self.headers)
    }
}

/// Builds and validates a trailer section: regular fields only (RFC 9114 §4.3:
/// pseudo-headers never appear in trailers), same field rules as headers.
pub fn trailers_from_fields(
    fields: impl IntoIterator<Item = HeaderField>,
) -> Result<HeaderMap, MalformedError> {
    let mut headers = HeaderMap::new();
    for field in fields {
        if let Some(p) = pseudo_header(&field, false)? {
            return Err(MalformedError::UnexpectedPseudoHeader(p.name()));
        }
        append_regular(&mut headers, field)?;
    }
    Ok(headers)
}

/// Validates and QPACK-encodes a trailer section.
pub fn encode_trailers(trailers: &HeaderMap, buf: &mut Vec<u8>) -> Result<(), MalformedError> {
    check_outgoing(trailers)?;
    qpack::encode_field_section(regular_lines(trailers), buf);
    Ok(())
}

/// The Capsule-Protocol header field name (RFC 9297 §3.4).
pub const CAPSULE_PROTOCOL: &str = "capsule-protocol";

/// R9297-20: a message that uses the Capsule Protocol must not carry
/// Content-Length, Content-Type or Transfer-Encoding; a receiver treats one
/// that does as malformed (H3_MESSAGE_ERROR, ERR-05).
pub fn check_capsule_protocol_fields(headers: &HeaderMap) -> Result<(), MalformedError> {
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_TYPE,
        header::TRANSFER_ENCODING,
    ] {
        if headers.contains_key(&name) {
            return Err(MalformedError::CapsuleProtocolWithContent(name));
        }
    }
    Ok(())
}

/// R9297-29: `capsule-protocol` may only be sent on a 101 or 2xx response.
pub fn may_use_capsule_protocol(status: StatusCode) -> bool {
    status == StatusCode::SWITCHING_PROTOCOLS || status.is_success()
}

/// Classifies one field: `Some(pseudo)` for a known pseudo-header, `None` for
/// a regular field. Rejects uppercase names (XC-13), unknown pseudo-headers and
/// pseudo-headers after regular fields (RFC 9114 §4.3).
fn pseudo_header(
    field: &HeaderField,
    regular_seen: bool,
) -> Result<Option<Pseudo>, MalformedError> {
    if field.name.iter().any(u8::is_ascii_uppercase) {
        return Err(MalformedError::UppercaseFieldName);
    }
    if field.name.first() != Some(&b':') {
        return Ok(None);
    }
    if regular_seen {
        return Err(MalformedError::PseudoHeaderAfterRegular);
    }
    Pseudo::parse(&field.name)
        .map(Some)
        .ok_or(MalformedError::UnknownPseudoHeader)
}

/// Stores the first value of a pseudo-header; a second one is malformed.
fn set_once<T>(
    slot: &mut Option<T>,
    pseudo: Pseudo,
    parse: impl FnOnce() -> Result<T, MalformedError>,
) -> Result<(), MalformedError> {
    if slot.is_some() {
        return Err(MalformedError::DuplicatePseudoHeader(pseudo.name()));
    }
    *slot = Some(parse()?);
    Ok(())
}

/// Validates a regular field (name already known lowercase and not a
/// pseudo-header) and appends it without copying its value.
fn append_regular(headers: &mut HeaderMap, field: HeaderField) -> Result<(), MalformedError> {
    let name = HeaderName::from_bytes(&field.name).map_err(|_| MalformedError::InvalidFieldName)?;
    if !is_field_content(&field.value) {
        return Err(MalformedError::InvalidFieldValue(name));
    }
    let mut value = match HeaderValue::from_maybe_shared(field.value) {
        Ok(v) => v,
        Err(_) => return Err(MalformedError::InvalidFieldValue(name)),
    };
    check_connection_specific(&name, &value)?;
    value.set_sensitive(field.never_index);
    headers
        .try_append(name, value)
        .map_err(|_| MalformedError::TooManyFields)?;
    Ok(())
}

/// RFC 9114 §4.2 / XC-12: connection-specific fields are malformed; `te` may
/// only say "trailers".
fn check_connection_specific(name: &HeaderName, value: &HeaderValue) -> Result<(), MalformedError> {
    if *name == header::CONNECTION
        || *name == header::TRANSFER_ENCODING
        || *name == header::UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
    {
        return Err(MalformedError::ConnectionSpecificField(name.clone()));
    }
    if *name == header::TE && !value.as_bytes().eq_ignore_ascii_case(b"trailers") {
        return Err(MalformedError::InvalidTe);
    }
    Ok(())
}

/// Outgoing checks for a [`HeaderMap`] built by the application: names are
/// lowercase tokens by construction, values need the §10.3 check.
fn check_outgoing(headers: &HeaderMap) -> Result<(), MalformedError> {
    for (name, value) in headers {
        check_connection_specific(name, value)?;
        if !is_field_content(value.as_bytes()) {
            return Err(MalformedError::InvalidFieldValue(name.clone()));
        }
    }
    Ok(())
}

fn regular_lines(headers: &HeaderMap) -> impl Iterator<Item = FieldLine<'_>> {
    headers.iter().map(|(name, value)| FieldLine {
        name: name.as_str().as_bytes(),
        value: value.as_bytes(),
        never_index: value.is_sensitive(),
    })
}

/// RFC 9110 §5.5 `field-value`: no NUL, CR, LF or other CTL except HTAB, and
/// no leading or trailing SP/HTAB (RFC 9114 §10.3 makes violations malformed).
fn is_field_content(value: &[u8]) -> bool {
    let ws = |b: &u8| *b == b' ' || *b == b'\t';
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
        && !value.first().is_some_and(ws)
        && !value.last().is_some_and(ws)
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_http_scheme(scheme: &Scheme) -> bool {
    let s = scheme.as_str();
    s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("http")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    type E = MalformedError;

    fn fields(pairs: &[(&str, &str)]) -> Vec<HeaderField> {
        pairs
            .iter()
            .map(|(n, v)| {
                HeaderField::new(
                    Bytes::copy_from_slice(n.as_bytes()),
                    Bytes::copy_from_slice(v.as_bytes()),
                )
            })
            .collect()
    }

    fn req(pairs: &[(&str, &str)]) -> Result<RequestHead, E> {
        RequestHead::from_fields(fields(pairs), true)
    }

    fn resp(pairs: &[(&str, &str)]) -> Result<ResponseHead, E> {
        ResponseHead::from_fields(fields(pairs))
    }

    const GET: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "example.org"),
        (":path", "/index.html?q=1"),
        ("accept", "*/*"),
    ];

    fn ext(protocol: &str) -> Vec<(&str, &str)> {
        vec![
            (":method", "CONNECT"),
            (":protocol", protocol),
            (":scheme", "https"),
            (":authority", "proxy.example.org"),
            (":path", "/.well-known/masque/udp/192.0.2.6/443/"),
            ("capsule-protocol", "?1"),
        ]
    }

    /// `base` without the field `name`, plus `(name, value)` if given (a
    /// pseudo-header goes second, still ahead of all regular fields).
    fn with(
        base: &[(&'static str, &'static str)],
        name: &'static str,
        value: Option<&'static str>,
    ) -> Vec<(&'static str, &'static str)> {
        let mut out: Vec<_> = base.iter().copied().filter(|(n, _)| *n != name).collect();
        if let Some(v) = value {
            let at = if name.starts_with(':') { 1 } else { out.len() };
            out.insert(at.min(out.len()), (name, v));
        }
        out
    }

    /// ERR-05: every malformed message is a stream error H3_MESSAGE_ERROR.
    #[test]
    fn err05_code_is_h3_message_error() {
        assert_eq!(E::EmptyPath.code(), Code::MESSAGE_ERROR);
        assert_eq!(E::EmptyPath.code().0, 0x10e);
    }

    #[test]
    fn ordinary_request() {
        let r = req(GET).unwrap();
        assert_eq!(r.method, Method::GET);
        assert_eq!(r.scheme, Some(Scheme::HTTPS));
        assert_eq!(r.authority.as_ref().unwrap().as_str(), "example.org");
        assert_eq!(r.path.as_ref().unwrap().as_str(), "/index.html?q=1");
        assert_eq!(r.protocol, None);
        assert_eq!(r.headers["accept"], "*/*");
        // Host instead of :authority (RFC 9114 §4.3.1).
        let r = req(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/"),
            ("host", "example.org"),
        ]);
        assert!(r.is_ok());
        // OPTIONS * (RFC 9114 §4.3.1).
        let options = [
            (":method", "OPTIONS"),
            (":scheme", "https"),
            (":authority", "example.org"),
            (":path", "*"),
        ];
        assert!(req(&options).is_ok());
    }

    /// RFC 9114 §4.3: pseudo-headers come before regular fields.
    #[test]
    fn pseudo_header_after_regular() {
        let mut f = GET.to_vec();
        f.push((":protocol", "x"));
        assert_eq!(req(&f), Err(E::PseudoHeaderAfterRegular));
        assert_eq!(
            resp(&[("server", "x"), (":status", "200")]),
            Err(E::PseudoHeaderAfterRegular)
        );
    }

    /// RFC 9114 §4.3: undefined pseudo-headers are malformed.
    #[test]
    fn unknown_pseudo_header() {
        assert_eq!(
            req(&with(GET, ":foo", Some("x"))),
            Err(E::UnknownPseudoHeader)
        );
        assert_eq!(req(&with(GET, ":", Some("x"))), Err(E::UnknownPseudoHeader));
        assert_eq!(
            resp(&[(":status", "200"), (":x", "1")]),
            Err(E::UnknownPseudoHeader)
        );
    }

    /// RFC 9114 §4.3.1, XC-11: each pseudo-header at most once.
    #[test]
    fn duplicate_pseudo_headers() {
        for (name, value) in [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "a.example"),
            (":path", "/"),
        ] {
            let mut f = vec![(name, value)];
            f.extend_from_slice(GET);
            assert_eq!(req(&f), Err(E::DuplicatePseudoHeader(name)), "{name}");
        }
        let mut f = ext("connect-udp");
        f.insert(1, (":protocol", "connect-ip"));
        assert_eq!(req(&f), Err(E::DuplicatePseudoHeader(":protocol")));
        assert_eq!(
            resp(&[(":status", "200"), (":status", "200")]),
            Err(E::DuplicatePseudoHeader(":status"))
        );
    }

    /// RFC 9114 §4.3.1: `:method` is mandatory; `:scheme` and `:path` too
    /// unless CONNECT.
    #[test]
    fn missing_request_pseudo_headers() {
        assert_eq!(
            req(&with(GET, ":method", None)),
            Err(E::MissingPseudoHeader(":method"))
        );
        assert_eq!(
            req(&with(GET, ":scheme", None)),
            Err(E::MissingPseudoHeader(":scheme"))
        );
        assert_eq!(
            req(&with(GET, ":path", None)),
            Err(E::MissingPseudoHeader(":path"))
        );
        assert_eq!(req(&[]), Err(E::MissingPseudoHeader(":method")));
    }

    /// RFC 9114 §4.3.1: invalid pseudo-header values; non-empty `:path` in
    /// origin form (or `*` for OPTIONS) for http/https.
    #[test]
    fn invalid_request_pseudo_values() {
        assert_eq!(req(&with(GET, ":path", Some(""))), Err(E::EmptyPath));
        assert_eq!(
            req(&with(GET, ":path", Some("index.html"))),
            Err(E::InvalidPseudoHeaderValue(":path"))
        );
        assert_eq!(
            req(&with(GET, ":path", Some("*"))),
            Err(E::InvalidPseudoHeaderValue(":path"))
        );
        assert_eq!(
            req(&with(GET, ":path", Some("/a#frag"))),
            Err(E::InvalidPseudoHeaderValue(":path"))
        );
        assert_eq!(
            req(&with(GET, ":path", Some("/a b"))),
            Err(E::InvalidPseudoHeaderValue(":path"))
        );
        assert_eq!(
            req(&with(GET, ":method", Some("G T"))),
            Err(E::InvalidPseudoHeaderValue(":method"))
        );
        assert_eq!(
            req(&with(GET, ":method", Some(""))),
            Err(E::InvalidPseudoHeaderValue(":method"))
        );
        assert_eq!(
            req(&with(GET, ":scheme", Some(""))),
            Err(E::InvalidPseudoHeaderValue(":scheme"))
        );
        assert_eq!(
            req(&with(GET, ":scheme", Some("ht tp"))),
            Err(E::InvalidPseudoHeaderValue(":scheme"))
        );
        assert_eq!(
            req(&with(GET, ":authority", Some(""))),
            Err(E::InvalidPseudoHeaderValue(":authority"))
        );
        assert_eq!(
            req(&with(GET, ":authority", Some("a b"))),
            Err(E::InvalidPseudoHeaderValue(":authority"))
        );
        // A non-http scheme needs no authority (RFC 9114 §4.3.1); `:path` is
        // still origin- or asterisk-form, all that `PathAndQuery` represents.
        assert_eq!(
            req(&[(":method", "GET"), (":scheme", "foo"), (":path", "/bar")]).map(|_| ()),
            Ok(())
        );
        assert_eq!(
            req(&[(":method", "GET"), (":scheme", "urn"), (":path", "isbn:1")]).map(|_| ()),
            Err(E::InvalidPseudoHeaderValue(":path"))
        );
    }

    /// RFC 9114 §4.3.1: `:authority` has no userinfo and agrees with Host.
    #[test]
    fn authority_rules() {
        assert_eq!(
            req(&with(GET, ":authority", Some("user@example.org"))),
            Err(E::AuthorityUserinfo)
        );
        assert_eq!(
            req(&with(GET, ":authority", None)),
            Err(E::AuthorityHostMismatch)
        );
        let mut f = GET.to_vec();
        f.push(("host", "other.example"));
        assert_eq!(req(&f), Err(E::AuthorityHostMismatch));
        f.pop();
        f.push(("host", "example.org"));
        assert!(req(&f).is_ok());
        f.push(("host", "example.org"));
        assert_eq!(req(&f), Err(E::DuplicateHost));
    }

    /// RFC 9114 §4.3.1: `:status` in a request is malformed.
    #[test]
    fn status_in_request() {
        assert_eq!(
            req(&with(GET, ":status", Some("200"))),
            Err(E::UnexpectedPseudoHeader(":status"))
        );
    }

    /// XC-13 (RFC 9114 §4.2): uppercase field names are malformed.
    #[test]
    fn xc13_uppercase_names() {
        let mut f = GET.to_vec();
        f.push(("Accept-Language", "en"));
        assert_eq!(req(&f), Err(E::UppercaseFieldName));
        assert_eq!(
            req(&with(GET, ":Path", Some("/"))),
            Err(E::UppercaseFieldName)
        );
        assert_eq!(
            resp(&[(":status", "200"), ("Server", "x")]),
            Err(E::UppercaseFieldName)
        );
        assert_eq!(
            trailers_from_fields(fields(&[("X-A", "1")])),
            Err(E::UppercaseFieldName)
        );
    }

    /// RFC 9114 §4.1.2 / §10.3: invalid name and value characters.
    #[test]
    fn invalid_field_characters() {
        for name in ["", "a b", "a\0", "a:b", "é"] {
            let mut f = GET.to_vec();
            f.push((name, "v"));
            assert_eq!(req(&f), Err(E::InvalidFieldName), "{name:?}");
        }
        for value in ["a\0b", "a\rb", "a\nb", "a\x7fb", " a", "a ", "\ta", "a\t"] {
            let mut f = GET.to_vec();
            f.push(("x-v", value));
            assert_eq!(
                req(&f),
                Err(E::InvalidFieldValue(HeaderName::from_static("x-v"))),
                "{value:?}"
            );
        }
        // Inner whitespace, obs-text and empty values are fine.
        let mut f = GET.to_vec();
        f.extend_from_slice(&[("x-a", "a \t b"), ("x-b", ""), ("x-c", "caf\u{e9}")]);
        assert!(req(&f).is_ok());
    }

    /// XC-12 (RFC 9114 §4.2): connection-specific fields are malformed; `te`
    /// only as "trailers".
    #[test]
    fn xc12_connection_specific_fields() {
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
        ] {
            let mut f = GET.to_vec();
            f.push((name, "x"));
            let err = E::ConnectionSpecificField(HeaderName::from_static(name));
            assert_eq!(req(&f).unwrap_err(), err, "{name}");
            assert_eq!(resp(&[(":status", "200"), (name, "x")]).unwrap_err(), err);
            assert_eq!(
                trailers_from_fields(fields(&[(name, "x")])).unwrap_err(),
                err
            );
        }
        let mut f = GET.to_vec();
        f.push(("te", "trailers"));
        assert!(req(&f).is_ok());
        f.pop();
        f.push(("te", "gzip"));
        assert_eq!(req(&f), Err(E::InvalidTe));
        f.pop();
        f.push(("te", "trailers, gzip"));
        assert_eq!(req(&f), Err(E::InvalidTe));
    }

    /// XC-06: any token is an acceptable `:protocol` value (501 for unknown
    /// ones is the application's decision, XC-10).
    #[test]
    fn xc06_any_protocol_token() {
        for p in [
            "connect-udp",
            "connect-ip",
            "connect-tcp",
            "websocket",
            "x-custom_1.0",
        ] {
            let r = req(&ext(p)).unwrap();
            assert!(r.is_extended_connect() && !r.is_classic_connect());
            assert_eq!(r.protocol.as_ref().unwrap().as_str(), p);
            assert!(r.check_capsule_protocol().is_ok());
        }
        assert_eq!(
            req(&ext("connect-udp")).unwrap().protocol,
            Some(Protocol::CONNECT_UDP)
        );
        for bad in ["", "connect udp", "a/b", "\u{e9}"] {
            assert_eq!(
                req(&ext(bad)),
                Err(E::InvalidPseudoHeaderValue(":protocol")),
                "{bad:?}"
            );
        }
        assert!("connect-ip".parse::<Protocol>().is_ok());
        assert!("a b".parse::<Protocol>().is_err());
    }

    /// XC-04: `:protocol` without our SETTINGS_ENABLE_CONNECT_PROTOCOL = 1.
    #[test]
    fn xc04_protocol_requires_setting() {
        assert_eq!(
            RequestHead::from_fields(fields(&ext("connect-udp")), false),
            Err(E::ConnectProtocolNotEnabled)
        );
        // Without `:protocol` the setting is irrelevant.
        assert!(RequestHead::from_fields(fields(GET), false).is_ok());
    }

    /// XC-07: extended CONNECT needs `:scheme`, `:path` (non-empty) and `:authority`.
    #[test]
    fn xc07_extended_connect_needs_scheme_path_authority() {
        let base = ext("connect-udp");
        let drop = |name: &str| {
            base.iter()
                .copied()
                .filter(|(n, _)| *n != name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            req(&drop(":scheme")),
            Err(E::MissingPseudoHeader(":scheme"))
        );
        assert_eq!(req(&drop(":path")), Err(E::MissingPseudoHeader(":path")));
        assert_eq!(
            req(&drop(":authority")),
            Err(E::MissingPseudoHeader(":authority"))
        );
        let empty: Vec<_> = base
            .iter()
            .map(|&(n, v)| if n == ":path" { (n, "") } else { (n, v) })
            .collect();
        assert_eq!(req(&empty), Err(E::EmptyPath));
    }

    /// XC-11: `:protocol` on a non-CONNECT request or in a response.
    #[test]
    fn xc11_protocol_outside_connect() {
        let mut f = GET.to_vec();
        f.insert(1, (":protocol", "connect-udp"));
        assert_eq!(req(&f), Err(E::UnexpectedPseudoHeader(":protocol")));
        assert_eq!(
            resp(&[(":status", "200"), (":protocol", "connect-udp")]),
            Err(E::UnexpectedPseudoHeader(":protocol"))
        );
    }

    /// CC-18 (RFC 9114 §4.4): classic CONNECT has `:authority` only, with a port.
    #[test]
    fn cc18_classic_connect() {
        let ok = [(":method", "CONNECT"), (":authority", "example.com:443")];
        let r = req(&ok).unwrap();
        assert!(r.is_connect() && r.is_classic_connect() && !r.is_extended_connect());
        assert_eq!(r.authority.as_ref().unwrap().port_u16(), Some(443));
        let ipv6 = [(":method", "CONNECT"), (":authority", "[2001:db8::1]:443")];
        assert!(req(&ipv6).is_ok());
        assert_eq!(
            req(&[ok[0], ok[1], (":scheme", "https")]),
            Err(E::UnexpectedPseudoHeader(":scheme"))
        );
        assert_eq!(
            req(&[ok[0], ok[1], (":path", "/")]),
            Err(E::UnexpectedPseudoHeader(":path"))
        );
        assert_eq!(req(&[ok[0]]), Err(E::MissingPseudoHeader(":authority")));
        // A Host field does not stand in for `:authority` on CONNECT.
        assert_eq!(
            req(&[ok[0], ("host", "example.com:443")]),
            Err(E::MissingPseudoHeader(":authority"))
        );
    }

    /// CC-01 / CC-18: the classic CONNECT target always carries a port.
    #[test]
    fn cc01_connect_authority_needs_port() {
        for a in ["example.com", "example.com:", "[2001:db8::1]"] {
            let r = req(&[(":method", "CONNECT"), (":authority", a)]);
            assert!(
                matches!(
                    r,
                    Err(E::ConnectAuthorityWithoutPort | E::InvalidPseudoHeaderValue(_))
                ),
                "{a}: {r:?}"
            );
        }
    }

    /// RFC 9114 §4.3.2: exactly one three-digit `:status`, nothing else.
    #[test]
    fn response_rules() {
        let r = resp(&[(":status", "200"), ("server", "masque")]).unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers["server"], "masque");
        assert_eq!(
            resp(&[("server", "x")]),
            Err(E::MissingPseudoHeader(":status"))
        );
        for bad in ["20", "2000", "abc", "099", "", " 200"] {
            assert_eq!(
                resp(&[(":status", bad)]),
                Err(E::InvalidPseudoHeaderValue(":status")),
                "{bad:?}"
            );
        }
        for p in [":method", ":scheme", ":authority", ":path"] {
            assert_eq!(
                resp(&[(":status", "200"), (p, "x")]),
                Err(E::UnexpectedPseudoHeader(p))
            );
        }
        assert_eq!(
            resp(&[(":status", "103")]).unwrap().status,
            StatusCode::EARLY_HINTS
        );
        // RFC 9114 §4.5: no 101 in HTTP/3, received or sent.
        assert_eq!(resp(&[(":status", "101")]), Err(E::Status101));
        let mut buf = Vec::new();
        assert_eq!(
            ResponseHead::new(StatusCode::SWITCHING_PROTOCOLS).encode(&mut buf),
            Err(E::Status101)
        );
    }

    /// RFC 9114 §4.3: trailers carry no pseudo-headers.
    #[test]
    fn trailer_rules() {
        let t =
            trailers_from_fields(fields(&[("x-checksum", "abc"), ("x-checksum", "def")])).unwrap();
        assert_eq!(t.get_all("x-checksum").iter().count(), 2);
        assert_eq!(
            trailers_from_fields(fields(&[(":status", "200")])),
            Err(E::UnexpectedPseudoHeader(":status"))
        );
        assert_eq!(
            trailers_from_fields(fields(&[(":x", "1")])),
            Err(E::UnknownPseudoHeader)
        );
        let mut buf = Vec::new();
        encode_trailers(&t, &mut buf).unwrap();
        let decoded = qpack::decode_field_section(&buf, u64::MAX).unwrap();
        assert_eq!(trailers_from_fields(decoded).unwrap(), t);
    }

    /// R9297-20: CL / CT / TE with the Capsule Protocol, and 204/205/206.
    #[test]
    fn r9297_20_capsule_protocol_content_fields() {
        for name in [
            header::CONTENT_LENGTH,
            header::CONTENT_TYPE,
            header::TRANSFER_ENCODING,
        ] {
            let mut h = HeaderMap::new();
            h.insert(name.clone(), HeaderValue::from_static("0"));
            assert_eq!(
                check_capsule_protocol_fields(&h),
                Err(E::CapsuleProtocolWithContent(name.clone()))
            );
            let r = ResponseHead {
                status: StatusCode::OK,
                headers: h.clone(),
            };
            assert_eq!(
                r.check_capsule_protocol(),
                Err(E::CapsuleProtocolWithContent(name))
            );
        }
        let mut f = ext("connect-udp");
        f.push(("content-type", "text/plain"));
        let r = req(&f).unwrap();
        assert_eq!(
            r.check_capsule_protocol(),
            Err(E::CapsuleProtocolWithContent(header::CONTENT_TYPE))
        );
        for s in [204, 205, 206] {
            let r = ResponseHead::new(StatusCode::from_u16(s).unwrap());
            assert_eq!(
                r.check_capsule_protocol(),
                Err(E::CapsuleProtocolStatus(r.status))
            );
        }
        assert!(
            ResponseHead::new(StatusCode::OK)
                .check_capsule_protocol()
                .is_ok()
        );
    }

    /// R9297-29: no `capsule-protocol` on a response other than 101/2xx.
    #[test]
    fn r9297_29_capsule_protocol_only_on_success() {
        let mut r = ResponseHead::new(StatusCode::NOT_FOUND);
        r.headers
            .insert(CAPSULE_PROTOCOL, HeaderValue::from_static("?1"));
        let mut buf = Vec::new();
        assert_eq!(
            r.encode(&mut buf),
            Err(E::CapsuleProtocolOnFailure(StatusCode::NOT_FOUND))
        );
        assert!(buf.is_empty());
        r.status = StatusCode::OK;
        r.encode(&mut buf).unwrap();
        assert!(may_use_capsule_protocol(StatusCode::SWITCHING_PROTOCOLS));
        assert!(!may_use_capsule_protocol(StatusCode::MULTIPLE_CHOICES));
    }

    /// Encoding runs the same checks as decoding and writes nothing on error.
    #[test]
    fn encode_validates() {
        let mut buf = Vec::new();
        let mut bad = RequestHead::connect(Authority::from_static("example.com:443"));
        bad.path = Some(PathAndQuery::from_static("/"));
        assert_eq!(
            bad.encode(&mut buf),
            Err(E::UnexpectedPseudoHeader(":path"))
        );
        let no_port = RequestHead::connect(Authority::from_static("example.com"));
        assert_eq!(
            no_port.encode(&mut buf),
            Err(E::ConnectAuthorityWithoutPort)
        );
        let mut conn = RequestHead::connect(Authority::from_static("example.com:443"));
        conn.headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        assert_eq!(
            conn.encode(&mut buf),
            Err(E::ConnectionSpecificField(header::CONNECTION))
        );
        let mut ws = ResponseHead::new(StatusCode::OK);
        ws.headers
            .insert("x-a", HeaderValue::from_static(" padded"));
        assert_eq!(
            ws.encode(&mut buf),
            Err(E::InvalidFieldValue(HeaderName::from_static("x-a")))
        );
        assert!(buf.is_empty());
    }

    /// Pseudo-headers are emitted first and the N bit maps to sensitivity.
    #[test]
    fn encode_order_and_sensitivity() {
        let mut r = RequestHead::extended_connect(
            Protocol::CONNECT_UDP,
            Scheme::HTTPS,
            Authority::from_static("proxy.example.org"),
            PathAndQuery::from_static("/.well-known/masque/udp/192.0.2.6/443/"),
        );
        let mut secret = HeaderValue::from_static("Bearer x");
        secret.set_sensitive(true);
        r.headers.insert(header::AUTHORIZATION, secret);
        let names: Vec<_> = r.field_lines().map(|l| l.name).collect();
        assert_eq!(
            names[..5],
            [
                &b":method"[..],
                b":scheme",
                b":authority",
                b":path",
                b":protocol"
            ]
        );
        let mut buf = Vec::new();
        r.encode(&mut buf).unwrap();
        let decoded = qpack::decode_field_section(&buf, u64::MAX).unwrap();
        assert!(
            decoded
                .iter()
                .any(|f| f.name == "authorization" && f.never_index)
        );
        let back = RequestHead::from_fields(decoded, true).unwrap();
        assert_eq!(back, r);
        assert!(back.headers[header::AUTHORIZATION].is_sensitive());
    }

    /// More distinct names than a `HeaderMap` holds is an error, not a panic.
    #[test]
    fn too_many_fields() {
        let mut f = fields(GET);
        f.extend((0..40_000).map(|i| HeaderField::new(format!("x-{i}"), "v")));
        assert_eq!(RequestHead::from_fields(f, true), Err(E::TooManyFields));
    }

    fn header_map() -> impl Strategy<Value = HeaderMap> {
        proptest::collection::vec(
            (
                "x-[a-z0-9-]{1,12}",
                "([!-~]([ !-~]{0,20}[!-~])?)?",
                any::<bool>(),
            ),
            0..8,
        )
        .prop_map(|v| {
            let mut h = HeaderMap::new();
            for (n, val, sensitive) in v {
                let mut val = HeaderValue::from_str(&val).unwrap();
                val.set_sensitive(sensitive);
                h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), val);
            }
            h
        })
    }

    fn request_head() -> impl Strategy<Value = RequestHead> {
        let authority = "[a-z]{1,10}\\.example(:[0-9]{1,4})?";
        let path = "/[a-z0-9/._~-]{0,20}(\\?[a-z0-9=&]{0,10})?";
        let ordinary = (
            proptest::sample::select(vec![
                "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "X-CUSTOM",
            ]),
            proptest::sample::select(vec!["https", "http"]),
            authority,
            path,
        )
            .prop_map(|(m, s, a, p)| RequestHead {
                scheme: Some(Scheme::try_from(s).unwrap()),
                authority: Some(a.parse().unwrap()),
                path: Some(p.parse().unwrap()),
                ..RequestHead::new(Method::from_bytes(m.as_bytes()).unwrap())
            });
        let classic = "[a-z]{1,10}\\.example:[1-9][0-9]{0,3}"
            .prop_map(|a| RequestHead::connect(a.parse().unwrap()));
        let extended = ("[a-z][a-z0-9._-]{0,15}", authority, path).prop_map(|(p, a, path)| {
            RequestHead::extended_connect(
                p.parse().unwrap(),
                Scheme::HTTPS,
                a.parse().unwrap(),
                path.parse().unwrap(),
            )
        });
        (prop_oneof![ordinary, classic, extended], header_map()).prop_map(|(mut r, h)| {
            r.headers = h;
            r
        })
    }

    fn sensitivity(h: &HeaderMap) -> Vec<(HeaderName, bool)> {
        h.iter()
            .map(|(n, v)| (n.clone(), v.is_sensitive()))
            .collect()
    }

    proptest! {
        /// RequestHead encode → QPACK decode → from_fields is the identity.
        #[test]
        fn request_round_trip(r in request_head()) {
            let mut buf = Vec::new();
            r.encode(&mut buf).unwrap();
            let decoded = qpack::decode_field_section(&buf, u64::MAX).unwrap();
            let back = RequestHead::from_fields(decoded, true).unwrap();
            prop_assert_eq!(sensitivity(&back.headers), sensitivity(&r.headers));
            prop_assert_eq!(back, r);
        }

        /// ResponseHead encode → QPACK decode → from_fields is the identity.
        #[test]
        fn response_round_trip(status in (100u16..=999).prop_filter("101", |s| *s != 101), h in header_map()) {
            let r = ResponseHead { status: StatusCode::from_u16(status).unwrap(), headers: h };
            let mut buf = Vec::new();
            r.encode(&mut buf).unwrap();
            let decoded = qpack::decode_field_section(&buf, u64::MAX).unwrap();
            let back = ResponseHead::from_fields(decoded).unwrap();
            prop_assert_eq!(back, r);
        }

        /// Arbitrary field lists never panic any of the three builders.
        #[test]
        fn arbitrary_fields_never_panic(
            f in proptest::collection::vec(
                (prop_oneof![Just(":method".to_string()), Just(":path".to_string()), Just(":status".to_string()),
                             Just(":protocol".to_string()), Just(":authority".to_string()), Just(":scheme".to_string()),
                             "[ -~]{0,8}"],
                 proptest::collection::vec(any::<u8>(), 0..12)),
                0..10),
            enable in any::<bool>(),
        ) {
            let f: Vec<HeaderField> = f.into_iter().map(|(n, v)| HeaderField::new(n, v)).collect();
            let _ = RequestHead::from_fields(f.clone(), enable);
            let _ = ResponseHead::from_fields(f.clone());
            let _ = trailers_from_fields(f);
        }
    }
}
