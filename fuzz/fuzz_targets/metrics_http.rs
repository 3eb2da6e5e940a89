//! See `masque_fuzz::metrics_http`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| masque_fuzz::metrics_http::run(data));
