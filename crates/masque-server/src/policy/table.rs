//! The one table of special-purpose address ranges a node refuses as targets
//! by default, each with the document that reserves it and whether
//! `allow_private` (or an explicit allow rule) unlocks it.
//!
//! IPv4-mapped addresses (`::ffff:0:0/96`, RFC 4291 §2.5.5.2) are not in the
//! table: they are judged as the IPv4 address they carry. Addresses of the
//! NAT64 well-known prefix `64:ff9b::/96` are judged twice: as themselves and
//! as the IPv4 address they embed (RFC 6052 §2.2, /96 format).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Cidr;

/// Whether a refused range can be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlock {
    /// Opened by `allow_private` or by a matching allow rule (tests, private
    /// deployments).
    Private,
    /// Never a target (R9298-53: multicast, broadcast, unspecified; and
    /// ranges that cannot be a unicast destination at all).
    Never,
}

/// One special-purpose range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub net: Cidr,
    /// What the range is.
    pub what: &'static str,
    /// The document that reserves it.
    pub rfc: &'static str,
    pub unlock: Unlock,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Cidr {
    Cidr::new_unchecked(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), len)
}

const fn v6(s: [u16; 8], len: u8) -> Cidr {
    Cidr::new_unchecked(
        IpAddr::V6(Ipv6Addr::new(
            s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
        )),
        len,
    )
}

const fn range(net: Cidr, what: &'static str, rfc: &'static str, unlock: Unlock) -> Range {
    Range {
        net,
        what,
        rfc,
        unlock,
    }
}

use Unlock::{Never, Private};

/// Every refused range; the most specific match decides (`::1/128` inside
/// `::/96`). Sources: the IANA IPv4 and IPv6 Special-Purpose Address
/// Registries (RFC 6890) and the documents named.
pub const TABLE: &[Range] = &[
    // IPv4
    range(
        v4(0, 0, 0, 0, 8),
        "this network",
        "RFC 791, RFC 6890",
        Never,
    ),
    range(v4(10, 0, 0, 0, 8), "private-use", "RFC 1918", Private),
    range(
        v4(100, 64, 0, 0, 10),
        "shared address space (CGNAT)",
        "RFC 6598",
        Private,
    ),
    range(v4(127, 0, 0, 0, 8), "loopback", "RFC 1122", Private),
    range(v4(169, 254, 0, 0, 16), "link-local", "RFC 3927", Private),
    range(v4(172, 16, 0, 0, 12), "private-use", "RFC 1918", Private),
    range(
        v4(192, 0, 0, 0, 24),
        "IETF protocol assignments",
        "RFC 6890",
        Private,
    ),
    range(v4(192, 168, 0, 0, 16), "private-use", "RFC 1918", Private),
    range(v4(198, 18, 0, 0, 15), "benchmarking", "RFC 2544", Private),
    range(
        v4(224, 0, 0, 0, 4),
        "multicast",
        "RFC 1112, RFC 5771",
        Never,
    ),
    range(v4(240, 0, 0, 0, 4), "reserved", "RFC 1112", Never),
    range(
        v4(255, 255, 255, 255, 32),
        "limited broadcast",
        "RFC 919, RFC 8190",
        Never,
    ),
    // IPv6
    range(v6([0; 8], 128), "unspecified", "RFC 4291", Never),
    range(
        v6([0, 0, 0, 0, 0, 0, 0, 1], 128),
        "loopback",
        "RFC 4291",
        Private,
    ),
    range(
        v6([0; 8], 96),
        "IPv4-compatible (deprecated)",
        "RFC 4291",
        Never,
    ),
    range(
        v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96),
        "NAT64 well-known prefix",
        "RFC 6052",
        Private,
    ),
    range(
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "NAT64 local-use prefix",
        "RFC 8215",
        Private,
    ),
    range(
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "unique-local",
        "RFC 4193",
        Private,
    ),
    range(
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        "link-local",
        "RFC 4291",
        Private,
    ),
    range(
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "site-local (deprecated)",
        "RFC 3879",
        Private,
    ),
    range(
        v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        "multicast",
        "RFC 4291",
        Never,
    ),
];

/// The most specific range holding `ip` (already canonical: no IPv4-mapped).
pub fn lookup(ip: IpAddr) -> Option<&'static Range> {
    TABLE
        .iter()
        .filter(|r| r.net.contains(ip))
        .max_by_key(|r| r.net.prefix_len())
}

/// The IPv4 address a NAT64 well-known-prefix address carries (RFC 6052
/// §2.2: the last 32 bits of `64:ff9b::/96`).
pub fn nat64_embedded(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    const WKP: Cidr = v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
    WKP.contains(IpAddr::V6(ip))
        .then(|| Ipv4Addr::from((u128::from(ip) & 0xffff_ffff) as u32))
}
