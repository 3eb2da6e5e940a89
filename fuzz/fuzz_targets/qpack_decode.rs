//! QPACK field sections (RFC 9204, zero-capacity table) and HTTP/3 message heads.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| masque_fuzz::qpack_decode::run(data));
