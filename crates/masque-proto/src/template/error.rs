//! Error types of the template module. Every variant names the requirement it enforces so a
//! server can log it; all [`MatchError`]s except [`MatchError::NoMatch`] map to HTTP 400
//! (R9298-25, R9484-14, CTCP-11, BIND-03).

use super::Var;

/// A template string was rejected (R9298-08 / R9484-03: the client MUST NOT send a request
/// built from it). Offsets are byte offsets into the template string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// Longer than [`super::MAX_TEMPLATE_LEN`] (our limit; templates are configuration).
    #[error("template is longer than {} bytes", super::MAX_TEMPLATE_LEN)]
    TooLong,
    /// R9298-06 / R9484-01: every character must be in 0x21-0x7E.
    #[error("character outside 0x21-0x7E at offset {offset} (R9298-06)")]
    InvalidCharacter { offset: usize },
    /// R9298-02: absolute form `scheme://authority/path` required.
    #[error("template is not absolute: `scheme://authority/path` required (R9298-02)")]
    NotAbsolute,
    /// R9298-02: the scheme must be non-empty `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
    #[error("invalid scheme (R9298-02)")]
    InvalidScheme,
    /// R9298-02: the authority must be non-empty.
    #[error("empty authority (R9298-02)")]
    EmptyAuthority,
    /// RFC 3986 §3.2: character not allowed in an authority.
    #[error("invalid authority character at offset {offset}")]
    InvalidAuthority { offset: usize },
    /// R9298-02 / R9298-03: the path must be non-empty and start with `/` (a path-only template
    /// must not start with `//`, which would read as an authority).
    #[error("path must be non-empty and start with a single `/` (offset {offset}; R9298-03)")]
    PathNotAbsolute { offset: usize },
    /// R9298-04: variables only in the path or query.
    #[error("variable outside path and query at offset {offset} (R9298-04)")]
    VariableOutsidePathOrQuery { offset: usize },
    /// R9298-04: no fragment (a `:path` cannot carry one).
    #[error("fragment `#` at offset {offset} (R9298-04)")]
    Fragment { offset: usize },
    /// RFC 6570 §2.1: character not allowed in a template literal (`"'<>\^`|`).
    #[error("invalid literal character at offset {offset} (RFC 6570 §2.1)")]
    InvalidLiteral { offset: usize },
    /// `%` not followed by two hex digits.
    #[error("malformed percent-encoding at offset {offset}")]
    InvalidPercentEncoding { offset: usize },
    /// `{` without a matching `}`.
    #[error("unclosed expression starting at offset {offset}")]
    UnclosedExpression { offset: usize },
    /// `}` outside an expression.
    #[error("unmatched `}}` at offset {offset}")]
    UnmatchedCloseBrace { offset: usize },
    /// `{}`.
    #[error("empty expression at offset {offset}")]
    EmptyExpression { offset: usize },
    /// R9298-07 / R9484-01: operators `+ # . / ;` are forbidden.
    #[error("operator `{op}` at offset {offset} is forbidden (R9298-07)")]
    ForbiddenOperator { offset: usize, op: char },
    /// RFC 6570 §2.2: operators `= , ! @ |` are reserved for future extensions.
    #[error("reserved operator `{op}` at offset {offset} (RFC 6570 §2.2)")]
    ReservedOperator { offset: usize, op: char },
    /// R9298-01: prefix (`:n`) and explode (`*`) modifiers are level 4.
    #[error("level-4 modifier at offset {offset} (R9298-01)")]
    Level4Modifier { offset: usize },
    /// RFC 6570 §2.3: malformed variable name (empty, bad character, misplaced `.`).
    #[error("invalid variable name at offset {offset}")]
    InvalidVariableName { offset: usize },
    /// A well-formed variable that this protocol does not define. Our choice: R9298-05 lets a
    /// template carry other variables, but neither our client (no value to give) nor our
    /// server (nothing to check) can use them, so they are refused up front.
    #[error("unknown variable at offset {offset}")]
    UnknownVariable { offset: usize },
    /// The same variable twice (our choice: the two values could disagree).
    #[error("duplicate variable at offset {offset}")]
    DuplicateVariable { offset: usize },
    /// R9298-05 / CTCP-01: `target_host` and `target_port` are required for UDP and TCP.
    #[error("required variable `{0}` is missing (R9298-05)")]
    MissingVariable(Var),
    /// Our choice: an expression must be followed by the end, a `{?…}`/`{&…}` expression or a
    /// literal starting with a delimiter that simple expansion always percent-encodes (such as
    /// `/`, `?`, `&`, `,`, `=`); otherwise a request path cannot be split back unambiguously.
    #[error("expression boundary at offset {offset} is ambiguous")]
    AmbiguousExpression { offset: usize },
}

