//! A site agent's control of its own site's MariaDB master in a
//! master-master pair (the HA/DR guide's "Setting Up Replication for MySQL
//! Databases"): fence its writes, kill it, start it read-only, make it the
//! writer with proof that it applied what it must, read a fenced old
//! writer's final position, switch semi-synchronous replication, stop and
//! start its replication from the other master, and bring an old writer
//! back as the new writer's replica ([`MariaSite::rejoin`]).
//!
//! [`MariaSite`] does it with SQL over the admin DSN and signals to the
//! `mariadbd` process its pid file names. Every operation is idempotent,
//! so the failover executor can repeat a step after a leader change
//! (DESIGN.md safety rule 6), and carries the failover's epoch, which lands
//! in the tracing span and, on promotion, in the database itself
//! (`palisade.epoch`, which replicates to the other master).
//!
//! Every statement is in the private `sql` submodule, each with its MySQL
//! 8 difference (`SHOW REPLICA STATUS` and `Source_*` columns,
//! `super_read_only`, `rpl_semi_sync_source_*`, `STOP REPLICA` /
//! `START REPLICA`, `gtid_executed` instead of `gtid_binlog_state`).
//!
//! # Two fences
//!
//! Both masters of the pair run all the time and replicate each other;
//! only `read_only` tells the writer from the other one. So the ordinary
//! fence, [`MariaSite::fence_writes`], is a *soft* one: `SET GLOBAL
//! read_only = ON`, then every client session is killed (replication
//! threads and the server's own stay, so the fenced master keeps applying
//! the other master's writes), then it confirms that `read_only` reads
//! back ON and that no session of an account able to write through
//! `read_only` is connected.
//!
//! What the soft fence cannot stop: in MariaDB 10.11 an account holding
//! `READ_ONLY ADMIN` writes through `read_only` (10.5.2–10.10: also
//! `SUPER`, which implied it; 10.11 took it out of `SUPER`, so there a
//! `SUPER`-only account is refused like any other). MySQL 8 instead has
//! `super_read_only`, which stops those too; MariaDB has nothing like it.
//! Hence:
//!
//! * the application's account must not hold `READ_ONLY ADMIN` (nor, on
//!   MariaDB before 10.11, `SUPER`). [`FenceWritesOutcome::bypassing_accounts`]
//!   lists every account that holds it (other than palisade's admin user,
//!   at any host, and the replication user) as a warning; on a default
//!   install that includes `'root'@'localhost'`, which holds every
//!   privilege (over the unix socket only, on Debian);
//! * palisade's own admin account needs `READ_ONLY ADMIN` (to change
//!   `read_only`), `CONNECTION ADMIN` (to kill other users' sessions),
//!   `PROCESS` (to see them), `SLAVE MONITOR` / `BINLOG MONITOR` (for
//!   `SHOW SLAVE STATUS`, `SHOW MASTER STATUS`), `REPLICATION SLAVE ADMIN`
//!   (for `STOP SLAVE` / `START SLAVE`), `SELECT` on `mysql.*` (to
//!   see other accounts' privileges), and `CREATE`, `INSERT`, `UPDATE` on
//!   `palisade.*` (the test write);
//! * when the lease is gone, or the soft fence cannot be confirmed,
//!   [`MariaSite::fence_hard`] SIGKILLs `mariadbd`: nobody writes to a dead
//!   process. With `sync_binlog = 1` and `innodb_flush_log_at_trx_commit =
//!   1` (as the guide sets them) InnoDB's crash recovery on the next start
//!   loses nothing committed, and [`MariaSite::start`] always starts it
//!   with `--read-only`, so a restarted master takes no writes before the
//!   agent says so.
//!
//! # Errant transactions and rejoin
//!
//! After an unplanned failover the old writer may hold transactions it
//! committed (and acknowledged) that never reached the survivor. If the
//! survivor's replication from it kept running, the old writer's restart
//! would hand them to the new writer, which would apply them silently on
//! top of its own history (file/position replication does not compare
//! histories). So a promotion can stop the survivor's replication
//! ([`PromotionRequest::stop_replication`]), and the old writer coming back
//! ([`MariaSite::rejoin`]) first compares its own GTIDs with what the new
//! writer applied of it; only when nothing is errant, or the operator
//! allows it ([`ErrantPolicy::Replicate`]), does it replicate again, and
//! the new writer may then resume the other direction
//! ([`MariaSite::start_replication`] on it). Palisade never reconfigures
//! the pair (no `CHANGE MASTER`): stopping and starting keep each
//! direction's coordinates.

