//! Cluster events for `palisadectl watch`: what changed between two
//! applied states, in words. Pure, so every witness streams the same events
//! for the same log, whichever states it happens to sample.

use crate::failover::{Failover, Outcome, Trigger};
use crate::state::ClusterState;

/// One thing that happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// When, from the record (leader wall clock, Unix ms); 0 when unknown.
    pub at_ms: i64,
    /// `operation_started`, `step_done`, `operation_finished`, `paused`,
    /// `resumed`, `rejoined`, `roles`, `note`, `drill`.
    pub kind: &'static str,
    /// Epoch it belongs to (0: none).
    pub epoch: u64,
    /// One line for people.
    pub text: String,
}

fn trigger(t: &Trigger) -> String {
    match t {
        Trigger::Automatic => "automatic".into(),
        Trigger::Operator { who } => format!("operator {who}"),
    }
}

/// The outcome in words.
pub fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Completed => "completed".into(),
        Outcome::CompletedWithFailedChecks { failed } => {
            format!("completed with failed checks: {}", failed.join("; "))
        }
        Outcome::Aborted { reason } => format!("aborted: {reason}"),
    }
}

fn started(f: &Failover) -> Event {
    Event {
        at_ms: f.started_at_ms,
        kind: "operation_started",
        epoch: f.epoch,
        text: format!(
            "{} {} → {} began ({}): {}",
            f.kind.name(),
            f.from,
            f.to,
            trigger(&f.trigger),
            f.reason
        ),
    }
}

/// Steps of `f` from index `from` on.
fn steps_from(f: &Failover, from: usize, out: &mut Vec<Event>) {
    for s in f.steps.iter().skip(from) {
        out.push(Event {
            at_ms: s.done_at_ms,
            kind: "step_done",
            epoch: f.epoch,
            text: format!(
                "{} {}: {} in {} ms: {}",
                f.kind.name(),
                f.epoch,
                s.step.name(),
                s.done_at_ms - s.started_at_ms,
                s.detail
            ),
        });
    }
}

fn finished(f: &Failover) -> Event {
    Event {
        at_ms: f.finished_at_ms.unwrap_or(0),
        kind: "operation_finished",
        epoch: f.epoch,
        text: format!(
            "{} {} → {} {} in {} ms",
            f.kind.name(),
            f.from,
            f.to,
            f.outcome
                .as_ref()
                .map(outcome_text)
                .unwrap_or_else(|| "finished".into()),
            f.finished_at_ms.unwrap_or(f.started_at_ms) - f.started_at_ms
        ),
    }
}

