//! The HPACK/QPACK static Huffman code (RFC 7541 §5.2 and Appendix B; used by
//! RFC 9204 §4.1.2).
//!
//! Hand-written rather than taken from `httlib-huffman` 0.3: that crate's
//! decoder checks only the numeric value of the trailing bits, so it accepts
//! padding that is not a prefix of EOS (e.g. `0x18`, "a" followed by `000`),
//! which RFC 7541 §5.2 requires a decoder to reject. Its code table is correct
//! and is used in a test as an independent cross-check of ours.
//!
//! The code is canonical: codes are assigned in order of (length, symbol), so
//! the 257 code lengths below fully determine it. Encoding and decoding tables
//! are derived from them at compile time.

/// Bit length of each symbol's code (0..=255, then EOS = 256): RFC 7541 Appendix B.
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0x00
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 0x10
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // 0x20 ' '..'/'
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // 0x30 '0'..'?'
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // 0x40 '@'..'O'
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 0x50 'P'..'_'
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // 0x60 '`'..'o'
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 0x70 'p'..0x7f
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 0x80
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 0x90
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 0xa0
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 0xb0
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 0xc0
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 0xd0
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 0xe0
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 0xf0
    30, // EOS
];

const EOS: u16 = 256;
const MAX_CODE_LEN: usize = 30;

/// Canonical code of each symbol, right-aligned in the low `CODE_LENGTHS[s]` bits.
const CODES: [u32; 257] = build_codes();

/// Per code length: first code, number of codes, and where the symbols of that
/// length start in `SYMBOLS`.
const FIRST: [u32; MAX_CODE_LEN + 1] = build_tables().0;
const COUNT: [u32; MAX_CODE_LEN + 1] = build_tables().1;
const OFFSET: [u16; MAX_CODE_LEN + 1] = build_tables().2;
/// Symbols ordered by (code length, symbol), i.e. by code.
const SYMBOLS: [u16; 257] = build_tables().3;

const fn build_codes() -> [u32; 257] {
    let mut codes = [0u32; 257];
    let mut code = 0u32;
    let mut len = 1;
    while len <= MAX_CODE_LEN {
        let mut sym = 0;
        while sym < 257 {
            if CODE_LENGTHS[sym] as usize == len {
                codes[sym] = code;
                code += 1;
            }
            sym += 1;
        }
        code <<= 1;
        len += 1;
    }
    codes
}

#[allow(clippy::type_complexity)]
const fn build_tables() -> (
    [u32; MAX_CODE_LEN + 1],
    [u32; MAX_CODE_LEN + 1],
    [u16; MAX_CODE_LEN + 1],
    [u16; 257],
) {
    let mut first = [0u32; MAX_CODE_LEN + 1];
    let mut count = [0u32; MAX_CODE_LEN + 1];
    let mut offset = [0u16; MAX_CODE_LEN + 1];
    let mut symbols = [0u16; 257];
    let mut code = 0u32;
    let mut next = 0usize;
    let mut len = 1;
    while len <= MAX_CODE_LEN {
        first[len] = code;
        offset[len] = next as u16;
        let mut sym = 0;
        while sym < 257 {
            if CODE_LENGTHS[sym] as usize == len {
                symbols[next] = sym as u16;
                next += 1;
                count[len] += 1;
                code += 1;
            }
            sym += 1;
        }
        code <<= 1;
        len += 1;
    }
    (first, count, offset, symbols)
}

/// Why a Huffman-coded string could not be decoded (RFC 7541 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HuffmanError {
    /// The string contains the EOS symbol.
    #[error("Huffman string contains EOS")]
    Eos,
    /// The padding is longer than 7 bits or is not a prefix of EOS (all ones).
    #[error("invalid Huffman padding")]
    InvalidPadding,
    /// The decoded string would exceed the caller's limit.
    #[error("decoded Huffman string exceeds the limit")]
    TooLong,
}

/// Length in bytes of the Huffman encoding of `src`.
pub fn encoded_len(src: &[u8]) -> usize {
    let bits: usize = src
        .iter()
        .map(|&b| usize::from(CODE_LENGTHS[usize::from(b)]))
        .sum();
    bits.div_ceil(8)
}

/// Appends the Huffman encoding of `src`, padded with the most significant
/// bits of EOS (ones).
pub fn encode(src: &[u8], dst: &mut Vec<u8>) {
    dst.reserve(encoded_len(src));
    // Invariant: only the low `nbits` (< 8 between symbols) bits of `acc` matter.
    let mut acc: u64 = 0;
    let mut nbits: u32 = 0;
    for &b in src {
        let len = u32::from(CODE_LENGTHS[usize::from(b)]);
        acc = (acc << len) | u64::from(CODES[usize::from(b)]);
        nbits += len;
        while nbits >= 8 {
            nbits -= 8;
            dst.push((acc >> nbits) as u8);
        }
        acc &= (1u64 << nbits) - 1;
    }
    if nbits > 0 {
        let pad = 8 - nbits;
        dst.push(((acc << pad) | ((1u64 << pad) - 1)) as u8);
    }
}