mod conn;
mod error;
mod fence;
mod process;
mod promote;
mod rejoin;
mod replication;
pub mod server_process;
mod sql;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use error::{MariaError, NotCaughtUp};

/// How often we re-check a condition we wait for.
const POLL: Duration = Duration::from_millis(100);

/// One local MariaDB master of a master-master pair, as its site agent
/// manages it.
///
/// The server's address is the host and port (or unix socket) of
/// `admin_dsn`: the hard fence checks that this address refuses
/// connections, so the DSN must name the address clients use (not a proxy
/// in front of the server).
#[derive(Clone, Debug)]
pub struct MariaSite {
    /// URL (`mysql://user:password@host:port/`) of palisade's admin account
    /// on this server (see the module doc for the privileges it needs).
    pub admin_dsn: String,
    /// The password of `admin_dsn` when held apart from it (a password
    /// file or environment variable); wins over one inline in `admin_dsn`.
    pub admin_password: Option<palisade_core::Secret>,
    /// The server binary (Debian: `/usr/sbin/mariadbd`), run by
    /// [`MariaSite::start`].
    pub mariadbd: PathBuf,
    /// The server's option file, passed as `--defaults-file` (its data
    /// directory, port, socket, `server_id`, `log_bin`, replication
    /// settings).
    pub defaults_file: PathBuf,
    /// The server's pid file: how the hard fence and
    /// [`MariaSite::is_running`] find the process. [`MariaSite::start`]
    /// passes it as `--pid-file`, so it must be where the running server
    /// writes it.
    pub pid_file: PathBuf,
    /// OS user `mariadbd` runs as when we are root (passed as `--user`:
    /// `mariadbd` switches to it itself, and refuses to run as root
    /// without). Ignored when we are not root: then we are that user.
    pub os_user: Option<String>,
    /// Bound of each step of an operation: a connection, a statement, the
    /// survivor's catch-up, a killed process disappearing, a start.
    pub timeout: Duration,
    /// Where a started `mariadbd`'s stdout and stderr go (appended), and
    /// what start errors quote. `None`: discarded (configure `log_error`
    /// instead), and start errors carry no server output.
    pub log_file: Option<PathBuf>,
}

impl MariaSite {
    /// A site with the Debian binary, a 10 s bound per step, no OS user
    /// switch and no log file.
    pub fn new(
        admin_dsn: impl Into<String>,
        defaults_file: impl Into<PathBuf>,
        pid_file: impl Into<PathBuf>,
    ) -> Self {
        Self {
            admin_dsn: admin_dsn.into(),
            admin_password: None,
            mariadbd: PathBuf::from("/usr/sbin/mariadbd"),
            defaults_file: defaults_file.into(),
            pid_file: pid_file.into(),
            os_user: None,
            timeout: Duration::from_secs(10),
            log_file: None,
        }
    }

    /// Names this server in errors and logs: its admin address
    /// (`host:port`, or the socket path), never the password.
    fn server(&self) -> String {
        match self.admin_options() {
            Ok(opts) => match opts.get_socket() {
                Some(socket) => socket.display().to_string(),
                None => format!("{}:{}", opts.get_host(), opts.get_port()),
            },
            Err(_) => self.defaults_file.display().to_string(),
        }
    }

    /// The soft fence: `read_only` on, every client session killed, then
    /// confirmed (see the module doc). Idempotent: on a fenced server it
    /// only kills sessions that connected since. Returns the accounts that
    /// could still write through `read_only` as a warning.
    ///
    /// `SET GLOBAL read_only` waits for explicit table locks (`LOCK
    /// TABLES`) and in-flight commits: up to half of `timeout`, after
    /// which the client sessions are killed first and it is set again.
    /// A hung server fails with a retryable timeout: then the hard fence.
    #[tracing::instrument(skip_all, fields(epoch = epoch, server = %self.server()))]
    pub async fn fence_writes(&self, epoch: u64) -> Result<FenceWritesOutcome, MariaError> {
        self.fence_writes_inner().await
    }

    /// Whether `read_only` is ON (changes nothing).
    #[tracing::instrument(skip_all, fields(server = %self.server()))]
    pub async fn is_write_fenced(&self) -> Result<bool, MariaError> {
        let mut conn = self.connect().await?;
        let read_only = self.read_only(&mut conn).await;
        self.close(conn).await;
        read_only
    }

