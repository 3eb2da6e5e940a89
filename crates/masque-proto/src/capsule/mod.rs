//! RFC 9297 §3 Capsule Protocol: capsule framing, type codepoints and errors.
//!
//! A capsule is `Type (i) | Length (i) | Value (Length bytes)` (RFC 9297 §3.2). This
//! module encodes capsules ([`encode`], [`encode_header`]; for DATAGRAM capsules
//! [`encode_datagram_capsule`] and the in-place [`write_datagram_capsule_header`])
//! and decodes a capsule stream incrementally ([`CapsuleDecoder`]). It only frames: the value of each
//! capsule type is parsed by the module that owns the type (`datagram`, `bind`,
//! `tcp`, `connect_ip`).
//!
//! Unknown capsule types, including GREASE ([`is_grease`]), are handed to the caller
//! like any other capsule. RFC 9297 §3.2 requires an endpoint to skip them silently
//! (R9297-17) and an intermediary to forward them unchanged (R9297-16); which of the
//! two applies is the session's decision, so the decoder never drops them itself,
//! except that under [`OversizePolicy::Report`] a capsule over the size bound is
//! reported ([`Frame::Oversize`]) and its value discarded as it arrives, unbuffered.
//!
//! Every [`CapsuleError`] is a Capsule Protocol error, handled as a malformed message
//! (R9297-22): HTTP/3 stream error `H3_MESSAGE_ERROR`, HTTP/2 stream error
//! `PROTOCOL_ERROR`, HTTP/1.x close the connection.

mod datagram_encode;
mod decoder;

pub use datagram_encode::{
    HeaderRoomError, encode_datagram_capsule, max_datagram_capsule_header_len,
    write_datagram_capsule_header,
};
pub use decoder::{CapsuleDecoder, Frame, OVERSIZE_PREFIX_LEN, OversizePolicy};

use bytes::{BufMut, Bytes};

use crate::varint;

/// Default bound on the value of the capsule being received: 64 KiB (R9297-34).
pub const DEFAULT_MAX_CAPSULE_SIZE: usize = 64 * 1024;

/// Longest possible capsule header: two 8-byte varints.
pub const MAX_HEADER_LEN: usize = 16;

/// DATAGRAM capsule, RFC 9297 §3.5 (R9297-31).
pub const DATAGRAM: u64 = 0x00;
/// ADDRESS_ASSIGN, RFC 9484 §4.7.1.
pub const ADDRESS_ASSIGN: u64 = 0x01;
/// ADDRESS_REQUEST, RFC 9484 §4.7.2.
pub const ADDRESS_REQUEST: u64 = 0x02;
/// ROUTE_ADVERTISEMENT, RFC 9484 §4.7.3.
pub const ROUTE_ADVERTISEMENT: u64 = 0x03;
/// COMPRESSION_ASSIGN, connect-udp-listen-13 §3.1.
pub const COMPRESSION_ASSIGN: u64 = 0x11;
/// COMPRESSION_ACK, connect-udp-listen-13 §3.2.
pub const COMPRESSION_ACK: u64 = 0x12;
/// COMPRESSION_CLOSE, connect-udp-listen-13 §3.3.
pub const COMPRESSION_CLOSE: u64 = 0x13;
/// connect-tcp DATA, interop codepoint of draft -11 ("DATA-08"). The final value is
/// not assigned yet; see [`crate::tcp::DRAFT_11`].
pub const TCP_DATA_DRAFT_11: u64 = 0x2028_d7f0;
/// connect-tcp FINAL_DATA, interop codepoint of draft -11 ("FINAL_DATA-08").
pub const TCP_FINAL_DATA_DRAFT_11: u64 = 0x2028_d7f1;
/// connect-tcp DATA, interop codepoint of the editor's copy toward -12 ("DATA-12").
pub const TCP_DATA_DRAFT_12: u64 = 0x2028_d7f2;
/// connect-tcp FINAL_DATA, interop codepoint of the editor's copy toward -12.
pub const TCP_FINAL_DATA_DRAFT_12: u64 = 0x2028_d7f3;

/// Reserved GREASE capsule types `0x29 * N + 0x17` (R9297-38). They carry no meaning
/// and are treated as unknown types (R9297-17).
pub const fn is_grease(ty: u64) -> bool {
    ty >= 0x17 && (ty - 0x17).is_multiple_of(0x29)
}

