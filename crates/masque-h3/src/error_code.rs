//! HTTP/3 error codes (RFC 9114 §8.1, RFC 9204 §6, RFC 9297 §5.2). ERR-01..ERR-08.

/// An HTTP/3 application error code as carried in RESET_STREAM, STOP_SENDING and
/// CONNECTION_CLOSE (type 0x1d).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Code(pub u64);

impl Code {
    pub const NO_ERROR: Code = Code(0x100);
    pub const GENERAL_PROTOCOL_ERROR: Code = Code(0x101);
    pub const INTERNAL_ERROR: Code = Code(0x102);
    pub const STREAM_CREATION_ERROR: Code = Code(0x103);
    pub const CLOSED_CRITICAL_STREAM: Code = Code(0x104);
    pub const FRAME_UNEXPECTED: Code = Code(0x105);
    pub const FRAME_ERROR: Code = Code(0x106);
    pub const EXCESSIVE_LOAD: Code = Code(0x107);
    pub const ID_ERROR: Code = Code(0x108);
    pub const SETTINGS_ERROR: Code = Code(0x109);
    pub const MISSING_SETTINGS: Code = Code(0x10a);
    pub const REQUEST_REJECTED: Code = Code(0x10b);
    pub const REQUEST_CANCELLED: Code = Code(0x10c);
    pub const REQUEST_INCOMPLETE: Code = Code(0x10d);
    pub const MESSAGE_ERROR: Code = Code(0x10e);
    pub const CONNECT_ERROR: Code = Code(0x10f);
    pub const VERSION_FALLBACK: Code = Code(0x110);
    /// RFC 9204 §6.
    pub const QPACK_DECOMPRESSION_FAILED: Code = Code(0x200);
    pub const QPACK_ENCODER_STREAM_ERROR: Code = Code(0x201);
    pub const QPACK_DECODER_STREAM_ERROR: Code = Code(0x202);
    /// RFC 9297 §5.2.
    pub const DATAGRAM_ERROR: Code = Code(0x33);

    /// ERR-02: reserved GREASE codes are `0x1f * N + 0x21`.
    pub const fn is_grease(self) -> bool {
        self.0 >= 0x21 && (self.0 - 0x21).is_multiple_of(0x1f)
    }

    /// ERR-01: unknown codes are treated as H3_NO_ERROR by a receiver.
    pub fn known_or_no_error(self) -> Code {
        match self.0 {
            0x100..=0x110 | 0x200..=0x202 | 0x33 => self,
            _ => Code::NO_ERROR,
        }
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            0x100 => "H3_NO_ERROR",
            0x101 => "H3_GENERAL_PROTOCOL_ERROR",
            0x102 => "H3_INTERNAL_ERROR",
            0x103 => "H3_STREAM_CREATION_ERROR",
            0x104 => "H3_CLOSED_CRITICAL_STREAM",
            0x105 => "H3_FRAME_UNEXPECTED",
            0x106 => "H3_FRAME_ERROR",
            0x107 => "H3_EXCESSIVE_LOAD",
            0x108 => "H3_ID_ERROR",
            0x109 => "H3_SETTINGS_ERROR",
            0x10a => "H3_MISSING_SETTINGS",
            0x10b => "H3_REQUEST_REJECTED",
            0x10c => "H3_REQUEST_CANCELLED",
            0x10d => "H3_REQUEST_INCOMPLETE",
            0x10e => "H3_MESSAGE_ERROR",
            0x10f => "H3_CONNECT_ERROR",
            0x110 => "H3_VERSION_FALLBACK",
            0x200 => "QPACK_DECOMPRESSION_FAILED",
            0x201 => "QPACK_ENCODER_STREAM_ERROR",
            0x202 => "QPACK_DECODER_STREAM_ERROR",
            0x33 => "H3_DATAGRAM_ERROR",
            _ => "unknown",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (0x{:x})", self.name(), self.0)
    }
}

impl From<Code> for quinn::VarInt {
    fn from(c: Code) -> Self {
        // All codes above are < 2^62; unknown values from peers came from a VarInt.
        quinn::VarInt::from_u64(c.0).unwrap_or(quinn::VarInt::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spec README vector 16: error codes as varints.
    #[test]
    fn err_vector16_encodings() {
        let enc = |c: Code| {
            let mut b = Vec::new();
            masque_proto::varint::encode(c.0, &mut b).unwrap();
            b
        };
        assert_eq!(enc(Code::MESSAGE_ERROR), [0x41, 0x0e]);
        assert_eq!(enc(Code::CONNECT_ERROR), [0x41, 0x0f]);
        assert_eq!(enc(Code::REQUEST_CANCELLED), [0x41, 0x0c]);
        assert_eq!(enc(Code::GENERAL_PROTOCOL_ERROR), [0x41, 0x01]);
        assert_eq!(enc(Code::DATAGRAM_ERROR), [0x33]);
    }

    /// ERR-01 / ERR-02.
    #[test]
    fn err01_err02_unknown_and_grease() {
        assert!(Code(0x21).is_grease());
        assert!(Code(0x40).is_grease());
        assert!(!Code(0x100).is_grease());
        assert_eq!(Code(0x40).known_or_no_error(), Code::NO_ERROR);
        assert_eq!(Code(0x10e).known_or_no_error(), Code::MESSAGE_ERROR);
    }
}
