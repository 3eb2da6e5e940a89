//! CONNECT-IP per-packet forwarding rules (RFC 9484 §7.2, §11).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| masque_fuzz::ip_forward::run(data));
