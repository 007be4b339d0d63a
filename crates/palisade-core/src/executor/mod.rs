//! The failover executor's decisions, pure: which step runs next and what
//! it must do ([`next`]), what a step's result does to the durable record
//! ([`settle`]), how the fence is proven ([`FenceRound`]), a planned
//! handover's clean shutdown and catch-up ([`handover`]), and the outcome
//! from the checks ([`outcome`]).
//!
//! The leader's controller only carries the work out and feeds the results
//! back, as openraft's runtime runs the commands its engine emits: every
//! rule that keeps a failover safe (never promote before a proven fence,
//! never abort once promoted, a handover loses nothing) is decided here,
//! where a unit test reaches it.

mod fence;
pub mod flip;
pub mod handover;
#[cfg(test)]
mod tests;

pub use fence::{FenceRound, FenceVerdict, FenceWork, AGENT_RETRY_MS};

use crate::failover::{Check, Failover, Outcome, Step, StepRecord};
use crate::topology::SiteId;

/// What the executor does next for a failover in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Carry out `work`; its result completes `step`.
    Run {
        /// The first step not recorded.
        step: Step,
        /// What completes it.
        work: Work,
    },
    /// Every step is recorded: finish the failover with this outcome.
    Finish(Outcome),
    /// The failover cannot go on safely, and is before promotion: finish it
    /// as aborted (the old primary resumes).
    Abort {
        /// Why.
        reason: String,
    },
}

/// The work that completes one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// Prove the old primary can no longer write: its agent's
    /// confirmation, a STONITH hook's, or a majority of witnesses vouching
    /// that its quorum lease ended (a [`FenceRound`]).
    Fence {
        /// The old primary's site.
        site: SiteId,
        /// The failover's epoch (the fencing token).
        epoch: u64,
    },
    /// A planned handover's fence: the old primary's agent shuts it down
    /// cleanly and reports the final checkpoint (see
    /// [`handover::clean_shutdown`]).
    ShutDownCleanly {
        /// The old primary's site.
        site: SiteId,
        /// The handover's epoch.
        epoch: u64,
    },
    /// A planned handover's promotion: wait until the target has replayed
    /// past the old primary's final checkpoint (see
    /// [`handover::catch_up`]), then promote it.
    CatchUpThenPromote {
        /// The target site.
        site: SiteId,
        /// The handover's epoch.
        epoch: u64,
        /// The old primary's final checkpoint, recorded by the fence.
        final_lsn: u64,
    },
    /// Promote the target (its agent takes the quorum lease first).
    Promote {
        /// The target site.
        site: SiteId,
        /// The failover's epoch.
        epoch: u64,
    },
    /// `monitorsEnabled` off at the old site's app, then on at the new
    /// site's (DESIGN rule 4).
    FlipApps {
        /// The old primary's site.
        from: SiteId,
        /// The new primary's site.
        to: SiteId,
        /// The failover's epoch.
        epoch: u64,
    },
    /// The new site's app to its own Elasticsearch, every front door to the
    /// new site.
    Repoint {
        /// The new primary's site.
        to: SiteId,
        /// The failover's epoch.
        epoch: u64,
    },
    /// The post-failover checks, each recorded with its result.
    Verify {
        /// The new primary's site.
        to: SiteId,
        /// The failover's epoch.
        epoch: u64,
    },
}

/// The next thing to do for `f`, from its record alone: a leader that
/// takes over mid-way resumes exactly here.
pub fn next(f: &Failover) -> Next {
    let Some(step) = f.next_step() else {
        return Next::Finish(outcome(f));
    };
    let (from, to, epoch) = (f.from.clone(), f.to.clone(), f.epoch);
    let work =
        match step {
            Step::Fenced if f.kind.is_planned() => Work::ShutDownCleanly { site: from, epoch },
            Step::Fenced => Work::Fence { site: from, epoch },
            Step::Promoted if f.kind.is_planned() => match final_lsn(f) {
                Some(final_lsn) => Work::CatchUpThenPromote {
                    site: to,
                    epoch,
                    final_lsn,
                },
                // Only a record written by hand (or by a bug) gets here: a
                // handover's fence is recorded with its final checkpoint.
                None => return Next::Abort {
                    reason:
                        "the fenced step recorded no final WAL position; no catch-up can be proven"
                            .into(),
                },
            },
            Step::Promoted => Work::Promote { site: to, epoch },
            Step::AppFlipped => Work::FlipApps { from, to, epoch },
            Step::Repointed => Work::Repoint { to, epoch },
            Step::Verified => Work::Verify { to, epoch },
        };
    Next::Run { step, work }
}

/// The old primary's final checkpoint, as the handover's fence recorded it.
fn final_lsn(f: &Failover) -> Option<u64> {
    f.steps
        .iter()
        .find(|s| s.step == Step::Fenced)
        .and_then(|s| s.lsn)
}

/// What carrying out a step's work gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepResult {
    /// Done: recorded as it is.
    Done {
        /// How, in words, for the record.
        detail: String,
        /// A WAL position the step established (a handover's final
        /// checkpoint).
        lsn: Option<u64>,
        /// The checks the step ran.
        checks: Vec<Check>,
    },
    /// Not done this time (a site unreachable, a commit lost); the step is
    /// run again, idempotently, on the next tick.
    Retry {
        /// Why.
        reason: String,
    },
    /// The failover cannot be done safely and must end before promotion
    /// (a planned handover whose clean shutdown or catch-up failed).
    Abort {
        /// Why.
        reason: String,
    },
}

