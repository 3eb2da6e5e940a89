//! Socket buffer sizing for UDP sockets: the proxy's QUIC listener, its
//! target sockets and the client's QUIC endpoint all ask for more than the
//! kernel's default (208 KiB on Linux, well under a millisecond of a busy
//! tunnel's traffic) and report what they got.

use std::{
    io,
    net::{SocketAddr, UdpSocket},
    sync::Mutex,
};

/// What QUIC sockets ask for by default, both ways: 4 MiB.
pub const DEFAULT_QUIC_SOCKET_BUFFER: usize = 4 << 20;

/// Socket buffer sizes the kernel granted, as reported by `getsockopt` (on Linux twice the
/// granted value, which accounts for bookkeeping overhead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferSizes {
    /// Effective `SO_RCVBUF` in bytes.
    pub recv: usize,
    /// Effective `SO_SNDBUF` in bytes.
    pub send: usize,
}

/// Binds a UDP socket on `addr` and sizes its buffers ([`size_buffers`]): the
/// socket a QUIC endpoint is built on.
pub fn bind_udp(
    addr: SocketAddr,
    recv: usize,
    send: usize,
    what: &'static str,
) -> io::Result<(UdpSocket, BufferSizes)> {
    let socket = UdpSocket::bind(addr)?;
    let granted = size_buffers(socket2::SockRef::from(&socket), recv, send, what)?;
    Ok((socket, granted))
}

/// Asks for `recv` / `send` bytes of socket buffer and returns what the kernel
/// granted. Best effort: the kernel caps the sizes at `net.core.rmem_max` /
/// `wmem_max`, and a refusal must not stop the socket; a capped request is
/// logged once per process for each kind of socket (`what`).
pub fn size_buffers(
    socket: socket2::SockRef<'_>,
    recv: usize,
    send: usize,
    what: &'static str,
) -> io::Result<BufferSizes> {
    if let Err(e) = socket.set_recv_buffer_size(recv) {
        tracing::debug!(error = %e, what, "SO_RCVBUF not set");
    }
    if let Err(e) = socket.set_send_buffer_size(send) {
        tracing::debug!(error = %e, what, "SO_SNDBUF not set");
    }
    let granted = BufferSizes {
        recv: socket.recv_buffer_size()?,
        send: socket.send_buffer_size()?,
    };
    // Linux reports twice the value it granted.
    let factor = if cfg!(target_os = "linux") { 2 } else { 1 };
    let capped = granted.recv / factor < recv || granted.send / factor < send;
    if capped && first_warning(what) {
        tracing::warn!(
            what,
            requested_recv = recv,
            granted_recv = granted.recv / factor,
            requested_send = send,
            granted_send = granted.send / factor,
            "UDP socket buffers capped by the kernel; raise net.core.rmem_max / wmem_max \
             to avoid drops under load (logged once)"
        );
    }
    Ok(granted)
}

/// True the first time `what` asks (a handful of socket kinds per process).
fn first_warning(what: &'static str) -> bool {
    static WARNED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if warned.contains(&what) {
        return false;
    }
    warned.push(what);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cap warns once per kind of socket.
    #[test]
    fn warnings_once_per_kind() {
        assert!(first_warning("kind a"));
        assert!(!first_warning("kind a"));
        assert!(first_warning("kind b"));
    }

    /// The granted sizes are what the kernel reports, never more than asked
    /// for (Linux: 2 x min(asked, rmem_max / wmem_max)).
    #[test]
    fn sizes_are_asked_and_reported() -> io::Result<()> {
        let (recv, send) = (256 << 10, 128 << 10);
        let (_socket, granted) = bind_udp(([127, 0, 0, 1], 0).into(), recv, send, "test")?;
        let factor = if cfg!(target_os = "linux") { 2 } else { 1 };
        assert!(
            granted.recv <= factor * recv && granted.send <= factor * send,
            "{granted:?}"
        );
        if cfg!(target_os = "linux") {
            let max = |name: &str| -> usize {
                std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0)
            };
            assert_eq!(granted.recv, 2 * recv.min(max("rmem_max")));
            assert_eq!(granted.send, 2 * send.min(max("wmem_max")));
        }
        Ok(())
    }
}
