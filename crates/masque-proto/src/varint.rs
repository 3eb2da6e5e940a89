//! QUIC variable-length integers (RFC 9000 §16).
//!
//! QV-01 encoding prefixes, QV-02 refusal of values >= 2^62, QV-03 acceptance of
//! non-minimal encodings, QV-05 "incomplete" as a distinct outcome, QV-06 shortest
//! form on encode.

use bytes::BufMut;

/// Largest value a varint can hold: 2^62 - 1 (QV-02).
pub const MAX: u64 = (1 << 62) - 1;

/// Why a varint could not be decoded or encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VarintError {
    /// The bytes end before the varint does (QV-05). On a stream: wait for more.
    #[error("varint incomplete")]
    Incomplete,
    /// The value does not fit in 62 bits (QV-02).
    #[error("value exceeds 2^62-1")]
    TooLarge,
}

/// Number of bytes the shortest encoding of `v` takes (1, 2, 4 or 8).
/// Values above [`MAX`] report 8; [`encode`] refuses them.
#[inline]
pub const fn encoded_len(v: u64) -> usize {
    if v < (1 << 6) {
        1
    } else if v < (1 << 14) {
        2
    } else if v < (1 << 30) {
        4
    } else {
        8
    }
}

/// Length of the varint whose first byte is `first`.
#[inline]
pub const fn len_from_first_byte(first: u8) -> usize {
    1 << (first >> 6)
}

/// Decodes one varint from the front of `buf`; returns the value and the bytes used.
/// Non-minimal encodings are accepted (QV-03).
#[inline]
pub fn decode(buf: &[u8]) -> Result<(u64, usize), VarintError> {
    let first = *buf.first().ok_or(VarintError::Incomplete)?;
    let len = len_from_first_byte(first);
    if buf.len() < len {
        return Err(VarintError::Incomplete);
    }
    let mut v = u64::from(first & 0x3f);
    for b in &buf[1..len] {
        v = (v << 8) | u64::from(*b);
    }
    Ok((v, len))
}

/// Appends the shortest encoding of `v` (QV-06). Refuses values above [`MAX`] (QV-02).
#[inline]
pub fn encode<B: BufMut + ?Sized>(v: u64, buf: &mut B) -> Result<(), VarintError> {
    if v > MAX {
        return Err(VarintError::TooLarge);
    }
    match encoded_len(v) {
        1 => buf.put_u8(v as u8),
        2 => buf.put_u16(0x4000 | v as u16),
        4 => buf.put_u32(0x8000_0000 | v as u32),
        _ => buf.put_u64(0xc000_0000_0000_0000 | v),
    }
    Ok(())
}

/// Appends `v` for values the caller knows fit in 62 bits (codepoints, lengths of
/// in-memory buffers). Values above [`MAX`] are a programming error and are clamped
/// in release builds; debug builds assert.
#[inline]
pub fn put<B: BufMut + ?Sized>(v: u64, buf: &mut B) {
    debug_assert!(v <= MAX, "varint value {v} exceeds 2^62-1");
    // Clamping can only happen for a caller bug; it keeps the output well-formed.
    let _ = encode(v.min(MAX), buf);
}

