//! DESIGN rule 5: no acknowledged write silently lost. A write the
//! synchronous standby had flushed before the primary acknowledged it must
//! be on every server promoted after it and on the primary at the end; a
//! write acknowledged asynchronously (async mode, or sync mode degraded)
//! may be lost by a failover, within the detector's lag guard: counted.

use std::collections::BTreeSet;

use super::RuleResult;
use crate::network::{site_index, site_name};
use crate::world::World;

const ID: &str = "5";
const SAYS: &str = "no synchronously acknowledged write lost";

/// Validates rule 5.
pub fn validate(w: &World) -> RuleResult {
    let mut v = Vec::new();
    for p in &w.hist.promotions {
        if !p.missing_sync.is_empty() {
            v.push(format!(
                "{} promoted at {} ms without {} synchronously acknowledged write(s), e.g. {:?}",
                site_name(p.site),
                p.at,
                p.missing_sync.len(),
                &p.missing_sync[..p.missing_sync.len().min(5)]
            ));
        }
    }
    let Some(primary) = w.truth.db.as_ref().map(|d| site_index(&d.primary)) else {
        return RuleResult::not_applicable(ID, SAYS, "no roles".into());
    };
    let have: BTreeSet<u64> = w.dbs[primary].wal.iter().copied().collect();
    let sync: Vec<u64> = w
        .hist
        .acks
        .iter()
        .filter(|a| a.sync)
        .map(|a| a.id)
        .collect();
    let lost_sync: Vec<u64> = sync
        .iter()
        .filter(|id| !have.contains(id))
        .copied()
        .collect();
    if !lost_sync.is_empty() {
        v.push(format!(
            "the primary at the end ({}) lacks {} synchronously acknowledged write(s), e.g. {:?}",
            site_name(primary),
            lost_sync.len(),
            &lost_sync[..lost_sync.len().min(5)]
        ));
    }
    let lost_async = w
        .hist
        .acks
        .iter()
        .filter(|a| !a.sync && !have.contains(&a.id))
        .count();
    RuleResult::judged(
        ID,
        SAYS,
        v,
        format!(
            "{} acknowledged writes, {} synchronously; {lost_async} asynchronously acknowledged write(s) not on the final primary {}",
            w.hist.acks.len(),
            sync.len(),
            site_name(primary)
        ),
    )
}
