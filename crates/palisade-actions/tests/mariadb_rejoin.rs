//! `palisade_actions::mariadb` rejoin against real MariaDB master-master
//! pairs (one pair per test, so tests run in parallel): after an unplanned
//! failover whose promotion stopped the survivor's replication, the killed
//! old writer comes back read-only as the new writer's replica; it is
//! refused while it holds transactions the new writer never received
//! (unless the operator allows them), a repeat changes nothing, and the
//! new writer then resumes replicating from it. Each test narrates its
//! steps with `--- step` lines.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use palisade_actions::mariadb::{
    ErrantPolicy, MariaError, MariaSite, PeerAccess, PromotionRequest, RejoinOutcome,
};
use palisade_core::Secret;
use palisade_testkit::mariadb::{
    maria_available, mariadbd_path, MariaPair, MariaServer, MARIA_APP_PASSWORD, MARIA_APP_USER,
    MARIA_OS_USER,
};
use palisade_testkit::{step, wait_for};

/// Per-step bound of the site under test.
const TIMEOUT: Duration = Duration::from_secs(10);

/// How long replication may take to deliver a write in these tests.
const REPLICATION: Duration = Duration::from_secs(20);

/// The site agent's view of one server of the pair.
fn site(server: &MariaServer) -> MariaSite {
    MariaSite {
        admin_dsn: server.admin_dsn(),
        admin_password: None,
        mariadbd: mariadbd_path().expect("checked by maria_available"),
        defaults_file: server.defaults_file().to_path_buf(),
        pid_file: server.pid_file().to_path_buf(),
        os_user: Some(MARIA_OS_USER.to_owned()),
        timeout: TIMEOUT,
        log_file: Some(server.log_file().to_path_buf()),
    }
}

/// The rejoining server's access to `server`, the new writer: the
/// application's account (no privilege beyond its database), its password
/// held apart from the URL.
fn peer(server: &MariaServer) -> PeerAccess {
    PeerAccess {
        dsn: format!("mysql://{MARIA_APP_USER}@{}/", server.addr()),
        password: Some(Secret::inline(MARIA_APP_PASSWORD)),
    }
}

/// The pair with `b` made the passive master (soft-fenced) and the
/// application's table created on `a`, in sync.
async fn guide_pair() -> Result<MariaPair> {
    let pair = MariaPair::start().await?;
    site(&pair.b).fence_writes(1).await?;
    pair.a
        .exec("CREATE TABLE app.t (id BIGINT PRIMARY KEY)")
        .await?;
    pair.wait_in_sync().await?;
    Ok(pair)
}

