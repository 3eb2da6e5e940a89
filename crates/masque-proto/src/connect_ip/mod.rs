//! CONNECT-IP capsule values (RFC 9484 §4.7): ADDRESS_ASSIGN (0x01), ADDRESS_REQUEST
//! (0x02) and ROUTE_ADVERTISEMENT (0x03).
//!
//! Only the capsule *Value* is handled here; Type and Length framing belong to
//! [`crate::capsule`]. Decoders take exactly one value and enforce every field rule of
//! the digest; any [`ConnectIpError`] makes the capsule malformed (R9297-22), which the
//! session answers by aborting the request stream with H3_MESSAGE_ERROR (H2
//! PROTOCOL_ERROR, H1 close). Encoders run the same checks before writing a byte, so a
//! peer never receives a capsule this module would reject.
//!
//! Request bookkeeping (R9484-29/33) lives in [`pending`].

pub mod forward;
pub mod pending;
mod route;

pub use forward::{ForwardRules, LocalAddrs, PacketDrop, Verdict, any_scope, scope_ranges};
pub use pending::{
    Admitted, Answer, DEFAULT_MAX_PENDING, DEFAULT_MAX_REMEMBERED, OutgoingRequests,
    PendingRequests,
};

pub use route::{
    IpAddressRange, RouteOrder, check_route_protocols, decode_route_advertisement,
    encode_route_advertisement, route_advertisement_len, sort_routes, validate_route_advertisement,
};

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::BufMut;

use crate::packet::{address_bits, host_bits_zero, prefix_contains};
use crate::reader::{Reader, Truncated};
use crate::varint;

/// Capsule type ADDRESS_ASSIGN (RFC 9484 §4.7.1).
pub const ADDRESS_ASSIGN: u64 = 0x01;
/// Capsule type ADDRESS_REQUEST (RFC 9484 §4.7.2).
pub const ADDRESS_REQUEST: u64 = 0x02;
/// Capsule type ROUTE_ADVERTISEMENT (RFC 9484 §4.7.3).
pub const ROUTE_ADVERTISEMENT: u64 = 0x03;

/// A malformed or invalid CONNECT-IP capsule value (or an invalid value to encode).
/// Every variant names the rule it enforces; all of them abort the request stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectIpError {
    /// The value ends with `len` bytes that do not form a complete entry (R9297-23:
    /// exactly the defined fields, no trailing or truncated data).
    #[error("capsule value ends with {len} bytes that are not a complete entry (R9297-23)")]
    TrailingBytes { len: usize },
    /// IP Version other than 4 or 6 (R9484-24, R9484-30, R9484-35).
    #[error("IP version {0} is neither 4 nor 6 (R9484-24)")]
    UnsupportedIpVersion(u8),
    /// IP Prefix Length longer than the address (R9484-25, R9484-30).
    #[error("prefix length {prefix_len} exceeds {max} bits (R9484-25)")]
    PrefixTooLong { prefix_len: u8, max: u8 },
    /// Bits beyond the prefix length are not zero (R9484-25, R9484-30).
    #[error("{ip}/{prefix_len} has host bits set (R9484-25)")]
    HostBitsSet { ip: IpAddr, prefix_len: u8 },
    /// A Requested Address with Request ID 0 (R9484-29).
    #[error("ADDRESS_REQUEST entry with request id 0 (R9484-29)")]
    ZeroRequestId,
    /// A Request ID used twice: within one capsule, or reused during the stream's life
    /// (R9484-29).
    #[error("request id {0} used more than once (R9484-29)")]
    DuplicateRequestId(u64),
    /// ADDRESS_REQUEST with no Requested Address (R9484-32, vector 11 `02 00`).
    #[error("ADDRESS_REQUEST carries no requested address (R9484-32)")]
    EmptyAddressRequest,
    /// Range with Start > End (R9484-35).
    #[error("route range {start}..={end} has start after end (R9484-35)")]
    RangeStartAfterEnd { start: IpAddr, end: IpAddr },
    /// Range `index` is out of order with the range before it (R9484-37).
    #[error("route range {index} violates ROUTE_ADVERTISEMENT ordering ({rule:?}) (R9484-37)")]
    RouteOrder { index: usize, rule: RouteOrder },
    /// Range `index` (non-zero protocol) overlaps a protocol-0 range of the same version
    /// (R9484-38).
    #[error("route range {index} overlaps a protocol-0 range of the same version (R9484-38)")]
    ProtocolZeroOverlap { index: usize },
    /// An IPv6 route / scope names an extension header as protocol, which can never
    /// match (R9484-39; only from [`check_route_protocols`]).
    #[error("IP protocol {0} is an IPv6 extension header (R9484-39)")]
    ExtensionHeaderProtocol(u8),
    /// Encoding only: start and end of a range are of different families (R9484-35).
    #[error("route range mixes IPv4 and IPv6 addresses (R9484-35)")]
    MixedFamilyRange,
    /// Encoding only: a Request ID above 2^62-1 cannot be a varint (QV-02).
    #[error("request id {0} exceeds 2^62-1")]
    RequestIdTooLarge(u64),
    /// Bookkeeping: more outstanding requests than the configured limit.
    #[error("more than {limit} address requests outstanding")]
    TooManyPendingRequests { limit: usize },
    /// Bookkeeping: no fresh Request ID is left (R9484-29 forbids reuse).
    #[error("request ids exhausted (R9484-29)")]
    RequestIdsExhausted,
}

