//! The checker: reads what clients saw (acknowledged writes, samples of
//! which databases were writable and routable), the fault log, and every
//! witness's own record of the failover, and says, rule by rule, whether
//! the safety rules of DESIGN.md held.
//!
//! One validator per rule, each in its own module with its own result
//! (pass; fail with its violations; or not applicable, with the reason)
//! and the evidence it measured, as etcd's robustness validation keeps one
//! result per guarantee (`tests/robustness/validate`):
//!
//! | id | module | rule |
//! |---|---|---|
//! | 1 | [`one_primary`] | at most one writable primary at any instant |
//! | 2 | [`fence_first`] | nothing promoted before the old primary is fenced |
//! | 3 | [`quorum_down`] | down only by a majority: no failover where none was warranted |
//! | 4 | [`one_monitor`] | exactly one `monitorsEnabled=true`, the primary's |
//! | 5 | [`no_lost_write`] | no acknowledged write lost beyond the mode's bound |
//! | 6 | [`step_log`] | every failover one agreed log of steps, in order, each once |
//! | 7 | [`no_ping_pong`] | never more than one failover |
//! | e | [`recovery`] | a warranted failover (or restart in place) within the RTO |
//! | g | [`no_outage`] | no outage where none was warranted |
//! | h | [`flapping`] | flapping costs at most its share of the cut time |
//!
//! Numbers are DESIGN.md's rules; letters are issue 10's claims (before
//! the split, the checker's rules were lettered a–h: (a) is now 1 and 2,
//! (b) 5, (c) 4, (d) 3 and 7, (f) 6; (e), (g) and (h) kept their letters).
//!
//! The validators read the history ([`History`]) and the record of the
//! first witness that answered ([`Record`]); rule 6 checks that every
//! witness holds that same record. With no witness answering, the rules
//! that read the record do not apply (and rule 6 fails). A violation
//! carries the time it is about, and the report prints the slice of the
//! merged history around it.

pub mod fence_first;
pub mod flapping;
pub mod history;
pub mod no_lost_write;
pub mod no_outage;
pub mod no_ping_pong;
pub mod one_monitor;
pub mod one_primary;
pub mod quorum_down;
pub mod record;
pub mod recovery;
pub mod report;
pub mod slice;
pub mod step_log;

#[cfg(test)]
mod fixtures;

use std::fmt::Write as _;

pub use history::{Availability, Expect, Gap, GapFrom, History};
pub use no_lost_write::ASYNC_LOSS_WINDOW_MS;
pub use record::Record;
pub use report::{Measured, Report, Rule, RuleResult, Verdict, Violation};
pub use slice::slice;

/// Every rule, in the order of the report and the results table.
pub const RULES: [Rule; 10] = [
    one_primary::RULE,
    fence_first::RULE,
    quorum_down::RULE,
    one_monitor::RULE,
    no_lost_write::RULE,
    step_log::RULE,
    no_ping_pong::RULE,
    recovery::RULE,
    no_outage::RULE,
    flapping::RULE,
];

/// Why a rule that reads the record does not apply when no witness answered.
const NO_RECORD: &str = "no witness answered: there is no record to judge against (rule 6 fails)";

/// Runs every validator on `h` and gathers their results, the figures of
/// the results table, and the history slices of the violations.
pub fn check(h: &History) -> Report {
    let rec = Record::of(h);
    let rec = rec.as_ref();
    let lost = measure(no_lost_write::RULE, rec, |r| no_lost_write::validate(h, r));
    let recovery = measure(recovery::RULE, rec, |r| recovery::validate(h, r));
    let outage = measure(no_outage::RULE, rec, |r| no_outage::validate(h, r));
    let flap = flapping::validate(h);
    let mut r = Report {
        results: vec![
            one_primary::validate(h, rec),
            judge(fence_first::RULE, rec, |r| fence_first::validate(h, r)),
            judge(quorum_down::RULE, rec, |r| quorum_down::validate(h, r)),
            judge(one_monitor::RULE, rec, |r| one_monitor::validate(h, r)),
            lost.result,
            step_log::validate(h),
            judge(no_ping_pong::RULE, rec, |r| no_ping_pong::validate(h, r)),
            recovery.result,
            outage.result,
            flap.result,
        ],
        failovers: rec.map_or(0, |r| r.epoch),
        failover_ms: recovery.measured.failover_ms,
        recovered_ms: recovery.measured.recovered_ms,
        acked: h.acks.len(),
        acked_front_door: h.acks.iter().filter(|a| a.via == "front-door").count(),
        lost: lost.measured.lost,
        lost_allowed: lost.measured.allowed,
        longest_gap: outage.measured,
        max_gap_ms: h.availability.map(|a| a.max_gap_ms),
        flap: flap.measured,
        ..Report::default()
    };
    r.slices = slices(h, rec.map(|r| r.state), &r);
    r
}

/// `validate` on the record, or not applicable without one.
fn judge(
    rule: Rule,
    rec: Option<&Record>,
    validate: impl FnOnce(&Record) -> RuleResult,
) -> RuleResult {
    match rec {
        Some(r) => validate(r),
        None => RuleResult::not_applicable(rule, NO_RECORD, String::new()),
    }
}

