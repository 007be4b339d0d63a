//! The lease guard's reversible fence against a real PostgreSQL primary:
//! a frozen server acknowledges no write and answers no new connection; a
//! thawed one carries on with the same sessions and no restart; a frozen
//! one can still be killed. Narrated with `--- step` lines; measured
//! durations are printed (`--nocapture`).

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use palisade_actions::postgres::{FenceOutcome, FreezeOutcome, PgSite, ProcessState, ThawOutcome};
use palisade_testkit::pg::{PgPair, PgServer};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};

/// Per-step bound of the site's operations.
const TIMEOUT: Duration = Duration::from_secs(10);

/// How long a frozen server must stay silent for the test to believe it
/// is silent.
const SILENCE: Duration = Duration::from_secs(1);

fn step(what: &str) {
    eprintln!("--- {what}");
}

/// The site agent's view of the primary.
fn site(server: &PgServer) -> PgSite {
    PgSite {
        bin_dir: server.bin_dir().to_path_buf(),
        data_dir: server.data_dir().to_path_buf(),
        os_user: server.os_user().map(str::to_owned),
        admin_dsn: server.dsn(),
        admin_password: None,
        timeout: TIMEOUT,
        transfer_timeout: Duration::from_secs(120),
        log_file: Some(server.log_file().to_path_buf()),
    }
}

/// Runs a blocking site call (freeze, thaw) off the runtime's threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context("blocking task panicked")
}

async fn start_time(conn: &mut PgConnection) -> Result<String> {
    sqlx::query_scalar("SELECT pg_postmaster_start_time()::text")
        .fetch_one(conn)
        .await
        .context("reading pg_postmaster_start_time()")
}

/// Waits until `check` holds, polling every 20 ms, or fails saying `why`.
async fn wait_until(why: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !check() {
        if Instant::now() >= deadline {
            bail!("{why}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_primary_acknowledges_nothing_and_thaws_without_a_restart() -> Result<()> {
    let pair = PgPair::start().await?;
    let primary = &pair.primary;
    let db = site(primary);
    primary.exec("CREATE TABLE t (id int PRIMARY KEY)").await?;
    let mut session = primary.connect().await?;
    session.execute("INSERT INTO t VALUES (1)").await?;
    let started_at = start_time(&mut session).await?;
    ensure!(db.process_state() == ProcessState::Running);
    ensure!(!db.is_frozen());

    step("freeze the primary");
    let freezer = db.clone();
    let frozen = blocking(move || freezer.freeze_server()).await??;
    eprintln!("measured: freeze: {frozen:?}");
    let FreezeOutcome::Frozen {
        postmaster, others, ..
    } = &frozen
    else {
        bail!("expected a frozen server, got {frozen:?}");
    };
    ensure!(postmaster.is_some() && !others.is_empty());
    ensure!(db.is_frozen(), "process state: {:?}", db.process_state());
    ensure!(db.has_server_processes(), "a freeze must not end processes");

    step("freezing again is idempotent");
    let freezer = db.clone();
    let again = blocking(move || freezer.freeze_server()).await??;
    ensure!(matches!(again, FreezeOutcome::Frozen { .. }), "{again:?}");

    step("a new connection gets no answer while frozen");
    let attempt = tokio::time::timeout(SILENCE, primary.connect_options().connect()).await;
    ensure!(
        attempt.is_err(),
        "a frozen server answered a new connection: {:?}",
        attempt.map(|r| r.map(|_| "connected"))
    );

    step("a write on the open session is not acknowledged while frozen");
    let mut pending = tokio::spawn(async move {
        let written = session.execute("INSERT INTO t VALUES (2)").await;
        (session, written.map(|_| Instant::now()))
    });
    ensure!(
        tokio::time::timeout(SILENCE, &mut pending).await.is_err(),
        "a frozen server acknowledged a write"
    );
    ensure!(db.is_frozen(), "the server thawed by itself");

    step("thaw: the pending write completes on the same session");
    let thawer = db.clone();
    let thaw_started = Instant::now();
    let thawed = blocking(move || thawer.thaw_server()).await??;
    eprintln!("measured: thaw: {thawed:?}");
    ensure!(matches!(thawed, ThawOutcome::Thawed { .. }), "{thawed:?}");
    let (mut session, written) = tokio::time::timeout(TIMEOUT, pending)
        .await
        .context("the pending write did not complete after the thaw")??;
    let acked = written.context("the pending write failed after the thaw")?;
    eprintln!(
        "measured: pending write acknowledged {:?} after the thaw began",
        acked.saturating_duration_since(thaw_started)
    );
    ensure!(db.process_state() == ProcessState::Running);

    step("no restart, no crash recovery: same postmaster start time, same session");
    ensure!(
        start_time(&mut session).await? == started_at,
        "pg_postmaster_start_time changed: the server restarted"
    );
    session.execute("INSERT INTO t VALUES (3)").await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(&mut session)
        .await?;
    ensure!(count == 3, "expected rows 1, 2, 3; found {count}");
    ensure!(primary.query_i64("SELECT count(*) FROM t").await? == 3);

    step("freeze again, then kill the frozen server");
    let freezer = db.clone();
    blocking(move || freezer.freeze_server()).await??;
    ensure!(db.is_frozen());
    let fenced = db.fence_urgently(1).await?;
    eprintln!("measured: kill of a frozen server: {fenced:?}");
    ensure!(
        matches!(fenced, FenceOutcome::Killed { .. }),
        "expected a kill, got {fenced:?}"
    );
    wait_until("every server process gone", TIMEOUT, || {
        db.process_state() == ProcessState::Stopped
    })
    .await?;
    ensure!(!db.has_server_processes());
    ensure!(
        session.execute("INSERT INTO t VALUES (4)").await.is_err(),
        "the killed server's session still wrote"
    );

    step("freeze and thaw of a stopped server do nothing");
    let freezer = db.clone();
    ensure!(blocking(move || freezer.freeze_server()).await?? == FreezeOutcome::NotRunning);
    let thawer = db.clone();
    ensure!(blocking(move || thawer.thaw_server()).await?? == ThawOutcome::NotRunning);

    step("it starts again after the kill (crash recovery) with all three rows");
    tokio::task::block_in_place(|| primary.start())?;
    ensure!(primary.query_i64("SELECT count(*) FROM t").await? == 3);
    let _ = session.close().await;
    Ok(())
}
