//! The failure detector (DESIGN rule 3): the primary database is down only
//! when a majority of witnesses have fresh observations saying so, without a
//! break, for long enough; the standby's replication view corroborates, and
//! vetoes only what the primary's own site does not see; and the
//! guards of rules 5 and 7 decide whether an automatic failover may start.
//!
//! Pure: the leader feeds it the latest report of each witness with the
//! time it received it (its own monotonic clock, ms) and the current time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::failover::{Evidence, Trigger, WitnessVote};
use crate::observe::{PgObservation, Reachability};
use crate::state::ClusterState;
use crate::topology::{NodeId, SiteId};

/// What to do when the primary database dies but its site agent is alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrashPolicy {
    /// Let the agent restart it in place; fail over only if it is not back
    /// within `restart_budget`.
    Restart,
    /// Fail over as soon as it is down for `down_after`.
    Failover,
}

/// Replication mode of the database pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicationMode {
    /// Asynchronous streaming (the guide's choice): a failover may lose the
    /// WAL the standby had not received; bounded by `max_lag`.
    Async,
    /// Synchronous: a commit is acknowledged only once the standby has it.
    Sync,
}

/// Detector settings (see docs/configuration.md, `[failover]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetectorConfig {
    /// A quorum must see the primary down, without a break, this long.
    pub down_after_ms: u64,
    /// A witness report older than this is stale and does not vote.
    pub report_ttl_ms: u64,
    /// Crash policy when the primary's site agent is alive.
    pub on_primary_crash: CrashPolicy,
    /// With `Restart`: how long the agent gets to bring it back.
    pub restart_budget_ms: u64,
    /// After an automatic failover, for this long ...
    pub cooldown_ms: u64,
    /// ... the primary must be down this long (not `down_after`) before the
    /// next automatic failover, so flapping cannot ping-pong, while a
    /// primary that is down for good is still failed over.
    pub cooldown_down_after_ms: u64,
    /// Refuse a standby whose known lag is larger (bytes of WAL).
    pub max_lag_bytes: u64,
    /// Refuse a standby whose replay lag is larger (seconds).
    pub max_lag_seconds: f64,
    /// Replication mode in force.
    pub replication: ReplicationMode,
}

/// The latest report of one witness, as the leader holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WitnessReport {
    /// When the leader received it (leader monotonic ms).
    pub received_at_ms: u64,
    /// What the witness saw of each database site.
    pub dbs: BTreeMap<SiteId, PgObservation>,
    /// The witness's memory: for each site, the last WAL position it saw
    /// that database write at, and how long before the report. A leader
    /// that took office after the primary went dark learns from this how
    /// far the primary had got, so the lag guard still holds.
    #[serde(default)]
    pub last_writable: BTreeMap<SiteId, LastWritable>,
    /// The witness's memory: for each site it finds unreachable, for how
    /// long without a break as of the report (ms, from the start of its
    /// first failed probe). A leader that took office during an outage
    /// counts the outage from when the witnesses saw it begin, not from
    /// its own first tick: a leader lost with the primary's site costs the
    /// election, not another `down_after` (the isolation bench).
    #[serde(default)]
    pub unreachable_for: BTreeMap<SiteId, u64>,
}

/// A witness's last sighting of a database as a writable primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastWritable {
    /// `pg_current_wal_lsn()` then.
    pub lsn: u64,
    /// How long before the report it was seen, in ms.
    pub age_ms: u64,
}

/// The time, as the detector needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Leader monotonic clock, ms: for report ages and down durations.
    pub mono_ms: u64,
    /// Wall clock, Unix ms: for the cooldown, which spans leaders.
    pub wall_ms: i64,
}

/// One witness's opinion of the primary.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Vote {
    Up,
    Down(String),
    Stale(u64),
    NoReport,
}

