//! Benchmark: failover and switchover of the HA/DR guide's MySQL
//! master-master pair on MariaDB 10.11 (`[[database]] engine = "mariadb"`),
//! with the daemon's default probe, lease and failover settings, over real
//! witness processes: `failover.rs` and `switchover.rs` for MariaDB. Site
//! a's master is the writer (`read_only` OFF, "primary"), site b's the
//! other master (`read_only` ON, replicating both ways, "standby").
//!
//! Scenarios:
//! * `m-a1`: the writer's `mariadbd` SIGKILLed, `on_primary_crash =
//!   "failover"`: b is made the writer; the writer retries against b.
//! * `m-a2`: the same kill with the default `on_primary_crash = "restart"`:
//!   site a's agent starts `mariadbd` again, read-only, then makes it
//!   writable (no failover); the writer retries against a.
//! * `m-b`: site a lost: witness a and a's `mariadbd` SIGKILLed together,
//!   with the Raft leader elsewhere (moved off site a first); the writer
//!   retries against b.
//! * `m-s`: switchover write pause: one pair and one cluster; a writer
//!   commits as fast as it can through whichever master takes writes (on
//!   an error it tries the other at once); `Control.Switchover` (the RPC
//!   behind `palisadectl switchover`) back and forth, a → b → a …, each
//!   once the other master replicates from the writer again. The total is
//!   the longest gap between two commits, from the last commit before the
//!   request to the 20th on the new writer; every acknowledged write is
//!   checked to be on the final writer.
//!
//! Each failover trial (m-a1, m-a2, m-b) builds a fresh pair and a fresh
//! three-witness cluster, settles it (as `failover.rs` does), kills, and
//! times from the kill to the first committed INSERT of a writer that
//! connects as the application user (`app`, which `read_only` stops) and
//! retries every 10 ms; it keeps its session while the server refuses the
//! write as read-only (error 1290) and reconnects after any other error.
//! Failovers are broken down from the failover record like `failover.rs`
//! (detect, fence, promote, rest); the restart in place from site a's
//! witness log (notice, start: `mariadbd` started read-only and made
//! writable, rest).
//!
//!     cargo bench -p palisade --bench mariadb_failover                    # 10 trials each
//!     PALISADE_BENCH_TRIALS=20 cargo bench -p palisade --bench mariadb_failover
//!     PALISADE_BENCH_SCENARIOS=m-a1,m-s cargo bench -p palisade --bench mariadb_failover
//!
//! Without `--bench` (`cargo test --benches`) it runs one trial of each
//! scenario as a smoke test. Needs MariaDB (`apt-get install -y
//! mariadb-server`); as root the servers run as `mysql`. Results go in
//! docs/benchmarks.md.

#[path = "failover_common/mod.rs"]
mod failover_common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use failover_common::{
    breakdown, failover_parts, phase, restart_parts, retry_until_committed, steer_leader,
    summarize, wait_settled, wait_status, Control, Target, Trial, ATTEMPT_TIMEOUT, SETTLE, SITE_A,
};
use nix::sys::signal::Signal;
use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::{OperationReply, StatusReply, SwitchoverRequest};
use palisade_testkit::cluster::{maria_db_config, wait_ready, Cluster};
use palisade_testkit::mariadb::{MariaPair, MariaServer, MariaWriter, MARIA_WRITES_TABLE};
use palisade_testkit::{bench_trials, step};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError};
use sqlx::Connection;

/// The failover writer's table, created on a as the administrator (it
/// replicates to b).
const CREATE_TABLE: &str = "CREATE TABLE app.bench_writes (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
     at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE = InnoDB";
const INSERT: &str = "INSERT INTO bench_writes () VALUES ()";
/// `ER_OPTION_PREVENTS_STATEMENT`: the server runs with `read_only`.
const ER_OPTION_PREVENTS_STATEMENT: u16 = 1290;
/// How many commits the new writer must acknowledge after a switchover
/// before its gap is measured (and the next switchover asked).
const ACKS_AFTER: usize = 20;
/// How long after a refused switchover it is asked again, and how often.
const REASK: Duration = Duration::from_millis(250);
const REASKS: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    CrashFailover,
    CrashRestart,
    SiteLoss,
    Switchover,
}

