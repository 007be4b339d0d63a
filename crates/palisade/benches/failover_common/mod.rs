//! What the database failover benches share (`failover.rs` over
//! PostgreSQL, `mariadb_failover.rs` over MariaDB): the cluster's control
//! channels, settling the cluster and steering the Raft leader before a
//! kill, the writer's retry loop, the failover record and the site agent's
//! log read back into parts, and the summary lines. Each bench includes it
//! with `#[path = "failover_common/mod.rs"] mod failover_common;`.
//!
//! The settled check holds for both engines: a MariaDB master's status
//! view reports `read_only` as `in_recovery` and its replication IO thread
//! as `streaming` (`palisade-core::master_master::detector_view`).

// Each bench uses part of it.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::{FailoverSummary, Role, StatusReply, StatusRequest};
use palisade_testkit::cluster::{wait_status_from, Cluster};
use palisade_testkit::{percentile, step, wait_for};
use tonic::transport::{Channel, Endpoint};

/// Bound of every wait for the cluster or the databases.
pub const SETTLE: Duration = Duration::from_secs(60);
/// How long the cluster must look settled, without a break, before a kill:
/// two renewal intervals of the default lease (ttl 2000 ms / 4), so that the
/// primary's agent has renewed with the current leader since it took office
/// (a failover's lease wait counts from the later of the two).
pub const STEADY: Duration = Duration::from_millis(1000);
/// The witnesses' loops (probe every 250 ms, lease renewal every 500 ms)
/// run at fixed phases from their start, and the end of the settling above
/// is tied to them: without an offset the kills landed at one point of
/// those loops (every a2 kill ~470 ms before the agent's next check). Trial
/// k waits `frac(k × 0.618…) × PHASE_SPAN` more, which spreads the kills
/// evenly over one renewal period (two probe periods).
pub const PHASE_SPAN: Duration = Duration::from_millis(500);
/// The writer's pause between attempts.
pub const RETRY: Duration = Duration::from_millis(10);
/// Bound of one connect or INSERT attempt of the writer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// The witness at site a (the configured primary's site).
pub const SITE_A: u64 = 1;
/// How many leadership moves a trial may need before it gives up.
const MAX_LEADER_MOVES: usize = 10;

/// Trial `trial`'s extra wait before the kill (see [`PHASE_SPAN`]).
pub fn phase(trial: usize) -> Duration {
    PHASE_SPAN.mul_f64((trial as f64 * 0.618_033_988_749_895).fract())
}

/// One trial's figures, in ms.
pub struct Trial {
    pub total: i64,
    /// The scenario's part names, in order; `None` when the failover
    /// record lacks a step to compute them from.
    pub parts: Option<Vec<i64>>,
}

/// One lazily connected control channel per witness, reused across polls.
pub struct Control {
    channels: Vec<(u64, Channel)>,
}

impl Control {
    pub fn new(c: &Cluster) -> Self {
        let channels = c
            .nodes
            .iter()
            .map(|n| {
                let (connect, call) = (Duration::from_millis(200), Duration::from_millis(1500));
                let ch = match &n.pki {
                    Some(pki) => pki
                        .control_channel_lazy(
                            palisade_testkit::pki::OPERATOR,
                            palisade_testkit::pki::authority(&n.control),
                            connect,
                            call,
                        )
                        .expect("the test operator's certificate loads"),
                    None => Endpoint::from_shared(n.control.clone())
                        .expect("a witness's control address is a valid URI")
                        .connect_timeout(connect)
                        .timeout(call)
                        .connect_lazy(),
                };
                (n.id, ch)
            })
            .collect();
        Self { channels }
    }

