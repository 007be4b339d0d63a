//! The fence of an unplanned failover, as a state machine: the leader asks
//! the old primary's agent to confirm, fires the STONITH hook once the
//! agent failed to, and asks every witness each round whether it vouches
//! that the old lease ended; the first of the three proofs ends it (DESIGN
//! rule 2's order of preference, RFC 0002). No other way out exists: a
//! verdict is only ever built from a confirmation or a proven expiry.

use crate::lease::{Expiry, ExpiryProof};
use crate::topology::{NodeId, SiteId};

/// Work the runtime starts for the fence; each result comes back through
/// the matching `FenceRound` method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FenceWork {
    /// Ask the old primary's agent to fence and confirm
    /// ([`FenceRound::agent_answered`]).
    AskAgent,
    /// Fire the STONITH hook of the old primary's site
    /// ([`FenceRound::stonith_answered`]).
    FireStonith,
}

/// After the agent failed to confirm a fence, how long before it is asked
/// again.
pub const AGENT_RETRY_MS: u64 = 100;

/// How the old primary was proven fenced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FenceVerdict {
    /// Its agent stopped it and said so.
    ByAgent {
        /// What the agent said.
        detail: String,
    },
    /// The STONITH hook said done.
    ByStonith {
        /// What the hook said.
        detail: String,
    },
    /// A majority of witnesses vouch that every grant of its quorum lease
    /// ran out.
    ByLeaseExpiry {
        /// The witnesses that vouched.
        vouching: Vec<NodeId>,
        /// Every answer, in words.
        answers: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stonith {
    /// No hook configured for the site.
    None,
    /// Configured, not fired yet.
    Ready,
    /// Fired, no answer yet.
    Firing,
    /// Fired and failed: not fired again in this round.
    Failed,
}

/// One fence attempt of the failover of `epoch` away from `site`.
#[derive(Clone, Debug)]
pub struct FenceRound {
    site: SiteId,
    epoch: u64,
    started_ms: u64,
    agent_asking: bool,
    agent_failures: u32,
    /// No new ask of the agent before this (leader monotonic ms).
    agent_retry_at_ms: u64,
    stonith: Stonith,
    proof: ExpiryProof,
    verdict: Option<FenceVerdict>,
}

impl FenceRound {
    /// A fence of `site` for `epoch`, begun at `now_ms` (leader monotonic
    /// clock), among `witnesses` witnesses; `stonith` when a hook is
    /// configured for the site.
    pub fn new(site: SiteId, epoch: u64, now_ms: u64, witnesses: usize, stonith: bool) -> Self {
        Self {
            site,
            epoch,
            started_ms: now_ms,
            agent_asking: false,
            agent_failures: 0,
            agent_retry_at_ms: 0,
            stonith: if stonith {
                Stonith::Ready
            } else {
                Stonith::None
            },
            proof: ExpiryProof::new(crate::lease::majority(witnesses)),
            verdict: None,
        }
    }

    /// The work to start at `now_ms`. The agent is asked again once its
    /// last answer came (each ask is bounded by the runtime), and after a
    /// failed one no sooner than [`AGENT_RETRY_MS`] later (an unreachable
    /// agent fails at once: asked again at once, the leader logged two
    /// thousand failed asks in the 600 ms of a site loss's fence wait,
    /// demo on MariaDB), the hook is fired
    /// once, after the agent failed to confirm; the witnesses are asked on
    /// every round regardless (not listed: the runtime asks them each
    /// round, so that an unreachable agent never delays a proof the
    /// witnesses can give).
    pub fn work(&mut self, now_ms: u64) -> Vec<FenceWork> {
        let mut work = Vec::new();
        if self.verdict.is_some() {
            return work;
        }
        if self.stonith == Stonith::Ready && self.agent_failures > 0 {
            self.stonith = Stonith::Firing;
            work.push(FenceWork::FireStonith);
        }
        if !self.agent_asking && self.stonith != Stonith::Firing && now_ms >= self.agent_retry_at_ms
        {
            self.agent_asking = true;
            work.push(FenceWork::AskAgent);
        }
        work
    }

    /// The agent's answer, come at `now_ms`: `Ok` with what it said when
    /// it confirmed.
    pub fn agent_answered(
        &mut self,
        now_ms: u64,
        answer: Result<String, String>,
    ) -> Option<&FenceVerdict> {
        self.agent_asking = false;
        match answer {
            Ok(detail) => self.decide(FenceVerdict::ByAgent { detail }),
            Err(_) => {
                self.agent_failures += 1;
                self.agent_retry_at_ms = now_ms + AGENT_RETRY_MS;
                self.verdict.as_ref()
            }
        }
    }

    /// The STONITH hook's answer.
    pub fn stonith_answered(&mut self, answer: Result<String, String>) -> Option<&FenceVerdict> {
        match answer {
            Ok(detail) => self.decide(FenceVerdict::ByStonith { detail }),
            Err(_) => {
                self.stonith = Stonith::Failed;
                self.proven_expiry()
            }
        }
    }

    /// Witness `witness`'s answer about the old lease. While the hook that
    /// was fired has not answered, a proven expiry waits for it (DESIGN
    /// rule 2's order: a hook that powered the site off also ends a server
    /// the lease guard only froze); the hook's failure or its own timeout
    /// lets the proof stand.
    pub fn expiry(&mut self, witness: NodeId, answer: Expiry) -> Option<&FenceVerdict> {
        self.proof.record(witness, answer);
        if self.stonith == Stonith::Firing {
            return self.verdict.as_ref();
        }
        self.proven_expiry()
    }

    /// The lease-expiry verdict, once a majority vouched.
    fn proven_expiry(&mut self) -> Option<&FenceVerdict> {
        if self.proof.is_proven() {
            let verdict = FenceVerdict::ByLeaseExpiry {
                vouching: self.proof.vouching(),
                answers: self.proof.describe(),
            };
            return self.decide(verdict);
        }
        self.verdict.as_ref()
    }

    /// The first proof wins; later ones change nothing.
    fn decide(&mut self, verdict: FenceVerdict) -> Option<&FenceVerdict> {
        if self.verdict.is_none() {
            self.verdict = Some(verdict);
        }
        self.verdict.as_ref()
    }

    /// The proof, once there is one.
    pub fn verdict(&self) -> Option<&FenceVerdict> {
        self.verdict.as_ref()
    }

    /// The fenced step's detail for the record, once proven: how, and how
    /// long it took. `witness_wait_ms` is `lease_ttl × (1 + drift)`.
    pub fn detail(&self, now_ms: u64, witness_wait_ms: u64) -> Option<String> {
        let site = &self.site;
        Some(match self.verdict.as_ref()? {
            FenceVerdict::ByAgent { detail } => {
                format!("fenced by the site agent of {site}: {detail}")
            }
            FenceVerdict::ByStonith { detail } => format!("fenced by STONITH of {site}: {detail}"),
            FenceVerdict::ByLeaseExpiry { vouching, answers } => format!(
                "lease expired: agent of {site} did not confirm within {} ms; witnesses {vouching:?} vouch that every grant ran out (lease_ttl × (1 + drift) = {witness_wait_ms} ms past each one's last grant): {answers}",
                now_ms.saturating_sub(self.started_ms),
            ),
        })
    }

    /// The epoch being fenced.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The site being fenced.
    pub fn site(&self) -> &SiteId {
        &self.site
    }
}