/// What the detector concluded this tick.
#[derive(Clone, Debug, PartialEq)]
pub enum Assessment {
    /// Roles not recorded yet, or no standby to fail over to.
    NotConfigured,
    /// A failover is in progress; the step machine drives it.
    FailoverInProgress,
    /// The primary is fine (or not enough witnesses say otherwise).
    Healthy {
        /// Why it is considered healthy, for status output.
        why: String,
    },
    /// A quorum sees it down, but not yet for long enough.
    Suspect {
        /// For how long so far.
        down_for_ms: u64,
        /// How long is needed.
        needed_ms: u64,
        /// Which rule sets `needed_ms` (down_after, restart budget, cooldown).
        rule: &'static str,
    },
    /// It is down for long enough, but a guard forbids an automatic
    /// failover. Logged and shown in status; nothing happens.
    Blocked {
        /// The guard and its figures.
        reason: String,
        /// What was seen.
        evidence: Evidence,
    },
    /// Fail over from `from` to `to` now.
    FailOver {
        /// Old primary site.
        from: SiteId,
        /// Standby to promote.
        to: SiteId,
        /// In words.
        reason: String,
        /// What was seen.
        evidence: Evidence,
    },
}

/// The detector's memory between ticks. Reset whenever the primary changes.
#[derive(Clone, Debug, Default)]
pub struct Detector {
    primary: Option<SiteId>,
    /// Since when (leader ms) a quorum has seen the primary down, unbroken.
    down_since_ms: Option<u64>,
    /// Last WAL position seen on the primary, and when (leader ms).
    primary_last_lsn: Option<(u64, u64)>,
}

