//! Tunnel requests: one normalised form for every HTTP version, and a pure
//! classifier from that form to the tunnel it asks for.
//!
//! Each transport adapter turns its request head into a [`RequestForm`]:
//! HTTP/2 and HTTP/3 with [`form_from_pseudo`] (RFC 8441 §4, RFC 9220 §3, RFC 9113
//! §8.5, RFC 9114 §4.4), HTTP/1.1 with [`form_from_h1`] (RFC 9112 §3.2, RFC 9110
//! §7.8 and §9.3.6, RFC 9298 §3.2). [`classify`] then matches the form against the
//! node's templates and yields a [`TunnelTarget`]. Every step that refuses returns
//! a [`Refusal`]: the status to answer, the `Proxy-Status` failure (RFC 9209) and
//! the `details` text.
//!
//! Status codes, by rule:
//!
//! | refusal | status | Proxy-Status |
//! |---|---|---|
//! | malformed request (pseudo-headers, Host, Upgrade/Connection, target, template variables) | 400 | `http_request_error` ([`TunnelFailure::MalformedRequest`]) |
//! | path matches no template of the protocol | 404 | `http_request_error` ([`TunnelFailure::NotFound`]) |
//! | not a tunnel request (other method, `GET` without `Upgrade`) | 405 | none: the node answers as an origin server, which never sends `Proxy-Status` (PS-04) |
//! | upgrade token not served (XC-10) | 501 | `proxy_internal_response` ([`TunnelFailure::NotImplemented`]) |
//!
//! On HTTP/2 and HTTP/3 a 400 means a malformed message ([`Refusal::is_malformed`]):
//! the adapter may send the 400, then resets the stream with `PROTOCOL_ERROR` /
//! `H3_MESSAGE_ERROR` (R9298-30, CC-13, CC-18, XC-07).
//!
//! Upgrade tokens are compared case-insensitively (RFC 9110 §7.8, CC-12): both form
//! builders lower-case them.

mod authority;
mod classify;
mod h1;
mod pseudo;

#[cfg(test)]
mod tests;

pub use classify::{RequestHeaders, Templates, TunnelTarget, classify};
pub use h1::{H1Head, form_from_h1};
pub use pseudo::{Pseudo, form_from_pseudo};

use crate::proxy_status::{ProxyStatus, ProxyStatusError, TunnelFailure};

/// The connect-udp upgrade token (RFC 9298 §3).
pub const CONNECT_UDP: &str = "connect-udp";
/// The connect-ip upgrade token (RFC 9484 §4).
pub const CONNECT_IP: &str = "connect-ip";

/// A request in the form common to every HTTP version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestForm {
    /// Extended CONNECT (`:protocol` on HTTP/2 and HTTP/3, RFC 8441 §4, RFC 9220
    /// §3) or HTTP/1.1 `GET` + `Upgrade: <token>` (RFC 9110 §7.8, RFC 9298 §3.2).
    /// `protocol` is lower-case; `authority` is the origin addressed (XC-08: never
    /// a tunnel target); `path` is the path and query, starting with `/`.
    Extended {
        protocol: String,
        authority: String,
        path: String,
    },
    /// Classic CONNECT (RFC 9110 §9.3.6, RFC 9113 §8.5, RFC 9114 §4.4): `:authority`
    /// / the authority-form request-target, `host:port` (checked by [`classify`]).
    Classic { authority: String },
}

/// A request that does not become a tunnel: the status to answer, the
/// `Proxy-Status` failure to send with it (RFC 9209; `None`: send none) and the
/// text for its `details` parameter (RFC 9209 §2.1.5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {details}")]
pub struct Refusal {
    pub status: u16,
    pub failure: Option<TunnelFailure>,
    pub details: String,
}

impl Refusal {
    /// A refusal with the status of `failure` in the failure table
    /// ([`TunnelFailure::response`]).
    pub fn new(failure: TunnelFailure, details: impl Into<String>) -> Self {
        Self {
            status: failure.response().0,
            failure: Some(failure),
            details: details.into(),
        }
    }

    /// 400, malformed request (R9298-25, CC-02, CC-10, XC-07, CTCP-11).
    pub fn malformed(details: impl Into<String>) -> Self {
        Self::new(TunnelFailure::MalformedRequest, details)
    }

    /// 405: not a tunnel request. No `Proxy-Status`: for such a request the node is
    /// the origin server, and origin servers never send it (PS-04).
    pub fn not_a_tunnel(details: impl Into<String>) -> Self {
        Self {
            status: 405,
            failure: None,
            details: details.into(),
        }
    }

    /// A malformed message: on HTTP/2 and HTTP/3 the stream is reset with
    /// `PROTOCOL_ERROR` / `H3_MESSAGE_ERROR` after the optional 400 (R9298-30,
    /// RFC 9113 §8.1.1, RFC 9114 §4.1.2); on HTTP/1.1 the 400 is the answer.
    pub fn is_malformed(&self) -> bool {
        self.failure == Some(TunnelFailure::MalformedRequest)
    }

    /// Our `Proxy-Status` member, with `details`; `http_request_error` carries the
    /// status actually sent (RFC 9209 §2.3.16). `None` when no failure applies.
    pub fn proxy_status(&self, node: &str) -> Option<ProxyStatus> {
        let mut m = self.failure?.proxy_status(node).with_details(&self.details);
        if m.error == Some(ProxyStatusError::HttpRequestError) {
            m.status_code = Some(self.status);
        }
        Some(m)
    }
}
