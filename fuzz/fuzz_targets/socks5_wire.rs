//! See `masque_fuzz::socks5_wire`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| masque_fuzz::socks5_wire::run(data));
