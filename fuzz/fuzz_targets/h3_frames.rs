//! HTTP/3 frame decoder (chunked) and SETTINGS payloads (RFC 9114 §7).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| masque_fuzz::h3_frames::run(data));
