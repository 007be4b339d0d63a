//! The one error type of database control, and whether a retry can help.

use std::path::PathBuf;
use std::time::Duration;

/// Why a database control operation failed.
///
/// Every variant names the server (its data directory) and, where one ran,
/// the command, so an operator reading a failover log knows which site and
/// which step to look at. [`DbError::is_retryable`] tells the executor whether
/// the same call may succeed later without a human (a timeout, a refused
/// connection) or will fail again the same way (bad configuration, a stale
/// epoch, a missing binary).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A command ran to completion and exited unsuccessfully.
    #[error("{server}: `{command}` failed ({status}){output}")]
    CommandFailed {
        /// Data directory of the server the command was about.
        server: String,
        /// The command line, as run.
        command: String,
        /// Exit status, e.g. `exit status: 1`.
        status: String,
        /// Last lines of stdout and stderr, prefixed with `: `; empty when
        /// the command printed nothing.
        output: String,
    },
    /// A command did not finish within its deadline and was killed
    /// (its whole process group).
    #[error("{server}: `{command}` did not finish within {timeout:?} and was killed{output}")]
    CommandTimedOut {
        /// Data directory of the server the command was about.
        server: String,
        /// The command line, as run.
        command: String,
        /// The deadline it missed.
        timeout: Duration,
        /// What it had printed so far, prefixed with `: `.
        output: String,
    },
    /// A command could not be started at all (binary missing, not
    /// executable). Fatal: the configuration must be fixed.
    #[error("{server}: could not run `{command}`: {source}")]
    Spawn {
        /// Data directory of the server the command was about.
        server: String,
        /// The command line we tried to run.
        command: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A SQL statement or connection to the local server failed.
    #[error("{server}: {action}: {source}")]
    Sql {
        /// Data directory of the server we talked to.
        server: String,
        /// What we were doing, e.g. `SELECT pg_promote(...)`.
        action: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Reading or writing a file of the data directory failed.
    #[error("{server}: {action} {}: {source}", path.display())]
    Io {
        /// Data directory of the server.
        server: String,
        /// What we were doing, e.g. `writing`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// Fencing could not be confirmed: something may still accept writes.
    /// Nothing may be promoted on the strength of this fence.
    #[error("{server}: fence not confirmed: {detail}")]
    FenceNotConfirmed {
        /// Data directory of the server.
        server: String,
        /// What we saw, e.g. which address still accepts connections.
        detail: String,
        /// False when a retry will not change the answer without a human
        /// (another server answers on this server's address).
        retryable: bool,
    },
    /// A condition we waited for did not come true within the deadline
    /// (promotion finished, WAL receiver streaming, setting reloaded).
    #[error("{server}: {what} not reached within {timeout:?}: {last}")]
    Timeout {
        /// Data directory of the server.
        server: String,
        /// The condition, e.g. `pg_stat_wal_receiver.status = 'streaming'`.
        what: &'static str,
        /// How long we waited.
        timeout: Duration,
        /// The last thing we observed.
        last: String,
    },
    /// The database already records a failover epoch higher than the one
    /// this action carries: the action is from a superseded failover and
    /// must not run. Fatal.
    #[error("{server}: epoch {epoch} is stale: palisade.epoch already records epoch {recorded}")]
    StaleEpoch {
        /// Data directory of the server.
        server: String,
        /// The epoch the action carried.
        epoch: u64,
        /// The highest epoch recorded in `palisade.epoch`.
        recorded: u64,
    },
    /// A DSN, conninfo or setting we were given cannot be used. Fatal.
    #[error("{server}: invalid {what}: {detail}")]
    InvalidInput {
        /// Data directory of the server.
        server: String,
        /// Which input, e.g. `primary_conninfo`.
        what: &'static str,
        /// Why it is unusable.
        detail: String,
    },
    /// Rejoining as a standby failed both ways: `pg_rewind`, then a fresh
    /// `pg_basebackup`.
    #[error("{server}: rejoin failed: pg_rewind: {rewind}; then pg_basebackup: {basebackup}")]
    RejoinFailed {
        /// Data directory of the server.
        server: String,
        /// Why `pg_rewind` did not work.
        rewind: Box<DbError>,
        /// Why the base backup fallback did not work.
        basebackup: Box<DbError>,
    },
}

impl DbError {
    /// True when the same call may succeed later without a human: timeouts,
    /// refused or dropped connections, a server that is starting or shutting
    /// down, a command that failed for a reason that can pass. False for
    /// configuration errors, stale epochs, missing binaries, permission
    /// problems, and SQL errors that will not change on a second try.
    pub fn is_retryable(&self) -> bool {
        match self {
            DbError::CommandFailed { .. } | DbError::CommandTimedOut { .. } => true,
            DbError::Timeout { .. } => true,
            DbError::Spawn { .. } => false,
            DbError::Sql { source, .. } => sql_is_retryable(source),
            DbError::Io { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::InvalidData
            ),
            DbError::FenceNotConfirmed { retryable, .. } => *retryable,
            DbError::StaleEpoch { .. } | DbError::InvalidInput { .. } => false,
            DbError::RejoinFailed { basebackup, .. } => basebackup.is_retryable(),
        }
    }
}

/// SQLSTATE classes that describe a passing condition: connection exceptions
/// (08), transaction rollbacks such as serialization failures (40),
/// insufficient resources (53), operator intervention such as "the database
/// system is starting up" (57) and system errors (58). Everything else the
/// server answers (syntax, privileges, authentication) will be answered the
/// same way next time.
fn sql_is_retryable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .map(|code| matches!(code.get(..2), Some("08" | "40" | "53" | "57" | "58")))
            .unwrap_or(false),
        sqlx::Error::Configuration(_) | sqlx::Error::Tls(_) => false,
        _ => true,
    }
}
