//! Offline backups of a stopped witness's store, and putting a store in
//! its place (`palisade store backup | restore | rebuild`, docs/store.md).
//!
//! A backup is itself a store file: every record of the stopped witness's
//! store, copied in one read transaction into a new redb file beside the
//! destination, committed (fsynced) and renamed into place, so a backup is
//! never half written. Its identity, vote and log position are its own
//! records ([`StoreSummary`]).
//!
//! Replacing a store deletes nothing. The new store is written and fsynced
//! as `raft.redb.restoring` in the data directory, then exchanged with
//! `raft.redb` in one `renameat2(RENAME_EXCHANGE)`, so `raft.redb` is at
//! every instant either the old store or the complete new one; the old one
//! then moves to `<data_dir>.replaced-<unix time>/raft.redb`. The rest of
//! the data directory (the lease guard's order, lock and status files,
//! which a running guard uses) stays where it is. While this runs, the old
//! store is held open read-only ([`hold`]), so a witness started meanwhile
//! refuses it as in use instead of running on it.
//!
//! What vote the new store must hold is decided by
//! [`palisade_core::store_restore`]; this module only writes it.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use nix::fcntl::{renameat2, RenameFlags};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{LogId, StorageError, Vote};
use palisade_core::store_restore::{restored_vote, VoteFloor, VoteRecord};
use palisade_core::NodeId;
use redb::{Database, ReadableDatabase, ReadableTable};

use super::{
    catch, create_file, db_error, log_store, open_db_verified, remove_leftover, write_identity,
    LogStore, OpenError, StateMachineStore, StoreIdentity, DIR_MODE, IDENTITY_KEY, LOG, META, SM,
    STORE_FILE,
};

/// The new store while it is written, in the data directory.
const RESTORING_FILE: &str = "raft.redb.restoring";

/// What a store file holds, in brief: what a backup records and what
/// `palisade store` prints.
#[derive(Clone, Debug)]
pub struct StoreSummary {
    /// The file.
    pub file: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// The witness it belongs to (`None`: it records none).
    pub identity: Option<StoreIdentity>,
    /// The last vote it holds (`None`: it never voted).
    pub vote: Option<Vote<NodeId>>,
    /// Its last log entry (or the purge point when the log is empty).
    pub last_log: Option<LogId<NodeId>>,
    /// The log id up to which the log was compacted into a snapshot.
    pub last_purged: Option<LogId<NodeId>>,
    /// The last log id it knew committed.
    pub committed: Option<LogId<NodeId>>,
    /// The last entry applied to its state machine.
    pub last_applied: Option<LogId<NodeId>>,
}

/// A process that has a store file open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Its process id.
    pub pid: u32,
    /// Its command line (empty when unreadable).
    pub command: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.command.is_empty() {
            write!(f, "pid {}", self.pid)
        } else {
            write!(f, "pid {} ({})", self.pid, self.command)
        }
    }
}

/// Why a backup, restore or rebuild did nothing (or, for
/// [`ToolError::Io`] while putting a store in place, what it could not
/// finish). None is worth retrying as it is except [`ToolError::InUse`]
/// once the witness is stopped.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// A store could not be opened, or is damaged.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A process (a running witness, or `palisade inspect`) holds the store.
    #[error("raft store {} is in use by {}: stop the witness first (a running witness, or palisade inspect, holds the store's lock)", path.display(), holders_text(.holders))]
    InUse {
        /// The store file.
        path: PathBuf,
        /// The processes seen holding it open (empty: the lock is held by
        /// a process this user cannot see).
        holders: Vec<Holder>,
    },
    /// The data directory holds no store.
    #[error("{}: there is no raft store here (no {STORE_FILE}); is this the witness's storage.data_dir?", dir.display())]
    NoStore {
        /// The data directory.
        dir: PathBuf,
    },
    /// The backup's destination exists.
    #[error("{} already exists: refusing to overwrite it (pass --force to replace it)", path.display())]
    Exists {
        /// The destination.
        path: PathBuf,
    },
    /// The store records no identity, so it cannot show whose it is.
    #[error("raft store {} records no witness identity (written by a palisade from before identities were recorded): it cannot show it belongs to witness {} of cluster {:?}", path.display(), expected.node, expected.cluster)]
    NoIdentity {
        /// The store file.
        path: PathBuf,
        /// The witness it should belong to.
        expected: StoreIdentity,
    },
    /// The backup is another witness's, or another cluster's.
    #[error("{} is a backup of witness {} of cluster {:?}, but this is witness {} of cluster {:?}: refusing another witness's vote and log; restore this witness's own backup, or rebuild it empty (palisade store rebuild)", path.display(), found.node, found.cluster, expected.node, expected.cluster)]
    OtherWitness {
        /// The backup.
        path: PathBuf,
        /// Whose it is.
        found: StoreIdentity,
        /// Whose it should be.
        expected: StoreIdentity,
    },
    /// The file system refused.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// Reading or writing a record failed.
    #[error("raft store {}: {source}", path.display())]
    Storage {
        /// The store file.
        path: PathBuf,
        /// openraft's storage error.
        #[source]
        source: StorageError<NodeId>,
    },
}