/// The `N`th GREASE capsule type, for senders exercising their peers (R9297-38).
/// `None` when the type would not fit in a varint.
pub const fn grease_type(n: u64) -> Option<u64> {
    match n.checked_mul(0x29) {
        Some(v) => match v.checked_add(0x17) {
            Some(t) if t <= varint::MAX => Some(t),
            _ => None,
        },
        None => None,
    }
}

/// HTTP/3 and HTTP/2 error codes the sans-IO errors of this crate map to (spec
/// README vector 16; RFC 9114 §8.1, RFC 9297 §5.2, RFC 9113 §7). `masque-h3` owns
/// the full HTTP/3 code table; these are the ones the protocol layer reports.
pub mod error_code {
    /// H3_GENERAL_PROTOCOL_ERROR.
    pub const H3_GENERAL_PROTOCOL_ERROR: u64 = 0x101;
    /// H3_REQUEST_CANCELLED: client gives up on a tunnel (ERR-04).
    pub const H3_REQUEST_CANCELLED: u64 = 0x10c;
    /// H3_MESSAGE_ERROR: malformed message, including every capsule error (R9297-22).
    pub const H3_MESSAGE_ERROR: u64 = 0x10e;
    /// H3_CONNECT_ERROR: TCP behind connect-tcp reset or closed abnormally (CTCP-21).
    pub const H3_CONNECT_ERROR: u64 = 0x10f;
    /// H3_DATAGRAM_ERROR: malformed HTTP/3 Datagram (R9297-03, R9297-04).
    pub const H3_DATAGRAM_ERROR: u64 = 0x33;
    /// HTTP/2 PROTOCOL_ERROR: malformed message, including capsule errors (R9297-22).
    pub const H2_PROTOCOL_ERROR: u32 = 0x1;
    /// HTTP/2 CANCEL.
    pub const H2_CANCEL: u32 = 0x8;
    /// HTTP/2 CONNECT_ERROR (CTCP-21, ERR-11).
    pub const H2_CONNECT_ERROR: u32 = 0xa;
}

/// One decoded capsule. `value` shares the receive buffer when the whole capsule
/// arrived in one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capsule {
    pub ty: u64,
    pub value: Bytes,
}

impl Capsule {
    /// True for a type that has no meaning (R9297-38).
    pub fn is_grease(&self) -> bool {
        is_grease(self.ty)
    }

    /// Appends the wire form of this capsule (lossless re-encoding for forwarding,
    /// R9297-16).
    pub fn encode<B: BufMut + ?Sized>(&self, buf: &mut B) {
        encode(self.ty, &self.value, buf);
    }

    /// Length of the wire form.
    pub fn encoded_len(&self) -> usize {
        header_len(self.ty, self.value.len()) + self.value.len()
    }
}

/// A Capsule Protocol error. All of them are malformed/incomplete-message errors
/// (R9297-22); see [`CapsuleError::H3_CODE`] and [`CapsuleError::H2_CODE`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapsuleError {
    /// The stream ended inside a capsule: partial Type, Length or Value (R9297-24).
    #[error("stream ended inside a capsule")]
    Truncated,
    /// The Length exceeds the receiver's bound (R9297-34).
    #[error("capsule type {ty:#x} has length {len}, above the {max}-byte limit")]
    TooLarge { ty: u64, len: u64, max: usize },
    /// The value does not hold exactly the fields its type defines, or the capsule
    /// is not allowed at this point of the stream (R9297-23).
    #[error("malformed capsule type {ty:#x}: {reason}")]
    Malformed { ty: u64, reason: &'static str },
}

impl CapsuleError {
    /// HTTP/3 stream error code for every capsule error (R9297-22).
    pub const H3_CODE: u64 = error_code::H3_MESSAGE_ERROR;
    /// HTTP/2 stream error code for every capsule error (R9297-22).
    pub const H2_CODE: u32 = error_code::H2_PROTOCOL_ERROR;
}

/// Number of bytes of the header for a capsule of type `ty` with a `len`-byte value.
pub const fn header_len(ty: u64, len: usize) -> usize {
    varint::encoded_len(ty) + varint::encoded_len(len as u64)
}

