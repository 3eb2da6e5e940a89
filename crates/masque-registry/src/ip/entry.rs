//! What the IP registry stores and hands out: address families, validated ranges, the
//! session's packet sink, entries (for the data plane) and entry descriptions (for people).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bytes::Bytes;
use masque_queue::{QueueTx, TrySendError};
use ractor::{ActorCell, ActorId};

use super::error::IpRegistryError;

/// An address family. Each family has its own map; the order (V4 < V6) is the order of
/// [`all`](crate::IpRegistryHandle::all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpVersion {
    /// IPv4: 32-bit addresses.
    V4,
    /// IPv6: 128-bit addresses.
    V6,
}

impl IpVersion {
    /// The family of `addr` (an IPv4-mapped IPv6 address is IPv6).
    pub const fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    /// Address width in bits: the longest valid prefix length.
    pub const fn max_prefix_len(self) -> u8 {
        match self {
            Self::V4 => 32,
            Self::V6 => 128,
        }
    }

    /// The address whose bits are `bits` (IPv4 uses the low 32).
    pub(crate) fn addr(self, bits: u128) -> IpAddr {
        match self {
            // Truncation is the point: IPv4 keys never exceed u32::MAX.
            Self::V4 => IpAddr::V4(Ipv4Addr::from(bits as u32)),
            Self::V6 => IpAddr::V6(Ipv6Addr::from(bits)),
        }
    }
}

/// An address as a map key: its family and its bits, IPv4 in the low 32 bits.
pub(crate) fn key_of(addr: IpAddr) -> (IpVersion, u128) {
    match addr {
        IpAddr::V4(a) => (IpVersion::V4, u128::from(u32::from(a))),
        IpAddr::V6(a) => (IpVersion::V6, u128::from(a)),
    }
}

/// A validated prefix as the inclusive range of addresses it covers.
///
/// Built by [`IpRange::new`], which masks the host bits off: `10.1.2.3/24` is
/// `10.1.2.0..=10.1.2.255`, shown as `10.1.2.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    version: IpVersion,
    start: u128,
    end: u128,
    prefix_len: u8,
}

impl IpRange {
    /// The range `addr/prefix_len`, host bits cleared. Fails when `prefix_len` is longer than
    /// the family's width (32 or 128).
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, IpRegistryError> {
        let (version, bits) = key_of(addr);
        let width = version.max_prefix_len();
        if prefix_len > width {
            return Err(IpRegistryError::InvalidPrefix { addr, prefix_len });
        }
        let host_bits = u32::from(width - prefix_len);
        let host_mask = match host_bits {
            0 => 0,
            128 => u128::MAX,
            n => (1u128 << n) - 1,
        };
        let start = bits & !host_mask;
        Ok(Self {
            version,
            start,
            end: start | host_mask,
            prefix_len,
        })
    }

    /// The address family.
    pub fn version(&self) -> IpVersion {
        self.version
    }

    /// The first address (the network address).
    pub fn start(&self) -> IpAddr {
        self.version.addr(self.start)
    }

    /// The last address.
    pub fn end(&self) -> IpAddr {
        self.version.addr(self.end)
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `addr` falls in the range.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let (version, bits) = key_of(addr);
        version == self.version && (self.start..=self.end).contains(&bits)
    }

    /// Whether the two ranges share an address.
    pub fn overlaps(&self, other: &IpRange) -> bool {
        self.version == other.version && self.start <= other.end && other.start <= self.end
    }

    pub(crate) fn start_bits(&self) -> u128 {
        self.start
    }

    pub(crate) fn end_bits(&self) -> u128 {
        self.end
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.start(), self.prefix_len)
    }
}

/// Why a packet was not queued to its session. The packet is dropped either way: the data
/// plane counts it and moves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketSinkError {
    /// The session's queue is full (drop-on-full).
    #[error("the session's packet queue is full")]
    Full,
    /// The session no longer takes packets.
    #[error("the session's packet queue is closed")]
    Closed,
}

/// Where the data plane puts a packet for a session, without waiting and without an actor
/// hop. Bounded: a full sink refuses the packet at once.
pub trait PacketSink: Send + Sync + 'static {
    /// Queues `packet`, or says why not. Must never block.
    fn try_send(&self, packet: Bytes) -> Result<(), PacketSinkError>;
}

/// The data plane's own queue is a sink as it is.
impl PacketSink for QueueTx<Bytes> {
    fn try_send(&self, packet: Bytes) -> Result<(), PacketSinkError> {
        QueueTx::try_send(self, packet).map_err(|e| match e {
            TrySendError::Full(_) => PacketSinkError::Full,
            TrySendError::Closed(_) => PacketSinkError::Closed,
        })
    }
}

/// One registered range, allocated once at registration. The sink is the unsized tail, so
/// the route and the sink share one allocation and one pointer.
pub(crate) struct Route<S: ?Sized = dyn PacketSink> {
    pub(crate) range: IpRange,
    pub(crate) session: ActorCell,
    pub(crate) context_id: u64,
    pub(crate) sink: S,
}

impl Route {
    pub(crate) fn info(&self) -> IpEntryInfo {
        IpEntryInfo {
            range: self.range,
            session: self.session.get_id(),
            context_id: self.context_id,
        }
    }
}

/// What [`lookup`](crate::IpRegistryHandle::lookup) returns: everything the data plane needs
/// to hand a packet to the owning session. Cloning it is one `Arc` increment.
#[derive(Clone)]
pub struct IpEntry(pub(crate) Arc<Route>);

impl IpEntry {
    /// The registered range.
    pub fn range(&self) -> IpRange {
        self.0.range
    }

    /// The owning session's actor (monitored by the registry).
    pub fn session(&self) -> &ActorCell {
        &self.0.session
    }

    /// The owning session's actor id.
    pub fn session_id(&self) -> ActorId {
        self.0.session.get_id()
    }

    /// The HTTP datagram context id the session sends IP packets with.
    pub fn context_id(&self) -> u64 {
        self.0.context_id
    }

    /// The session's packet sink.
    pub fn sink(&self) -> &dyn PacketSink {
        &self.0.sink
    }

    /// Queues `packet` on the session's sink (never waits).
    pub fn try_send(&self, packet: Bytes) -> Result<(), PacketSinkError> {
        self.0.sink.try_send(packet)
    }

    /// A plain description of the entry.
    pub fn info(&self) -> IpEntryInfo {
        self.0.info()
    }
}

impl fmt::Debug for IpEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpEntry")
            .field("range", &self.0.range)
            .field("session", &self.0.session.get_id())
            .field("context_id", &self.0.context_id)
            .finish_non_exhaustive()
    }
}

/// A registered range described for diagnostics and errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpEntryInfo {
    /// The range, host bits cleared.
    pub range: IpRange,
    /// The owning session; its end releases the range.
    pub session: ActorId,
    /// The session's context id for IP packets.
    pub context_id: u64,
}

impl fmt::Display for IpEntryInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (session {}, context {})",
            self.range, self.session, self.context_id
        )
    }
}
