//! The witness daemon over the HA/DR guide's MySQL master-master pair
//! (MariaDB 10.11, `[[database]] engine = "mariadb"`), end to end: three
//! real witness processes, a real pair that the test kit builds as the
//! guide says, real kills. Site a's master is the writer (`read_only =
//! OFF`), site b's the other master (`read_only = ON`, replicating both
//! ways). Each test owns its pair and its cluster; a failing one dumps the
//! witnesses' logs (`Cluster`'s drop, once, whatever panicked).
//!
//! What a test asserts, it reads from the servers themselves where it can
//! (`@@read_only`, `palisade.epoch`, `SHOW SLAVE STATUS`, the rows), and
//! from `palisadectl status` for the cluster's decisions.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use palisade_api::v1::{FailoverSummary, StatusReply};
use palisade_testkit::cluster::{
    maria_db_config, move_leadership_off, palisade, start_maria_cluster, status, wait_ready,
    wait_status, Cluster, FAST, OPERATED, SETTLE, SLOTS,
};
use palisade_testkit::mariadb::{
    maria_available, MariaPair, MariaPairOptions, MariaServer, MariaWriter, MARIA_WRITES_TABLE,
};
use palisade_testkit::writer::Ack;
use palisade_testkit::{step, wait_for, Attempt};
use sqlx::mysql::{MySqlConnection, MySqlDatabaseError};
use sqlx::{Connection, Executor};

/// How long tests watch for something that must not happen (a failover, a
/// rejoin, errant rows reaching the new writer).
const WATCH: Duration = Duration::from_secs(4);
/// An old writer's return: its agent starts it read-only and rejoins it.
const REJOIN: Duration = Duration::from_secs(60);
/// `ER_OPTION_PREVENTS_STATEMENT`: "The MariaDB server is running with the
/// --read-only option so it cannot execute this statement".
const ER_OPTION_PREVENTS_STATEMENT: u16 = 1290;
/// The automatic failover's tuning: fast probes and lease, and a dead
/// writer (its agent alive) failed over rather than restarted.
fn failover_tuning(extra: &str) -> String {
    format!("{FAST}\n[failover]\non_primary_crash = \"failover\"\n{extra}")
}

/// The guide's pair, or a panic naming why it did not start.
async fn pair_with(opts: MariaPairOptions) -> MariaPair {
    MariaPair::start_with(opts)
        .await
        .unwrap_or_else(|e| panic!("MariaDB pair: {e:#}"))
}

/// SIGKILLs a server (the harness waits until its port refuses
/// connections: blocking, so off the runtime's async threads).
fn kill9(server: &MariaServer) {
    tokio::task::block_in_place(|| server.kill9());
}

/// `@@global.read_only` of `server`; `None` while it does not answer.
async fn read_only(server: &MariaServer) -> Option<bool> {
    let v = tokio::time::timeout(
        Duration::from_secs(3),
        server.query_i64("SELECT @@global.read_only"),
    )
    .await
    .ok()?
    .ok()?;
    Some(v != 0)
}

/// Waits until `server` answers with `read_only` = `want`; after
/// `timeout` prints the server's log tail and panics naming `why` (the
/// cluster's drop then dumps the witnesses' logs).
async fn wait_read_only(server: &MariaServer, want: bool, why: &str, timeout: Duration) {
    let what = format!(
        "{why}: server {} answers with read_only = {}",
        server.name(),
        if want { "ON" } else { "OFF" }
    );
    let r = wait_for(&what, timeout, async || match read_only(server).await {
        Some(v) if v == want => Attempt::Ready(()),
        Some(v) => Attempt::NotYet(format!("read_only = {v}")),
        None => Attempt::NotYet("no answer".to_owned()),
    })
    .await;
    if let Err(e) = r {
        eprintln!(
            "--- server {} log tail:\n{}",
            server.name(),
            server.log_tail(30)
        );
        panic!("{e:#}");
    }
}

/// `palisade.epoch` on `server` (the promotion's test write).
async fn recorded_epoch(server: &MariaServer) -> anyhow::Result<i64> {
    server
        .query_i64("SELECT epoch FROM palisade.epoch WHERE id = 1")
        .await
}

/// `(Slave_IO_Running, Slave_SQL_Running)` of `server`; `None` when it
/// does not answer or replicates from nobody.
async fn replication_threads(server: &MariaServer) -> Option<(String, String)> {
    let row = server.query_row("SHOW SLAVE STATUS").await.ok()??;
    let col = |name: &str| row.get(name).cloned().flatten().unwrap_or_default();
    Some((col("Slave_IO_Running"), col("Slave_SQL_Running")))
}

