//! Benchmark: site isolation through the front door (issue 10, "Measure").
//!
//! Each trial builds a fresh chaos world (`chaos_tests::cluster::World`:
//! three sites in network namespaces, real witnesses, a real PostgreSQL 15
//! pair streaming asynchronously, the two apps' `threatconnect.xml`, a real
//! HAProxy front door), starts the chaos workload (a writer through the
//! front door, one local writer per data site, the sampler), waits until
//! the cluster is settled and the front door has taken writes, then
//! **isolates site a**: nftables drop every packet between site a and the
//! other two sites and the front door, both ways; nothing is refused, so
//! every probe, renewal and connection towards it runs into its timeout.
//!
//! The figure is the time from the isolation (just before the first rule
//! goes in) to the first write acknowledged **through the front door** by
//! the new primary (site b). A prober opens a fresh connection through
//! HAProxy every [`PROBE_EVERY`] and inserts one row (each attempt bounded
//! by [`ATTEMPT_TIMEOUT`], several under way at once), so the figure is
//! when the front door first served a write on b, not when one client's
//! timeout happened to run out. What the chaos workload's own front-door
//! writer saw (one session, which reconnects 100 ms after an error) is
//! printed beside it.
//!
//! The total is split with the failover record (`palisadectl status`
//! `last_failover`, wall-clock ms, same machine): **detect** = isolation →
//! failover started, **fence** = → `fenced` done, **promote** = →
//! `promoted` done, **repoint** = → `repointed` done (the `app-flipped`
//! step and HAProxy's runtime API), **rest** = → the first write through
//! the front door.
//!
//! Profiles (`PALISADE_BENCH_PROFILES=default,fast`, both by default):
//! * `default`: no timing key set, the daemon's defaults (probe every
//!   250 ms, timeout 1000 ms, `down_after_ms` 1000, `lease.ttl_ms` 2000).
//! * `fast`: `deploy/profiles/fast.toml`, included verbatim.
//!
//! Both run `replication = "async"` (the default) and the default crash
//! policy. The Raft leader is wherever the first election put it (each
//! trial prints its site; the summary splits by it when both occur), or,
//! with `PALISADE_BENCH_LEADER=a` (or `b`, `c`), moved to that site first
//! by restarting leaders (site loss and leader loss at once with `a`).
//!
//!     cargo build --release -p palisade -p palisadectl
//!     PALISADE_BENCH_TRIALS=10 cargo bench -p chaos-tests --bench isolation
//!     PALISADE_BENCH_PROFILES=fast cargo bench -p chaos-tests --bench isolation
//!     PALISADE_BENCH_LEADER=a cargo bench -p chaos-tests --bench isolation
//!     cargo test -p chaos-tests --bench isolation     # smoke: one trial per profile
//!
//! `PALISADE_BENCH_KEEP_LOGS=1` keeps every trial's logs (witnesses,
//! servers, HAProxy, the fault log) under `target/chaos-logs/`, as a failed
//! trial's always are: the leader's `detector` lines show the detection.
//!
//! Needs root (namespaces, nftables), like the chaos suite; without root it
//! skips, saying why (and fails under `CI=true`). Without `--bench`
//! (`cargo test --benches`) it runs one trial of each profile as a smoke
//! test (about a minute). Results go in docs/benchmarks.md.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chaos_tests::cluster::{Settings, World, PASSWORD, PG_PORT, SETTLE, SUPERUSER};
use chaos_tests::netns::{self, SITES};
use chaos_tests::scenario::{leader_site, move_leadership_to, wait_failover_done};
use chaos_tests::workload::Workload;
use chaos_tests::{now_ms, step};
use palisade_testkit::{bench_trials, percentile};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::task::JoinSet;