/// Appends `v` using exactly `len` bytes (1, 2, 4 or 8): a non-minimal encoding
/// when `len` is larger than needed. Used by tests and GREASE. Fails when `v` does
/// not fit in `len` bytes.
pub fn encode_with_len<B: BufMut + ?Sized>(
    v: u64,
    len: usize,
    buf: &mut B,
) -> Result<(), VarintError> {
    let fits = match len {
        1 => v < (1 << 6),
        2 => v < (1 << 14),
        4 => v < (1 << 30),
        8 => v <= MAX,
        _ => false,
    };
    if !fits {
        return Err(VarintError::TooLarge);
    }
    match len {
        1 => buf.put_u8(v as u8),
        2 => buf.put_u16(0x4000 | v as u16),
        4 => buf.put_u32(0x8000_0000 | v as u32),
        _ => buf.put_u64(0xc000_0000_0000_0000 | v),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(v: u64) -> Vec<u8> {
        let mut b = Vec::new();
        encode(v, &mut b).unwrap();
        b
    }

    /// Spec README vectors 1 and 2 (RFC 9000 Appendix A.1 and boundaries); QV-01, QV-06.
    #[test]
    fn qv01_rfc9000_and_boundary_vectors() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (37, &[0x25]),
            (15293, &[0x7b, 0xbd]),
            (494_878_333, &[0x9d, 0x7f, 0x3e, 0x7d]),
            (
                151_288_809_941_952_652,
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
            ),
            (63, &[0x3f]),
            (64, &[0x40, 0x40]),
            (16383, &[0x7f, 0xff]),
            (16384, &[0x80, 0x00, 0x40, 0x00]),
            (1_073_741_823, &[0xbf, 0xff, 0xff, 0xff]),
            (1_073_741_824, &[0xc0, 0, 0, 0, 0x40, 0, 0, 0]),
            (
                (1 << 60) - 1,
                &[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
            (MAX, &[0xff; 8]),
        ];
        for (v, bytes) in cases {
            assert_eq!(enc(*v), *bytes, "encode {v}");
            assert_eq!(decode(bytes), Ok((*v, bytes.len())), "decode {v}");
            assert_eq!(encoded_len(*v), bytes.len());
        }
    }

    /// QV-03: non-minimal encodings decode to the same value.
    #[test]
    fn qv03_non_minimal_accepted() {
        assert_eq!(decode(&[0x40, 0x25]), Ok((37, 2)));
        assert_eq!(decode(&[0x80, 0, 0, 0x25]), Ok((37, 4)));
        assert_eq!(decode(&[0xc0, 0, 0, 0, 0, 0, 0, 0x25]), Ok((37, 8)));
    }

    /// QV-02: values >= 2^62 are refused, not truncated.
    #[test]
    fn qv02_too_large_refused() {
        let mut b = Vec::new();
        assert_eq!(encode(MAX + 1, &mut b), Err(VarintError::TooLarge));
        assert_eq!(encode(u64::MAX, &mut b), Err(VarintError::TooLarge));
        assert!(b.is_empty());
    }

    /// QV-05: truncated input is Incomplete, never a wrong value.
    #[test]
    fn qv05_incomplete() {
        assert_eq!(decode(&[]), Err(VarintError::Incomplete));
        assert_eq!(decode(&[0x40]), Err(VarintError::Incomplete));
        assert_eq!(decode(&[0x80, 0, 0]), Err(VarintError::Incomplete));
        assert_eq!(
            decode(&[0xc0, 0, 0, 0, 0, 0, 0]),
            Err(VarintError::Incomplete)
        );
    }

    #[test]
    fn encode_with_len_forms() {
        let mut b = Vec::new();
        encode_with_len(37, 2, &mut b).unwrap();
        assert_eq!(b, [0x40, 0x25]);
        assert_eq!(encode_with_len(64, 1, &mut b), Err(VarintError::TooLarge));
        assert_eq!(encode_with_len(1, 3, &mut b), Err(VarintError::TooLarge));
    }

    proptest! {
        /// QV-01/QV-06: every value round-trips with the shortest encoding.
        #[test]
        fn roundtrip(v in 0..=MAX, extra in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut b = enc(v);
            let n = b.len();
            prop_assert_eq!(n, encoded_len(v));
            b.extend_from_slice(&extra);
            prop_assert_eq!(decode(&b), Ok((v, n)));
        }

        /// QV-03: every longer form decodes to the same value.
        #[test]
        fn roundtrip_non_minimal(v in 0..(1u64 << 30), len in prop_oneof![Just(4usize), Just(8usize)]) {
            let mut b = Vec::new();
            encode_with_len(v, len, &mut b).unwrap();
            prop_assert_eq!(decode(&b), Ok((v, len)));
        }

        /// Decoding arbitrary bytes never panics and never reads past the input.
        #[test]
        fn decode_total(b in proptest::collection::vec(any::<u8>(), 0..10)) {
            if let Ok((_, n)) = decode(&b) { prop_assert!(n <= b.len()); }
        }
    }
}
