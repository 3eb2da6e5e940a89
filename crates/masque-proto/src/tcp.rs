//! connect-tcp (draft-ietf-httpbis-connect-tcp-11): DATA and FINAL_DATA capsules.
//!
//! Both capsules carry the next bytes of the TCP stream; FINAL_DATA also means TCP
//! FIN (CTCP-03). The codepoints and the upgrade token are provisional: the final
//! capsule types are still "TBD", so a session picks a [`Codepoints`] set per
//! request from the token the peer used ([`Codepoints::for_token`]).

use bytes::{BufMut, Bytes};

use crate::capsule::{self, Capsule, CapsuleError};

/// Final upgrade token / `:protocol` value (CTCP-02). Its capsule codepoints are
/// not assigned yet (TBD1/TBD2), so it has no [`Codepoints`] set.
pub const UPGRADE_TOKEN: &str = "connect-tcp";

/// Capsule codepoints and the matching upgrade token of one draft revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Codepoints {
    pub token: &'static str,
    pub data: u64,
    pub final_data: u64,
}

/// Interop values of draft -11: token `connect-tcp-07`, DATA 0x2028d7f0,
/// FINAL_DATA 0x2028d7f1 (spec README vector 15).
pub const DRAFT_11: Codepoints = Codepoints {
    token: "connect-tcp-07",
    data: capsule::TCP_DATA_DRAFT_11,
    final_data: capsule::TCP_FINAL_DATA_DRAFT_11,
};

/// Interop values of the editor's copy toward -12: token `connect-tcp-12`, DATA
/// 0x2028d7f2, FINAL_DATA 0x2028d7f3.
pub const DRAFT_12: Codepoints = Codepoints {
    token: "connect-tcp-12",
    data: capsule::TCP_DATA_DRAFT_12,
    final_data: capsule::TCP_FINAL_DATA_DRAFT_12,
};

impl Codepoints {
    /// Codepoints for an upgrade token / `:protocol` value. `None` for unknown
    /// tokens (answer 501, RFC 9220 §3) and for the final `connect-tcp`, whose
    /// codepoints are not assigned yet.
    pub fn for_token(token: &str) -> Option<Self> {
        [DRAFT_11, DRAFT_12].into_iter().find(|c| c.token == token)
    }

    /// The capsule type for a chunk, FINAL_DATA when `fin`.
    pub fn capsule_type(&self, fin: bool) -> u64 {
        if fin { self.final_data } else { self.data }
    }
}

/// What a received capsule means for the TCP byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpEvent {
    /// Next bytes of the stream (DATA; may be empty, CTCP-06).
    Data(Bytes),
    /// Last bytes of the stream, then TCP FIN (FINAL_DATA, CTCP-03, CTCP-20).
    Fin(Bytes),
    /// Another capsule type: ignore it (CTCP-07, R9297-17).
    Ignored,
}

/// How the peer's HTTP stream ended (CTCP-22).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// FINAL_DATA was received: the TCP side was already sent FIN.
    Graceful,
    /// The stream ended without FINAL_DATA: send TCP RST to the target (CTCP-22).
    Abortive,
}

/// Receive side of a connect-tcp stream: classifies capsules and enforces CTCP-04.
#[derive(Debug, Clone)]
pub struct TcpReceiver {
    codepoints: Codepoints,
    fin: bool,
}

impl TcpReceiver {
    pub fn new(codepoints: Codepoints) -> Self {
        Self {
            codepoints,
            fin: false,
        }
    }

    /// Classifies a capsule. DATA or FINAL_DATA after FINAL_DATA is malformed
    /// (CTCP-04; a Capsule Protocol error, R9297-22).
    pub fn on_capsule(&mut self, capsule: Capsule) -> Result<TcpEvent, CapsuleError> {
        let Capsule { ty, value } = capsule;
        let fin = if ty == self.codepoints.data {
            false
        } else if ty == self.codepoints.final_data {
            true
        } else {
            return Ok(TcpEvent::Ignored);
        };
        if self.fin {
            return Err(CapsuleError::Malformed {
                ty,
                reason: "connect-tcp data after FINAL_DATA",
            });
        }
        self.fin = fin;
        Ok(if fin {
            TcpEvent::Fin(value)
        } else {
            TcpEvent::Data(value)
        })
    }

    pub fn fin_received(&self) -> bool {
        self.fin
    }

