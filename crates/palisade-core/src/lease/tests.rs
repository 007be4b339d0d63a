//! The quorum lease against the cluster state, and the safety property
//! over random interleavings of the protocol's messages.

use proptest::prelude::*;

use super::*;
use crate::failover::{Evidence, StepRecord, Trigger};
use crate::{ClusterState, Command, Failover, Kind, Step};

const CFG: LeaseConfig = LeaseConfig {
    ttl_ms: 1000,
    drift: 0.1,
};

fn site(s: &str) -> SiteId {
    SiteId(s.into())
}

use crate::{NodeId, SiteId};

fn primary_at_a() -> ClusterState {
    let mut s = ClusterState::default();
    s.apply(
        1,
        &Command::InitDatabase {
            primary: site("a"),
            standby: site("b"),
        },
    );
    s
}

fn begin(s: &mut ClusterState, kind: Kind) -> u64 {
    let epoch = s.epoch + 1;
    s.apply(
        2,
        &Command::BeginFailover(Box::new(Failover {
            kind,
            epoch,
            from: site("a"),
            to: site("b"),
            trigger: Trigger::Automatic,
            reason: "test".into(),
            evidence: Evidence::default(),
            started_at_ms: 0,
            steps: vec![],
            outcome: None,
            finished_at_ms: None,
        })),
    );
    assert_eq!(s.epoch, epoch, "failover begun");
    epoch
}

fn step(s: &mut ClusterState, epoch: u64, step: Step) {
    s.apply(
        3,
        &Command::StepDone {
            epoch,
            record: StepRecord {
                lsn: None,
                checks: vec![],
                step,
                started_at_ms: 1,
                done_at_ms: 2,
                detail: String::new(),
            },
        },
    );
}

#[test]
fn the_primary_is_granted_in_its_epoch_only() {
    let s = primary_at_a();
    let e = s.epoch;
    assert_eq!(may_grant(&s, &site("a"), e), Grant::Granted);
    assert!(
        matches!(may_grant(&s, &site("a"), e + 1), Grant::Unknown { .. }),
        "a witness behind the agent's epoch does not know"
    );
    assert!(matches!(
        may_grant(&s, &site("b"), e),
        Grant::Refused { handover: None, .. }
    ));
    assert!(matches!(
        may_grant(&ClusterState::default(), &site("a"), 0),
        Grant::Unknown { .. }
    ));
}

#[test]
fn a_witness_that_applied_a_failover_refuses_the_old_primary_for_good() {
    let mut s = primary_at_a();
    let old = s.epoch;
    let e = begin(&mut s, Kind::Failover);
    assert!(matches!(
        may_grant(&s, &site("a"), old),
        Grant::Refused { handover: None, .. }
    ));
    assert!(
        matches!(may_grant(&s, &site("b"), e), Grant::Unknown { .. }),
        "the target holds no lease before the old primary's fence is recorded, and is not refused one either (a refusal fences for good)"
    );
    step(&mut s, e, Step::Fenced);
    assert_eq!(
        may_grant(&s, &site("b"), e),
        Grant::Granted,
        "the target takes its lease before it promotes"
    );
    assert!(matches!(
        may_grant(&s, &site("a"), e),
        Grant::Refused { .. }
    ));
}

#[test]
fn a_planned_handover_refusal_names_its_epoch_until_the_fence() {
    let mut s = primary_at_a();
    let old = s.epoch;
    let e = begin(&mut s, Kind::Switchover);
    assert_eq!(
        may_grant(&s, &site("a"), old),
        Grant::Refused {
            reason: format!("site a is not the primary in epoch {e} (desired role Some(Fenced))"),
            handover: Some(e)
        }
    );
    step(&mut s, e, Step::Fenced);
    assert!(matches!(
        may_grant(&s, &site("a"), old),
        Grant::Refused { handover: None, .. }
    ));
}

#[test]
fn expiry_waits_past_the_last_grant_and_the_start() {
    let mut s = primary_at_a();
    let old = s.epoch;
    let mut book = GrantBook::new(0);
    assert_eq!(book.renew(&s, &site("a"), old, 5_000), Grant::Granted);
    assert!(
        matches!(
            book.expiry(&s, &site("a"), old + 1, 5_000, &CFG),
            Expiry::StillGranting { .. }
        ),
        "not applied the failover yet"
    );
    let e = begin(&mut s, Kind::Failover);
    assert!(matches!(
        book.renew(&s, &site("a"), old, 5_100),
        Grant::Refused { .. }
    ));
    assert_eq!(
        book.expiry(&s, &site("a"), e, 5_100, &CFG),
        Expiry::NotYet { remaining_ms: 1000 }
    );
    assert_eq!(book.expiry(&s, &site("a"), e, 6_100, &CFG), Expiry::Expired);

    let restarted = GrantBook::new(6_000);
    assert_eq!(
        restarted.expiry(&s, &site("a"), e, 6_100, &CFG),
        Expiry::NotYet { remaining_ms: 1000 },
        "a restarted witness forgot its grants: it vouches a whole wait after its start"
    );
}

