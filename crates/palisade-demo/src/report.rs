//! What the demo prints: `--- step` progress lines, the cluster status
//! table, and the failover report (human timeline or one JSON object).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::time::{Duration, Instant};

use anyhow::bail;
use palisade_api::v1::{DatabaseView, FailoverSummary, MariaDbView, Role, StatusReply, StepCheck};
use serde::Serialize;

use super::stack::{AppReadBack, REAL_RESTART};
use super::writer::WriteLog;
use super::{Db, Replication};

/// Progress lines: on stdout for a human, on stderr in JSON mode (stdout
/// then holds only the report).
pub struct Progress {
    start: Instant,
    json: bool,
}

impl Progress {
    /// Starts the elapsed-time clock.
    pub fn new(json: bool) -> Progress {
        Progress {
            start: Instant::now(),
            json,
        }
    }

    /// A `--- [elapsed] what` line.
    pub fn step(&self, what: impl Display) {
        self.line(format!(
            "--- [{:>6.2} s] {what}",
            self.start.elapsed().as_secs_f64()
        ));
    }

    /// An indented line under the last step.
    pub fn detail(&self, what: impl Display) {
        self.line(format!("    {what}"));
    }

    fn line(&self, line: String) {
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
}

fn role_name(role: i32) -> String {
    Role::try_from(role)
        .map(|r| r.as_str_name().trim_start_matches("ROLE_").to_lowercase())
        .unwrap_or_else(|_| "unknown".into())
}

/// One witness's view of one database, in a few words.
fn view_text(v: Option<&DatabaseView>) -> String {
    let Some(v) = v else {
        return "-".into();
    };
    if !v.reachable {
        // The error class (refused, timeout, auth, ...) without the detail.
        let class = v.error.split(':').next().unwrap_or_default().trim();
        return format!("DOWN ({class})");
    }
    if let Some(m) = &v.mariadb {
        return maria_view_text(m, v.latency_ms);
    }
    match v.in_recovery {
        Some(false) => format!("primary, lsn {}, {} ms", v.lsn, v.latency_ms),
        Some(true) => format!(
            "standby, {}{}, {} ms",
            if v.streaming {
                "streaming"
            } else {
                "NOT streaming"
            },
            v.replay_lag_seconds
                .map(|l| format!(", lag {l:.2} s"))
                .unwrap_or_default(),
            v.latency_ms
        ),
        None => "up".into(),
    }
}

/// A MariaDB master, in a few words: the writer (`read_only` OFF) with its
/// binary log position, or read-only with its replication from the other
/// master (the IO thread, how far behind).
fn maria_view_text(m: &MariaDbView, latency_ms: u64) -> String {
    let replication = match m.io_running.as_str() {
        "" => "not replicating".to_string(),
        "Yes" if m.sql_running == Some(true) => format!(
            "replicating{}",
            m.seconds_behind_master
                .map(|s| format!(", {s} s behind"))
                .unwrap_or_default()
        ),
        io => format!(
            "IO {io}, SQL {}",
            if m.sql_running == Some(true) {
                "Yes"
            } else {
                "No"
            }
        ),
    };
    match m.read_only {
        Some(false) => format!("writer, binlog {}, {latency_ms} ms", m.binlog_position),
        Some(true) => format!("read-only, {replication}, {latency_ms} ms"),
        None => "up".into(),
    }
}

/// Prints the cluster: leader, recorded roles, detector, and each
/// witness's view of each database.
pub fn print_status(p: &Progress, s: &StatusReply) {
    let leader = s
        .leader_id
        .and_then(|l| s.nodes.iter().find(|n| n.id == l))
        .map(|n| format!("witness {} (site {})", n.id, n.site))
        .unwrap_or_else(|| "unknown".into());
    p.detail(format!(
        "cluster {}: leader {leader}, term {}, epoch {}",
        s.cluster_name, s.term, s.epoch
    ));
    p.detail(format!(
        "databases: primary at site {}, standby at site {}, {} replication",
        s.primary_site, s.standby_site, s.replication_mode
    ));
    p.detail(format!("detector: {}", s.assessment));
    p.detail(format!(
        "{:<8} {:<5} {:<12} {:<44} {}",
        "WITNESS", "SITE", "ROLE", "SEES DB a", "SEES DB b"
    ));
    for n in &s.nodes {
        let view = |site: &str| view_text(n.databases.iter().find(|d| d.site == site));
        p.detail(format!(
            "{:<8} {:<5} {:<12} {:<44} {}",
            n.id,
            n.site,
            role_name(n.role),
            view("a"),
            view("b")
        ));
    }
}

/// Everything measured around the failover, turned into a [`Report`].
pub struct Timeline {
    /// The pair's engine.
    pub db: Db,
    /// The replication mode of the run.
    pub mode: Replication,
    /// The failover as the witnesses recorded it.
    pub failover: FailoverSummary,
    /// The cluster status after it.
    pub status: StatusReply,
    /// When site a was killed (demo clock).
    pub killed_at: Instant,
    /// The same moment on the wall clock (Unix ms), to compare with the
    /// witnesses' step timestamps.
    pub killed_wall_ms: i64,
    /// When the new primary acknowledged the writer's first row.
    pub first_write_on_new_primary: Instant,
    /// What the writer did.
    pub log: WriteLog,
    /// The ids found on the new primary afterwards.
    pub on_new_primary: Vec<i64>,
    /// Set when witness a led at the kill.
    pub leader_note: Option<String>,
    /// From witness a's restart until the cluster recorded site a's
    /// database as the new primary's streaming standby.
    pub rejoin: Duration,
    /// Both apps as their files say at the end (site a's after its
    /// witness returned).
    pub apps: Vec<AppReadBack>,
    /// `haproxy` when the writer went through it; `None` when it wrote to
    /// the servers directly (haproxy not installed).
    pub front_door: Option<&'static str>,
}

/// One failover step in the JSON report.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    /// `fenced`, `promoted`, `verified`, ...
    pub step: String,
    /// How long the step took.
    pub duration_ms: u64,
    /// How it was done, as the leader recorded it.
    pub detail: String,
}

