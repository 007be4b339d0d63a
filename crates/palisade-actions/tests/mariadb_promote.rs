//! `palisade_actions::mariadb` promotion against real MariaDB master-master
//! pairs (one pair per test, so tests run in parallel): the survivor
//! becomes the writer only with proof, records the epoch, refuses stale
//! epochs, refuses to promote before it received the old writer's final
//! position, and a switchover under a writer loses no acknowledged write.
//! Each test narrates its steps with `--- step` lines.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use palisade_actions::mariadb::{MariaError, MariaSite, PromotionRequest};
use palisade_testkit::mariadb::{
    maria_available, mariadbd_path, MariaPair, MariaServer, MARIA_OS_USER,
};
use palisade_testkit::{step, wait_for};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlSslMode};
use sqlx::{Connection, Executor};

/// Per-step bound of the site under test.
const TIMEOUT: Duration = Duration::from_secs(10);

/// How long replication may take to deliver a write in these tests.
const REPLICATION: Duration = Duration::from_secs(20);

/// `ER_OPTION_PREVENTS_STATEMENT`: "running with the --read-only option".
const ER_OPTION_PREVENTS_STATEMENT: u16 = 1290;

/// The site agent's view of one server of the pair.
fn site(server: &MariaServer, timeout: Duration) -> MariaSite {
    MariaSite {
        admin_dsn: server.admin_dsn(),
        admin_password: None,
        mariadbd: mariadbd_path().expect("checked by maria_available"),
        defaults_file: server.defaults_file().to_path_buf(),
        pid_file: server.pid_file().to_path_buf(),
        os_user: Some(MARIA_OS_USER.to_owned()),
        timeout,
        log_file: Some(server.log_file().to_path_buf()),
    }
}

/// A connection with `dsn` (TLS off: the test servers have none).
async fn connect(dsn: &str) -> Result<MySqlConnection> {
    let opts = MySqlConnectOptions::from_str(dsn)?.ssl_mode(MySqlSslMode::Disabled);
    Ok(MySqlConnection::connect_with(&opts).await?)
}

/// The server's error number, when the server refused the statement.
fn error_number(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()?
        .try_downcast_ref::<MySqlDatabaseError>()
        .map(|d| d.number())
}

async fn recorded_epoch(server: &MariaServer) -> Result<i64> {
    server
        .query_i64("SELECT epoch FROM palisade.epoch WHERE id = 1")
        .await
}

/// The pair with `b` made the passive master (soft-fenced) and the
/// application's table created on `a`, in sync.
async fn guide_pair() -> Result<MariaPair> {
    let pair = MariaPair::start().await?;
    site(&pair.b, TIMEOUT).fence_writes(1).await?;
    pair.a
        .exec("CREATE TABLE app.t (id BIGINT PRIMARY KEY)")
        .await?;
    pair.wait_in_sync().await?;
    Ok(pair)
}