/// Appends the header (Type, Length) of a capsule whose value of `len` bytes the
/// caller writes next, so a payload can be sent without copying it into a capsule
/// buffer. `ty` must be at most 2^62-1 (the constants here and types taken from a
/// decoded capsule are); see [`varint::put`].
pub fn encode_header<B: BufMut + ?Sized>(ty: u64, len: usize, buf: &mut B) {
    varint::put(ty, buf);
    varint::put(len as u64, buf);
}

/// Appends a whole capsule (RFC 9297 §3.2).
pub fn encode<B: BufMut + ?Sized>(ty: u64, value: &[u8], buf: &mut B) {
    encode_header(ty, value.len(), buf);
    buf.put_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(ty: u64, value: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        encode(ty, value, &mut b);
        b
    }

    /// Spec README vector 7 (R9297-31): DATAGRAM capsule, Context ID 0, payload 01 02 03.
    #[test]
    fn r9297_31_datagram_capsule_vector() {
        assert_eq!(
            enc(DATAGRAM, &[0, 1, 2, 3]),
            [0x00, 0x04, 0x00, 0x01, 0x02, 0x03]
        );
        let mut h = Vec::new();
        encode_header(DATAGRAM, 4, &mut h);
        assert_eq!(h, [0x00, 0x04]);
        assert_eq!(header_len(DATAGRAM, 4), 2);
    }

    /// Spec README vector 8 (R9297-17, R9297-38): GREASE types 0x17 and 0x40.
    #[test]
    fn r9297_38_grease_types() {
        assert!(is_grease(0x17));
        assert!(is_grease(0x40));
        assert!(is_grease(0x69));
        assert!(is_grease(0x92));
        assert!(!is_grease(0x00));
        assert!(!is_grease(0x16));
        assert!(!is_grease(0x18));
        assert!(!is_grease(COMPRESSION_ASSIGN));
        assert!(!is_grease(TCP_DATA_DRAFT_11));
        assert_eq!(grease_type(0), Some(0x17));
        assert_eq!(grease_type(1), Some(0x40));
        assert_eq!(grease_type(u64::MAX), None);
        assert_eq!(enc(0x17, &[0xab, 0xcd]), [0x17, 0x02, 0xab, 0xcd]);
        assert_eq!(enc(0x40, &[]), [0x40, 0x40, 0x00]);
    }

    /// Spec README vector 16 (as constants): error codes and their varint forms.
    #[test]
    fn err_vector16_error_codes() {
        let cases = [
            (error_code::H3_MESSAGE_ERROR, &[0x41, 0x0e][..]),
            (error_code::H3_CONNECT_ERROR, &[0x41, 0x0f][..]),
            (error_code::H3_REQUEST_CANCELLED, &[0x41, 0x0c][..]),
            (error_code::H3_GENERAL_PROTOCOL_ERROR, &[0x41, 0x01][..]),
            (error_code::H3_DATAGRAM_ERROR, &[0x33][..]),
        ];
        for (code, wire) in cases {
            let mut b = Vec::new();
            varint::encode(code, &mut b).unwrap();
            assert_eq!(b, wire);
        }
        // HTTP/2 RST_STREAM CONNECT_ERROR on stream 1.
        let mut f = vec![0x00, 0x00, 0x04, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01];
        f.extend_from_slice(&error_code::H2_CONNECT_ERROR.to_be_bytes());
        assert_eq!(f, [0, 0, 4, 3, 0, 0, 0, 0, 1, 0, 0, 0, 0x0a]);
        assert_eq!(CapsuleError::H3_CODE, 0x10e);
        assert_eq!(CapsuleError::H2_CODE, 0x1);
    }

    proptest! {
        /// Header length matches what is written; the capsule round-trips.
        #[test]
        fn encode_roundtrip(ty in 0..=varint::MAX, value in proptest::collection::vec(any::<u8>(), 0..300)) {
            let c = Capsule { ty, value: Bytes::from(value) };
            let mut b = Vec::new();
            c.encode(&mut b);
            prop_assert_eq!(b.len(), c.encoded_len());
            let mut d = CapsuleDecoder::new();
            d.push_slice(&b);
            prop_assert_eq!(d.next_capsule(), Ok(Some(c)));
            prop_assert_eq!(d.finish(), Ok(()));
        }

        #[test]
        fn grease_formula(n in 0u64..(1 << 50)) {
            let t = grease_type(n).unwrap();
            prop_assert!(is_grease(t));
            prop_assert!(!is_grease(t + 1));
        }
    }
}
