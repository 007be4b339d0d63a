//! A planned handover (switchover, failback) loses nothing (DESIGN rule
//! 5): the old primary shuts down cleanly, so its WAL senders ship the
//! whole WAL, and the target is promoted only once it has replayed past the
//! final checkpoint. Whatever cannot be proven aborts the handover before
//! promotion (the old primary resumes) rather than turning it into a lossy
//! failover the operator did not ask for.

use super::StepResult;
use crate::observe::format_lsn;
use crate::topology::SiteId;

/// The fence of a handover, from the old primary's agent's answer: `Ok`
/// with what it said and the final checkpoint (absent when the shutdown
/// was not clean), or why it did not confirm.
pub fn clean_shutdown(from: &SiteId, answer: Result<(String, Option<u64>), String>) -> StepResult {
    match answer {
        Ok((detail, Some(lsn))) => StepResult::Done {
            detail: format!("shut down cleanly by the site agent of {from}: {detail}"),
            lsn: Some(lsn),
            checks: Vec::new(),
        },
        Ok((detail, None)) => StepResult::Abort {
            reason: format!(
                "the primary at {from} did not shut down cleanly ({detail}); no catch-up can be proven"
            ),
        },
        Err(e) => StepResult::Abort {
            reason: format!("the site agent of {from} did not confirm a clean shutdown: {e}"),
        },
    }
}

/// Where the target's catch-up stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatchUp {
    /// Replayed past the final checkpoint: promote; the detail says so.
    Caught(String),
    /// Not yet: look again.
    Wait,
    /// Not within the bound: abort the handover.
    GiveUp(String),
}

/// What the old primary's final position means, so what the target's
/// replay must do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalWal {
    /// PostgreSQL: where the final checkpoint's record *starts*; the
    /// replay position is the end of the last record replayed, so equal is
    /// not past: the replay must go beyond it.
    CheckpointAt(u64),
    /// MariaDB: where the fenced writer's binary log *ends* (`SHOW MASTER
    /// STATUS`), and the other master's executed coordinates name the end
    /// of the last event it applied: reaching it is everything.
    LogEndsAt(u64),
}

impl FinalWal {
    fn position(self) -> u64 {
        match self {
            FinalWal::CheckpointAt(p) | FinalWal::LogEndsAt(p) => p,
        }
    }

    /// A position in this one's terms: an LSN, or a binary log position.
    fn show(self, position: u64) -> String {
        match self {
            FinalWal::CheckpointAt(_) => format_lsn(position),
            FinalWal::LogEndsAt(_) => {
                crate::master_master::detector_view::format_binlog_position(position)
            }
        }
    }

    fn caught_up(self, replayed: u64) -> bool {
        match self {
            FinalWal::CheckpointAt(p) => replayed > p,
            FinalWal::LogEndsAt(p) => replayed >= p,
        }
    }
}

/// The target at `to` has replayed up to `replayed` (unknown: `None`)
/// after `waited_ms` of the `bound_ms` it may take, against the old
/// primary's final position.
pub fn catch_up(
    to: &SiteId,
    last: FinalWal,
    replayed: Option<u64>,
    waited_ms: u64,
    bound_ms: u64,
) -> CatchUp {
    let final_lsn = last.position();
    if let Some(r) = replayed.filter(|r| last.caught_up(*r)) {
        return CatchUp::Caught(format!(
            "{to} replayed {} the final {} {} (at {}) in {waited_ms} ms",
            match last {
                FinalWal::CheckpointAt(_) => "past",
                FinalWal::LogEndsAt(_) => "up to",
            },
            match last {
                FinalWal::CheckpointAt(_) => "checkpoint",
                FinalWal::LogEndsAt(_) => "binary log position",
            },
            last.show(final_lsn),
            last.show(r),
        ));
    }
    if waited_ms >= bound_ms {
        return CatchUp::GiveUp(match last {
            FinalWal::CheckpointAt(_) => format!(
                "the standby at {to} did not replay the old primary's final WAL (checkpoint at {}) within {bound_ms} ms (replayed up to {})",
                last.show(final_lsn),
                replayed.map(|r| last.show(r)).unwrap_or_else(|| "unknown".into())
            ),
            FinalWal::LogEndsAt(_) => format!(
                "the other master at {to} did not execute the old writer's binary log up to its end ({}) within {bound_ms} ms (executed up to {})",
                last.show(final_lsn),
                replayed.map(|r| last.show(r)).unwrap_or_else(|| "unknown".into())
            ),
        });
    }
    CatchUp::Wait
}