/// One *Assigned Address* of ADDRESS_ASSIGN (R9484-23..26).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssignedAddress {
    /// The Request ID answered, or 0 for an unsolicited assignment (R9484-23, R9484-28).
    pub request_id: u64,
    /// Address or prefix; the version follows the variant.
    pub ip: IpAddr,
    /// Prefix length, ≤ 32 / 128, host bits zero (R9484-25).
    pub prefix_len: u8,
}

impl AssignedAddress {
    /// The refusal answer to `request` (R9484-33): same Request ID, all-zero address of the
    /// requested family, full prefix length (`0.0.0.0/32` or `::/128`).
    pub fn refusal(request: &RequestedAddress) -> Self {
        let ip = match request.ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        Self {
            request_id: request.request_id,
            ip,
            prefix_len: address_bits(&ip),
        }
    }

    /// Whether this entry refuses request `request_id` (R9484-33): non-zero Request ID,
    /// unspecified address, full prefix length.
    pub fn is_refusal(&self) -> bool {
        self.request_id != 0
            && self.ip.is_unspecified()
            && self.prefix_len == address_bits(&self.ip)
    }

    /// Whether `addr` may be used as a source under this assignment (BCP 38, R9484-60).
    /// Refusals contain nothing.
    pub fn contains(&self, addr: IpAddr) -> bool {
        !self.is_refusal() && prefix_contains(self.ip, self.prefix_len, addr)
    }
}

/// One *Requested Address* of ADDRESS_REQUEST (R9484-29..31).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestedAddress {
    /// Non-zero, never reused by the sender (R9484-29).
    pub request_id: u64,
    /// Wanted address; all-zero means any address of the family (R9484-31).
    pub ip: IpAddr,
    /// Wanted prefix length, ≤ 32 / 128, host bits zero (R9484-30).
    pub prefix_len: u8,
}

impl RequestedAddress {
    /// Whether any address of the family is acceptable (all-zero address, R9484-31).
    pub fn is_any(&self) -> bool {
        self.ip.is_unspecified()
    }
}

/// A decoded CONNECT-IP capsule value, for dispatch by capsule type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectIpCapsule {
    /// ADDRESS_ASSIGN: the complete current set; empty withdraws everything (R9484-26).
    AddressAssign(Vec<AssignedAddress>),
    /// ADDRESS_REQUEST: one or more requests (R9484-32).
    AddressRequest(Vec<RequestedAddress>),
    /// ROUTE_ADVERTISEMENT: the complete current route list (R9484-36).
    RouteAdvertisement(Vec<IpAddressRange>),
}

impl ConnectIpCapsule {
    /// Decodes the value of a capsule of type `capsule_type`; `Ok(None)` when the type is
    /// not a CONNECT-IP capsule. Fuzz target.
    pub fn decode(capsule_type: u64, value: &[u8]) -> Result<Option<Self>, ConnectIpError> {
        Ok(Some(match capsule_type {
            ADDRESS_ASSIGN => Self::AddressAssign(decode_address_assign(value)?),
            ADDRESS_REQUEST => Self::AddressRequest(decode_address_request(value)?),
            ROUTE_ADVERTISEMENT => Self::RouteAdvertisement(decode_route_advertisement(value)?),
            _ => return Ok(None),
        }))
    }