/// How often the prober starts a fresh attempt through the front door.
const PROBE_EVERY: Duration = Duration::from_millis(25);
/// Bound of one attempt (connect through HAProxy, INSERT): an attempt that
/// HAProxy sends to the isolated site hangs until this runs out.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Most attempts under way at once (each hangs for at most
/// [`ATTEMPT_TIMEOUT`]; none reaches a database server while they hang).
const MAX_IN_FLIGHT: usize = 80;
/// How long the front door may take to serve a write on b at all.
const FIRST_WRITE_DEADLINE: Duration = Duration::from_secs(30);
/// Front-door writes the workload must have had acknowledged, after the
/// cluster settled, before the isolation.
const WRITES_BEFORE: usize = 25;
/// The witnesses' probe and renewal loops run at fixed phases from their
/// start, and so does the end of the settling: trial k waits
/// `frac(k × 0.618…) × PHASE_SPAN` more before the isolation, which spreads
/// the isolations evenly over one renewal period of the default lease
/// (two of the fast profile's).
const PHASE_SPAN: Duration = Duration::from_millis(500);
/// The pause after moving the leadership: a restarted witness vouches for
/// no lease expiry until `ttl × (1 + drift)` after its start (2.2 s with
/// the default lease), which would otherwise hold up the fence.
const AFTER_MOVE: Duration = Duration::from_secs(3);
/// Row ids of the prober (the workload's writers use 1.., 1e9+1.., 2e9+1..).
const PROBE_IDS: i64 = 3_000_000_000;

/// A set of timing values the witnesses run with.
struct Profile {
    id: &'static str,
    title: &'static str,
    /// The `[raft]`/`[probe]`/`[lease]`/`[failover]` sections, verbatim.
    toml: &'static str,
}

const PROFILES: [Profile; 2] = [
    Profile {
        id: "default",
        title: "the daemon's defaults (probe 250/1000 ms, down_after 1000 ms, lease ttl 2000 ms)",
        toml: "",
    },
    Profile {
        id: "fast",
        title: "deploy/profiles/fast.toml (probe 100/300 ms, down_after 500 ms, lease ttl 1000 ms, peer connect 100 ms)",
        toml: include_str!("../../deploy/profiles/fast.toml"),
    },
];

/// The target of issue 10 for the p50 of the total (default profile).
const TARGET_MS: i64 = 3000;

const PART_NAMES: [&str; 5] = ["detect", "fence", "promote", "repoint", "rest"];

/// One trial's figures, in ms.
struct Trial {
    /// Isolation → first write acknowledged by b through the front door.
    total: i64,
    /// [`PART_NAMES`], in order; `None` when the record lacks a step.
    parts: Option<Vec<i64>>,
    /// Isolation → first acknowledgement on b of the workload's session
    /// writer through the front door, if it had one before the end.
    session: Option<i64>,
    /// The Raft leader's site at the isolation.
    leader: &'static str,
}

/// Unix ms of the first write through the front door that site b's
/// server acknowledged, from attempts started every [`PROBE_EVERY`] from
/// now on; and how many attempts were started.
async fn first_write_on_b(deadline: Instant) -> Result<(i64, u64)> {
    let opts = PgConnectOptions::new()
        .host(netns::HOST_ADDR)
        .port(PG_PORT)
        .username(SUPERUSER)
        .password(PASSWORD)
        .database("postgres")
        .application_name("isolation-bench");
    let mut attempts: JoinSet<Option<String>> = JoinSet::new();
    let mut started = 0u64;
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if Instant::now() > deadline {
                    bail!("no write through the front door was acknowledged by b within {FIRST_WRITE_DEADLINE:?} ({started} attempts)");
                }
                if attempts.len() < MAX_IN_FLIGHT {
                    started += 1;
                    let id = PROBE_IDS + started as i64;
                    attempts.spawn(attempt(opts.clone(), id));
                }
            }
            Some(done) = attempts.join_next() => {
                if let Ok(Some(server)) = done {
                    if server == "site_b" {
                        // Dropping the set aborts the attempts still under way.
                        return Ok((now_ms(), started));
                    }
                }
            }
        }
    }
}

/// One attempt: a fresh connection through the front door and one
/// INSERT; the server's `cluster_name` if it was acknowledged in time.
async fn attempt(opts: PgConnectOptions, id: i64) -> Option<String> {
    let once = async {
        let mut c = opts.connect().await.ok()?;
        let server = sqlx::query_scalar::<_, String>(
            "INSERT INTO chaos_writes (id, via) VALUES ($1, 'isolation-bench') RETURNING current_setting('cluster_name')",
        )
        .bind(id)
        .fetch_one(&mut c)
        .await
        .ok()?;
        let _ = c.close().await;
        Some(server)
    };
    tokio::time::timeout(ATTEMPT_TIMEOUT, once).await.ok()?
}

fn step_done(f: &Value, name: &str) -> Option<i64> {
    f["steps"].as_array()?.iter().find(|s| s["step"] == name)?["done_at_ms"].as_i64()
}

