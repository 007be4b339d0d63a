//! Real PostgreSQL for tests: a primary and a streaming standby on loopback
//! ports, set up the way the HA/DR guide's "Setting Up Replication for
//! PostgreSQL Databases" section says (streaming, asynchronous by default).
//!
//! Each [`PgPair`] lives in its own temporary directory (`palisade-pg-*`
//! under [`std::env::temp_dir`]) with its own free ports, so tests can run
//! in parallel. Dropping the pair stops both servers with `pg_ctl stop -m
//! immediate` and removes every file, also when the test panicked.
//!
//! PostgreSQL refuses to run as root. When the tests run as root the servers
//! and their tools run as the OS user `postgres` (through `runuser`), and the
//! directories are handed to that user.
//!
//! Layout of a pair's directory:
//!
//! ```text
//! palisade-pg-XXXXXX/            0755
//!   primary/                     0755, owned by the server's OS user
//!     data/                      0700, the cluster (initdb)
//!     sock/                      unix_socket_directories
//!     server.log                 pg_ctl -l
//!   standby/                     same, data/ from pg_basebackup -R
//! ```
//!
//! What differs from a production setup, and why:
//! * `initdb` and `pg_basebackup` run with `--no-sync`: only a power loss
//!   could lose their unsynced files, and tests only kill processes. The
//!   servers themselves keep `fsync = on`, so crash tests stay honest.
//! * `wal_sender_timeout` / `wal_receiver_timeout` are 5 s (default 60 s) and
//!   `wal_retrieve_retry_interval` is 500 ms, so a standby notices a hung
//!   primary and reconnects to a restarted one within a test's patience.
//!   The two timeouts are equal and longer than palisade's default
//!   `sync_degrade_after_ms` (3 s), as docs/operations.md asks of
//!   production: in `sync` mode palisade degrades on evidence before either
//!   side drops the connection.
//! * `shared_buffers = 16MB` and `max_connections = 50` keep several pairs
//!   light enough to run side by side.
//!
//! The pair lives on loopback unless it is placed in network namespaces
//! ([`PgPair::start_in_namespaces`], for chaos-tests' sites): then each
//! server listens on its site's address inside its site's namespace, and
//! every tool runs there (`ip netns exec NS`).
//!
//! The blocking methods of [`PgServer`] (`start`, `stop_fast`, `kill9`, ...)
//! run processes and wait for them; call them from tests, not from code that
//! must keep a runtime thread responsive.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use palisade_core::observe::parse_lsn;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tempfile::TempDir;

use crate::procs::{self, children_of, is_zombie, wait_gone, Proc};
use crate::wait::{wait_for, Attempt};

/// Superuser created by `initdb` in every test cluster (password auth over TCP).
pub const SUPERUSER: &str = "palisade";
/// Password of [`SUPERUSER`]: distinctive, so that CI can grep every log a
/// test run left for it (`.ci/check-secrets`); see [`TEST_SECRETS`].
pub const SUPERUSER_PASSWORD: &str = "palisade-test-secret-5f3a9c";
/// Role standbys replicate as (`CREATE USER .. REPLICATION LOGIN`, as the guide says).
pub const REPLICATION_USER: &str = "replicator";
/// Password of [`REPLICATION_USER`]; see [`TEST_SECRETS`].
pub const REPLICATION_PASSWORD: &str = "palisade-test-secret-repl-7d21e0";
/// Every secret the test kit hands out: none may appear in any log, status,
/// error or report of a test run (`.ci/check-secrets` greps for their common
/// prefix, [`TEST_SECRET_PREFIX`]).
pub const TEST_SECRETS: [&str; 2] = [SUPERUSER_PASSWORD, REPLICATION_PASSWORD];
/// The prefix every test secret shares; `.ci/check-secrets` greps for it.
pub const TEST_SECRET_PREFIX: &str = "palisade-test-secret";
/// OS user the servers run as when the tests run as root.
pub const ROOT_FALLBACK_OS_USER: &str = "postgres";

/// How long a single SQL connection attempt of the harness may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a pair may take to start streaming after the standby started.
const STREAMING_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll interval of the blocking waits (which cannot use [`wait_for`]).
const POLL: Duration = Duration::from_millis(50);
/// `wal_sender_timeout` and `wal_receiver_timeout` of a loopback pair.
const WAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Environment variables that would redirect libpq tools away from the
/// servers we name explicitly (a developer's shell may set them).
const LIBPQ_ENV: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGDATABASE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGDATA",
    "PGSSLMODE",
    "PGAPPNAME",
];

/// Returns the directory holding the PostgreSQL server binaries (`initdb`,
/// `pg_ctl`, `postgres`, `pg_basebackup`, ...): found through the first
/// `initdb` on `PATH` (symlinks resolved, since a `PATH` entry may hold only
/// links to a few of the tools), else the newest
/// `/usr/lib/postgresql/<major>/bin` (Debian's layout). `None` when neither
/// has the server tools.
pub fn pg_bin_dir() -> Option<PathBuf> {
    let has_server_tools = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres", "pg_basebackup"]
            .iter()
            .all(|tool| is_executable(&dir.join(tool)))
    };
    if let Some(path) = std::env::var_os("PATH") {
        let on_path = std::env::split_paths(&path)
            .map(|dir| dir.join("initdb"))
            .filter(|initdb| is_executable(initdb))
            .filter_map(|initdb| Some(fs::canonicalize(initdb).ok()?.parent()?.to_owned()))
            .find(|dir| has_server_tools(dir));
        if on_path.is_some() {
            return on_path;
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_server_tools(&bin).then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Like [`pg_bin_dir`], but panics with an install hint when PostgreSQL is
/// missing: a test that needs a real server cannot do anything useful
/// without one, and a loud failure beats a silent skip.
pub fn require_pg_bin_dir() -> PathBuf {
    pg_bin_dir().unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries not found; install them: apt-get install -y postgresql-15"
        )
    })
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The OS account the servers run as when we are root.
#[derive(Clone, Debug)]
struct OsUser {
    name: String,
    uid: u32,
    gid: u32,
}

