use proptest::prelude::*;

use super::*;
use crate::command::Command;
use crate::failover::{Failover, Outcome, Step, StepRecord};
use crate::observe::{ErrorClass, PgObservation, WalReceiverInfo};

const TICK: u64 = 100;

fn site(s: &str) -> SiteId {
    SiteId(s.into())
}

fn cfg() -> DetectorConfig {
    DetectorConfig {
        down_after_ms: 1000,
        report_ttl_ms: 1500,
        on_primary_crash: CrashPolicy::Failover,
        restart_budget_ms: 5000,
        cooldown_ms: 60_000,
        cooldown_down_after_ms: 10_000,
        max_lag_bytes: 1 << 20,
        max_lag_seconds: 30.0,
        replication: ReplicationMode::Async,
    }
}

fn witnesses() -> BTreeMap<NodeId, SiteId> {
    [(1, site("a")), (2, site("b")), (3, site("c"))]
        .into_iter()
        .collect()
}

fn primary_up(lsn: u64) -> PgObservation {
    PgObservation {
        in_recovery: Some(false),
        current_lsn: Some(lsn),
        ..PgObservation::down(ErrorClass::Other, "", 1)
    }
    .with_up()
}

fn standby(streaming: bool, receive_lsn: u64) -> PgObservation {
    PgObservation {
        in_recovery: Some(true),
        receive_lsn: Some(receive_lsn),
        replay_lsn: Some(receive_lsn),
        replay_lag_seconds: Some(0.0),
        wal_receiver: streaming.then(|| WalReceiverInfo {
            status: "streaming".into(),
            sender_host: None,
            sender_port: None,
            flushed_lsn: Some(receive_lsn),
            last_msg_age_ms: Some(10),
        }),
        ..PgObservation::down(ErrorClass::Other, "", 1)
    }
    .with_up()
}

trait WithUp {
    fn with_up(self) -> Self;
}
impl WithUp for PgObservation {
    fn with_up(mut self) -> Self {
        self.reachability = Reachability::Up;
        self
    }
}

fn refused() -> PgObservation {
    PgObservation::down(ErrorClass::Refused, "connection refused", 1)
}

