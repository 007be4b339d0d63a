//! How long the replicated state keeps its records: the failover history,
//! the journal, the drill records and the rejoins. Without a bound they
//! grow with every note and operation for the cluster's whole life, and
//! every snapshot, status and clone carries them.
//!
//! A policy is a count and an age per kind of record. Pruning is a command
//! of its own ([`crate::Command::Prune`]) that the leader proposes with its
//! policy and its clock, so that every witness drops exactly the same
//! records, whatever its own configuration says.

use serde::{Deserialize, Serialize};

use super::ClusterState;

/// How many records of one kind to keep, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keep {
    /// At most this many, the newest.
    pub max_count: usize,
    /// None older than this, in ms.
    pub max_age_ms: i64,
}

impl Keep {
    /// `count` records for `days` days.
    pub const fn days(count: usize, days: i64) -> Self {
        Self {
            max_count: count,
            max_age_ms: days * 24 * 3600 * 1000,
        }
    }
}

/// The retention of each kind of record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Finished failovers, switchovers and failbacks (and, with them, the
    /// rejoins and the operator requests that began them). The newest is
    /// always kept: status shows it as the last failover.
    pub history: Keep,
    /// Operator notes.
    pub journal: Keep,
    /// DR drill records.
    pub drills: Keep,
}

impl Default for Retention {
    /// Two years of operations and drills, one of notes; at most 1000
    /// operations, 10 000 notes, 1000 drills.
    fn default() -> Self {
        Self {
            history: Keep::days(1000, 730),
            journal: Keep::days(10_000, 365),
            drills: Keep::days(1000, 730),
        }
    }
}

/// How many records of each kind a prune dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Failovers dropped from the history.
    pub history: usize,
    /// Notes dropped from the journal.
    pub journal: usize,
    /// Drill records dropped.
    pub drills: usize,
    /// Rejoin records dropped.
    pub rejoins: usize,
}

impl Pruned {
    /// Nothing was dropped.
    pub fn is_empty(&self) -> bool {
        *self == Pruned::default()
    }
}

/// How many of `items` (oldest first, dated by `at`) to drop from the
/// front: those beyond `keep.max_count`, and those older than the horizon,
/// keeping at least `floor` of the newest.
fn excess<T>(items: &[T], at: impl Fn(&T) -> i64, keep: &Keep, now_ms: i64, floor: usize) -> usize {
    let horizon = now_ms.saturating_sub(keep.max_age_ms);
    let by_count = items.len().saturating_sub(keep.max_count.max(floor));
    let by_age = items.iter().take_while(|i| at(i) < horizon).count();
    by_count.max(by_age).min(items.len().saturating_sub(floor))
}

impl ClusterState {
    /// What a prune with `r` at `now_ms` would drop, without dropping it.
    pub fn prunable(&self, r: &Retention, now_ms: i64) -> Pruned {
        let history = excess(
            &self.history,
            |f| f.finished_at_ms.unwrap_or(f.started_at_ms),
            &r.history,
            now_ms,
            1,
        );
        let oldest_kept_epoch = self.history.get(history).map(|f| f.epoch);
        Pruned {
            history,
            journal: excess(&self.journal, |e| e.at_unix_ms, &r.journal, now_ms, 0),
            drills: excess(&self.drills, |d| d.finished_at_ms, &r.drills, now_ms, 0),
            // A rejoin goes with the failovers before the oldest kept one.
            rejoins: match oldest_kept_epoch {
                Some(e) => self.rejoins.iter().take_while(|j| j.epoch < e).count(),
                None => 0,
            },
        }
    }

