//! openraft's storage conformance suite against the redb store, durability
//! across reopen, and every record decoder fed arbitrary bytes. Damaged
//! files and foreign stores: `tests/store_corruption.rs`.

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{RaftLogReader, StorageError};
use palisade_core::NodeId;

use super::{open, LogStore, StateMachineStore, StoreIdentity};
use crate::TypeConfig;

struct RedbBuilder;

fn me() -> StoreIdentity {
    StoreIdentity {
        cluster: "test".into(),
        node: 1,
    }
}

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for RedbBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("create temp dir for store test");
        let (log, sm) = open(dir.path(), &me()).expect("open store in fresh temp dir");
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
        let (mut log, mut sm) = open(dir.path(), &me()).expect("open");
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
    let (mut log, mut sm) = open(dir.path(), &me()).expect("reopen");
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
    let _first = open(dir.path(), &me()).expect("open");
    let err = open(dir.path(), &me())
        .err()
        .expect("second open must fail: two witnesses on one data dir");
    assert!(err.to_string().contains("raft.redb"), "{err}");
}

mod arbitrary_bytes {
    //! Every record decoder the store runs on what it reads, fed arbitrary
    //! bytes: an error or a value, never a panic.

    use openraft::{LogId, Vote};
    use palisade_core::NodeId;
    use proptest::prelude::*;

    use super::super::log_store::{decode_entry, decode_meta};
    use super::super::state_machine::{decode_applied, decode_snapshot_meta};
    use super::super::StoreIdentity;

    /// Arbitrary bytes, and bytes that look like JSON (so the decoders get
    /// past the first byte).
    fn record() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            "[{}\\[\\]\":,0-9a-z_ -]{0,256}".prop_map(String::into_bytes),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn the_log_record_decoder_never_panics(bytes in record()) {
            let _ = decode_entry(&bytes);
        }

        #[test]
        fn the_meta_record_decoders_never_panic(bytes in record()) {
            let _ = decode_meta::<StoreIdentity>(&bytes);
            let _ = decode_meta::<Vote<NodeId>>(&bytes);
            let _ = decode_meta::<Option<LogId<NodeId>>>(&bytes);
        }

        #[test]
        fn the_state_machine_record_decoders_never_panic(bytes in record()) {
            let _ = decode_applied(&bytes);
            let _ = decode_snapshot_meta(&bytes);
        }

        /// A valid record with one byte changed or cut short decodes to an
        /// error or a value, never a panic.
        #[test]
        fn a_damaged_valid_log_record_never_panics(at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<bool>()) {
            let entry = openraft::Entry::<crate::TypeConfig> {
                log_id: openraft::testing::log_id(3, 2, 9),
                payload: openraft::EntryPayload::Normal(palisade_core::Command::Annotate {
                    at_unix_ms: 7,
                    author: "ops".into(),
                    text: "kept".into(),
                }),
            };
            let mut bytes = serde_json::to_vec(&entry).expect("an entry serializes");
            let i = at.index(bytes.len());
            if cut {
                bytes.truncate(i);
            } else {
                bytes[i] = byte;
            }
            let _ = decode_entry(&bytes);
        }
    }

    #[test]
    fn the_decoders_refuse_garbage() {
        // Guards the property tests above against decoders that accept
        // anything (which would make them pass vacuously).
        for bytes in [&b""[..], b"\x00\xff", b"{}", b"[1,2]", b"null"] {
            assert!(decode_entry(bytes).is_err(), "{bytes:?}");
            assert!(decode_meta::<StoreIdentity>(bytes).is_err(), "{bytes:?}");
            assert!(decode_meta::<Vote<NodeId>>(bytes).is_err(), "{bytes:?}");
            assert!(decode_snapshot_meta(bytes).is_err(), "{bytes:?}");
        }
        assert!(decode_applied(b"\x00").is_err());
        assert!(decode_meta::<StoreIdentity>(br#"{"cluster":"a","node":1,"x":2}"#).is_err());
    }
}

#[test]
fn a_panic_while_reading_the_store_becomes_a_corrupt_error() {
    // No flip in tests/store_corruption.rs makes redb panic once every page
    // checksum is verified on open; this keeps the net under it tested.
    let path = std::path::Path::new("/data/raft.redb");
    let err = super::catch::<()>(path, || panic!("page 7 out of range"))
        .expect_err("a panic is an error");
    assert!(
        matches!(&err, super::OpenError::Corrupt { detail, .. } if detail.contains("page 7 out of range")),
        "{err:?}"
    );
    assert!(err.to_string().contains("To rebuild this witness"), "{err}");
}
