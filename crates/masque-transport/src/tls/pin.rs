//! SHA-256 certificate fingerprints: computing, formatting and parsing pins.

use super::TlsError;

/// Why a certificate pin string was rejected by [`parse_pin`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// The string was empty (after trimming whitespace).
    #[error("empty pin")]
    Empty,
    /// A character that is not a hexadecimal digit (or a separating colon).
    #[error("invalid character {ch:?} at position {position} (expected hex digits)")]
    InvalidCharacter {
        /// The offending character.
        ch: char,
        /// Its byte offset in the trimmed input.
        position: usize,
    },
    /// Colon-separated input whose groups are not exactly two hex digits.
    #[error("colon-separated pins need exactly two hex digits per byte (group {group})")]
    BadGroup {
        /// 0-based index of the malformed group.
        group: usize,
    },
    /// An odd number of hex digits.
    #[error("odd number of hex digits ({digits})")]
    OddDigits {
        /// How many hex digits were given.
        digits: usize,
    },
    /// The pin does not decode to 32 bytes.
    #[error("a SHA-256 pin is 32 bytes (64 hex digits), got {bytes} bytes")]
    WrongLength {
        /// How many bytes were decoded.
        bytes: usize,
    },
    /// A curl/HPKP style `sha256/<base64>` pin, which hashes the public key
    /// (SPKI) rather than the certificate, so it can never match.
    #[error(
        "`sha256/<base64>` pins hash the public key (SPKI); masque pins the SHA-256 of the \
         certificate DER, written as hex (e.g. `openssl x509 -noout -fingerprint -sha256`)"
    )]
    SpkiPinUnsupported,
}

/// SHA-256 of `der` (a certificate's DER encoding), computed with ring.
pub fn fingerprint_sha256(der: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Lowercase hex without separators: `ab01…`.
pub fn format_fingerprint_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

/// Colon-separated uppercase hex, as OpenSSL and browsers print it: `AB:01:…`.
pub fn format_fingerprint_colon(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

/// Parses a SHA-256 certificate pin.
///
/// Accepts 64 hex digits, either contiguous (`ab01…`) or as 32 colon-separated
/// pairs (`AB:01:…`), in any case, with surrounding whitespace ignored — i.e.
/// both outputs of [`format_fingerprint_hex`] and [`format_fingerprint_colon`].
/// curl-style `sha256/<base64>` public-key pins are rejected with an
/// explanatory error, since they hash something else.
pub fn parse_pin(s: &str) -> Result<[u8; 32], TlsError> {
    Ok(parse_pin_inner(s)?)
}

fn parse_pin_inner(s: &str) -> Result<[u8; 32], PinError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(PinError::Empty);
    }
    if s.len() >= 7 && s[..7].eq_ignore_ascii_case("sha256/") {
        return Err(PinError::SpkiPinUnsupported);
    }
    // Check characters first so that errors point at the real problem.
    for (position, ch) in s.char_indices() {
        if !(ch.is_ascii_hexdigit() || ch == ':') {
            return Err(PinError::InvalidCharacter { ch, position });
        }
    }
    let mut bytes = Vec::with_capacity(32);
    if s.contains(':') {
        for (group, part) in s.split(':').enumerate() {
            match part.as_bytes() {
                [hi, lo] => bytes.push(hex_pair(*hi, *lo)),
                _ => return Err(PinError::BadGroup { group }),
            }
        }
    } else {
        let pairs = s.as_bytes().chunks_exact(2);
        if !pairs.remainder().is_empty() {
            return Err(PinError::OddDigits { digits: s.len() });
        }
        bytes.extend(pairs.map(|p| hex_pair(p[0], p[1])));
    }
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| PinError::WrongLength { bytes: bytes.len() })
}

/// Combines two ASCII hex digits (already validated) into a byte.
fn hex_pair(hi: u8, lo: u8) -> u8 {
    (hex_val(hi) << 4) | hex_val(lo)
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(37).wrapping_add(0xa5);
        }
        b
    }

    fn pin_err(s: &str) -> PinError {
        match parse_pin(s) {
            Err(TlsError::InvalidPin(e)) => e,
            other => panic!("expected a pin error for {s:?}, got {other:?}"),
        }
    }

    #[test]
    fn fingerprint_is_sha256() {
        // SHA-256("abc") from FIPS 180-2.
        assert_eq!(
            format_fingerprint_hex(&fingerprint_sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn formats() {
        let b = [0xab, 0x01, 0xff];
        assert_eq!(format_fingerprint_hex(&b), "ab01ff");
        assert_eq!(format_fingerprint_colon(&b), "AB:01:FF");
        assert_eq!(format_fingerprint_colon(&[]), "");
    }

    #[test]
    fn pin_parses_hex_and_colons_any_case() {
        let b = sample();
        let hex = format_fingerprint_hex(&b);
        let colon = format_fingerprint_colon(&b);
        assert_eq!(parse_pin(&hex).unwrap(), b);
        assert_eq!(parse_pin(&hex.to_uppercase()).unwrap(), b);
        assert_eq!(parse_pin(&colon).unwrap(), b);
        assert_eq!(parse_pin(&colon.to_lowercase()).unwrap(), b);
        assert_eq!(parse_pin(&format!("  {colon}\n")).unwrap(), b);
    }

    #[test]
    fn pin_rejects_wrong_length() {
        let hex = format_fingerprint_hex(&sample());
        assert_eq!(pin_err(&hex[..62]), PinError::WrongLength { bytes: 31 });
        assert_eq!(
            pin_err(&format!("{hex}00")),
            PinError::WrongLength { bytes: 33 }
        );
        let colon = format_fingerprint_colon(&sample());
        assert_eq!(
            pin_err(&colon[..colon.len() - 3]),
            PinError::WrongLength { bytes: 31 }
        );
        assert_eq!(pin_err(&hex[..63]), PinError::OddDigits { digits: 63 });
        assert_eq!(pin_err(""), PinError::Empty);
        assert_eq!(pin_err("   "), PinError::Empty);
    }

    #[test]
    fn pin_rejects_malformed_input() {
        let hex = format_fingerprint_hex(&sample());
        let bad = format!("{}g{}", &hex[..10], &hex[11..]);
        assert_eq!(
            pin_err(&bad),
            PinError::InvalidCharacter {
                ch: 'g',
                position: 10
            }
        );
        let colon = format_fingerprint_colon(&sample());
        assert_eq!(
            pin_err(&format!("{colon}:")),
            PinError::BadGroup { group: 32 }
        );
        assert_eq!(
            pin_err(&format!("A{}", &colon[..])),
            PinError::BadGroup { group: 0 }
        );
        assert_eq!(
            pin_err(&colon.replace(':', "-")),
            PinError::InvalidCharacter {
                ch: '-',
                position: 2
            }
        );
        assert_eq!(
            pin_err("sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="),
            PinError::SpkiPinUnsupported
        );
    }
}
