//! DESIGN rule 5: no acknowledged write silently lost beyond the bound of
//! the replication mode. Every acknowledged id must be on the final
//! primary, except: in `sync` mode, writes acknowledged while the
//! primary's agent had degraded to async (`synchronous_standby_names`
//! empty when the write was taken), which are counted and reported; in
//! `async` mode, writes the old primary took in the last
//! `max_lag_seconds` ([`ASYNC_LOSS_WINDOW_MS`]) before the failover began.

use std::collections::HashSet;

use super::history::History;
use super::record::Record;
use super::report::{Measured, RuleResult, Violation};
use super::Rule;
use crate::fmt_ms;

/// Rule 5.
pub const RULE: Rule = Rule {
    id: "5",
    short: "no lost write",
    says: "no acknowledged write lost beyond the replication mode's bound",
};

/// `max_lag_seconds` (the default), the async-mode loss bound.
pub const ASYNC_LOSS_WINDOW_MS: i64 = 30_000;

/// What rule 5 counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    /// Acknowledged writes missing from the final primary.
    pub lost: usize,
    /// Of those, how many the mode's bound allows.
    pub allowed: usize,
}

/// Validates rule 5.
pub fn validate(h: &History, rec: &Record) -> Measured<Lost> {
    let mut lost = Lost::default();
    let primary = rec.primary;
    let mode = h.replication.as_str();
    if h.acks.is_empty() {
        return Measured {
            result: RuleResult::not_applicable(
                RULE,
                "no acknowledged writes in this history",
                String::new(),
            ),
            measured: lost,
        };
    }
    let ids = match &h.final_ids {
        Ok(ids) => ids,
        Err(e) => {
            let v = vec![Violation::new(
                RULE,
                format!("cannot read the final primary {primary}: {e}"),
                None,
            )];
            return Measured {
                result: RuleResult::judged(RULE, v, format!("{} acknowledged", h.acks.len())),
                measured: lost,
            };
        }
    };
    let stored: HashSet<i64> = ids.iter().copied().collect();
    let began = rec.failover.and_then(|f| f["started_at_ms"].as_i64());
    let mut v = Vec::new();
    for a in h.acks.iter().filter(|a| !stored.contains(&a.id)) {
        lost.lost += 1;
        let allowed = a.server != primary
            && match mode {
                "sync" => !a.sync,
                _ => began.is_some_and(|b| a.server_ms >= b - ASYNC_LOSS_WINDOW_MS),
            };
        if allowed {
            lost.allowed += 1;
        } else {
            v.push(Violation::new(
                RULE,
                format!(
                    "acknowledged write {} (via {}, taken by {} at {}, sync in force: {}) is not on the final primary {primary}",
                    a.id, a.via, a.server, fmt_ms(a.server_ms), a.sync
                ),
                Some(a.server_ms),
            ));
        }
    }
    let bound = match mode {
        "sync" => format!(
            "sync mode: only the {} taken while degraded to async may be lost",
            h.acks.iter().filter(|a| !a.sync).count()
        ),
        _ => format!(
            "{mode} mode: only the old primary's last {} s before the failover may be lost",
            ASYNC_LOSS_WINDOW_MS / 1000
        ),
    };
    let evidence = format!(
        "{} of {} acknowledged writes missing from the final primary {primary} ({} allowed); {bound}",
        lost.lost,
        h.acks.len(),
        lost.allowed
    );
    Measured {
        result: RuleResult::judged(RULE, v, evidence),
        measured: lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::fixtures::{ack, calm, history};
    use crate::checker::Verdict;

    fn run(h: &History) -> Measured<Lost> {
        validate(h, &Record::of(h).expect("a record"))
    }

    #[test]
    fn every_acknowledged_write_on_the_final_primary_passes() {
        let m = run(&calm(|_| false));
        assert!(m.result.passed(), "{}", m.result.line());
        assert_eq!(m.measured, Lost::default());
        assert!(
            m.result.evidence.starts_with("0 of 51 acknowledged"),
            "{}",
            m.result.evidence
        );
    }

    #[test]
    fn a_lost_sync_write_is_a_violation_and_a_degraded_one_is_allowed() {
        let h = history(
            vec![ack(1, "a", 900, true), ack(2, "a", 950, false)],
            vec![],
        );
        let m = run(&h);
        assert_eq!(
            m.measured,
            Lost {
                lost: 2,
                allowed: 1
            }
        );
        assert_eq!(m.result.violations().len(), 1, "{}", m.result.line());
    }

    #[test]
    fn in_async_mode_only_the_tail_before_the_failover_may_be_lost() {
        let mut h = history(
            vec![
                ack(1, "a", 900, true),
                ack(2, "a", 1000 - ASYNC_LOSS_WINDOW_MS - 1, true),
            ],
            vec![],
        );
        h.replication = "async".into();
        let m = run(&h);
        assert_eq!(
            m.measured,
            Lost {
                lost: 2,
                allowed: 1
            }
        );
        assert_eq!(m.result.violations().len(), 1);
        assert!(m.result.violations()[0].what.contains("write 2 "));
    }

    #[test]
    fn an_unreadable_final_primary_fails_and_no_writes_do_not_apply() {
        let mut h = history(vec![ack(1, "a", 900, true)], vec![1]);
        h.final_ids = Err("connection refused".into());
        assert!(run(&h).result.violations()[0]
            .what
            .contains("connection refused"));
        h.acks.clear();
        assert!(matches!(run(&h).result.verdict, Verdict::NotApplicable(_)));
    }
}
