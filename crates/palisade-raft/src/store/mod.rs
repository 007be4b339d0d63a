//! Durable Raft storage on a single redb file (`<data_dir>/raft.redb`).
//!
//! redb commits with `Durability::Immediate` (fsync) by default, and nothing
//! here is acknowledged to openraft before its commit returns: a vote is on
//! disk before `save_vote` returns, log entries before the `LogFlushed`
//! callback fires, and the state machine before `apply` returns. Every
//! commit is two-phase (see `begin_write`), so a damaged latest commit is
//! refused rather than replaced by the one before it.
//!
//! The state machine is small (the witness cluster's own state, not user
//! data), so it is persisted whole on every apply batch and snapshots are a
//! serialization of it. That keeps restart simple: the state machine is
//! exactly as of `last_applied`, and openraft re-applies the rest of the log.
//!
//! [`open`] trusts nothing it reads: the store must carry the identity
//! (cluster and node) of the witness opening it, redb checks every page's
//! checksum, every record must decode and the log must be contiguous, and a
//! panic inside redb on a damaged file is caught and reported. Anything else
//! is an [`OpenError`] naming the file and how to rebuild the witness
//! (`docs/store.md`).

// openraft's trait methods return its own (large) `StorageError`; our
// helpers return the same type rather than boxing it twice.
#![allow(clippy::result_large_err)]

mod backup;
mod log_store;
mod state_machine;

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{AnyError, ErrorSubject, ErrorVerb, LogId, StorageError, StorageIOError, Vote};
use palisade_core::NodeId;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

pub use backup::{
    backup, hold, read_backup, replace, vote_record, Current, Held, Holder, Replaced, StoreSummary,
    ToolError,
};
pub use log_store::LogStore;
pub use state_machine::{StateMachineStore, StateView};

/// Log entries by index; values are the serde_json of `openraft::Entry`.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Raft hard state: `vote`, `last_purged`, `committed`, and the store's
/// `identity` (serde_json).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// State machine and its current snapshot (serde_json, snapshot data raw).
const SM: TableDefinition<&str, &[u8]> = TableDefinition::new("state_machine");

/// File name of the store inside the data directory.
pub const STORE_FILE: &str = "raft.redb";
/// A store being created: initialised under this name, then renamed to
/// [`STORE_FILE`], so a crash during creation never leaves a partial store.
const CREATING_FILE: &str = "raft.redb.creating";
/// META key of the [`StoreIdentity`], written with the tables.
const IDENTITY_KEY: &str = "identity";
/// Mode of the data directory: owner only.
const DIR_MODE: u32 = 0o700;
/// Mode of the store file: owner read and write only.
const FILE_MODE: u32 = 0o600;

/// Which witness a store belongs to. Recorded when the store is created and
/// checked on every later open, so that a witness never runs on another
/// cluster's or another witness's vote and log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreIdentity {
    /// The cluster's name (`cluster.name` in the configuration).
    pub cluster: String,
    /// This witness's node id in that cluster.
    pub node: NodeId,
}

