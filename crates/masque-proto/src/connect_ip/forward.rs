//! Per-packet forwarding rules of a CONNECT-IP endpoint that routes (RFC 9484 §7.2, §11):
//! what a proxy checks before a packet leaves the tunnel for its egress, and before a
//! packet from the egress enters the tunnel. Pure: the session feeds packets in and acts
//! on the [`Verdict`]; ICMP answers are written by [`ForwardRules::write_icmp`].
//!
//! * From the peer (decapsulated): a complete IPv4/IPv6 packet (R9484-43), its source
//!   inside a prefix assigned to the peer (BCP 38, R9484-60), its destination and
//!   upper-layer protocol inside the scope (R9484-10, R9484 §4.6), never link-local
//!   beyond the tunnel (R9484-48), at most the egress MTU (R9484-51 Packet Too Big).
//!   The TTL is not touched: decapsulation is not a routing hop (R9484-47).
//! * To the peer (to encapsulate): its destination assigned to the peer, its source
//!   inside the scope (ICMP from anywhere is let through, R9484-52), at most what one
//!   tunnel datagram carries (R9484-55), then the TTL / Hop Limit is decremented and a
//!   packet that would reach 0 is answered with Time Exceeded (R9484-47).
//!
//! Every rejection is a forwarding error, never a protocol error: the packet is dropped
//! and the stream stays up (R9484-46).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::BufMut;

use super::{AssignedAddress, IpAddressRange};
use crate::icmp::{self, IcmpError, IcmpErrorKind, Unreachable};
use crate::packet::{IpPacket, TtlOutcome, decrement_ttl, prefix_contains};

/// Why a packet was not forwarded (a metrics label each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketDrop {
    /// Not one complete IPv4 or IPv6 packet (R9484-43).
    Malformed,
    /// Source outside the prefixes assigned to the peer (BCP 38, R9484-60).
    SourceNotAssigned,
    /// Destination or protocol outside the tunnel's scope (R9484-10, §4.6).
    OutOfScope,
    /// Link-local destination: never forwarded beyond the tunnel (R9484-48).
    LinkLocal,
    /// Larger than the next link carries (R9484-51, R9484-55).
    TooBig,
    /// TTL / Hop Limit reached 0 (R9484-47).
    TtlExpired,
    /// Destination not assigned to the peer (a packet for another tunnel).
    NotAssigned,
}

impl PacketDrop {
    /// Every reason, for metrics tables.
    pub const ALL: [PacketDrop; 7] = [
        Self::Malformed,
        Self::SourceNotAssigned,
        Self::OutOfScope,
        Self::LinkLocal,
        Self::TooBig,
        Self::TtlExpired,
        Self::NotAssigned,
    ];

    /// A stable snake_case name (metrics label).
    pub const fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::SourceNotAssigned => "source_not_assigned",
            Self::OutOfScope => "out_of_scope",
            Self::LinkLocal => "link_local",
            Self::TooBig => "too_big",
            Self::TtlExpired => "ttl_expired",
            Self::NotAssigned => "not_assigned",
        }
    }

    /// Index into [`PacketDrop::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it on (for [`ForwardRules::to_peer`], with the TTL already decremented).
    Forward,
    /// An ICMPv6 Echo Request to all-nodes link-local multicast (`ff02::1`), the peer's
    /// tunnel MTU probe (R9484-49): answer it, do not forward it (R9484-48).
    AnswerEcho,
    /// Drop it; `icmp` is the error to send back to the packet's source, when one is due
    /// (R9484-51). [`ForwardRules::write_icmp`] may still suppress it (ICMP-12..17).
    Drop {
        reason: PacketDrop,
        icmp: Option<IcmpErrorKind>,
    },
}

impl Verdict {
    fn drop(reason: PacketDrop, icmp: Option<IcmpErrorKind>) -> Self {
        Self::Drop { reason, icmp }
    }
}

/// The per-tunnel state the rules need: the prefixes assigned to the peer and the scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardRules {
    assigned: Vec<AssignedAddress>,
    scope: Vec<IpAddressRange>,
}

impl ForwardRules {
    /// Rules for a tunnel whose scope is `scope` (the routes advertised to the peer).
    pub fn new(scope: Vec<IpAddressRange>) -> Self {
        Self {
            assigned: Vec::new(),
            scope,
        }
    }

