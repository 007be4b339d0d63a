use proptest::prelude::*;

use super::*;
use crate::command::{Command, CommandResult};
use crate::failover::{Evidence, Failover, Kind, StepRecord, Trigger};
use crate::Step;

const TTL: u64 = 1000;

fn cfg(policy: CrashPolicy) -> AgentConfig {
    AgentConfig {
        lease: LeaseConfig {
            ttl_ms: TTL,
            drift: 0.1,
        },
        crash_policy: policy,
        handover_hold_ms: 40_000,
    }
}

fn agent() -> SiteAgent {
    SiteAgent::new(3, cfg(CrashPolicy::Restart))
}

fn primary(epoch: u64, running: bool) -> Facts {
    Facts {
        desired: Some(DesiredRole::Primary { epoch }),
        epoch,
        running,
        guard_alive: true,
        handing_over: None,
    }
}

/// Grants from a majority (witnesses 1 and 2) for `epoch`, sent at `sent`.
fn lease(a: &mut SiteAgent, sent: u64, epoch: u64) -> Option<GuardOrder> {
    a.answered(sent, 1, sent, epoch, &Grant::Granted);
    a.answered(sent, 2, sent, epoch, &Grant::Granted)
}

fn refused(handover: Option<u64>) -> Grant {
    Grant::Refused {
        reason: "moved".into(),
        handover,
    }
}

fn site(s: &str) -> SiteId {
    SiteId(s.into())
}

// ---- starting and serving ----

#[test]
fn an_unleased_primary_is_never_started() {
    let mut a = agent();
    assert_eq!(a.reconcile(0, &primary(1, false)), Decision::Idle);
    // One grant is not a majority.
    a.answered(0, 1, 0, 1, &Grant::Granted);
    assert_eq!(a.reconcile(10, &primary(1, false)), Decision::Idle);
}

#[test]
fn a_leased_primary_is_started_then_served() {
    let mut a = agent();
    lease(&mut a, 0, 1);
    assert_eq!(
        a.reconcile(10, &primary(1, false)),
        Decision::Start {
            epoch: 1,
            after_crash: false
        }
    );
    a.serving();
    assert_eq!(
        a.reconcile(20, &primary(1, true)),
        Decision::Serve { epoch: 1 }
    );
}

#[test]
fn a_lease_of_another_epoch_does_not_count() {
    let mut a = agent();
    lease(&mut a, 0, 1);
    assert_eq!(a.reconcile(10, &primary(2, false)), Decision::Idle);
}

#[test]
fn the_lease_ends_a_margin_before_its_ttl() {
    let mut a = agent();
    lease(&mut a, 0, 1);
    let margin = TTL / 4;
    assert!(a.leased(TTL - margin - 1, 1));
    assert!(!a.leased(TTL - margin, 1));
}

#[test]
fn a_crash_is_restarted_under_restart_and_left_down_under_failover() {
    for (policy, want) in [
        (
            CrashPolicy::Restart,
            Decision::Start {
                epoch: 1,
                after_crash: true,
            },
        ),
        (CrashPolicy::Failover, Decision::StayDown),
    ] {
        let mut a = SiteAgent::new(3, cfg(policy));
        lease(&mut a, 0, 1);
        assert_eq!(
            a.reconcile(10, &primary(1, true)),
            Decision::Serve { epoch: 1 }
        );
        assert_eq!(a.reconcile(20, &primary(1, false)), want, "{policy:?}");
    }
}

#[test]
fn a_server_this_agent_stopped_is_no_crash() {
    let mut a = SiteAgent::new(3, cfg(CrashPolicy::Failover));
    lease(&mut a, 0, 1);
    a.reconcile(10, &primary(1, true));
    a.fenced();
    assert_eq!(
        a.reconcile(20, &primary(1, false)),
        Decision::Start {
            epoch: 1,
            after_crash: false
        }
    );
}

// ---- the lease lapsing ----

#[test]
fn a_server_found_running_gets_one_ttl_for_the_quorums_confirmation() {
    let mut a = agent();
    assert_eq!(a.reconcile(0, &primary(1, true)), Decision::Idle);
    assert_eq!(a.reconcile(TTL - 1, &primary(1, true)), Decision::Idle);
    let mut no_guard = primary(1, true);
    no_guard.guard_alive = false;
    assert!(matches!(
        a.reconcile(TTL, &no_guard),
        Decision::Fence { epoch: 1, order } if order.hard
    ));
}