/// Waits until both masters replicate from each other (IO and SQL thread
/// `Yes` on each), then until each has applied everything the other wrote.
async fn wait_replicating_both_ways(pair: &MariaPair, timeout: Duration) {
    let r = wait_for(
        "both masters to replicate from each other (IO and SQL threads Yes on a and b)",
        timeout,
        async || {
            let (a, b) = (
                replication_threads(&pair.a).await,
                replication_threads(&pair.b).await,
            );
            let yes = |t: &Option<(String, String)>| {
                t.as_ref()
                    .is_some_and(|(io, sql)| io == "Yes" && sql == "Yes")
            };
            if yes(&a) && yes(&b) {
                Ok(())
            } else {
                Err(format!("a {a:?}, b {b:?}"))
            }
        },
    )
    .await;
    if let Err(e) = r {
        panic!("{e:#}");
    }
    if let Err(e) = pair.wait_in_sync().await {
        panic!("{e:#}");
    }
}

/// A connection as the application user (`app`, no `READ_ONLY ADMIN`).
async fn app_connection(server: &MariaServer) -> Result<MySqlConnection, sqlx::Error> {
    MySqlConnection::connect_with(&server.app_options()).await
}

/// Runs `sql` as the application user on `server`.
async fn app_exec(server: &MariaServer, sql: &str) -> Result<(), sqlx::Error> {
    let mut conn = app_connection(server).await?;
    let r = conn.execute(sql).await.map(|_| ());
    let _ = conn.close().await;
    r
}

/// The server's error number, when the server refused the statement.
fn error_number(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()?
        .try_downcast_ref::<MySqlDatabaseError>()
        .map(|d| d.number())
}

/// Asserts that the application user cannot write to `server`: the
/// server refuses its INSERT as read-only (1290).
async fn assert_app_refused(server: &MariaServer, sql: &str, why: &str) {
    match app_exec(server, sql).await {
        Ok(()) => panic!(
            "{why}: the app user's `{sql}` on {} was ACCEPTED (read_only = {:?})",
            server.name(),
            read_only(server).await
        ),
        Err(e) => assert_eq!(
            error_number(&e),
            Some(ER_OPTION_PREVENTS_STATEMENT),
            "{why}: the app user's `{sql}` on {} must be refused as read-only, got: {e}",
            server.name()
        ),
    }
}

/// Waits until the last failover has finished; returns its record.
async fn finished_failover(c: &Cluster, what: &str) -> FailoverSummary {
    wait_status(c, what, SETTLE, |s| {
        s.last_failover.clone().filter(|f| !f.outcome.is_empty())
    })
    .await
}

/// The status of the first running witness that answers.
async fn any_status(c: &Cluster) -> StatusReply {
    wait_status(c, "a witness answers", SETTLE, |s| Some(s.clone())).await
}

/// Starts the cluster over `pair` and waits, beyond [`wait_ready`], until
/// the standby's agent has made b read-only (the guide leaves both
/// masters writable).
async fn start(pair: &MariaPair, tuning: &str) -> Cluster {
    let c = start_maria_cluster(pair, tuning).await;
    wait_read_only(&pair.b, true, "b's agent fences the standby master", SETTLE).await;
    wait_read_only(&pair.a, false, "a is the writer", SETTLE).await;
    c
}

/// The acknowledged writes that `server` does not hold.
async fn lost_on(acks: &[Ack], server: &MariaServer) -> Vec<i64> {
    let have: BTreeSet<i64> = server
        .ids(MARIA_WRITES_TABLE)
        .await
        .unwrap_or_else(|e| panic!("reading the writes on {}: {e:#}", server.name()));
    acks.iter()
        .map(|a| a.id)
        .filter(|id| !have.contains(id))
        .collect()
}

