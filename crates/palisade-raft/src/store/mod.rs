//! Durable Raft storage on a single redb file (`<data_dir>/raft.redb`).
//!
//! redb commits with `Durability::Immediate` (fsync) by default, and nothing
//! here is acknowledged to openraft before its commit returns: a vote is on
//! disk before `save_vote` returns, log entries before the `LogFlushed`
//! callback fires, and the state machine before `apply` returns.
//!
//! The state machine is small (the witness cluster's own state, not user
//! data), so it is persisted whole on every apply batch and snapshots are a
//! serialization of it. That keeps restart simple: the state machine is
//! exactly as of `last_applied`, and openraft re-applies the rest of the log.

// openraft's trait methods return its own (large) `StorageError`; our
// helpers return the same type rather than boxing it twice.
#![allow(clippy::result_large_err)]

mod log_store;
mod state_machine;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};
use palisade_core::NodeId;
use redb::{Database, TableDefinition};

pub use log_store::LogStore;
pub use state_machine::{StateMachineStore, StateView};

/// Log entries by index; values are the serde_json of `openraft::Entry`.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Raft hard state: `vote`, `last_purged`, `committed` (serde_json).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// State machine and its current snapshot (serde_json, snapshot data raw).
const SM: TableDefinition<&str, &[u8]> = TableDefinition::new("state_machine");

/// File name of the store inside the data directory.
pub const STORE_FILE: &str = "raft.redb";

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file exists but is not a readable redb database, or is locked by
    /// another process (a second witness on the same data dir).
    #[error("cannot open raft store {path}: {source}")]
    Database {
        /// The store file.
        path: PathBuf,
        /// What redb said.
        #[source]
        source: redb::DatabaseError,
    },
    /// The file opened but its content could not be read.
    #[error("cannot read raft store {path}: {source}")]
    Read {
        /// The store file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: StorageError<NodeId>,
    },
}

/// Opens (creating if absent) the store in `data_dir` and returns its log
/// store and state machine, which share the one file.
pub fn open(data_dir: &Path) -> Result<(LogStore, StateMachineStore), OpenError> {
    let path = data_dir.join(STORE_FILE);
    let db = Database::create(&path).map_err(|source| OpenError::Database {
        path: path.clone(),
        source,
    })?;
    let db = Arc::new(db);
    init_tables(&db).map_err(|source| OpenError::Read {
        path: path.clone(),
        source,
    })?;
    let sm =
        StateMachineStore::load(db.clone()).map_err(|source| OpenError::Read { path, source })?;
    Ok((LogStore::new(db), sm))
}

/// Creates the tables so that read transactions never see them missing.
fn init_tables(db: &Database) -> Result<(), StorageError<NodeId>> {
    let txn = db
        .begin_write()
        .or_sto(ErrorSubject::Store, ErrorVerb::Write)?;
    {
        txn.open_table(LOG)
            .or_sto(ErrorSubject::Store, ErrorVerb::Write)?;
        txn.open_table(META)
            .or_sto(ErrorSubject::Store, ErrorVerb::Write)?;
        txn.open_table(SM)
            .or_sto(ErrorSubject::Store, ErrorVerb::Write)?;
    }
    txn.commit().or_sto(ErrorSubject::Store, ErrorVerb::Write)
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
