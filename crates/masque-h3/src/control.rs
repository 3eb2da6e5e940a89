//! Unidirectional streams (RFC 9114 §6.2): the peer's control stream, its QPACK
//! encoder and decoder streams, push streams (refused) and unknown types (ignored).

use std::sync::{Arc, atomic::Ordering};

use bytes::{Buf, Bytes};
use masque_proto::varint;
use tokio::sync::watch;

use crate::{
    Code,
    connection::{Shared, Side},
    control_state::{ControlEvent, ControlStream},
    error::Error,
    qpack,
    settings::Settings,
};

pub const STREAM_CONTROL: u64 = 0x00;
pub const STREAM_PUSH: u64 = 0x01;
pub const STREAM_QPACK_ENCODER: u64 = 0x02;
pub const STREAM_QPACK_DECODER: u64 = 0x03;

/// Which critical streams the peer has opened (each at most once).
#[derive(Debug, Default)]
struct Seen {
    control: bool,
    encoder: bool,
    decoder: bool,
}

pub(crate) async fn accept_uni_streams(
    shared: Arc<Shared>,
    settings_tx: watch::Sender<Option<Settings>>,
) {
    let settings_tx = Arc::new(settings_tx);
    let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
    while let Ok(recv) = shared.quic.accept_uni().await {
        let shared = Arc::clone(&shared);
        let settings_tx = Arc::clone(&settings_tx);
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            if let Err(e) = handle_uni(&shared, recv, &settings_tx, &seen).await {
                tracing::debug!(error = %e, "unidirectional stream ended the connection");
            }
        });
    }
}

async fn handle_uni(
    shared: &Shared,
    mut recv: quinn::RecvStream,
    settings_tx: &watch::Sender<Option<Settings>>,
    seen: &std::sync::Mutex<Seen>,
) -> Result<(), Error> {
    let mut buf = Bytes::new();
    let stream_type = loop {
        match varint::decode(&buf) {
            Ok((t, n)) => {
                buf.advance(n);
                break t;
            }
            Err(_) => match recv.read_chunk(8, true).await? {
                Some(c) => {
                    let mut joined = buf.to_vec();
                    joined.extend_from_slice(&c.bytes);
                    buf = joined.into();
                }
                // A stream that ends before its type is ignored (§6.2).
                None => return Ok(()),
            },
        }
    };
    let duplicate = {
        let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
        let flag = match stream_type {
            STREAM_CONTROL => Some(&mut s.control),
            STREAM_QPACK_ENCODER => Some(&mut s.encoder),
            STREAM_QPACK_DECODER => Some(&mut s.decoder),
            _ => None,
        };
        flag.map(|f| std::mem::replace(f, true)).unwrap_or(false)
    };
    if duplicate {
        // §6.2.1 / RFC 9204 §4.2: a second critical stream of a type.
        return Err(shared.fail(Code::STREAM_CREATION_ERROR, "duplicate critical stream"));
    }
    match stream_type {
        STREAM_CONTROL => read_control(shared, recv, buf, settings_tx).await,
        STREAM_QPACK_ENCODER => {
            let mut p = qpack::EncoderStreamReader::new();
            read_critical(shared, recv, buf, |chunk| {
                p.push(&chunk).map_err(|_| {
                    (
                        Code::QPACK_ENCODER_STREAM_ERROR,
                        "dynamic table use refused (capacity 0)",
                    )
                })
            })
            .await
        }
        STREAM_QPACK_DECODER => {
            let mut p = qpack::DecoderStreamReader::new();
            read_critical(shared, recv, buf, |chunk| {
                p.push(&chunk).map_err(|_| {
                    (
                        Code::QPACK_DECODER_STREAM_ERROR,
                        "invalid decoder instruction",
                    )
                })
            })
            .await
        }
        STREAM_PUSH => Err(match shared.side {
            // §6.2.2: only servers push; clients that see a push stream here
            // never sent MAX_PUSH_ID, so any push id exceeds it.
            Side::Server => shared.fail(Code::STREAM_CREATION_ERROR, "client opened a push stream"),
            Side::Client => shared.fail(Code::ID_ERROR, "push without MAX_PUSH_ID"),
        }),
        _ => {
            // §6.2: unknown (incl. GREASE) types: not an error; stop reading.
            let _ = recv.stop(Code::STREAM_CREATION_ERROR.into());
            Ok(())
        }
    }
}

/// Reads a critical stream to its end, passing bytes to `f`. Its closure is a
/// connection error H3_CLOSED_CRITICAL_STREAM (§6.2.1).
async fn read_critical(
    shared: &Shared,
    mut recv: quinn::RecvStream,
    first: Bytes,
    mut f: impl FnMut(Bytes) -> Result<(), (Code, &'static str)>,
) -> Result<(), Error> {
    let mut chunk = first;
    loop {
        if !chunk.is_empty() {
            f(std::mem::take(&mut chunk)).map_err(|(code, reason)| shared.fail(code, reason))?;
        }
        match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(c)) => chunk = c.bytes,
            Ok(None) | Err(quinn::ReadError::Reset(_)) => {
                return Err(shared.fail(Code::CLOSED_CRITICAL_STREAM, "critical stream closed"));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn read_control(
    shared: &Shared,
    recv: quinn::RecvStream,
    first: Bytes,
    settings_tx: &watch::Sender<Option<Settings>>,
) -> Result<(), Error> {
    let mut control = ControlStream::new(shared.side);
    let mut events = Vec::new();
    read_critical(shared, recv, first, |input| {
        control.on_bytes(input, &mut events)?;
        for event in events.drain(..) {
            match event {
                ControlEvent::Settings(s) => {
                    settings_tx.send_replace(Some(s));
                }
                ControlEvent::GoAway(id) => shared.goaway_received.store(id, Ordering::Release),
                ControlEvent::MaxPushId => {}
            }
        }
        Ok(())
    })
    .await
}
