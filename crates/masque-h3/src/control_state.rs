//! The peer's control stream as a sans-IO state machine (RFC 9114 §6.2.1,
//! §7.2): bytes in, events out. The first frame must be SETTINGS; no second
//! SETTINGS; no request frames; a GOAWAY from a server names a client-initiated
//! bidirectional stream and GOAWAY ids never increase; MAX_PUSH_ID only from a
//! client; CANCEL_PUSH names a push we never allowed. Any violation is a
//! connection error with its code. `control.rs` drives it from the QUIC stream;
//! the `h3_control` fuzz target drives it from arbitrary bytes.

use bytes::Bytes;

use crate::{
    Code,
    connection::Side,
    frame::{Frame, FrameDecoder},
    settings::Settings,
};

/// What one control-stream frame meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlEvent {
    /// The peer's SETTINGS (always the first event).
    Settings(Settings),
    /// GOAWAY with this id (never larger than an earlier one).
    GoAway(u64),
    /// MAX_PUSH_ID from a client (we never push: noted only).
    MaxPushId,
}

/// A connection error: the code and why.
pub type ControlError = (Code, &'static str);

/// The state of the peer's control stream; `side` is ours.
#[derive(Debug)]
pub struct ControlStream {
    side: Side,
    decoder: FrameDecoder,
    got_settings: bool,
    last_goaway: Option<u64>,
}

impl ControlStream {
    pub fn new(side: Side) -> Self {
        Self {
            side,
            decoder: FrameDecoder::new(0),
            got_settings: false,
            last_goaway: None,
        }
    }

    /// Whether SETTINGS arrived.
    pub fn has_settings(&self) -> bool {
        self.got_settings
    }

    /// Consumes `input` (a chunk of the stream, in order) and pushes the
    /// events of every whole frame onto `events`. After an error the stream
    /// is dead: the caller closes the connection.
    pub fn on_bytes(
        &mut self,
        mut input: Bytes,
        events: &mut Vec<ControlEvent>,
    ) -> Result<(), ControlError> {
        while let Some(frame) = self
            .decoder
            .decode(&mut input)
            .map_err(|e| (e.code, e.reason))?
        {
            events.push(self.on_frame(frame)?);
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: Frame) -> Result<ControlEvent, ControlError> {
        if !self.got_settings {
            // §6.2.1: the first frame MUST be SETTINGS.
            let Frame::Settings(payload) = frame else {
                return Err((
                    Code::MISSING_SETTINGS,
                    "first control frame is not SETTINGS",
                ));
            };
            let s = Settings::decode(&payload).map_err(|e| (e.code, e.reason))?;
            self.got_settings = true;
            return Ok(ControlEvent::Settings(s));
        }
        match frame {
            Frame::Settings(_) => Err((Code::FRAME_UNEXPECTED, "second SETTINGS")),
            Frame::Data(_) | Frame::Headers(_) | Frame::PushPromise => {
                Err((Code::FRAME_UNEXPECTED, "request frame on control stream"))
            }
            Frame::GoAway(id) => {
                // §5.2: a server's GOAWAY names a client bidi stream id; ids never grow.
                if self.side == Side::Client && id % 4 != 0 {
                    return Err((Code::ID_ERROR, "GOAWAY id is not a request stream"));
                }
                if self.last_goaway.is_some_and(|last| id > last) {
                    return Err((Code::ID_ERROR, "GOAWAY id increased"));
                }
                self.last_goaway = Some(id);
                Ok(ControlEvent::GoAway(id))
            }
            Frame::MaxPushId(_) => match self.side {
                // §7.2.7: only clients send MAX_PUSH_ID. We never push, so it is noted only.
                Side::Server => Ok(ControlEvent::MaxPushId),
                Side::Client => Err((Code::FRAME_UNEXPECTED, "MAX_PUSH_ID from server")),
            },
            // §7.2.3: we never promised (server) nor allowed (client) a push.
            Frame::CancelPush(_) => Err((Code::ID_ERROR, "CANCEL_PUSH for unknown push")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use masque_proto::varint;

    fn frame(ty: u64, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        varint::put(ty, &mut b);
        varint::put(payload.len() as u64, &mut b);
        b.extend_from_slice(payload);
        b
    }

    fn goaway(id: u64) -> Vec<u8> {
        let mut p = Vec::new();
        varint::put(id, &mut p);
        frame(0x07, &p)
    }

    fn feed(c: &mut ControlStream, bytes: Vec<u8>) -> Result<Vec<ControlEvent>, ControlError> {
        let mut ev = Vec::new();
        c.on_bytes(bytes.into(), &mut ev)?;
        Ok(ev)
    }

    #[test]
    fn settings_first_then_goaway_never_grows() {
        let mut c = ControlStream::new(Side::Client);
        let first = feed(&mut c, frame(0x04, &[])).unwrap();
        assert!(matches!(first[..], [ControlEvent::Settings(_)]));
        assert_eq!(feed(&mut c, goaway(8)).unwrap(), [ControlEvent::GoAway(8)]);
        assert_eq!(feed(&mut c, goaway(8)).unwrap(), [ControlEvent::GoAway(8)]);
        assert_eq!(feed(&mut c, goaway(12)).unwrap_err().0, Code::ID_ERROR);
    }

    #[test]
    fn violations_are_connection_errors() {
        let mut c = ControlStream::new(Side::Server);
        assert_eq!(
            feed(&mut c, goaway(0)).unwrap_err().0,
            Code::MISSING_SETTINGS
        );
        let mut c = ControlStream::new(Side::Server);
        feed(&mut c, frame(0x04, &[])).unwrap();
        assert_eq!(
            feed(&mut c, frame(0x04, &[])).unwrap_err().0,
            Code::FRAME_UNEXPECTED
        );
        let mut c = ControlStream::new(Side::Server);
        feed(&mut c, frame(0x04, &[])).unwrap();
        assert_eq!(
            feed(&mut c, frame(0x00, b"x")).unwrap_err().0,
            Code::FRAME_UNEXPECTED
        );
        let mut c = ControlStream::new(Side::Client);
        feed(&mut c, frame(0x04, &[])).unwrap();
        assert_eq!(
            feed(&mut c, goaway(6)).unwrap_err().0,
            Code::ID_ERROR,
            "not a bidi id"
        );
        assert_eq!(
            feed(&mut c, frame(0x0d, &[0])).unwrap_err().0,
            Code::FRAME_UNEXPECTED
        );
    }

    #[test]
    fn frames_split_anywhere_give_the_same_events() {
        let mut all = frame(0x04, &[0x06, 0x40, 0x64]);
        all.extend(goaway(4));
        all.extend(goaway(0));
        let whole = feed(&mut ControlStream::new(Side::Client), all.clone()).unwrap();
        for cut in 0..all.len() {
            let mut c = ControlStream::new(Side::Client);
            let mut ev = feed(&mut c, all[..cut].to_vec()).unwrap();
            ev.extend(feed(&mut c, all[cut..].to_vec()).unwrap());
            assert_eq!(ev, whole, "cut at {cut}");
        }
    }
}
