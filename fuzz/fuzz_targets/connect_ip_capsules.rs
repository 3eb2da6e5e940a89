//! ADDRESS_ASSIGN / ADDRESS_REQUEST / ROUTE_ADVERTISEMENT values (RFC 9484 §4.7).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| masque_fuzz::connect_ip_capsules::run(data));
