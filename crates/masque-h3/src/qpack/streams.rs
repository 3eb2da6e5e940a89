//! Readers for the peer's QPACK encoder stream (type 0x02) and decoder stream
//! (type 0x03), RFC 9204 §4.2–§4.4, given our zero-capacity dynamic table.
//!
//! Both are incremental: push each chunk as it arrives from the stream. Every
//! instruction that is valid for us is a single prefixed integer, so at most
//! [`prefix_int::MAX_LEN`] bytes are ever buffered between chunks. Closing either
//! stream is H3_CLOSED_CRITICAL_STREAM (RFC 9204 §4.2); that is the caller's
//! check, since only it sees the stream end.

use super::prefix_int::{self, IntError, MAX_LEN};
use crate::Code;

/// A protocol error on the peer's encoder or decoder stream; always a
/// connection error (RFC 9204 §4.3, §4.4, §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// Set Dynamic Table Capacity above our `SETTINGS_QPACK_MAX_TABLE_CAPACITY`
    /// of 0 (RFC 9204 §4.3.1).
    #[error("encoder stream: dynamic table capacity {0} exceeds our maximum of 0")]
    CapacityExceeded(u64),
    /// Insert with Name Reference / with Literal Name (RFC 9204 §4.3.2, §4.3.3):
    /// no entry fits in a zero-capacity table.
    #[error("encoder stream: insert into a zero-capacity dynamic table")]
    Insert,
    /// Duplicate (RFC 9204 §4.3.4): there is no entry to duplicate.
    #[error("encoder stream: duplicate in an empty dynamic table")]
    Duplicate,
    /// Section Acknowledgment (RFC 9204 §4.4.1) for a stream on which we never
    /// sent a field section with a non-zero Required Insert Count (we never do).
    #[error("decoder stream: unexpected Section Acknowledgment for stream {0}")]
    SectionAcknowledgment(u64),
    /// Insert Count Increment (RFC 9204 §4.4.3) of 0, or beyond the entries we
    /// inserted (none).
    #[error("decoder stream: Insert Count Increment of {0} with an empty dynamic table")]
    InsertCountIncrement(u64),
    /// A prefixed integer above 2^62 - 1 or over-long (RFC 7541 §5.1).
    #[error("{} stream: prefixed integer overflow", if *.encoder_stream { "encoder" } else { "decoder" })]
    IntegerOverflow { encoder_stream: bool },
}

impl StreamError {
    /// QPACK_ENCODER_STREAM_ERROR (0x201) or QPACK_DECODER_STREAM_ERROR (0x202),
    /// both connection errors (RFC 9204 §6).
    pub fn code(&self) -> Code {
        match self {
            StreamError::CapacityExceeded(_)
            | StreamError::Insert
            | StreamError::Duplicate
            | StreamError::IntegerOverflow {
                encoder_stream: true,
            } => Code::QPACK_ENCODER_STREAM_ERROR,
            StreamError::SectionAcknowledgment(_)
            | StreamError::InsertCountIncrement(_)
            | StreamError::IntegerOverflow {
                encoder_stream: false,
            } => Code::QPACK_DECODER_STREAM_ERROR,
        }
    }
}

/// Bytes of one instruction not yet complete (at most one prefixed integer).
#[derive(Debug, Default, Clone)]
struct Pending {
    buf: [u8; MAX_LEN],
    len: usize,
}

impl Pending {
    /// Adds `b` to the current instruction; returns `(first byte, value)` when
    /// the integer with `prefix_bits` completes.
    fn push(&mut self, b: u8, prefix_bits: u8) -> Result<Option<(u8, u64)>, IntError> {
        // `len < MAX_LEN` on entry (see the Incomplete arm below); checked
        // anyway so that misuse cannot panic.
        let Some(slot) = self.buf.get_mut(self.len) else {
            return Err(IntError::Overflow);
        };
        *slot = b;
        self.len += 1;
        match prefix_int::decode(&self.buf[..self.len], prefix_bits) {
            Ok((v, _)) => {
                let first = self.buf[0];
                self.len = 0;
                Ok(Some((first, v)))
            }
            Err(IntError::Incomplete) if self.len < MAX_LEN => Ok(None),
            Err(_) => Err(IntError::Overflow),
        }
    }

    fn first(&self) -> Option<u8> {
        (self.len > 0).then_some(self.buf[0])
    }
}

