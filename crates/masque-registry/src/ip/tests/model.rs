//! The registry against a `BTreeMap` model: random register / release / release_session /
//! session kills / lookups over IPv4 and IPv6, with random and often overlapping prefixes.
//! After every step, the step's result, `all()`, and lookups at every range's first and last
//! address and just outside them must agree with the model.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use ractor::ActorRef;

use super::{SessionMsg, eventually, joined, session, sink};
use crate::ip::{
    IpEntryInfo, IpRegisterOutcome, IpRegistryError, IpRegistryHandle, IpReleaseOutcome,
    IpReleaseSessionOutcome, IpVersion,
};

const SESSIONS: usize = 3;

#[derive(Debug, Clone)]
enum Step {
    Register {
        session: usize,
        addr: IpAddr,
        len: u8,
        context_id: u64,
    },
    Release {
        addr: IpAddr,
        len: u8,
    },
    ReleaseSession(usize),
    Kill(usize),
    Lookup(IpAddr),
}

/// Low bits of an address: anywhere in 0..1024, or on either side of a 16-aligned boundary
/// (where ranges start and end, so neighbours and one-address overlaps are common).
fn low_bits() -> impl Strategy<Value = u32> {
    prop_oneof![
        2 => 0u32..1024,
        1 => (0u32..64).prop_map(|k| k * 16),
        1 => (1u32..65).prop_map(|k| k * 16 - 1),
    ]
}

/// Addresses from a small corner of each family (10.0.0.0/22, 2001:db8::/118), so random
/// prefixes overlap often.
fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        low_bits().prop_map(|x| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | x))),
        low_bits()
            .prop_map(|x| IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | u128::from(x)))),
    ]
}

/// Mostly long prefixes (small ranges), sometimes any length, rarely an invalid one.
fn prefix_for(addr: IpAddr) -> BoxedStrategy<u8> {
    let width: u8 = if addr.is_ipv4() { 32 } else { 128 };
    prop_oneof![
        6 => (width - 10)..=width,
        2 => 0..=width,
        1 => Just(0u8),
        1 => (width + 1)..=width.saturating_add(8),
    ]
    .boxed()
}

fn prefixed() -> impl Strategy<Value = (IpAddr, u8)> {
    addr().prop_flat_map(|a| (Just(a), prefix_for(a)))
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0..SESSIONS, prefixed(), 0u64..2).prop_map(|(session, (addr, len), context_id)| {
            Step::Register { session, addr, len, context_id }
        }),
        3 => prefixed().prop_map(|(addr, len)| Step::Release { addr, len }),
        1 => (0..SESSIONS).prop_map(Step::ReleaseSession),
        1 => (0..SESSIONS).prop_map(Step::Kill),
        3 => addr().prop_map(Step::Lookup),
    ]
}

/// A model range: inclusive bounds computed here, independently of `IpRange`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    version: IpVersion,
    start: u128,
    end: u128,
    len: u8,
}

fn bits(addr: IpAddr) -> (IpVersion, u128) {
    match addr {
        IpAddr::V4(a) => (IpVersion::V4, u128::from(u32::from(a))),
        IpAddr::V6(a) => (IpVersion::V6, u128::from(a)),
    }
}

