//! Connect-UDP-Bind capsules/payloads and connect-tcp DATA/FINAL_DATA capsules.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| masque_fuzz::bind_tcp_capsules::run(data));