fn holders_text(holders: &[Holder]) -> String {
    if holders.is_empty() {
        "another process (it holds the store's lock; its pid is not visible to this user)".into()
    } else {
        holders
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn io_error(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> ToolError {
    let path = path.to_path_buf();
    move |source| ToolError::Io {
        path,
        action,
        source,
    }
}

/// An [`OpenError::InUse`] with the processes that hold the file.
fn in_use(e: OpenError) -> ToolError {
    match e {
        OpenError::InUse { path } => {
            let holders = holders(&path);
            ToolError::InUse { path, holders }
        }
        other => ToolError::Open(other),
    }
}

/// The processes (of those this user may look at in `/proc`) that have
/// `path` open, this one excepted.
pub fn holders(path: &Path) -> Vec<Holder> {
    let Ok(target) = fs::metadata(path) else {
        return Vec::new();
    };
    let (dev, ino) = (target.dev(), target.ino());
    let me = std::process::id();
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| fs::metadata(fd.path()).is_ok_and(|m| m.dev() == dev && m.ino() == ino));
        if holds {
            let command = fs::read(p.path().join("cmdline"))
                .map(|b| {
                    b.split(|c| *c == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            out.push(Holder { pid, command });
        }
    }
    out
}

/// Reads the summary of the open store `db`, shown as `file` of `bytes`.
async fn summarize(
    file: &Path,
    bytes: u64,
    db: Arc<Database>,
    identity: Option<StoreIdentity>,
) -> Result<StoreSummary, ToolError> {
    let storage = |source| ToolError::Storage {
        path: file.to_path_buf(),
        source,
    };
    let mut log = LogStore::new(db.clone());
    let mut sm = StateMachineStore::load(db).map_err(storage)?;
    let vote = log.read_vote().await.map_err(storage)?;
    let state = log.get_log_state().await.map_err(storage)?;
    let committed = log.read_committed().await.map_err(storage)?;
    let (last_applied, _) = sm.applied_state().await.map_err(storage)?;
    Ok(StoreSummary {
        file: file.to_path_buf(),
        bytes,
        identity,
        vote,
        last_log: state.last_log_id,
        last_purged: state.last_purged_log_id,
        committed,
        last_applied,
    })
}

fn file_len(path: &Path) -> Result<u64, ToolError> {
    fs::metadata(path)
        .map(|m| m.len())
        .map_err(io_error(path, "reading the size of"))
}

/// Writes a copy of every record of `src` into a new store file `dst`.
fn copy_into(src: &Database, dst: &Path) -> Result<(), OpenError> {
    create_file(dst, |txn| {
        let read = src.begin_read()?;
        {
            let from = read.open_table(LOG)?;
            let mut to = txn.open_table(LOG)?;
            for item in from.iter()? {
                let (k, v) = item?;
                to.insert(k.value(), v.value())?;
            }
        }
        for table in [META, SM] {
            let from = read.open_table(table)?;
            let mut to = txn.open_table(table)?;
            for item in from.iter()? {
                let (k, v) = item?;
                to.insert(k.value(), v.value())?;
            }
        }
        Ok(())
    })
}

/// Makes a rename or a creation in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), ToolError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir, "syncing the directory"))
}

/// The directory of `path` (`.` for a bare file name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn exists(path: &Path) -> Result<bool, ToolError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(path, "looking at")(e)),
    }
}

/// Renames `from` to `to` in one step: over an existing `to` only when
/// `replace`, else refusing one that exists (even one created meanwhile).
fn rename(from: &Path, to: &Path, replace: bool) -> Result<(), ToolError> {
    if replace {
        return fs::rename(from, to).map_err(io_error(to, "renaming into place"));
    }
    let cwd = fs::File::open(".").map_err(io_error(Path::new("."), "opening"))?;
    match renameat2(&cwd, from, &cwd, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EEXIST) => Err(ToolError::Exists {
            path: to.to_path_buf(),
        }),
        Err(e) => Err(io_error(to, "renaming into place")(io::Error::from(e))),
    }
}