#[test]
fn a_lapsed_lease_is_left_to_a_live_guard_and_fenced_without_one() {
    let mut a = agent();
    lease(&mut a, 0, 1);
    a.reconcile(10, &primary(1, true));
    assert_eq!(a.reconcile(TTL, &primary(1, true)), Decision::LeaveToGuard);
    let mut no_guard = primary(1, true);
    no_guard.guard_alive = false;
    let d = a.reconcile(TTL, &no_guard);
    assert!(
        matches!(d, Decision::Fence { epoch: 1, order } if order.hard && order.deadline_ms == TTL),
        "{d:?}"
    );
    // Once fenced, no start before a new lease.
    a.fenced();
    assert_eq!(a.reconcile(TTL + 1, &primary(1, false)), Decision::Idle);
}

#[test]
fn the_lease_returning_for_the_same_epoch_serves_again() {
    let mut a = agent();
    lease(&mut a, 0, 1);
    a.reconcile(10, &primary(1, true));
    assert_eq!(a.reconcile(TTL, &primary(1, true)), Decision::LeaveToGuard);
    lease(&mut a, TTL + 10, 1);
    assert_eq!(
        a.reconcile(TTL + 20, &primary(1, true)),
        Decision::Serve { epoch: 1 }
    );
}

// ---- answers and the guard's orders ----

#[test]
fn grants_move_the_guards_deadline_forward_only() {
    let mut a = agent();
    let first = lease(&mut a, 100, 1).expect("a quorum sets the deadline");
    assert_eq!(first.deadline_ms, 100 + TTL - TTL / 4);
    assert!(!first.hard);
    // A late answer to an older renewal changes nothing.
    assert_eq!(a.answered(200, 3, 50, 1, &Grant::Granted), None);
    let later = lease(&mut a, 300, 1).expect("a newer quorum moves it");
    assert_eq!(later.deadline_ms, 300 + TTL - TTL / 4);
    assert_eq!(a.guard_due(), Some((later.deadline_ms, 1)));
}

#[test]
fn unknown_answers_change_nothing() {
    let mut a = agent();
    lease(&mut a, 0, 1);
    let before = a.guard_due();
    assert_eq!(
        a.answered(
            10,
            3,
            10,
            1,
            &Grant::Unknown {
                reason: "lags".into()
            }
        ),
        None
    );
    assert_eq!(a.guard_due(), before);
    assert!(a.leased(10, 1));
}

#[test]
fn a_refusal_ends_the_lease_at_once_with_a_hard_order() {
    let mut a = agent();
    lease(&mut a, 0, 1);
    let order = a.answered(50, 3, 50, 1, &refused(None)).unwrap();
    assert_eq!(
        order,
        GuardOrder {
            epoch: 1,
            deadline_ms: 50,
            hard: true
        }
    );
    assert!(!a.leased(51, 1));
    assert_eq!(a.must_kill(50, true, false, false), Some(1));
}

#[test]
fn a_refusal_for_a_handover_holds_the_guard_off_and_shuts_down_cleanly() {
    let mut a = agent();
    lease(&mut a, 0, 1);
    a.reconcile(10, &primary(1, true));
    let order = a.answered(50, 3, 50, 1, &refused(Some(2))).unwrap();
    assert!(!order.hard);
    assert_eq!(order.deadline_ms, 50 + 40_000);
    assert_eq!(
        a.reconcile(60, &primary(1, true)),
        Decision::ShutDownForHandover {
            epoch: 2,
            current: 1
        }
    );
}

// ---- the agent's own guard task ----

#[test]
fn the_guard_task_kills_only_without_the_guard_process_and_outside_a_handover() {
    let mut a = agent();
    assert_eq!(a.must_kill(0, true, false, false), None, "no lease held");
    lease(&mut a, 0, 1);
    let due = TTL - TTL / 4;
    assert_eq!(a.must_kill(due - 1, true, false, false), None);
    assert_eq!(a.must_kill(due, true, false, false), Some(1));
    assert_eq!(a.must_kill(due, true, false, true), None, "guard alive");
    assert_eq!(a.must_kill(due, true, true, false), None, "handing over");
    assert_eq!(a.must_kill(due, false, false, false), None, "no processes");
    a.standby();
    assert_eq!(a.must_kill(due, true, false, false), None, "a standby");
}

#[test]
fn the_loop_wakes_for_the_deadline_when_it_comes_before_the_renewal() {
    let mut a = agent();
    assert_eq!(a.next_wake_ms(0, 300), 300);
    lease(&mut a, 0, 1);
    let due = TTL - TTL / 4;
    assert_eq!(a.next_wake_ms(due - 100, 300), 100);
    assert_eq!(a.next_wake_ms(due + 1, 300), 300);
}

