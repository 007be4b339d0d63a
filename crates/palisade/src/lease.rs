//! This witness's part in the quorum lease (DESIGN rule 2, RFC 0002): it
//! grants renewals to the primary site's agent from its own applied state,
//! remembers its grants, and tells the leader whether it vouches that a
//! site's lease has ended. The arithmetic is `palisade_core::lease`; this
//! module holds the book under one lock with the state read, and converts
//! to and from the typed peer messages.

use std::sync::Mutex;
use std::time::Duration;

use palisade_api::v1 as pb;
use palisade_core::lease::{Expiry, Grant, GrantBook, LeaseConfig, Voters};
use palisade_core::{NodeId, SiteId};
use palisade_raft::store::StateView;

use crate::clock::mono_ms;
use crate::peers::Peers;

/// This witness's membership now, as its grants report it.
pub type VotersNow = Box<dyn Fn() -> Voters + Send + Sync>;

/// The witness's grant book and the applied state it grants from.
pub struct WitnessLease {
    book: Mutex<GrantBook>,
    view: StateView,
    cfg: LeaseConfig,
    /// Its membership, reported with every grant; `None` in unit tests.
    voters: Option<VotersNow>,
}

impl WitnessLease {
    /// A book for a witness starting now: it vouches for no expiry until a
    /// whole `ttl × (1 + drift)` from now (grants before a restart are
    /// forgotten).
    pub fn new(view: StateView, cfg: LeaseConfig) -> Self {
        Self {
            book: Mutex::new(GrantBook::new(mono_ms())),
            view,
            cfg,
            voters: None,
        }
    }

    /// Reports `voters()` with every grant: the agent counts the grants of
    /// the newest membership it hears of.
    pub fn reporting(mut self, voters: VotersNow) -> Self {
        self.voters = Some(voters);
        self
    }

    /// The membership this witness reports now.
    pub fn voters(&self) -> Option<Voters> {
        self.voters.as_ref().map(|f| f())
    }

    /// This witness applied a membership change now: it vouches for no
    /// expiry until a whole wait from now
    /// ([`GrantBook::membership_changed`]).
    pub fn membership_changed(&self) {
        self.book().membership_changed(mono_ms());
    }

    fn book(&self) -> std::sync::MutexGuard<'_, GrantBook> {
        self.book
            .lock()
            .expect("grant book lock poisoned: a panic while holding it")
    }

    /// Answers a renewal. The state is read under the book's lock, so an
    /// expiry verdict given after a failover is applied never misses a
    /// grant made from the state before it.
    pub fn renew(&self, site: &SiteId, epoch: u64) -> Grant {
        let mut book = self.book();
        let state = self.view.cluster_state();
        book.renew(&state, site, epoch, mono_ms())
    }

    /// Whether this witness vouches that `site`'s lease ended, for the
    /// failover of `epoch`.
    pub fn expiry(&self, site: &SiteId, epoch: u64) -> Expiry {
        let book = self.book();
        let state = self.view.cluster_state();
        book.expiry(&state, site, epoch, mono_ms(), &self.cfg)
    }
}

/// Sends a renewal of `site`'s lease for `epoch` to every witness in
/// `peers` at once, each on its own task, and hands each answer (with the
/// membership the witness reported) to `on_answer` as it arrives: no
/// witness waits for another. The caller
/// counts grants from the moment before it called this (the send time).
pub fn renew_with(
    peers: &Peers,
    site: &SiteId,
    epoch: u64,
    timeout: Duration,
    on_answer: impl Fn(NodeId, Result<(Grant, Option<Voters>), String>) + Clone + Send + 'static,
) {
    for witness in peers.ids() {
        let (peers, site, on_answer) = (peers.clone(), site.clone(), on_answer.clone());
        tokio::spawn(async move {
            let answer = peers
                .renew_lease(witness, &site, epoch, timeout)
                .await
                .map_err(|e| e.to_string());
            on_answer(witness, answer);
        });
    }
}

