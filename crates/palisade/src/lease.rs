//! This witness's part in the quorum lease (DESIGN rule 2, RFC 0002): it
//! grants renewals to the primary site's agent from its own applied state,
//! remembers its grants, and tells the leader whether it vouches that a
//! site's lease has ended. The arithmetic is `palisade_core::lease`; this
//! module holds the book under one lock with the state read, and converts
//! to and from the typed peer messages.

use std::sync::Mutex;
use std::time::Duration;

use palisade_api::v1 as pb;
use palisade_core::lease::{Expiry, Grant, GrantBook, LeaseConfig};
use palisade_core::{NodeId, SiteId};
use palisade_raft::store::StateView;

use crate::clock::mono_ms;
use crate::peers::Peers;

/// How long ago this witness last heard from a Raft leader (`None`: never).
pub type LeaderSilence = Box<dyn Fn() -> Option<Duration> + Send + Sync>;

/// The witness's grant book and the applied state it grants from.
pub struct WitnessLease {
    book: Mutex<GrantBook>,
    view: StateView,
    cfg: LeaseConfig,
    /// It grants only while it heard from a leader within `limit`
    /// ([`GrantBook::renew_in_touch`]); `None`: always (unit tests).
    touch: Option<(LeaderSilence, Duration)>,
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
            touch: None,
        }
    }

    /// Grants only while `silence` (how long since a leader was heard from)
    /// is within `limit`: a witness removed from the cluster stops granting
    /// within `limit` (see [`WitnessLease::membership_changed`]).
    pub fn in_touch_with_leader(mut self, silence: LeaderSilence, limit: Duration) -> Self {
        self.touch = Some((silence, limit));
        self
    }

    /// The leader-silence limit in ms (0 without one).
    pub fn limit_ms(&self) -> u64 {
        self.touch.as_ref().map_or(0, |(_, l)| l.as_millis() as u64)
    }

    /// The membership changed now: vouch for no expiry until a witness it
    /// removed can no longer hold a grant live.
    pub fn membership_changed(&self) {
        let limit = self.limit_ms();
        self.book().membership_changed(mono_ms(), limit);
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
        match &self.touch {
            None => book.renew(&state, site, epoch, mono_ms()),
            Some((silence, limit)) => book.renew_in_touch(
                &state,
                site,
                epoch,
                mono_ms(),
                silence().map(|d| d.as_millis() as u64),
                limit.as_millis() as u64,
            ),
        }
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
/// `peers` at once, each on its own task, and hands each answer to
/// `on_answer` as it arrives: no witness waits for another. The caller
/// counts grants from the moment before it called this (the send time).
pub fn renew_with(
    peers: &Peers,
    site: &SiteId,
    epoch: u64,
    timeout: Duration,
    on_answer: impl Fn(NodeId, Result<Grant, String>) + Clone + Send + 'static,
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

/// A grant as the peer RPC carries it.
pub fn grant_to_pb(g: Grant) -> pb::LeaseGrant {
    use pb::lease_grant::Answer;
    pb::LeaseGrant {
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
            assert_eq!(grant_from_pb(grant_to_pb(g.clone())), g);
        }
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
