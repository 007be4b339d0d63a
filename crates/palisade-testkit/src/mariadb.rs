//! Real MariaDB for tests: two servers replicating each other, set up the
//! way the HA/DR guide's "Setting Up Replication for MySQL Databases"
//! section says (a master-master pair, file/position replication).
//!
//! What the guide's steps become here:
//!
//! * `my.cnf` of each server: `server-id` 1 and 2, `auto_increment_increment
//!   = 2`, `auto_increment_offset` 1 and 2, `sync_binlog = 1`, `log-bin`
//!   (with the explicit base name `mysql-bin`, so the files are named the
//!   same whatever the host is called);
//! * a `replication` user with `REPLICATION SLAVE` on each server;
//! * on each server `CHANGE MASTER TO MASTER_HOST, MASTER_PORT,
//!   MASTER_USER, MASTER_PASSWORD, MASTER_LOG_FILE, MASTER_LOG_POS` with
//!   the file and position the other server's `SHOW MASTER STATUS` gave,
//!   then `START SLAVE` on both;
//! * then the application's database ([`MARIA_APP_DATABASE`]) is created
//!   on server `a`, and replicates to `b`.
//!
//! Each [`MariaPair`] lives in its own temporary directory
//! (`palisade-maria-*` under [`std::env::temp_dir`]) with its own free
//! loopback ports, so tests can run in parallel. Dropping the pair SIGKILLs
//! both servers and removes every file, also when the test panicked.
//!
//! When the tests run as root the servers run as the OS user `mysql`
//! (`--user=mysql`; the directories are handed to that user), as the
//! Debian package does.
//!
//! Layout of a pair's directory:
//!
//! ```text
//! palisade-maria-XXXXXX/         0755
//!   a/                           0755, owned by the server's OS user
//!     my.cnf                     the server's only option file (--defaults-file)
//!     data/                      datadir (mariadb-install-db)
//!     tmp/                       tmpdir (the server's own: /tmp is shared)
//!     mysqld.sock, mysqld.pid
//!     server.log                 log-error, and mariadbd's stdout/stderr
//!   b/                           the same
//! ```
//!
//! Beyond the guide, and why:
//! * `log_slave_updates` and `gtid_strict_mode` stay **off** by default,
//!   because the guide does not set them and palisade must handle a pair
//!   set up by the guide. [`MariaPairOptions`] turns them on, for the tests
//!   of what changes with them (with `log_slave_updates` each server's
//!   binary log also holds what it applied from the other, so its
//!   `gtid_binlog_pos` covers both masters' writes).
//! * [`MariaPairOptions::semi_sync`] turns on semi-synchronous replication
//!   in both directions (palisade's `sync` mode for MariaDB).
//! * `bind-address = 127.0.0.1`, `skip-name-resolve`, a free port per
//!   server, and datadir, socket, pid file and log in the pair's directory.
//! * `MASTER_CONNECT_RETRY = 1` (default 60 s) and `slave_net_timeout = 5`
//!   (default 60 s; the heartbeat period is half of it): a replica notices
//!   a hung master and reconnects to a restarted one within a test's
//!   patience, as the PostgreSQL pair's WAL timeouts do.
//! * `innodb_buffer_pool_size = 16M`, `innodb_log_file_size = 16M` and
//!   `max_connections = 50` keep several pairs light enough to run side
//!   by side; `innodb_flush_log_at_trx_commit = 1` and `sync_binlog = 1`
//!   keep crash tests honest. `character-set-server = utf8mb4`.
//! * The users are created on each server with `SET sql_log_bin = 0`
//!   before replication starts (so no `CREATE USER` replicates and
//!   collides with the one already there), and `mariadb-install-db`'s
//!   password-less `root` accounts reachable over TCP are dropped: `root`
//!   remains for the unix socket only, which is how the harness sets up.
//!
//! Not yet: placing a pair in network namespaces (as
//! [`crate::pg::PgPair::start_in_namespaces`] does for chaos-tests) is a
//! later addition; the pair lives on loopback.
//!
//! The servers are children of the test process ([`std::process::Child`]),
//! which [`MariaServer`] keeps and reaps itself, so that start, stop,
//! SIGKILL, SIGSTOP and restart work in any order. The blocking methods
//! (`start`, `stop`, `kill9`, ...) wait for processes; call them from
//! tests, not from code that must keep a runtime thread responsive.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions, MySqlRow, MySqlSslMode};
use sqlx::{ConnectOptions, Connection, Executor, MySqlConnection, MySqlPool, Row};
use tempfile::TempDir;

use crate::wait::{wait_for, Attempt};

/// Administrator created on both servers (`ALL PRIVILEGES ... WITH GRANT
/// OPTION`, at `127.0.0.1` and `localhost`): what palisade's MariaDB
/// probe and actions connect as in tests.
pub const MARIA_ADMIN_USER: &str = "palisade";
/// Password of [`MARIA_ADMIN_USER`]; see [`MARIA_TEST_SECRETS`].
pub const MARIA_ADMIN_PASSWORD: &str = "palisade-test-secret-maria-admin-4e7b19";
/// The user each server replicates from the other as (`REPLICATION
/// SLAVE`, as the guide says).
pub const MARIA_REPLICATION_USER: &str = "replication";
/// Password of [`MARIA_REPLICATION_USER`]; see [`MARIA_TEST_SECRETS`].
pub const MARIA_REPLICATION_PASSWORD: &str = "palisade-test-secret-maria-repl-a2c05d";
/// The application's user: `SELECT, INSERT, UPDATE, DELETE, CREATE,
/// DROP, INDEX, ALTER` on [`MARIA_APP_DATABASE`] only. No `SUPER` and no
/// `READ_ONLY ADMIN`, so `read_only` stops its writes.
pub const MARIA_APP_USER: &str = "app";
/// Password of [`MARIA_APP_USER`]; see [`MARIA_TEST_SECRETS`].
pub const MARIA_APP_PASSWORD: &str = "palisade-test-secret-maria-app-7f3d62";
/// The application's database, created on `a` once replication runs.
pub const MARIA_APP_DATABASE: &str = "app";
/// Every secret this module hands out. Like
/// [`crate::pg::TEST_SECRETS`], none may appear in any log, status, error
/// or report of a test run: they share [`crate::pg::TEST_SECRET_PREFIX`],
/// which `.ci/check-secrets` greps for.
pub const MARIA_TEST_SECRETS: [&str; 3] = [
    MARIA_ADMIN_PASSWORD,
    MARIA_REPLICATION_PASSWORD,
    MARIA_APP_PASSWORD,
];
/// OS user the servers run as when the tests run as root.
pub const MARIA_OS_USER: &str = "mysql";

