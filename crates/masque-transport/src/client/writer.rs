//! The body writer of a client tunnel. A client has no relay loop that owns
//! the [`BodyTx`], so one small task per tunnel does: it writes the DATAGRAM
//! capsules that [`DatagramTx::Capsule`](crate::DatagramTx::Capsule) queued
//! (a burst fed, then one flush) and ends our side on command: FIN after the
//! capsules already queued, or a reset at once.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

use crate::tunnel::{BodyTx, CapsuleQueue, ResetReason, TunnelError};

/// Most capsules written per flush.
const BURST: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Run,
    Finish,
    Abort(ResetReason),
}

/// How a [`TunnelWriter`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterEnd {
    /// Our side was finished after the queued capsules (FIN / END_STREAM / TLS
    /// close_notify and TCP FIN).
    Finished,
    /// Our side was reset (HTTP/1.1: the write half dropped).
    Aborted(ResetReason),
    /// A write failed (the peer reset or stopped the stream, the connection
    /// ended); nothing more is written.
    Failed,
}

/// Handle of a tunnel's body writer task. Cheap to clone; when every clone is
/// gone the writer finishes our side as if [`finish`](Self::finish) was called.
#[derive(Debug, Clone)]
pub struct TunnelWriter {
    control: Arc<watch::Sender<Command>>,
    ended: watch::Receiver<Option<WriterEnd>>,
}

impl TunnelWriter {
    /// Spawns the writer of `body`, draining `capsules` (the
    /// [`OpenTunnel::capsules`](crate::OpenTunnel::capsules) queue, if any).
    pub fn spawn(body: BodyTx, capsules: Option<CapsuleQueue>) -> Self {
        let (control, commands) = watch::channel(Command::Run);
        let (end_tx, ended) = watch::channel(None);
        tokio::spawn(async move {
            let end = run(body, capsules, commands).await;
            end_tx.send_replace(Some(end));
        });
        Self {
            control: Arc::new(control),
            ended,
        }
    }

    /// Ends our side cleanly once the capsules queued so far are written.
    /// No effect after an earlier `finish` or `abort`.
    pub fn finish(&self) {
        self.control.send_if_modified(|c| {
            let run = *c == Command::Run;
            if run {
                *c = Command::Finish;
            }
            run
        });
    }

    /// Resets our side now; queued capsules are dropped. Also cuts short a
    /// finish that is still writing.
    pub fn abort(&self, reason: ResetReason) {
        self.control.send_if_modified(|c| {
            let first = !matches!(c, Command::Abort(_));
            if first {
                *c = Command::Abort(reason);
            }
            first
        });
    }

    /// How the writer ended; `None` while it runs.
    pub fn end(&self) -> Option<WriterEnd> {
        *self.ended.borrow()
    }

    /// Waits for the writer to end.
    pub async fn ended(&self) -> WriterEnd {
        let mut ended = self.ended.clone();
        match ended.wait_for(Option::is_some).await {
            Ok(end) => end.unwrap_or(WriterEnd::Failed),
            // The task is gone without a word (runtime shutdown).
            Err(_) => WriterEnd::Failed,
        }
    }
}

async fn run(
    mut body: BodyTx,
    mut capsules: Option<CapsuleQueue>,
    mut commands: watch::Receiver<Command>,
) -> WriterEnd {
    loop {
        match *commands.borrow_and_update() {
            Command::Abort(r) => return abort(&mut body, r),
            Command::Finish => break,
            Command::Run => {}
        }
        tokio::select! {
            biased;
            changed = commands.changed() => {
                // Every handle is gone: nobody can write or end the tunnel
                // any more, so it ends cleanly.
                if changed.is_err() {
                    break;
                }
            }
            c = next(&mut capsules) => match c {
                Some(first) => {
                    tokio::select! {
                        r = write_burst(&mut body, first, capsules.as_mut()) => {
                            if let Err(e) = r {
                                tracing::debug!(error = %e, "tunnel body write failed");
                                return WriterEnd::Failed;
                            }
                        }
                        r = aborted(&mut commands) => return abort(&mut body, r),
                    }
                }
                None => capsules = None,
            },
        }
    }
    // FIN after what is queued; an abort still cuts in.
    if let Some(q) = capsules.as_mut() {
        let drain = async {
            while let Some(first) = q.try_recv() {
                write_burst(&mut body, first, Some(&mut *q)).await?;
            }
            Ok::<_, TunnelError>(())
        };
        tokio::select! {
            r = drain => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "tunnel body write failed");
                    return WriterEnd::Failed;
                }
            }
            r = aborted(&mut commands) => return abort(&mut body, r),
        }
    }
    body.finish().await;
    WriterEnd::Finished
}

fn abort(body: &mut BodyTx, reason: ResetReason) -> WriterEnd {
    body.reset(reason);
    WriterEnd::Aborted(reason)
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

/// `first` and up to a burst of capsules queued behind it, then one flush.
async fn write_burst(
    body: &mut BodyTx,
    first: Bytes,
    rest: Option<&mut CapsuleQueue>,
) -> Result<(), TunnelError> {
    match rest {
        Some(q) => q.write_burst(body, first, BURST).await.map(drop),
        None => {
            body.feed(first).await?;
            body.flush().await
        }
    }
}
