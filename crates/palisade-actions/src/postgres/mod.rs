//! A site agent's control of its own site's PostgreSQL server: fence it
//! (stop it and prove it stopped), start it, promote it, rejoin it as a
//! standby of the new primary, and switch synchronous replication.
//!
//! [`DatabaseControl`] is the interface the daemon's site agent uses;
//! [`PgSite`] implements it with PostgreSQL's own tools (`pg_ctl`,
//! `pg_rewind`, `pg_basebackup`) and SQL over the admin DSN. Another manager
//! (systemd units, a cloud API) can implement the same trait.
//!
//! Every operation is idempotent, so the failover executor can repeat a step
//! after a leader change (DESIGN.md safety rule 6), and carries the
//! failover's epoch, which lands in the tracing span and, on promotion, in
//! the database itself (`palisade.epoch`).
//!
//! The setup follows the user guide's "Setting Up Replication for
//! PostgreSQL Databases": streaming replication, `wal_log_hints = on` (which
//! is what makes `pg_rewind` possible), a replication user named in
//! `primary_conninfo`, and `recovery_target_timeline = 'latest'` (the
//! default since PostgreSQL 12), so a rejoined standby follows the new
//! primary's timeline.

mod conninfo;
mod error;
mod exec;
mod fence;
mod freeze;
mod promote;
mod reap;
mod rejoin;

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;

pub use error::DbError;
pub use fence::ControlData;
pub use freeze::{FreezeOutcome, ProcessState, ThawOutcome};
pub use reap::{adopt_orphaned_servers, reap_exited_servers};

/// Controls one database server on behalf of its site agent.
///
/// Each method is idempotent: calling it again after it succeeded (or after
/// a crash half-way) converges to the same state and reports what it found.
/// Errors say whether a retry can help ([`DbError::is_retryable`]).
pub trait DatabaseControl: Send + Sync {
    /// Whether the server process runs (it may still be starting, or be
    /// hung): `pg_ctl status`, not counting a dead but unreaped postmaster.
    fn is_running(&self) -> impl Future<Output = Result<bool, DbError>> + Send;

    /// Makes the server certainly unable to take writes, and confirms it.
    /// Success means: no server process runs for the data directory and
    /// the server's address refuses connections. Only then may another
    /// database be promoted (DESIGN.md safety rule 2).
    fn fence(&self, epoch: u64) -> impl Future<Output = Result<FenceOutcome, DbError>> + Send;

    /// Whether the server is fenced right now (the same two checks as
    /// [`DatabaseControl::fence`] confirms, without changing anything).
    fn is_fenced(&self) -> impl Future<Output = Result<bool, DbError>> + Send;

    /// [`DatabaseControl::fence`] without the polite shutdown: kill every
    /// process of the server at once, then the same confirmation. It exists
    /// because the lease is gone (it ran out, a witness refused it, or a
    /// hung primary must go): the server must be unable to write within
    /// milliseconds, not after a shutdown's grace, and a server that
    /// ignores a shutdown may keep serving old sessions meanwhile. Crash
    /// recovery runs on the next start; nothing committed is lost.
    fn fence_urgently(
        &self,
        epoch: u64,
    ) -> impl Future<Output = Result<FenceOutcome, DbError>> + Send;

    /// Whether any process of the server still runs (its main process, or
    /// one that outlived it), cheaply and without blocking: no command, no
    /// connection. It exists as evidence the agent asks for often: the lease
    /// guard task every few milliseconds (is there anything left to kill?),
    /// and the hang watch (processes that live but answer no probe are a
    /// hung server, not a crashed one; a dead main process whose children
    /// linger is a zombie server to kill).
    fn has_server_processes(&self) -> bool;

    /// The fence of a planned handover (switchover): a clean shutdown, so
    /// that the standby receives the whole WAL before the server exits,
    /// bounded like [`DatabaseControl::fence`] (falling back to harsher
    /// stops), and then where the stopped server's WAL ends. It exists
    /// because a handover may promote the standby only once it has replayed
    /// up to that final position, which proves nothing acknowledged is
    /// lost; when the shutdown was not clean the position is unknown and
    /// the handover cannot prove its catch-up.
    fn fence_for_handover(
        &self,
        epoch: u64,
    ) -> impl Future<Output = Result<HandoverFence, DbError>> + Send;