impl Scenario {
    const ALL: [Scenario; 4] = [
        Scenario::CrashFailover,
        Scenario::CrashRestart,
        Scenario::SiteLoss,
        Scenario::Switchover,
    ];

    fn id(self) -> &'static str {
        match self {
            Scenario::CrashFailover => "m-a1",
            Scenario::CrashRestart => "m-a2",
            Scenario::SiteLoss => "m-b",
            Scenario::Switchover => "m-s",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Scenario::CrashFailover => {
                "writer crash, on_primary_crash = \"failover\": SIGKILL a's mariadbd -> first write on b made writer"
            }
            Scenario::CrashRestart => {
                "writer crash, on_primary_crash = \"restart\" (default): SIGKILL a's mariadbd -> first write on a restarted in place"
            }
            Scenario::SiteLoss => {
                "site a lost, leader elsewhere: SIGKILL witness a + a's mariadbd -> first write on b made writer"
            }
            Scenario::Switchover => {
                "switchover under a writer (Control.Switchover, back and forth): longest gap between two commits"
            }
        }
    }

    /// TOML appended to the witnesses' configs: only what the scenario
    /// needs; every timing stays at its default.
    fn config(self) -> &'static str {
        match self {
            Scenario::CrashFailover => "[failover]\non_primary_crash = \"failover\"\n",
            _ => "",
        }
    }

    /// The PostgreSQL scenarios' targets (issues 3 and 6), on the p50.
    fn target(self) -> Target {
        match self {
            Scenario::CrashFailover | Scenario::CrashRestart => Target {
                ms: 2000,
                strict: false,
            },
            Scenario::SiteLoss => Target {
                ms: 3000,
                strict: false,
            },
            Scenario::Switchover => Target {
                ms: 1000,
                strict: true,
            },
        }
    }

    /// The parts a trial's total is split into, in order.
    fn part_names(self) -> &'static [&'static str] {
        match self {
            Scenario::CrashRestart => &["notice", "start", "rest"],
            // The switchover's own steps (their durations, not a split of
            // the gap): fenced (read_only ON and sessions killed on the old
            // writer, its final position read) and promoted (caught up,
            // read_only OFF, the epoch written).
            Scenario::Switchover => &["fenced", "promoted"],
            _ => &["detect", "fence", "promote", "rest"],
        }
    }
}

/// The server's error number, when the server refused the statement.
fn error_number(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()?
        .try_downcast_ref::<MySqlDatabaseError>()
        .map(|d| d.number())
}

/// One INSERT attempt as the application user, connecting first when there
/// is no session. A session refused only because its server is read-only
/// (the other master not made writer yet, or a restarted one still
/// read-only) is kept, as a pooled client would; any other failure drops
/// it.
async fn try_insert(
    conn: &mut Option<MySqlConnection>,
    opts: &MySqlConnectOptions,
) -> Result<(), String> {
    if conn.is_none() {
        let c = tokio::time::timeout(ATTEMPT_TIMEOUT, MySqlConnection::connect_with(opts))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        *conn = Some(c);
    }
    let session = conn.as_mut().expect("connected just above");
    match tokio::time::timeout(ATTEMPT_TIMEOUT, sqlx::query(INSERT).execute(session)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if error_number(&e) == Some(ER_OPTION_PREVENTS_STATEMENT) => {
            Err(format!("insert: {e}"))
        }
        Ok(Err(e)) => {
            *conn = None;
            Err(format!("insert: {e}"))
        }
        Err(_) => {
            *conn = None;
            Err("insert timed out".into())
        }
    }
}

/// Retries the INSERT until one commits; returns when it committed and
/// after how many attempts.
async fn first_write(
    opts: MySqlConnectOptions,
    deadline: Instant,
) -> Result<(Instant, u32), String> {
    let opts = &opts;
    let attempt = move |mut conn| async move {
        let outcome = try_insert(&mut conn, opts).await;
        (conn, outcome)
    };
    retry_until_committed(None, attempt, deadline).await
}

/// The guide's pair, or a panic naming why it did not start.
async fn start_pair() -> MariaPair {
    MariaPair::start()
        .await
        .unwrap_or_else(|e| panic!("MariaDB pair: {e:#}"))
}

