//! The peer RPC service (`palisade.v1.RaftPeer`) and this node's status
//! report, shared by the peer service and the daemon's control service.

use std::time::Duration;

use openraft::ServerState;
use palisade_api::v1::raft_peer_server::RaftPeer;
use palisade_api::v1::{
    NodeStatus, NodeStatusRequest, PeerProgress, PreVoteReply, PreVoteRequest, RaftPayload, Role,
};
use palisade_core::Topology;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::election::{self, LeaderContact};
use crate::members::Members;
use crate::network::PeerContacts;
use crate::store::LogStore;
use crate::Raft;

/// Adds what the layers above Raft know to a node's status report (the
/// witness's database probes, the leader's failure detector).
pub trait StatusExtra: Send + Sync + 'static {
    /// Fills the extra fields of `status`.
    fn fill(&self, status: &mut NodeStatus);
}

/// Serves openraft's peer RPCs for one node.
#[derive(Clone)]
pub struct PeerService {
    raft: Raft,
    members: Members,
    contacts: PeerContacts,
    extra: Option<std::sync::Arc<dyn StatusExtra>>,
    /// For pre-votes: when this node last accepted a leader's entries, its
    /// log, and how long a leader counts as live after its last contact.
    election: Option<(LeaderContact, LogStore, Duration)>,
    /// The port serves mutual TLS: every message must come from the
    /// witness it claims to come from (a leader's append, a candidate's
    /// vote), as its certificate proves.
    tls: bool,
}

impl PeerService {
    /// A service for `raft`, whose membership and peer contacts feed `NodeStatus`.
    pub fn new(raft: Raft, members: Members, contacts: PeerContacts) -> Self {
        Self {
            raft,
            members,
            contacts,
            extra: None,
            election: None,
            tls: false,
        }
    }

    /// Requires every message to come, by its TLS client certificate, from
    /// the witness it names. Without it (an insecure cluster) nobody is
    /// authenticated.
    pub fn requiring_tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// The caller, checked against the node id its message claims.
    fn check<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        Ok(Caller(crate::transport::check_peer(req, self.tls, None)?))
    }

    /// Answers pre-votes (see [`crate::election`]) and records every
    /// leader's `AppendEntries` this node accepts in `contact`.
    pub fn with_pre_vote(
        mut self,
        contact: LeaderContact,
        log: LogStore,
        leader_timeout: Duration,
    ) -> Self {
        self.election = Some((contact, log, leader_timeout));
        self
    }

    /// Adds `extra` to every `NodeStatus` this service reports.
    pub fn with_extra(mut self, extra: std::sync::Arc<dyn StatusExtra>) -> Self {
        self.extra = Some(extra);
        self
    }
}

/// Who sent a peer message (`None`: an insecure cluster).
struct Caller(Option<palisade_tls::Identity>);

impl Caller {
    /// Refuses a message that claims to come from another witness than the
    /// one whose certificate sent it: a witness may not forge a leader's
    /// append or another candidate's vote.
    fn speaks_for(&self, claimed: palisade_core::NodeId, what: &str) -> Result<(), Status> {
        match &self.0 {
            Some(palisade_tls::Identity::Witness { node, .. }) if *node != claimed => {
                Err(Status::permission_denied(format!(
                    "witness {node} sent {what} claiming to come from witness {claimed}"
                )))
            }
            _ => Ok(()),
        }
    }
}

fn decode<T: DeserializeOwned>(req: Request<RaftPayload>) -> Result<T, Status> {
    serde_json::from_slice(&req.into_inner().json).map_err(|e| {
        Status::invalid_argument(format!("payload: not a valid request for this RPC: {e}"))
    })
}