    /// Starts the server in whatever role its data directory says (primary,
    /// or standby when `standby.signal` is present). Used to restart a
    /// crashed primary in place once the cluster confirms it is still the
    /// primary.
    fn start(&self, epoch: u64) -> impl Future<Output = Result<StartOutcome, DbError>> + Send;

    /// Promotes a standby to primary and proves it takes writes by
    /// recording `epoch` in `palisade.epoch`. Only call after the old
    /// primary is fenced. Refuses ([`DbError::StaleEpoch`]) when the
    /// database already records a higher epoch.
    fn promote(&self, epoch: u64) -> impl Future<Output = Result<PromoteOutcome, DbError>> + Send;

    /// Turns this fenced former primary into a streaming standby of the
    /// primary that `primary_conninfo` names, and waits until it streams.
    ///
    /// `primary_conninfo` is a libpq connection string for the replication
    /// user (as in the user guide's `recovery.conf`); it is written to this
    /// server's configuration as is, so include `application_name` when
    /// synchronous replication must recognise this standby.
    fn rejoin_as_standby(
        &self,
        epoch: u64,
        primary_conninfo: &str,
    ) -> impl Future<Output = Result<RejoinOutcome, DbError>> + Send;

    /// Sets `synchronous_standby_names` (`None`: asynchronous replication)
    /// and waits until the server has reloaded it.
    fn set_synchronous(
        &self,
        epoch: u64,
        standby_names: Option<&str>,
    ) -> impl Future<Output = Result<SyncOutcome, DbError>> + Send;
}

/// One local PostgreSQL server, as its site agent manages it.
///
/// The server's address is the host and port of `admin_dsn`: fencing checks
/// that this address refuses connections, so the DSN must name the address
/// clients use (not a pooler in front of the server).
#[derive(Clone, Debug)]
pub struct PgSite {
    /// Directory of `pg_ctl`, `pg_rewind`, `pg_basebackup`, `postgres`
    /// (Debian: `/usr/lib/postgresql/15/bin`).
    pub bin_dir: PathBuf,
    /// The cluster's data directory, absolute. Rejoining by base backup
    /// creates siblings `<data>.palisade-new-<epoch>` and
    /// `<data>.palisade-old-<epoch>`, so its parent must have room.
    pub data_dir: PathBuf,
    /// OS user the PostgreSQL binaries run as (`runuser -u`) when we are
    /// root; PostgreSQL refuses to run as root. Ignored when we are not
    /// root: then we are expected to be that user.
    pub os_user: Option<String>,
    /// URL (`postgres://user:password@host:port/db`) of a superuser on this
    /// server: used for `pg_promote`, `ALTER SYSTEM`, the test write, and
    /// (its user and password) as `pg_rewind`'s source login on the new
    /// primary, which as a physical copy has the same roles.
    pub admin_dsn: String,
    /// The password of `admin_dsn` when held apart from it (a password
    /// file or environment variable); wins over one inline in `admin_dsn`.
    pub admin_password: Option<palisade_core::Secret>,
    /// Bound of each step of an operation (a `pg_ctl` wait, a connection,
    /// waiting for promotion or streaming). Fencing a hung server takes up
    /// to about twice this: a fast then an immediate shutdown attempt.
    pub timeout: Duration,
    /// Bound of `pg_rewind` and `pg_basebackup`, which copy data and take as
    /// long as the database is large.
    pub transfer_timeout: Duration,
    /// Server log for `pg_ctl start -l`. `None`: the server's output is
    /// discarded (configure `logging_collector` instead), and start errors
    /// carry no server output.
    pub log_file: Option<PathBuf>,
}

