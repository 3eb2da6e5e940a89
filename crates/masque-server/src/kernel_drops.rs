//! Datagrams the kernel dropped before the node could read them: the `drops` column of
//! `/proc/net/udp` and `/proc/net/udp6` (receive queue full, checksum, memory pressure)
//! for the sockets this process owns (matched by inode through `/proc/self/fd`): the
//! QUIC listener's socket and every CONNECT-UDP target socket. Linux only.
//!
//! The kernel counts per socket, and a closed socket's count is gone, so a sampler reads
//! the table every interval and adds each socket's growth to one monotonic counter
//! (`Metrics::udp_kernel_drops`). Drops between a socket's last sample and its close are
//! missed; with a 1 s interval that is at most one second of one socket.
//!
//! One sampler per process: two nodes in one process would each count all its sockets.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;

/// `(inode, drops)` of each socket row of a `/proc/net/udp{,6}` table.
pub fn parse_proc_udp(table: &str) -> impl Iterator<Item = (u64, u64)> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let inode = f.get(9)?.parse().ok()?;
        let drops = f.get(12)?.parse().ok()?;
        Some((inode, drops))
    })
}

/// The inode of a `/proc/self/fd` link target `socket:[N]`.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Per-socket last counts, turned into one growing total.
#[derive(Debug, Default)]
pub struct DropTotals {
    last: HashMap<u64, u64>,
}

impl DropTotals {
    /// Feeds one sample of `(inode, drops)` rows, keeping only `own` sockets; returns
    /// how much the total grew. Sockets gone from the sample are forgotten.
    pub fn sample(&mut self, own: &HashSet<u64>, rows: impl Iterator<Item = (u64, u64)>) -> u64 {
        let mut grown = 0;
        let mut seen = HashMap::with_capacity(self.last.len());
        for (inode, drops) in rows.filter(|(i, _)| own.contains(i)) {
            let before = self.last.get(&inode).copied().unwrap_or(0);
            grown += drops.saturating_sub(before);
            seen.insert(inode, drops.max(before));
        }
        self.last = seen;
        grown
    }
}

fn own_socket_inodes() -> HashSet<u64> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return HashSet::new();
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| socket_inode(&l.to_string_lossy()))
        .collect()
}

fn read_tables() -> String {
    let mut all = String::new();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        if let Ok(t) = std::fs::read_to_string(table) {
            all.push_str(&t);
        }
    }
    all
}

/// Samples every `interval` into `metrics.udp_kernel_drops` until the handle is
/// aborted. Reading procfs blocks briefly, so it runs on the blocking pool.
pub fn spawn_udp_drop_sampler(
    metrics: Arc<Metrics>,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut totals = DropTotals::default();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let sampled = tokio::task::spawn_blocking(move || {
                let own = own_socket_inodes();
                let tables = read_tables();
                let grown = totals.sample(&own, parse_proc_udp(&tables));
                (totals, grown)
            })
            .await;
            let Ok((t, grown)) = sampled else { return };
            totals = t;
            Metrics::add(&metrics.udp_kernel_drops, grown);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  1: 0100007F:1151 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n\
  2: 0100007F:1152 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4343 2 0000000000000000 5\n";

    #[test]
    fn parses_inode_and_drops() {
        let rows: Vec<_> = parse_proc_udp(TABLE).collect();
        assert_eq!(rows, [(4242, 17), (4343, 5)]);
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[1]"), None);
    }

    #[test]
    fn totals_grow_by_each_own_sockets_increase_only() {
        let own: HashSet<u64> = [4242].into();
        let mut t = DropTotals::default();
        assert_eq!(t.sample(&own, [(4242, 17), (4343, 5)].into_iter()), 17);
        assert_eq!(t.sample(&own, [(4242, 20)].into_iter()), 3);
        // The socket closed: nothing more, and a new socket with the same inode
        // number starts from zero.
        assert_eq!(t.sample(&own, std::iter::empty()), 0);
        assert_eq!(t.sample(&own, [(4242, 2)].into_iter()), 2);
    }

    #[test]
    fn a_real_socket_is_found_in_the_table() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let own = own_socket_inodes();
        let found = parse_proc_udp(&read_tables()).any(|(i, _)| own.contains(&i));
        assert!(found, "our socket {:?} in /proc/net/udp", sock.local_addr());
    }
}