    /// Replaces the set of prefixes assigned to the peer (ADDRESS_ASSIGN carries the
    /// whole current set, R9484-26). Refusal entries assign nothing.
    pub fn set_assigned(&mut self, assigned: impl IntoIterator<Item = AssignedAddress>) {
        self.assigned = assigned.into_iter().filter(|a| !a.is_refusal()).collect();
    }

    /// Adds one prefix assigned to the peer.
    pub fn add_assigned(&mut self, assigned: AssignedAddress) {
        if !assigned.is_refusal() && !self.assigned.contains(&assigned) {
            self.assigned.push(assigned);
        }
    }

    /// The prefixes assigned to the peer.
    pub fn assigned(&self) -> &[AssignedAddress] {
        &self.assigned
    }

    /// The scope's ranges.
    pub fn scope(&self) -> &[IpAddressRange] {
        &self.scope
    }

    fn is_assigned(&self, addr: IpAddr) -> bool {
        self.assigned.iter().any(|a| a.contains(addr))
    }

    fn in_scope(&self, addr: IpAddr, protocol: u8) -> bool {
        self.scope.iter().any(|r| r.matches(addr, protocol))
    }

    /// Checks a packet received from the peer before it leaves through an egress that
    /// carries packets of at most `egress_mtu` bytes.
    pub fn from_peer(&self, packet: &[u8], egress_mtu: usize) -> Verdict {
        let Ok(p) = IpPacket::parse(packet) else {
            return Verdict::drop(PacketDrop::Malformed, None);
        };
        if p.declared_len() != packet.len() {
            return Verdict::drop(PacketDrop::Malformed, None);
        }
        let (src, dst) = (p.source(), p.destination());
        if !self.is_assigned(src) {
            let icmp = IcmpErrorKind::DestinationUnreachable(Unreachable::SourceAddressPolicy);
            return Verdict::drop(PacketDrop::SourceNotAssigned, Some(icmp));
        }
        if is_all_nodes_echo(&p) {
            return Verdict::AnswerEcho;
        }
        if is_link_local(dst) {
            return Verdict::drop(PacketDrop::LinkLocal, None);
        }
        if !self.in_scope(dst, p.protocol()) {
            let why = if self.scope.iter().any(|r| r.contains(dst)) {
                Unreachable::ProtocolOutOfScope
            } else {
                Unreachable::AdministrativelyProhibited
            };
            let icmp = IcmpErrorKind::DestinationUnreachable(why);
            return Verdict::drop(PacketDrop::OutOfScope, Some(icmp));
        }
        if packet.len() > egress_mtu {
            let mtu = u32::try_from(egress_mtu).unwrap_or(u32::MAX);
            return Verdict::drop(
                PacketDrop::TooBig,
                Some(IcmpErrorKind::PacketTooBig { mtu }),
            );
        }
        Verdict::Forward
    }

    /// Checks a packet from the egress before it enters the tunnel, whose datagrams carry
    /// IP packets of at most `max_packet` bytes (`None`: no datagram bound, e.g. DATAGRAM
    /// capsules on a stream), and decrements its TTL / Hop Limit in place (R9484-47).
    pub fn to_peer(&self, packet: &mut [u8], max_packet: Option<usize>) -> Verdict {
        let (src, dst, protocol, is_icmp) = match IpPacket::parse(packet) {
            Ok(p) if p.declared_len() == p.as_bytes().len() => {
                (p.source(), p.destination(), p.protocol(), p.is_icmp())
            }
            _ => return Verdict::drop(PacketDrop::Malformed, None),
        };
        if !self.is_assigned(dst) {
            return Verdict::drop(PacketDrop::NotAssigned, None);
        }
        if !is_icmp && !self.in_scope(src, protocol) {
            return Verdict::drop(PacketDrop::OutOfScope, None);
        }
        if let Some(max) = max_packet
            && packet.len() > max
        {
            let mtu = u32::try_from(max).unwrap_or(u32::MAX);
            return Verdict::drop(
                PacketDrop::TooBig,
                Some(IcmpErrorKind::PacketTooBig { mtu }),
            );
        }
        match decrement_ttl(packet) {
            Ok(TtlOutcome::Forward(_)) => Verdict::Forward,
            Ok(TtlOutcome::Expired) => {
                Verdict::drop(PacketDrop::TtlExpired, Some(IcmpErrorKind::TimeExceeded))
            }
            Err(_) => Verdict::drop(PacketDrop::Malformed, None),
        }
    }