impl PgSite {
    /// A site with default bounds (10 s per step, 1 h per data transfer),
    /// no OS user switch and no log file.
    pub fn new(
        bin_dir: impl Into<PathBuf>,
        data_dir: impl Into<PathBuf>,
        admin_dsn: impl Into<String>,
    ) -> Self {
        Self {
            bin_dir: bin_dir.into(),
            data_dir: data_dir.into(),
            os_user: None,
            admin_dsn: admin_dsn.into(),
            admin_password: None,
            timeout: Duration::from_secs(10),
            transfer_timeout: Duration::from_secs(3600),
            log_file: None,
        }
    }

    /// Names this server in errors and logs.
    fn server(&self) -> String {
        self.data_dir.display().to_string()
    }

    fn runner(&self) -> exec::Runner<'_> {
        exec::Runner {
            bin_dir: &self.bin_dir,
            run_as: self
                .os_user
                .as_deref()
                .filter(|_| nix::unistd::geteuid().is_root()),
            server: self.server(),
        }
    }

    fn admin_options(&self) -> Result<PgConnectOptions, DbError> {
        let options =
            PgConnectOptions::from_str(&self.admin_dsn).map_err(|e| DbError::InvalidInput {
                server: self.server(),
                what: "admin_dsn",
                detail: conninfo::redact(&e.to_string()),
            })?;
        Ok(match &self.admin_password {
            Some(p) => options.password(p.expose()),
            None => options,
        })
    }

    /// `pg_ctl -t` takes whole seconds; round up, at least 1.
    fn pg_ctl_wait_secs(&self) -> String {
        let secs = self.timeout.as_secs() + u64::from(self.timeout.subsec_nanos() > 0);
        secs.max(1).to_string()
    }
}

impl PgSite {
    /// Fences without the polite shutdown: SIGKILL of the postmaster and of
    /// every server process of the data directory, then the same
    /// confirmation as [`DatabaseControl::fence`]. For when the lease is
    /// gone and the server must be unable to write within milliseconds, not
    /// after `pg_ctl`'s whole-second waits. Crash recovery runs on the next
    /// start; nothing committed is lost. Also
    /// [`DatabaseControl::fence_urgently`].
    #[tracing::instrument(skip_all, fields(epoch = epoch, data_dir = %self.data_dir.display()))]
    pub async fn fence_urgently(&self, epoch: u64) -> Result<FenceOutcome, DbError> {
        let outcome = self.fence_server(true).await?;
        tracing::info!(?outcome, "fenced urgently");
        Ok(outcome)
    }
}

impl DatabaseControl for PgSite {
    #[tracing::instrument(skip_all, fields(data_dir = %self.data_dir.display()))]
    async fn is_running(&self) -> Result<bool, DbError> {
        Ok(!self.postmaster_gone().await?)
    }

    /// Stops the server: `pg_ctl stop -m fast`, then `-m immediate`, then
    /// SIGKILL of the postmaster and its children; then confirms (see the
    /// trait). A server already stopped is [`FenceOutcome::AlreadyStopped`].
    ///
    /// Stopping, not read-only mode, is the fence: `default_transaction_read_only`
    /// is only a default that any session can `SET ... = off` or override
    /// with `SET TRANSACTION READ WRITE` (test `read_only_mode_is_not_a_fence`).
    #[tracing::instrument(skip_all, fields(epoch = epoch, data_dir = %self.data_dir.display()))]
    async fn fence(&self, epoch: u64) -> Result<FenceOutcome, DbError> {
        let outcome = self.fence_server(false).await?;
        tracing::info!(?outcome, "fenced");
        Ok(outcome)
    }

    #[tracing::instrument(skip_all, fields(data_dir = %self.data_dir.display()))]
    async fn is_fenced(&self) -> Result<bool, DbError> {
        self.fenced().await
    }

    async fn fence_urgently(&self, epoch: u64) -> Result<FenceOutcome, DbError> {
        PgSite::fence_urgently(self, epoch).await
    }

    /// From `/proc` alone; see [`PgSite::has_server_processes`].
    fn has_server_processes(&self) -> bool {
        PgSite::has_server_processes(self)
    }