    pub async fn status(&self, id: u64) -> Option<StatusReply> {
        let ch = self.channels.iter().find(|(i, _)| *i == id)?.1.clone();
        ControlClient::new(ch)
            .status(StatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// Witness `id`'s channel, for the other RPCs (a switchover).
    pub fn channel(&self, id: u64) -> Channel {
        self.channels
            .iter()
            .find(|(i, _)| *i == id)
            .expect("a witness of the cluster")
            .1
            .clone()
    }
}

pub fn running(c: &Cluster) -> Vec<u64> {
    c.nodes
        .iter()
        .filter(|n| n.is_running())
        .map(|n| n.id)
        .collect()
}

/// Polls the running witnesses' status until `f` accepts one; panics
/// naming `what` (and dumps the witnesses' logs) after `timeout`.
pub async fn wait_status<T>(
    c: &Cluster,
    ctl: &Control,
    what: &str,
    timeout: Duration,
    f: impl FnMut(&StatusReply) -> Option<T>,
) -> T {
    wait_status_from(c, what, timeout, async |id| ctl.status(id).await, f).await
}

/// The leader, if `s` shows a cluster ready for a kill: every running
/// witness follows the same leader in the same term and the leader says it
/// leads; the roles are the configured ones and no failover has happened;
/// the detector is healthy; every running witness sees the primary
/// writable and the standby streaming.
pub fn settled(s: &StatusReply, running: &[u64]) -> Option<u64> {
    let leader = s.leader_id.filter(|l| running.contains(l))?;
    let ok = running.iter().all(|id| {
        s.nodes.iter().any(|n| {
            let dbs_ok = n
                .databases
                .iter()
                .any(|d| d.site == "a" && d.reachable && d.in_recovery == Some(false))
                && n.databases.iter().any(|d| {
                    d.site == "b" && d.reachable && d.in_recovery == Some(true) && d.streaming
                });
            n.id == *id
                && n.leader_id == Some(leader)
                && n.term == s.term
                && (n.id != leader || n.role == Role::Leader as i32)
                && dbs_ok
        })
    });
    (ok && s.epoch == 0
        && s.primary_site == "a"
        && s.failover_in_progress.is_none()
        && s.assessment.starts_with("healthy"))
    .then_some(leader)
}

/// Waits until the cluster has looked [`settled`] under one leader for
/// [`STEADY`] without a break; returns that leader.
pub async fn wait_settled(c: &Cluster, ctl: &Control) -> u64 {
    let mut since: Option<(u64, Instant)> = None;
    let what = format!("the cluster to look settled for {STEADY:?} under one leader");
    let settled_under = wait_for(&what, SETTLE, async || {
        let ids = running(c);
        let mut now_settled = None;
        for id in &ids {
            if let Some(s) = ctl.status(*id).await {
                now_settled = settled(&s, &ids);
                break;
            }
        }
        since = match (now_settled, since) {
            (Some(l), Some((prev, t))) if l == prev => Some((l, t)),
            (Some(l), _) => Some((l, Instant::now())),
            (None, _) => None,
        };
        since.filter(|(_, t)| t.elapsed() >= STEADY).map(|(l, _)| l)
    })
    .await;
    settled_under.unwrap_or_else(|e| {
        c.dump_logs();
        panic!("{e:#}");
    })
}

/// Restarts witness `id`: kills it, waits until another witness leads,
/// starts it again (callers wait for the cluster to settle).
async fn restart_witness(c: &mut Cluster, ctl: &Control, id: u64) {
    c.node(id).kill9();
    wait_status(c, ctl, "a leader among the other witnesses", SETTLE, |s| {
        s.leader_id.filter(|l| *l != id)
    })
    .await;
    c.node(id).start();
}

/// Moves leadership until `want(leader)` holds on a settled cluster, by
/// restarting the leader; returns the leader.
///
/// To move it *to* site a, witness a is restarted first: openraft 0.9
/// lengthens a follower's election timeout by `smaller_log_timeout` (2 ×
/// `election_timeout_max`) once a vote reply showed it a longer log (as
/// happens to a loser of the first election), and clears that only when the
/// follower stands for election itself, which the longer timeout keeps it
/// from doing. A restart clears it. Without this, witness a won no election
/// in ten leader restarts in a row.
pub async fn steer_leader(
    c: &mut Cluster,
    ctl: &Control,
    what: &str,
    want: fn(u64) -> bool,
) -> u64 {
    for _ in 0..MAX_LEADER_MOVES {
        let leader = wait_settled(c, ctl).await;
        if want(leader) {
            return leader;
        }
        if want(SITE_A) {
            step(&format!(
                "witness {leader} leads; restart witness {SITE_A}, then {leader}, to move leadership ({what})"
            ));
            restart_witness(c, ctl, SITE_A).await;
            wait_settled(c, ctl).await;
        } else {
            step(&format!(
                "witness {leader} leads; restart it to move leadership ({what})"
            ));
        }
        restart_witness(c, ctl, leader).await;
    }
    c.dump_logs();
    panic!("leadership not moved ({what}) after {MAX_LEADER_MOVES} restarts");
}

/// Runs `attempt` every [`RETRY`] until it commits; returns when it
/// committed and after how many attempts. `attempt` takes the writer's
/// state (its session) and hands it back with the outcome.
pub async fn retry_until_committed<S, F>(
    mut state: S,
    attempt: impl Fn(S) -> F,
    deadline: Instant,
) -> Result<(Instant, u32), String>
where
    F: Future<Output = (S, Result<(), String>)>,
{
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let (next, outcome) = attempt(state).await;
        state = next;
        let err = match outcome {
            Ok(()) => return Ok((Instant::now(), attempts)),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            return Err(format!(
                "no write committed after {attempts} attempts; last error: {err}"
            ));
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Unix ms of a log line's leading RFC 3339 UTC timestamp
/// (`2026-11-27T10:11:12.345678Z ...`, tracing-subscriber's default).
pub fn log_line_ms(line: &str) -> Option<i64> {
    let ts = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (t.next()??, t.next()??, t.next()??);
    let ms: i64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
    // days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((((days * 24 + h) * 60 + min) * 60 + s) * 1000 + ms)
}

/// The restart in site a's witness log after `after_ms`: when its agent
/// decided to restart the crashed primary, when the start returned
/// (`pg_ctl start -w`; for MariaDB, `mariadbd` started read-only and made
/// writable), and what the agent said about it.
pub fn restart_times(log: &str, after_ms: i64) -> Option<(i64, i64, String)> {
    let mut lines = log
        .lines()
        .filter_map(|l| Some((log_line_ms(l)?, l)))
        .filter(|(at, _)| *at >= after_ms);
    let (decided, _) = lines.find(|(_, l)| l.contains("restarting it in place"))?;
    let (started, line) = lines.find(|(_, l)| l.contains("primary database started"))?;
    let said = line
        .split_once("primary database started")
        .map(|(_, d)| d.trim().to_string())
        .unwrap_or_default();
    Some((decided, started, said))
}

/// Waits for site a's agent to log the restart after `killed_wall` (it logs
/// the start once it returned, which can be after the writer got in);
/// returns the parts notice, start and rest (to `wrote_wall`) and what the
/// agent said.
pub async fn restart_parts(
    c: &Cluster,
    what: &str,
    killed_wall: i64,
    wrote_wall: i64,
) -> (Vec<i64>, String) {
    let log = &c.nodes[0].log;
    let logged = wait_for("site a's agent to log the restart", SETTLE, async || {
        restart_times(
            &std::fs::read_to_string(log).unwrap_or_default(),
            killed_wall,
        )
    })
    .await;
    let (decided, started, detail) = logged.unwrap_or_else(|e| {
        c.dump_logs();
        panic!("{what}: {e:#}");
    });
    (
        vec![
            decided - killed_wall,
            started - decided,
            wrote_wall - started,
        ],
        detail,
    )
}

pub fn step_done(f: &FailoverSummary, name: &str) -> Option<i64> {
    f.steps
        .iter()
        .find(|s| s.step == name)
        .map(|s| s.done_at_ms)
}

/// Waits for the failover to finish and splits a trial's total with its
/// record: detect, fence, promote, rest (see the benches' docs). Returns
/// the parts (`None` without a `fenced` and a `promoted` step) and a
/// detail line: the detector's `down_for_ms` and the first two steps' words.
pub async fn failover_parts(
    c: &Cluster,
    ctl: &Control,
    what: &str,
    killed_wall: i64,
    wrote_wall: i64,
) -> (Option<Vec<i64>>, String) {
    let f = wait_status(c, ctl, "the failover to b finished", SETTLE, |s| {
        s.last_failover.clone().filter(|f| !f.outcome.is_empty())
    })
    .await;
    assert_eq!(f.outcome, "completed", "{what}: {f:?}");
    let evidence: serde_json::Value = serde_json::from_str(&f.evidence_json).unwrap_or_default();
    let parts = step_done(&f, "fenced")
        .zip(step_done(&f, "promoted"))
        .map(|(fenced, promoted)| {
            vec![
                f.started_at_ms - killed_wall,
                fenced - f.started_at_ms,
                promoted - fenced,
                wrote_wall - promoted,
            ]
        });
    let detail = format!(
        "down_for {} ms; {}; {}",
        evidence["down_for_ms"],
        f.steps.first().map(|s| s.detail.as_str()).unwrap_or(""),
        f.steps.get(1).map(|s| s.detail.as_str()).unwrap_or("")
    );
    (parts, detail)
}

/// `name value + name value ...` of a trial's parts.
pub fn breakdown(names: &[&str], parts: Option<&Vec<i64>>) -> String {
    match parts {
        Some(p) => names
            .iter()
            .zip(p)
            .map(|(n, v)| format!("{n} {v:>5}"))
            .collect::<Vec<_>>()
            .join(" + "),
        None => "breakdown unavailable (no record / log lines)".into(),
    }
}

/// One summary line: p50, the `upper` percentile (99 or 95) and the max.
pub fn summary_line(id: &str, name: &str, mut v: Vec<i64>, upper: u32) -> String {
    v.sort_unstable();
    format!(
        "{id:>8} {name:<8} p50 {:>5} ms  p{upper} {:>5} ms  max {:>5} ms  (n={})",
        percentile(&v, 50.0),
        percentile(&v, f64::from(upper)),
        v.last().expect("at least one sample"),
        v.len()
    )
}

/// A target on the p50 of the totals.
pub struct Target {
    pub ms: u64,
    /// `p50 < ms` (else `p50 <= ms`).
    pub strict: bool,
}

/// The summary of one scenario: its title, the totals and each part, and
/// whether the p50 met the target.
pub fn summarize(
    id: &str,
    title: &str,
    part_names: &[&str],
    trials: &[Trial],
    upper: u32,
    target: Target,
) {
    println!("{id:>8}: {title}");
    let totals: Vec<i64> = trials.iter().map(|t| t.total).collect();
    println!("{}", summary_line(id, "total", totals.clone(), upper));
    for (i, name) in part_names.iter().enumerate() {
        let v: Vec<i64> = trials
            .iter()
            .filter_map(|t| t.parts.as_ref().map(|p| p[i]))
            .collect();
        if !v.is_empty() {
            println!("{}", summary_line(id, name, v, upper));
        }
    }
    let mut sorted = totals;
    sorted.sort_unstable();
    let p50 = percentile(&sorted, 50.0);
    let limit = target.ms as i64;
    let (op, met) = if target.strict {
        ("<", p50 < limit)
    } else {
        ("<=", p50 <= limit)
    };
    println!(
        "{id:>8} target   p50 {op} {} ms: {} (p50 {p50} ms)",
        target.ms,
        if met { "met" } else { "MISSED" }
    );
}
