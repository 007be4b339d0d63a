//! One validator per safety rule, as the chaos suite's checker has
//! (`chaos-tests/src/checker/`), each with its own result and evidence.
//! They read the world at the end of a run: the committed log, and the
//! ghost records of [`crate::history`] (what really happened, which no
//! process of palisade can see).
//!
//! | id | rule |
//! |---|---|
//! | 1 | never two writable primaries at one instant (a frozen server is not writable) |
//! | 2 | no promotion without a confirmed fence or a majority-proven expiry (and the proven expiry true: no lease a majority granted still live), and only by an agent holding the new epoch's lease |
//! | 3 | a failover only of a primary that a majority could not see answer, or that could lose its lease, or that a fault hit |
//! | 4 | never two apps with `monitorsEnabled` (unless the flip could not reach the old site), exactly one, the primary's, at the end |
//! | 5 | no synchronously acknowledged write lost (asynchronous losses are counted) |
//! | 6 | every failover one log of steps, in order, each once; one promotion per epoch |
//! | 7 | no ping-pong: a second failover only after the primary was down for `cooldown_down_after` |
//! | g | where no fault touched the primary: no failover, no kill or freeze of it, no front-door gap over 500 ms (5 s in sync mode with the standby cut off) |
//! | e | after the faults end, the cluster recovers: no failover in progress, one writable primary behind the front door, writes acknowledged |

mod fence_first;
mod no_lost_write;
mod no_outage;
mod no_ping_pong;
mod one_monitor;
mod one_primary;
mod quorum_down;
mod recovery;
mod step_log;

use crate::world::World;

/// A rule's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Held.
    Pass,
    /// Broken: see the violations.
    Fail,
    /// Nothing to judge in this run (the evidence says why).
    NotApplicable,
}

/// One rule's result.
#[derive(Clone, Debug)]
pub struct RuleResult {
    /// `1` … `7`, `g`, `e`.
    pub id: &'static str,
    /// What the rule says.
    pub says: &'static str,
    /// Its verdict.
    pub verdict: Verdict,
    /// Each violation, with its evidence.
    pub violations: Vec<String>,
    /// What was measured.
    pub evidence: String,
}

impl RuleResult {
    fn judged(
        id: &'static str,
        says: &'static str,
        violations: Vec<String>,
        evidence: String,
    ) -> Self {
        Self {
            id,
            says,
            verdict: if violations.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            violations,
            evidence,
        }
    }

    fn not_applicable(id: &'static str, says: &'static str, why: String) -> Self {
        Self {
            id,
            says,
            verdict: Verdict::NotApplicable,
            violations: Vec::new(),
            evidence: why,
        }
    }

    /// One line: rule, verdict, evidence, violations.
    pub fn line(&self) -> String {
        let v = match self.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::NotApplicable => "n/a",
        };
        let mut s = format!("rule {} ({}): {v}: {}", self.id, self.says, self.evidence);
        for x in &self.violations {
            s.push_str(&format!("\n      violation: {x}"));
        }
        s
    }
}

/// Every validator's result, in rule order.
pub fn validate_all(w: &World) -> Vec<RuleResult> {
    vec![
        one_primary::validate(w),
        fence_first::validate(w),
        quorum_down::validate(w),
        one_monitor::validate(w),
        no_lost_write::validate(w),
        step_log::validate(w),
        no_ping_pong::validate(w),
        no_outage::validate(w),
        recovery::validate(w),
    ]
}
