//! The part of RFC 8941 Structured Field Values that MASQUE header fields use:
//! Items and Lists of Items with parameters (no Inner Lists, no Dictionaries).
//!
//! Parsing follows RFC 8941 §4.2: leading and trailing spaces are discarded, any
//! other leftover byte fails the whole field. An Inner List member also fails
//! parsing here; none of our fields allows one, so the field would be invalid
//! anyway. Byte Sequences are validated but kept as their base64 text.

use std::fmt::Write;

/// A field value that is not a valid Structured Field of the expected kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid structured field value at byte {pos}: {reason}")]
pub struct SfError {
    pub pos: usize,
    pub reason: &'static str,
}

/// RFC 8941 §3.3 bare item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BareItem {
    Integer(i64),
    /// Decimal in its textual form (`-?\d{1,12}\.\d{1,3}`).
    Decimal(String),
    String(String),
    Token(String),
    /// Byte Sequence in its base64 form, without the colons.
    ByteSequence(String),
    Boolean(bool),
}

/// An Item with its parameters in field order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub bare: BareItem,
    pub params: Vec<(String, BareItem)>,
}

impl Item {
    /// Value of parameter `key` (the last one wins on duplicates, RFC 8941 §3.1.2).
    pub fn param(&self, key: &str) -> Option<&BareItem> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

/// Parses a field value as an sf-item (RFC 8941 §4.2.3).
pub fn parse_item(input: &[u8]) -> Result<Item, SfError> {
    let mut p = Parser { s: input, pos: 0 };
    p.skip_sp();
    let item = p.item()?;
    p.skip_sp();
    p.end()?;
    Ok(item)
}

/// Parses a field value as an sf-list of Items (RFC 8941 §4.2.1). An empty value
/// is an empty list.
pub fn parse_list(input: &[u8]) -> Result<Vec<Item>, SfError> {
    let mut p = Parser { s: input, pos: 0 };
    let mut out = Vec::new();
    p.skip_sp();
    while p.peek().is_some() {
        if p.peek() == Some(b'(') {
            return Err(p.err("inner lists are not supported"));
        }
        out.push(p.item()?);
        p.skip_ows();
        if p.peek().is_none() {
            return Ok(out);
        }
        p.expect(b',')?;
        p.skip_ows();
        if p.peek().is_none() {
            return Err(p.err("trailing comma"));
        }
    }
    Ok(out)
}

/// RFC 8941 §3.3.4: Token syntax (`(ALPHA / "*") *(tchar / ":" / "/")`).
pub fn is_token(s: &str) -> bool {
    let b = s.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'*' => {}
        _ => return false,
    }
    b.iter().all(|c| is_tchar(*c) || *c == b':' || *c == b'/')
}

/// RFC 8941 §3.1.2: key syntax.
pub fn is_key(s: &str) -> bool {
    let b = s.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_lowercase() || *c == b'*' => {}
        _ => return false,
    }
    b.iter().all(|c| is_key_char(*c))
}

/// Appends `s` as an sf-string (RFC 8941 §4.1.6), escaping `"` and `\`. Characters
/// an sf-string cannot hold (controls, non-ASCII) are replaced by `?`, so the output
/// is always valid.
pub fn write_string_lossy(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
}

/// Appends `s` as a Token when it is one, otherwise as a String.
pub fn write_token_or_string(s: &str, out: &mut String) {
    if is_token(s) {
        out.push_str(s);
    } else {
        write_string_lossy(s, out);
    }
}

/// Appends a bare item (RFC 8941 §4.1.3).
pub fn write_bare_item(item: &BareItem, out: &mut String) {
    match item {
        BareItem::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        BareItem::Decimal(d) => out.push_str(d),
        BareItem::String(s) => write_string_lossy(s, out),
        BareItem::Token(t) => write_token_or_string(t, out),
        BareItem::ByteSequence(b) => {
            out.push(':');
            out.push_str(b);
            out.push(':');
        }
        BareItem::Boolean(b) => out.push_str(if *b { "?1" } else { "?0" }),
    }
}

