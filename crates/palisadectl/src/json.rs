//! `--output json`: palisadectl's stable output schema.
//!
//! These types are kept apart from the prost types on purpose, so that a
//! change to the `.proto` cannot silently change what scripts parse. Fields
//! are only ever added; `docs/palisadectl.md` documents every one.

use std::collections::BTreeMap;

use palisade_api::v1::{
    AnnotateReply, DatabaseView, DrillPhase, DrillSummary, Event, FailoverSummary, HistoryReply,
    JournalEntry, JournalReply, Maintenance, MaintenanceEvent, MaintenanceReply, MariaDbSemiSync,
    MariaDbView, NodeStatus, OperationReply, PeerProgress, RejoinSummary, RequestRecord, Role,
    SearchView, StatusReply, StepCheck, StepTiming,
};
use serde::Serialize;

/// `status --output json`: the cluster as the answering witness sees it.
#[derive(Debug, Serialize)]
pub struct StatusJson {
    /// The witness that answered.
    pub node_id: u64,
    /// The leader the answering witness knows; `null` when it knows none.
    pub leader_id: Option<u64>,
    /// The answering witness's current Raft term.
    pub term: u64,
    /// The configured cluster name.
    pub cluster_name: String,
    /// Every configured witness, in id order.
    pub nodes: Vec<NodeJson>,
    /// The leader's view of each follower; empty when the answer did not
    /// include it (no leader, or the leader could not be asked).
    pub replication: Vec<PeerJson>,
    /// The fencing token, raised by every failover.
    pub epoch: u64,
    /// The site the cluster records as database primary; `null` without a
    /// database.
    pub primary_site: Option<String>,
    /// The site the cluster records as database standby; `null` without one.
    pub standby_site: Option<String>,
    /// `async` or `sync`; `null` without a database.
    pub replication_mode: Option<String>,
    /// True after a failover until the old primary has rejoined as standby.
    pub standby_needs_rejoin: bool,
    /// The leader's failure detector in words (`healthy: …`, `suspect: …`,
    /// `blocked: …`, `failing over: …`); `null` when no leader answered.
    pub assessment: Option<String>,
    /// The failover under way; `null` when none is.
    pub failover_in_progress: Option<FailoverJson>,
    /// The most recent finished failover; `null` when there has been none.
    pub last_failover: Option<FailoverJson>,
    /// Site -> `monitorsEnabled` of its app, from the witnesses that
    /// reported it (see [`monitors_by_site`]); empty when none did.
    pub monitors_enabled: BTreeMap<String, bool>,
    /// Maintenance mode (automatic failover paused); `null` when not paused.
    pub maintenance: Option<MaintenanceJson>,
    /// The leader's hold on a quorum: `ok`, `lost` (it has not heard from
    /// a majority within `quorum_timeout_ms`: exit 8) or `unknown` (no
    /// leader, or its report could not be had); `null` from older servers.
    pub quorum: Option<String>,
    /// The bound of `quorum`: the election timeout, ms; `null` from older
    /// servers.
    pub quorum_timeout_ms: Option<u64>,
    /// Milliseconds since a majority last answered the leader; `null` when
    /// never or unknown.
    pub leader_millis_since_quorum_ack: Option<u64>,
    /// Witnesses (the leader included) that answered it within the bound;
    /// `null` when unknown.
    pub quorum_acked: Option<u32>,
    /// How many witnesses are a majority; `null` from older servers.
    pub quorum_needed: Option<u32>,
    /// How the answering witness's ports are secured, in words (`mutual
    /// TLS 1.3; certificate expires …`, or `INSECURE: plaintext …`);
    /// `null` from older servers.
    pub transport: Option<String>,
    /// Who the witness authenticated this request as (`operator alice
    /// (role operator)`); `null` on an insecure witness.
    pub caller: Option<String>,
}

/// Maintenance mode in [`StatusJson::maintenance`] and
/// [`MaintenanceReplyJson::maintenance`].
#[derive(Debug, Serialize)]
pub struct MaintenanceJson {
    /// Who paused (their `--who`).
    pub by: String,
    /// Why, as they wrote it; may be empty.
    pub reason: String,
    /// Leader wall clock when it was paused, Unix ms.
    pub since_ms: i64,
    /// When it ends on its own, Unix ms; `null`: until `resume`.
    pub until_ms: Option<i64>,
}

/// A failover, switchover or failback in
/// [`StatusJson::failover_in_progress`], [`StatusJson::last_failover`],
/// [`HistoryJson`] or [`OperationJson::summary`].
#[derive(Debug, Serialize)]
pub struct FailoverJson {
    /// The epoch the failover raised the cluster to.
    pub epoch: u64,
    /// `failover`, `switchover` or `failback`; `null` when the server did
    /// not say (servers before operator operations only failed over).
    pub kind: Option<String>,
    /// The old primary's site.
    pub from_site: String,
    /// The new primary's site.
    pub to_site: String,
    /// `automatic` or `operator:<who>`.
    pub trigger: String,
    /// Why it was decided, in words.
    pub reason: String,
    /// `completed`, `completed_with_failed_checks: …` or `aborted: …`;
    /// `null` while in progress.
    pub outcome: Option<String>,
    /// Leader wall clock when it began, Unix ms.
    pub started_at_ms: i64,
    /// Leader wall clock when it ended, Unix ms; `null` while in progress.
    pub finished_at_ms: Option<i64>,
    /// `finished_at_ms - started_at_ms`; `null` while in progress.
    pub duration_ms: Option<i64>,
    /// The steps done so far, in order.
    pub steps: Vec<StepJson>,
    /// The decision's evidence as the server recorded it (witness votes,
    /// LSNs, loss bound); `null` when the server sent none or not an object.
    pub evidence: Option<serde_json::Map<String, serde_json::Value>>,
    /// The operator request that began it; `null` for automatic failovers
    /// and requests without an id.
    pub request_id: Option<String>,
}

/// One step in [`FailoverJson::steps`].
#[derive(Debug, Serialize)]
pub struct StepJson {
    /// `fenced`, `promoted`, `app-flipped`, `repointed`, `verified`, or a
    /// step newer servers add.
    pub step: String,
    /// Leader wall clock when the step started, Unix ms.
    pub started_at_ms: i64,
    /// Leader wall clock when it was done, Unix ms.
    pub done_at_ms: i64,
    /// `done_at_ms - started_at_ms`.
    pub duration_ms: i64,
    /// How it was done, in words; may be empty. For `verified`, a summary
    /// such as `4 checks, 1 failed`: the checks themselves are in
    /// [`StepJson::checks`].
    pub detail: String,
    /// The checks the step ran, each with its own result, in order: the
    /// `verified` step's post-failover checks; empty for other steps.
    pub checks: Vec<CheckJson>,
}

