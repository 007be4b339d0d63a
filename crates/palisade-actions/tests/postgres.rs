//! `palisade_actions::postgres` against real PostgreSQL pairs (one pair per
//! test, so tests run in parallel). Each test narrates its steps with
//! `--- step` lines and prints the measured durations (`--nocapture`).

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use palisade_actions::postgres::{
    DatabaseControl, DbError, FenceOutcome, PgSite, RejoinMethod, ShutdownMode, StartOutcome,
};
use palisade_testkit::pg::{PgPair, PgServer};
use sqlx::{Connection, Executor};

/// Per-step bound used by most tests.
const TIMEOUT: Duration = Duration::from_secs(10);

fn step(what: &str) {
    eprintln!("--- {what}");
}

/// The site agent's view of one server of the pair.
fn site(server: &PgServer, timeout: Duration) -> PgSite {
    PgSite {
        bin_dir: server.bin_dir().to_path_buf(),
        data_dir: server.data_dir().to_path_buf(),
        os_user: server.os_user().map(str::to_owned),
        admin_dsn: server.dsn(),
        admin_password: None,
        timeout,
        transfer_timeout: Duration::from_secs(120),
        log_file: Some(server.log_file().to_path_buf()),
    }
}

/// Waits until `check` holds, polling, or fails saying `why`.
async fn wait_until<F, Fut>(why: &str, limit: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let last = match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => "condition false".to_owned(),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("{why}: not within {limit:?} (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn port_refuses(server: &PgServer) -> bool {
    matches!(
        tokio::net::TcpStream::connect(server.addr()).await,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[tokio::test]
async fn read_only_mode_is_not_a_fence() -> Result<()> {
    let pair = PgPair::start().await?;
    let primary = &pair.primary;
    primary.exec("CREATE TABLE t (id int PRIMARY KEY)").await?;

    step("turn on default_transaction_read_only with ALTER SYSTEM + reload");
    primary
        .exec("ALTER SYSTEM SET default_transaction_read_only = on")
        .await?;
    primary.exec("SELECT pg_reload_conf()").await?;
    wait_until("new sessions default to read-only", TIMEOUT, || async {
        Ok(primary
            .query_text("SHOW default_transaction_read_only")
            .await?
            == Some("on".into()))
    })
    .await?;

    step("a plain INSERT is refused: the setting is active");
    let mut conn = primary.connect().await?;
    let refused = conn.execute("INSERT INTO t VALUES (1)").await;
    let message = format!("{:?}", refused.expect_err("read-only default must refuse"));
    ensure!(message.contains("read-only"), "unexpected error: {message}");

    step("the same session turns it off for itself and writes");
    conn.execute("SET default_transaction_read_only = off")
        .await?;
    conn.execute("INSERT INTO t VALUES (2)").await?;

    step("another session overrides it per transaction and writes");
    let mut other = primary.connect().await?;
    other
        .execute("BEGIN; SET TRANSACTION READ WRITE; INSERT INTO t VALUES (3); COMMIT")
        .await?;
    ensure!(primary.query_i64("SELECT count(*) FROM t").await? == 2);
    conn.close().await?;
    other.close().await?;
    Ok(())
}

#[tokio::test]
async fn fencing_a_live_primary_stops_it_and_is_idempotent() -> Result<()> {
    let pair = PgPair::start().await?;
    let primary = &pair.primary;
    let db = site(primary, TIMEOUT);
    primary.exec("CREATE TABLE t (id int PRIMARY KEY)").await?;
    let mut client = primary.connect().await?;
    client.execute("INSERT INTO t VALUES (1)").await?;
    ensure!(db.is_running().await?);
    ensure!(!db.is_fenced().await?);

    step("fence the live primary");
    let fenced = db.fence(1).await?;
    eprintln!("measured: fence of a live primary: {fenced:?}");
    ensure!(
        matches!(
            fenced,
            FenceOutcome::ShutDown {
                mode: ShutdownMode::Fast,
                ..
            }
        ),
        "expected a fast shutdown, got {fenced:?}"
    );

    step("new connections are refused, the open one cannot write");
    ensure!(
        port_refuses(primary).await,
        "port still accepts connections"
    );
    ensure!(primary.connect().await.is_err());
    ensure!(
        client.execute("INSERT INTO t VALUES (2)").await.is_err(),
        "an open connection still wrote after the fence"
    );
    ensure!(!primary.is_running());
    ensure!(db.is_fenced().await?);
    ensure!(!db.is_running().await?);

    step("fence again: already stopped");
    let again = db.fence(1).await?;
    ensure!(
        matches!(again, FenceOutcome::AlreadyStopped { .. }),
        "{again:?}"
    );

    step("restart in place (crash-restart policy), twice");
    let started = db.start(1).await?;
    eprintln!("measured: start of the fenced primary: {started:?}");
    ensure!(matches!(started, StartOutcome::Started { .. }));
    ensure!(db.start(1).await? == StartOutcome::AlreadyRunning);
    ensure!(primary.query_i64("SELECT count(*) FROM t").await? == 1);
    Ok(())
}

#[tokio::test]
async fn fencing_a_hung_primary_kills_it_within_bound() -> Result<()> {
    let pair = PgPair::start().await?;
    let primary = &pair.primary;
    let timeout = Duration::from_secs(3);
    let db = site(primary, timeout);
    primary.exec("CREATE TABLE t (id int PRIMARY KEY)").await?;
    let mut client = primary.connect().await?;

    step("freeze the postmaster: its backends still serve open sessions");
    primary.sigstop();
    client.execute("INSERT INTO t VALUES (1)").await?;

    step("fence the hung primary");
    let started = Instant::now();
    let fenced = db.fence(2).await?;
    let took = started.elapsed();
    eprintln!("measured: fence of a SIGSTOPped primary (timeout {timeout:?}): {fenced:?}");
    ensure!(
        matches!(&fenced, FenceOutcome::Killed { pids, .. } if pids.len() > 1),
        "expected the postmaster and its children killed, got {fenced:?}"
    );
    ensure!(took < timeout * 3, "fencing took {took:?}");

    step("the server is dead, its port refuses, the open session is gone");
    ensure!(!primary.is_running());
    ensure!(primary.postmaster_pid().is_none());
    ensure!(port_refuses(primary).await);
    ensure!(client.execute("INSERT INTO t VALUES (2)").await.is_err());
    ensure!(db.is_fenced().await?);
    ensure!(matches!(
        db.fence(2).await?,
        FenceOutcome::AlreadyStopped { .. }
    ));

    step("fail over and rejoin the killed primary (pg_rewind recovers it first)");
    let standby = site(&pair.standby, TIMEOUT);
    standby.promote(2).await?;
    pair.standby.exec("INSERT INTO t VALUES (3)").await?;
    let rejoined = site(primary, TIMEOUT)
        .rejoin_as_standby(2, &pair.standby.replication_conninfo())
        .await?;
    eprintln!("measured: rejoin of the killed primary: {rejoined:?}");
    ensure!(
        matches!(
            rejoined.method,
            RejoinMethod::Rewind | RejoinMethod::NoRewindNeeded
        ),
        "{:?}",
        rejoined.method
    );
    wait_until("row 3 replayed on the rejoined server", TIMEOUT, || async {
        Ok(primary
            .query_i64("SELECT count(*) FROM t WHERE id = 3")
            .await?
            == 1)
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn fencing_after_a_crash_kills_backends_that_outlived_the_postmaster() -> Result<()> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    let pair = PgPair::start().await?;
    let primary = &pair.primary;
    let db = site(primary, TIMEOUT);
    primary.exec("CREATE TABLE t (id int PRIMARY KEY)").await?;
    let mut client = primary.connect().await?;
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut client)
        .await?;

    step("freeze one backend, then crash the postmaster under it");
    kill(Pid::from_raw(backend), Signal::SIGSTOP)?;
    let postmaster = primary
        .postmaster_pid()
        .context("the primary has a postmaster")?;
    kill(Pid::from_raw(postmaster), Signal::SIGKILL)?;
    wait_until("the postmaster is gone", TIMEOUT, || async {
        Ok(!primary.is_running())
    })
    .await?;
    ensure!(
        std::path::Path::new(&format!("/proc/{backend}")).exists(),
        "the frozen backend outlived its postmaster"
    );

    step("fence: the stray backend is killed, nothing runs in the data directory");
    let fenced = db.fence(9).await?;
    eprintln!("measured: fence after a postmaster crash: {fenced:?}");
    ensure!(
        matches!(&fenced, FenceOutcome::Killed { pids, .. } if pids.contains(&backend)),
        "{fenced:?}"
    );
    ensure!(db.is_fenced().await?);

    step("restart in place works (no backend holds the shared memory)");
    ensure!(matches!(db.start(9).await?, StartOutcome::Started { .. }));
    ensure!(primary.query_i64("SELECT count(*) FROM t").await? == 0);
    Ok(())
}

#[tokio::test]
async fn promote_after_fencing_records_the_epoch_and_is_idempotent() -> Result<()> {
    let pair = PgPair::start().await?;
    pair.primary
        .exec("CREATE TABLE t (id int PRIMARY KEY)")
        .await?;
    pair.wait_replayed(TIMEOUT).await?;
    let old = site(&pair.primary, TIMEOUT);
    let new = site(&pair.standby, TIMEOUT);

    step("fence the primary, then promote the standby with epoch 7");
    old.fence(7).await?;
    let promoted = new.promote(7).await?;
    eprintln!("measured: promote: {promoted:?}");
    ensure!(!promoted.already_primary);
    ensure!(promoted.timeline == 2, "timeline {}", promoted.timeline);
    ensure!(promoted.lsn > 0);
    ensure!(!pair.standby.in_recovery().await?);
    ensure!(
        pair.standby
            .query_i64("SELECT count(*) FROM palisade.epoch WHERE epoch = 7")
            .await?
            == 1
    );

    step("clients can write");
    pair.standby.exec("INSERT INTO t VALUES (1)").await?;

    step("promote again: already primary, one epoch row");
    let again = new.promote(7).await?;
    ensure!(again.already_primary);
    ensure!(again.timeline == 2);
    ensure!(
        pair.standby
            .query_i64("SELECT count(*) FROM palisade.epoch")
            .await?
            == 1
    );

    step("a promotion carrying an older epoch is refused, and says so for good");
    match new.promote(6).await {
        Err(e @ DbError::StaleEpoch { .. }) => ensure!(!e.is_retryable()),
        other => bail!("expected StaleEpoch, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn rejoin_rewinds_the_diverged_old_primary() -> Result<()> {
    let pair = PgPair::start().await?;
    let (p, s) = (&pair.primary, &pair.standby);
    p.exec("CREATE TABLE t (id int PRIMARY KEY, note text)")
        .await?;
    p.exec("INSERT INTO t VALUES (1, 'replicated')").await?;
    pair.wait_replayed(TIMEOUT).await?;

    step("cut the standby off, then write on the primary only (diverge)");
    s.exec("ALTER SYSTEM SET primary_conninfo = ''").await?;
    s.exec("SELECT pg_reload_conf()").await?;
    wait_until("standby's WAL receiver stopped", TIMEOUT, || async {
        Ok(s.query_i64("SELECT count(*) FROM pg_stat_wal_receiver")
            .await?
            == 0)
    })
    .await?;
    p.exec("INSERT INTO t VALUES (2, 'lost with the old primary')")
        .await?;

    step("fail over: fence the primary, promote the standby, write there");
    let old = site(p, TIMEOUT);
    let new = site(s, TIMEOUT);
    old.fence(3).await?;
    new.promote(3).await?;
    s.exec("INSERT INTO t VALUES (3, 'written on the new primary')")
        .await?;

    step("rejoin the old primary as a standby of the new one");
    let conninfo = s.replication_conninfo();
    let rejoined = old.rejoin_as_standby(3, &conninfo).await?;
    eprintln!("measured: rejoin by pg_rewind: {rejoined:?}");
    ensure!(
        rejoined.method == RejoinMethod::Rewind,
        "{:?}",
        rejoined.method
    );
    ensure!(p.in_recovery().await?);
    ensure!(
        p.port() != s.port(),
        "the old primary keeps its own configuration"
    );

    let auto = std::fs::read_to_string(p.data_dir().join("postgresql.auto.conf"))?;
    ensure!(
        auto.lines()
            .filter(|l| l.starts_with("primary_conninfo"))
            .count()
            == 1,
        "postgresql.auto.conf:\n{auto}"
    );
    ensure!(p.data_dir().join("standby.signal").exists());

    step("rows written on the new primary appear; the diverged one is gone");
    s.exec("INSERT INTO t VALUES (4, 'after the rejoin')")
        .await?;
    wait_until("row 4 replayed on the rejoined server", TIMEOUT, || async {
        Ok(p.query_i64("SELECT count(*) FROM t WHERE id = 4").await? == 1)
    })
    .await?;
    ensure!(p.query_i64("SELECT count(*) FROM t WHERE id = 3").await? == 1);
    ensure!(p.query_i64("SELECT count(*) FROM t WHERE id = 2").await? == 0);
    let state = s
        .query_text("SELECT state FROM pg_stat_replication WHERE application_name = 'primary'")
        .await?;
    ensure!(state.as_deref() == Some("streaming"), "{state:?}");

    step("rejoin again: already streaming, nothing done");
    let again = old.rejoin_as_standby(3, &conninfo).await?;
    ensure!(
        again.method == RejoinMethod::AlreadyStreaming,
        "{:?}",
        again.method
    );
    Ok(())
}

#[tokio::test]
async fn rejoin_falls_back_to_basebackup_when_rewind_cannot_work() -> Result<()> {
    let pair = PgPair::start().await?;
    let (p, s) = (&pair.primary, &pair.standby);
    p.exec("CREATE TABLE t (id int PRIMARY KEY)").await?;
    p.exec("INSERT INTO t VALUES (1)").await?;
    pair.wait_replayed(TIMEOUT).await?;

    step("fail over, then break the old primary's data directory");
    let old = site(p, TIMEOUT);
    let new = site(s, TIMEOUT);
    old.fence(4).await?;
    new.promote(4).await?;
    s.exec("INSERT INTO t VALUES (2)").await?;
    let control = p.data_dir().join("global/pg_control");
    std::fs::remove_file(&control).with_context(|| format!("removing {}", control.display()))?;

    step("rejoin: pg_rewind fails, pg_basebackup replaces the data directory");
    let rejoined = old.rejoin_as_standby(4, &s.replication_conninfo()).await?;
    eprintln!("measured: rejoin by pg_basebackup: {rejoined:?}");
    ensure!(
        rejoined.method == RejoinMethod::BaseBackup,
        "{:?}",
        rejoined.method
    );
    ensure!(rejoined.rewind_failure.is_some());
    let old_dir = rejoined
        .removed_old_data_dir
        .clone()
        .context("the old data directory was moved aside")?;
    ensure!(!old_dir.exists(), "{} still exists", old_dir.display());
    ensure!(p.in_recovery().await?);

    step("rows written on the new primary appear");
    s.exec("INSERT INTO t VALUES (3)").await?;
    wait_until("rows replayed on the rebuilt server", TIMEOUT, || async {
        Ok(p.query_i64("SELECT count(*) FROM t").await? == 3)
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn synchronous_mode_holds_commits_until_the_standby_has_them() -> Result<()> {
    let pair = PgPair::start().await?;
    let (p, s) = (&pair.primary, &pair.standby);
    let db = site(p, TIMEOUT);
    p.exec("CREATE TABLE t (id int PRIMARY KEY)").await?;

    step("name the standby synchronous");
    let set = db.set_synchronous(5, Some(s.name())).await?;
    ensure!(set.changed && set.current == s.name(), "{set:?}");
    wait_until("the standby is the sync standby", TIMEOUT, || async {
        Ok(p.query_text("SELECT sync_state FROM pg_stat_replication")
            .await?
            .as_deref()
            == Some("sync"))
    })
    .await?;
    ensure!(!db.set_synchronous(5, Some(s.name())).await?.changed);

    step("a write commits while the standby streams");
    tokio::time::timeout(TIMEOUT, p.exec("INSERT INTO t VALUES (1)"))
        .await
        .context("a commit with a streaming sync standby hung")??;

    step("stop the standby: a commit now waits, even with statement_timeout");
    s.stop_fast()?;
    let mut conn = p.connect().await?;
    conn.execute("SET statement_timeout = '1s'; SET application_name = 'blocked-writer'")
        .await?;
    let writer =
        tokio::spawn(async move { conn.execute("INSERT INTO t VALUES (2)").await.map(|_| conn) });
    // Wait until the server itself says the commit waits for the sync
    // standby (not a guess by time), then check it has not returned.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let wait_event = p
            .query_text(
                "SELECT wait_event FROM pg_stat_activity WHERE application_name = 'blocked-writer'",
            )
            .await?;
        if wait_event.as_deref() == Some("SyncRep") {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the commit never waited for the sync standby (wait_event {wait_event:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // statement_timeout is 1 s: well past it, the commit still waits.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ensure!(
        !writer.is_finished(),
        "the commit returned without a sync standby"
    );

    step("back to asynchronous: the waiting commit is released");
    let unset = db.set_synchronous(5, None).await?;
    ensure!(unset.changed && unset.current.is_empty(), "{unset:?}");
    let conn = tokio::time::timeout(TIMEOUT, writer)
        .await
        .context("the commit stayed blocked after going asynchronous")???;
    conn.close().await?;
    ensure!(p.query_i64("SELECT count(*) FROM t").await? == 2);
    Ok(())
}

/// Keeps the compiler honest about the trait being usable as a bound (the
/// daemon will hold a `D: DatabaseControl`).
#[allow(dead_code)]
async fn generic_caller<D: DatabaseControl>(db: &D) -> Result<bool, DbError> {
    db.is_fenced().await
}

#[allow(dead_code)]
fn futures_are_send(db: &'static PgSite) {
    fn is_send<T: Send>(_: T) {}
    is_send(db.fence(1));
    is_send(db.rejoin_as_standby(1, "host=x"));
    is_send(generic_caller(db));
}
