//! The Raft store refuses what it must not trust: an empty, truncated or
//! altered file, a record that does not decode, a log with a hole, a store
//! without an identity or with another cluster's or witness's, and it keeps
//! its directory and file owner-only. Flipped bytes never panic: each open
//! either returns exactly what was stored or an error.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{blank_ent, log_id};
use openraft::{RaftLogReader, RaftSnapshotBuilder, Vote};
use palisade_raft::store::{self, OpenError, StoreIdentity, STORE_FILE};
use palisade_raft::TypeConfig;

type Entry = openraft::Entry<TypeConfig>;

fn id(cluster: &str, node: u64) -> StoreIdentity {
    StoreIdentity {
        cluster: cluster.into(),
        node,
    }
}

fn me() -> StoreIdentity {
    id("prod", 1)
}

fn note(index: u64, text: &str) -> Entry {
    Entry {
        log_id: log_id(1, 1, index),
        payload: openraft::EntryPayload::Normal(palisade_core::Command::Annotate {
            at_unix_ms: index as i64,
            author: "ops".into(),
            text: text.into(),
        }),
    }
}

/// A store with something in every record: a vote, a committed id, a purge
/// point, log entries after it, an applied state and a snapshot; returned
/// open.
async fn populate(dir: &Path) -> (store::LogStore, store::StateMachineStore) {
    let (mut log, mut sm) = store::open(dir, &me()).expect("a fresh store opens");
    log.save_vote(&Vote::new_committed(1, 1))
        .await
        .expect("save vote");
    let entries = vec![
        blank_ent::<TypeConfig>(1, 1, 0),
        note(1, "one"),
        note(2, "two"),
        note(3, "three"),
    ];
    log.blocking_append(entries.clone()).await.expect("append");
    sm.apply(entries).await.expect("apply");
    log.save_committed(Some(log_id(1, 1, 3)))
        .await
        .expect("save committed");
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build snapshot");
    log.purge(log_id(1, 1, 1)).await.expect("purge");
    log.blocking_append(vec![note(4, "four")])
        .await
        .expect("append after purge");
    (log, sm)
}

/// Everything the store gives back, as one comparable string.
async fn content(dir: &Path, who: &StoreIdentity) -> Result<String, OpenError> {
    let (mut log, mut sm) = store::open(dir, who)?;
    let vote = log.read_vote().await;
    let committed = log.read_committed().await;
    let state = log.get_log_state().await;
    // Debug shows a payload as `normal`: compare the serialized entries.
    let entries = log
        .try_get_log_entries(0..100)
        .await
        .map(|e| serde_json::to_string(&e).expect("entries serialize"));
    let applied = sm.applied_state().await;
    let snapshot = sm.get_current_snapshot().await.map(|s| {
        s.map(|s| {
            (
                s.meta.clone(),
                String::from_utf8_lossy(s.snapshot.get_ref()).into_owned(),
            )
        })
    });
    Ok(format!(
        "{vote:?}\n{committed:?}\n{state:?}\n{entries:?}\n{applied:?}\n{:?}\n{snapshot:?}",
        sm.view().cluster_state()
    ))
}

async fn populated() -> (tempfile::TempDir, Vec<u8>, String) {
    let witness = tempfile::tempdir().expect("temp dir");
    let open = populate(witness.path()).await;
    // The file as a crash (kill -9, power loss) leaves it: never closed, so
    // its two commit slots hold the last two commits. (A clean close, and
    // every verified open, commit once more with the same content.)
    let bytes = std::fs::read(witness.path().join(STORE_FILE)).expect("read store");
    std::mem::forget(open);
    let dir = tempfile::tempdir().expect("temp dir");
    write_store(dir.path(), &bytes);
    let expected = content(dir.path(), &me()).await.expect("reopens");
    assert!(
        expected.contains("three") && expected.contains("four"),
        "{expected}"
    );
    (dir, bytes, expected)
}

fn write_store(dir: &Path, bytes: &[u8]) {
    std::fs::write(dir.join(STORE_FILE), bytes).expect("write store");
}

fn assert_says_rebuild(err: &OpenError, dir: &Path) {
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.join(STORE_FILE).display().to_string()),
        "names the file: {msg}"
    );
    assert!(
        msg.contains("To rebuild this witness") && msg.contains("empty"),
        "says how to rebuild: {msg}"
    );
}

#[tokio::test]
async fn a_zero_length_store_is_refused_and_never_taken_for_a_first_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_store(dir.path(), b"");
    let err = store::open(dir.path(), &me()).err().expect("refused");
    assert!(matches!(err, OpenError::Empty { .. }), "{err:?}");
    assert_says_rebuild(&err, dir.path());
    let len = std::fs::metadata(dir.path().join(STORE_FILE))
        .expect("still there")
        .len();
    assert_eq!(len, 0, "the empty file was not initialised as a new store");
}

