//! ADDRESS_ASSIGN / ADDRESS_REQUEST / ROUTE_ADVERTISEMENT values (RFC 9484 §4.7).
#![no_main]
use libfuzzer_sys::fuzz_target;
use masque_proto::connect_ip::ConnectIpCapsule;

fuzz_target!(|data: &[u8]| {
    let Some((&ty, value)) = data.split_first() else { return };
    if let Ok(Some(c)) = ConnectIpCapsule::decode(u64::from(ty % 4), value) {
        // Whatever decodes re-encodes to the same bytes.
        let mut out = Vec::new();
        c.encode(&mut out).expect("decoded capsule re-encodes");
        assert_eq!(out, value);
    }
});
