//! Sans-IO MASQUE protocol code: bytes in, values and events out. No sockets, no
//! clocks, no async runtime (the quinn-proto pattern, DESIGN.md §7).
//!
//! Requirement ids (`R9297-nn`, `QV-nn`, ...) refer to the protocol digests and are
//! mapped to code and tests in `docs/reference/conformance.md`.
#![forbid(unsafe_code)]

pub mod bind;
pub mod capsule;
pub mod connect_ip;
pub mod datagram;
pub mod headers;
pub mod icmp;
pub mod packet;
pub mod proxy_status;
pub mod reader;
pub mod request;
pub mod tcp;
pub mod template;
pub mod tunnel;
pub mod varint;