/// A cut into what the store holds is refused. A cut of trailing pages the
/// store does not use leaves a valid, complete redb file: that opens, with
/// exactly the content it had (redb records no expected length to check).
#[tokio::test]
async fn a_truncated_store_is_refused_at_every_length_that_loses_content() {
    let (dir, bytes, expected) = populated().await;
    let n = bytes.len();
    let mut lengths = vec![1, 8, 9, 10, 64, 191, 320, 511, 512, 4095, 4096, 4097];
    lengths.extend([n / 4, n / 2, n - 4096, n - 512, n - 1]);
    let mut refused = 0;
    for len in lengths.iter().copied().filter(|l| *l < n) {
        write_store(dir.path(), &bytes[..len]);
        match content(dir.path(), &me()).await {
            Ok(got) => assert_eq!(
                got, expected,
                "a store cut to {len} of {n} bytes opened with different content"
            ),
            Err(err) => {
                assert_says_rebuild(&err, dir.path());
                refused += 1;
            }
        }
    }
    assert!(
        refused >= lengths.len() - 1,
        "only {refused} of {} cuts refused",
        lengths.len()
    );
}

/// Suppresses the default panic report of panics raised inside redb on this
/// test's thread (they are caught and turned into errors); others still
/// print.
fn quiet_redb_panics() {
    let previous = std::panic::take_hook();
    let this = std::thread::current().id();
    std::panic::set_hook(Box::new(move |info| {
        let in_redb = info.location().is_some_and(|l| l.file().contains("redb"));
        if !(in_redb && std::thread::current().id() == this) {
            previous(info);
        }
    }));
}

/// Offset and bit of redb's commit-slot selector (the god byte's primary
/// bit): the one flip that is not detected (docs/store.md).
const SLOT_SELECTOR: (usize, u8) = (9, 0x01);

#[tokio::test]
async fn flipped_bytes_at_any_offset_give_the_same_content_or_an_error_never_a_panic() {
    let (dir, bytes, expected) = populated().await;
    quiet_redb_panics();
    // Every byte of the header and commit slots, then strides that land in
    // every page (the file is 4 KiB pages); the whole byte, its low bit,
    // its high bit.
    for (mask, stride) in [(0xff_u8, 61), (0x01, 127), (0x80, 127)] {
        let offsets: Vec<usize> = (0..512)
            .chain((512..bytes.len()).step_by(stride))
            .filter(|at| (*at, mask & SLOT_SELECTOR.1) != SLOT_SELECTOR)
            .collect();
        let (mut same, mut refused, mut panics) = (0, 0, 0);
        for &at in &offsets {
            let mut damaged = bytes.clone();
            damaged[at] ^= mask;
            write_store(dir.path(), &damaged);
            match content(dir.path(), &me()).await {
                Ok(got) => {
                    assert_eq!(
                        got, expected,
                        "byte {at} ^ {mask:#04x}: the store opened with different content"
                    );
                    same += 1;
                }
                Err(err) => {
                    assert_says_rebuild(&err, dir.path());
                    if err.to_string().contains("panicked") {
                        panics += 1;
                    }
                    refused += 1;
                }
            }
        }
        eprintln!(
            "mask {mask:#04x}: {} offsets of {} bytes: {same} unchanged, {refused} refused ({panics} of them redb panics caught)",
            offsets.len(),
            bytes.len()
        );
        assert!(refused > 0, "no flip was ever detected");
    }
}

/// The known limit, pinned: with two-phase commits redb trusts the bit that
/// says which commit slot is current, and the other slot holds the commit
/// before, intact. Flipped, the store opens one commit older, as it would
/// after a crash between the two phases: the two cannot be told apart
/// from the file. If redb ever refuses this, update docs/store.md.
#[tokio::test]
async fn known_limit_a_flipped_commit_slot_selector_rolls_back_one_commit() {
    let (dir, mut bytes, expected) = populated().await;
    bytes[SLOT_SELECTOR.0] ^= SLOT_SELECTOR.1;
    write_store(dir.path(), &bytes);
    let got = content(dir.path(), &me())
        .await
        .expect("opens, one commit older");
    assert_ne!(got, expected);
    assert!(!got.contains("four"), "the last append is gone: {got}");
}

#[tokio::test]
async fn another_clusters_store_is_refused() {
    let (dir, _, _) = populated().await;
    let err = store::open(dir.path(), &id("staging", 1))
        .err()
        .expect("refused");
    match &err {
        OpenError::WrongCluster {
            found, expected, ..
        } => assert_eq!((found.as_str(), expected.as_str()), ("prod", "staging")),
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("\"prod\"") && msg.contains("\"staging\"") && msg.contains("cluster.name"),
        "{msg}"
    );
    assert_says_rebuild(&err, dir.path());
}

