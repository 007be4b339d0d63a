//! The leader's controller: runs only while this witness is the Raft
//! leader. It collects every witness's reports, runs the failure detector,
//! and drives a failover step by step, each step committed
//! before the next starts; a new leader resumes at the first step not
//! recorded as done, after re-probing (reports are dropped on every
//! leadership change: what the last leader saw is unknown).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use palisade_core::detector::{Assessment, Detector, WitnessReport};
use palisade_core::lease::{majority, ExpiryProof};
use palisade_core::operation::{self, OperatorRequest, Refusal};
use palisade_core::{
    Command, CommandResult, Failover, NodeId, Outcome, SiteId, Step, StepRecord, Topology, Trigger,
};
use palisade_probe::postgres::PgProbe;
use palisade_raft::store::StateView;
use palisade_raft::Raft;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::agent::Agent;
use crate::clock::{mono_ms, now, wall_ms};
use crate::config::{DatabaseSettings, SiteActions};
use crate::failpoint;
use crate::lease::WitnessLease;
use crate::peer_msgs::{Report, SiteAction, SiteActionDone};
use crate::peers::{Peers, Rpc};

/// How long the leader waits for a site agent to fence its database.
const FENCE_RPC_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the leader waits for a promotion.
const PROMOTE_RPC_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a planned handover waits for the old primary's clean shutdown
/// (a fast shutdown, an immediate one, then a kill, each bounded).
const PLANNED_FENCE_TIMEOUT: Duration = Duration::from_secs(40);
/// How often the fence step asks the witnesses whether the lease expired.
const EXPIRY_POLL: Duration = Duration::from_millis(50);
/// Bound of one witness's expiry answer.
const EXPIRY_RPC_TIMEOUT: Duration = Duration::from_millis(500);
/// How often the leader looks at the target's replay position.
const CATCH_UP_POLL: Duration = Duration::from_millis(20);

struct Inner {
    reports: BTreeMap<NodeId, WitnessReport>,
    /// True exactly while this node leads.
    leading: bool,
    detector: Detector,
    assessment: String,
    /// Last assessment logged, to log changes and not every tick.
    last_logged: String,
}

/// The leader-side state and loop. Present on every witness; active only
/// while it leads.
pub struct Controller {
    inner: Mutex<Inner>,
    raft: Raft,
    view: StateView,
    topology: Topology,
    settings: Arc<DatabaseSettings>,
    peers: Peers,
    probes: BTreeMap<SiteId, PgProbe>,
    actions: Arc<SiteActions>,
    /// This witness's own grant book, asked like every other witness's
    /// when the fence step needs a proven lease expiry.
    lease: Arc<WitnessLease>,
    local_agent: OnceLock<Arc<Agent>>,
    /// Wakes the loop at once (an operator began an operation).
    wake: tokio::sync::Notify,
}

/// Why an operator's request was not begun.
#[derive(Debug, thiserror::Error)]
pub enum OperateError {
    /// Refused by the core's checks (bad request, or not now).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// This witness does not lead, or could not commit.
    #[error("{0}")]
    Unavailable(String),
}

/// An operation the leader committed.
#[derive(Debug, Clone)]
pub struct Begun {
    /// The epoch it raised the cluster to.
    pub epoch: u64,
    /// Site of the old primary.
    pub from: SiteId,
    /// Site being promoted.
    pub to: SiteId,
    /// What it may lose, in words (failover), or empty.
    pub data_loss_bound: String,
}

/// Why a step did not finish this time (it is retried next tick).
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("{0}")]
    Failed(String),
    #[error("cancelled: leadership lost")]
    Cancelled,
    /// A planned handover cannot be done safely: end it before promotion;
    /// the old primary resumes.
    #[error("{0}")]
    Abort(String),
}

/// A step's result: what it did, and the WAL position it established.
struct Done {
    detail: String,
    lsn: Option<u64>,
}

impl From<String> for Done {
    fn from(detail: String) -> Self {
        Done { detail, lsn: None }
    }
}

