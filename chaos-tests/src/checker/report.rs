//! What the validators return and the report that gathers them: one
//! result per rule (pass, fail with its violations, or not applicable
//! with the reason), the evidence each measured, and the figures of the
//! results table.

use std::fmt::Write as _;

use super::history::Gap;

/// A rule the checker validates: DESIGN.md's seven safety rules by
/// number, and the claims by letter (e: a warranted failover
/// within the RTO, g: no outage, h: the flapping share).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// `1` … `7`, `e`, `g`, `h`: what violations, the results table and
    /// the history slices call it.
    pub id: &'static str,
    /// A few words for a column header, e.g. `one primary`.
    pub short: &'static str,
    /// What it says, in one line.
    pub says: &'static str,
}

/// One broken rule.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The rule's id (`1` … `7`, `e`, `g`, `h`), or `settle` for the
    /// harness's own checks.
    pub rule: &'static str,
    /// What happened, with ids and times.
    pub what: String,
    /// The moment it is about, for the history slice.
    pub at_ms: Option<i64>,
    /// Where what it is about is a stretch of time (a gap in the writes),
    /// its end: the history slice runs to 2 s past it.
    pub until_ms: Option<i64>,
}

impl Violation {
    /// A violation of `rule` about the moment `at_ms` (if known).
    pub fn new(rule: Rule, what: String, at_ms: Option<i64>) -> Self {
        Self {
            rule: rule.id,
            what,
            at_ms,
            until_ms: None,
        }
    }
}

/// A validator's verdict.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// The rule held.
    Pass,
    /// The rule was broken: every violation found (never empty).
    Fail(Vec<Violation>),
    /// The history cannot break this rule, and why (e.g. `no failover in
    /// this history: nothing was promoted`).
    NotApplicable(String),
}

/// One validator's result.
#[derive(Clone, Debug)]
pub struct RuleResult {
    /// Which rule.
    pub rule: Rule,
    /// Its verdict.
    pub verdict: Verdict,
    /// What it measured, in words (e.g. `212 samples, never two
    /// writable`); may be empty.
    pub evidence: String,
}

impl RuleResult {
    /// Pass when `violations` is empty, fail with them otherwise.
    pub fn judged(rule: Rule, violations: Vec<Violation>, evidence: String) -> Self {
        let verdict = if violations.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail(violations)
        };
        Self {
            rule,
            verdict,
            evidence,
        }
    }

    /// Not applicable, for `why`.
    pub fn not_applicable(rule: Rule, why: impl Into<String>, evidence: String) -> Self {
        Self {
            rule,
            verdict: Verdict::NotApplicable(why.into()),
            evidence,
        }
    }

    /// Its violations (none unless it failed).
    pub fn violations(&self) -> &[Violation] {
        match &self.verdict {
            Verdict::Fail(v) => v,
            _ => &[],
        }
    }

    /// Whether it failed.
    pub fn failed(&self) -> bool {
        matches!(self.verdict, Verdict::Fail(_))
    }

    /// Whether it passed.
    pub fn passed(&self) -> bool {
        matches!(self.verdict, Verdict::Pass)
    }

    /// `pass`, `FAIL (n)` or `n/a`: a cell of the results table.
    pub fn cell(&self) -> String {
        match &self.verdict {
            Verdict::Pass => "pass".into(),
            Verdict::Fail(v) => format!("FAIL ({})", v.len()),
            Verdict::NotApplicable(_) => "n/a".into(),
        }
    }

    /// One line: `rule 1 (at most one writable primary): pass: evidence`,
    /// or the reason it does not apply.
    pub fn line(&self) -> String {
        let mut s = format!(
            "rule {} ({}): {}",
            self.rule.id,
            self.rule.says,
            self.cell()
        );
        if let Verdict::NotApplicable(why) = &self.verdict {
            let _ = write!(s, ": {why}");
        }
        if !self.evidence.is_empty() {
            let _ = write!(s, "; measured: {}", self.evidence);
        }
        if let Verdict::Fail(v) = &self.verdict {
            let _ = write!(s, "; first: {}", v[0].what);
        }
        s
    }
}

/// A validator's result and what it measured for the results table.
#[derive(Clone, Debug)]
pub struct Measured<M> {
    /// The result.
    pub result: RuleResult,
    /// The figures.
    pub measured: M,
}

