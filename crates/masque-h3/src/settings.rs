//! HTTP/3 SETTINGS (RFC 9114 §7.2.4, RFC 9204 §5, RFC 9220 §3, RFC 9297 §2.1.1).

use bytes::BufMut;
use masque_proto::{reader::Reader, varint};

use crate::{error_code::Code, frame::FrameError};

pub mod id {
    pub const QPACK_MAX_TABLE_CAPACITY: u64 = 0x01;
    pub const MAX_FIELD_SECTION_SIZE: u64 = 0x06;
    pub const QPACK_BLOCKED_STREAMS: u64 = 0x07;
    /// RFC 9220 §3 / XC-05.
    pub const ENABLE_CONNECT_PROTOCOL: u64 = 0x08;
    /// RFC 9297 §2.1.1.
    pub const H3_DATAGRAM: u64 = 0x33;
}

/// The settings one endpoint advertised. Absent settings take their RFC defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub qpack_max_table_capacity: u64,
    pub qpack_blocked_streams: u64,
    /// `None` = unlimited (RFC 9114 §7.2.4.1 default).
    pub max_field_section_size: Option<u64>,
    pub enable_connect_protocol: bool,
    pub h3_datagram: bool,
}

impl Default for Settings {
    /// RFC defaults: what a peer that sends an empty SETTINGS frame means.
    fn default() -> Self {
        Self {
            qpack_max_table_capacity: 0,
            qpack_blocked_streams: 0,
            max_field_section_size: None,
            enable_connect_protocol: false,
            h3_datagram: false,
        }
    }
}

impl Settings {
    /// What masque sends: a zero-capacity QPACK table, extended CONNECT and HTTP
    /// datagrams enabled (R9297-10, R9297-14, XC-05).
    pub fn masque(max_field_section_size: u64) -> Self {
        Self {
            qpack_max_table_capacity: 0,
            qpack_blocked_streams: 0,
            max_field_section_size: Some(max_field_section_size),
            enable_connect_protocol: true,
            h3_datagram: true,
        }
    }

    /// Appends the SETTINGS payload (not the frame header). `grease` adds one
    /// reserved setting `0x1f * N + 0x21` (RFC 9114 §7.2.4.1) so peers stay tolerant.
    pub fn encode_payload<B: BufMut + ?Sized>(&self, grease: Option<(u64, u64)>, buf: &mut B) {
        let mut put = |k: u64, v: u64| {
            varint::put(k, buf);
            varint::put(v, buf);
        };
        put(id::QPACK_MAX_TABLE_CAPACITY, self.qpack_max_table_capacity);
        put(id::QPACK_BLOCKED_STREAMS, self.qpack_blocked_streams);
        if let Some(v) = self.max_field_section_size {
            put(id::MAX_FIELD_SECTION_SIZE, v);
        }
        put(
            id::ENABLE_CONNECT_PROTOCOL,
            u64::from(self.enable_connect_protocol),
        );
        put(id::H3_DATAGRAM, u64::from(self.h3_datagram));
        if let Some((n, v)) = grease {
            put(0x1f * (n % (1 << 50)) + 0x21, v);
        }
    }

    /// Decodes a SETTINGS payload. Errors are connection errors H3_SETTINGS_ERROR
    /// (or H3_FRAME_ERROR for a truncated payload).
    pub fn decode(payload: &[u8]) -> Result<Self, FrameError> {
        let mut s = Settings::default();
        let mut r = Reader::new(payload);
        // Identifiers seen so far; a duplicate is H3_SETTINGS_ERROR (§7.2.4).
        let mut seen: Vec<u64> = Vec::new();
        while !r.is_empty() {
            let truncated = |_| FrameError::new(Code::FRAME_ERROR, "truncated SETTINGS");
            let k = r.varint().map_err(truncated)?;
            let v = r.varint().map_err(truncated)?;
            if seen.contains(&k) {
                return Err(err("duplicate setting"));
            }
            if seen.len() < 64 {
                seen.push(k);
            }
            match k {
                // §7.2.4.1: HTTP/2 settings identifiers are reserved.
                0x00 | 0x02..=0x05 => return Err(err("HTTP/2 setting identifier")),
                id::QPACK_MAX_TABLE_CAPACITY => s.qpack_max_table_capacity = v,
                id::QPACK_BLOCKED_STREAMS => s.qpack_blocked_streams = v,
                id::MAX_FIELD_SECTION_SIZE => s.max_field_section_size = Some(v),
                // XC-01: only 0 and 1 are legal.
                id::ENABLE_CONNECT_PROTOCOL => s.enable_connect_protocol = bool_setting(v)?,
                // R9297-11: only 0 and 1 are legal.
                id::H3_DATAGRAM => s.h3_datagram = bool_setting(v)?,
                // Unknown and GREASE settings MUST be ignored.
                _ => {}
            }
        }
        Ok(s)
    }
}

fn err(reason: &'static str) -> FrameError {
    FrameError::new(Code::SETTINGS_ERROR, reason)
}

fn bool_setting(v: u64) -> Result<bool, FrameError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(err("boolean setting outside 0..=1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Spec README vector 4; R9297-10, XC-05.
    #[test]
    fn r9297_10_vector4_decodes() {
        let s = Settings::decode(&[0x33, 1, 8, 1]).unwrap();
        assert!(s.h3_datagram && s.enable_connect_protocol);
    }

    /// R9297-11: H3_DATAGRAM=2 is H3_SETTINGS_ERROR (vector 4 invalid form).
    #[test]
    fn r9297_11_datagram_setting_must_be_boolean() {
        assert_eq!(
            Settings::decode(&[0x33, 2]).unwrap_err().code,
            Code::SETTINGS_ERROR
        );
    }

    /// XC-01: ENABLE_CONNECT_PROTOCOL other than 0/1 is refused.
    #[test]
    fn xc01_connect_protocol_boolean() {
        assert_eq!(
            Settings::decode(&[8, 2]).unwrap_err().code,
            Code::SETTINGS_ERROR
        );
    }

    #[test]
    fn duplicates_h2_ids_truncation_grease() {
        assert_eq!(
            Settings::decode(&[1, 0, 1, 0]).unwrap_err().code,
            Code::SETTINGS_ERROR
        );
        assert_eq!(
            Settings::decode(&[2, 0]).unwrap_err().code,
            Code::SETTINGS_ERROR
        );
        assert_eq!(
            Settings::decode(&[0x33]).unwrap_err().code,
            Code::FRAME_ERROR
        );
        // GREASE id 0x21 with any value is ignored.
        assert_eq!(Settings::decode(&[0x21, 7]).unwrap(), Settings::default());
    }

    proptest! {
        #[test]
        fn roundtrip(cap in 0u64..1 << 30, blocked in 0u64..100, mfs in proptest::option::of(0u64..1 << 40),
                     ecp: bool, dg: bool, g in proptest::option::of((0u64..1000, 0u64..1 << 30))) {
            let s = Settings { qpack_max_table_capacity: cap, qpack_blocked_streams: blocked,
                max_field_section_size: mfs, enable_connect_protocol: ecp, h3_datagram: dg };
            let mut b = Vec::new();
            s.encode_payload(g, &mut b);
            prop_assert_eq!(Settings::decode(&b).unwrap(), s);
        }

        #[test]
        fn arbitrary_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Settings::decode(&b);
        }
    }
}
