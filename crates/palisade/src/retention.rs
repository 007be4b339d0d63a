//! The leader's pruning of the replicated records (`[retention]`,
//! `palisade_core::state::retention`): every 10 s, when the journal,
//! the history or the drill records hold more than the policy keeps, the
//! leader proposes a `Prune` with its policy and clock, and every witness
//! drops the same records.

use std::time::Duration;

use palisade_api::v1::raft_peer_client::RaftPeerClient;
use palisade_api::v1::NodeStatusRequest;
use palisade_core::command::all_apply;
use palisade_core::state::retention::Retention;
use palisade_core::{Command, CommandResult, NodeId};
use palisade_raft::members::Members;
use palisade_raft::store::StateView;
use palisade_raft::transport::Transport;
use palisade_raft::Raft;
use tokio_util::sync::CancellationToken;

use crate::clock::wall_ms;

/// How often the leader looks: records grow by operator notes and
/// operations, not by the second.
const EVERY: Duration = Duration::from_secs(10);

/// How long the leader waits for a witness's release before it takes it
/// for unknown.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Each other witness's reported command format (`None`: no answer), the
/// learners' too: they apply every entry as well.
async fn formats(
    members: &Members,
    transport: &Transport,
    connect_timeout: Duration,
) -> Vec<(NodeId, Option<u32>)> {
    let own = members.own_id();
    let mut out = Vec::new();
    for (id, w) in members.nodes().into_iter().filter(|(id, _)| *id != own) {
        let Ok(ch) = transport.channel(id, &w.raft_addr, connect_timeout) else {
            out.push((id, None));
            continue;
        };
        let mut client = RaftPeerClient::new(ch);
        let answer = tokio::time::timeout(ASK_TIMEOUT, client.node_status(NodeStatusRequest {}))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|r| r.into_inner().command_format);
        out.push((id, answer));
    }
    out
}

/// Runs until `shutdown`: prunes by `policy` while this witness leads,
/// once every witness of `members` runs a release that applies a prune:
/// an older one could not read the entry.
pub async fn run(
    raft: Raft,
    state: StateView,
    policy: Retention,
    members: Members,
    (transport, connect_timeout): (Transport, Duration),
    shutdown: CancellationToken,
) {
    let mut waiting_for: Option<String> = None;
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
        if let Err(why) = all_apply(
            cmd.format(),
            &formats(&members, &transport, connect_timeout).await,
        ) {
            if waiting_for.as_deref() != Some(why.as_str()) {
                tracing::info!(reason = %why, "retention: records to drop, but not every witness can apply a prune yet");
                waiting_for = Some(why);
            }
            continue;
        }
        waiting_for = None;
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