/// Decodes `src`, appending at most `limit` bytes to `dst`. Output never
/// exceeds `src.len() * 8 / 5` bytes (the shortest code is 5 bits), so memory
/// is bounded by the input even with no limit.
pub fn decode(src: &[u8], limit: usize, dst: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let start = dst.len();
    dst.reserve((src.len() * 8 / 5).min(limit));
    let mut code: u32 = 0;
    let mut len: usize = 0;
    for &byte in src {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            // The code is complete (Kraft sum 1), so every 30-bit string ends
            // a symbol; the check only keeps the indexing below in bounds.
            if len > MAX_CODE_LEN {
                return Err(HuffmanError::Eos);
            }
            let index = code.wrapping_sub(FIRST[len]);
            if index < COUNT[len] {
                let sym = SYMBOLS[usize::from(OFFSET[len]) + index as usize];
                if sym == EOS {
                    return Err(HuffmanError::Eos);
                }
                if dst.len() - start >= limit {
                    return Err(HuffmanError::TooLong);
                }
                dst.push(sym as u8);
                code = 0;
                len = 0;
            }
        }
    }
    // RFC 7541 §5.2: at most 7 bits of padding, all ones (a prefix of EOS).
    if len > 7 || code != (1u32 << len) - 1 {
        return Err(HuffmanError::InvalidPadding);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn dec(src: &[u8]) -> Result<Vec<u8>, HuffmanError> {
        let mut out = Vec::new();
        decode(src, usize::MAX, &mut out).map(|()| out)
    }

    /// Huffman-coded strings from RFC 7541 Appendix C.4 (requests) and C.6
    /// (responses).
    const RFC7541_VECTORS: &[(&str, &str)] = &[
        ("www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"),
        ("no-cache", "a8eb 1064 9cbf"),
        ("custom-key", "25a8 49e9 5ba9 7d7f"),
        ("custom-value", "25a8 49e9 5bb8 e8b4 bf"),
        ("302", "6402"),
        ("private", "aec3 771a 4b"),
        (
            "Mon, 21 Oct 2013 20:13:21 GMT",
            "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
        ),
        (
            "https://www.example.com",
            "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
        ),
        ("307", "640e ff"),
        (
            "Mon, 21 Oct 2013 20:13:22 GMT",
            "d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff",
        ),
        ("gzip", "9bd9 ab"),
        (
            "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        ),
    ];

    #[test]
    fn rfc7541_c4_c6_vectors() {
        for (text, coded) in RFC7541_VECTORS {
            let coded = hex(coded);
            let mut out = Vec::new();
            encode(text.as_bytes(), &mut out);
            assert_eq!(out, coded, "encode {text}");
            assert_eq!(encoded_len(text.as_bytes()), coded.len());
            assert_eq!(dec(&coded).unwrap(), text.as_bytes(), "decode {text}");
        }
    }

    /// Our table equals the one in `httlib-huffman` (an independent transcription
    /// of RFC 7541 Appendix B), and the code is complete and prefix-free.
    #[test]
    fn table_matches_httlib_and_is_complete() {
        for (sym, (len, code)) in httlib_huffman::encoder::table::ENCODE_TABLE
            .iter()
            .enumerate()
        {
            assert_eq!(
                (CODE_LENGTHS[sym], CODES[sym]),
                (*len, *code),
                "symbol {sym}"
            );
        }
        let kraft: u64 = CODE_LENGTHS.iter().map(|&l| 1u64 << (30 - l)).sum();
        assert_eq!(kraft, 1 << 30);
        assert_eq!(CODES[usize::from(EOS)], (1 << 30) - 1);
    }

    /// RFC 7541 §5.2: padding longer than 7 bits is an error.
    #[test]
    fn padding_longer_than_seven_bits() {
        assert_eq!(dec(&[0xff]), Err(HuffmanError::InvalidPadding));
        // 'a' (00011) then 11 one-bits.
        assert_eq!(dec(&[0x1f, 0xff]), Err(HuffmanError::InvalidPadding));
    }

    /// RFC 7541 §5.2: padding that is not the MSBs of EOS is an error.
    /// (`httlib-huffman` 0.3.4 accepts both of these.)
    #[test]
    fn padding_not_eos_prefix() {
        assert_eq!(dec(&[0x1f]).unwrap(), b"a");
        assert_eq!(dec(&[0x18]), Err(HuffmanError::InvalidPadding)); // a + 000
        assert_eq!(dec(&[0x19]), Err(HuffmanError::InvalidPadding)); // a + 001
        assert_eq!(dec(&[0x1a]), Err(HuffmanError::InvalidPadding)); // a + 010
    }

    /// RFC 7541 §5.2: an explicit EOS symbol is an error.
    #[test]
    fn eos_in_string() {
        // EOS (30 ones) followed by two padding ones.
        assert_eq!(dec(&[0xff, 0xff, 0xff, 0xff]), Err(HuffmanError::Eos));
        // 'a' then EOS then padding.
        assert_eq!(dec(&[0x1f, 0xff, 0xff, 0xff, 0xff]), Err(HuffmanError::Eos));
    }

    #[test]
    fn empty_and_limit() {
        assert_eq!(dec(&[]).unwrap(), b"");
        let mut out = Vec::new();
        assert_eq!(
            decode(&hex("6402"), 2, &mut out),
            Err(HuffmanError::TooLong)
        );
        out.clear();
        assert_eq!(decode(&hex("6402"), 3, &mut out), Ok(()));
        assert_eq!(out, b"302");
    }

    proptest! {
        #[test]
        fn roundtrip(s in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut coded = Vec::new();
            encode(&s, &mut coded);
            prop_assert_eq!(coded.len(), encoded_len(&s));
            prop_assert_eq!(dec(&coded).unwrap(), s);
        }

        #[test]
        fn decode_total(b in proptest::collection::vec(any::<u8>(), 0..64), limit in 0usize..100) {
            let mut out = Vec::new();
            let _ = decode(&b, limit, &mut out);
            prop_assert!(out.len() <= limit && out.len() <= b.len() * 8 / 5);
        }
    }
}
