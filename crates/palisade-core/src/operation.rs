//! Operator operations (switchover, failover, failback): whether the leader
//! may begin one now, and on what evidence. Pure: the leader passes the
//! replicated state, the witnesses' latest reports and the time.
//!
//! A planned handover (switchover, failback) needs both databases up, the
//! target streaming and close enough behind that it can replay the old
//! primary's final WAL within the catch-up bound; the step machine then
//! proves it did before promoting. An operator failover needs only a
//! healthy standby, and refuses one that lags beyond `max_lag` unless the
//! operator forces it *and* accepts the loss, which is then stated.

use std::collections::BTreeMap;

use crate::command::{check_text, MAX_AUTHOR_BYTES};
use crate::detector::{DetectorConfig, Now, ReplicationMode, WitnessReport};
use crate::failover::{Evidence, Kind, WitnessVote};
use crate::observe::{format_lsn, PgObservation, Reachability};
use crate::state::ClusterState;
use crate::topology::{NodeId, SiteId};

/// What an operator asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorRequest {
    /// Failover, switchover or failback.
    pub kind: Kind,
    /// The site to promote; `None` for a failback (the configured primary).
    pub to: Option<SiteId>,
    /// The client's identity.
    pub who: String,
    /// Failover only: override the lag guard ...
    pub force: bool,
    /// ... and accept the loss. Both are needed.
    pub accept_data_loss: bool,
}

/// Why an operation is refused: the request itself is wrong, or the cluster
/// is not in a state that allows it now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A request field is wrong (unknown site, empty identity).
    #[error("{0}")]
    InvalidArgument(String),
    /// Not now (operation in progress, paused, unhealthy or lagging target).
    #[error("{0}")]
    FailedPrecondition(String),
}

/// An operation the leader may begin.
#[derive(Clone, Debug, PartialEq)]
pub struct Approved {
    /// Site of the current primary.
    pub from: SiteId,
    /// Site to promote.
    pub to: SiteId,
    /// Why, in words, for the record.
    pub reason: String,
    /// What the decision rested on.
    pub evidence: Evidence,
    /// For a failover: what a promotion may lose, in words; empty otherwise.
    pub data_loss_bound: String,
}

/// The facts the check needs besides the request.
pub struct Facts<'a> {
    /// The replicated state.
    pub state: &'a ClusterState,
    /// Sites that have a database.
    pub db_sites: &'a [SiteId],
    /// The configured primary site (failback's target).
    pub home: &'a SiteId,
    /// Every witness's site.
    pub witnesses: &'a BTreeMap<NodeId, SiteId>,
    /// The latest report of each witness that sent one.
    pub reports: &'a BTreeMap<NodeId, WitnessReport>,
    /// Now.
    pub now: Now,
    /// Lag bounds, report freshness, replication mode.
    pub cfg: &'a DetectorConfig,
}

fn precondition(s: String) -> Refusal {
    Refusal::FailedPrecondition(s)
}

