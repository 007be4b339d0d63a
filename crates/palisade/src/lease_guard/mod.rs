//! The lease guard: a small process of its own that enforces the primary's
//! lease on the local database server (PostgreSQL, `--data-dir`; or
//! MariaDB, `--mariadb-pid-file`: `lease_guard/mariadb.rs` says what
//! differs), so that the lease holds even while the witness process is
//! dead, frozen or hung (DESIGN.md safety rule 2:
//! the agent "fences its own db when that runs out, even if its own witness
//! process is dead or hung").
//!
//! The witness and the guard talk through files next to each other:
//!
//! ```text
//! <order>          the witness's latest order (one JSON line), replaced
//!                  atomically (write a temporary file, rename it over)
//! <order>.lock     flock()ed by the one guard of this order file; holds its pid
//! <order>.status   the guard's heartbeat (one JSON line, replaced each poll)
//! <order>.log      the guard's stderr, when the witness started it
//! ```
//!
//! An order says: "on boot B, epoch E may write until CLOCK_MONOTONIC
//! instant D" (or, `hard`: "kill it"). The guard polls every
//! [`DEFAULT_POLL_MS`] and at each deadline, looks at the server in
//! `/proc` (no commands), asks [`palisade_core::lease_guard::decide`] and
//! freezes, thaws or kills the server accordingly, logging each action
//! with its reason. It exits only on SIGTERM or SIGINT, and then leaves
//! the server as it is: the witness dying is precisely when it must stay.
//! (And when a PostgreSQL data directory is gone, or, for MariaDB, the
//! order file's directory with no `mariadbd` running: nothing is left to
//! guard. A missing MariaDB pid file, or its directory, is only a stopped
//! server: the guard stays for the next one.)
//!
//! While the witness is silent (no order written for two renewal
//! intervals: dead, SIGSTOPped, restarting), the guard renews the lease
//! with the witnesses itself ([`renewer`]), so a dead witness process costs
//! the database nothing while its site can still reach a majority.
//!
//! Deployment note: under systemd, the witness's unit must not kill the
//! guard with the witness (`KillMode=process`), or the guard must run as a
//! unit of its own; otherwise a witness crash takes the guard with it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::mem::discriminant;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::time::{clock_gettime, ClockId};
use nix::unistd::{Pid, Uid, User};
use palisade_actions::postgres::{FreezeOutcome, PgSite, ProcessState, ThawOutcome};
use palisade_core::lease_guard::{
    decide, wake_in_ms, Decision, GuardAction, GuardConfig, Reason, ServerState,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

mod mariadb;
pub mod renewer;

use mariadb::MariaProcess;

use renewer::{RenewSpec, Renewer, Seen};

pub use palisade_core::lease_guard::{GuardOrder, DEFAULT_HARD_AFTER_MS};

/// The guard's poll interval. A deadline is met exactly (the guard sleeps
/// until it, see [`wake_in_ms`]); this bounds how late a new order (a
/// renewal that thaws, a hard order) takes effect.
pub const DEFAULT_POLL_MS: u64 = 20;

/// The poll interval while there is no server and no live lease.
const IDLE_POLL_MS: u64 = 200;

/// After an action failed, the guard waits this long before trying it
/// again, so that a persistent failure logs once a second, not every poll.
const RETRY_AFTER_MS: u64 = 1_000;

/// Where the kernel publishes this boot's random id.
const BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";

/// Milliseconds on `CLOCK_MONOTONIC`: one clock for every process of the
/// machine (the daemon's [`crate::clock::mono_ms`] is this clock), so a
/// deadline the witness computes means the same instant to the guard. It does not jump with the wall clock, and it
/// restarts on reboot, which is why orders carry the boot id.
pub fn monotonic_ms() -> u64 {
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available on Linux");
    let ms = i128::from(ts.tv_sec()) * 1_000 + i128::from(ts.tv_nsec()) / 1_000_000;
    u64::try_from(ms).unwrap_or(0)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), read once per
/// process. An order or heartbeat written on another boot carries another
/// id, and its monotonic instants mean nothing now.
pub fn boot_id() -> io::Result<String> {
    static BOOT_ID: OnceLock<String> = OnceLock::new();
    if let Some(id) = BOOT_ID.get() {
        return Ok(id.clone());
    }
    let id = fs::read_to_string(BOOT_ID_FILE)
        .map_err(|e| named(e, Path::new(BOOT_ID_FILE), "reading the boot id"))?
        .trim()
        .to_owned();
    if id.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{BOOT_ID_FILE}: empty"),
        ));
    }
    Ok(BOOT_ID.get_or_init(|| id).clone())
}

/// An order as written to the order file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct OrderLine {
    /// Boot the deadline belongs to; another boot's order is no order.
    boot_id: String,
    epoch: u64,
    deadline_ms: u64,
    hard: bool,
    /// `CLOCK_MONOTONIC` ms when the witness wrote it: a stale order means
    /// a silent witness, and the guard renews by itself.
    #[serde(default)]
    written_ms: u64,
    /// How the guard renews by itself; `None`: it does not.
    #[serde(default)]
    renewal: Option<RenewSpec>,
}

/// What the guard publishes on each poll in `<order>.status`, so that the
/// witness (and an operator) can tell that it is alive and what it holds
/// the server to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardStatus {
    /// Boot the guard runs on; a status from another boot is stale.
    pub boot_id: String,
    /// The guard's pid.
    pub pid: u32,
    /// `CLOCK_MONOTONIC` ms of the poll that wrote this: the heartbeat.
    pub mono_ms: u64,
    /// The server's state once this poll's action was done.
    pub server: ProcessState,
    /// Epoch the guard froze the server under (`None` while frozen: frozen
    /// without an order; meaningless unless `frozen_since_ms` is set).
    pub frozen_epoch: Option<u64>,
    /// When the guard froze the server; `None`: the guard holds no freeze.
    pub frozen_since_ms: Option<u64>,
    /// The order the guard acted on (`None`: no order from this boot).
    pub order: Option<GuardOrder>,
    /// The last action other than "nothing", with its reason and when.
    pub last_action: Option<String>,
}

