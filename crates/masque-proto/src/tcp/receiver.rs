//! The receive side of a connect-tcp stream, sans-IO: body bytes in, the TCP
//! byte stream and its FIN out.
//!
//! Capsules are parsed as they stream past: a DATA or FINAL_DATA payload is
//! handed on in the pieces it arrived in (CTCP-06: forward before the whole
//! capsule arrived), shared with the input buffer, never copied or buffered
//! whole; any other capsule type is skipped unbuffered, whatever its length
//! (CTCP-07, R9297-17). Only a capsule header split across two chunks is
//! copied (at most 16 bytes).

use bytes::{Bytes, BytesMut};

use super::Codepoints;
use crate::{
    capsule::{CapsuleError, MAX_HEADER_LEN},
    varint,
};

/// What the received bytes mean for the TCP byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpEvent {
    /// Next bytes of the stream, in order (never empty).
    Data(Bytes),
    /// FINAL_DATA ended: the peer closed its side (TCP FIN, CTCP-20). Its
    /// payload came before as [`TcpEvent::Data`].
    Fin,
}

/// How the peer's HTTP stream ended (CTCP-22).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// FINAL_DATA was received: the TCP side was already sent FIN.
    Graceful,
    /// The stream ended without FINAL_DATA: send TCP RST to the target (CTCP-22).
    Abortive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payload {
    Data,
    Final,
    Skip,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Header,
    Value { kind: Payload, remaining: u64 },
}

/// Receive side of a connect-tcp stream: enforces CTCP-04 (nothing after
/// FINAL_DATA) and R9297-24 (no end inside a capsule).
#[derive(Debug, Clone)]
pub struct TcpReceiver {
    codepoints: Codepoints,
    /// The chunk being parsed.
    input: Bytes,
    /// A capsule header split across chunks.
    header: BytesMut,
    state: State,
    /// A FINAL_DATA header was seen.
    fin: bool,
    skipped: u64,
}

impl TcpReceiver {
    pub fn new(codepoints: Codepoints) -> Self {
        Self {
            codepoints,
            input: Bytes::new(),
            header: BytesMut::new(),
            state: State::Header,
            fin: false,
            skipped: 0,
        }
    }

    /// The next chunk of the HTTP body. Call [`next_event`](Self::next_event) until it
    /// returns `None` before pushing another.
    pub fn push(&mut self, chunk: Bytes) {
        debug_assert!(
            self.input.is_empty(),
            "push before the last chunk was drained"
        );
        if self.input.is_empty() {
            self.input = chunk;
        } else {
            // Misuse in release builds: still correct, at the price of a copy.
            let mut joined = BytesMut::from(&self.input[..]);
            joined.extend_from_slice(&chunk);
            self.input = joined.freeze();
        }
    }

    /// The next event of the pushed bytes; `None` when they are used up.
    pub fn next_event(&mut self) -> Result<Option<TcpEvent>, CapsuleError> {
        loop {
            match self.state {
                State::Header => {
                    let Some((ty, len)) = self.header()? else {
                        return Ok(None);
                    };
                    let kind = if ty == self.codepoints.data {
                        Payload::Data
                    } else if ty == self.codepoints.final_data {
                        Payload::Final
                    } else {
                        self.skipped += 1;
                        Payload::Skip
                    };
                    if kind != Payload::Skip {
                        // CTCP-04: nothing after FINAL_DATA.
                        if self.fin {
                            return Err(CapsuleError::Malformed {
                                ty,
                                reason: "connect-tcp data after FINAL_DATA",
                            });
                        }
                        self.fin = kind == Payload::Final;
                    }
                    self.state = State::Value {
                        kind,
                        remaining: len,
                    };
                }
                State::Value { kind, remaining: 0 } => {
                    self.state = State::Header;
                    if kind == Payload::Final {
                        return Ok(Some(TcpEvent::Fin));
                    }
                }
                State::Value { kind, remaining } => {
                    if self.input.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(self.input.len());
                    let piece = self.input.split_to(take);
                    self.state = State::Value {
                        kind,
                        remaining: remaining - take as u64,
                    };
                    if kind != Payload::Skip {
                        return Ok(Some(TcpEvent::Data(piece)));
                    }
                }
            }
        }
    }

    /// A whole capsule header (Type, Length) from the split-off bytes and the
    /// input, or `None` (the bytes so far kept) when it is not complete yet.
    fn header(&mut self) -> Result<Option<(u64, u64)>, CapsuleError> {
        if self.header.is_empty() {
            match parse_header(&self.input) {
                Some((ty, len, used)) => {
                    let _ = self.input.split_to(used);
                    return Ok(Some((ty, len)));
                }
                None => {
                    self.header.extend_from_slice(&self.input);
                    self.input.clear();
                    return Ok(None);
                }
            }
        }
        let have = self.header.len();
        let more = (MAX_HEADER_LEN - have).min(self.input.len());
        let mut joined = [0u8; MAX_HEADER_LEN];
        joined[..have].copy_from_slice(&self.header);
        joined[have..have + more].copy_from_slice(&self.input[..more]);
        match parse_header(&joined[..have + more]) {
            Some((ty, len, used)) => {
                let _ = self.input.split_to(used - have);
                self.header.clear();
                Ok(Some((ty, len)))
            }
            None => {
                // Incomplete with fewer than 16 bytes: all of them are header.
                self.header.extend_from_slice(&self.input);
                self.input.clear();
                Ok(None)
            }
        }
    }

    /// Whether FINAL_DATA has been received (its header, at least).
    pub fn fin_received(&self) -> bool {
        self.fin
    }

    /// Capsules of other types skipped so far (CTCP-07).
    pub fn skipped_capsules(&self) -> u64 {
        self.skipped
    }

    /// The HTTP stream ended cleanly: how, for the TCP side (CTCP-22), or a
    /// truncated capsule (R9297-24).
    pub fn finish(&self) -> Result<StreamEnd, CapsuleError> {
        let inside = match self.state {
            State::Header => !self.header.is_empty() || !self.input.is_empty(),
            State::Value { remaining, .. } => remaining > 0,
        };
        if inside {
            return Err(CapsuleError::Truncated);
        }
        Ok(self.end_of_stream())
    }

    /// How the stream ends if it ends now without error (CTCP-22).
    pub fn end_of_stream(&self) -> StreamEnd {
        if self.fin && matches!(self.state, State::Header) {
            StreamEnd::Graceful
        } else {
            StreamEnd::Abortive
        }
    }
}

/// Type and Length at the front of `buf`, and the bytes they take.
fn parse_header(buf: &[u8]) -> Option<(u64, u64, usize)> {
    // Decoding fails only on incomplete input: wait for more.
    let (ty, a) = varint::decode(buf).ok()?;
    let (len, b) = varint::decode(&buf[a..]).ok()?;
    Some((ty, len, a + b))
}
