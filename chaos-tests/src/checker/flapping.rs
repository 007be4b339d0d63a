//! Rule (h): link flapping costs less than it cuts, where the scenario
//! claims a share (`History::flap_share`): the front door is unavailable
//! (each gap between acknowledgements from the first fault on, less
//! [`NORMAL_SPACING_MS`] of normal spacing) for at most that share of the
//! time the links were cut (from each cut or isolation to the next heal).
//! A fault that needs no failover costs no outage, and the fences of a
//! flap are undone (frozen, then thawed) rather than each costing a crash
//! recovery.

use super::history::History;
use super::report::{Measured, RuleResult, Violation};
use super::Rule;

/// Rule (h).
pub const RULE: Rule = Rule {
    id: "h",
    short: "flap share",
    says: "link flapping leaves the front door unavailable for at most its share of the cut time",
};

/// A front-door writer acknowledges a write every few tens of ms; time
/// past this in a gap counts as unavailable.
pub const NORMAL_SPACING_MS: i64 = 100;

/// How long the links were cut in all (from a cut or isolation to the
/// next heal), and how long the front door was unavailable from the first
/// fault on (each gap between front-door acknowledgements, less
/// [`NORMAL_SPACING_MS`]), both ms.
pub fn cut_and_unavailable_ms(h: &History) -> (i64, i64) {
    let mut cut_total = 0;
    let mut cut_since: Option<i64> = None;
    for f in &h.faults {
        if f.text.starts_with("cut ") || f.text.starts_with("isolate ") {
            cut_since.get_or_insert(f.at_ms);
        } else if f.text.starts_with("heal") {
            if let Some(since) = cut_since.take() {
                cut_total += f.at_ms - since;
            }
        }
    }
    if let Some(since) = cut_since {
        cut_total += h.end_ms - since;
    }
    let Some(start) = h.faults.first().map(|f| f.at_ms) else {
        return (0, 0);
    };
    let mut unavailable = 0;
    let mut prev = start;
    for t in h
        .front_door_acks_after(start)
        .into_iter()
        .chain([h.end_ms.max(start)])
    {
        unavailable += (t - prev - NORMAL_SPACING_MS).max(0);
        prev = t;
    }
    (cut_total, unavailable)
}

/// Validates rule (h); measures `(cut, unavailable)` ms where a share is
/// claimed.
pub fn validate(h: &History) -> Measured<Option<(i64, i64)>> {
    let Some(share) = h.flap_share else {
        return Measured {
            result: RuleResult::not_applicable(
                RULE,
                "the scenario claims no flapping share",
                String::new(),
            ),
            measured: None,
        };
    };
    let (cut, unavailable) = cut_and_unavailable_ms(h);
    let evidence = format!(
        "front door unavailable {unavailable} ms of {cut} ms cut ({:.0} %), bound {:.0} %",
        if cut > 0 {
            unavailable as f64 * 100.0 / cut as f64
        } else {
            0.0
        },
        share * 100.0
    );
    let mut v = Vec::new();
    if unavailable as f64 > share * cut as f64 {
        v.push(Violation {
            until_ms: h.faults.last().map(|f| f.at_ms),
            ..Violation::new(
                RULE,
                format!(
                    "the front door was unavailable for {unavailable} ms while the links were cut for {cut} ms in all; the bound is {:.0} % of the cut time",
                    share * 100.0
                ),
                h.faults.first().map(|f| f.at_ms),
            )
        });
    }
    Measured {
        result: RuleResult::judged(RULE, v, evidence),
        measured: Some((cut, unavailable)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::fixtures::flapping;
    use crate::checker::Verdict;

    #[test]
    fn flapping_within_its_share_of_the_cut_time_passes() {
        // 1200..1800 dark: 700 ms without an ack, 600 ms of it unavailable.
        let h = flapping(|t| (1200..1800).contains(&t), 0.5);
        assert_eq!(cut_and_unavailable_ms(&h), (2000, 600));
        let m = validate(&h);
        assert!(m.result.passed(), "{}", m.result.line());
        assert_eq!(m.measured, Some((2000, 600)));
        assert_eq!(
            m.result.evidence,
            "front door unavailable 600 ms of 2000 ms cut (30 %), bound 50 %"
        );
    }

    #[test]
    fn flapping_that_costs_more_than_its_share_fails_rule_h() {
        // Dark through both cuts: 1100..2100 and 3100..4100.
        let h = flapping(
            |t| (1100..2100).contains(&t) || (3100..4100).contains(&t),
            0.5,
        );
        let (cut, unavailable) = cut_and_unavailable_ms(&h);
        assert_eq!(cut, 2000);
        assert!(unavailable > 1000, "{unavailable}");
        let m = validate(&h);
        assert_eq!(m.result.violations().len(), 1);
        assert_eq!(m.result.violations()[0].rule, "h");
        let m = validate(&History {
            flap_share: None,
            ..h
        });
        assert!(
            matches!(m.result.verdict, Verdict::NotApplicable(_)),
            "no claim, no rule"
        );
    }
}
