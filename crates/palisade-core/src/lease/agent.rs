//! The agent's side of the quorum lease.

use std::collections::BTreeMap;

use super::LeaseConfig;
use crate::topology::NodeId;

/// What the primary site's agent knows of its lease: for each witness, the
/// send time (agent clock, ms) of the most recent renewal it granted, and
/// the epoch it granted it for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QuorumLease {
    /// How many witnesses' live grants make the lease (a majority).
    quorum: usize,
    grants: BTreeMap<NodeId, (u64, u64)>,
}

impl QuorumLease {
    /// An empty lease that needs `quorum` live grants.
    pub fn new(quorum: usize) -> Self {
        Self {
            quorum: quorum.max(1),
            grants: BTreeMap::new(),
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

    /// The voters are now `voters` (`palisadectl member`): the lease needs
    /// a majority of them, and a removed witness's grants no longer count.
    pub fn set_voters(&mut self, voters: &std::collections::BTreeSet<NodeId>) {
        self.quorum = super::majority(voters.len());
        self.grants.retain(|w, _| voters.contains(w));
    }

    /// A witness refused (it applied the record that moves the primary
    /// away: a committed failover): the lease ends now, whatever the
    /// others said.
    pub fn revoked(&mut self) {
        self.grants.clear();
    }

    /// Until when (agent clock) the database may stay writable under
    /// `epoch`: the `quorum`-th most recent send time among that epoch's
    /// grants, plus `ttl`. `None`: no quorum of grants for `epoch`.
    pub fn valid_until_ms(&self, epoch: u64, cfg: &LeaseConfig) -> Option<u64> {
        let mut sent: Vec<u64> = self
            .grants
            .values()
            .filter(|(_, e)| *e == epoch)
            .map(|(s, _)| *s)
            .collect();
        if sent.len() < self.quorum {
            return None;
        }
        sent.sort_unstable_by(|a, b| b.cmp(a));
        Some(sent[self.quorum - 1] + cfg.ttl_ms)
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
    fn a_removed_witness_stops_counting_and_the_quorum_follows_the_voters() {
        let mut l = QuorumLease::new(2);
        l.granted(1, 500, 1);
        l.granted(3, 500, 1);
        l.set_voters(&[1, 2, 4].into());
        assert!(!l.is_valid(600, 1, &CFG), "3 was replaced by 4");
        l.granted(4, 550, 1);
        assert!(l.is_valid(600, 1, &CFG));
        l.set_voters(&[1, 2, 4, 5, 6].into());
        assert!(!l.is_valid(600, 1, &CFG), "five voters need three grants");
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