/// Every line of every witness's log that contains `needle` (ASCII case
/// ignored).
fn log_lines(c: &Cluster, needle: &str) -> Vec<String> {
    let needle = needle.to_ascii_lowercase();
    c.nodes
        .iter()
        .flat_map(|n| {
            n.log_text()
                .lines()
                .filter(|l| l.to_ascii_lowercase().contains(&needle))
                .map(|l| format!("[witness {}] {l}", n.id))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Waits until every running witness has probed site a's server after
/// `since` (a probe begun after it, with a margin of one slow probe).
async fn wait_probed_after(c: &Cluster, since: Instant) {
    let margin = Duration::from_millis(500);
    let r = wait_for(
        "every witness probed site a's server after the writes",
        SETTLE,
        async || {
            for n in c.nodes.iter().filter(|n| n.is_running()) {
                let elapsed = since.elapsed();
                let Some(s) = status(c, n.id).await else {
                    return Err(format!("witness {} does not answer", n.id));
                };
                let mine = s.nodes.iter().find(|v| v.id == n.id);
                let a = mine.and_then(|v| v.databases.iter().find(|d| d.site == "a"));
                match a {
                    Some(d)
                        if d.reachable && Duration::from_millis(d.age_ms) + margin < elapsed => {}
                    other => return Err(format!("witness {}: {other:?}", n.id)),
                }
            }
            Ok(())
        },
    )
    .await;
    if let Err(e) = r {
        panic!("{e:#}");
    }
}

// 1. Site loss.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_writer_site_loss_promotes_the_other_master_and_loses_at_most_the_unreplicated_tail(
) {
    if !maria_available() {
        return;
    }
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = pair_with(MariaPairOptions::default()).await;
    let mut c = start(&pair, &format!("{FAST}\n[failover]\n")).await;
    // The witness at site a must not be the leader, or the test would also
    // be a leader loss.
    move_leadership_off(&mut c, 1).await;
    let writer = MariaWriter::start(&pair).await.expect("start the writer");
    writer.wait_acks_at("a", 100).await.expect("writes on a");

    step("site a lost: its witness and its mariadbd SIGKILLed together, under writes");
    c.node(1).kill9();
    kill9(&pair.a);
    let f = finished_failover(&c, "the failover to b finished").await;
    for s in &f.steps {
        eprintln!(
            "--- {:<12} {:>5} ms  {}",
            s.step,
            s.done_at_ms - s.started_at_ms,
            s.detail
        );
    }
    assert_eq!(f.outcome, "completed", "{f:?}");
    assert_eq!(
        (f.from_site.as_str(), f.to_site.as_str(), f.epoch),
        ("a", "b", 1),
        "{f:?}"
    );
    assert!(
        f.steps[0].detail.starts_with("lease expired") || f.steps[0].detail.contains("STONITH"),
        "a lost site is fenced by its lease running out: {}",
        f.steps[0].detail
    );
    let promoted = &f.steps[1].detail;
    assert!(
        promoted.contains("executed mysql-bin.")
            && promoted.contains("replication from the old writer stopped")
            && promoted.contains("may have lost what the old writer committed and never sent"),
        "the promotion records its proof, that b no longer pulls from a, and the loss bound: {promoted}"
    );

    step("b is the writer: read_only OFF, the epoch recorded, status says so");
    assert_eq!(read_only(&pair.b).await, Some(false), "b is writable");
    assert_eq!(
        recorded_epoch(&pair.b).await.expect("palisade.epoch on b"),
        f.epoch as i64,
        "b recorded the failover's epoch"
    );
    let s = any_status(&c).await;
    assert_eq!(
        (s.primary_site.as_str(), s.epoch),
        ("b", 1),
        "status after the failover"
    );

    step("the writer goes on at b; of a's acknowledged writes only the unreplicated tail may be lost");
    writer.wait_acks_at("b", 20).await.expect("writes on b");
    let acks = writer.stop().await;
    let lost: BTreeSet<i64> = lost_on(&acks, &pair.b).await.into_iter().collect();
    let lost_by = |site: &str| -> Vec<i64> {
        acks.iter()
            .filter(|a| a.site == site && lost.contains(&a.id))
            .map(|a| a.id)
            .collect()
    };
    let (lost_a, lost_b) = (lost_by("a"), lost_by("b"));
    let on_a = acks.iter().filter(|a| a.site == "a").count();
    eprintln!(
        "--- {} acknowledged ({on_a} by a), {} lost: {lost_a:?}",
        acks.len(),
        lost.len()
    );
    assert!(on_a >= 100, "the writer wrote on a ({on_a} rows)");
    assert!(
        lost_b.is_empty(),
        "writes acknowledged by the new writer b are not on it: {lost_b:?}"
    );
    // The guide's replication is asynchronous: a commit is acknowledged
    // before the other master has received it, so a site lost under
    // writes takes with it what b had not received, and nothing else
    // (b applies a's writes in order: no older write may be missing).
    // Observed: usually nothing at all; the bound is the tail of a few
    // milliseconds of writes.
    let newest_a_on_b = acks
        .iter()
        .filter(|a| a.site == "a" && !lost.contains(&a.id))
        .map(|a| a.id)
        .max();
    assert!(
        lost_a.iter().all(|id| Some(*id) > newest_a_on_b),
        "an acknowledged write older than one b holds was lost (a hole, not a tail): lost {lost_a:?}, newest of a's writes on b {newest_a_on_b:?}"
    );
    assert!(
        lost_a.len() <= 20,
        "{} acknowledged writes lost: more than an unreplicated tail: {lost_a:?}",
        lost_a.len()
    );
}

// 2. Writer crash, restart policy.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_writer_crash_with_restart_policy_is_restarted_in_place_and_replication_goes_on() {
    if !maria_available() {
        return;
    }
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = pair_with(MariaPairOptions::default()).await;
    let c = start(
        &pair,
        &format!("{FAST}\n[failover]\non_primary_crash = \"restart\"\nrestart_budget_ms = 20000\n"),
    )
    .await;
    pair.a
        .exec("CREATE TABLE app.t (id BIGINT PRIMARY KEY)")
        .await
        .expect("create app.t");
    pair.wait_in_sync().await.expect("in sync");

    step("SIGKILL the writer's mariadbd (its witness lives)");
    let killed = Instant::now();
    kill9(&pair.a);
    wait_read_only(
        &pair.a,
        false,
        "a's agent restarts the writer in place",
        SETTLE,
    )
    .await;
    eprintln!(
        "--- writable again {} ms after the kill",
        killed.elapsed().as_millis()
    );
    app_exec(&pair.a, "INSERT INTO t VALUES (1)")
        .await
        .expect("the app user writes on the restarted a");

    step("no failover: the epoch and the roles are unchanged at every witness");
    for id in 1..=3 {
        let s = status(&c, id).await.expect("status");
        assert_eq!(
            (s.epoch, s.primary_site.as_str(), s.standby_site.as_str()),
            (0, "a", "b"),
            "witness {id}: no failover"
        );
        assert!(
            s.last_failover.is_none(),
            "witness {id}: {:?}",
            s.last_failover
        );
    }
    assert_eq!(read_only(&pair.b).await, Some(true), "b stays read-only");

    step("b still replicates from a: the write after the restart reaches it");
    let r = wait_for("row 1 of app.t on b", SETTLE, async || {
        match pair
            .b
            .query_i64("SELECT COUNT(*) FROM app.t WHERE id = 1")
            .await
        {
            Ok(1) => Ok(()),
            other => Err(format!(
                "{other:?}; b's threads {:?}",
                replication_threads(&pair.b).await
            )),
        }
    })
    .await;
    if let Err(e) = r {
        panic!("{e:#}");
    }
    let b_threads = replication_threads(&pair.b).await;
    assert_eq!(
        b_threads,
        Some(("Yes".to_owned(), "Yes".to_owned())),
        "b replicates from the restarted a"
    );
    eprintln!(
        "--- a's replication from b after the restart: {:?}",
        replication_threads(&pair.a).await
    );
}

// 3. Writer crash, failover policy.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_writer_crash_with_failover_policy_promotes_the_other_master() {
    if !maria_available() {
        return;
    }
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = pair_with(MariaPairOptions::default()).await;
    let c = start(&pair, &failover_tuning("")).await;
    pair.a
        .exec("CREATE TABLE app.t (id BIGINT PRIMARY KEY); INSERT INTO app.t VALUES (1)")
        .await
        .expect("write on a");
    pair.wait_in_sync().await.expect("in sync");

    step("SIGKILL the writer's mariadbd (its witness lives)");
    kill9(&pair.a);
    let f = finished_failover(&c, "the failover to b finished").await;
    for s in &f.steps {
        eprintln!(
            "--- {:<12} {:>5} ms  {}",
            s.step,
            s.done_at_ms - s.started_at_ms,
            s.detail
        );
    }
    assert_eq!(f.outcome, "completed", "{f:?}");
    assert_eq!(
        (f.from_site.as_str(), f.to_site.as_str(), f.epoch),
        ("a", "b", 1),
        "{f:?}"
    );
    assert_eq!(read_only(&pair.b).await, Some(false), "b is writable");
    assert_eq!(
        recorded_epoch(&pair.b).await.expect("palisade.epoch on b"),
        1,
        "b recorded the epoch"
    );
    assert_eq!(
        pair.b
            .query_i64("SELECT COUNT(*) FROM app.t WHERE id = 1")
            .await
            .expect("read b"),
        1,
        "a's write is on b"
    );
    app_exec(&pair.b, "INSERT INTO t VALUES (2)")
        .await
        .expect("the app user writes on the new writer b");
    let s = any_status(&c).await;
    assert_eq!(
        (s.primary_site.as_str(), s.standby_site.as_str(), s.epoch),
        ("b", "a", 1)
    );

    step("a's agent brings the old writer back read-only, and both masters replicate again");
    // (Awaited also so that the test does not end while the agent is
    // starting a mariadbd whose pid file the pair's teardown cannot see
    // yet.)
    wait_status(&c, "a rejoined as the read-only master", REJOIN, |s| {
        (!s.standby_needs_rejoin && s.standby_site == "a").then_some(())
    })
    .await;
    wait_read_only(&pair.a, true, "the rejoined a is read-only", SETTLE).await;
    wait_replicating_both_ways(&pair, REJOIN).await;
    assert_eq!(
        pair.a
            .query_i64("SELECT COUNT(*) FROM app.t WHERE id = 2")
            .await
            .expect("read a"),
        1,
        "b's write after the failover reached the rejoined a"
    );
}

