use proptest::prelude::*;

use super::handover::{catch_up, clean_shutdown, CatchUp, FinalWal};
use super::*;
use crate::command::{Command, CommandResult};
use crate::failover::{Evidence, Kind, Trigger};
use crate::lease::Expiry;
use crate::state::ClusterState;
use crate::topology::NodeId;

fn site(s: &str) -> SiteId {
    SiteId(s.into())
}

fn failover(kind: Kind) -> Failover {
    Failover {
        epoch: 2,
        kind,
        from: site("a"),
        to: site("b"),
        trigger: Trigger::Automatic,
        reason: "test".into(),
        evidence: Evidence::default(),
        started_at_ms: 0,
        steps: vec![],
        outcome: None,
        finished_at_ms: None,
    }
}

fn record(step: Step, lsn: Option<u64>, checks: Vec<Check>) -> StepRecord {
    StepRecord {
        step,
        started_at_ms: 1,
        done_at_ms: 2,
        detail: "ok".into(),
        lsn,
        checks,
    }
}

/// `f` with its first `n` steps recorded (the fence with `lsn`).
fn after(mut f: Failover, n: usize, lsn: Option<u64>) -> Failover {
    for step in Step::ALL.iter().take(n) {
        let lsn = if *step == Step::Fenced { lsn } else { None };
        f.steps.push(record(*step, lsn, vec![]));
    }
    f
}

fn work(n: Next) -> Work {
    match n {
        Next::Run { work, .. } => work,
        other => panic!("expected work, got {other:?}"),
    }
}

// ---- next: every step of both kinds, and resumption from the record ----

#[test]
fn an_unplanned_failover_runs_every_step_in_order() {
    let f = failover(Kind::Failover);
    let expected = [
        Work::Fence {
            site: site("a"),
            epoch: 2,
        },
        Work::Promote {
            site: site("b"),
            epoch: 2,
        },
        Work::FlipApps {
            from: site("a"),
            to: site("b"),
            epoch: 2,
        },
        Work::Repoint {
            to: site("b"),
            epoch: 2,
        },
        Work::Verify {
            to: site("b"),
            epoch: 2,
        },
    ];
    for (n, want) in expected.into_iter().enumerate() {
        // A new leader reads the record and resumes at the first step not
        // recorded: the record alone decides.
        let f = after(f.clone(), n, None);
        assert_eq!(
            next(&f),
            Next::Run {
                step: Step::ALL[n],
                work: want
            },
            "after {n} steps"
        );
    }
    assert_eq!(next(&after(f, 5, None)), Next::Finish(Outcome::Completed));
}

#[test]
fn a_handover_shuts_down_cleanly_then_promotes_after_the_catch_up() {
    for kind in [Kind::Switchover, Kind::Failback] {
        let f = failover(kind);
        assert_eq!(
            work(next(&f)),
            Work::ShutDownCleanly {
                site: site("a"),
                epoch: 2
            }
        );
        assert_eq!(
            work(next(&after(f.clone(), 1, Some(0x3000060)))),
            Work::CatchUpThenPromote {
                site: site("b"),
                epoch: 2,
                final_lsn: 0x3000060
            }
        );
        assert!(matches!(
            work(next(&after(f, 2, Some(1)))),
            Work::FlipApps { .. }
        ));
    }
}

#[test]
fn a_handover_whose_fence_recorded_no_final_position_is_aborted_not_promoted() {
    let f = after(failover(Kind::Switchover), 1, None);
    assert!(matches!(next(&f), Next::Abort { .. }), "{:?}", next(&f));
}

// ---- settle: what a result does to the record ----

#[test]
fn a_done_step_is_recorded_with_its_times_position_and_checks() {
    let f = after(failover(Kind::Failover), 4, None);
    let checks = vec![Check::pass("database at b writable", "lsn 0/3000148")];
    let s = settle(
        &f,
        Step::Verified,
        10,
        20,
        StepResult::Done {
            detail: "1 check passed".into(),
            lsn: None,
            checks: checks.clone(),
        },
    );
    assert_eq!(
        s,
        Settle::Record(StepRecord {
            step: Step::Verified,
            started_at_ms: 10,
            done_at_ms: 20,
            detail: "1 check passed".into(),
            lsn: None,
            checks
        })
    );
}