/// The files of one order file (see the module documentation).
#[derive(Clone, Debug)]
struct Paths {
    order: PathBuf,
    lock: PathBuf,
    status: PathBuf,
    log: PathBuf,
}

impl Paths {
    fn new(order: &Path) -> Self {
        let with = |suffix: &str| {
            let mut name = order.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        Paths {
            order: order.to_path_buf(),
            lock: with(".lock"),
            status: with(".status"),
            log: with(".log"),
        }
    }
}

/// The witness's side of the guard: writes orders, starts the guard when
/// none runs, and reads its heartbeat. Cheap to create; holds no open
/// file.
#[derive(Clone, Debug)]
pub struct GuardHandle {
    paths: Paths,
    server: GuardedServer,
    palisade_exe: PathBuf,
    hard_after_ms: u64,
    renewal: Option<RenewSpec>,
    live_witnesses: Option<LiveWitnesses>,
}

/// The database server a guard holds to the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuardedServer {
    /// The PostgreSQL server of `data_dir` (every process of it, found
    /// through `postmaster.pid` and `/proc`). `bin_dir` holds `pg_ctl`
    /// (empty: the running postmaster's directory, else `PATH`).
    Postgres {
        /// The data directory.
        data_dir: PathBuf,
        /// Directory of `pg_ctl`, used to confirm a kill.
        bin_dir: PathBuf,
    },
    /// The `mariadbd` whose pid `pid_file` holds (its `--pid-file`).
    MariaDb {
        /// The server's pid file.
        pid_file: PathBuf,
    },
}

/// Where the witnesses are now (`palisadectl member` changes them): read
/// into every order's renewal spec.
#[derive(Clone)]
pub struct LiveWitnesses(pub Arc<dyn Fn() -> Vec<(palisade_core::NodeId, String)> + Send + Sync>);

impl std::fmt::Debug for LiveWitnesses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveWitnesses(the current membership)")
    }
}

impl GuardHandle {
    /// A handle for the guard of `data_dir`'s PostgreSQL server, ordered
    /// through `order_file` (its directory must exist and be the witness's
    /// own; the lock, status and log files go next to it). `bin_dir` holds
    /// `pg_ctl`; `palisade_exe` is the binary to start the guard from
    /// (the witness's own: [`std::env::current_exe`]).
    pub fn new(
        order_file: impl Into<PathBuf>,
        data_dir: impl Into<PathBuf>,
        bin_dir: impl Into<PathBuf>,
        palisade_exe: impl Into<PathBuf>,
    ) -> Self {
        let server = GuardedServer::Postgres {
            data_dir: data_dir.into(),
            bin_dir: bin_dir.into(),
        };
        Self::for_server(order_file, server, palisade_exe)
    }

    /// A handle for the guard of the `mariadbd` whose pid `pid_file`
    /// holds; otherwise as [`GuardHandle::new`].
    pub fn new_mariadb(
        order_file: impl Into<PathBuf>,
        pid_file: impl Into<PathBuf>,
        palisade_exe: impl Into<PathBuf>,
    ) -> Self {
        let server = GuardedServer::MariaDb {
            pid_file: pid_file.into(),
        };
        Self::for_server(order_file, server, palisade_exe)
    }

    /// A handle for the guard of `server`; otherwise as
    /// [`GuardHandle::new`].
    pub fn for_server(
        order_file: impl Into<PathBuf>,
        server: GuardedServer,
        palisade_exe: impl Into<PathBuf>,
    ) -> Self {
        GuardHandle {
            paths: Paths::new(&order_file.into()),
            server,
            palisade_exe: palisade_exe.into(),
            hard_after_ms: DEFAULT_HARD_AFTER_MS,
            renewal: None,
            live_witnesses: None,
        }
    }

    /// Lets the guard renew the lease by itself, as `spec` says, while the
    /// witness writes no orders (written into every order).
    pub fn with_renewal(mut self, spec: RenewSpec) -> Self {
        self.renewal = Some(spec);
        self
    }

    /// Renews with the witnesses `live` names when each order is written,
    /// instead of the spec's fixed list.
    pub fn with_live_witnesses(mut self, live: LiveWitnesses) -> Self {
        self.live_witnesses = Some(live);
        self
    }

    /// How long a guard started by [`GuardHandle::ensure_running`] lets a
    /// freeze last before it kills the server (default
    /// [`DEFAULT_HARD_AFTER_MS`]). A running guard keeps its own setting.
    pub fn with_hard_after_ms(mut self, ms: u64) -> Self {
        self.hard_after_ms = ms;
        self
    }

    /// The server this handle's guard holds to the lease.
    pub fn server(&self) -> &GuardedServer {
        &self.server
    }

    /// The order file.
    pub fn order_file(&self) -> &Path {
        &self.paths.order
    }

    /// The guard's log (its stderr, appended), when this handle started it.
    pub fn log_file(&self) -> &Path {
        &self.paths.log
    }

    /// Replaces the order, atomically: the guard reads either the old or
    /// the new one, never a mix. Not synced to disk: an order means nothing
    /// after a reboot anyway (its boot id no longer matches).
    ///
    /// Call it on every lease renewal with the lease's deadline (less the
    /// safety margin) on [`monotonic_ms`]'s clock, and with `hard` once a
    /// failover away from this site is committed. Write the first order
    /// before [`GuardHandle::ensure_running`]: a guard that finds no order
    /// freezes the server.
    pub fn order(&self, order: GuardOrder) -> io::Result<()> {
        let line = OrderLine {
            boot_id: boot_id()?,
            epoch: order.epoch,
            deadline_ms: order.deadline_ms,
            hard: order.hard,
            written_ms: monotonic_ms(),
            renewal: self.renewal.clone().map(|mut spec| {
                if let Some(live) = &self.live_witnesses {
                    spec.witnesses = (live.0)();
                }
                spec
            }),
        };
        let mut text = serde_json::to_string(&line).map_err(io::Error::other)?;
        text.push('\n');
        write_atomically(
            &self.paths.order,
            text.as_bytes(),
            "writing the lease order",
        )
    }