    /// `pg_ctl stop -m fast` (then `-m immediate`, then a kill, as
    /// [`DatabaseControl::fence`]); then `pg_controldata`: after a clean
    /// shutdown its latest checkpoint is the shutdown checkpoint, the last
    /// record this server wrote (the WAL senders ship it before the server
    /// exits).
    #[tracing::instrument(skip_all, fields(epoch = epoch, data_dir = %self.data_dir.display()))]
    async fn fence_for_handover(&self, epoch: u64) -> Result<HandoverFence, DbError> {
        let outcome = self.fence_server(false).await?;
        let final_position = match self.control_data().await {
            Ok(c) if c.shut_down_cleanly => FinalPosition::Known {
                lsn: c.checkpoint_lsn,
            },
            Ok(_) => FinalPosition::Unclean,
            Err(e) => FinalPosition::Unreadable {
                reason: e.to_string(),
            },
        };
        tracing::info!(?outcome, ?final_position, "fenced for a handover");
        Ok(HandoverFence {
            outcome,
            final_position,
        })
    }

    #[tracing::instrument(skip_all, fields(epoch = epoch, data_dir = %self.data_dir.display()))]
    async fn start(&self, epoch: u64) -> Result<StartOutcome, DbError> {
        self.start_server().await
    }

    #[tracing::instrument(skip_all, fields(epoch = epoch, data_dir = %self.data_dir.display()))]
    async fn promote(&self, epoch: u64) -> Result<PromoteOutcome, DbError> {
        self.promote_server(epoch).await
    }

    #[tracing::instrument(skip_all, fields(epoch = epoch, data_dir = %self.data_dir.display()))]
    async fn rejoin_as_standby(
        &self,
        epoch: u64,
        primary_conninfo: &str,
    ) -> Result<RejoinOutcome, DbError> {
        self.rejoin(epoch, primary_conninfo).await
    }

    #[tracing::instrument(skip_all, fields(epoch = epoch, data_dir = %self.data_dir.display()))]
    async fn set_synchronous(
        &self,
        epoch: u64,
        standby_names: Option<&str>,
    ) -> Result<SyncOutcome, DbError> {
        let outcome = self.set_synchronous_names(standby_names).await?;
        tracing::info!(?outcome, "synchronous_standby_names set");
        Ok(outcome)
    }
}

/// How a server was fenced, and how long fencing took (from the call to the
/// confirmation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum FenceOutcome {
    /// It was not running; we confirmed nothing listens at its address.
    AlreadyStopped {
        /// Time taken to confirm.
        elapsed: Duration,
    },
    /// `pg_ctl stop` stopped it.
    ShutDown {
        /// The shutdown mode that worked.
        mode: ShutdownMode,
        /// Time taken, confirmation included.
        elapsed: Duration,
    },
    /// We SIGKILLed it: it ignored both shutdown modes (hung), or its
    /// postmaster had already died and left server processes behind.
    Killed {
        /// The postmaster's pid first (when it was alive), then the other
        /// server processes'.
        pids: Vec<i32>,
        /// Time taken, both shutdown attempts and confirmation included.
        elapsed: Duration,
    },
}

impl FenceOutcome {
    /// Time from the call to the confirmation.
    pub fn elapsed(&self) -> Duration {
        match self {
            FenceOutcome::AlreadyStopped { elapsed }
            | FenceOutcome::ShutDown { elapsed, .. }
            | FenceOutcome::Killed { elapsed, .. } => *elapsed,
        }
    }
}

/// What [`DatabaseControl::fence_for_handover`] did: the fence, and where
/// the stopped server's WAL ends, when that is known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverFence {
    /// How the server was stopped.
    pub outcome: FenceOutcome,
    /// Where its WAL ends: what the standby must have replayed before it is
    /// promoted.
    pub final_position: FinalPosition,
}

