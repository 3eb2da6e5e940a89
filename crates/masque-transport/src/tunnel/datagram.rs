//! HTTP datagrams of one tunnel, whatever carries them: QUIC DATAGRAM frames
//! (HTTP/3 with datagrams) or DATAGRAM capsules in the body (RFC 9297 §3.5;
//! HTTP/2, HTTP/1.1, HTTP/3 without datagrams, R9297-31).
//!
//! A capsule datagram is built in one buffer that starts with room for the
//! capsule header: on send the header is written right before the payload and
//! the unused room skipped, so a datagram costs one allocation either way.

use bytes::{Buf, Bytes, BytesMut};
use masque_h3::{DatagramBuf, DatagramReceiver, DatagramSender};
use masque_proto::capsule;
use tokio::sync::mpsc::{self, error::TrySendError};

use super::{BodyTx, TunnelError};

/// Encoded DATAGRAM capsules waiting for the body writer. A tokio channel, so
/// that senders can wait for room (backpressure as on HTTP/3); its block is
/// allocated per tunnel, a small price beside the TLS connection that carries it.
#[derive(Debug)]
pub struct CapsuleQueue(mpsc::Receiver<Bytes>);

impl CapsuleQueue {
    /// The next capsule; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.0.recv().await
    }

    /// A capsule already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        self.0.try_recv().ok()
    }

    /// Writes `first` and the capsules queued behind it (at most `burst`),
    /// then flushes once: one TLS record and one system call for a burst on
    /// HTTP/1.1. Returns how many were written.
    pub async fn write_burst(
        &mut self,
        body: &mut BodyTx,
        first: Bytes,
        burst: usize,
    ) -> Result<usize, TunnelError> {
        let mut next = Some(first);
        let mut written = 0;
        while let Some(c) = next.take() {
            body.feed(c).await?;
            written += 1;
            if written < burst {
                next = self.try_recv();
            }
        }
        body.flush().await?;
        Ok(written)
    }
}

/// Sends HTTP datagrams. Cheap to clone.
#[derive(Debug, Clone)]
pub enum DatagramTx {
    H3(DatagramSender),
    /// DATAGRAM capsules through a bounded queue to the body writer; a full
    /// queue drops (the caller counts it).
    Capsule(CapsuleSender),
}

/// The capsule side of [`DatagramTx`].
#[derive(Debug, Clone)]
pub struct CapsuleSender {
    queue: mpsc::Sender<Bytes>,
    /// Largest HTTP datagram payload (context id included) one capsule may
    /// carry: what a peer with the common 64 KiB capsule bound accepts.
    max_payload: usize,
}

impl CapsuleSender {
    /// A sender and the queue its owner's body writer drains.
    pub fn channel(capacity: usize, max_payload: usize) -> (CapsuleSender, CapsuleQueue) {
        let (queue, rx) = mpsc::channel(capacity.max(1));
        (CapsuleSender { queue, max_payload }, CapsuleQueue(rx))
    }

    /// The encoded capsule, or why it cannot be sent.
    fn encode(&self, b: CapsuleBuf) -> Result<Bytes, TunnelError> {
        let size = b.buf.len() - b.room;
        if size > self.max_payload {
            return Err(TunnelError::DatagramTooLarge {
                size,
                max: self.max_payload,
            });
        }
        Ok(b.into_capsule())
    }
}

use capsule::max_datagram_capsule_header_len as header_room;

/// A datagram being built by [`DatagramTx::buffer`]: append the payload
/// (context id first) to [`OutDatagram::payload_mut`].
#[derive(Debug)]
pub enum OutDatagram {
    H3(DatagramBuf),
    Capsule(CapsuleBuf),
}

/// A DATAGRAM capsule under construction: `room` bytes reserved for the
/// header, then the HTTP datagram payload.
#[derive(Debug)]
pub struct CapsuleBuf {
    buf: BytesMut,
    room: usize,
}

impl CapsuleBuf {
    fn new(payload_capacity: usize) -> Self {
        let room = header_room(payload_capacity);
        let mut buf = BytesMut::with_capacity(room + payload_capacity);
        buf.resize(room, 0);
        Self { buf, room }
    }

    /// The encoded capsule: the header written just before the payload.
    fn into_capsule(mut self) -> Bytes {
        match capsule::write_datagram_capsule_header(&mut self.buf, self.room) {
            Ok(start) => {
                self.buf.advance(start);
                self.buf.freeze()
            }
            // The payload outgrew the capacity it was built for: one copy.
            Err(_) => {
                let mut out = BytesMut::new();
                capsule::encode_datagram_capsule(&[&self.buf[self.room..]], &mut out);
                out.freeze()
            }
        }
    }
}

impl OutDatagram {
    /// Bytes after the transport's prefix (context id and payload).
    pub fn payload_len(&self) -> usize {
        match self {
            OutDatagram::H3(b) => b.payload().len(),
            OutDatagram::Capsule(c) => c.buf.len() - c.room,
        }
    }

    /// The buffer; the transport's prefix is already in it and must stay.
    pub fn payload_mut(&mut self) -> &mut BytesMut {
        match self {
            OutDatagram::H3(b) => b.payload_mut(),
            OutDatagram::Capsule(c) => &mut c.buf,
        }
    }
}

