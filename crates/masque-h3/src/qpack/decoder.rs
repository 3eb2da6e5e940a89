//! Field section decoding (RFC 9204 §4.5) against a zero-capacity dynamic table.
//!
//! With capacity 0 the only valid Required Insert Count is 0, and every
//! reference into the dynamic table (relative or post-base) is an error:
//! RFC 9204 §2.2.3 and §4.5.1.1 make it a connection error of type
//! QPACK_DECOMPRESSION_FAILED. Because no table state exists, the decoder is a
//! pure function of one block: it can stop at the first error (including an
//! oversized section) without desynchronising anything.
//!
//! Memory is bounded by the input: at most one field per input byte, literal
//! strings are zero-copy [`Bytes`] slices of the block, static entries are
//! `'static`, and only Huffman-coded strings allocate (at most 8/5 of their
//! coded length, and never beyond the remaining field-section budget).

use bytes::Bytes;

use super::huffman::{self, HuffmanError};
use super::prefix_int::{self, IntError};
use super::{FIELD_OVERHEAD, HeaderField, static_table};
use crate::Code;

/// Why a field section could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Non-zero Required Insert Count, or an indexed / name-reference field line
    /// that points into the (empty) dynamic table, relative or post-base
    /// (RFC 9204 §4.5.1.1, §4.5.2–§4.5.5).
    #[error("dynamic table reference")]
    DynamicTableReference,
    /// Sign bit set in the prefix while Required Insert Count is 0: Base would
    /// be negative (RFC 9204 §4.5.1.2).
    #[error("negative Base in field section prefix")]
    NegativeBase,
    /// Static table index >= 99 (RFC 9204 §3.1, Appendix A).
    #[error("static table index {0} out of range")]
    InvalidStaticIndex(u64),
    /// The block ends inside a representation or string.
    #[error("field section truncated")]
    Truncated,
    /// A prefixed integer exceeds 2^62 - 1 or is over-long (RFC 7541 §5.1).
    #[error("prefixed integer overflow")]
    IntegerOverflow,
    /// Bad Huffman padding or an EOS symbol in a string (RFC 7541 §5.2).
    #[error("invalid Huffman string: {0}")]
    Huffman(HuffmanError),
    /// The decoded section exceeds our `SETTINGS_MAX_FIELD_SECTION_SIZE`
    /// (RFC 9114 §4.2.2).
    #[error("field section exceeds the limit of {limit} bytes")]
    FieldSectionTooLarge { limit: u64 },
}

impl DecodeError {
    /// The HTTP/3 error code for this failure.
    ///
    /// Encoding errors are connection errors QPACK_DECOMPRESSION_FAILED
    /// (RFC 9204 §6). [`DecodeError::FieldSectionTooLarge`] is not: RFC 9114
    /// §4.2.2 lets a server answer 431 and a client discard the response, so
    /// it is a stream-level condition; if the caller resets the stream
    /// instead, we use H3_EXCESSIVE_LOAD (our choice).
    pub fn code(&self) -> Code {
        match self {
            DecodeError::FieldSectionTooLarge { .. } => Code::EXCESSIVE_LOAD,
            _ => Code::QPACK_DECOMPRESSION_FAILED,
        }
    }

    /// Whether the caller must close the connection (RFC 9204 §6) rather than
    /// handle this per stream.
    pub fn is_connection_error(&self) -> bool {
        !matches!(self, DecodeError::FieldSectionTooLarge { .. })
    }
}

impl From<IntError> for DecodeError {
    fn from(e: IntError) -> Self {
        match e {
            IntError::Incomplete => DecodeError::Truncated,
            IntError::Overflow => DecodeError::IntegerOverflow,
        }
    }
}

