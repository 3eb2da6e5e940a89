//! TunnelCore (RFC 9297 §3, RFC 9298 §5): the body fed in chunks whose sizes come
//! from the input, QUIC datagrams taken from the same bytes; errors must stick;
//! capsules over the bound are skipped (or judged by their Context ID) without
//! being buffered.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| masque_fuzz::tunnel_core::run(data));
