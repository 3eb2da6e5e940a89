//! Sans-IO MASQUE protocol code: bytes in, values and events out. No sockets, no
//! clocks, no async runtime (the quinn-proto pattern, DESIGN.md §7).
//!
//! Requirement ids (`R9297-nn`, `QV-nn`, ...) refer to the digests in the project's
//! protocol notes and are mapped to code and tests in `docs/reference/conformance.md`.
#![forbid(unsafe_code)]

pub mod reader;
pub mod varint;
