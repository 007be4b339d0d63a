//! `palisade store backup | restore | rebuild` against three real witness
//! processes (docs/store.md, "Backups, restores and rebuilds"): a restored
//! or rebuilt witness rejoins without an election, catches up, and holds a
//! vote no lower than the cluster's term before it starts; every refusal
//! (another witness's backup, a running witness, no peers to ask) leaves
//! the data directory as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use nix::sys::signal::Signal;
use palisade_testkit::cluster::{palisade, Cluster};
use palisade_testkit::{step, wait_for};
use serde_json::{json, Value};

const ELECTION: Duration = Duration::from_secs(20);
const CATCH_UP: Duration = Duration::from_secs(30);

/// `palisade store ARGS --config <witness id's config>`.
fn store(c: &Cluster, id: u64, args: &[&str]) -> Output {
    let mut all = vec!["store"];
    all.extend_from_slice(args);
    palisade(&all, &node(c, id).config)
}

fn node(c: &Cluster, id: u64) -> &palisade_testkit::cluster::Node {
    c.nodes.iter().find(|n| n.id == id).expect("node id")
}

/// The JSON a command printed; panics with its stderr when it failed.
fn succeeded(out: Output, what: &str) -> Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{what}: {}", String::from_utf8_lossy(&out.stdout));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The refusal a command printed; panics when it did not fail.
fn refused(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what} must be refused; stdout: {} stderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    eprintln!("{what}: {stderr}");
    stderr
}

/// Every file in a witness's data directory with its bytes, and the
/// `<data_dir>.replaced-*` directories beside it: what a refusal must
/// leave exactly as it was.
fn data_dir_state(c: &Cluster, id: u64) -> (BTreeMap<String, Vec<u8>>, Vec<PathBuf>) {
    let dir = &node(c, id).data_dir;
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("read the data dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let bytes = if e.path().is_file() {
            std::fs::read(e.path()).expect("read a file of the data dir")
        } else {
            Vec::new()
        };
        files.insert(name, bytes);
    }
    assert!(
        files.contains_key("raft.redb"),
        "the data dir holds a store: {:?}",
        files.keys()
    );
    (files, replaced_dirs(c, id))
}

