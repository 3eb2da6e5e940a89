//! Which targets a proxy may reach (R9298-53, the SSRF guard): one pure check
//! of a target `SocketAddr`, usable by every tunnel type (UDP today, TCP and
//! IP later). See `docs/use/hardening.md`, "Outbound policy".
//!
//! Evaluation order ([`AddressPolicy::check`]), first decision wins:
//!
//! 1. IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is judged as `a.b.c.d`.
//! 2. The node's own listeners ([`OwnListeners`]): refused, 502
//!    `proxy_loop_detected`, whatever else is configured.
//! 3. Ranges of the [table](table::TABLE) that nothing unlocks (unspecified,
//!    `0.0.0.0/8`, multicast, `240.0.0.0/4`, broadcast, IPv4-compatible):
//!    refused, 403 `destination_ip_prohibited`.
//! 4. The deny rules (`--deny-target`): refused, 403.
//! 5. The allow rules (`--allow-target`): allowed (steps 6 and 7 skipped).
//! 6. The other ranges of the table (loopback, private, link-local, CGNAT,
//!    NAT64, …): refused, 403, unless `allow_private`.
//! 7. [`AddressPolicy::own_addresses`] (any port): refused, 403, unless
//!    `allow_private`.
//! 8. Anything else: allowed.
//!
//! A NAT64 well-known-prefix address (`64:ff9b::a.b.c.d`) that passes is then
//! checked again as `a.b.c.d` with the same port: the NAT64 gateway would
//! deliver it there.

mod own;
mod rules;
pub mod table;

use std::net::{IpAddr, SocketAddr};

use masque_proto::proxy_status::TunnelFailure;

pub use own::{IFACE_REFRESH, OwnListeners, interface_addresses};
pub use rules::{Cidr, RuleError, TargetRule};

use crate::handler::Refusal;
use table::Unlock;

/// Address policy of a node: the built-in table's switch and the node's own
/// addresses. Operator rules and the listeners are in [`TargetRules`].
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Allow loopback, private (RFC 1918), CGNAT, unique-local, link-local,
    /// NAT64 and the other [`Unlock::Private`] ranges of the table (for
    /// testing and private deployments). Never the node's own listeners.
    pub allow_private: bool,
    /// The node's own addresses: refused on every port unless `allow_private`.
    pub own_addresses: Vec<IpAddr>,
}

/// Operator rules and the node's own listeners.
#[derive(Debug, Clone, Default)]
pub struct TargetRules {
    /// `--allow-target`: allowed even inside a private range of the table.
    pub allow: Vec<TargetRule>,
    /// `--deny-target`: refused, before the allow rules.
    pub deny: Vec<TargetRule>,
    /// The node's listeners: refused always (a loop).
    pub own_listeners: OwnListeners,
}

/// Why a target was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// One of the node's own listeners.
    OwnListener(SocketAddr),
    /// A range of the table (not unlocked).
    Range(&'static table::Range),
    /// A `--deny-target` rule.
    DenyRule(TargetRule),
    /// One of [`AddressPolicy::own_addresses`].
    OwnAddress,
}

impl Denied {
    /// The refusal sent to the client.
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::OwnListener(_) => Refusal::new(TunnelFailure::ProxyLoopDetected)
                .with_details("target is this proxy's own listener"),
            Self::Range(r) => Refusal::new(TunnelFailure::DestinationProhibited)
                .with_details(format!("{} ({})", r.what, r.rfc)),
            Self::DenyRule(_) => Refusal::new(TunnelFailure::DestinationProhibited)
                .with_details("denied by the proxy's target rules"),
            Self::OwnAddress => Refusal::new(TunnelFailure::DestinationProhibited)
                .with_details("target is this proxy's own address"),
        }
    }
}

impl From<Denied> for Refusal {
    fn from(d: Denied) -> Self {
        d.refusal()
    }
}

impl AddressPolicy {
    /// Whether `addr` may be a target on some port, without operator rules
    /// or listeners (port 0).
    pub fn allows(&self, addr: IpAddr) -> bool {
        self.check(&TargetRules::default(), SocketAddr::new(addr, 0))
            .is_ok()
    }

    /// The outbound check (order in the module documentation). Pure but for
    /// the interface list of a wildcard listener ([`OwnListeners`]).
    pub fn check(&self, rules: &TargetRules, addr: SocketAddr) -> Result<(), Denied> {
        let addr = SocketAddr::new(canonical(addr.ip()), addr.port());
        if rules.own_listeners.contains(addr) {
            return Err(Denied::OwnListener(addr));
        }
        let range = table::lookup(addr.ip());
        if let Some(r) = range.filter(|r| r.unlock == Unlock::Never) {
            return Err(Denied::Range(r));
        }
        if let Some(rule) = rules.deny.iter().find(|r| r.matches(addr)) {
            return Err(Denied::DenyRule(rule.clone()));
        }
        if !rules.allow.iter().any(|r| r.matches(addr)) && !self.allow_private {
            if let Some(r) = range {
                return Err(Denied::Range(r));
            }
            if self
                .own_addresses
                .iter()
                .any(|a| canonical(*a) == addr.ip())
            {
                return Err(Denied::OwnAddress);
            }
        }
        if let IpAddr::V6(v6) = addr.ip()
            && let Some(v4) = table::nat64_embedded(v6)
        {
            return self.check(rules, SocketAddr::new(v4.into(), addr.port()));
        }
        Ok(())
    }
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
pub(crate) fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests;