// ---- fenced and rejoining roles ----

#[test]
fn a_site_that_must_be_fenced_is_killed_unless_a_handover_shuts_it_down() {
    let mut a = agent();
    let fenced = Facts {
        desired: Some(DesiredRole::Fenced),
        epoch: 2,
        running: true,
        guard_alive: true,
        handing_over: None,
    };
    assert!(matches!(
        a.reconcile(0, &fenced),
        Decision::Fence { epoch: 2, order } if order.hard
    ));
    let handover = Facts {
        handing_over: Some(2),
        ..fenced.clone()
    };
    assert_eq!(
        a.reconcile(0, &handover),
        Decision::ShutDownForHandover {
            epoch: 2,
            current: 2
        }
    );
    let stopped = Facts {
        running: false,
        ..fenced
    };
    assert_eq!(a.reconcile(0, &stopped), Decision::Idle);
}

#[test]
fn the_old_primary_rejoins_and_a_standby_is_left_alone() {
    let mut a = agent();
    let rejoin = Facts {
        desired: Some(DesiredRole::Rejoin { epoch: 2 }),
        epoch: 2,
        running: true,
        guard_alive: false,
        handing_over: None,
    };
    assert_eq!(a.reconcile(0, &rejoin), Decision::Rejoin { epoch: 2 });
    let standby = Facts {
        desired: Some(DesiredRole::Standby),
        ..rejoin
    };
    assert_eq!(a.reconcile(0, &standby), Decision::Idle);
    assert!(a.may_rejoin(0));
    a.rejoin_failed(10_000);
    assert!(!a.may_rejoin(9_999) && a.may_rejoin(10_000));
    a.rejoined();
    assert!(a.may_rejoin(0));
}

// ---- the leader's orders ----

