//! The checker: reads what clients saw (acknowledged writes, samples of
//! which databases were writable and routable), the fault log, and every
//! witness's own record of the failover, and says whether the safety rules
//! of DESIGN.md held. Rules (the lettering):
//!
//! * (a) no split brain: no write accepted by the old primary after the
//!   failover's `fenced` step was done, none by the new primary before it,
//!   and never two writable primaries at one sample (a violation whether or
//!   not the front door routes to both; it says which it did);
//! * (b) no acknowledged write lost beyond the bound of the replication
//!   mode: `sync`: none, except writes acknowledged while the primary's
//!   agent had degraded to async (`synchronous_standby_names` empty when
//!   the write was taken), which are counted and reported; `async`: only
//!   writes the old primary took in the last `max_lag_seconds` (30 s)
//!   before the failover began;
//! * (c) exactly one app has `monitorsEnabled=true`, the primary's;
//! * (d) no failover where none was warranted, never more than one;
//! * (e) where one was warranted it completed within the RTO bound,
//!   counted from the fault; a crash restarted in place was writable again
//!   within the bound;
//! * (f) every witness's replicated state agrees: epoch, roles, the
//!   failover record step by step, and the applied log index;
//! * (g) no outage, where the scenario claims none ([`Availability`]):
//!   the primary's PostgreSQL was never restarted (its
//!   `pg_postmaster_start_time()` in the samples did not change), and no
//!   gap between two consecutive front-door acknowledgements was longer
//!   than the scenario's bound (500 ms by default), counted from the first
//!   fault (or from the last heal) to the end of the run. The longest gap
//!   is measured, and reported, in every run.
//! * (h) link flapping costs less than it cuts, where the scenario claims
//!   a share ([`check_flapping`]): the front door is unavailable (each gap
//!   between acknowledgements, less 100 ms of normal spacing) for at most
//!   that share of the time the links were cut.
//!
//! A violation carries the time it is about, and the report prints the
//! slice of the merged history around it.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use serde_json::Value;

use crate::faults::FaultEvent;
use crate::fmt_ms;
use crate::workload::{Ack, Sample};

/// `max_lag_seconds` (the default), the async-mode loss bound.
pub const ASYNC_LOSS_WINDOW_MS: i64 = 30_000;

/// What the scenario says should happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No failover at all.
    NoFailover,
    /// Exactly one failover, a → b, completed within the RTO.
    Failover,
    /// At most one failover; if one happened it completed.
    AtMostOne,
    /// A crashed primary either restarted in place or failed over, within
    /// the RTO either way.
    RestartOrFailover,
}

/// From when rule (g) measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapFrom {
    /// The first fault of the fault log (moving the leader included: a
    /// restart of a witness is a fault too).
    FirstFault,
    /// The last `heal` of the fault log: what matters is the cluster after
    /// it (the fault itself warranted a failover).
    LastHeal,
}

/// What a scenario claims about availability: rule (g).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Availability {
    /// The longest allowed gap between two consecutive front-door
    /// acknowledgements, ms.
    pub max_gap_ms: i64,
    /// From when.
    pub from: GapFrom,
}

/// The longest stretch without a front-door acknowledgement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gap {
    /// The last acknowledgement before it (or the window's start), Unix ms.
    pub from_ms: i64,
    /// The first one after it (or the end of the run), Unix ms.
    pub to_ms: i64,
}

impl Gap {
    /// Its length, ms.
    pub fn ms(&self) -> i64 {
        self.to_ms - self.from_ms
    }
}