    /// Starts the guard if none holds this order file's lock: `palisade
    /// lease-guard ...` in a process group of its own (so that a terminal's
    /// Ctrl-C or a kill of the witness's group does not reach it), stdin
    /// from /dev/null, stdout and stderr appended to
    /// [`GuardHandle::log_file`]. Returns once it is spawned; a guard that
    /// cannot start says why in that log. Two racing calls may both spawn
    /// one: the second guard finds the lock taken and exits.
    pub fn ensure_running(&self) -> io::Result<()> {
        if self.guard_pid()?.is_some() {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.paths.log)
            .map_err(|e| named(e, &self.paths.log, "opening the lease guard's log"))?;
        let stdout = log
            .try_clone()
            .map_err(|e| named(e, &self.paths.log, "duplicating the log's descriptor"))?;
        let mut command = Command::new(&self.palisade_exe);
        command.arg("lease-guard");
        match &self.server {
            GuardedServer::Postgres { data_dir, bin_dir } => command
                .arg("--data-dir")
                .arg(data_dir)
                .arg("--bin-dir")
                .arg(bin_dir),
            GuardedServer::MariaDb { pid_file } => command.arg("--mariadb-pid-file").arg(pid_file),
        };
        let mut child = command
            .arg("--order-file")
            .arg(&self.paths.order)
            .arg("--hard-after-ms")
            .arg(self.hard_after_ms.to_string())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| named(e, &self.palisade_exe, "starting the lease guard"))?;
        let pid = child.id();
        // Reap it when it exits, so it does not linger as a zombie of the
        // witness. If the witness dies first, init adopts it.
        std::thread::Builder::new()
            .name(format!("lease-guard-{pid}"))
            .spawn(move || {
                let _ = child.wait();
            })?;
        tracing::info!(pid, order_file = %self.paths.order.display(), "lease guard started");
        Ok(())
    }

    /// The pid of the guard holding this order file's lock, `None` when
    /// no guard runs.
    pub fn guard_pid(&self) -> io::Result<Option<i32>> {
        let file = open_lock_file(&self.paths.lock)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            // Nobody held it; dropping our lock releases it at once.
            Ok(_free) => Ok(None),
            Err((mut file, Errno::EWOULDBLOCK)) => Ok(Some(read_pid(&mut file).unwrap_or(0))),
            Err((_, errno)) => Err(named(
                io::Error::from(errno),
                &self.paths.lock,
                "testing the lease guard's lock",
            )),
        }
    }

    /// How long ago the guard last polled (from its status file), `None`
    /// when there is no status from this boot. A guard that is alive
    /// answers within a poll interval; a growing age means it is dead,
    /// frozen or starved, and the lease is not enforced.
    pub fn heartbeat_age_ms(&self) -> Option<u64> {
        let status = self.status()?;
        Some(monotonic_ms().saturating_sub(status.mono_ms))
    }

    /// The guard's last published status, `None` when missing, unreadable
    /// or from another boot.
    pub fn status(&self) -> Option<GuardStatus> {
        let text = fs::read_to_string(&self.paths.status).ok()?;
        let status: GuardStatus = serde_json::from_str(text.trim()).ok()?;
        (status.boot_id == boot_id().ok()?).then_some(status)
    }

    /// Stops the guard (SIGTERM), which leaves the server as it is, and
    /// waits up to `timeout` for its lock to be free. For when the site no
    /// longer needs a lease (it is being rejoined as a standby after a
    /// hard fence) and for tests. `Ok(false)`: no guard ran.
    pub fn stop(&self, timeout: Duration) -> io::Result<bool> {
        let Some(pid) = self.guard_pid()? else {
            return Ok(false);
        };
        if pid <= 1 {
            return Err(io::Error::other(format!(
                "{}: locked, but holds no guard pid",
                self.paths.lock.display()
            )));
        }
        match kill(Pid::from_raw(pid), Signal::SIGTERM) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(errno) => {
                return Err(io::Error::other(format!(
                    "lease guard pid {pid} ({}): SIGTERM: {errno}",
                    self.paths.lock.display()
                )))
            }
        }
        let deadline = Instant::now() + timeout;
        while self.guard_pid()?.is_some() {
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "lease guard pid {pid} ({}) still holds its lock {timeout:?} after SIGTERM",
                        self.paths.lock.display()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(true)
    }
}

/// `palisade lease-guard`: the guard process's arguments. Exactly one of
/// `--data-dir` (PostgreSQL) and `--mariadb-pid-file` (MariaDB) names the
/// server.
#[derive(Clone, Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("server")
        .required(true)
        .multiple(false)
        .args(["data_dir", "mariadb_pid_file"])
))]
pub struct GuardArgs {
    /// The PostgreSQL data directory whose server this guard holds to its
    /// lease.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The pid file of the MariaDB server (`mariadbd`) this guard holds to
    /// its lease. A missing pid file is a stopped server, not a reason to
    /// exit.
    #[arg(long, value_name = "PATH")]
    pub mariadb_pid_file: Option<PathBuf>,
    /// The file the witness writes its lease orders to; `<FILE>.lock`,
    /// `<FILE>.status` go next to it.
    #[arg(long)]
    pub order_file: PathBuf,
    /// Directory of `pg_ctl` (used to confirm a kill). Default: the
    /// directory of the running postmaster's executable, else `PATH`.
    /// PostgreSQL only.
    #[arg(long, conflicts_with = "mariadb_pid_file")]
    pub bin_dir: Option<PathBuf>,
    /// How long a freeze may last before the guard kills the server.
    #[arg(long, default_value_t = DEFAULT_HARD_AFTER_MS)]
    pub hard_after_ms: u64,
    /// Poll interval in milliseconds.
    #[arg(long, default_value_t = DEFAULT_POLL_MS, hide = true)]
    pub poll_ms: u64,
}

