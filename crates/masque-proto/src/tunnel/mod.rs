//! The sans-IO core of a datagram tunnel's receive side (connect-udp, connect-ip),
//! shared by the server session and the client reader.
//!
//! It applies, in one place:
//!
//! * the Capsule Protocol framing of the request stream (RFC 9297 §3.2) with the
//!   receiver's size bound (R9297-34), via [`CapsuleDecoder`];
//! * DATAGRAM capsules mean the same as QUIC DATAGRAMs (R9297-31): both go through
//!   [`DatagramRules::classify`] (known Context ID, R9298-38; UDP bound, R9298-41);
//! * other capsule types, GREASE included, are handed up as
//!   [`TunnelEvent::Capsule`] when they fit the bound: the protocol layer parses
//!   the ones it knows, an endpoint skips the rest (R9297-17);
//! * a capsule over the bound is not buffered. One of another type than DATAGRAM
//!   is skipped as it streams past, whatever its length (R9297-17: an unknown
//!   type must be skipped; counted in [`TunnelCore::skipped_capsules`]). An
//!   oversize DATAGRAM capsule is judged by its Context ID
//!   ([`DatagramRules::classify_oversize`]): an unknown one is dropped (R9298-38),
//!   Context ID 0 with a UDP payload over 65527 bytes aborts (R9298-41), any
//!   other Context-ID-0 capsule over the bound is malformed (R9297-34);
//! * the peer's FIN inside a capsule is malformed (R9297-24).
//!
//! Every [`TunnelCoreError`] aborts the request stream as a malformed message
//! (R9297-22, R9298-41): HTTP/3 `H3_MESSAGE_ERROR`, HTTP/2 `PROTOCOL_ERROR`,
//! HTTP/1.1 close ([`TunnelCoreError::H3_CODE`], [`TunnelCoreError::H2_CODE`]).
//! Errors are sticky: after one, every call returns it again.
//!
//! ```
//! use bytes::Bytes;
//! use masque_proto::tunnel::{DatagramEvent, DatagramRules, TunnelCore, TunnelEvent};
//!
//! let mut core = TunnelCore::new(DatagramRules::udp(), 64 * 1024);
//! // A DATAGRAM capsule (Context ID 0, "abc") split across two DATA frames, then a
//! // GREASE capsule.
//! core.push_body(Bytes::from_static(&[0x00, 0x04, 0x00]));
//! assert_eq!(core.next_event(), Ok(None));
//! core.push_body(Bytes::from_static(&[b'a', b'b', b'c', 0x17, 0x00]));
//! assert_eq!(
//!     core.next_event(),
//!     Ok(Some(TunnelEvent::Datagram(DatagramEvent::Payload {
//!         context_id: 0,
//!         payload: Bytes::from_static(b"abc"),
//!     })))
//! );
//! assert!(matches!(core.next_event(), Ok(Some(TunnelEvent::Capsule(c))) if c.is_grease()));
//! assert_eq!(core.next_event(), Ok(None));
//! assert_eq!(core.on_fin(), Ok(()));
//! ```

mod rules;

#[cfg(test)]
mod tests;

pub use rules::{DatagramEvent, DatagramRules, DropReason};

use bytes::Bytes;

use crate::capsule::{
    self, Capsule, CapsuleDecoder, CapsuleError, Frame, OversizePolicy, error_code,
};

/// Receive-side state of one tunnel: the capsule decoder and the datagram rules.
#[derive(Debug, Clone)]
pub struct TunnelCore {
    rules: DatagramRules,
    decoder: CapsuleDecoder,
    /// Oversize non-DATAGRAM capsules skipped unbuffered (R9297-17).
    skipped_capsules: u64,
    /// The first error; returned by every later call.
    failed: Option<TunnelCoreError>,
}

/// What the stream delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelEvent {
    /// A DATAGRAM capsule, classified like a QUIC DATAGRAM (R9297-31).
    Datagram(DatagramEvent),
    /// Any other capsule type, for the protocol layer (e.g. connect-ip's
    /// ADDRESS_* and ROUTE_ADVERTISEMENT) or the handler. An endpoint that does
    /// not know the type skips it (R9297-17); GREASE types are among them
    /// (R9297-38).
    Capsule(Capsule),
}