// 4. A lagging survivor.

/// Makes b lag behind a by `stop` (a `STOP SLAVE ...` statement run on
/// b) and 20 writes on a, kills a's mariadbd, and asserts that the
/// failover to b is refused with the reason shown, and that b stays
/// read-only for a while. `max_lag_bytes = 1`.
async fn assert_lagging_survivor_refused(stop: &str) {
    let pair = pair_with(MariaPairOptions::default()).await;
    let c = start(&pair, &failover_tuning("max_lag_bytes = 1\n")).await;
    pair.a
        .exec("CREATE TABLE app.t (id BIGINT PRIMARY KEY, pad TEXT)")
        .await
        .expect("create app.t");
    pair.wait_in_sync().await.expect("in sync");

    step(&format!("b lags ({stop} on b); a writes on"));
    pair.b.exec(stop).await.expect("stop b's replication");
    for id in 1..=20 {
        pair.a
            .exec(&format!(
                "INSERT INTO app.t VALUES ({id}, REPEAT('x', 1000))"
            ))
            .await
            .expect("write on a");
    }
    let written = Instant::now();
    wait_probed_after(&c, written).await;
    eprintln!(
        "--- b's replication threads (IO, SQL): {:?}",
        replication_threads(&pair.b).await
    );

    step("SIGKILL a: the promotion of the lagging b must be refused, with the reason");
    kill9(&pair.a);
    let verdict = wait_status(
        &c,
        "the detector blocks the failover (or one begins)",
        SETTLE,
        |s| {
            (s.assessment.starts_with("blocked") || s.epoch > 0)
                .then(|| (s.assessment.clone(), s.epoch))
        },
    )
    .await;
    eprintln!("--- {verdict:?}");
    let (reason, epoch) = verdict;
    assert_eq!(
        epoch,
        0,
        "a failover to the lagging b was begun ({reason}); b's threads {:?}",
        replication_threads(&pair.b).await
    );
    let lower = reason.to_ascii_lowercase();
    assert!(
        lower.contains("max_lag") || lower.contains("sql thread"),
        "the reason names the guard: {reason}"
    );
    let watch_until = Instant::now() + WATCH;
    while Instant::now() < watch_until {
        for id in 1..=3 {
            if let Some(s) = status(&c, id).await {
                assert_eq!(
                    s.epoch, 0,
                    "witness {id}: no failover: {:?}",
                    s.failover_in_progress
                );
                assert!(
                    s.failover_in_progress.is_none(),
                    "witness {id}: {:?}",
                    s.failover_in_progress
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        read_only(&pair.b).await,
        Some(true),
        "b was not made writable"
    );
    assert!(
        recorded_epoch(&pair.b).await.is_err(),
        "b recorded no epoch (no promotion's test write)"
    );
    let logged = log_lines(&c, "blocked");
    eprintln!("--- log lines saying blocked:\n{}", logged.join("\n"));
}

/// b has not received a's last writes (its IO thread stopped).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_a_survivor_that_did_not_receive_the_last_writes_is_not_promoted() {
    if !maria_available() {
        return;
    }
    let _slot = SLOTS.acquire().await.expect("test slot");
    assert_lagging_survivor_refused("STOP SLAVE IO_THREAD").await;
}

/// b received a's last writes but did not apply them (its SQL thread
/// stopped, as an operator does to skip a statement): `Seconds_Behind_Master`
/// is NULL, and the received position is a's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_a_survivor_that_did_not_apply_the_last_writes_is_not_promoted() {
    if !maria_available() {
        return;
    }
    let _slot = SLOTS.acquire().await.expect("test slot");
    assert_lagging_survivor_refused("STOP SLAVE SQL_THREAD").await;
}

// 5. A fenced master refuses the app's writes.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_a_fenced_master_refuses_the_app_users_writes_before_and_after_a_failover() {
    if !maria_available() {
        return;
    }
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = pair_with(MariaPairOptions::default()).await;
    let c = start(&pair, &failover_tuning("")).await;
    pair.a
        .exec("CREATE TABLE app.t (id BIGINT PRIMARY KEY)")
        .await
        .expect("create app.t");
    pair.wait_in_sync().await.expect("in sync");

    step("the standby master b refuses the app user's write; the writer a takes it");
    assert_app_refused(&pair.b, "INSERT INTO t VALUES (2)", "standby b").await;
    app_exec(&pair.a, "INSERT INTO t VALUES (1)")
        .await
        .expect("the app user writes on the writer a");
    // Replicated before the kill: with asynchronous replication a write b
    // never received would be an errant transaction of a, whose rejoin
    // is then (rightly) refused.
    pair.wait_in_sync().await.expect("in sync");

    step("SIGKILL a's mariadbd: failover to b");
    kill9(&pair.a);
    let f = finished_failover(&c, "the failover to b finished").await;
    assert_eq!(
        (f.outcome.as_str(), f.to_site.as_str()),
        ("completed", "b"),
        "{f:?}"
    );
    app_exec(&pair.b, "INSERT INTO t VALUES (4)")
        .await
        .expect("the app user writes on the new writer b");

    step("a comes back (its agent starts it read-only and rejoins it): it refuses the app user");
    wait_read_only(
        &pair.a,
        true,
        "a's agent brings the old writer back read-only",
        REJOIN,
    )
    .await;
    assert_app_refused(
        &pair.a,
        "INSERT INTO t VALUES (3)",
        "old writer a after the failover",
    )
    .await;
    let s = wait_status(&c, "a rejoined as the read-only master", REJOIN, |s| {
        (!s.standby_needs_rejoin && s.standby_site == "a").then(|| s.clone())
    })
    .await;
    assert_eq!((s.primary_site.as_str(), s.epoch), ("b", 1));
    assert_app_refused(&pair.a, "INSERT INTO t VALUES (5)", "rejoined a").await;
    assert_eq!(read_only(&pair.b).await, Some(false), "b stays the writer");
}