/// One post-failover check in the JSON report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// What was checked and what was seen, as the leader recorded it:
    /// `NAME: DETAIL`, e.g. `exactly one monitorsEnabled=true: site b`.
    pub check: String,
    /// Whether the check passed.
    pub ok: bool,
}

impl CheckReport {
    /// A check of a step's record, as the report words it.
    fn of(c: &StepCheck) -> CheckReport {
        CheckReport {
            check: if c.detail.is_empty() {
                c.name.clone()
            } else {
                format!("{}: {}", c.name, c.detail)
            },
            ok: c.ok,
        }
    }
}

/// The JSON object `palisade demo --output json` prints. It has the same
/// fields whatever `--db` is; where the PostgreSQL words do not fit
/// MariaDB's master-master pair, each field says what it holds there (the
/// "primary" is the writer, `read_only = OFF`; the "standby" the other
/// master, `read_only = ON`, replicating from the writer).
#[derive(Clone, Debug, Serialize)]
pub struct JsonReport {
    /// `async` or `sync` (MariaDB: semi-synchronous replication).
    pub replication: &'static str,
    /// The failover's steps, in order.
    pub steps: Vec<StepReport>,
    /// From the kill to the failover's start (the quorum's decision).
    pub detect_ms: u64,
    /// From the kill to the first write the new primary acknowledged
    /// (MariaDB: the first write of the application's account, which
    /// `read_only` refused until the promotion).
    pub rto_ms: u64,
    /// Rows the writer got acknowledged, by either site.
    pub writes_acked: u64,
    /// Acknowledged rows missing on the new primary (MariaDB: on the new
    /// writer, read after the failover).
    pub writes_lost: u64,
    /// The site recorded as primary at the end (MariaDB: the writer).
    pub final_primary: String,
    /// The site recorded as standby at the end: the old primary, rejoined
    /// (MariaDB: the old writer, back as the read-only master).
    pub final_standby: String,
    /// From the old primary's witness restart until the cluster recorded
    /// its database as the new primary's streaming standby. MariaDB: until
    /// it recorded the old writer rejoined (no errant transaction) and a
    /// witness saw it `read_only = ON` with its IO thread replicating from
    /// the new writer; this includes its agent starting `mariadbd
    /// --read-only` (crash recovery) where PostgreSQL's includes
    /// `pg_rewind` or a base backup.
    pub rejoin_ms: u64,
    /// The failover's epoch (fencing token).
    pub epoch: u64,
    /// Each site's `monitorsEnabled`, read back from its
    /// `threatconnect.xml` at the end (`null`: the property is missing).
    pub monitors_enabled: BTreeMap<&'static str, Option<bool>>,
    /// The post-failover checks of the `verified` step, in order.
    pub checks: Vec<CheckReport>,
    /// The front door the writer went through: `"haproxy"`, or `null`
    /// when haproxy is not installed and it wrote directly.
    pub front_door: Option<&'static str>,
    /// Writes through the front door, by the site whose server took them
    /// (`null` without a front door).
    pub writes_via_front_door: Option<BTreeMap<&'static str, u64>>,
}

/// The demo's result.
pub struct Report {
    /// What JSON mode prints.
    pub json: JsonReport,
    timeline: Timeline,
    /// Acknowledged ids missing on the new primary.
    lost: Vec<i64>,
}

