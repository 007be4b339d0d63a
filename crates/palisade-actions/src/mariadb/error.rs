//! The one error type of MariaDB control, and whether a retry can help.

use std::path::PathBuf;
use std::time::Duration;

use palisade_core::master_master::gtid::{Errant, Gtid};

use super::BinlogPosition;

/// Why a MariaDB control operation failed.
///
/// Every variant names the server (its admin address, `host:port`) and,
/// where one ran, the statement or command, so an operator reading a
/// failover log knows which site and which step to look at.
/// [`MariaError::is_retryable`] tells the executor whether the same call
/// may succeed later without a human (a timeout, a refused connection, a
/// survivor still catching up) or will fail again the same way (bad
/// configuration, a stale epoch, a missing binary).
#[derive(Debug, thiserror::Error)]
pub enum MariaError {
    /// A SQL statement or connection to the local server failed.
    #[error("{server}: {action}: {source}")]
    Sql {
        /// The server we talked to.
        server: String,
        /// What we were doing, e.g. `SET GLOBAL read_only = ON`.
        action: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A condition we waited for did not come true within the deadline (a
    /// statement's answer, a connection, the server accepting connections
    /// after a start, a killed process disappearing).
    #[error("{server}: {what} not reached within {timeout:?}: {last}")]
    Timeout {
        /// The server.
        server: String,
        /// The condition, e.g. `an admin connection`.
        what: &'static str,
        /// How long we waited.
        timeout: Duration,
        /// The last thing we observed.
        last: String,
    },
    /// `mariadbd` could not be started at all (binary missing, not
    /// executable). Fatal: the configuration must be fixed.
    #[error("{server}: could not run `{command}`: {source}")]
    Spawn {
        /// The server.
        server: String,
        /// The command line we tried to run.
        command: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// `mariadbd` exited while we waited for it to accept connections
    /// (bad configuration, a port in use, a data directory it cannot
    /// lock). A retry helps only when the cause passes.
    #[error("{server}: `{command}` exited ({status}) before accepting connections{log}")]
    StartFailed {
        /// The server.
        server: String,
        /// The command line, as run.
        command: String,
        /// Exit status, e.g. `exit status: 1`.
        status: String,
        /// The last lines of the server's log, prefixed with `: `; empty
        /// without a log file.
        log: String,
    },
    /// Reading or writing a file (the pid file, the log file) failed.
    #[error("{server}: {action} {}: {source}", path.display())]
    Io {
        /// The server.
        server: String,
        /// What we were doing, e.g. `opening the log file`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A fence could not be confirmed: something may still accept writes.
    /// Nothing may be promoted on the strength of this fence.
    #[error("{server}: fence not confirmed: {detail}")]
    FenceNotConfirmed {
        /// The server.
        server: String,
        /// What we saw, e.g. which session still holds `READ_ONLY ADMIN`.
        detail: String,
        /// False when a retry will not change the answer without a human
        /// (another server answers on this server's address).
        retryable: bool,
    },
    /// The survivor has not applied everything it must before it may take
    /// writes: what its IO thread received (or, on a planned handover, the
    /// old writer's final position) is not yet executed, within the
    /// timeout. Nothing was changed. Retryable: replication may still
    /// catch up.
    #[error("{0}")]
    NotCaughtUp(Box<NotCaughtUp>),
    /// The survivor lags its writer by more than the promotion allows
    /// (`Seconds_Behind_Master`). Nothing was changed. Retryable.
    #[error("{server}: Seconds_Behind_Master is {seconds}, more than the {max} allowed")]
    Lagging {
        /// The server (the survivor).
        server: String,
        /// `Seconds_Behind_Master` when we looked.
        seconds: u64,
        /// The most the request allowed.
        max: u64,
    },
    /// A planned handover needs this server's replication to prove its
    /// catch-up, and it replicates from nobody (`SHOW SLAVE STATUS` is
    /// empty). Fatal: the pair is not set up as the guide says.
    #[error("{server}: no replication is configured (SHOW SLAVE STATUS is empty), so {why}")]
    NotReplicating {
        /// The server.
        server: String,
        /// What could therefore not be done.
        why: &'static str,
    },
    /// A final position was asked of a server that still takes writes
    /// (`read_only` is off): it would not be final. Fence it first. Fatal
    /// for this call.
    #[error("{server}: read_only is OFF: fence writes before reading the final position")]
    NotFenced {
        /// The server.
        server: String,
    },
    /// The database already records a failover epoch higher than the one
    /// this action carries: the action is from a superseded failover and
    /// must not run. Fatal.
    #[error("{server}: epoch {epoch} is stale: palisade.epoch already records epoch {recorded}")]
    StaleEpoch {
        /// The server.
        server: String,
        /// The epoch the action carried.
        epoch: u64,
        /// The epoch recorded in `palisade.epoch`.
        recorded: u64,
    },
    /// An old writer coming back holds transactions committed in its own
    /// name that the new writer never applied (errant transactions: a
    /// write acknowledged by the old writer after the new one's fork
    /// point). Rejoining would let the new writer apply them when it
    /// replicates from this server again, on top of its own history, and
    /// the operator chose not to allow that (`[failover]
    /// errant_transactions = "refuse"`, the default). The server was left
    /// running, read-only. Fatal: a human must reconcile them (or allow
    /// them with `errant_transactions = "replicate"`).
    #[error(
        "{server}: {count} errant transaction(s) ({ranges}) were committed here and never \
         reached the new writer, which applied up to {fork:?} of this server; rejoining would \
         let the new writer apply them when it replicates from here again. Reconcile them by \
         hand, or allow it with `[failover] errant_transactions = \"replicate\"`",
        ranges = errant_ranges(.errant)
    )]
    Errant {
        /// The server (the old writer).
        server: String,
        /// How many (at most: sequence numbers past the fork point in this
        /// server's name, exact while it was the domain's only writer).
        count: u64,
        /// The first of them: the first sequence number past the fork in
        /// this server's name, in the lowest domain that has any.
        first: Gtid,
        /// The last of them: this server's last own GTID, in the highest
        /// domain that has any.
        last: Gtid,
        /// The new writer's fork point: what it applied of this server
        /// (its `gtid_slave_pos`, with any of this server's GTIDs its own
        /// binary log holds).
        fork: String,
        /// Per domain, as [`palisade_core::master_master::gtid::errant`]
        /// found them.
        errant: Vec<Errant>,
    },
    /// A replication thread stopped with an error (`Slave_IO_Running` or
    /// `Slave_SQL_Running` `No`, with `Last_IO_Error` / `Last_SQL_Error`):
    /// a conflicting row, a binary log the other master no longer has.
    /// Fatal: waiting does not restart it; a human must look.
    #[error("{server}: replication stopped with an error: {detail}")]
    ReplicationBroken {
        /// The server whose replication stopped.
        server: String,
        /// Thread states and errors.
        detail: String,
    },
    /// A DSN or setting we were given cannot be used. Fatal.
    #[error("{server}: invalid {what}: {detail}")]
    InvalidInput {
        /// The server.
        server: String,
        /// Which input, e.g. `admin_dsn`.
        what: &'static str,
        /// Why it is unusable.
        detail: String,
    },
    /// The server answered something we cannot interpret (a missing
    /// column, a value that is not a number, no binary log). Fatal: the
    /// server is not what this module expects.
    #[error("{server}: unexpected answer to {what}: {detail}")]
    Unexpected {
        /// The server.
        server: String,
        /// The statement or value, e.g. `SHOW MASTER STATUS`.
        what: &'static str,
        /// What it said instead.
        detail: String,
    },
}

impl MariaError {
    /// True when the same call may succeed later without a human:
    /// timeouts, refused or dropped connections, a server that is starting
    /// or shutting down, a survivor still catching up. False for
    /// configuration errors, stale epochs, missing binaries, permission
    /// problems, and SQL errors that will not change on a second try.
    pub fn is_retryable(&self) -> bool {
        match self {
            MariaError::Sql { source, .. } => sql_is_retryable(source),
            MariaError::Timeout { .. }
            | MariaError::StartFailed { .. }
            | MariaError::NotCaughtUp(_)
            | MariaError::Lagging { .. } => true,
            MariaError::Spawn { .. } => false,
            MariaError::Io { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::InvalidData
            ),
            MariaError::FenceNotConfirmed { retryable, .. } => *retryable,
            MariaError::NotReplicating { .. }
            | MariaError::NotFenced { .. }
            | MariaError::StaleEpoch { .. }
            | MariaError::Errant { .. }
            | MariaError::ReplicationBroken { .. }
            | MariaError::InvalidInput { .. }
            | MariaError::Unexpected { .. } => false,
        }
    }

    /// The server's error number (`ER_*`) when the server refused a
    /// statement, e.g. 1290 for `ER_OPTION_PREVENTS_STATEMENT`.
    pub fn server_error_number(&self) -> Option<u16> {
        match self {
            MariaError::Sql { source, .. } => error_number(source),
            _ => None,
        }
    }
}

/// What [`MariaError::NotCaughtUp`] saw when its wait ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotCaughtUp {
    /// The server (the survivor).
    pub server: String,
    /// How far its IO thread received: `Master_Log_File`,
    /// `Read_Master_Log_Pos`.
    pub read: BinlogPosition,
    /// How far its SQL thread applied: `Relay_Master_Log_File`,
    /// `Exec_Master_Log_Pos`.
    pub executed: BinlogPosition,
    /// The old writer's final position we had to reach; `None` when we
    /// only waited for everything received to be executed.
    pub wanted: Option<BinlogPosition>,
    /// How long we waited.
    pub timeout: Duration,
    /// What else we saw (thread states, errors, GTID positions).
    pub last: String,
}

impl std::fmt::Display for NotCaughtUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: not caught up within {:?}: read {}, executed {}, wanted ",
            self.server, self.timeout, self.read, self.executed
        )?;
        match &self.wanted {
            Some(w) => write!(f, "{w}")?,
            None => f.write_str("everything read")?,
        }
        write!(f, ": {}", self.last)
    }
}

