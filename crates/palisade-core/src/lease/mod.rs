//! The primary's **quorum lease** (DESIGN rule 2, second version; RFC 0002),
//! as pure arithmetic on millisecond clocks. Each process uses its own
//! monotonic clock; only durations and verdicts cross the network, and
//! `drift` bounds how much faster one clock may run than another.
//!
//! * **Witness** ([`GrantBook`]): every witness grants the primary site's
//!   agent renewals on its own, from its own applied state, with no leader
//!   and no Raft round in the path ([`may_grant`]), and remembers when it
//!   last granted each site. Once it has applied the record that moves the
//!   primary away it refuses that site for good.
//! * **Agent** ([`QuorumLease`]): keeps its database writable only while a
//!   majority of witnesses' grants are live, each counted from when the
//!   agent *sent* that renewal: until the majority-th most recent send time
//!   plus `ttl`.
//! * **Leader** ([`ExpiryProof`]): may promote on expiry only once a
//!   majority of witnesses each say [`Expiry::Expired`]: they stopped
//!   granting, their last grant plus `ttl × (1 + drift)` has passed on their
//!   own clock, and so has their own start plus the same (a restarted
//!   witness forgot its grants). No wait counted from when a leader took
//!   office: a leader change neither starves the primary nor delays the
//!   promotion.
//!
//! Why it is safe: the agent's majority and the leader's majority share a
//! witness `w`. `w` granted the renewal (sent at `s`) at `g >= s`, and said
//! "expired" only after `g + ttl × (1 + drift)` on its clock, which is after
//! `s + ttl` on the agent's clock for any rate difference within `drift`.
//! The property test in `tests.rs` checks this over random interleavings of
//! loss, delay, reordering, duplication, witness restarts and drift.

mod agent;
mod witness;

#[cfg(test)]
mod tests;

pub use agent::{QuorumLease, Voters};
pub use witness::{lease_epoch, may_grant, Expiry, ExpiryProof, Grant, GrantBook};

use serde::{Deserialize, Serialize};

/// Lease timing, the same on every witness.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseConfig {
    /// How long a granted renewal keeps the primary writable, in ms,
    /// counted on the agent's clock from when it sent the renewal.
    pub ttl_ms: u64,
    /// Largest relative clock-rate difference between two processes
    /// (0.1 = 10 %). A witness vouches for an expiry only `ttl × (1 +
    /// drift)` after its last grant.
    pub drift: f64,
}

impl LeaseConfig {
    /// How long after its last grant (or its start) a witness waits before
    /// it vouches that every lease it could have granted has ended.
    pub fn witness_wait_ms(&self) -> u64 {
        (self.ttl_ms as f64 * (1.0 + self.drift)).ceil() as u64
    }
}

/// How many of `n` voters make a majority.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}