fn model_range(addr: IpAddr, len: u8) -> Option<Range> {
    if len > if addr.is_ipv4() { 32 } else { 128 } {
        return None;
    }
    match addr {
        IpAddr::V4(a) => {
            let a = u32::from(a);
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            Some(Range {
                version: IpVersion::V4,
                start: u128::from(a & mask),
                end: u128::from(a | !mask),
                len,
            })
        }
        IpAddr::V6(a) => {
            let a = u128::from(a);
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            Some(Range {
                version: IpVersion::V6,
                start: a & mask,
                end: a | !mask,
                len,
            })
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owned {
    range: Range,
    session: usize,
    context_id: u64,
}

#[derive(Default)]
struct Model {
    ranges: BTreeMap<(IpVersion, u128), Owned>,
}

impl Model {
    fn lookup(&self, addr: IpAddr) -> Option<Owned> {
        let (version, b) = bits(addr);
        self.ranges
            .values()
            .find(|o| o.range.version == version && o.range.start <= b && b <= o.range.end)
            .copied()
    }

    fn overlapping(&self, r: &Range) -> Vec<Owned> {
        self.ranges
            .values()
            .filter(|o| {
                o.range.version == r.version && o.range.start <= r.end && r.start <= o.range.end
            })
            .copied()
            .collect()
    }
}

struct Harness {
    reg: IpRegistryHandle,
    sessions: Vec<(ActorRef<SessionMsg>, ractor::concurrency::JoinHandle<()>)>,
    model: Model,
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

impl Harness {
    fn session_index(&self, id: ractor::ActorId) -> Option<usize> {
        self.sessions.iter().position(|(s, _)| s.get_id() == id)
    }

    /// Checks an info against a model range, mapping the session id back to its slot.
    fn same(&self, info: &IpEntryInfo, owned: &Owned) -> bool {
        let (version, start) = bits(info.range.start());
        let (_, end) = bits(info.range.end());
        version == owned.range.version
            && start == owned.range.start
            && end == owned.range.end
            && info.range.prefix_len() == owned.range.len
            && self.session_index(info.session) == Some(owned.session)
            && info.context_id == owned.context_id
    }

    async fn apply(&mut self, step: Step) -> Result<(), TestCaseError> {
        match step {
            Step::Register {
                session,
                addr,
                len,
                context_id,
            } => {
                let cell = self.sessions[session].0.get_cell();
                let got = self
                    .reg
                    .register(addr, len, cell, context_id, sink(1).0)
                    .await;
                let Some(range) = model_range(addr, len) else {
                    prop_assert_eq!(
                        got,
                        Err(IpRegistryError::InvalidPrefix {
                            addr,
                            prefix_len: len
                        })
                    );
                    return Ok(());
                };
                let overlaps = self.model.overlapping(&range);
                let wanted = Owned {
                    range,
                    session,
                    context_id,
                };
                match got {
                    Ok(IpRegisterOutcome::Registered(info)) => {
                        prop_assert!(overlaps.is_empty(), "registered over {overlaps:?}");
                        prop_assert!(self.same(&info, &wanted), "{info:?} vs {wanted:?}");
                        self.model
                            .ranges
                            .insert((range.version, range.start), wanted);
                    }
                    Ok(IpRegisterOutcome::AlreadyRegistered(info)) => {
                        prop_assert_eq!(&overlaps, &vec![wanted], "not an exact repeat");
                        prop_assert!(self.same(&info, &wanted));
                    }
                    Err(IpRegistryError::Conflict {
                        requested,
                        existing,
                    }) => {
                        prop_assert!(!overlaps.is_empty(), "conflict with nothing");
                        prop_assert_ne!(&overlaps, &vec![wanted], "an exact repeat refused");
                        let (_, rs) = bits(requested.start());
                        prop_assert_eq!(rs, range.start);
                        prop_assert_eq!(requested.prefix_len(), len);
                        prop_assert!(
                            overlaps.iter().any(|o| self.same(&existing, o)),
                            "{existing:?} is not among {overlaps:?}"
                        );
                    }
                    other => prop_assert!(false, "unexpected {other:?}"),
                }
            }
            Step::Release { addr, len } => {
                let got = self.reg.release(addr, len).await;
                let Some(range) = model_range(addr, len) else {
                    prop_assert_eq!(
                        got,
                        Err(IpRegistryError::InvalidPrefix {
                            addr,
                            prefix_len: len
                        })
                    );
                    return Ok(());
                };
                let key = (range.version, range.start);
                match (got, self.model.ranges.get(&key).copied()) {
                    (Ok(IpReleaseOutcome::Released(info)), Some(owned))
                        if owned.range.len == len =>
                    {
                        prop_assert!(self.same(&info, &owned));
                        self.model.ranges.remove(&key);
                    }
                    (Ok(IpReleaseOutcome::NotFound), None) => {}
                    (Ok(IpReleaseOutcome::NotFound), Some(owned)) => {
                        prop_assert_ne!(owned.range.len, len, "a matching range not released");
                    }
                    (got, model) => prop_assert!(false, "release: {got:?} vs model {model:?}"),
                }
            }
            Step::ReleaseSession(session) => {
                let id = self.sessions[session].0.get_id();
                let IpReleaseSessionOutcome::Released(got) = self.reg.release_session(id).await
                else {
                    return Err(fail("writer not running"));
                };
                let wanted: Vec<Owned> = self
                    .model
                    .ranges
                    .values()
                    .filter(|o| o.session == session)
                    .copied()
                    .collect();
                prop_assert_eq!(got.len(), wanted.len());
                for (info, owned) in got.iter().zip(&wanted) {
                    prop_assert!(self.same(info, owned), "{info:?} vs {owned:?}");
                }
                self.model.ranges.retain(|_, o| o.session != session);
            }
            Step::Kill(session) => {
                let (doomed, join) =
                    std::mem::replace(&mut self.sessions[session], session_or_fail().await?);
                let id = doomed.get_id();
                doomed.kill();
                joined(join).await.map_err(fail)?;
                let reg = &self.reg;
                let gone = eventually(|| reg.all().iter().all(|i| i.session != id)).await;
                prop_assert!(gone, "killed session's ranges still registered");
                self.model.ranges.retain(|_, o| o.session != session);
            }
            Step::Lookup(addr) => self.check_lookup(addr)?,
        }
        self.check_all()
    }

    fn check_lookup(&self, addr: IpAddr) -> Result<(), TestCaseError> {
        let got = self.reg.lookup(addr);
        match (got, self.model.lookup(addr)) {
            (None, None) => Ok(()),
            (Some(entry), Some(owned)) => {
                prop_assert!(self.same(&entry.info(), &owned), "lookup {addr}");
                prop_assert!(entry.range().contains(addr));
                Ok(())
            }
            (got, model) => Err(fail(format!("lookup {addr}: {got:?} vs model {model:?}"))),
        }
    }

    /// `all()` equals the model, and lookups agree at and just outside every range's ends.
    fn check_all(&self) -> Result<(), TestCaseError> {
        let all = self.reg.all();
        prop_assert_eq!(all.len(), self.model.ranges.len());
        for (info, owned) in all.iter().zip(self.model.ranges.values()) {
            prop_assert!(self.same(info, owned), "all(): {info:?} vs {owned:?}");
        }
        for owned in self.model.ranges.values() {
            let r = owned.range;
            let probes = [
                Some(r.start),
                Some(r.end),
                r.start.checked_sub(1),
                r.end.checked_add(1),
            ];
            for b in probes.into_iter().flatten() {
                let addr = match r.version {
                    IpVersion::V4 => match u32::try_from(b) {
                        Ok(v) => IpAddr::V4(Ipv4Addr::from(v)),
                        Err(_) => continue,
                    },
                    IpVersion::V6 => IpAddr::V6(Ipv6Addr::from(b)),
                };
                self.check_lookup(addr)?;
            }
        }
        Ok(())
    }
}

async fn session_or_fail()
-> Result<(ActorRef<SessionMsg>, ractor::concurrency::JoinHandle<()>), TestCaseError> {
    session().await.map_err(fail)
}

async fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let reg = IpRegistryHandle::new();
    let (writer, writer_join) = reg.spawn(None).await.map_err(fail)?;
    let mut sessions = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        sessions.push(session_or_fail().await?);
    }
    let mut harness = Harness {
        reg,
        sessions,
        model: Model::default(),
    };
    let mut result = Ok(());
    for step in steps {
        result = harness.apply(step).await;
        if result.is_err() {
            break;
        }
    }
    for (s, _) in &harness.sessions {
        s.kill();
    }
    writer.stop(None);
    joined(writer_join).await.map_err(fail)?;
    result
}

#[test]
fn registry_agrees_with_a_btreemap_model() -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let config = Config {
        cases: 256,
        ..Config::default()
    };
    proptest!(config, |(steps in prop::collection::vec(step(), 1..80))| {
        rt.block_on(run(steps))?;
    });
    Ok(())
}
