//! HTTP field-value syntax of RFC 9110 used by HTTP/1.1 request heads: comma-separated
//! lists spread over field lines (§5.6.1, §5.3) and tokens (§5.6.2).

/// RFC 9110 §5.6.2 `tchar`.
pub const fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// RFC 9110 §5.6.2 `token = 1*tchar`.
pub fn is_token(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(|&c| is_tchar(c))
}

/// The elements of a `#rule` list field given all its field lines: the lines are
/// one list (§5.3), elements are split at commas, optional whitespace around them
/// is removed and empty elements are skipped (§5.6.1). Quoted strings are not
/// special: the fields read with this (`Connection`, `Upgrade`) hold tokens only.
pub fn elements<'a>(lines: &'a [&'a [u8]]) -> impl Iterator<Item = &'a [u8]> + 'a {
    lines
        .iter()
        .flat_map(|line| line.split(|&c| c == b','))
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Removes RFC 9110 §5.6.3 optional whitespace (SP, HTAB) at both ends.
pub fn trim_ows(b: &[u8]) -> &[u8] {
    let ows = |c: &u8| *c == b' ' || *c == b'\t';
    let start = b.iter().position(|c| !ows(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !ows(c)).map_or(start, |i| i + 1);
    b.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9110 §5.6.1 / §5.3: one list over several lines, OWS and empty
    /// elements dropped.
    #[test]
    fn rfc9110_5_6_1_list_elements() {
        let lines: [&[u8]; 3] = [b" keep-alive ,Upgrade", b"", b",, \tfoo\t,"];
        let got: Vec<&[u8]> = elements(&lines).collect();
        assert_eq!(got, [&b"keep-alive"[..], b"Upgrade", b"foo"]);
        assert_eq!(elements(&[]).count(), 0);
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b"a b"), b"a b");
    }

    /// RFC 9110 §5.6.2: tokens.
    #[test]
    fn rfc9110_5_6_2_tokens() {
        assert!(is_token(b"connect-udp"));
        assert!(is_token(b"connect-tcp-07"));
        assert!(is_token(b"h2c"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b"a/b"));
        assert!(!is_token(b"a:b"));
        assert!(!is_token(b"\"a\""));
    }
}
