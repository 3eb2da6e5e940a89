//! Connect-UDP-Bind (draft-ietf-masque-connect-udp-listen-13): compression
//! capsules and the uncompressed / compressed datagram payloads.
//!
//! This module checks everything a single capsule or datagram shows on its own
//! (field layout R9297-23, zero IDs, IP versions, parity and sender role). Rules
//! that need the session's context table (BIND-14 duplicates, BIND-16 duplicate
//! tuples, BIND-18 unsolicited ACK, BIND-25 second uncompressed context, caps of
//! BIND-32/33) belong to the session.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Buf, BufMut, Bytes};

use crate::capsule::{self, CapsuleError};
pub use crate::capsule::{COMPRESSION_ACK, COMPRESSION_ASSIGN, COMPRESSION_CLOSE};
use crate::reader::Reader;
use crate::varint;

/// IP Version value of an uncompressed context in COMPRESSION_ASSIGN (§3.1).
pub const IP_VERSION_UNCOMPRESSED: u8 = 0;

/// Which end of the tunnel an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Proxy,
}

impl Role {
    /// Context IDs this role allocates: clients even, proxies odd (R9298-34,
    /// BIND-10). 0 is nobody's to register (BIND-13).
    pub fn allocates(self, context_id: u64) -> bool {
        context_id != 0
            && match self {
                Role::Client => context_id.is_multiple_of(2),
                Role::Proxy => context_id % 2 == 1,
            }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// The value ends before its last field (R9297-23).
    #[error("value too short")]
    Truncated,
    /// Bytes after the last field (R9297-23).
    #[error("trailing bytes after the last field")]
    TrailingBytes,
    /// Context ID 0 in COMPRESSION_ASSIGN / ACK / CLOSE (BIND-13, BIND-18, BIND-20).
    #[error("context id 0 cannot be registered")]
    ZeroContextId,
    /// Context ID above 2^62-1 (encode only).
    #[error("context id exceeds 2^62-1")]
    ContextIdTooLarge,
    /// IP Version other than 0/4/6 in a capsule, or other than 4/6 in an
    /// uncompressed datagram (BIND-24).
    #[error("invalid IP version {0}")]
    InvalidIpVersion(u8),
    /// COMPRESSION_ASSIGN Context ID of the wrong parity for its sender (BIND-13).
    #[error("context id {0} has the wrong parity for its sender")]
    WrongParity(u64),
    /// A proxy sent COMPRESSION_ASSIGN for an uncompressed context (BIND-26).
    #[error("uncompressed context assigned by the proxy")]
    UncompressedFromProxy,
}

impl BindError {
    /// The Capsule Protocol error for a capsule that failed with `self` (BIND-14:
    /// malformed capsules are handled per RFC 9297 §3.3, R9297-22).
    pub fn to_capsule_error(self, ty: u64) -> CapsuleError {
        let reason = match self {
            Self::Truncated => "value too short",
            Self::TrailingBytes => "trailing bytes",
            Self::ZeroContextId => "context id 0",
            Self::ContextIdTooLarge => "context id too large",
            Self::InvalidIpVersion(_) => "invalid IP version",
            Self::WrongParity(_) => "context id of the wrong parity",
            Self::UncompressedFromProxy => "uncompressed context from the proxy",
        };
        CapsuleError::Malformed { ty, reason }
    }
}

impl From<crate::reader::Truncated> for BindError {
    fn from(_: crate::reader::Truncated) -> Self {
        Self::Truncated
    }
}

/// COMPRESSION_ASSIGN (§3.1): `target` `None` registers the uncompressed context
/// (IP Version 0), `Some` a compressed context for that IP address and UDP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionAssign {
    pub context_id: u64,
    pub target: Option<SocketAddr>,
}

/// One of the three connect-udp-listen capsules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindCapsule {
    Assign(CompressionAssign),
    /// COMPRESSION_ACK (§3.2).
    Ack(u64),
    /// COMPRESSION_CLOSE (§3.3).
    Close(u64),
}

