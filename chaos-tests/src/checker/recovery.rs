//! Rule (e), the other half of DESIGN rule 1's mirror ("a fault that
//! needs a failover costs one"): where a failover was warranted it
//! happened, a → b, and completed within the RTO bound counted from the
//! fault; a crashed primary restarted in place was writable again within
//! the bound; any failover that happened completed.

use serde_json::Value;

use super::history::{Expect, History};
use super::record::{outcome, Record};
use super::report::{Measured, RuleResult, Violation};
use super::Rule;

/// Rule (e).
pub const RULE: Rule = Rule {
    id: "e",
    short: "RTO",
    says: "a warranted failover (or restart in place) done within the RTO",
};

/// The site a warranted failover moves the primary to.
const FAILOVER_TARGET: &str = "b";

/// What rule (e) measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// From the fault to the failover's end, ms.
    pub failover_ms: Option<i64>,
    /// From the fault to the primary writable again in place, ms.
    pub recovered_ms: Option<i64>,
}

fn completed(f: &Value, v: &mut Vec<Violation>) {
    if outcome(f) != "completed" {
        v.push(Violation::new(
            RULE,
            format!("the failover did not complete: outcome {}", f["outcome"]),
            f["finished_at_ms"].as_i64(),
        ));
    }
}

fn in_time(h: &History, f: &Value, m: &Recovery, v: &mut Vec<Violation>) {
    completed(f, v);
    match m.failover_ms {
        Some(ms) if ms <= h.rto_ms => {}
        other => v.push(Violation::new(
            RULE,
            format!(
                "the failover ended {other:?} ms after the fault, beyond the RTO bound of {} ms",
                h.rto_ms
            ),
            f["finished_at_ms"].as_i64(),
        )),
    }
}

/// Validates rule (e).
pub fn validate(h: &History, rec: &Record) -> Measured<Recovery> {
    let fault = h.fault_at_ms;
    let failover = rec.failover;
    let mut m = Recovery {
        failover_ms: failover
            .and_then(|f| f["finished_at_ms"].as_i64())
            .zip(fault)
            .map(|(end, t0)| end - t0),
        recovered_ms: None,
    };
    let mut v = Vec::new();
    let na = match h.expect {
        Expect::NoFailover => Some("no failover was warranted (rule 3 judges any that happened)"),
        Expect::Failover => {
            if rec.epoch != 1 || rec.primary != FAILOVER_TARGET {
                v.push(Violation::new(
                    RULE,
                    format!(
                        "a failover to {FAILOVER_TARGET} was warranted; epoch {}, primary {}",
                        rec.epoch, rec.primary
                    ),
                    fault,
                ));
            }
            if let Some(f) = failover {
                in_time(h, f, &m, &mut v);
            }
            None
        }
        Expect::AtMostOne => match failover {
            Some(f) => {
                completed(f, &mut v);
                None
            }
            None => Some("no failover happened and none was required"),
        },
        Expect::RestartOrFailover => {
            if let Some(f) = failover {
                in_time(h, f, &m, &mut v);
            } else if let Some(t0) = fault {
                m.recovered_ms = h
                    .samples
                    .iter()
                    .find(|s| {
                        s.at_ms > t0
                            && s.writable
                                .iter()
                                .any(|(site, w)| *site == "a" && *w == Some(true))
                    })
                    .map(|s| s.at_ms - t0);
                if m.recovered_ms.is_none_or(|ms| ms > h.rto_ms) {
                    v.push(Violation::new(
                        RULE,
                        format!(
                            "the crashed primary was neither failed over nor writable again in place within {} ms (back after {:?} ms)",
                            h.rto_ms, m.recovered_ms
                        ),
                        fault,
                    ));
                }
            }
            None
        }
    };
    let evidence = match (m.failover_ms, m.recovered_ms) {
        (Some(ms), _) => format!(
            "the failover ({}) ended {ms} ms after the fault (bound {} ms)",
            failover.map_or("", outcome),
            h.rto_ms
        ),
        (None, Some(ms)) => format!(
            "restarted in place, writable {ms} ms after the fault (bound {} ms)",
            h.rto_ms
        ),
        (None, None) => String::new(),
    };
    let result = match na {
        Some(why) => RuleResult::not_applicable(RULE, why, evidence),
        None => RuleResult::judged(RULE, v, evidence),
    };
    Measured {
        result,
        measured: m,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::checker::fixtures::{calm, history, sample};
    use crate::checker::Verdict;

    fn run(h: &History) -> Measured<Recovery> {
        validate(h, &Record::of(h).expect("a record"))
    }

    #[test]
    fn a_warranted_failover_within_the_rto_passes() {
        let m = run(&history(vec![], vec![]));
        assert!(m.result.passed(), "{}", m.result.line());
        assert_eq!(m.measured.failover_ms, Some(2500));
        assert_eq!(
            m.result.evidence,
            "the failover (completed) ended 2500 ms after the fault (bound 20000 ms)"
        );
    }

    #[test]
    fn a_failover_too_late_not_completed_or_missing_fails() {
        let mut h = history(vec![], vec![]);
        h.rto_ms = 2000;
        assert!(run(&h).result.violations()[0]
            .what
            .contains("beyond the RTO"));
        let mut h = history(vec![], vec![]);
        for (_, s) in &mut h.statuses {
            s.as_mut().expect("status")["last_failover"]["outcome"] =
                json!("completed_with_failed_checks: x");
        }
        assert!(run(&h).result.violations()[0]
            .what
            .contains("did not complete"));
        let mut h = calm(|_| false);
        h.expect = Expect::Failover;
        assert!(run(&h).result.violations()[0]
            .what
            .contains("was warranted"));
    }

    #[test]
    fn a_crash_restarted_in_place_within_the_rto_passes_and_too_late_fails() {
        let mut h = calm(|_| false);
        h.expect = Expect::RestartOrFailover;
        for s in h
            .samples
            .iter_mut()
            .filter(|s| (1200..3000).contains(&s.at_ms))
        {
            *s = sample(s.at_ms, None, Some(false));
        }
        let m = run(&h);
        assert!(m.result.passed(), "{}", m.result.line());
        assert_eq!(m.measured.recovered_ms, Some(2000));
        h.rto_ms = 1500;
        assert_eq!(run(&h).result.violations().len(), 1);
    }

    #[test]
    fn without_a_warranted_failover_it_does_not_apply() {
        assert!(matches!(
            run(&calm(|_| false)).result.verdict,
            Verdict::NotApplicable(_)
        ));
        let mut h = calm(|_| false);
        h.expect = Expect::AtMostOne;
        assert!(matches!(run(&h).result.verdict, Verdict::NotApplicable(_)));
    }
}