/// Where a stopped server's WAL ends, as far as its manager can tell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum FinalPosition {
    /// It shut down cleanly: its final checkpoint record, which starts at
    /// `lsn`, is the last record it wrote.
    Known {
        /// The start of the last record (a WAL position, an LSN).
        lsn: u64,
    },
    /// It did not shut down cleanly (it had to be killed, or was already
    /// down after a crash): where its WAL ends is unknown here.
    Unclean,
    /// Whether it shut down cleanly could not be read (for PostgreSQL, the
    /// control file): unknown, as for [`FinalPosition::Unclean`].
    Unreadable {
        /// Why, for the failover log.
        reason: String,
    },
}

impl FinalPosition {
    /// The final position, when known.
    pub fn lsn(&self) -> Option<u64> {
        match self {
            FinalPosition::Known { lsn } => Some(*lsn),
            FinalPosition::Unclean | FinalPosition::Unreadable { .. } => None,
        }
    }
}

/// A `pg_ctl stop` mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownMode {
    /// `-m fast`: disconnect clients, roll back, checkpoint, exit. A clean
    /// shutdown, so `pg_rewind` can use the data directory as is.
    Fast,
    /// `-m immediate`: exit without a checkpoint; crash recovery on the
    /// next start (pg_rewind runs it itself).
    Immediate,
}

/// What [`DatabaseControl::start`] found or did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum StartOutcome {
    /// It was already running; nothing done.
    AlreadyRunning,
    /// We started it and it accepts connections.
    Started {
        /// Time until `pg_ctl start -w` returned.
        elapsed: Duration,
    },
}

/// What [`DatabaseControl::promote`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteOutcome {
    /// True when the server was not in recovery when we came: promoted
    /// before (by an earlier attempt of this step, or by hand). The test
    /// write ran anyway.
    pub already_primary: bool,
    /// `pg_current_wal_lsn()` after the test write: the new primary's WAL
    /// position, from which its history diverges from the old primary's.
    pub lsn: u64,
    /// The timeline the server now writes (`pg_control_checkpoint()`, made
    /// current by a checkpoint after promotion).
    pub timeline: u32,
    /// Time until `pg_is_in_recovery()` was false.
    pub promoted_in: Duration,
    /// Total time, checkpoint and test write included.
    pub elapsed: Duration,
}

/// How [`DatabaseControl::rejoin_as_standby`] made the server a standby.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejoinMethod {
    /// It already streamed with this `primary_conninfo`; nothing done.
    AlreadyStreaming,
    /// `pg_rewind` found nothing to undo (the old primary stopped cleanly
    /// and the standby had received all of its WAL).
    NoRewindNeeded,
    /// `pg_rewind` rewound the data directory to the point of divergence.
    Rewind,
    /// `pg_rewind` failed; a fresh `pg_basebackup` replaced the data
    /// directory.
    BaseBackup,
}

/// What [`DatabaseControl::rejoin_as_standby`] did, with step durations
/// (`None`: step not run).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejoinOutcome {
    /// The method that worked.
    pub method: RejoinMethod,
    /// The fence that made sure the server was stopped first.
    pub fence: Option<FenceOutcome>,
    /// Why `pg_rewind` failed, when the base backup was the fallback.
    pub rewind_failure: Option<String>,
    /// Time `pg_rewind` ran (also when it failed).
    pub rewind: Option<Duration>,
    /// Time `pg_basebackup` and the directory swap took.
    pub basebackup: Option<Duration>,
    /// Time until `pg_ctl start -w` returned.
    pub start: Option<Duration>,
    /// Time from started to `pg_stat_wal_receiver.status = 'streaming'`.
    pub catch_up: Option<Duration>,
    /// The pre-backup data directory, removed once the new one streamed.
    pub removed_old_data_dir: Option<PathBuf>,
    /// Total time.
    pub elapsed: Duration,
}

/// What [`DatabaseControl::set_synchronous`] changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncOutcome {
    /// `synchronous_standby_names` before (empty: asynchronous).
    pub previous: String,
    /// `synchronous_standby_names` now, reloaded.
    pub current: String,
    /// False when it already had this value.
    pub changed: bool,
}
