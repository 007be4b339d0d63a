//! The public control service, `palisade.v1.Control`.
//!
//! Any witness answers. Reads are served from the answering witness's own
//! applied state; writes are proposed through Raft, and a follower forwards
//! them once to the leader's control address.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use palisade_api::v1 as pb;
use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::control_server::Control;
use palisade_api::v1::raft_peer_client::RaftPeerClient;
use palisade_api::v1::{
    AnnotateReply, AnnotateRequest, FailoverSummary, JournalEntry, JournalReply, JournalRequest,
    NodeStatus, NodeStatusRequest, Role, StatusReply, StatusRequest, StepTiming,
};
use palisade_core::operation::{OperatorRequest, Refusal};
use palisade_core::{Command, CommandResult, Kind, NodeId, SiteId, Topology};
use palisade_raft::network::{peer_channel, PeerContacts};
use palisade_raft::server::{local_status, StatusExtra};
use palisade_raft::store::StateView;
use palisade_raft::Raft;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::controller::{Controller, OperateError};

/// Metadata key set on a request a follower forwarded, so that it is never
/// forwarded twice (two nodes that each think the other leads).
const FORWARDED: &str = "x-palisade-forwarded-by";

/// How long `Status` waits for each peer's own report.
const PEER_STATUS_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long a forwarded write may take at the leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `Watch` samples the applied state.
const WATCH_POLL: Duration = Duration::from_millis(100);
/// Longest maintenance window with an end (`pause --for`).
const MAX_PAUSE_MS: u64 = 365 * 24 * 3600 * 1000;

/// A request to send on to the leader, with the client to send it with.
type Forward<T> = (ControlClient<Channel>, Request<T>);

/// Where a request that changes the state is handled.
enum Route {
    /// Here: this witness leads.
    Local,
    /// At the leader, through this client.
    Leader(ControlClient<Channel>),
}

/// The API view of a failover record.
pub fn summary(f: &palisade_core::Failover) -> FailoverSummary {
    use palisade_core::{Outcome, Trigger};
    FailoverSummary {
        epoch: f.epoch,
        from_site: f.from.0.clone(),
        to_site: f.to.0.clone(),
        trigger: match &f.trigger {
            Trigger::Automatic => "automatic".into(),
            Trigger::Operator { who } => format!("operator:{who}"),
        },
        reason: f.reason.clone(),
        steps: f
            .steps
            .iter()
            .map(|s| StepTiming {
                step: s.step.name().into(),
                started_at_ms: s.started_at_ms,
                done_at_ms: s.done_at_ms,
                detail: s.detail.clone(),
            })
            .collect(),
        outcome: match &f.outcome {
            None => String::new(),
            Some(Outcome::Completed) => "completed".into(),
            Some(Outcome::CompletedWithFailedChecks { failed }) => {
                format!("completed_with_failed_checks: {}", failed.join("; "))
            }
            Some(Outcome::Aborted { reason }) => format!("aborted: {reason}"),
        },
        started_at_ms: f.started_at_ms,
        finished_at_ms: f.finished_at_ms,
        evidence_json: serde_json::to_string(&f.evidence).unwrap_or_default(),
        kind: f.kind.name().into(),
    }
}

/// The API view of maintenance mode.
pub fn maintenance(m: &palisade_core::Maintenance) -> pb::Maintenance {
    pb::Maintenance {
        by: m.by.clone(),
        reason: m.reason.clone(),
        since_ms: m.since_ms,
        until_ms: m.until_ms,
    }
}

/// Channels to one peer's two services.
#[derive(Clone)]
struct PeerChannels {
    raft: Channel,
    control: Channel,
}

/// The control service of one witness.
#[derive(Clone)]
pub struct ControlService {
    raft: Raft,
    topology: Topology,
    cluster_name: String,
    contacts: PeerContacts,
    state: StateView,
    peers: BTreeMap<NodeId, PeerChannels>,
    extra: Option<std::sync::Arc<dyn StatusExtra>>,
    replication_mode: String,
    controller: Option<std::sync::Arc<Controller>>,
}