/// [`judge`] for a validator that also measures (nothing without a record).
fn measure<M: Default>(
    rule: Rule,
    rec: Option<&Record>,
    validate: impl FnOnce(&Record) -> Measured<M>,
) -> Measured<M> {
    match rec {
        Some(r) => validate(r),
        None => Measured {
            result: RuleResult::not_applicable(rule, NO_RECORD, String::new()),
            measured: M::default(),
        },
    }
}

/// Each violation with the history around it (from 3 s before to 2 s
/// after it, or after its end), and the history of the faults when a
/// violation has no time of its own.
fn slices(h: &History, state: Option<&serde_json::Value>, r: &Report) -> String {
    let mut out = String::new();
    let mut timeless = false;
    for x in r.violations() {
        let _ = writeln!(out, "VIOLATION ({}) {}", x.rule, x.what);
        match x.at_ms {
            Some(t) => {
                let end = x.until_ms.unwrap_or(t).max(t);
                let _ = writeln!(out, "{}", slice(h, state, t - 3000, end + 2000));
            }
            None => timeless = true,
        }
    }
    if timeless && !h.faults.is_empty() {
        let (from, to) = (
            h.faults.first().map(|f| f.at_ms).unwrap_or(0) - 1000,
            h.faults.last().map(|f| f.at_ms).unwrap_or(0) + 3000,
        );
        let _ = writeln!(out, "history of the faults:\n{}", slice(h, state, from, to));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fixtures::{ack, calm, history};
    use super::*;

    fn ids(r: &Report) -> Vec<&'static str> {
        r.results.iter().map(|x| x.rule.id).collect()
    }

    #[test]
    fn every_rule_has_one_result_in_order() {
        let r = check(&calm(|_| false));
        assert_eq!(ids(&r), RULES.map(|x| x.id));
        assert!(r.passed(), "{}", r.summary());
        // No failover and no flapping claim: those rules say why not.
        for id in ["2", "e", "h"] {
            assert!(
                matches!(
                    r.result(id).map(|x| &x.verdict),
                    Some(Verdict::NotApplicable(_))
                ),
                "{id}: {}",
                r.summary()
            );
        }
        assert_eq!(r.summary().lines().count(), RULES.len());
    }

    #[test]
    fn a_clean_failover_passes_with_its_figures() {
        let h = history(
            vec![ack(1, "a", 900, true), ack(2, "b", 2600, false)],
            vec![1, 2],
        );
        let r = check(&h);
        assert!(r.passed(), "{}", r.summary());
        assert_eq!(r.failover_ms, Some(2500));
        assert_eq!((r.failovers, r.acked, r.lost), (1, 2, 0));
        assert_eq!(r.longest_gap.map(|g| g.ms()), Some(3500));
    }

    #[test]
    fn a_split_brain_fails_rules_1_and_2_and_prints_the_history_around_it() {
        let r = check(&history(vec![ack(1, "a", 2600, true)], vec![1]));
        assert_eq!(r.failed_rules(), ["1", "2"], "{}", r.summary());
        assert!(r.caught_broken_fence());
        assert!(
            r.slices.contains("VIOLATION (1) split brain"),
            "{}",
            r.slices
        );
        assert!(r.slices.contains("isolate site a"), "{}", r.slices);
    }

    #[test]
    fn a_gap_prints_its_slice_past_its_end() {
        let r = check(&calm(|t| (2100..2800).contains(&t)));
        assert_eq!(r.failed_rules(), ["g"]);
        assert!(r.slices.contains("VIOLATION (g)"), "{}", r.slices);
        // Its slice runs past the gap's end, so the writes' return shows.
        assert!(r.slices.contains("00:00:04.500"), "{}", r.slices);
    }

    #[test]
    fn two_monitors_on_and_disagreeing_witnesses_fail_rules_4_and_6() {
        let mut h = history(vec![], vec![]);
        h.monitors = vec![("a", Ok(true)), ("b", Ok(true))];
        let mut other = fixtures::failed_over();
        other["epoch"] = serde_json::json!(2);
        h.statuses[2].1 = Some(other);
        let r = check(&h);
        assert_eq!(r.failed_rules(), ["4", "6"], "{}", r.summary());
        assert!(r.slices.contains("history of the faults"), "{}", r.slices);
    }

    #[test]
    fn a_failover_where_none_was_warranted_fails_rule_3() {
        let mut h = history(vec![], vec![]);
        h.expect = Expect::NoFailover;
        assert_eq!(check(&h).failed_rules(), ["3"]);
    }

    #[test]
    fn with_no_witness_answering_rule_6_fails_and_the_record_rules_do_not_apply() {
        let mut h = calm(|_| false);
        for s in &mut h.statuses {
            s.1 = None;
        }
        let r = check(&h);
        assert_eq!(r.failed_rules(), ["6"], "{}", r.summary());
        for id in ["2", "3", "4", "5", "7", "e", "g"] {
            assert!(
                matches!(r.result(id).map(|x| &x.verdict), Some(Verdict::NotApplicable(w)) if w == NO_RECORD),
                "{id}: {}",
                r.summary()
            );
        }
        // Rule 1 still judges the samples.
        assert!(r.result("1").is_some_and(RuleResult::passed));
    }
}