#[test]
fn a_retry_commits_nothing() {
    let f = failover(Kind::Failover);
    let s = settle(
        &f,
        Step::Fenced,
        1,
        2,
        StepResult::Retry {
            reason: "unreachable".into(),
        },
    );
    assert!(matches!(s, Settle::RetryLater { .. }));
}

#[test]
fn a_result_for_a_step_that_is_no_longer_next_commits_nothing() {
    // A slow step finished after another leader recorded it.
    let f = after(failover(Kind::Failover), 2, None);
    let s = settle(&f, Step::Promoted, 1, 2, StepResult::done("promoted"));
    assert!(matches!(s, Settle::RetryLater { .. }), "{s:?}");
}

#[test]
fn an_abort_before_promotion_finishes_the_failover_as_aborted() {
    let f = failover(Kind::Switchover);
    let s = settle(
        &f,
        Step::Fenced,
        1,
        2,
        StepResult::Abort {
            reason: "agent unreachable".into(),
        },
    );
    assert_eq!(
        s,
        Settle::Finish(Outcome::Aborted {
            reason: "agent unreachable".into()
        })
    );
    let f = after(failover(Kind::Switchover), 1, Some(9));
    let s = settle(
        &f,
        Step::Promoted,
        1,
        2,
        StepResult::Abort {
            reason: "no catch-up".into(),
        },
    );
    assert!(matches!(s, Settle::Finish(Outcome::Aborted { .. })));
}

#[test]
fn an_abort_after_promotion_is_never_committed() {
    for n in 2..5 {
        let f = after(failover(Kind::Switchover), n, Some(9));
        let s = settle(
            &f,
            Step::ALL[n],
            1,
            2,
            StepResult::Abort {
                reason: "late".into(),
            },
        );
        assert!(matches!(s, Settle::RetryLater { .. }), "after {n}: {s:?}");
    }
}

#[test]
fn a_handover_fence_without_a_final_checkpoint_aborts_instead_of_recording() {
    let f = failover(Kind::Failback);
    let s = settle(&f, Step::Fenced, 1, 2, StepResult::done("killed"));
    assert!(
        matches!(&s, Settle::Finish(Outcome::Aborted { reason }) if reason.contains("did not shut down cleanly")),
        "{s:?}"
    );
    // An unplanned failover's fence needs no position.
    let f = failover(Kind::Failover);
    assert!(matches!(
        settle(&f, Step::Fenced, 1, 2, StepResult::done("killed")),
        Settle::Record(_)
    ));
}

// ---- outcome from structured checks ----

#[test]
fn the_outcome_names_each_failed_check_and_ignores_the_detail_text() {
    let mut f = after(failover(Kind::Failover), 4, None);
    f.steps.push(record(
        Step::Verified,
        None,
        vec![
            Check::pass("database at b writable", "lsn 0/1"),
            // A passed check whose text says FAILED is still passed.
            Check::pass("app health", "FAILED nothing"),
            Check::fail("search API", "HTTP 503"),
        ],
    ));
    assert_eq!(
        next(&f),
        Next::Finish(Outcome::CompletedWithFailedChecks {
            failed: vec!["search API: HTTP 503".into()]
        })
    );
    assert_eq!(
        checks_summary(&f.steps[4].checks),
        "3 checks, 1 failed".to_string()
    );
}