impl GuardArgs {
    /// The server these arguments name (`bin_dir` empty when not given).
    pub fn server(&self) -> Result<GuardedServer, GuardError> {
        match (&self.data_dir, &self.mariadb_pid_file) {
            (Some(data_dir), None) => Ok(GuardedServer::Postgres {
                data_dir: data_dir.clone(),
                bin_dir: self.bin_dir.clone().unwrap_or_default(),
            }),
            (None, Some(pid_file)) => Ok(GuardedServer::MariaDb {
                pid_file: pid_file.clone(),
            }),
            _ => Err(GuardError::NoServer),
        }
    }
}

/// Why the guard could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The arguments name no server, or two. Fatal.
    #[error("give exactly one of --data-dir (PostgreSQL) and --mariadb-pid-file (MariaDB)")]
    NoServer,
    /// Another guard already holds this order file's lock: exactly one
    /// guard per database. Not an error for whoever wanted one running.
    #[error("{}: another lease guard (pid {pid}) already guards this order file", lock_file.display())]
    AlreadyRunning {
        /// The lock file.
        lock_file: PathBuf,
        /// The holder's pid as it wrote it (0: unknown).
        pid: i32,
    },
    /// A file the guard needs could not be used. Fatal: fix the path or
    /// its permissions.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the guard was doing.
        action: &'static str,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
}

/// Runs the guard until `cancel` (SIGTERM, SIGINT), then leaves the server
/// as it is. Fails at once when another guard holds the lock.
pub async fn run(args: GuardArgs, cancel: CancellationToken) -> Result<(), GuardError> {
    let server = args.server()?;
    let paths = Paths::new(&args.order_file);
    let _lock = take_lock(&paths.lock)?;
    let boot = boot_id().map_err(|source| GuardError::Io {
        path: PathBuf::from(BOOT_ID_FILE),
        action: "reading the boot id",
        source,
    })?;
    shield_from_oom_killer();
    let mut guard = Guard::new(&args, &server, paths, boot);
    let renewer = Arc::new(Renewer::default());
    let renewals = tokio::spawn(renewer.clone().run(cancel.clone()));
    tracing::info!(
        pid = std::process::id(),
        order_file = %args.order_file.display(),
        server = %guard.site,
        hard_after_ms = args.hard_after_ms,
        "lease guard running"
    );
    let order_dir = args
        .order_file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    loop {
        match &server {
            GuardedServer::Postgres { data_dir, .. } => {
                if !data_dir.exists() {
                    tracing::warn!(data_dir = %data_dir.display(), "lease guard: the data directory is gone; nothing left to guard");
                    break;
                }
            }
            // A stopped mariadbd leaves no pid file (and systemd removes
            // its directory), so that says nothing. The witness's own
            // directory gone with no server running does: nobody can order
            // this guard any more, and there is nothing to hold.
            GuardedServer::MariaDb { .. } => {
                if !order_dir.exists() && guard.site.process_state() == ProcessState::Stopped {
                    tracing::warn!(order_dir = %order_dir.display(), "lease guard: the witness's directory is gone and no mariadbd runs; nothing left to guard");
                    break;
                }
            }
        }
        let now = monotonic_ms();
        let read = guard.read_order();
        let server_up = guard.site.process_state() != ProcessState::Stopped;
        renewer.observe(read.as_ref().map(|(o, seen)| Seen {
            epoch: o.epoch,
            hard: o.hard,
            server_up,
            ..seen.clone()
        }));
        let order = read.map(|(o, _)| renewer.effective(o));
        guard.poll(order.as_ref(), now).await;
        let mut wake = wake_in_ms(order.as_ref(), monotonic_ms(), args.poll_ms.max(1));
        if guard.idle(order.as_ref(), monotonic_ms()) {
            // No server and no live lease: a server started now is
            // unleased and frozen within this, not within a poll; scanning
            // /proc every poll would cost a few % of a core for nothing.
            wake = wake.max(IDLE_POLL_MS);
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(wake)) => {}
        }
    }
    renewals.abort();
    tracing::info!(
        server = ?guard.site.process_state(),
        "lease guard stopping; the server is left as it is"
    );
    Ok(())
}

/// A freeze this guard holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Freeze {
    epoch: Option<u64>,
    since_ms: u64,
}

/// The guard's state between polls.
struct Guard {
    paths: Paths,
    boot: String,
    cfg: GuardConfig,
    /// The server.
    site: Site,
    /// The freeze this guard made and still holds, `None` when it holds
    /// none. Survives a guard restart through the status file.
    freeze: Option<Freeze>,
    /// What was last logged for a "nothing" decision and for the order
    /// file, to log changes only.
    last_reason: Option<Reason>,
    last_order_problem: Option<String>,
    last_action: Option<String>,
    /// The last heartbeat could not be written (logged once).
    status_failing: bool,
    /// No new attempt of a failed action before this instant.
    retry_at_ms: u64,
    /// What the last poll saw of the server.
    last_observed: Option<ProcessState>,
}

impl Guard {
    fn new(args: &GuardArgs, server: &GuardedServer, paths: Paths, boot: String) -> Self {
        let site = match server {
            GuardedServer::Postgres { data_dir, bin_dir } => {
                let mut site = PgSite::new(bin_dir.clone(), data_dir.clone(), String::new());
                site.timeout = Duration::from_secs(5);
                Site::Postgres {
                    site,
                    bin_dir_given: args.bin_dir.is_some(),
                }
            }
            GuardedServer::MariaDb { pid_file } => {
                Site::MariaDb(MariaProcess::new(pid_file.clone()))
            }
        };
        let mut guard = Guard {
            paths,
            boot,
            cfg: GuardConfig {
                hard_after_ms: args.hard_after_ms,
            },
            site,
            freeze: None,
            last_reason: None,
            last_order_problem: None,
            last_action: None,
            status_failing: false,
            retry_at_ms: 0,
            last_observed: None,
        };
        guard.restore_freeze();
        guard
    }