async fn run_trial(p: &Profile, trial: usize, leader_at: Option<&'static str>) -> Result<Trial> {
    let id = p.id;
    step(&format!("{id} trial {trial}: start a world"));
    let settings = Settings {
        replication: "async",
        profile: Some(p.toml.to_string()),
        ..Settings::default()
    };
    let mut w = World::start(settings).await?;
    let r = isolate_and_measure(p, trial, leader_at, &mut w).await;
    if r.is_err() || std::env::var_os("PALISADE_BENCH_KEEP_LOGS").is_some() {
        w.keep_logs_in = Some(
            chaos_tests::scenario::results_file()
                .with_file_name("chaos-logs")
                .join(format!("isolation-bench-{id}-{trial}-{}", now_ms())),
        );
    }
    drop(w);
    r
}

async fn isolate_and_measure(
    p: &Profile,
    trial: usize,
    leader_at: Option<&'static str>,
    w: &mut World,
) -> Result<Trial> {
    let id = p.id;
    let mut wl = Workload::start(w.db_sock("a"), w.db_sock("b"), w.haproxy_sock.clone());
    let r = async {
        if let Some(want) = leader_at {
            if leader_site(w).await? != want {
                step(&format!("{id} trial {trial}: move the leadership to site {want}"));
                move_leadership_to(w, want).await?;
                tokio::time::sleep(AFTER_MOVE).await; // deliberate: see AFTER_MOVE
            }
        }
        wl.wait_more_acks("front-door", WRITES_BEFORE, SETTLE).await?;
        let s = w.wait_ready("settled before the isolation").await?;
        let leader = s["leader_id"]
            .as_u64()
            .and_then(|l| SITES.get(l.checked_sub(1)? as usize).copied())
            .context("the settled status names no leader")?;
        let phase = PHASE_SPAN.mul_f64((trial as f64 * 0.618_033_988_749_895).fract());
        step(&format!(
            "{id} trial {trial}: settled under the leader at site {leader}; isolate site a in {} ms (phase offset)",
            phase.as_millis()
        ));
        tokio::time::sleep(phase).await; // deliberate: sets the isolation's phase
        let isolated = now_ms();
        w.net().isolate("a")?;
        let rules_in = now_ms() - isolated;
        let (wrote, attempts) =
            first_write_on_b(Instant::now() + FIRST_WRITE_DEADLINE).await?;
        let total = wrote - isolated;
        step(&format!(
            "{id} trial {trial}: first write on b through the front door {total} ms after the isolation ({attempts} attempts; rules in place in {rules_in} ms)"
        ));
        let f = wait_failover_done(w, Duration::from_secs(40)).await?;
        let outcome = f["outcome"].as_str().unwrap_or("");
        if f["to_site"] != "b" || !outcome.starts_with("completed") {
            bail!("the failover did not complete to b: {f}");
        }
        let started = f["started_at_ms"]
            .as_i64()
            .context("the failover record has no start")?;
        let parts = step_done(&f, "fenced")
            .zip(step_done(&f, "promoted"))
            .zip(step_done(&f, "repointed"))
            .map(|((fenced, promoted), repointed)| {
                vec![
                    started - isolated,
                    fenced - started,
                    promoted - fenced,
                    repointed - promoted,
                    wrote - repointed,
                ]
            });
        let session = wl
            .acks
            .lock()
            .expect("acks lock")
            .iter()
            .find(|a| a.via == "front-door" && a.server == "b" && a.acked_ms > isolated)
            .map(|a| a.acked_ms - isolated);
        let breakdown = match &parts {
            Some(v) => PART_NAMES
                .iter()
                .zip(v)
                .map(|(n, v)| format!("{n} {v:>5}"))
                .collect::<Vec<_>>()
                .join(" + "),
            None => "breakdown unavailable (a step is missing from the record)".into(),
        };
        println!(
            "{id:>8} trial {trial:>2}: total {total:>5} ms = {breakdown} (leader at {leader}; session writer {})",
            session.map_or("none".into(), |s| format!("{s} ms"))
        );
        let detail = |name: &str| {
            f["steps"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["step"] == name))
                .and_then(|s| s["detail"].as_str())
                .unwrap_or("")
                .to_string()
        };
        println!(
            "{:>20}down_for {} ms; fenced: {}; outcome: {outcome}",
            "",
            f["evidence"]["down_for_ms"],
            detail("fenced")
        );
        Ok(Trial {
            total,
            parts,
            session,
            leader,
        })
    }
    .await;
    wl.stop().await;
    r
}

