use proptest::prelude::*;

use super::*;
use crate::failover::{Evidence, StepRecord, Trigger};

fn site(s: &str) -> SiteId {
    SiteId(s.into())
}

fn note(i: i64) -> Command {
    Command::Annotate {
        at_unix_ms: i,
        author: "ops".into(),
        text: format!("note {i}"),
    }
}

fn init() -> Command {
    Command::InitDatabase {
        primary: site("a"),
        standby: site("b"),
    }
}

fn begin(epoch: u64, from: &str, to: &str) -> Command {
    Command::BeginFailover(Box::new(Failover {
        kind: Default::default(),
        epoch,
        from: site(from),
        to: site(to),
        trigger: Trigger::Automatic,
        reason: "test".into(),
        evidence: Evidence::default(),
        started_at_ms: 0,
        steps: vec![],
        outcome: None,
        finished_at_ms: None,
    }))
}

fn step(epoch: u64, step: Step) -> Command {
    Command::StepDone {
        epoch,
        record: StepRecord {
            lsn: None,
            step,
            started_at_ms: 1,
            done_at_ms: 2,
            detail: String::new(),
        },
    }
}

fn finish(epoch: u64, outcome: Outcome) -> Command {
    Command::FinishFailover {
        epoch,
        outcome,
        at_ms: 3,
    }
}

fn apply_all(cmds: &[Command]) -> (ClusterState, Vec<CommandResult>) {
    let mut s = ClusterState::default();
    let results = cmds
        .iter()
        .enumerate()
        .map(|(i, c)| s.apply(i as u64 + 1, c))
        .collect();
    (s, results)
}

#[test]
fn annotate_appends_in_log_order() {
    let mut s = ClusterState::default();
    assert_eq!(
        s.apply(3, &note(1)),
        CommandResult::Annotated { log_index: 3 }
    );
    assert_eq!(
        s.apply(5, &note(2)),
        CommandResult::Annotated { log_index: 5 }
    );
    assert_eq!(
        s.journal.iter().map(|e| e.log_index).collect::<Vec<_>>(),
        vec![3, 5]
    );
    assert_eq!(s.journal[1].text, "note 2");
}

#[test]
fn a_whole_failover_moves_the_primary_and_raises_the_epoch_once() {
    let mut cmds = vec![init(), begin(1, "a", "b")];
    cmds.extend(Step::ALL.iter().map(|s| step(1, *s)));
    cmds.push(finish(1, Outcome::Completed));
    let (s, r) = apply_all(&cmds);
    assert!(r.iter().all(|x| *x == CommandResult::Applied), "{r:?}");
    assert_eq!(s.epoch, 1);
    let db = s.db.clone().expect("roles");
    assert_eq!(
        (
            db.primary.0.as_str(),
            db.standby.0.as_str(),
            db.standby_needs_rejoin
        ),
        ("b", "a", true)
    );
    assert!(s.failover.is_none());
    assert_eq!(s.history.len(), 1);
    assert_eq!(
        s.history[0]
            .steps
            .iter()
            .map(|x| x.step)
            .collect::<Vec<_>>(),
        Step::ALL.to_vec()
    );
    assert_eq!(
        s.desired_role(&site("b")),
        Some(DesiredRole::Primary { epoch: 1 })
    );
    assert_eq!(
        s.desired_role(&site("a")),
        Some(DesiredRole::Rejoin { epoch: 1 }),
        "old primary stays fenced, to be rebuilt, until it rejoins"
    );
    assert_eq!(s.desired_role(&site("c")), None);
    assert_eq!(
        (
            s.desired_monitors(&site("a")),
            s.desired_monitors(&site("b"))
        ),
        (Some(false), Some(true))
    );
}

#[test]
fn monitors_are_off_on_both_sites_until_the_flip_is_recorded() {
    let mut cmds = vec![init()];
    let (s, _) = apply_all(&cmds);
    assert_eq!(
        (
            s.desired_monitors(&site("a")),
            s.desired_monitors(&site("b"))
        ),
        (Some(true), Some(false))
    );
    cmds.extend([
        begin(1, "a", "b"),
        step(1, Step::Fenced),
        step(1, Step::Promoted),
    ]);
    let (s, _) = apply_all(&cmds);
    assert_eq!(
        (
            s.desired_monitors(&site("a")),
            s.desired_monitors(&site("b"))
        ),
        (Some(false), Some(false))
    );
    cmds.push(step(1, Step::AppFlipped));
    let (s, _) = apply_all(&cmds);
    assert_eq!(
        (
            s.desired_monitors(&site("a")),
            s.desired_monitors(&site("b"))
        ),
        (Some(false), Some(true))
    );
}

