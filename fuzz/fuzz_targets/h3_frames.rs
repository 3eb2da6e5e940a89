//! HTTP/3 frame decoder (chunked) and SETTINGS payloads (RFC 9114 §7).
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use masque_h3::{frame::FrameDecoder, settings::Settings};

fuzz_target!(|data: &[u8]| {
    let _ = Settings::decode(data);
    let Some((&step, rest)) = data.split_first() else { return };
    let mut dec = FrameDecoder::new(4096);
    for chunk in rest.chunks(usize::from(step % 17) + 1) {
        let mut input = Bytes::copy_from_slice(chunk);
        loop {
            match dec.decode(&mut input) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(input.is_empty());
    }
    let _ = dec.finish();
});
