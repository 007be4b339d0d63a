//! Hand-made histories for the validators' unit tests.

use serde_json::{json, Value};

use super::history::{Availability, Expect, GapFrom, History};
use crate::faults::FaultEvent;
use crate::workload::{Ack, Sample};

/// A write through site a's local writer, taken by `server` at `at`.
pub fn ack(id: i64, server: &str, at: i64, sync: bool) -> Ack {
    Ack {
        id,
        via: "local-a",
        server: server.into(),
        sync,
        server_ms: at,
        acked_ms: at + 1,
    }
}

/// A fault at `at`.
pub fn fault(at: i64, text: &str) -> FaultEvent {
    FaultEvent {
        at_ms: at,
        text: text.into(),
    }
}

/// A sample at `at` with `writable` per site (a, b), a's postmaster
/// started at 42 and b's at 43, HAProxy routing to a.
pub fn sample(at: i64, a: Option<bool>, b: Option<bool>) -> Sample {
    Sample {
        at_ms: at,
        writable: vec![("a", a), ("b", b)],
        started: vec![("a", Some(42)), ("b", Some(43))],
        routable: Some(vec!["a"]),
    }
}

/// The status of a witness after one completed failover a → b that began
/// at 1000, fenced a at 2000, promoted b at 2500 and finished at 3000.
pub fn failed_over() -> Value {
    let f = json!({
        "epoch": 1, "from_site": "a", "to_site": "b", "outcome": "completed",
        "started_at_ms": 1000, "finished_at_ms": 3000,
        "steps": [
            {"step": "fenced", "done_at_ms": 2000, "detail": "fenced by agent: stopped"},
            {"step": "promoted", "done_at_ms": 2500, "detail": "promoted"},
            {"step": "app-flipped", "done_at_ms": 2600, "detail": ""},
            {"step": "repointed", "done_at_ms": 2700, "detail": ""},
            {"step": "verified", "done_at_ms": 2900, "detail": ""},
        ],
    });
    json!({
        "epoch": 1, "primary_site": "b", "standby_site": "a", "standby_needs_rejoin": true,
        "last_failover": f,
        "nodes": [{"site": "a", "last_applied_index": 9}, {"site": "b", "last_applied_index": 9}, {"site": "c", "last_applied_index": 9}],
    })
}

/// The status of a witness with no failover: a primary, b standby.
pub fn calm_state() -> Value {
    json!({
        "epoch": 0, "primary_site": "a", "standby_site": "b", "standby_needs_rejoin": false,
        "last_failover": null,
        "nodes": [{"site": "a", "last_applied_index": 9}, {"site": "b", "last_applied_index": 9}, {"site": "c", "last_applied_index": 9}],
    })
}

/// Site a isolated at 500 and failed over to b ([`failed_over`]), the
/// writes `acks`, the final primary b holding `stored`, apps flipped,
/// `sync` replication, no samples.
pub fn history(acks: Vec<Ack>, stored: Vec<i64>) -> History {
    let s = failed_over();
    History {
        faults: vec![fault(500, "isolate site a")],
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
pub fn calm(skip: impl Fn(i64) -> bool) -> History {
    let s = calm_state();
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
        faults: vec![fault(1000, "cut a<->c")],
        acks,
        samples: (0..=25)
            .map(|i| sample(i * 200, Some(true), Some(false)))
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

/// Rule (h): links cut 1000..2000 and 3000..4000 (2000 ms in all), one
/// front-door ack every 100 ms except in `dark`.
pub fn flapping(dark: impl Fn(i64) -> bool, share: f64) -> History {
    let mut h = calm(dark);
    h.expect = Expect::AtMostOne;
    h.faults = vec![
        fault(1000, "cut a<->b"),
        fault(1000, "cut a<->c"),
        fault(2000, "heal all links"),
        fault(3000, "cut a<->b"),
        fault(4000, "heal all links"),
    ];
    h.end_ms = 5000;
    h.flap_share = Some(share);
    h
}