/// A request `:path` was not accepted by [`super::UdpTemplate::match_path`] and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MatchError {
    /// The fixed leading literal of the template differs: the request is for another resource
    /// (try the next template; 404 if none matches).
    #[error("request path is not an expansion of this template")]
    NoMatch,
    /// The leading literal matched but the rest of the path does not fit the template
    /// (wrong separators, unencoded reserved characters, trailing bytes) (R9298-25).
    #[error("request path does not fit the template at byte {offset}")]
    Malformed { offset: usize },
    /// R9298-10 / R9484-02: a variable value is empty.
    #[error("`{0}` is empty (R9298-10)")]
    Empty(Var),
    /// R9298-14: `%` not followed by two hex digits.
    #[error("malformed percent-encoding in `{0}` (R9298-14)")]
    PercentEncoding(Var),
    /// The decoded value exceeds the longest valid value (253 bytes).
    #[error("`{0}` is too long")]
    TooLong(Var),
    /// `*` where the protocol allows no wildcard (connect-tcp, BIND-01 for plain UDP values).
    #[error("wildcard `*` is not allowed for `{0}`")]
    WildcardNotAllowed(Var),
    /// BIND-03: exactly one of `target_host` / `target_port` is `*`.
    #[error("exactly one of target_host and target_port is `*` (BIND-03)")]
    PartialWildcard,
    /// Invalid host (R9298-11, R9484-04/05, hostname rules).
    #[error("invalid host: {0}")]
    Host(#[from] HostError),
    /// Invalid port (R9298-12).
    #[error("invalid target_port: {0}")]
    Port(#[from] PortError),
    /// Invalid connect-ip prefix (R9484-04/06/07).
    #[error("invalid target prefix: {0}")]
    Prefix(#[from] PrefixError),
    /// Invalid `ipproto` (R9484-08).
    #[error("invalid ipproto: {0}")]
    IpProto(#[from] IpProtoError),
}

impl MatchError {
    /// Status code a server answers with: 404 for [`MatchError::NoMatch`] (not this
    /// resource), 400 for everything else (R9298-25, R9484-14, CTCP-11, BIND-03).
    pub const fn http_status(&self) -> u16 {
        match self {
            Self::NoMatch => 404,
            _ => 400,
        }
    }
}

/// A host value (`target_host`, or the address/name part of `target`) is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// Empty host.
    #[error("empty host")]
    Empty,
    /// R9298-11 / R9484-05: IPv6 zone identifiers (`%25eth0`) are not supported.
    #[error("IPv6 zone identifiers are not supported (R9298-11)")]
    ZoneId,
    /// Contains `:` but is not an `IPv6address` (brackets are not allowed either, R9298-11).
    #[error("invalid IPv6 address")]
    InvalidIpv6,
    /// Only digits and dots but not a dotted-quad `IPv4address` (no leading zeros).
    #[error("invalid IPv4 address")]
    InvalidIpv4,
    /// Hostname longer than 253 bytes (RFC 1035 §2.3.4).
    #[error("hostname longer than 253 bytes")]
    TooLong,
    /// Empty label (`a..b`, leading or trailing dot).
    #[error("empty hostname label")]
    EmptyLabel,
    /// Label longer than 63 bytes (RFC 1035 §2.3.4).
    #[error("hostname label longer than 63 bytes")]
    LabelTooLong,
    /// Character other than ASCII letter, digit, `-` or `_` (our choice, RFC 1123 §2.1 plus `_`).
    #[error("invalid hostname character")]
    InvalidChar,
    /// Label starts or ends with `-` (RFC 1123 §2.1).
    #[error("hostname label starts or ends with `-`")]
    HyphenAtLabelEdge,
    /// The last label is all digits or `0x` + hex: resolvers may read such a name as a
    /// numeric IPv4 address (`inet_aton`), bypassing address checks (our choice, as the
    /// WHATWG URL host parser).
    #[error("hostname ends in a numeric label")]
    NumericFinalLabel,
}

/// R9298-12: `target_port` must be a decimal integer 1-65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    /// Something other than ASCII digits (sign, space, hex, ...).
    #[error("port is not a decimal number")]
    NotDecimal,
    /// Leading zero (`0443`); our choice: only the canonical form is accepted.
    #[error("port has a leading zero")]
    LeadingZero,
    /// Port 0.
    #[error("port 0 is not allowed")]
    Zero,
    /// Above 65535.
    #[error("port is above 65535")]
    OutOfRange,
}

/// R9484-04/06/07: invalid `IPv4prefix` / `IPv6prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrefixError {
    /// R9484-04: a prefix length follows only an IP address (not a name or `*`).
    #[error("a prefix length needs an IP address (R9484-04)")]
    NotAnAddress,
    /// R9484-04: the length is `1*2DIGIT` (IPv4) / `1*3DIGIT` (IPv6).
    #[error("prefix length is not 1-2 (IPv4) / 1-3 (IPv6) decimal digits (R9484-04)")]
    LengthSyntax,
    /// R9484-06: 0-32 (IPv4) / 0-128 (IPv6).
    #[error("prefix length out of range (R9484-06)")]
    LengthOutOfRange,
    /// R9484-07: bits after the prefix length must be zero.
    #[error("address has bits set beyond the prefix length (R9484-07)")]
    HostBitsSet,
}

/// R9484-04 / R9484-08: `ipproto` must be `1*3DIGIT` with value 0-255, or `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IpProtoError {
    /// Not 1-3 decimal digits (R9484-04).
    #[error("ipproto is not 1-3 decimal digits or `*` (R9484-04)")]
    NotDecimal,
    /// Above 255 (R9484-08).
    #[error("ipproto is above 255 (R9484-08)")]
    OutOfRange,
}

/// A connect-ip target cannot be expressed with this template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExpandError {
    /// R9484-02: the template lacks the variable, so the request means `*`; a narrower scope
    /// cannot be requested with it.
    #[error("template has no `{0}` variable, so only `*` can be requested (R9484-02)")]
    ScopeNotExpressible(Var),
}