impl ControlService {
    /// Builds the service; peer channels connect lazily.
    pub fn new(
        raft: Raft,
        topology: Topology,
        cluster_name: String,
        contacts: PeerContacts,
        state: StateView,
        connect_timeout: Duration,
    ) -> Result<Self, tonic::transport::Error> {
        let mut peers = BTreeMap::new();
        for (id, w) in topology.peers() {
            peers.insert(
                id,
                PeerChannels {
                    raft: peer_channel(&w.raft_addr, connect_timeout)?,
                    control: peer_channel(&w.control_addr, connect_timeout)?,
                },
            );
        }
        Ok(Self {
            raft,
            topology,
            cluster_name,
            contacts,
            state,
            peers,
            extra: None,
            replication_mode: String::new(),
            controller: None,
        })
    }

    /// Lets operator operations run here when this witness leads.
    pub fn with_operations(mut self, controller: std::sync::Arc<Controller>) -> Self {
        self.controller = Some(controller);
        self
    }

    /// Handles here when this witness leads; otherwise names the leader to
    /// forward to, once (a forwarded request is never forwarded again).
    fn route(&self, forwarded: bool) -> Result<Route, Status> {
        let leader = self.raft.metrics().borrow().current_leader;
        match leader {
            Some(l) if l == self.topology.own_id => Ok(Route::Local),
            Some(l) if !forwarded => match self.peers.get(&l) {
                Some(ch) => Ok(Route::Leader(ControlClient::new(ch.control.clone()))),
                None => Err(Status::unavailable(format!(
                    "leader {l} is not a configured witness"
                ))),
            },
            Some(l) => Err(Status::unavailable(format!(
                "witness {} is not the leader and the request was already forwarded (leader now {l}); retry",
                self.topology.own_id
            ))),
            None => Err(Status::unavailable(
                "no leader is known (an election may be in progress); retry shortly",
            )),
        }
    }

    /// Handles a state-changing request: `Ok(body)` when this witness
    /// leads and handles it, else the leader's client and the request to
    /// forward to it.
    fn at_leader<T>(&self, req: Request<T>) -> Result<Result<T, Forward<T>>, Status> {
        let forwarded = req.metadata().get(FORWARDED).is_some();
        let body = req.into_inner();
        Ok(match self.route(forwarded)? {
            Route::Local => Ok(body),
            Route::Leader(c) => Err((c, self.forwarding(body))),
        })
    }

    /// `body` as a request forwarded by this witness.
    fn forwarding<T>(&self, body: T) -> Request<T> {
        let mut fwd = Request::new(body);
        fwd.set_timeout(FORWARD_TIMEOUT);
        fwd.metadata_mut().insert(
            FORWARDED,
            self.topology
                .own_id
                .to_string()
                .parse()
                .expect("a decimal id is valid metadata"),
        );
        fwd
    }

    /// Validates and commits `command` here (this witness leads).
    async fn commit(&self, command: Command) -> Result<(), Status> {
        command
            .validate()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        match self.raft.client_write(command).await {
            Ok(resp) => match resp.data {
                CommandResult::Rejected { reason } => Err(Status::failed_precondition(reason)),
                _ => Ok(()),
            },
            Err(e) => Err(Status::unavailable(format!("not committed: {e}"))),
        }
    }

    /// Begins an operator operation on this (leading) witness.
    async fn operate(&self, req: OperatorRequest) -> Result<Response<pb::OperationReply>, Status> {
        let Some(controller) = &self.controller else {
            return Err(Status::failed_precondition(
                "this cluster has no [[database]] configured: there is nothing to move",
            ));
        };
        let kind = req.kind;
        match controller.operate(req).await {
            Ok(b) => Ok(Response::new(pb::OperationReply {
                epoch: b.epoch,
                kind: kind.name().into(),
                from_site: b.from.0,
                to_site: b.to.0,
                leader_id: self.topology.own_id,
                data_loss_bound: b.data_loss_bound,
            })),
            Err(OperateError::Refused(Refusal::InvalidArgument(e))) => {
                Err(Status::invalid_argument(e))
            }
            Err(OperateError::Refused(Refusal::FailedPrecondition(e))) => {
                Err(Status::failed_precondition(e))
            }
            Err(OperateError::Unavailable(e)) => Err(Status::unavailable(e)),
        }
    }

