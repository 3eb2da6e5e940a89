//! The two halves of a stream tunnel's target, and how to end it abruptly.

use std::{
    io,
    os::fd::{AsFd, OwnedFd},
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf},
    net::tcp::{OwnedReadHalf, OwnedWriteHalf},
};

use crate::handler::{ByteStream, TargetStream};

pub(super) enum TargetRead {
    Tcp(OwnedReadHalf),
    Io(ReadHalf<Box<dyn ByteStream>>),
}

pub(super) enum TargetWrite {
    Tcp(OwnedWriteHalf),
    Io(WriteHalf<Box<dyn ByteStream>>),
}

/// Splits a target into halves that the two directions of the relay own.
/// A TCP target keeps a second descriptor of its socket so that an abort
/// can make its close a reset.
pub(super) fn split(target: TargetStream) -> (TargetRead, TargetWrite, Option<OwnedFd>) {
    match target {
        TargetStream::Tcp(tcp) => {
            let fd = tcp.as_fd().try_clone_to_owned().ok();
            let (r, w) = tcp.into_split();
            (TargetRead::Tcp(r), TargetWrite::Tcp(w), fd)
        }
        TargetStream::Io(io) => {
            let (r, w) = tokio::io::split(io);
            (TargetRead::Io(r), TargetWrite::Io(w), None)
        }
    }
}

/// Ends the target abruptly: a TCP connection is reset (SO_LINGER 0, then
/// closed without a FIN: CTCP-22), anything else dropped.
pub(super) fn abort(read: TargetRead, write: TargetWrite, fd: Option<OwnedFd>) {
    if let Some(fd) = &fd {
        let _ = socket2::SockRef::from(fd).set_linger(Some(Duration::ZERO));
    }
    if let TargetWrite::Tcp(w) = write {
        // Dropping the write half would send a FIN first.
        w.forget();
    }
    drop((read, fd));
}

/// Ends a target that was never split (the 2xx failed): a reset for TCP.
pub(super) fn abort_whole(target: TargetStream) {
    if let TargetStream::Tcp(tcp) = &target {
        let _ = tcp.set_zero_linger();
    }
    drop(target);
}

impl AsyncRead for TargetRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TargetRead::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            TargetRead::Io(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for TargetWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TargetWrite::Tcp(w) => Pin::new(w).poll_write(cx, data),
            TargetWrite::Io(w) => Pin::new(w).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TargetWrite::Tcp(w) => Pin::new(w).poll_flush(cx),
            TargetWrite::Io(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TargetWrite::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            TargetWrite::Io(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}
