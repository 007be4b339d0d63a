use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::command::Command;
use crate::detector::CrashPolicy;
use crate::failover::{Failover, Step, StepRecord, Trigger};
use crate::observe::{ErrorClass, WalReceiverInfo};

const NOW_MONO: u64 = 10_000;
const NOW_WALL: i64 = 1_700_000_000_000;

fn site(s: &str) -> SiteId {
    SiteId(s.into())
}

fn cfg() -> DetectorConfig {
    DetectorConfig {
        down_after_ms: 1000,
        report_ttl_ms: 1500,
        on_primary_crash: CrashPolicy::Restart,
        restart_budget_ms: 5000,
        cooldown_ms: 60_000,
        cooldown_down_after_ms: 10_000,
        max_lag_bytes: 1 << 20,
        max_lag_seconds: 30.0,
        replication: ReplicationMode::Async,
    }
}

fn up(mut o: PgObservation) -> PgObservation {
    o.reachability = Reachability::Up;
    o
}

fn primary(lsn: u64) -> PgObservation {
    up(PgObservation {
        in_recovery: Some(false),
        current_lsn: Some(lsn),
        ..PgObservation::down(ErrorClass::Other, "", 1)
    })
}

fn standby(streaming: bool, receive_lsn: u64) -> PgObservation {
    up(PgObservation {
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
    })
}

struct World {
    state: ClusterState,
    witnesses: BTreeMap<NodeId, SiteId>,
    reports: BTreeMap<NodeId, WitnessReport>,
    cfg: DetectorConfig,
    sites: Vec<SiteId>,
    home: SiteId,
}

impl World {
    /// a primary at `primary_lsn`, b a standby that received `standby_lsn`.
    fn new(a: PgObservation, b: PgObservation) -> Self {
        let mut state = ClusterState::default();
        state.apply(
            1,
            &Command::InitDatabase {
                primary: site("a"),
                standby: site("b"),
            },
        );
        let reports = (1..=3)
            .map(|id| {
                let dbs = [(site("a"), a.clone()), (site("b"), b.clone())]
                    .into_iter()
                    .collect();
                (
                    id,
                    WitnessReport {
                        received_at_ms: NOW_MONO - 100,
                        dbs,
                        last_writable: BTreeMap::new(),
                        unreachable_for: BTreeMap::new(),
                    },
                )
            })
            .collect();
        Self {
            state,
            witnesses: [(1, site("a")), (2, site("b")), (3, site("c"))]
                .into_iter()
                .collect(),
            reports,
            cfg: cfg(),
            sites: vec![site("a"), site("b")],
            home: site("a"),
        }
    }

    fn healthy() -> Self {
        Self::new(primary(5000), standby(true, 5000))
    }

    fn check(&self, req: &OperatorRequest) -> Result<Approved, Refusal> {
        check(
            req,
            &Facts {
                state: &self.state,
                db_sites: &self.sites,
                home: &self.home,
                witnesses: &self.witnesses,
                reports: &self.reports,
                now: Now {
                    mono_ms: NOW_MONO,
                    wall_ms: NOW_WALL,
                },
                cfg: &self.cfg,
            },
        )
    }
}

fn req(kind: Kind, to: &str) -> OperatorRequest {
    OperatorRequest {
        kind,
        to: Some(site(to)),
        who: "alice@ops".into(),
        force: false,
        accept_data_loss: false,
    }
}

fn precondition(r: Result<Approved, Refusal>) -> String {
    match r {
        Err(Refusal::FailedPrecondition(s)) => s,
        other => panic!("expected a failed precondition, got {other:?}"),
    }
}

fn invalid(r: Result<Approved, Refusal>) -> String {
    match r {
        Err(Refusal::InvalidArgument(s)) => s,
        other => panic!("expected an invalid argument, got {other:?}"),
    }
}

#[test]
fn a_healthy_switchover_is_approved_with_its_evidence() {
    let w = World::healthy();
    let ok = w.check(&req(Kind::Switchover, "b")).unwrap();
    assert_eq!((ok.from, ok.to), (site("a"), site("b")));
    assert!(ok.reason.contains("alice@ops"), "{}", ok.reason);
    assert_eq!(ok.evidence.known_lag_bytes, Some(0));
    assert!(ok.data_loss_bound.is_empty());
}

#[test]
fn unknown_site_and_empty_identity_are_bad_requests() {
    let w = World::healthy();
    let e = invalid(w.check(&req(Kind::Switchover, "zz")));
    assert!(
        e.contains("unknown site \"zz\"") && e.contains("a, b"),
        "{e}"
    );
    // The tie-breaker has no database.
    assert!(invalid(w.check(&req(Kind::Failover, "c"))).contains("unknown site"));
    let mut r = req(Kind::Switchover, "b");
    r.who = " ".into();
    assert!(invalid(w.check(&r)).contains("who"));
}

