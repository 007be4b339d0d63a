//! `palisade_actions::mariadb` fences against real MariaDB master-master
//! pairs (one pair per test, so tests run in parallel): the soft fence
//! (`read_only` and killed sessions), the accounts that write through it,
//! the hard fence (SIGKILL) and the read-only restart, and semi-sync
//! switching. Each test narrates its steps with `--- step` lines.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use palisade_actions::mariadb::{HardFenceOutcome, MariaSite, StartOutcome};
use palisade_testkit::mariadb::{
    maria_available, mariadbd_path, MariaPair, MariaServer, MARIA_APP_USER, MARIA_OS_USER,
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

/// Client sessions other than the asking one (replication and the
/// server's own threads excluded), as the soft fence counts them.
const CLIENT_SESSIONS: &str = "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
     WHERE ID <> CONNECTION_ID() AND USER NOT IN ('system user', 'event_scheduler') \
       AND COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon')";

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

/// Runs `sql` and expects the server to refuse it with `number`.
async fn expect_refused(conn: &mut MySqlConnection, sql: &str, number: u16) -> Result<()> {
    match conn.execute(sql).await {
        Ok(_) => bail!("{sql} succeeded; expected error {number}"),
        Err(e) if error_number(&e) == Some(number) => Ok(()),
        Err(e) => bail!("{sql} failed with {e}; expected error {number}"),
    }
}

async fn port_refuses(server: &MariaServer) -> bool {
    matches!(
        tokio::net::TcpStream::connect(server.addr()).await,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// Kills, when the test ends (also on panic), a `mariadbd` that the site
/// started: the test kit only knows the processes it started itself.
struct KillRestarted {
    pid_file: PathBuf,
    defaults_file: PathBuf,
}

impl KillRestarted {
    fn new(server: &MariaServer) -> Self {
        Self {
            pid_file: server.pid_file().to_path_buf(),
            defaults_file: server.defaults_file().to_path_buf(),
        }
    }
}

impl Drop for KillRestarted {
    fn drop(&mut self) {
        let Some(pid) = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        else {
            return;
        };
        if runs_with(pid, &self.defaults_file) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Whether `pid` is a process whose command line names `defaults_file`.
fn runs_with(pid: i32, defaults_file: &Path) -> bool {
    let want = format!("--defaults-file={}", defaults_file.display());
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|b| *b == 0).any(|arg| arg == want.as_bytes()))
        .unwrap_or(false)
}

#[tokio::test]
async fn a_fenced_master_refuses_app_writes_kills_sessions_and_keeps_replicating() -> Result<()> {
    if !maria_available() {
        return Ok(());
    }
    let pair = MariaPair::start().await?;
    let a = site(&pair.a);
    pair.a
        .exec("CREATE TABLE app.t (id INT PRIMARY KEY, origin CHAR(1) NOT NULL)")
        .await?;
    pair.wait_in_sync().await?;

    step("an app session on a writes before the fence and stays open");
    let mut before = connect(&pair.a.app_dsn()).await?;
    before
        .execute("INSERT INTO app.t VALUES (1, 'a')")
        .await
        .context("app insert before the fence")?;
    ensure!(!a.is_write_fenced().await?, "a starts writable");

    step("fence a's writes");
    let outcome = a.fence_writes(1).await?;
    eprintln!("fence_writes: {outcome:?}");
    ensure!(!outcome.was_read_only, "{outcome:?}");
    ensure!(outcome.sessions_killed >= 1, "{outcome:?}");
    ensure!(
        outcome.killed_users.iter().any(|u| u == MARIA_APP_USER),
        "the app session was killed: {outcome:?}"
    );
    ensure!(
        !outcome
            .bypassing_accounts
            .iter()
            .any(|b| b.grantee.contains(MARIA_APP_USER) || b.grantee.contains("replication")),
        "{outcome:?}"
    );
    ensure!(a.is_write_fenced().await?, "read_only reads ON");

    step("the session opened before the fence is gone");
    ensure!(
        before.execute("SELECT 1").await.is_err(),
        "a killed session's next query fails"
    );

    step("a new app session is refused with 1290");
    let mut after = connect(&pair.a.app_dsn()).await?;
    expect_refused(
        &mut after,
        "INSERT INTO app.t VALUES (2, 'a')",
        ER_OPTION_PREVENTS_STATEMENT,
    )
    .await?;
    after.close().await?;

    step("a write on b still arrives on the fenced a");
    let mut on_b = connect(&pair.b.app_dsn()).await?;
    on_b.execute("INSERT INTO app.t VALUES (3, 'b')").await?;
    on_b.close().await?;
    wait_for(
        "b's write to replicate to the fenced a",
        REPLICATION,
        async || match pair
            .a
            .query_i64("SELECT COUNT(*) FROM app.t WHERE id = 3")
            .await
        {
            Ok(1) => Ok(()),
            Ok(n) => Err(format!("{n} rows")),
            Err(e) => Err(format!("{e:#}")),
        },
    )
    .await?;
    ensure!(
        pair.a
            .query_i64("SELECT COUNT(*) FROM app.t WHERE id = 2")
            .await?
            == 0,
        "the refused write is not there"
    );

    step("fencing again changes nothing");
    // The test kit's queries close their connections as they return; the
    // server ends those sessions a moment later.
    wait_for(
        "a's closed admin sessions to end",
        REPLICATION,
        async || match pair.a.query_i64(CLIENT_SESSIONS).await {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!("{n} client sessions")),
            Err(e) => Err(format!("{e:#}")),
        },
    )
    .await?;
    let again = a.fence_writes(1).await?;
    eprintln!("fence_writes again: {again:?}");
    ensure!(again.was_read_only, "{again:?}");
    ensure!(again.sessions_killed == 0, "{again:?}");
    ensure!(a.is_write_fenced().await?);
    Ok(())
}

#[tokio::test]
async fn an_account_with_read_only_admin_writes_through_the_fence_and_is_reported() -> Result<()> {
    if !maria_available() {
        return Ok(());
    }
    let pair = MariaPair::start().await?;
    let a = site(&pair.a);
    pair.a
        .exec(
            "CREATE TABLE app.t (id INT PRIMARY KEY);\
             CREATE USER 'bypass'@'127.0.0.1' IDENTIFIED BY 'bypass-pw';\
             GRANT READ_ONLY ADMIN ON *.* TO 'bypass'@'127.0.0.1';\
             GRANT INSERT, SELECT ON app.* TO 'bypass'@'127.0.0.1';\
             CREATE USER 'superonly'@'127.0.0.1' IDENTIFIED BY 'super-pw';\
             GRANT SUPER ON *.* TO 'superonly'@'127.0.0.1';\
             GRANT INSERT, SELECT ON app.* TO 'superonly'@'127.0.0.1';",
        )
        .await?;

    step("sessions of both accounts are open before the fence");
    let mut bypass_before = connect(&pair.a.dsn_as("bypass", "bypass-pw", "app")).await?;
    bypass_before.execute("SELECT 1").await?;

    step("fence a's writes");
    let outcome = a.fence_writes(4).await?;
    eprintln!("fence_writes: {outcome:?}");
    let listed = |name: &str| {
        outcome
            .bypassing_accounts
            .iter()
            .find(|b| b.grantee == format!("'{name}'@'127.0.0.1'"))
    };
    let bypass = listed("bypass").context("'bypass' is listed")?;
    ensure!(
        bypass.privileges == ["READ_ONLY ADMIN"],
        "{:?}",
        bypass.privileges
    );
    // MariaDB 10.11 took READ_ONLY ADMIN out of SUPER.
    ensure!(listed("superonly").is_none(), "{outcome:?}");
    ensure!(listed(MARIA_APP_USER).is_none(), "{outcome:?}");
    ensure!(
        !outcome
            .bypassing_accounts
            .iter()
            .any(|b| b.grantee.starts_with("'palisade'")),
        "palisade's own admin is not a warning: {outcome:?}"
    );
    ensure!(
        outcome.killed_users.iter().any(|u| u == "bypass"),
        "the bypassing session open before the fence was killed: {outcome:?}"
    );
    ensure!(bypass_before.execute("SELECT 1").await.is_err());

    step("why it is a warning: a new READ_ONLY ADMIN session still writes");
    let mut bypass_after = connect(&pair.a.dsn_as("bypass", "bypass-pw", "app")).await?;
    bypass_after
        .execute("INSERT INTO app.t VALUES (1)")
        .await
        .context("READ_ONLY ADMIN writes through read_only")?;
    bypass_after.close().await?;

    step("and SUPER alone does not (MariaDB 10.11)");
    let mut super_only = connect(&pair.a.dsn_as("superonly", "super-pw", "app")).await?;
    expect_refused(
        &mut super_only,
        "INSERT INTO app.t VALUES (2)",
        ER_OPTION_PREVENTS_STATEMENT,
    )
    .await?;
    super_only.close().await?;
    let mut app = connect(&pair.a.app_dsn()).await?;
    expect_refused(
        &mut app,
        "INSERT INTO app.t VALUES (3)",
        ER_OPTION_PREVENTS_STATEMENT,
    )
    .await?;
    app.close().await?;
    Ok(())
}

#[tokio::test]
async fn fence_hard_kills_the_server_and_start_brings_it_back_read_only() -> Result<()> {
    if !maria_available() {
        return Ok(());
    }
    let pair = MariaPair::start().await?;
    let a = site(&pair.a);
    let _cleanup = KillRestarted::new(&pair.a);
    pair.a
        .exec("CREATE TABLE app.t (id INT PRIMARY KEY)")
        .await?;
    pair.a.exec("INSERT INTO app.t VALUES (1)").await?;
    pair.wait_in_sync().await?;
    let pid = pair.a.pid().context("a runs")?;
    ensure!(a.is_running(), "is_running sees the testkit's server");
    ensure!(
        a.start(5).await? == StartOutcome::AlreadyRunning,
        "start leaves a running server alone"
    );
    ensure!(!a.is_write_fenced().await?, "start did not touch read_only");

    step("hard fence a");
    let outcome = a.fence_hard(5).await?;
    eprintln!("fence_hard: {outcome:?}");
    match outcome {
        HardFenceOutcome::Killed { pid: killed, .. } => {
            ensure!(killed == pid, "killed {killed}, the server was {pid}")
        }
        other => bail!("expected Killed, got {other:?}"),
    }
    ensure!(port_refuses(&pair.a).await, "a's port refuses");
    ensure!(!a.is_running());
    ensure!(
        a.is_write_fenced().await.is_err(),
        "no admin connection to a dead server"
    );

    step("hard fence again: already stopped");
    let again = a.fence_hard(5).await?;
    ensure!(
        matches!(again, HardFenceOutcome::AlreadyStopped { .. }),
        "{again:?}"
    );

    step("b takes writes meanwhile");
    pair.b.exec("INSERT INTO app.t VALUES (2), (4)").await?;

    step("start a: read-only, not replicating until asked; then replication catches up");
    let started = a.start(5).await?;
    eprintln!("start: {started:?}");
    ensure!(
        matches!(started, StartOutcome::Started { .. }),
        "{started:?}"
    );
    ensure!(a.is_running());
    ensure!(
        a.is_write_fenced().await?,
        "a restarted master is read-only"
    );
    let mut app = connect(&pair.a.app_dsn()).await?;
    expect_refused(
        &mut app,
        "INSERT INTO app.t VALUES (3)",
        ER_OPTION_PREVENTS_STATEMENT,
    )
    .await?;
    app.close().await?;
    ensure!(
        pair.a
            .query_i64("SELECT COUNT(*) FROM app.t WHERE id = 1")
            .await?
            == 1,
        "the committed row survived the SIGKILL"
    );
    // Started with --skip-slave-start: no replication until asked (an old
    // writer's rejoin checks for errant transactions first).
    let threads = pair
        .a
        .query_row("SHOW SLAVE STATUS")
        .await?
        .ok_or_else(|| anyhow::anyhow!("a has no replication configured"))?;
    ensure!(
        threads
            .get("Slave_IO_Running")
            .cloned()
            .flatten()
            .as_deref()
            == Some("No"),
        "a restarted master does not replicate before it is asked: {threads:?}"
    );
    ensure!(
        a.start_replication().await?,
        "START SLAVE started the threads"
    );
    wait_for(
        "b's writes to replicate to the restarted a",
        REPLICATION,
        async || match pair
            .a
            .query_i64("SELECT COUNT(*) FROM app.t WHERE id IN (2, 4)")
            .await
        {
            Ok(2) => Ok(()),
            Ok(n) => Err(format!("{n} of 2 rows")),
            Err(e) => Err(format!("{e:#}")),
        },
    )
    .await?;
    ensure!(a.start(5).await? == StartOutcome::AlreadyRunning);

    step("hard fence the restarted server too");
    ensure!(matches!(
        a.fence_hard(6).await?,
        HardFenceOutcome::Killed { .. }
    ));
    ensure!(port_refuses(&pair.a).await);
    Ok(())
}

#[tokio::test]
async fn a_pid_file_naming_another_process_kills_nothing() -> Result<()> {
    if !maria_available() {
        return Ok(());
    }
    let pair = MariaPair::start().await?;
    let a = site(&pair.a);
    a.fence_hard(1).await?;
    let b_pid = pair.b.pid().context("b runs")?;

    for (who, pid) in [
        ("this test process", std::process::id() as i32),
        ("b's mariadbd", b_pid),
    ] {
        step(&format!("a's pid file names {who}"));
        std::fs::write(pair.a.pid_file(), format!("{pid}\n"))?;
        ensure!(!a.is_running(), "{who} is not a's server");
        let outcome = a.fence_hard(2).await?;
        ensure!(
            matches!(outcome, HardFenceOutcome::AlreadyStopped { .. }),
            "{outcome:?}"
        );
    }
    ensure!(pair.b.is_running(), "b survived");
    ensure!(pair.b.query_i64("SELECT 1").await? == 1);
    Ok(())
}

#[tokio::test]
async fn set_semi_sync_is_idempotent() -> Result<()> {
    if !maria_available() {
        return Ok(());
    }
    let pair = MariaPair::start().await?;
    let a = site(&pair.a);
    let read = async || -> Result<(String, String)> {
        Ok((
            pair.a
                .query_text("SELECT @@GLOBAL.rpl_semi_sync_master_enabled")
                .await?
                .unwrap_or_default(),
            pair.a
                .query_text("SELECT @@GLOBAL.rpl_semi_sync_master_timeout")
                .await?
                .unwrap_or_default(),
        ))
    };
    ensure!(
        read().await? == ("0".into(), "10000".into()),
        "{:?}",
        read().await?
    );

    step("turn semi-sync on with a 2.5 s timeout");
    ensure!(a.set_semi_sync(1, true, 2500).await?, "changed");
    ensure!(
        read().await? == ("1".into(), "2500".into()),
        "{:?}",
        read().await?
    );
    ensure!(
        !a.set_semi_sync(1, true, 2500).await?,
        "a repeat changes nothing"
    );

    step("turn it off again");
    ensure!(a.set_semi_sync(2, false, 2500).await?, "changed");
    ensure!(
        read().await? == ("0".into(), "2500".into()),
        "{:?}",
        read().await?
    );
    Ok(())
}

#[tokio::test]
async fn a_held_table_lock_does_not_stall_the_fence() -> Result<()> {
    if !maria_available() {
        return Ok(());
    }
    let pair = MariaPair::start().await?;
    let a = MariaSite {
        timeout: Duration::from_secs(2),
        ..site(&pair.a)
    };
    pair.a
        .exec("CREATE TABLE app.t (id INT PRIMARY KEY)")
        .await?;

    step("a session holds a write lock on app.t");
    let mut locker = connect(&pair.a.admin_dsn()).await?;
    locker.execute("LOCK TABLES app.t WRITE").await?;

    step("fence a: read_only waits for the lock, the fence kills the holder");
    let started = std::time::Instant::now();
    let outcome = a.fence_writes(1).await?;
    eprintln!("fence_writes: {outcome:?} after {:?}", started.elapsed());
    ensure!(outcome.sessions_killed >= 1, "{outcome:?}");
    ensure!(a.is_write_fenced().await?);
    ensure!(
        locker.execute("SELECT 1").await.is_err(),
        "the holder is gone"
    );
    Ok(())
}

#[tokio::test]
async fn a_hung_server_fails_the_soft_fence_quickly_and_the_hard_fence_kills_it() -> Result<()> {
    if !maria_available() {
        return Ok(());
    }
    let pair = MariaPair::start().await?;
    let a = MariaSite {
        timeout: Duration::from_secs(2),
        ..site(&pair.a)
    };

    step("freeze a (SIGSTOP)");
    pair.a.sigstop();
    let started = std::time::Instant::now();
    let soft = a.fence_writes(1).await;
    eprintln!(
        "fence_writes on a frozen server: {soft:?} after {:?}",
        started.elapsed()
    );
    match soft {
        Err(e) => ensure!(e.is_retryable(), "{e}"),
        Ok(outcome) => bail!("a frozen server cannot be fenced softly: {outcome:?}"),
    }
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the timeout"
    );
    ensure!(a.is_running(), "a frozen server still runs");

    step("the hard fence kills it anyway");
    let hard = a.fence_hard(1).await?;
    eprintln!("fence_hard: {hard:?}");
    ensure!(matches!(hard, HardFenceOutcome::Killed { .. }), "{hard:?}");
    ensure!(port_refuses(&pair.a).await);
    ensure!(!a.is_running());
    Ok(())
}
