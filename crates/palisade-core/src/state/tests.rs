use proptest::prelude::*;

use super::*;
use crate::failover::{Evidence, StepRecord, Trigger};
use crate::state::requests::RequestLog;

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
            checks: vec![],
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
    let plain = any_plain_command();
    prop_oneof![
        3 => plain.clone(),
        1 => (0usize..4, plain.prop_filter("operator requests only", |c| c.request_kind().is_some()), any::<bool>()).prop_map(|(i, c, force)| {
            let pause = matches!(c, Command::Pause { .. });
            let mut r = requested(ID_POOL[i], c);
            if let Command::Requested { refuse_if_paused, .. } = &mut r {
                *refuse_if_paused = pause && !force;
            }
            r
        }),
        1 => (0usize..4, 1u64..4, sites.clone(), sites)
            .prop_map(|(i, e, f, t)| requested(ID_POOL[i], operator_begin(e, f, t))),
    ]
}

fn any_plain_command() -> impl Strategy<Value = Command> + Clone {
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

/// Request ids the property tests draw from, so that retries happen.
const ID_POOL: [&str; 4] = [
    "20231114T221320.000Z-aaaaaaaa",
    "20231114T221320.001Z-bbbbbbbb",
    "20231114T221321.000Z-cccccccc",
    "20231114T221400.000Z-dddddddd",
];

/// When the requests of [`ID_POOL`] reach the leader: a second after the
/// first was issued.
const ACCEPTED_MS: i64 = 1_700_000_001_000;

fn requested(id: &str, command: Command) -> Command {
    Command::Requested {
        id: id.into(),
        at_ms: ACCEPTED_MS,
        refuse_if_paused: false,
        detail: String::new(),
        command: Box::new(command),
    }
}

fn operator_begin(epoch: u64, from: &str, to: &str) -> Command {
    let mut c = begin(epoch, from, to);
    if let Command::BeginFailover(f) = &mut c {
        f.kind = crate::Kind::Switchover;
        f.trigger = Trigger::Operator {
            who: "alice".into(),
        };
    }
    c
}

#[test]
fn a_request_applies_once_and_a_retry_gets_the_first_result() {
    let id = ID_POOL[0];
    let mut s = ClusterState::default();
    let first = s.apply(4, &requested(id, note(1)));
    assert_eq!(first, CommandResult::Annotated { log_index: 4 });
    // The same request again (the client timed out and retried, or the
    // leader proposed it twice): nothing is added, the first result comes
    // back.
    let again = s.apply(9, &requested(id, note(2)));
    let CommandResult::Duplicate { record } = &again else {
        panic!("{again:?}")
    };
    assert_eq!(record.result, CommandResult::Annotated { log_index: 4 });
    assert_eq!((record.log_index, record.kind.as_str()), (4, "annotate"));
    assert_eq!(s.journal.len(), 1);
    assert_eq!(s.journal[0].request_id.as_deref(), Some(id));
    // The same id for another kind of request is refused, not a duplicate.
    let other = s.apply(10, &requested(id, pause()));
    assert!(
        matches!(&other, CommandResult::Rejected { reason } if reason.contains("already used for another request (annotate by ops")),
        "{other:?}"
    );
    assert!(s.maintenance.is_none());
}

#[test]
fn a_timed_out_pause_committed_later_and_retried_pauses_once() {
    // The defect of issue 11: `pause` timed out at the client (two
    // witnesses down), was committed when they came back, and a retry
    // paused again. With the request id the retry is a duplicate.
    let id = ID_POOL[1];
    let (s, r) = apply_all(&[init(), requested(id, pause()), requested(id, pause())]);
    assert_eq!(r[1], CommandResult::Applied);
    assert!(matches!(&r[2], CommandResult::Duplicate { record } if record.log_index == 2));
    assert_eq!(s.maintenance_log.len(), 1, "{:?}", s.maintenance_log);
    let e = &s.maintenance_log[0];
    assert_eq!(
        (
            e.kind.as_str(),
            e.by.as_str(),
            e.log_index,
            e.request_id.as_deref()
        ),
        ("paused", "ops", 2, Some(id))
    );
    // A resume with its own id is recorded too; its retry is a duplicate
    // (not "the cluster is not paused").
    let rid = ID_POOL[2];
    let (s, r) = apply_all(&[
        init(),
        requested(id, pause()),
        requested(rid, resume()),
        requested(rid, resume()),
    ]);
    assert_eq!(r[2], CommandResult::Applied);
    assert!(
        matches!(&r[3], CommandResult::Duplicate { record } if record.result == CommandResult::Applied)
    );
    assert_eq!(
        s.maintenance_log
            .iter()
            .map(|e| e.kind.as_str())
            .collect::<Vec<_>>(),
        ["paused", "resumed"]
    );
}

#[test]
fn a_retried_operation_begins_once_and_names_its_epoch() {
    let id = ID_POOL[3];
    // The retry was computed on the state after the first one began, so
    // it asks for the next epoch: still a duplicate, not a second
    // switchover.
    let (s, r) = apply_all(&[
        init(),
        requested(id, operator_begin(1, "a", "b")),
        requested(id, operator_begin(2, "a", "b")),
    ]);
    assert_eq!(r[1], CommandResult::Applied);
    let CommandResult::Duplicate { record } = &r[2] else {
        panic!("{r:?}")
    };
    assert_eq!(record.epoch, Some(1));
    assert_eq!(record.summary, "switchover a -> b");
    assert_eq!(record.who, "alice");
    assert_eq!(s.epoch, 1);
    assert_eq!(s.operation_requests.get(&1).map(String::as_str), Some(id));
    // A rejected request is remembered as rejected: its retry gets the
    // same refusal and changes nothing either.
    let (s, r) = apply_all(&[
        init(),
        requested(id, operator_begin(5, "a", "b")),
        requested(id, operator_begin(1, "a", "b")),
    ]);
    assert!(matches!(&r[1], CommandResult::Rejected { .. }));
    assert!(
        matches!(&r[2], CommandResult::Duplicate { record } if matches!(record.result, CommandResult::Rejected { .. }))
    );
    assert_eq!(s.epoch, 0);
}

#[test]
fn pause_without_force_is_refused_on_a_paused_cluster_naming_who_paused() {
    let mut unforced = requested(ID_POOL[1], pause());
    if let Command::Requested {
        refuse_if_paused, ..
    } = &mut unforced
    {
        *refuse_if_paused = true;
    }
    let mut bob = pause();
    if let Command::Pause { by, reason, .. } = &mut bob {
        *by = "bob".into();
        *reason = "kernel update".into();
    }
    let (s, r) = apply_all(&[init(), requested(ID_POOL[0], bob), unforced.clone()]);
    assert!(
        matches!(&r[2], CommandResult::Rejected { reason }
            if reason.contains("already paused by bob") && reason.contains("kernel update") && reason.contains("--force")),
        "{r:?}"
    );
    assert_eq!(s.maintenance.as_ref().map(|m| m.by.as_str()), Some("bob"));
    // Unpaused, the same request pauses; forced, it replaces the pause.
    let (s, r) = apply_all(&[init(), unforced]);
    assert_eq!(r[1], CommandResult::Applied);
    assert!(s.maintenance.is_some());
    let (s, r) = apply_all(&[
        init(),
        requested(ID_POOL[0], pause()),
        requested(ID_POOL[2], resume()),
        requested(ID_POOL[1], pause()),
    ]);
    assert!(
        r.iter().skip(1).all(|x| *x == CommandResult::Applied),
        "{r:?}"
    );
    assert!(s.maintenance.is_some());
}

#[test]
fn a_request_too_old_to_tell_is_refused_not_applied() {
    let old = "20231113T221320.000Z-aaaaaaaa"; // a day and a second before
    let (s, r) = apply_all(&[requested(old, note(1))]);
    assert!(
        matches!(&r[0], CommandResult::Rejected { reason } if reason.contains("cannot tell whether it was already applied")),
        "{r:?}"
    );
    assert!(s.journal.is_empty());
    let bad = requested("not-an-id", note(1));
    assert_eq!(bad.validate().expect_err("bad id").field, "request_id");
    let nested = requested(ID_POOL[0], requested(ID_POOL[1], note(1)));
    assert_eq!(nested.validate().expect_err("nested").field, "command");
    let internal = requested(ID_POOL[0], init());
    assert_eq!(internal.validate().expect_err("init").field, "command");
}

#[test]
fn snapshots_from_before_request_ids_still_load() {
    // A state as an older witness serialized it: no request fields.
    let old = r#"{"journal":[{"log_index":3,"at_unix_ms":1,"author":"ops","text":"hi"}],
        "db":null,"epoch":0,"failover":null,"history":[],"maintenance":null,"drills":[],"rejoins":[]}"#;
    let s: ClusterState = serde_json::from_str(old).expect("old snapshot");
    assert_eq!(s.journal[0].request_id, None);
    assert_eq!(s.requests, RequestLog::default());
    assert!(s.maintenance_log.is_empty() && s.operation_requests.is_empty());
}