/// How long a single SQL connection attempt of the harness may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a server may take to accept connections after its start
/// (crash recovery included).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a clean shutdown may take before the server is SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long replication may take to run, or to catch up.
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll interval of the blocking waits (which cannot use [`wait_for`]).
const POLL: Duration = Duration::from_millis(50);
/// `slave_net_timeout`, seconds (the heartbeat period is half of it).
const SLAVE_NET_TIMEOUT_S: u32 = 5;
/// `MASTER_CONNECT_RETRY`, seconds: how soon a replica retries a master.
const CONNECT_RETRY_S: u32 = 1;
/// `rpl_semi_sync_master_timeout` with [`MariaPairOptions::semi_sync`], ms.
const SEMI_SYNC_TIMEOUT_MS: u64 = 10_000;
/// Where Debian puts the server and its tools; `PATH` is searched first.
const KNOWN_DIRS: [&str; 4] = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"];
/// The replication base name of the binary logs (`log-bin`).
const BINLOG_BASENAME: &str = "mysql-bin";

/// True when MariaDB is installed; otherwise prints why the calling test
/// is skipped, and fails under `CI=true`, where every test must run.
pub fn maria_available() -> bool {
    if mariadbd_path().is_some() {
        return true;
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "mariadbd is not installed, and CI=true: this test must run \
         (apt-get install -y mariadb-server)"
    );
    eprintln!("SKIP: mariadbd is not installed (apt-get install -y mariadb-server)");
    false
}

/// The `mariadbd` server binary: the first on `PATH`, else Debian's
/// `/usr/sbin/mariadbd`. `None` when MariaDB is not installed.
pub fn mariadbd_path() -> Option<PathBuf> {
    find_tool("mariadbd")
}

