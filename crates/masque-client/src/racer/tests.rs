//! The race's timing and memory, sans-IO.

use std::time::{Duration, Instant};

use masque_transport::{Transport, tls::ServerVerification};

use super::{Memory, RaceKey, Schedule};
use crate::{ClientError, RaceOptions};

const MS: Duration = Duration::from_millis(1);

fn defaults() -> RaceOptions {
    RaceOptions::default()
}

#[test]
fn defaults_are_250_ms_500_ms_5_s_and_5_min() {
    let r = defaults();
    assert_eq!(
        (r.h2_delay, r.h1_delay, r.deadline, r.remember),
        (
            250 * MS,
            500 * MS,
            Duration::from_secs(5),
            Duration::from_secs(300)
        )
    );
}

#[test]
fn head_starts_h3_at_once_h2_at_250_ms_h1_at_500_ms() {
    let mut s = Schedule::new(None, &defaults());
    assert_eq!(s.due(Duration::ZERO), [Transport::H3]);
    assert_eq!(s.due(Duration::ZERO), [], "started once only");
    assert_eq!(s.next_start(), Some(250 * MS));
    assert_eq!(s.due(249 * MS), []);
    assert_eq!(s.due(250 * MS), [Transport::H2]);
    assert_eq!(s.next_start(), Some(500 * MS));
    assert_eq!(s.due(499 * MS), []);
    assert_eq!(s.due(500 * MS), [Transport::H1]);
    assert_eq!(s.next_start(), None);
    assert!(!s.all_failed());
}

#[test]
fn a_late_wake_starts_every_attempt_that_is_due() {
    let mut s = Schedule::new(None, &defaults());
    assert_eq!(
        s.due(600 * MS),
        [Transport::H3, Transport::H2, Transport::H1]
    );
}

#[test]
fn an_early_failure_starts_the_next_attempt_at_once() {
    let mut s = Schedule::new(None, &defaults());
    assert_eq!(s.due(Duration::ZERO), [Transport::H3]);
    // Connection refused / ICMP unreachable after 10 ms: HTTP/2 goes now.
    s.failed(Transport::H3, "refused".into());
    assert_eq!(s.next_start(), Some(Duration::ZERO));
    assert_eq!(s.due(10 * MS), [Transport::H2]);
    // HTTP/1.1 keeps its own offset while HTTP/2 runs.
    assert_eq!(s.next_start(), Some(500 * MS));
    assert_eq!(s.due(20 * MS), []);
    s.failed(Transport::H2, "ALPN".into());
    assert_eq!(s.due(30 * MS), [Transport::H1]);
    assert!(!s.all_failed());
    s.failed(Transport::H1, "TLS".into());
    assert!(s.all_failed());
}

#[test]
fn a_failure_of_a_later_attempt_advances_while_an_earlier_one_runs() {
    // HTTP/3 silently dropped (runs on), HTTP/2 offers the wrong ALPN.
    let mut s = Schedule::new(None, &defaults());
    s.due(Duration::ZERO);
    assert_eq!(s.due(250 * MS), [Transport::H2]);
    s.failed(Transport::H2, "ALPN".into());
    assert_eq!(s.due(260 * MS), [Transport::H1], "not at 500 ms");
    assert!(!s.all_failed(), "HTTP/3 still runs");
}

#[test]
fn nothing_starts_at_or_after_the_deadline() {
    let race = RaceOptions {
        h1_delay: Duration::from_secs(6),
        ..defaults()
    };
    let mut s = Schedule::new(None, &race);
    s.due(Duration::ZERO);
    s.due(250 * MS);
    assert_eq!(
        s.next_start(),
        None,
        "HTTP/1.1 would start after the deadline"
    );
    assert_eq!(s.due(Duration::from_secs(7)), []);
}

#[test]
fn the_failure_names_every_transport() {
    let race = RaceOptions {
        h1_delay: Duration::from_secs(6),
        ..defaults()
    };
    let mut s = Schedule::new(None, &race);
    s.due(Duration::ZERO);
    s.due(250 * MS);
    s.failed(Transport::H2, "I/O: Connection refused".into());
    // The failure would start HTTP/1.1 at once; the deadline passes first.
    let ClientError::RaceFailed { h3, h2, h1 } = s.failure() else {
        panic!("not RaceFailed");
    };
    assert_eq!(h3, "no handshake within the 5s deadline");
    assert_eq!(h2, "I/O: Connection refused");
    assert_eq!(h1, "not started within the 5s deadline");
    let shown = s.failure().to_string();
    for part in [
        "HTTP/3: no handshake",
        "HTTP/2: I/O",
        "HTTP/1.1: not started",
    ] {
        assert!(shown.contains(part), "{shown}");
    }
}

