//! HTTP/3 datagram and context-id parsing (RFC 9297 §2.1, RFC 9298 §5).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| masque_fuzz::datagram::run(data));