    /// Writes the ICMP error `kind` about `invoking` (a complete IP packet, addressed to
    /// its source) into `out`. The ICMP source is `local` of the packet's family (the
    /// router's own address, ICMP-07). Without an IPv4 address the source is the IPv4
    /// dummy address 192.0.0.8 (RFC 7600 §4); without an IPv6 address no ICMPv6 is sent.
    /// `Ok(0)` when nothing is due: suppressed by ICMP-12..17, or no source address.
    pub fn write_icmp<B: BufMut + ?Sized>(
        out: &mut B,
        invoking: &[u8],
        kind: IcmpErrorKind,
        local: LocalAddrs,
    ) -> Result<usize, IcmpError> {
        let v4 = matches!(invoking.first().map(|b| b >> 4), Some(4));
        let source = match (v4, local) {
            (true, LocalAddrs { v4, .. }) => IpAddr::V4(v4.unwrap_or(IPV4_DUMMY)),
            (false, LocalAddrs { v6: Some(a), .. }) => IpAddr::V6(a),
            (false, LocalAddrs { v6: None, .. }) => return Ok(0),
        };
        match icmp::write_error(out, invoking, kind, source, icmp::DEFAULT_TTL) {
            Err(IcmpError::Suppressed(_)) => Ok(0),
            r => r,
        }
    }

    /// Writes the Echo Reply to an all-nodes echo request ([`Verdict::AnswerEcho`]).
    pub fn write_echo_reply<B: BufMut + ?Sized>(
        out: &mut B,
        request: &[u8],
        local: LocalAddrs,
    ) -> Result<usize, IcmpError> {
        let Some(source) = local.v6 else {
            return Ok(0);
        };
        icmp::write_echo_reply(out, request, IpAddr::V6(source), icmp::DEFAULT_TTL)
    }
}

/// The IPv4 dummy address (RFC 7600 §4), the source of ICMPv4 errors from a router
/// without an IPv4 address of its own.
pub const IPV4_DUMMY: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 8);

/// The proxy's own address per family: the source of the ICMP it generates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalAddrs {
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

/// All-nodes link-local multicast, the target of the R9484-49 MTU probe.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

fn is_all_nodes_echo(p: &IpPacket<'_>) -> bool {
    p.destination() == IpAddr::V6(ALL_NODES) && p.icmp_type() == Some(icmp::ICMPV6_ECHO_REQUEST)
}

/// IPv4 169.254.0.0/16, IPv6 fe80::/10 and link-local multicast (ff02::/16).
pub fn is_link_local(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => {
            prefix_contains(
                IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)),
                10,
                addr,
            ) || a.segments()[0] == 0xff02
        }
    }
}

/// The scope of a tunnel as ranges (what is advertised, and what packets may reach):
/// each prefix as one range with protocol `ipproto` (0 = any).
pub fn scope_ranges(prefixes: &[(IpAddr, u8)], ipproto: u8) -> Vec<IpAddressRange> {
    let mut ranges: Vec<IpAddressRange> = prefixes
        .iter()
        .filter_map(|&(addr, len)| prefix_range(addr, len, ipproto))
        .collect();
    super::sort_routes(&mut ranges);
    ranges.dedup_by(|b, a| {
        a.version() == b.version() && a.ipproto == b.ipproto && {
            // Merge touching or overlapping ranges (R9484-37 forbids them in one capsule).
            let (a_end, b_start) = (super::ip_bits(&a.end), super::ip_bits(&b.start));
            if b_start <= a_end.saturating_add(1) {
                if super::ip_bits(&b.end) > a_end {
                    a.end = b.end;
                }
                true
            } else {
                false
            }
        }
    });
    ranges
}

/// The whole address space of both families, protocol `ipproto`: the scope `*`.
pub fn any_scope(ipproto: u8) -> Vec<IpAddressRange> {
    scope_ranges(
        &[
            (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        ],
        ipproto,
    )
}

fn prefix_range(addr: IpAddr, len: u8, ipproto: u8) -> Option<IpAddressRange> {
    let bits = crate::packet::address_bits(&addr);
    if len > bits {
        return None;
    }
    let host = if len == bits {
        0
    } else {
        u128::MAX >> (128 - u32::from(bits - len))
    };
    let start = super::ip_bits(&addr) & !host;
    let end = start | host;
    let to_ip = |v: u128| match addr {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
    };
    Some(IpAddressRange {
        start: to_ip(start),
        end: to_ip(end),
        ipproto,
    })
}

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