#[tokio::test]
async fn promote_makes_the_survivor_the_writer_and_records_the_epoch() -> Result<()> {
    if !maria_available() {
        return Ok(());
    }
    let pair = guide_pair().await?;
    let (a, b) = (site(&pair.a, TIMEOUT), site(&pair.b, TIMEOUT));
    pair.a.exec("INSERT INTO app.t VALUES (1)").await?;

    step("a writable server has no final position");
    match a.final_position().await {
        Err(MariaError::NotFenced { .. }) => {}
        other => bail!("expected NotFenced, got {other:?}"),
    }

    step("fence a, promote b");
    a.fence_writes(2).await?;
    let outcome = b.promote(2, PromotionRequest::default()).await?;
    eprintln!("promote: {outcome:?}");
    ensure!(!outcome.already_writer, "{outcome:?}");
    ensure!(
        outcome.read.is_some() && outcome.read == outcome.executed,
        "caught up: {outcome:?}"
    );
    ensure!(!outcome.gtid_binlog_pos.is_empty(), "{outcome:?}");
    ensure!(!b.is_write_fenced().await?, "b is writable");
    ensure!(recorded_epoch(&pair.b).await? == 2);
    ensure!(
        pair.b
            .query_i64("SELECT COUNT(*) FROM app.t WHERE id = 1")
            .await?
            == 1,
        "a's write was applied on b before it became the writer"
    );

    step("the app user writes on b");
    let mut app = connect(&pair.b.app_dsn()).await?;
    app.execute("INSERT INTO app.t VALUES (2)")
        .await
        .context("app insert on the promoted b")?;
    app.close().await?;

    step("the epoch replicates to the fenced a");
    wait_for(
        "palisade.epoch = 2 on a",
        REPLICATION,
        async || match recorded_epoch(&pair.a).await {
            Ok(2) => Ok(()),
            Ok(n) => Err(format!("epoch {n}")),
            Err(e) => Err(format!("{e:#}")),
        },
    )
    .await?;
    ensure!(a.is_write_fenced().await?, "a stays fenced");

    step("a repeat is already done");
    let again = b.promote(2, PromotionRequest::default()).await?;
    ensure!(again.already_writer, "{again:?}");
    ensure!(recorded_epoch(&pair.b).await? == 2);

    step("an older epoch is refused, on b and on a");
    for (server, name) in [(&b, "b"), (&a, "a")] {
        match server.promote(1, PromotionRequest::default()).await {
            Err(
                e @ MariaError::StaleEpoch {
                    epoch: 1,
                    recorded: 2,
                    ..
                },
            ) => ensure!(!e.is_retryable(), "{e}"),
            other => bail!("{name}: expected StaleEpoch, got {other:?}"),
        }
    }
    ensure!(
        a.is_write_fenced().await?,
        "the stale promotion left a fenced"
    );
    ensure!(!b.is_write_fenced().await?, "and b the writer");

    step("a higher stored epoch refuses a newer call too");
    pair.b
        .exec("UPDATE palisade.epoch SET epoch = 10 WHERE id = 1")
        .await?;
    match b.promote(3, PromotionRequest::default()).await {
        Err(MariaError::StaleEpoch {
            epoch: 3,
            recorded: 10,
            ..
        }) => {}
        other => bail!("expected StaleEpoch 3 < 10, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn promote_refuses_a_survivor_that_missed_the_old_writers_final_position() -> Result<()> {
    if !maria_available() {
        return Ok(());
    }
    let pair = guide_pair().await?;
    let a = site(&pair.a, TIMEOUT);
    let impatient_b = site(&pair.b, Duration::from_secs(2));

    step("b stops receiving; a takes writes, then is fenced");
    pair.b.exec("STOP SLAVE IO_THREAD").await?;
    let mut app = connect(&pair.a.app_dsn()).await?;
    for id in 1..=3 {
        app.execute(format!("INSERT INTO app.t VALUES ({id})").as_str())
            .await?;
    }
    a.fence_writes(2).await?;
    let last = a.final_position().await?;
    eprintln!("a's final position: {last:?}");

    step("promoting b with a's final position: not caught up");
    let started = Instant::now();
    let refused = impatient_b
        .promote(
            2,
            PromotionRequest {
                old_writer_final: Some(last.binlog.clone()),
                max_lag_seconds: None,
                stop_replication: false,
            },
        )
        .await;
    eprintln!("promote: {refused:?} after {:?}", started.elapsed());
    match &refused {
        Err(e @ MariaError::NotCaughtUp(seen)) => {
            let (read, executed) = (&seen.read, &seen.executed);
            let wanted = seen
                .wanted
                .as_ref()
                .context("the final position is named")?;
            ensure!(*wanted == last.binlog, "{e}");
            ensure!(!read.reached(wanted), "{e}");
            ensure!(read == executed, "b applied what it had: {e}");
            ensure!(e.is_retryable(), "{e}");
            let text = e.to_string();
            ensure!(
                text.contains(&last.binlog.to_string()) && text.contains(&read.to_string()),
                "the error names the positions: {text}"
            );
        }
        other => bail!("expected NotCaughtUp, got {other:?}"),
    }
    ensure!(
        started.elapsed() >= Duration::from_secs(2),
        "it waited its timeout"
    );
    ensure!(impatient_b.is_write_fenced().await?, "nothing changed on b");
    ensure!(
        pair.b.query_i64("SELECT COUNT(*) FROM app.t").await? == 0,
        "b has none of a's last writes"
    );

    step("once b receives again, the same promotion succeeds");
    pair.b.exec("START SLAVE IO_THREAD").await?;
    let outcome = site(&pair.b, TIMEOUT)
        .promote(
            2,
            PromotionRequest {
                old_writer_final: Some(last.binlog.clone()),
                max_lag_seconds: Some(60),
                stop_replication: false,
            },
        )
        .await?;
    eprintln!("promote: {outcome:?}");
    let read = outcome.read.clone().context("b replicates")?;
    ensure!(read.reached(&last.binlog), "{outcome:?}");
    ensure!(
        pair.b.query_i64("SELECT COUNT(*) FROM app.t").await? == 3,
        "every write a acknowledged is on b"
    );
    Ok(())
}

/// What the writer task saw.
#[derive(Debug, Default)]
struct WriterLog {
    /// Ids whose INSERT the server acknowledged (committed).
    acked: Vec<i64>,
    /// INSERTs refused by read_only.
    refused: u32,
    /// Other failures (killed sessions, reconnects).
    errors: Vec<String>,
}

/// Inserts ids 1, 2, ... into `app.t` over `dsn` until `stop`,
/// reconnecting after errors, and logs what the server answered.
async fn write_until(dsn: String, stop: Arc<AtomicBool>, log: Arc<Mutex<WriterLog>>) {
    let mut conn: Option<MySqlConnection> = None;
    let mut next = 1_i64;
    while !stop.load(Ordering::SeqCst) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match connect(&dsn).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    log.lock().expect("log").errors.push(format!("{e:#}"));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let id = next;
        next += 1;
        let result = c
            .execute(format!("INSERT INTO app.t VALUES ({id})").as_str())
            .await;
        let refused = match result {
            Ok(_) => {
                log.lock().expect("log").acked.push(id);
                false
            }
            Err(e) if error_number(&e) == Some(ER_OPTION_PREVENTS_STATEMENT) => {
                log.lock().expect("log").refused += 1;
                true
            }
            Err(e) => {
                log.lock().expect("log").errors.push(e.to_string());
                conn = None;
                true
            }
        };
        if refused {
            // Do not spin against a fenced server.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_under_a_writer_loses_no_acknowledged_write() -> Result<()> {
    if !maria_available() {
        return Ok(());
    }
    let pair = guide_pair().await?;
    let (a, b) = (site(&pair.a, TIMEOUT), site(&pair.b, TIMEOUT));

    step("a writer inserts into a");
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(WriterLog::default()));
    let writer = tokio::spawn(write_until(
        pair.a.app_dsn(),
        Arc::clone(&stop),
        Arc::clone(&log),
    ));
    wait_for(
        "the writer to commit 200 rows on a",
        REPLICATION,
        async || {
            let n = log.lock().expect("log").acked.len();
            (n >= 200).then_some(()).ok_or(format!("{n} rows"))
        },
    )
    .await?;

    step("switch over: fence a, read its final position, promote b with it");
    let fence = a.fence_writes(2).await?;
    let last = a.final_position().await?;
    let outcome = b
        .promote(
            2,
            PromotionRequest {
                old_writer_final: Some(last.binlog.clone()),
                max_lag_seconds: None,
                stop_replication: false,
            },
        )
        .await?;
    eprintln!("fence: {fence:?}\nfinal: {last:?}\npromote: {outcome:?}");

    step("the writer meets the fence");
    wait_for(
        "a write refused by a's read_only",
        REPLICATION,
        async || {
            let refused = log.lock().expect("log").refused;
            (refused > 0).then_some(())
        },
    )
    .await?;
    stop.store(true, Ordering::SeqCst);
    writer.await.context("the writer task")?;
    let log = std::mem::take(&mut *log.lock().expect("log"));
    eprintln!(
        "writer: {} acknowledged, {} refused, errors: {:?}",
        log.acked.len(),
        log.refused,
        log.errors
    );

    step("every acknowledged id is on b, with no wait");
    let mut on_b = connect(&pair.b.app_dsn()).await?;
    let ids: BTreeSet<i64> = sqlx::query_scalar::<_, i64>("SELECT id FROM app.t")
        .fetch_all(&mut on_b)
        .await?
        .into_iter()
        .collect();
    on_b.close().await?;
    let missing: Vec<i64> = log
        .acked
        .iter()
        .copied()
        .filter(|id| !ids.contains(id))
        .collect();
    ensure!(
        missing.is_empty(),
        "{} acknowledged writes missing on b: {missing:?}",
        missing.len()
    );
    // A write whose session was killed after its commit but before the
    // answer is on b without an acknowledgement; nothing else is.
    ensure!(
        ids.len() <= log.acked.len() + log.errors.len(),
        "b has rows nobody wrote: {} on b, {} acknowledged, {} failed",
        ids.len(),
        log.acked.len(),
        log.errors.len()
    );
    ensure!(!b.is_write_fenced().await?, "b is the writer");
    Ok(())
}

#[tokio::test]
async fn promote_refuses_a_survivor_lagging_more_than_allowed() -> Result<()> {
    if !maria_available() {
        return Ok(());
    }
    let pair = guide_pair().await?;
    let b = site(&pair.b, TIMEOUT);

    step("b applies a's writes 30 s late (MASTER_DELAY)");
    pair.b
        .exec("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 30; START SLAVE")
        .await?;
    pair.a.exec("INSERT INTO app.t VALUES (1)").await?;
    wait_for("b to lag at least 2 s", REPLICATION, async || {
        let row = pair.b.query_row("SHOW SLAVE STATUS").await;
        let lag = row
            .ok()
            .flatten()
            .and_then(|r| r.get("Seconds_Behind_Master").cloned().flatten())
            .and_then(|v| v.parse::<u64>().ok());
        match lag {
            Some(s) if s >= 2 => Ok(s),
            other => Err(format!("Seconds_Behind_Master {other:?}")),
        }
    })
    .await?;

    step("promote b allowing 1 s of lag: refused, nothing changed");
    match b
        .promote(
            2,
            PromotionRequest {
                old_writer_final: None,
                max_lag_seconds: Some(1),
                stop_replication: false,
            },
        )
        .await
    {
        Err(
            e @ MariaError::Lagging {
                seconds, max: 1, ..
            },
        ) => {
            ensure!(seconds >= 2, "{e}");
            ensure!(e.is_retryable(), "{e}");
        }
        other => bail!("expected Lagging, got {other:?}"),
    }
    ensure!(b.is_write_fenced().await?, "b is still fenced");
    ensure!(
        pair.b
            .query_i64(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'palisade'"
            )
            .await?
            == 0,
        "no epoch was recorded"
    );
    Ok(())
}

#[tokio::test]
async fn promote_starts_a_stopped_sql_thread_and_refuses_one_stopped_on_an_error() -> Result<()> {
    if !maria_available() {
        return Ok(());
    }
    let pair = guide_pair().await?;
    let (a, b) = (site(&pair.a, TIMEOUT), site(&pair.b, TIMEOUT));

    step("b's SQL thread stopped by hand; a writes 5 rows, b receives them");
    pair.b.exec("STOP SLAVE SQL_THREAD").await?;
    for id in 1..=5 {
        pair.a
            .exec(&format!("INSERT INTO app.t VALUES ({id})"))
            .await?;
    }
    let (file, pos) = pair.a.master_status().await?;
    wait_for("b to receive a's writes", REPLICATION, async || {
        let row = pair.b.query_row("SHOW SLAVE STATUS").await;
        let read = row.ok().flatten().and_then(|r| {
            Some((
                r.get("Master_Log_File").cloned().flatten()?,
                r.get("Read_Master_Log_Pos").cloned().flatten()?,
            ))
        });
        match read {
            Some((f, p)) if f == file && p == pos.to_string() => Ok(()),
            other => Err(format!("read {other:?}, a at {file}:{pos}")),
        }
    })
    .await?;

    step("fence a, promote b: it starts the SQL thread and executes all five first");
    a.fence_writes(2).await?;
    let outcome = b.promote(2, PromotionRequest::default()).await?;
    ensure!(outcome.read == outcome.executed, "caught up: {outcome:?}");
    ensure!(
        pair.b.query_i64("SELECT COUNT(*) FROM app.t").await? == 5,
        "every received write executed before b took writes"
    );

    step("a conflicting row on a stops b's SQL thread on an error");
    // b is the writer now; make a the survivor of the next handover whose
    // SQL thread hits a duplicate key: a row written on both by hand.
    b.fence_writes(3).await?;
    pair.a.exec("SET GLOBAL read_only = OFF").await?;
    pair.a
        .exec("SET sql_log_bin = 0; INSERT INTO app.t VALUES (100)")
        .await?;
    pair.a.exec("SET GLOBAL read_only = ON").await?;
    pair.b.exec("SET GLOBAL read_only = OFF").await?;
    pair.b.exec("INSERT INTO app.t VALUES (100)").await?;
    pair.b.exec("SET GLOBAL read_only = ON").await?;
    wait_for(
        "a's SQL thread to stop on the duplicate key",
        REPLICATION,
        async || {
            let row = pair.a.query_row("SHOW SLAVE STATUS").await;
            let st = row.ok().flatten().map(|r| {
                (
                    r.get("Slave_SQL_Running").cloned().flatten(),
                    r.get("Last_SQL_Error").cloned().flatten(),
                )
            });
            match st {
                Some((Some(running), Some(err))) if running == "No" && !err.is_empty() => Ok(err),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await?;
    match a.promote(3, PromotionRequest::default()).await {
        Err(e @ MariaError::ReplicationBroken { .. }) => {
            ensure!(!e.is_retryable(), "{e}");
            ensure!(e.to_string().contains("Duplicate entry"), "{e}");
        }
        other => bail!("expected ReplicationBroken, got {other:?}"),
    }
    ensure!(a.is_write_fenced().await?, "a stayed read-only");
    Ok(())
}
