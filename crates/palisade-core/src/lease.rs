//! The primary's lease (DESIGN rule 2), as pure arithmetic on millisecond
//! clocks. Each side uses its own monotonic clock; only durations cross the
//! network, and `drift` bounds how much faster one clock may run than the
//! other.
//!
//! * The primary site's agent asks the leader to renew; it notes when it
//!   *sent* the request. If the leader confirms (after a quorum round), the
//!   agent may keep its database writable until `sent + ttl`
//!   ([`AgentLease`]). Past that it must fence its own database.
//! * The leader notes when it *granted* each renewal. Before promoting
//!   another site it stops granting (the failover is committed first, and
//!   grants check the committed state), then waits until
//!   `max(last grant, leader since) + ttl × (1 + drift)`
//!   ([`LeaseLedger::safe_after`]). The agent's deadline is earlier: it
//!   counts from before the grant, and a new leader cannot know of grants
//!   before it led, so it counts from when it became leader.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::topology::SiteId;

/// Lease timing, the same on every witness.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseConfig {
    /// How long a confirmed renewal keeps the primary writable, in ms.
    pub ttl_ms: u64,
    /// Largest relative clock-rate difference between two witnesses
    /// (0.1 = 10 %). The leader waits `ttl × (1 + drift)`.
    pub drift: f64,
}

impl LeaseConfig {
    /// What the leader waits past its last grant before promoting.
    pub fn leader_wait_ms(&self) -> u64 {
        (self.ttl_ms as f64 * (1.0 + self.drift)).ceil() as u64
    }
}

/// The agent's side: whether it may keep its database writable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentLease {
    /// Agent clock (ms) at which the last *confirmed* renewal was sent, and
    /// the epoch it was confirmed for.
    confirmed: Option<(u64, u64)>,
}

impl AgentLease {
    /// A renewal sent at `sent_at_ms` was confirmed for `epoch`. Older
    /// confirmations arriving late never move the deadline back.
    pub fn confirmed(&mut self, sent_at_ms: u64, epoch: u64) {
        match self.confirmed {
            Some((t, _)) if t >= sent_at_ms => {}
            _ => self.confirmed = Some((sent_at_ms, epoch)),
        }
    }

    /// The leader refused (another site is primary, a failover began, the
    /// epoch moved): the lease ends now.
    pub fn revoked(&mut self) {
        self.confirmed = None;
    }

    /// Until when (agent clock) the database may stay writable, if at all.
    pub fn valid_until_ms(&self, cfg: &LeaseConfig) -> Option<u64> {
        self.confirmed.map(|(t, _)| t + cfg.ttl_ms)
    }

    /// Whether the database may be writable at `now_ms` under `epoch`.
    pub fn is_valid(&self, now_ms: u64, epoch: u64, cfg: &LeaseConfig) -> bool {
        matches!(self.confirmed, Some((t, e)) if e == epoch && now_ms < t + cfg.ttl_ms)
    }
}

/// The leader's side: when it last granted each site a renewal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseLedger {
    /// Leader clock (ms) when this node became leader: grants by earlier
    /// leaders may have been made up to then.
    leader_since_ms: u64,
    last_grant_ms: BTreeMap<SiteId, u64>,
}

impl LeaseLedger {
    /// A ledger for a leader that took office at `leader_since_ms`.
    pub fn new(leader_since_ms: u64) -> Self {
        Self {
            leader_since_ms,
            last_grant_ms: BTreeMap::new(),
        }
    }

    /// Records a grant to `site` at `now_ms`.
    pub fn granted(&mut self, site: &SiteId, now_ms: u64) {
        let e = self.last_grant_ms.entry(site.clone()).or_insert(now_ms);
        *e = (*e).max(now_ms);
    }

    /// When (leader clock) every lease `site` could hold has expired,
    /// whoever granted it. Valid only once grants to `site` have stopped.
    pub fn safe_after(&self, site: &SiteId, cfg: &LeaseConfig) -> u64 {
        let last = self
            .last_grant_ms
            .get(site)
            .copied()
            .unwrap_or(0)
            .max(self.leader_since_ms);
        last + cfg.leader_wait_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CFG: LeaseConfig = LeaseConfig {
        ttl_ms: 1000,
        drift: 0.1,
    };

    #[test]
    fn agent_lease_runs_from_the_send_time() {
        let mut l = AgentLease::default();
        assert!(
            !l.is_valid(0, 1, &CFG),
            "no lease before the first confirmation"
        );
        l.confirmed(100, 1);
        assert!(l.is_valid(1099, 1, &CFG));
        assert!(!l.is_valid(1100, 1, &CFG));
        assert!(!l.is_valid(500, 2, &CFG), "a lease is for one epoch");
        l.confirmed(50, 1);
        assert_eq!(
            l.valid_until_ms(&CFG),
            Some(1100),
            "a late, older confirmation does not shorten or extend"
        );
        l.revoked();
        assert!(!l.is_valid(500, 1, &CFG));
    }

    #[test]
    fn new_leader_waits_from_its_first_moment() {
        let ledger = LeaseLedger::new(5000);
        assert_eq!(ledger.safe_after(&SiteId("a".into()), &CFG), 6100);
    }

    proptest! {
        /// Whatever the message delays and clock offsets, and a clock-rate
        /// difference within `drift`, the agent's lease has ended (in real
        /// time) when the leader's wait is over.
        #[test]
        fn leader_wait_covers_every_agent_lease(
            send in 0u64..10_000,          // real time the agent sends
            delay_to_leader in 0u64..2_000,
            agent_offset in 0u64..1_000_000,
            leader_offset in 0u64..1_000_000,
            rate_permille in 910u64..=1000, // agent clock runs at 0.91..1.0 of real time (slow is the dangerous side)
        ) {
            let rate = rate_permille as f64 / 1000.0;
            // Real time of the grant at the leader.
            let grant_real = send + delay_to_leader;
            let mut ledger = LeaseLedger::new(leader_offset);
            ledger.granted(&SiteId("a".into()), leader_offset + grant_real);
            let safe_real = ledger.safe_after(&SiteId("a".into()), &CFG) - leader_offset;
            // The agent's lease ends when its own clock has advanced ttl
            // past its send time: real time send + ttl / rate.
            let agent_send_clock = agent_offset + (send as f64 * rate) as u64;
            let mut lease = AgentLease::default();
            lease.confirmed(agent_send_clock, 1);
            let agent_end_real = send as f64 + CFG.ttl_ms as f64 / rate;
            prop_assert!(safe_real as f64 >= agent_end_real - 1.0,
                "leader promotes at {safe_real} but agent lease runs to {agent_end_real}");
        }
    }
}
