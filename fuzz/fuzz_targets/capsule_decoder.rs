//! CapsuleDecoder fed the input in chunks whose sizes come from the input itself.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use masque_proto::capsule::{CapsuleDecoder, OversizePolicy};

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, rest)) = data.split_first() else { return };
    let mut dec = CapsuleDecoder::with_max_size(1 + usize::from(cfg) * 64);
    if cfg & 1 == 1 {
        dec = dec.oversize_policy(OversizePolicy::SkipDatagram);
    }
    let step = usize::from(cfg % 13) + 1;
    for chunk in rest.chunks(step) {
        dec.push(Bytes::copy_from_slice(chunk));
        loop {
            match dec.next_capsule() {
                Ok(Some(c)) => assert!(c.value.len() <= dec.max_size()),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = dec.finish();
});
