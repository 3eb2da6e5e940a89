//! connect-tcp (draft-ietf-httpbis-connect-tcp-11): DATA and FINAL_DATA capsules.
//!
//! Both capsules carry the next bytes of the TCP stream; FINAL_DATA also means TCP
//! FIN (CTCP-03). The codepoints and the upgrade token are provisional: the final
//! capsule types are still "TBD", so a session picks a [`Codepoints`] set per
//! request from the token the peer used ([`Codepoints::for_token`]).

use bytes::BufMut;

mod receiver;

use crate::capsule;

/// Final upgrade token / `:protocol` value (CTCP-02). Its capsule codepoints are
/// not assigned yet (TBD1/TBD2): see [`FINAL`].
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

/// The final token `connect-tcp`, whose codepoints are still TBD: served
/// with the -11 interop codepoints, those of the latest published revision
/// (decisions §14). One line to change when the draft assigns values.
pub const FINAL: Codepoints = Codepoints {
    token: UPGRADE_TOKEN,
    data: capsule::TCP_DATA_DRAFT_11,
    final_data: capsule::TCP_FINAL_DATA_DRAFT_11,
};

/// Every token a node serves, with its codepoints: the one table.
pub const SERVED: [Codepoints; 3] = [FINAL, DRAFT_11, DRAFT_12];

impl Codepoints {
    /// Codepoints for an upgrade token / `:protocol` value (compared
    /// case-insensitively, RFC 9110 §7.8). `None` for unknown tokens (answer
    /// 501, RFC 9220 §3).
    pub fn for_token(token: &str) -> Option<Self> {
        SERVED
            .into_iter()
            .find(|c| c.token.eq_ignore_ascii_case(token))
    }

    /// The capsule type for a chunk, FINAL_DATA when `fin`.
    pub fn capsule_type(&self, fin: bool) -> u64 {
        if fin { self.final_data } else { self.data }
    }
}

pub use receiver::{StreamEnd, TcpEvent, TcpReceiver};

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

    /// The codepoints this sender encodes with.
    pub fn codepoints(&self) -> Codepoints {
        self.codepoints
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
mod tests;