impl Report {
    /// Computes the report from what was measured.
    pub fn build(t: Timeline) -> Report {
        let present: BTreeSet<i64> = t.on_new_primary.iter().copied().collect();
        let lost: Vec<i64> = t
            .log
            .acks
            .iter()
            .map(|a| a.id)
            .filter(|id| !present.contains(id))
            .collect();
        let json = JsonReport {
            replication: t.mode.as_str(),
            steps: t
                .failover
                .steps
                .iter()
                .map(|s| StepReport {
                    step: s.step.clone(),
                    duration_ms: (s.done_at_ms - s.started_at_ms).max(0) as u64,
                    detail: s.detail.clone(),
                })
                .collect(),
            detect_ms: (t.failover.started_at_ms - t.killed_wall_ms).max(0) as u64,
            rto_ms: t
                .first_write_on_new_primary
                .duration_since(t.killed_at)
                .as_millis() as u64,
            writes_acked: t.log.acks.len() as u64,
            writes_lost: lost.len() as u64,
            final_primary: t.status.primary_site.clone(),
            final_standby: t.status.standby_site.clone(),
            rejoin_ms: t.rejoin.as_millis() as u64,
            epoch: t.failover.epoch,
            monitors_enabled: t
                .apps
                .iter()
                .map(|a| (a.site, a.monitors_enabled))
                .collect(),
            checks: t
                .failover
                .steps
                .iter()
                .find(|s| s.step == "verified")
                .map(|s| s.checks.iter().map(CheckReport::of).collect())
                .unwrap_or_default(),
            front_door: t.front_door,
            writes_via_front_door: t.front_door.map(|_| {
                super::stack::SITES
                    .into_iter()
                    .map(|site| (site, t.log.count_on(site) as u64))
                    .collect()
            }),
        };
        Report {
            json,
            timeline: t,
            lost,
        }
    }

    /// Prints the failover timeline for a human.
    pub fn print_human(&self, p: &Progress) {
        let (t, j) = (&self.timeline, &self.json);
        let f = &t.failover;
        p.step(format!(
            "failover timeline (epoch {}, site {} -> site {}, {}, outcome {})",
            f.epoch, f.from_site, f.to_site, f.trigger, f.outcome
        ));
        // Every event as (ms after the kill, text), in time order.
        let since_kill = |wall_ms: i64| wall_ms - t.killed_wall_ms;
        let mut events = vec![
            (
                0,
                format!(
                    "site a killed (witness a and {}, SIGKILL)",
                    match t.db {
                        Db::Postgresql => "its primary",
                        Db::Mariadb => "the writer's mariadbd",
                    }
                ),
            ),
            (
                since_kill(f.started_at_ms),
                format!(
                    "failover started: {}   [detect {} ms]",
                    f.reason, j.detect_ms
                ),
            ),
        ];
        for s in &f.steps {
            events.push((
                since_kill(s.started_at_ms),
                format!(
                    "{:<11} {:>6} ms  {}",
                    s.step,
                    (s.done_at_ms - s.started_at_ms).max(0),
                    s.detail
                ),
            ));
        }
        if let Some(done) = f.finished_at_ms {
            events.push((since_kill(done), "failover finished".into()));
        }
        let via = t
            .front_door
            .map(|d| format!(" through {d}"))
            .unwrap_or_default();
        events.push((
            j.rto_ms as i64,
            format!(
                "first write{via} acknowledged by site {}   [RTO {} ms]",
                f.to_site, j.rto_ms
            ),
        ));
        events.sort_by_key(|(at, _)| *at);
        for (at, text) in events {
            p.detail(format!("{at:>+7} ms  {text}"));
        }
        p.detail(format!(
            "writes acknowledged: {} ({} by site a before the kill, {} by site b after)",
            j.writes_acked,
            t.log.count_on("a"),
            t.log.count_on("b")
        ));
        let lost = match (self.lost.first(), self.lost.last()) {
            (Some(first), Some(last)) if first == last => format!(" (id {first})"),
            (Some(first), Some(last)) => format!(" (ids {first}..={last})"),
            _ => String::new(),
        };
        match (t.db, t.mode) {
            (Db::Postgresql, Replication::Async) => p.detail(format!(
                "writes lost: {}{lost}: with async replication (the guide's choice) a failover may lose the last writes the standby had not yet received; palisade bounds that loss (failover.max_lag_bytes / max_lag_seconds) and records it in the failover's evidence",
                j.writes_lost
            )),
            (Db::Postgresql, Replication::Sync) => p.detail(format!(
                "writes lost: {}{lost}: with sync replication a commit returns only once the standby has it, so this must be 0",
                j.writes_lost
            )),
            (Db::Mariadb, Replication::Async) => p.detail(format!(
                "writes lost: {}{lost}: with the guide's asynchronous master-master replication a failover may lose the last writes the other master had not yet received; palisade makes it writable only once it has executed all it received, bounds the loss (failover.max_lag_seconds) and records it in the promotion's proof",
                j.writes_lost
            )),
            (Db::Mariadb, Replication::Sync) => p.detail(format!(
                "writes lost: {}{lost}: with semi-synchronous replication a commit returns only once the other master has it, so this must be 0",
                j.writes_lost
            )),
        }
        if let Some(note) = &t.leader_note {
            p.detail(format!("note: {note}"));
        }
        match t.db {
            Db::Postgresql => p.detail(format!(
                "final primary: site {} (epoch {}); standby: site {}, its database rebuilt by its agent and streaming {} ms after its witness restarted",
                j.final_primary, j.epoch, j.final_standby, j.rejoin_ms
            )),
            Db::Mariadb => p.detail(format!(
                "final writer: site {} (epoch {}); the other master: site {}, started read-only by its agent, checked for errant transactions, and replicating from site {} {} ms after its witness restarted",
                j.final_primary, j.epoch, j.final_standby, j.final_primary, j.rejoin_ms
            )),
        }
        self.print_site(p);
    }