    /// The capsule type.
    pub fn capsule_type(&self) -> u64 {
        match self {
            Self::AddressAssign(_) => ADDRESS_ASSIGN,
            Self::AddressRequest(_) => ADDRESS_REQUEST,
            Self::RouteAdvertisement(_) => ROUTE_ADVERTISEMENT,
        }
    }

    /// Length of the encoded value (for the capsule Length field).
    pub fn value_len(&self) -> usize {
        match self {
            Self::AddressAssign(e) => address_assign_len(e),
            Self::AddressRequest(e) => address_request_len(e),
            Self::RouteAdvertisement(e) => route_advertisement_len(e),
        }
    }

    /// The whole capsule (type and validated value), ready to send.
    pub fn to_capsule(&self) -> Result<crate::capsule::Capsule, ConnectIpError> {
        let mut value = Vec::with_capacity(self.value_len());
        self.encode(&mut value)?;
        Ok(crate::capsule::Capsule {
            ty: self.capsule_type(),
            value: value.into(),
        })
    }

    /// Validates and appends the value (not Type/Length). Nothing is written on error.
    pub fn encode<B: BufMut + ?Sized>(&self, buf: &mut B) -> Result<(), ConnectIpError> {
        match self {
            Self::AddressAssign(e) => encode_address_assign(e, buf),
            Self::AddressRequest(e) => encode_address_request(e, buf),
            Self::RouteAdvertisement(e) => encode_route_advertisement(e, buf),
        }
    }
}

fn ip_version(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 6,
    }
}

fn ip_bits(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(*a)),
        IpAddr::V6(a) => u128::from(*a),
    }
}

fn address_len(ip: &IpAddr) -> usize {
    match ip {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 16,
    }
}

fn put_address<B: BufMut + ?Sized>(ip: &IpAddr, buf: &mut B) {
    match ip {
        IpAddr::V4(a) => buf.put_slice(&a.octets()),
        IpAddr::V6(a) => buf.put_slice(&a.octets()),
    }
}

/// Reads IP Version and an address of the matching size (R9484-24, R9484-35).
/// The version is checked before the address is read, so `version 5` is reported as
/// such even when the value is short.
fn read_address(r: &mut Reader<'_>) -> Result<Result<IpAddr, ConnectIpError>, Truncated> {
    Ok(match r.u8()? {
        4 => Ok(IpAddr::V4(Ipv4Addr::from(r.array::<4>()?))),
        6 => Ok(IpAddr::V6(Ipv6Addr::from(r.array::<16>()?))),
        v => Err(ConnectIpError::UnsupportedIpVersion(v)),
    })
}

/// Prefix length bound and zero host bits (R9484-25, R9484-30).
fn check_prefix(ip: IpAddr, prefix_len: u8) -> Result<(), ConnectIpError> {
    let max = address_bits(&ip);
    if prefix_len > max {
        return Err(ConnectIpError::PrefixTooLong { prefix_len, max });
    }
    if !host_bits_zero(ip, prefix_len) {
        return Err(ConnectIpError::HostBitsSet { ip, prefix_len });
    }
    Ok(())
}

/// Reads one Request ID / address / prefix entry (shared layout of §4.7.1 and §4.7.2).
fn read_address_entry(r: &mut Reader<'_>) -> Result<(u64, IpAddr, u8), ConnectIpError> {
    let entry_start = r.remaining();
    let trailing = |_| ConnectIpError::TrailingBytes { len: entry_start };
    let request_id = r.varint().map_err(trailing)?;
    let ip = read_address(r).map_err(trailing)??;
    let prefix_len = r.u8().map_err(trailing)?;
    check_prefix(ip, prefix_len)?;
    Ok((request_id, ip, prefix_len))
}

