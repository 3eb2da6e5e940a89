//! TunnelCore (RFC 9297 §3, RFC 9298 §5): the body fed in chunks whose sizes come
//! from the input, QUIC datagrams taken from the same bytes; errors must stick;
//! capsules over the bound are skipped (or judged by their Context ID) without
//! being buffered.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use masque_proto::tunnel::{DatagramRules, TunnelCore, TunnelEvent};

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, rest)) = data.split_first() else { return };
    let rules = if cfg & 1 == 1 { DatagramRules::ip() } else { DatagramRules::udp() };
    let max = if cfg & 2 == 2 { 64 * 1024 } else { usize::from(cfg) };
    let mut core = TunnelCore::new(rules, max);
    let step = usize::from(cfg % 13) + 1;
    let mut failed = None;
    for chunk in rest.chunks(step) {
        core.push_body(Bytes::copy_from_slice(chunk));
        loop {
            match core.next_event() {
                Ok(Some(TunnelEvent::Capsule(c))) => assert!(c.value.len() <= max),
                Ok(Some(TunnelEvent::Datagram(_))) => assert!(failed.is_none()),
                Ok(None) => {
                    assert!(failed.is_none());
                    // R9297-17/-34: an oversize capsule is skipped, never
                    // buffered: at most the bound (or a Context ID) plus a header.
                    assert!(core.buffered_len() <= max.max(8) + 16);
                    break;
                }
                Err(e) => {
                    assert!(failed.as_ref().is_none_or(|f| *f == e));
                    failed = Some(e);
                    break;
                }
            }
        }
        let d = core.on_datagram(Bytes::copy_from_slice(chunk));
        assert_eq!(d.is_err(), failed.is_some());
    }
    match core.on_fin() {
        Ok(()) => assert!(failed.is_none()),
        Err(e) => {
            assert!(failed.as_ref().is_none_or(|f| *f == e));
            assert!(core.next_event().is_err());
            assert!(core.on_fin().is_err());
        }
    }
});
