//! Benchmark: time from SIGKILL of the Raft leader to a new leader visible
//! through `Control.Status` on a survivor, over real witness processes on
//! loopback with the default election timeouts.
//!
//!     cargo bench -p palisade --bench leader_failover            # 20 trials
//!     PALISADE_BENCH_TRIALS=50 cargo bench -p palisade --bench leader_failover
//!
//! Prints every trial and p50 / p99 / max. Results go in docs/benchmarks.md.

use std::time::{Duration, Instant};

use palisade_api::v1::{Role, StatusReply};
use palisade_testkit::cluster::{status_at, Cluster};
use palisade_testkit::pki::TestPki;
use palisade_testkit::{bench_trials, percentile, wait_for};

/// `Control.Status` at `endpoint`, with short timeouts: a dead leader must
/// not hold up the measurement.
async fn status(endpoint: &str, pki: Option<&TestPki>) -> Option<StatusReply> {
    status_at(
        endpoint,
        pki,
        Duration::from_millis(200),
        Duration::from_millis(1500),
    )
    .await
}

/// A settled cluster: every running node agrees on the leader and term, the
/// leader reports itself leader, and every node has applied the leader's
/// whole log (a steady state, as in production between failures).
async fn agreed_leader(c: &Cluster, running: &[u64]) -> Option<(u64, u64)> {
    let mut seen = None;
    let mut applied = Vec::new();
    for id in running {
        let s = status(&c.nodes[(*id - 1) as usize].control, c.pki.as_ref()).await?;
        let view = (s.leader_id?, s.term);
        if seen.is_some_and(|v| v != view) {
            return None;
        }
        seen = Some(view);
        let me = s.nodes.iter().find(|n| n.id == s.node_id)?;
        if Some(me.id) == s.leader_id && me.role != Role::Leader as i32 {
            return None;
        }
        applied.push((me.last_log_index, me.last_applied_index));
    }
    let first = applied.first()?;
    applied
        .iter()
        .all(|a| a == first && a.0 == a.1)
        .then_some(seen?)
}

async fn wait_agreed(c: &Cluster, running: &[u64], timeout: Duration) -> (u64, u64) {
    wait_for(
        "a settled cluster under an agreed leader",
        timeout,
        async || agreed_leader(c, running).await,
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // useful: run one trial then, as a smoke test.
    let trials = bench_trials(20, 1);
    let mut c = Cluster::start();
    let all = [1u64, 2, 3];
    let (mut leader, _) = wait_agreed(&c, &all, Duration::from_secs(30)).await;
    let mut samples = Vec::new();
    println!("leader failover: {trials} trials, SIGKILL leader -> new leader visible via Status on a survivor");
    for trial in 1..=trials {
        let survivors: Vec<u64> = all.iter().copied().filter(|i| *i != leader).collect();
        let probe = c.nodes[(survivors[0] - 1) as usize].control.clone();
        let killed_at = Instant::now();
        c.node(leader).kill9();
        // The measurement itself: polled every 5 ms, finer than wait_for.
        let new_leader = loop {
            if let Some(s) = status(&probe, c.pki.as_ref()).await {
                if let Some(l) = s.leader_id.filter(|l| *l != leader) {
                    // Visible: the survivor names a new leader and that
                    // leader's own report (in nodes[]) says it leads.
                    if s.nodes
                        .iter()
                        .any(|n| n.id == l && n.role == Role::Leader as i32)
                    {
                        break l;
                    }
                }
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(30),
                "trial {trial}: no new leader within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let took = killed_at.elapsed();
        println!(
            "trial {trial:>3}: leader {leader} killed, leader {new_leader} visible after {:>4} ms",
            took.as_millis()
        );
        samples.push(took);
        // Bring the killed witness back and let the cluster settle before
        // the next trial; not timed.
        c.node(leader).start();
        let (l, _) = wait_agreed(&c, &all, Duration::from_secs(30)).await;
        leader = l;
    }
    samples.sort();
    println!(
        "leader failover over {} trials: p50 {} ms, p99 {} ms, max {} ms",
        samples.len(),
        percentile(&samples, 50.0).as_millis(),
        percentile(&samples, 99.0).as_millis(),
        samples.last().expect("at least one trial").as_millis()
    );
}