/// Why the store could not be opened. Every variant names the file; those
/// for a damaged or foreign store say how to rebuild the witness. None is
/// retryable by waiting except [`OpenError::InUse`] and possibly
/// [`OpenError::Io`].
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory could not be created, or made owner-only.
    #[error("cannot create or secure the data directory {}: {source}", path.display())]
    DataDir {
        /// The data directory.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: io::Error,
    },
    /// The store file could not be created, inspected or secured: an I/O
    /// failure, not a judgement on its content.
    #[error("cannot access raft store {}: {source}", path.display())]
    Io {
        /// The store file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: io::Error,
    },
    /// Another process holds the store open (a second witness on the same
    /// data directory, or `palisade inspect` while the witness runs).
    #[error("raft store {} is in use by another process: is a witness (or palisade inspect) already running on this data directory?", path.display())]
    InUse {
        /// The store file.
        path: PathBuf,
    },
    /// The file exists but is empty. A store is never empty once created
    /// (creation is atomic), so this is damage, never a first start.
    #[error("raft store {} is empty (0 bytes): it once held this witness's vote and log, so this is not a first start and the witness will not bootstrap over it. {}", path.display(), rebuild(.path))]
    Empty {
        /// The store file.
        path: PathBuf,
    },
    /// The file is not a readable redb database: truncated, altered (a page
    /// checksum fails), or redb panicked reading it.
    #[error("raft store {} is damaged: {detail}. {}", path.display(), rebuild(.path))]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A record does not decode, or is not one the store writes.
    #[error("raft store {} is damaged: record {key} of table {table:?} {detail}. {}", path.display(), rebuild(.path))]
    BadRecord {
        /// The store file.
        path: PathBuf,
        /// The table holding it (`log`, `meta`, `state_machine`).
        table: &'static str,
        /// Its key (a log index, or a name).
        key: String,
        /// Why it was refused.
        detail: String,
    },
    /// The log is not contiguous: an entry between the purge point (or the
    /// first entry) and the last entry is missing.
    #[error("raft store {} is damaged: its log is not contiguous: the next entry should be index {expected}, the next one held is {found}. {}", path.display(), rebuild(.path))]
    LogGap {
        /// The store file.
        path: PathBuf,
        /// The index that should come next.
        expected: u64,
        /// The index found instead.
        found: u64,
    },
    /// The store records no identity: written by a palisade before
    /// identities were recorded, or its identity was removed.
    #[error("raft store {} records no cluster or node identity (a store from before palisade recorded one, or a damaged one), so it cannot show it belongs to witness {} of cluster {:?}. {}", path.display(), expected.node, expected.cluster, rebuild(.path))]
    NoIdentity {
        /// The store file.
        path: PathBuf,
        /// The identity of the witness opening it.
        expected: StoreIdentity,
    },
    /// The store belongs to another cluster.
    #[error("raft store {} belongs to cluster {found:?}, but this witness is in cluster {expected:?} (cluster.name): refusing another cluster's vote and log. Point storage.data_dir at this witness's own directory, or restore the cluster.name the cluster was created with. If this witness's own store is lost: {}", path.display(), rebuild(.path))]
    WrongCluster {
        /// The store file.
        path: PathBuf,
        /// The cluster recorded in the store.
        found: String,
        /// The cluster of the witness opening it.
        expected: String,
    },
    /// The store belongs to another witness of this cluster.
    #[error("raft store {} belongs to witness {found}, but this is witness {expected}: refusing another witness's vote and log. Point storage.data_dir at this witness's own directory; never copy a store between witnesses. If this witness's own store is lost: {}", path.display(), rebuild(.path))]
    WrongNode {
        /// The store file.
        path: PathBuf,
        /// The node recorded in the store.
        found: NodeId,
        /// The node opening it.
        expected: NodeId,
    },
}

/// The rebuild procedure, as every refusal of a damaged store ends.
fn rebuild(path: &Path) -> String {
    let dir = path.parent().unwrap_or(Path::new("."));
    format!(
        "To rebuild this witness from its peers: stop it and run `palisade store rebuild --config <its config>`, \
         which sets this store aside (kept beside {dir}), creates an empty one and refuses unless the other \
         witnesses follow one leader; then start it: the leader sends it the log (docs/store.md). \
         Never copy a store to another witness",
        dir = dir.display()
    )
}

/// Opens the store in `data_dir` for the witness `identity`, creating it
/// (and the directory, owner-only) on a first start, and returns its log
/// store and state machine, which share the one file.
///
/// A first start is only a missing file: an existing file of any content is
/// opened, verified (every page checksum, every record, a contiguous log,
/// the identity) and refused if anything is wrong. This reads the whole
/// store; it is small.
pub fn open(
    data_dir: &Path,
    identity: &StoreIdentity,
) -> Result<(LogStore, StateMachineStore), OpenError> {
    secure_dir(data_dir)?;
    let path = data_dir.join(STORE_FILE);
    match fs::metadata(&path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(data_dir, identity)?,
        Err(source) => return Err(OpenError::Io { path, source }),
    }
    let (log, sm, recorded) = open_verified(&path)?;
    match recorded {
        None => Err(OpenError::NoIdentity {
            path,
            expected: identity.clone(),
        }),
        Some(found) if found.cluster != identity.cluster => Err(OpenError::WrongCluster {
            path,
            found: found.cluster,
            expected: identity.cluster.clone(),
        }),
        Some(found) if found.node != identity.node => Err(OpenError::WrongNode {
            path,
            found: found.node,
            expected: identity.node,
        }),
        Some(_) => Ok((log, sm)),
    }
}

