//! URI template parsing and server-side matching (RFC 9298 §3, RFC 9484 §3, connect-tcp).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| masque_fuzz::template_match::run(data));
