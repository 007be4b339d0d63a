//! `FakeWitness`: an in-process test double of a witness's
//! `palisade.v1.Control` service for the CLI tests. It keeps a small
//! cluster model: operations advance one step per `Status` call (so a
//! waiting palisadectl sees every step, deterministically, without
//! sleeps), end as the test scripts them, and an old primary rejoins a
//! few `Status` calls after an operation. Every request is logged so tests
//! can assert what reached the server. Requests that change the cluster
//! are de-duplicated by request id as the real leader does, and a test can
//! make the next one of an RPC be applied but never answered (as when the
//! client times out after sending).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use palisade_api::v1::control_server::{Control, ControlServer};
use palisade_api::v1::{
    change_members_request::Action, AnnotateReply, AnnotateRequest, ChangeMembersRequest,
    DatabaseView, DrillSummary, Event, FailbackRequest, FailoverRequest, FailoverSummary,
    HistoryReply, HistoryRequest, JournalEntry, JournalReply, JournalRequest, Maintenance,
    MaintenanceEvent, MaintenanceReply, MariaDbSemiSync, MariaDbView, Member, MembersReply,
    MembersRequest, NodeStatus, OperationReply, PauseRequest, RecordDrillReply, RecordDrillRequest,
    RejoinSummary, RequestRecord, ResumeRequest, Role, SearchView, StatusReply, StatusRequest,
    StepCheck, StepTiming, SwitchoverRequest, WatchRequest,
};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

/// The fake leader's wall clock at epoch 0, Unix ms.
pub const T0: i64 = 1_700_000_000_000;

/// The site `failback` returns to.
pub const HOME: &str = "site-1";

/// How the next operation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// All five steps, outcome `completed`, roles swapped.
    Completes,
    /// After `fenced`, `aborted: ...`; the old primary resumes.
    Aborts,
    /// All five steps, a check failed, roles swapped.
    FailedChecks,
    /// All five steps, then never an outcome.
    Never,
}

/// The reply a request got, kept by request id for its retries.
#[derive(Debug, Clone)]
enum Reply {
    Annotate(AnnotateReply),
    Operation(OperationReply),
    Maintenance(MaintenanceReply),
}

/// An operation under way: the summary so far and the steps still to come.
#[derive(Debug, Clone)]
struct Running {
    summary: FailoverSummary,
    pending: VecDeque<StepTiming>,
    ending: Ending,
}

