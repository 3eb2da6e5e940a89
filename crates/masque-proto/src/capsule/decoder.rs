//! Incremental capsule stream decoder (RFC 9297 §3.2, §3.3).

use bytes::{Buf, Bytes, BytesMut};

use super::{Capsule, CapsuleError, DATAGRAM, DEFAULT_MAX_CAPSULE_SIZE, MAX_HEADER_LEN};
use crate::varint;

/// What to do with a capsule whose Length exceeds the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OversizePolicy {
    /// Every oversize capsule is a [`CapsuleError::TooLarge`] (the default).
    #[default]
    Error,
    /// An oversize DATAGRAM capsule is discarded as its bytes arrive, without
    /// buffering, and counted ([`CapsuleDecoder::skipped_datagrams`]) (R9297-34,
    /// R9298-42). Other oversize types are still errors.
    SkipDatagram,
    /// An oversize capsule of any type is not an error:
    /// [`CapsuleDecoder::next_frame`] reports it as [`Frame::Oversize`] (for a
    /// DATAGRAM capsule once its Context ID has arrived), then the rest of its value is discarded as it arrives, without buffering
    /// (R9297-17: an unknown type is skipped whatever its length).
    /// [`CapsuleDecoder::next_capsule`] skips such capsules silently.
    Report,
}

/// Most value bytes kept of an oversize capsule under [`OversizePolicy::Report`]:
/// the longest varint, a DATAGRAM capsule's Context ID.
pub const OVERSIZE_PREFIX_LEN: usize = 8;

/// One item of the capsule stream, from [`CapsuleDecoder::next_frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete capsule within the bound.
    Capsule(Capsule),
    /// A capsule over the bound (only under [`OversizePolicy::Report`]): its type,
    /// Length, and for a DATAGRAM capsule the first bytes of its value: the
    /// Context ID varint (at most [`OVERSIZE_PREFIX_LEN`] bytes), or the whole
    /// value if it is shorter than the varint claims; empty for other types.
    /// The remaining value bytes are being discarded by the decoder; a FIN before
    /// they all arrived is still [`CapsuleError::Truncated`] (R9297-24).
    Oversize { ty: u64, len: u64, prefix: Bytes },
}

#[derive(Debug, Clone)]
enum State {
    /// Between capsules, possibly with a partial header in `hdr`.
    Header,
    /// Collecting the value of a capsule that spans chunks into `value`.
    Value { ty: u64, len: usize },
    /// Discarding an oversize DATAGRAM capsule (R9297-34), or the rest of an
    /// oversize capsule under [`OversizePolicy::Report`].
    Skip { remaining: u64 },
    /// Collecting the Context ID of an oversize DATAGRAM capsule into `value`
    /// ([`OversizePolicy::Report`]); other types pass straight to `Skip`.
    Prefix { ty: u64, len: u64 },
    /// A previous error; the stream is unusable (R9297-22).
    Failed(CapsuleError),
}

/// Decodes a capsule stream delivered in chunks split at arbitrary points.
///
/// Feed bytes with [`push`](Self::push) (zero-copy) or
/// [`push_slice`](Self::push_slice), then call [`next_capsule`](Self::next_capsule) until it
/// returns `Ok(None)`; at the end of the stream call [`finish`](Self::finish), which
/// reports a partial capsule as [`CapsuleError::Truncated`] (R9297-24).
///
/// A capsule that lies entirely inside one pushed chunk is returned as a slice of
/// that chunk without copying. Only a capsule split across chunks is copied, into a
/// buffer that never holds more than the bound ([`DEFAULT_MAX_CAPSULE_SIZE`] unless
/// configured) plus a 16-byte header (R9297-34).
///
/// Capsules of every type, known, unknown or GREASE, are returned; skipping unknown
/// types (R9297-17) or forwarding them (R9297-16) is the caller's choice. A capsule
/// over the bound is an error, or skipped without buffering ([`OversizePolicy`]).
///
/// After an error the decoder keeps returning that error.
#[derive(Debug, Clone)]
pub struct CapsuleDecoder {
    max_size: usize,
    policy: OversizePolicy,
    state: State,
    /// Pushed bytes not yet examined.
    input: Bytes,
    /// Partial header carried over from a previous chunk.
    hdr: [u8; MAX_HEADER_LEN],
    hdr_len: usize,
    /// Partial value carried over from previous chunks.
    value: BytesMut,
    skipped_datagrams: u64,
}

