//! DESIGN rule 3: a primary is "down" only when a majority of witnesses
//! say so, so a fault that leaves a majority seeing the primary (one
//! witness cut off, the standby's or the tie-breaker's site lost, a leader
//! change) causes no failover. It applies to the scenarios that expect
//! none; where the fault takes the primary from a majority (site loss, a
//! crash) or the schedule is random, whether a failover was warranted is
//! not this rule's to say (rules 7 and e judge those).

use super::history::{Expect, History};
use super::record::Record;
use super::report::{RuleResult, Violation};
use super::Rule;

/// Rule 3.
pub const RULE: Rule = Rule {
    id: "3",
    short: "quorum down",
    says: "down only when a majority says so: no failover where none was warranted",
};

/// The primary every world starts with.
const FIRST_PRIMARY: &str = "a";

/// Validates rule 3.
pub fn validate(h: &History, rec: &Record) -> RuleResult {
    let evidence = format!("epoch {}, primary {}", rec.epoch, rec.primary);
    let why = match h.expect {
        Expect::NoFailover => None,
        Expect::Failover => Some("the fault takes the primary from a majority: a failover is warranted"),
        Expect::RestartOrFailover => {
            Some("the primary crashed: down in every witness's view, a failover may be warranted")
        }
        Expect::AtMostOne => Some(
            "the faults are not known to leave the primary to a majority: one failover is allowed (rule 7)",
        ),
    };
    if let Some(why) = why {
        return RuleResult::not_applicable(RULE, why, evidence);
    }
    let mut v = Vec::new();
    if rec.epoch != 0 || rec.failover.is_some() || rec.primary != FIRST_PRIMARY {
        v.push(Violation::new(
            RULE,
            format!(
                "a failover where none was warranted: epoch {}, primary {}, record {}",
                rec.epoch,
                rec.primary,
                rec.failover.map(|f| f.to_string()).unwrap_or_default()
            ),
            rec.failover.and_then(|f| f["started_at_ms"].as_i64()),
        ));
    }
    RuleResult::judged(RULE, v, evidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::fixtures::{calm, history};
    use crate::checker::Verdict;

    fn run(h: &History) -> RuleResult {
        validate(h, &Record::of(h).expect("a record"))
    }

    #[test]
    fn no_failover_where_none_was_warranted_passes() {
        let r = run(&calm(|_| false));
        assert!(r.passed(), "{}", r.line());
        assert_eq!(r.evidence, "epoch 0, primary a");
    }

    #[test]
    fn a_failover_where_none_was_warranted_fails() {
        let mut h = history(vec![], vec![]);
        h.expect = Expect::NoFailover;
        let r = run(&h);
        assert_eq!(r.violations().len(), 1, "{}", r.line());
        assert_eq!(r.violations()[0].at_ms, Some(1000));
    }

    #[test]
    fn where_a_failover_is_warranted_it_does_not_apply() {
        for e in [
            Expect::Failover,
            Expect::RestartOrFailover,
            Expect::AtMostOne,
        ] {
            let mut h = history(vec![], vec![]);
            h.expect = e;
            assert!(
                matches!(run(&h).verdict, Verdict::NotApplicable(_)),
                "{e:?}"
            );
        }
    }
}
