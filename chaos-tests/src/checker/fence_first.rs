//! DESIGN rule 2: nothing promoted before the old primary is fenced. The
//! failover record must have its `fenced` step done before (or without)
//! its `promoted` step, and the fence must be real: no write taken by the
//! old primary after the recorded fence, none by the new primary before
//! it (server clocks; every process runs on one machine). The evidence
//! names how the fence was done (by the agent, a STONITH hook, or on a
//! proven lease expiry).

use super::history::History;
use super::record::{clip, outcome, step_detail, step_done, Record};
use super::report::{RuleResult, Violation};
use super::Rule;
use crate::fmt_ms;

/// Rule 2.
pub const RULE: Rule = Rule {
    id: "2",
    short: "fenced first",
    says: "nothing promoted before the old primary is fenced",
};

/// Validates rule 2 against the record's last failover.
pub fn validate(h: &History, rec: &Record) -> RuleResult {
    let Some(f) = rec.failover else {
        return RuleResult::not_applicable(
            RULE,
            "no failover in this history: nothing was promoted",
            String::new(),
        );
    };
    let from = f["from_site"].as_str().unwrap_or("");
    let to = f["to_site"].as_str().unwrap_or("");
    let started = f["started_at_ms"].as_i64();
    let promoted = step_done(f, "promoted");
    let mut v = Vec::new();
    let Some(fenced) = step_done(f, "fenced") else {
        // Aborted before its first step: legal, as long as nothing was
        // promoted and the would-be new primary took no write.
        if let Some(p) = promoted {
            v.push(Violation::new(
                RULE,
                format!(
                    "{to} was promoted at {} with no `fenced` step in the record: {f}",
                    fmt_ms(p)
                ),
                Some(p),
            ));
        } else if outcome(f).starts_with("completed") {
            v.push(Violation::new(
                RULE,
                format!("the failover record has no `fenced` step but completed: {f}"),
                started,
            ));
        }
        for a in h.acks.iter().filter(|a| a.server == to) {
            v.push(Violation::new(
                RULE,
                format!(
                    "{to} accepted write {} at {} though the failover record has no fence",
                    a.id,
                    fmt_ms(a.server_ms)
                ),
                Some(a.server_ms),
            ));
        }
        let evidence = format!(
            "the failover {from}->{to} ({}) recorded no fence",
            outcome(f)
        );
        return RuleResult::judged(RULE, v, evidence);
    };
    if let Some(p) = promoted.filter(|p| *p < fenced) {
        v.push(Violation::new(
            RULE,
            format!(
                "{to} was promoted at {}, before {from} was fenced at {}",
                fmt_ms(p),
                fmt_ms(fenced)
            ),
            Some(p),
        ));
    }
    let mut old_after = 0;
    let mut new_before = 0;
    for a in &h.acks {
        if a.server == from && a.server_ms > fenced {
            old_after += 1;
            let when = match promoted {
                Some(p) if a.server_ms >= p => format!(
                    "after the new primary {to} was promoted at {}: two writable primaries",
                    fmt_ms(p)
                ),
                Some(p) => format!(
                    "before the new primary {to} was promoted at {}: the fence the record relies on had not happened",
                    fmt_ms(p)
                ),
                None => "with no promotion recorded".to_string(),
            };
            v.push(Violation::new(
                RULE,
                format!(
                    "split brain: old primary {from} accepted write {} (via {}, sync in force: {}) at {}, after it was recorded fenced at {}, {when}",
                    a.id, a.via, a.sync, fmt_ms(a.server_ms), fmt_ms(fenced)
                ),
                Some(a.server_ms),
            ));
        }
        if a.server == to && a.server_ms < fenced {
            new_before += 1;
            v.push(Violation::new(
                RULE,
                format!(
                    "split brain: new primary {to} accepted write {} at {}, before the old primary was fenced at {}",
                    a.id,
                    fmt_ms(a.server_ms),
                    fmt_ms(fenced)
                ),
                Some(a.server_ms),
            ));
        }
    }
    let evidence = format!(
        "{from} fenced {} ms after the failover began ({}); {to} promoted {}; {old_after} writes on {from} after the fence, {new_before} on {to} before it",
        started.map_or_else(|| "?".into(), |s| (fenced - s).to_string()),
        clip(step_detail(f, "fenced").unwrap_or(""), 80),
        promoted.map_or_else(
            || "never".to_string(),
            |p| format!("{} ms after the fence", p - fenced)
        ),
    );
    RuleResult::judged(RULE, v, evidence)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::checker::fixtures::{ack, calm, history};
    use crate::checker::Verdict;

    fn run(h: &History) -> RuleResult {
        validate(h, &Record::of(h).expect("a record"))
    }

    #[test]
    fn a_fence_before_the_promotion_and_no_stray_write_passes() {
        let h = history(
            vec![ack(1, "a", 900, true), ack(2, "b", 2600, false)],
            vec![1, 2],
        );
        let r = run(&h);
        assert!(r.passed(), "{}", r.line());
        assert!(
            r.evidence
                .starts_with("a fenced 1000 ms after the failover began (fenced by agent"),
            "{}",
            r.evidence
        );
    }

    #[test]
    fn a_write_on_the_old_primary_after_the_fence_is_split_brain() {
        // Before the promotion: the fence had not happened.
        let r = run(&history(vec![ack(1, "a", 2100, true)], vec![1]));
        assert_eq!(r.violations().len(), 1, "{}", r.line());
        assert!(r.violations()[0].what.contains("had not happened"));
        // After it: two primaries (rule 1 says so too).
        let r = run(&history(vec![ack(1, "a", 2600, true)], vec![1]));
        assert!(r.violations()[0].what.contains("two writable primaries"));
    }

    #[test]
    fn a_write_on_the_new_primary_before_the_fence_fails() {
        let r = run(&history(vec![ack(1, "b", 1500, true)], vec![1]));
        assert_eq!(r.violations().len(), 1, "{}", r.line());
        assert!(r.violations()[0]
            .what
            .contains("before the old primary was fenced"));
    }

    #[test]
    fn a_promotion_before_the_fence_or_without_one_fails() {
        let mut h = history(vec![], vec![]);
        for (_, s) in &mut h.statuses {
            let s = s.as_mut().expect("status");
            s["last_failover"]["steps"][1]["done_at_ms"] = json!(1900);
        }
        assert!(run(&h).violations()[0].what.contains("before a was fenced"));
        for (_, s) in &mut h.statuses {
            let s = s.as_mut().expect("status");
            s["last_failover"]["steps"]
                .as_array_mut()
                .expect("steps")
                .remove(0);
        }
        assert!(run(&h).violations()[0].what.contains("no `fenced` step"));
    }

    #[test]
    fn an_aborted_failover_that_fenced_nothing_promoted_nothing_passes() {
        let mut h = history(vec![ack(1, "a", 2600, true)], vec![1]);
        for (_, s) in &mut h.statuses {
            let s = s.as_mut().expect("status");
            s["last_failover"]["steps"] = json!([]);
            s["last_failover"]["outcome"] = json!("aborted: standby lags");
            s["primary_site"] = json!("a");
        }
        assert!(run(&h).passed());
    }

    #[test]
    fn without_a_failover_it_does_not_apply() {
        let r = run(&calm(|_| false));
        assert!(
            matches!(r.verdict, Verdict::NotApplicable(ref w) if w.contains("nothing was promoted"))
        );
    }
}