#[test]
fn request_wire_format_is_stable() {
    // The log on disk holds this JSON: changing it breaks upgrades.
    let json = serde_json::to_string(&requested(ID_POOL[0], resume())).expect("json");
    assert_eq!(
        json,
        r#"{"type":"requested","id":"20231114T221320.000Z-aaaaaaaa","at_ms":1700000001000,"command":{"type":"resume","by":"ops","at_ms":0}}"#
    );
}

proptest! {
    /// Whatever the order and the retries, each request id takes effect
    /// at most once: one journal entry, one pause or resume, one begun
    /// operation; and a duplicate carries exactly what the first one
    /// returned.
    #[test]
    fn each_request_id_takes_effect_at_most_once(cmds in proptest::collection::vec(any_command(), 0..60)) {
        let mut s = ClusterState::default();
        let mut first: std::collections::BTreeMap<String, CommandResult> = Default::default();
        for (i, c) in cmds.iter().enumerate() {
            let r = s.apply(i as u64 + 1, c);
            if let Command::Requested { id, .. } = c {
                match (&r, first.get(id)) {
                    (CommandResult::Duplicate { record }, Some(was)) => {
                        prop_assert_eq!(&record.result, was);
                    }
                    (CommandResult::Duplicate { .. }, None) => {
                        prop_assert!(false, "duplicate of an unseen id {}", id);
                    }
                    (CommandResult::Rejected { reason }, Some(_)) => {
                        prop_assert!(reason.contains("already used"), "{}", reason);
                    }
                    (_, Some(was)) => prop_assert!(false, "{} applied twice: {:?} then {:?}", id, was, r),
                    (_, None) => { first.insert(id.clone(), r.clone()); }
                }
            }
            for id in ID_POOL {
                let notes = s.journal.iter().filter(|e| e.request_id.as_deref() == Some(id)).count();
                let maint = s.maintenance_log.iter().filter(|e| e.request_id.as_deref() == Some(id)).count();
                let ops = s.operation_requests.values().filter(|v| v.as_str() == id).count();
                prop_assert!(notes + maint + ops <= 1, "{} took effect {} times", id, notes + maint + ops);
            }
        }
    }
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