impl BindCapsule {
    /// Decodes the value of a capsule of type `ty`; `Ok(None)` for other types.
    /// Errors are malformed capsules ([`BindError::to_capsule_error`]).
    pub fn decode(ty: u64, value: &[u8]) -> Result<Option<Self>, BindError> {
        let mut r = Reader::new(value);
        let cap = match ty {
            COMPRESSION_ASSIGN => {
                let context_id = nonzero(r.varint()?)?;
                let version = r.u8()?;
                let target = match version {
                    IP_VERSION_UNCOMPRESSED => None,
                    _ => Some(read_addr(version, &mut r)?),
                };
                Self::Assign(CompressionAssign { context_id, target })
            }
            COMPRESSION_ACK => Self::Ack(nonzero(r.varint()?)?),
            COMPRESSION_CLOSE => Self::Close(nonzero(r.varint()?)?),
            _ => return Ok(None),
        };
        if !r.is_empty() {
            return Err(BindError::TrailingBytes);
        }
        Ok(Some(cap))
    }

    /// Checks that depend on who sent the capsule: a COMPRESSION_ASSIGN Context ID
    /// must be one its sender allocates (BIND-13) and only the client registers the
    /// uncompressed context (BIND-26). Both failures are malformed capsules.
    pub fn check_sender(&self, sender: Role) -> Result<(), BindError> {
        let Self::Assign(a) = self else {
            return Ok(());
        };
        if a.target.is_none() && sender == Role::Proxy {
            return Err(BindError::UncompressedFromProxy);
        }
        if !sender.allocates(a.context_id) {
            return Err(BindError::WrongParity(a.context_id));
        }
        Ok(())
    }

    pub fn capsule_type(&self) -> u64 {
        match self {
            Self::Assign(_) => COMPRESSION_ASSIGN,
            Self::Ack(_) => COMPRESSION_ACK,
            Self::Close(_) => COMPRESSION_CLOSE,
        }
    }

    /// Appends the whole capsule. Refuses Context ID 0 or above 2^62-1; nothing is
    /// written on error.
    pub fn encode<B: BufMut + ?Sized>(&self, buf: &mut B) -> Result<(), BindError> {
        let (ctx, target) = match *self {
            Self::Assign(a) => (a.context_id, Some(a.target)),
            Self::Ack(c) | Self::Close(c) => (c, None),
        };
        let ctx = nonzero(ctx)?;
        if ctx > varint::MAX {
            return Err(BindError::ContextIdTooLarge);
        }
        let mut len = varint::encoded_len(ctx);
        if let Some(t) = target {
            len += 1 + t.map_or(0, addr_len);
        }
        capsule::encode_header(self.capsule_type(), len, buf);
        varint::put(ctx, buf);
        match target {
            Some(Some(addr)) => put_addr(addr, buf),
            Some(None) => buf.put_u8(IP_VERSION_UNCOMPRESSED),
            None => {}
        }
        Ok(())
    }
}

fn nonzero(ctx: u64) -> Result<u64, BindError> {
    if ctx == 0 {
        Err(BindError::ZeroContextId)
    } else {
        Ok(ctx)
    }
}

/// IP address + port bytes (without the version byte).
fn addr_len(addr: SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => 4 + 2,
        SocketAddr::V6(_) => 16 + 2,
    }
}

/// Writes `IP Version | IP Address | UDP Port`.
fn put_addr<B: BufMut + ?Sized>(addr: SocketAddr, buf: &mut B) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            buf.put_u8(4);
            buf.put_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            buf.put_u8(6);
            buf.put_slice(&ip.octets());
        }
    }
    buf.put_u16(addr.port());
}

/// Reads `IP Address | UDP Port` for a version byte already read.
fn read_addr(version: u8, r: &mut Reader<'_>) -> Result<SocketAddr, BindError> {
    let ip = match version {
        4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
        6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
        v => return Err(BindError::InvalidIpVersion(v)),
    };
    Ok(SocketAddr::new(ip, r.u16()?))
}

