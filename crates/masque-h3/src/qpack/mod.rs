//! QPACK (RFC 9204) with a zero-capacity dynamic table.
//!
//! We advertise `SETTINGS_QPACK_MAX_TABLE_CAPACITY = 0` and
//! `SETTINGS_QPACK_BLOCKED_STREAMS = 0`, so the peer's encoder can only use the
//! static table and literals, and ours never touches a dynamic table:
//!
//! * [`decode_field_section`] (and the zero-copy [`decode_field_section_shared`])
//!   / [`encode_field_section`]: field sections carried
//!   in HEADERS frames (RFC 9204 §4.5), with Huffman-coded strings (RFC 7541 §5.2)
//!   and the `SETTINGS_MAX_FIELD_SECTION_SIZE` limit (RFC 9114 §4.2.2).
//! * [`EncoderStreamReader`] / [`DecoderStreamReader`]: the peer's encoder
//!   (type 0x02) and decoder (type 0x03) unidirectional streams (RFC 9204 §4.2–4.4).
//!
//! Every failure maps to an HTTP/3 error code through `code()`; QPACK errors are
//! connection errors (RFC 9204 §6), except an oversized field section, which
//! the caller may answer per message (see [`DecodeError::code`]).

mod decoder;
mod encoder;
pub mod huffman;
pub mod prefix_int;
pub mod static_table;
mod streams;

pub use decoder::{DecodeError, decode_field_section, decode_field_section_shared};
pub use encoder::{FieldLine, encode_field_section};
pub use streams::{DecoderStreamReader, EncoderStreamReader, StreamError};

use bytes::Bytes;

/// Per-field overhead counted by `SETTINGS_MAX_FIELD_SECTION_SIZE` (RFC 9114 §4.2.2,
/// from RFC 7541 §4.1).
pub const FIELD_OVERHEAD: u64 = 32;

/// One decoded field line. Names and values are raw bytes: validation against
/// HTTP rules is the job of [`crate::message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    pub name: Bytes,
    pub value: Bytes,
    /// The `N` ("never index") bit of a literal representation (RFC 9204 §4.5.4):
    /// an intermediary re-encoding this field must keep it literal. Always false
    /// for indexed static entries.
    pub never_index: bool,
}

impl HeaderField {
    pub fn new(name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            never_index: false,
        }
    }

    /// Size counted against `SETTINGS_MAX_FIELD_SECTION_SIZE`: name length +
    /// value length + 32 (RFC 9114 §4.2.2).
    pub fn size(&self) -> u64 {
        field_size(self.name.len(), self.value.len())
    }
}

/// `name_len + value_len + 32`, saturating.
pub(crate) fn field_size(name_len: usize, value_len: usize) -> u64 {
    (name_len as u64)
        .saturating_add(value_len as u64)
        .saturating_add(FIELD_OVERHEAD)
}
