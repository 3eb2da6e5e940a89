//! A bounds-checked cursor over a fixed-length container (capsule value, datagram,
//! frame payload). Running out of bytes inside such a container is malformed (QV-05),
//! so every accessor returns [`Truncated`] instead of panicking.

use crate::varint;

/// The container ended before the field did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("field runs past the end of its container")]
pub struct Truncated;

/// Cursor over a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn varint(&mut self) -> Result<u64, Truncated> {
        let (v, n) = varint::decode(&self.buf[self.pos..]).map_err(|_| Truncated)?;
        self.pos += n;
        Ok(v)
    }

    pub fn u8(&mut self) -> Result<u8, Truncated> {
        let b = *self.buf.get(self.pos).ok_or(Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub fn u16(&mut self) -> Result<u16, Truncated> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        let end = self.pos.checked_add(n).ok_or(Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(Truncated)?;
        self.pos = end;
        Ok(s)
    }

    /// Fixed-size array (addresses).
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        let s = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_bounds() {
        let mut r = Reader::new(&[0x40, 0x25, 1, 2, 3, 4]);
        assert_eq!(r.varint(), Ok(37));
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(0x0203));
        assert_eq!(r.bytes(2), Err(Truncated));
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.rest(), &[4]);
        assert!(r.is_empty());
        assert_eq!(r.u8(), Err(Truncated));
        assert_eq!(r.varint(), Err(Truncated));
    }
}
