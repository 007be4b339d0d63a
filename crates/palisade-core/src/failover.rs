//! A failover as a durable, resumable sequence of steps.
//!
//! `BeginFailover` raises the epoch (the fencing token every action carries)
//! and records the plan; each `StepDone` records one finished step, in order,
//! exactly once; `FinishFailover` (completed, or aborted before promotion) closes the record and
//! moves it to the history. A leader that takes over mid-way reads the
//! record and resumes at [`Failover::next_step`].

use serde::{Deserialize, Serialize};

use crate::topology::SiteId;

/// The steps of a failover, in the only order they may complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The old primary can no longer take writes: its agent stopped it and
    /// said so, a STONITH hook confirmed, or its lease provably expired.
    Fenced,
    /// The standby was promoted, is out of recovery and took a test write.
    Promoted,
    /// `monitorsEnabled` is `false` on the old site's app (or the old site
    /// is unreachable and will set it on return) and `true` on the new
    /// site's app, switched in that order, apps restarted.
    AppFlipped,
    /// The new site's app points at the new site's Elasticsearch, and the
    /// front door (load balancer, DNS webhook, config file) sends users to
    /// the new site.
    Repointed,
    /// The post-failover checks ran (their results are in the detail).
    Verified,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 5] = [
        Step::Fenced,
        Step::Promoted,
        Step::AppFlipped,
        Step::Repointed,
        Step::Verified,
    ];

    /// The step's name as logs and the CLI show it.
    pub fn name(self) -> &'static str {
        match self {
            Step::Fenced => "fenced",
            Step::Promoted => "promoted",
            Step::AppFlipped => "app-flipped",
            Step::Repointed => "repointed",
            Step::Verified => "verified",
        }
    }
}

/// What kind of operation moved the primary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The primary was lost (automatic) or an operator moved it now: the
    /// old primary is fenced by any means, no waiting for the standby.
    #[default]
    Failover,
    /// Planned handover: the old primary is shut down cleanly and the
    /// standby must replay its final WAL before it is promoted.
    Switchover,
    /// A switchover back to the configured primary site.
    Failback,
}

impl Kind {
    /// The name logs, the API and the CLI use.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Failover => "failover",
            Kind::Switchover => "switchover",
            Kind::Failback => "failback",
        }
    }

    /// A planned handover: clean shutdown, then catch-up, then promotion;
    /// aborted (the old primary resumes) when either cannot be done.
    pub fn is_planned(self) -> bool {
        matches!(self, Kind::Switchover | Kind::Failback)
    }
}

/// Who asked for the failover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// The leader's failure detector.
    Automatic,
    /// An operator, through the control API.
    Operator {
        /// The operator's identity as the client gave it.
        who: String,
    },
}

/// One witness's view of the old primary when the failover was decided.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WitnessVote {
    /// Witness node id.
    pub witness: u64,
    /// `up`, `down (<class>)`, `stale` or `no report`.
    pub saw: String,
    /// Age of its report, in ms, when the decision was made.
    pub report_age_ms: Option<u64>,
}

/// Why the leader decided, recorded with the failover (DESIGN rule 5).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Each witness's view of the old primary.
    pub votes: Vec<WitnessVote>,
    /// For how long a quorum had seen the primary down, in ms.
    pub down_for_ms: u64,
    /// Whether the old primary's site agent was reachable (its witness's
    /// reports were fresh): decides between the crash policy and site loss.
    pub primary_agent_alive: bool,
    /// Last WAL position seen on the old primary, and how long before the
    /// decision it was seen.
    pub primary_last_lsn: Option<u64>,
    /// See `primary_last_lsn`.
    pub primary_last_seen_ms_ago: Option<u64>,
    /// The standby's received and replayed WAL positions at decision time.
    pub standby_receive_lsn: Option<u64>,
    /// See `standby_receive_lsn`.
    pub standby_replay_lsn: Option<u64>,
    /// `primary_last_lsn - standby_receive_lsn`: WAL known written on the
    /// old primary and not received by the standby. Writes after the last
    /// observation of the primary are not known and come on top, in async
    /// mode; in sync mode none were acknowledged without the standby.
    pub known_lag_bytes: Option<u64>,
    /// Replication mode in force (`async` / `sync`).
    pub replication: String,
}