    /// The hard fence, for when the lease is gone: SIGKILL of `mariadbd`
    /// (the pid in the pid file, checked to be this server's `mariadbd` so
    /// that a reused pid is never killed; a `mysqld_safe` parent is killed
    /// first so it cannot restart it), then confirmed: the process is gone
    /// and the address refuses connections. Idempotent: a stopped server is
    /// [`HardFenceOutcome::AlreadyStopped`] once the address is confirmed
    /// refusing. Do not run the server under a supervisor that restarts
    /// it (systemd `Restart=`), which would undo the fence.
    #[tracing::instrument(skip_all, fields(epoch = epoch, server = %self.server()))]
    pub async fn fence_hard(&self, epoch: u64) -> Result<HardFenceOutcome, MariaError> {
        let outcome = self.fence_hard_inner().await?;
        tracing::info!(?outcome, "hard fence confirmed");
        Ok(outcome)
    }

    /// Whether this server's `mariadbd` runs: the pid file names a live
    /// `mariadbd` (or `mysqld`) process of this site. It may still be
    /// starting, or be hung. Reads `/proc` only: no connection.
    pub fn is_running(&self) -> bool {
        self.live_server_pid().is_some()
    }

    /// Starts `mariadbd --defaults-file=… --read-only --skip-slave-start
    /// --pid-file=…` (with `--user` when we are root), detached in its own
    /// process group (replication is started when it is due: by `rejoin`,
    /// or by the writer's agent with `start_replication`), and
    /// waits until it accepts an admin connection and reads back
    /// `read_only = ON`. A server that is already running is left as it is
    /// ([`StartOutcome::AlreadyRunning`]). On a timeout the server is left
    /// starting (crash recovery may take longer); a retry finds it running.
    #[tracing::instrument(skip_all, fields(epoch = epoch, server = %self.server()))]
    pub async fn start(&self, epoch: u64) -> Result<StartOutcome, MariaError> {
        self.start_inner().await
    }

    /// Makes this surviving master the writer, only with proof that it
    /// applied what it must:
    ///
    /// 1. refuses ([`MariaError::StaleEpoch`]) when `palisade.epoch`
    ///    records a higher epoch;
    /// 2. refuses ([`MariaError::Lagging`]) when
    ///    [`PromotionRequest::max_lag_seconds`] is given and
    ///    `Seconds_Behind_Master` exceeds it;
    /// 3. waits (up to `timeout`) until the SQL thread has executed
    ///    everything the IO thread received (coordinates equal, and
    ///    `gtid_slave_pos` covering `Gtid_IO_Pos` when there is one) and,
    ///    on a planned handover, the IO thread has received the old
    ///    writer's final position; else [`MariaError::NotCaughtUp`];
    /// 4. `SET GLOBAL read_only = OFF` and the test write: the epoch in
    ///    `palisade.epoch` (id 1), which replicates to the other master.
    ///
    /// Only call after the old writer is fenced. Idempotent: a repeat finds
    /// `read_only` off and the epoch recorded
    /// ([`PromoteOutcome::already_writer`]), skips the wait, and writes
    /// again.
    #[tracing::instrument(skip_all, fields(epoch = epoch, server = %self.server()))]
    pub async fn promote(
        &self,
        epoch: u64,
        request: PromotionRequest,
    ) -> Result<PromoteOutcome, MariaError> {
        self.promote_inner(epoch, &request).await
    }

    /// Where a fenced old writer's binary log ends (`SHOW MASTER STATUS`)
    /// and its `gtid_binlog_pos`: what a planned handover's survivor must
    /// have received ([`PromotionRequest::old_writer_final`]). Refuses
    /// ([`MariaError::NotFenced`]) while `read_only` is off: the position
    /// of a server that takes writes is not final. (Replication into the
    /// fenced server adds to its binary log only with `log_slave_updates`,
    /// and then only the other master's own transactions.)
    #[tracing::instrument(skip_all, fields(server = %self.server()))]
    pub async fn final_position(&self) -> Result<FinalPosition, MariaError> {
        self.final_position_inner().await
    }

    /// Sets `rpl_semi_sync_master_enabled` and
    /// `rpl_semi_sync_master_timeout` (ms) (built into MariaDB 10.3+).
    /// Returns whether anything changed. (The other master acks only with
    /// `rpl_semi_sync_slave_enabled`, which the pair's configuration sets.)
    #[tracing::instrument(skip_all, fields(epoch = epoch, server = %self.server()))]
    pub async fn set_semi_sync(
        &self,
        epoch: u64,
        enabled: bool,
        timeout_ms: u64,
    ) -> Result<bool, MariaError> {
        let changed = self.set_semi_sync_inner(enabled, timeout_ms).await?;
        tracing::info!(
            enabled,
            timeout_ms,
            changed,
            "semi-synchronous replication set"
        );
        Ok(changed)
    }