/// Writes a consistent backup of the stopped witness's store in
/// `data_dir` to `to`, and returns what it holds. Refuses while a process
/// holds the store, when `to` exists and not `force`, and a store that
/// records no identity. The copy is written beside `to`, verified and
/// fsynced, and only then renamed to `to`.
pub async fn backup(data_dir: &Path, to: &Path, force: bool) -> Result<StoreSummary, ToolError> {
    let store = data_dir.join(STORE_FILE);
    if !exists(&store)? {
        return Err(ToolError::NoStore {
            dir: data_dir.to_path_buf(),
        });
    }
    if !force && exists(to)? {
        return Err(ToolError::Exists {
            path: to.to_path_buf(),
        });
    }
    let Some(name) = to.file_name() else {
        return Err(io_error(to, "writing the backup to")(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file name",
        )));
    };
    let dir = parent_of(to);
    let tmp = dir.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let (db, identity) = open_db_verified(&store).map_err(in_use)?;
    if identity.is_none() {
        return Err(ToolError::Open(OpenError::Corrupt {
            path: store,
            detail: "it records no witness identity, so a copy of it could never be restored"
                .into(),
        }));
    }
    remove_leftover(&tmp).map_err(io_error(&tmp, "removing the leftover"))?;
    let copied = async {
        copy_into(&db, &tmp)?;
        drop(db);
        let (copy, identity) = open_db_verified(&tmp)?;
        summarize(to, file_len(&tmp)?, copy, identity).await
    }
    .await
    .and_then(|summary| rename(&tmp, to, force).map(|()| summary));
    match copied {
        Ok(summary) => {
            sync_dir(&dir)?;
            Ok(summary)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Checks that the store at `path` belongs to `expected`.
fn check_identity(
    path: &Path,
    found: Option<StoreIdentity>,
    expected: &StoreIdentity,
) -> Result<(), ToolError> {
    match found {
        None => Err(ToolError::NoIdentity {
            path: path.to_path_buf(),
            expected: expected.clone(),
        }),
        Some(found) if &found != expected => Err(ToolError::OtherWitness {
            path: path.to_path_buf(),
            found,
            expected: expected.clone(),
        }),
        Some(_) => Ok(()),
    }
}

/// Verifies the backup at `path` (all of it, as a witness's start does) and
/// that it belongs to `expected`; returns what it holds.
pub async fn read_backup(path: &Path, expected: &StoreIdentity) -> Result<StoreSummary, ToolError> {
    if !exists(path)? {
        return Err(io_error(path, "reading the backup")(io::Error::from(
            io::ErrorKind::NotFound,
        )));
    }
    let (db, identity) = open_db_verified(path).map_err(in_use)?;
    check_identity(path, identity.clone(), expected)?;
    summarize(path, file_len(path)?, db, identity).await
}

/// The store currently in a data directory, as [`hold`] found it.
#[derive(Clone, Debug)]
pub enum Current {
    /// There is none.
    Missing,
    /// It opened read-only.
    Readable {
        /// The identity it records.
        identity: Option<StoreIdentity>,
        /// Its vote.
        vote: Option<Vote<NodeId>>,
    },
    /// It did not open read-only (damaged, or left by a crash and not yet
    /// repaired by a witness start): why. Then nothing holds it while the
    /// new store is written; [`replace`] looks for a process that opened
    /// it meanwhile just before putting the new one in place.
    Unreadable(String),
}

/// A data directory whose store nobody else holds, kept so until this is
/// dropped or given to [`replace`]: the current store (when readable) is
/// open read-only, which a witness starting meanwhile finds in use.
pub struct Held {
    data_dir: PathBuf,
    /// When the current store was last written (its modification time,
    /// read before anything here opened it); `None`: no store.
    pub last_write: Option<SystemTime>,
    /// What the current store is.
    pub current: Current,
    _lock: Option<redb::ReadOnlyDatabase>,
}

/// Makes sure no process holds the store in `data_dir` (refusing, naming
/// them, when one does), and keeps it so: see [`Held`]. Writes nothing.
pub fn hold(data_dir: &Path) -> Result<Held, ToolError> {
    let path = data_dir.join(STORE_FILE);
    let held = |last_write, current, lock| Held {
        data_dir: data_dir.to_path_buf(),
        last_write,
        current,
        _lock: lock,
    };
    let meta = match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(held(None, Current::Missing, None))
        }
        Err(e) => return Err(io_error(&path, "looking at")(e)),
        Ok(m) => m,
    };
    let last_write = meta.modified().ok();
    let seen = holders(&path);
    if !seen.is_empty() {
        return Err(ToolError::InUse {
            path,
            holders: seen,
        });
    }
    let opened = catch(&path, || {
        match redb::Builder::new().open_read_only(&path) {
        Ok(ro) => Ok(Ok(ro)),
        // Read-only opens never repair; a witness start would.
        Err(redb::DatabaseError::RepairAborted) => Ok(Err(
            "it was not closed cleanly (the witness was killed or crashed), and only a read-write open (a witness start) repairs that",
        )),
        Err(e) => Err(db_error(&path, e)),
    }
    });
    let ro = match opened {
        Ok(Ok(ro)) => ro,
        Ok(Err(why)) => return Ok(held(last_write, Current::Unreadable(why.to_string()), None)),
        Err(OpenError::InUse { path }) => {
            return Err(ToolError::InUse {
                path,
                holders: Vec::new(),
            })
        }
        Err(OpenError::Corrupt { detail, .. }) => {
            return Ok(held(last_write, Current::Unreadable(detail), None))
        }
        Err(e) => return Ok(held(last_write, Current::Unreadable(e.to_string()), None)),
    };
    let read = || -> Result<(Option<StoreIdentity>, Option<Vote<NodeId>>), String> {
        let txn = ro.begin_read().map_err(|e| e.to_string())?;
        let meta = txn.open_table(META).map_err(|e| e.to_string())?;
        let get = |key: &str| -> Result<Option<Vec<u8>>, String> {
            Ok(meta
                .get(key)
                .map_err(|e| e.to_string())?
                .map(|v| v.value().to_vec()))
        };
        let identity = get(IDENTITY_KEY)?
            .map(|b| log_store::decode_meta(&b))
            .transpose()
            .map_err(|e| format!("its identity does not decode ({e})"))?;
        let vote = get("vote")?
            .map(|b| log_store::decode_meta(&b))
            .transpose()
            .map_err(|e| format!("its vote does not decode ({e})"))?;
        Ok((identity, vote))
    };
    let current = match catch(&path, || {
        read().map_err(|detail| OpenError::Corrupt {
            path: path.clone(),
            detail,
        })
    }) {
        Ok((identity, vote)) => Current::Readable { identity, vote },
        Err(OpenError::Corrupt { detail, .. }) => Current::Unreadable(detail),
        Err(e) => Current::Unreadable(e.to_string()),
    };
    Ok(held(last_write, current, Some(ro)))
}

