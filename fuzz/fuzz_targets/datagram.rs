//! HTTP/3 datagram and context-id parsing (RFC 9297 §2.1, RFC 9298 §5).
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use masque_proto::datagram;

fuzz_target!(|data: &[u8]| {
    if let Ok((qsid, rest)) = datagram::parse_h3_datagram_slice(data) {
        assert!(qsid < 1 << 60);
        assert!(rest.len() < data.len());
    }
    if let Ok((_, payload)) = datagram::parse_udp_payload(Bytes::copy_from_slice(data)) {
        assert!(payload.len() <= datagram::MAX_UDP_PAYLOAD);
    }
    let _ = datagram::parse_context_slice(data);
});