/// Opens an existing store whatever witness it belongs to, for offline
/// inspection, with every check of [`open`] but the identity; returns the
/// identity it records (`None`: none). Never creates anything.
pub fn open_existing(
    data_dir: &Path,
) -> Result<(LogStore, StateMachineStore, Option<StoreIdentity>), OpenError> {
    let path = data_dir.join(STORE_FILE);
    open_verified(&path)
}

/// Creates the data directory owner-only, or makes an existing one that this
/// user owns owner-only.
fn secure_dir(dir: &Path) -> Result<(), OpenError> {
    let err = |source| OpenError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    match fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(err)?;
            // Exactly 0700 whatever the umask.
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)).map_err(err)
        }
        Err(e) => Err(err(e)),
        Ok(m) if !m.is_dir() => Err(err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a directory",
        ))),
        Ok(m) => tighten(dir, &m, DIR_MODE).map_err(err),
    }
}

/// Sets `mode` on `path` if it grants anything to group or others and this
/// user owns it (someone else's file is theirs to fix; opening it shows
/// whether we may).
fn tighten(path: &Path, meta: &fs::Metadata, mode: u32) -> io::Result<()> {
    if meta.mode() & 0o077 != 0 && meta.uid() == nix::unistd::geteuid().as_raw() {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Creates the store for `identity`: the tables and the identity in one
/// transaction, in a file of its own that is renamed into place only once
/// committed, so `raft.redb` either does not exist or is a complete store.
fn create(data_dir: &Path, identity: &StoreIdentity) -> Result<(), OpenError> {
    let tmp = data_dir.join(CREATING_FILE);
    let path = data_dir.join(STORE_FILE);
    let io_err = |source| OpenError::Io {
        path: tmp.clone(),
        source,
    };
    // Left by a crash during an earlier creation: never a store.
    remove_leftover(&tmp).map_err(io_err)?;
    create_file(&tmp, |txn| write_identity(txn, identity))?;
    fs::rename(&tmp, &path).map_err(io_err)?;
    // The rename is durable once the directory is.
    fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| OpenError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })
}

/// Removes `path` if it exists: a file left by an interrupted creation.
fn remove_leftover(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Creates `path` (which must not exist) owner-only as a store file: the
/// tables, filled by `fill`, in one two-phase transaction, durable when
/// this returns.
fn create_file(
    path: &Path,
    fill: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
) -> Result<(), OpenError> {
    let io_err = |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    };
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_err)?;
    fs::set_permissions(path, fs::Permissions::from_mode(FILE_MODE)).map_err(io_err)?;
    catch(path, || {
        let db = Database::create(path).map_err(|e| db_error(path, e))?;
        let write = || -> Result<(), redb::Error> {
            let txn = begin_write(&db)?;
            {
                txn.open_table(LOG)?;
                txn.open_table(SM)?;
                txn.open_table(META)?;
            }
            fill(&txn)?;
            txn.commit()?;
            Ok(())
        };
        write().map_err(|e| OpenError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("creating it failed: {e}"),
        })
    })
}

/// Records `identity` in the store being written by `txn`.
fn write_identity(
    txn: &redb::WriteTransaction,
    identity: &StoreIdentity,
) -> Result<(), redb::Error> {
    let bytes = serde_json::to_vec(identity).expect("an identity serializes");
    let mut meta = txn.open_table(META)?;
    meta.insert(IDENTITY_KEY, bytes.as_slice())?;
    Ok(())
}

/// Opens the existing store at `path` and verifies all of it (see [`open`]),
/// catching a panic in redb.
fn open_verified(
    path: &Path,
) -> Result<(LogStore, StateMachineStore, Option<StoreIdentity>), OpenError> {
    let (db, identity) = open_db_verified(path)?;
    let sm = StateMachineStore::load(db.clone()).map_err(|e| OpenError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("loading the state machine: {e}"),
    })?;
    Ok((LogStore::new(db), sm, identity))
}