/// What [`replace`] did.
#[derive(Clone, Debug)]
pub struct Replaced {
    /// The directory the replaced store was moved to (`None`: there was
    /// none).
    pub moved_to: Option<PathBuf>,
    /// The new store's vote before the floor was applied: the backup's
    /// (`None`: it had none, or the store is new).
    pub vote_before: Option<Vote<NodeId>>,
    /// The vote it holds now.
    pub vote_after: Vote<NodeId>,
    /// The new store.
    pub store: StoreSummary,
}

/// The store's vote as palisade-core's [`VoteRecord`].
pub fn vote_record(v: &Vote<NodeId>) -> VoteRecord {
    VoteRecord {
        term: v.leader_id.term,
        node: v.leader_id.node_id,
        committed: v.committed,
    }
}

fn vote_of(r: VoteRecord) -> Vote<NodeId> {
    if r.committed {
        Vote::new_committed(r.term, r.node)
    } else {
        Vote::new(r.term, r.node)
    }
}

/// A new directory beside `data_dir` for the store it replaces:
/// `<data_dir>.replaced-<now>`, with `-2`, `-3`... when taken.
fn aside_dir(data_dir: &Path, now_unix: u64) -> Result<PathBuf, ToolError> {
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let parent = parent_of(data_dir);
    for n in 1.. {
        let suffix = if n == 1 {
            String::new()
        } else {
            format!("-{n}")
        };
        let dir = parent.join(format!("{name}.replaced-{now_unix}{suffix}"));
        match fs::DirBuilder::new().mode(DIR_MODE).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_error(&dir, "creating")(e)),
        }
    }
    unreachable!("some suffix is free")
}

