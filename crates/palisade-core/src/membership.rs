//! Membership changes (`palisadectl member add|remove|replace`), decided:
//! what an operator's request means for the voters, or why it is refused.
//!
//! The effects (openraft's learner and joint-consensus changes) are the
//! daemon's; the rules are here, where they can be tested exhaustively.
//! What makes a change safe for the lease is in [`crate::lease`]: a removed
//! witness stops granting within a bound of its removal, and every other
//! witness vouches for no expiry until that bound has passed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::state::ClusterState;
use crate::topology::{NodeId, Witness};

/// What an operator asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A witness at a site that has none.
    Add {
        /// Its node id (never used before).
        id: NodeId,
        /// Where it is.
        witness: Witness,
    },
    /// A witness goes, and its site with it.
    Remove {
        /// The witness that goes.
        id: NodeId,
    },
    /// A new witness takes over the site of `old` (whose host or disk is
    /// gone), in one joint change.
    Replace {
        /// The witness that goes.
        old: NodeId,
        /// The one that comes (a new id).
        id: NodeId,
        /// Where it is; its site must be `old`'s.
        witness: Witness,
    },
}

/// What to do, once allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// The change is already in force (a retry): nothing to do.
    InForce {
        /// In words.
        detail: String,
    },
    /// Add `learner` (if any) and let it catch up, then make `voters` the
    /// voters.
    Change {
        /// A witness to add as a learner first.
        learner: Option<(NodeId, Witness)>,
        /// The voters after the change.
        voters: BTreeSet<NodeId>,
        /// In words, for the reply and the journal.
        detail: String,
    },
}

/// Why a change is refused. `field` names the request field at fault, or
/// is empty when the cluster's state is (not the request).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct Refusal {
    /// The request field at fault (empty: a precondition).
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal {
        field,
        reason: reason.into(),
    }
}

fn precondition(reason: impl Into<String>) -> Refusal {
    bad("", reason)
}

/// The fewest voters a cluster keeps: two sites and a tie-breaker.
pub const MIN_VOTERS: usize = 3;