    /// Takes over the freeze a previous guard of this boot recorded, if
    /// the server is still frozen: without it a restarted guard would take
    /// its own freeze for somebody else's and could never thaw it.
    fn restore_freeze(&mut self) {
        let Ok(text) = fs::read_to_string(&self.paths.status) else {
            return;
        };
        let Ok(status) = serde_json::from_str::<GuardStatus>(text.trim()) else {
            return;
        };
        if status.boot_id != self.boot || self.site.process_state() != ProcessState::Frozen {
            return;
        }
        if let Some(since_ms) = status.frozen_since_ms {
            self.freeze = Some(Freeze {
                epoch: status.frozen_epoch,
                since_ms,
            });
            tracing::info!(
                epoch = ?status.frozen_epoch,
                since_ms,
                previous_pid = status.pid,
                "took over the freeze of the previous lease guard"
            );
        }
    }

    /// The latest order of this boot; `None` for none, another boot's or
    /// an unreadable one (each problem logged once).
    fn read_order(&mut self) -> Option<(GuardOrder, Seen)> {
        let (order, problem) = match fs::read_to_string(&self.paths.order) {
            Ok(text) => match serde_json::from_str::<OrderLine>(text.trim()) {
                Ok(line) if line.boot_id == self.boot => (
                    Some((
                        GuardOrder {
                            epoch: line.epoch,
                            deadline_ms: line.deadline_ms,
                            hard: line.hard,
                        },
                        Seen {
                            epoch: line.epoch,
                            hard: line.hard,
                            written_ms: line.written_ms,
                            spec: line.renewal,
                            server_up: true,
                        },
                    )),
                    None,
                ),
                Ok(line) => (
                    None,
                    Some(format!(
                        "written on another boot ({}); counts as no lease",
                        line.boot_id
                    )),
                ),
                Err(e) => (
                    None,
                    Some(format!("not a lease order ({e}); counts as no lease")),
                ),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                (None, Some("missing; counts as no lease".to_owned()))
            }
            Err(e) => (None, Some(format!("unreadable ({e}); counts as no lease"))),
        };
        if problem != self.last_order_problem {
            if let Some(p) = &problem {
                tracing::warn!(order_file = %self.paths.order.display(), "lease order file {p}");
            }
            self.last_order_problem = problem;
        }
        order
    }

    /// Whether there is nothing to watch closely: no server process and no
    /// live lease.
    fn idle(&self, order: Option<&GuardOrder>, now: u64) -> bool {
        self.last_observed == Some(ProcessState::Stopped)
            && order.is_none_or(|o| o.hard || !o.is_live(now))
    }

    /// One poll: observe, decide, act, publish.
    async fn poll(&mut self, order: Option<&GuardOrder>, now: u64) {
        let observed = self.site.process_state();
        self.last_observed = Some(observed);
        if observed == ProcessState::Stopped {
            // Nothing left to hold frozen; the next server may listen
            // elsewhere or run from other binaries.
            self.freeze = None;
            self.site.forget_server();
        } else {
            self.site.learn_server();
        }
        let server = match (observed, self.freeze) {
            (ProcessState::Stopped, _) => ServerState::Stopped,
            (ProcessState::Frozen, Some(f)) => ServerState::Frozen {
                epoch: f.epoch,
                since_ms: f.since_ms,
            },
            // Running, or stopped by somebody else: whoever stopped it may
            // resume it at any time, so it counts as running.
            _ => ServerState::Running,
        };
        let d = decide(order, server, now, &self.cfg);
        let enforced = match d.action {
            GuardAction::Nothing => {
                if observed == ProcessState::Running {
                    self.freeze = None;
                }
                if self.last_reason.map(|r| discriminant(&r)) != Some(discriminant(&d.reason)) {
                    tracing::info!(epoch = ?d.epoch, "lease guard: leaving the server as it is: {}", d.reason);
                }
                observed
            }
            _ if now < self.retry_at_ms => observed,
            GuardAction::Freeze => self.freeze_now(&d, now).await,
            GuardAction::Thaw => self.thaw_now(&d).await,
            GuardAction::Kill => self.kill_now(&d).await,
        };
        self.last_reason = Some(d.reason);
        self.publish(order, enforced);
    }

    async fn freeze_now(&mut self, d: &Decision, now: u64) -> ProcessState {
        match self.site.freeze().await {
            Ok(None) => ProcessState::Stopped,
            Ok(Some(Signalled {
                pid,
                processes,
                elapsed,
            })) => {
                // A server resumed behind our back keeps the freeze it had:
                // the same epoch to thaw for, the same bound.
                let freeze = *self.freeze.get_or_insert(Freeze {
                    epoch: d.epoch,
                    since_ms: now,
                });
                tracing::warn!(
                    epoch = ?freeze.epoch,
                    server = %self.site,
                    ?pid,
                    processes,
                    elapsed_us = elapsed.as_micros() as u64,
                    "lease guard: FROZE the database: {}",
                    d.reason
                );
                self.record_action(format!("froze: {}", d.reason));
                ProcessState::Frozen
            }
            Err(error) => {
                // A server that may still run without a lease must go.
                tracing::error!(%error, server = %self.site, "lease guard: could not freeze the database; killing it: {}", d.reason);
                self.kill_now(d).await
            }
        }
    }

