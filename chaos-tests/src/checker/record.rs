//! The cluster's record as the validators read it: the replicated state of
//! the first witness that answered after the world settled (rule 6 checks
//! that the others hold the same), and helpers over its JSON.

use serde_json::Value;

use super::history::History;

/// The replicated state the validators judge the history against.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// The witness whose `status --output json` this is.
    pub site: &'static str,
    /// That status.
    pub state: &'a Value,
    /// The epoch: how many failovers began (each raises it by one).
    pub epoch: u64,
    /// The primary's site (`""` when the status had none).
    pub primary: &'a str,
    /// The most recent finished failover; `None`: there has been none.
    pub failover: Option<&'a Value>,
}

impl<'a> Record<'a> {
    /// The first answering witness's record; `None` when none answered.
    pub fn of(h: &'a History) -> Option<Self> {
        let (site, state) = h
            .statuses
            .iter()
            .find_map(|(site, s)| Some((*site, s.as_ref()?)))?;
        Some(Self {
            site,
            state,
            epoch: state["epoch"].as_u64().unwrap_or(0),
            primary: state["primary_site"].as_str().unwrap_or(""),
            failover: failover_of(state),
        })
    }
}

/// The `last_failover` of a status, if there is one.
pub fn failover_of(s: &Value) -> Option<&Value> {
    let f = &s["last_failover"];
    (!f.is_null()).then_some(f)
}

/// When `step` of failover record `f` was done, leader clock, Unix ms.
pub fn step_done(f: &Value, step: &str) -> Option<i64> {
    f["steps"].as_array()?.iter().find(|s| s["step"] == step)?["done_at_ms"].as_i64()
}

/// The detail `step` of failover record `f` was done with.
pub fn step_detail<'a>(f: &'a Value, step: &str) -> Option<&'a str> {
    f["steps"].as_array()?.iter().find(|s| s["step"] == step)?["detail"].as_str()
}

/// A failover record's outcome: `completed`, `completed_with_failed_checks:
/// …`, `aborted: …`, or `""` while in progress.
pub fn outcome(f: &Value) -> &str {
    f["outcome"].as_str().unwrap_or("")
}

/// `s` cut to `n` characters, with `…` where it was cut: for evidence.
pub fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(n).collect();
        c.push('…');
        c
    }
}