// 6. Errant transactions.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_an_old_writer_with_errant_transactions_is_not_rejoined() {
    if !maria_available() {
        return;
    }
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = pair_with(MariaPairOptions::default()).await;
    let c = start(
        &pair,
        &failover_tuning("errant_transactions = \"refuse\"\n"),
    )
    .await;
    pair.a
        .exec("CREATE TABLE app.t (id BIGINT PRIMARY KEY)")
        .await
        .expect("create app.t");
    pair.wait_in_sync().await.expect("in sync");

    step("b stops replicating from a (STOP SLAVE); a commits 3 transactions b never gets");
    pair.b.exec("STOP SLAVE").await.expect("STOP SLAVE on b");
    for id in [101, 102, 103] {
        pair.a
            .exec(&format!("INSERT INTO app.t VALUES ({id})"))
            .await
            .expect("write on a");
    }

    step("SIGKILL a's mariadbd (its witness lives): failover to b");
    kill9(&pair.a);
    let f = finished_failover(&c, "the failover to b finished").await;
    // Every property is checked, and all that fail are reported together:
    // a failover that went wrong does not hide what the return of a does.
    let mut failures = Vec::new();
    if (f.outcome.as_str(), f.to_site.as_str()) != ("completed", "b") {
        failures.push(format!(
            "the failover to b did not complete: {} (to {})",
            f.outcome, f.to_site
        ));
    }
    if read_only(&pair.b).await != Some(false) {
        failures.push(format!(
            "b is not the writer after the failover: read_only {:?}",
            read_only(&pair.b).await
        ));
    }

    step("a comes back read-only; its rejoin is refused, naming the errant transactions");
    wait_read_only(
        &pair.a,
        true,
        "a's agent starts the old writer read-only",
        REJOIN,
    )
    .await;
    let r = wait_for(
        "a witness log line or journal entry about a's errant transactions",
        REJOIN,
        async || {
            let mut lines = log_lines(&c, "errant");
            for id in 1..=3 {
                if let Some(j) = c.journal(id) {
                    lines.extend(
                        j.into_iter()
                            .filter(|t| t.to_ascii_lowercase().contains("errant"))
                            .map(|t| format!("[journal of {id}] {t}")),
                    );
                    break;
                }
            }
            (!lines.is_empty()).then_some(lines)
        },
    )
    .await;
    let lines = r.unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("--- errant:\n{}", lines.join("\n"));
    let counts_three = |l: &String| l.split(|ch: char| !ch.is_ascii_digit()).any(|n| n == "3");
    assert!(
        lines.iter().any(counts_three),
        "the refusal counts the 3 errant transactions: {lines:#?}"
    );

    step("for a while: a stays read-only and not rejoined, b never gets the errant rows");
    let watch_until = Instant::now() + WATCH;
    let mut recorded_rejoined = None;
    while Instant::now() < watch_until {
        let s = any_status(&c).await;
        if !s.standby_needs_rejoin && recorded_rejoined.is_none() {
            recorded_rejoined = Some(format!(
                "a with errant transactions was recorded as rejoined (standby_needs_rejoin false, standby {}, epoch {})",
                s.standby_site, s.epoch
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    failures.extend(recorded_rejoined);
    if read_only(&pair.a).await != Some(true) {
        failures.push(format!(
            "a is not read-only: {:?}",
            read_only(&pair.a).await
        ));
    }
    let errant = "SELECT COUNT(*) FROM app.t WHERE id IN (101, 102, 103)";
    let errant_on_b = pair.b.query_i64(errant).await.expect("read b");
    if errant_on_b != 0 {
        failures.push(format!(
            "{errant_on_b} of the 3 errant rows reached the new writer b"
        ));
    }
    let errant_on_a = pair.a.query_i64(errant).await.expect("read a");
    if errant_on_a != 3 {
        failures.push(format!(
            "a holds {errant_on_a} of its 3 errant rows (kept for an operator to decide)"
        ));
    }
    let (threads_a, threads_b) = (
        replication_threads(&pair.a).await,
        replication_threads(&pair.b).await,
    );
    eprintln!("--- replication threads (IO, SQL): a from b {threads_a:?}, b from a {threads_b:?}");
    if threads_a.as_ref().is_some_and(|(io, _)| io == "Yes") {
        failures.push(format!(
            "the refused a replicates from b again (a's threads {threads_a:?}): its replication was resumed"
        ));
    }
    if threads_b.as_ref().is_some_and(|(io, _)| io == "Yes") {
        failures.push(format!(
            "b replicates from the refused a again (b's threads {threads_b:?})"
        ));
    }
    if !failures.is_empty() {
        panic!(
            "errant transactions on return:\n  {}",
            failures.join("\n  ")
        );
    }
}

// 7. Switchover.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_switchover_under_a_writer_loses_no_acknowledged_write_and_both_ways_replicate() {
    if !maria_available() {
        return;
    }
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = pair_with(MariaPairOptions::default()).await;
    // A planned handover must not race a lease that a loaded machine
    // cannot renew in time: fast probes, the default lease.
    let c = start(&pair, OPERATED).await;
    let writer = MariaWriter::start(&pair).await.expect("start the writer");
    writer.wait_acks_at("a", 50).await.expect("writes on a");
    wait_ready(&c).await;

    step("palisadectl switchover --to b, under the writer");
    let asked = Instant::now();
    let out = tokio::task::block_in_place(|| {
        c.ctl(2, &["--output", "json", "switchover", "--to", "b", "--yes"])
    });
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "switchover: exit {:?}, no JSON ({e}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!("--- switchover reply: {reply}");
    if (out.status.code(), reply["succeeded"].as_bool()) != (Some(0), Some(true)) {
        panic!(
            "the switchover did not complete: exit {:?}: {reply:#}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let f = finished_failover(&c, "the switchover finished").await;
    for s in &f.steps {
        eprintln!(
            "--- {:<12} {:>5} ms  {}",
            s.step,
            s.done_at_ms - s.started_at_ms,
            s.detail
        );
    }
    assert_eq!(
        (
            f.outcome.as_str(),
            f.kind.as_str(),
            f.from_site.as_str(),
            f.to_site.as_str()
        ),
        ("completed", "switchover", "a", "b"),
        "{f:?}"
    );
    assert!(
        f.steps[1]
            .detail
            .contains("nothing lost: the old writer's final position was executed first")
            && !f.steps[1]
                .detail
                .contains("replication from the old writer stopped"),
        "a handover's promotion loses nothing and keeps replicating from the old writer: {}",
        f.steps[1].detail
    );

    step("the writer goes on at b; no acknowledged write is lost");
    writer.wait_acks_at("b", 50).await.expect("writes on b");
    let acks = writer.stop().await;
    let first_at_b = acks
        .iter()
        .filter(|a| a.site == "b")
        .map(|a| a.at)
        .min()
        .expect("writes at b");
    eprintln!(
        "--- the writer's pause across the switchover: {} ms ({} writes acknowledged)",
        first_at_b.duration_since(asked).as_millis(),
        acks.len()
    );
    let lost = lost_on(&acks, &pair.b).await;
    assert!(
        lost.is_empty(),
        "{} acknowledged writes are not on b: {lost:?}",
        lost.len()
    );
    assert_eq!(read_only(&pair.b).await, Some(false), "b is the writer");
    assert_eq!(
        recorded_epoch(&pair.b).await.expect("palisade.epoch on b"),
        f.epoch as i64
    );

    step("a is read-only and both masters replicate from each other");
    wait_read_only(&pair.a, true, "the old writer a stays read-only", SETTLE).await;
    wait_replicating_both_ways(&pair, REJOIN).await;
    let lost_on_a = lost_on(&acks, &pair.a).await;
    assert!(
        lost_on_a.is_empty(),
        "{} acknowledged writes did not replicate to a: {lost_on_a:?}",
        lost_on_a.len()
    );
    let s = any_status(&c).await;
    assert_eq!(
        (s.primary_site.as_str(), s.standby_site.as_str(), s.epoch),
        ("b", "a", f.epoch)
    );
}

// 8. Semi-synchronous replication.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_semi_sync_site_loss_loses_no_acknowledged_write() {
    if !maria_available() {
        return;
    }
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = pair_with(MariaPairOptions {
        semi_sync: true,
        ..Default::default()
    })
    .await;
    // The writer's agent must switch semi-sync on itself.
    pair.a
        .exec("SET GLOBAL rpl_semi_sync_master_enabled = OFF")
        .await
        .expect("semi-sync off on a");
    let mut c = start(
        &pair,
        &format!("{FAST}\n[failover]\nreplication = \"sync\"\n"),
    )
    .await;

    step("semi-sync in force on the writer, and the status says so");
    let semi_sync_status = async || {
        pair.a
            .query_row("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_status'")
            .await
            .ok()
            .flatten()
            .and_then(|r| r.get("Value").cloned().flatten())
    };
    let r = wait_for(
        "Rpl_semi_sync_master_status = ON on the writer a",
        SETTLE,
        async || match semi_sync_status().await {
            Some(v) if v == "ON" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    if let Err(e) = r {
        panic!("{e:#}");
    }
    let mut seen = String::new();
    let shown = wait_for(
        "status shows sync replication and semi-sync in force on a (witness a's probe)",
        SETTLE,
        async || {
            let s = status(&c, 1).await?;
            let a_witness = s.nodes.iter().find(|n| n.site == "a")?;
            let semi_sync = a_witness
                .databases
                .iter()
                .find(|d| d.site == "a")
                .and_then(|d| d.mariadb.as_ref())
                .and_then(|m| m.semi_sync.as_ref());
            seen = format!(
                "replication_mode {:?}, witness a's replication_in_force {:?}, a's semi-sync as probed {semi_sync:?}",
                s.replication_mode, a_witness.replication_in_force
            );
            // "sync", or a description of semi-sync in force; never a
            // degraded or asynchronous mode.
            let mode = s.replication_mode.as_str();
            let mode_in_force = (mode == "sync" || mode.starts_with("semi-sync"))
                && !mode.contains("degraded");
            (mode_in_force && semi_sync.is_some_and(|m| m.enabled && m.active)).then_some(())
        },
    )
    .await;
    eprintln!("--- status: {seen}");
    if let Err(e) = shown {
        panic!("{e:#} (last: {seen})");
    }

    move_leadership_off(&mut c, 1).await;
    let writer = MariaWriter::start(&pair).await.expect("start the writer");
    writer.wait_acks_at("a", 100).await.expect("writes on a");
    assert_eq!(
        semi_sync_status().await.as_deref(),
        Some("ON"),
        "semi-sync still in force under the writes"
    );

    step("site a lost under writes: witness 1 and a's mariadbd SIGKILLed");
    c.node(1).kill9();
    kill9(&pair.a);
    let f = finished_failover(&c, "the failover to b finished").await;
    assert_eq!(
        (f.outcome.as_str(), f.from_site.as_str(), f.to_site.as_str()),
        ("completed", "a", "b"),
        "{f:?}"
    );
    eprintln!("--- evidence: {}", f.evidence_json);
    let acks = writer.stop().await;
    let on_a = acks.iter().filter(|a| a.site == "a").count();
    assert!(on_a >= 100, "the writer wrote ({on_a} rows on a)");
    let lost = lost_on(&acks, &pair.b).await;
    eprintln!(
        "--- semi-sync: {} acknowledged ({on_a} by a), {} lost",
        acks.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "acknowledged writes lost with semi-sync in force: {lost:?}"
    );
    assert_eq!(read_only(&pair.b).await, Some(false), "b is the writer");
}

// 9. Bad input at start.

/// Waits for witness `id` to exit on its own; returns its exit code and
/// its log (its stderr).
async fn exit_of(c: &mut Cluster, id: u64) -> (Option<i32>, String) {
    let code = c.node(id).wait_exit(SETTLE).await;
    (code, c.node(id).log_text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_a_wrong_engine_name_is_refused_by_check_config_and_at_start() {
    if !maria_available() {
        return;
    }
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = pair_with(MariaPairOptions::default()).await;
    let config = maria_db_config(&pair, FAST);
    assert_eq!(
        config.matches("engine = \"mariadb\"").count(),
        2,
        "{config}"
    );
    let c =
        Cluster::with_config(&config.replacen("engine = \"mariadb\"", "engine = \"mysql8\"", 1));
    let file = &c.nodes[0].config;
    for cmd in ["check-config", "run"] {
        let out = tokio::task::block_in_place(|| palisade(&[cmd], file));
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        eprintln!("--- palisade {cmd}: exit {:?}: {stderr}", out.status.code());
        assert_eq!(out.status.code(), Some(1), "{cmd} must exit 1: {stderr}");
        assert!(
            stderr.contains("database[0].engine") && stderr.contains("mysql8"),
            "{cmd}: names the key and the value: {stderr}"
        );
    }
    // The right engine passes the same check.
    let good = Cluster::with_config(&config);
    let out = tokio::task::block_in_place(|| palisade(&["check-config"], &good.nodes[0].config));
    assert_eq!(
        out.status.code(),
        Some(0),
        "engine = \"mariadb\" passes check-config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the three witnesses over a pair that `pair::check` must refuse;
/// the witnesses at the database sites must exit non-zero naming the
/// problem (`keywords`, any one of them, ASCII case ignored).
async fn assert_refused_at_start(opts: MariaPairOptions, keywords: &[&str]) {
    let pair = pair_with(opts).await;
    let mut c = Cluster::with_config(&maria_db_config(&pair, FAST));
    for n in &mut c.nodes {
        n.start();
    }
    for id in [1, 2] {
        let (code, log) = exit_of(&mut c, id).await;
        // The fatal error is what a witness logs last, as it exits.
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = &lines[lines.len().saturating_sub(5)..];
        let why: Vec<&str> = tail
            .iter()
            .copied()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                keywords.iter().any(|k| l.contains(&k.to_ascii_lowercase()))
            })
            .collect();
        eprintln!(
            "--- witness {id}: exit {code:?}; it said:\n{}",
            tail.join("\n")
        );
        if code == Some(0) || code.is_none() || why.is_empty() {
            panic!(
                "witness {id} must refuse the pair at start, its last words naming one of {keywords:?}; exit {code:?}"
            );
        }
    }
    // Witness c has no database of its own: whether it refuses too is
    // reported, not required.
    let third = c.node(3).log_text();
    let third_named = keywords
        .iter()
        .any(|k| third.to_ascii_lowercase().contains(&k.to_ascii_lowercase()));
    eprintln!("--- witness 3 (no database) names the problem: {third_named}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_a_pair_that_does_not_replicate_is_refused_at_start() {
    if !maria_available() {
        return;
    }
    let _slot = SLOTS.acquire().await.expect("test slot");
    assert_refused_at_start(
        MariaPairOptions {
            skip_replication: true,
            ..Default::default()
        },
        &["replicates from nobody"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_colliding_auto_increment_offsets_are_refused_at_start() {
    if !maria_available() {
        return;
    }
    let _slot = SLOTS.acquire().await.expect("test slot");
    assert_refused_at_start(
        MariaPairOptions {
            auto_increment_offsets: Some((1, 1)),
            ..Default::default()
        },
        &["auto_increment_offset"],
    )
    .await;
}
