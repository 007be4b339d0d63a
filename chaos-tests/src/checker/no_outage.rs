//! Rule (g), DESIGN rule 1's mirror: a fault that needs no failover causes
//! no outage. Where the scenario claims none ([`Availability`]): the
//! primary's PostgreSQL was never restarted (its
//! `pg_postmaster_start_time()` in the samples did not change; a sample
//! without an answer is not a restart, a sampler that never read it is a
//! failure), and no gap between two consecutive front-door
//! acknowledgements (client clock) was longer than the scenario's bound,
//! from the window's start (the first fault, or the last heal) to the end
//! of the run. The longest gap is measured, and reported, in every run.
//!
//! [`Availability`]: super::Availability

use super::history::{Gap, GapFrom, History};
use super::record::Record;
use super::report::{Measured, RuleResult, Violation};
use super::Rule;
use crate::fmt_ms;
use crate::workload::Sample;

/// Rule (g).
pub const RULE: Rule = Rule {
    id: "g",
    short: "no outage",
    says: "no outage where none was warranted: no restart, no front-door gap over the bound",
};

/// Where rule (g)'s window starts, if the fault log has that moment.
fn window_start(h: &History, from: GapFrom) -> Option<i64> {
    match from {
        GapFrom::FirstFault => h.faults.first(),
        GapFrom::LastHeal => h.faults.iter().rev().find(|f| f.text.starts_with("heal")),
    }
    .map(|f| f.at_ms)
}

/// The longest stretch without a front-door acknowledgement from `start`
/// to the end of the run (the tail after the last one counts).
pub fn longest_gap(h: &History, start: i64) -> Gap {
    let mut longest = Gap {
        from_ms: start,
        to_ms: start,
    };
    let mut prev = start;
    for t in h
        .front_door_acks_after(start)
        .into_iter()
        .chain([h.end_ms.max(start)])
    {
        if t - prev > longest.ms() {
            longest = Gap {
                from_ms: prev,
                to_ms: t,
            };
        }
        prev = t;
    }
    longest
}

