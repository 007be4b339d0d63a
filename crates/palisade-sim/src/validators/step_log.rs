//! DESIGN rule 6: every failover is one log of idempotent steps, in order,
//! each once, under an epoch that rises by one; and its promotion took
//! effect once.

use palisade_core::Step;

use super::RuleResult;
use crate::world::World;

const ID: &str = "6";
const SAYS: &str = "every failover one log of steps, in order, each once";

/// Validates rule 6.
pub fn validate(w: &World) -> RuleResult {
    let mut v = Vec::new();
    let all: Vec<_> = w
        .truth
        .history
        .iter()
        .chain(w.truth.failover.iter())
        .collect();
    if all.is_empty() {
        return RuleResult::not_applicable(ID, SAYS, "no failover".into());
    }
    for (i, f) in all.iter().enumerate() {
        if f.epoch != i as u64 + 1 {
            v.push(format!("failover #{i} has epoch {}", f.epoch));
        }
        let steps: Vec<Step> = f.steps.iter().map(|s| s.step).collect();
        if steps[..] != Step::ALL[..steps.len()] {
            v.push(format!("epoch {}: steps {steps:?} out of order", f.epoch));
        }
        let committed: Vec<Step> = w
            .hist
            .steps
            .iter()
            .filter(|(_, e, _, _)| *e == f.epoch)
            .map(|(_, _, s, _)| *s)
            .collect();
        if committed != steps {
            v.push(format!(
                "epoch {}: committed steps {committed:?} differ from the record {steps:?}",
                f.epoch
            ));
        }
        let promotions = w
            .hist
            .promotions
            .iter()
            .filter(|p| p.failover.is_some_and(|(e, _)| e == f.epoch))
            .count();
        if promotions > 1 {
            v.push(format!("epoch {}: promoted {promotions} times", f.epoch));
        }
    }
    let summary: Vec<String> = all
        .iter()
        .map(|f| {
            format!(
                "epoch {}: {} step(s), {}",
                f.epoch,
                f.steps.len(),
                match &f.outcome {
                    Some(o) => format!("{o:?}"),
                    None => "in progress".into(),
                }
            )
        })
        .collect();
    RuleResult::judged(ID, SAYS, v, summary.join("; "))
}