/// `palisadectl member replace 3 --id 4` while witness 3 is alive and cut
/// off with the old primary's agent and witness 1, which both keep their
/// stale state: the joint change committed on witnesses 1 and 2 (a
/// majority of {1, 2, 3}), 2 and 4 applied it. The new majority {2, 4}
/// proves the expiry only once no old-membership lease can be live.
#[test]
fn a_removed_witness_cannot_keep_an_old_primary_leased_past_the_new_majority() {
    let s = primary_at_a();
    let old = s.epoch;
    let before = Voters::single(1, [1, 2, 3]);
    let joint = Voters {
        index: 7,
        sets: vec![[1, 2, 3].into(), [1, 2, 4].into()],
    };
    // 1 acknowledged the joint entry at 10 000; it committed at 10 050 and
    // 2 applied it at 10 100 (every clock agrees here; drift is the
    // proptest's business).
    let (acked, applied) = (10_000, 10_100);
    let mut one = GrantBook::new(0);
    let mut three = GrantBook::new(0);
    let mut two = GrantBook::new(0);
    two.membership_changed(applied);
    // 4 was started long before, waiting to be added.
    let four = GrantBook::new(5_000);
    let mut agent = QuorumLease::new(majority(3));
    agent.learn_voters(&before);
    let mut lease_end = 0;
    for sent in (acked - 1_000..acked + 5_000).step_by(250) {
        // 3 never hears of the change and grants on.
        assert_eq!(three.renew(&s, &site("a"), old, sent), Grant::Granted);
        agent.granted(3, sent, old);
        assert_eq!(one.renew(&s, &site("a"), old, sent), Grant::Granted);
        agent.granted(1, sent, old);
        // 1 reports the membership it had when it granted.
        agent.learn_voters(if sent < acked { &before } else { &joint });
        if let Some(end) = agent.valid_until_ms(old, &CFG) {
            lease_end = lease_end.max(end);
        }
    }
    assert!(
        lease_end > 0 && lease_end <= acked + CFG.ttl_ms,
        "the old-membership lease ends a lease after 1 learned the change: {lease_end}"
    );

    let mut after = s.clone();
    let e = begin(&mut after, Kind::Failover);
    let mut proof = ExpiryProof::new(majority(3));
    let mut now = acked;
    while !proof.is_proven() {
        now += 10;
        proof.record(2, two.expiry(&after, &site("a"), e, now, &CFG));
        proof.record(4, four.expiry(&after, &site("a"), e, now, &CFG));
    }
    assert!(
        now >= lease_end,
        "{{2, 4}} proved the expiry at {now}, while the old primary was leased until {lease_end}"
    );

    // The test can fail: without the wait after the change, 2 would have
    // vouched at once...
    assert_eq!(
        GrantBook::new(0).expiry(&after, &site("a"), e, acked + 10, &CFG),
        Expiry::Expired
    );
    assert!(acked + 10 < lease_end);
    // ...and without the report, 1 and 3 would keep the lease.
    let mut blind = QuorumLease::new(majority(3));
    blind.granted(1, acked + 4_000, old);
    blind.granted(3, acked + 4_000, old);
    assert!(blind.is_valid(now, old, &CFG));
}

#[test]
fn a_proof_needs_a_majority_and_keeps_what_it_was_told() {
    let mut p = ExpiryProof::new(2);
    p.record(1, Expiry::Expired);
    assert!(!p.is_proven());
    p.record(2, Expiry::NotYet { remaining_ms: 5 });
    assert!(!p.is_proven());
    p.record(1, Expiry::NotYet { remaining_ms: 900 });
    p.record(2, Expiry::Expired);
    assert!(p.is_proven(), "witness 1's expiry stays counted");
    assert_eq!(p.vouching(), vec![1, 2]);
    assert!(p.describe().contains("witness 2: expired"));
}

/// One process's clock: `offset + real × rate / 1000` (ms).
#[derive(Clone, Copy, Debug)]
struct Clock {
    offset: u64,
    rate_permille: u64,
}

impl Clock {
    fn at(self, real: u64) -> u64 {
        self.offset + real * self.rate_permille / 1000
    }
}

/// One renewal the agent sends to one witness: when (real ms), and for each
/// delivery (none: lost; two: duplicated) the delay there and back (`None`:
/// the answer is lost).
#[derive(Clone, Debug)]
struct Renewal {
    sent: u64,
    to: usize,
    deliveries: Vec<(u64, Option<u64>)>,
}

#[derive(Clone, Debug)]
enum Event {
    /// A renewal reaches witness `to`; its answer reaches the agent
    /// `back` ms later, or never.
    Arrives {
        to: usize,
        sent_agent_clock: u64,
        back: Option<u64>,
    },
    /// Witness `w` applies the failover record.
    AppliesFailover { w: usize },
    /// Witness `w` restarts: its book is new (the applied state is durable).
    Restarts { w: usize },
    /// The leader's question reaches witness `w`.
    Asked { w: usize },
}

