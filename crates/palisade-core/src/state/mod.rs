//! The replicated cluster state: what every witness agrees on, built by
//! applying committed [`Command`]s in log order.
//!
//! It holds the *intent* (which site should be primary, which failover is
//! under way and at which step); what each site really looks like is
//! observed separately and never replicated.

pub mod requests;
pub mod retention;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandResult};
use crate::failover::{Failover, Outcome, Step};
use crate::topology::SiteId;
use requests::{parse_request_id, Lookup, RequestLog, RequestRecord};

/// Most pause and resume events kept in [`ClusterState::maintenance_log`].
pub const MAX_MAINTENANCE_EVENTS: usize = 1000;

/// One operator note in the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Raft log index of the command that added it.
    pub log_index: u64,
    /// Leader's wall clock when it accepted the note (Unix ms).
    pub at_unix_ms: i64,
    /// Who wrote it.
    pub author: String,
    /// The note.
    pub text: String,
    /// The request that added it; `None` for notes from clients that sent
    /// no request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// A pause or resume, for the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceEvent {
    /// Raft log index of the command.
    pub log_index: u64,
    /// `paused` or `resumed`.
    pub kind: String,
    /// Who paused or resumed (`expiry` when the leader ended a pause on
    /// time).
    pub by: String,
    /// Leader wall clock when accepted, Unix ms.
    pub at_ms: i64,
    /// A pause's end; `None`: until resumed (and for a resume).
    pub until_ms: Option<i64>,
    /// A pause's reason (may be empty).
    pub reason: String,
    /// The request that did it; `None` without a request id.
    pub request_id: Option<String>,
}

/// Which database site holds which role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbRoles {
    /// The site whose database takes writes.
    pub primary: SiteId,
    /// The site whose database streams from it and can be promoted.
    pub standby: SiteId,
    /// True after a failover until the old primary has been rebuilt as a
    /// standby: until then it stays fenced and cannot be promoted.
    pub standby_needs_rejoin: bool,
}

/// Maintenance mode: automatic failover is off (the guide's "disable
/// service monitoring" during a DR test).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Maintenance {
    /// Who paused.
    pub by: String,
    /// Why.
    pub reason: String,
    /// When (leader wall clock, Unix ms).
    pub since_ms: i64,
    /// When it ends on its own; `None`: until resumed.
    pub until_ms: Option<i64>,
}

impl Maintenance {
    /// Whether it is still in force at `now_ms` (leader wall clock).
    pub fn in_force(&self, now_ms: i64) -> bool {
        self.until_ms.is_none_or(|u| now_ms < u)
    }
}

/// One phase of a recorded drill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillPhase {
    /// The phase (checkpoint, pre-reboot, check, failover, ...).
    pub name: String,
    /// `passed`, `failed: ...`, `skipped`.
    pub outcome: String,
    /// How long it took.
    pub duration_ms: u64,
}

/// A DR drill run by an operator, kept in the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRecord {
    /// The plan's name.
    pub name: String,
    /// Who ran it.
    pub who: String,
    /// Client wall clock, Unix ms.
    pub started_at_ms: i64,
    /// Client wall clock, Unix ms.
    pub finished_at_ms: i64,
    /// `passed` or `failed: ...`.
    pub outcome: String,
    /// Its phases, in order.
    pub phases: Vec<DrillPhase>,
}

/// What a site's agent must make its database be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum DesiredRole {
    /// Writable, while its lease is confirmed, under this epoch.
    Primary {
        /// The epoch in force.
        epoch: u64,
    },
    /// A streaming standby (read-only by construction).
    Standby,
    /// Unable to take writes (stopped).
    Fenced,
    /// The old primary after a failover: stopped, and to be rebuilt as a
    /// standby of the current primary (`pg_rewind`, else a base backup).
    /// Never writable; it becomes `Standby` once the leader sees it stream.
    Rejoin {
        /// The epoch in force.
        epoch: u64,
    },
}

