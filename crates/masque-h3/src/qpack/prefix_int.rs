//! Prefixed integers (RFC 7541 §5.1, used by RFC 9204 §4.1.1).
//!
//! An N-bit prefix holds values below `2^N - 1` directly; otherwise the prefix
//! is all ones and the rest follows in 7-bit groups, least significant first,
//! with the high bit of each byte saying "more follows".
//!
//! Overflow protection: values are capped at [`MAX`] (2^62 - 1, the largest
//! QUIC varint, so stream IDs and lengths fit every consumer), and at most
//! [`MAX_LEN`] bytes are examined, so neither hostile nor non-minimal
//! encodings can make a decoder loop or allocate.

/// Largest value accepted or produced: 2^62 - 1.
pub const MAX: u64 = masque_proto::varint::MAX;

/// Longest encoding that can stay below [`MAX`]: the prefix byte plus 9
/// continuation bytes (9 * 7 = 63 bits).
pub const MAX_LEN: usize = 10;

/// Why a prefixed integer could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IntError {
    /// The input ends inside the integer. On a stream: wait for more bytes.
    #[error("prefixed integer incomplete")]
    Incomplete,
    /// The value exceeds 2^62 - 1 or uses more than [`MAX_LEN`] bytes.
    #[error("prefixed integer overflows")]
    Overflow,
}

/// Decodes the integer whose `prefix_bits`-bit prefix (1..=8) is in the low
/// bits of `buf[0]`. The caller reads any flag bits above the prefix from
/// `buf[0]` itself. Returns the value and the number of bytes used.
pub fn decode(buf: &[u8], prefix_bits: u8) -> Result<(u64, usize), IntError> {
    debug_assert!((1..=8).contains(&prefix_bits));
    let mask = prefix_mask(prefix_bits);
    let first = *buf.first().ok_or(IntError::Incomplete)?;
    let mut value = u64::from(first & mask);
    if value < u64::from(mask) {
        return Ok((value, 1));
    }
    let mut shift = 0u32;
    for (i, &b) in buf.iter().enumerate().skip(1) {
        if i >= MAX_LEN {
            return Err(IntError::Overflow);
        }
        // shift <= 56 here, so `chunk << shift` < 2^63 and the sum < 2^64.
        let chunk = u64::from(b & 0x7f) << shift;
        value += chunk;
        if value > MAX {
            return Err(IntError::Overflow);
        }
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
        shift += 7;
    }
    Err(IntError::Incomplete)
}

/// Appends `value` with a `prefix_bits`-bit prefix (1..=8); `flags` supplies the
/// bits above the prefix in the first byte (bits inside the prefix are ignored).
/// Values above [`MAX`] are clamped (callers only encode in-memory lengths and
/// table indices, which never come close).
pub fn encode(value: u64, prefix_bits: u8, flags: u8, buf: &mut Vec<u8>) {
    debug_assert!((1..=8).contains(&prefix_bits));
    debug_assert!(value <= MAX);
    let value = value.min(MAX);
    let mask = prefix_mask(prefix_bits);
    let flags = flags & !mask;
    if value < u64::from(mask) {
        // Fits in the prefix: value < mask <= 255.
        buf.push(flags | value as u8);
        return;
    }
    buf.push(flags | mask);
    let mut rest = value - u64::from(mask);
    while rest >= 0x80 {
        buf.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    buf.push(rest as u8);
}

/// `2^prefix_bits - 1` as a byte, for `prefix_bits` in 1..=8.
#[inline]
fn prefix_mask(prefix_bits: u8) -> u8 {
    // 0xff >> 0 = 0xff for 8 bits; out-of-range inputs saturate rather than panic.
    0xffu8 >> 8u8.saturating_sub(prefix_bits.clamp(1, 8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(v: u64, n: u8, flags: u8) -> Vec<u8> {
        let mut b = Vec::new();
        encode(v, n, flags, &mut b);
        b
    }

    /// RFC 7541 Appendix C.1.1–C.1.3.
    #[test]
    fn rfc7541_c1_vectors() {
        assert_eq!(enc(10, 5, 0), [0x0a]);
        assert_eq!(decode(&[0x0a], 5), Ok((10, 1)));
        assert_eq!(enc(1337, 5, 0), [0x1f, 0x9a, 0x0a]);
        assert_eq!(decode(&[0x1f, 0x9a, 0x0a], 5), Ok((1337, 3)));
        assert_eq!(enc(42, 8, 0), [0x2a]);
        assert_eq!(decode(&[0x2a], 8), Ok((42, 1)));
    }

    /// Flag bits above the prefix are kept on encode and ignored on decode.
    #[test]
    fn flags_and_boundaries() {
        assert_eq!(enc(30, 5, 0xe0), [0xfe]);
        assert_eq!(enc(31, 5, 0xe0), [0xff, 0x00]);
        assert_eq!(decode(&[0xff, 0x00], 5), Ok((31, 2)));
        assert_eq!(enc(0, 1, 0xfe), [0xfe]);
        assert_eq!(enc(1, 1, 0x00), [0x01, 0x00]);
    }

    /// Truncated encodings are `Incomplete`, not a wrong value.
    #[test]
    fn incomplete() {
        assert_eq!(decode(&[], 5), Err(IntError::Incomplete));
        assert_eq!(decode(&[0x1f], 5), Err(IntError::Incomplete));
        assert_eq!(decode(&[0x1f, 0x9a], 5), Err(IntError::Incomplete));
    }

    /// Overflow protection: values above 2^62 - 1 and over-long encodings
    /// (including endless zero continuations) are refused.
    #[test]
    fn overflow_rejected() {
        let mut max = enc(MAX, 5, 0);
        assert_eq!(decode(&max, 5), Ok((MAX, max.len())));
        // MAX + 1: bump the first continuation group.
        max[1] += 1;
        assert_eq!(decode(&max, 5), Err(IntError::Overflow));
        let huge = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ];
        assert_eq!(decode(&huge, 8), Err(IntError::Overflow));
        let padded = [
            0x1f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
        ];
        assert_eq!(decode(&padded, 5), Err(IntError::Overflow));
        // Endless continuation bytes stop at MAX_LEN, never Incomplete forever.
        assert_eq!(decode(&[0xff; 64], 8), Err(IntError::Overflow));
    }

    proptest! {
        /// Every value up to 2^62 - 1 round-trips at every prefix width.
        #[test]
        fn roundtrip(v in 0..=MAX, n in 1u8..=8, flags: u8, extra in proptest::collection::vec(any::<u8>(), 0..3)) {
            let mut b = enc(v, n, flags);
            let len = b.len();
            prop_assert!(len <= MAX_LEN);
            prop_assert_eq!(b[0] & !prefix_mask(n), flags & !prefix_mask(n));
            b.extend_from_slice(&extra);
            prop_assert_eq!(decode(&b, n), Ok((v, len)));
        }

        /// Arbitrary bytes never panic and never claim more than was given.
        #[test]
        fn decode_total(b in proptest::collection::vec(any::<u8>(), 0..16), n in 1u8..=8) {
            if let Ok((v, len)) = decode(&b, n) {
                prop_assert!(len <= b.len() && v <= MAX);
            }
        }
    }
}