/// `mariadb-install-db`, found like [`mariadbd_path`].
fn install_db_path() -> Option<PathBuf> {
    find_tool("mariadb-install-db")
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(KNOWN_DIRS.iter().map(|d| Path::new(d).join(name)))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The server and `mariadb-install-db`, or an error with an install hint:
/// a test that needs a real server cannot do anything useful without one,
/// and a loud failure beats a silent skip.
fn require_tools() -> Result<(PathBuf, PathBuf)> {
    match (mariadbd_path(), install_db_path()) {
        (Some(server), Some(install)) => Ok((server, install)),
        _ => bail!(
            "MariaDB server binaries (mariadbd, mariadb-install-db) not found; \
             install them: apt-get install -y mariadb-server"
        ),
    }
}

/// The OS account the servers run as when we are root.
#[derive(Clone, Debug)]
struct OsUser {
    name: String,
    uid: u32,
    gid: u32,
}

/// `None` when we are not root (servers run as us), the `mysql` account
/// otherwise. Looked up once per test process.
fn server_os_user() -> Result<Option<OsUser>> {
    static USER: OnceLock<std::result::Result<Option<OsUser>, String>> = OnceLock::new();
    USER.get_or_init(|| {
        let lookup = || -> Result<Option<OsUser>> {
            if !nix::unistd::Uid::effective().is_root() {
                return Ok(None);
            }
            let name = MARIA_OS_USER;
            let user = nix::unistd::User::from_name(name)
                .with_context(|| format!("looking up OS user `{name}`"))?
                .with_context(|| {
                    format!("running as root, so MariaDB must run as OS user `{name}`, which was not found")
                })?;
            Ok(Some(OsUser {
                name: name.to_owned(),
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            }))
        };
        lookup().map_err(|e| format!("{e:#}"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Options for [`MariaPair::start_with`]. The default is the guide's pair.
#[derive(Clone, Debug, Default)]
pub struct MariaPairOptions {
    /// `log_slave_updates = ON` on both: each server writes what it
    /// applies from the other to its own binary log. Default off, as the
    /// guide leaves it.
    pub log_slave_updates: bool,
    /// `gtid_strict_mode = ON` on both: a server refuses GTIDs out of
    /// order in its binary log. Default off, as the guide leaves it.
    pub gtid_strict_mode: bool,
    /// Semi-synchronous replication in both directions:
    /// `rpl_semi_sync_master_enabled` and `rpl_semi_sync_slave_enabled` on
    /// both, `rpl_semi_sync_master_timeout` 10 s. The pair is returned
    /// once each server counts the other as a semi-sync client.
    pub semi_sync: bool,
    /// `auto_increment_offset` of `a` and `b`; `None`: the guide's (1, 2).
    /// Both servers keep `auto_increment_increment = 2`.
    pub auto_increment_offsets: Option<(u32, u32)>,
    /// Two independent servers: no `CHANGE MASTER`, no replication, and
    /// the application's database created on each. For "not a pair" tests.
    pub skip_replication: bool,
}

/// The `my.cnf` settings one server gets from [`MariaPairOptions`].
#[derive(Clone, Debug)]
struct Settings {
    auto_increment_offset: u32,
    log_slave_updates: bool,
    gtid_strict_mode: bool,
    semi_sync: bool,
}

/// One MariaDB server of a test pair. Owned by [`MariaPair`]; dropping it
/// SIGKILLs the server and waits until it is gone.
#[derive(Debug)]
pub struct MariaServer {
    /// `a` or `b`.
    name: String,
    server_id: u32,
    host: Ipv4Addr,
    port: u16,
    /// `<pair dir>/<name>`: holds my.cnf, the data dir, socket and log.
    root: PathBuf,
    data_dir: PathBuf,
    socket: PathBuf,
    pid_file: PathBuf,
    log_file: PathBuf,
    defaults_file: PathBuf,
    mariadbd: PathBuf,
    os_user: Option<OsUser>,
    settings: Settings,
    /// The running `mariadbd`, if started and not yet reaped.
    child: Mutex<Option<Child>>,
}

impl MariaServer {
    /// Lays out `<parent>/<name>/` and writes its `my.cnf`; creates no
    /// data directory contents.
    fn layout(
        parent: &Path,
        name: &str,
        server_id: u32,
        port: u16,
        mariadbd: &Path,
        settings: Settings,
    ) -> Result<MariaServer> {
        let root = parent.join(name);
        let server = MariaServer {
            name: name.to_owned(),
            server_id,
            host: Ipv4Addr::LOCALHOST,
            port,
            data_dir: root.join("data"),
            socket: root.join("mysqld.sock"),
            pid_file: root.join("mysqld.pid"),
            log_file: root.join("server.log"),
            defaults_file: root.join("my.cnf"),
            root,
            mariadbd: mariadbd.to_owned(),
            os_user: server_os_user()?,
            settings,
            child: Mutex::new(None),
        };
        let tmp = server.root.join("tmp");
        for (dir, mode) in [
            (&server.root, 0o755),
            (&server.data_dir, 0o750),
            (&tmp, 0o750),
        ] {
            fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))
                .with_context(|| format!("chmod {mode:o} {}", dir.display()))?;
            server.hand_over(dir)?;
        }
        fs::write(&server.log_file, "")
            .with_context(|| format!("creating {}", server.log_file.display()))?;
        server.hand_over(&server.log_file)?;
        server.write_conf()?;
        Ok(server)
    }

    /// `a` or `b`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `server-id`: 1 for `a`, 2 for `b`.
    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    /// TCP port the server listens on (chosen free at creation).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.host, self.port))
    }

    /// The server's `datadir`.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's unix socket (`socket`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The server's `pid-file` (stale after [`MariaServer::kill9`]).
    pub fn pid_file(&self) -> &Path {
        &self.pid_file
    }

    /// The server log (`log-error`, plus whatever `mariadbd` printed
    /// before opening it), outside the data directory.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The server's only option file (`mariadbd --defaults-file=`).
    pub fn defaults_file(&self) -> &Path {
        &self.defaults_file
    }

    /// Administrator DSN over TCP: `mysql://palisade:PASSWORD@127.0.0.1:PORT/`.
    pub fn admin_dsn(&self) -> String {
        self.dsn_as(MARIA_ADMIN_USER, MARIA_ADMIN_PASSWORD, "")
    }

    /// The application user's DSN: `mysql://app:PASSWORD@127.0.0.1:PORT/app`.
    pub fn app_dsn(&self) -> String {
        self.dsn_as(MARIA_APP_USER, MARIA_APP_PASSWORD, MARIA_APP_DATABASE)
    }

    /// DSN for another user and database (`db` may be empty). `user` and
    /// `password` go into the URL as they are: keep them to characters
    /// that need no percent-encoding.
    pub fn dsn_as(&self, user: &str, password: &str, db: &str) -> String {
        format!("mysql://{user}:{password}@{}:{}/{db}", self.host, self.port)
    }

    /// Starts the server (`mariadbd --defaults-file=...` as a child,
    /// logging to [`MariaServer::log_file`]) and waits until it accepts
    /// connections: after a [`MariaServer::stop`] or
    /// [`MariaServer::kill9`] too (InnoDB then recovers first). Fails when
    /// it is already running, when it exits, or when it does not accept
    /// connections within 60 s; the error carries the log's tail.
    pub fn start(&self) -> Result<()> {
        let mut child = self.child();
        if let Some(running) = child.as_mut() {
            if running.try_wait().ok().flatten().is_none() {
                bail!(
                    "server {} (port {}) is already running",
                    self.name,
                    self.port
                );
            }
        }
        *child = None;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .with_context(|| format!("opening {}", self.log_file.display()))?;
        let log_err = log
            .try_clone()
            .with_context(|| format!("duplicating {}", self.log_file.display()))?;
        let mut cmd = Command::new(&self.mariadbd);
        // --defaults-file must come first.
        cmd.arg(format!("--defaults-file={}", self.defaults_file.display()));
        if let Some(user) = &self.os_user {
            cmd.arg(format!("--user={}", user.name));
        }
        cmd.current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group: a terminal's Ctrl-C goes to the test,
            // whose drop then kills the server.
            .process_group(0);
        let spawned = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.mariadbd.display()))?;
        let running = child.insert(spawned);
        let pid = running.id();

        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = running.try_wait() {
                *child = None;
                bail!(
                    "mariadbd of {} (port {}) exited during start ({status})\n--- server log tail:\n{}",
                    self.name,
                    self.port,
                    self.log_tail(30)
                );
            }
            let last = match greeting(self.addr()) {
                Ok(()) => break,
                Err(e) => e,
            };
            if started.elapsed() >= START_TIMEOUT {
                let _ = running.kill();
                let _ = running.wait();
                *child = None;
                bail!(
                    "mariadbd of {} (port {}) did not accept connections within {START_TIMEOUT:?} \
                     (last: {last})\n--- server log tail:\n{}",
                    self.name,
                    self.port,
                    self.log_tail(30)
                );
            }
            std::thread::sleep(POLL);
        }
        tracing::debug!(server = %self.name, port = self.port, pid, "mariadb started");
        Ok(())
    }

    /// Shuts the server down cleanly (SIGTERM: sessions end, InnoDB and
    /// the binary log are closed) and waits until the process is gone. A
    /// frozen server is thawed first; a server that is not running is left
    /// alone. One that takes longer than 60 s is SIGKILLed, and that is an
    /// error.
    pub fn stop(&self) -> Result<()> {
        let mut guard = self.child();
        let Some(child) = guard.as_mut() else {
            return Ok(());
        };
        if child.try_wait().ok().flatten().is_some() {
            *guard = None;
            return Ok(());
        }
        let pid = Pid::from_raw(child_pid(child));
        let _ = kill(pid, Signal::SIGCONT);
        kill(pid, Signal::SIGTERM)
            .with_context(|| format!("SIGTERM to mariadbd of {}", self.name))?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    *guard = None;
                    if !status.success() {
                        bail!(
                            "mariadbd of {} exited with {status} on SIGTERM\n--- server log tail:\n{}",
                            self.name,
                            self.log_tail(20)
                        );
                    }
                    return Ok(());
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    *guard = None;
                    bail!(
                        "mariadbd of {} did not shut down within {STOP_TIMEOUT:?}; SIGKILLed\n\
                         --- server log tail:\n{}",
                        self.name,
                        self.log_tail(20)
                    );
                }
                Err(e) => {
                    *guard = None;
                    return Err(e).context(format!("waiting for mariadbd of {}", self.name));
                }
            }
        }
    }

    /// Crashes the server: SIGKILL (a frozen one too), reaps it, and
    /// returns once the port refuses connections. A server that is not
    /// running is left alone.
    pub fn kill9(&self) {
        let mut guard = self.child();
        let Some(mut child) = guard.take() else {
            tracing::debug!(server = %self.name, "kill9: not running");
            return;
        };
        if let Err(e) = child.kill() {
            tracing::debug!(server = %self.name, error = %e, "kill9: SIGKILL failed (exited already?)");
        }
        if let Err(e) = child.wait() {
            tracing::warn!(server = %self.name, error = %e, "kill9: waiting for mariadbd failed");
        }
        drop(guard);
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok() {
            if Instant::now() >= deadline {
                tracing::warn!(server = %self.name, port = self.port, "kill9: port still accepts connections after 5 s");
                return;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Freezes the server (SIGSTOP): the kernel still accepts TCP
    /// connections on its port, but nobody answers them, as with a hung
    /// host. Its replication threads stop too.
    pub fn sigstop(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// Thaws a server frozen by [`MariaServer::sigstop`].
    pub fn sigcont(&self) {
        self.signal(Signal::SIGCONT);
    }

    fn signal(&self, signal: Signal) {
        match self.pid() {
            Some(pid) => {
                if let Err(e) = kill(Pid::from_raw(pid), signal) {
                    tracing::warn!(server = %self.name, pid, ?signal, error = %e, "signalling mariadbd failed");
                }
            }
            None => tracing::warn!(server = %self.name, ?signal, "no running mariadbd to signal"),
        }
    }

    /// PID of the running `mariadbd` (frozen counts as running); `None`
    /// when it was never started, was stopped, killed, or exited.
    pub fn pid(&self) -> Option<i32> {
        let mut guard = self.child();
        let child = guard.as_mut()?;
        match child.try_wait() {
            Ok(None) => Some(child_pid(child)),
            _ => {
                *guard = None;
                None
            }
        }
    }

    /// True while the server process lives (see [`MariaServer::pid`]).
    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        // A panic while holding the lock leaves the Child as it was.
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connect options over TCP, TLS off (the servers have none).
    fn tcp_options(&self, user: &str, password: &str) -> MySqlConnectOptions {
        MySqlConnectOptions::new()
            .host(&self.host.to_string())
            .port(self.port)
            .username(user)
            .password(password)
            .ssl_mode(MySqlSslMode::Disabled)
    }

    /// Connect options for the administrator over TCP. Statements are not
    /// logged: some carry passwords.
    fn admin_options(&self) -> MySqlConnectOptions {
        self.tcp_options(MARIA_ADMIN_USER, MARIA_ADMIN_PASSWORD)
            .disable_statement_logging()
    }

    /// `root` over the unix socket (no password): only while setting up.
    fn root_options(&self) -> MySqlConnectOptions {
        MySqlConnectOptions::new()
            .socket(&self.socket)
            .username("root")
            .ssl_mode(MySqlSslMode::Disabled)
            .disable_statement_logging()
    }

    /// A fresh small pool (at most 4 connections, 2 s to connect) as the
    /// administrator. Make a new one after restarting the server.
    pub async fn pool(&self) -> Result<MySqlPool> {
        MySqlPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(self.admin_options())
            .await
            .with_context(|| format!("connecting a pool to {} on port {}", self.name, self.port))
    }

    async fn connect_with(&self, options: &MySqlConnectOptions) -> Result<MySqlConnection> {
        match tokio::time::timeout(CONNECT_TIMEOUT, MySqlConnection::connect_with(options)).await {
            Ok(conn) => {
                conn.with_context(|| format!("connecting to {} on port {}", self.name, self.port))
            }
            Err(_) => bail!(
                "connecting to {} on port {}: no answer within {CONNECT_TIMEOUT:?}",
                self.name,
                self.port
            ),
        }
    }

    /// Runs `sql` (one or more statements, text protocol) as the administrator.
    pub async fn exec(&self, sql: &str) -> Result<()> {
        let mut conn = self.connect_with(&self.admin_options()).await?;
        let result = conn.execute(sqlx::raw_sql(sql)).await;
        close(conn).await;
        result.with_context(|| format!("on {}: {sql}", self.name))?;
        Ok(())
    }

    /// Runs a query as the administrator and returns the first column of
    /// its first row as text (whatever its SQL type); `None` for no row or
    /// SQL NULL.
    pub async fn query_text(&self, sql: &str) -> Result<Option<String>> {
        let row = self.query_first_row(sql).await?;
        match row {
            None => Ok(None),
            Some(row) => {
                if row.columns().is_empty() {
                    bail!("on {}: {sql} returned no columns", self.name);
                }
                row.try_get_unchecked::<Option<String>, _>(0)
                    .with_context(|| format!("on {}: reading the result of {sql}", self.name))
            }
        }
    }

    /// Runs a query returning one integer (e.g. `SELECT COUNT(*) ..`).
    pub async fn query_i64(&self, sql: &str) -> Result<i64> {
        let text = self
            .query_text(sql)
            .await?
            .with_context(|| format!("on {}: {sql} returned no row or NULL", self.name))?;
        text.trim()
            .parse()
            .with_context(|| format!("on {}: {sql} returned {text:?}, not an integer", self.name))
    }

    /// Runs a query as the administrator and returns its first row, every
    /// column by name as text (SQL NULL: `None`): for `SHOW SLAVE STATUS`
    /// and `SHOW MASTER STATUS`. `None` when there is no row.
    pub async fn query_row(&self, sql: &str) -> Result<Option<BTreeMap<String, Option<String>>>> {
        let Some(row) = self.query_first_row(sql).await? else {
            return Ok(None);
        };
        row_as_text(&row)
            .map(Some)
            .with_context(|| format!("on {}: reading the result of {sql}", self.name))
    }

    async fn query_first_row(&self, sql: &str) -> Result<Option<MySqlRow>> {
        let mut conn = self.connect_with(&self.admin_options()).await?;
        let row = conn.fetch_optional(sqlx::raw_sql(sql)).await;
        close(conn).await;
        row.with_context(|| format!("on {}: {sql}", self.name))
    }

    /// The last `lines` lines of the server log (empty if there is none yet).
    pub fn log_tail(&self, lines: usize) -> String {
        let Ok(bytes) = fs::read(&self.log_file) else {
            return String::new();
        };
        let text = String::from_utf8_lossy(&bytes);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Gives `path` to the server's OS user (no-op when not root).
    fn hand_over(&self, path: &Path) -> Result<()> {
        if let Some(user) = &self.os_user {
            std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
                .with_context(|| format!("chown {} to {}", path.display(), user.name))?;
        }
        Ok(())
    }

    /// (Re)writes `my.cnf` (0644: mariadbd ignores a world-writable one; it
    /// holds no secret).
    fn write_conf(&self) -> Result<()> {
        let s = &self.settings;
        let on = |b: bool| if b { "ON" } else { "OFF" };
        let mut conf = String::new();
        let _ = writeln!(
            conf,
            "# Written by palisade-testkit for server {:?}: its only option file.",
            self.name
        );
        let _ = writeln!(conf, "[mysqld]");
        let _ = writeln!(conf, "datadir = {}", self.data_dir.display());
        let _ = writeln!(conf, "socket = {}", self.socket.display());
        let _ = writeln!(conf, "pid-file = {}", self.pid_file.display());
        let _ = writeln!(conf, "log-error = {}", self.log_file.display());
        let _ = writeln!(conf, "tmpdir = {}", self.root.join("tmp").display());
        let _ = writeln!(conf, "bind-address = {}", self.host);
        let _ = writeln!(conf, "port = {}", self.port);
        let _ = writeln!(conf, "skip-name-resolve");
        let _ = writeln!(conf, "# The guide's replication settings.");
        let _ = writeln!(conf, "server-id = {}", self.server_id);
        let _ = writeln!(conf, "auto_increment_offset = {}", s.auto_increment_offset);
        let _ = writeln!(conf, "auto_increment_increment = 2");
        let _ = writeln!(conf, "sync_binlog = 1");
        let _ = writeln!(conf, "log-bin = {BINLOG_BASENAME}");
        let _ = writeln!(conf, "# Beyond the guide (see palisade_testkit::mariadb).");
        let _ = writeln!(conf, "relay-log = relay-bin");
        let _ = writeln!(conf, "log_slave_updates = {}", on(s.log_slave_updates));
        let _ = writeln!(conf, "gtid_strict_mode = {}", on(s.gtid_strict_mode));
        let _ = writeln!(conf, "slave_net_timeout = {SLAVE_NET_TIMEOUT_S}");
        if s.semi_sync {
            let _ = writeln!(conf, "rpl_semi_sync_master_enabled = ON");
            let _ = writeln!(conf, "rpl_semi_sync_slave_enabled = ON");
            let _ = writeln!(
                conf,
                "rpl_semi_sync_master_timeout = {SEMI_SYNC_TIMEOUT_MS}"
            );
        }
        let _ = writeln!(conf, "innodb_buffer_pool_size = 16M");
        let _ = writeln!(conf, "innodb_log_file_size = 16M");
        let _ = writeln!(conf, "innodb_flush_log_at_trx_commit = 1");
        let _ = writeln!(conf, "max_connections = 50");
        let _ = writeln!(conf, "character-set-server = utf8mb4");
        let _ = writeln!(conf, "collation-server = utf8mb4_general_ci");
        fs::write(&self.defaults_file, conf)
            .with_context(|| format!("writing {}", self.defaults_file.display()))?;
        fs::set_permissions(&self.defaults_file, fs::Permissions::from_mode(0o644))
            .with_context(|| format!("chmod 0644 {}", self.defaults_file.display()))
    }

    /// `mariadb-install-db` into the data directory: system tables, and
    /// `root@localhost` without a password (`normal` authentication).
    fn install(&self, install_db: &Path) -> Result<()> {
        let mut cmd = Command::new(install_db);
        cmd.arg(format!("--defaults-file={}", self.defaults_file.display()));
        if let Some(user) = &self.os_user {
            cmd.arg(format!("--user={}", user.name));
        }
        cmd.args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .current_dir(&self.root)
            .stdin(Stdio::null());
        let out = cmd
            .output()
            .with_context(|| format!("running {}", install_db.display()))?;
        if !out.status.success() {
            bail!(
                "mariadb-install-db for {} failed ({}): {}\n--- server log tail:\n{}",
                self.name,
                out.status,
                output_text(&out),
                self.log_tail(20)
            );
        }
        Ok(())
    }

    /// Starts a freshly installed server; when its port was taken meanwhile
    /// (another test, another process), moves to a new free port and retries.
    fn start_new(&mut self) -> Result<()> {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            match self.start() {
                Ok(()) => return Ok(()),
                Err(e)
                    if attempt < ATTEMPTS
                        && self.log_tail(20).contains("Address already in use") =>
                {
                    let port = free_ports(1)?[0];
                    tracing::debug!(server = %self.name, old = self.port, new = port, error = %e, "port taken, retrying");
                    self.port = port;
                    self.write_conf()?;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Creates the pair's users on this server only (`sql_log_bin = 0`),
    /// drops `root`'s TCP accounts, and creates the application's database
    /// when asked (for a server that does not replicate).
    async fn bootstrap(&self, create_app_db: bool) -> Result<()> {
        let mut conn = self
            .connect_with(&self.root_options())
            .await
            .context("connecting as root over the unix socket")?;
        let result = async {
            conn.execute("SET SESSION sql_log_bin = 0").await?;
            let hosts: Vec<String> = conn
                .fetch_all(sqlx::raw_sql(
                    "SELECT Host FROM mysql.user WHERE User = 'root' AND Host <> 'localhost'",
                ))
                .await?
                .iter()
                .map(|row| row.try_get_unchecked::<String, _>(0))
                .collect::<Result<_, _>>()?;
            let mut sql = String::new();
            for host in hosts {
                let _ = write!(sql, "DROP USER 'root'@'{host}';");
            }
            for host in ["127.0.0.1", "localhost"] {
                let _ = write!(
                    sql,
                    "CREATE USER '{MARIA_ADMIN_USER}'@'{host}' IDENTIFIED BY '{MARIA_ADMIN_PASSWORD}';\
                     GRANT ALL PRIVILEGES ON *.* TO '{MARIA_ADMIN_USER}'@'{host}' WITH GRANT OPTION;"
                );
            }
            let _ = write!(
                sql,
                "CREATE USER '{MARIA_REPLICATION_USER}'@'127.0.0.1' IDENTIFIED BY '{MARIA_REPLICATION_PASSWORD}';\
                 GRANT REPLICATION SLAVE ON *.* TO '{MARIA_REPLICATION_USER}'@'127.0.0.1';\
                 CREATE USER '{MARIA_APP_USER}'@'127.0.0.1' IDENTIFIED BY '{MARIA_APP_PASSWORD}';\
                 GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER \
                   ON `{MARIA_APP_DATABASE}`.* TO '{MARIA_APP_USER}'@'127.0.0.1';"
            );
            if create_app_db {
                let _ = write!(sql, "CREATE DATABASE `{MARIA_APP_DATABASE}`;");
            }
            conn.execute(sqlx::raw_sql(&sql)).await?;
            Ok::<_, sqlx::Error>(())
        }
        .await;
        close(conn).await;
        // The statements carry passwords: name the server, not the SQL.
        result.with_context(|| format!("creating the users on {}", self.name))
    }

    /// `SHOW MASTER STATUS`: the binary log file and position.
    pub async fn master_status(&self) -> Result<(String, u64)> {
        let row = self
            .query_row("SHOW MASTER STATUS")
            .await?
            .with_context(|| {
                format!(
                    "{}: SHOW MASTER STATUS returned no row (no binary log?)",
                    self.name
                )
            })?;
        let file = column(&row, "File")?;
        let pos = column(&row, "Position")?;
        let pos = pos
            .parse()
            .with_context(|| format!("{}: SHOW MASTER STATUS Position {pos:?}", self.name))?;
        Ok((file, pos))
    }

    /// `CHANGE MASTER TO` the guide's way (plus `MASTER_PORT` and a quick
    /// `MASTER_CONNECT_RETRY`), from `file`/`pos` of `master`, then `START
    /// SLAVE`.
    async fn replicate_from(&self, master: &MariaServer, file: &str, pos: u64) -> Result<()> {
        let sql = format!(
            "CHANGE MASTER TO MASTER_HOST='{host}', MASTER_PORT={port}, \
             MASTER_USER='{MARIA_REPLICATION_USER}', MASTER_PASSWORD='{MARIA_REPLICATION_PASSWORD}', \
             MASTER_LOG_FILE='{file}', MASTER_LOG_POS={pos}, MASTER_CONNECT_RETRY={CONNECT_RETRY_S};\
             START SLAVE;",
            host = master.host,
            port = master.port
        );
        let mut conn = self.connect_with(&self.admin_options()).await?;
        let result = conn.execute(sqlx::raw_sql(&sql)).await;
        close(conn).await;
        // The statement carries a password: name the servers, not the SQL.
        result.with_context(|| {
            format!(
                "on {}: CHANGE MASTER TO {} ({file}, {pos}) and START SLAVE",
                self.name, master.name
            )
        })?;
        Ok(())
    }

    /// What [`MariaPair::wait_in_sync`] compares, read in one go.
    async fn sync_view(&self) -> Result<SyncView> {
        let master = self.master_status().await?;
        let slave = self
            .query_row("SHOW SLAVE STATUS")
            .await?
            .with_context(|| {
                format!(
                    "{}: SHOW SLAVE STATUS returned no row (not replicating)",
                    self.name
                )
            })?;
        let gtid_current_pos = self
            .query_text("SELECT @@global.gtid_current_pos")
            .await?
            .unwrap_or_default();
        let num = |name: &str| -> Result<u64> {
            let text = column(&slave, name)?;
            text.parse()
                .with_context(|| format!("{}: SHOW SLAVE STATUS {name} {text:?}", self.name))
        };
        Ok(SyncView {
            master,
            read: (
                column(&slave, "Master_Log_File")?,
                num("Read_Master_Log_Pos")?,
            ),
            exec: (
                column(&slave, "Relay_Master_Log_File")?,
                num("Exec_Master_Log_Pos")?,
            ),
            io_running: column(&slave, "Slave_IO_Running")?,
            sql_running: column(&slave, "Slave_SQL_Running")?,
            last_io_error: column(&slave, "Last_IO_Error")?,
            last_sql_error: column(&slave, "Last_SQL_Error")?,
            gtid_current_pos,
        })
    }

    /// Waits until both replication threads run (the IO thread connected).
    async fn wait_replicating(&self) -> Result<()> {
        let what = format!("{}'s replication threads to run", self.name);
        wait_for(&what, REPLICATION_TIMEOUT, async || {
            match self.sync_view().await {
                Ok(v) if v.io_running == "Yes" && v.sql_running == "Yes" => Attempt::Ready(()),
                Ok(v) if v.io_running == "No" || v.sql_running == "No" => Attempt::GiveUp(anyhow!(
                    "{}: Slave_IO_Running {}, Slave_SQL_Running {}, Last_IO_Error {:?}, Last_SQL_Error {:?}",
                    self.name,
                    v.io_running,
                    v.sql_running,
                    v.last_io_error,
                    v.last_sql_error
                )),
                Ok(v) => Attempt::NotYet(format!(
                    "Slave_IO_Running {}, Slave_SQL_Running {}, Last_IO_Error {:?}",
                    v.io_running, v.sql_running, v.last_io_error
                )),
                Err(e) => Attempt::NotYet(format!("{e:#}")),
            }
        })
        .await
        .map_err(|e| anyhow!("{e:#}\n--- {} log:\n{}", self.name, self.log_tail(15)))
    }

    /// Waits until this server counts a semi-sync replica
    /// (`Rpl_semi_sync_master_clients` ≥ 1).
    async fn wait_semi_sync_client(&self) -> Result<()> {
        let what = format!("{} to count a semi-sync replica", self.name);
        wait_for(&what, REPLICATION_TIMEOUT, async || {
            let row = self
                .query_row("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_clients'")
                .await;
            match row {
                Ok(Some(row)) => match column(&row, "Value") {
                    Ok(v) if v.parse::<u32>().is_ok_and(|n| n >= 1) => Ok(()),
                    Ok(v) => Err(format!("Rpl_semi_sync_master_clients = {v}")),
                    Err(e) => Err(format!("{e:#}")),
                },
                Ok(None) => Err("no Rpl_semi_sync_master_clients".to_owned()),
                Err(e) => Err(format!("{e:#}")),
            }
        })
        .await
    }

    /// Kills the server for good, whatever state it is in. Idempotent.
    fn shut_down_for_good(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(mut child) = child.take() {
            // SIGKILL works on a frozen process too.
            let _ = child.kill();
            let _ = child.wait();
        }
        // A server this harness did not start (a site agent's restart)
        // leaves its pid in the pid file: kill it too, once its command
        // line proves it is this server (a mariadbd with this server's
        // option file), never a process that reused the pid.
        let pid = std::fs::read_to_string(self.pid_file())
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        if let Some(pid) = pid.filter(|p| *p > 1) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            let defaults = self.defaults_file().display().to_string();
            if cmdline.contains("mariadbd") && cmdline.contains(&defaults) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

impl Drop for MariaServer {
    fn drop(&mut self) {
        self.shut_down_for_good();
    }
}

/// One server's replication state as [`MariaPair::wait_in_sync`] compares it.
#[derive(Debug)]
struct SyncView {
    /// Its own `SHOW MASTER STATUS` (file, position).
    master: (String, u64),
    /// `Master_Log_File`, `Read_Master_Log_Pos`: what its IO thread received.
    read: (String, u64),
    /// `Relay_Master_Log_File`, `Exec_Master_Log_Pos`: what its SQL thread applied.
    exec: (String, u64),
    io_running: String,
    sql_running: String,
    last_io_error: String,
    last_sql_error: String,
    gtid_current_pos: String,
}

impl SyncView {
    /// Why this server has not applied everything `master` wrote, or
    /// `None` when it has.
    fn lag_behind(&self, name: &str, master: &SyncView) -> Option<String> {
        if self.read != master.master {
            return Some(format!(
                "{name} received up to {:?}, the other wrote up to {:?}",
                self.read, master.master
            ));
        }
        if self.exec != self.read {
            return Some(format!(
                "{name} applied up to {:?} of {:?} received",
                self.exec, self.read
            ));
        }
        None
    }

    /// A replication thread that stopped: waiting cannot help.
    fn stopped(&self, name: &str) -> Option<String> {
        (self.io_running == "No" || self.sql_running == "No").then(|| {
            format!(
                "{name}: Slave_IO_Running {}, Slave_SQL_Running {}, Last_IO_Error {:?}, Last_SQL_Error {:?}",
                self.io_running, self.sql_running, self.last_io_error, self.last_sql_error
            )
        })
    }
}

/// Two MariaDB servers replicating each other (or, with
/// [`MariaPairOptions::skip_replication`], two independent ones), in one
/// temp dir. Dropping it kills both servers and removes the directory.
#[derive(Debug)]
pub struct MariaPair {
    /// `server-id` 1, `auto_increment_offset` 1 (by default): the guide's
    /// primary, where the application's database was created.
    pub a: MariaServer,
    /// `server-id` 2, `auto_increment_offset` 2 (by default): the guide's
    /// secondary.
    pub b: MariaServer,
    /// Whether the servers replicate each other.
    replicating: bool,
    /// Declared last so it is removed after the servers have stopped.
    dir: TempDir,
}

impl MariaPair {
    /// Starts the guide's pair and waits until both directions replicate
    /// and the application's database has reached `b`.
    pub async fn start() -> Result<MariaPair> {
        Self::start_with(MariaPairOptions::default()).await
    }

    /// Starts a pair as `opts` says (see [`MariaPairOptions`]) and waits
    /// until both directions replicate and are in sync.
    pub async fn start_with(opts: MariaPairOptions) -> Result<MariaPair> {
        let started = Instant::now();
        let (mariadbd, install_db) = require_tools()?;
        let dir = tempfile::Builder::new()
            .prefix("palisade-maria-")
            .tempdir()
            .context("creating the pair's directory")?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod 0755 {}", dir.path().display()))?;
        let (offset_a, offset_b) = opts.auto_increment_offsets.unwrap_or((1, 2));
        let settings = |auto_increment_offset| Settings {
            auto_increment_offset,
            log_slave_updates: opts.log_slave_updates,
            gtid_strict_mode: opts.gtid_strict_mode,
            semi_sync: opts.semi_sync,
        };
        let ports = free_ports(2)?;
        let mut a =
            MariaServer::layout(dir.path(), "a", 1, ports[0], &mariadbd, settings(offset_a))?;
        let mut b =
            MariaServer::layout(dir.path(), "b", 2, ports[1], &mariadbd, settings(offset_b))?;

        // Install and start both at once: each is mostly waiting on disk.
        let (a, b) = blocking(move || {
            let (ra, rb) = std::thread::scope(|scope| {
                let other = scope.spawn(|| {
                    b.install(&install_db)?;
                    b.start_new()
                });
                let ra = a.install(&install_db).and_then(|()| a.start_new());
                let rb = other
                    .join()
                    .unwrap_or_else(|_| Err(anyhow!("setting up server b panicked")));
                (ra, rb)
            });
            ra?;
            rb?;
            Ok((a, b))
        })
        .await?;

        let replicating = !opts.skip_replication;
        a.bootstrap(!replicating).await?;
        b.bootstrap(!replicating).await?;
        let pair = MariaPair {
            a,
            b,
            replicating,
            dir,
        };
        if replicating {
            pair.start_replication(opts.semi_sync).await?;
        }
        tracing::info!(
            dir = %pair.dir().display(),
            a_port = pair.a.port,
            b_port = pair.b.port,
            replicating,
            log_slave_updates = opts.log_slave_updates,
            gtid_strict_mode = opts.gtid_strict_mode,
            semi_sync = opts.semi_sync,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "MariaDB pair running"
        );
        Ok(pair)
    }

    /// The guide's steps 7 to 13: each server replicates from the other's
    /// current binary log position; then the application's database is
    /// created on `a` and awaited on `b`.
    async fn start_replication(&self, semi_sync: bool) -> Result<()> {
        let (a_file, a_pos) = self.a.master_status().await?;
        let (b_file, b_pos) = self.b.master_status().await?;
        self.b.replicate_from(&self.a, &a_file, a_pos).await?;
        self.a.replicate_from(&self.b, &b_file, b_pos).await?;
        self.a.wait_replicating().await?;
        self.b.wait_replicating().await?;
        if semi_sync {
            self.a.wait_semi_sync_client().await?;
            self.b.wait_semi_sync_client().await?;
        }
        self.a
            .exec(&format!("CREATE DATABASE `{MARIA_APP_DATABASE}`"))
            .await?;
        self.wait_in_sync().await
    }

    /// The pair's temp directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Waits (up to 30 s) until each server has received everything the
    /// other's binary log holds (`Master_Log_File`/`Read_Master_Log_Pos`
    /// equal the other's `SHOW MASTER STATUS`), its SQL thread has applied
    /// all it received (`Relay_Master_Log_File`/`Exec_Master_Log_Pos`
    /// equal those), and both `@@gtid_current_pos` are equal: the same
    /// sequence number in every replication domain. Fails at once when a
    /// replication thread has stopped (`No`), naming its error.
    ///
    /// Only the sequence numbers are compared, not the server ids: writes
    /// on both servers that take the same sequence number (concurrent ones,
    /// or ones made while replication was stopped) leave the two
    /// `gtid_current_pos` different for good, `0-2-N` on `a` and `0-1-N`
    /// on `b` (at an equal sequence number each prefers its
    /// `gtid_slave_pos`, the other's write), until the next write on
    /// either; the pair is in sync all the same.
    pub async fn wait_in_sync(&self) -> Result<()> {
        if !self.replicating {
            bail!("the servers do not replicate (MariaPairOptions::skip_replication)");
        }
        let (a, b) = (&self.a, &self.b);
        wait_for(
            "both servers to have applied everything the other wrote",
            REPLICATION_TIMEOUT,
            async || {
                let (va, vb) = match (a.sync_view().await, b.sync_view().await) {
                    (Ok(va), Ok(vb)) => (va, vb),
                    (Err(e), _) | (_, Err(e)) => return Attempt::NotYet(format!("{e:#}")),
                };
                if let Some(stopped) = va.stopped("a").or_else(|| vb.stopped("b")) {
                    return Attempt::GiveUp(anyhow!(stopped));
                }
                if let Some(lag) = vb.lag_behind("b", &va).or_else(|| va.lag_behind("a", &vb)) {
                    return Attempt::NotYet(lag);
                }
                if gtid_seq_nos(&va.gtid_current_pos) != gtid_seq_nos(&vb.gtid_current_pos) {
                    return Attempt::NotYet(format!(
                        "gtid_current_pos a {:?}, b {:?}",
                        va.gtid_current_pos, vb.gtid_current_pos
                    ));
                }
                Attempt::Ready(())
            },
        )
        .await
        .map_err(|e| {
            anyhow!(
                "{e:#}\n--- a log:\n{}\n--- b log:\n{}",
                a.log_tail(10),
                b.log_tail(10)
            )
        })
    }
}

/// A MariaDB GTID position (`D-S-N,D-S-N`, one GTID per domain) as
/// domain → sequence number; an entry that does not parse is kept whole,
/// so that it compares unequal rather than vanish.
fn gtid_seq_nos(pos: &str) -> BTreeMap<String, String> {
    pos.split(',')
        .map(str::trim)
        .filter(|gtid| !gtid.is_empty())
        .map(|gtid| {
            let parts: Vec<&str> = gtid.split('-').collect();
            match parts.as_slice() {
                [domain, _server, seq] => ((*domain).to_owned(), (*seq).to_owned()),
                _ => (gtid.to_owned(), String::new()),
            }
        })
        .collect()
}

/// Whether a MariaDB server at `addr` sends its handshake: the port
/// accepts connections and the server serves them (it queues connections
/// from the moment it listens, but greets only once it is ready). `Err`
/// says what was seen instead.
fn greeting(addr: SocketAddr) -> std::result::Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| format!("set_read_timeout: {e}"))?;
    // A packet: 3 bytes length, 1 byte sequence, then the payload, whose
    // first byte is the protocol version (10) or 0xff for an error.
    let mut head = [0u8; 5];
    stream
        .read_exact(&mut head)
        .map_err(|e| format!("reading the handshake: {e}"))?;
    match head[4] {
        10 => Ok(()),
        0xff => Err("the server answered with an error packet".to_owned()),
        other => Err(format!("unexpected first handshake byte {other:#x}")),
    }
}

/// A column of a [`MariaServer::query_row`] result; NULL reads as "".
fn column(row: &BTreeMap<String, Option<String>>, name: &str) -> Result<String> {
    row.get(name)
        .map(|v| v.clone().unwrap_or_default())
        .with_context(|| format!("no column {name} in the result"))
}

/// Every column of `row` by name, as text. The harness reads with the text
/// protocol (`raw_sql`), where every value arrives as text whatever its
/// SQL type.
fn row_as_text(row: &MySqlRow) -> Result<BTreeMap<String, Option<String>>> {
    use sqlx::Column as _;
    row.columns()
        .iter()
        .map(|col| {
            let value = row
                .try_get_unchecked::<Option<String>, _>(col.ordinal())
                .with_context(|| format!("reading column {}", col.name()))?;
            Ok((col.name().to_owned(), value))
        })
        .collect()
}

/// Runs blocking setup work (mariadb-install-db, starting servers) off the
/// async runtime's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| anyhow!("setup task failed: {join}"))?
}

/// Returns `n` distinct loopback ports that were free a moment ago (all
/// bound at once so they differ; released before returning).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .context("binding 127.0.0.1:0 to find a free port")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr().context("reading a bound port")?.port()))
        .collect()
}

fn child_pid(child: &Child) -> i32 {
    i32::try_from(child.id()).expect("Linux PIDs fit in i32")
}

fn output_text(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    format!("{}\n{}", stdout.trim(), stderr.trim())
        .trim()
        .to_owned()
}

async fn close(conn: MySqlConnection) {
    if let Err(e) = conn.close().await {
        tracing::debug!(error = %e, "closing a harness connection failed");
    }
}

/// The table [`MariaWriter`] writes its numbered rows to, in
/// [`MARIA_APP_DATABASE`].
pub const MARIA_WRITES_TABLE: &str = "writes";

/// How long one statement of a [`MariaWriter`] may take before its fate
/// counts as unknown (a semi-sync commit waiting for a replica that is
/// gone, a frozen server) and the writer tries the other server.
const WRITER_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

impl MariaServer {
    /// The application user's connect options over TCP, with its database
    /// ([`MARIA_APP_DATABASE`]) selected: what an application server
    /// connects as. `read_only` stops its writes.
    pub fn app_options(&self) -> MySqlConnectOptions {
        self.tcp_options(MARIA_APP_USER, MARIA_APP_PASSWORD)
            .database(MARIA_APP_DATABASE)
            .disable_statement_logging()
    }

    /// Every `id` of `` `app`.`table` ``, read as the administrator (for
    /// the no-loss checks of [`MariaWriter`]'s acknowledged writes).
    pub async fn ids(&self, table: &str) -> Result<std::collections::BTreeSet<i64>> {
        let sql = format!("SELECT id FROM `{MARIA_APP_DATABASE}`.`{table}`");
        let mut conn = self.connect_with(&self.admin_options()).await?;
        let rows = conn.fetch_all(sqlx::raw_sql(&sql)).await;
        close(conn).await;
        let rows = rows.with_context(|| format!("on {}: {sql}", self.name))?;
        rows.iter()
            .map(|row| {
                let text: String = row
                    .try_get_unchecked(0)
                    .with_context(|| format!("on {}: reading the result of {sql}", self.name))?;
                text.trim().parse::<i64>().with_context(|| {
                    format!("on {}: {sql} returned {text:?}, not an integer", self.name)
                })
            })
            .collect()
    }
}

/// A client that writes numbered rows (`INSERT INTO writes (id)`) as the
/// application user to whichever master of a [`MariaPair`] takes them, as
/// an application behind a front door would: the MariaDB counterpart of
/// [`crate::writer::Writer`]. On an error (a server that is down, or
/// read-only: error 1290) it tries the other master. Ids that got an error
/// or no answer within 5 s are never retried (their fate is unknown);
/// only acknowledged ones are recorded, as [`crate::writer::Ack`]s whose
/// `site` is `a` or `b`.
pub struct MariaWriter {
    acks: std::sync::Arc<Mutex<Vec<crate::writer::Ack>>>,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl MariaWriter {
    /// Creates `app.writes` on `a` (as the administrator; it replicates to
    /// `b`) and starts writing, first to `a`.
    pub async fn start(pair: &MariaPair) -> Result<MariaWriter> {
        pair.a
            .exec(&format!(
                "CREATE TABLE IF NOT EXISTS `{MARIA_APP_DATABASE}`.`{MARIA_WRITES_TABLE}` \
                 (id BIGINT PRIMARY KEY) ENGINE = InnoDB"
            ))
            .await?;
        let servers = [("a", pair.a.app_options()), ("b", pair.b.app_options())];
        let acks = std::sync::Arc::new(Mutex::new(Vec::new()));
        let stop = tokio_util::sync::CancellationToken::new();
        let (out, halt) = (acks.clone(), stop.clone());
        let insert = format!("INSERT INTO `{MARIA_WRITES_TABLE}` (id) VALUES (?)");
        let task = tokio::spawn(async move {
            let mut current = 0usize;
            let mut conn: Option<MySqlConnection> = None;
            let mut id = 0i64;
            while !halt.is_cancelled() {
                let (site, opts) = &servers[current];
                if conn.is_none() {
                    conn = tokio::select! {
                        _ = halt.cancelled() => break,
                        c = tokio::time::timeout(CONNECT_TIMEOUT, MySqlConnection::connect_with(opts)) => {
                            c.ok().and_then(|c| c.ok())
                        }
                    };
                }
                let Some(c) = conn.as_mut() else {
                    current = 1 - current;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                id += 1;
                let done = tokio::select! {
                    _ = halt.cancelled() => break,
                    r = tokio::time::timeout(
                        WRITER_STATEMENT_TIMEOUT,
                        sqlx::query(&insert).bind(id).execute(&mut *c),
                    ) => matches!(r, Ok(Ok(_))),
                };
                if done {
                    out.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(crate::writer::Ack {
                            id,
                            at: Instant::now(),
                            site,
                        });
                } else {
                    conn = None;
                    current = 1 - current;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        Ok(MariaWriter { acks, stop, task })
    }

    /// Every acknowledged write so far.
    pub fn acks(&self) -> Vec<crate::writer::Ack> {
        self.acks.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits (up to [`crate::cluster::SETTLE`]) until `site` has
    /// acknowledged `n` writes.
    pub async fn wait_acks_at(&self, site: &str, n: usize) -> Result<()> {
        let what = format!("the writer to get {n} writes acknowledged by {site}");
        wait_for(&what, crate::cluster::SETTLE, async || {
            let have = self.acks().iter().filter(|a| a.site == site).count();
            if have >= n {
                Ok(())
            } else {
                Err(format!("{have} so far"))
            }
        })
        .await
    }

    /// Stops writing (a statement in flight is abandoned: its fate is
    /// unknown and it is not recorded) and returns every acknowledged write.
    pub async fn stop(self) -> Vec<crate::writer::Ack> {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the MariaDB writer task failed");
        }
        self.acks.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_positions_compare_by_domain_and_sequence_number() {
        assert_eq!(gtid_seq_nos("0-1-5"), gtid_seq_nos("0-2-5"));
        assert_ne!(gtid_seq_nos("0-1-5"), gtid_seq_nos("0-1-6"));
        assert_eq!(gtid_seq_nos("0-1-5,1-2-3"), gtid_seq_nos("1-1-3, 0-2-5"));
        assert_ne!(gtid_seq_nos("0-1-5"), gtid_seq_nos("0-1-5,1-1-1"));
        assert_eq!(gtid_seq_nos(""), BTreeMap::new());
        assert_ne!(gtid_seq_nos("garbage"), gtid_seq_nos(""));
    }
}
