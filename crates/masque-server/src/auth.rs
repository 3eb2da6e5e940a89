//! `ProxyAuth`: who may open tunnels. With bearer tokens configured, every
//! request must carry `Proxy-Authorization: Bearer <token>` with one of them
//! (R9298-52); otherwise it is answered 407 with a `Proxy-Authenticate`
//! challenge before anything else about it is looked at.
//!
//! Tokens are kept only as SHA-256 digests, and a presented token is compared
//! with every one of them in time that depends on neither its content nor
//! which token (if any) it matches. `Debug` never shows them.
//!
//! Clones share one token set: [`ProxyAuth::replace`] on any of them (e.g. the
//! node's, on SIGHUP) changes what every listener accepts from the next
//! request on, without a restart; open tunnels are not affected.

use std::sync::{Arc, RwLock};

use masque_proto::headers::auth::{PROXY_AUTHORIZATION, bearer_token, is_token68};
use ring::digest::{SHA256, digest};

/// Shortest token accepted in the configuration: 128 bits of base64.
pub const MIN_TOKEN_LEN: usize = 22;

/// The credentials a listener accepts. The default accepts every request.
#[derive(Clone, Default)]
pub struct ProxyAuth {
    digests: Arc<RwLock<Vec<[u8; 32]>>>,
}

impl std::fmt::Debug for ProxyAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyAuth")
            .field("bearer_tokens", &self.digests().len())
            .finish()
    }
}