/// Everything the checker reads.
pub struct History {
    /// The fault log.
    pub faults: Vec<FaultEvent>,
    /// Every acknowledged write.
    pub acks: Vec<Ack>,
    /// Every sample.
    pub samples: Vec<Sample>,
    /// Each witness's `status --output json` after the world settled.
    pub statuses: Vec<(&'static str, Option<Value>)>,
    /// `monitorsEnabled` read from each app's file.
    pub monitors: Vec<(&'static str, Result<bool, String>)>,
    /// Ids stored on the final primary, or why they could not be read.
    pub final_ids: Result<Vec<i64>, String>,
    /// When the fault the RTO is counted from was injected.
    pub fault_at_ms: Option<i64>,
    /// What should have happened.
    pub expect: Expect,
    /// RTO bound, ms.
    pub rto_ms: i64,
    /// `sync` or `async`.
    pub replication: String,
    /// Rule (g)'s claim; `None`: no claim (a failover is an outage), the
    /// longest gap is only measured.
    pub availability: Option<Availability>,
    /// When the history was collected: the end of the last gap, Unix ms.
    pub end_ms: i64,
    /// Rule (h), for link flapping: the front door may be unavailable for
    /// at most this share of the time the links were cut. `None`: no claim.
    pub flap_share: Option<f64>,
}

/// One broken rule.
#[derive(Clone, Debug)]
pub struct Violation {
    /// `a` … `f`.
    pub rule: &'static str,
    /// What happened, with ids and times.
    pub what: String,
    /// The moment it is about, for the history slice.
    pub at_ms: Option<i64>,
    /// Where what it is about is a stretch of time (a gap in the writes),
    /// its end: the history slice runs to 2 s past it.
    pub until_ms: Option<i64>,
}

/// The verdict and the numbers of the results table.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Broken rules; empty: the run passed.
    pub violations: Vec<Violation>,
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

fn failover_of(s: &Value) -> Option<&Value> {
    let f = &s["last_failover"];
    (!f.is_null()).then_some(f)
}

fn step_done(f: &Value, step: &str) -> Option<i64> {
    f["steps"].as_array()?.iter().find(|s| s["step"] == step)?["done_at_ms"].as_i64()
}

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

/// Checks `h` against rules a–g.
pub fn check(h: &History) -> Report {
    let mut r = Report {
        acked: h.acks.len(),
        acked_front_door: h.acks.iter().filter(|a| a.via == "front-door").count(),
        ..Report::default()
    };
    let mut v = Vec::new();

    // (f) first: the other rules read the record, which must be agreed.
    let answered: Vec<(&str, &Value)> = h
        .statuses
        .iter()
        .filter_map(|(site, s)| Some((*site, s.as_ref()?)))
        .collect();
    for (site, s) in &h.statuses {
        if s.is_none() {
            v.push(Violation {
                rule: "f",
                what: format!("witness {site} did not answer after the world settled: its record cannot be compared"),
                at_ms: None,
                until_ms: None,
            });
        }
    }
    let keys: BTreeMap<String, Vec<&str>> =
        answered.iter().fold(BTreeMap::new(), |mut m, (site, s)| {
            m.entry(state_key(s)).or_insert_with(Vec::new).push(site);
            m
        });
    if keys.len() > 1 {
        v.push(Violation {
            rule: "f",
            what: format!("the witnesses' replicated states differ: {keys:#?}"),
            at_ms: None,
            until_ms: None,
        });
    }
    let applied: Vec<(&str, Option<u64>)> = answered
        .iter()
        .map(|(site, s)| (*site, own_applied(site, s)))
        .collect();
    if applied.windows(2).any(|w| w[0].1 != w[1].1) {
        v.push(Violation {
            rule: "f",
            what: format!(
                "the witnesses applied different log indexes after settling: {applied:?}"
            ),
            at_ms: None,
            until_ms: None,
        });
    }
    let Some((_, rec)) = answered.first() else {
        v.push(Violation {
            rule: "f",
            what: "no witness answered".into(),
            at_ms: None,
            until_ms: None,
        });
        r.violations = v;
        return r;
    };
    let epoch = rec["epoch"].as_u64().unwrap_or(0);
    r.failovers = epoch;
    let primary = rec["primary_site"].as_str().unwrap_or("").to_string();
    let failover = failover_of(rec);

    // (a) split brain.
    if let Some(f) = failover {
        let from = f["from_site"].as_str().unwrap_or("");
        let to = f["to_site"].as_str().unwrap_or("");
        match step_done(f, "fenced") {
            None => v.push(Violation {
                rule: "a",
                what: format!("the failover record has no `fenced` step: {f}"),
                at_ms: f["started_at_ms"].as_i64(),
                until_ms: None,
            }),
            Some(fenced) => {
                let promoted = step_done(f, "promoted");
                for a in &h.acks {
                    if a.server == from && a.server_ms > fenced {
                        let when = match promoted {
                            Some(p) if a.server_ms >= p => format!("after the new primary {to} was promoted at {}: two writable primaries", fmt_ms(p)),
                            Some(p) => format!("before the new primary {to} was promoted at {}: the fence the record relies on had not happened", fmt_ms(p)),
                            None => "with no promotion recorded".to_string(),
                        };
                        v.push(Violation {
                            rule: "a",
                            what: format!(
                                "split brain: old primary {from} accepted write {} (via {}, sync in force: {}) at {}, after it was recorded fenced at {}, {when}",
                                a.id, a.via, a.sync, fmt_ms(a.server_ms), fmt_ms(fenced)
                            ),
                            at_ms: Some(a.server_ms),
                            until_ms: None,
                        });
                    }
                    if a.server == to && a.server_ms < fenced {
                        v.push(Violation {
                            rule: "a",
                            what: format!(
                                "split brain: new primary {to} accepted write {} at {}, before the old primary was fenced at {}",
                                a.id, fmt_ms(a.server_ms), fmt_ms(fenced)
                            ),
                            at_ms: Some(a.server_ms),
                            until_ms: None,
                        });
                    }
                }
            }
        }
    }
    for s in &h.samples {
        let w: Vec<&str> = s
            .writable
            .iter()
            .filter(|(_, w)| *w == Some(true))
            .map(|(site, _)| *site)
            .collect();
        if w.len() > 1 {
            let routed = s
                .routable
                .as_ref()
                .map(|r| w.iter().filter(|x| r.contains(x)).count())
                .unwrap_or(0);
            v.push(Violation {
                rule: "a",
                what: format!(
                    "two writable primaries at {}: {w:?}; HAProxy routed to {routed} of them ({:?})",
                    fmt_ms(s.at_ms),
                    s.routable
                ),
                at_ms: Some(s.at_ms),
                until_ms: None,
            });
        }
    }

    // (b) lost acknowledged writes.
    match &h.final_ids {
        Err(e) => v.push(Violation {
            rule: "b",
            what: format!("cannot read the final primary {primary}: {e}"),
            at_ms: None,
            until_ms: None,
        }),
        Ok(ids) => {
            let stored: HashSet<i64> = ids.iter().copied().collect();
            let began = failover.and_then(|f| f["started_at_ms"].as_i64());
            for a in h.acks.iter().filter(|a| !stored.contains(&a.id)) {
                r.lost += 1;
                let allowed = a.server != primary
                    && match h.replication.as_str() {
                        "sync" => !a.sync,
                        _ => began.is_some_and(|b| a.server_ms >= b - ASYNC_LOSS_WINDOW_MS),
                    };
                if allowed {
                    r.lost_allowed += 1;
                } else {
                    v.push(Violation {
                        rule: "b",
                        what: format!(
                            "acknowledged write {} (via {}, taken by {} at {}, sync in force: {}) is not on the final primary {primary}",
                            a.id, a.via, a.server, fmt_ms(a.server_ms), a.sync
                        ),
                        at_ms: Some(a.server_ms),
                        until_ms: None,
                    });
                }
            }
        }
    }

    // (c) exactly one monitorsEnabled=true, the primary's.
    let mut on = Vec::new();
    for (site, m) in &h.monitors {
        match m {
            Ok(true) => on.push(*site),
            Ok(false) => {}
            Err(e) => v.push(Violation {
                rule: "c",
                what: format!("app {site}: {e}"),
                at_ms: None,
                until_ms: None,
            }),
        }
    }
    if on != [primary.as_str()] {
        v.push(Violation {
            rule: "c",
            what: format!(
                "monitorsEnabled=true at {on:?}; expected exactly the primary's app ({primary})"
            ),
            at_ms: None,
            until_ms: None,
        });
    }

    // (d) and (e).
    let fault = h.fault_at_ms;
    if let (Some(f), Some(t0)) = (failover, fault) {
        r.failover_ms = f["finished_at_ms"].as_i64().map(|e| e - t0);
    }
    let completed_in_time = |v: &mut Vec<Violation>| {
        let Some(f) = failover else { return };
        if f["outcome"] != "completed" {
            v.push(Violation {
                rule: "e",
                what: format!("the failover did not complete: outcome {}", f["outcome"]),
                at_ms: f["finished_at_ms"].as_i64(),
                until_ms: None,
            });
        }
        match r.failover_ms {
            Some(ms) if ms <= h.rto_ms => {}
            other => v.push(Violation {
                rule: "e",
                what: format!(
                    "the failover ended {other:?} ms after the fault, beyond the RTO bound of {} ms",
                    h.rto_ms
                ),
                at_ms: f["finished_at_ms"].as_i64(),
                until_ms: None,
            }),
        }
    };
    if epoch > 1 {
        v.push(Violation {
            rule: "d",
            what: format!("{epoch} failovers: ping-pong"),
            at_ms: failover.and_then(|f| f["started_at_ms"].as_i64()),
            until_ms: None,
        });
    }
    match h.expect {
        Expect::NoFailover => {
            if epoch != 0 || failover.is_some() || primary != "a" {
                v.push(Violation {
                    rule: "d",
                    what: format!(
                        "a failover where none was warranted: epoch {epoch}, primary {primary}, record {}",
                        failover.map(|f| f.to_string()).unwrap_or_default()
                    ),
                    at_ms: failover.and_then(|f| f["started_at_ms"].as_i64()),
                    until_ms: None,
                });
            }
        }
        Expect::Failover => {
            if epoch != 1 || primary != "b" {
                v.push(Violation {
                    rule: "e",
                    what: format!(
                        "a failover to b was warranted; epoch {epoch}, primary {primary}"
                    ),
                    at_ms: fault,
                    until_ms: None,
                });
            }
            completed_in_time(&mut v);
        }
        Expect::AtMostOne => {
            if let Some(f) = failover {
                if f["outcome"] != "completed" {
                    v.push(Violation {
                        rule: "e",
                        what: format!("the failover did not complete: outcome {}", f["outcome"]),
                        at_ms: f["finished_at_ms"].as_i64(),
                        until_ms: None,
                    });
                }
            }
        }
        Expect::RestartOrFailover => {
            if failover.is_some() {
                completed_in_time(&mut v);
            } else if let Some(t0) = fault {
                r.recovered_ms = h
                    .samples
                    .iter()
                    .find(|s| {
                        s.at_ms > t0
                            && s.writable
                                .iter()
                                .any(|(site, w)| *site == "a" && *w == Some(true))
                    })
                    .map(|s| s.at_ms - t0);
                if r.recovered_ms.is_none_or(|ms| ms > h.rto_ms) {
                    v.push(Violation {
                        rule: "e",
                        what: format!(
                            "the crashed primary was neither failed over nor writable again in place within {} ms (back after {:?} ms)",
                            h.rto_ms, r.recovered_ms
                        ),
                        at_ms: fault,
                        until_ms: None,
                    });
                }
            }
        }
    }

    // (g) no outage.
    r.max_gap_ms = h.availability.map(|a| a.max_gap_ms);
    let (gap, g) = check_availability(h, &primary);
    r.longest_gap = gap;
    v.extend(g);

    // (h) flapping costs less unavailability than it cuts.
    r.flap = h.flap_share.map(|_| cut_and_unavailable_ms(h));
    v.extend(check_flapping(h));

    for x in &v {
        let _ = writeln!(r.slices, "VIOLATION ({}) {}", x.rule, x.what);
        if let Some(t) = x.at_ms {
            let end = x.until_ms.unwrap_or(t).max(t);
            let _ = writeln!(r.slices, "{}", slice(h, rec, t - 3000, end + 2000));
        }
    }
    if v.iter().any(|x| x.at_ms.is_none()) && !h.faults.is_empty() {
        let (from, to) = (
            h.faults.first().map(|f| f.at_ms).unwrap_or(0) - 1000,
            h.faults.last().map(|f| f.at_ms).unwrap_or(0) + 3000,
        );
        let _ = writeln!(
            r.slices,
            "history of the faults:\n{}",
            slice(h, rec, from, to)
        );
    }
    r.violations = v;
    r
}

/// A front-door writer acknowledges a write every few tens of ms; time
/// past this in a gap counts as unavailable (rule h).
const NORMAL_SPACING_MS: i64 = 100;

/// How long the links were cut in all (from a cut or isolation to the
/// next heal), and how long the front door was unavailable from the first
/// fault on (each gap between front-door acknowledgements, less
/// `NORMAL_SPACING_MS`, 100 ms), both ms.
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
    let mut acked: Vec<i64> = h
        .acks
        .iter()
        .filter(|a| a.via == "front-door" && a.acked_ms > start && a.acked_ms <= h.end_ms)
        .map(|a| a.acked_ms)
        .collect();
    acked.sort_unstable();
    let mut unavailable = 0;
    let mut prev = start;
    for t in acked.into_iter().chain([h.end_ms.max(start)]) {
        unavailable += (t - prev - NORMAL_SPACING_MS).max(0);
        prev = t;
    }
    (cut_total, unavailable)
}

/// Rule (h): under link flapping the front door is unavailable for less
/// than the scenario's share of the time the links were cut: a fault that
/// needs no failover costs no outage, and the fences of a flap are undone
/// (frozen, then thawed) rather than each costing a crash recovery.
pub fn check_flapping(h: &History) -> Vec<Violation> {
    let Some(share) = h.flap_share else {
        return Vec::new();
    };
    let (cut, unavailable) = cut_and_unavailable_ms(h);
    if unavailable as f64 <= share * cut as f64 {
        return Vec::new();
    }
    vec![Violation {
        rule: "h",
        what: format!(
            "the front door was unavailable for {unavailable} ms while the links were cut for {cut} ms in all; the bound is {:.0} % of the cut time",
            share * 100.0
        ),
        at_ms: h.faults.first().map(|f| f.at_ms),
        until_ms: h.faults.last().map(|f| f.at_ms),
    }]
}

/// Rule (g): measures the longest front-door gap in the window, and, when
/// the scenario claims no outage, checks it against the bound and checks
/// that `primary`'s postmaster was not restarted in the window.
pub fn check_availability(h: &History, primary: &str) -> (Option<Gap>, Vec<Violation>) {
    let from = h.availability.map_or(GapFrom::FirstFault, |a| a.from);
    let start = match from {
        GapFrom::FirstFault => h.faults.first(),
        GapFrom::LastHeal => h.faults.iter().rev().find(|f| f.text.starts_with("heal")),
    }
    .map(|f| f.at_ms);
    let Some(start) = start else {
        return (None, Vec::new());
    };
    let mut acked: Vec<i64> = h
        .acks
        .iter()
        .filter(|a| a.via == "front-door" && a.acked_ms > start && a.acked_ms <= h.end_ms)
        .map(|a| a.acked_ms)
        .collect();
    acked.sort_unstable();
    let mut longest = Gap {
        from_ms: start,
        to_ms: start,
    };
    let mut prev = start;
    for t in acked.into_iter().chain([h.end_ms.max(start)]) {
        if t - prev > longest.ms() {
            longest = Gap {
                from_ms: prev,
                to_ms: t,
            };
        }
        prev = t;
    }
    let Some(claim) = h.availability else {
        return (Some(longest), Vec::new());
    };
    let window = match from {
        GapFrom::FirstFault => "since the first fault",
        GapFrom::LastHeal => "since the heal",
    };
    let mut v = Vec::new();
    if longest.ms() > claim.max_gap_ms {
        v.push(Violation {
            rule: "g",
            what: format!(
                "outage: no front-door write was acknowledged for {} ms ({} .. {}), {window} at {}; the bound is {} ms",
                longest.ms(),
                fmt_ms(longest.from_ms),
                fmt_ms(longest.to_ms),
                fmt_ms(start),
                claim.max_gap_ms
            ),
            at_ms: Some(longest.from_ms),
            until_ms: Some(longest.to_ms),
        });
    }
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
        // rule a's two-writable check) blind: that is a failure too.
        v.push(Violation {
            rule: "g",
            what: format!(
                "the sampler never read the primary's ({primary}) postmaster start time: whether it was restarted cannot be told"
            ),
            at_ms: None,
            until_ms: None,
        });
        return (Some(longest), v);
    };
    let mut restarts: Vec<(i64, i64)> = Vec::new();
    let mut current = base;
    for (at, t) in after {
        if t != current {
            restarts.push((at, t));
            current = t;
        }
    }
    if let Some((at, t)) = restarts.first() {
        v.push(Violation {
            rule: "g",
            what: format!(
                "outage: the primary's PostgreSQL ({primary}) was restarted {window} at {}: postmaster started at {}, seen at {} (it had started at {}); {} restart(s) seen",
                fmt_ms(start),
                fmt_ms(*t),
                fmt_ms(*at),
                fmt_ms(base),
                restarts.len()
            ),
            at_ms: Some(*t),
            until_ms: Some(*at),
        });
    }
    (Some(longest), v)
}