    /// Stops this server's replication from the other master (`STOP
    /// SLAVE`: both threads), so nothing more is received or applied from
    /// it; the coordinates are kept. Returns whether anything changed:
    /// false when both threads were stopped already, or no replication is
    /// configured. Confirms both threads read `No` afterwards. Never runs
    /// `CHANGE MASTER`.
    #[tracing::instrument(skip_all, fields(server = %self.server()))]
    pub async fn stop_replication(&self) -> Result<bool, MariaError> {
        let mut conn = self.connect().await?;
        let changed = self.stop_replication_on(&mut conn).await;
        self.close(conn).await;
        let changed = changed?;
        tracing::info!(changed, "replication from the other master stopped");
        Ok(changed)
    }

    /// Starts this server's replication from the other master (`START
    /// SLAVE`) where it stopped. Returns whether anything changed: false
    /// when both threads already run (the IO thread `Yes` or still
    /// `Connecting`). Does not wait for the IO thread to connect (the
    /// other master may not be up yet); [`MariaSite::rejoin`] does. Fails
    /// with [`MariaError::NotReplicating`] when no replication is
    /// configured: palisade never runs `CHANGE MASTER`.
    ///
    /// The new writer calls it to resume receiving from an old writer that
    /// [rejoined](MariaSite::rejoin): its IO thread continues from the
    /// coordinates where [`PromotionRequest::stop_replication`] stopped it
    /// (the restarted old writer's binary log continues in a new file).
    #[tracing::instrument(skip_all, fields(server = %self.server()))]
    pub async fn start_replication(&self) -> Result<bool, MariaError> {
        let mut conn = self.connect().await?;
        let changed = self.start_replication_on(&mut conn).await;
        self.close(conn).await;
        let changed = changed?;
        tracing::info!(changed, "replication from the other master started");
        Ok(changed)
    }

    /// Brings this server, the old writer of an unplanned failover, back
    /// as the replica of the new writer (`peer`), never writable:
    ///
    /// 1. starts it read-only ([`MariaSite::start`]) when it does not run;
    ///    when it runs and `read_only` is OFF, soft-fences it
    ///    ([`MariaSite::fence_writes`]);
    /// 2. reads its `server_id` and `gtid_binlog_state`, and the peer's
    ///    `gtid_slave_pos` and `gtid_binlog_state`: the fork point is what
    ///    the peer applied of this server (its replication from here was
    ///    stopped at promotion, [`PromotionRequest::stop_replication`]);
    /// 3. this server's own transactions past the fork point are errant
    ///    ([`palisade_core::master_master::gtid::errant`]): with
    ///    [`ErrantPolicy::Refuse`] it fails with [`MariaError::Errant`]
    ///    (the server left running, read-only, its replication as it was:
    ///    stopped when [`MariaSite::start`] started it, which passes
    ///    `--skip-slave-start`, so nobody takes it for a rejoined replica;
    ///    the new writer must not resume the other direction with
    ///    [`MariaSite::start_replication`] either);
    ///    with [`ErrantPolicy::Replicate`] it goes on and reports them;
    /// 4. starts its replication from the peer and waits (up to `timeout`)
    ///    until the IO thread is connected (`Yes`) and the SQL thread runs.
    ///
    /// It does not wait for the SQL thread to apply what it received: an
    /// error applying the new writer's writes later (a row an errant
    /// transaction also wrote) shows in `SHOW SLAVE STATUS`, not here.
    ///
    /// Idempotent: on a rejoined server it finds it running, read-only and
    /// replicating, and returns at once.
    #[tracing::instrument(skip_all, fields(epoch = epoch, server = %self.server()))]
    pub async fn rejoin(
        &self,
        epoch: u64,
        peer: &PeerAccess,
        errant_policy: ErrantPolicy,
    ) -> Result<RejoinOutcome, MariaError> {
        let outcome = self.rejoin_inner(peer, errant_policy).await?;
        tracing::info!(?outcome, "rejoined as the new writer's replica");
        Ok(outcome)
    }
}