/// A cluster with roles recorded (a primary, b standby).
fn state() -> ClusterState {
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

/// Reports at `now` where each witness in `down_for` sees the primary down.
fn reports(
    now: u64,
    primary: &SiteId,
    standby_site: &SiteId,
    down_for: &[NodeId],
    standby_streams: bool,
) -> BTreeMap<NodeId, WitnessReport> {
    (1..=3)
        .map(|id| {
            let mut dbs = BTreeMap::new();
            dbs.insert(
                primary.clone(),
                if down_for.contains(&id) {
                    refused()
                } else {
                    primary_up(1000)
                },
            );
            dbs.insert(standby_site.clone(), standby(standby_streams, 1000));
            (
                id,
                WitnessReport {
                    received_at_ms: now,
                    dbs,
                    last_writable: BTreeMap::new(),
                    unreachable_for: BTreeMap::new(),
                },
            )
        })
        .collect()
}

fn at(mono_ms: u64) -> Now {
    Now {
        mono_ms,
        wall_ms: 1_700_000_000_000 + mono_ms as i64,
    }
}

/// Applies a whole automatic (or operator) failover at once, as the step
/// machine would, and returns the new state.
fn fail_over(s: &mut ClusterState, from: &SiteId, to: &SiteId, trigger: Trigger, wall_ms: i64) {
    let epoch = s.epoch + 1;
    let f = Failover {
        kind: Default::default(),
        epoch,
        from: from.clone(),
        to: to.clone(),
        trigger,
        reason: "test".into(),
        evidence: Evidence::default(),
        started_at_ms: wall_ms,
        steps: vec![],
        outcome: None,
        finished_at_ms: None,
    };
    assert_eq!(
        s.apply(10, &Command::BeginFailover(Box::new(f))),
        crate::command::CommandResult::Applied
    );
    for step in Step::ALL {
        let record = StepRecord {
            lsn: None,
            checks: vec![],
            step,
            started_at_ms: wall_ms,
            done_at_ms: wall_ms,
            detail: String::new(),
        };
        s.apply(11, &Command::StepDone { epoch, record });
    }
    s.apply(
        12,
        &Command::FinishFailover {
            epoch,
            outcome: Outcome::Completed,
            at_ms: wall_ms,
        },
    );
}

fn rejoin(s: &mut ClusterState) {
    let site = s.db.as_ref().expect("roles").standby.clone();
    let epoch = s.epoch;
    s.apply(
        13,
        &Command::StandbyRejoined {
            site,
            epoch,
            at_ms: 0,
        },
    );
}

#[test]
fn one_witness_cut_off_is_not_an_outage() {
    let mut d = Detector::default();
    let s = state();
    for t in (0..20_000).step_by(TICK as usize) {
        let a = d.assess(
            at(t),
            &s,
            &witnesses(),
            &reports(t, &site("a"), &site("b"), &[2], false),
            &cfg(),
        );
        assert!(matches!(a, Assessment::Healthy { .. }), "t={t}: {a:?}");
    }
}

#[test]
fn a_majority_down_for_down_after_fails_over_once_the_time_is_up() {
    let mut d = Detector::default();
    let s = state();
    let mut first = None;
    for t in (0..5000).step_by(TICK as usize) {
        match d.assess(
            at(t),
            &s,
            &witnesses(),
            &reports(t, &site("a"), &site("b"), &[2, 3], false),
            &cfg(),
        ) {
            Assessment::FailOver {
                from, to, evidence, ..
            } => {
                assert_eq!((from, to), (site("a"), site("b")));
                assert_eq!(
                    evidence
                        .votes
                        .iter()
                        .filter(|v| v.saw.starts_with("down"))
                        .count(),
                    2
                );
                assert_eq!(evidence.known_lag_bytes, Some(0));
                first.get_or_insert(t);
            }
            Assessment::Suspect { .. } => assert!(first.is_none()),
            other => panic!("t={t}: {other:?}"),
        }
    }
    assert_eq!(
        first,
        Some(1000),
        "exactly down_after after the quorum first saw it down"
    );
}

#[test]
fn a_streaming_standby_vetoes_what_the_primary_site_does_not_see() {
    let mut d = Detector::default();
    let s = state();
    for t in (0..5000).step_by(TICK as usize) {
        let a = d.assess(
            at(t),
            &s,
            &witnesses(),
            &reports(t, &site("a"), &site("b"), &[2, 3], true),
            &cfg(),
        );
        assert!(matches!(a, Assessment::Healthy { .. }), "{a:?}");
    }
}

/// A hung postmaster: no new connection, for the primary's own site too,
/// while its WAL sender still streams to the standby. The standby
/// corroborates; it does not veto the primary's own site.
#[test]
fn a_streaming_standby_never_vetoes_the_primary_sites_own_evidence() {
    let mut d = Detector::default();
    let s = state();
    let mut failed_over_at = None;
    for t in (0..5000).step_by(TICK as usize) {
        let a = d.assess(
            at(t),
            &s,
            &witnesses(),
            &reports(t, &site("a"), &site("b"), &[1, 2, 3], true),
            &cfg(),
        );
        if matches!(a, Assessment::FailOver { .. }) {
            failed_over_at.get_or_insert(t);
        }
    }
    let t = failed_over_at.expect("failed over");
    assert!(
        (cfg().down_after_ms..cfg().down_after_ms + 2 * TICK).contains(&t),
        "after down_after: {t}"
    );
}

#[test]
fn stale_reports_do_not_vote() {
    let mut d = Detector::default();
    let s = state();
    // Witnesses 2 and 3 said "down" long ago and then went silent.
    let mut r = reports(0, &site("a"), &site("b"), &[2, 3], false);
    r.remove(&1);
    let a = d.assess(at(10_000), &s, &witnesses(), &r, &cfg());
    assert!(matches!(a, Assessment::Healthy { .. }), "{a:?}");
}

#[test]
fn restart_policy_waits_for_the_budget_while_the_agent_is_alive() {
    let mut c = cfg();
    c.on_primary_crash = CrashPolicy::Restart;
    let mut d = Detector::default();
    let s = state();
    let mut first = None;
    for t in (0..8000).step_by(TICK as usize) {
        if let Assessment::FailOver { evidence, .. } = d.assess(
            at(t),
            &s,
            &witnesses(),
            &reports(t, &site("a"), &site("b"), &[1, 2, 3], false),
            &c,
        ) {
            assert!(evidence.primary_agent_alive);
            first.get_or_insert(t);
        }
    }
    assert_eq!(first, Some(5000));
    // Site loss: the agent at site a is silent; down_after applies.
    let mut d = Detector::default();
    let mut first = None;
    for t in (0..8000).step_by(TICK as usize) {
        let mut r = reports(t, &site("a"), &site("b"), &[2, 3], false);
        r.remove(&1);
        if let Assessment::FailOver { evidence, .. } = d.assess(at(t), &s, &witnesses(), &r, &c) {
            assert!(!evidence.primary_agent_alive);
            first.get_or_insert(t);
        }
    }
    assert_eq!(first, Some(1000));
}

#[test]
fn lag_over_max_blocks_with_a_reason() {
    let mut d = Detector::default();
    let s = state();
    let mut last = None;
    for t in (0..3000).step_by(TICK as usize) {
        let mut r = reports(t, &site("a"), &site("b"), &[2, 3], false);
        if t >= 500 {
            for rep in r.values_mut() {
                rep.dbs.insert(site("a"), refused());
            }
        } else {
            for rep in r.values_mut() {
                rep.dbs.insert(site("a"), primary_up(10 << 20));
            }
        }
        last = Some(d.assess(at(t), &s, &witnesses(), &r, &cfg()));
    }
    match last {
        Some(Assessment::Blocked { reason, evidence }) => {
            assert!(reason.contains("max_lag_bytes"), "{reason}");
            assert_eq!(evidence.known_lag_bytes, Some((10 << 20) - 1000));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn cooldown_never_blocks_failing_over_away_from_a_primary_that_is_down_for_good_after_a_failback() {
    let mut s = state();
    fail_over(
        &mut s,
        &site("a"),
        &site("b"),
        Trigger::Automatic,
        at(0).wall_ms,
    );
    rejoin(&mut s);
    // The operator fails back to a: no cooldown starts from that.
    fail_over(
        &mut s,
        &site("b"),
        &site("a"),
        Trigger::Operator { who: "ops".into() },
        at(1000).wall_ms,
    );
    rejoin(&mut s);
    let mut d = Detector::default();
    let mut first = None;
    for t in (2000..6000).step_by(TICK as usize) {
        if let Assessment::FailOver { .. } = d.assess(
            at(t),
            &s,
            &witnesses(),
            &reports(t, &site("a"), &site("b"), &[1, 2, 3], false),
            &cfg(),
        ) {
            first.get_or_insert(t);
        }
    }
    assert_eq!(first, Some(3000), "down_after, not the cooldown");
}

#[test]
fn within_cooldown_a_dead_primary_is_still_failed_over_after_cooldown_down_after() {
    let mut s = state();
    fail_over(
        &mut s,
        &site("a"),
        &site("b"),
        Trigger::Automatic,
        at(0).wall_ms,
    );
    rejoin(&mut s);
    let mut d = Detector::default();
    let mut first = None;
    for t in (1000..20_000).step_by(TICK as usize) {
        if let Assessment::FailOver { from, .. } = d.assess(
            at(t),
            &s,
            &witnesses(),
            &reports(t, &site("b"), &site("a"), &[1, 2, 3], false),
            &cfg(),
        ) {
            assert_eq!(from, site("b"));
            first.get_or_insert(t);
        }
    }
    assert_eq!(first, Some(11_000));
}

/// The leader's loop in miniature: tick the detector, apply a whole
/// failover when it says so, rejoin the old primary `rejoin_ms` later.
/// `down(t)` says whether a majority sees the current primary down at `t`.
fn simulate(
    duration_ms: u64,
    rejoin_ms: u64,
    c: &DetectorConfig,
    down: impl Fn(u64) -> bool,
) -> Vec<u64> {
    let mut s = state();
    let mut d = Detector::default();
    let mut failovers = Vec::new();
    let mut rejoin_at = None;
    for t in (0..duration_ms).step_by(TICK as usize) {
        if rejoin_at.is_some_and(|r| t >= r) {
            rejoin(&mut s);
            rejoin_at = None;
        }
        let db = s.db.clone().expect("roles");
        let who: &[NodeId] = if down(t) { &[1, 2, 3] } else { &[] };
        if let Assessment::FailOver { from, to, .. } = d.assess(
            at(t),
            &s,
            &witnesses(),
            &reports(t, &db.primary, &db.standby, who, false),
            c,
        ) {
            fail_over(&mut s, &from, &to, Trigger::Automatic, at(t).wall_ms);
            failovers.push(t);
            rejoin_at = Some(t + rejoin_ms);
        }
    }
    failovers
}

proptest! {
    /// Flapping health (down spells shorter than down_after) never fails over.
    #[test]
    fn flapping_never_fails_over(spells in proptest::collection::vec((1u64..9, 1u64..30), 1..40)) {
        // Each spell: down for k×100 ms (< down_after), then up for m×100 ms.
        let mut schedule = Vec::new();
        let mut t = 0;
        for (down, up) in &spells {
            schedule.push((t, t + down * TICK));
            t += (down + up) * TICK;
        }
        let f = simulate(t, 2000, &cfg(), |now| schedule.iter().any(|(a, b)| now >= *a && now < *b));
        prop_assert!(f.is_empty(), "failovers at {f:?}");
    }

    /// Random up/down spells: every failover follows an unbroken down spell
    /// long enough for the rule in force, and two failovers are never
    /// closer than cooldown_down_after (no ping-pong inside the cooldown).
    #[test]
    fn failovers_only_after_long_enough_outages(spells in proptest::collection::vec((1u64..150, 1u64..50), 1..30)) {
        let mut schedule = Vec::new();
        let mut t = 0;
        for (down, up) in &spells {
            schedule.push((t, t + down * TICK));
            t += (down + up) * TICK;
        }
        let c = cfg();
        let f = simulate(t, 2000, &c, |now| schedule.iter().any(|(a, b)| now >= *a && now < *b));
        for w in f.windows(2) {
            prop_assert!(w[1] - w[0] >= c.cooldown_down_after_ms, "ping-pong: {f:?}");
        }
        for at in &f {
            let spell = schedule.iter().find(|(a, b)| at >= a && at < b);
            prop_assert!(spell.is_some_and(|(a, _)| at - a >= c.down_after_ms), "failover at {at} without a long enough outage");
        }
    }
}

#[test]
fn a_new_leader_learns_the_primary_position_from_the_witnesses_memory() {
    // This detector never saw the primary up (a leader that took office
    // after it died); the witnesses remember where it was.
    let mut d = Detector::default();
    let s = state();
    let mut last = None;
    for t in (0..3000).step_by(TICK as usize) {
        let mut r = reports(t, &site("a"), &site("b"), &[1, 2, 3], false);
        for rep in r.values_mut() {
            rep.last_writable.insert(
                site("a"),
                LastWritable {
                    lsn: 10 << 20,
                    age_ms: 5000,
                },
            );
        }
        last = Some(d.assess(at(t), &s, &witnesses(), &r, &cfg()));
    }
    match last {
        Some(Assessment::Blocked { reason, evidence }) => {
            assert!(reason.contains("max_lag_bytes"), "{reason}");
            assert_eq!(evidence.known_lag_bytes, Some((10 << 20) - 1000));
        }
        other => panic!("{other:?}"),
    }
}

/// Reports at `now` where witnesses 2 and 3 find the primary unreachable
/// and say for how long (`for_ms` per witness).
fn reports_with_outage(now: u64, for_ms: &[(NodeId, u64)]) -> BTreeMap<NodeId, WitnessReport> {
    let down: Vec<NodeId> = for_ms.iter().map(|(id, _)| *id).collect();
    let mut r = reports(now, &site("a"), &site("b"), &down, false);
    for (id, ms) in for_ms {
        r.get_mut(id)
            .expect("reported")
            .unreachable_for
            .insert(site("a"), *ms);
    }
    r
}

#[test]
fn a_new_leader_counts_the_outage_from_when_the_witnesses_saw_it_begin() {
    // The leader was lost with the primary's site: this one takes office
    // with an empty memory, but a quorum has found the primary unreachable
    // for longer than down_after already.
    let mut d = Detector::default();
    let now = 50_000;
    let a = d.assess(
        at(now),
        &state(),
        &witnesses(),
        &reports_with_outage(now, &[(2, 1400), (3, 1100)]),
        &cfg(),
    );
    match a {
        Assessment::FailOver { evidence, .. } => assert_eq!(evidence.down_for_ms, 1100),
        other => panic!("expected a failover, got {other:?}"),
    }
}

#[test]
fn the_reported_outage_counts_from_when_the_quorum_was_complete() {
    // Witness 2 for 5 s, witness 3 for only 600 ms: a quorum (2 of 3) has
    // seen it for 600 ms, short of down_after.
    let mut d = Detector::default();
    let now = 50_000;
    let a = d.assess(
        at(now),
        &state(),
        &witnesses(),
        &reports_with_outage(now, &[(2, 5000), (3, 600)]),
        &cfg(),
    );
    assert!(
        matches!(
            a,
            Assessment::Suspect {
                down_for_ms: 600,
                ..
            }
        ),
        "{a:?}"
    );
}

#[test]
fn one_witness_reporting_a_long_outage_is_not_a_quorum() {
    let mut d = Detector::default();
    let now = 50_000;
    // Witness 3 reports the outage without a duration (an older witness):
    // only witness 2's duration is known, so the leader counts from now.
    let mut r = reports_with_outage(now, &[(2, 9000)]);
    r.get_mut(&3)
        .expect("reported")
        .dbs
        .insert(site("a"), refused());
    let a = d.assess(at(now), &state(), &witnesses(), &r, &cfg());
    assert!(
        matches!(a, Assessment::Suspect { down_for_ms: 0, .. }),
        "{a:?}"
    );
}

#[test]
fn a_reported_outage_does_not_outvote_a_witness_that_sees_the_primary_up() {
    // A stale memory of unreachability next to an observation that is up
    // (a witness whose latest probe succeeded) counts for nothing.
    let mut d = Detector::default();
    let now = 50_000;
    let mut r = reports_with_outage(now, &[(2, 9000)]);
    r.get_mut(&3)
        .expect("reported")
        .unreachable_for
        .insert(site("a"), 9000);
    let a = d.assess(at(now), &state(), &witnesses(), &r, &cfg());
    assert!(matches!(a, Assessment::Healthy { .. }), "{a:?}");
}

#[test]
fn a_stale_report_of_a_long_outage_counts_for_nothing() {
    let mut d = Detector::default();
    let now = 50_000;
    let mut r = reports_with_outage(now, &[(2, 9000), (3, 9000)]);
    r.get_mut(&3).expect("reported").received_at_ms = now - cfg().report_ttl_ms - 1;
    let a = d.assess(at(now), &state(), &witnesses(), &r, &cfg());
    assert!(matches!(a, Assessment::Healthy { .. }), "{a:?}");
}