/// Decides `change` against the current `voters` and `learners` (from the
/// log) and the replicated `state`.
pub fn plan(
    change: &Change,
    voters: &BTreeMap<NodeId, Witness>,
    learners: &BTreeMap<NodeId, Witness>,
    state: &ClusterState,
) -> Result<Plan, Refusal> {
    // Retries first: a change already in force is no error, even while an
    // operation runs.
    match change {
        Change::Add { id, witness } if voters.get(id) == Some(witness) => {
            return Ok(Plan::InForce {
                detail: format!("witness {id} is already a voter at site {}", witness.site),
            })
        }
        Change::Remove { id } if !voters.contains_key(id) && !learners.contains_key(id) => {
            return Ok(Plan::InForce {
                detail: format!("witness {id} is not a member"),
            })
        }
        Change::Replace { old, id, witness }
            if !voters.contains_key(old) && voters.get(id) == Some(witness) =>
        {
            return Ok(Plan::InForce {
                detail: format!("witness {old} was already replaced by {id}"),
            })
        }
        _ => {}
    }
    if let Some(f) = &state.failover {
        return Err(precondition(format!(
            "a {} of epoch {} is in progress; change the membership once it has finished",
            f.kind.name(),
            f.epoch
        )));
    }
    let db_sites: BTreeSet<&str> = state
        .db
        .as_ref()
        .map(|d| [d.primary.0.as_str(), d.standby.0.as_str()].into())
        .unwrap_or_default();
    match change {
        Change::Add { id, witness } => {
            check_new(*id, witness, None, voters, learners)?;
            if let Some((other, _)) = voters.iter().find(|(_, w)| w.site == witness.site) {
                return Err(bad(
                    "new_member.site",
                    format!(
                        "site {} already has witness {other}; one witness per site (to move it, use replace)",
                        witness.site
                    ),
                ));
            }
            let mut after: BTreeSet<NodeId> = voters.keys().copied().collect();
            after.insert(*id);
            let mut detail = format!(
                "added witness {id} at site {} ({} voters)",
                witness.site,
                after.len()
            );
            if after.len().is_multiple_of(2) {
                detail.push_str(&format!(
                    "; with an even number of voters a majority is {} of {}: add another site's witness",
                    after.len() / 2 + 1,
                    after.len()
                ));
            }
            Ok(Plan::Change {
                learner: Some((*id, witness.clone())),
                voters: after,
                detail,
            })
        }
        Change::Remove { id } => {
            let Some(w) = voters.get(id) else {
                // A learner that never caught up: drop it.
                let mut after: BTreeSet<NodeId> = voters.keys().copied().collect();
                after.remove(id);
                return Ok(Plan::Change {
                    learner: None,
                    voters: after,
                    detail: format!("removed learner {id}"),
                });
            };
            if db_sites.contains(w.site.as_str()) {
                return Err(precondition(format!(
                    "witness {id} is site {}'s, which holds a database: its agent fences, starts and promotes it; use replace",
                    w.site
                )));
            }
            if voters.len() <= MIN_VOTERS {
                return Err(precondition(format!(
                    "the cluster has {} voters and keeps at least {MIN_VOTERS}; to move witness {id}, use replace",
                    voters.len()
                )));
            }
            let mut after: BTreeSet<NodeId> = voters.keys().copied().collect();
            after.remove(id);
            let detail = format!(
                "removed witness {id} (site {}); {} voters",
                w.site,
                after.len()
            );
            Ok(Plan::Change {
                learner: None,
                voters: after,
                detail,
            })
        }
        Change::Replace { old, id, witness } => {
            let Some(gone) = voters.get(old) else {
                return Err(bad("old_id", format!("witness {old} is not a voter")));
            };
            check_new(*id, witness, Some(*old), voters, learners)?;
            if witness.site != gone.site {
                return Err(bad(
                    "new_member.site",
                    format!(
                        "{:?} is not site {} of witness {old}: a replacement stands for the same site",
                        witness.site, gone.site
                    ),
                ));
            }
            let mut after: BTreeSet<NodeId> = voters.keys().copied().collect();
            after.remove(old);
            after.insert(*id);
            Ok(Plan::Change {
                learner: Some((*id, witness.clone())),
                voters: after,
                detail: format!(
                    "replaced witness {old} by witness {id} at site {} (raft {}, control {})",
                    witness.site, witness.raft_addr, witness.control_addr
                ),
            })
        }
    }
}

/// A witness to add: a fresh id, well-formed addresses used by nobody else
/// (but `replacing`, whose host may be reused).
fn check_new(
    id: NodeId,
    w: &Witness,
    replacing: Option<NodeId>,
    voters: &BTreeMap<NodeId, Witness>,
    learners: &BTreeMap<NodeId, Witness>,
) -> Result<(), Refusal> {
    if id == 0 {
        return Err(bad("new_member.id", "must be a positive integer"));
    }
    if voters.contains_key(&id) {
        return Err(bad(
            "new_member.id",
            format!("{id} is already a voter; a new witness gets a new id"),
        ));
    }
    if w.site.trim().is_empty()
        || !w
            .site
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad(
            "new_member.site",
            format!(
                "{:?} must be non-empty letters, digits, '-' and '_'",
                w.site
            ),
        ));
    }
    for (field, value) in [
        ("new_member.raft_addr", &w.raft_addr),
        ("new_member.control_addr", &w.control_addr),
    ] {
        let addr: SocketAddr = value
            .parse()
            .map_err(|_| bad(field, format!("{value:?} is not an IP:port socket address")))?;
        if addr.port() == 0 {
            return Err(bad(field, format!("{value:?}: port 0 is not allowed")));
        }
        let taken = voters
            .iter()
            .chain(learners.iter())
            .filter(|(other, _)| **other != id && Some(**other) != replacing)
            .find(|(_, o)| {
                [&o.raft_addr, &o.control_addr]
                    .iter()
                    .any(|a| a.parse::<SocketAddr>().ok() == Some(addr))
            });
        if let Some((other, _)) = taken {
            return Err(bad(
                field,
                format!("{addr} is already used by witness {other}"),
            ));
        }
    }
    if w.raft_addr.parse::<SocketAddr>().ok() == w.control_addr.parse::<SocketAddr>().ok() {
        return Err(bad("new_member.control_addr", "must differ from raft_addr"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