/// Three witnesses over `pair`, started, with the writer's agent serving
/// under its lease (before that a crash is a dead server found at start,
/// restarted whatever the policy says).
async fn start_cluster(pair: &MariaPair, config: &str) -> Cluster {
    let mut c = Cluster::with_config(&maria_db_config(pair, config));
    for n in &mut c.nodes {
        n.start();
    }
    wait_ready(&c).await;
    c
}

/// SIGKILLs `server`'s `mariadbd` (the test kit reaps it and waits until
/// its port refuses connections: blocking).
fn kill9(server: &MariaServer) {
    tokio::task::block_in_place(|| server.kill9());
}

async fn run_trial(sc: Scenario, trial: usize) -> Trial {
    let id = sc.id();
    step(&format!(
        "{id} trial {trial}: start a MariaDB master-master pair"
    ));
    let pair = start_pair().await;
    pair.a
        .exec(CREATE_TABLE)
        .await
        .expect("create the writer's table");
    pair.wait_in_sync().await.expect("b has the writer's table");
    step(&format!(
        "{id} trial {trial}: start three witnesses (default timings)"
    ));
    let mut c = start_cluster(&pair, sc.config()).await;
    let ctl = Control::new(&c);
    let leader = match sc {
        Scenario::SiteLoss => steer_leader(&mut c, &ctl, "off site a", |l| l != SITE_A).await,
        _ => wait_settled(&c, &ctl).await,
    };
    let (target, what) = match sc {
        Scenario::CrashRestart => (&pair.a, "a's mariadbd"),
        Scenario::CrashFailover => (&pair.b, "a's mariadbd"),
        _ => (&pair.b, "witness a and a's mariadbd"),
    };
    let phase = phase(trial);
    step(&format!(
        "{id} trial {trial}: settled under leader {leader}; SIGKILL {what} in {} ms (phase offset)",
        phase.as_millis()
    ));
    tokio::time::sleep(phase).await; // deliberate: sets the kill's phase
    let killed_wall = palisade_raft::unix_ms_now();
    let killed_at = Instant::now();
    if sc == Scenario::SiteLoss {
        c.node(SITE_A).signal(Signal::SIGKILL);
    }
    kill9(&pair.a);
    let writer = tokio::spawn(first_write(target.app_options(), killed_at + SETTLE));
    if sc == Scenario::SiteLoss {
        c.node(SITE_A).kill9(); // reaps it
    }
    let (wrote_at, attempts) = match writer.await.expect("writer task") {
        Ok(w) => w,
        Err(e) => {
            c.dump_logs();
            panic!("{id} trial {trial}: {e}");
        }
    };
    let total = (wrote_at - killed_at).as_millis() as i64;
    let wrote_wall = killed_wall + total;
    step(&format!(
        "{id} trial {trial}: first write committed after {total} ms ({attempts} attempts)"
    ));

    let what = format!("{id} trial {trial}");
    let (parts, detail) = if sc == Scenario::CrashRestart {
        let s = wait_status(&c, &ctl, "a status answer", SETTLE, |s| Some(s.clone())).await;
        assert!(
            s.epoch == 0 && s.primary_site == "a" && s.last_failover.is_none(),
            "{what}: restarted in place, not failed over (epoch {}, primary {})",
            s.epoch,
            s.primary_site
        );
        let (parts, detail) = restart_parts(&c, &what, killed_wall, wrote_wall).await;
        (Some(parts), format!("agent: {detail}"))
    } else {
        failover_parts(&c, &ctl, &what, killed_wall, wrote_wall).await
    };
    let breakdown = breakdown(sc.part_names(), parts.as_ref());
    println!(
        "{id:>8} trial {trial:>2}: total {total:>5} ms = {breakdown} (leader {leader}, {attempts} write attempts)"
    );
    if !detail.is_empty() {
        println!("{:>20}{detail}", "");
    }
    // Witnesses first: no agent reacts to the teardown.
    drop(c);
    drop(pair);
    Trial { total, parts }
}