/// A configured token that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    #[error("no bearer token given")]
    NoTokens,
    #[error("bearer token {index} is not a token68 (letters, digits, - . _ ~ + /, then = padding)")]
    NotToken68 { index: usize },
    #[error("bearer token {index} has {len} characters; at least {MIN_TOKEN_LEN} are required")]
    TooShort { index: usize, len: usize },
}

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Proxy-Authorization` with a Bearer token.
    Missing,
    /// A token that is not one of ours.
    Invalid,
}

impl ProxyAuth {
    /// Only requests with one of `tokens` (each a token68 of at least
    /// [`MIN_TOKEN_LEN`] characters).
    pub fn bearer_tokens<I, T>(tokens: I) -> Result<Self, AuthConfigError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let mut digests = Vec::new();
        for (index, token) in tokens.into_iter().enumerate() {
            let token = token.as_ref().as_bytes();
            if !is_token68(token) {
                return Err(AuthConfigError::NotToken68 { index });
            }
            if token.len() < MIN_TOKEN_LEN {
                return Err(AuthConfigError::TooShort {
                    index,
                    len: token.len(),
                });
            }
            digests.push(sha256(token));
        }
        if digests.is_empty() {
            return Err(AuthConfigError::NoTokens);
        }
        Ok(Self {
            digests: Arc::new(RwLock::new(digests)),
        })
    }

    /// Makes this token set (and every clone of it) accept what `new` accepts.
    pub fn replace(&self, new: &ProxyAuth) {
        let tokens = new.digests().clone();
        *self.digests.write().unwrap_or_else(|p| p.into_inner()) = tokens;
    }

    fn digests(&self) -> std::sync::RwLockReadGuard<'_, Vec<[u8; 32]>> {
        // A panic while holding the lock cannot leave a half-written Vec (the
        // only write is one assignment), so a poisoned lock is still usable.
        self.digests.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Tokens from a file, as [`token_lines`] reads it.
    pub fn parse_token_file(text: &str) -> Result<Self, AuthConfigError> {
        Self::bearer_tokens(token_lines(text))
    }

    /// Whether every request is let through.
    pub fn is_open(&self) -> bool {
        self.digests().is_empty()
    }

    /// Checks a request's header fields. With several `Proxy-Authorization`
    /// lines, each is tried.
    pub fn check(&self, headers: &http::HeaderMap) -> Result<(), AuthFailure> {
        let digests = self.digests();
        if digests.is_empty() {
            return Ok(());
        }
        let mut presented = false;
        let mut matched = false;
        for value in headers.get_all(PROXY_AUTHORIZATION) {
            if let Some(token) = bearer_token(value.as_bytes()) {
                presented = true;
                let d = sha256(token);
                // Every digest, no early exit: the time does not tell which.
                for known in digests.iter() {
                    matched |= constant_time_eq(&d, known);
                }
            }
        }
        match (presented, matched) {
            (_, true) => Ok(()),
            (true, false) => Err(AuthFailure::Invalid),
            (false, _) => Err(AuthFailure::Missing),
        }
    }
}

/// The tokens of a token file: one per line; blank lines and lines starting
/// with `#` are skipped, surrounding whitespace is ignored. The node's
/// `--auth-token-file` and a client's (which sends the first) read it alike.
pub fn token_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, data).as_ref());
    out
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "tok-aaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "tok_bbbbbbbbbbbbbbbbbbbbbbbb==";

    fn with(values: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append(PROXY_AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    /// R9298-52: only a configured bearer token lets a request through.
    #[test]
    fn r9298_52_bearer_tokens() {
        let auth = ProxyAuth::bearer_tokens([A, B]).unwrap();
        assert!(!auth.is_open());
        assert_eq!(auth.check(&with(&[])), Err(AuthFailure::Missing));
        assert_eq!(
            auth.check(&with(&["Basic dXNlcjpwYXNz"])),
            Err(AuthFailure::Missing)
        );
        assert_eq!(
            auth.check(&with(&["Bearer tok-aaaaaaaaaaaaaaaaaaaaaaab"])),
            Err(AuthFailure::Invalid)
        );
        assert_eq!(auth.check(&with(&[&format!("Bearer {A}")])), Ok(()));
        assert_eq!(auth.check(&with(&[&format!("bearer {B}")])), Ok(()));
        assert_eq!(
            auth.check(&with(&[
                "Bearer wrong-wrong-wrong-wrong",
                &format!("Bearer {B}")
            ])),
            Ok(())
        );
        assert_eq!(ProxyAuth::default().check(&with(&[])), Ok(()));
    }

    #[test]
    fn configuration_is_checked() {
        assert_eq!(
            ProxyAuth::bearer_tokens(Vec::<String>::new()).unwrap_err(),
            AuthConfigError::NoTokens
        );
        assert_eq!(
            ProxyAuth::bearer_tokens(["short"]).unwrap_err(),
            AuthConfigError::TooShort { index: 0, len: 5 }
        );
        assert_eq!(
            ProxyAuth::bearer_tokens([A, "has space in it and is long"]).unwrap_err(),
            AuthConfigError::NotToken68 { index: 1 }
        );
        let file = format!("# clients\n\n  {A}  \n#{B}\n");
        let auth = ProxyAuth::parse_token_file(&file).unwrap();
        assert_eq!(auth.check(&with(&[&format!("Bearer {A}")])), Ok(()));
        assert_eq!(
            auth.check(&with(&[&format!("Bearer {B}")])),
            Err(AuthFailure::Invalid),
            "a commented-out token is not accepted"
        );
        assert_eq!(
            ProxyAuth::parse_token_file("# none\n").unwrap_err(),
            AuthConfigError::NoTokens
        );
    }

    /// Clones share the token set: a replacement is seen by all of them.
    #[test]
    fn replace_reaches_every_clone() {
        let node = ProxyAuth::bearer_tokens([A]).unwrap();
        let listener = node.clone();
        node.replace(&ProxyAuth::bearer_tokens([B]).unwrap());
        assert_eq!(
            listener.check(&with(&[&format!("Bearer {A}")])),
            Err(AuthFailure::Invalid)
        );
        assert_eq!(listener.check(&with(&[&format!("Bearer {B}")])), Ok(()));
    }

    #[test]
    fn debug_shows_no_token() {
        let text = format!("{:?}", ProxyAuth::bearer_tokens([A]).unwrap());
        assert_eq!(text, "ProxyAuth { bearer_tokens: 1 }");
    }
}
