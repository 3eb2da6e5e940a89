//! A per-tunnel packet budget toward targets (a token bucket), sans-IO: the
//! caller passes the time once per wake-up ([`PacketBudget::refill`]) and
//! takes one token per datagram ([`PacketBudget::take`]). Without it, one
//! QUIC packet can carry ~290 tiny HTTP datagrams and one 64 KiB stream
//! chunk ~21,000 tiny DATAGRAM capsules, each becoming a UDP packet to the
//! target: an amplifier.

use std::time::{Duration, Instant};

/// Datagrams per second toward the target, and the burst above that rate a
/// tunnel may send at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketRate {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for PacketRate {
    /// 200,000/s (about 2 Gbit/s of 1,200-byte payloads), bursts of 20,000.
    fn default() -> Self {
        Self {
            per_second: 200_000,
            burst: 20_000,
        }
    }
}

/// A token bucket in millitokens (integer arithmetic, no drift).
#[derive(Debug, Clone)]
pub(crate) struct PacketBudget {
    rate: Option<PacketRate>,
    /// Millitokens available.
    milli: u64,
    last: Instant,
}

impl PacketBudget {
    /// A full bucket; `None` is unlimited.
    pub(crate) fn new(rate: Option<PacketRate>, now: Instant) -> Self {
        let milli = rate.map_or(0, |r| u64::from(r.burst.max(1)) * 1000);
        Self {
            rate,
            milli,
            last: now,
        }
    }

    /// Adds what the time since the last refill earned, up to the burst.
    pub(crate) fn refill(&mut self, now: Instant) {
        let Some(rate) = self.rate else { return };
        let elapsed = now.saturating_duration_since(self.last);
        if elapsed < Duration::from_micros(1) {
            return;
        }
        self.last = now;
        // per_second tokens per second = per_second millitokens per millisecond.
        let earned = elapsed
            .as_micros()
            .saturating_mul(u128::from(rate.per_second))
            / 1000;
        let cap = u64::from(rate.burst.max(1)) * 1000;
        self.milli = (u128::from(self.milli) + earned).min(u128::from(cap)) as u64;
    }

    /// One datagram's worth; `false` when the budget is spent (drop it).
    pub(crate) fn take(&mut self) -> bool {
        if self.rate.is_none() {
            return true;
        }
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full bucket grants the burst at once, then the rate over time,
    /// never more than the burst after a long pause.
    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let rate = PacketRate {
            per_second: 1000,
            burst: 10,
        };
        let mut b = PacketBudget::new(Some(rate), t0);
        assert_eq!((0..20).filter(|_| b.take()).count(), 10);
        b.refill(t0 + Duration::from_millis(5));
        assert_eq!((0..20).filter(|_| b.take()).count(), 5);
        b.refill(t0 + Duration::from_secs(60));
        assert_eq!(
            (0..100).filter(|_| b.take()).count(),
            10,
            "capped at the burst"
        );
        let mut free = PacketBudget::new(None, t0);
        assert!((0..1_000_000).all(|_| free.take()));
    }

    /// Sub-millisecond refills add up (no rounding loss).
    #[test]
    fn small_refills_accumulate() {
        let t0 = Instant::now();
        let rate = PacketRate {
            per_second: 1000,
            burst: 1,
        };
        let mut b = PacketBudget::new(Some(rate), t0);
        assert!(b.take());
        assert!(!b.take());
        for i in 1..=10 {
            b.refill(t0 + Duration::from_micros(100 * i));
        }
        assert!(b.take(), "ten 100 µs refills make one token at 1000/s");
    }
}