/// Puts a new store in `held`'s data directory for witness `identity`: a
/// copy of the backup `from` (checked to be this witness's), or, without
/// one, an empty store with the identity (a rebuild). Its vote is raised
/// to `floor` unless it (or the readable replaced store) holds a higher
/// one: [`restored_vote`]. The replaced store moves to
/// `<data_dir>.replaced-<now_unix>/` (see the module documentation).
pub async fn replace(
    held: Held,
    identity: &StoreIdentity,
    from: Option<&Path>,
    floor: VoteFloor,
    now_unix: u64,
) -> Result<Replaced, ToolError> {
    let dir = held.data_dir.clone();
    let target = dir.join(STORE_FILE);
    let tmp = dir.join(RESTORING_FILE);
    remove_leftover(&tmp).map_err(io_error(&tmp, "removing the leftover"))?;
    // The replaced store's vote is this witness's own last one only when
    // the store is this witness's.
    let replaced_vote = match &held.current {
        Current::Readable {
            identity: Some(i),
            vote,
        } if i == identity => *vote,
        _ => None,
    };
    let written = async {
        match from {
            Some(backup) => {
                let (db, found) = open_db_verified(backup).map_err(in_use)?;
                check_identity(backup, found, identity)?;
                copy_into(&db, &tmp)?;
            }
            None => create_file(&tmp, |txn| write_identity(txn, identity))?,
        }
        let (db, found) = open_db_verified(&tmp)?;
        let storage = |source| ToolError::Storage {
            path: tmp.clone(),
            source,
        };
        let mut log = LogStore::new(db.clone());
        let before = log.read_vote().await.map_err(storage)?;
        let after = vote_of(restored_vote(
            before.iter().chain(replaced_vote.iter()).map(vote_record),
            floor,
        ));
        if before != Some(after) {
            log.save_vote(&after).await.map_err(storage)?;
        }
        drop(log);
        let store = summarize(&target, file_len(&tmp)?, db, found).await?;
        Ok::<_, ToolError>((before, after, store))
    }
    .await;
    let (vote_before, vote_after, store) = match written {
        Ok(w) => w,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // A store that could not be held open read-only is not locked: a
    // witness started meanwhile would run on it.
    let seen = holders(&target);
    if !seen.is_empty() {
        let _ = fs::remove_file(&tmp);
        return Err(ToolError::InUse {
            path: target,
            holders: seen,
        });
    }
    let dir_fd = fs::File::open(&dir).map_err(io_error(&dir, "opening"))?;
    let moved_to = if exists(&target)? {
        let aside = aside_dir(&dir, now_unix)?;
        renameat2(
            &dir_fd,
            RESTORING_FILE,
            &dir_fd,
            STORE_FILE,
            RenameFlags::RENAME_EXCHANGE,
        )
        .map_err(|e| io_error(&target, "exchanging the new store with")(io::Error::from(e)))?;
        // `tmp` is the replaced store now.
        let kept = aside.join(STORE_FILE);
        fs::rename(&tmp, &kept).map_err(io_error(&kept, "moving the replaced store to"))?;
        sync_dir(&aside)?;
        sync_dir(&parent_of(&dir))?;
        Some(aside)
    } else {
        match renameat2(
            &dir_fd,
            RESTORING_FILE,
            &dir_fd,
            STORE_FILE,
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => None,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(io_error(
                    &target,
                    "putting the new store in place (did a witness start on this data directory meanwhile?)",
                )(io::Error::from(e)));
            }
        }
    };
    sync_dir(&dir)?;
    drop(held);
    Ok(Replaced {
        moved_to,
        vote_before,
        vote_after,
        store,
    })
}

