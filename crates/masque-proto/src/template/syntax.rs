//! Template parsing (RFC 6570 level-3 subset, R9298-01..08, R9484-01..03, CTCP-01), expansion
//! into a `:path` (R9298-13, R9484-12, CTCP-02) and the allocation-free positional matcher that
//! splits a request `:path` back into raw variable values (R9298-14, R9484-14).
//!
//! A template is parsed once into [`Piece`]s: literal runs (byte ranges into the source),
//! form-style keys (`?name=` / `&name=`) and variable values. Matching walks the pieces over
//! the request path once; a value runs until the first byte that simple expansion never
//! emits unencoded, which the parser guarantees is where the next piece starts.

use core::fmt;
use core::ops::Range;

use super::error::{MatchError, TemplateError};
use super::target::is_unreserved;
use super::{Protocol, Var};

/// Longest template accepted (our limit).
pub const MAX_TEMPLATE_LEN: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Piece {
    /// `source[start..end]`, copied verbatim (includes the `,` between simple-expression
    /// variables, which sits in the source too).
    Lit { start: usize, end: usize },
    /// Form-style key from `{?…}` / `{&…}`: `lead` (`?` or `&`), the name, `=`.
    Key { lead: u8, var: Var },
    /// The percent-encoded value of a variable.
    Value(Var),
}

/// Raw (still percent-encoded) values captured from a request path, indexed by [`Var`].
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Captures<'p>([Option<&'p str>; Var::COUNT]);

impl<'p> Captures<'p> {
    pub(super) fn get(&self, var: Var) -> Option<&'p str> {
        self.0.get(var.index()).copied().flatten()
    }
}

/// A parsed template for one protocol. Use the typed wrappers
/// ([`super::UdpTemplate`], [`super::IpTemplate`], [`super::TcpTemplate`]) to expand and match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: Box<str>,
    protocol: Protocol,
    scheme: Option<Range<usize>>,
    authority: Option<Range<usize>>,
    pieces: Box<[Piece]>,
    present: [bool; Var::COUNT],
}

/// RFC 6570 §2.1 `literals` restricted to ASCII (R9298-06), without `%` (checked separately).
const fn is_literal(c: u8) -> bool {
    matches!(c, 0x21 | 0x23..=0x24 | 0x26 | 0x28..=0x3B | 0x3D | 0x3F..=0x5B | 0x5D | 0x5F | 0x61..=0x7A | 0x7E)
}

/// Bytes a request value may contain: `unreserved`, `pct-encoded`, and a literal `*`
/// (R9484 §4.6 examples, README vector 17: `*` and `%2A` are both accepted).
const fn is_value_byte(c: u8) -> bool {
    is_unreserved(c) || c == b'%' || c == b'*'
}

/// Literal first bytes that can follow a value without ambiguity: reserved characters that
/// simple expansion always encodes (`*` excluded since we accept it inside values).
const fn is_delimiter(c: u8) -> bool {
    matches!(
        c,
        b':' | b'/'
            | b'?'
            | b'['
            | b']'
            | b'@'
            | b'!'
            | b'$'
            | b'&'
            | b'('
            | b')'
            | b'+'
            | b','
            | b';'
            | b'='
    )
}

pub(crate) const fn is_scheme_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')
}

/// RFC 3986 §3.2 authority characters (userinfo, host incl. IP-literal, port).
pub(crate) const fn is_authority_byte(c: u8) -> bool {
    is_unreserved(c)
        || matches!(
            c,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
        )
        || matches!(c, b':' | b'@' | b'[' | b']' | b'%')
}