impl StepResult {
    /// Done, with a detail and nothing else.
    pub fn done(detail: impl Into<String>) -> Self {
        StepResult::Done {
            detail: detail.into(),
            lsn: None,
            checks: Vec::new(),
        }
    }
}

/// What a step's result does to the durable record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settle {
    /// Commit this step record (`Command::StepDone`).
    Record(StepRecord),
    /// Commit the end of the failover (`Command::FinishFailover`).
    Finish(Outcome),
    /// Commit nothing; run the step again on the next tick.
    RetryLater {
        /// Why, for the log.
        reason: String,
    },
}

/// Turns the result of `step`'s work, started and finished at the given
/// leader wall-clock times, into what to commit.
///
/// Two rules live here, not in the runtime: an abort is possible only
/// before promotion (after it the new primary is the primary; only
/// completion is left), and a planned handover's fence counts only with the
/// final checkpoint of a clean shutdown (without it, where the old
/// primary's WAL ends is unknown and the handover would lose writes:
/// DESIGN rule 5).
pub fn settle(
    f: &Failover,
    step: Step,
    started_at_ms: i64,
    done_at_ms: i64,
    result: StepResult,
) -> Settle {
    if f.next_step() != Some(step) {
        return Settle::RetryLater {
            reason: format!(
                "step {} is not next (next is {}): the record moved on meanwhile",
                step.name(),
                f.next_step().map(Step::name).unwrap_or("none")
            ),
        };
    }
    match result {
        StepResult::Done { detail, lsn, .. }
            if f.kind.is_planned() && step == Step::Fenced && lsn.is_none() =>
        {
            Settle::Finish(Outcome::Aborted {
                reason: format!(
                    "the primary at {} did not shut down cleanly ({detail}); no catch-up can be proven",
                    f.from
                ),
            })
        }
        StepResult::Done {
            detail,
            lsn,
            checks,
        } => Settle::Record(StepRecord {
            step,
            started_at_ms,
            done_at_ms,
            detail,
            lsn,
            checks,
        }),
        StepResult::Retry { reason } => Settle::RetryLater { reason },
        StepResult::Abort { reason } if f.is_done(Step::Promoted) || step > Step::Promoted => {
            Settle::RetryLater {
                reason: format!(
                    "cannot abort once the standby is promoted ({reason}); retrying the step"
                ),
            }
        }
        StepResult::Abort { reason } => Settle::Finish(Outcome::Aborted { reason }),
    }
}

/// The outcome of a failover whose every step is recorded: completed, or
/// completed with the failed checks named.
pub fn outcome(f: &Failover) -> Outcome {
    let failed: Vec<String> = f
        .steps
        .iter()
        .flat_map(|s| s.checks.iter())
        .filter(|c| !c.ok)
        .map(Check::describe)
        .collect();
    if failed.is_empty() {
        Outcome::Completed
    } else {
        Outcome::CompletedWithFailedChecks { failed }
    }
}

/// A `verified` step's detail: how many checks, how many failed.
pub fn checks_summary(checks: &[Check]) -> String {
    let failed = checks.iter().filter(|c| !c.ok).count();
    let noun = if checks.len() == 1 { "check" } else { "checks" };
    match failed {
        0 => format!("{} {noun} passed", checks.len()),
        n => format!("{} {noun}, {n} failed", checks.len()),
    }
}

/// What a site's app said when asked for its `monitorsEnabled`, after the
/// flip (see [`one_monitor`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MonitorRead {
    /// `true` in its file.
    On,
    /// `false` in its file.
    Off,
    /// Its file has no `monitorsEnabled`.
    Absent,
    /// The old site was still on when read (it was unreachable at the flip)
    /// and was switched off now; what its agent said.
    SwitchedOff(String),
    /// Not readable (the site is unreachable): not counted as on, since its
    /// agent switches it off when it returns.
    Unreadable(String),
}

/// DESIGN rule 4 read back: exactly one app, the new site's, has
/// `monitorsEnabled=true`.
pub fn one_monitor(to: &SiteId, reads: &[(SiteId, MonitorRead)]) -> Check {
    const NAME: &str = "exactly one monitorsEnabled=true";
    let on: Vec<&str> = reads
        .iter()
        .filter(|(_, r)| *r == MonitorRead::On)
        .map(|(s, _)| s.0.as_str())
        .collect();
    let mut notes = Vec::new();
    let unreadable: Vec<String> = reads
        .iter()
        .filter_map(|(s, r)| match r {
            MonitorRead::Unreadable(why) => Some(format!("{s} ({why})")),
            _ => None,
        })
        .collect();
    if !unreadable.is_empty() {
        notes.push(format!("not readable: {}", unreadable.join(", ")));
    }
    let switched: Vec<String> = reads
        .iter()
        .filter_map(|(s, r)| match r {
            MonitorRead::SwitchedOff(d) => Some(format!("{s}: {d}")),
            _ => None,
        })
        .collect();
    if !switched.is_empty() {
        notes.push(format!(
            "switched off on its return: {}",
            switched.join(", ")
        ));
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    };
    if on == [to.0.as_str()] {
        Check::pass(NAME, format!("site {to}{notes}"))
    } else {
        Check::fail(NAME, format!("on at [{}]{notes}", on.join(", ")))
    }
}