    /// Prints the rest of the site failover: the apps' files, the checks,
    /// the front door.
    fn print_site(&self, p: &Progress) {
        let (t, j) = (&self.timeline, &self.json);
        p.step("the rest of the site after the failover");
        p.detail(format!(
            "app configs, read back from the files (each restart is the stand-in for `{REAL_RESTART}`):"
        ));
        for a in &t.apps {
            let monitors = a
                .monitors_enabled
                .map(|m| m.to_string())
                .unwrap_or_else(|| "(missing)".into());
            let es = a
                .es_site
                .map(|s| format!("site {s}'s"))
                .unwrap_or_else(|| "neither site's".into());
            p.detail(format!(
                "  {:<26} monitorsEnabled={monitors:<5}  elasticsearchHosts={} ({es} Elasticsearch)  app restarts: {}",
                a.file.display(),
                a.es_hosts,
                a.restarts
            ));
        }
        p.detail("post-failover checks (the verified step):");
        if j.checks.is_empty() {
            p.detail("  (none recorded)");
        }
        for c in &j.checks {
            p.detail(format!(
                "  {:<6} {}",
                if c.ok { "ok" } else { "FAILED" },
                c.check
            ));
        }
        match (t.front_door, &j.writes_via_front_door) {
            (Some(door), Some(by_site)) => {
                let on = |s: &str| by_site.get(s).copied().unwrap_or(0);
                p.detail(format!(
                    "front door: {door}: {} writes went through it to site a (before the kill), {} to site b (after the repoint), {} back to site a after that",
                    on("a"),
                    on("b"),
                    t.log.back_to("a", "b")
                ));
            }
            _ => p.detail(
                "front door: none (haproxy is not installed); the writer wrote to the servers directly",
            ),
        }
    }

    /// Fails when the run broke a promise: a sync-mode loss, a failover
    /// that did not end at site b with site a rejoined as its standby, a
    /// failed post-failover check, an app
    /// file other than "a off, b on", or a write that reached site a after
    /// site b had taken one.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.timeline.mode == Replication::Sync && !self.lost.is_empty() {
            bail!(
                "sync replication lost {} acknowledged writes ({:?}): this is a bug",
                self.lost.len(),
                self.lost
            );
        }
        if self.json.final_primary != "b" {
            bail!(
                "the cluster ended with {:?} as primary, not site b",
                self.json.final_primary
            );
        }
        if self.json.final_standby != "a" {
            bail!(
                "the cluster ended with {:?} as standby, not site a rejoined",
                self.json.final_standby
            );
        }
        let failed: Vec<&str> = self
            .json
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.check.as_str())
            .collect();
        if self.json.checks.is_empty() || !failed.is_empty() {
            bail!(
                "the post-failover checks did not all pass: {}",
                if failed.is_empty() {
                    "none was recorded".to_string()
                } else {
                    failed.join("; ")
                }
            );
        }
        let want = BTreeMap::from([("a", Some(false)), ("b", Some(true))]);
        if self.json.monitors_enabled != want {
            bail!(
                "monitorsEnabled reads {:?} in the app files, not a false and b true",
                self.json.monitors_enabled
            );
        }
        let back = self.timeline.log.back_to("a", "b");
        if back > 0 {
            bail!("{back} writes reached site a after site b had taken one");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_reads_as_its_name_and_what_was_seen() {
        let check = |name: &str, ok, detail: &str| StepCheck {
            name: name.into(),
            ok,
            detail: detail.into(),
        };
        assert_eq!(
            CheckReport::of(&check("exactly one monitorsEnabled=true", true, "site b")),
            CheckReport {
                check: "exactly one monitorsEnabled=true: site b".into(),
                ok: true
            }
        );
        assert_eq!(
            CheckReport::of(&check("search API of the new site", false, "")),
            CheckReport {
                check: "search API of the new site".into(),
                ok: false
            }
        );
    }
}
