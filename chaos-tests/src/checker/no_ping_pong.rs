//! DESIGN rule 7: no ping-pong. After a failover, automatic failover is
//! blocked for `cooldown` (and, in these worlds, until the old primary
//! rejoins); flapping health does not trigger failovers. In one run:
//! never more than one failover (epoch at most 1).

use super::history::History;
use super::record::Record;
use super::report::{RuleResult, Violation};
use super::Rule;

/// Rule 7.
pub const RULE: Rule = Rule {
    id: "7",
    short: "no ping-pong",
    says: "no ping-pong: never more than one failover in a run",
};

/// Validates rule 7.
pub fn validate(_h: &History, rec: &Record) -> RuleResult {
    let mut v = Vec::new();
    if rec.epoch > 1 {
        v.push(Violation::new(
            RULE,
            format!("{} failovers: ping-pong", rec.epoch),
            rec.failover.and_then(|f| f["started_at_ms"].as_i64()),
        ));
    }
    RuleResult::judged(
        RULE,
        v,
        format!("{} failover(s) (epoch {})", rec.epoch, rec.epoch),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::checker::fixtures::{calm, history};

    fn run(h: &History) -> RuleResult {
        validate(h, &Record::of(h).expect("a record"))
    }

    #[test]
    fn none_or_one_failover_passes() {
        assert!(run(&calm(|_| false)).passed());
        let r = run(&history(vec![], vec![]));
        assert!(r.passed(), "{}", r.line());
        assert_eq!(r.evidence, "1 failover(s) (epoch 1)");
    }

    #[test]
    fn a_second_failover_is_ping_pong() {
        let mut h = history(vec![], vec![]);
        for (_, s) in &mut h.statuses {
            s.as_mut().expect("status")["epoch"] = json!(2);
        }
        let r = run(&h);
        assert_eq!(r.violations().len(), 1, "{}", r.line());
        assert!(r.violations()[0].what.contains("ping-pong"));
    }
}
