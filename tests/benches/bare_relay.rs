//! The bare relay: the least a CONNECT-UDP proxy with one UDP socket per
//! tunnel has to do, with no HTTP/3, no sessions, no actors and no policy.
//!
//! A raw quinn connection carries DATAGRAMs whose first byte names a tunnel;
//! the server side relays each tunnel over its own connected UDP socket to the
//! same echo target the node uses, with the same batching as the node (GSO
//! runs per burst out, recvmmsg/GRO back, one task reading every socket of the
//! connection) and sends the echoes back as DATAGRAMs. The node does exactly
//! this work plus its own layers, so `node / bare relay` is the node's own
//! overhead and `bare relay / raw quinn` is the price of the extra UDP leg
//! (the echo target runs in this process, on the same cores).

use std::{
    future::Future,
    io::IoSliceMut,
    net::SocketAddr,
    pin::pin,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::Duration,
};

use anyhow::{Result, ensure};
use bytes::{BufMut, Bytes, BytesMut};
use masque_tests::{
    TestCert,
    bench::{Path, quinn_client_path},
    server_endpoint,
};
use quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::{io::Interest, net::UdpSocket};

/// Datagrams the relay takes from quinn per burst before it sends.
const READ_BURST: usize = 256;
/// GRO receive slots per tunnel socket.
const RECV_SLOTS: usize = quinn::udp::BATCH_SIZE;
const SLOT: usize = 65_536;

/// One relayed tunnel: a connected socket to the echo target.
struct Leg {
    sock: UdpSocket,
    state: UdpSocketState,
}

impl Leg {
    fn connect(echo: SocketAddr) -> Result<Self> {
        let std_sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
        std_sock.connect(echo)?;
        std_sock.set_nonblocking(true)?;
        let state = UdpSocketState::new((&std_sock).into())?;
        state.set_recv_buffer_size((&std_sock).into(), 4 << 20)?;
        state.set_send_buffer_size((&std_sock).into(), 4 << 20)?;
        Ok(Self {
            sock: UdpSocket::from_std(std_sock)?,
            state,
        })
    }

    /// GSO sends of equal-size datagrams, as many datagrams per send as the
    /// socket and the 64 KiB UDP limit allow (non-blocking; a full buffer drops).
    fn send(&self, peer: SocketAddr, buf: &[u8], segment: usize) {
        let per_send = self
            .state
            .max_gso_segments()
            .min(65_507 / segment.max(1))
            .max(1);
        for chunk in buf.chunks(per_send * segment.max(1)) {
            let t = Transmit {
                destination: peer,
                ecn: None,
                contents: chunk,
                segment_size: (chunk.len() > segment).then_some(segment),
                src_ip: None,
            };
            let _ = self.sock.try_io(Interest::WRITABLE, || {
                self.state.try_send((&self.sock).into(), &t)
            });
        }
    }
}

/// Starts the bare relay path over `tunnels` legs to `echo`.
pub async fn bare_relay(
    cert: &TestCert,
    echo: SocketAddr,
    tunnels: usize,
    payload: usize,
    window: usize,
    slice: Duration,
) -> Result<(Path, quinn::Endpoint, quinn::Connection)> {
    ensure!(tunnels <= 256, "one byte names the tunnel");
    let server = server_endpoint(cert, 16)?;
    let addr = server.local_addr()?;
    let legs: Arc<[Leg]> = (0..tunnels)
        .map(|_| Leg::connect(echo))
        .collect::<Result<Vec<_>>>()?
        .into();
    let srv = server.clone();
    let relay_legs = Arc::clone(&legs);
    tokio::spawn(async move {
        let Some(inc) = srv.accept().await else {
            return;
        };
        let Ok(conn) = inc.await else {
            return;
        };
        tokio::spawn(legs_to_client(Arc::clone(&relay_legs), conn.clone()));
        client_to_legs(&relay_legs, echo, &conn).await;
    });
    // Round robin over the tunnels, as the node's 16-tunnel path does.
    let payloads = (0..tunnels)
        .map(|i| {
            let mut b = vec![0u8; payload + 1];
            b[0] = i as u8;
            Bytes::from(b)
        })
        .collect();
    quinn_client_path(cert, addr, payloads, window, slice).await
}

/// Client -> target: everything quinn holds (up to [`READ_BURST`]), then one
/// GSO send per tunnel.
async fn client_to_legs(legs: &[Leg], echo: SocketAddr, conn: &quinn::Connection) {
    let mut bursts: Vec<(BytesMut, usize)> =
        (0..legs.len()).map(|_| (BytesMut::new(), 0)).collect();
    loop {
        let Ok(first) = conn.read_datagram().await else {
            return;
        };
        let mut take = |dg: Bytes| {
            if let Some((&i, data)) = dg.split_first()
                && let Some((buf, segment)) = bursts.get_mut(usize::from(i))
            {
                if *segment != 0 && *segment != data.len() {
                    legs[usize::from(i)].send(echo, buf, *segment);
                    buf.clear();
                }
                *segment = data.len();
                buf.put_slice(data);
            }
        };
        take(first);
        for _ in 1..READ_BURST {
            let mut next = pin!(conn.read_datagram());
            match next.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(Ok(dg)) => take(dg),
                Poll::Ready(Err(_)) => return,
                Poll::Pending => break,
            }
        }
        for (leg, (buf, segment)) in legs.iter().zip(&mut bursts) {
            if !buf.is_empty() {
                leg.send(echo, buf, *segment);
                buf.clear();
            }
        }
    }
}

/// Target -> client for every tunnel from one task: the legs that are ready,
/// one DATAGRAM per echo.
async fn legs_to_client(legs: Arc<[Leg]>, conn: quinn::Connection) {
    let mut storage = vec![0u8; RECV_SLOTS * SLOT];
    let mut metas = [RecvMeta::default(); RECV_SLOTS];
    let mut out: Vec<Bytes> = Vec::new();
    loop {
        std::future::poll_fn(|cx| {
            let mut ready = false;
            for leg in legs.iter() {
                if leg.sock.poll_recv_ready(cx).is_ready() {
                    ready = true;
                }
            }
            if ready {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        for (i, leg) in legs.iter().enumerate() {
            let mut chunks = storage.chunks_mut(SLOT);
            let mut iovs: [IoSliceMut<'_>; RECV_SLOTS] =
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or(&mut [])));
            let Ok(n) = leg.sock.try_io(Interest::READABLE, || {
                leg.state.recv((&leg.sock).into(), &mut iovs, &mut metas)
            }) else {
                continue;
            };
            for (k, meta) in metas[..n].iter().enumerate() {
                let data = &storage[k * SLOT..k * SLOT + meta.len];
                for d in data.chunks(meta.stride.max(1)) {
                    let mut b = BytesMut::with_capacity(d.len() + 1);
                    b.put_u8(i as u8);
                    b.put_slice(d);
                    out.push(b.freeze());
                }
            }
        }
        for d in out.drain(..) {
            if conn.send_datagram_wait(d).await.is_err() {
                return;
            }
        }
    }
}