/// Parses the part of an uncompressed-context datagram after the Context ID (§4):
/// `IP Version | IP Address | UDP Port | UDP Payload`, without copying the payload.
/// Errors mean "drop the datagram" (BIND-24, our choice).
pub fn parse_uncompressed(mut rest: Bytes) -> Result<(SocketAddr, Bytes), BindError> {
    let mut r = Reader::new(&rest);
    let version = r.u8()?;
    if version != 4 && version != 6 {
        return Err(BindError::InvalidIpVersion(version));
    }
    let addr = read_addr(version, &mut r)?;
    let used = r.position();
    rest.advance(used);
    Ok((addr, rest))
}

/// Length of the prefix [`encode_uncompressed_prefix`] writes.
pub fn uncompressed_prefix_len(context_id: u64, addr: SocketAddr) -> usize {
    varint::encoded_len(context_id) + 1 + addr_len(addr)
}

/// Writes `Context ID | IP Version | IP Address | UDP Port` of an uncompressed
/// datagram (§4); the caller appends the UDP payload. Context ID 0 is refused
/// (the uncompressed context is always registered, BIND-23).
pub fn encode_uncompressed_prefix<B: BufMut + ?Sized>(
    context_id: u64,
    addr: SocketAddr,
    buf: &mut B,
) -> Result<(), BindError> {
    let ctx = nonzero(context_id)?;
    if ctx > varint::MAX {
        return Err(BindError::ContextIdTooLarge);
    }
    varint::put(ctx, buf);
    put_addr(addr, buf);
    Ok(())
}