/// A grant as the peer RPC carries it, with the granting witness's
/// membership.
pub fn grant_to_pb(g: Grant, voters: Option<Voters>) -> pb::LeaseGrant {
    use pb::lease_grant::Answer;
    let voters = voters.unwrap_or_default();
    pb::LeaseGrant {
        membership_index: voters.index,
        voter_sets: voters
            .sets
            .into_iter()
            .map(|set| pb::VoterSet {
                ids: set.into_iter().collect(),
            })
            .collect(),
        answer: Some(match g {
            Grant::Granted => Answer::Granted(pb::LeaseGranted {}),
            Grant::Refused { reason, handover } => Answer::Refused(pb::LeaseRefused {
                reason,
                handover_epoch: handover,
            }),
            Grant::Unknown { reason } => Answer::Unknown(pb::LeaseUnknown { reason }),
        }),
    }
}

/// The membership a grant reports (`None`: an older witness, or none).
pub fn voters_from_pb(g: &pb::LeaseGrant) -> Option<Voters> {
    (!g.voter_sets.is_empty()).then(|| Voters {
        index: g.membership_index,
        sets: g
            .voter_sets
            .iter()
            .map(|s| s.ids.iter().copied().collect())
            .collect(),
    })
}

/// A grant from the peer RPC; a reply without an answer (another version)
/// counts as no answer either way.
pub fn grant_from_pb(g: pb::LeaseGrant) -> Grant {
    use pb::lease_grant::Answer;
    match g.answer {
        Some(Answer::Granted(_)) => Grant::Granted,
        Some(Answer::Refused(r)) => Grant::Refused {
            reason: r.reason,
            handover: r.handover_epoch,
        },
        Some(Answer::Unknown(u)) => Grant::Unknown { reason: u.reason },
        None => Grant::Unknown {
            reason: "empty lease answer".into(),
        },
    }
}

/// An expiry verdict as the peer RPC carries it.
pub fn expiry_to_pb(e: Expiry) -> pb::LeaseExpiryAnswer {
    use pb::lease_expiry_answer::Answer;
    pb::LeaseExpiryAnswer {
        answer: Some(match e {
            Expiry::Expired => Answer::Expired(pb::LeaseExpired {}),
            Expiry::NotYet { remaining_ms } => Answer::NotYet(pb::LeaseNotYet { remaining_ms }),
            Expiry::StillGranting { reason } => {
                Answer::StillGranting(pb::LeaseStillGranting { reason })
            }
        }),
    }
}

/// An expiry verdict from the peer RPC; an empty one vouches for nothing.
pub fn expiry_from_pb(e: pb::LeaseExpiryAnswer) -> Expiry {
    use pb::lease_expiry_answer::Answer;
    match e.answer {
        Some(Answer::Expired(_)) => Expiry::Expired,
        Some(Answer::NotYet(n)) => Expiry::NotYet {
            remaining_ms: n.remaining_ms,
        },
        Some(Answer::StillGranting(s)) => Expiry::StillGranting { reason: s.reason },
        None => Expiry::StillGranting {
            reason: "empty expiry answer".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_and_expiries_survive_the_wire() {
        for g in [
            Grant::Granted,
            Grant::Refused {
                reason: "r".into(),
                handover: Some(4),
            },
            Grant::Refused {
                reason: "r".into(),
                handover: None,
            },
            Grant::Unknown { reason: "u".into() },
        ] {
            assert_eq!(grant_from_pb(grant_to_pb(g.clone(), None)), g);
        }
        let joint = Voters {
            index: 9,
            sets: vec![[1, 2, 3].into(), [1, 2, 4].into()],
        };
        let pb = grant_to_pb(Grant::Granted, Some(joint.clone()));
        assert_eq!(voters_from_pb(&pb), Some(joint));
        assert_eq!(
            voters_from_pb(&grant_to_pb(Grant::Granted, None)),
            None,
            "an older witness reports no membership"
        );
        for e in [
            Expiry::Expired,
            Expiry::NotYet { remaining_ms: 7 },
            Expiry::StillGranting { reason: "s".into() },
        ] {
            assert_eq!(expiry_from_pb(expiry_to_pb(e.clone())), e);
        }
        assert!(
            matches!(
                expiry_from_pb(pb::LeaseExpiryAnswer { answer: None }),
                Expiry::StillGranting { .. }
            ),
            "an empty answer vouches for nothing"
        );
    }
}