/// Validates rule (g); measures the longest gap (`None` without a
/// window: no fault, or no heal where the window starts at one).
pub fn validate(h: &History, rec: &Record) -> Measured<Option<Gap>> {
    let from = h.availability.map_or(GapFrom::FirstFault, |a| a.from);
    let window = match from {
        GapFrom::FirstFault => "since the first fault",
        GapFrom::LastHeal => "since the heal",
    };
    let Some(start) = window_start(h, from) else {
        let why = match from {
            GapFrom::FirstFault => "no fault in the log",
            GapFrom::LastHeal => "no heal in the log",
        };
        return Measured {
            result: RuleResult::not_applicable(RULE, why, String::new()),
            measured: None,
        };
    };
    let longest = longest_gap(h, start);
    let gap_evidence = format!(
        "longest front-door gap {} ms ({} .. {}) {window} at {}",
        longest.ms(),
        fmt_ms(longest.from_ms),
        fmt_ms(longest.to_ms),
        fmt_ms(start)
    );
    let Some(claim) = h.availability else {
        return Measured {
            result: RuleResult::not_applicable(
                RULE,
                "the scenario claims no bound: the failover it may cause is an outage (rule e bounds it)",
                gap_evidence,
            ),
            measured: Some(longest),
        };
    };
    let primary = rec.primary;
    let mut v = Vec::new();
    if longest.ms() > claim.max_gap_ms {
        v.push(Violation {
            until_ms: Some(longest.to_ms),
            ..Violation::new(
                RULE,
                format!(
                    "outage: no front-door write was acknowledged for {} ms ({} .. {}), {window} at {}; the bound is {} ms",
                    longest.ms(),
                    fmt_ms(longest.from_ms),
                    fmt_ms(longest.to_ms),
                    fmt_ms(start),
                    claim.max_gap_ms
                ),
                Some(longest.from_ms),
            )
        });
    }
    let mut evidence = format!("{gap_evidence}, bound {} ms", claim.max_gap_ms);
    // The primary's postmaster start time: the last one seen up to the
    // window's start (or the first one after it, if it did not answer
    // then); any other one seen later is a restart.
    let started = |s: &Sample| {
        s.started
            .iter()
            .find(|(site, _)| *site == primary)
            .and_then(|(_, t)| *t)
    };
    let before = h
        .samples
        .iter()
        .filter(|s| s.at_ms <= start)
        .filter_map(started)
        .next_back();
    let after = h
        .samples
        .iter()
        .filter(|s| s.at_ms > start)
        .filter_map(|s| Some((s.at_ms, started(s)?)));
    let baseline = before.or_else(|| after.clone().next().map(|(_, t)| t));
    let Some(base) = baseline else {
        // A sampler that never got an answer would make this rule (and
        // rule 1's two-writable check) blind: that is a failure too.
        v.push(Violation::new(
            RULE,
            format!(
                "the sampler never read the primary's ({primary}) postmaster start time: whether it was restarted cannot be told"
            ),
            None,
        ));
        return Measured {
            result: RuleResult::judged(RULE, v, evidence),
            measured: Some(longest),
        };
    };
    let mut restarts: Vec<(i64, i64)> = Vec::new();
    let mut current = base;
    for (at, t) in after {
        if t != current {
            restarts.push((at, t));
            current = t;
        }
    }
    evidence.push_str(&format!(
        "; primary {primary}'s postmaster started at {}, {} restart(s) seen",
        fmt_ms(base),
        restarts.len()
    ));
    if let Some((at, t)) = restarts.first() {
        v.push(Violation {
            until_ms: Some(*at),
            ..Violation::new(
                RULE,
                format!(
                    "outage: the primary's PostgreSQL ({primary}) was restarted {window} at {}: postmaster started at {}, seen at {} (it had started at {}); {} restart(s) seen",
                    fmt_ms(start),
                    fmt_ms(*t),
                    fmt_ms(*at),
                    fmt_ms(base),
                    restarts.len()
                ),
                Some(*t),
            )
        });
    }
    Measured {
        result: RuleResult::judged(RULE, v, evidence),
        measured: Some(longest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::fixtures::{calm, fault};
    use crate::checker::{Availability, Verdict};

    fn run(h: &History) -> Measured<Option<Gap>> {
        validate(h, &Record::of(h).expect("a record"))
    }

    #[test]
    fn no_outage_passes_and_measures_the_longest_gap() {
        // A 400 ms gap after the fault (writes at 2000 and 2400 only), and
        // one of 800 ms before it, which is outside the window.
        let m = run(&calm(|t| {
            (2100..2400).contains(&t) || (100..900).contains(&t)
        }));
        assert!(m.result.passed(), "{}", m.result.line());
        assert_eq!(
            m.measured,
            Some(Gap {
                from_ms: 2000,
                to_ms: 2400
            })
        );
        assert!(
            m.result.evidence.contains("0 restart(s)"),
            "{}",
            m.result.evidence
        );
    }

    #[test]
    fn a_gap_of_800_ms_is_an_outage() {
        let m = run(&calm(|t| (2100..2800).contains(&t)));
        let g = m.result.violations();
        assert_eq!(g.len(), 1, "{}", m.result.line());
        assert!(g[0].what.contains("for 800 ms"), "{}", g[0].what);
        assert_eq!((g[0].at_ms, g[0].until_ms), (Some(2000), Some(2800)));
    }

    #[test]
    fn writes_that_stop_before_the_end_are_an_outage() {
        let m = run(&calm(|t| t > 4000));
        assert_eq!(m.result.violations().len(), 1, "{}", m.result.line());
        assert_eq!(m.measured.map(|g| g.ms()), Some(1000));
    }

    #[test]
    fn a_restarted_primary_is_an_outage_even_without_a_gap() {
        let mut h = calm(|_| false);
        for s in h.samples.iter_mut().filter(|s| s.at_ms >= 3000) {
            s.started[0].1 = Some(2900);
        }
        // A sample where it did not answer is not a restart.
        h.samples[12].started[0].1 = None;
        let m = run(&h);
        let g = m.result.violations();
        assert_eq!(g.len(), 1, "{}", m.result.line());
        assert!(g[0].what.contains("was restarted"), "{}", g[0].what);
        assert_eq!(g[0].at_ms, Some(2900));
        // The standby's restart is not the primary's.
        let mut h = calm(|_| false);
        h.samples[20].started[1].1 = Some(3999);
        assert!(run(&h).result.passed());
    }

    #[test]
    fn a_sampler_that_never_read_the_primary_is_a_failure_not_a_pass() {
        let mut h = calm(|_| false);
        for s in &mut h.samples {
            s.started[0].1 = None;
        }
        let m = run(&h);
        let g = m.result.violations();
        assert_eq!(g.len(), 1);
        assert!(g[0].what.contains("never read"), "{}", g[0].what);
    }

    #[test]
    fn without_a_claim_the_gap_is_measured_not_judged() {
        let mut h = calm(|t| (2100..2800).contains(&t));
        h.availability = None;
        let m = run(&h);
        assert!(
            matches!(m.result.verdict, Verdict::NotApplicable(_)),
            "{}",
            m.result.line()
        );
        assert_eq!(m.measured.map(|g| g.ms()), Some(800));
        assert!(
            m.result.evidence.contains("800 ms"),
            "{}",
            m.result.evidence
        );
    }

    #[test]
    fn after_a_heal_only_the_time_after_it_counts() {
        let mut h = calm(|t| (1100..1900).contains(&t));
        h.faults.push(fault(2000, "heal all links"));
        h.availability = Some(Availability {
            max_gap_ms: 500,
            from: GapFrom::LastHeal,
        });
        let m = run(&h);
        assert!(m.result.passed(), "{}", m.result.line());
        assert_eq!(m.measured.map(|g| g.ms()), Some(100));
    }

    #[test]
    fn without_a_fault_it_does_not_apply() {
        let mut h = calm(|_| false);
        h.faults.clear();
        let m = run(&h);
        assert!(
            matches!(m.result.verdict, Verdict::NotApplicable(ref w) if w == "no fault in the log")
        );
        assert_eq!(m.measured, None);
    }
}