/// Decodes an ADDRESS_ASSIGN value (R9484-23..26). An empty value is valid and means
/// "withdraw every assignment" (R9484-26, vector 11 `01 00`). Request ID 0 marks an
/// unsolicited assignment (R9484-23/28). Fuzz target.
pub fn decode_address_assign(value: &[u8]) -> Result<Vec<AssignedAddress>, ConnectIpError> {
    let mut r = Reader::new(value);
    let mut out = Vec::new();
    while !r.is_empty() {
        let (request_id, ip, prefix_len) = read_address_entry(&mut r)?;
        out.push(AssignedAddress {
            request_id,
            ip,
            prefix_len,
        });
    }
    Ok(out)
}

/// Decodes an ADDRESS_REQUEST value (R9484-29..32): at least one entry, Request IDs
/// non-zero and distinct within the capsule. Reuse across capsules is checked by
/// [`PendingRequests`]. Fuzz target.
pub fn decode_address_request(value: &[u8]) -> Result<Vec<RequestedAddress>, ConnectIpError> {
    if value.is_empty() {
        return Err(ConnectIpError::EmptyAddressRequest);
    }
    let mut r = Reader::new(value);
    let mut out = Vec::new();
    while !r.is_empty() {
        let (request_id, ip, prefix_len) = read_address_entry(&mut r)?;
        out.push(RequestedAddress {
            request_id,
            ip,
            prefix_len,
        });
    }
    check_request_ids(&out)?;
    Ok(out)
}

/// Request IDs non-zero and unique (R9484-29).
fn check_request_ids(entries: &[RequestedAddress]) -> Result<(), ConnectIpError> {
    let mut seen = BTreeSet::new();
    for e in entries {
        if e.request_id == 0 {
            return Err(ConnectIpError::ZeroRequestId);
        }
        if !seen.insert(e.request_id) {
            return Err(ConnectIpError::DuplicateRequestId(e.request_id));
        }
    }
    Ok(())
}

/// Encoded length of an ADDRESS_ASSIGN value.
pub fn address_assign_len(entries: &[AssignedAddress]) -> usize {
    entries.iter().map(|e| entry_len(e.request_id, &e.ip)).sum()
}

/// Encoded length of an ADDRESS_REQUEST value.
pub fn address_request_len(entries: &[RequestedAddress]) -> usize {
    entries.iter().map(|e| entry_len(e.request_id, &e.ip)).sum()
}

fn entry_len(request_id: u64, ip: &IpAddr) -> usize {
    varint::encoded_len(request_id) + 2 + address_len(ip)
}

fn check_entry(request_id: u64, ip: IpAddr, prefix_len: u8) -> Result<(), ConnectIpError> {
    if request_id > varint::MAX {
        return Err(ConnectIpError::RequestIdTooLarge(request_id));
    }
    check_prefix(ip, prefix_len)
}

fn put_entry<B: BufMut + ?Sized>(request_id: u64, ip: &IpAddr, prefix_len: u8, buf: &mut B) {
    varint::put(request_id, buf);
    buf.put_u8(ip_version(ip));
    put_address(ip, buf);
    buf.put_u8(prefix_len);
}

/// Validates and appends an ADDRESS_ASSIGN value (R9484-23..26). An empty slice encodes
/// the "withdraw all" capsule (R9484-26). Nothing is written on error.
pub fn encode_address_assign<B: BufMut + ?Sized>(
    entries: &[AssignedAddress],
    buf: &mut B,
) -> Result<(), ConnectIpError> {
    for e in entries {
        check_entry(e.request_id, e.ip, e.prefix_len)?;
    }
    for e in entries {
        put_entry(e.request_id, &e.ip, e.prefix_len, buf);
    }
    Ok(())
}

/// Validates and appends an ADDRESS_REQUEST value (R9484-29..32): non-empty, Request IDs
/// non-zero and distinct. Nothing is written on error.
pub fn encode_address_request<B: BufMut + ?Sized>(
    entries: &[RequestedAddress],
    buf: &mut B,
) -> Result<(), ConnectIpError> {
    if entries.is_empty() {
        return Err(ConnectIpError::EmptyAddressRequest);
    }
    for e in entries {
        check_entry(e.request_id, e.ip, e.prefix_len)?;
    }
    check_request_ids(entries)?;
    for e in entries {
        put_entry(e.request_id, &e.ip, e.prefix_len, buf);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
