//! The merged history around a violation: faults, the failover record's
//! steps, acknowledged writes and the samples where something changed, on
//! one clock (every process of a world runs on this one machine).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::history::History;
use super::record::failover_of;
use crate::fmt_ms;

/// The merged history between two moments: faults, the failover record,
/// acknowledged writes (grouped by writer and server per 250 ms), and the
/// samples where something changed. `state` is a witness's status, whose
/// failover record is shown; `None`: no witness answered.
pub fn slice(h: &History, state: Option<&Value>, from: i64, to: i64) -> String {
    let mut lines: Vec<(i64, String)> = Vec::new();
    for f in &h.faults {
        lines.push((f.at_ms, format!("FAULT   {}", f.text)));
    }
    if let Some(f) = state.and_then(failover_of) {
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
