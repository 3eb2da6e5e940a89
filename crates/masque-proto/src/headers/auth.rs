//! Proxy authentication with the Bearer scheme: `Proxy-Authorization: Bearer
//! <token>` on the request, `Proxy-Authenticate: Bearer realm="…"` with a 407
//! (RFC 9110 §11.6.2, §11.7.1, §15.5.8; token syntax RFC 6750 §2.1).

/// `proxy-authorization` (lowercase for HTTP/2 and HTTP/3).
pub const PROXY_AUTHORIZATION: &str = "proxy-authorization";
/// `proxy-authenticate`.
pub const PROXY_AUTHENTICATE: &str = "proxy-authenticate";

/// The credentials of a `Bearer` field value: the token after the scheme
/// (matched case-insensitively, RFC 9110 §11.1) and one or more spaces.
/// `None` for another scheme or a token that is not a token68.
pub fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let scheme = value.get(..6)?;
    let rest = value.get(6..)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let token = rest.trim_ascii_start();
    is_token68(token).then_some(token)
}

/// `token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn is_token68(t: &[u8]) -> bool {
    let body = t.len() - t.iter().rev().take_while(|&&b| b == b'=').count();
    body > 0
        && t[..body]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// The challenge sent with 407: `Bearer realm="<realm>"`, always a valid field
/// value. The realm is a quoted-string: only visible ASCII and spaces are kept,
/// without `"` and `\`; with nothing left the challenge is a bare `Bearer`.
pub fn bearer_challenge(realm: &str) -> String {
    let realm: String = realm
        .chars()
        .filter(|c| (c.is_ascii_graphic() || *c == ' ') && *c != '"' && *c != '\\')
        .collect();
    if realm.trim().is_empty() {
        return "Bearer".into();
    }
    format!("Bearer realm=\"{realm}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bearer_forms() {
        assert_eq!(bearer_token(b"Bearer abc-123"), Some(&b"abc-123"[..]));
        assert_eq!(bearer_token(b"bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"BEARER   abc=="), Some(&b"abc=="[..]));
        assert_eq!(bearer_token(b" Bearer abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert_eq!(bearer_token(b"Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer_token(b"Bearer a b"), None);
        assert_eq!(bearer_token(b"Bearer ==="), None);
        assert_eq!(bearer_token(b"Bearer a=b"), None);
        assert_eq!(bearer_token("Bearer é".as_bytes()), None);
        assert_eq!(bearer_challenge("mas\"que"), "Bearer realm=\"masque\"");
        assert_eq!(bearer_challenge("node\r\n1 é"), "Bearer realm=\"node1 \"");
        assert_eq!(bearer_challenge("\u{7f}"), "Bearer");
    }

    proptest! {
        /// Every token68 comes back from `Bearer <token>`, whatever the scheme's case.
        #[test]
        fn token68_round_trips(token in "[A-Za-z0-9._~+/-]{1,64}={0,2}", upper in any::<bool>()) {
            let scheme = if upper { "BEARER" } else { "Bearer" };
            let value = format!("{scheme} {token}");
            prop_assert_eq!(bearer_token(value.as_bytes()), Some(token.as_bytes()));
        }

        /// Never panics, and what it returns is a token68 inside the value.
        #[test]
        fn any_bytes(value in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Some(t) = bearer_token(&value) {
                prop_assert!(is_token68(t));
            }
        }
    }
}
