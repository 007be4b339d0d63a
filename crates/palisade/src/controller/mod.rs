//! The leader's controller: runs only while this witness is the Raft
//! leader. It collects every witness's reports, runs the failure detector,
//! and drives a failover step by step, each step committed
//! before the next starts; a new leader resumes at the first step not
//! recorded as done, after re-probing (reports are dropped on every
//! leadership change: what the last leader saw is unknown).
//!
//! What to do and what a result means is decided by the pure executor
//! (`palisade_core::executor`); the modules here carry the work out:
//! `drive` (the step loop), `fence` (the fence and a handover's clean
//! shutdown and catch-up), `site_steps` (apps, repointing, the checks) and
//! `site_call` (orders to the site agents).

mod drive;
mod fence;
mod site_call;
mod site_steps;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use openraft::error::{ClientWriteError, RaftError};
use palisade_core::detector::{Assessment, Detector, WitnessReport};
use palisade_core::operation::{self, OperatorRequest, Refusal};
use palisade_core::state::requests::{parse_request_id, Lookup};
use palisade_core::{Command, CommandResult, Failover, NodeId, SiteId, Trigger};
use palisade_raft::members::Members;
use palisade_raft::store::StateView;
use palisade_raft::Raft;
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;
use crate::clock::{mono_ms, now, wall_ms};
use crate::config::{DatabaseSettings, SiteActions};
use crate::failpoint;
use crate::lease::WitnessLease;
use crate::peer_msgs::Report;
use crate::peers::Peers;

struct Inner {
    reports: BTreeMap<NodeId, WitnessReport>,
    /// True exactly while this node leads.
    leading: bool,
    detector: Detector,
    assessment: String,
    /// Last assessment logged, to log changes and not every tick.
    last_logged: String,
    /// Since when this witness leads (mono ms).
    leading_since_ms: u64,
    /// How many reports each witness has sent since this one leads.
    reports_since_leading: BTreeMap<NodeId, u32>,
    /// The epoch whose fence found the old site's agent out of reach
    /// (its call timed out or did not get through).
    fence_unanswered: Option<u64>,
}

/// The leader-side state and loop. Present on every witness; active only
/// while it leads.
pub struct Controller {
    inner: Mutex<Inner>,
    raft: Raft,
    view: StateView,
    members: Members,
    settings: Arc<DatabaseSettings>,
    peers: Peers,
    probes: BTreeMap<SiteId, crate::db_probe::DbProbe>,
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
    /// This witness does not lead, or could not commit (nothing was
    /// appended).
    #[error("{0}")]
    Unavailable(String),
    /// Committing failed after the entry may have been appended: the
    /// operation may still begin.
    #[error("{0}")]
    Unknown(String),
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
    /// The request was applied before (a retry): this is the operation it
    /// began then; nothing was begun now.
    pub duplicate: bool,
}

impl Begun {
    /// The operation a request already applied began, from its record.
    fn from_record(
        record: &palisade_core::RequestRecord,
        state: &palisade_core::ClusterState,
    ) -> Result<Self, OperateError> {
        if let CommandResult::Rejected { reason } = &record.result {
            return Err(OperateError::Refused(Refusal::FailedPrecondition(format!(
                "{reason} (request {} was refused when it was first applied, at log index {}; \
                 nothing changed; send a new request to try again)",
                record.id, record.log_index
            ))));
        }
        let epoch = record.epoch.ok_or_else(|| {
            OperateError::Refused(Refusal::FailedPrecondition(format!(
                "request {} was applied as a {}, not an operation",
                record.id, record.kind
            )))
        })?;
        let f = state
            .failover
            .iter()
            .chain(state.history.iter())
            .find(|f| f.epoch == epoch)
            .ok_or_else(|| {
                OperateError::Unavailable(format!(
                    "request {} began epoch {epoch}, which this witness has no record of",
                    record.id
                ))
            })?;
        Ok(Begun {
            epoch,
            from: f.from.clone(),
            to: f.to.clone(),
            data_loss_bound: record.detail.clone(),
            duplicate: true,
        })
    }
}

