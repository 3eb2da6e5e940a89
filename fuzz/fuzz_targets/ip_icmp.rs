//! IP packet views, TTL decrement and ICMP parsing/synthesis (RFC 9484 §8, ICMP digest).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| masque_fuzz::ip_icmp::run(data));
