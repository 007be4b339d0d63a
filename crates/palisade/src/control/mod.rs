//! The public control service, `palisade.v1.Control`.
//!
//! Any witness answers. Reads are served from the answering witness's own
//! applied state; writes are proposed through Raft, and a follower forwards
//! them once to the leader's control address.
//!
//! `routing` decides where a write is handled, `requests` commits an
//! operator's request exactly once by its request id, `status` builds the
//! status reply, `operations` carries out operator operations and
//! maintenance mode, `watch` streams events, and `views` turns the
//! replicated state into API messages.

mod auth;
#[cfg(test)]
mod hostile;
mod members;
mod operations;
mod requests;
mod routing;
mod status;
mod views;
mod watch;

pub use views::{maintenance, summary};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_api::v1 as pb;
use palisade_api::v1::control_server::Control;
use palisade_api::v1::{
    AnnotateReply, AnnotateRequest, JournalEntry, JournalReply, JournalRequest, StatusReply,
    StatusRequest,
};
use palisade_core::operation::OperatorRequest;
use palisade_core::{Command, CommandResult, Kind, NodeId, SiteId, Witness};
use palisade_raft::members::Members;
use palisade_raft::network::PeerContacts;
use palisade_raft::server::StatusExtra;
use palisade_raft::store::StateView;
use palisade_raft::transport::Transport;
use palisade_raft::Raft;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::controller::Controller;

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
    members: Members,
    cluster_name: String,
    contacts: PeerContacts,
    state: StateView,
    transport: Transport,
    connect_timeout: Duration,
    /// Channels by peer, made when first used and again when the peer's
    /// addresses change (`palisadectl member`).
    peers: Arc<Mutex<BTreeMap<NodeId, (Witness, PeerChannels)>>>,
    extra: Option<std::sync::Arc<dyn StatusExtra>>,
    replication_mode: String,
    /// This witness's certificates (`None`: insecure, plaintext).
    tls: Option<std::sync::Arc<palisade_tls::CertStore>>,
    controller: Option<std::sync::Arc<Controller>>,
}

