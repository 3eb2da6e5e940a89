//! RFC 1071 Internet checksum and RFC 1624 incremental update.
//!
//! Used for the IPv4 header checksum, ICMPv4 (no pseudo-header) and ICMPv6 (with the
//! RFC 8200 §8.1 pseudo-header), see `icmp-for-tunnels.md` §1 and §5.

use std::net::Ipv6Addr;

/// Adds two 16-bit words in one's complement arithmetic (end-around carry).
#[inline]
pub const fn ones_complement_add(a: u16, b: u16) -> u16 {
    let s = a as u32 + b as u32;
    ((s & 0xffff) + (s >> 16)) as u16
}

/// Running one's complement sum over a byte stream (RFC 1071).
///
/// Bytes may be fed in pieces of any length: an odd trailing byte is kept and paired with
/// the first byte of the next piece, so chunking never changes the result. At the end an
/// odd byte is padded with a zero byte for the sum only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum {
    /// Unfolded sum of 16-bit words. 2^64 / 2^16 words would take 2^48 words to overflow.
    sum: u64,
    /// High byte of a word whose low byte has not been seen yet.
    odd: Option<u8>,
}

impl Checksum {
    /// An empty sum.
    pub const fn new() -> Self {
        Self { sum: 0, odd: None }
    }

    /// Adds bytes in network order.
    pub fn add_bytes(&mut self, mut data: &[u8]) -> &mut Self {
        if let Some(hi) = self.odd.take() {
            match data.split_first() {
                Some((lo, rest)) => {
                    self.sum += u64::from(u16::from_be_bytes([hi, *lo]));
                    data = rest;
                }
                None => {
                    self.odd = Some(hi);
                    return self;
                }
            }
        }
        let mut words = data.chunks_exact(2);
        for w in &mut words {
            if let [a, b] = *w {
                self.sum += u64::from(u16::from_be_bytes([a, b]));
            }
        }
        if let [last] = *words.remainder() {
            self.odd = Some(last);
        }
        self
    }

    /// Adds a 16-bit value as two bytes in network order.
    pub fn add_u16(&mut self, v: u16) -> &mut Self {
        self.add_bytes(&v.to_be_bytes())
    }

    /// Adds a 32-bit value as four bytes in network order.
    pub fn add_u32(&mut self, v: u32) -> &mut Self {
        self.add_bytes(&v.to_be_bytes())
    }

    /// Adds the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, 32-bit
    /// upper-layer packet length, three zero bytes and the next header value.
    pub fn add_ipv6_pseudo_header(
        &mut self,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        upper_layer_len: u32,
        next_header: u8,
    ) -> &mut Self {
        self.add_bytes(&src.octets())
            .add_bytes(&dst.octets())
            .add_u32(upper_layer_len)
            .add_bytes(&[0, 0, 0, next_header])
    }

    /// The folded one's complement sum (not complemented). A message whose checksum
    /// field is correct sums to `0xffff` (ICMP-01).
    pub fn sum(&self) -> u16 {
        let mut s = self.sum;
        if let Some(hi) = self.odd {
            s += u64::from(hi) << 8;
        }
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    /// The checksum to put in the message: the complement of [`Checksum::sum`].
    pub fn finish(&self) -> u16 {
        !self.sum()
    }
}

/// RFC 1071 Internet checksum of `data` (odd length padded with a zero byte).
/// Spec README vector 19: `00 01 f2 03 f4 f5 f6 f7` → `0x220d`.
pub fn internet_checksum(data: &[u8]) -> u16 {
    Checksum::new().add_bytes(data).finish()
}

/// Whether `data`, which contains its own checksum field, sums to zero (ICMP-01,
/// IPv4 header check).
pub fn verifies(data: &[u8]) -> bool {
    Checksum::new().add_bytes(data).sum() == 0xffff
}

/// RFC 1624 eqn. 3 incremental update: the new checksum after one 16-bit word of the
/// covered data changes from `old_word` to `new_word`: `HC' = ~(~HC + ~m + m')`.
/// This never produces `0xffff` for non-zero data, so it agrees with a full
/// recomputation (RFC 1624 §3).
pub const fn incremental_update(checksum: u16, old_word: u16, new_word: u16) -> u16 {
    !ones_complement_add(ones_complement_add(!checksum, !old_word), new_word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Spec README vector 19 / icmp digest §6.1: RFC 1071 sample.
    #[test]
    fn rfc1071_sample_vector() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(Checksum::new().add_bytes(&data).sum(), 0xddf2);
        assert_eq!(internet_checksum(&data), 0x220d);
    }

    #[test]
    fn odd_length_is_zero_padded() {
        assert_eq!(internet_checksum(&[0xab]), !0xab00);
        assert_eq!(internet_checksum(&[]), 0xffff);
    }

    proptest! {
        /// Chunking never changes the sum (odd bytes carried across pieces).
        #[test]
        fn chunking_invariant(data in proptest::collection::vec(any::<u8>(), 0..200), cut in 0usize..200, cut2 in 0usize..200) {
            let a = cut.min(data.len());
            let b = cut2.clamp(a, data.len());
            let mut c = Checksum::new();
            c.add_bytes(&data[..a]).add_bytes(&data[a..b]).add_bytes(&data[b..]);
            prop_assert_eq!(c.finish(), internet_checksum(&data));
        }

        /// Inserting the checksum into even-length data makes it verify (ICMP-01).
        #[test]
        fn inserted_checksum_verifies(mut data in proptest::collection::vec(any::<u8>(), 2..100)) {
            if data.len() % 2 == 1 { data.push(0); }
            data[0] = 0; data[1] = 0;
            let c = internet_checksum(&data);
            data[..2].copy_from_slice(&c.to_be_bytes());
            prop_assert!(verifies(&data));
        }

        /// RFC 1624: incremental update equals full recomputation.
        #[test]
        fn incremental_matches_full(mut data in proptest::collection::vec(any::<u8>(), 4..60), idx in 0usize..30, new in any::<u16>()) {
            if data.len() % 2 == 1 { data.push(0); }
            data[0] = 0x45; // non-zero data, as in every IPv4 header
            data[2] = 0; data[3] = 0;
            let c = internet_checksum(&data);
            data[2..4].copy_from_slice(&c.to_be_bytes());
            let w = 2 * (idx % (data.len() / 2));
            prop_assume!(w >= 4); // keep byte 0 (non-zero) and the checksum field
            let old = u16::from_be_bytes([data[w], data[w + 1]]);
            data[w..w + 2].copy_from_slice(&new.to_be_bytes());
            let updated = incremental_update(c, old, new);
            data[2] = 0; data[3] = 0;
            prop_assert_eq!(updated, internet_checksum(&data));
        }
    }
}