#[test]
fn exactly_one_monitor_is_the_new_sites() {
    let to = site("b");
    let ok = one_monitor(
        &to,
        &[(site("a"), MonitorRead::Off), (site("b"), MonitorRead::On)],
    );
    assert!(ok.ok, "{ok:?}");
    let two = one_monitor(
        &to,
        &[(site("a"), MonitorRead::On), (site("b"), MonitorRead::On)],
    );
    assert!(!two.ok);
    assert!(two.detail.contains("[a, b]"), "{two:?}");
    let none = one_monitor(&to, &[(site("b"), MonitorRead::Absent)]);
    assert!(!none.ok);
    let wrong = one_monitor(&to, &[(site("a"), MonitorRead::On)]);
    assert!(!wrong.ok);
    // An unreadable old site is named, not counted as on: its agent
    // switches it off when it returns.
    let away = one_monitor(
        &to,
        &[
            (site("a"), MonitorRead::Unreadable("timeout".into())),
            (site("b"), MonitorRead::On),
        ],
    );
    assert!(away.ok);
    assert!(
        away.detail.contains("not readable: a (timeout)"),
        "{away:?}"
    );
    let back = one_monitor(
        &to,
        &[
            (site("a"), MonitorRead::SwitchedOff("set false".into())),
            (site("b"), MonitorRead::On),
        ],
    );
    assert!(back.ok && back.detail.contains("switched off on its return"));
}

// ---- handover decisions ----

#[test]
fn a_clean_shutdown_needs_its_final_checkpoint() {
    let from = site("a");
    assert!(matches!(
        clean_shutdown(&from, Ok(("stopped (fast)".into(), Some(7)))),
        StepResult::Done { lsn: Some(7), .. }
    ));
    assert!(matches!(
        clean_shutdown(&from, Ok(("killed".into(), None))),
        StepResult::Abort { .. }
    ));
    assert!(matches!(
        clean_shutdown(&from, Err("timeout".into())),
        StepResult::Abort { .. }
    ));
}

#[test]
fn the_catch_up_needs_replay_strictly_past_the_checkpoint_within_its_bound() {
    let to = site("b");
    let checkpoint = FinalWal::CheckpointAt(100);
    assert_eq!(
        catch_up(&to, checkpoint, Some(100), 10, 1000),
        CatchUp::Wait
    );
    assert_eq!(catch_up(&to, checkpoint, None, 10, 1000), CatchUp::Wait);
    assert!(matches!(
        catch_up(&to, checkpoint, Some(101), 10, 1000),
        CatchUp::Caught(_)
    ));
    // Past the bound: caught up still wins, otherwise give up.
    assert!(matches!(
        catch_up(&to, checkpoint, Some(101), 1000, 1000),
        CatchUp::Caught(_)
    ));
    assert!(matches!(
        catch_up(&to, checkpoint, Some(99), 1000, 1000),
        CatchUp::GiveUp(_)
    ));
}

#[test]
fn a_mariadb_catch_up_is_reaching_the_end_of_the_fenced_writers_binary_log() {
    // A MariaDB switchover aborted with "replayed up to" equal to the final
    // position before this distinction (the demo's failback).
    let to = site("b");
    let end = FinalWal::LogEndsAt(100);
    assert!(matches!(
        catch_up(&to, end, Some(100), 10, 1000),
        CatchUp::Caught(d) if d.contains("up to the final binary log position")
    ));
    assert_eq!(catch_up(&to, end, Some(99), 10, 1000), CatchUp::Wait);
    assert!(matches!(
        catch_up(&to, end, Some(99), 1000, 1000),
        CatchUp::GiveUp(_)
    ));
}

// ---- the fence round ----

#[test]
fn the_agent_is_asked_first_and_its_confirmation_fences() {
    let mut r = FenceRound::new(site("a"), 2, 0, 3, true);
    assert_eq!(r.work(0), vec![FenceWork::AskAgent]);
    // Not asked twice while an ask is out.
    assert_eq!(r.work(0), vec![]);
    assert!(r.agent_answered(0, Ok("stopped".into())).is_some());
    assert_eq!(
        r.detail(10, 1650).unwrap(),
        "fenced by the site agent of a: stopped"
    );
    assert_eq!(r.work(0), vec![], "nothing more once fenced");
}