    async fn thaw_now(&mut self, d: &Decision) -> ProcessState {
        match self.site.thaw().await {
            Ok(None) => {
                self.freeze = None;
                ProcessState::Stopped
            }
            Ok(Some(Signalled { pid, elapsed, .. })) => {
                self.freeze = None;
                tracing::warn!(
                    epoch = ?d.epoch,
                    server = %self.site,
                    ?pid,
                    elapsed_us = elapsed.as_micros() as u64,
                    "lease guard: THAWED the database: {}",
                    d.reason
                );
                self.record_action(format!("thawed: {}", d.reason));
                ProcessState::Running
            }
            Err(error) => {
                // Frozen is safe; retry later.
                tracing::error!(%error, server = %self.site, "lease guard: could not thaw the database: {}", d.reason);
                self.retry_at_ms = monotonic_ms() + RETRY_AFTER_MS;
                self.site.process_state()
            }
        }
    }

    /// Kills the server and confirms it is gone ([`Site::kill`]). Should
    /// the kill fail, the server stays frozen if the freeze worked, which
    /// takes no writes either.
    async fn kill_now(&mut self, d: &Decision) -> ProcessState {
        match self.site.kill(d.epoch.unwrap_or(0)).await {
            Ok(elapsed) => {
                self.freeze = None;
                tracing::warn!(
                    epoch = ?d.epoch,
                    server = %self.site,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "lease guard: KILLED the database: {}",
                    d.reason
                );
                self.record_action(format!("killed: {}", d.reason));
                ProcessState::Stopped
            }
            // The kill may have worked and only its confirmation failed: a
            // server started by hand, killed before it wrote its address to
            // postmaster.pid, leaves no DSN to confirm with (seen in the
            // three-host trial). No process left is a kill.
            Err(error) if self.site.process_state() == ProcessState::Stopped => {
                self.freeze = None;
                tracing::warn!(
                    epoch = ?d.epoch,
                    server = %self.site,
                    confirmation = %error,
                    "lease guard: KILLED the database (no process is left; the usual confirmation \
                     failed): {}",
                    d.reason
                );
                self.record_action(format!("killed: {}", d.reason));
                ProcessState::Stopped
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    server = %self.site,
                    "LEASE GUARD COULD NOT KILL the database (it stays frozen if the freeze \
                     worked): a human must look; {}",
                    d.reason
                );
                self.retry_at_ms = monotonic_ms() + RETRY_AFTER_MS;
                self.site.process_state()
            }
        }
    }

    fn record_action(&mut self, what: String) {
        self.last_action = Some(format!("{what} (at {} ms)", monotonic_ms()));
    }

    /// Writes the heartbeat. A failure is logged when it starts; the
    /// guard keeps guarding (the witness then sees a stale heartbeat).
    fn publish(&mut self, order: Option<&GuardOrder>, server: ProcessState) {
        let status = GuardStatus {
            boot_id: self.boot.clone(),
            pid: std::process::id(),
            mono_ms: monotonic_ms(),
            server,
            frozen_epoch: self.freeze.and_then(|f| f.epoch),
            frozen_since_ms: self.freeze.map(|f| f.since_ms),
            order: order.copied(),
            last_action: self.last_action.clone(),
        };
        let text = match serde_json::to_string(&status) {
            Ok(t) => t + "\n",
            Err(e) => {
                tracing::error!(error = %e, "lease guard: cannot encode its status");
                return;
            }
        };
        match write_atomically(&self.paths.status, text.as_bytes(), "writing the status") {
            Ok(()) => self.status_failing = false,
            Err(e) => {
                if !self.status_failing {
                    tracing::error!(error = %e, "lease guard: cannot publish its heartbeat");
                }
                self.status_failing = true;
            }
        }
    }
}

/// What a freeze or a thaw signalled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Signalled {
    /// The server's main process (postmaster, `mariadbd`), when alive.
    pid: Option<i32>,
    /// How many processes were signalled, the main one included.
    processes: usize,
    /// From the call until every process was seen in its new state.
    elapsed: Duration,
}

/// An action's failure, for the log.
type ActError = Box<dyn std::error::Error + Send + Sync>;

/// The guarded server and how to act on it.
enum Site {
    /// Its DSN (only used to check the address refuses connections after a
    /// kill) and bin dir are filled in from the running postmaster when
    /// not given.
    Postgres { site: PgSite, bin_dir_given: bool },
    /// Signals to the `mariadbd` of a pid file; nothing to learn.
    MariaDb(MariaProcess),
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Site::Postgres { site, .. } => {
                write!(f, "PostgreSQL of data dir {}", site.data_dir.display())
            }
            Site::MariaDb(m) => m.fmt(f),
        }
    }
}

impl Site {
    /// Running, frozen or stopped, from `/proc` alone.
    fn process_state(&self) -> ProcessState {
        match self {
            Site::Postgres { site, .. } => site.process_state(),
            Site::MariaDb(m) => m.process_state(),
        }
    }

    /// Stops every process of the server (SIGSTOP) and confirms it;
    /// `None`: no server process ran.
    async fn freeze(&self) -> Result<Option<Signalled>, ActError> {
        match self {
            Site::Postgres { site, .. } => {
                let site = site.clone();
                match blocking(move || site.freeze_server()).await? {
                    FreezeOutcome::NotRunning => Ok(None),
                    FreezeOutcome::Frozen {
                        postmaster,
                        others,
                        elapsed,
                    } => Ok(Some(Signalled {
                        pid: postmaster,
                        processes: others.len() + usize::from(postmaster.is_some()),
                        elapsed,
                    })),
                }
            }
            Site::MariaDb(m) => {
                let m = m.clone();
                Ok(blocking(move || m.freeze()).await?)
            }
        }
    }