    /// Call when the HTTP receive stream ends cleanly (CTCP-22).
    pub fn end_of_stream(&self) -> StreamEnd {
        if self.fin {
            StreamEnd::Graceful
        } else {
            StreamEnd::Abortive
        }
    }
}

/// Local misuse of [`TcpSender`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TcpSendError {
    /// Nothing may follow FINAL_DATA (CTCP-04).
    #[error("connect-tcp capsule after FINAL_DATA")]
    AfterFinalData,
}

/// Send side of a connect-tcp stream: writes DATA / FINAL_DATA and refuses
/// anything after FINAL_DATA (CTCP-04).
#[derive(Debug, Clone)]
pub struct TcpSender {
    codepoints: Codepoints,
    fin: bool,
}

impl TcpSender {
    pub fn new(codepoints: Codepoints) -> Self {
        Self {
            codepoints,
            fin: false,
        }
    }

    pub fn fin_sent(&self) -> bool {
        self.fin
    }

    /// Writes only the capsule header for `len` payload bytes that the caller sends
    /// next (no copy). `fin`: FINAL_DATA, sent when the target's TCP FIN arrived
    /// (CTCP-19).
    pub fn encode_header<B: BufMut + ?Sized>(
        &mut self,
        len: usize,
        fin: bool,
        buf: &mut B,
    ) -> Result<(), TcpSendError> {
        if self.fin {
            return Err(TcpSendError::AfterFinalData);
        }
        self.fin = fin;
        capsule::encode_header(self.codepoints.capsule_type(fin), len, buf);
        Ok(())
    }