impl ControlService {
    /// Builds the service; peer channels connect lazily.
    pub fn new(
        raft: Raft,
        members: Members,
        cluster_name: String,
        contacts: PeerContacts,
        state: StateView,
        transport: &Transport,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            raft,
            members,
            cluster_name,
            contacts,
            state,
            transport: transport.clone(),
            connect_timeout,
            peers: Arc::default(),
            extra: None,
            replication_mode: String::new(),
            tls: None,
            controller: None,
        }
    }

    /// This witness's id.
    fn own_id(&self) -> NodeId {
        self.members.own_id()
    }

    /// Every other witness of the membership (learners too), with channels
    /// to its two services; one whose address does not parse is left out.
    fn peer_channels(&self) -> Vec<(NodeId, Witness, PeerChannels)> {
        let own = self.own_id();
        let nodes = self.members.nodes();
        let mut cache = self.peers.lock().expect("control peers lock poisoned");
        cache.retain(|id, (w, _)| nodes.get(id) == Some(w));
        let mut out = Vec::new();
        for (id, w) in nodes.into_iter().filter(|(id, _)| *id != own) {
            if let Some((_, ch)) = cache.get(&id) {
                out.push((id, w, ch.clone()));
                continue;
            }
            let made = self
                .transport
                .channel(id, &w.raft_addr, self.connect_timeout)
                .and_then(|raft| {
                    Ok(PeerChannels {
                        raft,
                        control: self.transport.channel(
                            id,
                            &w.control_addr,
                            self.connect_timeout,
                        )?,
                    })
                });
            match made {
                Ok(ch) => {
                    cache.insert(id, (w.clone(), ch.clone()));
                    out.push((id, w, ch));
                }
                Err(e) => tracing::warn!(peer = id, error = %e, "bad peer address"),
            }
        }
        out
    }

    /// One peer's channels and entry.
    fn peer(&self, id: NodeId) -> Option<(Witness, PeerChannels)> {
        self.peer_channels()
            .into_iter()
            .find(|(i, _, _)| *i == id)
            .map(|(_, w, ch)| (w, ch))
    }

    /// Requires mutual TLS (`Some`): every RPC checks the caller's role and
    /// records the certificate's name. `None`: an insecure witness.
    pub fn with_transport_security(
        mut self,
        store: Option<std::sync::Arc<palisade_tls::CertStore>>,
    ) -> Self {
        self.tls = store;
        self
    }

    /// Lets operator operations run here when this witness leads.
    pub fn with_operations(mut self, controller: std::sync::Arc<Controller>) -> Self {
        self.controller = Some(controller);
        self
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
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        let caller = self.may_read(&req)?;
        let mut reply = self.status_reply().await;
        reply.transport = crate::tls::describe(self.tls.as_deref());
        reply.caller = auth::describe(&caller);
        Ok(Response::new(reply))
    }

    #[tracing::instrument(skip_all, fields(author, request_id))]
    async fn annotate(
        &self,
        req: Request<AnnotateRequest>,
    ) -> Result<Response<AnnotateReply>, Status> {
        let req = self.may_change(req, "a note")?;
        let body = match self.at_leader(req)? {
            Ok(body) => body,
            Err(f) => {
                return self
                    .forward(f, |mut c, r| async move { c.annotate(r).await })
                    .await
            }
        };
        let span = tracing::Span::current();
        span.record("author", body.author.as_str());
        span.record("request_id", body.request_id.as_str());
        let command = Command::Annotate {
            at_unix_ms: palisade_raft::unix_ms_now(),
            author: body.author,
            text: body.text,
        };
        let committed = self
            .commit_request(&body.request_id, command, false, String::new())
            .await?;
        let duplicate = committed.is_duplicate();
        match committed.result() {
            CommandResult::Annotated { log_index } => {
                tracing::info!(log_index, duplicate, "note committed");
                Ok(Response::new(AnnotateReply {
                    log_index: *log_index,
                    leader_id: self.own_id(),
                    duplicate,
                    request_id: body.request_id,
                }))
            }
            other => Err(Status::internal(format!(
                "unexpected result {other:?} for a note"
            ))),
        }
    }

    async fn journal(
        &self,
        req: Request<JournalRequest>,
    ) -> Result<Response<JournalReply>, Status> {
        self.may_read(&req)?;
        let entries = self
            .state
            .cluster_state()
            .journal
            .iter()
            .map(|e| JournalEntry {
                log_index: e.log_index,
                at_unix_ms: e.at_unix_ms,
                author: e.author.clone(),
                text: e.text.clone(),
                request_id: e.request_id.clone().unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(JournalReply { entries }))
    }

    async fn switchover(
        &self,
        req: Request<pb::SwitchoverRequest>,
    ) -> Result<Response<pb::OperationReply>, Status> {
        let req = self.may_change(req, "a switchover")?;
        let body = match self.at_leader(req)? {
            Ok(body) => body,
            Err(f) => {
                return self
                    .forward(f, |mut c, r| async move { c.switchover(r).await })
                    .await
            }
        };
        self.operate(
            OperatorRequest {
                kind: Kind::Switchover,
                to: Some(SiteId(body.to_site)),
                who: body.who,
                force: false,
                accept_data_loss: false,
            },
            body.request_id,
        )
        .await
    }

    async fn failover(
        &self,
        req: Request<pb::FailoverRequest>,
    ) -> Result<Response<pb::OperationReply>, Status> {
        let req = self.may_change(req, "a failover")?;
        let body = match self.at_leader(req)? {
            Ok(body) => body,
            Err(f) => {
                return self
                    .forward(f, |mut c, r| async move { c.failover(r).await })
                    .await
            }
        };
        self.operate(
            OperatorRequest {
                kind: Kind::Failover,
                to: Some(SiteId(body.to_site)),
                who: body.who,
                force: body.force,
                accept_data_loss: body.accept_data_loss,
            },
            body.request_id,
        )
        .await
    }

    async fn failback(
        &self,
        req: Request<pb::FailbackRequest>,
    ) -> Result<Response<pb::OperationReply>, Status> {
        let req = self.may_change(req, "a failback")?;
        let body = match self.at_leader(req)? {
            Ok(body) => body,
            Err(f) => {
                return self
                    .forward(f, |mut c, r| async move { c.failback(r).await })
                    .await
            }
        };
        self.operate(
            OperatorRequest {
                kind: Kind::Failback,
                to: None,
                who: body.who,
                force: false,
                accept_data_loss: false,
            },
            body.request_id,
        )
        .await
    }

    async fn pause(
        &self,
        req: Request<pb::PauseRequest>,
    ) -> Result<Response<pb::MaintenanceReply>, Status> {
        let req = self.may_change(req, "a pause")?;
        let body = match self.at_leader(req)? {
            Ok(body) => body,
            Err(f) => {
                return self
                    .forward(f, |mut c, r| async move { c.pause(r).await })
                    .await
            }
        };
        self.pause_here(body).await
    }

    async fn resume(
        &self,
        req: Request<pb::ResumeRequest>,
    ) -> Result<Response<pb::MaintenanceReply>, Status> {
        let req = self.may_change(req, "a resume")?;
        let body = match self.at_leader(req)? {
            Ok(body) => body,
            Err(f) => {
                return self
                    .forward(f, |mut c, r| async move { c.resume(r).await })
                    .await
            }
        };
        self.resume_here(body).await
    }

    async fn history(
        &self,
        req: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryReply>, Status> {
        self.may_read(&req)?;
        let applied_index = self.raft.metrics().borrow().last_applied.map(|l| l.index);
        let state = self.state.cluster_state();
        Ok(Response::new(views::history(&state, applied_index)))
    }

    type WatchStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::Event, Status>> + Send + 'static>,
    >;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.may_read(&req)?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let view = self.state.clone();
        let raft = self.raft.clone();
        tokio::spawn(async move { watch::stream_events(view, raft, tx).await });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn record_drill(
        &self,
        req: Request<pb::RecordDrillRequest>,
    ) -> Result<Response<pb::RecordDrillReply>, Status> {
        let req = self.may_change(req, "recording a drill")?;
        let body = match self.at_leader(req)? {
            Ok(body) => body,
            Err(f) => {
                return self
                    .forward(f, |mut c, r| async move { c.record_drill(r).await })
                    .await
            }
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
        let committed = self
            .commit_request(
                &body.request_id,
                Command::RecordDrill(Box::new(record)),
                false,
                String::new(),
            )
            .await?;
        Ok(Response::new(pb::RecordDrillReply {
            leader_id: self.own_id(),
            duplicate: committed.is_duplicate(),
            request_id: body.request_id,
        }))
    }

    async fn members(
        &self,
        req: Request<pb::MembersRequest>,
    ) -> Result<Response<pb::MembersReply>, Status> {
        self.may_read(&req)?;
        Ok(Response::new(self.members_reply(String::new())))
    }

    async fn change_members(
        &self,
        req: Request<pb::ChangeMembersRequest>,
    ) -> Result<Response<pb::MembersReply>, Status> {
        let req = self.may_change(req, "a membership change")?;
        let body = match self.at_leader(req)? {
            Ok(body) => body,
            Err(f) => {
                return self
                    .forward(f.within(members::LONGEST_CHANGE), |mut c, r| async move {
                        c.change_members(r).await
                    })
                    .await
            }
        };
        self.change_members_here(body).await
    }
}