    /// Resumes every process of the server (SIGCONT) and confirms it;
    /// `None`: no server process ran.
    async fn thaw(&self) -> Result<Option<Signalled>, ActError> {
        match self {
            Site::Postgres { site, .. } => {
                let site = site.clone();
                match blocking(move || site.thaw_server()).await? {
                    ThawOutcome::NotRunning => Ok(None),
                    ThawOutcome::Thawed {
                        postmaster,
                        others,
                        elapsed,
                    } => Ok(Some(Signalled {
                        pid: postmaster,
                        processes: others.len() + usize::from(postmaster.is_some()),
                        elapsed,
                    })),
                }
            }
            Site::MariaDb(m) => {
                let m = m.clone();
                Ok(blocking(move || m.thaw()).await?)
            }
        }
    }

    /// Kills the server and confirms it is gone; returns the time taken.
    /// PostgreSQL: freezes first (signals only: the server stops
    /// acknowledging within milliseconds), then [`PgSite::fence_urgently`],
    /// which first asks `pg_ctl`. MariaDB: see `mariadb.rs`.
    async fn kill(&self, epoch: u64) -> Result<Duration, ActError> {
        match self {
            Site::Postgres { site, .. } => {
                let frozen = site.clone();
                if let Err(error) = blocking(move || frozen.freeze_server()).await {
                    tracing::warn!(%error, "lease guard: freezing before the kill failed; killing anyway");
                }
                Ok(site.fence_urgently(epoch).await?.elapsed())
            }
            Site::MariaDb(m) => {
                let m = m.clone();
                Ok(blocking(move || m.kill()).await?)
            }
        }
    }

    /// Fills in what a PostgreSQL kill's confirmation needs from the
    /// running server: its address (from `postmaster.pid`) and, unless
    /// given, its bin dir.
    fn learn_server(&mut self) {
        let Site::Postgres {
            site,
            bin_dir_given,
        } = self
        else {
            return;
        };
        if site.admin_dsn.is_empty() {
            if let Some(dsn) = probe_dsn(&site.data_dir) {
                site.admin_dsn = dsn;
            }
        }
        if !*bin_dir_given && site.bin_dir.as_os_str().is_empty() {
            if let Some(dir) = postmaster_bin_dir(&site.data_dir) {
                site.bin_dir = dir;
            }
        }
        if site.os_user.is_none() && Uid::effective().is_root() {
            // PostgreSQL's tools refuse to run as root: run them as the
            // owner of the data directory.
            site.os_user = fs::metadata(&site.data_dir)
                .ok()
                .and_then(|m| User::from_uid(Uid::from_raw(m.uid())).ok().flatten())
                .map(|u| u.name)
                .filter(|name| name != "root");
        }
    }

    /// Forgets what [`Site::learn_server`] learnt of a server that is gone:
    /// the next one may listen elsewhere or run from other binaries.
    fn forget_server(&mut self) {
        if let Site::Postgres {
            site,
            bin_dir_given,
        } = self
        {
            site.admin_dsn.clear();
            if !*bin_dir_given {
                site.bin_dir = PathBuf::new();
            }
        }
    }
}

/// Runs blocking work (signals and short waits) off the runtime's threads.
async fn blocking<T: Send + 'static, E: Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

/// Takes the guard's lock, retrying briefly: a witness testing whether a
/// guard runs holds it for a moment too.
fn take_lock(path: &Path) -> Result<Flock<File>, GuardError> {
    let io_err = |action, source| GuardError::Io {
        path: path.to_path_buf(),
        action,
        source,
    };
    let mut file = open_lock_file(path).map_err(|e| io_err("opening the lock file", e))?;
    for attempt in 0..5 {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                lock.set_len(0)
                    .and_then(|()| lock.write_all(format!("{}\n", std::process::id()).as_bytes()))
                    .map_err(|e| io_err("writing our pid into the lock file", e))?;
                return Ok(lock);
            }
            Err((mut back, Errno::EWOULDBLOCK)) => {
                if attempt == 4 {
                    return Err(GuardError::AlreadyRunning {
                        lock_file: path.to_path_buf(),
                        pid: read_pid(&mut back).unwrap_or(0),
                    });
                }
                file = back;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err((_, errno)) => return Err(io_err("locking the lock file", io::Error::from(errno))),
        }
    }
    unreachable!("the last attempt returns")
}

/// Opens (creating) the lock file without truncating it: the holder's pid
/// is in it.
fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| named(e, path, "opening the lease guard's lock file"))
}

fn read_pid(file: &mut File) -> Option<i32> {
    use std::io::Seek;
    file.rewind().ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Writes `bytes` to a temporary file next to `path` and renames it over
/// `path`, so a reader sees the old or the new content, never a mix. The
/// file is owner-only (0600), like everything in the data directory.
fn write_atomically(path: &Path, bytes: &[u8], action: &'static str) -> io::Result<()> {
    // Unique per process and call: two writers must never share a
    // temporary file, or one could rename the other's half-written one.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".tmp.{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = PathBuf::from(tmp);
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(named(e, path, action));
    }
    Ok(())
}

/// An I/O error that names the file and what we were doing.
fn named(e: io::Error, path: &Path, action: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {action}: {e}", path.display()))
}

/// A DSN for the server's own address, read from `postmaster.pid` (line 4
/// the port, 5 the socket directory, 6 the first listen address). It
/// carries no password: it is only used to check that nothing accepts
/// connections there after a kill.
fn probe_dsn(data_dir: &Path) -> Option<String> {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let port: u16 = lines.get(3)?.parse().ok()?;
    let user = "palisade-lease-guard";
    let host = match lines.get(5).copied().unwrap_or("") {
        "" => None,
        "*" | "0.0.0.0" => Some("127.0.0.1".to_owned()),
        "::" => Some("[::1]".to_owned()),
        h if h.contains(':') => Some(format!("[{h}]")),
        h => Some(h.to_owned()),
    };
    match host {
        Some(host) => Some(format!("postgres://{user}@{host}:{port}/postgres")),
        None => {
            let socket_dir = lines.get(4).copied().filter(|d| {
                d.starts_with('/')
                    && d.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
            })?;
            Some(format!(
                "postgres://{user}@localhost:{port}/postgres?host={socket_dir}"
            ))
        }
    }
}