/// The agent renews every `RENEW_MS` with every witness, as the real one
/// does; each renewal is lost, delivered, or duplicated, with random delays.
const RENEW_MS: u64 = 250;

fn renewals() -> impl Strategy<Value = Vec<Renewal>> {
    prop::collection::vec(
        prop::collection::vec((0u64..800, prop::option::weighted(0.8, 0u64..800)), 0..=2),
        3 * 24,
    )
    .prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, deliveries)| Renewal {
                sent: (i / 3) as u64 * RENEW_MS,
                to: i % 3,
                deliveries,
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    /// Whatever the loss, delay, reordering and duplication of renewals and
    /// answers, witness restarts and clock rates within `drift`: once the
    /// leader holds a majority of "expired" answers, the agent's lease is
    /// over, and no answer that arrives later revives it.
    #[test]
    fn no_instant_with_a_live_old_lease_after_a_proven_expiry(
        rates in prop::collection::vec(1000u64..=1100, 4),
        offsets in prop::collection::vec(0u64..100_000, 4),
        renewals in renewals(),
        applies in prop::collection::vec(2_000u64..5_000, 3),
        restarts in prop::collection::vec(prop::option::weighted(0.3, 2_000u64..7_000), 3),
        first_question in 2_000u64..5_000,
        delays in prop::collection::vec(0u64..100, 3),
    ) {
        let agent = Clock { offset: offsets[3], rate_permille: rates[3] };
        let clocks: Vec<Clock> = (0..3)
            .map(|i| Clock { offset: offsets[i], rate_permille: rates[i] })
            .collect();
        let before = primary_at_a();
        let old_epoch = before.epoch;
        let mut after = before.clone();
        let failover_epoch = begin(&mut after, Kind::Failover);

        let mut events: Vec<(u64, Event)> = Vec::new();
        for r in &renewals {
            for (there, back) in &r.deliveries {
                events.push((r.sent + there, Event::Arrives {
                    to: r.to,
                    sent_agent_clock: agent.at(r.sent),
                    back: *back,
                }));
            }
        }
        for (w, at) in applies.iter().enumerate() {
            events.push((*at, Event::AppliesFailover { w }));
        }
        for (w, at) in restarts.iter().enumerate() {
            if let Some(at) = at {
                events.push((*at, Event::Restarts { w }));
            }
        }
        // The leader asks every 20 ms, as its fence step does.
        for round in 0..400u64 {
            for (w, d) in delays.iter().enumerate() {
                events.push((first_question + round * 20 + d, Event::Asked { w }));
            }
        }
        // Stable: at one instant, events keep the order they were made in.
        events.sort_by_key(|(t, _)| *t);

        let mut books: Vec<GrantBook> = clocks.iter().map(|c| GrantBook::new(c.at(0))).collect();
        let mut applied = [false; 3];
        let mut proof = ExpiryProof::new(majority(3));
        let mut proven_at: Option<u64> = None;
        // (real arrival at the agent, witness, agent-clock send time)
        let mut answers: Vec<(u64, usize, u64)> = Vec::new();
        for (t, ev) in &events {
            match ev {
                Event::Arrives { to, sent_agent_clock, back } => {
                    let state = if applied[*to] { &after } else { &before };
                    let g = books[*to].renew(state, &site("a"), old_epoch, clocks[*to].at(*t));
                    if g == Grant::Granted {
                        if let Some(back) = back {
                            answers.push((t + back, *to, *sent_agent_clock));
                        }
                    }
                }
                Event::AppliesFailover { w } => applied[*w] = true,
                Event::Restarts { w } => books[*w] = GrantBook::new(clocks[*w].at(*t)),
                Event::Asked { w } => {
                    let state = if applied[*w] { &after } else { &before };
                    proof.record(
                        *w as NodeId,
                        books[*w].expiry(state, &site("a"), failover_epoch, clocks[*w].at(*t), &CFG),
                    );
                    if proven_at.is_none() && proof.is_proven() {
                        proven_at = Some(*t);
                    }
                }
            }
        }
        let Some(proven_at) = proven_at else { return Ok(()) };
        // The agent's lease only grows at an answer's arrival: check the
        // proof's instant and every arrival after it.
        answers.sort_by_key(|(t, _, _)| *t);
        let mut checks = vec![proven_at];
        checks.extend(answers.iter().map(|(t, _, _)| *t).filter(|t| *t >= proven_at));
        for check in checks {
            let mut lease = QuorumLease::new(majority(3));
            for (arrived, w, sent) in answers.iter().filter(|(a, _, _)| *a <= check) {
                let _ = arrived;
                lease.granted(*w as NodeId, *sent, old_epoch);
            }
            // Integer clocks round down: allow each clock's 1 ms.
            let now = agent.at(check) + 2;
            prop_assert!(
                !lease.is_valid(now, old_epoch, &CFG),
                "expiry proven at real {proven_at} ({}), yet the agent's lease is valid at real {check}: {lease:?}",
                proof.describe()
            );
        }
    }
}