#[test]
fn stonith_fires_once_after_the_agent_failed_and_its_success_fences() {
    let mut r = FenceRound::new(site("a"), 2, 0, 3, true);
    r.work(0);
    assert!(r.agent_answered(0, Err("unreachable".into())).is_none());
    assert_eq!(r.work(0), vec![FenceWork::FireStonith]);
    assert_eq!(r.work(0), vec![], "no agent ask while the hook runs");
    assert!(r.stonith_answered(Err("hook exit 1".into())).is_none());
    assert_eq!(r.work(AGENT_RETRY_MS), vec![FenceWork::AskAgent]);
    assert!(r
        .agent_answered(AGENT_RETRY_MS, Err("unreachable".into()))
        .is_none());
    assert_eq!(
        r.work(2 * AGENT_RETRY_MS),
        vec![FenceWork::AskAgent],
        "the hook fires once"
    );

    let mut r = FenceRound::new(site("a"), 2, 0, 3, true);
    r.work(0);
    r.agent_answered(0, Err("unreachable".into()));
    r.work(0);
    assert!(matches!(
        r.stonith_answered(Ok("powered off".into())),
        Some(FenceVerdict::ByStonith { .. })
    ));
}

#[test]
fn a_proven_expiry_waits_for_a_hook_under_way_and_stands_if_it_fails() {
    let fired = || {
        let mut r = FenceRound::new(site("a"), 2, 0, 3, true);
        r.work(0);
        r.agent_answered(0, Err("unreachable".into()));
        assert_eq!(r.work(0), vec![FenceWork::FireStonith]);
        r
    };
    let mut r = fired();
    assert!(r.expiry(2, Expiry::Expired).is_none());
    assert!(
        r.expiry(3, Expiry::Expired).is_none(),
        "the hook is under way"
    );
    assert!(matches!(
        r.stonith_answered(Ok("powered off".into())),
        Some(FenceVerdict::ByStonith { .. })
    ));
    let mut r = fired();
    r.expiry(2, Expiry::Expired);
    r.expiry(3, Expiry::Expired);
    assert!(matches!(
        r.stonith_answered(Err("exit 1".into())),
        Some(FenceVerdict::ByLeaseExpiry { .. })
    ));
}

#[test]
fn without_a_hook_the_agent_is_asked_again_after_a_pause() {
    let mut r = FenceRound::new(site("a"), 2, 0, 3, false);
    r.work(0);
    r.agent_answered(10, Err("unreachable".into()));
    // An unreachable agent answers at once: asking again at once spun.
    assert_eq!(r.work(10), vec![], "not at once");
    assert_eq!(r.work(10 + AGENT_RETRY_MS - 1), vec![]);
    assert_eq!(r.work(10 + AGENT_RETRY_MS), vec![FenceWork::AskAgent]);
}

#[test]
fn a_majority_of_expired_answers_fences_and_fewer_do_not() {
    let mut r = FenceRound::new(site("a"), 2, 0, 3, false);
    assert!(r.expiry(1, Expiry::Expired).is_none());
    assert!(r
        .expiry(
            2,
            Expiry::StillGranting {
                reason: "lags".into()
            }
        )
        .is_none());
    assert!(r.expiry(3, Expiry::NotYet { remaining_ms: 5 }).is_none());
    let v = r.expiry(3, Expiry::Expired).cloned();
    assert!(
        matches!(&v, Some(FenceVerdict::ByLeaseExpiry { vouching, .. }) if *vouching == vec![1, 3]),
        "{v:?}"
    );
    assert!(r.detail(2400, 1650).unwrap().contains("within 2400 ms"));
}

/// An event the runtime may feed a fence round.
#[derive(Clone, Debug)]
enum FenceEvent {
    Agent(bool),
    Stonith(bool),
    Expiry(NodeId, u8),
}

fn fence_event() -> impl Strategy<Value = FenceEvent> {
    prop_oneof![
        any::<bool>().prop_map(FenceEvent::Agent),
        any::<bool>().prop_map(FenceEvent::Stonith),
        (1u64..=3, 0u8..3).prop_map(|(w, e)| FenceEvent::Expiry(w, e)),
    ]
}

