//! DESIGN rule 4: exactly one app server has `monitorsEnabled=true` once a
//! failover ends, the primary's. Two are on at once only while the flip
//! could not reach the old site (its agent switches it off on return);
//! at the end of the run exactly the primary's is on.

use super::RuleResult;
use crate::network::{site_index, site_name};
use crate::world::World;

const ID: &str = "4";
const SAYS: &str = "at most one app with monitorsEnabled, the primary's at the end";

/// Validates rule 4.
pub fn validate(w: &World) -> RuleResult {
    let mut v = Vec::new();
    let excused = |from: u64| {
        w.hist.flip_off_failed.iter().any(|e| {
            w.hist
                .begun
                .iter()
                .any(|(t, f)| f.epoch == *e && *t <= from)
        })
    };
    let mut excusable = 0;
    for i in &w.hist.two_monitors {
        if excused(i.from) {
            excusable += 1;
        } else {
            v.push(format!(
                "both apps had monitorsEnabled=true from {} ms to {} ms ({})",
                i.from, i.to, i.detail
            ));
        }
    }
    let primary = w.truth.db.as_ref().map(|d| site_index(&d.primary));
    let on: Vec<usize> = (0..2).filter(|s| w.apps[*s]).collect();
    if on.len() != 1 || Some(on[0]) != primary {
        v.push(format!(
            "at the end monitorsEnabled=true at {:?}, the primary is {:?}",
            on.iter().map(|s| site_name(*s)).collect::<Vec<_>>(),
            primary.map(site_name)
        ));
    }
    RuleResult::judged(
        ID,
        SAYS,
        v,
        format!(
            "{} interval(s) with both on, {excusable} while the old site was unreachable; at the end on at {:?}",
            w.hist.two_monitors.len(),
            on.iter().map(|s| site_name(*s)).collect::<Vec<_>>()
        ),
    )
}
