//! DESIGN rule 3: a primary is down only when a majority of witnesses say
//! so. A failover is warranted only if, before it began, the primary was
//! at some instant unreachable-or-silent for a majority of live witnesses,
//! or could reach fewer than a majority of witnesses for its lease (which
//! then freezes it), or a fault hit its server.

use super::RuleResult;
use crate::network::{site_index, site_name};
use crate::world::World;

const ID: &str = "3";
const SAYS: &str = "a failover only where a majority could not see the primary";

/// Validates rule 3.
pub fn validate(w: &World) -> RuleResult {
    if w.hist.begun.is_empty() {
        return RuleResult::not_applicable(ID, SAYS, "no failover".into());
    }
    let mut v = Vec::new();
    let mut ev = Vec::new();
    for (at, f) in &w.hist.begun {
        let from = site_index(&f.from);
        match w.hist.warranted.get(&from) {
            Some((t, why)) if t <= at => ev.push(format!(
                "epoch {} at {at} ms: warranted since {t} ms ({why})",
                f.epoch
            )),
            _ => v.push(format!(
                "failover of epoch {} at {at} ms away from {}, which a majority could see answer and which could keep its lease the whole time ({})",
                f.epoch,
                site_name(from),
                f.reason
            )),
        }
    }
    RuleResult::judged(ID, SAYS, v, ev.join("; "))
}