impl Detector {
    /// Assesses the primary at `now_ms`. `witnesses` maps every voter to its
    /// site; `reports` holds the latest report of those that sent one.
    pub fn assess(
        &mut self,
        now: Now,
        state: &ClusterState,
        witnesses: &BTreeMap<NodeId, SiteId>,
        reports: &BTreeMap<NodeId, WitnessReport>,
        cfg: &DetectorConfig,
    ) -> Assessment {
        let now_ms = now.mono_ms;
        let Some(db) = &state.db else {
            return Assessment::NotConfigured;
        };
        if state.failover.is_some() {
            self.down_since_ms = None;
            return Assessment::FailoverInProgress;
        }
        if self.primary.as_ref() != Some(&db.primary) {
            *self = Detector {
                primary: Some(db.primary.clone()),
                ..Default::default()
            };
        }
        let primary = &db.primary;
        let fresh =
            |r: &WitnessReport| now_ms.saturating_sub(r.received_at_ms) <= cfg.report_ttl_ms;

        // Each witness's vote on the primary.
        let mut votes = Vec::new();
        let mut down = 0usize;
        for r in reports.values().filter(|r| fresh(r)) {
            if let Some(seen) = r.last_writable.get(primary) {
                let at = r.received_at_ms.saturating_sub(seen.age_ms);
                if self.primary_last_lsn.is_none_or(|(l, _)| seen.lsn > l) {
                    self.primary_last_lsn = Some((seen.lsn, at));
                }
            }
        }
        for id in witnesses.keys() {
            let vote = match reports.get(id) {
                None => Vote::NoReport,
                Some(r) if !fresh(r) => Vote::Stale(now_ms.saturating_sub(r.received_at_ms)),
                Some(r) => match r.dbs.get(primary) {
                    None => Vote::NoReport,
                    Some(o) => match &o.reachability {
                        Reachability::Up if o.in_recovery == Some(false) => {
                            if let Some(lsn) = o.current_lsn {
                                if self.primary_last_lsn.is_none_or(|(l, _)| lsn >= l) {
                                    self.primary_last_lsn = Some((lsn, r.received_at_ms));
                                }
                            }
                            Vote::Up
                        }
                        Reachability::Up => {
                            Vote::Down("answers but is in recovery (not writable)".into())
                        }
                        Reachability::Down { class, .. } => Vote::Down(class.as_str().to_string()),
                    },
                },
            };
            if matches!(vote, Vote::Down(_)) {
                down += 1;
            }
            votes.push((
                *id,
                vote,
                reports
                    .get(id)
                    .map(|r| now_ms.saturating_sub(r.received_at_ms)),
            ));
        }
        let quorum = witnesses.len() / 2 + 1;

        // The standby's own view: still streaming from the primary, with
        // recent messages, means the primary is alive whatever the probes
        // of the other sites say (they may be cut off from it). Not against
        // the primary's own site, though: its witness probes over no cut
        // link, and a hung postmaster (no new connection) whose WAL sender
        // still streams is down for every client (DESIGN rule 3).
        let own_site_sees_down = votes
            .iter()
            .any(|(id, v, _)| witnesses.get(id) == Some(primary) && matches!(v, Vote::Down(_)));
        let standby_obs = best_observation(witnesses, reports, &db.standby, now_ms, cfg);
        let standby_streams = !own_site_sees_down
            && standby_obs.as_ref().is_some_and(|o| {
                o.is_streaming()
                    && o.wal_receiver
                        .as_ref()
                        .and_then(|w| w.last_msg_age_ms)
                        .is_some_and(|age| age < cfg.down_after_ms)
            });

        let evidence = |this: &Detector, down_for_ms: u64| {
            let (primary_last_lsn, seen_ago) = match this.primary_last_lsn {
                Some((l, at)) => (Some(l), Some(now_ms.saturating_sub(at))),
                None => (None, None),
            };
            let standby_receive_lsn = standby_obs.as_ref().and_then(|o| o.receive_lsn);
            Evidence {
                votes: votes
                    .iter()
                    .map(|(id, v, age)| WitnessVote {
                        witness: *id,
                        saw: match v {
                            Vote::Up => "up".into(),
                            Vote::Down(why) => format!("down ({why})"),
                            Vote::Stale(age) => format!("stale ({age} ms old)"),
                            Vote::NoReport => "no report".into(),
                        },
                        report_age_ms: *age,
                    })
                    .collect(),
                down_for_ms,
                primary_agent_alive: primary_agent_alive(witnesses, reports, primary, now_ms, cfg),
                primary_last_lsn,
                primary_last_seen_ms_ago: seen_ago,
                standby_receive_lsn,
                standby_replay_lsn: standby_obs.as_ref().and_then(|o| o.replay_lsn),
                known_lag_bytes: match (primary_last_lsn, standby_receive_lsn) {
                    (Some(p), Some(s)) => Some(p.saturating_sub(s)),
                    _ => None,
                },
                replication: match cfg.replication {
                    ReplicationMode::Async => "async".into(),
                    ReplicationMode::Sync => "sync".into(),
                },
            }
        };

        if down < quorum || standby_streams {
            self.down_since_ms = None;
            let why = if down < quorum {
                format!(
                    "{down} of {} witnesses see the primary down; {quorum} needed",
                    witnesses.len()
                )
            } else {
                "the standby still streams from the primary".to_string()
            };
            return Assessment::Healthy { why };
        }
        let own_since = *self.down_since_ms.get_or_insert(now_ms);
        let since = own_since.min(reported_down_since(
            witnesses, reports, primary, now_ms, cfg, quorum,
        ));
        let down_for_ms = now_ms - since;

        let agent_alive = primary_agent_alive(witnesses, reports, primary, now_ms, cfg);
        let (mut needed_ms, mut rule) = match (agent_alive, cfg.on_primary_crash) {
            (true, CrashPolicy::Restart) => (
                cfg.restart_budget_ms.max(cfg.down_after_ms),
                "restart_budget",
            ),
            _ => (cfg.down_after_ms, "down_after"),
        };
        if in_cooldown(state, now.wall_ms, cfg) && cfg.cooldown_down_after_ms > needed_ms {
            needed_ms = cfg.cooldown_down_after_ms;
            rule = "cooldown_down_after";
        }
        if down_for_ms < needed_ms {
            return Assessment::Suspect {
                down_for_ms,
                needed_ms,
                rule,
            };
        }

        let ev = evidence(self, down_for_ms);
        // Guards (rule 5).
        if db.standby_needs_rejoin {
            return Assessment::Blocked {
                reason: format!(
                    "standby {} has not rejoined since the last failover",
                    db.standby
                ),
                evidence: ev,
            };
        }
        let Some(standby) = standby_obs else {
            return Assessment::Blocked {
                reason: format!("no fresh observation of standby {}", db.standby),
                evidence: ev,
            };
        };
        if !standby.reachability.is_up() || standby.in_recovery != Some(true) {
            return Assessment::Blocked {
                reason: format!(
                    "standby {} is not a reachable standby ({:?}, in_recovery {:?})",
                    db.standby, standby.reachability, standby.in_recovery
                ),
                evidence: ev,
            };
        }
        if cfg.replication == ReplicationMode::Async {
            if let Some(lag) = ev.known_lag_bytes.filter(|l| *l > cfg.max_lag_bytes) {
                return Assessment::Blocked {
                    reason: format!("standby {} lags {lag} bytes behind the last known primary position; max_lag_bytes is {}", db.standby, cfg.max_lag_bytes),
                    evidence: ev,
                };
            }
            if let Some(secs) = standby
                .replay_lag_seconds
                .filter(|s| *s > cfg.max_lag_seconds)
            {
                return Assessment::Blocked {
                    reason: format!(
                        "standby {} replay lags {secs:.1} s; max_lag_seconds is {}",
                        db.standby, cfg.max_lag_seconds
                    ),
                    evidence: ev,
                };
            }
        }
        let reason = format!(
            "{down} of {} witnesses have seen primary {} down for {down_for_ms} ms (rule {rule}: {needed_ms} ms); its site agent is {}",
            witnesses.len(),
            primary,
            if agent_alive { "alive" } else { "unreachable" }
        );
        Assessment::FailOver {
            from: primary.clone(),
            to: db.standby.clone(),
            reason,
            evidence: ev,
        }
    }
}