fn summary_line(id: &str, name: &str, mut v: Vec<i64>) -> String {
    v.sort_unstable();
    format!(
        "{id:>8} {name:<16} p50 {:>5} ms  p99 {:>5} ms  max {:>5} ms  (n={})",
        percentile(&v, 50.0),
        percentile(&v, 99.0),
        v.last().expect("at least one sample"),
        v.len()
    )
}

fn summarize(p: &Profile, trials: &[Trial]) {
    let id = p.id;
    println!("{id:>8}: {}", p.title);
    let totals: Vec<i64> = trials.iter().map(|t| t.total).collect();
    println!("{}", summary_line(id, "total", totals.clone()));
    for (i, name) in PART_NAMES.iter().enumerate() {
        let v: Vec<i64> = trials
            .iter()
            .filter_map(|t| t.parts.as_ref().map(|p| p[i]))
            .collect();
        if !v.is_empty() {
            println!("{}", summary_line(id, name, v));
        }
    }
    let session: Vec<i64> = trials.iter().filter_map(|t| t.session).collect();
    if !session.is_empty() {
        println!("{}", summary_line(id, "session writer", session));
    }
    let at_a: Vec<i64> = trials
        .iter()
        .filter(|t| t.leader == "a")
        .map(|t| t.total)
        .collect();
    let elsewhere: Vec<i64> = trials
        .iter()
        .filter(|t| t.leader != "a")
        .map(|t| t.total)
        .collect();
    if !at_a.is_empty() && !elsewhere.is_empty() {
        println!("{}", summary_line(id, "leader at a", at_a));
        println!("{}", summary_line(id, "leader elsewhere", elsewhere));
    }
    let mut sorted = totals;
    sorted.sort_unstable();
    let p50 = percentile(&sorted, 50.0);
    println!(
        "{id:>8} target           p50 <= {TARGET_MS} ms: {} (p50 {p50} ms)",
        if p50 <= TARGET_MS { "met" } else { "MISSED" }
    );
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    if !chaos_tests::gate("isolation bench") {
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: one
    // trial of each profile then, as a smoke test.
    let trials = bench_trials(10, 1);
    let profiles: Vec<&Profile> = match std::env::var("PALISADE_BENCH_PROFILES") {
        Ok(list) => list
            .split(',')
            .map(str::trim)
            .map(|want| {
                PROFILES.iter().find(|p| p.id == want).unwrap_or_else(|| {
                    panic!(
                        "PALISADE_BENCH_PROFILES: unknown profile {want:?} (known: default, fast)"
                    )
                })
            })
            .collect(),
        Err(_) => PROFILES.iter().collect(),
    };
    let leader_at: Option<&'static str> = std::env::var("PALISADE_BENCH_LEADER")
        .ok()
        .filter(|l| l != "any")
        .map(|l| {
            SITES.into_iter().find(|s| *s == l).unwrap_or_else(|| {
                panic!("PALISADE_BENCH_LEADER: {l:?} is not a site (a, b, c) or `any`")
            })
        });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let bins = chaos_tests::build_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    println!(
        "site isolation through the front door: {trials} trials per profile, a fresh world per trial, the leader {}, binaries from {bins}; load average {}",
        leader_at.map_or("where the first election put it".to_string(), |l| format!("moved to site {l}")),
        load()
    );
    let mut results = Vec::new();
    for p in profiles {
        println!("{:>8}: {}", p.id, p.title);
        let started = Instant::now();
        let mut done = Vec::new();
        for trial in 1..=trials {
            match rt.block_on(run_trial(p, trial, leader_at)) {
                Ok(t) => done.push(t),
                Err(e) => panic!("{} trial {trial}: {e:#}", p.id),
            }
        }
        println!(
            "{:>8}: {trials} trials in {} s; load average {}",
            p.id,
            started.elapsed().as_secs(),
            load()
        );
        results.push((p, done));
    }
    println!("\nsummary (ms; p99 of fewer than 100 trials is the max):");
    for (p, done) in &results {
        summarize(p, done);
    }
}