/// The server's error number of a driver error, when the server answered
/// with an error packet.
pub(super) fn error_number(err: &sqlx::Error) -> Option<u16> {
    err.as_database_error()?
        .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .map(|e| e.number())
}

/// Server errors that describe a passing condition (MariaDB error codes):
/// too many connections (1040, 1203), shutdown in progress (1053), lock
/// wait timeout (1205), deadlock (1213), query interrupted (1317), network
/// errors while reading or writing packets (1158–1161), connection killed
/// (1927). Everything else the server answers (syntax, privileges, unknown
/// variables, authentication) will be answered the same way next time.
/// Errors below the server (I/O, protocol, pool) are retryable; bad
/// configuration and TLS setup are not.
fn sql_is_retryable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(_) => matches!(
            error_number(err),
            Some(1040 | 1053 | 1158..=1161 | 1203 | 1205 | 1213 | 1317 | 1927)
        ),
        sqlx::Error::Configuration(_) | sqlx::Error::Tls(_) => false,
        sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. } => false,
        _ => true,
    }
}

/// The first errant GTID of a domain: the first sequence number past the
/// fork point, in the old writer's name.
pub(super) fn first_errant(e: &Errant) -> Gtid {
    Gtid {
        seq: e.fork_seq + 1,
        ..e.last
    }
}

/// Each domain's errant range, `first..last` (one GTID alone when there
/// is one), comma-separated.
pub(super) fn errant_ranges(errant: &[Errant]) -> String {
    let ranges: Vec<String> = errant
        .iter()
        .map(|e| match e.at_most {
            1 => e.last.to_string(),
            _ => format!("{}..{}", first_errant(e), e.last),
        })
        .collect();
    ranges.join(", ")
}