/// Decodes one encoded field section (the payload of a HEADERS frame).
///
/// Copies `block` once into a shared buffer; see [`decode_field_section_shared`]
/// to avoid even that when the caller already holds [`Bytes`].
pub fn decode_field_section(
    block: &[u8],
    max_field_section_size: u64,
) -> Result<Vec<HeaderField>, DecodeError> {
    decode_field_section_shared(&Bytes::copy_from_slice(block), max_field_section_size)
}

/// [`decode_field_section`] on a shared buffer: raw (non-Huffman) literal
/// names and values are returned as slices of `block`, without copying.
///
/// `max_field_section_size` is the `SETTINGS_MAX_FIELD_SECTION_SIZE` we
/// advertised (`u64::MAX` for unlimited): the sum over fields of name length +
/// value length + 32 may not exceed it (RFC 9114 §4.2.2).
///
/// The `N` bit of literal representations is returned in
/// [`HeaderField::never_index`] (RFC 9204 §4.5.4).
pub fn decode_field_section_shared(
    block: &Bytes,
    max_field_section_size: u64,
) -> Result<Vec<HeaderField>, DecodeError> {
    let mut c = Cursor { block, pos: 0 };

    // RFC 9204 §4.5.1.1: Encoded Required Insert Count, 8-bit prefix. With
    // MaxEntries = 0, any non-zero value is invalid.
    if c.int(8)? != 0 {
        return Err(DecodeError::DynamicTableReference);
    }
    // RFC 9204 §4.5.1.2: Sign bit and Delta Base, 7-bit prefix. With Required
    // Insert Count 0, S = 1 gives Base = -DeltaBase - 1 < 0. With S = 0 the
    // Base only matters for dynamic references, all of which we refuse.
    let sign = c.peek()? & 0x80 != 0;
    c.int(7)?;
    if sign {
        return Err(DecodeError::NegativeBase);
    }

    let mut fields = Vec::with_capacity(block.len().min(16));
    let mut total: u64 = 0;
    while !c.is_empty() {
        // Budget left for this field's name + value.
        let budget = max_field_section_size
            .saturating_sub(total)
            .saturating_sub(FIELD_OVERHEAD);
        let field = c.field_line(budget, max_field_section_size)?;
        total = total.saturating_add(field.size());
        if total > max_field_section_size {
            return Err(DecodeError::FieldSectionTooLarge {
                limit: max_field_section_size,
            });
        }
        fields.push(field);
    }
    Ok(fields)
}

struct Cursor<'a> {
    block: &'a Bytes,
    pos: usize,
}

