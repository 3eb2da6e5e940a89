//! HTTP/3 frames (RFC 9114 §7): types, header encoding and an incremental decoder
//! that yields DATA payload as zero-copy slices of the received chunks.
//!
//! Sans-IO: bytes in, [`Frame`]s out; the quinn wrappers in `stream.rs` and
//! `control.rs` drive it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use masque_proto::varint;

use crate::error_code::Code;

pub mod ty {
    pub const DATA: u64 = 0x00;
    pub const HEADERS: u64 = 0x01;
    pub const CANCEL_PUSH: u64 = 0x03;
    pub const SETTINGS: u64 = 0x04;
    pub const PUSH_PROMISE: u64 = 0x05;
    pub const GOAWAY: u64 = 0x07;
    pub const MAX_PUSH_ID: u64 = 0x0d;

    /// RFC 9114 §7.2.8: HTTP/2 frame types with no HTTP/3 meaning (PRIORITY 0x02,
    /// PING 0x06, WINDOW_UPDATE 0x08, CONTINUATION 0x09) are a connection error
    /// H3_FRAME_UNEXPECTED.
    pub const fn is_reserved_h2(t: u64) -> bool {
        matches!(t, 0x02 | 0x06 | 0x08 | 0x09)
    }

    /// RFC 9114 §7.2.8: reserved GREASE frame types `0x1f * N + 0x21`.
    pub const fn is_grease(t: u64) -> bool {
        t >= 0x21 && (t - 0x21).is_multiple_of(0x1f)
    }
}

/// A frame-level protocol violation: always a connection error with `code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {reason}")]
pub struct FrameError {
    pub code: Code,
    pub reason: &'static str,
}

impl FrameError {
    pub const fn new(code: Code, reason: &'static str) -> Self {
        Self { code, reason }
    }
}

/// Appends a frame header (type + length).
pub fn encode_header<B: BufMut + ?Sized>(frame_type: u64, len: u64, buf: &mut B) {
    varint::put(frame_type, buf);
    varint::put(len, buf);
}

/// Appends a whole frame.
pub fn encode_frame<B: BufMut + ?Sized>(frame_type: u64, payload: &[u8], buf: &mut B) {
    encode_header(frame_type, payload.len() as u64, buf);
    buf.put_slice(payload);
}

/// Appends a frame whose payload is one varint (GOAWAY, MAX_PUSH_ID, CANCEL_PUSH).
pub fn encode_varint_frame<B: BufMut + ?Sized>(frame_type: u64, value: u64, buf: &mut B) {
    encode_header(frame_type, varint::encoded_len(value) as u64, buf);
    varint::put(value, buf);
}

/// One decoded frame or frame fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A piece of a DATA frame's payload (a frame may arrive as several pieces).
    Data(Bytes),
    /// A complete HEADERS field section (QPACK-encoded).
    Headers(Bytes),
    /// A complete SETTINGS payload; decode with [`crate::settings::Settings::decode`].
    Settings(Bytes),
    GoAway(u64),
    MaxPushId(u64),
    CancelPush(u64),
    /// PUSH_PROMISE: we never send MAX_PUSH_ID, so any push is an error the caller raises.
    PushPromise,
}

/// Frame types whose payload is buffered whole.
#[derive(Debug, Clone, Copy)]
enum Collected {
    Headers,
    Settings,
    PushPromise,
    GoAway,
    MaxPushId,
    CancelPush,
}

#[derive(Debug)]
enum State {
    /// Reading the type+length header; partial bytes live in `hdr`.
    Header,
    /// Passing through `remaining` bytes of DATA payload.
    Data { remaining: u64 },
    /// Collecting a payload that must be complete before use.
    Collect { kind: Collected, remaining: u64 },
    /// Skipping an unknown frame's payload.
    Skip { remaining: u64 },
}

/// Incremental HTTP/3 frame decoder for one stream.
#[derive(Debug)]
pub struct FrameDecoder {
    state: State,
    hdr: [u8; 16],
    hdr_len: usize,
    collected: BytesMut,
    max_collect: u64,
}

