//! ADDRESS_ASSIGN / ADDRESS_REQUEST / ROUTE_ADVERTISEMENT values (RFC 9484 §4.7).
#![no_main]
use libfuzzer_sys::fuzz_target;
use masque_proto::connect_ip::ConnectIpCapsule;

fuzz_target!(|data: &[u8]| {
    let Some((&ty, value)) = data.split_first() else { return };
    let ty = u64::from(ty % 4);
    if let Ok(Some(c)) = ConnectIpCapsule::decode(ty, value) {
        // Whatever decodes re-encodes to something that decodes to the same
        // capsule (bytes may differ: non-minimal varints are legal, QV-03).
        let mut out = Vec::new();
        c.encode(&mut out).expect("decoded capsule re-encodes");
        let again = ConnectIpCapsule::decode(ty, &out).expect("re-decodes").expect("same type");
        assert_eq!(again, c);
    }
});