impl Cursor<'_> {
    fn is_empty(&self) -> bool {
        self.pos >= self.block.len()
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.block
            .get(self.pos)
            .copied()
            .ok_or(DecodeError::Truncated)
    }

    fn int(&mut self, prefix_bits: u8) -> Result<u64, DecodeError> {
        let rest = self.block.get(self.pos..).unwrap_or_default();
        let (v, n) = prefix_int::decode(rest, prefix_bits)?;
        self.pos += n;
        Ok(v)
    }

    /// One field line (RFC 9204 §4.5.2–§4.5.6), chosen by its leading bits.
    fn field_line(&mut self, budget: u64, limit: u64) -> Result<HeaderField, DecodeError> {
        let first = self.peek()?;
        if first & 0x80 != 0 {
            // §4.5.2 Indexed Field Line: 1 T Index(6+).
            if first & 0x40 == 0 {
                return Err(DecodeError::DynamicTableReference);
            }
            let (name, value) = static_entry(self.int(6)?)?;
            Ok(HeaderField {
                name: Bytes::from_static(name),
                value: Bytes::from_static(value),
                never_index: false,
            })
        } else if first & 0x40 != 0 {
            // §4.5.4 Literal Field Line with Name Reference: 0 1 N T Index(4+).
            if first & 0x10 == 0 {
                return Err(DecodeError::DynamicTableReference);
            }
            let never_index = first & 0x20 != 0;
            let (name, _) = static_entry(self.int(4)?)?;
            let value_budget = budget.saturating_sub(name.len() as u64);
            let value = self.string(7, value_budget, limit)?;
            Ok(HeaderField {
                name: Bytes::from_static(name),
                value,
                never_index,
            })
        } else if first & 0x20 != 0 {
            // §4.5.6 Literal Field Line with Literal Name: 0 0 1 N H NameLen(3+).
            let never_index = first & 0x10 != 0;
            let name = self.string(3, budget, limit)?;
            let value_budget = budget.saturating_sub(name.len() as u64);
            let value = self.string(7, value_budget, limit)?;
            Ok(HeaderField {
                name,
                value,
                never_index,
            })
        } else {
            // §4.5.3 Indexed Field Line with Post-Base Index (0001) and
            // §4.5.5 Literal Field Line with Post-Base Name Reference (0000):
            // both address the dynamic table.
            Err(DecodeError::DynamicTableReference)
        }
    }

    /// A string literal (RFC 9204 §4.1.2): H flag just above a
    /// `prefix_bits`-bit length, then the bytes. Fails with
    /// `FieldSectionTooLarge { limit }` if the decoded string exceeds `budget`.
    fn string(&mut self, prefix_bits: u8, budget: u64, limit: u64) -> Result<Bytes, DecodeError> {
        let huffman_coded = self.peek()? & (1 << prefix_bits) != 0;
        let len = usize::try_from(self.int(prefix_bits)?).map_err(|_| DecodeError::Truncated)?;
        let end = self.pos.checked_add(len).ok_or(DecodeError::Truncated)?;
        if end > self.block.len() {
            return Err(DecodeError::Truncated);
        }
        let start = self.pos;
        self.pos = end;
        let too_large = DecodeError::FieldSectionTooLarge { limit };
        if huffman_coded {
            let budget = usize::try_from(budget).unwrap_or(usize::MAX);
            let mut out = Vec::new();
            huffman::decode(&self.block[start..end], budget, &mut out).map_err(|e| match e {
                HuffmanError::TooLong => too_large,
                e => DecodeError::Huffman(e),
            })?;
            Ok(Bytes::from(out))
        } else if len as u64 > budget {
            Err(too_large)
        } else {
            Ok(self.block.slice(start..end))
        }
    }
}