proptest! {
    /// Whatever order answers come in (duplicated, late, after others),
    /// the fence is proven only by the agent's or the hook's confirmation
    /// of work that was asked for, or by a majority of distinct witnesses
    /// answering `Expired`; and the first proof stands.
    #[test]
    fn the_fence_is_proven_only_by_a_confirmation_or_a_majority(
        events in proptest::collection::vec(fence_event(), 0..40),
        hook in any::<bool>(),
    ) {
        let mut r = FenceRound::new(site("a"), 2, 0, 3, hook);
        let mut agent_out = false;
        let mut stonith_out = false;
        let mut stonith_fired = 0;
        let mut expired = std::collections::BTreeSet::new();
        let mut first: Option<FenceVerdict> = None;
        for e in events {
            for w in r.work(0) {
                match w {
                    FenceWork::AskAgent => { prop_assert!(!agent_out); agent_out = true }
                    FenceWork::FireStonith => {
                        prop_assert!(hook, "no hook configured");
                        stonith_fired += 1;
                        stonith_out = true;
                    }
                }
            }
            let before = r.verdict().cloned();
            match e {
                // Only answers to work that was started reach the round.
                FenceEvent::Agent(ok) if agent_out => {
                    agent_out = false;
                    let v = r.agent_answered(0, if ok { Ok("stopped".into()) } else { Err("no".into()) }).cloned();
                    if before.is_none() && ok {
                        let by_agent = matches!(v, Some(FenceVerdict::ByAgent { .. }));
                        prop_assert!(by_agent);
                    }
                }
                FenceEvent::Stonith(ok) if stonith_out => {
                    stonith_out = false;
                    let v = r.stonith_answered(if ok { Ok("off".into()) } else { Err("no".into()) }).cloned();
                    if before.is_none() && ok {
                        let by_hook = matches!(v, Some(FenceVerdict::ByStonith { .. }));
                        prop_assert!(by_hook);
                    }
                }
                FenceEvent::Expiry(w, k) => {
                    let answer = match k {
                        0 => Expiry::Expired,
                        1 => Expiry::NotYet { remaining_ms: 10 },
                        _ => Expiry::StillGranting { reason: "lags".into() },
                    };
                    if answer == Expiry::Expired { expired.insert(w); }
                    let v = r.expiry(w, answer).cloned();
                    if before.is_none() {
                        if let Some(FenceVerdict::ByLeaseExpiry { vouching, .. }) = &v {
                            prop_assert!(vouching.len() >= 2);
                            prop_assert!(vouching.iter().all(|w| expired.contains(w)));
                        } else {
                            prop_assert!(v.is_none() || expired.len() < 2);
                        }
                    }
                }
                _ => {}
            }
            if let Some(f) = &first {
                prop_assert_eq!(Some(f), r.verdict(), "a later proof replaced the first");
            }
            first = r.verdict().cloned();
            prop_assert!(stonith_fired <= 1, "the hook fired {} times", stonith_fired);
        }
    }
}

// ---- the step machine against the replicated state ----

/// A result the runtime may report for a step's work.
#[derive(Clone, Debug)]
enum Outcome_ {
    Done { with_lsn: bool, failed_check: bool },
    Retry,
    Abort,
}

fn step_result() -> impl Strategy<Value = Outcome_> {
    prop_oneof![
        4 => (any::<bool>(), any::<bool>()).prop_map(|(with_lsn, failed_check)| Outcome_::Done { with_lsn, failed_check }),
        2 => Just(Outcome_::Retry),
        1 => Just(Outcome_::Abort),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Failover),
        Just(Kind::Switchover),
        Just(Kind::Failback)
    ]
}

fn apply(state: &mut ClusterState, index: &mut u64, c: Command) -> CommandResult {
    *index += 1;
    state.apply(*index, &c)
}

