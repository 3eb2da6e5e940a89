//! Request forms and classification (RFC 8441 §4, RFC 9112 §3.2, RFC 9298 §3):
//! arbitrary heads never panic, and every refusal has a status.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| masque_fuzz::request_classify::run(data));