#[test]
fn a_step_is_recorded_once_and_only_in_order() {
    let (s, r) = apply_all(&[
        init(),
        begin(1, "a", "b"),
        step(1, Step::Promoted),
        step(1, Step::Fenced),
        step(1, Step::Fenced),
    ]);
    assert!(
        matches!(r[2], CommandResult::Rejected { .. }),
        "promote before fence is refused"
    );
    assert_eq!(r[3], CommandResult::Applied);
    assert!(
        matches!(r[4], CommandResult::Rejected { .. }),
        "second fence record is refused"
    );
    assert_eq!(s.failover.expect("in progress").steps.len(), 1);
}

#[test]
fn stale_epochs_and_second_failovers_are_refused() {
    let (s, r) = apply_all(&[
        init(),
        begin(1, "a", "b"),
        begin(2, "a", "b"),
        step(7, Step::Fenced),
        begin(1, "a", "b"),
    ]);
    assert!(
        matches!(r[2], CommandResult::Rejected { .. }),
        "one failover at a time"
    );
    assert!(
        matches!(r[3], CommandResult::Rejected { .. }),
        "step of another epoch"
    );
    assert!(matches!(r[4], CommandResult::Rejected { .. }));
    assert_eq!(s.epoch, 1);
}

#[test]
fn abort_only_before_promotion_and_roles_stay() {
    let (s, r) = apply_all(&[
        init(),
        begin(1, "a", "b"),
        step(1, Step::Fenced),
        finish(
            1,
            Outcome::Aborted {
                reason: "lag".into(),
            },
        ),
    ]);
    assert_eq!(r[3], CommandResult::Applied);
    assert_eq!(s.db.as_ref().expect("roles").primary, site("a"));
    assert_eq!(
        s.desired_role(&site("a")),
        Some(DesiredRole::Primary { epoch: 1 }),
        "the old primary regains the role under the new epoch"
    );
    let (_, r) = apply_all(&[
        init(),
        begin(1, "a", "b"),
        step(1, Step::Fenced),
        step(1, Step::Promoted),
        finish(1, Outcome::Aborted { reason: "x".into() }),
    ]);
    assert!(
        matches!(r[4], CommandResult::Rejected { .. }),
        "no abort after promotion"
    );
}

#[test]
fn no_second_failover_until_the_old_primary_rejoined() {
    let mut cmds = vec![init(), begin(1, "a", "b")];
    cmds.extend(Step::ALL.iter().map(|s| step(1, *s)));
    cmds.push(finish(1, Outcome::Completed));
    cmds.push(begin(2, "b", "a"));
    let (_, r) = apply_all(&cmds);
    assert!(
        matches!(r.last(), Some(CommandResult::Rejected { .. })),
        "{r:?}"
    );
}

fn pause() -> Command {
    Command::Pause {
        by: "ops".into(),
        reason: String::new(),
        at_ms: 0,
        until_ms: None,
    }
}

fn resume() -> Command {
    Command::Resume {
        by: "ops".into(),
        at_ms: 0,
    }
}

fn rejoined(s: &str, epoch: u64) -> Command {
    Command::StandbyRejoined {
        site: site(s),
        epoch,
        at_ms: 0,
    }
}

#[test]
fn paused_clusters_begin_no_failover_until_resumed() {
    let (s, r) = apply_all(&[init(), pause(), begin(1, "a", "b")]);
    assert!(
        matches!(&r[2], CommandResult::Rejected { reason } if reason.contains("paused")),
        "{r:?}"
    );
    assert_eq!(s.epoch, 0);
    let (s, r) = apply_all(&[init(), pause(), resume(), begin(1, "a", "b")]);
    assert_eq!(r[3], CommandResult::Applied);
    assert_eq!(s.epoch, 1);
    // A pause that has ended by the time the failover is planned does not
    // block it.
    let timed = Command::Pause {
        by: "ops".into(),
        reason: "window".into(),
        at_ms: 0,
        until_ms: Some(10),
    };
    let mut late = begin(1, "a", "b");
    if let Command::BeginFailover(f) = &mut late {
        f.started_at_ms = 10;
    }
    let (s, _) = apply_all(&[init(), timed, late]);
    assert_eq!(s.epoch, 1);
    // Resume when not paused is refused, and says so.
    let (_, r) = apply_all(&[init(), resume()]);
    assert!(matches!(&r[1], CommandResult::Rejected { reason } if reason.contains("not paused")));
}

