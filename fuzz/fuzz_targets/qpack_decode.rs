//! QPACK field sections (RFC 9204, zero-capacity table) and HTTP/3 message heads.
#![no_main]
use libfuzzer_sys::fuzz_target;
use masque_h3::{RequestHead, ResponseHead, message, qpack};

fuzz_target!(|data: &[u8]| {
    let Ok(fields) = qpack::decode_field_section(data, 16 * 1024) else { return };
    if let Ok(req) = RequestHead::from_fields(fields.clone(), true) {
        let mut out = Vec::new();
        req.encode(&mut out).expect("a validated request re-encodes");
        let back = qpack::decode_field_section(&out, 1 << 20).expect("our encoding decodes");
        assert_eq!(RequestHead::from_fields(back, true).expect("still valid"), req);
    }
    let _ = ResponseHead::from_fields(fields.clone());
    let _ = message::trailers_from_fields(fields);
    let _ = qpack::EncoderStreamReader::new().push(data);
    let _ = qpack::DecoderStreamReader::new().push(data);
});