/// A position in a binary log: a file and a byte offset in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BinlogPosition {
    /// The binary log file, e.g. `mariadb-bin.000003`.
    pub file: String,
    /// The offset in it.
    pub position: u64,
}

impl BinlogPosition {
    /// Whether this position is at or past `other` in the same binary log
    /// (same base name; a later file, or the same file and an offset at
    /// least as large). Positions in differently named logs are not
    /// comparable: false.
    pub fn reached(&self, other: &BinlogPosition) -> bool {
        if self.file == other.file {
            return self.position >= other.position;
        }
        match (
            split_binlog_name(&self.file),
            split_binlog_name(&other.file),
        ) {
            (Some((base, index)), Some((other_base, other_index))) => {
                base == other_base && index > other_index
            }
            _ => false,
        }
    }
}

/// `base.000042` into `("base", 42)`.
fn split_binlog_name(file: &str) -> Option<(&str, u64)> {
    let (base, index) = file.rsplit_once('.')?;
    Some((base, index.parse().ok()?))
}

impl fmt::Display for BinlogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.position)
    }
}

/// What [`MariaSite::fence_writes`] did and found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceWritesOutcome {
    /// `read_only` was already ON when we came (an earlier fence, or this
    /// server was not the writer).
    pub was_read_only: bool,
    /// Client sessions killed (replication and server threads are never
    /// killed).
    pub sessions_killed: u32,
    /// Users of the killed sessions, sorted, each once.
    pub killed_users: Vec<String>,
    /// Accounts and roles other than palisade's admin user (at any host)
    /// and the replication user that can write through `read_only` (a
    /// warning: a session of theirs opened after this fence could write;
    /// only the hard fence stops that). On a well-configured server only
    /// `'root'@'localhost'`, if it exists.
    pub bypassing_accounts: Vec<BypassingAccount>,
    /// Total time.
    pub elapsed: Duration,
}

/// An account (or role) that can write through `read_only`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BypassingAccount {
    /// As `information_schema.USER_PRIVILEGES` names it: `'user'@'host'`.
    pub grantee: String,
    /// The privileges that let it: `READ_ONLY ADMIN` (and, before MariaDB
    /// 10.11, `SUPER`).
    pub privileges: Vec<String>,
}

/// What [`MariaSite::fence_hard`] found or did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum HardFenceOutcome {
    /// No `mariadbd` of this site ran; we confirmed nothing listens at its
    /// address.
    AlreadyStopped {
        /// Time taken to confirm.
        elapsed: Duration,
    },
    /// We SIGKILLed it, and confirmed it is gone and its address refuses.
    Killed {
        /// The process killed.
        pid: i32,
        /// Time from the call to the confirmation.
        elapsed: Duration,
    },
}

impl HardFenceOutcome {
    /// Time from the call to the confirmation.
    pub fn elapsed(&self) -> Duration {
        match self {
            HardFenceOutcome::AlreadyStopped { elapsed }
            | HardFenceOutcome::Killed { elapsed, .. } => *elapsed,
        }
    }
}

/// What [`MariaSite::start`] found or did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum StartOutcome {
    /// It was already running; nothing done (its `read_only` untouched).
    AlreadyRunning,
    /// We started it; it accepts connections, read-only.
    Started {
        /// Time until it accepted an admin connection.
        elapsed: Duration,
    },
}

/// What a promotion must prove before the survivor takes writes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionRequest {
    /// On a planned handover: the old writer's final position
    /// ([`MariaSite::final_position`] after its fence). The survivor's IO
    /// thread must have received up to it, and its SQL thread executed
    /// it. `None` on an unplanned failover: then the survivor must have
    /// executed everything it received.
    pub old_writer_final: Option<BinlogPosition>,
    /// Refuse when `Seconds_Behind_Master` exceeds this when we look
    /// (NULL, as when the old writer is gone, never refuses: the catch-up
    /// wait decides then).
    pub max_lag_seconds: Option<u64>,
    /// After the survivor is writable (after the test write), stop its
    /// replication from the old writer (`STOP SLAVE`). On an unplanned
    /// failover the old writer may hold transactions that never reached
    /// the survivor (errant transactions); were the survivor's IO thread
    /// still on when the old writer comes back, it would pull them and
    /// apply them silently on top of the new writer's history.
    /// [`MariaSite::rejoin`] checks for them first, and the new writer
    /// resumes with [`MariaSite::start_replication`]. Idempotent: a repeat
    /// finds it stopped. Default false.
    #[serde(default)]
    pub stop_replication: bool,
}