/// Everything the cluster agrees on. Serialized whole into snapshots, so
/// fields are only added, with serde defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Operator notes, in log order.
    #[serde(default)]
    pub journal: Vec<JournalEntry>,
    /// Database roles; `None` until the leader records the configured ones.
    #[serde(default)]
    pub db: Option<DbRoles>,
    /// The fencing token: raised by every failover, carried by every action.
    #[serde(default)]
    pub epoch: u64,
    /// The failover under way, if any.
    #[serde(default)]
    pub failover: Option<Failover>,
    /// Finished failovers, oldest first.
    #[serde(default)]
    pub history: Vec<Failover>,
    /// Maintenance mode, when on.
    #[serde(default)]
    pub maintenance: Option<Maintenance>,
    /// Recorded DR drills, oldest first.
    #[serde(default)]
    pub drills: Vec<DrillRecord>,
    /// Old primaries that rejoined as standbys, oldest first.
    #[serde(default)]
    pub rejoins: Vec<RejoinRecord>,
    /// The operator requests applied lately, for exactly-once retries.
    #[serde(default)]
    pub requests: RequestLog,
    /// Pauses and resumes, oldest first, at most
    /// [`MAX_MAINTENANCE_EVENTS`].
    #[serde(default)]
    pub maintenance_log: Vec<MaintenanceEvent>,
    /// The request that began each operator operation, by epoch (kept as
    /// long as the history).
    #[serde(default)]
    pub operation_requests: BTreeMap<u64, String>,
}

/// An old primary rebuilt as a streaming standby after a failover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejoinRecord {
    /// The site that rejoined.
    pub site: SiteId,
    /// The epoch it rejoined in.
    pub epoch: u64,
    /// When the leader saw it stream (Unix ms).
    pub at_ms: i64,
    /// The primary it streams from.
    pub primary: SiteId,
}

fn rejected(reason: String) -> CommandResult {
    CommandResult::Rejected { reason }
}

impl ClusterState {
    /// Applies a committed command found at `log_index`. Deterministic: the
    /// same commands in the same order give the same state on every witness.
    pub fn apply(&mut self, log_index: u64, command: &Command) -> CommandResult {
        self.apply_as(log_index, command, None)
    }

