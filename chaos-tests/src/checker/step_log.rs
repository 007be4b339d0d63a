//! DESIGN rule 6: every failover is one log of idempotent steps committed
//! to Raft, the same on every witness. After the world settled, every
//! witness answers and holds the same replicated state (epoch, roles,
//! `standby_needs_rejoin`, the failover record step by step and each
//! step's time) and has applied the same log index; and the record is a
//! log the core could have written: its steps in the only order they may
//! complete (`fenced`, `promoted`, `app-flipped`, `repointed`,
//! `verified`), each once, their times never going back; a completed
//! failover has every step, an aborted one promoted nothing; the epoch is
//! the record's (every failover raises it once).
//!
//! The other validators read the first answering witness's record: this
//! rule is what makes that one record the cluster's.

use std::collections::BTreeMap;

use serde_json::Value;

use super::history::History;
use super::record::{failover_of, outcome, Record};
use super::report::{RuleResult, Violation};
use super::Rule;

/// Rule 6.
pub const RULE: Rule = Rule {
    id: "6",
    short: "step log",
    says: "every failover one agreed log of steps, in order, each once",
};

/// The steps of a failover, in the only order they may complete
/// (`palisade_core::Step::ALL`).
pub const STEPS: [&str; 5] = ["fenced", "promoted", "app-flipped", "repointed", "verified"];

/// The comparable part of a witness's replicated state.
fn state_key(s: &Value) -> String {
    let f = failover_of(s).map(|f| {
        let steps: Vec<String> = f["steps"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| format!("{}@{}", s["step"], s["done_at_ms"]))
                    .collect()
            })
            .unwrap_or_default();
        format!(
            "epoch {} {}->{} {} steps [{}]",
            f["epoch"],
            f["from_site"],
            f["to_site"],
            f["outcome"],
            steps.join(", ")
        )
    });
    format!(
        "epoch {} primary {} standby {} needs_rejoin {} last_failover {}",
        s["epoch"],
        s["primary_site"],
        s["standby_site"],
        s["standby_needs_rejoin"],
        f.unwrap_or_else(|| "none".into())
    )
}

fn own_applied(site: &str, s: &Value) -> Option<u64> {
    s["nodes"].as_array()?.iter().find(|n| n["site"] == site)?["last_applied_index"].as_u64()
}

/// What is wrong with failover record `f` of a state at `epoch` as a log
/// of steps; empty: nothing.
fn log_faults(f: &Value, epoch: u64) -> Vec<String> {
    let mut bad = Vec::new();
    if f["epoch"].as_u64() != Some(epoch) {
        bad.push(format!(
            "the record's epoch {} is not the state's {epoch}",
            f["epoch"]
        ));
    }
    let steps: Vec<(&str, Option<i64>)> = f["steps"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| (s["step"].as_str().unwrap_or("?"), s["done_at_ms"].as_i64()))
                .collect()
        })
        .unwrap_or_default();
    let names: Vec<&str> = steps.iter().map(|(n, _)| *n).collect();
    if !STEPS.starts_with(&names) {
        bad.push(format!(
            "steps {names:?} are not the first {} of {STEPS:?} in order, each once",
            names.len()
        ));
    }
    let mut prev = f["started_at_ms"].as_i64();
    for (name, done) in &steps {
        match (prev, done) {
            (_, None) => bad.push(format!("step {name} has no time")),
            (Some(p), Some(d)) if d < &p => bad.push(format!(
                "step {name} done at {d}, before the step or start before it ({p})"
            )),
            _ => {}
        }
        prev = done.or(prev);
    }
    let out = outcome(f);
    if out.starts_with("completed") && names.len() != STEPS.len() {
        bad.push(format!("outcome {out:?} with only steps {names:?}"));
    }
    if out.starts_with("aborted") && names.contains(&"promoted") {
        bad.push(format!("outcome {out:?} after a promotion"));
    }
    if out.is_empty() {
        bad.push("a finished failover record without an outcome".into());
    }
    bad
}

