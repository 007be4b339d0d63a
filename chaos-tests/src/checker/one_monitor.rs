//! DESIGN rule 4: exactly one app server has `monitorsEnabled=true` once
//! a failover ends, the primary's: read from both apps' files after the
//! world settled.

use super::history::History;
use super::record::Record;
use super::report::{RuleResult, Violation};
use super::Rule;

/// Rule 4.
pub const RULE: Rule = Rule {
    id: "4",
    short: "one monitor",
    says: "exactly one monitorsEnabled=true, the primary's app",
};

/// Validates rule 4.
pub fn validate(h: &History, rec: &Record) -> RuleResult {
    let mut v = Vec::new();
    let mut on = Vec::new();
    for (site, m) in &h.monitors {
        match m {
            Ok(true) => on.push(*site),
            Ok(false) => {}
            Err(e) => v.push(Violation::new(RULE, format!("app {site}: {e}"), None)),
        }
    }
    let primary = rec.primary;
    if on != [primary] {
        v.push(Violation::new(
            RULE,
            format!(
                "monitorsEnabled=true at {on:?}; expected exactly the primary's app ({primary})"
            ),
            None,
        ));
    }
    let evidence = format!(
        "monitorsEnabled=true at {on:?} of {} apps read; primary {primary}",
        h.monitors.len()
    );
    RuleResult::judged(RULE, v, evidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::fixtures::{calm, history};

    fn run(h: &History) -> RuleResult {
        validate(h, &Record::of(h).expect("a record"))
    }

    #[test]
    fn the_primarys_app_alone_has_monitors_on_passes() {
        assert!(run(&calm(|_| false)).passed());
        let r = run(&history(vec![], vec![]));
        assert!(r.passed(), "{}", r.line());
        assert_eq!(
            r.evidence,
            "monitorsEnabled=true at [\"b\"] of 2 apps read; primary b"
        );
    }

    #[test]
    fn two_monitors_on_none_or_an_unreadable_file_fails() {
        let mut h = history(vec![], vec![]);
        h.monitors = vec![("a", Ok(true)), ("b", Ok(true))];
        assert_eq!(run(&h).violations().len(), 1);
        h.monitors = vec![("a", Ok(false)), ("b", Ok(false))];
        assert_eq!(run(&h).violations().len(), 1);
        // The old primary's app left on after the failover.
        h.monitors = vec![("a", Ok(true)), ("b", Ok(false))];
        assert_eq!(run(&h).violations().len(), 1);
        h.monitors = vec![("a", Err("no such file".into())), ("b", Ok(true))];
        let r = run(&h);
        assert_eq!(r.violations().len(), 1, "{}", r.line());
        assert!(r.violations()[0].what.contains("no such file"));
    }
}