/// Largest control-frame payload (SETTINGS, GOAWAY ...) we buffer.
pub const MAX_CONTROL_FRAME: u64 = 16 * 1024;

impl FrameDecoder {
    /// `max_headers` bounds a HEADERS frame (our SETTINGS_MAX_FIELD_SECTION_SIZE plus
    /// slack for QPACK overhead).
    pub fn new(max_headers: u64) -> Self {
        Self {
            state: State::Header,
            hdr: [0; 16],
            hdr_len: 0,
            collected: BytesMut::new(),
            max_collect: max_headers.max(MAX_CONTROL_FRAME),
        }
    }

    /// True when no frame is partially decoded (a clean place for FIN).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Header) && self.hdr_len == 0
    }

    /// Call at end of stream: a frame cut short is H3_FRAME_ERROR (RFC 9114 §7.1).
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.is_idle() {
            Ok(())
        } else {
            Err(FrameError::new(
                Code::FRAME_ERROR,
                "stream ended inside a frame",
            ))
        }
    }

    /// Decodes the next frame (or DATA piece) from `input`, consuming what it uses.
    /// `Ok(None)` means `input` is exhausted and more bytes are needed.
    pub fn decode(&mut self, input: &mut Bytes) -> Result<Option<Frame>, FrameError> {
        loop {
            match self.state {
                State::Header => {
                    if !self.read_header(input)? {
                        return Ok(None);
                    }
                }
                State::Data { remaining } => {
                    if remaining == 0 {
                        self.state = State::Header;
                        continue;
                    }
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let n = remaining.min(input.len() as u64) as usize;
                    let piece = input.split_to(n);
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        State::Header
                    } else {
                        State::Data { remaining: left }
                    };
                    return Ok(Some(Frame::Data(piece)));
                }
                State::Skip { remaining } => {
                    let n = remaining.min(input.len() as u64) as usize;
                    input.advance(n);
                    let left = remaining - n as u64;
                    if left > 0 {
                        self.state = State::Skip { remaining: left };
                        return Ok(None);
                    }
                    self.state = State::Header;
                }
                State::Collect { kind, remaining } => {
                    let n = remaining.min(input.len() as u64) as usize;
                    let left = remaining - n as u64;
                    let payload = if self.collected.is_empty() && left == 0 {
                        // Whole payload in this chunk: no copy.
                        input.split_to(n)
                    } else {
                        self.collected.extend_from_slice(&input[..n]);
                        input.advance(n);
                        if left > 0 {
                            self.state = State::Collect {
                                kind,
                                remaining: left,
                            };
                            return Ok(None);
                        }
                        self.collected.split().freeze()
                    };
                    self.state = State::Header;
                    return complete(kind, payload).map(Some);
                }
            }
        }
    }

    /// Reads a frame header; returns false if more bytes are needed.
    fn read_header(&mut self, input: &mut Bytes) -> Result<bool, FrameError> {
        // Fast path: whole header in the chunk with nothing buffered.
        let (ty, len) = if self.hdr_len == 0 {
            match decode_type_len(input) {
                Some((ty, len, used)) => {
                    input.advance(used);
                    (ty, len)
                }
                None => {
                    let n = input.len().min(self.hdr.len());
                    self.hdr[..n].copy_from_slice(&input[..n]);
                    self.hdr_len = n;
                    input.advance(n);
                    return Ok(false);
                }
            }
        } else {
            let n = input.len().min(self.hdr.len() - self.hdr_len);
            self.hdr[self.hdr_len..self.hdr_len + n].copy_from_slice(&input[..n]);
            match decode_type_len(&self.hdr[..self.hdr_len + n]) {
                Some((ty, len, used)) => {
                    // `used` > hdr_len because the buffered prefix alone was incomplete.
                    input.advance(used - self.hdr_len);
                    self.hdr_len = 0;
                    (ty, len)
                }
                None => {
                    self.hdr_len += n;
                    input.advance(n);
                    return Ok(false);
                }
            }
        };
        self.state = self.state_for(ty, len)?;
        Ok(true)
    }

    fn state_for(&self, ty: u64, len: u64) -> Result<State, FrameError> {
        if ty::is_reserved_h2(ty) {
            return Err(FrameError::new(
                Code::FRAME_UNEXPECTED,
                "HTTP/2 frame type on HTTP/3",
            ));
        }
        let kind = match ty {
            ty::DATA => return Ok(State::Data { remaining: len }),
            ty::HEADERS => Collected::Headers,
            ty::SETTINGS => Collected::Settings,
            ty::PUSH_PROMISE => Collected::PushPromise,
            ty::GOAWAY => Collected::GoAway,
            ty::MAX_PUSH_ID => Collected::MaxPushId,
            ty::CANCEL_PUSH => Collected::CancelPush,
            // RFC 9114 §9: unknown and GREASE frame types MUST be ignored.
            _ => return Ok(State::Skip { remaining: len }),
        };
        let limit = match kind {
            Collected::Headers => self.max_collect,
            Collected::GoAway | Collected::MaxPushId | Collected::CancelPush => {
                if len == 0 {
                    return Err(FrameError::new(Code::FRAME_ERROR, "empty varint frame"));
                }
                8
            }
            _ => MAX_CONTROL_FRAME,
        };
        if len > limit {
            return Err(FrameError::new(
                Code::EXCESSIVE_LOAD,
                "frame larger than the configured limit",
            ));
        }
        Ok(State::Collect {
            kind,
            remaining: len,
        })
    }
}

