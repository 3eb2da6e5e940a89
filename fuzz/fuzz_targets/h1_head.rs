//! See `masque_fuzz::h1_head`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| masque_fuzz::h1_head::run(data));
