//! The agent's side of the quorum lease.

use std::collections::{BTreeMap, BTreeSet};

use super::LeaseConfig;
use crate::topology::NodeId;

/// The voters of a membership, as a witness reports it with its grant:
/// the log index of its membership entry, and the voter sets (two while a
/// change is joint: a quorum is a majority of each).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Voters {
    /// The log index of the membership entry (0: the configured list).
    pub index: u64,
    /// The voter sets.
    pub sets: Vec<BTreeSet<NodeId>>,
}

impl Voters {
    /// One voter set, at `index`.
    pub fn single(index: u64, ids: impl IntoIterator<Item = NodeId>) -> Self {
        Self {
            index,
            sets: vec![ids.into_iter().collect()],
        }
    }
}

/// What the primary site's agent knows of its lease: for each witness, the
/// send time (agent clock, ms) of the most recent renewal it granted, and
/// the epoch it granted it for.
///
/// Which witnesses make a quorum is the newest membership it knows: its own
/// witness's, or one a granting witness reported, whichever has the higher
/// log index. A witness removed from the cluster while it was cut off with
/// this agent still grants from its stale state, and reports its stale
/// membership; but the change committed on a majority of the old voters,
/// one of which also grants here (or the agent has no old majority), and
/// that one reports the newer membership, in which the removed witness's
/// grants do not count.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QuorumLease {
    /// How many witnesses' live grants make the lease (a majority) while
    /// no membership is known.
    quorum: usize,
    grants: BTreeMap<NodeId, (u64, u64)>,
    /// The newest membership known.
    voters: Option<Voters>,
}

impl QuorumLease {
    /// An empty lease that needs `quorum` live grants (until a membership
    /// is known).
    pub fn new(quorum: usize) -> Self {
        Self {
            quorum: quorum.max(1),
            grants: BTreeMap::new(),
            voters: None,
        }
    }

    /// A membership this agent's witness has, or a granting witness
    /// reported: kept if it is newer than the one known.
    pub fn learn_voters(&mut self, voters: &Voters) {
        if self.voters.as_ref().is_none_or(|v| voters.index > v.index) && !voters.sets.is_empty() {
            self.voters = Some(voters.clone());
        }
    }

    /// Witness `witness` granted, for `epoch`, the renewal sent at
    /// `sent_ms`. A late answer to an older renewal never moves that
    /// witness's grant back; a grant for a newer epoch replaces one for an
    /// older epoch.
    pub fn granted(&mut self, witness: NodeId, sent_ms: u64, epoch: u64) {
        let entry = self.grants.entry(witness).or_insert((sent_ms, epoch));
        if epoch > entry.1 || (epoch == entry.1 && sent_ms > entry.0) {
            *entry = (sent_ms, epoch);
        }
    }

    /// A witness refused (it applied the record that moves the primary
    /// away: a committed failover): the lease ends now, whatever the
    /// others said.
    pub fn revoked(&mut self) {
        self.grants.clear();
    }

    /// Until when (agent clock) the database may stay writable under
    /// `epoch`: for each voter set, the majority-th most recent send time
    /// among its members' grants for that epoch, plus `ttl`; the earliest of
    /// those. `None`: no quorum of grants for `epoch`.
    pub fn valid_until_ms(&self, epoch: u64, cfg: &LeaseConfig) -> Option<u64> {
        let sent_by = |member: &dyn Fn(NodeId) -> bool, quorum: usize| -> Option<u64> {
            let mut sent: Vec<u64> = self
                .grants
                .iter()
                .filter(|(w, (_, e))| *e == epoch && member(**w))
                .map(|(_, (s, _))| *s)
                .collect();
            if quorum == 0 || sent.len() < quorum {
                return None;
            }
            sent.sort_unstable_by(|a, b| b.cmp(a));
            Some(sent[quorum - 1] + cfg.ttl_ms)
        };
        match &self.voters {
            None => sent_by(&|_| true, self.quorum),
            Some(v) => v
                .sets
                .iter()
                .map(|set| sent_by(&|w| set.contains(&w), super::majority(set.len())))
                .collect::<Option<Vec<u64>>>()?
                .into_iter()
                .min(),
        }
    }

