//! `Status`: this witness's own view, each peer's own report of itself,
//! the leader's hold on a quorum, and the replicated state as this witness
//! applied it.

use palisade_api::v1::raft_peer_client::RaftPeerClient;
use palisade_api::v1::{NodeStatus, NodeStatusRequest, PeerProgress, Role, StatusReply};
use palisade_core::NodeId;
use palisade_raft::server::local_status;
use tonic::transport::Channel;

use super::views::{maintenance, summary_in};
use super::{ControlService, PEER_STATUS_TIMEOUT};

/// A leader's hold on a quorum, from its own view of its followers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Quorum {
    /// Witnesses (the leader included) that answered it within the bound.
    pub acked: u32,
    /// How many are a majority.
    pub needed: u32,
    /// Milliseconds since a majority last answered it; `None` when one
    /// never did (since this process started).
    pub millis_since_ack: Option<u64>,
}

impl Quorum {
    /// Judges a leader with `voters` witnesses from its `replication` view
    /// (each follower's time since its last reply, measured when the leader
    /// answered). The leader counts itself. `bound_ms`: the election
    /// timeout, after which followers stop waiting for it.
    ///
    /// openraft's own `millis_since_quorum_ack` is not used: it is
    /// measured when openraft last published metrics, which it does not do
    /// while nothing changes, and it is unset until the first quorum ack
    /// of a term: a leader cut off from everyone showed either a stale
    /// small number or nothing.
    pub fn judge(voters: usize, replication: &[PeerProgress], bound_ms: u64) -> Self {
        let needed = voters / 2 + 1;
        let mut ages: Vec<u64> = replication
            .iter()
            .map(|p| p.last_contact_ms.unwrap_or(u64::MAX))
            .collect();
        ages.sort_unstable();
        // The leader is one of the majority; the (needed - 1)-th freshest
        // follower completes it.
        let millis_since_ack = match needed.checked_sub(2) {
            None => Some(0),
            Some(i) => ages.get(i).copied().filter(|a| *a != u64::MAX),
        };
        let acked = 1 + ages.iter().filter(|a| **a <= bound_ms).count();
        Self {
            acked: acked as u32,
            needed: needed as u32,
            millis_since_ack,
        }
    }

    /// Whether a majority answered within the bound.
    pub fn held(&self) -> bool {
        self.acked >= self.needed
    }
}