impl Controller {
    /// A controller for this witness; `probes` are the leader's own probes
    /// of each database (for the post-failover check).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        raft: Raft,
        view: StateView,
        topology: Topology,
        settings: Arc<DatabaseSettings>,
        peers: Peers,
        probes: BTreeMap<SiteId, PgProbe>,
        actions: Arc<SiteActions>,
        lease: Arc<WitnessLease>,
    ) -> Self {
        Self {
            inner: Mutex::new(Inner {
                reports: BTreeMap::new(),
                leading: false,
                detector: Detector::default(),
                assessment: String::new(),
                last_logged: String::new(),
            }),
            raft,
            view,
            topology,
            settings,
            peers,
            probes,
            actions,
            lease,
            local_agent: OnceLock::new(),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Wires this witness's own site agent, for actions on the leader's site.
    pub fn set_local_agent(&self, agent: Arc<Agent>) {
        let _ = self.local_agent.set(agent);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .expect("controller lock poisoned: a panic while holding it")
    }

    /// A witness's report arrived (or this witness's own, when it leads).
    pub fn receive_report(&self, report: Report) {
        let mut inner = self.lock();
        if inner.leading {
            inner.reports.insert(
                report.witness,
                WitnessReport {
                    received_at_ms: mono_ms(),
                    dbs: report.dbs,
                    last_writable: report.last_writable,
                },
            );
        }
    }

    /// The detector's latest view, in words; empty when not leading.
    pub fn assessment(&self) -> String {
        self.lock().assessment.clone()
    }

    /// Runs the controller loop until `cancel` (leadership lost / shutdown).
    #[tracing::instrument(skip_all, fields(leader = self.topology.own_id))]
    pub async fn lead(self: Arc<Self>, cancel: CancellationToken) {
        {
            let mut inner = self.lock();
            inner.leading = true;
            inner.reports.clear();
            inner.detector = Detector::default();
        }
        tracing::info!("leading: controller started");
        let interval = self.settings.probe_interval;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(interval) => {}
                _ = self.wake.notified() => {}
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.tick(&cancel) => {}
            }
        }
        let mut inner = self.lock();
        inner.leading = false;
        inner.reports.clear();
        inner.assessment.clear();
        tracing::info!("controller stopped");
    }

    /// Begins an operator's operation (switchover, failover, failback) if
    /// the core's checks approve it on this leader's fresh view; the loop
    /// then drives it like any failover. Returns once it is committed.
    #[tracing::instrument(skip_all, fields(kind = req.kind.name(), who = %req.who))]
    pub async fn operate(&self, req: OperatorRequest) -> Result<Begun, OperateError> {
        if !self.lock().leading {
            return Err(OperateError::Unavailable(format!(
                "witness {} is not the leader",
                self.topology.own_id
            )));
        }
        // No quorum round here: the state read below may lag the log by a
        // moment, but `BeginFailover` is checked again when applied (next
        // epoch, no operation in progress, same roles, not paused), and a
        // deposed leader cannot commit it.
        let state = self.view.cluster_state();
        let witnesses = self.witness_sites();
        let reports = self.lock().reports.clone();
        let sites: Vec<SiteId> = self.settings.all().iter().map(|d| d.site.clone()).collect();
        let approved = operation::check(
            &req,
            &operation::Facts {
                state: &state,
                db_sites: &sites,
                home: &self.settings.primary.site,
                witnesses: &witnesses,
                reports: &reports,
                now: now(),
                cfg: &self.settings.detector,
            },
        )
        .inspect_err(|e| tracing::warn!(refused = %e, "operator request refused"))?;
        let failover = Failover {
            epoch: state.epoch + 1,
            kind: req.kind,
            from: approved.from.clone(),
            to: approved.to.clone(),
            trigger: Trigger::Operator {
                who: req.who.clone(),
            },
            reason: approved.reason.clone(),
            evidence: approved.evidence,
            started_at_ms: wall_ms(),
            steps: vec![],
            outcome: None,
            finished_at_ms: None,
        };
        let epoch = failover.epoch;
        match self
            .raft
            .client_write(Command::BeginFailover(Box::new(failover)))
            .await
        {
            Ok(r) => match r.data {
                CommandResult::Rejected { reason } => {
                    Err(OperateError::Refused(Refusal::FailedPrecondition(reason)))
                }
                _ => {
                    tracing::warn!(epoch, from = %approved.from, to = %approved.to, reason = %approved.reason, "operator operation begun");
                    self.wake.notify_one();
                    Ok(Begun {
                        epoch,
                        from: approved.from,
                        to: approved.to,
                        data_loss_bound: approved.data_loss_bound,
                    })
                }
            },
            Err(e) => Err(OperateError::Unavailable(format!("not committed: {e}"))),
        }
    }

    fn witness_sites(&self) -> BTreeMap<NodeId, SiteId> {
        self.topology
            .witnesses
            .iter()
            .map(|(id, w)| (*id, SiteId(w.site.clone())))
            .collect()
    }

    /// Ends a maintenance window whose time is up, on record, so that
    /// status and the history show it ended.
    async fn end_expired_pause(&self, state: &palisade_core::ClusterState) {
        let Some(m) = &state.maintenance else { return };
        if m.in_force(wall_ms()) {
            return;
        }
        let cmd = Command::Resume {
            by: "expiry".into(),
            at_ms: wall_ms(),
        };
        match self.propose(cmd).await {
            Ok(()) => {
                tracing::warn!(paused_by = %m.by, "maintenance window over: automatic failover resumed")
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not record the end of the maintenance window")
            }
        }
    }

    /// After a failover the old primary is recorded as the standby that
    /// must rejoin; once a fresh report shows it in recovery and the
    /// primary shows it streaming, it is recorded as rejoined (and may be
    /// promoted again).
    async fn confirm_rejoin(&self, state: &palisade_core::ClusterState) {
        let Some(db) = &state.db else { return };
        if !db.standby_needs_rejoin {
            return;
        }
        let Some(standby) = self.settings.at(&db.standby.0) else {
            return;
        };
        let now = mono_ms();
        let ttl = self.settings.detector.report_ttl_ms;
        let streaming = self.lock().reports.values().any(|r| {
            now.saturating_sub(r.received_at_ms) <= ttl
                && r.dbs.get(&db.primary).is_some_and(|o| {
                    o.is_writable_primary()
                        && o.replicas.iter().any(|x| {
                            x.application_name == standby.application_name && x.state == "streaming"
                        })
                })
                && r.dbs
                    .get(&db.standby)
                    .is_some_and(|o| o.reachability.is_up() && o.in_recovery == Some(true))
        });
        if !streaming {
            return;
        }
        let cmd = Command::StandbyRejoined {
            site: db.standby.clone(),
            epoch: state.epoch,
            at_ms: wall_ms(),
        };
        match self.propose(cmd).await {
            Ok(()) => {
                tracing::warn!(site = %db.standby, primary = %db.primary, "old primary rejoined as a streaming standby")
            }
            Err(e) => tracing::warn!(error = %e, "could not record the rejoin"),
        }
    }

    async fn propose(&self, command: Command) -> Result<(), String> {
        match self.raft.client_write(command).await {
            Ok(r) => match r.data {
                CommandResult::Rejected { reason } => {
                    Err(format!("rejected by the state machine: {reason}"))
                }
                _ => Ok(()),
            },
            Err(e) => Err(format!("not committed: {e}")),
        }
    }

    async fn tick(&self, cancel: &CancellationToken) {
        let state = self.view.cluster_state();
        if state.db.is_none() {
            let cmd = Command::InitDatabase {
                primary: self.settings.primary.site.clone(),
                standby: self.settings.standby.site.clone(),
            };
            match self.propose(cmd).await {
                Ok(()) => {
                    tracing::info!(primary = %self.settings.primary.site, standby = %self.settings.standby.site, "recorded the configured database roles")
                }
                Err(e) => tracing::warn!(error = %e, "could not record database roles"),
            }
            return;
        }
        if let Some(f) = state.failover {
            self.drive(f, cancel).await;
            return;
        }
        self.end_expired_pause(&state).await;
        self.confirm_rejoin(&state).await;
        let witnesses = self.witness_sites();
        let paused = state.paused(wall_ms()).cloned();
        let assessment = {
            let mut inner = self.lock();
            let reports = inner.reports.clone();
            let a =
                inner
                    .detector
                    .assess(now(), &state, &witnesses, &reports, &self.settings.detector);
            inner.assessment = describe(&a);
            if let Some(m) = &paused {
                inner.assessment = format!(
                    "paused (maintenance by {}): {}{}",
                    m.by,
                    if matches!(a, Assessment::FailOver { .. }) {
                        "SUPPRESSED "
                    } else {
                        ""
                    },
                    inner.assessment
                );
            }
            if inner.assessment.split(':').take(2).collect::<Vec<_>>()
                != inner.last_logged.split(':').take(2).collect::<Vec<_>>()
            {
                match (&a, &paused) {
                    (Assessment::FailOver { .. }, Some(_)) => {
                        tracing::warn!(assessment = %inner.assessment, "paused: automatic failover suppressed")
                    }
                    (Assessment::Blocked { .. }, _) => {
                        tracing::warn!(assessment = %inner.assessment, "automatic failover blocked")
                    }
                    _ => tracing::info!(assessment = %inner.assessment, "detector"),
                }
                inner.last_logged = inner.assessment.clone();
            }
            a
        };
        if paused.is_some() {
            return;
        }
        if let Assessment::FailOver {
            from,
            to,
            reason,
            evidence,
        } = assessment
        {
            if !self.settings.automatic {
                tracing::warn!(%from, %to, %reason, "failover.automatic = false: not failing over");
                return;
            }
            let failover = Failover {
                kind: palisade_core::Kind::Failover,
                epoch: state.epoch + 1,
                from,
                to,
                trigger: Trigger::Automatic,
                reason,
                evidence,
                started_at_ms: wall_ms(),
                steps: vec![],
                outcome: None,
                finished_at_ms: None,
            };
            tracing::warn!(epoch = failover.epoch, from = %failover.from, to = %failover.to, reason = %failover.reason, "beginning failover");
            match self
                .propose(Command::BeginFailover(Box::new(failover)))
                .await
            {
                Ok(()) => {
                    failpoint::hit("after-begin-failover").await;
                    if let Some(f) = self.view.cluster_state().failover {
                        self.drive(f, cancel).await;
                    }
                }
                Err(e) => tracing::error!(error = %e, "could not begin failover"),
            }
        }
    }

    /// Runs the failover's remaining steps in order, committing each.
    #[tracing::instrument(skip_all, fields(epoch = failover.epoch, from = %failover.from, to = %failover.to))]
    async fn drive(&self, failover: Failover, cancel: &CancellationToken) {
        let epoch = failover.epoch;
        loop {
            let state = self.view.cluster_state();
            let Some(f) = state.failover.filter(|f| f.epoch == epoch) else {
                return;
            };
            let Some(step) = f.next_step() else {
                let failed: Vec<String> = f
                    .steps
                    .iter()
                    .filter(|s| s.step == Step::Verified)
                    .flat_map(|s| {
                        s.detail
                            .split("; ")
                            .filter(|c| c.starts_with("FAILED"))
                            .map(String::from)
                    })
                    .collect();
                let outcome = if failed.is_empty() {
                    Outcome::Completed
                } else {
                    Outcome::CompletedWithFailedChecks { failed }
                };
                match self
                    .propose(Command::FinishFailover {
                        epoch,
                        outcome: outcome.clone(),
                        at_ms: wall_ms(),
                    })
                    .await
                {
                    Ok(()) => {
                        let total = wall_ms() - f.started_at_ms;
                        match outcome {
                            Outcome::Completed => {
                                tracing::warn!(total_ms = total, "failover completed")
                            }
                            other => {
                                tracing::error!(total_ms = total, outcome = ?other, "failover COMPLETED WITH FAILED CHECKS: a human must look")
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not record the end of the failover")
                    }
                }
                return;
            };
            failpoint::hit(&format!("before-step-{}", step.name())).await;
            let started_at_ms = wall_ms();
            // `.instrument`, not `span.enter()`: an entered guard held
            // across an await leaks the span into whatever else runs on
            // this thread meanwhile.
            let span = tracing::info_span!("step", step = step.name());
            let result = tokio::select! {
                _ = cancel.cancelled() => Err(StepError::Cancelled),
                r = self.run_step(&f, step).instrument(span) => r,
            };
            match result {
                Ok(Done { detail, lsn }) => {
                    let record = StepRecord {
                        step,
                        started_at_ms,
                        done_at_ms: wall_ms(),
                        detail: detail.clone(),
                        lsn,
                    };
                    if let Err(e) = self.propose(Command::StepDone { epoch, record }).await {
                        tracing::warn!(error = %e, "step done but not recorded; it is re-run (idempotently)");
                        return;
                    }
                    tracing::warn!(took_ms = wall_ms() - started_at_ms, %detail, "step {} done", step.name());
                    failpoint::hit(&format!("after-step-{}", step.name())).await;
                }
                Err(StepError::Cancelled) => return,
                Err(StepError::Abort(reason)) => {
                    tracing::error!(%reason, "{} ABORTED before promotion: the old primary resumes", f.kind.name());
                    let cmd = Command::FinishFailover {
                        epoch,
                        outcome: Outcome::Aborted { reason },
                        at_ms: wall_ms(),
                    };
                    if let Err(e) = self.propose(cmd).await {
                        tracing::warn!(error = %e, "could not record the abort; retrying next tick");
                    }
                    return;
                }
                Err(StepError::Failed(e)) => {
                    tracing::warn!(error = %e, "step {} not done yet; retrying next tick", step.name());
                    return;
                }
            }
        }
    }

    async fn run_step(&self, f: &Failover, step: Step) -> Result<Done, StepError> {
        match step {
            Step::Fenced if f.kind.is_planned() => self.fence_planned(f).await,
            Step::Fenced => self.fence(f).await.map(Done::from),
            Step::Promoted => {
                let caught_up = if f.kind.is_planned() {
                    Some(self.wait_catch_up(f).await?)
                } else {
                    None
                };
                let done = self
                    .site_action(
                        &f.to,
                        SiteAction::Promote { epoch: f.epoch },
                        PROMOTE_RPC_TIMEOUT,
                    )
                    .await
                    .map_err(StepError::Failed)?;
                Ok(match caught_up {
                    Some(c) => format!("{c}; {}", done.detail),
                    None => done.detail,
                }
                .into())
            }
            Step::AppFlipped => self.flip_apps(f).await.map(Done::from),
            Step::Repointed => self.repoint(f).await.map(Done::from),
            Step::Verified => Ok(self.verify(f).await.into()),
        }
    }

    /// The fence of a planned handover: the old primary's agent shuts it
    /// down cleanly (its WAL senders ship the whole WAL first) and reports
    /// the final checkpoint. Only a confirmed clean shutdown will do: with
    /// the agent unreachable, or the server killed, where its WAL ends is
    /// unknown and the handover is aborted (the old primary resumes) rather
    /// than turned into a lossy failover the operator did not ask for.
    async fn fence_planned(&self, f: &Failover) -> Result<Done, StepError> {
        let action = SiteAction::Fence {
            epoch: f.epoch,
            planned: true,
        };
        match self
            .site_action(&f.from, action, PLANNED_FENCE_TIMEOUT)
            .await
        {
            Ok(SiteActionDone {
                detail,
                lsn: Some(lsn),
            }) => Ok(Done {
                detail: format!(
                    "shut down cleanly by the site agent of {}: {detail}",
                    f.from
                ),
                lsn: Some(lsn),
            }),
            Ok(SiteActionDone { detail, lsn: None }) => Err(StepError::Abort(format!(
                "the primary at {} did not shut down cleanly ({detail}); no catch-up can be proven",
                f.from
            ))),
            Err(e) => Err(StepError::Abort(format!(
                "the site agent of {} did not confirm a clean shutdown: {e}",
                f.from
            ))),
        }
    }

    /// Waits until the target has replayed past the old primary's final
    /// checkpoint (DESIGN rule 5: a planned handover loses nothing), probing
    /// it directly; aborts after `switchover_catchup_timeout`.
    async fn wait_catch_up(&self, f: &Failover) -> Result<String, StepError> {
        let Some(final_lsn) = f
            .steps
            .iter()
            .find(|s| s.step == Step::Fenced)
            .and_then(|s| s.lsn)
        else {
            return Err(StepError::Abort(
                "the fenced step recorded no final WAL position".into(),
            ));
        };
        let Some(probe) = self.probes.get(&f.to) else {
            return Err(StepError::Abort(format!(
                "no probe of the database at {}",
                f.to
            )));
        };
        let started = mono_ms();
        let bound = self.settings.switchover_catchup_timeout.as_millis() as u64;
        let mut last = None;
        loop {
            let o = probe.probe().await;
            if let Some(replayed) = o.replay_lsn {
                last = Some(replayed);
                // The checkpoint LSN is where its record starts; the replay
                // position is the end of the last record replayed.
                if replayed > final_lsn {
                    return Ok(format!(
                        "{} replayed past the final checkpoint {} (at {}) in {} ms",
                        f.to,
                        palisade_core::observe::format_lsn(final_lsn),
                        palisade_core::observe::format_lsn(replayed),
                        mono_ms() - started
                    ));
                }
            }
            if mono_ms() - started >= bound {
                return Err(StepError::Abort(format!(
                    "the standby at {} did not replay the old primary's final WAL (checkpoint at {}) within {bound} ms (replayed up to {})",
                    f.to,
                    palisade_core::observe::format_lsn(final_lsn),
                    last.map(palisade_core::observe::format_lsn).unwrap_or_else(|| "unknown".into())
                )));
            }
            tokio::time::sleep(CATCH_UP_POLL).await;
        }
    }

    /// Fencing, in the order of preference of DESIGN rule 2: the old
    /// primary's agent confirms it stopped its database; failing that, a
    /// STONITH hook says done; failing that, a majority of witnesses vouch
    /// that the old primary's quorum lease has ended (each stopped granting
    /// when it applied this failover, and its last grant lies `ttl × (1 +
    /// drift)` behind). No wait counts from when this leader took office.
    async fn fence(&self, f: &Failover) -> Result<String, StepError> {
        if failpoint::is_on("unsafe-skip-fence") {
            tracing::error!("failpoint unsafe-skip-fence: NOT fencing (test builds only)");
            return Ok("NOT FENCED: failpoint unsafe-skip-fence".into());
        }
        let started = mono_ms();
        let hook = self.settings.stonith.iter().find(|h| h.site == f.from);
        let mut stonith_tried = false;
        let mut proof = ExpiryProof::new(majority(self.topology.witnesses.len()));
        // The agent's confirmation is asked on its own task, once per
        // attempt bound, while the witnesses are asked every round: an
        // unreachable agent never delays a proof the witnesses can give.
        let mut confirm: Option<tokio::task::JoinHandle<Result<SiteActionDone, String>>> = None;
        loop {
            if confirm.as_ref().is_none_or(|t| t.is_finished()) {
                if let Some(t) = confirm.take() {
                    match t.await {
                        Ok(Ok(done)) => {
                            return Ok(format!(
                                "fenced by the site agent of {}: {}",
                                f.from, done.detail
                            ))
                        }
                        Ok(Err(e)) => {
                            tracing::info!(error = %e, waited_ms = mono_ms() - started, "site agent did not confirm the fence")
                        }
                        Err(e) => tracing::warn!(error = %e, "fence request task failed"),
                    }
                    if let (Some(hook), false) = (hook, stonith_tried) {
                        stonith_tried = true;
                        match crate::stonith::fire(hook, f.epoch).await {
                            Ok(detail) => {
                                return Ok(format!("fenced by STONITH of {}: {detail}", f.from))
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "STONITH hook failed; the lease decides")
                            }
                        }
                    }
                }
                confirm = Some(self.spawn_site_action(
                    &f.from,
                    SiteAction::Fence {
                        epoch: f.epoch,
                        planned: false,
                    },
                    FENCE_RPC_TIMEOUT,
                ));
            }
            self.ask_expiry(&f.from, f.epoch, &mut proof).await;
            if proof.is_proven() {
                if let Some(t) = confirm.take() {
                    t.abort();
                }
                return Ok(format!(
                    "lease expired: agent of {} did not confirm within {} ms; witnesses {:?} vouch that every grant ran out (lease_ttl × (1 + drift) = {} ms past each one's last grant): {}",
                    f.from,
                    mono_ms() - started,
                    proof.vouching(),
                    self.settings.lease.witness_wait_ms(),
                    proof.describe()
                ));
            }
            tokio::time::sleep(EXPIRY_POLL).await;
        }
    }

    /// Asks every witness (this one without the network) whether it vouches
    /// that `site`'s lease ended for the failover of `epoch`; returns as soon
    /// as a majority vouches.
    async fn ask_expiry(&self, site: &SiteId, epoch: u64, proof: &mut ExpiryProof) {
        proof.record(self.topology.own_id, self.lease.expiry(site, epoch));
        let mut asks = tokio::task::JoinSet::new();
        for w in self.peers.ids() {
            let (peers, site) = (self.peers.clone(), site.clone());
            asks.spawn(async move {
                let answer = peers
                    .lease_expiry(w, &site, epoch, EXPIRY_RPC_TIMEOUT)
                    .await;
                (w, answer)
            });
        }
        while let Some(done) = asks.join_next().await {
            match done {
                Ok((w, Ok(e))) => proof.record(w, e),
                Ok((w, Err(e))) => {
                    tracing::debug!(witness = w, error = %e, "no lease expiry answer")
                }
                Err(e) => tracing::warn!(error = %e, "lease expiry question task failed"),
            }
            // A majority is enough: an unreachable witness (the old
            // primary's, typically) must not hold up the proof until its
            // question times out.
            if proof.is_proven() {
                asks.abort_all();
                break;
            }
        }
    }

    /// `monitorsEnabled` off on the old site's app, then on at the new
    /// site's (DESIGN rule 4): never two apps running jobs. An old site
    /// that cannot be reached cannot be switched off now; its agent does it
    /// first thing when it returns (its desired value is `false`), and the
    /// record says so.
    async fn flip_apps(&self, f: &Failover) -> Result<String, StepError> {
        let mut done = Vec::new();
        let timeout = |site: &SiteId| {
            self.actions
                .app(site)
                .map(|a| a.command_timeout + Duration::from_secs(10))
                .unwrap_or(FENCE_RPC_TIMEOUT)
        };
        if self.actions.app(&f.from).is_some() {
            match self.site_action(&f.from, SiteAction::SetMonitors { epoch: f.epoch, enabled: false }, timeout(&f.from)).await {
                Ok(d) => done.push(format!("{}: {}", f.from, d.detail)),
                Err(e) => done.push(format!(
                    "{}: not reachable ({e}); its agent sets monitorsEnabled=false when it returns, before anything else",
                    f.from
                )),
            }
        }
        if self.actions.app(&f.to).is_some() {
            let d = self
                .site_action(
                    &f.to,
                    SiteAction::SetMonitors {
                        epoch: f.epoch,
                        enabled: true,
                    },
                    timeout(&f.to),
                )
                .await
                .map_err(|e| {
                    StepError::Failed(format!("switching monitorsEnabled on at {}: {e}", f.to))
                })?;
            done.push(format!("{}: {}", f.to, d.detail));
        }
        if done.is_empty() {
            done.push("no [[app]] configured".into());
        }
        Ok(done.join("; "))
    }

    /// The new site's app to the new site's Elasticsearch, then every front
    /// door to the new site. Each is idempotent, so a retry after a partial
    /// run converges.
    async fn repoint(&self, f: &Failover) -> Result<String, StepError> {
        let mut done = Vec::new();
        if let (Some(app), Some(search)) = (self.actions.app(&f.to), self.actions.search_at(&f.to))
        {
            if app.es_target.is_some() || !search.ccr_follower_indices.is_empty() {
                let action = SiteAction::RepointSearch {
                    epoch: f.epoch,
                    hosts: search.hosts.clone(),
                    ccr_url: search.url.clone(),
                    indices: search.ccr_follower_indices.clone(),
                };
                let d = self
                    .site_action(&f.to, action, app.command_timeout + Duration::from_secs(40))
                    .await
                    .map_err(|e| {
                        StepError::Failed(format!("repointing Elasticsearch at {}: {e}", f.to))
                    })?;
                done.push(format!("elasticsearch: {}", d.detail));
            }
        }
        for door in &self.actions.front_doors {
            let d = crate::front_door::repoint(door, f)
                .await
                .map_err(StepError::Failed)?;
            done.push(d);
        }
        if done.is_empty() {
            done.push("nothing to repoint (no [[elasticsearch]] target, no [[front_door]])".into());
        }
        Ok(done.join("; "))
    }

    /// The post-failover checks (the guide's "Failover Check"), from the
    /// leader's site. Every check is recorded; failed ones start `FAILED`.
    async fn verify(&self, f: &Failover) -> String {
        let mut checks = Vec::new();
        match self.probes.get(&f.to) {
            Some(probe) => {
                let mut last = None;
                for _ in 0..10 {
                    let o = probe.probe().await;
                    if o.is_writable_primary() {
                        last = None;
                        checks.push(format!(
                            "database at {} writable (lsn {})",
                            f.to,
                            o.current_lsn
                                .map(palisade_core::observe::format_lsn)
                                .unwrap_or_default()
                        ));
                        break;
                    }
                    last = Some(format!(
                        "{:?}, in_recovery {:?}",
                        o.reachability, o.in_recovery
                    ));
                    tokio::time::sleep(self.settings.probe_interval).await;
                }
                if let Some(why) = last {
                    checks.push(format!("FAILED database at {} writable: {why}", f.to));
                }
            }
            None => checks.push(format!(
                "FAILED database at {} writable: no probe configured",
                f.to
            )),
        }
        if let Some(search) = self.actions.search_at(&f.to) {
            checks.push(crate::checks::search_health(search).await);
        }
        if let Some(url) = self.actions.app(&f.to).and_then(|a| a.health_url.as_ref()) {
            checks.push(crate::checks::http("app health", url, None, Duration::from_secs(5)).await);
        }
        if !self.actions.apps.is_empty() {
            checks.push(self.check_one_monitor(f).await);
        }
        for c in &self.actions.checks {
            let url = c.url.replace("{site}", &f.to.0);
            checks.push(crate::checks::http(&c.name, &url, c.expect_status, c.timeout).await);
        }
        checks.join("; ")
    }

    /// Exactly one app with `monitorsEnabled=true`, read back from the files
    /// by each site's agent. A site that cannot be reached is named; it is
    /// not counted as a failure, since its agent switches it off on return.
    async fn check_one_monitor(&self, f: &Failover) -> String {
        let mut on = Vec::new();
        let mut unknown = Vec::new();
        let mut switched_off = Vec::new();
        for app in &self.actions.apps {
            match self
                .site_action(
                    &app.site,
                    SiteAction::ReadMonitors { epoch: f.epoch },
                    FENCE_RPC_TIMEOUT,
                )
                .await
            {
                // The old site was unreachable at the flip and is back: its
                // agent leaves the app alone while the failover runs, so
                // switch it off now (DESIGN rule 4 holds once it ends).
                Ok(d) if d.detail == "true" && app.site == f.from => {
                    let off = SiteAction::SetMonitors {
                        epoch: f.epoch,
                        enabled: false,
                    };
                    match self.site_action(&app.site, off, FENCE_RPC_TIMEOUT).await {
                        Ok(d) => switched_off.push(format!("{}: {}", app.site, d.detail)),
                        Err(e) => {
                            on.push(app.site.0.clone());
                            tracing::warn!(error = %e, site = %app.site, "could not switch the returning old site's app off");
                        }
                    }
                }
                Ok(d) if d.detail == "true" => on.push(app.site.0.clone()),
                Ok(_) => {}
                Err(e) => unknown.push(format!("{} ({e})", app.site)),
            }
        }
        let mut note = if unknown.is_empty() {
            String::new()
        } else {
            format!(" (not readable: {})", unknown.join(", "))
        };
        if !switched_off.is_empty() {
            note.push_str(&format!(
                " (switched off on its return: {})",
                switched_off.join(", ")
            ));
        }
        if on.len() == 1 && on[0] == f.to.0 {
            format!("exactly one monitorsEnabled=true (site {}){note}", f.to)
        } else {
            format!(
                "FAILED exactly one monitorsEnabled=true: on at [{}]{note}",
                on.join(", ")
            )
        }
    }

    /// [`Self::site_action`] on its own task, so the caller can go on.
    fn spawn_site_action(
        &self,
        site: &SiteId,
        action: SiteAction,
        timeout: Duration,
    ) -> tokio::task::JoinHandle<Result<SiteActionDone, String>> {
        let Some(witness) = self.peers.witness_of(site) else {
            let site = site.clone();
            return tokio::spawn(async move { Err(format!("no witness at site {site}")) });
        };
        if witness == self.topology.own_id {
            let agent = self.local_agent.get().cloned();
            return tokio::spawn(async move {
                let agent = agent.ok_or("local site agent not started")?;
                // The action on a task of its own: giving up waiting never
                // cancels a fence half-way.
                let task = tokio::spawn(agent.act(action));
                tokio::time::timeout(timeout, task)
                    .await
                    .map_err(|_| format!("local agent did not finish within {timeout:?}"))?
                    .map_err(|e| format!("local agent task failed: {e}"))?
            });
        }
        let peers = self.peers.clone();
        tokio::spawn(async move {
            peers
                .call(witness, Rpc::SiteAction, &action, timeout)
                .await
                .map_err(|e| e.to_string())
        })
    }

    /// Asks the site agent of `site` to act (directly when it is this
    /// witness's own site).
    async fn site_action(
        &self,
        site: &SiteId,
        action: SiteAction,
        timeout: Duration,
    ) -> Result<SiteActionDone, String> {
        let Some(witness) = self.peers.witness_of(site) else {
            return Err(format!("no witness at site {site}"));
        };
        if witness == self.topology.own_id {
            let agent = self
                .local_agent
                .get()
                .ok_or("local site agent not started")?
                .clone();
            // Its own task, so that giving up waiting never cancels a fence
            // half-way (dropping a JoinHandle does not stop the task).
            let task = tokio::spawn(agent.act(action));
            return tokio::time::timeout(timeout, task)
                .await
                .map_err(|_| format!("local agent did not finish within {timeout:?}"))?
                .map_err(|e| format!("local agent task failed: {e}"))?;
        }
        self.peers
            .call(witness, Rpc::SiteAction, &action, timeout)
            .await
            .map_err(|e| e.to_string())
    }
}

/// One line for status and logs.
fn describe(a: &Assessment) -> String {
    match a {
        Assessment::NotConfigured => "not configured: database roles not recorded".into(),
        Assessment::FailoverInProgress => "failover in progress".into(),
        Assessment::Healthy { why } => format!("healthy: {why}"),
        Assessment::Suspect {
            down_for_ms,
            needed_ms,
            rule,
        } => {
            format!(
                "suspect: primary down for {down_for_ms} ms of the {needed_ms} ms {rule} requires"
            )
        }
        Assessment::Blocked { reason, .. } => format!("blocked: {reason}"),
        Assessment::FailOver { reason, .. } => format!("failing over: {reason}"),
    }
}