/// Writes the Context ID of a compressed datagram (§5); the caller appends the UDP
/// payload. Parse with [`crate::datagram::parse_context`].
pub fn encode_compressed_prefix<B: BufMut + ?Sized>(
    context_id: u64,
    buf: &mut B,
) -> Result<(), BindError> {
    let ctx = nonzero(context_id)?;
    if ctx > varint::MAX {
        return Err(BindError::ContextIdTooLarge);
    }
    varint::put(ctx, buf);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capsule::CapsuleDecoder;
    use crate::datagram;
    use proptest::prelude::*;

    fn enc(c: BindCapsule) -> Vec<u8> {
        let mut b = Vec::new();
        c.encode(&mut b).unwrap();
        b
    }

    /// Decodes a whole capsule from its wire form.
    fn dec(wire: &[u8]) -> Result<Option<BindCapsule>, BindError> {
        let mut d = CapsuleDecoder::new();
        d.push_slice(wire);
        let c = d.next_capsule().unwrap().unwrap();
        assert_eq!(d.finish(), Ok(()));
        BindCapsule::decode(c.ty, &c.value)
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Spec README vector 14 (BIND-23): COMPRESSION_ASSIGN uncompressed ID 2.
    #[test]
    fn bind_23_assign_uncompressed_vector() {
        let c = BindCapsule::Assign(CompressionAssign {
            context_id: 2,
            target: None,
        });
        assert_eq!(enc(c), [0x11, 0x02, 0x02, 0x00]);
        assert_eq!(dec(&[0x11, 0x02, 0x02, 0x00]), Ok(Some(c)));
        assert_eq!(c.check_sender(Role::Client), Ok(()));
    }

    /// Spec README vector 14 (BIND-27): COMPRESSION_ASSIGN ID 4 for
    /// 203.0.113.11:60000.
    #[test]
    fn bind_27_assign_compressed_vector() {
        let wire = [0x11, 0x08, 0x04, 0x04, 0xcb, 0x00, 0x71, 0x0b, 0xea, 0x60];
        let c = BindCapsule::Assign(CompressionAssign {
            context_id: 4,
            target: Some(sa("203.0.113.11:60000")),
        });
        assert_eq!(enc(c), wire);
        assert_eq!(dec(&wire), Ok(Some(c)));
        let v6 = BindCapsule::Assign(CompressionAssign {
            context_id: 3,
            target: Some(sa("[2001:db8::1]:443")),
        });
        assert_eq!(enc(v6).len(), 2 + 1 + 1 + 16 + 2);
        assert_eq!(v6.check_sender(Role::Proxy), Ok(()));
    }

    /// Spec README vector 14 (BIND-12, BIND-19): COMPRESSION_ACK 4, CLOSE 2.
    #[test]
    fn bind_12_ack_and_close_vectors() {
        assert_eq!(enc(BindCapsule::Ack(4)), [0x12, 0x01, 0x04]);
        assert_eq!(dec(&[0x12, 0x01, 0x04]), Ok(Some(BindCapsule::Ack(4))));
        assert_eq!(enc(BindCapsule::Close(2)), [0x13, 0x01, 0x02]);
        assert_eq!(dec(&[0x13, 0x01, 0x02]), Ok(Some(BindCapsule::Close(2))));
    }

    /// Listen digest §8 malformed vectors: CLOSE of 0 (BIND-20), ASSIGN of 0
    /// (BIND-13), uncompressed ASSIGN from the proxy (BIND-26), missing port
    /// (R9297-23), IP version 5.
    #[test]
    fn bind_20_malformed_vectors() {
        assert_eq!(dec(&[0x13, 0x01, 0x00]), Err(BindError::ZeroContextId));
        assert_eq!(
            dec(&[0x11, 0x02, 0x00, 0x00]),
            Err(BindError::ZeroContextId)
        );
        assert_eq!(dec(&[0x12, 0x01, 0x00]), Err(BindError::ZeroContextId));
        let from_proxy = dec(&[0x11, 0x02, 0x03, 0x00]).unwrap().unwrap();
        assert_eq!(
            from_proxy.check_sender(Role::Proxy),
            Err(BindError::UncompressedFromProxy)
        );
        assert_eq!(
            dec(&[0x11, 0x06, 0x04, 0x04, 0xcb, 0x00, 0x71, 0x0b]),
            Err(BindError::Truncated)
        );
        assert_eq!(
            dec(&[0x11, 0x03, 0x06, 0x05, 0x00]),
            Err(BindError::InvalidIpVersion(5))
        );
        let e = BindError::ZeroContextId.to_capsule_error(COMPRESSION_CLOSE);
        assert!(matches!(e, CapsuleError::Malformed { ty: 0x13, .. }));
    }

    /// R9297-23: trailing bytes and empty values are malformed.
    #[test]
    fn r9297_23_exact_fields() {
        assert_eq!(
            dec(&[0x12, 0x02, 0x04, 0x00]),
            Err(BindError::TrailingBytes)
        );
        assert_eq!(
            dec(&[0x11, 0x03, 0x02, 0x00, 0x00]),
            Err(BindError::TrailingBytes)
        );
        assert_eq!(dec(&[0x13, 0x00]), Err(BindError::Truncated));
        assert_eq!(dec(&[0x11, 0x01, 0x02]), Err(BindError::Truncated));
        assert_eq!(BindCapsule::decode(0x00, &[1, 2]), Ok(None));
    }

    /// BIND-13: parity of COMPRESSION_ASSIGN follows the sender's role.
    #[test]
    fn bind_13_parity() {
        let a = |id| {
            BindCapsule::Assign(CompressionAssign {
                context_id: id,
                target: Some(sa("192.0.2.1:1")),
            })
        };
        assert_eq!(a(4).check_sender(Role::Client), Ok(()));
        assert_eq!(
            a(4).check_sender(Role::Proxy),
            Err(BindError::WrongParity(4))
        );
        assert_eq!(
            a(5).check_sender(Role::Client),
            Err(BindError::WrongParity(5))
        );
        assert_eq!(BindCapsule::Close(5).check_sender(Role::Client), Ok(()));
        assert!(!Role::Client.allocates(0));
        let mut b = Vec::new();
        assert_eq!(a(0).encode(&mut b), Err(BindError::ZeroContextId));
        assert_eq!(
            BindCapsule::Ack(1 << 62).encode(&mut b),
            Err(BindError::ContextIdTooLarge)
        );
        assert!(b.is_empty());
    }

    /// Spec README vector 14 (BIND-28): uncompressed payload ID 2 from
    /// 192.0.2.42:50000 "hi", on stream 44 with QSID prefix `0b`.
    #[test]
    fn bind_28_uncompressed_datagram_vector() {
        let wire = [0x02, 0x04, 0xc0, 0x00, 0x02, 0x2a, 0xc3, 0x50, 0x68, 0x69];
        let from = sa("192.0.2.42:50000");
        let mut b = Vec::new();
        encode_uncompressed_prefix(2, from, &mut b).unwrap();
        assert_eq!(b.len(), uncompressed_prefix_len(2, from));
        b.extend_from_slice(b"hi");
        assert_eq!(b, wire);
        let mut h3 = vec![0x0b];
        h3.extend_from_slice(&wire);
        let (qsid, payload) = datagram::parse_h3_datagram(Bytes::from(h3)).unwrap();
        assert_eq!(qsid, 11);
        let (ctx, rest) = datagram::parse_context(payload).unwrap();
        assert_eq!(ctx, 2);
        assert_eq!(
            parse_uncompressed(rest),
            Ok((from, Bytes::from_static(b"hi")))
        );
    }

    /// Spec README vector 14 (BIND-27): compressed payload ID 4 "hi".
    #[test]
    fn bind_27_compressed_datagram_vector() {
        let mut b = Vec::new();
        encode_compressed_prefix(4, &mut b).unwrap();
        b.extend_from_slice(b"hi");
        assert_eq!(b, [0x04, 0x68, 0x69]);
        assert_eq!(
            datagram::parse_context(Bytes::from(b)),
            Ok((4, Bytes::from_static(b"hi")))
        );
        assert_eq!(
            encode_compressed_prefix(0, &mut Vec::new()),
            Err(BindError::ZeroContextId)
        );
    }

    /// BIND-24: uncompressed datagrams with a version other than 4/6, or too short,
    /// are dropped.
    #[test]
    fn bind_24_bad_uncompressed_datagram() {
        let p = |b: &'static [u8]| parse_uncompressed(Bytes::from_static(b));
        assert_eq!(p(&[0x00, 1, 2]), Err(BindError::InvalidIpVersion(0)));
        assert_eq!(p(&[0x05]), Err(BindError::InvalidIpVersion(5)));
        assert_eq!(p(&[]), Err(BindError::Truncated));
        assert_eq!(p(&[0x04, 1, 2, 3, 4, 0]), Err(BindError::Truncated));
        assert_eq!(p(&[0x06, 1, 2, 3]), Err(BindError::Truncated));
        // Empty UDP payload is fine.
        assert_eq!(
            p(&[0x04, 1, 2, 3, 4, 0, 9]),
            Ok((sa("1.2.3.4:9"), Bytes::new()))
        );
    }

    fn addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
        ]
    }

    proptest! {
        #[test]
        fn capsule_roundtrip(ctx in 1..=varint::MAX, target in proptest::option::of(addr()), kind in 0u8..3) {
            let c = match kind {
                0 => BindCapsule::Assign(CompressionAssign { context_id: ctx, target }),
                1 => BindCapsule::Ack(ctx),
                _ => BindCapsule::Close(ctx),
            };
            prop_assert_eq!(dec(&enc(c)), Ok(Some(c)));
        }

        #[test]
        fn uncompressed_roundtrip(ctx in 1..=varint::MAX, a in addr(), payload in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut b = Vec::new();
            encode_uncompressed_prefix(ctx, a, &mut b).unwrap();
            b.extend_from_slice(&payload);
            let (c, rest) = datagram::parse_context(Bytes::from(b)).unwrap();
            prop_assert_eq!(c, ctx);
            prop_assert_eq!(parse_uncompressed(rest), Ok((a, Bytes::from(payload))));
        }

        /// Decoding arbitrary bytes never panics.
        #[test]
        fn decode_arbitrary_never_panics(ty in 0x10u64..0x15, v in proptest::collection::vec(any::<u8>(), 0..24), client in any::<bool>()) {
            if let Ok(Some(c)) = BindCapsule::decode(ty, &v) {
                let _ = c.check_sender(if client { Role::Client } else { Role::Proxy });
            }
            let _ = parse_uncompressed(Bytes::from(v));
        }
    }
}
