//! HTTP Datagrams (RFC 9297 §2) and the connect-udp datagram payload (RFC 9298 §5).
//!
//! An HTTP/3 Datagram is `Quarter Stream ID (i) | HTTP Datagram Payload`; for
//! connect-udp, connect-ip and connect-udp-bind the payload is
//! `Context ID (i) | rest`. Parsers take [`Bytes`] and return slices of it (no copy).
//! Encoders write only the prefix into the caller's buffer, so a sender builds one
//! contiguous datagram with one allocation: reserve [`prefix_len`] plus the payload
//! length, write the prefix, append the payload.

use bytes::{Buf, BufMut, Bytes};

use crate::capsule::{self, error_code};
use crate::varint;

/// Largest Quarter Stream ID: 2^60 - 1 (R9297-03).
pub const MAX_QUARTER_STREAM_ID: u64 = (1 << 60) - 1;

/// Context ID 0: the rest of the payload is a UDP payload (R9298-33, R9298-39).
pub const UDP_CONTEXT_ID: u64 = 0;

/// Largest UDP payload with Context ID 0: 65535 - 8 (R9298-40, R9298-41).
pub const MAX_UDP_PAYLOAD: usize = 65527;

/// What the session must do about a [`DatagramError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// HTTP/3 connection error with this code (R9297-03, R9297-04).
    CloseConnection { h3_code: u64 },
    /// Abort the request stream (R9298-41). RFC 9298 fixes no code; we use
    /// H3_MESSAGE_ERROR / PROTOCOL_ERROR / close (spec digest error map).
    AbortStream { h3_code: u64 },
    /// Drop the datagram and count it (our choice for a missing Context ID).
    Drop,
    /// A local caller error on the sending side; nothing was written.
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    /// The Datagram Data is too short for a complete Quarter Stream ID (R9297-04).
    #[error("HTTP/3 datagram too short for a quarter stream id")]
    QuarterStreamIdTruncated,
    /// Quarter Stream ID above 2^60-1 (R9297-03).
    #[error("quarter stream id {0} exceeds 2^60-1")]
    QuarterStreamIdTooLarge(u64),
    /// Not a client-initiated bidirectional stream, so it has no Quarter Stream ID.
    #[error("stream {0} is not a client-initiated bidirectional stream")]
    NotRequestStream(u64),
    /// The HTTP Datagram Payload is too short for a Context ID (not covered by
    /// RFC 9298/9484; our choice: drop and count).
    #[error("HTTP datagram payload too short for a context id")]
    ContextIdTruncated,
    /// A Context ID above 2^62-1 cannot be encoded (R9298-33).
    #[error("context id {0} exceeds 2^62-1")]
    ContextIdTooLarge(u64),
    /// A Context-ID-0 payload longer than 65527 bytes (R9298-40 on send, R9298-41
    /// on receipt: abort the request stream).
    #[error("UDP payload of {0} bytes exceeds 65527")]
    UdpPayloadTooLarge(usize),
}

impl DatagramError {
    /// How a receiver handles this error (R9297-03/04, R9298-41).
    pub fn disposition(&self) -> Disposition {
        match self {
            Self::QuarterStreamIdTruncated | Self::QuarterStreamIdTooLarge(_) => {
                Disposition::CloseConnection {
                    h3_code: error_code::H3_DATAGRAM_ERROR,
                }
            }
            Self::UdpPayloadTooLarge(_) => Disposition::AbortStream {
                h3_code: error_code::H3_MESSAGE_ERROR,
            },
            Self::ContextIdTruncated => Disposition::Drop,
            Self::NotRequestStream(_) | Self::ContextIdTooLarge(_) => Disposition::Refused,
        }
    }
}