#[test]
fn switchover_to_the_primary_is_refused() {
    let w = World::healthy();
    let e = precondition(w.check(&req(Kind::Switchover, "a")));
    assert!(e.contains("already the primary"), "{e}");
    let e = precondition(w.check(&OperatorRequest {
        to: None,
        ..req(Kind::Failback, "")
    }));
    assert!(e.contains("nothing to fail back"), "{e}");
}

#[test]
fn an_operation_in_progress_blocks_another() {
    let mut w = World::healthy();
    let f = Failover {
        epoch: 1,
        kind: Kind::Switchover,
        from: site("a"),
        to: site("b"),
        trigger: Trigger::Operator { who: "bob".into() },
        reason: "test".into(),
        evidence: Evidence::default(),
        started_at_ms: NOW_WALL,
        steps: vec![],
        outcome: None,
        finished_at_ms: None,
    };
    assert_eq!(
        w.state.apply(2, &Command::BeginFailover(Box::new(f))),
        crate::CommandResult::Applied
    );
    let e = precondition(w.check(&req(Kind::Failover, "b")));
    assert!(
        e.contains("switchover of epoch 1") && e.contains("in progress"),
        "{e}"
    );
}

#[test]
fn a_paused_cluster_refuses_until_the_pause_ends() {
    let mut w = World::healthy();
    w.state.apply(
        2,
        &Command::Pause {
            by: "carol".into(),
            reason: "DR test".into(),
            at_ms: NOW_WALL - 1000,
            until_ms: Some(NOW_WALL + 60_000),
        },
    );
    let e = precondition(w.check(&req(Kind::Switchover, "b")));
    assert!(
        e.contains("paused") && e.contains("carol") && e.contains("resume"),
        "{e}"
    );
    // Expired: no longer in force.
    w.state.maintenance.as_mut().unwrap().until_ms = Some(NOW_WALL);
    assert!(w.check(&req(Kind::Switchover, "b")).is_ok());
}

#[test]
fn a_target_that_has_not_rejoined_is_refused() {
    let mut w = World::healthy();
    w.state.db.as_mut().unwrap().standby_needs_rejoin = true;
    let e = precondition(w.check(&req(Kind::Failover, "b")));
    assert!(e.contains("not rejoined"), "{e}");
}

#[test]
fn switchover_needs_a_streaming_close_standby_and_a_live_primary() {
    let w = World::new(primary(5000), standby(false, 5000));
    assert!(precondition(w.check(&req(Kind::Switchover, "b"))).contains("not streaming"));

    let w = World::new(primary(5000 + (2 << 20)), standby(true, 5000));
    let e = precondition(w.check(&req(Kind::Switchover, "b")));
    assert!(
        e.contains("bytes behind") && e.contains("max_lag_bytes"),
        "{e}"
    );

    let w = World::new(
        PgObservation::down(ErrorClass::Refused, "refused", 1),
        standby(true, 5000),
    );
    let e = precondition(w.check(&req(Kind::Switchover, "b")));
    assert!(e.contains("failover --to b"), "{e}");

    let w = World::new(
        primary(5000),
        PgObservation::down(ErrorClass::Timeout, "slow", 1),
    );
    let e = precondition(w.check(&req(Kind::Switchover, "b")));
    assert!(e.contains("unreachable (timeout: slow)"), "{e}");
}

#[test]
fn the_newest_report_of_the_target_decides_not_its_own_sites_older_one() {
    // b's own witness last reported b's database down (a rejoin's
    // restart); a newer report from witness 3 sees it streaming again.
    let mut w = World::healthy();
    let down = PgObservation::down(ErrorClass::Refused, "connection refused", 1);
    for (id, age) in [(1, 300), (2, 250), (3, 50)] {
        let r = w.reports.get_mut(&id).expect("report");
        r.received_at_ms = NOW_MONO - age;
        if id == 2 {
            r.dbs.insert(site("b"), down.clone());
        }
    }
    assert!(w.check(&req(Kind::Switchover, "b")).is_ok());
    // And the other way round: the newest says down, so it is refused.
    let r = w.reports.get_mut(&3).expect("report");
    r.dbs.insert(site("b"), down.clone());
    assert!(precondition(w.check(&req(Kind::Switchover, "b"))).contains("unreachable"));
    // Equally new: its own site's witness decides.
    for id in [1, 2, 3] {
        w.reports.get_mut(&id).expect("report").received_at_ms = NOW_MONO - 50;
    }
    w.reports
        .get_mut(&3)
        .expect("report")
        .dbs
        .insert(site("b"), standby(true, 5000));
    assert!(precondition(w.check(&req(Kind::Switchover, "b"))).contains("unreachable"));
}

#[test]
fn stale_reports_are_not_evidence() {
    let mut w = World::healthy();
    for r in w.reports.values_mut() {
        r.received_at_ms = NOW_MONO - 5000;
    }
    assert!(precondition(w.check(&req(Kind::Switchover, "b"))).contains("no fresh observation"));
}

