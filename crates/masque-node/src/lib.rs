//! The client commands of masque-node as a library, so that tests (and
//! other programs) run them in-process: `udp-forward` ([`forward`]), the
//! local SOCKS5 server ([`socks5`], wire formats in [`socks5_wire`]) and the
//! local HTTP proxy ([`http_proxy`]), the CONNECT-IP VPN client ([`vpn`]), with what they share in
//! [`client_args`]. The proxy node itself is the binary's (`serve`).
#![forbid(unsafe_code)]

pub mod client_args;
pub mod forward;
pub mod http_proxy;
pub mod relay;
pub mod socks5;
pub mod socks5_wire;
pub mod vpn;
