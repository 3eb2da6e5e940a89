//! The body writer of a connect-ip tunnel. Like masque-transport's
//! `TunnelWriter` it owns the [`BodyTx`], writes the DATAGRAM capsules the
//! transport queued (capsule transports) in bursts and ends our side on
//! command; in addition it writes the session's own capsules (ADDRESS_ASSIGN,
//! ADDRESS_REQUEST, ROUTE_ADVERTISEMENT, [`super::IpSession::send_capsule`]),
//! which need the stream on every transport, HTTP/3 with QUIC DATAGRAMs
//! included.

use std::sync::Arc;

use bytes::Bytes;
use masque_transport::{BodyTx, CapsuleQueue, ResetReason, TunnelError};
use tokio::sync::{mpsc, watch};

/// Most DATAGRAM capsules written per flush (as the transport's writer).
const BURST: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Run,
    Finish,
    Abort(ResetReason),
}

/// Handle of the writer task: FIN or reset. The capsules go through the
/// bounded queue given to [`spawn`](Self::spawn). When every handle is gone
/// the writer finishes our side after what is queued.
#[derive(Debug)]
pub(crate) struct ControlWriter {
    control: Arc<watch::Sender<Command>>,
}

impl ControlWriter {
    /// Spawns the writer of `body`: `datagrams` is the transport's DATAGRAM
    /// capsule queue (if any), `control` the session's encoded capsules.
    pub fn spawn(
        body: BodyTx,
        datagrams: Option<CapsuleQueue>,
        control: mpsc::Receiver<Bytes>,
    ) -> Self {
        let (tx, commands) = watch::channel(Command::Run);
        tokio::spawn(run(body, datagrams, control, commands));
        Self {
            control: Arc::new(tx),
        }
    }

    /// Ends our side cleanly once the capsules queued so far are written.
    pub fn finish(&self) {
        self.control.send_if_modified(|c| {
            let run = *c == Command::Run;
            if run {
                *c = Command::Finish;
            }
            run
        });
    }

    /// Resets our side now; queued capsules are dropped.
    pub fn abort(&self, reason: ResetReason) {
        self.control.send_if_modified(|c| {
            let first = !matches!(c, Command::Abort(_));
            if first {
                *c = Command::Abort(reason);
            }
            first
        });
    }
}

async fn run(
    mut body: BodyTx,
    mut datagrams: Option<CapsuleQueue>,
    mut control: mpsc::Receiver<Bytes>,
    mut commands: watch::Receiver<Command>,
) {
    let mut control_open = true;
    loop {
        match *commands.borrow_and_update() {
            Command::Abort(r) => return body.reset(r),
            Command::Finish => break,
            Command::Run => {}
        }
        let write = tokio::select! {
            biased;
            changed = commands.changed() => {
                // Every handle is gone: the tunnel ends cleanly.
                if changed.is_err() {
                    break;
                }
                continue;
            }
            c = control.recv(), if control_open => match c {
                Some(c) => Write::Control(c),
                None => {
                    control_open = false;
                    continue;
                }
            },
            c = next(&mut datagrams) => match c {
                Some(c) => Write::Datagrams(c),
                None => {
                    datagrams = None;
                    continue;
                }
            },
        };
        let written = tokio::select! {
            r = write.run(&mut body, datagrams.as_mut()) => r,
            r = aborted(&mut commands) => return body.reset(r),
        };
        if let Err(e) = written {
            tracing::debug!(error = %e, "connect-ip body write failed");
            return;
        }
    }
    // FIN after what is queued; an abort still cuts in.
    let drain = async {
        while let Ok(c) = control.try_recv() {
            Write::Control(c).run(&mut body, None).await?;
        }
        if let Some(q) = datagrams.as_mut() {
            while let Some(first) = q.try_recv() {
                Write::Datagrams(first)
                    .run(&mut body, Some(&mut *q))
                    .await?;
            }
        }
        Ok::<_, TunnelError>(())
    };
    tokio::select! {
        r = drain => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connect-ip body write failed");
                return;
            }
        }
        r = aborted(&mut commands) => return body.reset(r),
    }
    body.finish().await;
}

/// One write: a session capsule, or a burst of DATAGRAM capsules.
enum Write {
    Control(Bytes),
    Datagrams(Bytes),
}

impl Write {
    async fn run(self, body: &mut BodyTx, q: Option<&mut CapsuleQueue>) -> Result<(), TunnelError> {
        match (self, q) {
            (Write::Datagrams(first), Some(q)) => q.write_burst(body, first, BURST).await.map(drop),
            (Write::Control(c) | Write::Datagrams(c), _) => {
                body.feed(c).await?;
                body.flush().await
            }
        }
    }
}

async fn next(q: &mut Option<CapsuleQueue>) -> Option<Bytes> {
    match q {
        Some(q) => q.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves with the reason once an abort is commanded; never when the
/// handles are gone without one.
async fn aborted(commands: &mut watch::Receiver<Command>) -> ResetReason {
    loop {
        if let Command::Abort(r) = *commands.borrow_and_update() {
            return r;
        }
        if commands.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