/// Validates rule 6.
pub fn validate(h: &History) -> RuleResult {
    let mut v = Vec::new();
    let answered: Vec<(&str, &Value)> = h
        .statuses
        .iter()
        .filter_map(|(site, s)| Some((*site, s.as_ref()?)))
        .collect();
    for (site, s) in &h.statuses {
        if s.is_none() {
            v.push(Violation::new(
                RULE,
                format!("witness {site} did not answer after the world settled: its record cannot be compared"),
                None,
            ));
        }
    }
    let keys: BTreeMap<String, Vec<&str>> =
        answered.iter().fold(BTreeMap::new(), |mut m, (site, s)| {
            m.entry(state_key(s)).or_insert_with(Vec::new).push(site);
            m
        });
    if keys.len() > 1 {
        v.push(Violation::new(
            RULE,
            format!("the witnesses' replicated states differ: {keys:#?}"),
            None,
        ));
    }
    let applied: Vec<(&str, Option<u64>)> = answered
        .iter()
        .map(|(site, s)| (*site, own_applied(site, s)))
        .collect();
    if applied.windows(2).any(|w| w[0].1 != w[1].1) {
        v.push(Violation::new(
            RULE,
            format!("the witnesses applied different log indexes after settling: {applied:?}"),
            None,
        ));
    }
    let Some(rec) = Record::of(h) else {
        v.push(Violation::new(RULE, "no witness answered".into(), None));
        return RuleResult::judged(RULE, v, String::new());
    };
    let mut evidence = format!(
        "{} of {} witnesses answered, {} state(s), applied index {}",
        answered.len(),
        h.statuses.len(),
        keys.len(),
        applied
            .first()
            .and_then(|(_, i)| *i)
            .map_or_else(|| "unknown".into(), |i| i.to_string())
    );
    match rec.failover {
        None => {
            if rec.epoch != 0 {
                v.push(Violation::new(
                    RULE,
                    format!("epoch {} with no failover record", rec.epoch),
                    None,
                ));
            }
            evidence.push_str("; no failover record");
        }
        Some(f) => {
            for bad in log_faults(f, rec.epoch) {
                v.push(Violation::new(
                    RULE,
                    format!("the failover record is not a log of steps: {bad}: {f}"),
                    f["started_at_ms"].as_i64(),
                ));
            }
            let names: Vec<&str> = f["steps"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s["step"].as_str()).collect())
                .unwrap_or_default();
            evidence.push_str(&format!(
                "; failover epoch {} steps {} ({})",
                f["epoch"],
                names.join(" → "),
                outcome(f)
            ));
        }
    }
    RuleResult::judged(RULE, v, evidence)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::checker::fixtures::{calm, failed_over, history};

    #[test]
    fn agreeing_witnesses_and_a_whole_log_pass() {
        let r = validate(&history(vec![], vec![]));
        assert!(r.passed(), "{}", r.line());
        assert!(
            r.evidence.ends_with(
                "steps fenced → promoted → app-flipped → repointed → verified (completed)"
            ),
            "{}",
            r.evidence
        );
        assert!(validate(&calm(|_| false)).passed());
    }

    #[test]
    fn disagreeing_witnesses_fail() {
        let mut h = history(vec![], vec![]);
        let mut other = failed_over();
        other["epoch"] = json!(2);
        h.statuses[2].1 = Some(other);
        let r = validate(&h);
        assert!(
            r.violations()
                .iter()
                .any(|v| v.what.contains("states differ")),
            "{}",
            r.line()
        );
        let mut h = history(vec![], vec![]);
        h.statuses[1].1.as_mut().expect("status")["nodes"][1]["last_applied_index"] = json!(8);
        assert!(validate(&h).violations()[0]
            .what
            .contains("different log indexes"));
    }

    #[test]
    fn a_witness_that_does_not_answer_fails() {
        let mut h = calm(|_| false);
        h.statuses[1].1 = None;
        assert!(validate(&h).violations()[0]
            .what
            .contains("witness b did not answer"));
        for s in &mut h.statuses {
            s.1 = None;
        }
        assert!(validate(&h)
            .violations()
            .iter()
            .any(|v| v.what == "no witness answered"));
    }

    #[test]
    fn a_step_twice_out_of_order_or_missing_fails() {
        let with_steps = |steps: Value, outcome: &str| {
            let mut h = history(vec![], vec![]);
            for (_, s) in &mut h.statuses {
                let s = s.as_mut().expect("status");
                s["last_failover"]["steps"] = steps.clone();
                s["last_failover"]["outcome"] = json!(outcome);
            }
            validate(&h)
        };
        let step = |n: &str, t: i64| json!({"step": n, "done_at_ms": t});
        // A step run twice (a resumed leader that repeated it).
        let r = with_steps(
            json!([step("fenced", 2000), step("fenced", 2100)]),
            "aborted: x",
        );
        assert!(r.failed(), "{}", r.line());
        // Promoted before fenced.
        let r = with_steps(
            json!([step("promoted", 2000), step("fenced", 2100)]),
            "aborted: x",
        );
        assert!(r.failed(), "{}", r.line());
        // Times going back.
        let r = with_steps(
            json!([step("fenced", 2000), step("promoted", 1900)]),
            "aborted: x",
        );
        assert!(
            r.violations()
                .iter()
                .any(|v| v.what.contains("before the step")),
            "{}",
            r.line()
        );
        // Completed without every step.
        let r = with_steps(
            json!([step("fenced", 2000), step("promoted", 2100)]),
            "completed",
        );
        assert!(
            r.violations()
                .iter()
                .any(|v| v.what.contains("with only steps")),
            "{}",
            r.line()
        );
        // Aborted after a promotion.
        let r = with_steps(
            json!([step("fenced", 2000), step("promoted", 2100)]),
            "aborted: x",
        );
        assert!(
            r.violations()
                .iter()
                .any(|v| v.what.contains("after a promotion")),
            "{}",
            r.line()
        );
        // Aborted before any step: a legal log.
        assert!(with_steps(json!([]), "aborted: standby lags").passed());
    }

    #[test]
    fn an_epoch_without_its_record_fails() {
        let mut h = calm(|_| false);
        for (_, s) in &mut h.statuses {
            s.as_mut().expect("status")["epoch"] = json!(1);
        }
        assert!(validate(&h).violations()[0]
            .what
            .contains("epoch 1 with no failover record"));
    }
}