/// Quarter Stream ID of a request stream: `stream_id / 4` (RFC 9297 §2.1). Only
/// client-initiated bidirectional streams (`stream_id % 4 == 0`) carry requests.
pub fn quarter_stream_id(stream_id: u64) -> Result<u64, DatagramError> {
    if !stream_id.is_multiple_of(4) {
        return Err(DatagramError::NotRequestStream(stream_id));
    }
    let qsid = stream_id / 4;
    if qsid > MAX_QUARTER_STREAM_ID {
        return Err(DatagramError::QuarterStreamIdTooLarge(qsid));
    }
    Ok(qsid)
}

/// Stream ID of a Quarter Stream ID: `qsid * 4` (R9297-03).
pub fn stream_id(qsid: u64) -> Result<u64, DatagramError> {
    if qsid > MAX_QUARTER_STREAM_ID {
        return Err(DatagramError::QuarterStreamIdTooLarge(qsid));
    }
    Ok(qsid * 4)
}

/// Splits HTTP/3 Datagram Data (a QUIC DATAGRAM frame payload) into the Quarter
/// Stream ID and the HTTP Datagram Payload, without copying (RFC 9297 §2.1).
/// Errors are connection errors H3_DATAGRAM_ERROR (R9297-03, R9297-04).
pub fn parse_h3_datagram(mut data: Bytes) -> Result<(u64, Bytes), DatagramError> {
    let (qsid, n) = parse_qsid(&data)?;
    data.advance(n);
    Ok((qsid, data))
}

/// Borrowed form of [`parse_h3_datagram`].
pub fn parse_h3_datagram_slice(data: &[u8]) -> Result<(u64, &[u8]), DatagramError> {
    let (qsid, n) = parse_qsid(data)?;
    Ok((qsid, data.get(n..).unwrap_or_default()))
}

fn parse_qsid(data: &[u8]) -> Result<(u64, usize), DatagramError> {
    let (qsid, n) = varint::decode(data).map_err(|_| DatagramError::QuarterStreamIdTruncated)?;
    if qsid > MAX_QUARTER_STREAM_ID {
        return Err(DatagramError::QuarterStreamIdTooLarge(qsid));
    }
    Ok((qsid, n))
}

/// Splits an HTTP Datagram Payload into Context ID and the rest, without copying
/// (RFC 9298 §5). Unknown Context IDs are not an error: the session drops or
/// briefly buffers them (R9298-38).
pub fn parse_context(mut payload: Bytes) -> Result<(u64, Bytes), DatagramError> {
    let (ctx, n) = varint::decode(&payload).map_err(|_| DatagramError::ContextIdTruncated)?;
    payload.advance(n);
    Ok((ctx, payload))
}

/// Borrowed form of [`parse_context`].
pub fn parse_context_slice(payload: &[u8]) -> Result<(u64, &[u8]), DatagramError> {
    let (ctx, n) = varint::decode(payload).map_err(|_| DatagramError::ContextIdTruncated)?;
    Ok((ctx, payload.get(n..).unwrap_or_default()))
}

/// [`parse_context`] plus the connect-udp size rule: a Context-ID-0 payload longer
/// than [`MAX_UDP_PAYLOAD`] is [`DatagramError::UdpPayloadTooLarge`] (R9298-41).
pub fn parse_udp_payload(payload: Bytes) -> Result<(u64, Bytes), DatagramError> {
    let (ctx, rest) = parse_context(payload)?;
    check_udp_payload(ctx, rest.len())?;
    Ok((ctx, rest))
}

/// R9298-40/41: a Context-ID-0 payload must not exceed 65527 bytes.
pub fn check_udp_payload(context_id: u64, len: usize) -> Result<(), DatagramError> {
    if context_id == UDP_CONTEXT_ID && len > MAX_UDP_PAYLOAD {
        return Err(DatagramError::UdpPayloadTooLarge(len));
    }
    Ok(())
}

/// Length of the prefix written by [`encode_prefix`]: QSID (when `Some`) plus
/// Context ID.
pub const fn prefix_len(qsid: Option<u64>, context_id: u64) -> usize {
    let q = match qsid {
        Some(q) => varint::encoded_len(q),
        None => 0,
    };
    q + varint::encoded_len(context_id)
}

