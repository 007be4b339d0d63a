//! The test kit's MariaDB master-master pair: the guide's two-way
//! replication works, keys do not collide, and the servers survive the
//! crashes, stops and freezes the failover tests inflict on them.

use std::str::FromStr;
use std::time::Duration;

use palisade_testkit::mariadb::{
    MariaPair, MariaPairOptions, MariaServer, MARIA_APP_DATABASE, MARIA_APP_USER,
};
use palisade_testkit::{step, wait_for};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::MySqlPool;

const PATIENCE: Duration = Duration::from_secs(30);

/// A small pool as the application user.
async fn app_pool(server: &MariaServer) -> MySqlPool {
    let options = MySqlConnectOptions::from_str(&server.app_dsn()).expect("the kit's DSN parses");
    MySqlPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .unwrap_or_else(|e| panic!("connecting as {MARIA_APP_USER} to {}: {e}", server.name()))
}

async fn wait_rows(server: &MariaServer, n: i64) {
    let what = format!("{} to hold {n} rows", server.name());
    wait_for(&what, PATIENCE, async || {
        match server.query_i64("SELECT COUNT(*) FROM app.t").await {
            Ok(count) if count == n => Ok(()),
            Ok(count) => Err(format!("{count} rows")),
            Err(e) => Err(format!("{e:#}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n--- log:\n{}", server.log_tail(20)));
}

/// `(id, v)` of every row, by id.
async fn rows(server: &MariaServer) -> Vec<(i64, String)> {
    let pool = server.pool().await.expect("admin pool");
    sqlx::query_as::<_, (i64, String)>("SELECT CAST(id AS SIGNED), v FROM app.t ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("reading app.t")
}

#[tokio::test]
async fn writes_on_either_master_reach_the_other_with_keys_that_do_not_collide() {
    step("start the guide's pair");
    let pair = MariaPair::start().await.expect("pair starts");
    assert_eq!((pair.a.server_id(), pair.b.server_id()), (1, 2));
    assert_ne!(pair.a.port(), pair.b.port());
    assert_eq!(
        pair.b
            .query_text(&format!(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{MARIA_APP_DATABASE}'"
            ))
            .await
            .expect("query b"),
        Some(MARIA_APP_DATABASE.to_owned()),
        "the app database created on a replicated to b"
    );

    step("the app user writes on a; b sees it");
    let on_a = app_pool(&pair.a).await;
    sqlx::raw_sql(
        "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB;\
         INSERT INTO t (v) VALUES ('a1'), ('a2'), ('a3');",
    )
    .execute(&on_a)
    .await
    .expect("write on a");
    wait_rows(&pair.b, 3).await;

    step("the app user writes on b; a sees it");
    let on_b = app_pool(&pair.b).await;
    for v in ["b1", "b2", "b3"] {
        sqlx::query("INSERT INTO t (v) VALUES (?)")
            .bind(v)
            .execute(&on_b)
            .await
            .expect("write on b");
    }
    wait_rows(&pair.a, 6).await;
    pair.wait_in_sync().await.expect("in sync");

    step("a's keys are odd, b's even, and both servers hold the same rows");
    let on_a_rows = rows(&pair.a).await;
    assert_eq!(on_a_rows, rows(&pair.b).await);
    for (id, v) in &on_a_rows {
        let expected_parity = if v.starts_with('a') { 1 } else { 0 };
        assert_eq!(id % 2, expected_parity, "row {id} {v}: {on_a_rows:?}");
    }
    assert_eq!(on_a_rows.len(), 6);

    step("read_only stops the app user (no SUPER, no READ_ONLY ADMIN)");
    pair.b
        .exec("SET GLOBAL read_only = ON")
        .await
        .expect("read_only on b");
    let refused = sqlx::query("INSERT INTO t (v) VALUES ('b4')")
        .execute(&on_b)
        .await
        .expect_err("b is read-only");
    assert!(
        format!("{refused}").contains("read-only"),
        "unexpected error: {refused}"
    );
}

#[tokio::test]
async fn a_killed_stopped_or_frozen_master_comes_back_and_catches_up() {
    let pair = MariaPair::start().await.expect("pair starts");
    pair.a
        .exec("CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20))")
        .await
        .expect("create");

    step("kill -9 a; write on b; restart a; both catch up");
    let pid = pair.a.pid().expect("a runs");
    pair.a.kill9();
    assert!(!pair.a.is_running());
    assert_eq!(pair.a.pid(), None);
    assert!(
        std::net::TcpStream::connect(pair.a.addr()).is_err(),
        "a's port refuses after kill9"
    );
    assert!(pair.a.query_i64("SELECT 1").await.is_err());
    pair.b
        .exec("INSERT INTO app.t (v) VALUES ('b-while-a-down')")
        .await
        .expect("b takes writes while a is down");
    pair.a.start().expect("a restarts after SIGKILL");
    assert_ne!(pair.a.pid(), Some(pid), "a new process");
    pair.wait_in_sync().await.expect("in sync after a's crash");
    wait_rows(&pair.a, 1).await;

    step("stop b cleanly; write on a; start b; both catch up");
    pair.b.stop().expect("b stops cleanly");
    assert!(!pair.b.is_running());
    assert!(
        pair.b.log_tail(5).contains("Shutdown complete"),
        "clean shutdown logged: {}",
        pair.b.log_tail(5)
    );
    pair.a
        .exec("INSERT INTO app.t (v) VALUES ('a-while-b-stopped')")
        .await
        .expect("a takes writes while b is stopped");
    pair.b.start().expect("b restarts");
    pair.wait_in_sync().await.expect("in sync after b's stop");
    wait_rows(&pair.b, 2).await;

    step("freeze b: it runs but does not answer; thaw it");
    pair.b.sigstop();
    assert!(pair.b.is_running(), "a frozen server still runs");
    let frozen = tokio::time::timeout(Duration::from_secs(5), pair.b.query_i64("SELECT 1")).await;
    assert!(
        !matches!(frozen, Ok(Ok(1))),
        "a frozen server answered: {frozen:?}"
    );
    pair.b.sigcont();
    assert_eq!(
        pair.b
            .query_i64("SELECT 1")
            .await
            .expect("thawed b answers"),
        1
    );
    assert!(pair.b.start().is_err(), "starting a running server fails");
}

#[tokio::test]
async fn skip_replication_gives_two_independent_servers() {
    let pair = MariaPair::start_with(MariaPairOptions {
        skip_replication: true,
        ..MariaPairOptions::default()
    })
    .await
    .expect("servers start");
    for server in [&pair.a, &pair.b] {
        assert_eq!(
            server.query_row("SHOW SLAVE STATUS").await.expect("query"),
            None,
            "{} replicates from nobody",
            server.name()
        );
        server
            .exec("CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20))")
            .await
            .expect("the app database exists on each");
    }
    pair.a
        .exec("INSERT INTO app.t (v) VALUES ('only-on-a')")
        .await
        .expect("insert");
    assert_eq!(
        pair.b
            .query_i64("SELECT COUNT(*) FROM app.t")
            .await
            .expect("count"),
        0
    );
    assert!(pair.wait_in_sync().await.is_err());
}
