//! Header field parsers: capsule-protocol, proxy-public-address, Proxy-Status,
//! and the Bearer credentials of Proxy-Authorization.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| masque_fuzz::structured_fields::run(data));