/// Why the request stream must be aborted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TunnelCoreError {
    /// A Capsule Protocol error: a Context-ID-0 DATAGRAM capsule over the size
    /// bound (R9297-34) or a capsule cut by the peer's FIN (R9297-24). A
    /// malformed message (R9297-22).
    #[error("malformed capsule stream: {0}")]
    Malformed(#[from] CapsuleError),
    /// A Context-ID-0 UDP payload over 65527 bytes (R9298-41).
    #[error("UDP payload of {0} bytes exceeds 65527")]
    PayloadTooLarge(usize),
}

impl TunnelCoreError {
    /// HTTP/3 stream error for every variant (R9297-22; R9298-41 fixes no code, the
    /// rfc9298 digest's error map uses this one).
    pub const H3_CODE: u64 = error_code::H3_MESSAGE_ERROR;
    /// HTTP/2 stream error for every variant (R9297-22).
    pub const H2_CODE: u32 = error_code::H2_PROTOCOL_ERROR;
}

impl TunnelCore {
    /// A core that buffers capsules of at most `max_capsule_size` bytes (value
    /// length, R9297-34; [`capsule::DEFAULT_MAX_CAPSULE_SIZE`] is 64 KiB, which
    /// leaves room for the largest UDP payload plus its Context ID). Longer ones
    /// are skipped or judged by their Context ID, never buffered (module docs).
    pub fn new(rules: DatagramRules, max_capsule_size: usize) -> Self {
        Self {
            rules,
            decoder: CapsuleDecoder::with_max_size(max_capsule_size)
                .oversize_policy(OversizePolicy::Report),
            skipped_capsules: 0,
            failed: None,
        }
    }

    /// The datagram rules, for a datagram path that runs elsewhere.
    pub fn rules(&self) -> DatagramRules {
        self.rules
    }

    /// Body bytes held while a capsule is incomplete (for memory accounting).
    pub fn buffered_len(&self) -> usize {
        self.decoder.buffered_len()
    }

    /// An HTTP Datagram Payload (Context ID first) from a QUIC DATAGRAM; see
    /// [`DatagramRules::classify`]. After an error of the stream, returns that error.
    pub fn on_datagram(&self, payload: Bytes) -> Result<DatagramEvent, TunnelCoreError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.rules.classify(payload)
    }

    /// Body bytes (the capsule stream) from the request stream. Zero-copy when the
    /// previous chunk was drained with [`next_event`](Self::next_event). Ignored
    /// after an error.
    pub fn push_body(&mut self, chunk: Bytes) {
        if self.failed.is_none() {
            self.decoder.push(chunk);
        }
    }

    /// The next event from the buffered body; `Ok(None)`: more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<TunnelEvent>, TunnelCoreError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            let event = match self.decoder.next_frame() {
                Ok(None) => Ok(None),
                Ok(Some(Frame::Capsule(c))) if c.ty == capsule::DATAGRAM => self
                    .rules
                    .classify(c.value)
                    .map(|d| Some(TunnelEvent::Datagram(d))),
                Ok(Some(Frame::Capsule(c))) => Ok(Some(TunnelEvent::Capsule(c))),
                Ok(Some(Frame::Oversize { ty, len, prefix })) if ty == capsule::DATAGRAM => {
                    let max = self.decoder.max_size();
                    self.rules
                        .classify_oversize(len, prefix, max)
                        .map(|d| Some(TunnelEvent::Datagram(d)))
                }
                Ok(Some(Frame::Oversize { .. })) => {
                    // R9297-17: a type this tunnel does not use, skipped
                    // unbuffered whatever its length (the decoder discards
                    // the rest of its value as it arrives).
                    self.skipped_capsules += 1;
                    continue;
                }
                Err(e) => Err(TunnelCoreError::Malformed(e)),
            };
            return self.fail_on(event);
        }
    }

    /// Capsules of other types than DATAGRAM that were over the size bound and
    /// were skipped without buffering (R9297-17).
    pub fn skipped_capsules(&self) -> u64 {
        self.skipped_capsules
    }

    /// The peer's FIN (H3 FIN, H2 END_STREAM, H1 close). Call after
    /// [`next_event`](Self::next_event) returned `Ok(None)`. Any byte still held
    /// means the stream ended inside a capsule (R9297-24).
    pub fn on_fin(&mut self) -> Result<(), TunnelCoreError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let end = self.decoder.finish().map_err(TunnelCoreError::Malformed);
        self.fail_on(end)
    }

    /// Records the first error so that it sticks.
    fn fail_on<T>(&mut self, r: Result<T, TunnelCoreError>) -> Result<T, TunnelCoreError> {
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }
}
