//! The witness's side of the quorum lease, and the leader's proof of expiry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::LeaseConfig;
use crate::state::{ClusterState, DesiredRole};
use crate::topology::{NodeId, SiteId};
use crate::Step;

/// A witness's answer to a renewal, from its own applied state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grant {
    /// Granted: the agent may stay writable for `ttl` from when it sent the
    /// renewal (given a majority of such grants).
    Granted,
    /// Refused for good: this witness applied a record that moves the
    /// primary away from the site (or names another epoch). The agent
    /// fences now.
    Refused {
        /// Why, in words.
        reason: String,
        /// The epoch of a planned handover away from the site whose clean
        /// shutdown is pending: shut down cleanly instead of killing.
        handover: Option<u64>,
    },
    /// No answer either way: this witness has not applied the epoch the
    /// agent names (it lags), or holds no database roles yet. Nothing is
    /// revoked; without other grants the lease runs down.
    Unknown {
        /// Why, in words.
        reason: String,
    },
}

/// Whether a witness whose applied state is `state` may grant `site` a
/// renewal for `epoch`: the site is the desired primary in `epoch`, or it is
/// the target of that epoch's failover and the old primary's fence is
/// recorded (its agent takes a lease before it promotes).
pub fn may_grant(state: &ClusterState, site: &SiteId, epoch: u64) -> Grant {
    if state.db.is_none() {
        return Grant::Unknown {
            reason: "no database roles recorded yet".into(),
        };
    }
    if state.epoch < epoch {
        return Grant::Unknown {
            reason: format!(
                "epoch {epoch} not applied by this witness yet (at {})",
                state.epoch
            ),
        };
    }
    if lease_epoch(state, site) == Some(epoch) {
        return Grant::Granted;
    }
    // The target of this very failover asks before this witness applied
    // the old primary's fence: it will be granted, never refused (a refusal
    // makes an agent fence for good).
    if state
        .failover
        .as_ref()
        .is_some_and(|f| &f.to == site && f.epoch == epoch)
    {
        return Grant::Unknown {
            reason: format!("the fence of epoch {epoch} is not applied by this witness yet"),
        };
    }
    let handover = state
        .failover
        .as_ref()
        .filter(|f| f.kind.is_planned() && &f.from == site && !f.is_done(Step::Fenced))
        .map(|f| f.epoch);
    Grant::Refused {
        reason: match state.desired_role(site) {
            Some(DesiredRole::Primary { epoch: current }) => {
                format!("epoch {epoch} is not current (site {site} is primary in epoch {current})")
            }
            other => format!(
                "site {site} is not the primary in epoch {} (desired role {other:?})",
                state.epoch
            ),
        },
        handover,
    }
}

/// The epoch for which `state` lets `site` hold a lease, if any: the
/// epoch in which it is the desired primary, or in which it is the target
/// of a failover whose fence is recorded. The agent renews exactly then.
pub fn lease_epoch(state: &ClusterState, site: &SiteId) -> Option<u64> {
    if let Some(DesiredRole::Primary { epoch }) = state.desired_role(site) {
        return Some(epoch);
    }
    state
        .failover
        .as_ref()
        .filter(|f| &f.to == site && f.is_done(Step::Fenced))
        .map(|f| f.epoch)
}

/// What one witness vouches for about a site's lease, on the leader's
/// question "has the lease of `site` ended, for a failover of `epoch`?".
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Expiry {
    /// This witness stopped granting to the site and every grant it made
    /// (since its start) has run out, drift included.
    Expired,
    /// It stopped granting, but a grant may still be live, or it restarted
    /// too recently to know: ask again in `remaining_ms`.
    NotYet {
        /// Its own clock's estimate of how long until it vouches.
        remaining_ms: u64,
    },
    /// It has not applied the failover yet, or still makes the site
    /// primary: it may still grant.
    StillGranting {
        /// Why, in words.
        reason: String,
    },
}

/// A witness's memory of its grants: when it last granted each site, and
/// when it started (grants before a restart are forgotten, so it vouches
/// for nothing until a whole wait after its start).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GrantBook {
    started_ms: u64,
    last_grant_ms: BTreeMap<SiteId, u64>,
}