fn static_entry(index: u64) -> Result<(&'static [u8], &'static [u8]), DecodeError> {
    static_table::get(index).ok_or(DecodeError::InvalidStaticIndex(index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qpack::{FieldLine, encode_field_section, field_size};
    use proptest::prelude::*;

    fn dec(bytes: &[u8]) -> Result<Vec<HeaderField>, DecodeError> {
        decode_field_section(bytes, u64::MAX)
    }

    fn pairs(fields: &[HeaderField]) -> Vec<(&[u8], &[u8])> {
        fields.iter().map(|f| (&f.name[..], &f.value[..])).collect()
    }

    /// RFC 9204 Appendix B.1: Literal Field Line with Name Reference to static
    /// entry 1 (`:path`), value "/index.html", no dynamic table.
    #[test]
    fn rfc9204_b1_literal_with_name_reference() {
        let block = [
            0x00, 0x00, 0x51, 0x0b, 0x2f, 0x69, 0x6e, 0x64, 0x65, 0x78, 0x2e, 0x68, 0x74, 0x6d,
            0x6c,
        ];
        let f = dec(&block).unwrap();
        assert_eq!(pairs(&f), [(&b":path"[..], &b"/index.html"[..])]);
        assert!(!f[0].never_index);
        // Our encoder picks the same representation but Huffman-codes the
        // value (shorter than the 11 raw bytes); it decodes to the same field.
        let mut out = Vec::new();
        encode_field_section([(&b":path"[..], &b"/index.html"[..])], &mut out);
        assert_eq!(out[..3], [0x00, 0x00, 0x51]);
        assert_eq!(
            usize::from(out[3]),
            0x80 | huffman::encoded_len(b"/index.html")
        );
        assert_eq!(pairs(&dec(&out).unwrap()), pairs(&f));
    }

    /// Indexed static field lines (RFC 9204 §4.5.2) for every static entry,
    /// and the encoder's exact-match choice is that one-byte/two-byte form.
    #[test]
    fn static_table_round_trip() {
        for (i, (n, v)) in static_table::ENTRIES.iter().enumerate() {
            let mut block = Vec::new();
            encode_field_section([(*n, *v)], &mut block);
            let mut expect = vec![0x00, 0x00];
            prefix_int::encode(i as u64, 6, 0xc0, &mut expect);
            assert_eq!(block, expect, "index {i}");
            assert_eq!(pairs(&dec(&block).unwrap()), [(*n, *v)], "index {i}");
        }
    }

    /// Literal with literal name, raw and Huffman (C.4 "custom-key"), N bit kept.
    #[test]
    fn literal_name_forms_and_n_bit() {
        // Raw name "foo", raw value "bar", N = 1: 0011 0011 'foo' 0x03 'bar'.
        let f = dec(&[0x00, 0x00, 0x33, b'f', b'o', b'o', 0x03, b'b', b'a', b'r']).unwrap();
        assert_eq!(pairs(&f), [(&b"foo"[..], &b"bar"[..])]);
        assert!(f[0].never_index);
        // 0010 1111 0x01: N = 0, H = 1, name length 7 + 1 = 8: Huffman
        // "custom-key" (RFC 7541 C.4.3), then Huffman "custom-value" (H, length 9).
        let mut block = vec![0x00, 0x00, 0x2f, 0x01];
        block.extend_from_slice(&[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f]);
        block.push(0x89);
        block.extend_from_slice(&[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf]);
        let f = dec(&block).unwrap();
        assert_eq!(pairs(&f), [(&b"custom-key"[..], &b"custom-value"[..])]);
        assert!(!f[0].never_index);
        // N bit on a static name reference: 0111 0001 = N=1, T=1, index 1.
        let f = dec(&[0x00, 0x00, 0x71, 0x01, b'/']).unwrap();
        assert_eq!(pairs(&f), [(&b":path"[..], &b"/"[..])]);
        assert!(f[0].never_index);
    }

    #[test]
    fn empty_section_is_valid_but_missing_prefix_is_not() {
        assert_eq!(dec(&[0x00, 0x00]).unwrap(), []);
        assert_eq!(dec(&[]), Err(DecodeError::Truncated));
        assert_eq!(dec(&[0x00]), Err(DecodeError::Truncated));
        // Non-zero Delta Base with S = 0 is harmless without dynamic references.
        assert_eq!(
            pairs(&dec(&[0x00, 0x05, 0xd1]).unwrap()),
            [(&b":method"[..], &b"GET"[..])]
        );
    }

    /// RFC 9204 §4.5.1.1: Required Insert Count must be 0 (capacity 0).
    #[test]
    fn rejects_nonzero_required_insert_count() {
        assert_eq!(dec(&[0x01, 0x00]), Err(DecodeError::DynamicTableReference));
        assert_eq!(
            dec(&[0xff, 0x01, 0x00]),
            Err(DecodeError::DynamicTableReference)
        );
        assert_eq!(
            DecodeError::DynamicTableReference.code(),
            Code::QPACK_DECOMPRESSION_FAILED
        );
        assert!(DecodeError::DynamicTableReference.is_connection_error());
    }

    /// RFC 9204 §4.5.1.2: S = 1 with Required Insert Count 0 is a negative Base.
    #[test]
    fn rejects_negative_base() {
        assert_eq!(dec(&[0x00, 0x80]), Err(DecodeError::NegativeBase));
    }

    /// RFC 9204 §4.5.2 (T = 0), §4.5.3, §4.5.4 (T = 0), §4.5.5: every dynamic
    /// or post-base reference is refused.
    #[test]
    fn rejects_dynamic_references() {
        for line in [
            &[0x80][..],         // indexed, dynamic, relative index 0
            &[0x10],             // indexed post-base index 0
            &[0x40, 0x00],       // literal with dynamic name reference
            &[0x00, 0x00],       // literal with post-base name reference
            &[0x08, 0x01, b'x'], // post-base name reference with N bit
        ] {
            let mut block = vec![0x00, 0x00];
            block.extend_from_slice(line);
            assert_eq!(
                dec(&block),
                Err(DecodeError::DynamicTableReference),
                "{line:02x?}"
            );
        }
    }

    #[test]
    fn rejects_static_index_out_of_range() {
        assert_eq!(
            dec(&[0x00, 0x00, 0xff, 0x24]),
            Err(DecodeError::InvalidStaticIndex(99))
        );
        assert_eq!(
            dec(&[0x00, 0x00, 0x5f, 0x54, 0x00]),
            Err(DecodeError::InvalidStaticIndex(99))
        );
    }

    #[test]
    fn rejects_truncation() {
        // Literal claims 5 value bytes, has 2.
        assert_eq!(
            dec(&[0x00, 0x00, 0x51, 0x05, b'/', b'a']),
            Err(DecodeError::Truncated)
        );
        // Index integer cut short.
        assert_eq!(dec(&[0x00, 0x00, 0xff]), Err(DecodeError::Truncated));
        // Literal name with no value length.
        assert_eq!(dec(&[0x00, 0x00, 0x21, b'a']), Err(DecodeError::Truncated));
    }

    /// RFC 7541 §5.1 overflow protection, in every integer position.
    #[test]
    fn rejects_integer_overflow() {
        let over = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        let mut ric = over.to_vec();
        ric.push(0x00);
        assert_eq!(dec(&ric), Err(DecodeError::IntegerOverflow));
        let mut index = vec![0x00, 0x00];
        index.extend_from_slice(&over);
        assert_eq!(dec(&index), Err(DecodeError::IntegerOverflow));
        let mut len = vec![0x00, 0x00, 0x51, 0x7f];
        len.extend_from_slice(&over[1..]);
        assert_eq!(dec(&len), Err(DecodeError::IntegerOverflow));
        // A huge but representable length is truncation, not an allocation.
        let huge = [0x00, 0x00, 0x51, 0x7f, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert_eq!(dec(&huge), Err(DecodeError::Truncated));
    }

    /// RFC 7541 §5.2 via RFC 9204 §4.1.2: bad padding and EOS are decoding errors.
    #[test]
    fn rejects_bad_huffman() {
        // :path value Huffman "a" with padding 000 (0x18), and 8 bits of padding.
        assert_eq!(
            dec(&[0x00, 0x00, 0x51, 0x81, 0x18]),
            Err(DecodeError::Huffman(HuffmanError::InvalidPadding))
        );
        assert_eq!(
            dec(&[0x00, 0x00, 0x51, 0x82, 0x1f, 0xff]),
            Err(DecodeError::Huffman(HuffmanError::InvalidPadding))
        );
        assert_eq!(
            dec(&[0x00, 0x00, 0x51, 0x84, 0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::Huffman(HuffmanError::Eos))
        );
        // Huffman-coded literal name with bad padding.
        assert_eq!(
            dec(&[0x00, 0x00, 0x29, 0x18, 0x00]),
            Err(DecodeError::Huffman(HuffmanError::InvalidPadding))
        );
    }

    /// RFC 9114 §4.2.2: name + value + 32 per field, summed, against the limit.
    #[test]
    fn enforces_max_field_section_size() {
        let mut block = Vec::new();
        encode_field_section(
            [(&b"foo"[..], &b"bar"[..]), (&b":path"[..], &b"/x"[..])],
            &mut block,
        );
        let block = Bytes::from(block);
        let exact = field_size(3, 3) + field_size(5, 2);
        assert_eq!(decode_field_section_shared(&block, exact).unwrap().len(), 2);
        let err = decode_field_section_shared(&block, exact - 1).unwrap_err();
        assert_eq!(err, DecodeError::FieldSectionTooLarge { limit: exact - 1 });
        assert!(!err.is_connection_error());
        assert_eq!(err.code(), Code::EXCESSIVE_LOAD);
        // An indexed static entry counts too (`:method GET` = 7 + 3 + 32 = 42).
        let get = Bytes::from_static(&[0x00, 0x00, 0xd1]);
        assert!(decode_field_section_shared(&get, 42).is_ok());
        assert!(decode_field_section_shared(&get, 41).is_err());
        // A long Huffman value stops decoding at the budget rather than
        // allocating it all.
        let mut big = Vec::new();
        let value = vec![b'a'; 10_000];
        encode_field_section([(&b"x"[..], &value[..])], &mut big);
        let err = decode_field_section_shared(&Bytes::from(big), 100).unwrap_err();
        assert_eq!(err, DecodeError::FieldSectionTooLarge { limit: 100 });
    }

    /// Literal strings that are not Huffman-coded share the block's buffer.
    #[test]
    fn raw_literals_are_zero_copy() {
        let block = Bytes::from_static(&[0x00, 0x00, 0x23, b'z', b'z', b'z', 0x02, b'q', b'q']);
        let f = decode_field_section_shared(&block, u64::MAX).unwrap();
        let range = block.as_ptr_range();
        assert!(range.contains(&f[0].name.as_ptr()) && range.contains(&f[0].value.as_ptr()));
    }

    fn field_name() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::string::string_regex("[a-z0-9!#$%&'*+.^_`|~-]{1,24}")
                .unwrap()
                .prop_map(String::into_bytes),
            proptest::sample::select(
                static_table::ENTRIES
                    .iter()
                    .map(|(n, _)| n.to_vec())
                    .collect::<Vec<_>>()
            ),
        ]
    }

    fn field_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::sample::select(
                static_table::ENTRIES
                    .iter()
                    .map(|(_, v)| v.to_vec())
                    .collect::<Vec<_>>()
            ),
        ]
    }

    proptest! {
        /// encode → decode returns the same fields, in order, N bit included.
        #[test]
        fn encode_decode_round_trip(
            fields in proptest::collection::vec((field_name(), field_value(), any::<bool>()), 0..20)
        ) {
            let mut block = Vec::new();
            encode_field_section(
                fields.iter().map(|(n, v, ni)| FieldLine {
                    name: n, value: v, never_index: *ni,
                }),
                &mut block,
            );
            let got = dec(&block).unwrap();
            prop_assert_eq!(got.len(), fields.len());
            for (g, (n, v, ni)) in got.iter().zip(&fields) {
                prop_assert_eq!(&g.name[..], &n[..]);
                prop_assert_eq!(&g.value[..], &v[..]);
                // Exact static matches are sent indexed unless never-indexed.
                prop_assert_eq!(g.never_index, *ni);
            }
        }

        /// Arbitrary input never panics and never yields more fields than bytes.
        #[test]
        fn decode_arbitrary_never_panics(
            b in proptest::collection::vec(any::<u8>(), 0..256),
            limit in prop_oneof![Just(u64::MAX), 0u64..2000],
        ) {
            if let Ok(fields) = decode_field_section_shared(&Bytes::from(b.clone()), limit) {
                prop_assert!(fields.len() <= b.len());
                prop_assert!(fields.iter().map(HeaderField::size).sum::<u64>() <= limit);
            }
        }

        /// Same, with a valid prefix so the field-line parser is exercised.
        #[test]
        fn decode_arbitrary_lines_never_panics(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut block = vec![0x00, 0x00];
            block.extend_from_slice(&b);
            let _ = dec(&block);
        }
    }
}
