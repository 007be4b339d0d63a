//! The replicated state machine: [`ClusterState`] plus what openraft needs to
//! know about it (last applied log id, last membership), and its snapshot.

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder, StorageError,
    StoredMembership,
};
use palisade_core::{ClusterState, CommandResult, NodeId, Witness};
use redb::{Database, ReadableDatabase};
use serde::{Deserialize, Serialize};

use super::{begin_write, blocking, io_err, OrStorage, SM};
use crate::TypeConfig;

type Entry = openraft::Entry<TypeConfig>;

/// Everything the state machine holds; also the snapshot format (the
/// `Arc` is transparent to serde).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Applied {
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, Witness>,
    /// Shared with readers ([`StateView::cluster_state`]): applying copies
    /// it once per batch (copy on write), reading never does.
    state: Arc<ClusterState>,
}

/// The metadata and bytes of the current snapshot, as stored.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredSnapshotMeta {
    meta: SnapshotMeta<NodeId, Witness>,
}

/// Decodes the `applied` record of the `state_machine` table, and a
/// snapshot's data (`snapshot_data`, or one received from a leader).
pub(super) fn decode_applied(bytes: &[u8]) -> Result<Applied, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Decodes the `snapshot_meta` record of the `state_machine` table.
pub(super) fn decode_snapshot_meta(bytes: &[u8]) -> Result<StoredSnapshotMeta, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// A read-only view of the applied state, for the daemon's RPC handlers.
#[derive(Clone)]
pub struct StateView {
    applied: Arc<RwLock<Applied>>,
}

impl StateView {
    /// The cluster state as of the last applied entry: shared, not
    /// copied (the next apply works on a copy of its own), so readers on
    /// every tick and every status call cost a reference count.
    pub fn cluster_state(&self) -> Arc<ClusterState> {
        self.applied
            .read()
            .expect("state lock poisoned: a panic while applying")
            .state
            .clone()
    }
}

/// The durable state machine. Clones share state; openraft holds one and the
/// snapshot builder another.
#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<Database>,
    applied: Arc<RwLock<Applied>>,
    /// Counter that makes snapshot ids unique across rebuilds at the same log id.
    snapshot_seq: Arc<std::sync::atomic::AtomicU64>,
}

impl StateMachineStore {
    pub(super) fn load(db: Arc<Database>) -> Result<Self, StorageError<NodeId>> {
        let applied = {
            let txn = db
                .begin_read()
                .or_sto(ErrorSubject::StateMachine, ErrorVerb::Read)?;
            let table = txn
                .open_table(SM)
                .or_sto(ErrorSubject::StateMachine, ErrorVerb::Read)?;
            match table
                .get("applied")
                .or_sto(ErrorSubject::StateMachine, ErrorVerb::Read)?
            {
                None => Applied::default(),
                Some(v) => {
                    decode_applied(v.value()).or_sto(ErrorSubject::StateMachine, ErrorVerb::Read)?
                }
            }
        };
        Ok(Self {
            db,
            applied: Arc::new(RwLock::new(applied)),
            snapshot_seq: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        })
    }

    /// A read-only view for the daemon.
    pub fn view(&self) -> StateView {
        StateView {
            applied: self.applied.clone(),
        }
    }

    fn snapshot_of(&self) -> Applied {
        self.applied
            .read()
            .expect("state lock poisoned: a panic while applying")
            .clone()
    }

    /// Persists `applied` and, when given, a new current snapshot, in one
    /// transaction.
    async fn persist(
        &self,
        applied: &Applied,
        snapshot: Option<(SnapshotMeta<NodeId, Witness>, Vec<u8>)>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes =
            serde_json::to_vec(applied).or_sto(ErrorSubject::StateMachine, ErrorVerb::Write)?;
        let snapshot = match snapshot {
            None => None,
            Some((meta, data)) => {
                let meta_bytes = serde_json::to_vec(&StoredSnapshotMeta { meta })
                    .or_sto(ErrorSubject::Snapshot(None), ErrorVerb::Write)?;
                Some((meta_bytes, data))
            }
        };
        blocking(&self.db, move |db| {
            let txn = begin_write(db).or_sto(ErrorSubject::StateMachine, ErrorVerb::Write)?;
            {
                let mut table = txn
                    .open_table(SM)
                    .or_sto(ErrorSubject::StateMachine, ErrorVerb::Write)?;
                table
                    .insert("applied", bytes.as_slice())
                    .or_sto(ErrorSubject::StateMachine, ErrorVerb::Write)?;
                if let Some((meta, data)) = &snapshot {
                    table
                        .insert("snapshot_meta", meta.as_slice())
                        .or_sto(ErrorSubject::Snapshot(None), ErrorVerb::Write)?;
                    table
                        .insert("snapshot_data", data.as_slice())
                        .or_sto(ErrorSubject::Snapshot(None), ErrorVerb::Write)?;
                }
            }
            txn.commit()
                .or_sto(ErrorSubject::StateMachine, ErrorVerb::Write)
        })
        .await
    }

