//! DESIGN rule 7: no ping-pong. After an automatic failover, another one
//! within `cooldown` needs the primary down for `cooldown_down_after`
//! (30 s): within a run's 30 s of faults, at most one failover.

use super::RuleResult;
use crate::world::World;

const ID: &str = "7";
const SAYS: &str = "no ping-pong: a second failover only after cooldown_down_after";

/// Validates rule 7.
pub fn validate(w: &World) -> RuleResult {
    let n = w.hist.begun.len();
    if n == 0 {
        return RuleResult::not_applicable(ID, SAYS, "no failover".into());
    }
    let need = w.settings.detector.cooldown_down_after_ms;
    let v: Vec<String> = w
        .hist
        .begun
        .iter()
        .skip(1)
        .filter(|(_, f)| f.evidence.down_for_ms < need)
        .map(|(at, f)| {
            format!(
                "a second failover (epoch {}) at {at} ms, the primary down for {} ms only (cooldown needs {need} ms)",
                f.epoch, f.evidence.down_for_ms
            )
        })
        .collect();
    RuleResult::judged(ID, SAYS, v, format!("{n} failover(s)"))
}