#[test]
fn a_remembered_winner_goes_first_and_the_others_follow() {
    let mut s = Schedule::new(Some(Transport::H2), &defaults());
    assert_eq!(s.due(Duration::ZERO), [Transport::H2]);
    assert_eq!(s.due(250 * MS), [Transport::H3]);
    assert_eq!(s.due(500 * MS), [Transport::H1]);
    let mut s = Schedule::new(Some(Transport::H1), &defaults());
    assert_eq!(s.due(Duration::ZERO), [Transport::H1]);
    // The remembered one fails: the race goes on at once.
    s.failed(Transport::H1, "refused".into());
    assert_eq!(s.due(MS), [Transport::H3]);
    // The third slot keeps its offset.
    assert_eq!(s.due(499 * MS), []);
    assert_eq!(s.due(500 * MS), [Transport::H2]);
}

#[test]
fn the_third_head_start_is_never_before_the_second() {
    let race = RaceOptions {
        h2_delay: 300 * MS,
        h1_delay: 100 * MS,
        ..defaults()
    };
    let mut s = Schedule::new(None, &race);
    s.due(Duration::ZERO);
    assert_eq!(s.due(299 * MS), []);
    assert_eq!(s.due(300 * MS), [Transport::H2, Transport::H1]);
}

fn key(host: &str, port: u16) -> RaceKey {
    RaceKey::new(host, port, &ServerVerification::PinnedSha256([7; 32]))
}

#[test]
fn memory_keeps_a_winner_until_it_expires() {
    let mut m = Memory::default();
    let t0 = Instant::now();
    let ttl = Duration::from_secs(300);
    m.remember(key("proxy", 443), Transport::H2, t0, ttl);
    assert_eq!(m.get(&key("proxy", 443), t0), Some(Transport::H2));
    assert_eq!(
        m.get(&key("PROXY", 443), t0 + ttl - MS),
        Some(Transport::H2),
        "host names are case-insensitive"
    );
    assert_eq!(m.get(&key("proxy", 443), t0 + ttl), None, "expired");
    assert!(m.winners.is_empty(), "an expired winner is dropped");
}

#[test]
fn memory_is_per_host_port_and_tls_identity() {
    let mut m = Memory::default();
    let t0 = Instant::now();
    m.remember(
        key("proxy", 443),
        Transport::H1,
        t0,
        Duration::from_secs(60),
    );
    assert_eq!(m.get(&key("proxy", 4433), t0), None);
    assert_eq!(m.get(&key("other", 443), t0), None);
    for v in [
        ServerVerification::PinnedSha256([8; 32]),
        ServerVerification::WebPki,
        ServerVerification::InsecureSkipVerify,
        ServerVerification::CustomCa(vec![]),
    ] {
        assert_eq!(m.get(&RaceKey::new("proxy", 443, &v), t0), None, "{v:?}");
    }
}

#[test]
fn a_failure_of_the_remembered_transport_forgets_it() {
    let mut m = Memory::default();
    let t0 = Instant::now();
    m.remember(
        key("proxy", 443),
        Transport::H2,
        t0,
        Duration::from_secs(60),
    );
    m.forget(&key("proxy", 443), Transport::H3);
    assert_eq!(
        m.get(&key("proxy", 443), t0),
        Some(Transport::H2),
        "another transport's failure says nothing about HTTP/2"
    );
    m.forget(&key("proxy", 443), Transport::H2);
    assert_eq!(m.get(&key("proxy", 443), t0), None);
}

#[test]
fn remembering_for_zero_keeps_nothing_and_prunes_expired_entries() {
    let mut m = Memory::default();
    let t0 = Instant::now();
    m.remember(key("a", 1), Transport::H2, t0, Duration::from_secs(1));
    m.remember(key("b", 1), Transport::H3, t0, Duration::ZERO);
    assert_eq!(m.get(&key("b", 1), t0), None);
    m.remember(key("b", 1), Transport::H1, t0, Duration::from_secs(60));
    m.remember(key("b", 1), Transport::H1, t0, Duration::ZERO);
    assert_eq!(m.get(&key("b", 1), t0), None, "zero forgets");
    m.remember(
        key("c", 1),
        Transport::H3,
        t0 + Duration::from_secs(2),
        Duration::from_secs(1),
    );
    assert_eq!(m.winners.len(), 1, "a's expired entry was pruned");
}