proptest! {
    /// Any sequence of step results, with the leader changing at any point
    /// (a new leader knows only the record): every command the executor
    /// settles on is accepted by the replicated state machine, the
    /// failover ends, an abort happens only before promotion, a promotion
    /// only after a recorded fence, and a handover's promotion only after
    /// the clean shutdown's final checkpoint and a catch-up past it.
    #[test]
    fn the_step_machine_ends_every_failover_safely(
        kind in kind(),
        results in proptest::collection::vec(step_result(), 1..60),
    ) {
        let mut state = ClusterState::default();
        let mut index = 0;
        apply(&mut state, &mut index, Command::InitDatabase { primary: site("a"), standby: site("b") });
        let mut f = failover(kind);
        f.epoch = state.epoch + 1;
        let epoch = f.epoch;
        let begun = apply(&mut state, &mut index, Command::BeginFailover(Box::new(f)));
        prop_assert!(matches!(begun, CommandResult::Applied), "{:?}", begun);
        let mut results = results.into_iter();
        let mut clock = 0i64;
        while let Some(f) = state.failover.clone() {
            let (step, work) = match next(&f) {
                Next::Finish(outcome) => {
                    let aborted = matches!(outcome, Outcome::Aborted { .. });
                    prop_assert!(!aborted);
                    let r = apply(&mut state, &mut index, Command::FinishFailover { epoch, outcome, at_ms: clock });
                    prop_assert!(matches!(r, CommandResult::Applied), "{:?}", r);
                    continue;
                }
                Next::Abort { reason } => {
                    prop_assert!(!f.is_done(Step::Promoted));
                    let r = apply(&mut state, &mut index, Command::FinishFailover { epoch, outcome: Outcome::Aborted { reason }, at_ms: clock });
                    prop_assert!(matches!(r, CommandResult::Applied), "{:?}", r);
                    continue;
                }
                Next::Run { step, work } => (step, work),
            };
            match &work {
                Work::Promote { .. } => {
                    prop_assert!(!kind.is_planned());
                    prop_assert!(f.is_done(Step::Fenced));
                }
                Work::CatchUpThenPromote { final_lsn, .. } => {
                    prop_assert!(kind.is_planned());
                    prop_assert_eq!(Some(*final_lsn), f.steps[0].lsn);
                }
                Work::FlipApps { .. } | Work::Repoint { .. } | Work::Verify { .. } => {
                    prop_assert!(f.is_done(Step::Promoted));
                }
                Work::Fence { .. } => prop_assert!(!kind.is_planned()),
                Work::ShutDownCleanly { .. } => prop_assert!(kind.is_planned()),
            }
            // Results run out: everything from here on succeeds.
            let r = results.next().unwrap_or(Outcome_::Done { with_lsn: true, failed_check: false });
            let result = match r {
                Outcome_::Done { with_lsn, failed_check } => StepResult::Done {
                    detail: "done".into(),
                    lsn: with_lsn.then_some(0x3000000),
                    checks: if step == Step::Verified {
                        vec![Check { name: "x".into(), ok: !failed_check, detail: String::new() }]
                    } else { vec![] },
                },
                Outcome_::Retry => StepResult::Retry { reason: "later".into() },
                Outcome_::Abort => StepResult::Abort { reason: "cannot".into() },
            };
            clock += 10;
            match settle(&f, step, clock - 5, clock, result) {
                Settle::Record(rec) => {
                    let r = apply(&mut state, &mut index, Command::StepDone { epoch, record: rec });
                    prop_assert!(matches!(r, CommandResult::Applied), "{:?}", r);
                }
                Settle::Finish(outcome) => {
                    let aborted = matches!(outcome, Outcome::Aborted { .. });
                    prop_assert!(aborted);
                    prop_assert!(!f.is_done(Step::Promoted) && step <= Step::Promoted);
                    let r = apply(&mut state, &mut index, Command::FinishFailover { epoch, outcome, at_ms: clock });
                    prop_assert!(matches!(r, CommandResult::Applied), "{:?}", r);
                }
                Settle::RetryLater { .. } => {}
            }
            prop_assert!(index < 500, "the failover did not end");
        }
        let done = state.history.last().expect("finished into the history");
        let promoted = done.is_done(Step::Promoted);
        let db = state.db.as_ref().expect("roles recorded");
        prop_assert_eq!(&db.primary, if promoted { &done.to } else { &done.from });
        if kind.is_planned() && promoted {
            prop_assert!(done.steps[0].lsn.is_some());
        }
    }
}
