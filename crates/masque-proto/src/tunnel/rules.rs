//! What a tunnel accepts in an HTTP Datagram Payload: which Context IDs are known
//! and the payload bound of the known one (RFC 9298 §5, RFC 9484 §6).

use bytes::Bytes;

use super::TunnelCoreError;
use crate::capsule::{self, CapsuleError};
use crate::datagram::{self, DatagramError, UDP_CONTEXT_ID};
use crate::varint;

/// The payload layout of the tunnel's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payload {
    /// connect-udp: Context ID 0 carries a UDP payload of at most 65527 bytes
    /// (R9298-39, R9298-41).
    Udp,
    /// connect-ip: Context ID 0 carries one IP packet; no bound here beyond the
    /// transport's (R9484-43). Checking the packet is the IP layer's job.
    Ip,
}

/// Datagram rules of one tunnel. `Copy`, so a datagram path running apart from the
/// stream reader (e.g. the client's QUIC DATAGRAM receiver) classifies with its own
/// copy ([`DatagramRules::classify`]).
///
/// Only Context ID 0 is known: neither connect-udp nor connect-ip registers other
/// contexts by itself (R9298-37, R9484-41), so every other ID is dropped
/// (R9298-38, R9484-42: drop silently; we never buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramRules {
    payload: Payload,
}

impl DatagramRules {
    /// connect-udp (RFC 9298 §5): Context ID 0, payload at most
    /// [`datagram::MAX_UDP_PAYLOAD`] (65527) bytes, a longer one aborts the stream
    /// (R9298-41).
    pub const fn udp() -> Self {
        Self {
            payload: Payload::Udp,
        }
    }

    /// connect-ip (RFC 9484 §6): Context ID 0, the payload is an IP packet
    /// (R9484-43) with no bound of its own.
    pub const fn ip() -> Self {
        Self {
            payload: Payload::Ip,
        }
    }

    /// Classifies one HTTP Datagram Payload (Context ID first), from a QUIC
    /// DATAGRAM (after the Quarter Stream ID) or from a DATAGRAM capsule: both have
    /// the same meaning (R9297-31). Zero-copy: the payload is a slice of `payload`.
    ///
    /// Drops are not errors (R9298-38; too short for a Context ID is our choice,
    /// rfc9297 digest §6). The only error is a Context-ID-0 UDP payload over 65527
    /// bytes (R9298-41): abort the request stream.
    pub fn classify(&self, payload: Bytes) -> Result<DatagramEvent, TunnelCoreError> {
        let parsed = match self.payload {
            Payload::Udp => datagram::parse_udp_payload(payload),
            Payload::Ip => datagram::parse_context(payload),
        };
        match parsed {
            Ok((UDP_CONTEXT_ID, payload)) => Ok(DatagramEvent::Payload {
                context_id: UDP_CONTEXT_ID,
                payload,
            }),
            Ok(_) => Ok(DatagramEvent::Dropped(DropReason::UnknownContext)),
            Err(DatagramError::UdpPayloadTooLarge(len)) => {
                Err(TunnelCoreError::PayloadTooLarge(len))
            }
            Err(_) => Ok(DatagramEvent::Dropped(DropReason::NoContextId)),
        }
    }

    /// Classifies a DATAGRAM capsule whose Length `len` exceeds the receiver's
    /// bound `max`, from the first bytes of its value (`prefix`, at least the
    /// Context ID when the value holds one); the rest of the value is being
    /// skipped unbuffered.
    ///
    /// * an unknown Context ID is dropped like any other (R9298-38), whatever
    ///   the length: it is never buffered, so its size harms no one;
    /// * no Context ID (the varint is cut by the value's end): dropped;
    /// * Context ID 0 of connect-udp with a UDP payload over 65527 bytes aborts
    ///   (R9298-41), as it would within the bound;
    /// * any other Context-ID-0 capsule is over the bound the receiver chose:
    ///   malformed (R9297-34, R9297-22).
    pub fn classify_oversize(
        &self,
        len: u64,
        prefix: Bytes,
        max: usize,
    ) -> Result<DatagramEvent, TunnelCoreError> {
        let too_large = || {
            TunnelCoreError::Malformed(CapsuleError::TooLarge {
                ty: capsule::DATAGRAM,
                len,
                max,
            })
        };
        match varint::decode(&prefix) {
            Ok((UDP_CONTEXT_ID, n)) => {
                let payload = len.saturating_sub(n as u64);
                match self.payload {
                    Payload::Udp if payload > datagram::MAX_UDP_PAYLOAD as u64 => {
                        Err(TunnelCoreError::PayloadTooLarge(
                            usize::try_from(payload).unwrap_or(usize::MAX),
                        ))
                    }
                    _ => Err(too_large()),
                }
            }
            Ok(_) => Ok(DatagramEvent::Dropped(DropReason::UnknownContext)),
            Err(_) => Ok(DatagramEvent::Dropped(DropReason::NoContextId)),
        }
    }
}

/// One received HTTP datagram, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatagramEvent {
    /// A datagram of a known context: for connect-udp the UDP payload (R9298-39),
    /// for connect-ip the IP packet (R9484-43).
    Payload { context_id: u64, payload: Bytes },
    /// Dropped; the caller counts it by reason.
    Dropped(DropReason),
}

/// Why a datagram was dropped. Neither is a protocol error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A Context ID that is not registered (R9298-38, R9484-42).
    UnknownContext,
    /// The payload is too short for a Context ID: empty, or a truncated varint
    /// (not covered by RFC 9298/9484; our choice, rfc9297 digest §6).
    NoContextId,
}