/// Reads the peer's encoder stream (type 0x02) after the stream type byte.
#[derive(Debug, Default, Clone)]
pub struct EncoderStreamReader {
    pending: Pending,
    failed: Option<StreamError>,
}

impl EncoderStreamReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes `chunk`. Set Dynamic Table Capacity 0 is accepted (any number
    /// of times); anything else is a [`StreamError`] with code
    /// QPACK_ENCODER_STREAM_ERROR. Errors are sticky: later calls return the
    /// same error.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), StreamError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let result = self.parse(chunk);
        self.failed = result.err();
        result
    }

    fn parse(&mut self, chunk: &[u8]) -> Result<(), StreamError> {
        for &b in chunk {
            let first = self.pending.first().unwrap_or(b);
            match first {
                // §4.3.2 Insert with Name Reference: 1 T Index(6+).
                // §4.3.3 Insert with Literal Name: 0 1 H NameLen(5+).
                0x40..=0xff => return Err(StreamError::Insert),
                // §4.3.1 Set Dynamic Table Capacity: 0 0 1 Capacity(5+).
                0x20..=0x3f => {}
                // §4.3.4 Duplicate: 0 0 0 Index(5+).
                _ => return Err(StreamError::Duplicate),
            }
            let done = self
                .pending
                .push(b, 5)
                .map_err(|_| StreamError::IntegerOverflow {
                    encoder_stream: true,
                })?;
            if let Some((_, capacity)) = done
                && capacity > 0
            {
                return Err(StreamError::CapacityExceeded(capacity));
            }
        }
        Ok(())
    }
}

/// Reads the peer's decoder stream (type 0x03) after the stream type byte.
#[derive(Debug, Default, Clone)]
pub struct DecoderStreamReader {
    pending: Pending,
    cancellations: u64,
    failed: Option<StreamError>,
}