    /// Adds the database views and detector state to status replies.
    pub fn with_extra(
        mut self,
        extra: std::sync::Arc<dyn StatusExtra>,
        replication_mode: &str,
    ) -> Self {
        self.extra = Some(extra);
        self.replication_mode = replication_mode.to_string();
        self
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

    async fn forward_annotate(
        &self,
        leader: NodeId,
        req: AnnotateRequest,
    ) -> Result<Response<AnnotateReply>, Status> {
        let Some(ch) = self.peers.get(&leader) else {
            return Err(Status::unavailable(format!(
                "leader {leader} is not a configured witness"
            )));
        };
        let mut client = ControlClient::new(ch.control.clone());
        let mut fwd = Request::new(req);
        fwd.metadata_mut().insert(
            FORWARDED,
            self.topology
                .own_id
                .to_string()
                .parse()
                .expect("a decimal id is valid metadata"),
        );
        match tokio::time::timeout(FORWARD_TIMEOUT, client.annotate(fwd)).await {
            Ok(r) => r,
            Err(_) => Err(Status::unavailable(format!(
                "leader {leader} did not answer within {FORWARD_TIMEOUT:?}"
            ))),
        }
    }
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn status(&self, _req: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        let mut own = local_status(&self.raft, &self.topology, &self.contacts);
        if let Some(extra) = &self.extra {
            extra.fill(&mut own);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (id, ch) in &self.peers {
            let w = &self.topology.witnesses[id];
            tasks.spawn(Self::peer_status(
                *id,
                w.site.clone(),
                w.raft_addr.clone(),
                w.control_addr.clone(),
                ch.raft.clone(),
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
        // The freshest leader's view: a deposed leader that has not heard of
        // the new term yet must not shadow the current one.
        let leader = nodes
            .iter()
            .filter(|n| n.role == Role::Leader as i32)
            .max_by_key(|n| n.term);
        let replication = leader.map(|n| n.replication.clone()).unwrap_or_default();
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
        Ok(Response::new(StatusReply {
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
            failover_in_progress: state.failover.as_ref().map(summary),
            last_failover: state.history.last().map(summary),
            assessment,
            standby_needs_rejoin: state.db.as_ref().is_some_and(|d| d.standby_needs_rejoin),
            maintenance: state.maintenance.as_ref().map(maintenance),
        }))
    }

    #[tracing::instrument(skip_all, fields(author))]
    async fn annotate(
        &self,
        req: Request<AnnotateRequest>,
    ) -> Result<Response<AnnotateReply>, Status> {
        let forwarded = req.metadata().get(FORWARDED).is_some();
        let body = req.into_inner();
        tracing::Span::current().record("author", body.author.as_str());
        let command = Command::Annotate {
            at_unix_ms: palisade_raft::unix_ms_now(),
            author: body.author.clone(),
            text: body.text.clone(),
        };
        command
            .validate()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        match self.raft.client_write(command).await {
            Ok(resp) => match resp.data {
                CommandResult::Annotated { log_index } => {
                    tracing::info!(log_index, "note committed");
                    Ok(Response::new(AnnotateReply { log_index, leader_id: self.topology.own_id }))
                }
                other => Err(Status::internal(format!("unexpected result {other:?} for a note"))),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => match f.leader_id {
                Some(leader) if !forwarded && leader != self.topology.own_id => self.forward_annotate(leader, body).await,
                Some(leader) => Err(Status::unavailable(format!(
                    "witness {} is not the leader and the request was already forwarded (leader now {leader}); retry",
                    self.topology.own_id
                ))),
                None => Err(Status::unavailable("no leader is known (an election may be in progress); retry shortly")),
            },
            Err(e) => {
                tracing::warn!(error = %e, "note not committed");
                Err(Status::unavailable(format!("not committed: {e}")))
            }
        }
    }

    async fn journal(
        &self,
        _req: Request<JournalRequest>,
    ) -> Result<Response<JournalReply>, Status> {
        let entries = self
            .state
            .cluster_state()
            .journal
            .into_iter()
            .map(|e| JournalEntry {
                log_index: e.log_index,
                at_unix_ms: e.at_unix_ms,
                author: e.author,
                text: e.text,
            })
            .collect();
        Ok(Response::new(JournalReply { entries }))
    }

    async fn switchover(
        &self,
        req: Request<pb::SwitchoverRequest>,
    ) -> Result<Response<pb::OperationReply>, Status> {
        let body = match self.at_leader(req)? {
            Ok(body) => body,
            Err((mut c, fwd)) => return c.switchover(fwd).await,
        };
        self.operate(OperatorRequest {
            kind: Kind::Switchover,
            to: Some(SiteId(body.to_site)),
            who: body.who,
            force: false,
            accept_data_loss: false,
        })
        .await
    }

    async fn failover(
        &self,
        req: Request<pb::FailoverRequest>,
    ) -> Result<Response<pb::OperationReply>, Status> {
        let body = match self.at_leader(req)? {
            Ok(body) => body,
            Err((mut c, fwd)) => return c.failover(fwd).await,
        };
        self.operate(OperatorRequest {
            kind: Kind::Failover,
            to: Some(SiteId(body.to_site)),
            who: body.who,
            force: body.force,
            accept_data_loss: body.accept_data_loss,
        })
        .await
    }

    async fn failback(
        &self,
        req: Request<pb::FailbackRequest>,
    ) -> Result<Response<pb::OperationReply>, Status> {
        let body = match self.at_leader(req)? {
            Ok(body) => body,
            Err((mut c, fwd)) => return c.failback(fwd).await,
        };
        self.operate(OperatorRequest {
            kind: Kind::Failback,
            to: None,
            who: body.who,
            force: false,
            accept_data_loss: false,
        })
        .await
    }

    async fn pause(
        &self,
        req: Request<pb::PauseRequest>,
    ) -> Result<Response<pb::MaintenanceReply>, Status> {
        let body = match self.at_leader(req)? {
            Ok(body) => body,
            Err((mut c, fwd)) => return c.pause(fwd).await,
        };
        let for_ms = body.for_ms.filter(|ms| *ms > 0);
        if for_ms.is_some_and(|ms| ms > MAX_PAUSE_MS) {
            return Err(Status::invalid_argument(format!(
                "for_ms: {} ms is more than a year; pause without a duration and resume by hand",
                body.for_ms.unwrap_or_default()
            )));
        }
        let at_ms = palisade_raft::unix_ms_now();
        let command = Command::Pause {
            by: body.who,
            reason: body.reason,
            at_ms,
            until_ms: for_ms.map(|ms| at_ms + ms as i64),
        };
        self.commit(command).await?;
        tracing::warn!("maintenance mode on: automatic failover paused");
        Ok(Response::new(pb::MaintenanceReply {
            maintenance: self
                .state
                .cluster_state()
                .maintenance
                .as_ref()
                .map(maintenance),
            leader_id: self.topology.own_id,
        }))
    }

    async fn resume(
        &self,
        req: Request<pb::ResumeRequest>,
    ) -> Result<Response<pb::MaintenanceReply>, Status> {
        let body = match self.at_leader(req)? {
            Ok(body) => body,
            Err((mut c, fwd)) => return c.resume(fwd).await,
        };
        let command = Command::Resume {
            by: body.who,
            at_ms: palisade_raft::unix_ms_now(),
        };
        self.commit(command).await?;
        tracing::warn!("maintenance mode off: automatic failover resumed");
        Ok(Response::new(pb::MaintenanceReply {
            maintenance: None,
            leader_id: self.topology.own_id,
        }))
    }

    async fn history(
        &self,
        _req: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryReply>, Status> {
        let state = self.state.cluster_state();
        Ok(Response::new(pb::HistoryReply {
            operations: state.history.iter().map(summary).collect(),
            drills: state.drills.iter().map(drill_summary).collect(),
            in_progress: state.failover.as_ref().map(summary),
            rejoins: state
                .rejoins
                .iter()
                .map(|r| pb::RejoinSummary {
                    site: r.site.0.clone(),
                    epoch: r.epoch,
                    at_ms: r.at_ms,
                    primary_site: r.primary.0.clone(),
                })
                .collect(),
        }))
    }

    type WatchStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::Event, Status>> + Send + 'static>,
    >;

    async fn watch(
        &self,
        _req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let view = self.state.clone();
        let raft = self.raft.clone();
        tokio::spawn(async move { stream_events(view, raft, tx).await });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn record_drill(
        &self,
        req: Request<pb::RecordDrillRequest>,
    ) -> Result<Response<pb::RecordDrillReply>, Status> {
        let body = match self.at_leader(req)? {
            Ok(body) => body,
            Err((mut c, fwd)) => return c.record_drill(fwd).await,
        };
        let Some(d) = body.drill else {
            return Err(Status::invalid_argument("drill: missing"));
        };
        let record = palisade_core::DrillRecord {
            name: d.name,
            who: d.who,
            started_at_ms: d.started_at_ms,
            finished_at_ms: d.finished_at_ms,
            outcome: d.outcome,
            phases: d
                .phases
                .into_iter()
                .map(|p| palisade_core::DrillPhase {
                    name: p.name,
                    outcome: p.outcome,
                    duration_ms: p.duration_ms,
                })
                .collect(),
        };
        self.commit(Command::RecordDrill(Box::new(record))).await?;
        Ok(Response::new(pb::RecordDrillReply {
            leader_id: self.topology.own_id,
        }))
    }
}

/// Streams the events of the applied state until the client goes away.
/// Sampling the applied state (not the log) is enough: `events::between`
/// reports every step once whatever the sampling.
async fn stream_events(
    view: StateView,
    raft: Raft,
    tx: tokio::sync::mpsc::Sender<Result<pb::Event, Status>>,
) {
    let mut prev = view.cluster_state();
    let mut leader = raft.metrics().borrow().current_leader;
    let send = |e: pb::Event| {
        let tx = tx.clone();
        async move { tx.send(Ok(e)).await.is_ok() }
    };
    if !send(snapshot_event(&prev, leader)).await {
        return;
    }
    let mut tick = tokio::time::interval(WATCH_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tx.closed() => return,
        }
        let now_leader = raft.metrics().borrow().current_leader;
        if now_leader != leader {
            leader = now_leader;
            let text = match leader {
                Some(l) => format!("witness {l} leads"),
                None => "no leader known (election in progress)".into(),
            };
            let e = pb::Event {
                at_ms: palisade_raft::unix_ms_now(),
                kind: "leader".into(),
                epoch: prev.epoch,
                text,
            };
            if !send(e).await {
                return;
            }
        }
        let cur = view.cluster_state();
        if cur == prev {
            continue;
        }
        for e in palisade_core::events::between(&prev, &cur) {
            let e = pb::Event {
                at_ms: if e.at_ms == 0 {
                    palisade_raft::unix_ms_now()
                } else {
                    e.at_ms
                },
                kind: e.kind.into(),
                epoch: e.epoch,
                text: e.text,
            };
            if !send(e).await {
                return;
            }
        }
        prev = cur;
    }
}

fn snapshot_event(s: &palisade_core::ClusterState, leader: Option<NodeId>) -> pb::Event {
    let roles = match &s.db {
        Some(d) => format!(
            "primary {}, standby {}{}",
            d.primary,
            d.standby,
            if d.standby_needs_rejoin {
                " (must rejoin)"
            } else {
                ""
            }
        ),
        None => "no database roles recorded".into(),
    };
    let mut text = format!(
        "epoch {}, {roles}, leader {}",
        s.epoch,
        leader
            .map(|l| l.to_string())
            .unwrap_or_else(|| "unknown".into())
    );
    if let Some(f) = &s.failover {
        text.push_str(&format!(
            "; {} {} → {} in progress ({} steps done)",
            f.kind.name(),
            f.from,
            f.to,
            f.steps.len()
        ));
    }
    if let Some(m) = &s.maintenance {
        text.push_str(&format!("; paused by {}", m.by));
    }
    pb::Event {
        at_ms: palisade_raft::unix_ms_now(),
        kind: "snapshot".into(),
        epoch: s.epoch,
        text,
    }
}

/// The API view of a drill.
fn drill_summary(d: &palisade_core::DrillRecord) -> pb::DrillSummary {
    pb::DrillSummary {
        name: d.name.clone(),
        who: d.who.clone(),
        started_at_ms: d.started_at_ms,
        finished_at_ms: d.finished_at_ms,
        outcome: d.outcome.clone(),
        phases: d
            .phases
            .iter()
            .map(|p| pb::DrillPhase {
                name: p.name.clone(),
                outcome: p.outcome.clone(),
                duration_ms: p.duration_ms,
            })
            .collect(),
    }
}
