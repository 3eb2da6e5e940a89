//! Connect-UDP-Bind capsules/payloads and connect-tcp DATA/FINAL_DATA capsules.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use masque_proto::{
    bind::{self, BindCapsule},
    capsule::Capsule,
    tcp::{DRAFT_11, TcpReceiver},
};

fuzz_target!(|data: &[u8]| {
    let Some((&ty, value)) = data.split_first() else { return };
    let _ = BindCapsule::decode(0x11 + u64::from(ty % 3), value);
    let _ = bind::parse_uncompressed(Bytes::copy_from_slice(value));
    let mut rx = TcpReceiver::new(DRAFT_11);
    for (i, chunk) in value.chunks(usize::from(ty % 7) + 1).enumerate() {
        let ty = if i % 3 == 2 { DRAFT_11.final_data } else { DRAFT_11.data };
        if rx.on_capsule(Capsule { ty, value: Bytes::copy_from_slice(chunk) }).is_err() {
            break;
        }
    }
    let _ = rx.end_of_stream();
});