/// The evidence of a promotion, for the failover step record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteOutcome {
    /// `read_only` was already OFF and this epoch already recorded: an
    /// earlier attempt of this step did it (the catch-up wait was skipped,
    /// the test write ran again).
    pub already_writer: bool,
    /// How far the IO thread had received when caught up (`None`: no
    /// replication configured).
    pub read: Option<BinlogPosition>,
    /// How far the SQL thread had executed when caught up.
    pub executed: Option<BinlogPosition>,
    /// `Gtid_IO_Pos` when caught up (empty without GTID replication).
    pub gtid_io_pos: Option<String>,
    /// `Seconds_Behind_Master` when caught up (`None`: NULL).
    pub seconds_behind_master: Option<u64>,
    /// `@@gtid_slave_pos` when caught up: what it applied of the other
    /// master.
    pub gtid_slave_pos: String,
    /// `@@gtid_binlog_pos` after the test write: the new writer's own
    /// history starts here.
    pub gtid_binlog_pos: String,
    /// How long the catch-up wait took.
    pub caught_up_in: Duration,
    /// [`PromotionRequest::stop_replication`] was asked and, after the
    /// test write, neither replication thread runs (stopped by this call
    /// or found stopped; true too when no replication is configured).
    /// False when it was not asked.
    pub replication_stopped: bool,
    /// Total time.
    pub elapsed: Duration,
}

/// How [`MariaSite::rejoin`] reaches the new writer: an account that may
/// connect; it only reads `@@gtid_slave_pos` and `@@gtid_binlog_state`
/// (no privilege needed).
#[derive(Clone)]
pub struct PeerAccess {
    /// URL (`mysql://user@host:port/`) of the new writer.
    pub dsn: String,
    /// The password of `dsn` when held apart from it; wins over one
    /// inline in `dsn`.
    pub password: Option<palisade_core::Secret>,
}

impl fmt::Debug for PeerAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerAccess")
            .field("dsn", &conn::redact(&self.dsn))
            .field("password", &self.password)
            .finish()
    }
}

/// What [`MariaSite::rejoin`] does with an old writer's errant
/// transactions (`[failover] errant_transactions`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrantPolicy {
    /// Refuse to rejoin ([`MariaError::Errant`]): a human reconciles them.
    #[default]
    Refuse,
    /// Rejoin all the same and report them: the new writer applies them
    /// when it replicates from the old writer again.
    Replicate,
}

/// What [`MariaSite::rejoin`] found and did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejoinOutcome {
    /// We started `mariadbd` (read-only); false when it was running.
    pub started: bool,
    /// It was running with `read_only` OFF, and we soft-fenced it.
    pub fenced: bool,
    /// Its `server_id`: the server part of its own GTIDs.
    pub server_id: u32,
    /// Its `gtid_binlog_state` when compared.
    pub gtid_binlog_state: String,
    /// The fork point: what the new writer applied of this server (its
    /// `gtid_slave_pos`, with any of this server's GTIDs its own binary
    /// log holds), one GTID per domain.
    pub fork: String,
    /// Its own transactions past the fork point, per domain (empty: none;
    /// non-empty only under [`ErrantPolicy::Replicate`]).
    pub errant: Vec<palisade_core::master_master::gtid::Errant>,
    /// We ran `START SLAVE` (a thread was not running).
    pub replication_started: bool,
    /// Total time.
    pub elapsed: Duration,
}

/// Where a fenced old writer's binary log ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalPosition {
    /// `SHOW MASTER STATUS` `File` and `Position`.
    pub binlog: BinlogPosition,
    /// `@@gtid_binlog_pos`.
    pub gtid_binlog_pos: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(file: &str, position: u64) -> BinlogPosition {
        BinlogPosition {
            file: file.into(),
            position,
        }
    }

    #[test]
    fn binlog_positions_compare_within_one_log() {
        assert!(pos("bin.000002", 400).reached(&pos("bin.000002", 400)));
        assert!(pos("bin.000002", 401).reached(&pos("bin.000002", 400)));
        assert!(!pos("bin.000002", 399).reached(&pos("bin.000002", 400)));
        assert!(pos("bin.000003", 4).reached(&pos("bin.000002", 9000)));
        assert!(!pos("bin.000001", 9000).reached(&pos("bin.000002", 4)));
        assert!(!pos("other.000009", 4).reached(&pos("bin.000002", 4)));
        assert_eq!(pos("bin.000002", 400).to_string(), "bin.000002:400");
    }
}
