//! The randomized mode: a seeded schedule of the named faults, each held
//! for a random time, healed, the cluster left to settle and the checker
//! run after every heal. The schedule depends only on the seed (and on
//! whether a failover ended the round), so a failing seed replays exactly:
//! `cargo run -p chaos-tests --bin chaos -- random --seed N --duration D`.
//!
//! After a failover the old primary must rejoin by hand before another
//! automatic failover is allowed (docs/operations.md), so a round ends at
//! its first failover (or after `FAULTS_PER_ROUND` faults) and the next
//! round starts a fresh world. A violation is printed with its history
//! slice, the world's logs are kept, and the run goes on with a fresh
//! world; it fails at the end, listing every violation.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nix::sys::signal::Signal;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::checker::Expect;
use crate::cluster::{Settings, World};
use crate::faults::Dir;
use crate::netns::SITES;
use crate::scenario::{collect_and_check, RTO_MS};
use crate::step;
use crate::workload::Workload;

/// Faults per world before a fresh one is built.
const FAULTS_PER_ROUND: usize = 12;

/// Runs random rounds for `duration`. Returns the number of faults checked.
pub async fn run(seed: u64, duration: Duration) -> Result<usize> {
    eprintln!("chaos random: seed {seed}, duration {duration:?} (replay: cargo run -p chaos-tests --bin chaos -- random --seed {seed} --duration {}s)", duration.as_secs());
    let mut run = Run {
        seed,
        rng: ChaCha8Rng::seed_from_u64(seed),
        end: Instant::now() + duration,
        checked: 0,
        failures: Vec::new(),
    };
    let mut round = 0;
    let mut harness_errors = Vec::new();
    while Instant::now() < run.end {
        round += 1;
        // A harness error (a command that failed, a world that would not
        // start) ends this world, not the run: it is listed at the end.
        if let Err(e) = one_round(&mut run, round).await {
            eprintln!("chaos random: seed {seed} round {round}: harness error: {e:#}");
            harness_errors.push(format!("round {round}: {e:#}"));
        }
    }
    let (checked, failures) = (run.checked, run.failures);
    if !failures.is_empty() || !harness_errors.is_empty() {
        bail!(
            "seed {seed}: {} of {checked} checks found violations; {} harness errors (replay with --seed {seed}):\n  {}",
            failures.len(),
            harness_errors.len(),
            failures.iter().chain(&harness_errors).cloned().collect::<Vec<_>>().join("\n  ")
        );
    }
    eprintln!("chaos random: seed {seed}: {checked} faults, {round} worlds, no violation");
    Ok(checked)
}

/// The state of one random run.
struct Run {
    seed: u64,
    rng: ChaCha8Rng,
    end: Instant,
    checked: usize,
    failures: Vec<String>,
}

/// One world: faults until its first failover, `FAULTS_PER_ROUND`, or the end.
async fn one_round(run: &mut Run, round: usize) -> Result<()> {
    let seed = run.seed;
    step(&format!("random seed {seed} round {round}: start a world"));
    let mut w = World::start(Settings::default()).await?;
    let mut wl = Workload::start(w.db_sock("a"), w.db_sock("b"), w.haproxy_sock.clone());
    wl.wait_more_acks("front-door", 20, Duration::from_secs(60))
        .await?;
    for i in 0..FAULTS_PER_ROUND {
        if Instant::now() >= run.end {
            break;
        }
        let hold = Duration::from_millis(run.rng.random_range(500..6000));
        let kind = run.rng.random_range(0..9u32);
        let x = SITES[run.rng.random_range(0..3)];
        let y = SITES
            .iter()
            .copied()
            .filter(|s| *s != x)
            .nth(run.rng.random_range(0..2))
            .expect("two other sites");
        let db = ["a", "b"][run.rng.random_range(0..2)];
        step(&format!(
            "seed {seed} round {round} fault {i}: kind {kind} x {x} y {y} db {db} hold {hold:?}"
        ));
        let mut frozen: Vec<i32> = Vec::new();
        let mut thaw_witness = None;
        let t = match kind {
            0 => w.net().isolate(x)?,
            1 => w.net().cut(x, y, Dir::Both)?,
            2 => w.net().cut(x, y, Dir::OneWay)?,
            3 => w.signal_witness(x, Signal::SIGKILL)?,
            4 => {
                thaw_witness = Some(x);
                w.signal_witness(x, Signal::SIGSTOP)?
            }
            5 => {
                let at = w.log.record(format!("SIGKILL database {db}"));
                w.signal_db(db, Signal::SIGKILL).map(|_| ()).or_else(|e| {
                    eprintln!("fault skipped: {e:#}");
                    Ok::<(), anyhow::Error>(())
                })?;
                at
            }
            6 => match w.signal_db(db, Signal::SIGSTOP) {
                Ok(p) => {
                    frozen = p;
                    crate::now_ms()
                }
                Err(e) => {
                    eprintln!("fault skipped: {e:#}");
                    crate::now_ms()
                }
            },
            7 => {
                let at = w.signal_witness(x, Signal::SIGTERM)?;
                w.start_witness(x)?;
                at
            }
            _ => {
                w.net().cut(x, y, Dir::Both)?;
                w.signal_witness(x, Signal::SIGKILL)?
            }
        };
        tokio::time::sleep(hold).await;
        if w.net().is_cut() {
            w.net().heal()?;
        }
        if !frozen.is_empty() {
            w.thaw(&format!("database {db}"), &frozen);
        }
        if let Some(site) = thaw_witness {
            if let Some(pid) = w.witness_pid(site) {
                crate::procs::signal(pid, Signal::SIGCONT);
                w.log.record(format!("SIGCONT witness {site}"));
            }
        }
        for site in SITES {
            if w.witness_pid(site).is_none() {
                w.start_witness(site)?;
            }
        }
        // The standby's server, if killed, is the OS's to restart.
        if let Some(s) = w.status("c").await {
            if s["epoch"] == 0 && !w.db_running("b") {
                w.start_db("b")?;
            }
        }
        let settled = w.wait_ready("settle after the heal").await;
        let mut r =
            collect_and_check(&mut w, &wl, Expect::AtMostOne, RTO_MS, Some(t), None, None).await;
        run.checked += 1;
        if let Err(e) = settled {
            r.harness_failure("settle", &e);
        }
        if !r.passed() {
            let now = crate::now_ms();
            w.keep_logs_in = Some(
                crate::scenario::results_file()
                    .with_file_name("chaos-logs")
                    .join(format!("random-{seed}-{now}")),
            );
            eprint!("{}", r.summary());
            eprintln!("{}", r.slices);
            eprintln!(
                "chaos random: seed {seed} round {round} fault {i}: {} violation(s) of rule(s) {}; this world is abandoned, the run goes on with a fresh one",
                r.violations().count(),
                r.failed_rules().join(",")
            );
            run.failures.push(format!(
                "round {round} fault {i} (kind {kind} x {x} y {y} db {db} hold {hold:?}): {}",
                r.violations()
                    .map(|v| format!(
                        "({}) {}",
                        v.rule,
                        v.what.chars().take(200).collect::<String>()
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
            break;
        }
        eprintln!(
            "chaos random: seed {seed} round {round} fault {i} ok: failovers {} acked {} lost {} (allowed {})",
            r.failovers, r.acked, r.lost, r.lost_allowed
        );
        if r.failovers > 0 {
            break;
        }
    }
    wl.stop().await;
    drop(w);
    Ok(())
}
