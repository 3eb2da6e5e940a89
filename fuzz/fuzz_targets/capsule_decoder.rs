//! CapsuleDecoder fed the input in chunks whose sizes come from the input itself.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| masque_fuzz::capsule_decoder::run(data));