/// The merged history between two moments: faults, the failover record,
/// acknowledged writes (grouped by writer and server per 250 ms), and the
/// samples where something changed.
pub fn slice(h: &History, rec: &Value, from: i64, to: i64) -> String {
    let mut lines: Vec<(i64, String)> = Vec::new();
    for f in &h.faults {
        lines.push((f.at_ms, format!("FAULT   {}", f.text)));
    }
    if let Some(f) = failover_of(rec) {
        if let Some(t) = f["started_at_ms"].as_i64() {
            lines.push((
                t,
                format!(
                    "RECORD  failover began: epoch {} {}->{} ({})",
                    f["epoch"], f["from_site"], f["to_site"], f["reason"]
                ),
            ));
        }
        for s in f["steps"].as_array().into_iter().flatten() {
            if let Some(t) = s["done_at_ms"].as_i64() {
                lines.push((
                    t,
                    format!("RECORD  step {} done: {}", s["step"], s["detail"]),
                ));
            }
        }
        if let Some(t) = f["finished_at_ms"].as_i64() {
            lines.push((t, format!("RECORD  failover finished: {}", f["outcome"])));
        }
    }
    // (250 ms bucket, writer, server) -> (lowest id, highest id, count, all sync)
    type Key<'a> = (i64, &'a str, &'a str);
    type Span = (i64, i64, usize, bool);
    let mut groups: BTreeMap<Key<'_>, Span> = BTreeMap::new();
    for a in h
        .acks
        .iter()
        .filter(|a| a.server_ms >= from && a.server_ms <= to)
    {
        let e = groups
            .entry((a.server_ms / 250 * 250, a.via, a.server.as_str()))
            .or_insert((a.id, a.id, 0, true));
        e.0 = e.0.min(a.id);
        e.1 = e.1.max(a.id);
        e.2 += 1;
        e.3 &= a.sync;
    }
    for ((t, via, server), (lo, hi, n, sync)) in groups {
        lines.push((
            t,
            format!(
                "ACK     {n} writes via {via} taken by {server}: ids {lo}..={hi}{}",
                if sync { "" } else { " (not all sync)" }
            ),
        ));
    }
    let mut prev = String::new();
    for s in &h.samples {
        let started: Vec<(&str, Option<String>)> = s
            .started
            .iter()
            .map(|(site, t)| (*site, t.map(fmt_ms)))
            .collect();
        let now = format!(
            "writable {:?} routable {:?} postmasters started {started:?}",
            s.writable, s.routable
        );
        if now != prev && s.at_ms >= from && s.at_ms <= to {
            lines.push((s.at_ms, format!("SAMPLE  {now}")));
        }
        prev = now;
    }
    lines.retain(|(t, _)| *t >= from && *t <= to);
    lines.sort_by_key(|(t, _)| *t);
    let mut out = format!("--- history {} .. {}\n", fmt_ms(from), fmt_ms(to));
    for (t, l) in lines.iter().take(120) {
        let _ = writeln!(out, "{} {l}", fmt_ms(*t));
    }
    if lines.len() > 120 {
        let _ = writeln!(out, "... {} more lines", lines.len() - 120);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ack(id: i64, server: &str, at: i64, sync: bool) -> Ack {
        Ack {
            id,
            via: "local-a",
            server: server.into(),
            sync,
            server_ms: at,
            acked_ms: at + 1,
        }
    }

    fn failed_over() -> Value {
        let f = json!({
            "epoch": 1, "from_site": "a", "to_site": "b", "outcome": "completed",
            "started_at_ms": 1000, "finished_at_ms": 3000,
            "steps": [
                {"step": "fenced", "done_at_ms": 2000},
                {"step": "promoted", "done_at_ms": 2500},
            ],
        });
        json!({
            "epoch": 1, "primary_site": "b", "standby_site": "a", "standby_needs_rejoin": true,
            "last_failover": f,
            "nodes": [{"site": "a", "last_applied_index": 9}, {"site": "b", "last_applied_index": 9}, {"site": "c", "last_applied_index": 9}],
        })
    }

    fn history(acks: Vec<Ack>, stored: Vec<i64>) -> History {
        let s = failed_over();
        History {
            faults: vec![FaultEvent {
                at_ms: 500,
                text: "isolate site a".into(),
            }],
            acks,
            samples: Vec::new(),
            statuses: vec![
                ("a", Some(s.clone())),
                ("b", Some(s.clone())),
                ("c", Some(s)),
            ],
            monitors: vec![("a", Ok(false)), ("b", Ok(true))],
            final_ids: Ok(stored),
            fault_at_ms: Some(500),
            expect: Expect::Failover,
            rto_ms: 20_000,
            replication: "sync".into(),
            availability: None,
            end_ms: 4000,
            flap_share: None,
        }
    }

    /// No failover, a fault at 1000, a front-door write acknowledged every
    /// 100 ms from 0 to 5000 (except those `skip` drops), a sample every
    /// 200 ms with postmaster a started at 42; no outage claimed at 500 ms.
    fn calm(skip: impl Fn(i64) -> bool) -> History {
        let s = json!({
            "epoch": 0, "primary_site": "a", "standby_site": "b", "standby_needs_rejoin": false,
            "last_failover": null,
            "nodes": [{"site": "a", "last_applied_index": 9}, {"site": "b", "last_applied_index": 9}, {"site": "c", "last_applied_index": 9}],
        });
        let acks: Vec<Ack> = (0..=50)
            .map(|i| i * 100)
            .filter(|t| !skip(*t))
            .map(|t| Ack {
                id: t / 100 + 1,
                via: "front-door",
                server: "a".into(),
                sync: true,
                server_ms: t,
                acked_ms: t,
            })
            .collect();
        let ids = acks.iter().map(|a| a.id).collect();
        History {
            faults: vec![FaultEvent {
                at_ms: 1000,
                text: "cut a<->c".into(),
            }],
            acks,
            samples: (0..=25)
                .map(|i| Sample {
                    at_ms: i * 200,
                    writable: vec![("a", Some(true)), ("b", Some(false))],
                    started: vec![("a", Some(42)), ("b", Some(43))],
                    routable: Some(vec!["a"]),
                })
                .collect(),
            statuses: vec![
                ("a", Some(s.clone())),
                ("b", Some(s.clone())),
                ("c", Some(s)),
            ],
            monitors: vec![("a", Ok(true)), ("b", Ok(false))],
            final_ids: Ok(ids),
            fault_at_ms: Some(1000),
            expect: Expect::NoFailover,
            rto_ms: 20_000,
            replication: "sync".into(),
            availability: Some(Availability {
                max_gap_ms: 500,
                from: GapFrom::FirstFault,
            }),
            end_ms: 5000,
            flap_share: None,
        }
    }

    fn rule_g(r: &Report) -> Vec<&Violation> {
        r.violations.iter().filter(|v| v.rule == "g").collect()
    }

    #[test]
    fn no_outage_passes_and_measures_the_longest_gap() {
        // A 400 ms gap after the fault (writes at 2000 and 2400 only), and
        // one of 800 ms before it, which is outside the window.
        let r = check(&calm(|t| {
            (2100..2400).contains(&t) || (100..900).contains(&t)
        }));
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(
            r.longest_gap,
            Some(Gap {
                from_ms: 2000,
                to_ms: 2400
            })
        );
        assert_eq!(r.max_gap_ms, Some(500));
    }

    #[test]
    fn a_gap_of_800_ms_is_an_outage() {
        let r = check(&calm(|t| (2100..2800).contains(&t)));
        let g = rule_g(&r);
        assert_eq!(g.len(), 1, "{:?}", r.violations);
        assert!(g[0].what.contains("for 800 ms"), "{}", g[0].what);
        assert_eq!((g[0].at_ms, g[0].until_ms), (Some(2000), Some(2800)));
        assert!(r.slices.contains("VIOLATION (g)"), "{}", r.slices);
        // Its slice runs past the gap's end, so the writes' return shows.
        assert!(r.slices.contains("00:00:04.500"), "{}", r.slices);
    }

    #[test]
    fn writes_that_stop_before_the_end_are_an_outage() {
        let r = check(&calm(|t| t > 4000));
        let g = rule_g(&r);
        assert_eq!(g.len(), 1, "{:?}", r.violations);
        assert_eq!(r.longest_gap.map(|g| g.ms()), Some(1000));
    }

    #[test]
    fn a_restarted_primary_is_an_outage_even_without_a_gap() {
        let mut h = calm(|_| false);
        for s in h.samples.iter_mut().filter(|s| s.at_ms >= 3000) {
            s.started[0].1 = Some(2900);
        }
        // A sample where it did not answer is not a restart.
        h.samples[12].started[0].1 = None;
        let r = check(&h);
        let g = rule_g(&r);
        assert_eq!(g.len(), 1, "{:?}", r.violations);
        assert!(g[0].what.contains("was restarted"), "{}", g[0].what);
        assert_eq!(g[0].at_ms, Some(2900));
        // The standby's restart is not the primary's.
        let mut h = calm(|_| false);
        h.samples[20].started[1].1 = Some(3999);
        assert!(check(&h).violations.is_empty());
    }

    #[test]
    fn a_sampler_that_never_read_the_primary_is_a_failure_not_a_pass() {
        let mut h = calm(|_| false);
        for s in &mut h.samples {
            s.started[0].1 = None;
        }
        let g = check(&h);
        let g = rule_g(&g);
        assert_eq!(g.len(), 1);
        assert!(g[0].what.contains("never read"), "{}", g[0].what);
    }

    #[test]
    fn without_a_claim_the_gap_is_measured_not_judged() {
        let mut h = calm(|t| (2100..2800).contains(&t));
        h.availability = None;
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.longest_gap.map(|g| g.ms()), Some(800));
    }

    #[test]
    fn after_a_heal_only_the_time_after_it_counts() {
        let mut h = calm(|t| (1100..1900).contains(&t));
        h.faults.push(FaultEvent {
            at_ms: 2000,
            text: "heal all links".into(),
        });
        h.availability = Some(Availability {
            max_gap_ms: 500,
            from: GapFrom::LastHeal,
        });
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.longest_gap.map(|g| g.ms()), Some(100));
    }

    #[test]
    fn a_clean_failover_passes() {
        let h = history(
            vec![ack(1, "a", 900, true), ack(2, "b", 2600, false)],
            vec![1, 2],
        );
        let r = check(&h);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.failover_ms, Some(2500));
    }

    #[test]
    fn a_write_on_the_old_primary_after_the_fence_is_split_brain() {
        let h = history(vec![ack(1, "a", 2600, true)], vec![1]);
        let r = check(&h);
        assert!(
            r.violations
                .iter()
                .any(|v| v.rule == "a" && v.what.contains("two writable primaries")),
            "{:?}",
            r.violations
        );
        assert!(r.slices.contains("isolate site a"), "{}", r.slices);
    }

    #[test]
    fn a_lost_sync_write_is_a_violation_and_a_degraded_one_is_allowed() {
        let h = history(
            vec![ack(1, "a", 900, true), ack(2, "a", 950, false)],
            vec![],
        );
        let r = check(&h);
        assert_eq!((r.lost, r.lost_allowed), (2, 1));
        assert_eq!(
            r.violations.iter().filter(|v| v.rule == "b").count(),
            1,
            "{:?}",
            r.violations
        );
    }

    #[test]
    fn two_monitors_on_and_disagreeing_witnesses_are_violations() {
        let mut h = history(vec![], vec![]);
        h.monitors = vec![("a", Ok(true)), ("b", Ok(true))];
        let mut other = failed_over();
        other["epoch"] = json!(2);
        h.statuses[2].1 = Some(other);
        let r = check(&h);
        assert!(r.violations.iter().any(|v| v.rule == "c"));
        assert!(r.violations.iter().any(|v| v.rule == "f"));
    }

    #[test]
    fn a_failover_where_none_was_warranted_is_rule_d() {
        let mut h = history(vec![], vec![]);
        h.expect = Expect::NoFailover;
        assert!(check(&h).violations.iter().any(|v| v.rule == "d"));
    }

    /// Rule (h): links cut 1000..2000 and 3000..4000 (2000 ms in all), one
    /// front-door ack every 100 ms except in `dark`.
    fn flapping(dark: impl Fn(i64) -> bool, share: f64) -> History {
        let mut h = calm(dark);
        h.expect = Expect::AtMostOne;
        h.faults = vec![
            FaultEvent {
                at_ms: 1000,
                text: "cut a<->b".into(),
            },
            FaultEvent {
                at_ms: 1000,
                text: "cut a<->c".into(),
            },
            FaultEvent {
                at_ms: 2000,
                text: "heal all links".into(),
            },
            FaultEvent {
                at_ms: 3000,
                text: "cut a<->b".into(),
            },
            FaultEvent {
                at_ms: 4000,
                text: "heal all links".into(),
            },
        ];
        h.end_ms = 5000;
        h.flap_share = Some(share);
        h
    }

    #[test]
    fn flapping_within_its_share_of_the_cut_time_passes() {
        // 1200..1800 dark: 700 ms without an ack, 600 ms of it unavailable.
        let h = flapping(|t| (1200..1800).contains(&t), 0.5);
        assert_eq!(cut_and_unavailable_ms(&h), (2000, 600));
        assert!(check_flapping(&h).is_empty());
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
        let v = check_flapping(&h);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].rule, "h");
        assert!(
            check_flapping(&History {
                flap_share: None,
                ..h
            })
            .is_empty(),
            "no claim, no rule"
        );
    }
}