/// Decides whether `req` may begin now.
pub fn check(req: &OperatorRequest, facts: &Facts<'_>) -> Result<Approved, Refusal> {
    check_text("who", &req.who, MAX_AUTHOR_BYTES)
        .map_err(|e| Refusal::InvalidArgument(e.to_string()))?;
    if req.kind != Kind::Failover && (req.force || req.accept_data_loss) {
        return Err(Refusal::InvalidArgument(format!(
            "force and accept_data_loss apply to a failover only, not a {}",
            req.kind.name()
        )));
    }
    if req.force != req.accept_data_loss {
        return Err(Refusal::InvalidArgument(
            "force and accept_data_loss go together: forcing a failover past the lag guard \
             must confirm that data may be lost"
                .into(),
        ));
    }
    let to = match (&req.to, req.kind) {
        (_, Kind::Failback) => facts.home.clone(),
        (Some(to), _) => to.clone(),
        (None, kind) => {
            return Err(Refusal::InvalidArgument(format!(
                "to_site: a {} needs the site to promote",
                kind.name()
            )))
        }
    };
    if !facts.db_sites.contains(&to) {
        let known: Vec<&str> = facts.db_sites.iter().map(|s| s.0.as_str()).collect();
        return Err(Refusal::InvalidArgument(format!(
            "to_site: unknown site \"{to}\"; the database sites are {}",
            known.join(", ")
        )));
    }
    let state = facts.state;
    let Some(db) = &state.db else {
        return Err(precondition(
            "the database roles are not recorded yet (the cluster is starting)".into(),
        ));
    };
    if let Some(f) = &state.failover {
        return Err(precondition(format!(
            "a {} of epoch {} ({} → {}) is in progress; wait for it to finish",
            f.kind.name(),
            f.epoch,
            f.from,
            f.to
        )));
    }
    if let Some(m) = state.paused(facts.now.wall_ms) {
        return Err(precondition(format!(
            "the cluster is paused (maintenance by {}{}); run `palisadectl resume` first",
            m.by,
            m.until_ms
                .map(|u| format!(", ends in {} s", (u - facts.now.wall_ms).max(0) / 1000))
                .unwrap_or_default()
        )));
    }
    if db.primary == to {
        return Err(precondition(if req.kind == Kind::Failback {
            format!("site {to} is already the primary: there is nothing to fail back")
        } else {
            format!("site {to} is already the primary")
        }));
    }
    if db.standby_needs_rejoin {
        return Err(precondition(format!(
            "site {to} has not rejoined as a standby since the last failover; \
             wait until status no longer says it must rejoin"
        )));
    }
    let from = db.primary.clone();
    let target = best_view(facts, &to).ok_or_else(|| {
        precondition(format!(
            "no fresh observation of the database at {to}: is its witness up?"
        ))
    })?;
    if let Reachability::Down { class, detail } = &target.reachability {
        return Err(precondition(format!(
            "the database at {to} is unreachable ({}: {detail})",
            class.as_str()
        )));
    }
    if target.in_recovery != Some(true) {
        return Err(precondition(format!(
            "the database at {to} is not a standby (in recovery: {:?})",
            target.in_recovery
        )));
    }
    let primary = best_view(facts, &from).filter(|o| o.is_writable_primary());
    let primary_lsn = primary.and_then(|o| o.current_lsn).or_else(|| {
        facts
            .reports
            .values()
            .filter_map(|r| r.last_writable.get(&from))
            .map(|l| l.lsn)
            .max()
    });
    let received = target.receive_lsn.or(target.replay_lsn);
    let lag = match (primary_lsn, received) {
        (Some(p), Some(r)) => Some(p.saturating_sub(r)),
        _ => None,
    };
    let evidence = Evidence {
        votes: votes(facts, &from),
        down_for_ms: 0,
        primary_agent_alive: primary.is_some(),
        primary_last_lsn: primary_lsn,
        primary_last_seen_ms_ago: None,
        standby_receive_lsn: target.receive_lsn,
        standby_replay_lsn: target.replay_lsn,
        known_lag_bytes: lag,
        replication: match facts.cfg.replication {
            ReplicationMode::Async => "async".into(),
            ReplicationMode::Sync => "sync".into(),
        },
    };
    let cfg = facts.cfg;
    if req.kind.is_planned() {
        if primary.is_none() {
            return Err(precondition(format!(
                "the primary at {from} is not reachable and writable: a {} needs it to hand \
                 over cleanly; use `palisadectl failover --to {to}`",
                req.kind.name()
            )));
        }
        if !target.is_streaming() {
            return Err(precondition(format!(
                "the standby at {to} is not streaming from the primary"
            )));
        }
        match lag {
            Some(l) if l <= cfg.max_lag_bytes => {}
            Some(l) => {
                return Err(precondition(format!(
                    "the standby at {to} is {l} bytes behind (max_lag_bytes {}): it could not \
                     catch up within the bound",
                    cfg.max_lag_bytes
                )))
            }
            None => {
                return Err(precondition(format!(
                    "the lag of the standby at {to} is unknown (no WAL positions observed)"
                )))
            }
        }
        return Ok(Approved {
            reason: format!(
                "{} to {to} requested by {} (standby {} bytes behind)",
                req.kind.name(),
                req.who,
                lag.unwrap_or(0)
            ),
            from,
            to,
            evidence,
            data_loss_bound: String::new(),
        });
    }
    let bound = loss_bound(&from, &to, primary.is_some(), primary_lsn, received, cfg);
    let lag_seconds = target.replay_lag_seconds.unwrap_or(0.0);
    let too_far = match lag {
        Some(l) => l > cfg.max_lag_bytes,
        None => cfg.replication == ReplicationMode::Async,
    } || lag_seconds > cfg.max_lag_seconds;
    if too_far && !req.force {
        return Err(precondition(format!(
            "the standby at {to} fails the lag guard ({}; replay lag {lag_seconds:.1} s; \
             max_lag_bytes {}, max_lag_seconds {}): a promotion could lose {bound}; \
             add --force --yes-i-accept-data-loss to fail over anyway",
            lag.map(|l| format!("{l} bytes behind"))
                .unwrap_or_else(|| "lag unknown".into()),
            cfg.max_lag_bytes,
            cfg.max_lag_seconds
        )));
    }
    Ok(Approved {
        reason: format!(
            "failover to {to} requested by {}{}",
            req.who,
            if req.force {
                " (forced past the lag guard, data loss accepted)"
            } else {
                ""
            }
        ),
        from,
        to,
        evidence,
        data_loss_bound: bound,
    })
}