/// One finished step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Which step.
    pub step: Step,
    /// When the executor started it (leader wall clock, Unix ms).
    pub started_at_ms: i64,
    /// When it finished.
    pub done_at_ms: i64,
    /// How it was done (e.g. `fenced by agent: stopped (fast) in 210 ms`,
    /// `lease expired`, `promoted at 0/3000148 on timeline 2`).
    pub detail: String,
    /// The WAL position the step established, when it has one: for the
    /// fenced step of a planned handover, the old primary's final
    /// (shutdown) checkpoint, which the standby must replay past before it
    /// is promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<u64>,
    /// The checks the step ran (the `verified` step's post-failover
    /// checks), each with its own result: the outcome is decided from
    /// these, never from the wording of `detail`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
}

/// One check of a step, with its own result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked, e.g. `database at b writable`.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was seen, e.g. `lsn 0/3000148` or `HTTP 503`.
    pub detail: String,
}

impl Check {
    /// A passed check.
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: true,
            detail: detail.into(),
        }
    }

    /// A failed check.
    pub fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: false,
            detail: detail.into(),
        }
    }

    /// `name: detail`, as logs and the failed-checks outcome show it.
    pub fn describe(&self) -> String {
        if self.detail.is_empty() {
            self.name.clone()
        } else {
            format!("{}: {}", self.name, self.detail)
        }
    }
}

/// How a failover ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Every step done and every check passed.
    Completed,
    /// Every step done, but some checks failed: service may be degraded.
    CompletedWithFailedChecks {
        /// The failed checks.
        failed: Vec<String>,
    },
    /// Given up before promotion; the old primary keeps (or regains) the role.
    Aborted {
        /// Why.
        reason: String,
    },
}

/// A failover, in progress or finished.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failover {
    /// The epoch this failover raised the cluster to; every action carries it.
    pub epoch: u64,
    /// Failover, switchover or failback.
    #[serde(default)]
    pub kind: Kind,
    /// Site of the old primary.
    pub from: SiteId,
    /// Site being promoted.
    pub to: SiteId,
    /// Who asked.
    pub trigger: Trigger,
    /// Why, in words.
    pub reason: String,
    /// What the decision rested on.
    pub evidence: Evidence,
    /// When it was planned (leader wall clock, Unix ms).
    pub started_at_ms: i64,
    /// Finished steps, in order.
    pub steps: Vec<StepRecord>,
    /// Set when finished.
    pub outcome: Option<Outcome>,
    /// When it finished.
    pub finished_at_ms: Option<i64>,
}

impl Failover {
    /// A failover of `kind` from `from` to `to` in `epoch`, just begun, for
    /// the unit tests.
    #[cfg(test)]
    pub(crate) fn begun(kind: Kind, epoch: u64, from: &str, to: &str) -> Self {
        Failover {
            kind,
            epoch,
            from: SiteId(from.into()),
            to: SiteId(to.into()),
            trigger: Trigger::Automatic,
            reason: "test".into(),
            evidence: Evidence::default(),
            started_at_ms: 0,
            steps: vec![],
            outcome: None,
            finished_at_ms: None,
        }
    }

    /// The first step not yet recorded, or `None` when all are done.
    pub fn next_step(&self) -> Option<Step> {
        Step::ALL.get(self.steps.len()).copied()
    }

    /// Whether `step` is recorded as done.
    pub fn is_done(&self, step: Step) -> bool {
        self.steps.iter().any(|s| s.step == step)
    }
}
