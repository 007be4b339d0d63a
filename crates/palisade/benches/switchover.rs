//! Benchmark: the write pause of a planned switchover, over real witness
//! processes (the daemon's default settings) and a real PostgreSQL 15 pair.
//!
//! One pair, one three-witness cluster with automatic rejoin. A writer
//! inserts numbered rows into whichever server takes writes (on an error it
//! tries the other one at once, as an application behind a front door
//! would). The primary is switched over back and forth, a → b → a …; after
//! each switchover the old primary rejoins as a standby on its own before
//! the next one. Each switchover's write pause is the time from the last
//! write the old primary acknowledged to the first the new one did; every
//! acknowledged write is checked to be on the final primary.
//!
//!     cargo bench -p palisade --bench switchover             # 12 switchovers
//!     PALISADE_BENCH_TRIALS=20 cargo bench -p palisade --bench switchover
//!
//! Without `--bench` (`cargo test --benches`) it runs two switchovers as a
//! smoke test. Results go in docs/benchmarks.md.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::{StatusReply, SwitchoverRequest};
use palisade_testkit::cluster::{start_cluster_rejoining, wait_status, Cluster};
use palisade_testkit::pg::PgPair;
use palisade_testkit::writer::{write_pause, Writer};
use palisade_testkit::{bench_trials, percentile, step};
use tonic::transport::Channel;

/// Bound of every wait (a rejoin runs pg_rewind and a restart).
const SETTLE: Duration = Duration::from_secs(60);

struct Trial {
    n: usize,
    from: &'static str,
    to: &'static str,
    pause: Duration,
    total_ms: i64,
    fence_ms: i64,
    promote_ms: i64,
}

async fn client(c: &Cluster, id: u64) -> ControlClient<Channel> {
    let ch = c.nodes[(id - 1) as usize]
        .control_channel(Duration::from_secs(3), Duration::from_secs(15))
        .await
        .expect("connect");
    ControlClient::new(ch)
}

async fn ready_for(c: &Cluster, to: &str) -> StatusReply {
    wait_status(
        c,
        &format!("{to} is a rejoined, streaming standby"),
        SETTLE,
        |s| {
            (s.standby_site == to
                && !s.standby_needs_rejoin
                && s.failover_in_progress.is_none()
                && s.nodes
                    .iter()
                    .filter(|n| !n.databases.is_empty())
                    .all(|n| n.databases.iter().any(|d| d.site == to && d.streaming)))
            .then(|| s.clone())
        },
    )
    .await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let trials = bench_trials(12, 2);
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let c = start_cluster_rejoining(&pair, "").await;
    let writer = Writer::start(&pair).await;
    writer.wait_acks_at("a", 50).await;

    let mut results = Vec::new();
    let mut from = "a";
    for n in 1..=trials {
        let to = if from == "a" { "b" } else { "a" };
        let s = ready_for(&c, to).await;
        // Steady writes on the primary before the switchover.
        let before = writer.acks().iter().filter(|a| a.site == from).count();
        writer.wait_acks_at(from, before + 50).await;
        let leader = s.leader_id.expect("a leader");
        step(&format!("switchover {n}/{trials}: {from} → {to}"));
        let asked = Instant::now();
        let reply = client(&c, leader)
            .await
            .switchover(SwitchoverRequest {
                to_site: to.into(),
                who: "bench".into(),
                // No request id: each switchover is asked once.
                ..Default::default()
            })
            .await
            .expect("switchover accepted")
            .into_inner();
        let f = wait_status(&c, "the switchover finished", SETTLE, |s| {
            s.last_failover
                .clone()
                .filter(|f| f.epoch == reply.epoch && !f.outcome.is_empty())
        })
        .await;
        assert_eq!(f.outcome, "completed", "{f:?}");
        let before = writer.acks().iter().filter(|a| a.site == to).count();
        writer.wait_acks_at(to, before + 20).await;
        let pause = write_pause(&writer.acks(), from, to, asked);
        let step_ms = |name: &str| {
            f.steps
                .iter()
                .find(|s| s.step == name)
                .map(|s| s.done_at_ms - s.started_at_ms)
                .unwrap_or(-1)
        };
        let t = Trial {
            n,
            from,
            to,
            pause,
            total_ms: f.finished_at_ms.unwrap_or(f.started_at_ms) - f.started_at_ms,
            fence_ms: step_ms("fenced"),
            promote_ms: step_ms("promoted"),
        };
        eprintln!(
            "    write pause {} ms (switchover {} ms: fenced {} ms, promoted {} ms)",
            t.pause.as_millis(),
            t.total_ms,
            t.fence_ms,
            t.promote_ms
        );
        results.push(t);
        from = to;
    }
    let acks = writer.stop().await;
    let final_primary = if from == "a" {
        &pair.primary
    } else {
        &pair.standby
    };
    let pool = final_primary.pool().await.expect("connect");
    let have: BTreeSet<i64> = sqlx::query_scalar::<_, i64>("SELECT id FROM writes")
        .fetch_all(&pool)
        .await
        .expect("read writes")
        .into_iter()
        .collect();
    let lost = acks.iter().filter(|a| !have.contains(&a.id)).count();

    println!("\nswitchover write pause, {trials} switchovers, default settings");
    println!(
        "{:>3}  {:<6} {:>9} {:>10} {:>9} {:>10}",
        "#", "move", "pause ms", "total ms", "fence ms", "promote ms"
    );
    for t in &results {
        println!(
            "{:>3}  {}→{}   {:>9} {:>10} {:>9} {:>10}",
            t.n,
            t.from,
            t.to,
            t.pause.as_millis(),
            t.total_ms,
            t.fence_ms,
            t.promote_ms
        );
    }
    let mut pauses: Vec<u128> = results.iter().map(|t| t.pause.as_millis()).collect();
    pauses.sort_unstable();
    println!(
        "write pause: p50 {} ms, p99 {} ms, min {} ms, max {} ms; {} writes acknowledged, {lost} lost",
        percentile(&pauses, 50.0),
        percentile(&pauses, 99.0),
        pauses[0],
        pauses[pauses.len() - 1],
        acks.len()
    );
    assert_eq!(lost, 0, "acknowledged writes lost in a switchover");
    drop(c);
}