/// Opens the existing store file at `path` and verifies all of it (every
/// page, every record, a contiguous log); returns the database and the
/// identity it records.
fn open_db_verified(path: &Path) -> Result<(Arc<Database>, Option<StoreIdentity>), OpenError> {
    let meta = fs::metadata(path).map_err(|source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(OpenError::Corrupt {
            path: path.to_path_buf(),
            detail: "it is not a regular file".into(),
        });
    }
    if meta.len() == 0 {
        return Err(OpenError::Empty {
            path: path.to_path_buf(),
        });
    }
    tighten(path, &meta, FILE_MODE).map_err(|source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    catch(path, || {
        // `open`, unlike `create`, never initialises an empty or short file;
        // the integrity check verifies every page's checksum and reports a
        // file altered outside redb as corrupted instead of trusting it.
        let db = redb::Builder::new()
            .set_check_integrity_on_open(true)
            .open(path)
            .map_err(|e| db_error(path, e))?;
        let db = Arc::new(db);
        let identity = verify(&db, path)?;
        Ok((db, identity))
    })
}

/// Runs `f`, turning a panic (redb on a damaged file) into
/// [`OpenError::Corrupt`].
fn catch<T>(path: &Path, f: impl FnOnce() -> Result<T, OpenError>) -> Result<T, OpenError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(OpenError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("the database library panicked reading it ({what})"),
            })
        }
    }
}

fn db_error(path: &Path, e: redb::DatabaseError) -> OpenError {
    let path = path.to_path_buf();
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => OpenError::InUse { path },
        // redb reports a file that is not redb at all (bad magic number, too
        // short) as invalid data: that is the file's content, not the disk.
        redb::DatabaseError::Storage(redb::StorageError::Io(source))
            if !matches!(
                source.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            ) =>
        {
            OpenError::Io { path, source }
        }
        other => OpenError::Corrupt {
            path,
            detail: format!("it is not a readable redb database ({other})"),
        },
    }
}

