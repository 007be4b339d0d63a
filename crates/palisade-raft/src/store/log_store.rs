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

use super::{begin_write, blocking, io_err, OrStorage, LOG, META};
use crate::TypeConfig;

pub(super) type Entry = openraft::Entry<TypeConfig>;

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

    fn read_meta<T: DeserializeOwned>(
        db: &Database,
        key: &str,
    ) -> Result<Option<T>, StorageError<NodeId>> {
        let subject = || {
            if key == "vote" {
                ErrorSubject::Vote
            } else {
                ErrorSubject::Store
            }
        };
        let txn = db.begin_read().or_sto(subject(), ErrorVerb::Read)?;
        let table = txn.open_table(META).or_sto(subject(), ErrorVerb::Read)?;
        match table.get(key).or_sto(subject(), ErrorVerb::Read)? {
            None => Ok(None),
            Some(v) => decode_meta(v.value())
                .map(Some)
                .or_sto(subject(), ErrorVerb::Read),
        }
    }

    async fn write_meta<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
    ) -> Result<(), StorageError<NodeId>> {
        let subject = move || {
            if key == "vote" {
                ErrorSubject::Vote
            } else {
                ErrorSubject::Store
            }
        };
        let bytes = serde_json::to_vec(value).or_sto(subject(), ErrorVerb::Write)?;
        blocking(&self.db, move |db| {
            let txn = begin_write(db).or_sto(subject(), ErrorVerb::Write)?;
            {
                let mut table = txn.open_table(META).or_sto(subject(), ErrorVerb::Write)?;
                table
                    .insert(key, bytes.as_slice())
                    .or_sto(subject(), ErrorVerb::Write)?;
            }
            txn.commit().or_sto(subject(), ErrorVerb::Write)
        })
        .await
    }
}

/// Decodes a log record (the value of one `log` table row).
pub(super) fn decode_entry(bytes: &[u8]) -> Result<Entry, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Decodes a `meta` record of type `T` (`vote`: `Vote`, `committed` and
/// `last_purged`: `Option<LogId>`, `identity`: `StoreIdentity`).
pub(super) fn decode_meta<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
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
            let txn = db
                .begin_read()
                .or_sto(ErrorSubject::Logs, ErrorVerb::Read)?;
            let table = txn
                .open_table(LOG)
                .or_sto(ErrorSubject::Logs, ErrorVerb::Read)?;
            let mut out = Vec::new();
            for item in table
                .range(bounds)
                .or_sto(ErrorSubject::Logs, ErrorVerb::Read)?
            {
                let (k, v) = item.or_sto(ErrorSubject::Logs, ErrorVerb::Read)?;
                let entry = decode_entry(v.value())
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
            let txn = db
                .begin_read()
                .or_sto(ErrorSubject::Logs, ErrorVerb::Read)?;
            let table = txn
                .open_table(LOG)
                .or_sto(ErrorSubject::Logs, ErrorVerb::Read)?;
            let last = table.last().or_sto(ErrorSubject::Logs, ErrorVerb::Read)?;
            let last_log_id = match last {
                Some((k, v)) => {
                    let entry = decode_entry(v.value()).map_err(|e| {
                        io_err(ErrorSubject::LogIndex(k.value()), ErrorVerb::Read, e)
                    })?;
                    Some(entry.log_id)
                }
                None => last_purged_log_id,
            };
            Ok(LogState {
                last_purged_log_id,
                last_log_id,
            })
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

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.write_meta("committed", &committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        blocking(&self.db, |db| {
            Ok(Self::read_meta::<Option<LogId<NodeId>>>(db, "committed")?.flatten())
        })
        .await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry)
                .or_sto(ErrorSubject::Log(entry.log_id), ErrorVerb::Write)?;
            encoded.push((entry.log_id.index, bytes));
        }
        let res = blocking(&self.db, move |db| {
            let txn = begin_write(db).or_sto(ErrorSubject::Logs, ErrorVerb::Write)?;
            {
                let mut table = txn
                    .open_table(LOG)
                    .or_sto(ErrorSubject::Logs, ErrorVerb::Write)?;
                for (index, bytes) in &encoded {
                    table
                        .insert(*index, bytes.as_slice())
                        .or_sto(ErrorSubject::LogIndex(*index), ErrorVerb::Write)?;
                }
            }
            // Immediate durability: fsynced when commit returns.
            txn.commit().or_sto(ErrorSubject::Logs, ErrorVerb::Write)
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
            let txn = begin_write(db).or_sto(ErrorSubject::Logs, ErrorVerb::Delete)?;
            {
                let mut table = txn
                    .open_table(LOG)
                    .or_sto(ErrorSubject::Logs, ErrorVerb::Delete)?;
                table
                    .retain_in(log_id.index.., |_, _| false)
                    .or_sto(ErrorSubject::Logs, ErrorVerb::Delete)?;
            }
            txn.commit().or_sto(ErrorSubject::Logs, ErrorVerb::Delete)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        tracing::debug!(%log_id, "purging log up to");
        let purged =
            serde_json::to_vec(&Some(log_id)).or_sto(ErrorSubject::Logs, ErrorVerb::Delete)?;
        blocking(&self.db, move |db| {
            let txn = begin_write(db).or_sto(ErrorSubject::Logs, ErrorVerb::Delete)?;
            {
                // Record the purge point first, in the same transaction, so
                // the log state never claims entries that are gone.
                let mut meta = txn
                    .open_table(META)
                    .or_sto(ErrorSubject::Logs, ErrorVerb::Delete)?;
                meta.insert("last_purged", purged.as_slice())
                    .or_sto(ErrorSubject::Logs, ErrorVerb::Delete)?;
                let mut table = txn
                    .open_table(LOG)
                    .or_sto(ErrorSubject::Logs, ErrorVerb::Delete)?;
                table
                    .retain_in(..=log_id.index, |_, _| false)
                    .or_sto(ErrorSubject::Logs, ErrorVerb::Delete)?;
            }
            txn.commit().or_sto(ErrorSubject::Logs, ErrorVerb::Delete)
        })
        .await
    }
}
