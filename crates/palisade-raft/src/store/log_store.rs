//! The Raft log and hard state (vote, purged and committed log ids).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError, Vote};
use palisade_core::NodeId;
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{blocking, io_err, LOG, META};
use crate::TypeConfig;

type Entry = openraft::Entry<TypeConfig>;

/// The durable Raft log. Cheap to clone: clones share the database, and the
/// clone openraft uses for replication reads the same committed data.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub(super) fn new(db: Arc<Database>) -> Self {
        Self { db }
    }

    fn read_meta<T: DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, StorageError<NodeId>> {
        let subject = || if key == "vote" { ErrorSubject::Vote } else { ErrorSubject::Store };
        let txn = db.begin_read().map_err(|e| io_err(subject(), ErrorVerb::Read, e))?;
        let table = txn.open_table(META).map_err(|e| io_err(subject(), ErrorVerb::Read, e))?;
        match table.get(key).map_err(|e| io_err(subject(), ErrorVerb::Read, e))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(|e| io_err(subject(), ErrorVerb::Read, e)),
        }
    }

    async fn write_meta<T: Serialize>(&self, key: &'static str, value: &T) -> Result<(), StorageError<NodeId>> {
        let subject = move || if key == "vote" { ErrorSubject::Vote } else { ErrorSubject::Store };
        let bytes = serde_json::to_vec(value).map_err(|e| io_err(subject(), ErrorVerb::Write, e))?;
        blocking(&self.db, move |db| {
            let txn = db.begin_write().map_err(|e| io_err(subject(), ErrorVerb::Write, e))?;
            {
                let mut table = txn.open_table(META).map_err(|e| io_err(subject(), ErrorVerb::Write, e))?;
                table.insert(key, bytes.as_slice()).map_err(|e| io_err(subject(), ErrorVerb::Write, e))?;
            }
            txn.commit().map_err(|e| io_err(subject(), ErrorVerb::Write, e))
        })
        .await
    }
}

fn owned_bounds<RB: RangeBounds<u64>>(range: &RB) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let bounds = owned_bounds(&range);
        blocking(&self.db, move |db| {
            let txn = db.begin_read().map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let table = txn.open_table(LOG).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let mut out = Vec::new();
            for item in table.range(bounds).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))? {
                let (k, v) = item.map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                let entry: Entry = serde_json::from_slice(v.value())
                    .map_err(|e| io_err(ErrorSubject::LogIndex(k.value()), ErrorVerb::Read, e))?;
                out.push(entry);
            }
            Ok(out)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        blocking(&self.db, |db| {
            let last_purged_log_id: Option<LogId<NodeId>> = Self::read_meta(db, "last_purged")?;
            let txn = db.begin_read().map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let table = txn.open_table(LOG).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let last = table.last().map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let last_log_id = match last {
                Some((k, v)) => {
                    let entry: Entry = serde_json::from_slice(v.value())
                        .map_err(|e| io_err(ErrorSubject::LogIndex(k.value()), ErrorVerb::Read, e))?;
                    Some(entry.log_id)
                }
                None => last_purged_log_id,
            };
            Ok(LogState { last_purged_log_id, last_log_id })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write_meta("vote", vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        blocking(&self.db, |db| Self::read_meta(db, "vote")).await
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        self.write_meta("committed", &committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        blocking(&self.db, |db| Ok(Self::read_meta::<Option<LogId<NodeId>>>(db, "committed")?.flatten())).await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(|e| io_err(ErrorSubject::Log(entry.log_id), ErrorVerb::Write, e))?;
            encoded.push((entry.log_id.index, bytes));
        }
        let res = blocking(&self.db, move |db| {
            let txn = db.begin_write().map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
            {
                let mut table = txn.open_table(LOG).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
                for (index, bytes) in &encoded {
                    table
                        .insert(*index, bytes.as_slice())
                        .map_err(|e| io_err(ErrorSubject::LogIndex(*index), ErrorVerb::Write, e))?;
                }
            }
            // Immediate durability: fsynced when commit returns.
            txn.commit().map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))
        })
        .await;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        tracing::debug!(%log_id, "truncating log from");
        blocking(&self.db, move |db| {
            let txn = db.begin_write().map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
            {
                let mut table = txn.open_table(LOG).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
                table
                    .retain_in(log_id.index.., |_, _| false)
                    .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
            }
            txn.commit().map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        tracing::debug!(%log_id, "purging log up to");
        let purged = serde_json::to_vec(&Some(log_id)).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        blocking(&self.db, move |db| {
            let txn = db.begin_write().map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
            {
                // Record the purge point first, in the same transaction, so
                // the log state never claims entries that are gone.
                let mut meta = txn.open_table(META).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
                meta.insert("last_purged", purged.as_slice())
                    .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
                let mut table = txn.open_table(LOG).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
                table
                    .retain_in(..=log_id.index, |_, _| false)
                    .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
            }
            txn.commit().map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
        })
        .await
    }
}