/// Standard base64 with padding, for Byte Sequences (RFC 8941 §4.1.8).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |i: u32| char::from(T[(i & 63) as usize]);
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [0, 1, 2].map(|i| u32::from(chunk.get(i).copied().unwrap_or(0)));
        let n = (b[0] << 16) | (b[1] << 8) | b[2];
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if chunk.len() > 1 { sym(n >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(n) } else { '=' });
    }
    out
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_key_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, reason: &'static str) -> SfError {
        SfError {
            pos: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn expect(&mut self, c: u8) -> Result<(), SfError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err("unexpected character"))
        }
    }

    fn end(&self) -> Result<(), SfError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.err("trailing characters")),
        }
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        // Every predicate used admits ASCII only.
        std::str::from_utf8(self.s.get(start..self.pos).unwrap_or_default()).unwrap_or_default()
    }

    fn item(&mut self) -> Result<Item, SfError> {
        let bare = self.bare_item()?;
        let params = self.params()?;
        Ok(Item { bare, params })
    }

    fn params(&mut self) -> Result<Vec<(String, BareItem)>, SfError> {
        let mut params: Vec<(String, BareItem)> = Vec::new();
        while self.peek() == Some(b';') {
            self.pos += 1;
            self.skip_sp();
            let key = self.key()?;
            let value = if self.peek() == Some(b'=') {
                self.pos += 1;
                self.bare_item()?
            } else {
                BareItem::Boolean(true)
            };
            // RFC 8941 §4.2.3.2: a duplicate key overwrites the earlier value.
            params.retain(|(k, _)| *k != key);
            params.push((key, value));
        }
        Ok(params)
    }

    fn key(&mut self) -> Result<String, SfError> {
        match self.peek() {
            Some(c) if c.is_ascii_lowercase() || c == b'*' => {}
            _ => return Err(self.err("invalid key")),
        }
        Ok(self.take_while(is_key_char).to_owned())
    }

    fn bare_item(&mut self) -> Result<BareItem, SfError> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'"') => self.string(),
            Some(b':') => self.byte_sequence(),
            Some(b'?') => self.boolean(),
            Some(c) if c.is_ascii_alphabetic() || c == b'*' => Ok(BareItem::Token(
                self.take_while(|c| is_tchar(c) || c == b':' || c == b'/')
                    .to_owned(),
            )),
            _ => Err(self.err("invalid bare item")),
        }
    }

    fn number(&mut self) -> Result<BareItem, SfError> {
        let start = self.pos;
        let neg = self.peek() == Some(b'-');
        if neg {
            self.pos += 1;
        }
        let int_digits = self.take_while(|c| c.is_ascii_digit()).len();
        if int_digits == 0 {
            return Err(self.err("number without digits"));
        }
        if self.peek() != Some(b'.') {
            if int_digits > 15 {
                return Err(self.err("integer too long"));
            }
            let text = std::str::from_utf8(self.s.get(start..self.pos).unwrap_or_default())
                .unwrap_or_default();
            return text
                .parse()
                .map(BareItem::Integer)
                .map_err(|_| self.err("invalid integer"));
        }
        if int_digits > 12 {
            return Err(self.err("decimal too long"));
        }
        self.pos += 1;
        let frac = self.take_while(|c| c.is_ascii_digit()).len();
        if frac == 0 || frac > 3 {
            return Err(self.err("invalid decimal fraction"));
        }
        let text = std::str::from_utf8(self.s.get(start..self.pos).unwrap_or_default())
            .unwrap_or_default();
        Ok(BareItem::Decimal(text.to_owned()))
    }

    fn string(&mut self) -> Result<BareItem, SfError> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => return Ok(BareItem::String(out)),
                Some(b'\\') => match self.bump() {
                    Some(c @ (b'"' | b'\\')) => out.push(char::from(c)),
                    _ => return Err(self.err("invalid escape")),
                },
                Some(c @ 0x20..=0x7e) => out.push(char::from(c)),
                Some(_) => return Err(self.err("invalid string character")),
            }
        }
    }

    fn byte_sequence(&mut self) -> Result<BareItem, SfError> {
        self.expect(b':')?;
        let b64 = self
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
            .to_owned();
        self.expect(b':')?;
        Ok(BareItem::ByteSequence(b64))
    }

    fn boolean(&mut self) -> Result<BareItem, SfError> {
        self.expect(b'?')?;
        match self.bump() {
            Some(b'1') => Ok(BareItem::Boolean(true)),
            Some(b'0') => Ok(BareItem::Boolean(false)),
            _ => Err(self.err("invalid boolean")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn items() {
        let i = parse_item(b"  ?1;a;b=2;c=\"x\\\"y\";d=:aGk=:;e=1.5;f=tok/1:2 ").unwrap();
        assert_eq!(i.bare, BareItem::Boolean(true));
        assert_eq!(i.param("a"), Some(&BareItem::Boolean(true)));
        assert_eq!(i.param("b"), Some(&BareItem::Integer(2)));
        assert_eq!(i.param("c"), Some(&BareItem::String("x\"y".into())));
        assert_eq!(i.param("d"), Some(&BareItem::ByteSequence("aGk=".into())));
        assert_eq!(i.param("e"), Some(&BareItem::Decimal("1.5".into())));
        assert_eq!(i.param("f"), Some(&BareItem::Token("tok/1:2".into())));
        for bad in [
            &b""[..],
            b"?2",
            b"?1,",
            b"?1 x",
            b"\"a",
            b"1.",
            b"1.1234",
            b"1234567890123456",
            b"-",
            b"?1;A=1",
            b"\"\\x\"",
            b"\t?1",
        ] {
            assert!(parse_item(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lists() {
        let l = parse_list(b"a, \"b\";x=1,\tc").unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(parse_list(b"").unwrap(), vec![]);
        assert!(parse_list(b"a,").is_err());
        assert!(parse_list(b"(a b)").is_err());
        assert!(parse_list(b"1proxy").is_err());
    }

    #[test]
    fn writers() {
        let mut s = String::new();
        write_string_lossy("a\"b\\c\u{7f}é", &mut s);
        assert_eq!(s, "\"a\\\"b\\\\c??\"");
        assert!(is_token("backend.example.org:8001"));
        assert!(is_token("http/1.1"));
        assert!(!is_token("192.0.2.1"));
        assert!(!is_token("[2001:db8::7]:443"));
        assert!(!is_token(""));
        assert!(is_key("next-hop"));
        assert!(!is_key("Next"));
        assert_eq!(base64(b"hi"), "aGk=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b"a"), "YQ==");
    }

    proptest! {
        #[test]
        fn string_roundtrip(s in "[ -~]{0,40}") {
            let mut out = String::new();
            write_string_lossy(&s, &mut out);
            prop_assert_eq!(parse_item(out.as_bytes()).unwrap().bare, BareItem::String(s));
        }

        /// Parsing arbitrary bytes never panics.
        #[test]
        fn parse_arbitrary_never_panics(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_item(&b);
            let _ = parse_list(&b);
        }

        /// Parsing SF-looking text never panics either.
        #[test]
        fn parse_sf_like_never_panics(s in "[a-z0-9?;=,:\"\\\\ .*()-]{0,40}") {
            let _ = parse_item(s.as_bytes());
            let _ = parse_list(s.as_bytes());
        }
    }
}