impl Default for CapsuleDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl CapsuleDecoder {
    /// Decoder with the default 64 KiB bound and [`OversizePolicy::Error`].
    pub fn new() -> Self {
        Self::with_max_size(DEFAULT_MAX_CAPSULE_SIZE)
    }

    /// Decoder that refuses capsule values longer than `max_size` bytes (R9297-34).
    pub fn with_max_size(max_size: usize) -> Self {
        Self {
            max_size,
            policy: OversizePolicy::Error,
            state: State::Header,
            input: Bytes::new(),
            hdr: [0; MAX_HEADER_LEN],
            hdr_len: 0,
            value: BytesMut::new(),
            skipped_datagrams: 0,
        }
    }

    /// Sets the policy for oversize capsules (builder style).
    pub fn oversize_policy(mut self, policy: OversizePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Changes the bound for capsules whose header has not been read yet.
    pub fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
    }

    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Oversize DATAGRAM capsules discarded under [`OversizePolicy::SkipDatagram`].
    pub fn skipped_datagrams(&self) -> u64 {
        self.skipped_datagrams
    }

    /// Bytes held by the decoder (unexamined input, partial header and value).
    pub fn buffered_len(&self) -> usize {
        self.input.len() + self.hdr_len + self.value.len()
    }

    /// Appends a received chunk. Zero-copy when the previous input was drained with
    /// [`next_capsule`](Self::next_capsule) (the normal pattern); otherwise the undrained bytes and
    /// `chunk` are joined into one buffer.
    pub fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        if self.input.is_empty() {
            self.input = chunk;
        } else {
            let mut joined = BytesMut::with_capacity(self.input.len() + chunk.len());
            joined.extend_from_slice(&self.input);
            joined.extend_from_slice(&chunk);
            self.input = joined.freeze();
        }
    }

    /// Appends a received chunk by copying it.
    pub fn push_slice(&mut self, chunk: &[u8]) {
        self.push(Bytes::copy_from_slice(chunk));
    }

    /// Next complete capsule, `Ok(None)` when more bytes are needed. Under
    /// [`OversizePolicy::Report`] oversize capsules are skipped.
    pub fn next_capsule(&mut self) -> Result<Option<Capsule>, CapsuleError> {
        loop {
            match self.next_frame()? {
                None => return Ok(None),
                Some(Frame::Capsule(c)) => return Ok(Some(c)),
                Some(Frame::Oversize { .. }) => {}
            }
        }
    }

    /// Next complete capsule or oversize-capsule report ([`Frame::Oversize`], only
    /// under [`OversizePolicy::Report`]); `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, CapsuleError> {
        loop {
            match self.state {
                State::Failed(ref e) => return Err(e.clone()),
                State::Skip { remaining } => {
                    if self.input.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(self.input.len());
                    self.input.advance(n);
                    let left = remaining.saturating_sub(n as u64);
                    self.state = if left == 0 {
                        State::Header
                    } else {
                        State::Skip { remaining: left }
                    };
                }
                State::Value { ty, len } => {
                    let need = len.saturating_sub(self.value.len());
                    let part = self.input.split_to(need.min(self.input.len()));
                    self.value.extend_from_slice(&part);
                    if self.value.len() < len {
                        return Ok(None);
                    }
                    self.state = State::Header;
                    let value = self.value.split().freeze();
                    return Ok(Some(Frame::Capsule(Capsule { ty, value })));
                }
                State::Prefix { ty, len } => {
                    let want = match (ty, self.value.first().or(self.input.first())) {
                        (DATAGRAM, None) => return Ok(None),
                        (DATAGRAM, Some(b)) => prefix_len(len, *b),
                        _ => 0,
                    };
                    let need = want.saturating_sub(self.value.len());
                    let part = self.input.split_to(need.min(self.input.len()));
                    self.value.extend_from_slice(&part);
                    if self.value.len() < want {
                        return Ok(None);
                    }
                    let prefix = self.value.split().freeze();
                    let left = len.saturating_sub(want as u64);
                    self.state = if left == 0 {
                        State::Header
                    } else {
                        State::Skip { remaining: left }
                    };
                    return Ok(Some(Frame::Oversize { ty, len, prefix }));
                }
                State::Header => {
                    let Some((ty, len)) = self.read_header() else {
                        return Ok(None);
                    };
                    match self.start_value(ty, len) {
                        Ok(Some(len)) if self.input.len() >= len => {
                            // Hot path: the whole value is in the current chunk.
                            let value = self.input.split_to(len);
                            return Ok(Some(Frame::Capsule(Capsule { ty, value })));
                        }
                        Ok(Some(len)) => self.state = State::Value { ty, len },
                        Ok(None) => {}
                        Err(e) => {
                            self.state = State::Failed(e.clone());
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    /// Declares the end of the stream (H3 FIN, H2 END_STREAM, H1 close). Call it
    /// after [`next_capsule`](Self::next_capsule) returned `Ok(None)`. Any byte still held — a
    /// partial capsule, or input not yet drained — means the stream did not end on a
    /// capsule boundary: [`CapsuleError::Truncated`] (R9297-24).
    pub fn finish(&mut self) -> Result<(), CapsuleError> {
        if let State::Failed(ref e) = self.state {
            return Err(e.clone());
        }
        let clean = matches!(self.state, State::Header) && self.buffered_len() == 0;
        if clean {
            Ok(())
        } else {
            self.state = State::Failed(CapsuleError::Truncated);
            Err(CapsuleError::Truncated)
        }
    }

    /// Reads a capsule header from the carried-over bytes plus `input`. Returns
    /// `None` (keeping the partial header) when it is not complete yet.
    fn read_header(&mut self) -> Option<(u64, u64)> {
        if self.input.is_empty() {
            return None;
        }
        if self.hdr_len == 0 {
            if let Some((ty, len, n)) = parse_header(&self.input) {
                self.input.advance(n);
                return Some((ty, len));
            }
            // An incomplete header is shorter than MAX_HEADER_LEN bytes.
            self.stash_header_bytes(self.input.len());
            return None;
        }
        let mut tmp = self.hdr;
        let have = self.hdr_len.min(MAX_HEADER_LEN);
        let extra = (MAX_HEADER_LEN - have).min(self.input.len());
        let dst = tmp.get_mut(have..have + extra)?;
        dst.copy_from_slice(self.input.get(..extra)?);
        match parse_header(tmp.get(..have + extra)?) {
            Some((ty, len, n)) => {
                // The carried-over bytes alone were incomplete, so n > have.
                self.input
                    .advance(n.saturating_sub(have).min(self.input.len()));
                self.hdr_len = 0;
                Some((ty, len))
            }
            None => {
                self.stash_header_bytes(extra);
                None
            }
        }
    }

    /// Moves `n` bytes of `input` into the partial header.
    fn stash_header_bytes(&mut self, n: usize) {
        let n = n.min(MAX_HEADER_LEN - self.hdr_len.min(MAX_HEADER_LEN));
        let part = self.input.split_to(n.min(self.input.len()));
        if let Some(dst) = self.hdr.get_mut(self.hdr_len..self.hdr_len + part.len()) {
            dst.copy_from_slice(&part);
            self.hdr_len += part.len();
        }
    }

    /// Applies the size bound to a new capsule. `Ok(Some(len))`: collect the value;
    /// `Ok(None)`: it is being skipped.
    fn start_value(&mut self, ty: u64, len: u64) -> Result<Option<usize>, CapsuleError> {
        let too_large = CapsuleError::TooLarge {
            ty,
            len,
            max: self.max_size,
        };
        match usize::try_from(len) {
            Ok(n) if n <= self.max_size => return Ok(Some(n)),
            _ => {}
        }
        if ty == DATAGRAM && self.policy == OversizePolicy::SkipDatagram {
            // R9297-34 / R9298-42: discard without buffering the value.
            self.skipped_datagrams += 1;
            self.state = State::Skip { remaining: len };
            return Ok(None);
        }
        if self.policy == OversizePolicy::Report {
            // R9297-17: keep a Context ID's worth, discard the rest unbuffered.
            self.state = State::Prefix { ty, len };
            return Ok(None);
        }
        Err(too_large)
    }
}

/// Value bytes kept of an oversize DATAGRAM capsule of Length `len` whose value
/// starts with `first`: its Context ID varint, or the whole value if shorter.
fn prefix_len(len: u64, first: u8) -> usize {
    let varint_len = 1usize << (first >> 6);
    usize::try_from(len).unwrap_or(usize::MAX).min(varint_len)
}

/// Parses `Type (i) | Length (i)` at the front of `buf`: (type, length, bytes used).
fn parse_header(buf: &[u8]) -> Option<(u64, u64, usize)> {
    let (ty, a) = varint::decode(buf).ok()?;
    let (len, b) = varint::decode(buf.get(a..)?).ok()?;
    Some((ty, len, a + b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capsule::{encode, is_grease};
    use proptest::prelude::*;

    fn decode_all(d: &mut CapsuleDecoder) -> Result<Vec<Capsule>, CapsuleError> {
        let mut out = Vec::new();
        while let Some(c) = d.next_capsule()? {
            out.push(c);
        }
        Ok(out)
    }

    fn cap(ty: u64, v: &[u8]) -> Capsule {
        Capsule {
            ty,
            value: Bytes::copy_from_slice(v),
        }
    }

    /// Spec README vector 7 (R9297-31): `00 04 00 01 02 03` decodes, zero-copy.
    #[test]
    fn r9297_31_datagram_capsule_zero_copy() {
        let wire = Bytes::from_static(&[0x00, 0x04, 0x00, 0x01, 0x02, 0x03]);
        let mut d = CapsuleDecoder::new();
        d.push(wire.clone());
        let c = d.next_capsule().unwrap().unwrap();
        assert_eq!(c, cap(DATAGRAM, &[0, 1, 2, 3]));
        // The value points into the pushed chunk (no copy on the hot path).
        assert_eq!(c.value.as_ptr(), wire[2..].as_ptr());
        assert_eq!(d.next_capsule(), Ok(None));
        assert_eq!(d.finish(), Ok(()));
    }

    /// Spec README vector 7 (R9297-24): `00 04 00 01` then FIN is truncated.
    #[test]
    fn r9297_24_truncated_at_fin() {
        let mut d = CapsuleDecoder::new();
        d.push_slice(&[0x00, 0x04, 0x00, 0x01]);
        assert_eq!(d.next_capsule(), Ok(None));
        assert_eq!(d.finish(), Err(CapsuleError::Truncated));
        // Partial header at FIN, too (type byte of a 2-byte varint only).
        let mut d = CapsuleDecoder::new();
        d.push_slice(&[0x40]);
        assert_eq!(d.next_capsule(), Ok(None));
        assert_eq!(d.finish(), Err(CapsuleError::Truncated));
        // Type without Length.
        let mut d = CapsuleDecoder::new();
        d.push_slice(&[0x00]);
        assert_eq!(d.next_capsule(), Ok(None));
        assert_eq!(d.finish(), Err(CapsuleError::Truncated));
        // Empty stream ends cleanly.
        assert_eq!(CapsuleDecoder::new().finish(), Ok(()));
    }

    /// Spec README vector 8 / R9297-17: GREASE capsules between DATAGRAM capsules
    /// are passed up (the caller skips them) and framing continues after them.
    #[test]
    fn r9297_17_grease_passed_up_and_skippable() {
        let mut wire = vec![0x00, 0x04, 0x00, 0x01, 0x02, 0x03];
        wire.extend_from_slice(&[0x17, 0x02, 0xab, 0xcd]);
        wire.extend_from_slice(&[0x40, 0x40, 0x00]);
        wire.extend_from_slice(&[0x00, 0x01, 0x00]);
        let mut d = CapsuleDecoder::new();
        d.push(Bytes::from(wire));
        let all = decode_all(&mut d).unwrap();
        assert_eq!(
            all,
            [
                cap(DATAGRAM, &[0, 1, 2, 3]),
                cap(0x17, &[0xab, 0xcd]),
                cap(0x40, &[]),
                cap(DATAGRAM, &[0]),
            ]
        );
        let known: Vec<_> = all.iter().filter(|c| !is_grease(c.ty)).collect();
        assert_eq!(known.len(), 2);
        assert_eq!(d.finish(), Ok(()));
    }

    /// QV-03 via R9297 §1.1: non-minimal type and length varints are accepted.
    #[test]
    fn qv03_non_minimal_header() {
        let mut d = CapsuleDecoder::new();
        d.push_slice(&[0x40, 0x00, 0x80, 0x00, 0x00, 0x01, 0xaa]);
        assert_eq!(d.next_capsule(), Ok(Some(cap(DATAGRAM, &[0xaa]))));
    }

    /// R9297-34: a Length above the bound is an error before any value byte arrives.
    #[test]
    fn r9297_34_oversize_error() {
        let mut d = CapsuleDecoder::with_max_size(4);
        d.push_slice(&[0x00, 0x05]);
        let e = CapsuleError::TooLarge {
            ty: 0,
            len: 5,
            max: 4,
        };
        assert_eq!(d.next_capsule(), Err(e.clone()));
        // Sticky.
        d.push_slice(&[1, 2, 3]);
        assert_eq!(d.next_capsule(), Err(e.clone()));
        assert_eq!(d.finish(), Err(e));
        // Exactly at the bound is fine.
        let mut d = CapsuleDecoder::with_max_size(4);
        d.push_slice(&[0x00, 0x04, 1, 2, 3, 4]);
        assert_eq!(d.next_capsule(), Ok(Some(cap(0, &[1, 2, 3, 4]))));
        // Huge 8-byte length is refused, not allocated.
        let mut d = CapsuleDecoder::new();
        d.push_slice(&[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            d.next_capsule(),
            Err(CapsuleError::TooLarge { .. })
        ));
        assert_eq!(DEFAULT_MAX_CAPSULE_SIZE, 65536);
    }

    /// R9297-34 / R9298-42: under SkipDatagram an oversize DATAGRAM capsule is
    /// skipped across chunks without buffering, counted, and decoding resumes.
    #[test]
    fn r9297_34_oversize_datagram_skipped() {
        let mut d = CapsuleDecoder::with_max_size(4).oversize_policy(OversizePolicy::SkipDatagram);
        d.push_slice(&[0x00, 0x06, 1, 2]);
        assert_eq!(d.next_capsule(), Ok(None));
        assert_eq!(d.buffered_len(), 0);
        d.push_slice(&[3, 4, 5, 6, 0x00, 0x01]);
        assert_eq!(d.next_capsule(), Ok(None));
        d.push_slice(&[9]);
        assert_eq!(d.next_capsule(), Ok(Some(cap(DATAGRAM, &[9]))));
        assert_eq!(d.skipped_datagrams(), 1);
        assert_eq!(d.finish(), Ok(()));
        // Other types are still errors under this policy.
        let mut d = CapsuleDecoder::with_max_size(4).oversize_policy(OversizePolicy::SkipDatagram);
        d.push_slice(&[0x01, 0x05]);
        assert!(matches!(
            d.next_capsule(),
            Err(CapsuleError::TooLarge { ty: 1, .. })
        ));
        // A skip cut short by FIN is still a truncated stream (R9297-24).
        let mut d = CapsuleDecoder::with_max_size(1).oversize_policy(OversizePolicy::SkipDatagram);
        d.push_slice(&[0x00, 0x03, 1]);
        assert_eq!(d.next_capsule(), Ok(None));
        assert_eq!(d.finish(), Err(CapsuleError::Truncated));
    }

    /// R9297-17: under Report every oversize capsule is reported, a DATAGRAM one
    /// with its Context ID, and its value is skipped without buffering; a FIN in
    /// the skipped value is truncated (R9297-24); next_capsule skips them.
    #[test]
    fn r9297_17_oversize_reported_and_skipped() {
        let mut d = CapsuleDecoder::with_max_size(2).oversize_policy(OversizePolicy::Report);
        // GREASE, Length 5: reported at once, with no prefix.
        d.push_slice(&[0x17, 0x05, 1]);
        assert_eq!(
            d.next_frame(),
            Ok(Some(Frame::Oversize {
                ty: 0x17,
                len: 5,
                prefix: Bytes::new()
            }))
        );
        d.push_slice(&[2, 3, 4, 5]);
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.buffered_len(), 0);
        // DATAGRAM, Length 6, 4-byte Context ID split over two chunks.
        d.push_slice(&[0x00, 0x06, 0x80, 0x00]);
        assert_eq!(d.next_frame(), Ok(None));
        d.push_slice(&[0x00, 0x07, 9, 9, 0x00, 0x01]);
        assert_eq!(
            d.next_frame(),
            Ok(Some(Frame::Oversize {
                ty: DATAGRAM,
                len: 6,
                prefix: Bytes::from_static(&[0x80, 0, 0, 7])
            }))
        );
        assert_eq!(d.next_frame(), Ok(None));
        d.push_slice(&[0xaa]);
        assert_eq!(d.next_capsule(), Ok(Some(cap(DATAGRAM, &[0xaa]))));
        assert_eq!(d.finish(), Ok(()));
        // A varint longer than the value: the prefix is the whole value.
        let mut d = CapsuleDecoder::with_max_size(1).oversize_policy(OversizePolicy::Report);
        d.push_slice(&[0x00, 0x03, 0xc0, 0, 0]);
        assert_eq!(
            d.next_frame(),
            Ok(Some(Frame::Oversize {
                ty: DATAGRAM,
                len: 3,
                prefix: Bytes::from_static(&[0xc0, 0, 0])
            }))
        );
        assert_eq!(d.finish(), Ok(()));
        // next_capsule skips; FIN inside the skipped value is truncated.
        let mut d = CapsuleDecoder::with_max_size(1).oversize_policy(OversizePolicy::Report);
        d.push_slice(&[0x40, 0x40, 0x09, 1, 2]);
        assert_eq!(d.next_capsule(), Ok(None));
        assert_eq!(d.finish(), Err(CapsuleError::Truncated));
    }

    /// Undrained input is joined with the next chunk, nothing is lost.
    #[test]
    fn push_without_drain() {
        let mut d = CapsuleDecoder::new();
        d.push_slice(&[0x00, 0x01]);
        d.push_slice(&[0x07, 0x00]);
        d.push_slice(&[0x00]);
        assert_eq!(d.next_capsule(), Ok(Some(cap(0, &[7]))));
        assert_eq!(d.next_capsule(), Ok(Some(cap(0, &[]))));
        assert_eq!(d.next_capsule(), Ok(None));
        assert_eq!(d.finish(), Ok(()));
    }

    /// R9297-24: finish with undrained bytes does not claim a clean end.
    #[test]
    fn r9297_24_finish_undrained_is_truncated() {
        let mut d = CapsuleDecoder::new();
        d.push_slice(&[0x00, 0x00]);
        assert_eq!(d.finish(), Err(CapsuleError::Truncated));
    }

    fn stream_strategy() -> impl Strategy<Value = Vec<(u64, Vec<u8>)>> {
        let ty = prop_oneof![
            Just(0u64),
            0u64..64,
            64u64..16384,
            Just(0x2028_d7f0u64),
            0u64..=varint::MAX
        ];
        proptest::collection::vec((ty, proptest::collection::vec(any::<u8>(), 0..100)), 0..8)
    }

    proptest! {
        /// Splitting the same stream at arbitrary points yields identical capsules.
        #[test]
        fn split_anywhere_same_capsules(
            caps in stream_strategy(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let mut wire = Vec::new();
            for (ty, v) in &caps {
                encode(*ty, v, &mut wire);
            }
            let expected: Vec<Capsule> = caps.iter().map(|(t, v)| cap(*t, v)).collect();

            let mut whole = CapsuleDecoder::new();
            whole.push(Bytes::from(wire.clone()));
            prop_assert_eq!(decode_all(&mut whole).unwrap(), expected.clone());
            prop_assert_eq!(whole.finish(), Ok(()));

            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
            points.sort_unstable();
            let mut d = CapsuleDecoder::new();
            let mut got = Vec::new();
            let mut prev = 0;
            for p in points.into_iter().chain([wire.len()]) {
                d.push_slice(&wire[prev..p]);
                got.extend(decode_all(&mut d).unwrap());
                prev = p;
            }
            prop_assert_eq!(got, expected);
            prop_assert_eq!(d.finish(), Ok(()));
        }

        /// Decoding arbitrary bytes in arbitrary chunks never panics, never buffers
        /// more than the bound plus a header, and any prefix cut mid-capsule is
        /// reported as truncated.
        #[test]
        fn decode_arbitrary_never_panics(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
            max in 0usize..64,
            policy in prop_oneof![
                Just(OversizePolicy::Error),
                Just(OversizePolicy::SkipDatagram),
                Just(OversizePolicy::Report),
            ],
        ) {
            let mut d = CapsuleDecoder::with_max_size(max).oversize_policy(policy);
            for c in &chunks {
                d.push_slice(c);
                loop {
                    match d.next_frame() {
                        Ok(Some(Frame::Capsule(cap))) => prop_assert!(cap.value.len() <= max),
                        Ok(Some(Frame::Oversize { len, prefix, .. })) => {
                            prop_assert!(policy == OversizePolicy::Report);
                            prop_assert!(len > max as u64);
                            prop_assert!(prefix.len() <= OVERSIZE_PREFIX_LEN);
                        }
                        Ok(None) => break,
                        Err(_) => break,
                    }
                }
                prop_assert!(d.hdr_len < MAX_HEADER_LEN);
                prop_assert!(d.value.len() <= max.max(OVERSIZE_PREFIX_LEN));
            }
            let _ = d.finish();
        }
    }
}
