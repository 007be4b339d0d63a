//! The leader's pruning of the replicated records (`[retention]`,
//! `palisade_core::state::retention`): every 10 s, when the journal,
//! the history or the drill records hold more than the policy keeps, the
//! leader proposes a `Prune` with its policy and clock, and every witness
//! drops the same records.

use std::time::Duration;

use palisade_core::state::retention::Retention;
use palisade_core::{Command, CommandResult};
use palisade_raft::store::StateView;
use palisade_raft::Raft;
use tokio_util::sync::CancellationToken;

use crate::clock::wall_ms;

/// How often the leader looks: records grow by operator notes and
/// operations, not by the second.
const EVERY: Duration = Duration::from_secs(10);

/// Runs until `shutdown`: prunes by `policy` while this witness leads.
pub async fn run(raft: Raft, state: StateView, policy: Retention, shutdown: CancellationToken) {
    // The first look soon after start, then every EVERY.
    let mut next = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        next += EVERY;
        if raft.metrics().borrow().state != openraft::ServerState::Leader {
            continue;
        }
        let now = wall_ms();
        let due = state.cluster_state().prunable(&policy, now);
        if due.is_empty() {
            continue;
        }
        let cmd = Command::Prune {
            retention: policy,
            at_ms: now,
        };
        match raft.client_write(cmd).await {
            Ok(r) if !matches!(r.data, CommandResult::Rejected { .. }) => tracing::info!(
                history = due.history,
                journal = due.journal,
                drills = due.drills,
                rejoins = due.rejoins,
                "retention: dropped the records the policy no longer keeps"
            ),
            Ok(r) => tracing::warn!(result = ?r.data, "retention: prune rejected"),
            Err(e) => {
                tracing::debug!(error = %e, "retention: prune not committed (leadership changed?)")
            }
        }
    }
}