/// The directory of the running postmaster's executable (where `pg_ctl`
/// lives too).
fn postmaster_bin_dir(data_dir: &Path) -> Option<PathBuf> {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(exe.parent()?.to_path_buf())
}

/// Asks the kernel not to pick the guard when memory runs out: a guard
/// killed by the OOM killer enforces nothing. Needs root; best effort.
fn shield_from_oom_killer() {
    if let Err(e) = fs::write("/proc/self/oom_score_adj", "-1000") {
        tracing::debug!(error = %e, "lease guard: could not lower its OOM score");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_clock_moves_forward_with_std_instant() {
        let (a, i) = (monotonic_ms(), Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let (b, e) = (monotonic_ms(), i.elapsed());
        assert!(b >= a + 19, "{a} -> {b}");
        assert!(b - a <= e.as_millis() as u64 + 2, "{a} -> {b} in {e:?}");
    }

    #[test]
    fn sibling_files_extend_the_order_file_name() {
        let p = Paths::new(Path::new("/run/palisade/lease.order"));
        assert_eq!(p.lock, Path::new("/run/palisade/lease.order.lock"));
        assert_eq!(p.status, Path::new("/run/palisade/lease.order.status"));
        assert_eq!(p.log, Path::new("/run/palisade/lease.order.log"));
    }

    #[test]
    fn orders_round_trip_and_other_boots_count_as_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        let handle = GuardHandle::new(dir.path().join("o"), "/nonexistent", "/bin", "/bin/true");
        let order = GuardOrder {
            epoch: 4,
            deadline_ms: 1234,
            hard: false,
        };
        handle.order(order).expect("write the order");
        let args = GuardArgs {
            data_dir: Some("/nonexistent".into()),
            mariadb_pid_file: None,
            order_file: dir.path().join("o"),
            bin_dir: None,
            hard_after_ms: 10,
            poll_ms: 20,
        };
        let mut guard = Guard::new(
            &args,
            &args.server().expect("a server"),
            Paths::new(&dir.path().join("o")),
            boot_id().expect("boot id"),
        );
        assert_eq!(guard.read_order().map(|(o, _)| o), Some(order));
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("o"))
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "the order file is owner-only");
        }
        let other = r#"{"boot_id":"another","epoch":4,"deadline_ms":1234,"hard":false}"#;
        fs::write(dir.path().join("o"), other).expect("write");
        assert!(guard.read_order().is_none());
        fs::write(dir.path().join("o"), "garbage").expect("write");
        assert!(guard.read_order().is_none());
        fs::remove_file(dir.path().join("o")).expect("remove");
        assert!(guard.read_order().is_none());
    }

    #[test]
    fn the_lock_admits_one_guard() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lock = dir.path().join("o.lock");
        let handle = GuardHandle::new(dir.path().join("o"), "/x", "/x", "/x");
        assert_eq!(handle.guard_pid().expect("test the lock"), None);
        let held = take_lock(&lock).expect("first lock");
        assert_eq!(
            handle.guard_pid().expect("test the lock"),
            Some(std::process::id() as i32)
        );
        match take_lock(&lock) {
            Err(GuardError::AlreadyRunning { pid, .. }) => {
                assert_eq!(pid, std::process::id() as i32)
            }
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        drop(held);
        assert_eq!(handle.guard_pid().expect("test the lock"), None);
    }

    #[test]
    fn the_guard_takes_exactly_one_server() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: GuardArgs,
        }
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["lease-guard", "--order-file", "/o"].iter().chain(args))
                .map(|c| c.args)
        };
        let pg = parse(&["--data-dir", "/pg", "--bin-dir", "/bin"]).expect("PostgreSQL");
        assert_eq!(
            pg.server().expect("a server"),
            GuardedServer::Postgres {
                data_dir: "/pg".into(),
                bin_dir: "/bin".into()
            }
        );
        let maria = parse(&["--mariadb-pid-file", "/run/mysqld/mysqld.pid"]).expect("MariaDB");
        assert_eq!(
            maria.server().expect("a server"),
            GuardedServer::MariaDb {
                pid_file: "/run/mysqld/mysqld.pid".into()
            }
        );
        let neither = parse(&[]).expect_err("no server is an error").to_string();
        assert!(
            neither.contains("--data-dir") && neither.contains("--mariadb-pid-file"),
            "{neither}"
        );
        assert!(parse(&["--data-dir", "/pg", "--mariadb-pid-file", "/p"]).is_err());
        assert!(parse(&["--mariadb-pid-file", "/p", "--bin-dir", "/bin"]).is_err());
    }

    #[test]
    fn a_mariadb_handle_starts_its_guard_on_the_pid_file() {
        let handle = GuardHandle::new_mariadb("/run/palisade/o", "/run/mysqld/mysqld.pid", "/x");
        assert_eq!(
            handle.server(),
            &GuardedServer::MariaDb {
                pid_file: "/run/mysqld/mysqld.pid".into()
            }
        );
    }

    #[test]
    fn the_probe_address_comes_from_postmaster_pid() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pid = |listen: &str| {
            fs::write(
                dir.path().join("postmaster.pid"),
                format!("123\n/data\n1700000000\n5433\n/run/pg\n{listen}\n  1 2\nready\n"),
            )
            .expect("write");
            probe_dsn(dir.path())
        };
        assert_eq!(
            pid("127.0.0.1").as_deref(),
            Some("postgres://palisade-lease-guard@127.0.0.1:5433/postgres")
        );
        assert_eq!(
            pid("*").as_deref(),
            Some("postgres://palisade-lease-guard@127.0.0.1:5433/postgres")
        );
        assert_eq!(
            pid("").as_deref(),
            Some("postgres://palisade-lease-guard@localhost:5433/postgres?host=/run/pg")
        );
    }
}