/// Writes the Quarter Stream ID (for an HTTP/3 Datagram, `Some`) and the Context
/// ID. The caller appends the payload. Nothing is written on error.
pub fn encode_prefix<B: BufMut + ?Sized>(
    qsid: Option<u64>,
    context_id: u64,
    buf: &mut B,
) -> Result<(), DatagramError> {
    if let Some(q) = qsid
        && q > MAX_QUARTER_STREAM_ID
    {
        return Err(DatagramError::QuarterStreamIdTooLarge(q));
    }
    if context_id > varint::MAX {
        return Err(DatagramError::ContextIdTooLarge(context_id));
    }
    if let Some(q) = qsid {
        varint::put(q, buf);
    }
    varint::put(context_id, buf);
    Ok(())
}

/// Writes a whole HTTP/3 Datagram carrying a UDP payload (Context ID 0). Refuses
/// payloads over 65527 bytes (R9298-40).
pub fn encode_h3_udp<B: BufMut + ?Sized>(
    qsid: u64,
    payload: &[u8],
    buf: &mut B,
) -> Result<(), DatagramError> {
    check_udp_payload(UDP_CONTEXT_ID, payload.len())?;
    encode_prefix(Some(qsid), UDP_CONTEXT_ID, buf)?;
    buf.put_slice(payload);
    Ok(())
}