/// The freshest observation of `site`'s database, preferring the witness at
/// that site (it sees its own database without crossing the WAN).
fn best_observation(
    witnesses: &BTreeMap<NodeId, SiteId>,
    reports: &BTreeMap<NodeId, WitnessReport>,
    site: &SiteId,
    now_ms: u64,
    cfg: &DetectorConfig,
) -> Option<PgObservation> {
    let fresh: Vec<(NodeId, &WitnessReport)> = reports
        .iter()
        .filter(|(_, r)| now_ms.saturating_sub(r.received_at_ms) <= cfg.report_ttl_ms)
        .map(|(id, r)| (*id, r))
        .collect();
    let local = fresh
        .iter()
        .find(|(id, _)| witnesses.get(id) == Some(site))
        .and_then(|(_, r)| r.dbs.get(site));
    local
        .or_else(|| {
            fresh
                .iter()
                .filter_map(|(_, r)| r.dbs.get(site))
                .find(|o| o.reachability.is_up())
        })
        .cloned()
}

/// Since when (leader ms) a quorum of witnesses has found `primary`
/// unreachable without a break, by their own reports: each fresh report's
/// `unreachable_for` dated back from when it arrived (a report's transit
/// only makes that later, never earlier); the quorum-th earliest of those
/// dates is when the quorum was complete. `now_ms` when the reports do not
/// make a quorum (then only the leader's own count holds).
fn reported_down_since(
    witnesses: &BTreeMap<NodeId, SiteId>,
    reports: &BTreeMap<NodeId, WitnessReport>,
    primary: &SiteId,
    now_ms: u64,
    cfg: &DetectorConfig,
    quorum: usize,
) -> u64 {
    let mut since: Vec<u64> = witnesses
        .keys()
        .filter_map(|id| reports.get(id))
        .filter(|r| now_ms.saturating_sub(r.received_at_ms) <= cfg.report_ttl_ms)
        .filter(|r| r.dbs.get(primary).is_some_and(|o| !o.reachability.is_up()))
        .filter_map(|r| {
            r.unreachable_for
                .get(primary)
                .map(|d| r.received_at_ms.saturating_sub(*d))
        })
        .collect();
    if since.len() < quorum || quorum == 0 {
        return now_ms;
    }
    since.sort_unstable();
    since[quorum - 1].min(now_ms)
}

/// Whether the witness at the primary's site reports (its agent is alive).
fn primary_agent_alive(
    witnesses: &BTreeMap<NodeId, SiteId>,
    reports: &BTreeMap<NodeId, WitnessReport>,
    primary: &SiteId,
    now_ms: u64,
    cfg: &DetectorConfig,
) -> bool {
    witnesses
        .iter()
        .filter(|(_, s)| *s == primary)
        .any(|(id, _)| {
            reports
                .get(id)
                .is_some_and(|r| now_ms.saturating_sub(r.received_at_ms) <= cfg.report_ttl_ms)
        })
}

/// Whether the last failover was automatic and finished less than
/// `cooldown` ago. Uses wall-clock time: the record outlives any one leader
/// (and its monotonic clock), and a cooldown of minutes does not care about
/// clock skew of milliseconds.
fn in_cooldown(state: &ClusterState, wall_now_ms: i64, cfg: &DetectorConfig) -> bool {
    let Some(last) = state.last_failover() else {
        return false;
    };
    if last.trigger != Trigger::Automatic {
        return false;
    }
    match last.finished_at_ms {
        Some(finished) => wall_now_ms.saturating_sub(finished) < cfg.cooldown_ms as i64,
        None => false,
    }
}

#[cfg(test)]
mod tests;