/// What promoting `to` now may lose, in words.
fn loss_bound(
    from: &SiteId,
    to: &SiteId,
    primary_up: bool,
    primary_lsn: Option<u64>,
    received: Option<u64>,
    cfg: &DetectorConfig,
) -> String {
    if cfg.replication == ReplicationMode::Sync {
        return "no acknowledged write while synchronous replication was in force \
                (sync mode); writes during a degradation to async are not covered"
            .into();
    }
    let known = match (primary_lsn, received) {
        (Some(p), Some(r)) => format!(
            "{} bytes of WAL known written on {from} (up to {}) and not received by {to} (at {})",
            p.saturating_sub(r),
            format_lsn(p),
            format_lsn(r)
        ),
        _ => "an unknown amount of WAL (positions not observed)".into(),
    };
    if primary_up {
        format!("{known}, plus what {from} writes until it is fenced")
    } else {
        format!("{known}, plus what {from} wrote after it was last observed")
    }
}

/// The newest fresh observation of `site`'s database among the witnesses'
/// reports; between two equally new ones, its own site's witness's (no
/// link between sites in the way). Newest, not its own site's first: a
/// database that just came back (a rejoin's restart) is up in the newest
/// reports while an older one still says it is down.
fn best_view<'a>(facts: &'a Facts<'_>, site: &SiteId) -> Option<&'a PgObservation> {
    facts
        .reports
        .iter()
        .filter(|(_, r)| {
            facts.now.mono_ms.saturating_sub(r.received_at_ms) <= facts.cfg.report_ttl_ms
        })
        .filter_map(|(id, r)| {
            let own = facts.witnesses.get(id) == Some(site);
            r.dbs.get(site).map(|o| ((r.received_at_ms, own), o))
        })
        .max_by_key(|(key, _)| *key)
        .map(|(_, o)| o)
}

fn votes(facts: &Facts<'_>, from: &SiteId) -> Vec<WitnessVote> {
    facts
        .witnesses
        .keys()
        .map(|id| match facts.reports.get(id) {
            None => WitnessVote {
                witness: *id,
                saw: "no report".into(),
                report_age_ms: None,
            },
            Some(r) => WitnessVote {
                witness: *id,
                saw: match r.dbs.get(from).map(|o| &o.reachability) {
                    Some(Reachability::Up) => "up".into(),
                    Some(Reachability::Down { class, .. }) => format!("down ({})", class.as_str()),
                    None => "no report".into(),
                },
                report_age_ms: Some(facts.now.mono_ms.saturating_sub(r.received_at_ms)),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests;