/// One check in [`StepJson::checks`].
#[derive(Debug, Serialize)]
pub struct CheckJson {
    /// What was checked, e.g. `database at b writable`.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was seen, e.g. `lsn 0/3000148` or `HTTP 503`; may be empty.
    pub detail: String,
}

/// One database in [`NodeJson::databases`]: the witness's own latest probe.
#[derive(Debug, Serialize)]
pub struct DatabaseJson {
    /// The database's site.
    pub site: String,
    /// Whether the probe got through.
    pub reachable: bool,
    /// Why not, as `<class>: <detail>`; `null` when reachable.
    pub error: Option<String>,
    /// `true` for a standby, `false` for a primary; `null` when unknown.
    pub in_recovery: Option<bool>,
    /// Primary: current WAL position; standby: last received (`0/3000148`);
    /// `null` when unknown.
    pub lsn: Option<String>,
    /// Standby: replay lag in seconds; `null` when unknown or not a standby.
    pub replay_lag_seconds: Option<f64>,
    /// Standby: whether its WAL receiver streams.
    pub streaming: bool,
    /// How long the probe took, ms.
    pub latency_ms: u64,
    /// Age of the observation when the witness answered, ms.
    pub age_ms: u64,
    /// A MariaDB master of a master-master pair: the whole probe (the
    /// fields above are its projection: `in_recovery` is `read_only`,
    /// `lsn` a binary log position, `streaming` its IO thread); `null` for
    /// PostgreSQL and from older servers.
    pub mariadb: Option<MariaDbJson>,
}

/// [`DatabaseJson::mariadb`]: one MariaDB master as the witness saw it.
/// Every value it could not read is `null`; so are the replication fields
/// when the master replicates from nowhere.
#[derive(Debug, Serialize)]
pub struct MariaDbJson {
    /// `@@read_only`: it refuses writes (every master but the writer).
    pub read_only: Option<bool>,
    /// `@@server_id`.
    pub server_id: Option<u32>,
    /// `@@auto_increment_increment`.
    pub auto_increment_increment: Option<u32>,
    /// `@@auto_increment_offset`.
    pub auto_increment_offset: Option<u32>,
    /// Its replication from the other master: `Slave_IO_Running` (`Yes`,
    /// `No`, `Connecting`).
    pub io_running: Option<String>,
    /// `Slave_SQL_Running` is `Yes`.
    pub sql_running: Option<bool>,
    /// `Seconds_Behind_Master`; `null` also while the threads do not run.
    pub seconds_behind_master: Option<u64>,
    /// The master it replicates from, `host:port`.
    pub replicates_from: Option<String>,
    /// That master's `server_id`, once the IO thread has connected.
    pub replicates_from_server_id: Option<u32>,
    /// How far the IO thread received, `file:pos` in the other master's
    /// binary log.
    pub read_position: Option<String>,
    /// How far the SQL thread applied, `file:pos` likewise.
    pub executed_position: Option<String>,
    /// `Last_IO_Error`; `null` when none.
    pub last_io_error: Option<String>,
    /// `Last_SQL_Error`; `null` when none.
    pub last_sql_error: Option<String>,
    /// Its own binary log position, `file:pos`.
    pub binlog_position: Option<String>,
    /// `@@gtid_binlog_pos`.
    pub gtid_binlog_pos: Option<String>,
    /// `@@gtid_slave_pos`.
    pub gtid_slave_pos: Option<String>,
    /// Semi-synchronous replication as in force on it; `null` when the
    /// plugin's variables are absent or unread.
    pub semi_sync: Option<SemiSyncJson>,
}

/// [`MariaDbJson::semi_sync`].
#[derive(Debug, Serialize)]
pub struct SemiSyncJson {
    /// `rpl_semi_sync_master_enabled`: its commits wait for an ack.
    pub enabled: bool,
    /// `Rpl_semi_sync_master_status`: waiting is in force right now;
    /// `false` while `enabled` means it fell back to asynchronous.
    pub active: bool,
    /// `Rpl_semi_sync_master_clients`: replicas acking right now.
    pub clients: u32,
    /// `rpl_semi_sync_master_timeout`, ms.
    pub timeout_ms: u64,
    /// `rpl_semi_sync_slave_enabled`: it acks, as a replica.
    pub replica_acks: bool,
}

/// One Elasticsearch in [`NodeJson::search`]: the witness's own latest
/// probe of its `_cluster/health`.
#[derive(Debug, Serialize)]
pub struct SearchJson {
    /// The Elasticsearch's site.
    pub site: String,
    /// Whether the probe got through.
    pub reachable: bool,
    /// Why not, as `<class>: <detail>`; `null` when reachable.
    pub error: Option<String>,
    /// `green`, `yellow` or `red`; `null` when unknown (unreachable).
    pub status: Option<String>,
    /// Nodes in the Elasticsearch cluster; `null` when unknown.
    pub number_of_nodes: Option<u32>,
    /// How long the probe took, ms.
    pub latency_ms: u64,
    /// Age of the observation when the witness answered, ms.
    pub age_ms: u64,
}

/// One witness in [`StatusJson::nodes`].
#[derive(Debug, Serialize)]
pub struct NodeJson {
    /// Witness id.
    pub id: u64,
    /// Site the witness runs in.
    pub site: String,
    /// Lowercase role; `unreachable` when the answering witness could not
    /// ask it, `unknown` when the server sent no or an unrecognised role.
    pub role: &'static str,
    /// The witness's current term (0 when unreachable).
    pub term: u64,
    /// The leader this witness knows; `null` when none.
    pub leader_id: Option<u64>,
    /// Last log index; `null` when the log is empty or unknown.
    pub last_log_index: Option<u64>,
    /// Last applied index; `null` when nothing is applied or unknown.
    pub last_applied_index: Option<u64>,
    /// Last snapshot index; `null` when there is no snapshot or unknown.
    pub snapshot_index: Option<u64>,
    /// Address of the witness-to-witness Raft service.
    pub raft_addr: String,
    /// Address of the public control service.
    pub control_addr: String,
    /// Why the witness is unreachable; `null` otherwise.
    pub error: Option<String>,
    /// The witness's own latest probe of each database; empty without a
    /// database or when the witness could not be asked.
    pub databases: Vec<DatabaseJson>,
    /// The witness's own latest probe of each site's Elasticsearch; empty
    /// without one or when the witness could not be asked.
    pub search: Vec<SearchJson>,
    /// `monitorsEnabled` of the app at this witness's own site, as read back
    /// from its file; `null` when the site has no app, the file could not
    /// be read, or the witness could not be asked.
    pub monitors_enabled: Option<bool>,
    /// Primary site's witness only: how long its agent's quorum lease still
    /// holds, ms, fence margin included; `null` elsewhere or when not held.
    pub lease_remaining_ms: Option<u64>,
    /// Primary site's witness only: its agent has seen the database run
    /// under the lease and has not stopped it since.
    pub serving_under_lease: bool,
}