    /// Applies an operator request once per id (see [`requests`]).
    fn apply_request(
        &mut self,
        log_index: u64,
        id: &str,
        at_ms: i64,
        refuse_if_paused: bool,
        detail: &str,
        command: &Command,
    ) -> CommandResult {
        let Some(kind) = command.request_kind() else {
            return rejected(format!("request {id}: not an operator request"));
        };
        let issued_ms = match parse_request_id(id) {
            Ok(ms) => ms,
            Err(e) => return rejected(e.to_string()),
        };
        match self.requests.lookup(id, issued_ms, at_ms) {
            Lookup::Seen(first) if first.kind != kind => {
                return rejected(format!(
                    "request id {id} was already used for another request ({} by {}, log index \
                     {}); a retry must repeat the same command, and a new request needs a new id",
                    first.kind, first.who, first.log_index
                ));
            }
            Lookup::Seen(first) => {
                return CommandResult::Duplicate {
                    record: Box::new(first.clone()),
                }
            }
            Lookup::TooOld(reason) => return rejected(reason),
            Lookup::New => {}
        }
        let result = match self.paused(at_ms) {
            Some(m) if refuse_if_paused => rejected(format!(
                "the cluster is already paused by {} since {}{}{}; pause --force replaces \
                 that pause",
                m.by,
                requests::rfc3339(m.since_ms),
                m.until_ms
                    .map(|u| format!(" until {}", requests::rfc3339(u)))
                    .unwrap_or_else(|| " until resumed".into()),
                if m.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", m.reason)
                }
            )),
            _ => self.apply_as(log_index, command, Some(id)),
        };
        let epoch = match (command, &result) {
            (Command::BeginFailover(f), CommandResult::Applied) => {
                self.operation_requests.insert(f.epoch, id.to_string());
                Some(f.epoch)
            }
            _ => None,
        };
        self.requests.remember(
            RequestRecord {
                id: id.to_string(),
                issued_ms,
                kind: kind.to_string(),
                who: command.requested_by(),
                at_ms,
                log_index,
                result: result.clone(),
                epoch,
                summary: command.summary(),
                detail: detail.to_string(),
            },
            at_ms,
        );
        result
    }

    fn log_maintenance(&mut self, event: MaintenanceEvent) {
        self.maintenance_log.push(event);
        if self.maintenance_log.len() > MAX_MAINTENANCE_EVENTS {
            let excess = self.maintenance_log.len() - MAX_MAINTENANCE_EVENTS;
            self.maintenance_log.drain(..excess);
        }
    }

    /// Applies `command`, done for request `request` (none: not an
    /// operator request, or a client that sent no id).
    fn apply_as(
        &mut self,
        log_index: u64,
        command: &Command,
        request: Option<&str>,
    ) -> CommandResult {
        match command {
            Command::Requested {
                id,
                at_ms,
                refuse_if_paused,
                detail,
                command,
            } => {
                if request.is_some() {
                    return rejected(format!("request {id} is nested in another request"));
                }
                self.apply_request(log_index, id, *at_ms, *refuse_if_paused, detail, command)
            }
            Command::Annotate {
                at_unix_ms,
                author,
                text,
            } => {
                self.journal.push(JournalEntry {
                    log_index,
                    at_unix_ms: *at_unix_ms,
                    author: author.clone(),
                    text: text.clone(),
                    request_id: request.map(str::to_string),
                });
                CommandResult::Annotated { log_index }
            }
            Command::InitDatabase { primary, standby } => {
                if self.db.is_some() {
                    return rejected("database roles already recorded".into());
                }
                self.db = Some(DbRoles {
                    primary: primary.clone(),
                    standby: standby.clone(),
                    standby_needs_rejoin: false,
                });
                CommandResult::Applied
            }
            Command::BeginFailover(f) => {
                if let Some(cur) = &self.failover {
                    return rejected(format!(
                        "failover of epoch {} is still in progress",
                        cur.epoch
                    ));
                }
                if f.epoch != self.epoch + 1 {
                    return rejected(format!(
                        "epoch {} is not the next epoch ({})",
                        f.epoch,
                        self.epoch + 1
                    ));
                }
                let Some(db) = &self.db else {
                    return rejected("database roles are not recorded yet".into());
                };
                if db.primary != f.from || db.standby != f.to {
                    return rejected(format!(
                        "roles changed: primary is {} and standby {}, not {} and {}",
                        db.primary, db.standby, f.from, f.to
                    ));
                }
                if db.standby_needs_rejoin {
                    return rejected(format!(
                        "standby {} has not rejoined since the last failover",
                        db.standby
                    ));
                }
                if let Some(m) = self
                    .maintenance
                    .as_ref()
                    .filter(|m| m.in_force(f.started_at_ms))
                {
                    return rejected(format!(
                        "the cluster is paused (maintenance by {}); resume it first",
                        m.by
                    ));
                }
                self.epoch = f.epoch;
                self.failover = Some((**f).clone());
                CommandResult::Applied
            }
            Command::StepDone { epoch, record } => {
                let Some(f) = self.failover.as_mut() else {
                    return rejected(format!(
                        "no failover in progress for step {}",
                        record.step.name()
                    ));
                };
                if f.epoch != *epoch {
                    return rejected(format!(
                        "step of epoch {epoch}, but epoch {} is in progress",
                        f.epoch
                    ));
                }
                if f.next_step() != Some(record.step) {
                    return rejected(format!(
                        "step {} is not next (next is {})",
                        record.step.name(),
                        f.next_step().map(Step::name).unwrap_or("none")
                    ));
                }
                f.steps.push(record.clone());
                if record.step == Step::Promoted {
                    // From here on the new primary is the primary: an abort
                    // is no longer possible, only completion.
                    self.db = Some(DbRoles {
                        primary: f.to.clone(),
                        standby: f.from.clone(),
                        standby_needs_rejoin: true,
                    });
                }
                CommandResult::Applied
            }
            Command::StandbyRejoined { site, epoch, at_ms } => {
                if *epoch != self.epoch || self.failover.is_some() {
                    return rejected(format!(
                        "rejoin of epoch {epoch} while epoch {} is current or a failover runs",
                        self.epoch
                    ));
                }
                match self.db.as_mut() {
                    Some(db) if &db.standby == site => {
                        if !db.standby_needs_rejoin {
                            return rejected(format!("site {site} has already rejoined"));
                        }
                        db.standby_needs_rejoin = false;
                        self.rejoins.push(RejoinRecord {
                            site: site.clone(),
                            epoch: *epoch,
                            at_ms: *at_ms,
                            primary: db.primary.clone(),
                        });
                        CommandResult::Applied
                    }
                    _ => rejected(format!("site {site} is not the standby")),
                }
            }
            Command::Pause {
                by,
                reason,
                at_ms,
                until_ms,
            } => {
                let since_ms = match &self.maintenance {
                    Some(m) if m.in_force(*at_ms) => m.since_ms,
                    _ => *at_ms,
                };
                self.maintenance = Some(Maintenance {
                    by: by.clone(),
                    reason: reason.clone(),
                    since_ms,
                    until_ms: *until_ms,
                });
                self.log_maintenance(MaintenanceEvent {
                    log_index,
                    kind: "paused".into(),
                    by: by.clone(),
                    at_ms: *at_ms,
                    until_ms: *until_ms,
                    reason: reason.clone(),
                    request_id: request.map(str::to_string),
                });
                CommandResult::Applied
            }
            Command::Resume { by, at_ms } => {
                if self.maintenance.take().is_none() {
                    return rejected("the cluster is not paused".into());
                }
                self.log_maintenance(MaintenanceEvent {
                    log_index,
                    kind: "resumed".into(),
                    by: by.clone(),
                    at_ms: *at_ms,
                    until_ms: None,
                    reason: String::new(),
                    request_id: request.map(str::to_string),
                });
                CommandResult::Applied
            }
            Command::RecordDrill(d) => {
                self.drills.push((**d).clone());
                CommandResult::Applied
            }
            Command::Prune { retention, at_ms } => {
                self.prune(retention, *at_ms);
                CommandResult::Applied
            }
            Command::FinishFailover {
                epoch,
                outcome,
                at_ms,
            } => {
                let Some(f) = self.failover.as_ref() else {
                    return rejected(format!("no failover in progress to finish (epoch {epoch})"));
                };
                if f.epoch != *epoch {
                    return rejected(format!(
                        "finish of epoch {epoch}, but epoch {} is in progress",
                        f.epoch
                    ));
                }
                let promoted = f.is_done(Step::Promoted);
                match outcome {
                    Outcome::Aborted { .. } if promoted => {
                        return rejected("cannot abort: the standby is already promoted".into());
                    }
                    Outcome::Completed | Outcome::CompletedWithFailedChecks { .. }
                        if f.next_step().is_some() =>
                    {
                        return rejected(format!(
                            "cannot complete: step {} is not done",
                            f.next_step().map(Step::name).unwrap_or("?")
                        ));
                    }
                    _ => {}
                }
                let mut f = self.failover.take().expect("checked above");
                f.outcome = Some(outcome.clone());
                f.finished_at_ms = Some(*at_ms);
                self.history.push(f);
                CommandResult::Applied
            }
        }
    }

    /// What `site`'s database should be now; `None` for a site without a
    /// database (the tie-breaker) or before the roles are recorded.
    pub fn desired_role(&self, site: &SiteId) -> Option<DesiredRole> {
        let db = self.db.as_ref()?;
        if let Some(f) = &self.failover {
            if &f.from == site {
                return Some(DesiredRole::Fenced);
            }
            if &f.to == site {
                return Some(if f.is_done(Step::Promoted) {
                    DesiredRole::Primary { epoch: f.epoch }
                } else {
                    DesiredRole::Standby
                });
            }
            return None;
        }
        if &db.primary == site {
            Some(DesiredRole::Primary { epoch: self.epoch })
        } else if &db.standby == site {
            Some(if db.standby_needs_rejoin {
                DesiredRole::Rejoin { epoch: self.epoch }
            } else {
                DesiredRole::Standby
            })
        } else {
            None
        }
    }

    /// Whether `site`'s app should run jobs (`monitorsEnabled`): only the
    /// primary site's, and during a failover only once the app-flipped step
    /// is recorded (the old site's is switched off before the new site's is
    /// switched on, so both are off in between). `None` for a site without a
    /// database role.
    pub fn desired_monitors(&self, site: &SiteId) -> Option<bool> {
        let role = self.desired_role(site)?;
        let primary = matches!(role, DesiredRole::Primary { .. });
        Some(match &self.failover {
            Some(f) => primary && f.is_done(Step::AppFlipped),
            None => primary,
        })
    }

    /// The maintenance in force at `now_ms`, if any (an expired one still
    /// recorded is not in force).
    pub fn paused(&self, now_ms: i64) -> Option<&Maintenance> {
        self.maintenance.as_ref().filter(|m| m.in_force(now_ms))
    }

    /// The last finished failover, if any.
    pub fn last_failover(&self) -> Option<&Failover> {
        self.history.last()
    }
}

#[cfg(test)]
mod tests;