#[test]
fn failover_with_a_lagging_standby_needs_force_and_confirmation() {
    let w = World::new(primary(5000 + (4 << 20)), standby(true, 5000));
    let e = precondition(w.check(&req(Kind::Failover, "b")));
    assert!(e.contains("lag guard") && e.contains("--force"), "{e}");

    let mut forced = req(Kind::Failover, "b");
    forced.force = true;
    assert!(invalid(w.check(&forced)).contains("accept_data_loss"));

    forced.accept_data_loss = true;
    let ok = w.check(&forced).unwrap();
    assert!(
        ok.data_loss_bound.contains(&(4u64 << 20).to_string()),
        "{}",
        ok.data_loss_bound
    );
    assert!(ok.reason.contains("forced"), "{}", ok.reason);
}

#[test]
fn failover_of_a_dead_primary_uses_the_witnesses_memory_for_the_bound() {
    let mut w = World::new(
        PgObservation::down(ErrorClass::Refused, "refused", 1),
        standby(false, 5000),
    );
    for r in w.reports.values_mut() {
        r.last_writable.insert(
            site("a"),
            crate::detector::LastWritable {
                lsn: 5100,
                age_ms: 300,
            },
        );
    }
    let ok = w.check(&req(Kind::Failover, "b")).unwrap();
    assert_eq!(ok.evidence.known_lag_bytes, Some(100));
    assert!(
        ok.data_loss_bound.contains("100 bytes"),
        "{}",
        ok.data_loss_bound
    );
    assert!(ok.data_loss_bound.contains("after it was last observed"));
}

#[test]
fn force_is_for_failovers_only() {
    let w = World::healthy();
    let mut r = req(Kind::Switchover, "b");
    r.force = true;
    r.accept_data_loss = true;
    assert!(invalid(w.check(&r)).contains("failover only"));
}

#[test]
fn failback_targets_the_configured_primary() {
    let mut w = World::healthy();
    // After a failover to b and a rejoin of a, a is the standby.
    let epoch = 1;
    let f = Failover {
        epoch,
        kind: Kind::Failover,
        from: site("a"),
        to: site("b"),
        trigger: Trigger::Automatic,
        reason: "test".into(),
        evidence: Evidence::default(),
        started_at_ms: NOW_WALL,
        steps: vec![],
        outcome: None,
        finished_at_ms: None,
    };
    w.state.apply(2, &Command::BeginFailover(Box::new(f)));
    for (i, step) in Step::ALL.into_iter().enumerate() {
        w.state.apply(
            3 + i as u64,
            &Command::StepDone {
                epoch,
                record: StepRecord {
                    step,
                    started_at_ms: NOW_WALL,
                    done_at_ms: NOW_WALL,
                    detail: String::new(),
                    lsn: None,
                    checks: vec![],
                },
            },
        );
    }
    w.state.apply(
        10,
        &Command::FinishFailover {
            epoch,
            outcome: crate::Outcome::Completed,
            at_ms: NOW_WALL,
        },
    );
    w.state.apply(
        11,
        &Command::StandbyRejoined {
            site: site("a"),
            epoch,
            at_ms: NOW_WALL,
        },
    );
    for r in w.reports.values_mut() {
        r.dbs.insert(site("b"), primary(9000));
        r.dbs.insert(site("a"), standby(true, 9000));
    }
    let ok = w
        .check(&OperatorRequest {
            to: None,
            ..req(Kind::Failback, "")
        })
        .unwrap();
    assert_eq!((ok.from, ok.to), (site("b"), site("a")));
    assert!(ok.reason.starts_with("failback to a"), "{}", ok.reason);
}

proptest! {
    /// Whatever the observations, an approved planned handover had a
    /// writable primary and a streaming target within the lag bound; an
    /// approved failover past the lag guard was forced and confirmed.
    #[test]
    fn approvals_respect_the_guards(
        p_up in any::<bool>(),
        s_up in any::<bool>(),
        streaming in any::<bool>(),
        p_lsn in 0u64..(8 << 20),
        s_lsn in 0u64..(8 << 20),
        planned in any::<bool>(),
        force in any::<bool>(),
    ) {
        let a = if p_up { primary(p_lsn) } else { PgObservation::down(ErrorClass::Refused, "x", 1) };
        let b = if s_up { standby(streaming, s_lsn) } else { PgObservation::down(ErrorClass::Timeout, "x", 1) };
        let w = World::new(a, b);
        let mut r = req(if planned { Kind::Switchover } else { Kind::Failover }, "b");
        if !planned {
            r.force = force;
            r.accept_data_loss = force;
        }
        if let Ok(ok) = w.check(&r) {
            prop_assert!(s_up);
            let lag = p_lsn.saturating_sub(s_lsn);
            if planned {
                prop_assert!(p_up && streaming && lag <= w.cfg.max_lag_bytes);
            } else if p_up && lag > w.cfg.max_lag_bytes {
                prop_assert!(force);
                prop_assert!(ok.data_loss_bound.contains(&lag.to_string()));
            }
        }
    }
}
