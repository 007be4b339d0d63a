//! Who the cluster's witnesses are now: the membership of the Raft log,
//! shared by everything that talks to peers.
//!
//! The configured `[[witness]]` list only bootstraps the cluster. After that
//! `palisadectl member add|remove|replace` changes the membership through
//! the log, and every witness follows the log's latest membership entry
//! (openraft uses a membership from the moment it is appended, so this is
//! what replication already uses), not its configuration file.

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::{LogId, RaftMetrics};
use palisade_core::lease::Voters;
use palisade_core::{NodeId, Topology, Witness};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Raft;

/// One view of the membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// The voters, and this witness.
    pub topology: Topology,
    /// Voters and learners (a witness being added catches up as a learner).
    pub nodes: BTreeMap<NodeId, Witness>,
    /// The log entry it comes from (`None`: the configuration's, before the
    /// log has one).
    pub log_id: Option<LogId<NodeId>>,
    /// The voter sets, as the lease counts them (two while a change is
    /// joint).
    pub voters: Voters,
}

/// The current membership, updated from the Raft metrics; cheap to clone.
#[derive(Clone)]
pub struct Members {
    tx: Arc<watch::Sender<MemberView>>,
}

impl Members {
    /// Starts from the configured witnesses.
    pub fn new(configured: Topology) -> Self {
        let nodes = configured.witnesses.clone();
        let voters = Voters::single(0, configured.witnesses.keys().copied());
        let (tx, _) = watch::channel(MemberView {
            topology: configured,
            nodes,
            log_id: None,
            voters,
        });
        Self { tx: Arc::new(tx) }
    }

    /// A witness waiting to be added to a running cluster (`raft.join`):
    /// until the log has a membership it is no voter (it stands for no
    /// election), while its configured peers may still connect to it.
    pub fn joining(configured: Topology) -> Self {
        let nodes = configured.witnesses.clone();
        let mut voters = configured.witnesses.clone();
        voters.remove(&configured.own_id);
        let topology =
            Topology::from_membership(configured.own_id, configured.own().clone(), voters);
        let voters = Voters::single(0, topology.witnesses.keys().copied());
        let (tx, _) = watch::channel(MemberView {
            topology,
            nodes,
            log_id: None,
            voters,
        });
        Self { tx: Arc::new(tx) }
    }

    /// The voters now (and this witness).
    pub fn topology(&self) -> Topology {
        self.tx.borrow().topology.clone()
    }

    /// Voters and learners now.
    pub fn nodes(&self) -> BTreeMap<NodeId, Witness> {
        self.tx.borrow().nodes.clone()
    }

    /// The whole view now.
    pub fn view(&self) -> MemberView {
        self.tx.borrow().clone()
    }

    /// This witness's id.
    pub fn own_id(&self) -> NodeId {
        self.tx.borrow().topology.own_id
    }

    /// Changes from now on.
    pub fn subscribe(&self) -> watch::Receiver<MemberView> {
        self.tx.subscribe()
    }

    /// Takes the membership of `metrics` if the log has one; returns whether
    /// the voters or nodes changed.
    pub fn update(&self, metrics: &RaftMetrics<NodeId, Witness>) -> bool {
        let stored = &metrics.membership_config;
        let Some(log_id) = stored.log_id() else {
            return false;
        };
        let membership = stored.membership();
        let voters: BTreeMap<NodeId, Witness> = membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|w| (id, w.clone())))
            .collect();
        let nodes: BTreeMap<NodeId, Witness> =
            membership.nodes().map(|(id, w)| (*id, w.clone())).collect();
        let sets = membership.get_joint_config().clone();
        self.tx.send_if_modified(|view| {
            if view.log_id == Some(*log_id) {
                return false;
            }
            let topology = Topology::from_membership(
                view.topology.own_id,
                view.topology.own().clone(),
                voters,
            );
            let changed = topology != view.topology || nodes != view.nodes;
            *view = MemberView {
                topology,
                nodes,
                log_id: Some(*log_id),
                voters: Voters {
                    index: log_id.index,
                    sets,
                },
            };
            changed
        })
    }

    /// Follows `raft`'s membership until `shutdown`.
    pub async fn follow(self, raft: Raft, shutdown: CancellationToken) {
        let mut metrics = raft.metrics();
        loop {
            let changed = {
                let m = metrics.borrow_and_update();
                self.update(&m)
            };
            if changed {
                let view = self.view();
                tracing::info!(
                    voters = ?view.topology.witnesses.keys().collect::<Vec<_>>(),
                    learners = ?view
                        .nodes
                        .keys()
                        .filter(|id| !view.topology.witnesses.contains_key(id))
                        .collect::<Vec<_>>(),
                    log_id = ?view.log_id,
                    "cluster membership now"
                );
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = metrics.changed() => if r.is_err() { return },
            }
        }
    }
}