/// The `<data_dir>.replaced-*` directories beside witness `id`'s data dir.
fn replaced_dirs(c: &Cluster, id: u64) -> Vec<PathBuf> {
    let n = node(c, id);
    let prefix = format!("{}.replaced-", n.site);
    let parent = n.data_dir.parent().expect("data dir has a parent");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(parent)
        .expect("read the data dirs' parent")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

/// A path for a backup of witness `id`, in the cluster's directory.
fn backup_path(c: &Cluster, id: u64, name: &str) -> String {
    let dir = c.dir.path().join("backups");
    std::fs::create_dir_all(&dir).expect("backup dir");
    dir.join(format!("witness-{id}-{name}.redb"))
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v:#}"))
}

/// Waits until witness `id`'s journal is `expected`.
async fn wait_journal(c: &Cluster, id: u64, expected: &[String]) {
    wait_for(
        &format!("witness {id}'s journal to equal the leader's"),
        CATCH_UP,
        async || {
            let j = c.journal(id).unwrap_or_default();
            if j == expected {
                Ok(())
            } else {
                Err(format!("{j:?}"))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

#[tokio::test]
async fn a_restored_witness_rejoins_catches_up_and_never_votes_below_the_cluster_term() {
    let mut c = Cluster::start();
    let (first_leader, first_term) = c.wait_for_agreed_leader("a first leader", ELECTION).await;
    let w = (1..=3).find(|i| *i != first_leader).expect("a follower");
    let noted = c.annotate(first_leader, "before the backup");
    wait_journal(&c, w, &["before the backup".to_string()]).await;

    step(&format!("stop witness {w} and back it up"));
    c.node(w).kill9();
    let path = backup_path(&c, w, "a");
    let b = succeeded(
        store(&c, w, &["backup", "--to", &path, "--output", "json"]),
        "backup",
    );
    assert_eq!(
        (b["cluster"].as_str(), u64_of(&b, "node")),
        (Some("test"), w)
    );
    assert_eq!(b["file"].as_str(), Some(path.as_str()));
    assert_eq!(u64_of(&b, "vote_term"), first_term, "{b:#}");
    assert!(u64_of(&b, "last_applied_index") >= noted, "{b:#}");
    let e = refused(
        store(&c, w, &["backup", "--to", &path]),
        "a second backup over the first",
    );
    assert!(e.contains("already exists") && e.contains("--force"), "{e}");
    succeeded(
        store(
            &c,
            w,
            &["backup", "--to", &path, "--force", "--output", "json"],
        ),
        "a second backup with --force",
    );

    step("the cluster moves on to a higher term: the first leader is killed, then returns");
    c.node(w).start();
    c.wait_for_agreed_leader("all three again", ELECTION).await;
    c.node(first_leader).kill9();
    let (_, raised) = c
        .wait_for_agreed_leader("a new leader of the two others", ELECTION)
        .await;
    assert!(raised > first_term, "{raised} > {first_term}");
    c.node(first_leader).start();
    c.wait_for_agreed_leader("all three again", ELECTION).await;

    step(&format!(
        "stop witness {w}; the others add notes it has never seen"
    ));
    c.node(w).kill9();
    let (leader, term) = c
        .wait_for_agreed_leader("a leader of the two others", ELECTION)
        .await;
    assert!(
        term > u64_of(&b, "vote_term"),
        "the backup's vote is older than the cluster's term"
    );
    c.annotate(leader, "after the backup, 1");
    c.annotate(leader, "after the backup, 2");

    step(&format!("restore witness {w} from its backup"));
    let r = succeeded(
        store(&c, w, &["restore", "--from", &path, "--output", "json"]),
        "restore",
    );
    assert_eq!(
        r["floor"],
        json!({ "term": term, "leader": leader }),
        "{r:#}"
    );
    assert_eq!(
        r["vote_after"],
        json!({ "term": term, "voted_for": leader, "committed": false }),
        "{r:#}"
    );
    assert_eq!(u64_of(&r["vote_before"], "term"), first_term, "{r:#}");
    let aside = PathBuf::from(r["replaced_dir"].as_str().expect("replaced_dir"));
    assert_eq!(replaced_dirs(&c, w), vec![aside.clone()]);
    assert!(
        aside.join("raft.redb").is_file(),
        "the replaced store is kept"
    );
    let restored = c.inspect(w);
    assert!(
        u64_of(&restored, "vote_term") >= term,
        "before it starts, the restored store votes at the cluster's term {term} or above: {restored:#}"
    );
    assert_eq!(
        restored["last_applied_index"], b["last_applied_index"],
        "the store is the backup's"
    );
    assert_eq!(restored["journal_entries"], json!(1), "{restored:#}");

    step(&format!(
        "start witness {w}: it catches up without an election"
    ));
    c.node(w).start();
    let expected = c.journal(leader).expect("the leader's journal");
    assert_eq!(
        expected,
        vec![
            "before the backup".to_string(),
            "after the backup, 1".into(),
            "after the backup, 2".into()
        ]
    );
    wait_journal(&c, w, &expected).await;
    let after = c
        .wait_for_agreed_leader("all three agree after the restore", ELECTION)
        .await;
    assert_eq!(
        after,
        (leader, term),
        "the restored witness caused no election"
    );
    let s = c.status(w).expect("status from the restored witness");
    assert_eq!(
        (s["leader_id"].as_u64(), s["term"].as_u64()),
        (Some(leader), Some(term))
    );
}

#[tokio::test]
async fn restore_and_rebuild_refuse_and_change_nothing() {
    let mut c = Cluster::start();
    c.wait_for_agreed_leader("a first leader", ELECTION).await;
    let (w, other) = (2, 3);

    step("back up witnesses 3 and 2, each while stopped");
    c.node(other).kill9();
    let foreign = backup_path(&c, other, "a");
    succeeded(
        store(&c, other, &["backup", "--to", &foreign, "--output", "json"]),
        "backup of witness 3",
    );
    c.node(other).start();
    c.wait_for_agreed_leader("all three again", ELECTION).await;
    c.node(w).kill9();
    let own = backup_path(&c, w, "a");
    succeeded(
        store(&c, w, &["backup", "--to", &own, "--output", "json"]),
        "backup of witness 2",
    );

    step("a backup of another witness is refused, naming both");
    let before = data_dir_state(&c, w);
    let e = refused(
        store(&c, w, &["restore", "--from", &foreign]),
        "restoring witness 3's backup on witness 2",
    );
    assert!(
        e.contains("backup of witness 3 of cluster \"test\"")
            && e.contains("this is witness 2 of cluster \"test\""),
        "{e}"
    );
    assert!(e.contains("nothing was changed"), "{e}");
    assert_eq!(data_dir_state(&c, w), before);

    step("restore, rebuild and backup refuse while the witness runs, naming its process");
    c.node(w).start();
    c.wait_for_agreed_leader("witness 2 runs", ELECTION).await;
    for (what, args) in [
        ("restore", vec!["restore", "--from", own.as_str()]),
        ("rebuild", vec!["rebuild"]),
        ("backup", vec!["backup", "--to", &backup_path(&c, w, "b")]),
    ] {
        let e = refused(store(&c, w, &args), &format!("{what} of a running witness"));
        assert!(
            e.contains("is in use by pid") && e.contains("palisade run --config"),
            "{what}: {e}"
        );
    }
    assert!(replaced_dirs(&c, w).is_empty(), "nothing was set aside");
    assert!(!node(&c, w).data_dir.join("raft.redb.restoring").exists());
    assert!(!Path::new(&backup_path(&c, w, "b")).exists());

    step("with both other witnesses down, restore and rebuild are refused, naming them");
    c.node(w).kill9();
    c.node(1).kill9();
    c.node(other).kill9();
    let before = data_dir_state(&c, w);
    for (what, args) in [
        ("restore", vec!["restore", "--from", own.as_str()]),
        ("rebuild", vec!["rebuild"]),
    ] {
        let e = refused(store(&c, w, &args), &format!("{what} with no peer up"));
        assert!(
            e.contains("only 0 of the 2 other witnesses answered")
                && e.contains("witness 1: no answer")
                && e.contains("witness 3: no answer"),
            "{what}: {e}"
        );
        assert_eq!(data_dir_state(&c, w), before, "{what} changed nothing");
    }
}

#[tokio::test]
async fn a_rebuilt_witness_keeps_its_old_store_aside_rejoins_and_catches_up_from_a_snapshot() {
    // Snapshots every 10 entries: the leader compacts its log, so the
    // rebuilt witness must be sent a snapshot, not the log from index 0.
    let mut c = Cluster::with_config("[raft]\nsnapshot_every = 10\n");
    for n in &mut c.nodes {
        n.start();
    }
    let (leader, term) = c.wait_for_agreed_leader("a first leader", ELECTION).await;
    let w = (1..=3).find(|i| *i != leader).expect("a follower");
    let notes: Vec<String> = (1..=30).map(|i| format!("note {i}")).collect();
    for n in &notes {
        c.annotate(leader, n);
    }

    step(&format!("stop witness {w} cleanly and rebuild it empty"));
    c.node(w).signal(Signal::SIGTERM);
    assert_eq!(c.node(w).wait_exit(ELECTION).await, Some(0));
    let old = std::fs::read(node(&c, w).data_dir.join("raft.redb")).expect("the old store");
    let r = succeeded(store(&c, w, &["rebuild", "--output", "json"]), "rebuild");
    assert_eq!(
        r["floor"],
        json!({ "term": term, "leader": leader }),
        "{r:#}"
    );
    assert_eq!(r["store"]["last_log_index"], Value::Null, "{r:#}");
    let last_vote = json!({ "term": term, "voted_for": leader, "committed": true });
    assert_eq!(
        r["replaced"],
        json!({ "store": "readable", "vote": last_vote }),
        "the replaced store was read (it was stopped cleanly): {r:#}"
    );
    assert_eq!(
        r["vote_after"], last_vote,
        "the replaced store's vote, at the floor and committed, is kept: {r:#}"
    );
    let aside = PathBuf::from(r["replaced_dir"].as_str().expect("replaced_dir"));
    assert_eq!(replaced_dirs(&c, w), vec![aside.clone()]);
    assert_eq!(
        std::fs::read(aside.join("raft.redb")).expect("the store set aside"),
        old,
        "the old store was moved aside untouched"
    );
    let fresh = c.inspect(w);
    assert_eq!(
        (fresh["vote_term"].as_u64(), fresh["voted_for"].as_u64()),
        (Some(term), Some(leader)),
        "{fresh:#}"
    );
    assert_eq!(fresh["last_log_index"], Value::Null, "{fresh:#}");
    assert_eq!(fresh["journal_entries"], json!(0), "{fresh:#}");
    c.annotate(leader, "after the rebuild");

    step(&format!(
        "start witness {w}: the leader sends it everything, no election"
    ));
    c.node(w).start();
    let expected = c.journal(leader).expect("the leader's journal");
    assert_eq!(expected.len(), 31, "{expected:?}");
    assert_eq!(expected[..30], notes[..]);
    wait_journal(&c, w, &expected).await;
    assert_eq!(
        c.wait_for_agreed_leader("all three agree after the rebuild", ELECTION)
            .await,
        (leader, term),
        "the rebuilt witness caused no election"
    );
    let log = node(&c, w).log_text();
    assert_eq!(
        log.matches("first start: bootstrapping").count(),
        1,
        "the rebuilt store is not a first start (its vote is set):\n{log}"
    );
    assert!(
        log.contains("installed snapshot from leader"),
        "the leader sent its snapshot:\n{log}"
    );
}

#[tokio::test]
async fn with_one_peer_down_restore_needs_the_leader_acknowledged_after_the_last_write() {
    let mut c = Cluster::start();
    let (leader, _) = c.wait_for_agreed_leader("a first leader", ELECTION).await;
    let w = (1..=3).find(|i| *i != leader).expect("a follower");
    let x = (1..=3)
        .find(|i| *i != leader && *i != w)
        .expect("the third");
    c.annotate(leader, "before the backup");
    c.node(w).kill9();
    let path = backup_path(&c, w, "a");
    succeeded(
        store(&c, w, &["backup", "--to", &path, "--output", "json"]),
        "backup",
    );
    c.node(w).start();
    c.wait_for_agreed_leader("all three again", ELECTION).await;

    step(&format!(
        "witness {w} writes a note, then it and witness {x} stop at once"
    ));
    let store_file = node(&c, w).data_dir.join("raft.redb");
    let modified = || {
        std::fs::metadata(&store_file)
            .and_then(|m| m.modified())
            .map_err(|e| e.to_string())
    };
    let written = modified().expect("the store's modification time");
    c.annotate(leader, "just before it stops");
    wait_for(
        &format!("witness {w} to write the note to its store"),
        CATCH_UP,
        async || {
            let now = modified()?;
            if now > written {
                Ok(())
            } else {
                Err(format!("last written {now:?}"))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    c.node(w).kill9();
    c.node(x).kill9();
    let before = data_dir_state(&c, w);
    let e = refused(
        store(&c, w, &["restore", "--from", &path]),
        "restore with the leader acknowledged only until about the last write",
    );
    assert!(
        e.contains(&format!("witness {x} did not answer"))
            && e.contains("not clearly younger than this witness's last store write"),
        "{e}"
    );
    assert_eq!(data_dir_state(&c, w), before, "the refusal changed nothing");

    step(&format!(
        "witness {x} returns and acknowledges a note long after {w}'s last write, then stops"
    ));
    c.node(x).start();
    let (leader, term) = c
        .wait_for_agreed_leader("a leader of the two running", ELECTION)
        .await;
    c.annotate(leader, "while it is down");
    // More than the tool's margin (3 heartbeats and a second) between the
    // last write and the leader's last acknowledgement.
    wait_for(
        &format!("witness {w}'s store to be last written over 2.5 s ago"),
        Duration::from_secs(10),
        async || {
            let age = modified()?.elapsed().unwrap_or_default();
            if age > Duration::from_millis(2500) {
                Ok(())
            } else {
                Err(format!("{age:?}"))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    c.node(x).kill9();

    step(&format!(
        "restore witness {w} with only the leader up: accepted"
    ));
    let r = succeeded(
        store(&c, w, &["restore", "--from", &path, "--output", "json"]),
        "restore with the leader alone",
    );
    assert_eq!(
        r["floor"],
        json!({ "term": term, "leader": leader }),
        "{r:#}"
    );
    let answered: Vec<u64> = r["answers"]
        .as_array()
        .expect("answers")
        .iter()
        .filter(|a| a["error"].is_null())
        .map(|a| u64_of(a, "node"))
        .collect();
    assert_eq!(answered, vec![leader], "{r:#}");

    step(&format!(
        "witness {w} starts and catches up from the leader, then {x} returns"
    ));
    c.node(w).start();
    let expected = c.journal(leader).expect("the leader's journal");
    assert_eq!(expected.len(), 3, "{expected:?}");
    wait_journal(&c, w, &expected).await;
    c.node(x).start();
    wait_journal(&c, x, &expected).await;
    assert_eq!(
        c.wait_for_agreed_leader("all three agree", ELECTION).await,
        (leader, term),
        "no election"
    );
}