/// `SHOW SLAVE STATUS` of `server`, every column as text.
async fn slave_status(server: &MariaServer) -> Result<BTreeMap<String, String>> {
    let row = server
        .query_row("SHOW SLAVE STATUS")
        .await?
        .with_context(|| format!("{}: no replication configured", server.name()))?;
    Ok(row
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

/// `(Slave_IO_Running, Slave_SQL_Running)` of `server`.
async fn threads(server: &MariaServer) -> Result<(String, String)> {
    let s = slave_status(server).await?;
    Ok((
        s.get("Slave_IO_Running").cloned().unwrap_or_default(),
        s.get("Slave_SQL_Running").cloned().unwrap_or_default(),
    ))
}

/// Waits until both replication threads of `server` run, the IO thread
/// connected.
async fn wait_replicating(server: &MariaServer, why: &str) -> Result<()> {
    wait_for(why, REPLICATION, async || match threads(server).await {
        Ok((io, sql)) if io == "Yes" && sql == "Yes" => Ok(()),
        Ok(seen) => Err(format!("threads {seen:?}")),
        Err(e) => Err(format!("{e:#}")),
    })
    .await
}

/// How many of `ids` are in `app.t` on `server`.
async fn count_ids(server: &MariaServer, ids: &[i64]) -> Result<i64> {
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    server
        .query_i64(&format!(
            "SELECT COUNT(*) FROM app.t WHERE id IN ({})",
            list.join(",")
        ))
        .await
}

/// Waits until every one of `ids` is on `server`.
async fn wait_rows(server: &MariaServer, ids: &[i64], why: &str) -> Result<()> {
    let want = i64::try_from(ids.len())?;
    wait_for(why, REPLICATION, async || {
        match count_ids(server, ids).await {
            Ok(n) if n == want => Ok(()),
            Ok(n) => Err(format!("{n} of {want} rows")),
            Err(e) => Err(format!("{e:#}")),
        }
    })
    .await
}

async fn insert(server: &MariaServer, ids: &[i64]) -> Result<()> {
    for id in ids {
        server
            .exec(&format!("INSERT INTO app.t VALUES ({id})"))
            .await?;
    }
    Ok(())
}

async fn gtid_binlog_pos(server: &MariaServer) -> Result<String> {
    Ok(server
        .query_text("SELECT @@GLOBAL.gtid_binlog_pos")
        .await?
        .unwrap_or_default())
}

/// Kills `a` (the writer) and promotes `b` at epoch 2, stopping its
/// replication from `a`; checks the outcome says so and `b`'s IO thread
/// is off.
async fn fail_over_to_b(pair: &MariaPair) -> Result<()> {
    step("kill -9 a, the writer; promote b, stopping its replication from a");
    pair.a.kill9();
    let outcome = site(&pair.b)
        .promote(
            2,
            PromotionRequest {
                stop_replication: true,
                ..PromotionRequest::default()
            },
        )
        .await?;
    eprintln!("promote: {outcome:?}");
    ensure!(outcome.replication_stopped, "{outcome:?}");
    let (io, sql) = threads(&pair.b).await?;
    ensure!(
        io == "No" && sql == "No",
        "b's replication from a is off: IO {io}, SQL {sql}"
    );
    ensure!(!site(&pair.b).is_write_fenced().await?, "b is the writer");
    Ok(())
}

#[tokio::test]
async fn a_clean_old_writer_rejoins_and_both_directions_replicate_again() -> Result<()> {
    if !maria_available() {
        return Ok(());
    }
    let pair = guide_pair().await?;
    let (a, b) = (site(&pair.a), site(&pair.b));

    step("a writes; b receives all of it");
    insert(&pair.a, &[1, 3, 5]).await?;
    pair.wait_in_sync().await?;
    let a_last = gtid_binlog_pos(&pair.a).await?;
    let a_file_before = slave_status(&pair.b).await?["Master_Log_File"].clone();

    fail_over_to_b(&pair).await?;
    step("a repeated promotion finds replication stopped");
    let again = b
        .promote(
            2,
            PromotionRequest {
                stop_replication: true,
                ..PromotionRequest::default()
            },
        )
        .await?;
    ensure!(
        again.already_writer && again.replication_stopped,
        "{again:?}"
    );
    ensure!(!b.stop_replication().await?, "already stopped: no change");

    step("the app writes on the new writer b");
    insert(&pair.b, &[2, 4]).await?;

    step("a rejoins: started read-only, nothing errant, replicating from b");
    let outcome = a.rejoin(2, &peer(&pair.b), ErrantPolicy::Refuse).await?;
    eprintln!("rejoin: {outcome:?}");
    ensure!(outcome.started && !outcome.fenced, "{outcome:?}");
    ensure!(outcome.errant.is_empty(), "{outcome:?}");
    ensure!(outcome.server_id == 1, "{outcome:?}");
    ensure!(
        outcome.fork == a_last,
        "the fork is what b applied of a, a's last GTID {a_last:?}: {outcome:?}"
    );
    ensure!(a.is_write_fenced().await?, "a runs read-only");
    ensure!(
        threads(&pair.a).await? == ("Yes".to_owned(), "Yes".to_owned()),
        "a replicates from b"
    );
    wait_rows(&pair.a, &[2, 4], "b's writes on a").await?;

    step("b resumes replicating from the restarted a");
    ensure!(b.start_replication().await?, "b's threads were stopped");
    wait_replicating(&pair.b, "b's replication from a to run").await?;
    ensure!(!b.start_replication().await?, "a repeat changes nothing");
    // a's restart opened a new binary log; b continues from where it
    // stopped in the old one, into the new one.
    wait_for(
        "b to have read up to a's current binary log position",
        REPLICATION,
        async || {
            let (Ok(master), Ok(slave)) = (
                pair.a.query_row("SHOW MASTER STATUS").await,
                slave_status(&pair.b).await,
            ) else {
                return Err("reading the positions".to_owned());
            };
            let master = master.unwrap_or_default();
            let at_a = (
                master.get("File").cloned().flatten().unwrap_or_default(),
                master
                    .get("Position")
                    .cloned()
                    .flatten()
                    .unwrap_or_default(),
            );
            let read = (
                slave["Master_Log_File"].clone(),
                slave["Read_Master_Log_Pos"].clone(),
            );
            if at_a == read {
                Ok(read.0)
            } else {
                Err(format!("a at {at_a:?}, b read {read:?}"))
            }
        },
    )
    .await
    .map(|file| eprintln!("b reads a's {file} (was {a_file_before})"))?;

    step("a row written on b appears on a; both directions run");
    insert(&pair.b, &[6]).await?;
    wait_rows(&pair.a, &[6], "b's new row on a").await?;
    pair.wait_in_sync().await?;
    for server in [&pair.a, &pair.b] {
        let seen = threads(server).await?;
        ensure!(
            seen == ("Yes".to_owned(), "Yes".to_owned()),
            "{}: {seen:?}",
            server.name()
        );
    }
    ensure!(a.is_write_fenced().await?, "a is still read-only");
    ensure!(
        count_ids(&pair.b, &[1, 3, 5]).await? == 3,
        "b kept a's rows"
    );
    Ok(())
}

#[tokio::test]
async fn an_old_writer_with_errant_transactions_is_refused_unless_allowed() -> Result<()> {
    if !maria_available() {
        return Ok(());
    }
    let pair = guide_pair().await?;
    let a = site(&pair.a);
    insert(&pair.a, &[1]).await?;
    pair.wait_in_sync().await?;

    step("b stops receiving; a commits 3 transactions b never gets");
    pair.b.exec("STOP SLAVE").await?;
    let before = gtid_binlog_pos(&pair.a).await?;
    let errant_ids = [101, 103, 105];
    insert(&pair.a, &errant_ids).await?;
    let after = gtid_binlog_pos(&pair.a).await?;
    eprintln!("a's gtid_binlog_pos: {before} before, {after} after");
    let seq = |pos: &str| -> Result<u64> {
        pos.rsplit('-')
            .next()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("a GTID position {pos:?}"))
    };
    ensure!(seq(&after)? == seq(&before)? + 3, "3 GTIDs");
    let first = format!("0-1-{}", seq(&before)? + 1);
    let last = after.clone();

    fail_over_to_b(&pair).await?;
    insert(&pair.b, &[2]).await?;

    step("a rejoins, errant refused: named, not retryable, a stays read-only");
    let started = Instant::now();
    let refused = a.rejoin(2, &peer(&pair.b), ErrantPolicy::Refuse).await;
    let e = match refused {
        Err(e @ MariaError::Errant { .. }) => e,
        other => bail!("expected Errant, got {other:?}"),
    };
    let text = e.to_string();
    eprintln!("refused after {:?}: {text}", started.elapsed());
    let MariaError::Errant {
        count,
        first: f,
        last: l,
        ..
    } = &e
    else {
        unreachable!("matched above")
    };
    ensure!(
        *count == 3 && f.to_string() == first && l.to_string() == last,
        "{e:?}"
    );
    ensure!(!e.is_retryable(), "{text}");
    ensure!(
        text.contains(&format!("{first}..{last}"))
            && text.contains("3 errant")
            && text.contains("errant_transactions = \"replicate\""),
        "the message names the count, the range and the way out: {text}"
    );
    ensure!(a.is_running(), "a was started");
    ensure!(a.is_write_fenced().await?, "a is read-only");
    ensure!(
        count_ids(&pair.b, &errant_ids).await? == 0,
        "b did not get a's errant rows"
    );
    ensure!(
        threads(&pair.b).await?.0 == "No",
        "b still does not receive from a"
    );

    step("allowed: a rejoins and reports them");
    let outcome: RejoinOutcome = a.rejoin(2, &peer(&pair.b), ErrantPolicy::Replicate).await?;
    eprintln!("rejoin: {outcome:?}");
    let count: u64 = outcome.errant.iter().map(|e| e.at_most).sum();
    ensure!(count == 3, "{outcome:?}");
    ensure!(outcome.errant[0].last.to_string() == last, "{outcome:?}");
    ensure!(!outcome.started, "a was running: {outcome:?}");
    ensure!(a.is_write_fenced().await?, "a is read-only");
    wait_replicating(&pair.a, "a's replication from b").await?;
    wait_rows(&pair.a, &[2], "b's write on a").await?;
    ensure!(
        count_ids(&pair.b, &errant_ids).await? == 0,
        "b gets them only once it replicates from a again"
    );

    step("b resumes from a: the allowed errant rows reach b, then none is errant");
    ensure!(site(&pair.b).start_replication().await?, "b was stopped");
    wait_replicating(&pair.b, "b's replication from a to run").await?;
    wait_rows(&pair.b, &errant_ids, "a's errant rows on b").await?;
    let settled = a.rejoin(2, &peer(&pair.b), ErrantPolicy::Refuse).await?;
    eprintln!("rejoin after b applied them: {settled:?}");
    ensure!(
        settled.errant.is_empty() && settled.fork == last,
        "b applied up to a's last GTID {last}: {settled:?}"
    );
    Ok(())
}

#[tokio::test]
async fn rejoin_twice_changes_nothing_and_fences_a_writable_old_writer() -> Result<()> {
    if !maria_available() {
        return Ok(());
    }
    let pair = guide_pair().await?;
    let a = site(&pair.a);
    insert(&pair.a, &[1]).await?;
    pair.wait_in_sync().await?;
    fail_over_to_b(&pair).await?;

    step("first rejoin starts a");
    let first = a.rejoin(2, &peer(&pair.b), ErrantPolicy::Refuse).await?;
    eprintln!("first: {first:?}");
    ensure!(first.started, "{first:?}");

    step("second rejoin finds it done");
    let second = a.rejoin(2, &peer(&pair.b), ErrantPolicy::Refuse).await?;
    eprintln!("second: {second:?}");
    ensure!(
        !second.started && !second.fenced && !second.replication_started,
        "{second:?}"
    );
    ensure!(
        second.errant.is_empty() && second.fork == first.fork,
        "{second:?}"
    );
    ensure!(
        second.elapsed < Duration::from_secs(3),
        "a repeat returns at once: {second:?}"
    );
    ensure!(a.is_write_fenced().await?, "a is read-only");

    step("an old writer found running writable is fenced, never left writable");
    pair.a.exec("SET GLOBAL read_only = OFF").await?;
    ensure!(!a.is_write_fenced().await?, "a is writable now");
    let third = a.rejoin(2, &peer(&pair.b), ErrantPolicy::Refuse).await?;
    eprintln!("third: {third:?}");
    ensure!(third.fenced && !third.started, "{third:?}");
    ensure!(a.is_write_fenced().await?, "a is read-only again");
    wait_replicating(&pair.a, "a's replication from b").await?;
    Ok(())
}