    /// Whether the database may be writable at `now_ms` under `epoch`.
    pub fn is_valid(&self, now_ms: u64, epoch: u64, cfg: &LeaseConfig) -> bool {
        self.valid_until_ms(epoch, cfg)
            .is_some_and(|until| now_ms < until)
    }

    /// How many witnesses' grants for `epoch` are live at `now_ms`.
    pub fn live_grants(&self, now_ms: u64, epoch: u64, cfg: &LeaseConfig) -> usize {
        self.grants
            .values()
            .filter(|(s, e)| *e == epoch && now_ms < s + cfg.ttl_ms)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: LeaseConfig = LeaseConfig {
        ttl_ms: 1000,
        drift: 0.1,
    };

    #[test]
    fn one_grant_is_no_lease_two_are() {
        let mut l = QuorumLease::new(2);
        l.granted(1, 100, 7);
        assert!(!l.is_valid(100, 7, &CFG), "one of three is no majority");
        l.granted(2, 300, 7);
        assert_eq!(
            l.valid_until_ms(7, &CFG),
            Some(1100),
            "the lease runs to the older of the two most recent grants"
        );
        l.granted(3, 500, 7);
        assert_eq!(l.valid_until_ms(7, &CFG), Some(1300));
        assert_eq!(l.live_grants(1200, 7, &CFG), 2);
    }

    #[test]
    fn grants_count_for_one_epoch_only() {
        let mut l = QuorumLease::new(2);
        l.granted(1, 100, 7);
        l.granted(2, 100, 8);
        assert!(!l.is_valid(150, 7, &CFG));
        assert!(!l.is_valid(150, 8, &CFG));
        l.granted(1, 200, 8);
        assert!(l.is_valid(150, 8, &CFG));
        l.granted(1, 300, 7);
        assert_eq!(
            l.valid_until_ms(8, &CFG),
            Some(1100),
            "an older epoch's late grant does not replace a newer one"
        );
    }

    #[test]
    fn a_late_older_answer_never_moves_the_lease() {
        let mut l = QuorumLease::new(2);
        l.granted(1, 500, 1);
        l.granted(2, 500, 1);
        l.granted(1, 100, 1);
        assert_eq!(l.valid_until_ms(1, &CFG), Some(1500));
    }

    #[test]
    fn the_newest_membership_known_decides_whose_grants_count() {
        let mut l = QuorumLease::new(2);
        l.learn_voters(&Voters::single(1, [1, 2, 3]));
        l.granted(1, 500, 1);
        l.granted(3, 500, 1);
        assert!(l.is_valid(600, 1, &CFG));
        // Witness 1 reports the joint change that replaces 3 by 4.
        l.learn_voters(&Voters {
            index: 9,
            sets: vec![[1, 2, 3].into(), [1, 2, 4].into()],
        });
        assert!(!l.is_valid(600, 1, &CFG), "no majority of {{1, 2, 4}}");
        // A stale report never moves it back.
        l.learn_voters(&Voters::single(1, [1, 2, 3]));
        assert!(!l.is_valid(600, 1, &CFG));
        l.granted(4, 550, 1);
        assert_eq!(l.valid_until_ms(1, &CFG), Some(1500));
        l.learn_voters(&Voters::single(10, [1, 2, 4]));
        l.granted(2, 700, 1);
        assert_eq!(
            l.valid_until_ms(1, &CFG),
            Some(1550),
            "3's grant does not count now; 1, 2 and 4 do"
        );
        l.learn_voters(&Voters::single(11, [1, 2, 4, 5, 6]));
        assert!(l.is_valid(600, 1, &CFG), "three of five");
        l.learn_voters(&Voters::single(12, [1, 5, 6, 7, 8]));
        assert!(!l.is_valid(600, 1, &CFG), "one of five");
    }

    #[test]
    fn a_refusal_ends_the_lease_now() {
        let mut l = QuorumLease::new(2);
        l.granted(1, 500, 1);
        l.granted(2, 500, 1);
        l.revoked();
        assert!(!l.is_valid(600, 1, &CFG));
    }
}