#[cfg(test)]
mod tests {
    use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
    use openraft::testing::blank_ent;

    use super::*;
    use crate::store::open;
    use crate::TypeConfig;

    fn witness(node: NodeId) -> StoreIdentity {
        StoreIdentity {
            cluster: "test".into(),
            node,
        }
    }

    /// A stopped witness's data dir (`<tmp>/data/w<node>`) whose store
    /// voted `vote` and holds entries 1..=3.
    async fn stopped_witness(tmp: &Path, node: NodeId, vote: Vote<NodeId>) -> PathBuf {
        let dir = tmp.join("data").join(format!("w{node}"));
        let (mut log, _sm) = open(&dir, &witness(node)).expect("open");
        log.save_vote(&vote).await.expect("vote");
        log.blocking_append((1..=3).map(|i| blank_ent::<TypeConfig>(1, 1, i)))
            .await
            .expect("append");
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = fs::read_dir(dir)
            .expect("read dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backup_is_a_verified_copy_and_never_overwrites_by_accident() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = stopped_witness(tmp.path(), 2, Vote::new_committed(4, 1)).await;
        let to = tmp.path().join("b.redb");
        let s = backup(&dir, &to, false).await.expect("backup");
        assert_eq!(s.identity, Some(witness(2)));
        assert_eq!(s.vote, Some(Vote::new_committed(4, 1)));
        assert_eq!(s.last_log.map(|l| l.index), Some(3));
        assert_eq!(s.file, to);
        let again = backup(&dir, &to, false).await.expect_err("exists");
        assert!(matches!(again, ToolError::Exists { .. }), "{again}");
        backup(&dir, &to, true).await.expect("--force");
        assert_eq!(
            names(tmp.path()),
            ["b.redb", "data"],
            "no partial file left"
        );
        let read = read_backup(&to, &witness(2)).await.expect("read back");
        assert_eq!(read.vote, s.vote);
        let other = read_backup(&to, &witness(3))
            .await
            .expect_err("not witness 3's");
        assert!(
            other.to_string().contains("backup of witness 2")
                && other.to_string().contains("this is witness 3"),
            "{other}"
        );
        let missing = backup(
            &tmp.path().join("nowhere"),
            &tmp.path().join("c.redb"),
            false,
        )
        .await
        .expect_err("no store");
        assert!(matches!(missing, ToolError::NoStore { .. }), "{missing}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_open_store_is_neither_backed_up_nor_replaced() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("w2");
        let running = open(&dir, &witness(2)).expect("a running witness's store");
        let e = backup(&dir, &tmp.path().join("b.redb"), false)
            .await
            .expect_err("in use");
        assert!(matches!(e, ToolError::InUse { .. }), "{e}");
        let e = hold(&dir).err().expect("in use");
        assert!(e.to_string().contains("is in use"), "{e}");
        drop(running);
        let held = hold(&dir).expect("free once closed");
        assert!(matches!(held.current, Current::Readable { .. }));
        // While held, a witness start finds the store in use.
        let e = open(&dir, &witness(2)).err().expect("held");
        assert!(matches!(e, OpenError::InUse { .. }), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replacing_raises_the_vote_and_sets_the_old_store_aside() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = stopped_witness(tmp.path(), 2, Vote::new_committed(4, 1)).await;
        let to = tmp.path().join("b.redb");
        backup(&dir, &to, false).await.expect("backup");
        let old = fs::read(dir.join(STORE_FILE)).expect("old store");
        fs::write(dir.join("lease-guard.order"), b"order").expect("a guard file");

        let floor = VoteFloor { term: 9, leader: 3 };
        let done = replace(hold(&dir).expect("hold"), &witness(2), Some(&to), floor, 77)
            .await
            .expect("restore");
        assert_eq!(done.vote_before, Some(Vote::new_committed(4, 1)));
        assert_eq!(done.vote_after, Vote::new(9, 3));
        assert_eq!(done.store.last_log.map(|l| l.index), Some(3));
        let aside = tmp.path().join("data").join("w2.replaced-77");
        assert_eq!(done.moved_to.as_deref(), Some(aside.as_path()));
        assert_eq!(fs::read(aside.join(STORE_FILE)).expect("set aside"), old);
        assert_eq!(names(&dir), ["lease-guard.order", "raft.redb"]);
        let (mut log, sm) = open(&dir, &witness(2)).expect("the restored store opens");
        assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new(9, 3)));
        drop((log, sm));

        // Again in the same second: a directory of its own. The replaced
        // store's vote (9, 3) is above this floor and is kept.
        let done = replace(
            hold(&dir).expect("hold"),
            &witness(2),
            None,
            VoteFloor { term: 8, leader: 1 },
            77,
        )
        .await
        .expect("rebuild");
        assert_eq!(done.vote_before, None);
        assert_eq!(done.vote_after, Vote::new(9, 3));
        assert_eq!(done.store.last_log, None);
        assert_eq!(
            done.moved_to.as_deref(),
            Some(tmp.path().join("data").join("w2.replaced-77-2").as_path())
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_witness_s_vote_in_the_data_dir_is_not_kept() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = stopped_witness(tmp.path(), 3, Vote::new(12, 3)).await;
        let held = hold(&dir).expect("hold");
        assert!(matches!(
            &held.current,
            Current::Readable { identity: Some(i), .. } if i.node == 3
        ));
        let done = replace(held, &witness(2), None, VoteFloor { term: 5, leader: 1 }, 1)
            .await
            .expect("rebuild");
        assert_eq!(done.vote_after, Vote::new(5, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_store_is_rebuilt_in_place_and_a_foreign_backup_changes_nothing() {
        let tmp = tempfile::tempdir().expect("tmp");
        let other = stopped_witness(tmp.path(), 3, Vote::new(2, 3)).await;
        let foreign = tmp.path().join("w3.redb");
        backup(&other, &foreign, false)
            .await
            .expect("backup of witness 3");

        let dir = tmp.path().join("data").join("w2");
        fs::create_dir_all(&dir).expect("an empty data dir");
        let floor = VoteFloor { term: 5, leader: 1 };
        let e = replace(
            hold(&dir).expect("hold"),
            &witness(2),
            Some(&foreign),
            floor,
            1,
        )
        .await
        .expect_err("witness 3's backup");
        assert!(matches!(e, ToolError::OtherWitness { .. }), "{e}");
        assert!(names(&dir).is_empty(), "nothing written: {:?}", names(&dir));

        let done = replace(hold(&dir).expect("hold"), &witness(2), None, floor, 1)
            .await
            .expect("rebuild");
        assert_eq!(done.moved_to, None);
        assert_eq!(done.vote_after, Vote::new(5, 1));
        assert_eq!(names(&dir), ["raft.redb"]);
        open(&dir, &witness(2)).expect("the new store is this witness's");
    }
}