/// One follower in [`StatusJson::replication`].
#[derive(Debug, Serialize)]
pub struct PeerJson {
    /// Follower witness id.
    pub id: u64,
    /// Highest log index known replicated on it; `null` if none yet.
    pub matched_index: Option<u64>,
    /// Entries it is behind the leader's last log index.
    pub lag_entries: u64,
    /// Milliseconds since the leader last heard from it; `null` if never.
    pub last_contact_ms: Option<u64>,
}

/// `annotate --output json`.
#[derive(Debug, Serialize)]
pub struct AnnotateJson {
    /// Raft log index at which the note was committed (for a duplicate:
    /// the first request's note).
    pub log_index: u64,
    /// The leader that committed it.
    pub leader_id: u64,
    /// The request id it was sent with.
    pub request_id: Option<String>,
    /// `true` when the request had been applied before (a retry): no
    /// second note was added.
    pub duplicate: bool,
}

/// `journal --output json`.
#[derive(Debug, Serialize)]
pub struct JournalJson {
    /// Every note, oldest first.
    pub entries: Vec<JournalEntryJson>,
}

/// One note in [`JournalJson::entries`].
#[derive(Debug, Serialize)]
pub struct JournalEntryJson {
    /// Raft log index of the note.
    pub log_index: u64,
    /// Leader's wall clock when it accepted the note, Unix milliseconds.
    pub at_unix_ms: i64,
    /// Who wrote it.
    pub author: String,
    /// The note.
    pub text: String,
    /// The request that added it; `null` when it carried none.
    pub request_id: Option<String>,
}

impl From<&JournalEntry> for JournalEntryJson {
    fn from(e: &JournalEntry) -> Self {
        Self {
            log_index: e.log_index,
            at_unix_ms: e.at_unix_ms,
            author: e.author.clone(),
            text: e.text.clone(),
            request_id: non_empty(&e.request_id),
        }
    }
}

impl From<&StatusReply> for StatusJson {
    fn from(r: &StatusReply) -> Self {
        Self {
            node_id: r.node_id,
            leader_id: r.leader_id,
            term: r.term,
            cluster_name: r.cluster_name.clone(),
            nodes: r.nodes.iter().map(NodeJson::from).collect(),
            replication: r.replication.iter().map(PeerJson::from).collect(),
            epoch: r.epoch,
            primary_site: non_empty(&r.primary_site),
            standby_site: non_empty(&r.standby_site),
            replication_mode: non_empty(&r.replication_mode),
            standby_needs_rejoin: r.standby_needs_rejoin,
            assessment: non_empty(&r.assessment),
            failover_in_progress: r.failover_in_progress.as_ref().map(FailoverJson::from),
            last_failover: r.last_failover.as_ref().map(FailoverJson::from),
            monitors_enabled: monitors_by_site(r),
            maintenance: r.maintenance.as_ref().map(MaintenanceJson::from),
            quorum: non_empty(&r.quorum),
            quorum_timeout_ms: (r.quorum_timeout_ms > 0).then_some(r.quorum_timeout_ms),
            leader_millis_since_quorum_ack: r.leader_millis_since_quorum_ack,
            quorum_acked: (r.quorum == "ok" || r.quorum == "lost").then_some(r.quorum_acked),
            quorum_needed: (r.quorum_needed > 0).then_some(r.quorum_needed),
            transport: non_empty(&r.transport),
            caller: non_empty(&r.caller),
        }
    }
}

impl From<&Maintenance> for MaintenanceJson {
    fn from(m: &Maintenance) -> Self {
        Self {
            by: m.by.clone(),
            reason: m.reason.clone(),
            since_ms: m.since_ms,
            until_ms: m.until_ms,
        }
    }
}

/// Each site's `monitorsEnabled` from the witnesses that reported it:
/// `true` when any witness of that site read it on (two witnesses of one
/// site read the same app), `false` otherwise. Shared by the JSON and the
/// table's warning, so both count alike.
pub fn monitors_by_site(r: &StatusReply) -> BTreeMap<String, bool> {
    let mut by_site = BTreeMap::new();
    for n in &r.nodes {
        if let Some(on) = n.monitors_enabled {
            *by_site.entry(n.site.clone()).or_insert(false) |= on;
        }
    }
    by_site
}

impl From<&FailoverSummary> for FailoverJson {
    fn from(f: &FailoverSummary) -> Self {
        Self {
            epoch: f.epoch,
            kind: non_empty(&f.kind),
            from_site: f.from_site.clone(),
            to_site: f.to_site.clone(),
            trigger: f.trigger.clone(),
            reason: f.reason.clone(),
            outcome: non_empty(&f.outcome),
            started_at_ms: f.started_at_ms,
            finished_at_ms: f.finished_at_ms,
            duration_ms: f
                .finished_at_ms
                .map(|end| end.saturating_sub(f.started_at_ms)),
            steps: f.steps.iter().map(StepJson::from).collect(),
            // Evidence is the server's to shape; anything but an object
            // (or broken JSON) would not be what the schema promises.
            evidence: serde_json::from_str(&f.evidence_json).ok(),
            request_id: non_empty(&f.request_id),
        }
    }
}

impl From<&StepTiming> for StepJson {
    fn from(s: &StepTiming) -> Self {
        Self {
            step: s.step.clone(),
            started_at_ms: s.started_at_ms,
            done_at_ms: s.done_at_ms,
            duration_ms: s.done_at_ms.saturating_sub(s.started_at_ms),
            detail: s.detail.clone(),
            checks: s.checks.iter().map(CheckJson::from).collect(),
        }
    }
}

impl From<&StepCheck> for CheckJson {
    fn from(c: &StepCheck) -> Self {
        Self {
            name: c.name.clone(),
            ok: c.ok,
            detail: c.detail.clone(),
        }
    }
}

impl From<&DatabaseView> for DatabaseJson {
    fn from(d: &DatabaseView) -> Self {
        Self {
            site: d.site.clone(),
            reachable: d.reachable,
            error: non_empty(&d.error),
            in_recovery: d.in_recovery,
            lsn: non_empty(&d.lsn),
            replay_lag_seconds: d.replay_lag_seconds,
            streaming: d.streaming,
            latency_ms: d.latency_ms,
            age_ms: d.age_ms,
            mariadb: d.mariadb.as_ref().map(MariaDbJson::from),
        }
    }
}

impl From<&MariaDbView> for MariaDbJson {
    fn from(m: &MariaDbView) -> Self {
        Self {
            read_only: m.read_only,
            server_id: m.server_id,
            auto_increment_increment: m.auto_increment_increment,
            auto_increment_offset: m.auto_increment_offset,
            io_running: non_empty(&m.io_running),
            sql_running: m.sql_running,
            seconds_behind_master: m.seconds_behind_master,
            replicates_from: non_empty(&m.replicates_from),
            replicates_from_server_id: m.replicates_from_server_id,
            read_position: non_empty(&m.read_position),
            executed_position: non_empty(&m.executed_position),
            last_io_error: non_empty(&m.last_io_error),
            last_sql_error: non_empty(&m.last_sql_error),
            binlog_position: non_empty(&m.binlog_position),
            gtid_binlog_pos: non_empty(&m.gtid_binlog_pos),
            gtid_slave_pos: non_empty(&m.gtid_slave_pos),
            semi_sync: m.semi_sync.as_ref().map(SemiSyncJson::from),
        }
    }
}