/// `None` when we are not root (servers run as us), the `postgres` account
/// otherwise. Looked up once per test process.
fn server_os_user() -> Result<Option<OsUser>> {
    static USER: OnceLock<std::result::Result<Option<OsUser>, String>> = OnceLock::new();
    USER.get_or_init(|| {
        let lookup = || -> Result<Option<OsUser>> {
            if id(&["-u"])? != 0 {
                return Ok(None);
            }
            let name = ROOT_FALLBACK_OS_USER;
            let uid = id(&["-u", name]).with_context(|| {
                format!("running as root, so PostgreSQL must run as OS user `{name}`, which was not found")
            })?;
            let gid = id(&["-g", name])?;
            Ok(Some(OsUser { name: name.to_owned(), uid, gid }))
        };
        lookup().map_err(|e| format!("{e:#}"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Runs `id ARGS` and parses the number it prints (`id` goes through NSS,
/// unlike reading /etc/passwd).
fn id(args: &[&str]) -> Result<u32> {
    let out = Command::new("id")
        .args(args)
        .output()
        .with_context(|| format!("running `id {}`", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`id {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().with_context(|| {
        format!(
            "`id {}` printed {:?}, not a number",
            args.join(" "),
            text.trim()
        )
    })
}

/// Where a server listens and runs, and how its network is set up.
#[derive(Clone, Debug)]
struct Site {
    /// The server's name: `cluster_name`, and the `application_name` it
    /// streams under as a standby.
    name: String,
    /// The address it listens on (and clients connect to).
    host: Ipv4Addr,
    /// The network namespace its tools run in; `None`: this one.
    netns: Option<String>,
    /// Where clients and standbys connect from (pg_hba's `ADDRESS`).
    clients: String,
    /// `wal_sender_timeout` and `wal_receiver_timeout`.
    wal_timeout: Duration,
}

/// One PostgreSQL server of a test pair. Owned by [`PgPair`]; dropping it
/// stops the server immediately (a safety net for half-built pairs).
#[derive(Debug)]
pub struct PgServer {
    /// `primary` or `standby` (or the names [`Namespaces`] gives): the role
    /// it was created with (a promoted standby keeps its name).
    name: String,
    /// Name of the other server of the pair: the `application_name` a
    /// standby of this server connects with (see [`PgServer::replication_conninfo`]).
    peer_name: String,
    /// The address it listens on: 127.0.0.1, or its site's.
    host: Ipv4Addr,
    port: u16,
    /// The network namespace it runs in (`None`: the host's).
    netns: Option<String>,
    /// pg_hba's client network (`127.0.0.1/32`, or the sites').
    clients: String,
    /// `wal_sender_timeout` and `wal_receiver_timeout`.
    wal_timeout: Duration,
    /// `<pair dir>/<name>`: holds data, socket dir and log.
    root: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    bin_dir: PathBuf,
    os_user: Option<OsUser>,
    /// Settings appended to this server's `palisade.conf` after the base
    /// ones (e.g. synchronous replication), kept so a rewrite keeps them.
    extra_conf: String,
    /// Set once the server has been shut down for good by its owner's drop.
    released: AtomicBool,
}

impl PgServer {
    /// Lays out `<parent>/<name>/{sock,}` for a server at `site` on
    /// `port`; creates no cluster.
    fn layout(
        parent: &Path,
        site: &Site,
        peer: &Site,
        port: u16,
        bin_dir: &Path,
    ) -> Result<PgServer> {
        let os_user = server_os_user()?;
        let root = parent.join(&site.name);
        let server = PgServer {
            name: site.name.clone(),
            peer_name: peer.name.clone(),
            host: site.host,
            port,
            netns: site.netns.clone(),
            clients: site.clients.clone(),
            wal_timeout: site.wal_timeout,
            data_dir: root.join("data"),
            socket_dir: root.join("sock"),
            log_file: root.join("server.log"),
            root,
            bin_dir: bin_dir.to_owned(),
            os_user,
            extra_conf: String::new(),
            released: AtomicBool::new(false),
        };
        for dir in [&server.root, &server.socket_dir] {
            fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("chmod 0755 {}", dir.display()))?;
            server.hand_over(dir)?;
        }
        Ok(server)
    }

    /// `primary` or `standby`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// TCP port the server listens on (on loopback chosen free at creation).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port` (or its site's address and port).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.host, self.port))
    }

    /// The cluster's data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Directory holding the server's unix socket (`unix_socket_directories`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server log (`pg_ctl -l`), outside the data directory.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// Directory of the PostgreSQL binaries this server runs with.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The OS user the server and its tools run as: `Some("postgres")` when
    /// the tests run as root, `None` when they run as the current user.
    pub fn os_user(&self) -> Option<&str> {
        self.os_user.as_ref().map(|u| u.name.as_str())
    }

    /// Superuser DSN over TCP with password auth:
    /// `postgres://palisade:PASSWORD@127.0.0.1:PORT/postgres` (on loopback).
    pub fn dsn(&self) -> String {
        self.dsn_as(SUPERUSER, SUPERUSER_PASSWORD)
    }

    /// DSN for another role. `user` and `password` go into the URL as they
    /// are: keep them to characters that need no percent-encoding.
    pub fn dsn_as(&self, user: &str, password: &str) -> String {
        format!(
            "postgres://{user}:{password}@{}:{}/postgres",
            self.host, self.port
        )
    }

    /// libpq conninfo for a standby of this server (for `primary_conninfo`),
    /// connecting as [`REPLICATION_USER`] with `application_name` set to the
    /// pair's other server (`standby` for the primary, `primary` for the
    /// standby, so that after a failover the old primary can rejoin).
    pub fn replication_conninfo(&self) -> String {
        self.replication_conninfo_for(&self.peer_name)
    }

    /// Like [`PgServer::replication_conninfo`] with an explicit `application_name`.
    pub fn replication_conninfo_for(&self, application_name: &str) -> String {
        format!(
            "host={} port={} user={REPLICATION_USER} password={REPLICATION_PASSWORD} application_name={application_name}",
            self.host, self.port
        )
    }

    /// A command running `<bin_dir>/<tool>` as the server's OS user, in the
    /// server's directory (which that user can enter) and network namespace,
    /// with libpq's environment variables cleared.
    pub fn command(&self, tool: &str) -> Command {
        let program = self.bin_dir.join(tool);
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(ns) = &self.netns {
            argv.extend(["ip", "netns", "exec", ns.as_str()].map(Into::into));
        }
        if let Some(user) = &self.os_user {
            argv.extend(["runuser", "-u", user.name.as_str(), "--"].map(Into::into));
        }
        argv.push(program.into_os_string());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd.current_dir(&self.root);
        for var in LIBPQ_ENV {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Runs `pg_ctl -D <data_dir> ARGS` as the server's OS user and returns
    /// what it printed. A `pg_ctl` that could not be started shows up as
    /// exit code 127 with the reason on stderr.
    pub fn pg_ctl(&self, args: &[&str]) -> Output {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D").arg(&self.data_dir).args(args);
        run(cmd)
    }

    /// Starts the server (`pg_ctl start -w`), logging to [`PgServer::log_file`].
    /// The error carries pg_ctl's output and the log's tail.
    /// After a crash it first waits (up to 10 s) for the old postmaster to be
    /// reaped: PostgreSQL takes a zombie's PID in `postmaster.pid` for a live
    /// server and would refuse to start.
    pub fn start(&self) -> Result<()> {
        self.wait_old_postmaster_reaped(Duration::from_secs(10));
        let log = self.log_file.to_string_lossy().into_owned();
        let out = self.pg_ctl(&["start", "-w", "-t", "60", "-l", &log]);
        if !out.status.success() {
            bail!(
                "pg_ctl start of {} (port {}) failed ({}): {}\n--- server log tail:\n{}",
                self.name,
                self.port,
                out.status,
                output_text(&out),
                self.log_tail(30)
            );
        }
        tracing::debug!(server = %self.name, port = self.port, "postgres started");
        Ok(())
    }

    /// Stops the server cleanly (`pg_ctl stop -m fast -w`): sessions are
    /// ended, a shutdown checkpoint is written.
    pub fn stop_fast(&self) -> Result<()> {
        let out = self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60"]);
        if !out.status.success() {
            bail!(
                "pg_ctl stop -m fast of {} failed ({}): {}\n--- server log tail:\n{}",
                self.name,
                out.status,
                output_text(&out),
                self.log_tail(30)
            );
        }
        Ok(())
    }

    /// Crashes the server: SIGKILL to the postmaster. Its children exit as
    /// they notice the postmaster's death (any still there after 5 s are
    /// SIGKILLed too, so a restart is never blocked by an orphan holding
    /// shared memory). Returns once the port refuses connections. A server
    /// that is not running is left alone.
    pub fn kill9(&self) {
        let Some(postmaster) = self.postmaster() else {
            tracing::debug!(server = %self.name, "kill9: no running postmaster");
            return;
        };
        let procs = self.server_processes();
        if let Err(e) = kill(Pid::from_raw(postmaster.pid), Signal::SIGKILL) {
            tracing::warn!(server = %self.name, pid = postmaster.pid, error = %e, "kill9: SIGKILL failed");
        }
        wait_gone(&procs, Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok() {
            if Instant::now() >= deadline {
                tracing::warn!(server = %self.name, port = self.port, "kill9: port still accepts connections after 5 s");
                return;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Freezes the postmaster (SIGSTOP): the kernel still accepts TCP
    /// connections on its port, but nobody answers them, as with a hung host.
    /// Running sessions keep working (their backends are not stopped).
    pub fn sigstop(&self) {
        self.signal_postmaster(Signal::SIGSTOP);
    }

    /// Thaws a postmaster frozen by [`PgServer::sigstop`].
    pub fn sigcont(&self) {
        self.signal_postmaster(Signal::SIGCONT);
    }

    /// Freezes this standby's WAL receiver (SIGSTOP) and returns its PID.
    /// The standby keeps its replication connection open but reads and
    /// acknowledges nothing more, so the primary keeps showing it
    /// `streaming` with a `flush_lsn` that stands still until its
    /// `wal_sender_timeout`: what the primary sees of a cut link between
    /// the sites or a hung standby host. Resume it with
    /// [`PgServer::thaw_wal_receiver`]; dropping the server resumes every
    /// process of it anyway.
    pub async fn freeze_wal_receiver(&self) -> Result<i32> {
        let pid = self
            .query_i64("SELECT pid::bigint FROM pg_stat_wal_receiver")
            .await
            .with_context(|| format!("{} has no WAL receiver to freeze", self.name))?;
        let proc = self.own_child(pid)?;
        kill(Pid::from_raw(proc.pid), Signal::SIGSTOP)
            .with_context(|| format!("SIGSTOP to the WAL receiver {pid} of {}", self.name))?;
        Ok(proc.pid)
    }

    /// Resumes a WAL receiver frozen by [`PgServer::freeze_wal_receiver`].
    pub fn thaw_wal_receiver(&self, pid: i32) -> Result<()> {
        let proc = self.own_child(i64::from(pid))?;
        kill(Pid::from_raw(proc.pid), Signal::SIGCONT)
            .with_context(|| format!("SIGCONT to the WAL receiver {pid} of {}", self.name))
    }

    /// The live child process `pid` of this server's postmaster: never
    /// signal a PID that may have been handed to someone else.
    fn own_child(&self, pid: i64) -> Result<Proc> {
        let postmaster = self
            .postmaster()
            .with_context(|| format!("{} has no running postmaster", self.name))?;
        children_of(postmaster.pid)
            .into_iter()
            .find(|p| i64::from(p.pid) == pid)
            .with_context(|| format!("process {pid} is not a child of {}'s postmaster", self.name))
    }

    fn signal_postmaster(&self, signal: Signal) {
        match self.postmaster() {
            Some(postmaster) => {
                if let Err(e) = kill(Pid::from_raw(postmaster.pid), signal) {
                    tracing::warn!(server = %self.name, pid = postmaster.pid, ?signal, error = %e, "signalling postmaster failed");
                }
            }
            None => tracing::warn!(server = %self.name, ?signal, "no running postmaster to signal"),
        }
    }

    /// True when `pg_ctl status` says the server runs and its postmaster is
    /// a live process (a frozen server runs). The second check matters
    /// because a killed postmaster can stay a zombie for a while when the
    /// machine's init reaps orphans lazily, and `pg_ctl status` counts a
    /// zombie as running.
    pub fn is_running(&self) -> bool {
        self.pg_ctl(&["status"]).status.success() && self.postmaster().is_some()
    }

    /// Waits until the PID in `postmaster.pid`, if it is a zombie, is gone.
    fn wait_old_postmaster_reaped(&self, limit: Duration) {
        let Some(pid) = fs::read_to_string(self.data_dir.join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok())
        else {
            return;
        };
        let deadline = Instant::now() + limit;
        while is_zombie(pid) {
            if Instant::now() >= deadline {
                tracing::warn!(server = %self.name, pid, "old postmaster still a zombie; starting anyway");
                return;
            }
            std::thread::sleep(POLL);
        }
    }

    /// PID of this server's live postmaster, from `postmaster.pid`. `None`
    /// when the file is missing or stale (the PID is gone, a zombie, or has
    /// been reused by a process that is not this data directory's postmaster).
    pub fn postmaster_pid(&self) -> Option<i32> {
        self.postmaster().map(|p| p.pid)
    }

    /// Guards against PID reuse after a kill9: only ever a process whose
    /// command line names our data directory.
    fn postmaster(&self) -> Option<Proc> {
        procs::postmaster(&self.data_dir)
    }

    /// The postmaster and every child of it, postmaster first: to freeze or
    /// kill the whole server at once, as a VM pause or a host crash would.
    /// Empty when the server does not run.
    pub fn server_processes(&self) -> Vec<Proc> {
        procs::server_processes(&self.data_dir)
    }

    /// Connect options for the superuser over TCP.
    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .host(&self.host.to_string())
            .port(self.port)
            .username(SUPERUSER)
            .password(SUPERUSER_PASSWORD)
            .database("postgres")
            .application_name("palisade-testkit")
    }

    /// A fresh small pool (at most 4 connections, 2 s to connect) as the
    /// superuser. Make a new one after restarting the server.
    pub async fn pool(&self) -> Result<PgPool> {
        PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(self.connect_options())
            .await
            .with_context(|| format!("connecting a pool to {} on port {}", self.name, self.port))
    }

    /// One fresh superuser connection (2 s to connect).
    pub async fn connect(&self) -> Result<PgConnection> {
        let options = self.connect_options();
        let connect = PgConnection::connect_with(&options);
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
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

    /// Runs `sql` (one or more statements, simple query protocol) as the superuser.
    pub async fn exec(&self, sql: &str) -> Result<()> {
        let mut conn = self.connect().await?;
        sqlx::raw_sql(sql)
            .execute(&mut conn)
            .await
            .with_context(|| format!("on {}: {sql}", self.name))?;
        close(conn).await;
        Ok(())
    }

    /// Runs a query returning one boolean (e.g. `SELECT pg_is_in_recovery()`).
    pub async fn query_bool(&self, sql: &str) -> Result<bool> {
        let mut conn = self.connect().await?;
        let value = sqlx::query_scalar::<_, bool>(sql)
            .fetch_one(&mut conn)
            .await
            .with_context(|| format!("on {}: {sql}", self.name))?;
        close(conn).await;
        Ok(value)
    }

    /// Runs a query returning at most one text value (cast with `::text`);
    /// `None` for no row or SQL NULL.
    pub async fn query_text(&self, sql: &str) -> Result<Option<String>> {
        let mut conn = self.connect().await?;
        let value = sqlx::query_scalar::<_, Option<String>>(sql)
            .fetch_optional(&mut conn)
            .await
            .with_context(|| format!("on {}: {sql}", self.name))?;
        close(conn).await;
        Ok(value.flatten())
    }

    /// Runs a query returning one 64-bit integer (e.g. `SELECT count(*) ..`).
    pub async fn query_i64(&self, sql: &str) -> Result<i64> {
        let mut conn = self.connect().await?;
        let value = sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&mut conn)
            .await
            .with_context(|| format!("on {}: {sql}", self.name))?;
        close(conn).await;
        Ok(value)
    }

    /// `pg_is_in_recovery()`: true for a standby.
    pub async fn in_recovery(&self) -> Result<bool> {
        self.query_bool("SELECT pg_is_in_recovery()").await
    }

    /// `pg_current_wal_lsn()` (fails on a standby).
    pub async fn current_wal_lsn(&self) -> Result<u64> {
        self.lsn("SELECT pg_current_wal_lsn()::text").await
    }

    /// `pg_last_wal_replay_lsn()` (fails on a server that is not in recovery).
    pub async fn replay_lsn(&self) -> Result<u64> {
        self.lsn("SELECT pg_last_wal_replay_lsn()::text").await
    }

    async fn lsn(&self, sql: &str) -> Result<u64> {
        let text = self
            .query_text(sql)
            .await?
            .with_context(|| format!("on {}: {sql} returned NULL", self.name))?;
        parse_lsn(&text)
            .with_context(|| format!("on {}: {sql} returned {text:?}, not an LSN", self.name))
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

    /// Writes a file the server reads, owned by its OS user.
    fn write_owned(&self, path: &Path, contents: &str, mode: u32) -> Result<()> {
        fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {mode:o} {}", path.display()))?;
        self.hand_over(path)
    }

    /// (Re)writes `<data>/palisade.conf`, the settings this harness owns;
    /// `postgresql.conf` includes it last.
    fn write_conf(&self) -> Result<()> {
        let mut conf = String::new();
        let _ = writeln!(
            conf,
            "# Written by palisade-testkit for server {:?}; included from postgresql.conf.",
            self.name
        );
        let _ = writeln!(conf, "listen_addresses = '{}'", self.host);
        let _ = writeln!(conf, "port = {}", self.port);
        let _ = writeln!(
            conf,
            "unix_socket_directories = '{}'",
            self.socket_dir.display()
        );
        let _ = writeln!(conf, "cluster_name = '{}'", self.name);
        let _ = writeln!(conf, "max_connections = 50");
        let _ = writeln!(conf, "shared_buffers = '16MB'");
        let _ = writeln!(conf, "fsync = on");
        let _ = writeln!(
            conf,
            "# The guide's replication settings (wal_keep_size is PG13+'s wal_keep_segments)."
        );
        let _ = writeln!(conf, "wal_level = replica");
        let _ = writeln!(conf, "wal_log_hints = on");
        let _ = writeln!(conf, "max_wal_senders = 5");
        let _ = writeln!(conf, "wal_keep_size = '128MB'");
        let _ = writeln!(conf, "hot_standby = on");
        let _ = writeln!(
            conf,
            "# Faster than the defaults so tests see broken streams and reconnects quickly;\n\
             # equal on both sides and longer than palisade's sync_degrade_after_ms (docs/operations.md)."
        );
        let timeout = self.wal_timeout.as_millis();
        // A standby reports at least four times per timeout (every second
        // at most), so a live one is never taken for a dead one.
        let status = (timeout / 4).min(1000);
        let _ = writeln!(conf, "wal_sender_timeout = '{timeout}ms'");
        let _ = writeln!(conf, "wal_receiver_timeout = '{timeout}ms'");
        let _ = writeln!(conf, "wal_receiver_status_interval = '{status}ms'");
        let _ = writeln!(conf, "wal_retrieve_retry_interval = '500ms'");
        let _ = writeln!(conf, "log_line_prefix = '%m [%p] %q%u@%d '");
        conf.push_str(&self.extra_conf);
        self.write_owned(&self.data_dir.join("palisade.conf"), &conf, 0o600)
    }

    /// Starts a freshly created server; when its port was taken meanwhile
    /// (another test, another process), moves to a new free port and retries.
    fn start_new(&mut self) -> Result<()> {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            self.write_conf()?;
            match self.start() {
                Ok(()) => return Ok(()),
                Err(e)
                    if attempt < ATTEMPTS
                        && self.netns.is_none()
                        && self.log_tail(20).contains("Address already in use") =>
                {
                    let port = free_ports(1)?[0];
                    tracing::debug!(server = %self.name, old = self.port, new = port, error = %e, "port taken, retrying");
                    self.port = port;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// `initdb` with the superuser, the guide's pg_hba rules and our settings.
    fn initdb(&self) -> Result<()> {
        let pwfile = self.root.join("superuser.pw");
        self.write_owned(&pwfile, &format!("{SUPERUSER_PASSWORD}\n"), 0o600)?;
        let mut cmd = self.command("initdb");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["-U", SUPERUSER, "--pwfile"])
            .arg(&pwfile)
            .args([
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ])
            .args(["--no-sync", "--no-instructions"]);
        let out = run(cmd);
        let _ = fs::remove_file(&pwfile);
        if !out.status.success() {
            bail!(
                "initdb for {} failed ({}): {}",
                self.name,
                out.status,
                output_text(&out)
            );
        }
        let hba = format!(
            "# Written by palisade-testkit, after the HA/DR guide (scram instead of md5).\n\
             # TYPE  DATABASE     USER        ADDRESS        METHOD\n\
             local   all          all                        trust\n\
             host    replication  {REPLICATION_USER}  {net:<14} scram-sha-256\n\
             host    all          all         {net:<14} scram-sha-256\n",
            net = self.clients
        );
        self.write_owned(&self.data_dir.join("pg_hba.conf"), &hba, 0o600)?;
        let conf = self.data_dir.join("postgresql.conf");
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .with_context(|| format!("opening {}", conf.display()))?;
        file.write_all(b"\ninclude 'palisade.conf'\n")
            .with_context(|| format!("appending to {}", conf.display()))?;
        Ok(())
    }

    /// `pg_basebackup -R` of `primary` into this server's data dir, then
    /// our own port, socket dir and `primary_conninfo`.
    fn basebackup_from(&self, primary: &PgServer) -> Result<()> {
        let mut cmd = self.command("pg_basebackup");
        cmd.arg("-R")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-h", &primary.host.to_string()])
            .args(["-p", &primary.port.to_string()])
            .args([
                "-X",
                "stream",
                "-c",
                "fast",
                "-U",
                REPLICATION_USER,
                "--no-sync",
            ])
            .env("PGPASSWORD", REPLICATION_PASSWORD);
        let out = run(cmd);
        if !out.status.success() {
            bail!(
                "pg_basebackup of {} from {} failed ({}): {}\n--- {} log tail:\n{}",
                self.name,
                primary.name,
                out.status,
                output_text(&out),
                primary.name,
                primary.log_tail(20)
            );
        }
        if !self.data_dir.join("standby.signal").exists() {
            bail!(
                "pg_basebackup -R did not write standby.signal in {}",
                self.data_dir.display()
            );
        }
        // -R wrote a primary_conninfo of its own into postgresql.auto.conf,
        // which overrides postgresql.conf; replace it with the guide's.
        let auto = format!(
            "# Written by palisade-testkit (replacing what pg_basebackup -R wrote).\n\
             primary_conninfo = '{}'\n\
             recovery_target_timeline = 'latest'\n",
            primary.replication_conninfo_for(&self.name)
        );
        self.write_owned(&self.data_dir.join("postgresql.auto.conf"), &auto, 0o600)
    }

    /// Stops the server at once and makes sure no process of it is left,
    /// whatever state it is in (frozen, crashed, running). Idempotent.
    fn shut_down_for_good(&self) {
        if self.released.swap(true, Ordering::SeqCst) {
            return;
        }
        let procs = self.server_processes();
        if procs.is_empty() {
            return;
        }
        // A frozen postmaster cannot act on pg_ctl's SIGQUIT.
        for proc in &procs {
            proc.signal(Signal::SIGCONT);
        }
        let out = self.pg_ctl(&["stop", "-m", "immediate", "-w", "-t", "10"]);
        if !out.status.success() {
            tracing::debug!(server = %self.name, output = %output_text(&out), "pg_ctl stop -m immediate failed; killing");
        }
        wait_gone(&procs, Duration::from_secs(5));
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.shut_down_for_good();
    }
}

/// A server certificate and key for [`PgPair::start_with_server_tls`],
/// PEM.
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// The server's certificate (chain).
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

impl ServerTls {
    /// The settings it adds to `palisade.conf` (paths relative to the data
    /// directory, where the files are written).
    const CONF: &'static str =
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n";
}

/// Options for [`PgPair::start_with`].
#[derive(Clone, Debug, Default)]
pub struct PgPairOptions {
    /// Synchronous replication: the primary sets `synchronous_standby_names
    /// = 'standby'` and `synchronous_commit = on`, so a commit returns only
    /// once the standby has flushed it. Default `false`: asynchronous
    /// streaming, the guide's choice. The standby gets no
    /// `synchronous_standby_names` (a promoted standby without a standby of
    /// its own would otherwise block every commit).
    pub synchronous: bool,
}

/// A pair placed in network namespaces ([`PgPair::start_in_namespaces`]):
/// each server listens on its site's address, inside its site's namespace,
/// on one fixed port. The namespaces must exist and reach each other.
#[derive(Clone, Debug)]
pub struct Namespaces {
    /// The primary's site.
    pub primary: NetnsSite,
    /// The standby's site.
    pub standby: NetnsSite,
    /// The port both servers listen on (each on its own address).
    pub port: u16,
    /// Where clients and the standby connect from, in CIDR notation (e.g.
    /// `198.18.0.0/24`): pg_hba's `ADDRESS`.
    pub clients: String,
    /// The directory the pair's directory is made in (instead of the temp
    /// dir), so that whoever cleans that one up finds the servers too.
    pub parent_dir: PathBuf,
    /// `wal_sender_timeout` and `wal_receiver_timeout`: how soon a cut or
    /// frozen peer is noticed (the loopback pair's are 5 s).
    pub wal_timeout: Duration,
}

/// One server's site in [`Namespaces`].
#[derive(Clone, Debug)]
pub struct NetnsSite {
    /// The server's name: its directory, `cluster_name`, and the
    /// `application_name` it streams under as a standby. A plain
    /// identifier (`synchronous_standby_names` names it unquoted).
    pub name: String,
    /// The network namespace it runs in.
    pub netns: String,
    /// Its address there.
    pub addr: Ipv4Addr,
}

/// A running primary and a standby streaming from it, in one temp dir.
/// Dropping it stops both servers and removes the directory.
#[derive(Debug)]
pub struct PgPair {
    /// The server created by `initdb`, writable at start.
    pub primary: PgServer,
    /// The server created by `pg_basebackup -R`, streaming from the primary.
    pub standby: PgServer,
    /// Declared last so it is removed after the servers have stopped.
    dir: TempDir,
}

impl PgPair {
    /// Starts an asynchronous pair and waits until the standby streams.
    pub async fn start() -> Result<PgPair> {
        Self::start_with(PgPairOptions::default()).await
    }

    /// Starts a pair as `opts` says and waits until the standby streams (and,
    /// when synchronous, until the primary counts it as its sync standby).
    pub async fn start_with(opts: PgPairOptions) -> Result<PgPair> {
        Self::start_local(opts, None).await
    }

    /// Like [`PgPair::start_with`], both servers with `ssl = on` and the
    /// certificate and key of `tls` (the standby gets them through its
    /// base backup). Clients may still connect without TLS: the test's
    /// `sslmode` decides.
    pub async fn start_with_server_tls(opts: PgPairOptions, tls: ServerTls) -> Result<PgPair> {
        Self::start_local(opts, Some(tls)).await
    }

    async fn start_local(opts: PgPairOptions, tls: Option<ServerTls>) -> Result<PgPair> {
        let site = |name: &str| Site {
            name: name.to_owned(),
            host: Ipv4Addr::LOCALHOST,
            netns: None,
            clients: "127.0.0.1/32".to_owned(),
            wal_timeout: WAL_TIMEOUT,
        };
        let ports = free_ports(2)?;
        Self::start_at(
            opts,
            [site("primary"), site("standby")],
            [ports[0], ports[1]],
            &std::env::temp_dir(),
            tls,
        )
        .await
    }

    /// Like [`PgPair::start_with`], with the servers placed in network
    /// namespaces as `ns` says.
    pub async fn start_in_namespaces(opts: PgPairOptions, ns: Namespaces) -> Result<PgPair> {
        let site = |s: &NetnsSite| Site {
            name: s.name.clone(),
            host: s.addr,
            netns: Some(s.netns.clone()),
            clients: ns.clients.clone(),
            wal_timeout: ns.wal_timeout,
        };
        let sites = [site(&ns.primary), site(&ns.standby)];
        Self::start_at(opts, sites, [ns.port, ns.port], &ns.parent_dir, None).await
    }

    /// Builds the pair: the primary at `sites[0]`, the standby at
    /// `sites[1]`, in a new directory under `parent`.
    async fn start_at(
        opts: PgPairOptions,
        sites: [Site; 2],
        ports: [u16; 2],
        parent: &Path,
        tls: Option<ServerTls>,
    ) -> Result<PgPair> {
        let started = Instant::now();
        let bin_dir = require_pg_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("palisade-pg-")
            .tempdir_in(parent)
            .with_context(|| format!("creating the pair's directory in {}", parent.display()))?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod 0755 {}", dir.path().display()))?;
        let [primary_site, standby_site] = sites;
        let [primary_port, standby_port] = ports;

        let (parent, bin) = (dir.path().to_owned(), bin_dir.clone());
        let (p, s) = (primary_site.clone(), standby_site.clone());
        let primary = blocking(move || {
            let mut primary = PgServer::layout(&parent, &p, &s, primary_port, &bin)?;
            primary.initdb()?;
            if let Some(tls) = &tls {
                primary.write_owned(&primary.data_dir.join("server.crt"), &tls.cert_pem, 0o644)?;
                primary.write_owned(&primary.data_dir.join("server.key"), &tls.key_pem, 0o600)?;
                primary.extra_conf.push_str(ServerTls::CONF);
            }
            primary.start_new()?;
            Ok(primary)
        })
        .await?;
        primary
            .exec(&format!(
                "CREATE USER {REPLICATION_USER} REPLICATION LOGIN ENCRYPTED PASSWORD '{REPLICATION_PASSWORD}'"
            ))
            .await
            .context("creating the replication user")?;

        let (parent, bin) = (dir.path().to_owned(), bin_dir);
        let (primary, standby) = blocking(move || {
            // On error `primary` is dropped here, which stops it.
            let mut standby =
                PgServer::layout(&parent, &standby_site, &primary_site, standby_port, &bin)?;
            standby.basebackup_from(&primary)?;
            standby.extra_conf.push_str(&primary.extra_conf);
            standby.start_new()?;
            Ok((primary, standby))
        })
        .await?;

        let pair = PgPair {
            primary,
            standby,
            dir,
        };
        if opts.synchronous {
            pair.make_synchronous().await?;
        }
        pair.wait_streaming(STREAMING_TIMEOUT).await?;
        if opts.synchronous {
            pair.wait_sync_state(STREAMING_TIMEOUT).await?;
        }
        tracing::info!(
            dir = %pair.dir().display(),
            primary_port = pair.primary.port,
            standby_port = pair.standby.port,
            synchronous = opts.synchronous,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "PostgreSQL pair streaming"
        );
        Ok(pair)
    }

    /// The pair's temp directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Waits until the primary's `pg_stat_replication` shows the standby
    /// `streaming` and the standby's `pg_stat_wal_receiver` says `streaming`.
    pub async fn wait_streaming(&self, timeout: Duration) -> Result<()> {
        let app = self.standby.name.clone();
        let primary_sql =
            format!("SELECT state FROM pg_stat_replication WHERE application_name = '{app}'");
        wait_for("the standby to stream", timeout, async || {
            let on_primary = self.primary.query_text(&primary_sql).await;
            let on_standby = self
                .standby
                .query_text("SELECT status FROM pg_stat_wal_receiver")
                .await;
            let (p, s) = (describe(&on_primary), describe(&on_standby));
            if p == "streaming" && s == "streaming" {
                return Ok(());
            }
            Err(format!(
                "primary pg_stat_replication.state = {p}, standby pg_stat_wal_receiver.status = {s}"
            ))
        })
        .await
        .map_err(|e| {
            anyhow!(
                "{e:#}\n--- primary log:\n{}\n--- standby log:\n{}",
                self.primary.log_tail(15),
                self.standby.log_tail(15)
            )
        })
    }

    /// Waits until the standby has replayed everything the primary had
    /// written when this was called (`pg_last_wal_replay_lsn() >=
    /// pg_current_wal_lsn()`).
    pub async fn wait_replayed(&self, timeout: Duration) -> Result<()> {
        let target = self
            .primary
            .current_wal_lsn()
            .await
            .context("reading the primary's current LSN")?;
        let format_lsn = palisade_core::observe::format_lsn;
        let what = format!("the standby to replay up to {}", format_lsn(target));
        wait_for(&what, timeout, async || {
            match self.standby.replay_lsn().await {
                Ok(lsn) if lsn >= target => Ok(()),
                Ok(lsn) => Err(format!("replay LSN {}", format_lsn(lsn))),
                Err(e) => Err(format!("error: {e:#}")),
            }
        })
        .await
        .map_err(|e| anyhow!("{e:#}\n--- standby log:\n{}", self.standby.log_tail(15)))
    }

    /// Turns on synchronous replication to the standby on the primary and
    /// waits until new sessions see it.
    async fn make_synchronous(&self) -> Result<()> {
        let (primary, standby) = (&self.primary, &self.standby.name);
        let conf = format!(
            "# Synchronous replication (PgPairOptions::synchronous).\n\
             synchronous_standby_names = '{standby}'\nsynchronous_commit = on\n"
        );
        let path = primary.data_dir.join("palisade.conf");
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.write_all(conf.as_bytes())
            .with_context(|| format!("appending to {}", path.display()))?;
        let out = primary.pg_ctl(&["reload"]);
        if !out.status.success() {
            bail!(
                "pg_ctl reload of primary failed ({}): {}",
                out.status,
                output_text(&out)
            );
        }
        wait_for(
            "the primary to pick up synchronous_standby_names",
            Duration::from_secs(10),
            async || match primary.query_text("SHOW synchronous_standby_names").await {
                Ok(Some(names)) if names == *standby => Attempt::Ready(()),
                Ok(names) => Attempt::NotYet(format!("{names:?}")),
                Err(e) => Attempt::GiveUp(e),
            },
        )
        .await
        .map_err(|e| anyhow!("{e:#}\n--- primary log:\n{}", primary.log_tail(15)))
    }

    async fn wait_sync_state(&self, timeout: Duration) -> Result<()> {
        let sql = format!(
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = '{}'",
            self.standby.name
        );
        wait_for("the standby to be the sync standby", timeout, async || {
            let state = self.primary.query_text(&sql).await;
            match &state {
                Ok(Some(s)) if s == "sync" => Ok(()),
                _ => Err(format!("sync_state = {}", describe(&state))),
            }
        })
        .await
    }
}

impl Drop for PgPair {
    fn drop(&mut self) {
        // Stop both at once: each stop waits for its postmaster to exit.
        std::thread::scope(|scope| {
            scope.spawn(|| self.primary.shut_down_for_good());
            self.standby.shut_down_for_good();
        });
    }
}

/// Runs blocking setup work (initdb, pg_basebackup, pg_ctl) off the async
/// runtime's threads.
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

/// Runs a command to completion; a command that cannot be spawned becomes
/// exit code 127 with the reason on stderr (the shell's convention).
fn run(mut cmd: Command) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(e) => Output {
            status: ExitStatus::from_raw(127 << 8),
            stdout: Vec::new(),
            stderr: format!("could not run {:?}: {e}", cmd.get_program()).into_bytes(),
        },
    }
}

fn output_text(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    format!(
        "{}{}",
        stdout.trim(),
        if stderr.trim().is_empty() {
            String::new()
        } else {
            format!("\n{}", stderr.trim())
        }
    )
}

fn describe(value: &Result<Option<String>>) -> String {
    match value {
        Ok(Some(v)) => v.clone(),
        Ok(None) => "(no row)".to_owned(),
        Err(e) => format!("(error: {e:#})"),
    }
}

async fn close(conn: PgConnection) {
    if let Err(e) = conn.close().await {
        tracing::debug!(error = %e, "closing a harness connection failed");
    }
}
