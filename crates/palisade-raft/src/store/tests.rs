//! openraft's storage conformance suite against the redb store, plus
//! durability across reopen.

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{RaftLogReader, StorageError};
use palisade_core::NodeId;

use super::{open, LogStore, StateMachineStore};
use crate::TypeConfig;

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for RedbBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("create temp dir for store test");
        let (log, sm) = open(dir.path()).expect("open store in fresh temp dir");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() -> Result<(), StorageError<NodeId>> {
    Suite::test_all(RedbBuilder)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vote_log_and_state_survive_reopen() {
    use openraft::testing::{blank_ent, log_id};
    use openraft::{CommittedLeaderId, Vote};

    let dir = tempfile::tempdir().expect("temp dir");
    {
        let (mut log, mut sm) = open(dir.path()).expect("open");
        log.save_vote(&Vote::new(3, 2)).await.expect("save vote");
        let entries = vec![
            blank_ent::<TypeConfig>(1, 1, 1),
            openraft::Entry::<TypeConfig> {
                log_id: log_id(1, 1, 2),
                payload: openraft::EntryPayload::Normal(palisade_core::Command::Annotate {
                    at_unix_ms: 7,
                    author: "ops".into(),
                    text: "kept".into(),
                }),
            },
        ];
        log.blocking_append(entries.clone()).await.expect("append");
        sm.apply(entries).await.expect("apply");
    }
    let (mut log, mut sm) = open(dir.path()).expect("reopen");
    assert_eq!(
        log.read_vote().await.expect("read vote"),
        Some(Vote::new(3, 2))
    );
    let entries = log.try_get_log_entries(0..10).await.expect("read log");
    assert_eq!(entries.len(), 2);
    let (applied, _) = sm.applied_state().await.expect("applied");
    assert_eq!(applied.map(|l| l.index), Some(2));
    assert_eq!(
        applied.map(|l| l.leader_id),
        Some(CommittedLeaderId::new(1, 1))
    );
    assert_eq!(sm.view().cluster_state().journal[0].text, "kept");
}

#[test]
fn second_open_of_same_store_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _first = open(dir.path()).expect("open");
    let err = open(dir.path())
        .err()
        .expect("second open must fail: two witnesses on one data dir");
    assert!(err.to_string().contains("raft.redb"), "{err}");
}