    /// Drops what [`ClusterState::prunable`] names. Deterministic: the
    /// policy and the time come with the command.
    pub(crate) fn prune(&mut self, r: &Retention, now_ms: i64) -> Pruned {
        let p = self.prunable(r, now_ms);
        self.history.drain(..p.history);
        self.journal.drain(..p.journal);
        self.drills.drain(..p.drills);
        self.rejoins.drain(..p.rejoins);
        // The request that began an operation is kept as long as the
        // operation is (the current one included).
        let oldest = self
            .history
            .first()
            .map(|f| f.epoch)
            .or(self.failover.as_ref().map(|f| f.epoch));
        match oldest {
            Some(e) => self.operation_requests.retain(|epoch, _| *epoch >= e),
            None => self.operation_requests.clear(),
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::failover::{Evidence, Failover, Outcome, Trigger};
    use crate::state::{JournalEntry, RejoinRecord};
    use crate::topology::SiteId;
    use proptest::prelude::*;

    const DAY: i64 = 24 * 3600 * 1000;

    fn failover(epoch: u64, at: i64) -> Failover {
        Failover {
            epoch,
            kind: Default::default(),
            from: SiteId("a".into()),
            to: SiteId("b".into()),
            trigger: Trigger::Automatic,
            reason: String::new(),
            evidence: Evidence::default(),
            started_at_ms: at,
            steps: vec![],
            outcome: Some(Outcome::Completed),
            finished_at_ms: Some(at + 1000),
        }
    }

    fn note(i: u64, at: i64) -> JournalEntry {
        JournalEntry {
            log_index: i,
            at_unix_ms: at,
            author: "ops".into(),
            text: format!("note {i}"),
            request_id: None,
        }
    }

    fn state(failovers: u64, notes: u64, step: i64) -> ClusterState {
        let mut s = ClusterState::default();
        for e in 1..=failovers {
            s.history.push(failover(e, e as i64 * step));
            s.rejoins.push(RejoinRecord {
                site: SiteId("a".into()),
                epoch: e,
                at_ms: e as i64 * step + 2000,
                primary: SiteId("b".into()),
            });
            s.operation_requests.insert(e, format!("req-{e}"));
        }
        s.epoch = failovers;
        for i in 1..=notes {
            s.journal.push(note(i, i as i64 * step));
        }
        s
    }

    #[test]
    fn counts_and_ages_bound_every_kind_and_the_rest_stays() {
        let mut s = state(10, 20, DAY);
        let r = Retention {
            history: Keep::days(4, 1000),
            journal: Keep::days(1000, 5),
            drills: Keep::days(10, 10),
        };
        let now = 21 * DAY;
        let p = s.prune(&r, now);
        assert_eq!(p.history, 6);
        assert_eq!(
            s.history.iter().map(|f| f.epoch).collect::<Vec<_>>(),
            vec![7, 8, 9, 10]
        );
        // Notes older than 5 days before day 21 (days 1..=15) are gone.
        assert_eq!(p.journal, 15);
        assert_eq!(s.journal.first().map(|e| e.log_index), Some(16));
        // Rejoins and requests go with their failovers.
        assert_eq!(p.rejoins, 6);
        assert_eq!(s.rejoins.first().map(|j| j.epoch), Some(7));
        assert_eq!(
            s.operation_requests.keys().copied().collect::<Vec<_>>(),
            vec![7, 8, 9, 10]
        );
        // The epoch and roles are not records: untouched.
        assert_eq!(s.epoch, 10);
        assert!(
            s.prunable(&r, now).is_empty(),
            "a second prune drops nothing"
        );
    }

    #[test]
    fn the_last_failover_is_kept_however_old() {
        let mut s = state(3, 0, DAY);
        s.prune(&Retention::default(), 10_000 * DAY);
        assert_eq!(s.history.len(), 1);
        assert_eq!(s.history[0].epoch, 3);
    }

    #[test]
    fn the_prune_command_is_deterministic_and_reports_what_it_dropped() {
        let mut a = state(5, 50, DAY);
        let mut b = a.clone();
        let cmd = Command::Prune {
            retention: Retention {
                history: Keep::days(2, 1000),
                journal: Keep::days(10, 1000),
                drills: Keep::days(10, 1000),
            },
            at_ms: 60 * DAY,
        };
        let ra = a.apply(7, &cmd);
        let rb = b.apply(7, &cmd);
        assert_eq!(ra, rb);
        assert_eq!(a, b);
        assert_eq!(a.history.len(), 2);
        assert_eq!(a.journal.len(), 10);
    }

    proptest! {
        /// After a prune: within every bound, the newest failover kept, only
        /// the oldest dropped (what is left is a suffix), and nothing
        /// dropped that the policy allows.
        #[test]
        fn a_prune_keeps_exactly_the_newest_that_fit(
            failovers in 0u64..30, notes in 0u64..60, keep_f in 1usize..20, keep_n in 0usize..40,
            age_days in 1i64..40, now_day in 0i64..80,
        ) {
            let mut s = state(failovers, notes, DAY);
            let before = s.clone();
            let r = Retention {
                history: Keep::days(keep_f, age_days),
                journal: Keep::days(keep_n, age_days),
                drills: Keep::days(10, age_days),
            };
            let now = now_day * DAY;
            s.prune(&r, now);
            let horizon = now - age_days * DAY;
            prop_assert!(s.journal.len() <= keep_n);
            prop_assert!(s.journal.iter().all(|e| e.at_unix_ms >= horizon));
            prop_assert!(before.journal.ends_with(&s.journal));
            let fitting = before.journal.iter().rev().take(keep_n).filter(|e| e.at_unix_ms >= horizon).count();
            prop_assert_eq!(s.journal.len(), fitting);
            prop_assert!(before.history.ends_with(&s.history));
            if failovers > 0 {
                prop_assert_eq!(s.history.last(), before.history.last());
                prop_assert!(s.history.len() <= keep_f.max(1));
            }
        }
    }
}
