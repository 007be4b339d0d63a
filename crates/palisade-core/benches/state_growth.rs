//! Benchmark: the replicated state after a long life, with and without
//! retention (issue 14, bounded state). It applies 100 000 journal notes
//! and 10 000 recorded operations (a switchover each: begin, five steps,
//! finish), one a minute of leader clock apart, pruning with the default
//! `[retention]` policy every 10 s of that clock as the leader does. Then
//! it reports, for the state with retention and for the one without:
//!
//! * `snapshot`: the size of the state as a snapshot stores it (JSON);
//! * `apply note`: how long applying one more note takes (p50 of 1000);
//! * `clone`: how long one copy of the state takes (what every status,
//!   report and reader paid per call before readers shared it);
//! * `prune`: how long one prune takes when there is something to drop.
//!
//!     cargo bench -p palisade-core --bench state_growth
//!
//! Without `--bench` it runs a tenth of the volume as a smoke test.
//! Results go in docs/benchmarks.md.

use std::time::Instant;

use palisade_core::failover::{Evidence, Failover, Kind, Outcome, Step, StepRecord, Trigger};
use palisade_core::state::retention::Retention;
use palisade_core::{ClusterState, Command, SiteId};

const MINUTE: i64 = 60_000;

fn ops(notes: u64, operations: u64, prune: Option<Retention>) -> (ClusterState, u64) {
    let mut s = ClusterState::default();
    let mut index = 1;
    let mut apply = |s: &mut ClusterState, c: &Command| {
        s.apply(index, c);
        index += 1;
    };
    apply(
        &mut s,
        &Command::InitDatabase {
            primary: SiteId("a".into()),
            standby: SiteId("b".into()),
        },
    );
    let total = notes + operations;
    let every_op = total / operations.max(1);
    let mut now = 1_700_000_000_000i64;
    let mut last_prune = now;
    let (mut from, mut to) = ("a", "b");
    for i in 0..total {
        now += MINUTE;
        if i % every_op == 0 && s.epoch < operations {
            let epoch = s.epoch + 1;
            apply(
                &mut s,
                &Command::BeginFailover(Box::new(Failover {
                    epoch,
                    kind: Kind::Switchover,
                    from: SiteId(from.into()),
                    to: SiteId(to.into()),
                    trigger: Trigger::Operator { who: "ops".into() },
                    reason: "bench".into(),
                    evidence: Evidence::default(),
                    started_at_ms: now,
                    steps: vec![],
                    outcome: None,
                    finished_at_ms: None,
                })),
            );
            for (k, step) in Step::ALL.iter().enumerate() {
                apply(
                    &mut s,
                    &Command::StepDone {
                        epoch,
                        record: StepRecord {
                            step: *step,
                            started_at_ms: now + k as i64 * 100,
                            done_at_ms: now + k as i64 * 100 + 90,
                            detail: format!("{} done in 90 ms", step.name()),
                            lsn: None,
                            checks: vec![],
                        },
                    },
                );
            }
            apply(
                &mut s,
                &Command::FinishFailover {
                    epoch,
                    outcome: Outcome::Completed,
                    at_ms: now + 600,
                },
            );
            apply(
                &mut s,
                &Command::StandbyRejoined {
                    site: SiteId(from.into()),
                    epoch,
                    at_ms: now + 700,
                },
            );
            std::mem::swap(&mut from, &mut to);
        } else {
            apply(
                &mut s,
                &Command::Annotate {
                    at_unix_ms: now,
                    author: "ops@example.com".into(),
                    text: format!("shift note {i}: checked the replication lag, all fine"),
                },
            );
        }
        if let Some(r) = prune {
            if now - last_prune >= 10_000 && !s.prunable(&r, now).is_empty() {
                apply(
                    &mut s,
                    &Command::Prune {
                        retention: r,
                        at_ms: now,
                    },
                );
                last_prune = now;
            }
        }
    }
    (s, index)
}

fn p50(mut v: Vec<u128>) -> u128 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn report(name: &str, s: &ClusterState, next_index: u64, r: Option<Retention>) {
    let bytes = serde_json::to_vec(s).expect("serializes").len();
    let mut applies = Vec::new();
    let mut t = s.clone();
    for i in 0..1000u64 {
        let c = Command::Annotate {
            at_unix_ms: i64::MAX / 2,
            author: "ops".into(),
            text: "one more".into(),
        };
        let start = Instant::now();
        t.apply(next_index + i, &c);
        applies.push(start.elapsed().as_nanos());
    }
    let clones: Vec<u128> = (0..20)
        .map(|_| {
            let start = Instant::now();
            let c = s.clone();
            let e = start.elapsed().as_nanos();
            drop(c);
            e
        })
        .collect();
    println!(
        " {name:<16} snapshot {:>9} bytes  journal {:>6}  history {:>5}  apply note p50 {:>6} ns  clone p50 {:>9} ns",
        bytes,
        s.journal.len(),
        s.history.len(),
        p50(applies),
        p50(clones),
    );
    if let Some(r) = r {
        // One prune with something to drop: the 1000 notes just added,
        // a year later.
        let later = t.journal.last().map(|e| e.at_unix_ms).unwrap_or_default();
        let mut u = t.clone();
        let start = Instant::now();
        u.apply(
            next_index + 1000,
            &Command::Prune {
                retention: r,
                at_ms: later,
            },
        );
        println!(" {name:<16} prune {:>9} ns", start.elapsed().as_nanos());
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (notes, operations) = if full {
        (100_000, 10_000)
    } else {
        (10_000, 1_000)
    };
    println!("state after {notes} notes and {operations} operations, one a minute:");
    let r = Retention::default();
    let (kept, next) = ops(notes, operations, Some(r));
    report("retention on", &kept, next, Some(r));
    let (all, next) = ops(notes, operations, None);
    report("retention off", &all, next, None);
}
