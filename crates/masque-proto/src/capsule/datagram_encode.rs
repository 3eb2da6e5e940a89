//! DATAGRAM capsule encoders for senders (RFC 9297 §3.5, R9297-31): one buffer per
//! capsule, the payload copied once.
//!
//! * [`encode_datagram_capsule`]: header and value parts appended to a `BytesMut`
//!   sized exactly once.
//! * [`write_datagram_capsule_header`]: for a buffer built as
//!   `[reserved room][Context ID + payload]`, writes the minimal header right before
//!   the value, so a sender reserves [`max_datagram_capsule_header_len`] bytes up
//!   front, fills the value, then advances past the unused room: no second buffer,
//!   no move of the payload.
//!
//! ```
//! use bytes::{Buf, BytesMut};
//! use masque_proto::{capsule, varint};
//! # fn main() -> Result<(), capsule::HeaderRoomError> {
//! let capacity = 1500; // the largest value (Context ID + payload) this buffer will hold
//! let room = capsule::max_datagram_capsule_header_len(capacity);
//! let mut buf = BytesMut::with_capacity(room + capacity);
//! buf.resize(room, 0);
//! varint::put(0, &mut buf); // Context ID 0
//! buf.extend_from_slice(b"abc"); // e.g. read from a socket into the spare capacity
//! let start = capsule::write_datagram_capsule_header(&mut buf, room)?;
//! buf.advance(start);
//! assert_eq!(&buf[..], &[0x00, 0x04, 0x00, b'a', b'b', b'c']);
//! # Ok(()) }
//! ```

use bytes::BytesMut;

use super::{DATAGRAM, header_len};

/// The reserved room is too small for the header the value needs (the value grew
/// past the capacity the room was computed for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("DATAGRAM capsule header needs {need} bytes, {room} reserved")]
pub struct HeaderRoomError {
    pub need: usize,
    pub room: usize,
}

/// Longest DATAGRAM capsule header for a value (Context ID + payload) of at most
/// `max_value_len` bytes: the one-byte type 0x00 plus the Length varint.
pub const fn max_datagram_capsule_header_len(max_value_len: usize) -> usize {
    header_len(DATAGRAM, max_value_len)
}

/// Appends a DATAGRAM capsule whose value is `parts` in order (typically the
/// Context ID varint, then the payload). Reserves the exact length first, so `out`
/// grows at most once.
pub fn encode_datagram_capsule(parts: &[&[u8]], out: &mut BytesMut) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve(header_len(DATAGRAM, len) + len);
    super::encode_header(DATAGRAM, len, out);
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// `buf` is `[room bytes][value]`. Writes the minimal DATAGRAM capsule header (type
/// 0x00, Length = value length) into the end of the room, immediately before the
/// value, and returns the offset where the capsule starts; the bytes before it are
/// unused. Nothing is written on error.
pub fn write_datagram_capsule_header(
    buf: &mut [u8],
    room: usize,
) -> Result<usize, HeaderRoomError> {
    let value_len = buf.len().saturating_sub(room);
    let need = header_len(DATAGRAM, value_len);
    let start = room
        .checked_sub(need)
        .filter(|_| room <= buf.len())
        .ok_or(HeaderRoomError { need, room })?;
    let mut dst = buf
        .get_mut(start..room)
        .ok_or(HeaderRoomError { need, room })?;
    super::encode_header(DATAGRAM, value_len, &mut dst);
    debug_assert!(dst.is_empty());
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capsule::{Capsule, CapsuleDecoder, encode};
    use bytes::{Buf, Bytes};

    fn decode_one(wire: Bytes) -> Capsule {
        let mut d = CapsuleDecoder::with_max_size(usize::MAX);
        d.push(wire);
        let c = d.next_capsule().unwrap().unwrap();
        assert_eq!(d.finish(), Ok(()));
        c
    }

    /// R9297-31, QV-06: in-place header for value lengths at the varint
    /// boundaries 0, 63, 64, 16383, 16384, with exactly the room needed and with
    /// the room for a larger capacity; the wire form equals `capsule::encode`.
    #[test]
    fn r9297_31_in_place_header_varint_boundaries() {
        for len in [0usize, 63, 64, 16383, 16384] {
            let want_hdr = 1 + crate::varint::encoded_len(len as u64);
            assert_eq!(max_datagram_capsule_header_len(len), want_hdr, "{len}");
            for capacity in [len, 65536] {
                let room = max_datagram_capsule_header_len(capacity);
                let value: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let mut buf = BytesMut::with_capacity(room + len);
                buf.resize(room, 0xee);
                buf.extend_from_slice(&value);
                let ptr = buf.as_ptr();
                let start = write_datagram_capsule_header(&mut buf, room).unwrap();
                assert_eq!(start, room - want_hdr, "len {len} capacity {capacity}");
                buf.advance(start);
                // Same allocation, advanced past the unused room.
                assert_eq!(buf.as_ptr(), ptr.wrapping_add(start));
                let mut expected = Vec::new();
                encode(DATAGRAM, &value, &mut expected);
                assert_eq!(&buf[..], &expected[..], "len {len}");
                let c = decode_one(buf.freeze());
                assert_eq!((c.ty, &c.value[..]), (DATAGRAM, &value[..]));
            }
        }
        // Exact header bytes at the boundaries.
        let hdr = |len: usize| {
            let room = max_datagram_capsule_header_len(len);
            let mut buf = vec![0u8; room + len];
            let start = write_datagram_capsule_header(&mut buf, room).unwrap();
            buf[start..room].to_vec()
        };
        assert_eq!(hdr(0), [0x00, 0x00]);
        assert_eq!(hdr(63), [0x00, 0x3f]);
        assert_eq!(hdr(64), [0x00, 0x40, 0x40]);
        assert_eq!(hdr(16383), [0x00, 0x7f, 0xff]);
        assert_eq!(hdr(16384), [0x00, 0x80, 0x00, 0x40, 0x00]);
    }

    /// Room computed for a smaller capacity than the value: refused, untouched.
    #[test]
    fn in_place_header_room_too_small() {
        let mut buf = vec![0xeeu8; 2 + 64];
        assert_eq!(
            write_datagram_capsule_header(&mut buf, 2),
            Err(HeaderRoomError { need: 3, room: 2 })
        );
        assert!(buf.iter().all(|&b| b == 0xee));
        // Room larger than the buffer.
        let mut short = vec![0u8; 1];
        assert_eq!(
            write_datagram_capsule_header(&mut short, 5),
            Err(HeaderRoomError { need: 2, room: 5 })
        );
    }

    /// Spec README vector 7 (R9297-31): parts are concatenated into one value.
    #[test]
    fn r9297_31_encode_datagram_capsule_parts() {
        let mut out = BytesMut::new();
        encode_datagram_capsule(&[&[0x00], &[1, 2, 3]], &mut out);
        assert_eq!(&out[..], [0x00, 0x04, 0x00, 0x01, 0x02, 0x03]);
        let mut out = BytesMut::new();
        encode_datagram_capsule(&[], &mut out);
        assert_eq!(&out[..], [0x00, 0x00]);
        let big = vec![7u8; 20000];
        let mut out = BytesMut::new();
        encode_datagram_capsule(&[&[0x00], &big], &mut out);
        assert_eq!(out.len(), 5 + 20001);
        assert_eq!(decode_one(out.freeze()).value.len(), 20001);
    }
}