fn state_with_failover(kind: Kind, fenced: bool) -> ClusterState {
    let mut s = ClusterState::default();
    s.apply(
        1,
        &Command::InitDatabase {
            primary: site("a"),
            standby: site("b"),
        },
    );
    let begun = s.apply(
        2,
        &Command::BeginFailover(Box::new(Failover {
            kind,
            epoch: 1,
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
    assert!(matches!(begun, CommandResult::Applied), "{begun:?}");
    if fenced {
        s.apply(
            3,
            &Command::StepDone {
                epoch: 1,
                record: StepRecord {
                    step: Step::Fenced,
                    started_at_ms: 0,
                    done_at_ms: 1,
                    detail: String::new(),
                    lsn: Some(1),
                    checks: vec![],
                },
            },
        );
    }
    s
}

#[test]
fn orders_are_refused_where_the_state_does_not_allow_them() {
    let mut s = ClusterState::default();
    s.apply(
        1,
        &Command::InitDatabase {
            primary: site("a"),
            standby: site("b"),
        },
    );
    assert!(may_fence(&s, &site("a"), 0).is_err(), "the desired primary");
    assert!(
        may_fence(&s, &site("b"), 0).is_err(),
        "a standby with no failover under way"
    );
    assert!(may_enable_monitors(&s, &site("a")).is_ok());
    assert!(may_enable_monitors(&s, &site("b")).is_err());
    assert!(may_promote(&s, &site("b"), 1).is_err(), "no failover");

    let s = state_with_failover(Kind::Failover, false);
    assert!(may_fence(&s, &site("a"), 1).is_ok());
    assert!(may_fence(&s, &site("a"), 2).is_err(), "another epoch");
    assert!(
        may_fence(&s, &site("b"), 1).is_err(),
        "the failover's target"
    );
    assert!(
        may_promote(&s, &site("b"), 1).is_err(),
        "the fence is not recorded"
    );
    let s = state_with_failover(Kind::Failover, true);
    assert!(may_promote(&s, &site("b"), 1).is_ok());
    assert!(may_promote(&s, &site("b"), 2).is_err(), "another epoch");
    assert!(may_promote(&s, &site("a"), 1).is_err(), "another site");
}

fn promoted(mut s: ClusterState) -> ClusterState {
    s.apply(
        4,
        &Command::StepDone {
            epoch: 1,
            record: StepRecord {
                step: Step::Promoted,
                started_at_ms: 1,
                done_at_ms: 2,
                detail: String::new(),
                lsn: None,
                checks: vec![],
            },
        },
    );
    s
}

#[test]
fn every_refusal_names_the_site_and_the_epoch_it_rests_on() {
    let s = state_with_failover(Kind::Failover, false);
    assert_eq!(
        may_promote(&s, &site("b"), 1),
        Err(OrderRefusal::PromoteWithoutFence {
            site: site("b"),
            epoch: 1
        })
    );
    assert_eq!(
        may_promote(&s, &site("b"), 1)
            .expect_err("not fenced")
            .to_string(),
        "refusing to promote: no failover of epoch 1 to site b with the old primary fenced"
    );
    let mut s = ClusterState::default();
    s.apply(
        1,
        &Command::InitDatabase {
            primary: site("a"),
            standby: site("b"),
        },
    );
    assert_eq!(
        may_fence(&s, &site("a"), 0)
            .expect_err("primary")
            .to_string(),
        "refusing to fence: site a is the desired primary in epoch 0"
    );
    assert_eq!(
        may_enable_monitors(&s, &site("b"))
            .expect_err("standby")
            .to_string(),
        "refusing monitorsEnabled=true: site b is not the desired primary"
    );
}

#[test]
fn an_order_of_an_epoch_other_than_the_committed_one_is_refused() {
    let s = state_with_failover(Kind::Failover, true);
    assert_eq!(s.epoch, 1);
    assert_eq!(may_act_in(&s, 1), Ok(()));
    // A deposed leader's order of an older epoch.
    let stale = may_act_in(&s, 0).expect_err("older epoch");
    assert_eq!(
        stale,
        OrderRefusal::EpochNotCommitted {
            order: 0,
            committed: 1
        }
    );
    assert_eq!(
        stale.to_string(),
        "refusing an order of epoch 0: the committed epoch here is 1"
    );
    // An epoch nobody committed (the agent waits for it first, then refuses).
    assert!(may_act_in(&s, 2).is_err());
    assert!(may_act_in(&s, u64::MAX).is_err());
}

#[test]
fn monitors_off_is_refused_at_the_desired_primary_only() {
    let mut s = ClusterState::default();
    s.apply(
        1,
        &Command::InitDatabase {
            primary: site("a"),
            standby: site("b"),
        },
    );
    assert_eq!(
        may_disable_monitors(&s, &site("a")),
        Err(OrderRefusal::MonitorsOffAtPrimary {
            site: site("a"),
            epoch: 0
        })
    );
    assert_eq!(may_disable_monitors(&s, &site("b")), Ok(()));
    assert_eq!(may_disable_monitors(&s, &site("c")), Ok(()), "no database");
    // During a failover a -> b, the old primary's app is switched off...
    let s = state_with_failover(Kind::Failover, true);
    assert_eq!(may_disable_monitors(&s, &site("a")), Ok(()));
    // ...and the new primary's never, once promoted.
    let s = promoted(s);
    assert!(may_disable_monitors(&s, &site("b")).is_err());
}

#[test]
fn repointing_search_is_refused_away_from_the_primary_of_its_epoch() {
    let refused = |site_: &str, epoch| OrderRefusal::RepointAwayFromPrimary {
        site: site(site_),
        epoch,
    };
    let s = state_with_failover(Kind::Failover, true);
    // Not yet promoted: nothing to point at.
    assert_eq!(may_repoint_search(&s, &site("b"), 1), Err(refused("b", 1)));
    let s = promoted(s);
    assert_eq!(may_repoint_search(&s, &site("b"), 1), Ok(()));
    // The old primary, the tie-breaker and another epoch are refused: a
    // forged order cannot point the primary site's app anywhere.
    assert_eq!(may_repoint_search(&s, &site("a"), 1), Err(refused("a", 1)));
    assert_eq!(may_repoint_search(&s, &site("c"), 1), Err(refused("c", 1)));
    assert_eq!(may_repoint_search(&s, &site("b"), 2), Err(refused("b", 2)));
    assert_eq!(
        refused("a", 1).to_string(),
        "refusing to repoint search: site a is not the primary of epoch 1"
    );
}

// ---- the property: never writable unleased ----

#[derive(Clone, Debug)]
enum Event {
    /// A witness's answer to a renewal sent `ago` ms before now.
    Answer { witness: NodeId, ago: u64, kind: u8 },
    /// Time passes.
    Wait(u64),
    /// The guard process dies or comes back.
    GuardAlive(bool),
    /// The server crashes.
    Crash,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (1u64..=3, 0u64..600, 0u8..6).prop_map(|(witness, ago, kind)| Event::Answer { witness, ago, kind }),
        4 => (1u64..700).prop_map(Event::Wait),
        1 => any::<bool>().prop_map(Event::GuardAlive),
        1 => Just(Event::Crash),
    ]
}

proptest! {
    /// Under any schedule of grants, refusals and silences, the agent
    /// carrying out its own decisions never has its server running past
    /// the lease's end (less the margin) unless a live guard process holds
    /// it frozen; it starts only under a valid lease; and after a refusal
    /// it never starts again in that epoch.
    #[test]
    fn the_server_never_writes_unleased(events in proptest::collection::vec(event(), 1..80)) {
        let mut a = agent();
        let mut now = 0u64;
        let mut running = false;
        let mut frozen = false;
        let mut guard_alive = true;
        let mut refused_once = false;
        let epoch = 1;
        for e in events {
            match e {
                Event::Answer { witness, ago, kind } => {
                    let answer = match kind {
                        0 => refused(None),
                        1 => Grant::Unknown { reason: "lags".into() },
                        _ => Grant::Granted,
                    };
                    if matches!(answer, Grant::Refused { .. }) { refused_once = true; }
                    // After a refusal the witnesses have applied the move:
                    // they never grant this epoch again.
                    let answer = if refused_once && answer == Grant::Granted { refused(None) } else { answer };
                    a.answered(now, witness, now.saturating_sub(ago), epoch, &answer);
                }
                Event::Wait(ms) => now += ms,
                Event::GuardAlive(alive) => guard_alive = alive,
                Event::Crash => { running = false; frozen = false; }
            }
            // The guard process: freezes at the deadline, thaws on a live
            // order of the same epoch, kills on a hard one.
            if guard_alive && running {
                match a.guard_due() {
                    Some((deadline, _)) if now >= deadline => frozen = true,
                    Some(_) => frozen = false,
                    None => {}
                }
                if refused_once { running = false; frozen = false; a.fenced(); }
            }
            // The agent's own guard task.
            if a.must_kill(now, running, false, guard_alive).is_some() {
                a.lapsed();
                running = false;
                frozen = false;
                a.fenced();
            }
            let facts = Facts { desired: Some(DesiredRole::Primary { epoch }), epoch, running, guard_alive, handing_over: None };
            match a.reconcile(now, &facts) {
                Decision::Start { .. } => {
                    prop_assert!(a.leased(now, epoch), "started unleased at {}", now);
                    prop_assert!(!refused_once, "started after a refusal");
                    running = true;
                    a.serving();
                }
                Decision::Fence { .. } => { running = false; frozen = false; a.fenced(); }
                Decision::Serve { .. } => prop_assert!(a.leased(now, epoch)),
                Decision::LeaveToGuard => prop_assert!(guard_alive),
                _ => {}
            }
            // Writable: running and not frozen. Then the lease must hold
            // (in grace a server found running is not this agent's start,
            // and here every server was started by it).
            if running && !frozen {
                let (deadline, _) = a.guard_due().expect("a running server was leased");
                prop_assert!(now < deadline, "writable at {} past the deadline {}", now, deadline);
            }
        }
    }
}

/// Found by the three-host trial: the leader's fence order for epoch 1
/// reached the old primary 26 s late, once its cut link came back, after
/// it had rejoined as a standby. It must be refused, not carried out.
#[test]
fn a_fence_order_that_outlived_its_failover_is_refused() {
    let mut s = promoted(state_with_failover(Kind::Failover, true));
    assert!(may_fence(&s, &site("a"), 1).is_ok(), "while it runs");
    for (i, step) in [Step::AppFlipped, Step::Repointed, Step::Verified]
        .into_iter()
        .enumerate()
    {
        s.apply(
            10 + i as u64,
            &Command::StepDone {
                epoch: 1,
                record: StepRecord {
                    step,
                    started_at_ms: 2,
                    done_at_ms: 3,
                    detail: String::new(),
                    lsn: None,
                    checks: vec![],
                },
            },
        );
    }
    let finished = s.apply(
        20,
        &Command::FinishFailover {
            epoch: 1,
            outcome: crate::failover::Outcome::Completed,
            at_ms: 3,
        },
    );
    assert!(matches!(finished, CommandResult::Applied), "{finished:?}");
    let rejoined = s.apply(
        21,
        &Command::StandbyRejoined {
            site: site("a"),
            epoch: 1,
            at_ms: 4,
        },
    );
    assert!(matches!(rejoined, CommandResult::Applied), "{rejoined:?}");
    assert_eq!(s.desired_role(&site("a")), Some(DesiredRole::Standby));
    assert_eq!(
        may_fence(&s, &site("a"), 1).expect_err("late").to_string(),
        "refusing to fence: no failover of epoch 1 away from site a is under way (a late order?)"
    );
}