    async fn save_snapshot(
        &self,
        meta: SnapshotMeta<NodeId, Witness>,
        data: Vec<u8>,
    ) -> Result<(), StorageError<NodeId>> {
        let meta_bytes = serde_json::to_vec(&StoredSnapshotMeta { meta })
            .or_sto(ErrorSubject::Snapshot(None), ErrorVerb::Write)?;
        blocking(&self.db, move |db| {
            let txn = begin_write(db).or_sto(ErrorSubject::Snapshot(None), ErrorVerb::Write)?;
            {
                let mut table = txn
                    .open_table(SM)
                    .or_sto(ErrorSubject::Snapshot(None), ErrorVerb::Write)?;
                table
                    .insert("snapshot_meta", meta_bytes.as_slice())
                    .or_sto(ErrorSubject::Snapshot(None), ErrorVerb::Write)?;
                table
                    .insert("snapshot_data", data.as_slice())
                    .or_sto(ErrorSubject::Snapshot(None), ErrorVerb::Write)?;
            }
            txn.commit()
                .or_sto(ErrorSubject::Snapshot(None), ErrorVerb::Write)
        })
        .await
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let applied = self.snapshot_of();
        let data =
            serde_json::to_vec(&applied).or_sto(ErrorSubject::Snapshot(None), ErrorVerb::Write)?;
        let seq = self
            .snapshot_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let snapshot_id = match applied.last_applied {
            Some(id) => format!("{}-{}-{seq}", id.leader_id, id.index),
            None => format!("empty-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.last_membership.clone(),
            snapshot_id,
        };
        self.save_snapshot(meta.clone(), data.clone()).await?;
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Witness>), StorageError<NodeId>>
    {
        let a = self.snapshot_of();
        Ok((a.last_applied, a.last_membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Apply to a copy and persist it before publishing, so that readers
        // never see state that a crash could take back.
        let mut next = self.snapshot_of();
        let mut results = Vec::new();
        for entry in entries {
            next.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => CommandResult::None,
                EntryPayload::Normal(ref command) => {
                    Arc::make_mut(&mut next.state).apply(entry.log_id.index, command)
                }
                EntryPayload::Membership(ref m) => {
                    next.last_membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    CommandResult::None
                }
            };
            results.push(result);
        }
        self.persist(&next, None).await?;
        *self
            .applied
            .write()
            .expect("state lock poisoned: a panic while applying") = next;
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Witness>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let mut applied = decode_applied(&data).map_err(|e| {
            io_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                e,
            )
        })?;
        // The meta is authoritative for what the snapshot covers.
        applied.last_applied = meta.last_log_id;
        applied.last_membership = meta.last_membership.clone();
        self.persist(&applied, Some((meta.clone(), data))).await?;
        *self
            .applied
            .write()
            .expect("state lock poisoned: a panic while applying") = applied;
        tracing::info!(snapshot = %meta.snapshot_id, "installed snapshot from leader");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        blocking(&self.db, |db| {
            let txn = db
                .begin_read()
                .or_sto(ErrorSubject::Snapshot(None), ErrorVerb::Read)?;
            let table = txn
                .open_table(SM)
                .or_sto(ErrorSubject::Snapshot(None), ErrorVerb::Read)?;
            let meta = match table
                .get("snapshot_meta")
                .or_sto(ErrorSubject::Snapshot(None), ErrorVerb::Read)?
            {
                None => return Ok(None),
                Some(v) => {
                    decode_snapshot_meta(v.value())
                        .or_sto(ErrorSubject::Snapshot(None), ErrorVerb::Read)?
                        .meta
                }
            };
            let data = match table
                .get("snapshot_data")
                .or_sto(ErrorSubject::Snapshot(None), ErrorVerb::Read)?
            {
                None => return Ok(None),
                Some(v) => v.value().to_vec(),
            };
            Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            }))
        })
        .await
    }
}