/// The verdict of every validator and the numbers of the results table.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Each validator's result, in rule order (empty when the checker did
    /// not run: the harness failed before it).
    pub results: Vec<RuleResult>,
    /// The harness's own checks that failed (rule `settle`: the cluster
    /// did not settle, the front door took no writes after it): no safety
    /// rule, but the run fails.
    pub harness: Vec<Violation>,
    /// Failovers the witnesses recorded (the epoch).
    pub failovers: u64,
    /// From the fault to the failover's end, ms.
    pub failover_ms: Option<i64>,
    /// From the fault to the primary writable again in place, ms.
    pub recovered_ms: Option<i64>,
    /// Acknowledged writes, all writers.
    pub acked: usize,
    /// Acknowledged through the front door.
    pub acked_front_door: usize,
    /// Acknowledged writes missing from the final primary.
    pub lost: usize,
    /// Of those, how many the mode's bound allows (degraded sync, async tail).
    pub lost_allowed: usize,
    /// The longest gap between front-door acknowledgements in rule (g)'s
    /// window (from the first fault, unless the scenario says otherwise);
    /// `None` without a fault.
    pub longest_gap: Option<Gap>,
    /// Rule (g)'s bound, when the scenario claims no outage.
    pub max_gap_ms: Option<i64>,
    /// Rule (h)'s figures, when the scenario claims a share: the links' cut
    /// time and the front door's unavailable time, ms.
    pub flap: Option<(i64, i64)>,
    /// The merged history slices of the violations, ready to print.
    pub slices: String,
}

impl Report {
    /// Every violation: the failed rules' in rule order, then the harness's.
    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.results
            .iter()
            .flat_map(|r| r.violations())
            .chain(&self.harness)
    }

    /// Whether nothing failed (no rule, no harness check).
    pub fn passed(&self) -> bool {
        self.violations().next().is_none()
    }

    /// The ids of the failed rules, in rule order, then `settle` if a
    /// harness check failed.
    pub fn failed_rules(&self) -> Vec<&'static str> {
        let mut ids: Vec<&'static str> = self
            .results
            .iter()
            .filter(|r| r.failed())
            .map(|r| r.rule.id)
            .collect();
        if !self.harness.is_empty() {
            ids.push("settle");
        }
        ids
    }

    /// The result of rule `id`, if the checker ran it.
    pub fn result(&self, id: &str) -> Option<&RuleResult> {
        self.results.iter().find(|r| r.rule.id == id)
    }

    /// Whether rule `id` failed.
    pub fn fails(&self, id: &str) -> bool {
        self.result(id).is_some_and(RuleResult::failed)
    }

    /// Whether the checker caught a fence that did not hold: a second
    /// writable primary (rule 1), or a write taken by the old primary
    /// after its recorded fence or by the new one before it (rule 2). The
    /// broken-fence self-test must see this.
    pub fn caught_broken_fence(&self) -> bool {
        self.fails(super::one_primary::RULE.id) || self.fails(super::fence_first::RULE.id)
    }

    /// Records a failed harness check (`settle`): `what` and why.
    pub fn harness_failure(&mut self, what: &str, why: &anyhow::Error) {
        let what = format!("{what}: {why:#}");
        let _ = writeln!(self.slices, "VIOLATION (settle) {what}");
        self.harness.push(Violation {
            rule: "settle",
            what,
            at_ms: None,
            until_ms: None,
        });
    }

    /// Every rule's result on its own line, then the harness's failures.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        for r in &self.results {
            let _ = writeln!(s, "{}", r.line());
        }
        for v in &self.harness {
            let _ = writeln!(s, "settle: FAIL: {}", v.what);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Rule = Rule {
        id: "9",
        short: "test",
        says: "a rule for the test",
    };

    #[test]
    fn a_result_passes_fails_or_does_not_apply_and_says_so() {
        let pass = RuleResult::judged(R, Vec::new(), "3 samples".into());
        assert!(pass.passed());
        assert_eq!(pass.cell(), "pass");
        assert_eq!(
            pass.line(),
            "rule 9 (a rule for the test): pass; measured: 3 samples"
        );
        let fail = RuleResult::judged(
            R,
            vec![Violation::new(R, "broken".into(), None)],
            String::new(),
        );
        assert!(fail.failed());
        assert_eq!(fail.cell(), "FAIL (1)");
        assert!(fail.line().ends_with("first: broken"), "{}", fail.line());
        let na = RuleResult::not_applicable(R, "nothing to judge", String::new());
        assert!(!na.passed() && !na.failed());
        assert_eq!(na.cell(), "n/a");
        assert!(na.line().contains("n/a: nothing to judge"), "{}", na.line());

        let mut r = Report {
            results: vec![pass, fail, na],
            ..Report::default()
        };
        assert!(!r.passed());
        assert_eq!(r.failed_rules(), ["9"]);
        r.results.remove(1);
        assert!(r.passed());
        r.harness_failure("settle", &anyhow::anyhow!("timed out"));
        assert!(!r.passed());
        assert_eq!(r.failed_rules(), ["settle"]);
        assert!(r.slices.contains("VIOLATION (settle) settle: timed out"));
    }
}