impl ControlService {
    /// The cluster as this witness sees it, with every peer's own report
    /// (an unreachable one is listed as such).
    pub(super) async fn status_reply(&self) -> StatusReply {
        let topology = self.members.topology();
        let mut own = local_status(&self.raft, &topology, &self.contacts);
        if let Some(extra) = &self.extra {
            extra.fill(&mut own);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (id, w, ch) in self.peer_channels() {
            tasks.spawn(Self::peer_status(
                id,
                w.site.clone(),
                w.raft_addr.clone(),
                w.control_addr.clone(),
                ch.raft,
            ));
        }
        let mut nodes = vec![own.clone()];
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(n) => nodes.push(n),
                Err(e) => tracing::warn!(error = %e, "peer status task failed"),
            }
        }
        nodes.sort_by_key(|n| n.id);
        // Every leader's hold on a quorum, from its own replication view:
        // replaces openraft's metric (see `Quorum::judge`).
        let voters = topology.witnesses.len();
        let bound_ms = self.raft.config().election_timeout_max;
        for n in nodes.iter_mut().filter(|n| n.role == Role::Leader as i32) {
            n.millis_since_quorum_ack =
                Quorum::judge(voters, &n.replication, bound_ms).millis_since_ack;
        }
        // The freshest leader's view: a deposed leader that has not heard of
        // the new term yet must not shadow the current one.
        let leader = nodes
            .iter()
            .filter(|n| n.role == Role::Leader as i32)
            .max_by_key(|n| n.term);
        let replication = leader.map(|n| n.replication.clone()).unwrap_or_default();
        // Judged only when the answering witness's leader is the one that
        // reported: else it cannot vouch either way.
        let quorum = leader
            .filter(|n| own.leader_id == Some(n.id))
            .map(|n| Quorum::judge(voters, &n.replication, bound_ms));
        let assessment = leader.map(|n| n.assessment.clone()).unwrap_or_default();
        let state = self.state.cluster_state();
        // The primary site's witness knows whether sync mode is degraded
        // right now; otherwise the configured mode.
        let primary = state
            .db
            .as_ref()
            .map(|d| d.primary.0.clone())
            .unwrap_or_default();
        let replication_mode = nodes
            .iter()
            .find(|n| n.site == primary && !n.replication_in_force.is_empty())
            .map(|n| n.replication_in_force.clone())
            .unwrap_or_else(|| self.replication_mode.clone());
        StatusReply {
            node_id: own.id,
            leader_id: own.leader_id,
            term: own.term,
            cluster_name: self.cluster_name.clone(),
            nodes,
            replication,
            epoch: state.epoch,
            primary_site: state
                .db
                .as_ref()
                .map(|d| d.primary.0.clone())
                .unwrap_or_default(),
            standby_site: state
                .db
                .as_ref()
                .map(|d| d.standby.0.clone())
                .unwrap_or_default(),
            replication_mode,
            failover_in_progress: state.failover.as_ref().map(|f| summary_in(f, &state)),
            last_failover: state.history.last().map(|f| summary_in(f, &state)),
            assessment,
            standby_needs_rejoin: state.db.as_ref().is_some_and(|d| d.standby_needs_rejoin),
            maintenance: state.maintenance.as_ref().map(maintenance),
            quorum: match &quorum {
                Some(q) if q.held() => "ok".into(),
                Some(_) => "lost".into(),
                None => "unknown".into(),
            },
            quorum_timeout_ms: bound_ms,
            leader_millis_since_quorum_ack: quorum.as_ref().and_then(|q| q.millis_since_ack),
            quorum_acked: quorum.as_ref().map(|q| q.acked).unwrap_or_default(),
            quorum_needed: (voters / 2 + 1) as u32,
            transport: String::new(),
            caller: String::new(),
        }
    }

    async fn peer_status(
        id: NodeId,
        site: String,
        raft_addr: String,
        control_addr: String,
        ch: Channel,
    ) -> NodeStatus {
        let mut client = RaftPeerClient::new(ch);
        let reply = tokio::time::timeout(
            PEER_STATUS_TIMEOUT,
            client.node_status(NodeStatusRequest {}),
        )
        .await;
        let error = match reply {
            Ok(Ok(r)) => return r.into_inner(),
            Ok(Err(status)) => status.message().to_string(),
            Err(_) => format!("no answer within {} ms", PEER_STATUS_TIMEOUT.as_millis()),
        };
        NodeStatus {
            id,
            site,
            role: Role::Unreachable as i32,
            raft_addr,
            control_addr,
            error,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, last_contact_ms: Option<u64>) -> PeerProgress {
        PeerProgress {
            id,
            matched_index: Some(1),
            lag_entries: 0,
            last_contact_ms,
        }
    }

    #[test]
    fn a_leader_that_heard_from_no_follower_within_the_timeout_has_no_quorum() {
        // Issue 11: both followers down for a minute; the leader still
        // said "leader" and `status` exited 0.
        let q = Quorum::judge(3, &[peer(2, Some(60_000)), peer(3, None)], 1000);
        assert!(!q.held());
        assert_eq!(
            (q.acked, q.needed, q.millis_since_ack),
            (1, 2, Some(60_000))
        );
        let never = Quorum::judge(3, &[peer(2, None), peer(3, None)], 1000);
        assert!(!never.held());
        assert_eq!(never.millis_since_ack, None);
    }

    #[test]
    fn one_live_follower_is_a_quorum_of_three() {
        let q = Quorum::judge(3, &[peer(2, Some(40)), peer(3, None)], 1000);
        assert!(q.held());
        assert_eq!((q.acked, q.millis_since_ack), (2, Some(40)));
        let five = Quorum::judge(
            5,
            &[
                peer(2, Some(10)),
                peer(3, Some(900)),
                peer(4, Some(5000)),
                peer(5, None),
            ],
            1000,
        );
        assert!(five.held());
        assert_eq!(
            (five.acked, five.needed, five.millis_since_ack),
            (3, 3, Some(900))
        );
        assert!(Quorum::judge(1, &[], 1000).held());
    }
}
