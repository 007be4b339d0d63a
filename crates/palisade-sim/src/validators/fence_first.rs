//! DESIGN rule 2: nothing promoted before the old primary is fenced. For
//! every promotion of a server: a failover to it was committed with its
//! `fenced` step; the leader proved that fence by the agent's confirmation
//! (the old server really had no process then) or by a majority of
//! witnesses vouching for the expiry (and it really had expired: every
//! lease a majority of witnesses ever granted the old site, by the ghost
//! record of all grants, ended on the old site's clock before the proof:
//! RFC 0002's invariant); and the promoting agent held the new epoch's
//! lease when it promoted.

use super::RuleResult;
use crate::network::{site_index, site_name};
use crate::world::World;

const ID: &str = "2";
const SAYS: &str = "no promotion without a confirmed fence or a majority-proven expiry";

/// Validates rule 2.
pub fn validate(w: &World) -> RuleResult {
    if w.hist.promotions.is_empty() {
        return RuleResult::not_applicable(ID, SAYS, "no server was promoted".into());
    }
    let mut v = Vec::new();
    let mut ev = Vec::new();
    let ttl = w.settings.lease.ttl_ms;
    for p in &w.hist.promotions {
        let Some((epoch, fenced)) = p.failover else {
            v.push(format!(
                "{} promoted at {} ms with no committed failover to it",
                site_name(p.site),
                p.at
            ));
            continue;
        };
        if !fenced {
            v.push(format!(
                "{} promoted at {} ms for epoch {epoch} before the fenced step was committed",
                site_name(p.site),
                p.at
            ));
        }
        if !p.leased {
            v.push(format!(
                "{} promoted at {} ms for epoch {epoch} without holding that epoch's lease",
                site_name(p.site),
                p.at
            ));
        }
        let from = w
            .hist
            .begun
            .iter()
            .find(|(_, f)| f.epoch == epoch)
            .map(|(_, f)| site_index(&f.from));
        let proof = w.hist.fences.iter().find(|f| f.epoch == epoch);
        match (from, proof) {
            (_, None) => v.push(format!(
                "{} promoted at {} ms for epoch {epoch}: the leader never proved the old primary fenced",
                site_name(p.site),
                p.at
            )),
            (Some(from), Some(f)) if f.by_expiry => {
                if f.vouchers < 2 {
                    v.push(format!(
                        "epoch {epoch}: the fence of {} was proven by {} witness(es), not a majority ({})",
                        site_name(from),
                        f.vouchers,
                        f.basis
                    ));
                }
                match w.hist.lease_end(from, epoch, ttl) {
                    Some(end) if end > f.site_now => v.push(format!(
                        "epoch {epoch}: expiry of {}'s lease proven at {} ms ({} on its clock), but a lease granted by a majority ran until {end} on its clock ({} ms later)",
                        site_name(from),
                        f.at,
                        f.site_now,
                        end - f.site_now
                    )),
                    end => ev.push(format!(
                        "epoch {epoch}: {}'s expiry proven by {} witnesses at {} ms, its last majority lease over {} ms before",
                        site_name(from),
                        f.vouchers,
                        f.at,
                        end.map_or("(none)".to_string(), |e| (f.site_now - e).to_string())
                    )),
                }
            }
            (_, Some(f)) => {
                if !f.db_stopped {
                    v.push(format!(
                        "epoch {epoch}: the agent confirmed the fence at {} ms but its server still had processes ({})",
                        f.at, f.basis
                    ));
                } else {
                    ev.push(format!(
                        "epoch {epoch}: fenced by its agent at {} ms, server stopped",
                        f.at
                    ));
                }
            }
        }
    }
    RuleResult::judged(
        ID,
        SAYS,
        v,
        format!(
            "{} promotion(s); {}",
            w.hist.promotions.len(),
            ev.join("; ")
        ),
    )
}