/// The status once `to` is the other master, replicating from the writer,
/// and no operation is under way: ready for a switchover to it.
async fn ready_for(c: &Cluster, ctl: &Control, to: &str) -> StatusReply {
    wait_status(
        c,
        ctl,
        &format!("{to} is the other master, replicating from the writer"),
        SETTLE,
        |s| {
            (s.standby_site == to
                && !s.standby_needs_rejoin
                && s.failover_in_progress.is_none()
                && s.nodes.iter().filter(|n| !n.databases.is_empty()).all(|n| {
                    n.databases
                        .iter()
                        .any(|d| d.site == to && d.in_recovery == Some(true) && d.streaming)
                }))
            .then(|| s.clone())
        },
    )
    .await
}

/// Waits until `site` has acknowledged `n` writes; panics after
/// [`SETTLE`] (the test kit's bound).
async fn wait_acks(c: &Cluster, writer: &MariaWriter, site: &str, n: usize) {
    if let Err(e) = writer.wait_acks_at(site, n).await {
        c.dump_logs();
        panic!("{e:#}");
    }
}

/// Asks `leader` for a switchover to `to`; returns when it accepted and
/// its reply. A refusal because the leader's own view is not yet ready
/// (`FailedPrecondition`: the status polled above comes from any witness)
/// is asked again after [`REASK`], up to [`REASKS`] times, and said.
async fn ask_switchover(
    c: &Cluster,
    ctl: &Control,
    leader: u64,
    to: &str,
    n: usize,
) -> (Instant, OperationReply) {
    let mut refusals = Vec::new();
    loop {
        let asked = Instant::now();
        let answer = ControlClient::new(ctl.channel(leader))
            .switchover(SwitchoverRequest {
                to_site: to.into(),
                who: "bench".into(),
                // No request id: each accepted switchover is asked once.
                ..Default::default()
            })
            .await;
        match answer {
            Ok(reply) => {
                if !refusals.is_empty() {
                    println!(
                        "{:>20}switchover {n} accepted after {} refusal(s): {}",
                        "",
                        refusals.len(),
                        refusals.join("; ")
                    );
                }
                return (asked, reply.into_inner());
            }
            Err(e) if e.code() == tonic::Code::FailedPrecondition && refusals.len() < REASKS => {
                refusals.push(e.message().to_owned());
                tokio::time::sleep(REASK).await; // deliberate: the leader's next probe round
            }
            Err(e) => {
                c.dump_logs();
                panic!("switchover {n} to {to}: not accepted: {e} (refused before: {refusals:?})");
            }
        }
    }
}

