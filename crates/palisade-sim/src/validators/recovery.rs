//! Rule (e): the cluster recovers once the faults end. By the end of the
//! run (15 s after the last heal): no failover in progress, exactly one
//! writable server, the desired primary, behind the front door, and the
//! front door acknowledged a write in the last 5 s.

use super::RuleResult;
use crate::network::{site_index, site_name};
use crate::world::World;

const ID: &str = "e";
const SAYS: &str = "the cluster recovers after the faults end";

/// Validates rule (e).
pub fn validate(w: &World) -> RuleResult {
    let mut v = Vec::new();
    if let Some(f) = &w.truth.failover {
        v.push(format!(
            "the failover of epoch {} is still in progress at the end ({} step(s) done)",
            f.epoch,
            f.steps.len()
        ));
    }
    let primary = w.truth.db.as_ref().map(|d| site_index(&d.primary));
    let writable: Vec<usize> = (0..2).filter(|s| w.dbs[*s].writable()).collect();
    if writable.len() != 1 || Some(writable[0]) != primary {
        v.push(format!(
            "at the end writable: {:?}; the desired primary is {:?}",
            writable.iter().map(|s| site_name(*s)).collect::<Vec<_>>(),
            primary.map(site_name)
        ));
    }
    if Some(w.client.target) != primary {
        v.push(format!(
            "the front door points at {}, the primary is {:?}",
            site_name(w.client.target),
            primary.map(site_name)
        ));
    }
    let last = w.hist.acks.last().map(|a| a.at);
    if last.is_none_or(|t| t + 5000 < w.end) {
        v.push(format!(
            "no write acknowledged in the last 5 s (last at {last:?} ms)"
        ));
    }
    RuleResult::judged(
        ID,
        SAYS,
        v,
        format!(
            "epoch {}, primary {:?}, last acknowledged write at {:?} ms",
            w.truth.epoch,
            primary.map(site_name),
            last
        ),
    )
}