impl Controller {
    /// A controller for this witness; `probes` are the leader's own probes
    /// of each database (for the post-failover check).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        raft: Raft,
        view: StateView,
        members: Members,
        settings: Arc<DatabaseSettings>,
        peers: Peers,
        probes: BTreeMap<SiteId, crate::db_probe::DbProbe>,
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
                leading_since_ms: 0,
                reports_since_leading: BTreeMap::new(),
                fence_unanswered: None,
            }),
            raft,
            view,
            members,
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
            *inner
                .reports_since_leading
                .entry(report.witness)
                .or_default() += 1;
            inner.reports.insert(
                report.witness,
                WitnessReport {
                    received_at_ms: mono_ms(),
                    dbs: report.dbs,
                    last_writable: report.last_writable,
                    unreachable_for: report.unreachable_for,
                },
            );
        }
    }

    /// The detector's latest view, in words; empty when not leading.
    pub fn assessment(&self) -> String {
        self.lock().assessment.clone()
    }

    /// Runs the controller loop until `cancel` (leadership lost / shutdown).
    #[tracing::instrument(skip_all, fields(leader = self.members.own_id()))]
    pub async fn lead(self: Arc<Self>, cancel: CancellationToken) {
        {
            let mut inner = self.lock();
            inner.leading = true;
            inner.leading_since_ms = mono_ms();
            inner.reports_since_leading.clear();
            inner.fence_unanswered = None;
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
    ///
    /// `request_id` (empty: none) makes it exactly-once: a request already
    /// applied is answered with the operation it began (before the checks,
    /// which would now refuse it: the primary has moved), and one still in
    /// flight is caught when applied.
    #[tracing::instrument(skip_all, fields(kind = req.kind.name(), who = %req.who, request_id))]
    pub async fn operate(
        &self,
        req: OperatorRequest,
        request_id: &str,
    ) -> Result<Begun, OperateError> {
        if !request_id.is_empty() {
            tracing::Span::current().record("request_id", request_id);
            let state = self.view.cluster_state();
            let issued = parse_request_id(request_id)
                .map_err(|e| OperateError::Refused(Refusal::InvalidArgument(e.to_string())))?;
            match state.requests.lookup(request_id, issued, wall_ms()) {
                Lookup::New => {}
                Lookup::Seen(first) if first.kind != req.kind.name() => {
                    return Err(OperateError::Refused(Refusal::FailedPrecondition(format!(
                        "request id {request_id} was already used for another request ({} by \
                         {}, log index {}); a retry must repeat the same command, and a new \
                         request needs a new id",
                        first.kind, first.who, first.log_index
                    ))))
                }
                Lookup::Seen(first) => {
                    tracing::info!(
                        log_index = first.log_index,
                        "request applied before: answered from the record"
                    );
                    return Begun::from_record(first, &state);
                }
                Lookup::TooOld(reason) => {
                    return Err(OperateError::Refused(Refusal::FailedPrecondition(reason)))
                }
            }
        }
        if !self.lock().leading {
            return Err(OperateError::Unavailable(format!(
                "witness {} is not the leader",
                self.members.own_id()
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
        let begin = Command::BeginFailover(Box::new(failover));
        let command = if request_id.is_empty() {
            begin
        } else {
            Command::Requested {
                id: request_id.to_string(),
                at_ms: wall_ms(),
                refuse_if_paused: false,
                detail: approved.data_loss_bound.clone(),
                command: Box::new(begin),
            }
        };
        match self.raft.client_write(command).await {
            Ok(r) => match r.data {
                CommandResult::Rejected { reason } => {
                    Err(OperateError::Refused(Refusal::FailedPrecondition(reason)))
                }
                CommandResult::Duplicate { record } => {
                    tracing::info!(
                        log_index = record.log_index,
                        "duplicate request: not begun again"
                    );
                    Begun::from_record(&record, &self.view.cluster_state())
                }
                _ => {
                    tracing::warn!(epoch, from = %approved.from, to = %approved.to, reason = %approved.reason, "operator operation begun");
                    self.wake.notify_one();
                    Ok(Begun {
                        epoch,
                        from: approved.from,
                        to: approved.to,
                        data_loss_bound: approved.data_loss_bound,
                        duplicate: false,
                    })
                }
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(OperateError::Unavailable(format!(
                    "witness {} is no longer the leader; nothing was begun; retry",
                    self.members.own_id()
                )))
            }
            Err(e) => Err(OperateError::Unknown(format!(
                "the leader could not finish committing the operation: {e}"
            ))),
        }
    }

    fn witness_sites(&self) -> BTreeMap<NodeId, SiteId> {
        self.members
            .topology()
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
        // MariaDB: the writer lists no replicas; the other master's own IO
        // thread receiving (from the writer, as the pair is configured)
        // is the evidence.
        let mariadb = self.settings.is_mariadb();
        let streaming = self.lock().reports.values().any(|r| {
            now.saturating_sub(r.received_at_ms) <= ttl
                && r.dbs.get(&db.primary).is_some_and(|o| {
                    o.is_writable_primary()
                        && (mariadb
                            || o.replicas.iter().any(|x| {
                                x.application_name == standby.application_name
                                    && x.state == "streaming"
                            }))
                })
                && (!mariadb || r.dbs.get(&db.standby).is_some_and(|o| o.is_streaming()))
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
                // Progress, not trouble: INFO (WARN and ERROR are for what
                // a human must look at).
                tracing::info!(site = %db.standby, primary = %db.primary, "old primary rejoined as a streaming standby")
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
        if let Some(f) = state.failover.clone() {
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
            if log_key(&inner.assessment) != log_key(&inner.last_logged) {
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
                    if let Some(f) = self.view.cluster_state().failover.clone() {
                        self.drive(f, cancel).await;
                    }
                }
                Err(e) => tracing::error!(error = %e, "could not begin failover"),
            }
        }
    }
}
/// One line for status and logs.
/// What must change in an assessment for it to be logged again: its first
/// two `:`-separated parts, with durations (a number followed by `ms` or
/// `s`) blanked. A primary down for 368, then 569, then 771 ms is one
/// suspicion, logged once; a change in how many witnesses see it down, or
/// of state, is logged.
fn log_key(assessment: &str) -> String {
    let head = assessment.split(':').take(2).collect::<Vec<_>>().join(":");
    let words: Vec<&str> = head.split(' ').collect();
    words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let unit = words
                .get(i + 1)
                .map(|n| n.trim_end_matches([';', ',', ')']));
            let numeric = !w.is_empty() && w.chars().all(|c| c.is_ascii_digit() || c == '.');
            if numeric && matches!(unit, Some("ms") | Some("s")) {
                "#"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

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

#[cfg(test)]
mod log_key_tests {
    use super::log_key;

    #[test]
    fn a_growing_duration_is_the_same_assessment_a_new_count_is_not() {
        let k = |s: &str| log_key(s);
        assert_eq!(
            k("suspect: primary down for 368 ms of the 1000 ms down_after requires"),
            k("suspect: primary down for 771 ms of the 1000 ms down_after requires")
        );
        assert_ne!(
            k("healthy: 0 of 3 witnesses see the primary down; 2 needed"),
            k("healthy: 1 of 3 witnesses see the primary down; 2 needed")
        );
        assert_ne!(
            k("healthy: 0 of 3 witnesses see the primary down; 2 needed"),
            k("suspect: primary down for 368 ms of the 1000 ms down_after requires")
        );
        // Past the second part, nothing counts (evidence detail).
        assert_eq!(
            k("blocked: standby lags: 12 bytes"),
            k("blocked: standby lags: 99 bytes")
        );
    }
}
