//! See `masque_fuzz::huffman`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| masque_fuzz::huffman::run(data));
