//! Benchmark: how soon a load balancer that palisade does not drive follows
//! a failover through the witnesses' health endpoints. A real HAProxy in
//! TCP mode checks `GET /primary` on each site's witness (`option
//! httpchk`, `inter 100ms fall 1 rise 1`); the primary postmaster is
//! SIGKILLed with `on_primary_crash = "failover"` and the default probe,
//! lease and failover settings. Each trial builds a fresh PostgreSQL pair,
//! cluster and HAProxy, and times from the kill to:
//!
//! * `promoted`: the failover record's `promoted` step done (wall clock
//!   of the leader, against ours: same machine);
//! * `routed`: the first connection through HAProxy that lands on the new
//!   primary (a connection attempt every 20 ms).
//!
//! `after` is routed − promoted: what the health endpoints add to the
//! failover itself.
//!
//!     cargo bench -p palisade --bench health_routing             # 10 trials
//!     PALISADE_BENCH_TRIALS=20 cargo bench -p palisade --bench health_routing
//!
//! Without `--bench` it runs one trial as a smoke test. Results go in
//! docs/benchmarks.md.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palisade_testkit::cluster::{db_config, wait_ready, wait_status, Cluster};
use palisade_testkit::haproxy::{
    free_loopback_addr, haproxy_binary, route, Haproxy, HaproxyConfig,
};
use palisade_testkit::pg::PgPair;
use palisade_testkit::{bench_trials, percentile, step, wait_for};

const SETTLE: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

fn http_port(c: &Cluster, id: u64) -> u16 {
    c.nodes[(id - 1) as usize]
        .http
        .as_deref()
        .and_then(|u| u.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("the test kit gives every witness an HTTP listener")
}

/// One trial: (promoted, routed) in ms after the kill.
async fn trial(bin: &std::path::Path) -> (i64, i64) {
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let tuning = "[failover]\non_primary_crash = \"failover\"\n";
    let mut c = Cluster::with_config(&db_config(&pair, tuning));
    for n in &mut c.nodes {
        n.start();
    }
    wait_ready(&c).await;
    let dir = tempfile::tempdir().expect("haproxy dir");
    let mut cfg = HaproxyConfig::new(
        dir.path().join("admin.sock"),
        free_loopback_addr().expect("a free port"),
        vec![
            ("pg_a".into(), pair.primary.addr()),
            ("pg_b".into(), pair.standby.addr()),
        ],
    );
    cfg.health_check = Some(("/primary".into(), vec![http_port(&c, 1), http_port(&c, 2)]));
    let h = Haproxy::start(bin, dir.path(), &cfg)
        .await
        .expect("haproxy");
    let front = h.frontend().port();
    let (a, b) = (pair.primary.port() as i32, pair.standby.port() as i32);
    // HAProxy (before 3.1's `init-state down`) starts every server UP until
    // its first check: wait until ten connections in a row land on a, so
    // that b's first check has marked it down.
    wait_for("HAProxy routes to a only", SETTLE, async || {
        for _ in 0..10 {
            if route(front).await.map(|r| r.0) != Some(a) {
                return None;
            }
        }
        Some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));

    let killed_at = now_ms();
    pair.primary.kill9();
    let routed = wait_for("HAProxy routes to b", SETTLE, async || {
        match route(front).await {
            Some((port, false)) if port == b => Some(now_ms() - killed_at),
            Some((_, true)) => panic!("HAProxy routed to a server in recovery"),
            _ => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                None
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let f = wait_status(&c, "failover completed", SETTLE, |s| {
        s.last_failover.clone().filter(|f| !f.outcome.is_empty())
    })
    .await;
    let promoted = f
        .steps
        .iter()
        .find(|s| s.step == "promoted")
        .map(|s| s.done_at_ms - killed_at)
        .expect("a promoted step");
    (promoted, routed)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let Some(bin) = haproxy_binary() else {
        return;
    };
    let trials = bench_trials(10, 1);
    let mut promoted = Vec::new();
    let mut routed = Vec::new();
    let mut after = Vec::new();
    for n in 1..=trials {
        let (p, r) = trial(&bin).await;
        step(&format!(
            "trial {n}: promoted {p} ms, routed {r} ms after the kill"
        ));
        promoted.push(p);
        routed.push(r);
        after.push(r - p);
    }
    for (name, v) in [
        ("promoted", &mut promoted),
        ("routed", &mut routed),
        ("after", &mut after),
    ] {
        v.sort_unstable();
        println!(
            " health-routing {name:<9} p50 {:>5} ms  p99 {:>5} ms  max {:>5} ms  (n={})",
            percentile(v, 50.0),
            percentile(v, 99.0),
            v.last().copied().unwrap_or_default(),
            v.len()
        );
    }
}
