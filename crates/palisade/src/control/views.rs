//! The API views of the replicated state: failover records, maintenance,
//! drills, the history with its requests, and the snapshot a watch starts
//! with.

use palisade_api::v1 as pb;
use palisade_api::v1::{FailoverSummary, StepCheck, StepTiming};
use palisade_core::state::requests::REQUEST_RETENTION_MS;
use palisade_core::{ClusterState, CommandResult, NodeId};

/// The API view of a failover record, with the request that began it.
pub(super) fn summary_in(f: &palisade_core::Failover, state: &ClusterState) -> FailoverSummary {
    FailoverSummary {
        request_id: state
            .operation_requests
            .get(&f.epoch)
            .cloned()
            .unwrap_or_default(),
        ..summary(f)
    }
}

/// The history reply: operations, drills, rejoins, pauses and resumes,
/// notes and the remembered requests. `applied_index`: how far this
/// witness has applied the log.
pub(super) fn history(state: &ClusterState, applied_index: Option<u64>) -> pb::HistoryReply {
    pb::HistoryReply {
        operations: state.history.iter().map(|f| summary_in(f, state)).collect(),
        drills: state.drills.iter().map(drill_summary).collect(),
        in_progress: state.failover.as_ref().map(|f| summary_in(f, state)),
        rejoins: state
            .rejoins
            .iter()
            .map(|r| pb::RejoinSummary {
                site: r.site.0.clone(),
                epoch: r.epoch,
                at_ms: r.at_ms,
                primary_site: r.primary.0.clone(),
            })
            .collect(),
        maintenance: state
            .maintenance_log
            .iter()
            .map(|e| pb::MaintenanceEvent {
                log_index: e.log_index,
                kind: e.kind.clone(),
                by: e.by.clone(),
                at_ms: e.at_ms,
                until_ms: e.until_ms,
                reason: e.reason.clone(),
                request_id: e.request_id.clone().unwrap_or_default(),
            })
            .collect(),
        notes: state
            .journal
            .iter()
            .map(|e| pb::JournalEntry {
                log_index: e.log_index,
                at_unix_ms: e.at_unix_ms,
                author: e.author.clone(),
                text: e.text.clone(),
                request_id: e.request_id.clone().unwrap_or_default(),
            })
            .collect(),
        requests: state
            .requests
            .records
            .iter()
            .map(|r| pb::RequestRecord {
                request_id: r.id.clone(),
                kind: r.kind.clone(),
                who: r.who.clone(),
                issued_at_ms: r.issued_ms,
                at_ms: r.at_ms,
                log_index: r.log_index,
                outcome: outcome(&r.result),
                epoch: r.epoch.unwrap_or_default(),
                summary: r.summary.clone(),
            })
            .collect(),
        request_retention_ms: REQUEST_RETENTION_MS as u64,
        applied_index,
    }
}

/// A request's result in words.
fn outcome(r: &CommandResult) -> String {
    match r {
        CommandResult::Annotated { log_index } => format!("noted at log index {log_index}"),
        CommandResult::Rejected { reason } => format!("rejected: {reason}"),
        CommandResult::Duplicate { record } => outcome(&record.result),
        CommandResult::Applied | CommandResult::None => "applied".into(),
    }
}

/// The API view of a failover record.
pub fn summary(f: &palisade_core::Failover) -> FailoverSummary {
    use palisade_core::{Outcome, Trigger};
    FailoverSummary {
        epoch: f.epoch,
        from_site: f.from.0.clone(),
        to_site: f.to.0.clone(),
        trigger: match &f.trigger {
            Trigger::Automatic => "automatic".into(),
            Trigger::Operator { who } => format!("operator:{who}"),
        },
        reason: f.reason.clone(),
        steps: f
            .steps
            .iter()
            .map(|s| StepTiming {
                step: s.step.name().into(),
                started_at_ms: s.started_at_ms,
                done_at_ms: s.done_at_ms,
                detail: s.detail.clone(),
                checks: s
                    .checks
                    .iter()
                    .map(|c| StepCheck {
                        name: c.name.clone(),
                        ok: c.ok,
                        detail: c.detail.clone(),
                    })
                    .collect(),
            })
            .collect(),
        outcome: match &f.outcome {
            None => String::new(),
            Some(Outcome::Completed) => "completed".into(),
            Some(Outcome::CompletedWithFailedChecks { failed }) => {
                format!("completed_with_failed_checks: {}", failed.join("; "))
            }
            Some(Outcome::Aborted { reason }) => format!("aborted: {reason}"),
        },
        started_at_ms: f.started_at_ms,
        finished_at_ms: f.finished_at_ms,
        evidence_json: serde_json::to_string(&f.evidence).unwrap_or_default(),
        kind: f.kind.name().into(),
        request_id: String::new(),
    }
}

/// The API view of maintenance mode.
pub fn maintenance(m: &palisade_core::Maintenance) -> pb::Maintenance {
    pb::Maintenance {
        by: m.by.clone(),
        reason: m.reason.clone(),
        since_ms: m.since_ms,
        until_ms: m.until_ms,
    }
}

pub(super) fn snapshot_event(s: &palisade_core::ClusterState, leader: Option<NodeId>) -> pb::Event {
    let roles = match &s.db {
        Some(d) => format!(
            "primary {}, standby {}{}",
            d.primary,
            d.standby,
            if d.standby_needs_rejoin {
                " (must rejoin)"
            } else {
                ""
            }
        ),
        None => "no database roles recorded".into(),
    };
    let mut text = format!(
        "epoch {}, {roles}, leader {}",
        s.epoch,
        leader
            .map(|l| l.to_string())
            .unwrap_or_else(|| "unknown".into())
    );
    if let Some(f) = &s.failover {
        text.push_str(&format!(
            "; {} {} → {} in progress ({} steps done)",
            f.kind.name(),
            f.from,
            f.to,
            f.steps.len()
        ));
    }
    if let Some(m) = &s.maintenance {
        text.push_str(&format!("; paused by {}", m.by));
    }
    pb::Event {
        at_ms: palisade_raft::unix_ms_now(),
        kind: "snapshot".into(),
        epoch: s.epoch,
        text,
    }
}

/// The API view of a drill.
pub(super) fn drill_summary(d: &palisade_core::DrillRecord) -> pb::DrillSummary {
    pb::DrillSummary {
        name: d.name.clone(),
        who: d.who.clone(),
        started_at_ms: d.started_at_ms,
        finished_at_ms: d.finished_at_ms,
        outcome: d.outcome.clone(),
        phases: d
            .phases
            .iter()
            .map(|p| pb::DrillPhase {
                name: p.name.clone(),
                outcome: p.outcome.clone(),
                duration_ms: p.duration_ms,
            })
            .collect(),
    }
}
