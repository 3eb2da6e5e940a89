//! What a target-socket run costs, and how long runs must be for a throughput target.
//!
//! A relay with one connected UDP socket per tunnel sends each tunnel's datagrams to the
//! target in runs: one GSO `sendmsg` per run of consecutive datagrams of one tunnel. On
//! loopback each run costs a fixed price on top of its datagrams: the send (the kernel
//! builds one skb and delivers it, softirq included, inside the call), the target's
//! receive, the target's send back, the relay's receive, and a wake-up at each end. So
//! the CPU per echoed datagram of a relay path is close to `base + per_run / run`, where
//! `run` is the datagrams per run (the echo target counts it).
//!
//! Two paths of the same relay with different run lengths (1 tunnel: long runs, 16
//! tunnels: short ones) give the two unknowns; from them follows the run length a
//! throughput target needs. [`loopback_run`] measures the kernel's part of the price
//! directly, on a socket pair with no relay around it. The node benchmark
//! (`tests/benches/node_udp_echo.rs`) prints both.

use std::{io::IoSliceMut, net::UdpSocket, time::Instant};

use anyhow::{Result, ensure};
use quinn::udp::{RecvMeta, Transmit, UdpSocketState};

/// `cpu = base + per_run / run`, in microseconds of CPU per echoed datagram.
#[derive(Debug, Clone, Copy)]
pub struct RunCostFit {
    pub base_us: f64,
    pub per_run_us: f64,
}

impl RunCostFit {
    /// Fits the model to two paths, each `(cpu us per datagram, datagrams per run)`.
    /// `None` when the run lengths are too close to tell the two terms apart, or
    /// the fit is not physical (longer runs costing more).
    pub fn fit(a: (f64, f64), b: (f64, f64)) -> Option<Self> {
        let (ia, ib) = (1.0 / a.1.max(1.0), 1.0 / b.1.max(1.0));
        if (ia - ib).abs() < 0.05 {
            return None;
        }
        let per_run_us = (a.0 - b.0) / (ia - ib);
        let base_us = a.0 - per_run_us * ia;
        (per_run_us > 0.0 && base_us > 0.0).then_some(Self {
            base_us,
            per_run_us,
        })
    }

    /// Datagrams per run at which the path costs `budget_us` per datagram; `None`
    /// when even endless runs would cost more (`base_us >= budget_us`).
    pub fn run_needed(&self, budget_us: f64) -> Option<f64> {
        (budget_us > self.base_us).then(|| self.per_run_us / (budget_us - self.base_us))
    }
}

/// Kernel time of one loopback run of `datagrams` payloads of `payload` bytes: one
/// GSO send on a connected socket, then the GRO receive on the other end, each in
/// microseconds (mean of `rounds`). Blocking sockets (a receive gives up after
/// 5 s); run it outside the runtime.
pub fn loopback_run(datagrams: usize, payload: usize, rounds: usize) -> Result<(f64, f64)> {
    let rx = UdpSocket::bind("127.0.0.1:0")?;
    let tx = UdpSocket::bind("127.0.0.1:0")?;
    tx.connect(rx.local_addr()?)?;
    rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let rx_state = UdpSocketState::new((&rx).into())?;
    let tx_state = UdpSocketState::new((&tx).into())?;
    ensure!(
        datagrams <= tx_state.max_gso_segments() && datagrams * payload <= 65_507,
        "a run of {datagrams} x {payload} bytes does not fit one GSO send here"
    );
    let out = vec![0u8; datagrams * payload];
    let mut storage = vec![0u8; 65_536];
    let mut metas = [RecvMeta::default()];
    let dest = rx.local_addr()?;
    let t = Transmit {
        destination: dest,
        ecn: None,
        contents: &out,
        segment_size: (datagrams > 1).then_some(payload),
        src_ip: None,
    };
    let (mut send, mut recv) = (0.0, 0.0);
    for _ in 0..rounds {
        let start = Instant::now();
        tx_state.send((&tx).into(), &t)?;
        let sent = Instant::now();
        let mut iov = [IoSliceMut::new(&mut storage)];
        let n = rx_state.recv((&rx).into(), &mut iov, &mut metas)?;
        recv += sent.elapsed().as_secs_f64();
        send += (sent - start).as_secs_f64();
        ensure!(
            n == 1 && metas[0].len == out.len(),
            "the run arrived split ({} bytes of {})",
            metas[0].len,
            out.len()
        );
    }
    let us = |s: f64| s / rounds.max(1) as f64 * 1e6;
    Ok((us(send), us(recv)))
}

/// Datagrams one GSO send can carry here (1 without GSO).
pub fn max_gso_segments() -> usize {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .ok()
        .and_then(|s| UdpSocketState::new((&s).into()).ok())
        .map_or(1, |state| state.max_gso_segments())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_the_model() {
        // base 7, per run 10: 27-datagram runs cost 7.37, 4-datagram runs 9.5.
        let f = RunCostFit::fit((7.0 + 10.0 / 27.0, 27.0), (9.5, 4.0)).expect("fits");
        assert!((f.base_us - 7.0).abs() < 1e-9 && (f.per_run_us - 10.0).abs() < 1e-9);
        assert!((f.run_needed(8.0).expect("reachable") - 10.0).abs() < 1e-9);
        assert!(f.run_needed(7.0).is_none());
        assert!(RunCostFit::fit((9.0, 8.0), (9.1, 8.1)).is_none());
    }

    #[test]
    fn a_loopback_run_arrives_whole() {
        let (send, recv) = loopback_run(1, 1200, 50).expect("one datagram");
        assert!(send > 0.0 && recv > 0.0, "send {send} us, recv {recv} us");
        if max_gso_segments() >= 8 {
            loopback_run(8, 1200, 50).expect("a GSO run of 8 arrives as one GRO buffer");
        }
    }
}
