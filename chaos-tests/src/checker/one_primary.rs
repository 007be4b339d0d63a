//! DESIGN rule 1: at most one writable primary at any instant. Two
//! sources show a second one: a sample in which two databases answered
//! writable (a violation whether or not the front door routed to both; it
//! says which it did), and a write the old primary took after the new one
//! was promoted (the failover record's `promoted` step, server clocks).

use super::history::History;
use super::record::{step_done, Record};
use super::report::{RuleResult, Violation};
use super::Rule;
use crate::fmt_ms;

/// Rule 1.
pub const RULE: Rule = Rule {
    id: "1",
    short: "one primary",
    says: "at most one writable primary at any instant",
};

/// Validates rule 1. `rec` is `None` when no witness answered: then only
/// the samples are judged.
pub fn validate(h: &History, rec: Option<&Record>) -> RuleResult {
    let mut v = Vec::new();
    let mut read = 0;
    let mut most = 0;
    for s in &h.samples {
        if s.writable.iter().any(|(_, w)| w.is_some()) {
            read += 1;
        }
        let w: Vec<&str> = s
            .writable
            .iter()
            .filter(|(_, w)| *w == Some(true))
            .map(|(site, _)| *site)
            .collect();
        most = most.max(w.len());
        if w.len() > 1 {
            let routed = s
                .routable
                .as_ref()
                .map(|r| w.iter().filter(|x| r.contains(x)).count())
                .unwrap_or(0);
            v.push(Violation::new(
                RULE,
                format!(
                    "two writable primaries at {}: {w:?}; HAProxy routed to {routed} of them ({:?})",
                    fmt_ms(s.at_ms),
                    s.routable
                ),
                Some(s.at_ms),
            ));
        }
    }
    let mut evidence = format!("{read} samples read, at most {most} writable at once");

    // The old primary's writes after the new one's promotion.
    let promotion = rec.and_then(|r| r.failover).and_then(|f| {
        let from = f["from_site"].as_str()?;
        let to = f["to_site"].as_str()?;
        Some((from, to, step_done(f, "promoted")?))
    });
    if let Some((from, to, promoted)) = promotion {
        let after: Vec<_> = h
            .acks
            .iter()
            .filter(|a| a.server == from && a.server_ms >= promoted)
            .collect();
        evidence.push_str(&format!(
            "; {} writes taken by old primary {from} after {to} was promoted at {}",
            after.len(),
            fmt_ms(promoted)
        ));
        for a in after {
            v.push(Violation::new(
                RULE,
                format!(
                    "split brain: old primary {from} accepted write {} (via {}, sync in force: {}) at {}, after the new primary {to} was promoted at {}: two writable primaries",
                    a.id, a.via, a.sync, fmt_ms(a.server_ms), fmt_ms(promoted)
                ),
                Some(a.server_ms),
            ));
        }
    } else if read == 0 {
        return RuleResult::not_applicable(
            RULE,
            "the sampler never read which databases were writable, and nothing was promoted",
            evidence,
        );
    }
    RuleResult::judged(RULE, v, evidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::fixtures::{ack, calm, history, sample};

    fn run(h: &History) -> RuleResult {
        validate(h, Record::of(h).as_ref())
    }

    #[test]
    fn one_writable_primary_throughout_passes() {
        let r = run(&calm(|_| false));
        assert!(r.passed(), "{}", r.line());
        assert_eq!(r.evidence, "26 samples read, at most 1 writable at once");
    }

    #[test]
    fn a_sample_with_two_writable_databases_fails_and_says_where_haproxy_routed() {
        let mut h = calm(|_| false);
        h.samples[10] = sample(2000, Some(true), Some(true));
        let r = run(&h);
        assert_eq!(r.violations().len(), 1, "{}", r.line());
        let v = &r.violations()[0];
        assert!(v.what.contains("two writable primaries"), "{}", v.what);
        assert!(v.what.contains("routed to 1 of them"), "{}", v.what);
        assert_eq!(v.at_ms, Some(2000));
    }

    #[test]
    fn a_write_on_the_old_primary_after_the_promotion_fails() {
        let h = history(vec![ack(1, "a", 2600, true)], vec![1]);
        let r = run(&h);
        assert_eq!(r.violations().len(), 1, "{}", r.line());
        assert!(r.violations()[0].what.contains("two writable primaries"));
        // Before the promotion it is rule 2's, not this one's.
        let h = history(vec![ack(1, "a", 2400, true)], vec![1]);
        assert!(run(&h).passed());
    }

    #[test]
    fn without_samples_or_a_promotion_there_is_nothing_to_judge() {
        let mut h = calm(|_| false);
        h.samples.clear();
        let r = run(&h);
        assert!(
            matches!(r.verdict, super::super::Verdict::NotApplicable(_)),
            "{}",
            r.line()
        );
    }
}