fn pct_ok(b: &[u8], at: usize) -> bool {
    matches!(b.get(at + 1..at + 3), Some([h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit())
}

impl Template {
    /// Parses an absolute template `scheme://authority/path[?query]` (R9298-02: the form a
    /// client is configured with) and validates it for `protocol`.
    pub fn parse(protocol: Protocol, template: &str) -> Result<Self, TemplateError> {
        Self::parse_inner(protocol, template, true)
    }

    /// Parses a path-only template `/path[?query]` (e.g. a proxy's route configuration, where
    /// the authority is the proxy's own). All other rules are those of [`Template::parse`].
    pub fn parse_path(protocol: Protocol, template: &str) -> Result<Self, TemplateError> {
        Self::parse_inner(protocol, template, false)
    }

    fn parse_inner(protocol: Protocol, src: &str, absolute: bool) -> Result<Self, TemplateError> {
        let b = src.as_bytes();
        if b.len() > MAX_TEMPLATE_LEN {
            return Err(TemplateError::TooLong);
        }
        // R9298-06: ASCII 0x21-0x7E only.
        if let Some(offset) = b.iter().position(|c| !(0x21..=0x7e).contains(c)) {
            return Err(TemplateError::InvalidCharacter { offset });
        }
        let (scheme, authority, path_start) = if absolute {
            let (s, a) = split_origin(b)?;
            let start = a.end;
            (Some(s), Some(a), start)
        } else {
            (None, None, 0)
        };
        // R9298-02/03: non-empty path starting with `/`; a path-only template must not start
        // with `//` (it would parse as an authority).
        if b.get(path_start) != Some(&b'/') || (!absolute && b.get(1) == Some(&b'/')) {
            return Err(TemplateError::PathNotAbsolute { offset: path_start });
        }
        let mut p = PieceBuilder {
            b,
            protocol,
            pieces: Vec::new(),
            present: [false; Var::COUNT],
        };
        p.parse_path_and_query(path_start)?;
        // R9298-05 / CTCP-01: required variables.
        if let Some(&missing) = protocol.required().iter().find(|v| !p.present[v.index()]) {
            return Err(TemplateError::MissingVariable(missing));
        }
        Ok(Self {
            source: src.into(),
            protocol,
            scheme,
            authority,
            pieces: p.pieces.into_boxed_slice(),
            present: p.present,
        })
    }

    /// The default template path for `protocol` (R9298-09, R9484-03, connect-tcp §1), built
    /// without parsing; a test checks it equals the parsed constant.
    pub(super) fn well_known(protocol: Protocol, authority: Option<&str>) -> Self {
        let path = protocol.default_path();
        let [a, b] = protocol.default_vars();
        let (source, base, scheme, auth) = match authority {
            Some(auth) => {
                let s = format!("https://{auth}{path}");
                let base = "https://".len() + auth.len();
                (s, base, Some(0..5), Some(8..base))
            }
            None => (path.to_owned(), 0, None, None),
        };
        // path = prefix "{a}/{b}/"
        let lit0 = base + path.len() - (a.name().len() + b.name().len() + 6);
        let slash = lit0 + a.name().len() + 2;
        let end = source.len();
        let pieces = [
            Piece::Lit {
                start: base,
                end: lit0,
            },
            Piece::Value(a),
            Piece::Lit {
                start: slash,
                end: slash + 1,
            },
            Piece::Value(b),
            Piece::Lit {
                start: end - 1,
                end,
            },
        ];
        let mut present = [false; Var::COUNT];
        present[a.index()] = true;
        present[b.index()] = true;
        Self {
            source: source.into(),
            protocol,
            scheme,
            authority: auth,
            pieces: pieces.into(),
            present,
        }
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// `:scheme` for requests (absolute templates only, R9298-29).
    pub fn scheme(&self) -> Option<&str> {
        self.scheme.clone().and_then(|r| self.source.get(r))
    }

    /// `:authority` / `Host` for requests (absolute templates only, R9298-24/29).
    pub fn authority(&self) -> Option<&str> {
        self.authority.clone().and_then(|r| self.source.get(r))
    }

    /// Whether the template contains `var`.
    pub fn has_variable(&self, var: Var) -> bool {
        self.present.get(var.index()).copied().unwrap_or(false)
    }

    /// Appends the expansion (path and query) to `out`; `value` appends one encoded value.
    pub(super) fn expand_with(&self, out: &mut String, mut value: impl FnMut(Var, &mut String)) {
        for piece in &*self.pieces {
            match *piece {
                Piece::Lit { start, end } => {
                    out.push_str(self.source.get(start..end).unwrap_or_default())
                }
                Piece::Key { lead, var } => {
                    out.push(char::from(lead));
                    out.push_str(var.name());
                    out.push('=');
                }
                Piece::Value(var) => value(var, out),
            }
        }
    }

    /// Splits `path` (`:path`, path and query) into raw values. Allocation-free.
    pub(super) fn captures<'p>(&self, path: &'p str) -> Result<Captures<'p>, MatchError> {
        let b = path.as_bytes();
        let src = self.source.as_bytes();
        let mut caps = Captures::default();
        let mut pos = 0;
        for (i, piece) in self.pieces.iter().enumerate() {
            let rest = b.get(pos..).unwrap_or_default();
            let mismatch = || {
                if i == 0 {
                    MatchError::NoMatch
                } else {
                    MatchError::Malformed { offset: pos }
                }
            };
            match *piece {
                Piece::Lit { start, end } => {
                    let lit = src.get(start..end).unwrap_or_default();
                    if !literal_matches(lit, rest) {
                        return Err(mismatch());
                    }
                    pos += lit.len();
                }
                Piece::Key { lead, var } => {
                    let name = var.name().as_bytes();
                    let ok = rest.first() == Some(&lead)
                        && rest.get(1..1 + name.len()) == Some(name)
                        && rest.get(1 + name.len()) == Some(&b'=');
                    if !ok {
                        return Err(mismatch());
                    }
                    pos += name.len() + 2;
                }
                Piece::Value(var) => {
                    let n = rest.iter().take_while(|&&c| is_value_byte(c)).count();
                    let raw = path
                        .get(pos..pos + n)
                        .ok_or(MatchError::Malformed { offset: pos })?;
                    if let Some(slot) = caps.0.get_mut(var.index()) {
                        *slot = Some(raw);
                    }
                    pos += n;
                }
            }
        }
        if pos != b.len() {
            return Err(if self.pieces.len() <= 1 {
                MatchError::NoMatch
            } else {
                MatchError::Malformed { offset: pos }
            });
        }
        Ok(caps)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Literal comparison: exact, except the hex digits of `%XX` triplets compare
/// case-insensitively (RFC 3986 §6.2.2.1).
fn literal_matches(lit: &[u8], rest: &[u8]) -> bool {
    let Some(cand) = rest.get(..lit.len()) else {
        return false;
    };
    let mut hex_left = 0u8;
    lit.iter().zip(cand).all(|(&l, &r)| {
        if hex_left > 0 {
            hex_left -= 1;
            l.eq_ignore_ascii_case(&r)
        } else {
            if l == b'%' {
                hex_left = 2;
            }
            l == r
        }
    })
}

/// Splits `scheme "://" authority` (R9298-02/04); returns the scheme and authority ranges.
fn split_origin(b: &[u8]) -> Result<(Range<usize>, Range<usize>), TemplateError> {
    let scheme_end = b
        .iter()
        .position(|&c| !is_scheme_byte(c))
        .unwrap_or(b.len());
    match b.get(scheme_end) {
        Some(b'{' | b'}') => {
            return Err(TemplateError::VariableOutsidePathOrQuery { offset: scheme_end });
        }
        Some(b':') if b.get(scheme_end + 1..scheme_end + 3) == Some(b"//") => {}
        _ => return Err(TemplateError::NotAbsolute),
    }
    if !b.first().is_some_and(u8::is_ascii_alphabetic) {
        return Err(TemplateError::InvalidScheme);
    }
    let auth_start = scheme_end + 3;
    let auth_len = b
        .get(auth_start..)
        .unwrap_or_default()
        .iter()
        .position(|&c| matches!(c, b'/' | b'?' | b'#'))
        .unwrap_or(b.len() - auth_start);
    let auth = auth_start..auth_start + auth_len;
    if auth.is_empty() {
        return Err(TemplateError::EmptyAuthority);
    }
    for i in auth.clone() {
        let c = b.get(i).copied().unwrap_or_default();
        if c == b'{' || c == b'}' {
            return Err(TemplateError::VariableOutsidePathOrQuery { offset: i });
        }
        if !is_authority_byte(c) || (c == b'%' && !pct_ok(b, i)) {
            return Err(TemplateError::InvalidAuthority { offset: i });
        }
    }
    Ok((0..scheme_end, auth))
}

struct PieceBuilder<'a> {
    b: &'a [u8],
    protocol: Protocol,
    pieces: Vec<Piece>,
    present: [bool; Var::COUNT],
}

impl PieceBuilder<'_> {
    fn last_is_value(&self) -> bool {
        matches!(self.pieces.last(), Some(Piece::Value(_)))
    }

    fn push_lit(&mut self, start: usize, end: usize) {
        if let Some(Piece::Lit { end: e, .. }) = self.pieces.last_mut()
            && *e == start
        {
            *e = end;
            return;
        }
        self.pieces.push(Piece::Lit { start, end });
    }

    fn parse_path_and_query(&mut self, mut i: usize) -> Result<(), TemplateError> {
        let b = self.b;
        while let Some(&c) = b.get(i) {
            let width = match c {
                b'{' => {
                    let close = b
                        .get(i..)
                        .unwrap_or_default()
                        .iter()
                        .position(|&c| c == b'}')
                        .ok_or(TemplateError::UnclosedExpression { offset: i })?;
                    self.expression(i, i + close)?;
                    i += close + 1;
                    continue;
                }
                b'}' => return Err(TemplateError::UnmatchedCloseBrace { offset: i }),
                b'#' => return Err(TemplateError::Fragment { offset: i }),
                b'%' if pct_ok(b, i) => 3,
                b'%' => return Err(TemplateError::InvalidPercentEncoding { offset: i }),
                c if is_literal(c) => 1,
                _ => return Err(TemplateError::InvalidLiteral { offset: i }),
            };
            // Our ambiguity rule: a literal right after a value starts with a delimiter.
            if self.last_is_value() && !is_delimiter(c) {
                return Err(TemplateError::AmbiguousExpression { offset: i });
            }
            self.push_lit(i, i + width);
            i += width;
        }
        Ok(())
    }

    /// Parses `{…}` spanning `open..=close`.
    fn expression(&mut self, open: usize, close: usize) -> Result<(), TemplateError> {
        let body = self.b.get(open + 1..close).unwrap_or_default();
        let Some(&first) = body.first() else {
            return Err(TemplateError::EmptyExpression { offset: open });
        };
        let op_offset = open + 1;
        let lead = match first {
            b'?' | b'&' => Some(first),
            // R9298-07: level-2/3 operators MASQUE forbids.
            b'+' | b'#' | b'.' | b'/' | b';' => {
                return Err(TemplateError::ForbiddenOperator {
                    offset: op_offset,
                    op: char::from(first),
                });
            }
            // RFC 6570 §2.2: reserved for future extension.
            b'=' | b',' | b'!' | b'@' | b'|' => {
                return Err(TemplateError::ReservedOperator {
                    offset: op_offset,
                    op: char::from(first),
                });
            }
            _ => None,
        };
        if lead.is_none() && self.last_is_value() {
            return Err(TemplateError::AmbiguousExpression { offset: open });
        }
        let mut start = op_offset + usize::from(lead.is_some());
        for (k, spec) in self
            .b
            .get(start..close)
            .unwrap_or_default()
            .split(|&c| c == b',')
            .enumerate()
        {
            let var = self.varspec(spec, start)?;
            match lead {
                None if k > 0 => self.push_lit(start - 1, start),
                None => {}
                Some(l) => self.pieces.push(Piece::Key {
                    lead: if k == 0 { l } else { b'&' },
                    var,
                }),
            }
            self.pieces.push(Piece::Value(var));
            start += spec.len() + 1;
        }
        Ok(())
    }

    /// One `varspec` at `offset`: RFC 6570 §2.3 name, no level-4 modifier, known, unique.
    fn varspec(&mut self, spec: &[u8], offset: usize) -> Result<Var, TemplateError> {
        if let Some(m) = spec.iter().position(|&c| c == b':' || c == b'*') {
            return Err(TemplateError::Level4Modifier { offset: offset + m });
        }
        if !valid_varname(spec) {
            return Err(TemplateError::InvalidVariableName { offset });
        }
        let var = self
            .protocol
            .variable(spec)
            .ok_or(TemplateError::UnknownVariable { offset })?;
        let seen = self
            .present
            .get_mut(var.index())
            .ok_or(TemplateError::UnknownVariable { offset })?;
        if *seen {
            return Err(TemplateError::DuplicateVariable { offset });
        }
        *seen = true;
        Ok(var)
    }
}

/// RFC 6570 §2.3: `varname = varchar *( ["."] varchar )`, `varchar = ALPHA / DIGIT / "_" /
/// pct-encoded`.
fn valid_varname(name: &[u8]) -> bool {
    let mut i = 0;
    let mut prev_dot = true; // no leading dot
    while let Some(&c) = name.get(i) {
        match c {
            b'.' if !prev_dot => {
                prev_dot = true;
                i += 1;
                continue;
            }
            b'%' if pct_ok(name, i) => i += 3,
            c if c.is_ascii_alphanumeric() || c == b'_' => i += 1,
            _ => return false,
        }
        prev_dot = false;
    }
    !prev_dot
}

#[cfg(test)]
mod tests {
    use super::*;
    use TemplateError as E;

    const UDP: Protocol = Protocol::ConnectUdp;
    const IP: Protocol = Protocol::ConnectIp;
    const TCP: Protocol = Protocol::ConnectTcp;
    const GOOD: &str = "https://example.org/.well-known/masque/udp/{target_host}/{target_port}/";

    fn udp(s: &str) -> Result<Template, TemplateError> {
        Template::parse(UDP, s)
    }

    #[test]
    fn r9298_02_valid_templates_from_the_rfc() {
        for t in [
            GOOD,
            "https://proxy.example.org:4443/masque?h={target_host}&p={target_port}",
            "https://proxy.example.org:4443/masque{?target_host,target_port}",
            "https://[2001:db8::1]:443/u/{target_host,target_port}/",
            "https://u%40x@proxy.example/x{?target_host}{&target_port}",
        ] {
            let tpl = udp(t).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!(tpl.as_str(), t);
        }
        let t = udp("https://proxy.example.org:4443/masque{?target_host,target_port}").unwrap();
        assert_eq!(t.scheme(), Some("https"));
        assert_eq!(t.authority(), Some("proxy.example.org:4443"));
    }

    #[test]
    fn r9298_02_absolute_form_required() {
        assert_eq!(
            udp("/.well-known/masque/udp/{target_host}/{target_port}/").unwrap_err(),
            E::NotAbsolute
        );
        assert_eq!(
            udp("example.org/{target_host}/{target_port}").unwrap_err(),
            E::NotAbsolute
        );
        assert_eq!(
            udp("https:/x/{target_host}/{target_port}").unwrap_err(),
            E::NotAbsolute
        );
        assert_eq!(udp("").unwrap_err(), E::NotAbsolute);
        assert_eq!(
            udp("://h/{target_host}/{target_port}").unwrap_err(),
            E::InvalidScheme
        );
        assert_eq!(
            udp("1https://h/{target_host}/{target_port}").unwrap_err(),
            E::InvalidScheme
        );
        assert_eq!(
            udp("https:///{target_host}/{target_port}").unwrap_err(),
            E::EmptyAuthority
        );
        assert_eq!(
            udp("https://h^/{target_host}/{target_port}").unwrap_err(),
            E::InvalidAuthority { offset: 9 }
        );
        assert_eq!(
            udp("https://h%4/{target_host}/{target_port}").unwrap_err(),
            E::InvalidAuthority { offset: 9 }
        );
    }

    #[test]
    fn r9298_03_path_must_start_with_slash() {
        assert_eq!(
            udp("https://h").unwrap_err(),
            E::PathNotAbsolute { offset: 9 }
        );
        assert_eq!(
            udp("https://h?{target_host}{target_port}").unwrap_err(),
            E::PathNotAbsolute { offset: 9 }
        );
        let p = Template::parse_path(UDP, "x/{target_host}/{target_port}");
        assert_eq!(p.unwrap_err(), E::PathNotAbsolute { offset: 0 });
        let p = Template::parse_path(UDP, "//h/{target_host}/{target_port}");
        assert_eq!(p.unwrap_err(), E::PathNotAbsolute { offset: 0 });
        assert_eq!(
            Template::parse_path(UDP, "").unwrap_err(),
            E::PathNotAbsolute { offset: 0 }
        );
    }

    #[test]
    fn r9298_04_variables_only_in_path_or_query() {
        let e = udp("https://{target_host}/{target_port}").unwrap_err();
        assert_eq!(e, E::VariableOutsidePathOrQuery { offset: 8 });
        let e = udp("https://h:{target_port}/{target_host}").unwrap_err();
        assert_eq!(e, E::VariableOutsidePathOrQuery { offset: 10 });
        let e = udp("{s}://h/{target_host}/{target_port}").unwrap_err();
        assert_eq!(e, E::VariableOutsidePathOrQuery { offset: 0 });
        let e = udp("https://h{?target_host,target_port}").unwrap_err();
        assert_eq!(e, E::VariableOutsidePathOrQuery { offset: 9 });
        let e = udp("https://h/{target_host}/{target_port}/#{x}").unwrap_err();
        assert_eq!(e, E::Fragment { offset: 38 });
        let e = udp("https://h/{target_host}/{target_port}/#frag").unwrap_err();
        assert_eq!(e, E::Fragment { offset: 38 });
    }

    #[test]
    fn r9298_05_required_variables_and_ctcp_01() {
        for p in [UDP, TCP] {
            let e = Template::parse(p, "https://h/{target_host}/").unwrap_err();
            assert_eq!(e, E::MissingVariable(Var::TargetPort));
            let e = Template::parse(p, "https://h/x?p={target_port}").unwrap_err();
            assert_eq!(e, E::MissingVariable(Var::TargetHost));
            let e = Template::parse(p, "https://h/").unwrap_err();
            assert_eq!(e, E::MissingVariable(Var::TargetHost));
        }
        // Variables of another protocol, unknown variables (our choice), duplicates.
        let e = udp("https://h/{target}/{target_host}/{target_port}").unwrap_err();
        assert_eq!(e, E::UnknownVariable { offset: 11 });
        let e = udp("https://h/{target_host}/{target_port}/{user}").unwrap_err();
        assert_eq!(e, E::UnknownVariable { offset: 39 });
        let e = udp("https://h/{Target_Host}/{target_port}").unwrap_err();
        assert_eq!(e, E::UnknownVariable { offset: 11 });
        let e = udp("https://h/{target_host}/{target_port}/{target_host}").unwrap_err();
        assert_eq!(e, E::DuplicateVariable { offset: 39 });
        let e = Template::parse(IP, "https://h/{target_host}/").unwrap_err();
        assert_eq!(e, E::UnknownVariable { offset: 11 });
    }

    #[test]
    fn r9298_06_ascii_visible_only() {
        assert_eq!(
            udp("https://h/ {target_host}/{target_port}").unwrap_err(),
            E::InvalidCharacter { offset: 10 }
        );
        assert_eq!(
            udp("https://h/\u{e9}/{target_host}/{target_port}").unwrap_err(),
            E::InvalidCharacter { offset: 10 }
        );
        assert_eq!(
            udp("https://h/\x7f/{target_host}/{target_port}").unwrap_err(),
            E::InvalidCharacter { offset: 10 }
        );
        assert_eq!(
            udp("https://h/\t/{target_host}/{target_port}").unwrap_err(),
            E::InvalidCharacter { offset: 10 }
        );
        // Visible ASCII that RFC 6570 does not allow in literals.
        for (i, c) in ["\"", "'", "<", ">", "\\", "^", "`", "|"]
            .into_iter()
            .enumerate()
        {
            let e = udp(&format!("https://h/{c}/{{target_host}}/{{target_port}}")).unwrap_err();
            assert_eq!(e, E::InvalidLiteral { offset: 10 }, "{i}");
        }
        // Percent-encoding is allowed, but must be well-formed.
        assert!(udp("https://h/%7Eme/{target_host}/{target_port}").is_ok());
        assert_eq!(
            udp("https://h/%7/{target_host}/{target_port}").unwrap_err(),
            E::InvalidPercentEncoding { offset: 10 }
        );
        assert_eq!(
            udp("https://h/{target_host}/{target_port}%").unwrap_err(),
            E::InvalidPercentEncoding { offset: 37 }
        );
    }

    #[test]
    fn r9298_07_forbidden_and_reserved_operators() {
        for op in ['+', '#', '.', '/', ';'] {
            let e = udp(&format!("https://h/x{{{op}target_host}}/{{target_port}}")).unwrap_err();
            assert_eq!(e, E::ForbiddenOperator { offset: 12, op }, "{op}");
            let e = Template::parse(IP, &format!("https://h/{{{op}target}}")).unwrap_err();
            assert_eq!(e, E::ForbiddenOperator { offset: 11, op }, "R9484-01 {op}");
        }
        for op in ['=', ',', '!', '@', '|'] {
            let e = udp(&format!("https://h/x{{{op}target_host}}/{{target_port}}")).unwrap_err();
            assert_eq!(e, E::ReservedOperator { offset: 12, op }, "{op}");
        }
        assert!(udp("https://h/x{?target_host}{&target_port}").is_ok());
    }

    #[test]
    fn r9298_01_level4_modifiers_rejected() {
        let e = udp("https://h/{target_host:3}/{target_port}").unwrap_err();
        assert_eq!(e, E::Level4Modifier { offset: 22 });
        let e = udp("https://h/{target_host*}/{target_port}").unwrap_err();
        assert_eq!(e, E::Level4Modifier { offset: 22 });
        let e = udp("https://h/x{?target_host,target_port*}").unwrap_err();
        assert_eq!(e, E::Level4Modifier { offset: 36 });
    }

    #[test]
    fn malformed_braces_and_names() {
        assert_eq!(
            udp("https://h/{target_host/{target_port}").unwrap_err(),
            E::InvalidVariableName { offset: 11 }
        );
        assert_eq!(
            udp("https://h/{target_host}/{target_port").unwrap_err(),
            E::UnclosedExpression { offset: 24 }
        );
        assert_eq!(
            udp("https://h/target_host}/{target_port}").unwrap_err(),
            E::UnmatchedCloseBrace { offset: 21 }
        );
        assert_eq!(
            udp("https://h/{{target_host}}/{target_port}").unwrap_err(),
            E::InvalidVariableName { offset: 11 }
        );
        assert_eq!(
            udp("https://h/{}/{target_host}/{target_port}").unwrap_err(),
            E::EmptyExpression { offset: 10 }
        );
        assert_eq!(
            udp("https://h/{?}/{target_host}/{target_port}").unwrap_err(),
            E::InvalidVariableName { offset: 12 }
        );
        for bad in [
            "{target_host,}",
            "{,target_host}",
            "{.target_host}",
            "{target_host.}",
            "{a..b}",
            "{a-b}",
            "{%zz}",
        ] {
            let e = udp(&format!("https://h/x/{bad}/{{target_port}}")).unwrap_err();
            assert!(
                matches!(
                    e,
                    E::InvalidVariableName { .. }
                        | E::ReservedOperator { .. }
                        | E::ForbiddenOperator { .. }
                ),
                "{bad}: {e:?}"
            );
        }
        // Well-formed but unknown names (dots and pct-encoding are legal RFC 6570 names).
        for unknown in ["{a.b}", "{a%41}", "{_}"] {
            let e = udp(&format!(
                "https://h/x/{unknown}/{{target_host}}/{{target_port}}"
            ))
            .unwrap_err();
            assert_eq!(e, E::UnknownVariable { offset: 13 }, "{unknown}");
        }
        assert_eq!(
            Template::parse(UDP, &"a".repeat(MAX_TEMPLATE_LEN + 1)).unwrap_err(),
            E::TooLong
        );
    }

    #[test]
    fn ambiguous_expression_boundaries_rejected() {
        let e = udp("https://h/{target_host}{target_port}").unwrap_err();
        assert_eq!(e, E::AmbiguousExpression { offset: 23 });
        let e = udp("https://h/{target_host}.x/{target_port}").unwrap_err();
        assert_eq!(e, E::AmbiguousExpression { offset: 23 });
        let e = udp("https://h/{target_host}%2F{target_port}").unwrap_err();
        assert_eq!(e, E::AmbiguousExpression { offset: 23 });
        let e = udp("https://h/{target_host}*{target_port}").unwrap_err();
        assert_eq!(e, E::AmbiguousExpression { offset: 23 });
        // Delimiters and form-style continuations are fine.
        for ok in [
            "{target_host}:{target_port}",
            "{target_host}={target_port}",
            "{target_host}{?target_port}",
        ] {
            assert!(udp(&format!("https://h/{ok}")).is_ok(), "{ok}");
        }
    }

    #[test]
    fn r9484_02_ip_variables_optional() {
        for t in [
            "https://masque.example.org/?user=bob",
            "https://h/.well-known/masque/ip/{target}/{ipproto}/",
            "https://h/masque/ip?t={target}&i={ipproto}",
            "https://h/masque/ip{?target,ipproto}",
            "https://h/masque/ip{?ipproto}",
        ] {
            assert!(Template::parse(IP, t).is_ok(), "{t}");
        }
        let t = Template::parse(IP, "https://masque.example.org/?user=bob").unwrap();
        assert!(!t.has_variable(Var::Target) && !t.has_variable(Var::Ipproto));
    }

    #[test]
    fn r9298_09_well_known_equals_parsed_default() {
        for p in [UDP, IP, TCP] {
            assert_eq!(
                Template::well_known(p, None),
                Template::parse_path(p, p.default_path()).unwrap()
            );
            let abs = format!("https://proxy.example:4443{}", p.default_path());
            assert_eq!(
                Template::well_known(p, Some("proxy.example:4443")),
                Template::parse(p, &abs).unwrap()
            );
        }
    }

    #[test]
    fn literal_hex_case_insensitive_only_in_triplets() {
        assert!(literal_matches(b"/a%2Fb", b"/a%2fb/rest"));
        assert!(!literal_matches(b"/A%2Fb", b"/a%2Fb"));
        assert!(!literal_matches(b"/a%2Fb", b"/a%2FB"));
        assert!(!literal_matches(b"/abc", b"/ab"));
    }
}
