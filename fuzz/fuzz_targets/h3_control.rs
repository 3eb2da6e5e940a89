//! The peer's HTTP/3 control stream state machine (RFC 9114 §6.2.1, §7.2).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| masque_fuzz::h3_control::run(data));