/// `m-s`: `trials` switchovers back and forth on one pair and one cluster.
async fn run_switchovers(sc: Scenario, trials: usize) -> Vec<Trial> {
    let id = sc.id();
    step(&format!(
        "{id}: start a MariaDB pair, three witnesses (default timings) and a writer"
    ));
    let pair = start_pair().await;
    let c = start_cluster(&pair, sc.config()).await;
    let ctl = Control::new(&c);
    // The guide leaves both masters writable and b's agent makes b
    // read-only once the cluster runs: until the leader has seen that, it
    // refuses a switchover to b ("not a standby").
    wait_settled(&c, &ctl).await;
    let writer = MariaWriter::start(&pair).await.expect("start the writer");
    wait_acks(&c, &writer, "a", 50).await;

    let mut results = Vec::new();
    let mut from = "a";
    for n in 1..=trials {
        let to = if from == "a" { "b" } else { "a" };
        let s = ready_for(&c, &ctl, to).await;
        // Steady writes on the writer before the switchover.
        let before = writer.acks().iter().filter(|a| a.site == from).count();
        wait_acks(&c, &writer, from, before + 50).await;
        let leader = s.leader_id.expect("a leader");
        step(&format!("{id} switchover {n}/{trials}: {from} → {to}"));
        let (asked, reply) = ask_switchover(&c, &ctl, leader, to, n).await;
        let f = wait_status(&c, &ctl, "the switchover finished", SETTLE, |s| {
            s.last_failover
                .clone()
                .filter(|f| f.epoch == reply.epoch && !f.outcome.is_empty())
        })
        .await;
        assert_eq!(f.outcome, "completed", "{id} switchover {n}: {f:?}");
        // `wait_acks` counts every write `to` ever acknowledged (it was the
        // writer before): at least ACKS_AFTER more from here.
        let before = writer.acks().iter().filter(|a| a.site == to).count();
        wait_acks(&c, &writer, to, before + ACKS_AFTER).await;
        // The commits from the last one before the request to the
        // ACKS_AFTER-th on the new writer, in order.
        let acks = writer.acks();
        let last_before = acks
            .iter()
            .filter(|a| a.at <= asked)
            .map(|a| a.at)
            .max()
            .expect("writes before the switchover");
        let end = acks
            .iter()
            .filter(|a| a.site == to && a.at > asked)
            .map(|a| a.at)
            .nth(ACKS_AFTER - 1)
            .expect("writes on the new writer");
        let mut times: Vec<Instant> = acks
            .iter()
            .map(|a| a.at)
            .filter(|t| *t >= last_before && *t <= end)
            .collect();
        times.sort_unstable();
        let gap = times
            .windows(2)
            .map(|w| (w[1] - w[0]).as_millis() as i64)
            .max()
            .unwrap_or(0);
        let pause = palisade_testkit::writer::write_pause(&acks, from, to, asked).as_millis();
        let step_ms = |name: &str| {
            f.steps
                .iter()
                .find(|s| s.step == name)
                .map(|s| s.done_at_ms - s.started_at_ms)
        };
        let parts = step_ms("fenced")
            .zip(step_ms("promoted"))
            .map(|(f, p)| vec![f, p]);
        let total_ms = f.finished_at_ms.unwrap_or(f.started_at_ms) - f.started_at_ms;
        println!(
            "{id:>8} trial {n:>2}: {from}→{to} longest commit gap {gap:>5} ms (last {from} → first {to} {pause} ms); switchover {total_ms} ms: {} (leader {leader})",
            breakdown(sc.part_names(), parts.as_ref())
        );
        results.push(Trial { total: gap, parts });
        from = to;
    }
    let acks = writer.stop().await;
    let final_writer = if from == "a" { &pair.a } else { &pair.b };
    let have: BTreeSet<i64> = final_writer
        .ids(MARIA_WRITES_TABLE)
        .await
        .unwrap_or_else(|e| panic!("reading the writes on {from}: {e:#}"));
    let lost = acks.iter().filter(|a| !have.contains(&a.id)).count();
    println!(
        "{id:>8}: {} writes acknowledged, {lost} not on the final writer {from}",
        acks.len()
    );
    assert_eq!(lost, 0, "acknowledged writes lost in a switchover");
    drop(c);
    drop(pair);
    results
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // useful: run one trial of each scenario then, as a smoke test.
    let trials = bench_trials(10, 1);
    let scenarios: Vec<Scenario> = match std::env::var("PALISADE_BENCH_SCENARIOS") {
        Ok(list) => {
            let wanted: Vec<&str> = list.split(',').map(str::trim).collect();
            for w in &wanted {
                assert!(
                    Scenario::ALL.iter().any(|s| s.id() == *w),
                    "PALISADE_BENCH_SCENARIOS: unknown scenario {w:?} (known: m-a1, m-a2, m-b, m-s)"
                );
            }
            Scenario::ALL
                .into_iter()
                .filter(|s| wanted.contains(&s.id()))
                .collect()
        }
        Err(_) => Scenario::ALL.to_vec(),
    };
    println!(
        "MariaDB master-master failover: {trials} trials per scenario, default probe/lease/failover settings, fresh pair and witnesses per failover trial"
    );
    let mut results = Vec::new();
    for sc in scenarios {
        println!("{:>8}: {}", sc.id(), sc.title());
        let started = Instant::now();
        let done = if sc == Scenario::Switchover {
            run_switchovers(sc, trials).await
        } else {
            let mut done = Vec::new();
            for trial in 1..=trials {
                done.push(run_trial(sc, trial).await);
            }
            done
        };
        println!(
            "{:>8}: {trials} trials in {} s",
            sc.id(),
            started.elapsed().as_secs()
        );
        results.push((sc, done));
    }
    println!("\nsummary (ms; p95 of fewer than 20 trials is the max):");
    for (sc, done) in &results {
        summarize(sc.id(), sc.title(), sc.part_names(), done, 95, sc.target());
    }
}
