//! Rule (g), DESIGN rule 1's mirror: a fault that needs no failover causes
//! no outage. Where no fault touched the first primary (site a): its
//! server never went down for a majority of witnesses, never lost the
//! means to renew its lease with a majority, was never hit itself, and the
//! front door could always reach it; then nothing may fail over, no agent
//! or guard may kill or freeze it, and the front door's longest gap
//! between two acknowledged writes stays within 500 ms (5 s in sync mode
//! when the standby was cut off or down: commits wait for it until the
//! agent degrades, `sync_degrade_after_ms` + a probe and a tick; the chaos
//! suite's `SYNC_DEGRADE_GAP_MS`).

use palisade_core::detector::ReplicationMode;

use super::RuleResult;
use crate::world::{World, WRITES_FROM_MS};

const ID: &str = "g";
const SAYS: &str = "no failover, no restart, no outage where no fault touched the primary";
const MAX_GAP_MS: u64 = 500;
const SYNC_DEGRADE_GAP_MS: u64 = 5000;

/// Validates rule (g).
pub fn validate(w: &World) -> RuleResult {
    if let Some((t, why)) = w.hist.touched.get(&0) {
        return RuleResult::not_applicable(
            ID,
            SAYS,
            format!("a fault touched primary a at {t} ms: {why}"),
        );
    }
    let mut v = Vec::new();
    for (at, f) in &w.hist.begun {
        v.push(format!(
            "failover of epoch {} at {at} ms: {}",
            f.epoch, f.reason
        ));
    }
    for (at, site, by) in w.hist.stops.iter().filter(|(_, s, _)| *s == 0) {
        v.push(format!("primary {site} stopped at {at} ms by {by}"));
    }
    for (at, _) in w.hist.freezes.iter().filter(|(_, s)| *s == 0) {
        v.push(format!("primary a frozen by its lease guard at {at} ms"));
    }
    let bound = match (&w.hist.standby_touched, w.schedule.replication) {
        (Some(_), ReplicationMode::Sync) => SYNC_DEGRADE_GAP_MS,
        _ => MAX_GAP_MS,
    };
    let start = WRITES_FROM_MS + 1000;
    let mut prev = start;
    let mut longest = (0, start, start);
    for t in w
        .hist
        .acks
        .iter()
        .map(|a| a.at)
        .filter(|t| *t >= start)
        .chain([w.end])
    {
        if t - prev > longest.0 {
            longest = (t - prev, prev, t);
        }
        prev = t;
    }
    if longest.0 > bound {
        v.push(format!(
            "no front-door write acknowledged for {} ms ({} .. {} ms); the bound is {bound} ms",
            longest.0, longest.1, longest.2
        ));
    }
    RuleResult::judged(
        ID,
        SAYS,
        v,
        format!(
            "untouched primary; longest front-door gap {} ms (bound {bound} ms{})",
            longest.0,
            w.hist
                .standby_touched
                .as_ref()
                .map(|(t, why)| format!("; standby touched at {t} ms: {why}"))
                .unwrap_or_default()
        ),
    )
}
