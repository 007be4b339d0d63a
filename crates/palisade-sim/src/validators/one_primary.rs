//! DESIGN rule 1: at most one writable primary at any instant. Read from
//! the servers themselves after every event: running, not in recovery,
//! not frozen (a hung postmaster's backends still write, so it counts).

use super::RuleResult;
use crate::network::site_name;
use crate::world::World;

const ID: &str = "1";
const SAYS: &str = "never two writable primaries at one instant";

/// Validates rule 1.
pub fn validate(w: &World) -> RuleResult {
    let violations: Vec<String> = w
        .hist
        .two_primaries
        .iter()
        .map(|i| {
            format!(
                "both servers writable from {} ms to {} ms ({} ms): {}",
                i.from,
                i.to,
                i.to - i.from,
                i.detail
            )
        })
        .collect();
    let by_site: Vec<String> = (0..2)
        .map(|s| {
            format!(
                "{} acknowledged by {}",
                w.hist.acks.iter().filter(|a| a.site == s).count(),
                site_name(s)
            )
        })
        .collect();
    let evidence = format!(
        "{} instant(s) with two writable servers; writes {}",
        w.hist.two_primaries.len(),
        by_site.join(", ")
    );
    RuleResult::judged(ID, SAYS, violations, evidence)
}
