//! `palisade inspect`: read a stopped witness's durable store, offline.

use std::path::Path;

use anyhow::Context;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use palisade_raft::store;
use serde::Serialize;

/// What the store holds, as `palisade inspect --output json` prints it.
#[derive(Debug, Serialize)]
pub struct StoreReport {
    /// Term of the last vote this witness persisted (0 when none).
    pub vote_term: u64,
    /// Node it voted for in that term, if any.
    pub voted_for: Option<u64>,
    /// Whether that vote is committed (a leader was established by it).
    pub vote_committed: bool,
    /// Index of the last entry in the log.
    pub last_log_index: Option<u64>,
    /// Index up to which the log was compacted into a snapshot.
    pub last_purged_index: Option<u64>,
    /// Last log index known committed when the store was last written.
    pub committed_index: Option<u64>,
    /// Last log index applied to the state machine.
    pub last_applied_index: Option<u64>,
    /// Voter ids in the last applied membership.
    pub voters: Vec<u64>,
    /// Entries in the operator journal.
    pub journal_entries: usize,
}

/// Opens the store in `data_dir` (refused while a witness runs on it) and
/// reports what it holds.
pub async fn inspect(data_dir: &Path) -> anyhow::Result<StoreReport> {
    if !data_dir.join(store::STORE_FILE).exists() {
        anyhow::bail!(
            "{}: no {} here; is this a witness data dir?",
            data_dir.display(),
            store::STORE_FILE
        );
    }
    let (mut log, mut sm, _identity) =
        store::open_existing(data_dir).context("is the witness still running? stop it first")?;
    let vote = log.read_vote().await?;
    let state = log.get_log_state().await?;
    let committed = log.read_committed().await?;
    let (applied, membership) = sm.applied_state().await?;
    Ok(StoreReport {
        vote_term: vote.map(|v| v.leader_id.term).unwrap_or(0),
        voted_for: vote.and_then(|v| v.leader_id.voted_for()),
        vote_committed: vote.map(|v| v.committed).unwrap_or(false),
        last_log_index: state.last_log_id.map(|l| l.index),
        last_purged_index: state.last_purged_log_id.map(|l| l.index),
        committed_index: committed.map(|l| l.index),
        last_applied_index: applied.map(|l| l.index),
        voters: membership.membership().voter_ids().collect(),
        journal_entries: sm.view().cluster_state().journal.len(),
    })
}