/// Reads every record of every table once, refusing one that does not
/// decode or that the store never writes, and a log that is not contiguous.
/// Returns the identity recorded.
fn verify(db: &Database, path: &Path) -> Result<Option<StoreIdentity>, OpenError> {
    let corrupt = |what: String| OpenError::Corrupt {
        path: path.to_path_buf(),
        detail: what,
    };
    let bad = |table: &'static str, key: String, detail: String| OpenError::BadRecord {
        path: path.to_path_buf(),
        table,
        key,
        detail,
    };
    let txn = db
        .begin_read()
        .map_err(|e| corrupt(format!("cannot begin reading: {e}")))?;

    let mut identity = None;
    let mut last_purged: Option<LogId<NodeId>> = None;
    {
        let table = txn
            .open_table(META)
            .map_err(|e| corrupt(format!("table \"meta\": {e}")))?;
        for item in table
            .iter()
            .map_err(|e| corrupt(format!("table \"meta\": {e}")))?
        {
            let (k, v) = item.map_err(|e| corrupt(format!("table \"meta\": {e}")))?;
            let (key, bytes) = (k.value(), v.value());
            let undecodable = |e: serde_json::Error| {
                bad("meta", format!("{key:?}"), format!("does not decode ({e})"))
            };
            match key {
                IDENTITY_KEY => {
                    identity =
                        Some(log_store::decode_meta::<StoreIdentity>(bytes).map_err(undecodable)?)
                }
                "vote" => {
                    log_store::decode_meta::<Vote<NodeId>>(bytes).map_err(undecodable)?;
                }
                "committed" => {
                    log_store::decode_meta::<Option<LogId<NodeId>>>(bytes).map_err(undecodable)?;
                }
                "last_purged" => {
                    last_purged = log_store::decode_meta::<Option<LogId<NodeId>>>(bytes)
                        .map_err(undecodable)?;
                }
                other => {
                    return Err(bad(
                        "meta",
                        format!("{other:?}"),
                        "is not one this store writes".into(),
                    ))
                }
            }
        }
    }
    {
        let table = txn
            .open_table(SM)
            .map_err(|e| corrupt(format!("table \"state_machine\": {e}")))?;
        let (mut snapshot_meta, mut snapshot_data) = (false, false);
        for item in table
            .iter()
            .map_err(|e| corrupt(format!("table \"state_machine\": {e}")))?
        {
            let (k, v) = item.map_err(|e| corrupt(format!("table \"state_machine\": {e}")))?;
            let (key, bytes) = (k.value(), v.value());
            let undecodable = |e: serde_json::Error| {
                bad(
                    "state_machine",
                    format!("{key:?}"),
                    format!("does not decode ({e})"),
                )
            };
            match key {
                "applied" => {
                    state_machine::decode_applied(bytes).map_err(undecodable)?;
                }
                "snapshot_meta" => {
                    state_machine::decode_snapshot_meta(bytes).map_err(undecodable)?;
                    snapshot_meta = true;
                }
                "snapshot_data" => {
                    state_machine::decode_applied(bytes).map_err(undecodable)?;
                    snapshot_data = true;
                }
                other => {
                    return Err(bad(
                        "state_machine",
                        format!("{other:?}"),
                        "is not one this store writes".into(),
                    ))
                }
            }
        }
        if snapshot_meta != snapshot_data {
            let (key, missing) = if snapshot_meta {
                ("snapshot_meta", "snapshot_data")
            } else {
                ("snapshot_data", "snapshot_meta")
            };
            return Err(bad(
                "state_machine",
                format!("{key:?}"),
                format!("is there without {missing:?}, which is always written with it"),
            ));
        }
    }
    {
        let table = txn
            .open_table(LOG)
            .map_err(|e| corrupt(format!("table \"log\": {e}")))?;
        // The log holds exactly the indexes after the purge point up to the
        // last entry. With nothing purged, only contiguity is checked: where
        // a log starts then is openraft's business (0 after `initialize`).
        let mut prev = last_purged.map(|l| l.index);
        for item in table
            .iter()
            .map_err(|e| corrupt(format!("table \"log\": {e}")))?
        {
            let (k, v) = item.map_err(|e| corrupt(format!("table \"log\": {e}")))?;
            let index = k.value();
            let entry = log_store::decode_entry(v.value())
                .map_err(|e| bad("log", index.to_string(), format!("does not decode ({e})")))?;
            if entry.log_id.index != index {
                return Err(bad(
                    "log",
                    index.to_string(),
                    format!("holds the entry of index {}", entry.log_id.index),
                ));
            }
            if let Some(expected) = prev.map(|p| p + 1) {
                if index != expected {
                    return Err(OpenError::LogGap {
                        path: path.to_path_buf(),
                        expected,
                        found: index,
                    });
                }
            }
            prev = Some(index);
        }
    }
    Ok(identity)
}

/// Begins a write transaction that commits in two phases: the new commit is
/// made durable before it is made the current one. With a single phase,
/// redb takes a latest commit whose pages fail their checksums for a crash
/// during that commit and silently falls back to the one before: a damaged
/// store would lose an acknowledged vote. With two, such a file is refused.
fn begin_write(db: &Database) -> Result<redb::WriteTransaction, redb::TransactionError> {
    let mut txn = db.begin_write()?;
    txn.set_two_phase_commit(true);
    Ok(txn)
}

/// Maps any error into openraft's `StorageError` for `subject` and `verb`.
trait OrStorage<T> {
    fn or_sto(
        self,
        subject: ErrorSubject<NodeId>,
        verb: ErrorVerb,
    ) -> Result<T, StorageError<NodeId>>;
}

impl<T, E: std::error::Error + 'static> OrStorage<T> for Result<T, E> {
    fn or_sto(
        self,
        subject: ErrorSubject<NodeId>,
        verb: ErrorVerb,
    ) -> Result<T, StorageError<NodeId>> {
        self.map_err(|e| io_err(subject, verb, e))
    }
}

fn io_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

/// Runs blocking redb work off the async executor.
async fn blocking<T, F>(db: &Arc<Database>, f: F) -> Result<T, StorageError<NodeId>>
where
    T: Send + 'static,
    F: FnOnce(&Database) -> Result<T, StorageError<NodeId>> + Send + 'static,
{
    let db = db.clone();
    match tokio::task::spawn_blocking(move || f(&db)).await {
        Ok(r) => r,
        Err(join) => Err(io_err(ErrorSubject::Store, ErrorVerb::Write, join)),
    }
}

#[cfg(test)]
mod tests;