impl DatagramTx {
    /// Largest HTTP datagram payload (context id included) that fits now.
    pub fn max_payload_size(&self) -> Option<usize> {
        match self {
            DatagramTx::H3(s) => s.max_payload_size(),
            DatagramTx::Capsule(c) => Some(c.max_payload),
        }
    }

    /// Whether datagrams travel as capsules in the body (for metrics).
    pub fn is_capsule(&self) -> bool {
        matches!(self, DatagramTx::Capsule(_))
    }

    pub fn buffer(&self, payload_capacity: usize) -> OutDatagram {
        match self {
            DatagramTx::H3(s) => OutDatagram::H3(s.buffer(payload_capacity)),
            DatagramTx::Capsule(_) => OutDatagram::Capsule(CapsuleBuf::new(payload_capacity)),
        }
    }

    /// Sends, waiting for room (backpressure): in quinn's datagram send
    /// buffer, or in the queue to the body writer, whose writes wait for the
    /// peer's credit.
    pub async fn send(&self, d: OutDatagram) -> Result<(), TunnelError> {
        match self {
            DatagramTx::H3(s) => Ok(s.send(d.into_h3(s)).await?),
            DatagramTx::Capsule(c) => {
                let capsule = c.encode(d.into_capsule())?;
                c.queue.send(capsule).await.map_err(|_| TunnelError::Closed)
            }
        }
    }

    /// Sends without waiting; a full send buffer or queue is an error (the
    /// caller counts it).
    pub fn try_send(&self, d: OutDatagram) -> Result<(), TunnelError> {
        match self {
            DatagramTx::H3(s) => Ok(s.try_send(d.into_h3(s))?),
            DatagramTx::Capsule(c) => {
                c.queue
                    .try_send(c.encode(d.into_capsule())?)
                    .map_err(|e| match e {
                        TrySendError::Full(_) => TunnelError::QueueFull,
                        TrySendError::Closed(_) => TunnelError::Closed,
                    })
            }
        }
    }
}

impl OutDatagram {
    /// The HTTP datagram payload (context id first).
    fn payload(&self) -> &[u8] {
        match self {
            OutDatagram::H3(b) => b.payload(),
            OutDatagram::Capsule(c) => &c.buf[c.room..],
        }
    }

    /// For `s`; a buffer from another sender is copied once.
    fn into_h3(self, s: &DatagramSender) -> DatagramBuf {
        match self {
            OutDatagram::H3(b) => b,
            other => {
                let mut b = s.buffer(other.payload().len());
                b.payload_mut().extend_from_slice(other.payload());
                b
            }
        }
    }

    /// For a capsule sender; a buffer from another sender is copied once.
    fn into_capsule(self) -> CapsuleBuf {
        match self {
            OutDatagram::Capsule(c) => c,
            other => {
                let mut c = CapsuleBuf::new(other.payload().len());
                c.buf.extend_from_slice(other.payload());
                c
            }
        }
    }
}

/// Receives HTTP datagram payloads (context id first).
#[derive(Debug)]
pub enum DatagramRx {
    H3(DatagramReceiver),
}

impl DatagramRx {
    pub async fn recv(&mut self) -> Option<Bytes> {
        match self {
            DatagramRx::H3(r) => r.recv().await,
        }
    }

    /// A datagram already queued, without waiting (draining a burst).
    pub fn try_recv(&mut self) -> Option<Bytes> {
        match self {
            DatagramRx::H3(r) => r.try_recv(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use masque_proto::capsule::CapsuleDecoder;

    /// R9297-31: a datagram sent on a capsule transport is one DATAGRAM
    /// capsule with a minimal header, whatever its size and the capacity it
    /// was built with.
    #[test]
    fn capsule_datagrams_round_trip() {
        let (tx, mut rx) = CapsuleSender::channel(16, 70_000);
        let tx = DatagramTx::Capsule(tx);
        for (capacity, len) in [
            (0, 0),
            (10, 63),
            (63, 64),
            (16383, 16383),
            (10, 16384),
            (70_000, 65_528),
        ] {
            let mut b = tx.buffer(capacity);
            b.payload_mut().extend(std::iter::repeat_n(7u8, len));
            assert_eq!(b.payload_len(), len);
            tx.try_send(b).unwrap();
            let wire = rx.try_recv().unwrap();
            assert_eq!(
                wire.len(),
                header_room(len) + len,
                "minimal header for {len}"
            );
            let mut dec = CapsuleDecoder::with_max_size(70_000);
            dec.push(wire);
            let c = dec.next_capsule().unwrap().unwrap();
            assert_eq!((c.ty, c.value.len()), (capsule::DATAGRAM, len));
        }
    }

    #[test]
    fn full_queue_and_oversize_are_errors() {
        let (tx, _rx) = CapsuleSender::channel(1, 8);
        let tx = DatagramTx::Capsule(tx);
        let mut big = tx.buffer(9);
        big.payload_mut().extend_from_slice(&[0; 9]);
        assert!(matches!(
            tx.try_send(big),
            Err(TunnelError::DatagramTooLarge { size: 9, max: 8 })
        ));
        tx.try_send(tx.buffer(1)).unwrap();
        assert!(matches!(
            tx.try_send(tx.buffer(1)),
            Err(TunnelError::QueueFull)
        ));
    }
}