impl From<&MariaDbSemiSync> for SemiSyncJson {
    fn from(s: &MariaDbSemiSync) -> Self {
        Self {
            enabled: s.enabled,
            active: s.active,
            clients: s.clients,
            timeout_ms: s.timeout_ms,
            replica_acks: s.replica_acks,
        }
    }
}

impl From<&SearchView> for SearchJson {
    fn from(s: &SearchView) -> Self {
        Self {
            site: s.site.clone(),
            reachable: s.reachable,
            error: non_empty(&s.error),
            status: non_empty(&s.status),
            number_of_nodes: s.number_of_nodes,
            latency_ms: s.latency_ms,
            age_ms: s.age_ms,
        }
    }
}

impl From<&NodeStatus> for NodeJson {
    fn from(n: &NodeStatus) -> Self {
        Self {
            id: n.id,
            site: n.site.clone(),
            role: role_name(n.role),
            term: n.term,
            leader_id: n.leader_id,
            last_log_index: n.last_log_index,
            last_applied_index: n.last_applied_index,
            snapshot_index: n.snapshot_index,
            raft_addr: n.raft_addr.clone(),
            control_addr: n.control_addr.clone(),
            error: non_empty(&n.error),
            databases: n.databases.iter().map(DatabaseJson::from).collect(),
            search: n.search.iter().map(SearchJson::from).collect(),
            monitors_enabled: n.monitors_enabled,
            lease_remaining_ms: n.lease_remaining_ms,
            serving_under_lease: n.serving_under_lease,
        }
    }
}

impl From<&PeerProgress> for PeerJson {
    fn from(p: &PeerProgress) -> Self {
        Self {
            id: p.id,
            matched_index: p.matched_index,
            lag_entries: p.lag_entries,
            last_contact_ms: p.last_contact_ms,
        }
    }
}

impl From<&AnnotateReply> for AnnotateJson {
    fn from(r: &AnnotateReply) -> Self {
        Self {
            log_index: r.log_index,
            leader_id: r.leader_id,
            request_id: non_empty(&r.request_id),
            duplicate: r.duplicate,
        }
    }
}

impl From<&JournalReply> for JournalJson {
    fn from(r: &JournalReply) -> Self {
        Self {
            entries: r.entries.iter().map(JournalEntryJson::from).collect(),
        }
    }
}

/// `pause` and `resume --output json`.
#[derive(Debug, Serialize)]
pub struct MaintenanceReplyJson {
    /// The maintenance now in force; `null` after `resume`.
    pub maintenance: Option<MaintenanceJson>,
    /// The leader that committed the change.
    pub leader_id: u64,
    /// The request id it was sent with.
    pub request_id: Option<String>,
    /// `true` when the request had been applied before (a retry): nothing
    /// changed now; `maintenance` is the state now.
    pub duplicate: bool,
}

impl From<&MaintenanceReply> for MaintenanceReplyJson {
    fn from(r: &MaintenanceReply) -> Self {
        Self {
            maintenance: r.maintenance.as_ref().map(MaintenanceJson::from),
            leader_id: r.leader_id,
            request_id: non_empty(&r.request_id),
            duplicate: r.duplicate,
        }
    }
}

/// `switchover`, `failover` and `failback --output json`: the committed
/// operation and, when palisadectl waited, how it ended.
#[derive(Debug, Serialize)]
pub struct OperationJson {
    /// The epoch the operation raised the cluster to.
    pub epoch: u64,
    /// `failover`, `switchover` or `failback`.
    pub kind: String,
    /// The primary's site when it was committed.
    pub from_site: String,
    /// The site being promoted.
    pub to_site: String,
    /// The leader that committed it.
    pub leader_id: u64,
    /// What the promotion may lose, in words (forced failover); `null` when
    /// nothing.
    pub data_loss_bound: Option<String>,
    /// Whether palisadectl waited for the operation (`false` with
    /// `--no-wait`).
    pub waited: bool,
    /// Whether it saw the operation finish (`false` with `--no-wait` and
    /// when the wait timed out, exit 7).
    pub finished: bool,
    /// `true` when it finished with outcome `completed`, `false` when it
    /// finished otherwise (exit 6), `null` when not seen finished.
    pub succeeded: Option<bool>,
    /// The operation as last seen: finished, or still in progress when the
    /// wait timed out; `null` with `--no-wait` or when never seen.
    pub summary: Option<FailoverJson>,
    /// The request id it was sent with.
    pub request_id: Option<String>,
    /// `true` when the request had been applied before (a retry): this is
    /// the operation it began then; nothing new was begun.
    pub duplicate: bool,
}

impl OperationJson {
    /// The reply as committed, before any wait.
    pub fn committed(r: &OperationReply) -> Self {
        Self {
            epoch: r.epoch,
            kind: r.kind.clone(),
            from_site: r.from_site.clone(),
            to_site: r.to_site.clone(),
            leader_id: r.leader_id,
            data_loss_bound: non_empty(&r.data_loss_bound),
            waited: false,
            finished: false,
            succeeded: None,
            summary: None,
            request_id: non_empty(&r.request_id),
            duplicate: r.duplicate,
        }
    }
}

/// `history --output json`.
#[derive(Debug, Serialize)]
pub struct HistoryJson {
    /// Finished failovers, switchovers and failbacks, oldest first.
    pub operations: Vec<FailoverJson>,
    /// The operation in progress; `null` when none is.
    pub in_progress: Option<FailoverJson>,
    /// Recorded drills, oldest first.
    pub drills: Vec<DrillJson>,
    /// Old primaries that rejoined as streaming standbys, oldest first.
    pub rejoins: Vec<RejoinJson>,
    /// Pauses and resumes, oldest first (the last 1000).
    pub maintenance: Vec<MaintenanceEventJson>,
    /// The journal's notes, oldest first.
    pub notes: Vec<JournalEntryJson>,
    /// The operator requests the cluster remembers, oldest first.
    pub requests: Vec<RequestJson>,
    /// How long after it was issued a request id is remembered, at least,
    /// ms; `null` from older servers.
    pub request_retention_ms: Option<u64>,
}

