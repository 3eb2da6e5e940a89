//! Header field parsers: capsule-protocol, proxy-public-address, Proxy-Status,
//! and the Bearer credentials of Proxy-Authorization.
#![no_main]
use libfuzzer_sys::fuzz_target;
use masque_proto::{headers, proxy_status};

fuzz_target!(|data: &[u8]| {
    let _ = headers::sf::parse_item(data);
    let _ = headers::sf::parse_list(data);
    let _ = headers::parse_sf_boolean(data);
    let _ = headers::parse_proxy_public_address(data);
    if let Some(t) = headers::auth::bearer_token(data) {
        assert!(headers::auth::is_token68(t));
    }
    if let Ok(members) = proxy_status::parse(data) {
        for m in members {
            // What we parse we can write back and parse again.
            let again = proxy_status::parse(m.to_header_value().as_bytes()).expect("re-parse");
            assert_eq!(again.len(), 1);
        }
    }
});