fn encode<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    serde_json::to_vec(value)
        .map(|json| Response::new(RaftPayload { json }))
        .map_err(|e| Status::internal(format!("cannot encode reply: {e}")))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let caller = self.check(&req)?;
        let rpc: openraft::raft::AppendEntriesRequest<crate::TypeConfig> = decode(req)?;
        caller.speaks_for(
            rpc.vote.leader_id().voted_for().unwrap_or_default(),
            "an append",
        )?;
        let reply = self.raft.append_entries(rpc).await;
        if let (Some((contact, _, _)), Ok(r)) = (&self.election, &reply) {
            if !matches!(r, openraft::raft::AppendEntriesResponse::HigherVote(_)) {
                contact.touch();
            }
        }
        encode(&reply)
    }

    async fn pre_vote(
        &self,
        req: Request<PreVoteRequest>,
    ) -> Result<Response<PreVoteReply>, Status> {
        let Some((contact, log, leader_timeout)) = &self.election else {
            return Err(Status::unimplemented("this witness runs no pre-votes"));
        };
        let caller = self.check(&req)?;
        let req = req.into_inner();
        caller.speaks_for(req.candidate, "a pre-vote")?;
        let voter = election::voter(&self.raft, log, contact).await;
        let candidate_log =
            election::log_id_from(req.last_log_term, req.last_log_node, req.last_log_index);
        Ok(Response::new(
            match election::pre_vote(&voter, candidate_log, *leader_timeout) {
                Ok(()) => PreVoteReply {
                    granted: true,
                    reason: String::new(),
                },
                Err(reason) => PreVoteReply {
                    granted: false,
                    reason,
                },
            },
        ))
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let caller = self.check(&req)?;
        let rpc: openraft::raft::VoteRequest<palisade_core::NodeId> = decode(req)?;
        caller.speaks_for(
            rpc.vote.leader_id().voted_for().unwrap_or_default(),
            "a vote",
        )?;
        encode(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let caller = self.check(&req)?;
        let rpc: openraft::raft::InstallSnapshotRequest<crate::TypeConfig> = decode(req)?;
        caller.speaks_for(
            rpc.vote.leader_id().voted_for().unwrap_or_default(),
            "a snapshot",
        )?;
        encode(&self.raft.install_snapshot(rpc).await)
    }

    async fn node_status(
        &self,
        req: Request<NodeStatusRequest>,
    ) -> Result<Response<NodeStatus>, Status> {
        self.check(&req)?;
        let mut status = local_status(&self.raft, &self.members.topology(), &self.contacts);
        if let Some(extra) = &self.extra {
            extra.fill(&mut status);
        }
        Ok(Response::new(status))
    }
}

/// This node's own view of itself, from openraft's metrics. The leader adds
/// its view of each follower's replication and last contact.
pub fn local_status(raft: &Raft, topology: &Topology, contacts: &PeerContacts) -> NodeStatus {
    let m = raft.metrics().borrow().clone();
    let own = topology.own();
    let role = match m.state {
        ServerState::Leader => Role::Leader,
        ServerState::Follower => Role::Follower,
        ServerState::Candidate => Role::Candidate,
        ServerState::Learner => Role::Learner,
        ServerState::Shutdown => Role::Shutdown,
    };
    let replication = match (&m.replication, m.state) {
        (Some(repl), ServerState::Leader) => repl
            .iter()
            .filter(|(id, _)| **id != topology.own_id)
            .map(|(id, matched)| {
                let matched_index = matched.map(|l| l.index);
                let lag_entries = match (m.last_log_index, matched_index) {
                    (Some(last), Some(got)) => last.saturating_sub(got),
                    (Some(last), None) => last + 1,
                    (None, _) => 0,
                };
                PeerProgress {
                    id: *id,
                    matched_index,
                    lag_entries,
                    last_contact_ms: contacts.since_last(*id).map(duration_ms),
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    NodeStatus {
        id: topology.own_id,
        site: own.site.clone(),
        role: role as i32,
        term: m.current_term,
        leader_id: m.current_leader,
        last_log_index: m.last_log_index,
        last_applied_index: m.last_applied.map(|l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        raft_addr: own.raft_addr.clone(),
        control_addr: own.control_addr.clone(),
        error: String::new(),
        replication,
        millis_since_quorum_ack: if m.state == ServerState::Leader {
            m.millis_since_quorum_ack
        } else {
            None
        },
        databases: Vec::new(),
        assessment: String::new(),
        search: Vec::new(),
        monitors_enabled: None,
        replication_in_force: String::new(),
        lease_remaining_ms: None,
        serving_under_lease: false,
        command_format: palisade_core::command::COMMAND_FORMAT,
        release: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
