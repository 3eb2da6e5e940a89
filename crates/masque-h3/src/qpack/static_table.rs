//! The QPACK static table (RFC 9204 §3.1, Appendix A): 99 entries, indexed from 0.
//!
//! Unlike HPACK, QPACK's static table is 0-based and is the only table this
//! implementation uses (our dynamic table capacity is 0).

/// Number of entries in the static table.
pub const LEN: usize = 99;

/// RFC 9204 Appendix A, in index order.
pub static ENTRIES: [(&[u8], &[u8]); LEN] = [
    (b":authority", b""),
    (b":path", b"/"),
    (b"age", b"0"),
    (b"content-disposition", b""),
    (b"content-length", b"0"),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"last-modified", b""), // 10
    (b"link", b""),
    (b"location", b""),
    (b"referer", b""),
    (b"set-cookie", b""),
    (b":method", b"CONNECT"),
    (b":method", b"DELETE"),
    (b":method", b"GET"),
    (b":method", b"HEAD"),
    (b":method", b"OPTIONS"),
    (b":method", b"POST"), // 20
    (b":method", b"PUT"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"103"),
    (b":status", b"200"),
    (b":status", b"304"),
    (b":status", b"404"),
    (b":status", b"503"),
    (b"accept", b"*/*"),
    (b"accept", b"application/dns-message"), // 30
    (b"accept-encoding", b"gzip, deflate, br"),
    (b"accept-ranges", b"bytes"),
    (b"access-control-allow-headers", b"cache-control"),
    (b"access-control-allow-headers", b"content-type"),
    (b"access-control-allow-origin", b"*"),
    (b"cache-control", b"max-age=0"),
    (b"cache-control", b"max-age=2592000"),
    (b"cache-control", b"max-age=604800"),
    (b"cache-control", b"no-cache"),
    (b"cache-control", b"no-store"), // 40
    (b"cache-control", b"public, max-age=31536000"),
    (b"content-encoding", b"br"),
    (b"content-encoding", b"gzip"),
    (b"content-type", b"application/dns-message"),
    (b"content-type", b"application/javascript"),
    (b"content-type", b"application/json"),
    (b"content-type", b"application/x-www-form-urlencoded"),
    (b"content-type", b"image/gif"),
    (b"content-type", b"image/jpeg"),
    (b"content-type", b"image/png"), // 50
    (b"content-type", b"text/css"),
    (b"content-type", b"text/html; charset=utf-8"),
    (b"content-type", b"text/plain"),
    (b"content-type", b"text/plain;charset=utf-8"),
    (b"range", b"bytes=0-"),
    (b"strict-transport-security", b"max-age=31536000"),
    (
        b"strict-transport-security",
        b"max-age=31536000; includesubdomains",
    ),
    (
        b"strict-transport-security",
        b"max-age=31536000; includesubdomains; preload",
    ),
    (b"vary", b"accept-encoding"),
    (b"vary", b"origin"), // 60
    (b"x-content-type-options", b"nosniff"),
    (b"x-xss-protection", b"1; mode=block"),
    (b":status", b"100"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"302"),
    (b":status", b"400"),
    (b":status", b"403"),
    (b":status", b"421"),
    (b":status", b"425"), // 70
    (b":status", b"500"),
    (b"accept-language", b""),
    (b"access-control-allow-credentials", b"FALSE"),
    (b"access-control-allow-credentials", b"TRUE"),
    (b"access-control-allow-headers", b"*"),
    (b"access-control-allow-methods", b"get"),
    (b"access-control-allow-methods", b"get, post, options"),
    (b"access-control-allow-methods", b"options"),
    (b"access-control-expose-headers", b"content-length"),
    (b"access-control-request-headers", b"content-type"), // 80
    (b"access-control-request-method", b"get"),
    (b"access-control-request-method", b"post"),
    (b"alt-svc", b"clear"),
    (b"authorization", b""),
    (
        b"content-security-policy",
        b"script-src 'none'; object-src 'none'; base-uri 'none'",
    ),
    (b"early-data", b"1"),
    (b"expect-ct", b""),
    (b"forwarded", b""),
    (b"if-range", b""),
    (b"origin", b""), // 90
    (b"purpose", b"prefetch"),
    (b"server", b""),
    (b"timing-allow-origin", b"*"),
    (b"upgrade-insecure-requests", b"1"),
    (b"user-agent", b""),
    (b"x-forwarded-for", b""),
    (b"x-frame-options", b"deny"),
    (b"x-frame-options", b"sameorigin"),
];

/// The entry at `index`, or `None` past the end of the table.
#[inline]
pub fn get(index: u64) -> Option<(&'static [u8], &'static [u8])> {
    usize::try_from(index)
        .ok()
        .and_then(|i| ENTRIES.get(i))
        .copied()
}

/// Best static-table match for an encoder: `Exact(i)` when name and value both
/// match entry `i`, `Name(i)` when only the name does, `None` otherwise. The
/// lowest index wins in each class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    Exact(u8),
    Name(u8),
    None,
}

/// Looks `(name, value)` up in the static table (a 99-entry scan that rejects
/// most entries on their length alone).
pub fn find(name: &[u8], value: &[u8]) -> Match {
    let mut name_match = Match::None;
    for (i, (n, v)) in ENTRIES.iter().enumerate() {
        if n.len() == name.len() && *n == name {
            // `i < 99`, so the cast is lossless.
            let i = i as u8;
            if *v == value {
                return Match::Exact(i);
            }
            if name_match == Match::None {
                name_match = Match::Name(i);
            }
        }
    }
    name_match
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spot checks at every row the RFC numbers in Appendix A, plus both ends.
    #[test]
    fn appendix_a_anchor_rows() {
        let rows: &[(u64, &[u8], &[u8])] = &[
            (0, b":authority", b""),
            (1, b":path", b"/"),
            (15, b":method", b"CONNECT"),
            (17, b":method", b"GET"),
            (23, b":scheme", b"https"),
            (25, b":status", b"200"),
            (31, b"accept-encoding", b"gzip, deflate, br"),
            (52, b"content-type", b"text/html; charset=utf-8"),
            (
                58,
                b"strict-transport-security",
                b"max-age=31536000; includesubdomains; preload",
            ),
            (63, b":status", b"100"),
            (71, b":status", b"500"),
            (73, b"access-control-allow-credentials", b"FALSE"),
            (
                85,
                b"content-security-policy",
                b"script-src 'none'; object-src 'none'; base-uri 'none'",
            ),
            (95, b"user-agent", b""),
            (98, b"x-frame-options", b"sameorigin"),
        ];
        for (i, n, v) in rows {
            assert_eq!(get(*i), Some((*n, *v)), "index {i}");
        }
        assert_eq!(get(99), None);
        assert_eq!(get(u64::MAX), None);
    }

    /// Every name is lowercase and every (name, value) pair is unique, so
    /// `find` maps each entry back to its own index.
    #[test]
    fn every_entry_round_trips_through_find() {
        for (i, (n, v)) in ENTRIES.iter().enumerate() {
            assert!(!n.iter().any(u8::is_ascii_uppercase), "index {i}");
            assert_eq!(find(n, v), Match::Exact(i as u8), "index {i}");
        }
        assert_eq!(find(b":status", b"999"), Match::Name(24));
        assert_eq!(find(b"x-unknown", b""), Match::None);
    }
}