#[tokio::test]
async fn another_witness_store_is_refused() {
    let (dir, _, _) = populated().await;
    let err = store::open(dir.path(), &id("prod", 2))
        .err()
        .expect("node 2 refuses node 1's store");
    assert!(
        matches!(
            err,
            OpenError::WrongNode {
                found: 1,
                expected: 2,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("witness 1") && msg.contains("witness 2"),
        "{msg}"
    );
    assert_says_rebuild(&err, dir.path());
    // And the store is still node 1's, unchanged.
    content(dir.path(), &me())
        .await
        .expect("node 1 still opens it");
}

const LOG: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("log");
const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
const SM: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("state_machine");

/// Changes the store behind palisade's back, through redb (a valid file
/// with content palisade never writes).
fn tamper(dir: &Path, f: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::open(dir.join(STORE_FILE)).expect("redb opens it");
    let txn = db.begin_write().expect("write");
    f(&txn);
    txn.commit().expect("commit");
}

#[tokio::test]
async fn a_store_without_an_identity_is_refused() {
    let (dir, _, _) = populated().await;
    tamper(dir.path(), |txn| {
        txn.open_table(META)
            .expect("meta")
            .remove("identity")
            .expect("remove");
    });
    let err = store::open(dir.path(), &me()).err().expect("refused");
    assert!(matches!(err, OpenError::NoIdentity { .. }), "{err:?}");
    assert_says_rebuild(&err, dir.path());
}

#[tokio::test]
async fn a_record_that_does_not_decode_is_refused_by_table_and_key() {
    for (table, key) in [
        ("log", "3"),
        ("meta", "\"vote\""),
        ("meta", "\"identity\""),
        ("state_machine", "\"applied\""),
        ("state_machine", "\"snapshot_meta\""),
    ] {
        let (dir, _, _) = populated().await;
        tamper(dir.path(), |txn| match table {
            "log" => {
                txn.open_table(LOG)
                    .expect("log")
                    .insert(3, &b"{\"log_id\":"[..])
                    .expect("insert");
            }
            "meta" => {
                txn.open_table(META)
                    .expect("meta")
                    .insert(key.trim_matches('"'), &b"\x00garbage"[..])
                    .expect("insert");
            }
            _ => {
                txn.open_table(SM)
                    .expect("sm")
                    .insert(key.trim_matches('"'), &b"[]"[..])
                    .expect("insert");
            }
        });
        let err = store::open(dir.path(), &me()).err().expect("refused");
        match &err {
            OpenError::BadRecord {
                table: t, key: k, ..
            } => assert_eq!((*t, k.as_str()), (table, key), "{err}"),
            other => panic!("{table} {key}: {other:?}"),
        }
        assert_says_rebuild(&err, dir.path());
    }
}

#[tokio::test]
async fn an_unknown_record_is_refused() {
    let (dir, _, _) = populated().await;
    tamper(dir.path(), |txn| {
        txn.open_table(META)
            .expect("meta")
            .insert("vote2", &b"{}"[..])
            .expect("insert");
    });
    let err = store::open(dir.path(), &me()).err().expect("refused");
    assert!(
        matches!(&err, OpenError::BadRecord { table: "meta", key, .. } if key == "\"vote2\""),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_log_with_a_hole_is_refused() {
    let (dir, _, _) = populated().await;
    // Entries 2, 3, 4 after the purge point 1: remove 3.
    tamper(dir.path(), |txn| {
        txn.open_table(LOG).expect("log").remove(3).expect("remove");
    });
    let err = store::open(dir.path(), &me()).err().expect("refused");
    assert!(
        matches!(
            err,
            OpenError::LogGap {
                expected: 3,
                found: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert_says_rebuild(&err, dir.path());

    // And the first entry after the purge point missing.
    let (dir, _, _) = populated().await;
    tamper(dir.path(), |txn| {
        txn.open_table(LOG).expect("log").remove(2).expect("remove");
    });
    let err = store::open(dir.path(), &me()).err().expect("refused");
    assert!(
        matches!(
            err,
            OpenError::LogGap {
                expected: 2,
                found: 3,
                ..
            }
        ),
        "{err:?}"
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[tokio::test]
async fn a_new_store_and_its_directory_are_owner_only() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("witness-1");
    drop(store::open(&dir, &me()).expect("opens"));
    assert_eq!(mode(&dir), 0o700, "data directory");
    assert_eq!(mode(&dir.join(STORE_FILE)), 0o600, "store file");
    assert!(
        !dir.join("raft.redb.creating").exists(),
        "no creation leftovers"
    );
}

#[tokio::test]
async fn an_existing_world_readable_store_and_directory_are_tightened() {
    let (dir, _, _) = populated().await;
    let file = dir.path().join(STORE_FILE);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    drop(store::open(dir.path(), &me()).expect("opens"));
    assert_eq!(mode(dir.path()), 0o700, "data directory");
    assert_eq!(mode(&file), 0o600, "store file");
}

#[tokio::test]
async fn a_creation_cut_short_leaves_no_store_behind() {
    // A crash while creating leaves only `raft.redb.creating`, never a
    // partial `raft.redb`; the next start discards it and creates afresh.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("raft.redb.creating"), b"half").expect("write");
    let got = content(dir.path(), &me())
        .await
        .expect("a first start creates the store");
    assert!(got.starts_with("Ok(None)"), "an empty store: {got}");
    assert!(!dir.path().join("raft.redb.creating").exists());
}