impl GrantBook {
    /// A book for a witness that started at `started_ms` (its clock).
    pub fn new(started_ms: u64) -> Self {
        Self {
            started_ms,
            last_grant_ms: BTreeMap::new(),
        }
    }

    /// Answers a renewal of `site` for `epoch` at `now_ms`, from `state`,
    /// and remembers a grant. The caller holds the book and reads `state`
    /// under one lock, so an expiry verdict never misses a grant.
    pub fn renew(&mut self, state: &ClusterState, site: &SiteId, epoch: u64, now_ms: u64) -> Grant {
        let grant = may_grant(state, site, epoch);
        if grant == Grant::Granted {
            let last = self.last_grant_ms.entry(site.clone()).or_insert(now_ms);
            *last = (*last).max(now_ms);
        }
        grant
    }

    /// This witness applied a membership change at `now_ms`: vouch for no
    /// expiry until a whole wait from now, as after a restart. A witness
    /// the change removed may have granted, under the old membership, until
    /// it acknowledged the change, which was before the change committed
    /// and so before any witness applied it: such a grant has run out by
    /// then (see [`QuorumLease`](super::QuorumLease) for why later grants
    /// of a removed witness do not count).
    pub fn membership_changed(&mut self, now_ms: u64) {
        self.started_ms = self.started_ms.max(now_ms);
    }

    /// Whether every lease this witness could have granted `site` has
    /// ended at `now_ms`, given that a failover of `epoch` moves the primary
    /// away from it.
    pub fn expiry(
        &self,
        state: &ClusterState,
        site: &SiteId,
        epoch: u64,
        now_ms: u64,
        cfg: &LeaseConfig,
    ) -> Expiry {
        if state.epoch < epoch {
            return Expiry::StillGranting {
                reason: format!(
                    "failover epoch {epoch} not applied by this witness yet (at {})",
                    state.epoch
                ),
            };
        }
        if let Some(e) = lease_epoch(state, site) {
            return Expiry::StillGranting {
                reason: format!("site {site} still holds the lease in epoch {e} here"),
            };
        }
        let since = self
            .last_grant_ms
            .get(site)
            .copied()
            .unwrap_or(0)
            .max(self.started_ms);
        let safe_at = since + cfg.witness_wait_ms();
        if now_ms >= safe_at {
            Expiry::Expired
        } else {
            Expiry::NotYet {
                remaining_ms: safe_at - now_ms,
            }
        }
    }
}

/// The leader's proof that the old primary's lease has ended: a majority of
/// witnesses each answered [`Expiry::Expired`]. An `Expired` answer stays
/// counted: the witness had stopped granting for good (the failover record
/// is durable) and none of its grants was live.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExpiryProof {
    quorum: usize,
    answers: BTreeMap<NodeId, Expiry>,
}

impl ExpiryProof {
    /// A proof that needs `quorum` witnesses.
    pub fn new(quorum: usize) -> Self {
        Self {
            quorum: quorum.max(1),
            answers: BTreeMap::new(),
        }
    }

    /// Witness `witness` answered `expiry`.
    pub fn record(&mut self, witness: NodeId, expiry: Expiry) {
        if self.answers.get(&witness) != Some(&Expiry::Expired) {
            self.answers.insert(witness, expiry);
        }
    }

    /// Whether a majority vouched for the expiry.
    pub fn is_proven(&self) -> bool {
        self.vouching().len() >= self.quorum
    }

    /// The witnesses that vouched.
    pub fn vouching(&self) -> Vec<NodeId> {
        self.answers
            .iter()
            .filter(|(_, e)| **e == Expiry::Expired)
            .map(|(w, _)| *w)
            .collect()
    }

    /// Each witness's answer, in words, for logs and the failover record.
    pub fn describe(&self) -> String {
        self.answers
            .iter()
            .map(|(w, e)| match e {
                Expiry::Expired => format!("witness {w}: expired"),
                Expiry::NotYet { remaining_ms } => {
                    format!("witness {w}: not yet ({remaining_ms} ms to go)")
                }
                Expiry::StillGranting { reason } => {
                    format!("witness {w}: still granting ({reason})")
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}