impl From<&HistoryReply> for HistoryJson {
    fn from(r: &HistoryReply) -> Self {
        Self {
            operations: r.operations.iter().map(FailoverJson::from).collect(),
            in_progress: r.in_progress.as_ref().map(FailoverJson::from),
            drills: r.drills.iter().map(DrillJson::from).collect(),
            rejoins: r.rejoins.iter().map(RejoinJson::from).collect(),
            maintenance: r
                .maintenance
                .iter()
                .map(MaintenanceEventJson::from)
                .collect(),
            notes: r.notes.iter().map(JournalEntryJson::from).collect(),
            requests: r.requests.iter().map(RequestJson::from).collect(),
            request_retention_ms: (r.request_retention_ms > 0).then_some(r.request_retention_ms),
        }
    }
}

/// One pause or resume in [`HistoryJson::maintenance`].
#[derive(Debug, Serialize)]
pub struct MaintenanceEventJson {
    /// Raft log index of the change.
    pub log_index: u64,
    /// `paused` or `resumed`.
    pub kind: String,
    /// Who paused or resumed (`expiry` when a pause ended on time).
    pub by: String,
    /// Leader wall clock, Unix ms.
    pub at_ms: i64,
    /// A pause's end, Unix ms; `null`: until resumed (and for a resume).
    pub until_ms: Option<i64>,
    /// A pause's reason; may be empty.
    pub reason: String,
    /// The request that did it; `null` when it carried none.
    pub request_id: Option<String>,
}

impl From<&MaintenanceEvent> for MaintenanceEventJson {
    fn from(m: &MaintenanceEvent) -> Self {
        Self {
            log_index: m.log_index,
            kind: m.kind.clone(),
            by: m.by.clone(),
            at_ms: m.at_ms,
            until_ms: m.until_ms,
            reason: m.reason.clone(),
            request_id: non_empty(&m.request_id),
        }
    }
}

/// One remembered request in [`HistoryJson::requests`].
#[derive(Debug, Serialize)]
pub struct RequestJson {
    /// The request id.
    pub request_id: String,
    /// `annotate`, `pause`, `resume`, `switchover`, `failover`,
    /// `failback` or `drill`.
    pub kind: String,
    /// Who sent it.
    pub who: String,
    /// When the client issued it, Unix ms.
    pub issued_at_ms: i64,
    /// When the leader accepted it, Unix ms.
    pub at_ms: i64,
    /// Raft log index where it was applied.
    pub log_index: u64,
    /// `applied`, `noted at log index N` or `rejected: …` (nothing changed).
    pub outcome: String,
    /// The epoch an operation raised the cluster to; `null` otherwise.
    pub epoch: Option<u64>,
    /// What it did, in words.
    pub summary: String,
}

impl From<&RequestRecord> for RequestJson {
    fn from(r: &RequestRecord) -> Self {
        Self {
            request_id: r.request_id.clone(),
            kind: r.kind.clone(),
            who: r.who.clone(),
            issued_at_ms: r.issued_at_ms,
            at_ms: r.at_ms,
            log_index: r.log_index,
            outcome: r.outcome.clone(),
            epoch: (r.epoch > 0).then_some(r.epoch),
            summary: r.summary.clone(),
        }
    }
}

/// `history --request ID --output json`: what the request did.
#[derive(Debug, Serialize)]
pub struct RequestLookupJson {
    /// The id asked about.
    pub request_id: String,
    /// Whether the answering witness has a record of it (exit 0; else 9).
    pub found: bool,
    /// Fields as in [`RequestJson`]; `null` when not found, or when the
    /// request is known only from the note, pause, resume or operation it
    /// made (its record has been pruned).
    pub kind: Option<String>,
    /// See [`RequestJson::who`].
    pub who: Option<String>,
    /// See [`RequestJson::issued_at_ms`].
    pub issued_at_ms: Option<i64>,
    /// See [`RequestJson::at_ms`].
    pub at_ms: Option<i64>,
    /// See [`RequestJson::log_index`].
    pub log_index: Option<u64>,
    /// See [`RequestJson::outcome`].
    pub outcome: Option<String>,
    /// See [`RequestJson::summary`].
    pub summary: Option<String>,
    /// The operation it began, as it stands now; `null` for other requests.
    pub operation: Option<FailoverJson>,
    /// The log index the answering witness has applied; `null` from older
    /// servers.
    pub applied_index: Option<u64>,
}

impl RequestLookupJson {
    /// Finds request `id` in a history reply: its record, else the note,
    /// pause, resume or operation that carries its id.
    pub fn find(r: &HistoryReply, id: &str) -> Self {
        let mut j = Self {
            request_id: id.to_owned(),
            found: false,
            kind: None,
            who: None,
            issued_at_ms: None,
            at_ms: None,
            log_index: None,
            outcome: None,
            summary: None,
            operation: None,
            applied_index: r.applied_index,
        };
        let ops = || r.operations.iter().chain(&r.in_progress);
        if let Some(rec) = r.requests.iter().find(|x| x.request_id == id) {
            j.found = true;
            j.kind = Some(rec.kind.clone());
            j.who = Some(rec.who.clone());
            j.issued_at_ms = Some(rec.issued_at_ms);
            j.at_ms = Some(rec.at_ms);
            j.log_index = Some(rec.log_index);
            j.outcome = Some(rec.outcome.clone());
            j.summary = Some(rec.summary.clone());
            j.operation = (rec.epoch > 0)
                .then(|| ops().find(|f| f.epoch == rec.epoch))
                .flatten()
                .map(FailoverJson::from);
        } else if let Some(n) = r.notes.iter().find(|n| n.request_id == id) {
            j.found = true;
            j.kind = Some("annotate".to_owned());
            j.who = Some(n.author.clone());
            j.at_ms = Some(n.at_unix_ms);
            j.log_index = Some(n.log_index);
            j.outcome = Some(format!("noted at log index {}", n.log_index));
            j.summary = Some(format!("annotate: {}", n.text));
        } else if let Some(m) = r.maintenance.iter().find(|m| m.request_id == id) {
            j.found = true;
            j.kind = Some(
                if m.kind == "paused" {
                    "pause"
                } else {
                    "resume"
                }
                .to_owned(),
            );
            j.who = Some(m.by.clone());
            j.at_ms = Some(m.at_ms);
            j.log_index = Some(m.log_index);
            j.outcome = Some("applied".to_owned());
            j.summary = Some(m.kind.clone());
        } else if let Some(f) = ops().find(|f| f.request_id == id) {
            j.found = true;
            j.kind = Some(f.kind.clone());
            j.at_ms = Some(f.started_at_ms);
            j.outcome = Some("applied".to_owned());
            j.summary = Some(format!("{} {} -> {}", f.kind, f.from_site, f.to_site));
            j.operation = Some(FailoverJson::from(f));
        }
        j
    }
}

/// One rejoin in [`HistoryJson::rejoins`].
#[derive(Debug, Serialize)]
pub struct RejoinJson {
    /// The old primary's site, now a standby.
    pub site: String,
    /// The epoch of the operation it rejoined after.
    pub epoch: u64,
    /// When the leader saw it stream, Unix ms.
    pub at_ms: i64,
    /// The primary it streams from.
    pub primary_site: String,
}