    /// Writes a whole DATA (or, with `fin`, FINAL_DATA) capsule.
    pub fn encode<B: BufMut + ?Sized>(
        &mut self,
        payload: &[u8],
        fin: bool,
        buf: &mut B,
    ) -> Result<(), TcpSendError> {
        self.encode_header(payload.len(), fin, buf)?;
        buf.put_slice(payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capsule::CapsuleDecoder;
    use proptest::prelude::*;

    fn decode(wire: &[u8]) -> Vec<Capsule> {
        let mut d = CapsuleDecoder::new();
        d.push_slice(wire);
        let mut out = Vec::new();
        while let Some(c) = d.next_capsule().unwrap() {
            out.push(c);
        }
        d.finish().unwrap();
        out
    }

    /// Spec README vector 15 / CTCP digest §11 (CTCP-03): DATA "abc", empty
    /// FINAL_DATA and FINAL_DATA "xyz" with the -11 codepoints.
    #[test]
    fn ctcp_03_draft11_vectors() {
        let mut s = TcpSender::new(DRAFT_11);
        let mut b = Vec::new();
        s.encode(b"abc", false, &mut b).unwrap();
        assert_eq!(b, [0xa0, 0x28, 0xd7, 0xf0, 0x03, 0x61, 0x62, 0x63]);
        let mut f = Vec::new();
        s.encode(b"", true, &mut f).unwrap();
        assert_eq!(f, [0xa0, 0x28, 0xd7, 0xf1, 0x00]);
        let mut x = Vec::new();
        TcpSender::new(DRAFT_11)
            .encode(b"xyz", true, &mut x)
            .unwrap();
        assert_eq!(x, [0xa0, 0x28, 0xd7, 0xf1, 0x03, 0x78, 0x79, 0x7a]);

        b.extend_from_slice(&f);
        let mut r = TcpReceiver::new(DRAFT_11);
        let events: Vec<_> = decode(&b)
            .into_iter()
            .map(|c| r.on_capsule(c).unwrap())
            .collect();
        assert_eq!(
            events,
            [
                TcpEvent::Data(Bytes::from_static(b"abc")),
                TcpEvent::Fin(Bytes::new())
            ]
        );
        assert_eq!(r.end_of_stream(), StreamEnd::Graceful);
    }

    /// Digest §1: tokens and codepoints per revision.
    #[test]
    fn ctcp_02_tokens() {
        assert_eq!(UPGRADE_TOKEN, "connect-tcp");
        assert_eq!(Codepoints::for_token("connect-tcp-07"), Some(DRAFT_11));
        assert_eq!(Codepoints::for_token("connect-tcp-12"), Some(DRAFT_12));
        assert_eq!(Codepoints::for_token("connect-tcp"), None);
        assert_eq!(Codepoints::for_token("connect-tcp-05"), None);
        assert_eq!(
            (DRAFT_12.data, DRAFT_12.final_data),
            (0x2028_d7f2, 0x2028_d7f3)
        );
    }

    /// CTCP digest §11 (CTCP-04): FINAL_DATA "" then DATA "a" is malformed on
    /// receipt, and refused by the sender.
    #[test]
    fn ctcp_04_nothing_after_final_data() {
        let wire = [
            0xa0, 0x28, 0xd7, 0xf1, 0x00, 0xa0, 0x28, 0xd7, 0xf0, 0x01, 0x61,
        ];
        let caps = decode(&wire);
        let mut r = TcpReceiver::new(DRAFT_11);
        assert_eq!(
            r.on_capsule(caps[0].clone()),
            Ok(TcpEvent::Fin(Bytes::new()))
        );
        let e = r.on_capsule(caps[1].clone()).unwrap_err();
        assert!(matches!(
            e,
            CapsuleError::Malformed {
                ty: 0x2028_d7f0,
                ..
            }
        ));
        // A second FINAL_DATA is malformed too; other types are still ignored.
        let mut r = TcpReceiver::new(DRAFT_11);
        let fin = Capsule {
            ty: DRAFT_11.final_data,
            value: Bytes::new(),
        };
        r.on_capsule(fin.clone()).unwrap();
        assert!(r.on_capsule(fin).is_err());
        let grease = Capsule {
            ty: 0x17,
            value: Bytes::new(),
        };
        assert_eq!(r.on_capsule(grease), Ok(TcpEvent::Ignored));

        let mut s = TcpSender::new(DRAFT_11);
        let mut b = Vec::new();
        s.encode(b"", true, &mut b).unwrap();
        assert!(s.fin_sent());
        assert_eq!(
            s.encode(b"a", false, &mut b),
            Err(TcpSendError::AfterFinalData)
        );
        assert_eq!(
            s.encode_header(0, true, &mut b),
            Err(TcpSendError::AfterFinalData)
        );
        assert_eq!(b, [0xa0, 0x28, 0xd7, 0xf1, 0x00]);
    }

    /// CTCP-07 / R9297-17: unknown capsules (and the other revision's codepoints)
    /// are ignored; CTCP-22: a stream ending without FINAL_DATA is abortive.
    #[test]
    fn ctcp_22_abortive_end_and_ctcp_07_ignore() {
        let mut r = TcpReceiver::new(DRAFT_11);
        let other = Capsule {
            ty: DRAFT_12.data,
            value: Bytes::from_static(b"x"),
        };
        assert_eq!(r.on_capsule(other), Ok(TcpEvent::Ignored));
        let data = Capsule {
            ty: DRAFT_11.data,
            value: Bytes::new(),
        };
        assert_eq!(r.on_capsule(data), Ok(TcpEvent::Data(Bytes::new())));
        assert!(!r.fin_received());
        assert_eq!(r.end_of_stream(), StreamEnd::Abortive);
    }

    proptest! {
        /// Sender output decodes back to the same byte stream and FIN.
        #[test]
        fn roundtrip(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 1..6), v12 in any::<bool>()) {
            let cp = if v12 { DRAFT_12 } else { DRAFT_11 };
            let mut s = TcpSender::new(cp);
            let mut wire = Vec::new();
            let last = chunks.len() - 1;
            for (i, c) in chunks.iter().enumerate() {
                s.encode(c, i == last, &mut wire).unwrap();
            }
            let mut r = TcpReceiver::new(cp);
            let mut stream = Vec::new();
            for c in decode(&wire) {
                match r.on_capsule(c).unwrap() {
                    TcpEvent::Data(d) | TcpEvent::Fin(d) => stream.extend_from_slice(&d),
                    TcpEvent::Ignored => prop_assert!(false),
                }
            }
            prop_assert_eq!(stream, chunks.concat());
            prop_assert_eq!(r.end_of_stream(), StreamEnd::Graceful);
        }

        /// Classifying arbitrary capsules never panics.
        #[test]
        fn classify_arbitrary_never_panics(caps in proptest::collection::vec((prop_oneof![Just(0x2028_d7f0u64), Just(0x2028_d7f1u64), any::<u64>()], proptest::collection::vec(any::<u8>(), 0..8)), 0..6)) {
            let mut r = TcpReceiver::new(DRAFT_11);
            for (ty, v) in caps {
                let _ = r.on_capsule(Capsule { ty, value: Bytes::from(v) });
            }
        }
    }
}