fn decode_type_len(b: &[u8]) -> Option<(u64, u64, usize)> {
    let (ty, n1) = varint::decode(b).ok()?;
    let (len, n2) = varint::decode(&b[n1..]).ok()?;
    Some((ty, len, n1 + n2))
}

fn complete(kind: Collected, payload: Bytes) -> Result<Frame, FrameError> {
    let one_varint = |p: &Bytes| -> Result<u64, FrameError> {
        match varint::decode(p) {
            Ok((v, n)) if n == p.len() => Ok(v),
            _ => Err(FrameError::new(Code::FRAME_ERROR, "malformed varint frame")),
        }
    };
    Ok(match kind {
        Collected::Headers => Frame::Headers(payload),
        Collected::Settings => Frame::Settings(payload),
        Collected::PushPromise => Frame::PushPromise,
        Collected::GoAway => Frame::GoAway(one_varint(&payload)?),
        Collected::MaxPushId => Frame::MaxPushId(one_varint(&payload)?),
        Collected::CancelPush => Frame::CancelPush(one_varint(&payload)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(dec: &mut FrameDecoder, chunks: &[Bytes]) -> Result<Vec<Frame>, FrameError> {
        let mut out = Vec::new();
        for c in chunks {
            let mut c = c.clone();
            while let Some(f) = dec.decode(&mut c)? {
                out.push(f);
            }
            assert!(c.is_empty());
        }
        Ok(out)
    }

    /// Merges adjacent DATA pieces so chunking does not change the comparison.
    fn merge(frames: Vec<Frame>) -> Vec<Frame> {
        let mut out: Vec<Frame> = Vec::new();
        for f in frames {
            if let (Some(Frame::Data(prev)), Frame::Data(d)) = (out.last_mut(), &f) {
                let mut m = BytesMut::from(&prev[..]);
                m.extend_from_slice(d);
                *prev = m.freeze();
                continue;
            }
            out.push(f);
        }
        out
    }

    /// Spec README vector 4: SETTINGS frame bytes decode as one SETTINGS frame.
    #[test]
    fn settings_frame_vector4() {
        let mut d = FrameDecoder::new(1024);
        let f = decode_all(&mut d, &[Bytes::from_static(&[4, 4, 0x33, 1, 8, 1])]).unwrap();
        assert_eq!(
            f,
            vec![Frame::Settings(Bytes::from_static(&[0x33, 1, 8, 1]))]
        );
        assert!(d.finish().is_ok());
    }

    /// RFC 9114 §9: unknown and GREASE frames are skipped; reserved HTTP/2 types are
    /// H3_FRAME_UNEXPECTED (§7.2.8).
    #[test]
    fn unknown_skipped_h2_types_rejected() {
        let mut d = FrameDecoder::new(1024);
        let bytes = Bytes::from_static(&[0x21, 2, 0xaa, 0xbb, 0, 1, b'x']);
        let f = decode_all(&mut d, &[bytes]).unwrap();
        assert_eq!(f, vec![Frame::Data(Bytes::from_static(b"x"))]);
        for t in [2u8, 6, 8, 9] {
            let mut d = FrameDecoder::new(1024);
            let e = decode_all(&mut d, &[Bytes::copy_from_slice(&[t, 0])]).unwrap_err();
            assert_eq!(e.code, Code::FRAME_UNEXPECTED);
        }
    }

    /// RFC 9114 §7.1: a frame cut by FIN is H3_FRAME_ERROR.
    #[test]
    fn truncated_frame_at_fin() {
        let mut d = FrameDecoder::new(1024);
        decode_all(&mut d, &[Bytes::from_static(&[1, 5, 0, 0])]).unwrap();
        assert_eq!(d.finish().unwrap_err().code, Code::FRAME_ERROR);
        let mut d = FrameDecoder::new(1024);
        decode_all(&mut d, &[Bytes::from_static(&[0x40])]).unwrap();
        assert!(d.finish().is_err());
    }

    #[test]
    fn goaway_and_limits() {
        let mut b = Vec::new();
        encode_varint_frame(ty::GOAWAY, 44, &mut b);
        let mut d = FrameDecoder::new(1024);
        assert_eq!(
            decode_all(&mut d, &[b.into()]).unwrap(),
            vec![Frame::GoAway(44)]
        );
        // GOAWAY with trailing bytes is malformed.
        let mut d = FrameDecoder::new(1024);
        let e = decode_all(&mut d, &[Bytes::from_static(&[7, 2, 4, 0])]).unwrap_err();
        assert_eq!(e.code, Code::FRAME_ERROR);
        // HEADERS over the bound is refused before buffering.
        let mut d = FrameDecoder::new(100);
        let mut b = Vec::new();
        encode_header(ty::HEADERS, 1 << 20, &mut b);
        assert_eq!(
            decode_all(&mut d, &[b.into()]).unwrap_err().code,
            Code::EXCESSIVE_LOAD
        );
    }

    fn arb_frames() -> impl Strategy<Value = Vec<(u64, Vec<u8>)>> {
        let frame = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(|p| (ty::DATA, p)),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(|p| (ty::HEADERS, p)),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(|p| (0x21 + 0x1f * 3, p)),
            (0u64..1 << 40).prop_map(|v| {
                let mut p = Vec::new();
                varint::put(v, &mut p);
                (ty::GOAWAY, p)
            }),
        ];
        proptest::collection::vec(frame, 0..8)
    }

    proptest! {
        /// Splitting a frame stream at arbitrary points yields the same frames.
        #[test]
        fn chunking_invariant(frames in arb_frames(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6)) {
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for (t, p) in &frames {
                encode_frame(*t, p, &mut wire);
                match *t {
                    ty::DATA if !p.is_empty() => expected.push(Frame::Data(Bytes::copy_from_slice(p))),
                    ty::DATA => {}
                    ty::HEADERS => expected.push(Frame::Headers(Bytes::copy_from_slice(p))),
                    ty::GOAWAY => expected.push(Frame::GoAway(varint::decode(p).unwrap().0)),
                    _ => {}
                }
            }
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for p in points { chunks.push(Bytes::copy_from_slice(&wire[last..p])); last = p; }
            chunks.push(Bytes::copy_from_slice(&wire[last..]));
            let mut d = FrameDecoder::new(1024);
            let got = decode_all(&mut d, &chunks).unwrap();
            prop_assert_eq!(merge(got), merge(expected));
            prop_assert!(d.finish().is_ok());
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut d = FrameDecoder::new(128);
            let mut input = Bytes::from(b);
            while let Ok(Some(_)) = d.decode(&mut input) {}
        }
    }
}