impl From<&RejoinSummary> for RejoinJson {
    fn from(r: &RejoinSummary) -> Self {
        Self {
            site: r.site.clone(),
            epoch: r.epoch,
            at_ms: r.at_ms,
            primary_site: r.primary_site.clone(),
        }
    }
}

/// One recorded drill in [`HistoryJson::drills`].
#[derive(Debug, Serialize)]
pub struct DrillJson {
    /// The plan's name.
    pub name: String,
    /// Who ran it.
    pub who: String,
    /// When it started, Unix ms (the running palisadectl's clock).
    pub started_at_ms: i64,
    /// When it finished, Unix ms.
    pub finished_at_ms: i64,
    /// `finished_at_ms - started_at_ms`.
    pub duration_ms: i64,
    /// `passed` or `failed: …`.
    pub outcome: String,
    /// Each phase in plan order.
    pub phases: Vec<DrillPhaseJson>,
}

/// One phase in [`DrillJson::phases`].
#[derive(Debug, Serialize)]
pub struct DrillPhaseJson {
    /// `checkpoint`, `pre-reboot`, `check`, `failover`, `failover-check`,
    /// `failback` or `failback-check`.
    pub name: String,
    /// `passed`, `failed: …` or `skipped`.
    pub outcome: String,
    /// How long it took, ms (0 when skipped).
    pub duration_ms: u64,
}

impl From<&DrillSummary> for DrillJson {
    fn from(d: &DrillSummary) -> Self {
        Self {
            name: d.name.clone(),
            who: d.who.clone(),
            started_at_ms: d.started_at_ms,
            finished_at_ms: d.finished_at_ms,
            duration_ms: d.finished_at_ms.saturating_sub(d.started_at_ms),
            outcome: d.outcome.clone(),
            phases: d.phases.iter().map(DrillPhaseJson::from).collect(),
        }
    }
}

impl From<&DrillPhase> for DrillPhaseJson {
    fn from(p: &DrillPhase) -> Self {
        Self {
            name: p.name.clone(),
            outcome: p.outcome.clone(),
            duration_ms: p.duration_ms,
        }
    }
}

/// One line of `watch --output json` (JSON Lines).
#[derive(Debug, Serialize)]
pub struct EventJson {
    /// When it happened, Unix ms.
    pub at_ms: i64,
    /// `snapshot`, `operation_started`, `step_done`, `operation_finished`,
    /// `paused`, `resumed`, `rejoined`, `roles`, `note`, `drill`, `leader`,
    /// or a kind newer servers add.
    pub kind: String,
    /// The epoch it belongs to; `null` when none.
    pub epoch: Option<u64>,
    /// One line for people.
    pub text: String,
}

impl From<&Event> for EventJson {
    fn from(e: &Event) -> Self {
        Self {
            at_ms: e.at_ms,
            kind: e.kind.clone(),
            epoch: (e.epoch != 0).then_some(e.epoch),
            text: e.text.clone(),
        }
    }
}

/// One of this module's schema types as compact JSON on one line plus a
/// newline, for JSON Lines.
pub fn to_json_line<T: Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string(value).expect("schema types always serialise");
    s.push('\n');
    s
}

/// One of this module's schema types as pretty JSON plus a trailing newline.
pub fn to_json<T: Serialize>(value: &T) -> String {
    // The schema types are plain structs with string keys, which serde_json
    // cannot fail to serialise.
    let mut s = serde_json::to_string_pretty(value).expect("schema types always serialise");
    s.push('\n');
    s
}

