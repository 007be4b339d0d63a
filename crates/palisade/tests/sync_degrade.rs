//! Sync mode degrades on evidence (issue 10, item 9), against real
//! PostgreSQL: a primary with a synchronous standby, a writer committing in
//! a loop, and the standby made to stop acknowledging **without the primary
//! noticing** (its WAL receiver frozen: the replication connection stays
//! open, exactly as with a cut link between the sites). The pieces are the
//! ones the primary's agent runs: the probe (`palisade_probe`), the pure
//! decision (`palisade_core::sync_degrade`) and the action
//! (`PgSite::set_synchronous`, what `manage_sync` applies).
//!
//! The second test runs the same fault through the real daemon: the
//! primary's agent (`manage_sync`) degrades by itself, says so in `status`,
//! and restores sync.
//!
//! Both servers run with PostgreSQL's default 60 s replication timeouts, so
//! only the evidence can explain a degrade within seconds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use palisade_actions::postgres::{DatabaseControl, PgSite};
use palisade_core::observe::{format_lsn, PgObservation};
use palisade_core::sync_degrade::{DegradeReason, SyncDecision, SyncDegrade, SyncSample};
use palisade_probe::postgres::PgProbe;
use palisade_testkit::cluster::{start_cluster, wait_status, FAST, SETTLE, SLOTS};
use palisade_testkit::pg::{PgPair, PgPairOptions, PgServer};

/// `[failover] sync_degrade_after_ms` of this test.
const AFTER_MS: u64 = 2000;
/// `[probe] interval_ms` of this test (the default).
const TICK: Duration = Duration::from_millis(250);
/// Bound of each wait for a condition.
const PATIENCE: Duration = Duration::from_secs(20);
/// The epoch the actions are tagged with (nothing checks it here).
const EPOCH: u64 = 1;

/// The tests of this file measure times on a two-core machine: one at a
/// time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn step(what: &str) {
    eprintln!("--- {what}");
}

/// The primary's agent's view of its server.
fn site(server: &PgServer) -> PgSite {
    PgSite {
        bin_dir: server.bin_dir().to_path_buf(),
        data_dir: server.data_dir().to_path_buf(),
        os_user: server.os_user().map(str::to_owned),
        admin_dsn: server.dsn(),
        admin_password: None,
        timeout: Duration::from_secs(10),
        transfer_timeout: Duration::from_secs(120),
        log_file: Some(server.log_file().to_path_buf()),
    }
}

/// Sets a server parameter with `ALTER SYSTEM` and waits until new
/// sessions see it.
async fn set_param(server: &PgServer, name: &str, value: &str, shown: &str) -> Result<()> {
    server
        .exec(&format!("ALTER SYSTEM SET {name} = '{value}'"))
        .await?;
    server.exec("SELECT pg_reload_conf()").await?;
    wait_until(&format!("{name} = {shown} in force"), || async {
        Ok(server.query_text(&format!("SHOW {name}")).await?.as_deref() == Some(shown))
    })
    .await
}