impl DecoderStreamReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes `chunk`. Stream Cancellation (RFC 9204 §4.4.2) is accepted and
    /// needs no action: we hold no dynamic-table references for any stream.
    /// Section Acknowledgment and Insert Count Increment are errors with code
    /// QPACK_DECODER_STREAM_ERROR. Errors are sticky: later calls return the
    /// same error.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), StreamError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let result = self.parse(chunk);
        self.failed = result.err();
        result
    }

    fn parse(&mut self, chunk: &[u8]) -> Result<(), StreamError> {
        for &b in chunk {
            let first = self.pending.first().unwrap_or(b);
            let prefix_bits = match first {
                0x80..=0xff => 7, // §4.4.1 Section Acknowledgment: 1 Stream ID(7+).
                _ => 6, // §4.4.2 Stream Cancellation 01, §4.4.3 Insert Count Increment 00.
            };
            let done =
                self.pending
                    .push(b, prefix_bits)
                    .map_err(|_| StreamError::IntegerOverflow {
                        encoder_stream: false,
                    })?;
            let Some((first, value)) = done else {
                continue;
            };
            match first {
                0x80..=0xff => return Err(StreamError::SectionAcknowledgment(value)),
                0x40..=0x7f => self.cancellations = self.cancellations.saturating_add(1),
                _ => return Err(StreamError::InsertCountIncrement(value)),
            }
        }
        Ok(())
    }

    /// Number of Stream Cancellation instructions received (for metrics).
    pub fn cancellations(&self) -> u64 {
        self.cancellations
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 9204 §4.3.1: capacity 0 is fine, split across chunks too.
    #[test]
    fn encoder_stream_capacity_zero_ok() {
        let mut r = EncoderStreamReader::new();
        assert_eq!(r.push(&[0x20, 0x20]), Ok(()));
        assert_eq!(r.push(&[]), Ok(()));
        assert_eq!(r.push(&[0x20]), Ok(()));
    }

    /// RFC 9204 §4.3.1: capacity above our advertised 0 → QPACK_ENCODER_STREAM_ERROR.
    #[test]
    fn encoder_stream_capacity_above_zero_rejected() {
        let mut r = EncoderStreamReader::new();
        assert_eq!(r.push(&[0x21]), Err(StreamError::CapacityExceeded(1)));
        // 4096 = 31 + 4065 → 0x3f 0xe1 0x1f, split over three chunks.
        let mut r = EncoderStreamReader::new();
        assert_eq!(r.push(&[0x3f]), Ok(()));
        assert_eq!(r.push(&[0xe1]), Ok(()));
        let e = r.push(&[0x1f]).unwrap_err();
        assert_eq!(e, StreamError::CapacityExceeded(4096));
        assert_eq!(e.code(), Code::QPACK_ENCODER_STREAM_ERROR);
    }

    /// RFC 9204 §4.3.2–§4.3.4: any insert or duplicate → QPACK_ENCODER_STREAM_ERROR,
    /// detected on the first byte.
    #[test]
    fn encoder_stream_inserts_rejected() {
        for (b, e) in [
            (0xc0, StreamError::Insert),    // name reference, static
            (0x80, StreamError::Insert),    // name reference, dynamic
            (0x43, StreamError::Insert),    // literal name
            (0x00, StreamError::Duplicate), // duplicate
        ] {
            let mut r = EncoderStreamReader::new();
            assert_eq!(r.push(&[0x20, b]), Err(e), "{b:#x}");
            assert_eq!(e.code(), Code::QPACK_ENCODER_STREAM_ERROR);
        }
    }

    #[test]
    fn encoder_stream_integer_overflow() {
        let mut r = EncoderStreamReader::new();
        let mut bytes = vec![0x3f];
        bytes.extend_from_slice(&[0x80; 12]);
        let e = r.push(&bytes).unwrap_err();
        assert_eq!(
            e,
            StreamError::IntegerOverflow {
                encoder_stream: true
            }
        );
        assert_eq!(e.code(), Code::QPACK_ENCODER_STREAM_ERROR);
    }

    /// RFC 9204 §4.4.2: Stream Cancellation is accepted, also when split.
    #[test]
    fn decoder_stream_cancellation_ok() {
        let mut r = DecoderStreamReader::new();
        // Stream 4, then stream 300 = 63 + 237 → 0x7f 0xed 0x01 split.
        assert_eq!(r.push(&[0x44, 0x7f]), Ok(()));
        assert_eq!(r.push(&[0xed]), Ok(()));
        assert_eq!(r.push(&[0x01]), Ok(()));
        assert_eq!(r.cancellations(), 2);
    }

    /// RFC 9204 §4.4.1: we never send a non-zero Required Insert Count, so any
    /// Section Acknowledgment → QPACK_DECODER_STREAM_ERROR.
    #[test]
    fn decoder_stream_section_ack_rejected() {
        let mut r = DecoderStreamReader::new();
        let e = r.push(&[0x84]).unwrap_err();
        assert_eq!(e, StreamError::SectionAcknowledgment(4));
        assert_eq!(e.code(), Code::QPACK_DECODER_STREAM_ERROR);
    }

    /// RFC 9204 §4.4.3: Insert Count Increment (0 or more) with an empty table
    /// → QPACK_DECODER_STREAM_ERROR.
    #[test]
    fn decoder_stream_insert_count_increment_rejected() {
        for (bytes, v) in [(&[0x01][..], 1), (&[0x00], 0), (&[0x3f, 0x01], 64)] {
            let mut r = DecoderStreamReader::new();
            let e = r.push(bytes).unwrap_err();
            assert_eq!(e, StreamError::InsertCountIncrement(v));
            assert_eq!(e.code(), Code::QPACK_DECODER_STREAM_ERROR);
        }
    }

    #[test]
    fn decoder_stream_integer_overflow() {
        let mut r = DecoderStreamReader::new();
        let e = r
            .push(&[
                0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ])
            .unwrap_err();
        assert_eq!(
            e,
            StreamError::IntegerOverflow {
                encoder_stream: false
            }
        );
        assert_eq!(e.code(), Code::QPACK_DECODER_STREAM_ERROR);
    }

    proptest! {
        /// Chunking never changes the outcome, and arbitrary input never panics.
        #[test]
        fn chunking_invariant(b in proptest::collection::vec(any::<u8>(), 0..64), split in 0usize..64) {
            let split = split.min(b.len());
            let mut whole_e = EncoderStreamReader::new();
            let mut parts_e = EncoderStreamReader::new();
            let we = whole_e.push(&b);
            let pe = parts_e.push(&b[..split]).and_then(|()| parts_e.push(&b[split..]));
            prop_assert_eq!(we, pe);
            let mut whole_d = DecoderStreamReader::new();
            let mut parts_d = DecoderStreamReader::new();
            let wd = whole_d.push(&b);
            let pd = parts_d.push(&b[..split]).and_then(|()| parts_d.push(&b[split..]));
            prop_assert_eq!(wd, pd);
            prop_assert_eq!(whole_d.cancellations(), parts_d.cancellations());
        }
    }
}