/// An optional server string: proto3 sends "unset" as empty.
fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// The lowercase role name used in both tables and JSON.
pub fn role_name(role: i32) -> &'static str {
    match Role::try_from(role) {
        Ok(Role::Leader) => "leader",
        Ok(Role::Follower) => "follower",
        Ok(Role::Candidate) => "candidate",
        Ok(Role::Learner) => "learner",
        Ok(Role::Shutdown) => "shutdown",
        Ok(Role::Unreachable) => "unreachable",
        // A newer server may send roles this build does not know.
        Ok(Role::Unspecified) | Err(_) => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn keys(v: &serde_json::Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    }

    #[test]
    fn status_json_has_the_documented_keys_and_nulls() {
        let mut r = fixtures::status();
        r.leader_id = None;
        let v: serde_json::Value =
            serde_json::from_str(&to_json(&StatusJson::from(&r))).expect("valid JSON");

        assert_eq!(
            keys(&v),
            [
                "assessment",
                "cluster_name",
                "epoch",
                "failover_in_progress",
                "last_failover",
                "leader_id",
                "maintenance",
                "monitors_enabled",
                "node_id",
                "nodes",
                "primary_site",
                "quorum",
                "quorum_acked",
                "quorum_needed",
                "quorum_timeout_ms",
                "leader_millis_since_quorum_ack",
                "replication",
                "replication_mode",
                "standby_needs_rejoin",
                "standby_site",
                "term",
                "transport",
                "caller"
            ]
            .into_iter()
            .map(str::to_owned)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
        assert!(v["leader_id"].is_null());
        // Without a database every database field is null, never absent.
        for null in [
            "primary_site",
            "standby_site",
            "replication_mode",
            "assessment",
            "failover_in_progress",
            "last_failover",
            "maintenance",
        ] {
            assert!(v[null].is_null(), "{null} should be null: {}", v[null]);
        }
        assert_eq!(v["epoch"], 0);
        assert_eq!(v["standby_needs_rejoin"], false);
        // No witness reported monitorsEnabled: an empty object, not null.
        assert_eq!(v["monitors_enabled"], serde_json::json!({}));
        assert_eq!(v["node_id"], 2);
        assert_eq!(v["term"], 5);
        assert_eq!(v["cluster_name"], "palisade-local");

        assert_eq!(
            keys(&v["nodes"][0]),
            [
                "control_addr",
                "databases",
                "error",
                "id",
                "last_applied_index",
                "last_log_index",
                "leader_id",
                "lease_remaining_ms",
                "monitors_enabled",
                "raft_addr",
                "role",
                "search",
                "serving_under_lease",
                "site",
                "snapshot_index",
                "term"
            ]
        );
        assert_eq!(v["nodes"][0]["databases"], serde_json::json!([]));
        assert_eq!(v["nodes"][0]["search"], serde_json::json!([]));
        assert!(v["nodes"][0]["monitors_enabled"].is_null());
        assert!(v["nodes"][0]["lease_remaining_ms"].is_null());
        assert_eq!(v["nodes"][0]["serving_under_lease"], false);
        assert_eq!(v["nodes"][0]["role"], "leader");
        assert_eq!(v["nodes"][0]["leader_id"], 1);
        assert!(v["nodes"][0]["error"].is_null());
        assert!(v["nodes"][0]["snapshot_index"].is_null());
        assert_eq!(v["nodes"][2]["role"], "unreachable");
        assert_eq!(v["nodes"][2]["error"], "connection refused");
        assert!(v["nodes"][2]["last_log_index"].is_null());

        assert_eq!(
            keys(&v["replication"][0]),
            ["id", "lag_entries", "last_contact_ms", "matched_index"]
        );
        assert_eq!(v["replication"][0]["last_contact_ms"], 42);
        assert!(v["replication"][1]["matched_index"].is_null());
        assert!(v["replication"][1]["last_contact_ms"].is_null());
    }

    fn status_json(r: &StatusReply) -> serde_json::Value {
        serde_json::from_str(&to_json(&StatusJson::from(r))).expect("valid JSON")
    }

    #[test]
    fn status_json_after_failover_has_roles_detector_and_last_failover() {
        let v = status_json(&fixtures::failed_over());
        assert_eq!(v["epoch"], 3);
        assert_eq!(v["primary_site"], "b");
        assert_eq!(v["standby_site"], "a");
        assert_eq!(v["replication_mode"], "async");
        assert_eq!(v["standby_needs_rejoin"], true);
        assert_eq!(
            v["assessment"],
            "healthy: primary b up on 2 of 2 reporting witnesses"
        );
        assert!(v["failover_in_progress"].is_null());

        let f = &v["last_failover"];
        assert_eq!(
            keys(f),
            [
                "duration_ms",
                "epoch",
                "evidence",
                "finished_at_ms",
                "from_site",
                "kind",
                "outcome",
                "reason",
                "request_id",
                "started_at_ms",
                "steps",
                "to_site",
                "trigger"
            ]
        );
        assert!(f["request_id"].is_null(), "an automatic failover has none");
        assert_eq!(f["epoch"], 3);
        assert_eq!(f["kind"], "failover");
        assert_eq!(f["from_site"], "a");
        assert_eq!(f["to_site"], "b");
        assert_eq!(f["trigger"], "automatic");
        assert_eq!(f["outcome"], "completed");
        assert_eq!(f["started_at_ms"], fixtures::FAILOVER_STARTED_MS);
        assert_eq!(f["finished_at_ms"], fixtures::FAILOVER_STARTED_MS + 4230);
        assert_eq!(f["duration_ms"], 4230);
        assert_eq!(
            keys(&f["steps"][0]),
            [
                "checks",
                "detail",
                "done_at_ms",
                "duration_ms",
                "started_at_ms",
                "step"
            ]
        );
        assert_eq!(f["steps"][0]["checks"], serde_json::json!([]));
        let steps: Vec<(&str, i64)> = f["steps"]
            .as_array()
            .expect("steps array")
            .iter()
            .map(|s| {
                (
                    s["step"].as_str().expect("step name"),
                    s["duration_ms"].as_i64().expect("duration"),
                )
            })
            .collect();
        assert_eq!(
            steps,
            [
                ("fenced", 210),
                ("promoted", 1800),
                ("app-flipped", 120),
                ("repointed", 280),
                ("verified", 1800)
            ]
        );
        // The server's summary stays as it sent it; the checks are an
        // array, each with its own result.
        assert_eq!(f["steps"][4]["detail"], fixtures::VERIFIED_DETAIL);
        assert_eq!(
            f["steps"][4]["checks"],
            serde_json::json!([
                {"name": "database at b writable", "ok": true, "detail": "lsn 0/3000148"},
                {"name": "elasticsearch at b green", "ok": true, "detail": "3 nodes"},
                {"name": "exactly one monitorsEnabled=true", "ok": true, "detail": "site b"},
            ])
        );
        let mut failed = fixtures::finished_failover();
        failed.steps[4].checks[2] =
            fixtures::check("exactly one monitorsEnabled=true", false, "on at [a, b]");
        let v: serde_json::Value =
            serde_json::from_str(&to_json(&FailoverJson::from(&failed))).expect("json");
        assert_eq!(
            v["steps"][4]["checks"][2],
            serde_json::json!({"name": "exactly one monitorsEnabled=true", "ok": false, "detail": "on at [a, b]"})
        );
        assert_eq!(
            f["steps"][0]["detail"],
            "fenced by agent: stopped (fast) in 210 ms"
        );
        // The evidence is parsed, not a string holding JSON.
        assert_eq!(f["evidence"]["down_for_ms"], 10000);
        assert_eq!(f["evidence"]["votes"][0]["saw"], "down (refused)");
    }

    #[test]
    fn database_views_keep_raw_values_and_null_the_unset() {
        let v = status_json(&fixtures::failed_over());
        let standby = &v["nodes"][0]["databases"][0];
        assert_eq!(
            keys(standby),
            [
                "age_ms",
                "error",
                "in_recovery",
                "latency_ms",
                "lsn",
                "mariadb",
                "reachable",
                "replay_lag_seconds",
                "site",
                "streaming"
            ]
        );
        assert_eq!(
            *standby,
            serde_json::json!({
                "site": "a", "reachable": true, "error": null, "in_recovery": true,
                "lsn": "0/3000060", "replay_lag_seconds": 0.4, "streaming": true,
                "latency_ms": 3, "age_ms": 120, "mariadb": null
            })
        );
        let primary = &v["nodes"][0]["databases"][1];
        assert_eq!(primary["in_recovery"], false);
        assert!(primary["replay_lag_seconds"].is_null());
        let down = &v["nodes"][1]["databases"][0];
        assert_eq!(
            *down,
            serde_json::json!({
                "site": "a", "reachable": false,
                "error": "timeout: no answer within 1000 ms",
                "in_recovery": null, "lsn": null, "replay_lag_seconds": null,
                "streaming": false, "latency_ms": 1000, "age_ms": 340, "mariadb": null
            })
        );
        // The unreachable witness reported nothing.
        assert_eq!(v["nodes"][2]["databases"], serde_json::json!([]));
    }

    #[test]
    fn mariadb_views_carry_replication_both_ways_and_semi_sync() {
        let v = status_json(&fixtures::mariadb_pair());
        let writer = &v["nodes"][0]["databases"][0];
        // The projection stays where PostgreSQL's fields are.
        assert_eq!(writer["in_recovery"], false);
        assert_eq!(
            writer["mariadb"],
            serde_json::json!({
                "read_only": false, "server_id": 1,
                "auto_increment_increment": 2, "auto_increment_offset": 1,
                "io_running": "Yes", "sql_running": true, "seconds_behind_master": 0,
                "replicates_from": "b-db:3306", "replicates_from_server_id": 2,
                "read_position": "mysql-bin.000002:1899",
                "executed_position": "mysql-bin.000002:1899",
                "last_io_error": null, "last_sql_error": null,
                "binlog_position": "mysql-bin.000003:5678",
                "gtid_binlog_pos": "0-1-42", "gtid_slave_pos": "0-2-7",
                "semi_sync": {
                    "enabled": true, "active": true, "clients": 1,
                    "timeout_ms": 10000, "replica_acks": true
                }
            })
        );
        let reader = &v["nodes"][1]["databases"][1]["mariadb"];
        assert_eq!(reader["read_only"], true);
        assert_eq!(reader["replicates_from"], "a-db:3306");
        assert_eq!(reader["replicates_from_server_id"], 1);
        assert_eq!(reader["read_position"], "mysql-bin.000003:5678");
        assert_eq!(reader["executed_position"], "mysql-bin.000003:5210");
        assert_eq!(reader["seconds_behind_master"], 1);
        assert_eq!(reader["semi_sync"]["enabled"], false);

        // A master with no replication, nothing read: null, never absent.
        let mut r = fixtures::mariadb_pair();
        let m = r.nodes[0].databases[1]
            .mariadb
            .as_mut()
            .expect("a MariaDB view");
        *m = MariaDbView::default();
        let v = status_json(&r);
        let bare = &v["nodes"][0]["databases"][1]["mariadb"];
        assert_eq!(keys(bare), keys(&writer["mariadb"]));
        for (key, value) in bare.as_object().expect("object") {
            assert!(value.is_null(), "{key} should be null: {value}");
        }
    }

    #[test]
    fn search_views_keep_raw_values_and_null_the_unset() {
        let v = status_json(&fixtures::failed_over());
        let yellow = &v["nodes"][0]["search"][0];
        assert_eq!(
            keys(yellow),
            [
                "age_ms",
                "error",
                "latency_ms",
                "number_of_nodes",
                "reachable",
                "site",
                "status"
            ]
        );
        assert_eq!(
            *yellow,
            serde_json::json!({
                "site": "a", "reachable": true, "error": null, "status": "yellow",
                "number_of_nodes": 2, "latency_ms": 4, "age_ms": 120
            })
        );
        let down = &v["nodes"][1]["search"][0];
        assert_eq!(
            *down,
            serde_json::json!({
                "site": "a", "reachable": false,
                "error": "timeout: no answer within 1000 ms",
                "status": null, "number_of_nodes": null,
                "latency_ms": 1000, "age_ms": 340
            })
        );
        // The unreachable witness reported nothing.
        assert_eq!(v["nodes"][2]["search"], serde_json::json!([]));
    }

    #[test]
    fn monitors_enabled_per_node_and_by_site() {
        let v = status_json(&fixtures::failed_over());
        assert_eq!(v["nodes"][0]["monitors_enabled"], false);
        assert_eq!(v["nodes"][1]["monitors_enabled"], true);
        assert!(v["nodes"][2]["monitors_enabled"].is_null());
        // Only the sites whose witness said; site-c's did not.
        assert_eq!(
            v["monitors_enabled"],
            serde_json::json!({"a": false, "b": true})
        );

        // Two witnesses of one site read the same app: on if either read it on.
        let mut r = fixtures::failed_over();
        r.nodes[1].site = "a".to_owned();
        r.nodes[2].monitors_enabled = Some(false);
        assert_eq!(
            status_json(&r)["monitors_enabled"],
            serde_json::json!({"a": true, "site-c": false})
        );
    }

    #[test]
    fn failover_in_progress_has_null_outcome_end_and_duration() {
        let mut r = fixtures::failed_over();
        let mut f = fixtures::finished_failover();
        f.outcome.clear();
        f.finished_at_ms = None;
        f.steps.truncate(1);
        f.evidence_json.clear();
        r.failover_in_progress = Some(f);
        r.last_failover = None;
        let v = status_json(&r);
        let f = &v["failover_in_progress"];
        for null in ["outcome", "finished_at_ms", "duration_ms", "evidence"] {
            assert!(f[null].is_null(), "{null} should be null: {}", f[null]);
        }
        assert_eq!(f["steps"].as_array().map(Vec::len), Some(1));
        assert!(v["last_failover"].is_null());
    }

    #[test]
    fn evidence_that_is_not_a_json_object_is_null() {
        for bad in ["not json", "[1, 2]", "\"text\"", "{\"truncated\": "] {
            let mut f = fixtures::finished_failover();
            f.evidence_json = bad.to_owned();
            assert!(FailoverJson::from(&f).evidence.is_none(), "{bad}");
        }
    }

    #[test]
    fn a_replay_lag_that_is_not_a_number_is_null() {
        let mut r = fixtures::failed_over();
        r.nodes[0].databases[0].replay_lag_seconds = Some(f64::NAN);
        let v = status_json(&r);
        assert!(v["nodes"][0]["databases"][0]["replay_lag_seconds"].is_null());
    }

    #[test]
    fn json_never_cuts_long_text() {
        let mut r = fixtures::failed_over();
        let long = format!("line one\n{}", "x".repeat(500));
        r.assessment = long.clone();
        let mut f = fixtures::finished_failover();
        f.reason = long.clone();
        f.steps[0].detail = long.clone();
        r.last_failover = Some(f);
        let v = status_json(&r);
        assert_eq!(v["assessment"], long.as_str());
        assert_eq!(v["last_failover"]["reason"], long.as_str());
        assert_eq!(v["last_failover"]["steps"][0]["detail"], long.as_str());
    }

    #[test]
    fn annotate_json_is_exact() {
        let a = AnnotateReply {
            log_index: 17,
            leader_id: 1,
            request_id: "20231114T221320.123Z-9f86d081884c7d65".to_owned(),
            duplicate: false,
        };
        assert_eq!(
            to_json(&AnnotateJson::from(&a)),
            "{\n  \"log_index\": 17,\n  \"leader_id\": 1,\n  \"request_id\": \"20231114T221320.123Z-9f86d081884c7d65\",\n  \"duplicate\": false\n}\n"
        );
    }

    #[test]
    fn journal_json_keeps_raw_fields() {
        let v: serde_json::Value =
            serde_json::from_str(&to_json(&JournalJson::from(&fixtures::journal())))
                .expect("valid JSON");
        assert_eq!(keys(&v), ["entries"]);
        assert_eq!(
            keys(&v["entries"][0]),
            ["at_unix_ms", "author", "log_index", "request_id", "text"]
        );
        assert!(v["entries"][0]["request_id"].is_null());
        assert_eq!(v["entries"][0]["log_index"], 9);
        assert_eq!(v["entries"][0]["at_unix_ms"], 1_700_000_000_123_i64);
        assert_eq!(v["entries"][0]["author"], "alice");
        assert_eq!(v["entries"][0]["text"], "DR drill:\ncheckpoint taken");
    }

    #[test]
    fn role_names_are_lowercase_and_unknown_for_unrecognised() {
        assert_eq!(role_name(Role::Leader as i32), "leader");
        assert_eq!(role_name(Role::Learner as i32), "learner");
        assert_eq!(role_name(Role::Shutdown as i32), "shutdown");
        assert_eq!(role_name(Role::Unspecified as i32), "unknown");
        assert_eq!(role_name(99), "unknown");
    }
}
