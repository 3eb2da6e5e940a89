//! Field section encoding (RFC 9204 §4.5) without a dynamic table.
//!
//! Representations used, in order of preference for each field line:
//! 1. Indexed Field Line, static (§4.5.2) for an exact static-table match;
//! 2. Literal Field Line with Name Reference, static (§4.5.4) when only the
//!    name is in the static table;
//! 3. Literal Field Line with Literal Name (§4.5.6) otherwise.
//!
//! Strings are Huffman-coded (RFC 7541 §5.2) only when that is strictly
//! shorter. The prefix is always Required Insert Count 0, Base 0 (`00 00`).

use super::{HeaderField, huffman, prefix_int, static_table};

/// A field line to encode. `never_index` sets the `N` bit (RFC 9204 §4.5.4) and
/// forces a literal representation, so intermediaries keep the field out of
/// any dynamic table (e.g. credentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldLine<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
    pub never_index: bool,
}

impl<'a> From<(&'a [u8], &'a [u8])> for FieldLine<'a> {
    fn from((name, value): (&'a [u8], &'a [u8])) -> Self {
        Self {
            name,
            value,
            never_index: false,
        }
    }
}

impl<'a> From<(&'a str, &'a str)> for FieldLine<'a> {
    fn from((name, value): (&'a str, &'a str)) -> Self {
        Self::from((name.as_bytes(), value.as_bytes()))
    }
}

impl<'a> From<&'a HeaderField> for FieldLine<'a> {
    fn from(f: &'a HeaderField) -> Self {
        Self {
            name: &f.name,
            value: &f.value,
            never_index: f.never_index,
        }
    }
}

/// Appends an encoded field section (the payload of a HEADERS frame) to `buf`.
///
/// Names are written as given: the caller supplies lowercase names
/// (RFC 9114 §4.2); [`crate::message`] does so for typed heads. Encoding cannot
/// fail.
pub fn encode_field_section<'a, F>(fields: impl IntoIterator<Item = F>, buf: &mut Vec<u8>)
where
    F: Into<FieldLine<'a>>,
{
    // §4.5.1: Encoded Required Insert Count 0; Sign 0, Delta Base 0.
    buf.extend_from_slice(&[0x00, 0x00]);
    for line in fields {
        encode_line(line.into(), buf);
    }
}

fn encode_line(line: FieldLine<'_>, buf: &mut Vec<u8>) {
    let n_bit_name_ref = if line.never_index { 0x20 } else { 0 };
    match static_table::find(line.name, line.value) {
        static_table::Match::Exact(i) if !line.never_index => {
            // §4.5.2: 1 T=1 Index(6+).
            prefix_int::encode(u64::from(i), 6, 0xc0, buf);
        }
        static_table::Match::Exact(i) | static_table::Match::Name(i) => {
            // §4.5.4: 0 1 N T=1 Index(4+), then the value.
            prefix_int::encode(u64::from(i), 4, 0x50 | n_bit_name_ref, buf);
            put_string(line.value, 7, 0, buf);
        }
        static_table::Match::None => {
            // §4.5.6: 0 0 1 N H NameLength(3+), name, then the value.
            let n_bit = if line.never_index { 0x10 } else { 0 };
            put_string(line.name, 3, 0x20 | n_bit, buf);
            put_string(line.value, 7, 0, buf);
        }
    }
}

/// RFC 9204 §4.1.2 string literal: H flag at bit `prefix_bits`, length with a
/// `prefix_bits`-bit prefix, then the (possibly Huffman-coded) bytes. `flags`
/// carries the representation bits above the H flag.
fn put_string(s: &[u8], prefix_bits: u8, flags: u8, buf: &mut Vec<u8>) {
    let coded_len = huffman::encoded_len(s);
    if coded_len < s.len() {
        prefix_int::encode(
            coded_len as u64,
            prefix_bits,
            flags | (1 << prefix_bits),
            buf,
        );
        huffman::encode(s, buf);
    } else {
        prefix_int::encode(s.len() as u64, prefix_bits, flags, buf);
        buf.extend_from_slice(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc<'a>(fields: impl IntoIterator<Item = FieldLine<'a>>) -> Vec<u8> {
        let mut b = Vec::new();
        encode_field_section(fields, &mut b);
        b
    }

    #[test]
    fn chooses_representations() {
        // Exact match: indexed (`:method CONNECT` = 15).
        assert_eq!(enc([FieldLine::from((":method", "CONNECT"))]), [0, 0, 0xcf]);
        // Name match: literal with name reference, raw value (Huffman not shorter).
        assert_eq!(
            enc([FieldLine::from((":status", "2"))]),
            [0, 0, 0x5f, 0x09, 0x01, b'2']
        );
        // No match, Huffman-coded name and value (RFC 7541 C.4.3 strings).
        let b = enc([FieldLine::from(("custom-key", "custom-value"))]);
        assert_eq!(b[..4], [0, 0, 0x2f, 0x01]);
        assert_eq!(b[4..12], [0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f]);
        assert_eq!(b[12], 0x89);
        // Empty section.
        assert_eq!(enc([]), [0, 0]);
    }

    #[test]
    fn never_index_forces_literal_with_n_bit() {
        let line = FieldLine {
            name: b":method",
            value: b"GET",
            never_index: true,
        };
        // 01 N=1 T=1 Index 17 (15 + 2), then the raw value "GET".
        assert_eq!(enc([line]), [0, 0, 0x7f, 0x02, 0x03, b'G', b'E', b'T']);
        let line = FieldLine {
            name: b"x",
            value: b"y",
            never_index: true,
        };
        assert_eq!(enc([line]), [0, 0, 0x31, b'x', 0x01, b'y']);
    }
}