/// Polls `check` until it holds, or fails naming `why` after [`PATIENCE`].
async fn wait_until<F, Fut>(why: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        let last = match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => "condition false".to_owned(),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("{why}: not within {PATIENCE:?} (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A writer committing one row after another on its own connection.
struct Writer {
    commits: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Writer {
    async fn start(server: &PgServer) -> Result<Writer> {
        let mut conn = server.connect().await?;
        sqlx::Executor::execute(&mut conn, "CREATE TABLE IF NOT EXISTS writes (id bigint)")
            .await
            .context("creating the writer's table")?;
        let (commits, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (count, halt) = (commits.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut id = 0i64;
            while !halt.load(Ordering::SeqCst) {
                id += 1;
                sqlx::Executor::execute(
                    &mut conn,
                    sqlx::query("INSERT INTO writes VALUES ($1)").bind(id),
                )
                .await
                .with_context(|| format!("insert {id}"))?;
                count.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        });
        Ok(Writer {
            commits,
            stop,
            task,
        })
    }

    fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    /// Waits until `n` more commits than now went through.
    async fn wait_commits(&self, n: u64, why: &str) -> Result<()> {
        let target = self.commits() + n;
        wait_until(why, || async { Ok(self.commits() >= target) }).await
    }

    async fn stop(self) -> Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .context("the writer did not stop")?
            .context("writer task")?
    }
}

/// The decision fed by the probe, as the primary's agent feeds it, on a
/// clock of milliseconds since the test began.
struct Decider {
    probe: PgProbe,
    machine: SyncDegrade,
    start: Instant,
    /// Longest time between two samples so far (a tick plus the probe).
    max_gap_ms: u64,
    last_at_ms: Option<u64>,
}

impl Decider {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// One probe tick: probe, feed the decision, return both.
    async fn tick(&mut self) -> Result<(u64, PgObservation, SyncDecision)> {
        tokio::time::sleep(TICK).await;
        let o = self.probe.probe().await;
        let at = self.now_ms();
        let sample = SyncSample::from_observation(at, &o, "standby")
            .with_context(|| format!("the primary's probe failed: {o:?}"))?;
        if let Some(last) = self.last_at_ms {
            self.max_gap_ms = self.max_gap_ms.max(at - last);
        }
        self.last_at_ms = Some(at);
        Ok((at, o, self.machine.observe(sample)))
    }
}

fn standby_flush(o: &PgObservation) -> String {
    o.replicas
        .iter()
        .map(|r| {
            format!(
                "{} {} {} flush {}",
                r.application_name,
                r.state,
                r.sync_state,
                r.flush_lsn.map(format_lsn).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_mode_degrades_when_the_standby_stops_acknowledging_and_returns_when_it_catches_up(
) -> Result<()> {
    let _serial = SERIAL.lock().await;
    let pair = PgPair::start_with(PgPairOptions { synchronous: true }).await?;
    let (primary, standby) = (&pair.primary, &pair.standby);
    step("PostgreSQL's default replication timeouts on both sides (60 s)");
    set_param(primary, "wal_sender_timeout", "60s", "1min").await?;
    set_param(standby, "wal_receiver_timeout", "60s", "1min").await?;
    let db = site(primary);
    db.set_synchronous(EPOCH, Some(standby.name())).await?;
    let mut decider = Decider {
        probe: PgProbe::new(primary.dsn(), Duration::from_secs(1))?,
        machine: SyncDegrade::new(AFTER_MS),
        start: Instant::now(),
        max_gap_ms: 0,
        last_at_ms: None,
    };
    let writer = Writer::start(primary).await?;

    step("healthy: the writer commits, the decision keeps sync");
    writer
        .wait_commits(20, "the writer commits in sync mode")
        .await?;
    let healthy_until = decider.now_ms() + 2 * AFTER_MS;
    let mut saw_waiters = false;
    while decider.now_ms() < healthy_until {
        let (at, o, d) = decider.tick().await?;
        saw_waiters |= o.sync_waiters.is_some_and(|n| n > 0);
        ensure!(
            d == SyncDecision::Sync,
            "degraded a healthy standby at {at} ms: {d:?}; {}",
            standby_flush(&o)
        );
    }
    eprintln!("healthy phase: commits in flight seen at some probe: {saw_waiters}");

    step("freeze the standby's WAL receiver: its connection stays open, nothing is acknowledged");
    let receiver = standby.freeze_wal_receiver().await?;
    let frozen_at = decider.now_ms();
    let mut first_waiting = None;
    let (degraded_at, reason, at_degrade) = loop {
        let (at, o, d) = decider.tick().await?;
        if first_waiting.is_none() && o.sync_waiters.is_some_and(|n| n > 0) {
            first_waiting = Some(at);
            eprintln!(
                "commits wait at {} ms after the freeze: {:?} waiting; {}",
                at - frozen_at,
                o.sync_waiters,
                standby_flush(&o)
            );
        }
        if let SyncDecision::Degrade { reason, since_ms } = d {
            ensure!(since_ms == at, "{d:?} at {at}");
            break (at, reason, o);
        }
        ensure!(
            at - frozen_at < AFTER_MS + 10 * TICK.as_millis() as u64,
            "no degrade {} ms after the freeze; {}",
            at - frozen_at,
            standby_flush(&o)
        );
    };
    let took = degraded_at - frozen_at;
    eprintln!(
        "degrade decided {took} ms after the freeze (sync_degrade_after_ms {AFTER_MS}, longest probe gap {} ms): {reason}",
        decider.max_gap_ms
    );
    ensure!(
        first_waiting.is_some(),
        "commits never waited for the frozen standby"
    );
    ensure!(
        matches!(reason, DegradeReason::AckStalled { waiters, .. } if waiters > 0),
        "{reason:?}"
    );
    // Not sooner than the configured time, and within it plus the tick
    // that first saw the stall and the tick that crossed the threshold.
    ensure!(took >= AFTER_MS, "degraded after only {took} ms");
    ensure!(
        took <= AFTER_MS + 2 * decider.max_gap_ms,
        "degraded after {took} ms, beyond {AFTER_MS} ms + two probe gaps ({} ms)",
        decider.max_gap_ms
    );
    // The primary itself has not noticed: the standby still "streams".
    ensure!(
        at_degrade
            .replicas
            .iter()
            .any(|r| r.application_name == "standby" && r.state == "streaming"),
        "the primary dropped the standby (wal_sender_timeout is 60 s): {}",
        standby_flush(&at_degrade)
    );

    step("apply what the agent applies: clear synchronous_standby_names");
    let unset = db.set_synchronous(EPOCH, None).await?;
    ensure!(unset.changed, "{unset:?}");
    writer
        .wait_commits(20, "the writer's commits complete again, asynchronously")
        .await?;
    for _ in 0..4 {
        let (at, o, d) = decider.tick().await?;
        ensure!(
            matches!(d, SyncDecision::Degrade { .. }),
            "back to sync at {at} ms with the standby still frozen: {}",
            standby_flush(&o)
        );
    }

    step("thaw the WAL receiver: the standby acknowledges again and catches up");
    standby.thaw_wal_receiver(receiver)?;
    let thawed_at = decider.now_ms();
    let returned_at = loop {
        let (at, o, d) = decider.tick().await?;
        if d == SyncDecision::Sync {
            eprintln!(
                "back to sync {} ms after the thaw; {}",
                at - thawed_at,
                standby_flush(&o)
            );
            break at;
        }
        ensure!(
            at - thawed_at < PATIENCE.as_millis() as u64,
            "still degraded {} ms after the thaw; {}",
            at - thawed_at,
            standby_flush(&o)
        );
    };
    // The rule: healthy for sync_degrade_after_ms without a break first.
    ensure!(
        returned_at - thawed_at >= AFTER_MS,
        "returned {} ms after the thaw, before the hold of {AFTER_MS} ms",
        returned_at - thawed_at
    );

    step("apply it: the standby is the sync standby again, and commits go on");
    let set = db.set_synchronous(EPOCH, Some(standby.name())).await?;
    ensure!(set.changed, "{set:?}");
    wait_until("the standby is the sync standby again", || async {
        Ok(primary
            .query_text(
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'",
            )
            .await?
            .as_deref()
            == Some("sync"))
    })
    .await?;
    writer
        .wait_commits(20, "the writer commits in sync mode again")
        .await?;
    let (_, o, d) = decider.tick().await?;
    ensure!(d == SyncDecision::Sync, "{d:?}; {}", standby_flush(&o));
    writer.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_agent_degrades_a_silent_standby_on_evidence_and_restores_sync() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let _slot = SLOTS.acquire().await?;
    let pair = PgPair::start_with(PgPairOptions { synchronous: true }).await?;
    let (primary, standby) = (&pair.primary, &pair.standby);
    set_param(primary, "wal_sender_timeout", "60s", "1min").await?;
    set_param(standby, "wal_receiver_timeout", "60s", "1min").await?;
    let c = start_cluster(
        &pair,
        &format!("{FAST}\n[failover]\nreplication = \"sync\"\nsync_degrade_after_ms = 1000\n"),
    )
    .await;
    wait_status(
        &c,
        "the primary's agent keeps sync mode in force",
        SETTLE,
        |s| (s.replication_mode == "sync").then_some(()),
    )
    .await;
    let writer = Writer::start(primary).await?;
    writer
        .wait_commits(20, "the writer commits in sync mode")
        .await?;

    step("freeze the standby's WAL receiver");
    let receiver = standby.freeze_wal_receiver().await?;
    let frozen = Instant::now();
    let mode = wait_status(&c, "the agent degrades on evidence", SETTLE, |s| {
        s.replication_mode
            .starts_with("async (degraded: standby stopped acknowledging")
            .then(|| s.replication_mode.clone())
    })
    .await;
    let took = frozen.elapsed();
    eprintln!("degraded {took:?} after the freeze: {mode}");
    writer
        .wait_commits(20, "the writer's commits complete again, asynchronously")
        .await?;
    // 1 s of stall, a 200 ms probe, a 375 ms agent tick: seconds, where
    // the primary itself would have waited 60 s.
    ensure!(took < Duration::from_secs(10), "took {took:?}");
    ensure!(
        primary
            .query_text("SELECT state FROM pg_stat_replication WHERE application_name = 'standby'")
            .await?
            .as_deref()
            == Some("streaming"),
        "the primary noticed the frozen standby by itself: the degrade proves nothing"
    );

    step("thaw it: the agent restores sync once the standby has caught up");
    standby.thaw_wal_receiver(receiver)?;
    wait_status(&c, "sync in force again", SETTLE, |s| {
        (s.replication_mode == "sync").then_some(())
    })
    .await;
    wait_until("the standby is the sync standby again", || async {
        Ok(primary
            .query_text(
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'",
            )
            .await?
            .as_deref()
            == Some("sync"))
    })
    .await?;
    writer
        .wait_commits(20, "the writer commits in sync mode again")
        .await?;
    writer.stop().await
}