#[test]
fn a_rejoin_is_recorded_once_and_makes_the_site_a_standby_again() {
    let mut cmds = vec![init(), begin(1, "a", "b")];
    cmds.extend(Step::ALL.iter().map(|s| step(1, *s)));
    cmds.push(finish(1, Outcome::Completed));
    cmds.push(rejoined("b", 1));
    cmds.push(rejoined("a", 0));
    cmds.push(rejoined("a", 1));
    cmds.push(rejoined("a", 1));
    let (s, r) = apply_all(&cmds);
    let n = r.len();
    assert!(
        matches!(r[n - 4], CommandResult::Rejected { .. }),
        "b is the primary"
    );
    assert!(
        matches!(r[n - 3], CommandResult::Rejected { .. }),
        "stale epoch"
    );
    assert_eq!(r[n - 2], CommandResult::Applied);
    assert!(
        matches!(r[n - 1], CommandResult::Rejected { .. }),
        "only once"
    );
    assert_eq!(s.desired_role(&site("a")), Some(DesiredRole::Standby));
    assert_eq!(s.rejoins.len(), 1);
    assert_eq!(s.rejoins[0].primary, site("b"));
}

fn any_command() -> impl Strategy<Value = Command> {
    let sites = prop_oneof![Just("a"), Just("b")];
    prop_oneof![
        Just(pause()),
        Just(resume()),
        (sites.clone(), 0u64..5).prop_map(|(s, e)| rejoined(s, e)),
        (0i64..5).prop_map(note),
        Just(init()),
        (0u64..5, sites.clone(), sites).prop_map(|(e, f, t)| begin(e, f, t)),
        (
            0u64..5,
            prop_oneof![
                Just(Step::Fenced),
                Just(Step::Promoted),
                Just(Step::Verified)
            ]
        )
            .prop_map(|(e, s)| step(e, s)),
        (
            0u64..5,
            prop_oneof![
                Just(Outcome::Completed),
                Just(Outcome::Aborted { reason: "r".into() })
            ]
        )
            .prop_map(|(e, o)| finish(e, o)),
    ]
}

proptest! {
    /// Whatever mix of commands arrives (duplicates, stale epochs, out of
    /// order), the state machine keeps its invariants: the epoch never
    /// falls, at most one site is desired primary, steps are in order and
    /// unique, and the primary moves only with a recorded promotion.
    #[test]
    fn step_machine_invariants(cmds in proptest::collection::vec(any_command(), 0..60)) {
        let mut s = ClusterState::default();
        let mut last_epoch = 0;
        for (i, c) in cmds.iter().enumerate() {
            let before = s.clone();
            s.apply(i as u64 + 1, c);
            prop_assert!(s.epoch >= last_epoch);
            if before.paused(0).is_some() {
                prop_assert_eq!(s.epoch, before.epoch, "no failover begins while paused");
            }
            last_epoch = s.epoch;
            let primaries = ["a", "b"].iter()
                .filter(|x| matches!(s.desired_role(&site(x)), Some(DesiredRole::Primary { .. })))
                .count();
            prop_assert!(primaries <= 1, "two desired primaries after {c:?}");
            let monitors = ["a", "b"].iter().filter(|x| s.desired_monitors(&site(x)) == Some(true)).count();
            prop_assert!(monitors <= 1, "two apps with monitorsEnabled after {c:?}");
            for f in s.history.iter().chain(s.failover.iter()) {
                let steps: Vec<Step> = f.steps.iter().map(|x| x.step).collect();
                prop_assert_eq!(&steps[..], &Step::ALL[..steps.len()]);
            }
            if let (Some(b), Some(a)) = (&before.db, &s.db) {
                if b.primary != a.primary {
                    let promoted = matches!(c, Command::StepDone { record, .. } if record.step == Step::Promoted);
                    prop_assert!(promoted, "primary moved without a promotion");
                }
            }
        }
    }

    /// Two replicas that apply the same log end equal, and a snapshot
    /// (serialize + restore) mid-way changes nothing.
    #[test]
    fn replicas_converge_through_snapshots(cmds in proptest::collection::vec(any_command(), 0..40), cut in 0usize..40) {
        let mut a = ClusterState::default();
        let mut b = ClusterState::default();
        for (i, c) in cmds.iter().enumerate() {
            if i == cut {
                let bytes = serde_json::to_vec(&b).expect("serialize");
                b = serde_json::from_slice(&bytes).expect("deserialize");
            }
            let idx = i as u64 + 1;
            prop_assert_eq!(a.apply(idx, c), b.apply(idx, c));
        }
        prop_assert_eq!(a, b);
    }
}