/// The fake cluster.
#[derive(Debug)]
pub struct Cluster {
    pub leader_id: Option<u64>,
    /// `Some` makes `annotate` fail with this status.
    pub annotate_error: Option<(Code, &'static str)>,
    /// `Some` makes `record_drill` fail with this status.
    pub record_error: Option<(Code, &'static str)>,
    pub epoch: u64,
    pub primary: String,
    pub standby: String,
    /// The standby is seen streaming; otherwise it is seen down.
    pub standby_streaming: bool,
    pub needs_rejoin: bool,
    /// `Status` calls left until the old primary has rejoined.
    pub rejoin_in: u32,
    /// Site -> monitorsEnabled of its app.
    pub monitors: BTreeMap<String, bool>,
    pub maintenance: Option<Maintenance>,
    running: Option<Running>,
    pub last_failover: Option<FailoverSummary>,
    pub operations: Vec<FailoverSummary>,
    pub rejoins: Vec<RejoinSummary>,
    pub drills: Vec<DrillSummary>,
    /// How the next operation ends.
    pub next_ending: Ending,
    /// The target lags: a failover without force and confirmation is
    /// refused.
    pub target_lags: bool,
    /// `watch` sends these, then ends the stream, or keeps it open.
    pub events: Vec<Event>,
    pub keep_watch_open: bool,
    /// The next this many `Status` calls fail with `Unavailable`, as while
    /// the answering witness knows no leader.
    pub status_errors: u32,
    /// Every request that changes state, in order, as `rpc key=value ...`
    /// (a duplicate request id is not applied, so not logged here).
    pub log: Vec<String>,
    /// The request id of each request in `log`, in order.
    pub request_ids: Vec<String>,
    /// Request ids that came again and were answered from the record.
    pub duplicates: Vec<String>,
    /// The next request of this RPC (`pause`, `annotate`, `switchover`,
    /// ...) is applied, but its reply never comes.
    pub hang_after_applying: Option<&'static str>,
    /// `Status`'s `quorum`: `ok`, `lost`, `unknown`.
    pub quorum: &'static str,
    /// What each request id got, and its record for `history`.
    seen: BTreeMap<String, (Reply, RequestRecord)>,
    pub maintenance_log: Vec<MaintenanceEvent>,
    pub notes: Vec<JournalEntry>,
    /// The witnesses, by id (`Members`); `ChangeMembers` changes them by
    /// the server's rules, simplified.
    pub members: Vec<Member>,
    /// The log index of the membership.
    pub members_log_index: u64,
    /// `Some` makes `change_members` fail with this status (nothing is
    /// logged or changed).
    pub change_members_error: Option<(Code, &'static str)>,
    /// How long `change_members` takes to answer (the real leader waits
    /// for a new witness to catch up).
    pub change_members_delay: std::time::Duration,
    /// The database is a MariaDB master-master pair: every database view
    /// carries a `mariadb` view (see [`Cluster::mariadb_view`]).
    pub mariadb: bool,
}

impl Cluster {
    /// The canned cluster the status tests were written against: standby
    /// site-2 down and due to rejoin, both apps on, one aborted failover.
    pub fn canned(leader_id: Option<u64>) -> Self {
        Self {
            leader_id,
            annotate_error: None,
            record_error: None,
            epoch: 2,
            primary: "site-1".to_owned(),
            standby: "site-2".to_owned(),
            standby_streaming: false,
            needs_rejoin: true,
            rejoin_in: 0,
            monitors: [("site-1".to_owned(), true), ("site-2".to_owned(), true)].into(),
            maintenance: None,
            running: None,
            last_failover: Some(FailoverSummary {
                epoch: 2,
                kind: "failover".to_owned(),
                from_site: "site-2".to_owned(),
                to_site: "site-1".to_owned(),
                trigger: "operator:tester".to_owned(),
                reason: "DR drill".to_owned(),
                steps: vec![StepTiming {
                    step: "fenced".to_owned(),
                    started_at_ms: 1_700_000_000_000,
                    done_at_ms: 1_700_000_000_250,
                    detail: "lease expired".to_owned(),
                    checks: vec![],
                }],
                outcome: "aborted: standby too far behind".to_owned(),
                started_at_ms: 1_700_000_000_000,
                finished_at_ms: Some(1_700_000_000_900),
                evidence_json: r#"{"down_for_ms": 0, "replication": "sync"}"#.to_owned(),
                request_id: String::new(),
            }),
            operations: vec![],
            rejoins: vec![],
            drills: vec![],
            next_ending: Ending::Completes,
            target_lags: false,
            events: vec![],
            keep_watch_open: false,
            status_errors: 0,
            log: vec![],
            request_ids: vec![],
            duplicates: vec![],
            hang_after_applying: None,
            quorum: "ok",
            seen: BTreeMap::new(),
            maintenance_log: vec![],
            notes: vec![],
            members: (1..=3)
                .map(|id| Member {
                    id,
                    site: format!("site-{id}"),
                    raft_addr: format!("127.0.0.1:730{id}"),
                    control_addr: format!("127.0.0.1:740{id}"),
                    voter: true,
                })
                .collect(),
            members_log_index: 7,
            change_members_error: None,
            change_members_delay: std::time::Duration::ZERO,
            mariadb: false,
        }
    }

    /// What a witness sees of the MariaDB master at `site`: the primary
    /// writable, replicating from the standby, semi-sync in force; the
    /// standby read-only, replicating from the primary, acking; a
    /// standby seen down, nothing. Site `site-N` has `server_id` N and
    /// is reached as `site-N-db:3306`.
    fn mariadb_view(&self, site: &str, reachable: bool) -> MariaDbView {
        if !reachable {
            return MariaDbView::default();
        }
        let writer = site == self.primary;
        let other = if writer { &self.standby } else { &self.primary };
        let id = |site: &str| site.trim_start_matches("site-").parse::<u32>().ok();
        MariaDbView {
            read_only: Some(!writer),
            server_id: id(site),
            auto_increment_increment: Some(2),
            auto_increment_offset: id(site),
            io_running: "Yes".to_owned(),
            sql_running: Some(true),
            seconds_behind_master: Some(0),
            replicates_from: format!("{other}-db:3306"),
            replicates_from_server_id: id(other),
            read_position: "mysql-bin.000003:5678".to_owned(),
            executed_position: "mysql-bin.000003:5678".to_owned(),
            binlog_position: "mysql-bin.000003:5678".to_owned(),
            gtid_binlog_pos: "0-1-42".to_owned(),
            gtid_slave_pos: "0-1-42".to_owned(),
            semi_sync: Some(MariaDbSemiSync {
                enabled: writer,
                active: writer,
                clients: u32::from(writer),
                timeout_ms: 10_000,
                replica_acks: !writer,
            }),
            ..Default::default()
        }
    }

    fn members_reply(&self, detail: String) -> MembersReply {
        MembersReply {
            members: self.members.clone(),
            node_id: 1,
            leader_id: self.leader_id,
            log_index: self.members_log_index,
            detail,
        }
    }

    /// A membership change as the leader would decide and do it (without
    /// the learner step): the detail, or the refusal.
    fn change_members(&mut self, r: &ChangeMembersRequest) -> Result<String, Status> {
        let voter = |c: &Self, id: u64| c.members.iter().position(|m| m.id == id && m.voter);
        let new = |site_default: Option<&str>| -> Result<Member, Status> {
            let mut m = r
                .new_member
                .clone()
                .ok_or_else(|| Status::invalid_argument("new_member: missing"))?;
            if m.site.is_empty() {
                m.site = site_default.unwrap_or_default().to_owned();
            }
            m.voter = true;
            Ok(m)
        };
        match Action::try_from(r.action) {
            Ok(Action::Add) => {
                let m = new(None)?;
                if self.members.contains(&m) {
                    return Ok(format!(
                        "nothing to do: witness {} is already a voter at site {}",
                        m.id, m.site
                    ));
                }
                if voter(self, m.id).is_some() {
                    return Err(Status::invalid_argument(format!(
                        "new_member.id: {} is already a voter; a new witness gets a new id",
                        m.id
                    )));
                }
                if let Some(o) = self.members.iter().find(|o| o.site == m.site) {
                    return Err(Status::invalid_argument(format!(
                        "new_member.site: site {} already has witness {}; one witness per site \
                         (to move it, use replace)",
                        m.site, o.id
                    )));
                }
                let detail = format!(
                    "added witness {} at site {} ({} voters)",
                    m.id,
                    m.site,
                    self.members.len() + 1
                );
                self.members.push(m);
                Ok(detail)
            }
            Ok(Action::Remove) => {
                let Some(at) = voter(self, r.old_id) else {
                    return Ok(format!(
                        "nothing to do: witness {} is not a member",
                        r.old_id
                    ));
                };
                if self.members.len() <= 3 {
                    return Err(Status::failed_precondition(format!(
                        "the cluster has {} voters and keeps at least 3; to move witness {}, use \
                         replace",
                        self.members.len(),
                        r.old_id
                    )));
                }
                let gone = self.members.remove(at);
                Ok(format!(
                    "removed witness {} (site {}); {} voters",
                    gone.id,
                    gone.site,
                    self.members.len()
                ))
            }
            Ok(Action::Replace) => {
                let Some(at) = voter(self, r.old_id) else {
                    let m = new(None)?;
                    if voter(self, m.id).is_some() {
                        return Ok(format!(
                            "nothing to do: witness {} was already replaced by {}",
                            r.old_id, m.id
                        ));
                    }
                    return Err(Status::invalid_argument(format!(
                        "old_id: witness {} is not a voter",
                        r.old_id
                    )));
                };
                let old_site = self.members[at].site.clone();
                let m = new(Some(&old_site))?;
                if m.site != old_site {
                    return Err(Status::invalid_argument(format!(
                        "new_member.site: {:?} is not site {old_site} of witness {}: a \
                         replacement stands for the same site",
                        m.site, r.old_id
                    )));
                }
                let detail = format!(
                    "replaced witness {} by witness {} at site {} (raft {}, control {})",
                    r.old_id, m.id, m.site, m.raft_addr, m.control_addr
                );
                self.members[at] = m;
                self.members.sort_by_key(|m| m.id);
                Ok(detail)
            }
            _ => Err(Status::invalid_argument(format!(
                "action: {} is not add (1), remove (2) or replace (3)",
                r.action
            ))),
        }
    }

    /// The reply to a retry of request `id`, if it was applied before.
    fn seen(&mut self, id: &str) -> Option<Reply> {
        let (reply, _) = self.seen.get(id)?.clone();
        self.duplicates.push(id.to_owned());
        Some(match reply {
            Reply::Annotate(r) => Reply::Annotate(AnnotateReply {
                duplicate: true,
                ..r
            }),
            Reply::Operation(r) => Reply::Operation(OperationReply {
                duplicate: true,
                ..r
            }),
            Reply::Maintenance(r) => Reply::Maintenance(MaintenanceReply {
                duplicate: true,
                maintenance: self.maintenance.clone(),
                ..r
            }),
        })
    }

    /// Records that request `id` (of `kind`, logged as `line`) was
    /// applied with `reply`; returns whether its reply is to hang.
    fn applied(&mut self, id: &str, kind: &str, line: String, reply: Reply, epoch: u64) -> bool {
        self.log.push(line.clone());
        self.request_ids.push(id.to_owned());
        if !id.is_empty() {
            let log_index = 20 + self.log.len() as u64;
            self.seen.insert(
                id.to_owned(),
                (
                    reply,
                    RequestRecord {
                        request_id: id.to_owned(),
                        kind: kind.to_owned(),
                        who: "tester".to_owned(),
                        issued_at_ms: T0,
                        at_ms: T0 + 1000,
                        log_index,
                        outcome: "applied".to_owned(),
                        epoch,
                        summary: line,
                    },
                ),
            );
        }
        let rpc = if kind == "annotate" || kind == "pause" || kind == "resume" {
            kind
        } else {
            "operation"
        };
        if self.hang_after_applying == Some(rpc) || self.hang_after_applying == Some(kind) {
            self.hang_after_applying = None;
            return true;
        }
        false
    }

    /// A healthy pair: site-1 primary, site-2 streaming standby, only
    /// site-1's app on, nothing in the history.
    pub fn healthy() -> Self {
        Self {
            standby_streaming: true,
            needs_rejoin: false,
            monitors: [("site-1".to_owned(), true), ("site-2".to_owned(), false)].into(),
            last_failover: None,
            ..Self::canned(Some(1))
        }
    }

    /// One `Status` call's worth of progress: the next step of a running
    /// operation, its end, or the countdown to the old primary's rejoin.
    fn tick(&mut self) {
        if let Some(run) = &mut self.running {
            if let Some(step) = run.pending.pop_front() {
                run.summary.steps.push(step);
                return;
            }
            if run.ending == Ending::Never {
                return;
            }
            let ending = run.ending;
            let mut f = self.running.take().expect("running").summary;
            let end = f.steps.last().map_or(f.started_at_ms, |s| s.done_at_ms) + 10;
            f.finished_at_ms = Some(end);
            f.outcome = match ending {
                Ending::Aborts => format!(
                    "aborted: standby {} did not catch up within 10000 ms; {} resumes as primary",
                    f.to_site, f.from_site
                ),
                Ending::FailedChecks => {
                    "completed_with_failed_checks: webhook: HTTP 500".to_owned()
                }
                Ending::Completes | Ending::Never => "completed".to_owned(),
            };
            if ending != Ending::Aborts {
                std::mem::swap(&mut self.primary, &mut self.standby);
                self.monitors.insert(self.primary.clone(), true);
                self.monitors.insert(self.standby.clone(), false);
                self.standby_streaming = false;
                self.needs_rejoin = true;
                self.rejoin_in = 2;
            }
            self.last_failover = Some(f.clone());
            self.operations.push(f);
            return;
        }
        if self.needs_rejoin && self.rejoin_in > 0 {
            self.rejoin_in -= 1;
            if self.rejoin_in == 0 {
                self.needs_rejoin = false;
                self.standby_streaming = true;
                self.rejoins.push(RejoinSummary {
                    site: self.standby.clone(),
                    epoch: self.epoch,
                    at_ms: T0 + self.epoch as i64 * 100_000 + 5000,
                    primary_site: self.primary.clone(),
                });
            }
        }
    }

    fn status(&self) -> StatusReply {
        let mut sites = [self.primary.clone(), self.standby.clone()];
        sites.sort();
        let databases: Vec<DatabaseView> = sites
            .iter()
            .map(|site| {
                if *site == self.primary {
                    DatabaseView {
                        site: site.clone(),
                        reachable: true,
                        in_recovery: Some(false),
                        lsn: "0/3000148".to_owned(),
                        latency_ms: 2,
                        age_ms: 150,
                        ..Default::default()
                    }
                } else if self.standby_streaming {
                    DatabaseView {
                        site: site.clone(),
                        reachable: true,
                        in_recovery: Some(true),
                        lsn: "0/3000148".to_owned(),
                        replay_lag_seconds: Some(0.0),
                        streaming: true,
                        latency_ms: 2,
                        age_ms: 150,
                        ..Default::default()
                    }
                } else {
                    DatabaseView {
                        site: site.clone(),
                        reachable: false,
                        error: "refused: connection refused".to_owned(),
                        latency_ms: 1,
                        age_ms: 150,
                        ..Default::default()
                    }
                }
            })
            .map(|d| DatabaseView {
                mariadb: self
                    .mariadb
                    .then(|| self.mariadb_view(&d.site, d.reachable)),
                ..d
            })
            .collect();
        let node = |id: u64, role: Role| {
            let site = format!("site-{id}");
            NodeStatus {
                id,
                role: role as i32,
                term: 5,
                leader_id: self.leader_id,
                last_log_index: Some(12),
                last_applied_index: Some(12),
                raft_addr: format!("127.0.0.1:730{id}"),
                control_addr: format!("127.0.0.1:740{id}"),
                databases: databases.clone(),
                search: vec![SearchView {
                    site: "site-1".to_owned(),
                    reachable: true,
                    status: "green".to_owned(),
                    number_of_nodes: Some(3),
                    latency_ms: 5,
                    age_ms: 150,
                    ..Default::default()
                }],
                monitors_enabled: self.monitors.get(&site).copied(),
                site,
                ..Default::default()
            }
        };
        let role = if self.leader_id.is_some() {
            Role::Leader
        } else {
            Role::Candidate
        };
        StatusReply {
            node_id: 1,
            leader_id: self.leader_id,
            term: 5,
            cluster_name: "fake".to_owned(),
            nodes: vec![node(1, role), node(2, Role::Follower)],
            epoch: self.epoch,
            primary_site: self.primary.clone(),
            standby_site: self.standby.clone(),
            replication_mode: "sync".to_owned(),
            // Only a leader has a detector to report.
            assessment: match self.leader_id {
                Some(_) => "suspect: primary down for 2000 ms of the 10000 ms quorum requires",
                None => "",
            }
            .to_owned(),
            standby_needs_rejoin: self.needs_rejoin,
            failover_in_progress: self.running.as_ref().map(|r| r.summary.clone()),
            last_failover: self.last_failover.clone(),
            maintenance: self.maintenance.clone(),
            quorum: match self.leader_id {
                Some(_) => self.quorum.to_owned(),
                None => "unknown".to_owned(),
            },
            quorum_timeout_ms: 1000,
            leader_millis_since_quorum_ack: (self.quorum == "lost").then_some(61_000),
            quorum_acked: if self.quorum == "lost" { 1 } else { 2 },
            quorum_needed: 2,
            ..Default::default()
        }
    }

    /// Commits an operation to `to` the way the leader would, or refuses it.
    fn begin(
        &mut self,
        kind: &str,
        to: &str,
        who: &str,
        data_loss_bound: &str,
    ) -> Result<OperationReply, Status> {
        if who.is_empty() {
            return Err(Status::invalid_argument("who must not be empty"));
        }
        if self.leader_id.is_none() {
            return Err(Status::unavailable("no leader"));
        }
        if !["site-1", "site-2"].contains(&to) {
            return Err(Status::invalid_argument(format!("unknown site {to:?}")));
        }
        if self.maintenance.is_some() {
            return Err(Status::failed_precondition(
                "the cluster is paused; resume first",
            ));
        }
        if let Some(r) = &self.running {
            return Err(Status::failed_precondition(format!(
                "{} epoch {} is in progress",
                r.summary.kind, r.summary.epoch
            )));
        }
        if to == self.primary {
            return Err(Status::failed_precondition(format!(
                "{to} is already the primary"
            )));
        }
        self.epoch += 1;
        let start = T0 + self.epoch as i64 * 100_000;
        let from = self.primary.clone();
        let mut at = start;
        let mut step = |name: &str, took: i64, detail: String| {
            let s = StepTiming {
                step: name.to_owned(),
                started_at_ms: at,
                done_at_ms: at + took,
                detail,
                checks: vec![],
            };
            at += took;
            s
        };
        let check = |name: String, ok: bool, detail: &str| StepCheck {
            name,
            ok,
            detail: detail.to_owned(),
        };
        let checks = if self.next_ending == Ending::FailedChecks {
            vec![
                check(format!("database at {to} writable"), true, ""),
                check("webhook".to_owned(), false, "HTTP 500"),
            ]
        } else {
            vec![
                check(format!("database at {to} writable"), true, ""),
                check("exactly one monitorsEnabled=true".to_owned(), true, to),
            ]
        };
        let failed = checks.iter().filter(|c| !c.ok).count();
        let summary = match failed {
            0 => format!("{} checks passed", checks.len()),
            n => format!("{} checks, {n} failed", checks.len()),
        };
        let mut pending: VecDeque<StepTiming> = [
            step("fenced", 120, "stopped (fast shutdown)".to_owned()),
            step("promoted", 800, "promoted at 0/3000148".to_owned()),
            step(
                "app-flipped",
                60,
                format!("{from}: monitorsEnabled true -> false; {to}: false -> true"),
            ),
            step("repointed", 90, format!("haproxy -> {to}")),
            StepTiming {
                checks,
                ..step("verified", 300, summary)
            },
        ]
        .into();
        if self.next_ending == Ending::Aborts {
            pending.truncate(1);
        }
        self.running = Some(Running {
            summary: FailoverSummary {
                epoch: self.epoch,
                kind: kind.to_owned(),
                from_site: from.clone(),
                to_site: to.to_owned(),
                trigger: format!("operator:{who}"),
                reason: format!("{kind} requested by {who}"),
                started_at_ms: start,
                ..Default::default()
            },
            pending,
            ending: self.next_ending,
        });
        Ok(OperationReply {
            epoch: self.epoch,
            kind: kind.to_owned(),
            from_site: from,
            to_site: to.to_owned(),
            leader_id: 1,
            data_loss_bound: data_loss_bound.to_owned(),
            ..Default::default()
        })
    }
}

/// A witness serving the shared [`Cluster`].
#[derive(Clone)]
pub struct FakeWitness {
    pub cluster: Arc<Mutex<Cluster>>,
}

impl FakeWitness {
    pub fn new(cluster: Cluster) -> Self {
        Self {
            cluster: Arc::new(Mutex::new(cluster)),
        }
    }

    /// The cluster, for a test to set up or inspect.
    pub fn state(&self) -> MutexGuard<'_, Cluster> {
        self.cluster.lock().expect("fake cluster lock")
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send + 'static>>;

impl FakeWitness {
    /// An operation request: answered from the record when its id was
    /// applied before, else `begin` decides; hangs after applying when the
    /// test asked for it.
    async fn operation(
        &self,
        request_id: &str,
        kind: &str,
        line: String,
        begin: impl FnOnce(&mut Cluster) -> Result<OperationReply, Status>,
    ) -> Result<Response<OperationReply>, Status> {
        let (reply, hang) = {
            let mut c = self.state();
            if let Some(Reply::Operation(seen)) = c.seen(request_id) {
                return Ok(Response::new(seen));
            }
            // Logged whether or not it is refused, as before request ids.
            let reply = match begin(&mut c) {
                Ok(r) => OperationReply {
                    request_id: request_id.to_owned(),
                    ..r
                },
                Err(s) => {
                    c.log.push(line);
                    c.request_ids.push(request_id.to_owned());
                    return Err(s);
                }
            };
            let epoch = reply.epoch;
            let hang = c.applied(
                request_id,
                kind,
                line,
                Reply::Operation(reply.clone()),
                epoch,
            );
            (reply, hang)
        };
        if hang {
            std::future::pending::<()>().await;
        }
        Ok(Response::new(reply))
    }
}

#[tonic::async_trait]
impl Control for FakeWitness {
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        let mut c = self.state();
        if c.status_errors > 0 {
            c.status_errors -= 1;
            return Err(Status::unavailable(
                "no leader known (election in progress)",
            ));
        }
        c.tick();
        Ok(Response::new(c.status()))
    }

    async fn annotate(
        &self,
        request: Request<AnnotateRequest>,
    ) -> Result<Response<AnnotateReply>, Status> {
        let r = request.into_inner();
        let (reply, hang) = {
            let mut c = self.state();
            if let Some((code, message)) = c.annotate_error {
                return Err(Status::new(code, message));
            }
            if let Some(Reply::Annotate(seen)) = c.seen(&r.request_id) {
                return Ok(Response::new(seen));
            }
            let reply = AnnotateReply {
                log_index: 13,
                leader_id: 1,
                request_id: r.request_id.clone(),
                duplicate: false,
            };
            c.notes.push(JournalEntry {
                log_index: 13,
                at_unix_ms: T0 + 1000,
                author: r.author.clone(),
                text: r.text.clone(),
                request_id: r.request_id.clone(),
            });
            let line = format!("annotate author={} text={}", r.author, r.text);
            let hang = c.applied(
                &r.request_id,
                "annotate",
                line,
                Reply::Annotate(reply.clone()),
                0,
            );
            (reply, hang)
        };
        if hang {
            std::future::pending::<()>().await;
        }
        Ok(Response::new(reply))
    }

    async fn journal(&self, _: Request<JournalRequest>) -> Result<Response<JournalReply>, Status> {
        Ok(Response::new(JournalReply {
            entries: vec![JournalEntry {
                log_index: 13,
                at_unix_ms: 1_700_000_000_123,
                author: "tester".to_owned(),
                text: "DR drill".to_owned(),
                request_id: String::new(),
            }],
        }))
    }

    async fn switchover(
        &self,
        request: Request<SwitchoverRequest>,
    ) -> Result<Response<OperationReply>, Status> {
        let r = request.into_inner();
        let line = format!("switchover to={} who={}", r.to_site, r.who);
        self.operation(&r.request_id, "switchover", line, |c| {
            c.begin("switchover", &r.to_site, &r.who, "")
        })
        .await
    }

    async fn failover(
        &self,
        request: Request<FailoverRequest>,
    ) -> Result<Response<OperationReply>, Status> {
        let r = request.into_inner();
        let line = format!(
            "failover to={} who={} force={} accept_data_loss={}",
            r.to_site, r.who, r.force, r.accept_data_loss
        );
        self.operation(&r.request_id, "failover", line, |c| {
            if r.force != r.accept_data_loss {
                return Err(Status::failed_precondition(
                    "force needs accept_data_loss and the other way round",
                ));
            }
            let bound = if c.target_lags {
                if !r.force {
                    return Err(Status::failed_precondition(format!(
                        "{} lags by 3 s of commits; --force --yes-i-accept-data-loss to promote it anyway",
                        r.to_site
                    )));
                }
                "up to 3 s of commits (1.2 MB of WAL) since 0/3000148"
            } else {
                ""
            };
            c.begin("failover", &r.to_site, &r.who, bound)
        })
        .await
    }

    async fn failback(
        &self,
        request: Request<FailbackRequest>,
    ) -> Result<Response<OperationReply>, Status> {
        let r = request.into_inner();
        let line = format!("failback who={}", r.who);
        self.operation(&r.request_id, "failback", line, |c| {
            if c.needs_rejoin {
                return Err(Status::failed_precondition(format!(
                    "{} has not rejoined yet",
                    c.standby
                )));
            }
            c.begin("failback", HOME, &r.who, "")
        })
        .await
    }

    async fn pause(
        &self,
        request: Request<PauseRequest>,
    ) -> Result<Response<MaintenanceReply>, Status> {
        let r = request.into_inner();
        let (reply, hang) = {
            let mut c = self.state();
            if let Some(Reply::Maintenance(seen)) = c.seen(&r.request_id) {
                return Ok(Response::new(seen));
            }
            if r.who.is_empty() {
                return Err(Status::invalid_argument("who must not be empty"));
            }
            if let Some(m) = c.maintenance.as_ref().filter(|_| !r.force) {
                return Err(Status::failed_precondition(format!(
                    "the cluster is already paused by {} since {} (Unix ms) until resumed: {}; \
                     pause --force replaces that pause",
                    m.by, m.since_ms, m.reason
                )));
            }
            let since = T0 + 3_600_000;
            let m = Maintenance {
                by: r.who.clone(),
                reason: r.reason.clone(),
                since_ms: since,
                until_ms: r
                    .for_ms
                    .filter(|ms| *ms > 0)
                    .map(|ms| since + i64::try_from(ms).expect("fits")),
            };
            c.maintenance = Some(m.clone());
            c.maintenance_log.push(MaintenanceEvent {
                log_index: 30,
                kind: "paused".to_owned(),
                by: r.who.clone(),
                at_ms: since,
                until_ms: m.until_ms,
                reason: r.reason.clone(),
                request_id: r.request_id.clone(),
            });
            let reply = MaintenanceReply {
                maintenance: Some(m),
                leader_id: 1,
                request_id: r.request_id.clone(),
                duplicate: false,
            };
            let line = format!(
                "pause who={} reason={} for_ms={:?}{}",
                r.who,
                r.reason,
                r.for_ms,
                if r.force { " force" } else { "" }
            );
            let hang = c.applied(
                &r.request_id,
                "pause",
                line,
                Reply::Maintenance(reply.clone()),
                0,
            );
            (reply, hang)
        };
        if hang {
            std::future::pending::<()>().await;
        }
        Ok(Response::new(reply))
    }

    async fn resume(
        &self,
        request: Request<ResumeRequest>,
    ) -> Result<Response<MaintenanceReply>, Status> {
        let r = request.into_inner();
        let (reply, hang) = {
            let mut c = self.state();
            if let Some(Reply::Maintenance(seen)) = c.seen(&r.request_id) {
                return Ok(Response::new(seen));
            }
            c.maintenance = None;
            c.maintenance_log.push(MaintenanceEvent {
                log_index: 31,
                kind: "resumed".to_owned(),
                by: r.who.clone(),
                at_ms: T0 + 3_700_000,
                until_ms: None,
                reason: String::new(),
                request_id: r.request_id.clone(),
            });
            let reply = MaintenanceReply {
                maintenance: None,
                leader_id: 1,
                request_id: r.request_id.clone(),
                duplicate: false,
            };
            let line = format!("resume who={}", r.who);
            let hang = c.applied(
                &r.request_id,
                "resume",
                line,
                Reply::Maintenance(reply.clone()),
                0,
            );
            (reply, hang)
        };
        if hang {
            std::future::pending::<()>().await;
        }
        Ok(Response::new(reply))
    }

    async fn history(&self, _: Request<HistoryRequest>) -> Result<Response<HistoryReply>, Status> {
        let c = self.state();
        Ok(Response::new(HistoryReply {
            operations: c.operations.clone(),
            drills: c.drills.clone(),
            in_progress: c.running.as_ref().map(|r| r.summary.clone()),
            rejoins: c.rejoins.clone(),
            maintenance: c.maintenance_log.clone(),
            notes: c.notes.clone(),
            requests: c.seen.values().map(|(_, rec)| rec.clone()).collect(),
            request_retention_ms: 24 * 3_600_000,
            applied_index: Some(40),
        }))
    }

    type WatchStream = EventStream;

    async fn watch(&self, _: Request<WatchRequest>) -> Result<Response<EventStream>, Status> {
        let c = self.state();
        let events = tokio_stream::iter(c.events.clone().into_iter().map(Ok));
        let stream: EventStream = if c.keep_watch_open {
            Box::pin(events.chain(tokio_stream::pending()))
        } else {
            Box::pin(events)
        };
        Ok(Response::new(stream))
    }

    async fn members(&self, _: Request<MembersRequest>) -> Result<Response<MembersReply>, Status> {
        Ok(Response::new(self.state().members_reply(String::new())))
    }

    async fn change_members(
        &self,
        request: Request<ChangeMembersRequest>,
    ) -> Result<Response<MembersReply>, Status> {
        let r = request.into_inner();
        let delay = self.state().change_members_delay;
        tokio::time::sleep(delay).await;
        let (reply, hang) = {
            let mut c = self.state();
            if let Some((code, message)) = c.change_members_error {
                return Err(Status::new(code, message));
            }
            let new = r.new_member.clone().unwrap_or_default();
            c.log.push(format!(
                "change_members action={} old_id={} new_id={} site={} raft={} control={} author={}",
                r.action, r.old_id, new.id, new.site, new.raft_addr, new.control_addr, r.author
            ));
            let detail = c.change_members(&r)?;
            if !detail.starts_with("nothing to do") {
                c.members_log_index += 2;
            }
            let hang = c.hang_after_applying == Some("change_members");
            if hang {
                c.hang_after_applying = None;
            }
            (c.members_reply(detail), hang)
        };
        if hang {
            std::future::pending::<()>().await;
        }
        Ok(Response::new(reply))
    }

    async fn record_drill(
        &self,
        request: Request<RecordDrillRequest>,
    ) -> Result<Response<RecordDrillReply>, Status> {
        let mut c = self.state();
        if let Some((code, message)) = c.record_error {
            return Err(Status::new(code, message));
        }
        let d = request
            .into_inner()
            .drill
            .ok_or_else(|| Status::invalid_argument("drill is required"))?;
        if d.who.is_empty() || d.phases.len() > 64 {
            return Err(Status::invalid_argument("bad drill"));
        }
        c.log.push(format!("record_drill name={}", d.name));
        c.drills.push(d);
        Ok(Response::new(RecordDrillReply {
            leader_id: 1,
            ..Default::default()
        }))
    }
}

/// Serves `witness` on an ephemeral port for the rest of the test.
pub async fn serve(witness: &FakeWitness) -> String {
    let incoming =
        TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind ephemeral port");
    let addr = incoming.local_addr().expect("local addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ControlServer::new(witness.clone()))
            .serve_with_incoming(incoming),
    );
    format!("http://{addr}")
}

/// A port that accepts connections and never says anything: palisadectl
/// must give up on it after `--timeout`, not hang.
pub async fn silent_port() -> String {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind ephemeral port");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            // Kept open, never read, never written.
            held.push(socket);
        }
    });
    format!("http://{addr}")
}

/// A TCP proxy in front of `upstream` that can be frozen: from then on it
/// forwards nothing either way but keeps every connection open, as a
/// witness stopped with SIGSTOP does (its kernel still holds the socket).
pub struct FreezableProxy {
    /// `http://127.0.0.1:PORT` of the proxy.
    pub endpoint: String,
    frozen: Arc<std::sync::atomic::AtomicBool>,
}

impl FreezableProxy {
    /// Starts the proxy for `upstream` (`http://HOST:PORT`).
    pub async fn start(upstream: &str) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind ephemeral port");
        let endpoint = format!("http://{}", listener.local_addr().expect("local addr"));
        let frozen = Arc::new(AtomicBool::new(false));
        let f = frozen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&upstream)
                    .await
                    .expect("connect upstream");
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                for (mut from, mut to) in [
                    (
                        Box::new(cr) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                        Box::new(sw) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                    ),
                    (Box::new(sr), Box::new(cw)),
                ] {
                    let f = f.clone();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match from.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if f.load(Ordering::SeqCst) {
                                // Frozen: hold both ends, forward nothing.
                                std::future::pending::<()>().await;
                            }
                            if to.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Self { endpoint, frozen }
    }

    /// From now on nothing is forwarded.
    pub fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