/// Writes the header of a DATAGRAM capsule whose HTTP Datagram Payload is
/// `Context ID | <payload_len bytes>` plus the Context ID; the caller appends the
/// payload (RFC 9297 §3.5). Refuses Context-ID-0 payloads over 65527 bytes
/// (R9298-40).
pub fn encode_capsule_prefix<B: BufMut + ?Sized>(
    context_id: u64,
    payload_len: usize,
    buf: &mut B,
) -> Result<(), DatagramError> {
    if context_id > varint::MAX {
        return Err(DatagramError::ContextIdTooLarge(context_id));
    }
    check_udp_payload(context_id, payload_len)?;
    let value_len = varint::encoded_len(context_id).saturating_add(payload_len);
    capsule::encode_header(capsule::DATAGRAM, value_len, buf);
    varint::put(context_id, buf);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Spec README vector 6 (R9297-03 range, R9298-39): stream 44 → QSID 11,
    /// Context ID 0, "abc" → `0b 00 61 62 63`; in a DATAGRAM frame `31 05 …`.
    #[test]
    fn r9298_39_h3_datagram_vector() {
        assert_eq!(quarter_stream_id(44), Ok(11));
        assert_eq!(stream_id(11), Ok(44));
        let mut b = Vec::new();
        encode_h3_udp(11, b"abc", &mut b).unwrap();
        assert_eq!(b, [0x0b, 0x00, 0x61, 0x62, 0x63]);
        assert_eq!(prefix_len(Some(11), 0), 2);
        let mut frame = vec![0x31];
        varint::put(b.len() as u64, &mut frame);
        frame.extend_from_slice(&b);
        assert_eq!(frame, [0x31, 0x05, 0x0b, 0x00, 0x61, 0x62, 0x63]);

        let (qsid, payload) = parse_h3_datagram(Bytes::from(b)).unwrap();
        assert_eq!(qsid, 11);
        assert_eq!(
            parse_udp_payload(payload).unwrap(),
            (0, Bytes::from_static(b"abc"))
        );
        assert_eq!(
            parse_h3_datagram_slice(&[0x0b, 0x00, 0x61]),
            Ok((11, &[0x00, 0x61][..]))
        );
    }

    /// Spec README vector 6 / rfc9298 digest: the same payload as a DATAGRAM capsule.
    #[test]
    fn r9297_31_udp_payload_as_capsule() {
        let mut b = Vec::new();
        encode_capsule_prefix(0, 3, &mut b).unwrap();
        b.extend_from_slice(b"abc");
        assert_eq!(b, [0x00, 0x04, 0x00, 0x61, 0x62, 0x63]);
        let mut b = Vec::new();
        encode_capsule_prefix(0, 3, &mut b).unwrap();
        b.extend_from_slice(&[1, 2, 3]);
        assert_eq!(b, [0x00, 0x04, 0x00, 0x01, 0x02, 0x03]);
    }

    /// Spec README vector 3 (R9297-03): QSID 2^60-1 accepted, 2^60 is a connection
    /// error H3_DATAGRAM_ERROR.
    #[test]
    fn r9297_03_qsid_limit() {
        let max = [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            parse_h3_datagram_slice(&max),
            Ok((MAX_QUARTER_STREAM_ID, &[][..]))
        );
        let over = [0xd0, 0, 0, 0, 0, 0, 0, 0];
        let e = parse_h3_datagram(Bytes::copy_from_slice(&over)).unwrap_err();
        assert_eq!(e, DatagramError::QuarterStreamIdTooLarge(1 << 60));
        assert_eq!(
            e.disposition(),
            Disposition::CloseConnection { h3_code: 0x33 }
        );
        let mut b = Vec::new();
        assert_eq!(
            encode_prefix(Some(1 << 60), 0, &mut b),
            Err(DatagramError::QuarterStreamIdTooLarge(1 << 60))
        );
        assert!(b.is_empty());
        assert_eq!(
            stream_id(1 << 60),
            Err(DatagramError::QuarterStreamIdTooLarge(1 << 60))
        );
    }

    /// Spec README vector 3 (R9297-04): empty or `40` is a truncated QSID.
    #[test]
    fn r9297_04_qsid_truncated() {
        for d in [&[][..], &[0x40][..]] {
            let e = parse_h3_datagram_slice(d).unwrap_err();
            assert_eq!(e, DatagramError::QuarterStreamIdTruncated);
            assert_eq!(
                e.disposition(),
                Disposition::CloseConnection { h3_code: 0x33 }
            );
        }
    }

    /// RFC 9297 §2.1: only client bidi streams (≡ 0 mod 4) have a QSID.
    #[test]
    fn r9297_03_quarter_stream_id_requires_client_bidi() {
        assert_eq!(quarter_stream_id(0), Ok(0));
        for s in [1, 2, 3, 45] {
            assert_eq!(
                quarter_stream_id(s),
                Err(DatagramError::NotRequestStream(s))
            );
        }
        assert_eq!(
            quarter_stream_id(varint::MAX - 3),
            Ok(MAX_QUARTER_STREAM_ID)
        );
        assert!(quarter_stream_id(u64::MAX - 3).is_err());
    }

    /// rfc9297 digest §6: a payload too short for a Context ID (empty `00 00`
    /// capsule, or a truncated varint) → drop and count (our choice).
    #[test]
    fn context_id_truncated_is_dropped() {
        for p in [&[][..], &[0x40][..]] {
            let e = parse_context_slice(p).unwrap_err();
            assert_eq!(e, DatagramError::ContextIdTruncated);
            assert_eq!(e.disposition(), Disposition::Drop);
        }
    }

    /// Spec README vector 20 (R9298-41): 65527 bytes OK, 65528 aborts the stream.
    #[test]
    fn r9298_41_udp_payload_limit() {
        let mut ok = vec![0u8];
        ok.resize(1 + 65527, 0xaa);
        let (ctx, rest) = parse_udp_payload(Bytes::from(ok)).unwrap();
        assert_eq!((ctx, rest.len()), (0, 65527));
        let mut big = vec![0u8];
        big.resize(1 + 65528, 0xaa);
        let e = parse_udp_payload(Bytes::from(big)).unwrap_err();
        assert_eq!(e, DatagramError::UdpPayloadTooLarge(65528));
        assert_eq!(e.disposition(), Disposition::AbortStream { h3_code: 0x10e });
        // Other contexts are not bound by the UDP limit.
        assert_eq!(check_udp_payload(2, 65528), Ok(()));
    }

    /// rfc9298 digest R9298-41 test: a DATAGRAM capsule with Length 65529 (1-byte
    /// Context ID + 65528) passes the default capsule bound and is then refused.
    #[test]
    fn r9298_41_oversize_datagram_capsule() {
        let mut wire = Vec::new();
        capsule::encode_header(capsule::DATAGRAM, 65529, &mut wire);
        wire.push(0x00);
        wire.resize(wire.len() + 65528, 0xaa);
        let mut d = capsule::CapsuleDecoder::new();
        d.push(Bytes::from(wire));
        let c = d.next_capsule().unwrap().unwrap();
        assert_eq!(c.value.len(), 65529);
        assert_eq!(
            parse_udp_payload(c.value),
            Err(DatagramError::UdpPayloadTooLarge(65528))
        );
    }

    /// R9298-40: the sender refuses payloads over 65527 bytes.
    #[test]
    fn r9298_40_sender_refuses_oversize() {
        let mut b = Vec::new();
        let big = vec![0u8; 65528];
        assert_eq!(
            encode_h3_udp(0, &big, &mut b),
            Err(DatagramError::UdpPayloadTooLarge(65528))
        );
        assert_eq!(
            encode_capsule_prefix(0, 65528, &mut b),
            Err(DatagramError::UdpPayloadTooLarge(65528))
        );
        assert!(b.is_empty());
        assert!(encode_capsule_prefix(0, 65527, &mut b).is_ok());
    }

    /// rfc9298 digest §12: unknown context 6 is not an error (R9298-38).
    #[test]
    fn r9298_38_unknown_context_passed_up() {
        let (q, p) = parse_h3_datagram(Bytes::from_static(&[0x0b, 0x06, 0x01])).unwrap();
        assert_eq!(q, 11);
        assert_eq!(parse_udp_payload(p), Ok((6, Bytes::from_static(&[1]))));
    }

    proptest! {
        /// Round trip of the HTTP/3 prefix and the capsule prefix.
        #[test]
        fn prefix_roundtrip(
            qsid in 0..=MAX_QUARTER_STREAM_ID,
            ctx in 0..=varint::MAX,
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut b = Vec::new();
            encode_prefix(Some(qsid), ctx, &mut b).unwrap();
            prop_assert_eq!(b.len(), prefix_len(Some(qsid), ctx));
            b.extend_from_slice(&payload);
            let (q, rest) = parse_h3_datagram(Bytes::from(b)).unwrap();
            prop_assert_eq!(q, qsid);
            let (c, rest) = parse_udp_payload(rest).unwrap();
            prop_assert_eq!(c, ctx);
            prop_assert_eq!(&rest[..], &payload[..]);

            let mut b = Vec::new();
            encode_capsule_prefix(ctx, payload.len(), &mut b).unwrap();
            b.extend_from_slice(&payload);
            let mut d = capsule::CapsuleDecoder::new();
            d.push(Bytes::from(b));
            let cap = d.next_capsule().unwrap().unwrap();
            prop_assert_eq!(cap.ty, capsule::DATAGRAM);
            prop_assert_eq!(parse_context(cap.value).unwrap(), (ctx, Bytes::from(payload)));
        }

        #[test]
        fn quarter_stream_id_roundtrip(qsid in 0..=MAX_QUARTER_STREAM_ID) {
            prop_assert_eq!(quarter_stream_id(stream_id(qsid).unwrap()), Ok(qsid));
        }

        /// Parsing arbitrary bytes never panics and never reads past the input.
        #[test]
        fn parse_arbitrary_never_panics(b in proptest::collection::vec(any::<u8>(), 0..20)) {
            if let Ok((q, rest)) = parse_h3_datagram_slice(&b) {
                prop_assert!(q <= MAX_QUARTER_STREAM_ID);
                prop_assert!(rest.len() < b.len());
            }
            let _ = parse_h3_datagram(Bytes::from(b.clone()));
            let _ = parse_context_slice(&b);
            let _ = parse_udp_payload(Bytes::from(b));
        }
    }
}