/// What happened between `old` and `new` (a later state of the same log).
pub fn between(old: &ClusterState, new: &ClusterState) -> Vec<Event> {
    let mut out = Vec::new();
    for e in new.journal.iter().skip(old.journal.len()) {
        out.push(Event {
            at_ms: e.at_unix_ms,
            kind: "note",
            epoch: new.epoch,
            text: format!("{}: {}", e.author, e.text),
        });
    }
    // Operations: those finished since, then the one in progress. An
    // operation's steps already seen in `old` are not repeated.
    let seen_steps = |epoch: u64| -> Option<usize> {
        old.failover
            .as_ref()
            .filter(|f| f.epoch == epoch)
            .map(|f| f.steps.len())
            .or_else(|| {
                old.history
                    .iter()
                    .find(|f| f.epoch == epoch)
                    .map(|f| f.steps.len())
            })
    };
    let done_before = old.history.len();
    for f in new.history.iter().skip(done_before) {
        let seen = seen_steps(f.epoch);
        if seen.is_none() {
            out.push(started(f));
        }
        steps_from(f, seen.unwrap_or(0), &mut out);
        out.push(finished(f));
    }
    if let Some(f) = &new.failover {
        let seen = seen_steps(f.epoch);
        if seen.is_none() {
            out.push(started(f));
        }
        steps_from(f, seen.unwrap_or(0), &mut out);
    }
    match (&old.maintenance, &new.maintenance) {
        (old_m, Some(m)) if old_m.as_ref() != Some(m) => out.push(Event {
            at_ms: m.since_ms,
            kind: "paused",
            epoch: new.epoch,
            text: format!(
                "automatic failover paused by {}{}{}",
                m.by,
                m.until_ms
                    .map(|u| format!(" for {} s", (u - m.since_ms).max(0) / 1000))
                    .unwrap_or_else(|| " until resumed".into()),
                if m.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", m.reason)
                }
            ),
        }),
        (Some(_), None) => out.push(Event {
            at_ms: 0,
            kind: "resumed",
            epoch: new.epoch,
            text: "automatic failover resumed".into(),
        }),
        _ => {}
    }
    match (&old.db, &new.db) {
        (Some(o), Some(n)) if o.standby_needs_rejoin && !n.standby_needs_rejoin => {
            out.push(Event {
                at_ms: 0,
                kind: "rejoined",
                epoch: new.epoch,
                text: format!("site {} rejoined as a standby of {}", n.standby, n.primary),
            })
        }
        (None, Some(n)) => out.push(Event {
            at_ms: 0,
            kind: "roles",
            epoch: new.epoch,
            text: format!(
                "database roles recorded: primary {}, standby {}",
                n.primary, n.standby
            ),
        }),
        _ => {}
    }
    for d in new.drills.iter().skip(old.drills.len()) {
        out.push(Event {
            at_ms: d.finished_at_ms,
            kind: "drill",
            epoch: new.epoch,
            text: format!("drill {} by {}: {}", d.name, d.who, d.outcome),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::failover::{Evidence, Kind, Step, StepRecord};
    use crate::SiteId;

    fn begin(epoch: u64) -> Command {
        Command::BeginFailover(Box::new(Failover {
            epoch,
            kind: Kind::Switchover,
            from: SiteId("a".into()),
            to: SiteId("b".into()),
            trigger: Trigger::Operator { who: "ops".into() },
            reason: "planned".into(),
            evidence: Evidence::default(),
            started_at_ms: 1000,
            steps: vec![],
            outcome: None,
            finished_at_ms: None,
        }))
    }

    fn step(epoch: u64, step: Step) -> Command {
        Command::StepDone {
            epoch,
            record: StepRecord {
                step,
                started_at_ms: 1000,
                done_at_ms: 1100,
                detail: "ok".into(),
                lsn: None,
                checks: vec![],
            },
        }
    }

    fn base() -> ClusterState {
        let mut s = ClusterState::default();
        s.apply(
            1,
            &Command::InitDatabase {
                primary: SiteId("a".into()),
                standby: SiteId("b".into()),
            },
        );
        s
    }

    fn kinds(e: &[Event]) -> Vec<&'static str> {
        e.iter().map(|e| e.kind).collect()
    }

    /// However the log is sampled, every step is reported exactly once and
    /// in order.
    #[test]
    fn each_step_once_whatever_the_sampling() {
        let mut cmds = vec![begin(1)];
        cmds.extend(Step::ALL.into_iter().map(|s| step(1, s)));
        cmds.push(Command::FinishFailover {
            epoch: 1,
            outcome: Outcome::Completed,
            at_ms: 2000,
        });
        for sample_every in 1..=cmds.len() {
            let mut old = base();
            let mut cur = old.clone();
            let mut events = Vec::new();
            for (i, c) in cmds.iter().enumerate() {
                cur.apply(10 + i as u64, c);
                if (i + 1) % sample_every == 0 || i + 1 == cmds.len() {
                    events.extend(between(&old, &cur));
                    old = cur.clone();
                }
            }
            let mut want = vec!["operation_started"];
            want.extend(std::iter::repeat_n("step_done", Step::ALL.len()));
            want.push("operation_finished");
            assert_eq!(kinds(&events), want, "sampled every {sample_every}");
            assert!(events[0]
                .text
                .contains("switchover a → b began (operator ops)"));
            assert!(events.last().unwrap().text.contains("completed in 1000 ms"));
        }
    }

    #[test]
    fn pause_resume_rejoin_and_notes() {
        let old = base();
        let mut new = old.clone();
        new.apply(
            2,
            &Command::Pause {
                by: "ops".into(),
                reason: "DR test".into(),
                at_ms: 5,
                until_ms: None,
            },
        );
        new.apply(
            3,
            &Command::Annotate {
                at_unix_ms: 6,
                author: "ops".into(),
                text: "checkpoint".into(),
            },
        );
        let e = between(&old, &new);
        assert_eq!(kinds(&e), ["note", "paused"]);
        assert!(
            e[1].text.contains("until resumed: DR test"),
            "{}",
            e[1].text
        );
        let mut later = new.clone();
        later.apply(
            4,
            &Command::Resume {
                by: "ops".into(),
                at_ms: 7,
            },
        );
        assert_eq!(kinds(&between(&new, &later)), ["resumed"]);
        assert!(between(&later, &later).is_empty());

        let mut needs = base();
        needs.db.as_mut().unwrap().standby_needs_rejoin = true;
        let mut rejoined = needs.clone();
        rejoined.db.as_mut().unwrap().standby_needs_rejoin = false;
        assert_eq!(kinds(&between(&needs, &rejoined)), ["rejoined"]);
    }
}
