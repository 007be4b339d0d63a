//! Every SQL statement `palisade_actions::mariadb` sends, in one place,
//! each with its MySQL 8 difference where there is one.
//!
//! All of them go over the text protocol (`COM_QUERY`, no bound
//! parameters): `SHOW` statements and `SET GLOBAL` are not all preparable,
//! and the only values we put into statements are integers we format
//! ourselves (a connection id, an epoch, a timeout).

/// Our server's version, to know which privileges bypass `read_only`.
/// MySQL 8: the same.
pub(super) const VERSION: &str = "SELECT @@version";

/// Whether the server refuses writes from ordinary sessions.
/// MySQL 8: also read `@@super_read_only`, which refuses writes from
/// `SUPER` / `CONNECTION_ADMIN` sessions as well; MariaDB has no such
/// variable (there, only sessions with `READ_ONLY ADMIN` write through
/// `read_only`).
pub(super) const READ_ONLY: &str = "SELECT @@GLOBAL.read_only";

/// The soft fence. Needs `READ_ONLY ADMIN` (MariaDB 10.5.2+; `SUPER`
/// before). Waits for in-flight commits and explicit table locks, bounded
/// by [`SET_LOCK_WAIT_TIMEOUT`]'s session value; an open transaction that
/// wrote does not block it (its `COMMIT` then fails with 1290).
/// MySQL 8: `SET GLOBAL super_read_only = ON`, which implies `read_only`
/// and also stops `SUPER` sessions.
pub(super) const SET_READ_ONLY_ON: &str = "SET GLOBAL read_only = ON";

/// Makes the server the writer. MySQL 8: `SET GLOBAL super_read_only =
/// OFF` first (turning `read_only` off with `super_read_only` on fails),
/// then this.
pub(super) const SET_READ_ONLY_OFF: &str = "SET GLOBAL read_only = OFF";

/// Bounds how long [`SET_READ_ONLY_ON`] waits for locks, in seconds (the
/// default is a day). Followed by the number. MySQL 8: the same.
pub(super) const SET_LOCK_WAIT_TIMEOUT: &str = "SET SESSION lock_wait_timeout = ";

/// Every session but replication threads, the server's own threads and
/// ours: the sessions the soft fence kills. Needs `PROCESS` to see other
/// users' sessions. MariaDB names the replica's threads `Slave_IO`,
/// `Slave_SQL` and `Slave_worker` (user `system user`) and the binlog
/// sender `Binlog Dump` (also for GTID replicas); MySQL 8 names the
/// sender `Binlog Dump` / `Binlog Dump GTID` and shows its replica threads
/// as `Connect` under `system user`, which the user filter skips.
pub(super) const CLIENT_SESSIONS: &str = "SELECT ID, USER, HOST, COMMAND \
     FROM information_schema.PROCESSLIST \
     WHERE ID <> CONNECTION_ID() \
       AND COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon', \
                           'Slave_IO', 'Slave_SQL', 'Slave_worker') \
       AND USER NOT IN ('system user', 'event_scheduler')";

/// The users of the binlog senders: the other master's replication user,
/// connected to us. MySQL 8: the same.
pub(super) const DUMP_THREAD_USERS: &str = "SELECT DISTINCT USER \
     FROM information_schema.PROCESSLIST \
     WHERE COMMAND IN ('Binlog Dump', 'Binlog Dump GTID')";

/// Kills one session; followed by its id. Error 1094 (`ER_NO_SUCH_THREAD`,
/// "Unknown thread id") means it is gone already. Needs `CONNECTION
/// ADMIN` (or `SUPER`). MySQL 8: the same (`CONNECTION_ADMIN`).
pub(super) const KILL_CONNECTION: &str = "KILL CONNECTION ";

/// Accounts (and roles) holding a privilege that may bypass `read_only`.
/// Needs `SELECT` on `mysql.*` to see other accounts than our own.
/// MariaDB 10.11: only `READ_ONLY ADMIN` bypasses it (10.11 took it out
/// of `SUPER`); 10.5.2–10.10: `SUPER` implies it; which of the two
/// counts is decided in code from [`VERSION`]. MySQL 8: `SUPER` and
/// `CONNECTION_ADMIN` bypass `read_only`, nothing bypasses
/// `super_read_only`.
pub(super) const BYPASS_GRANTEES: &str = "SELECT GRANTEE, PRIVILEGE_TYPE \
     FROM information_schema.USER_PRIVILEGES \
     WHERE PRIVILEGE_TYPE IN ('SUPER', 'READ_ONLY ADMIN')";

/// Our own account, as `user@host`. MySQL 8: the same.
pub(super) const CURRENT_USER: &str = "SELECT CURRENT_USER()";

/// The replica's state, one row per connection; we use the default
/// (unnamed) connection a master-master pair of the guide has. Columns we
/// read: `Master_User`, `Slave_IO_Running`, `Slave_SQL_Running`,
/// `Master_Log_File`, `Read_Master_Log_Pos`, `Relay_Master_Log_File`,
/// `Exec_Master_Log_Pos`, `Seconds_Behind_Master`, `Gtid_IO_Pos`,
/// `Last_IO_Error`, `Last_SQL_Error`.
/// MySQL 8.0.22+: `SHOW REPLICA STATUS`, with `Source_User`,
/// `Replica_IO_Running`, `Replica_SQL_Running`, `Source_Log_File`,
/// `Read_Source_Log_Pos`, `Relay_Source_Log_File`, `Exec_Source_Log_Pos`,
/// `Seconds_Behind_Source`, and `Retrieved_Gtid_Set` /
/// `Executed_Gtid_Set` (UUID GTID sets) instead of `Gtid_IO_Pos`.
pub(super) const SLAVE_STATUS: &str = "SHOW SLAVE STATUS";

/// The last GTID of each domain the SQL thread applied.
/// MySQL 8: no such variable; `@@GLOBAL.gtid_executed` is the set of
/// everything this server executed (own writes included).
pub(super) const GTID_SLAVE_POS: &str = "SELECT @@GLOBAL.gtid_slave_pos";

/// The last GTID of each domain in our binary log.
/// MySQL 8: `@@GLOBAL.gtid_executed`.
pub(super) const GTID_BINLOG_POS: &str = "SELECT @@GLOBAL.gtid_binlog_pos";

/// The last GTID of each (domain, server) pair in our binary log: what
/// tells our own transactions (those in our `server_id`'s name) from the
/// ones we applied (the latter only with `log_slave_updates`).
/// MySQL 8: no such variable; `@@GLOBAL.gtid_executed` (UUID sets), and
/// the errant transactions of an old writer are
/// `GTID_SUBTRACT(old writer's gtid_executed, new writer's gtid_executed)`.
pub(super) const GTID_BINLOG_STATE: &str = "SELECT @@GLOBAL.gtid_binlog_state";

/// Our `server_id`: the server part of the GTIDs we write in our own name.
/// MySQL 8: the same, though GTIDs carry `@@server_uuid` instead.
pub(super) const SERVER_ID: &str = "SELECT @@GLOBAL.server_id";

/// Stops both replication threads of the default connection (the other
/// master): nothing more is received or applied from it. Synchronous:
/// it returns once both threads have stopped; on stopped threads it only
/// warns (1255). Keeps the coordinates, so [`START_SLAVE`] continues where
/// it stopped. Needs `REPLICATION SLAVE ADMIN` (MariaDB 10.5.2+; `SUPER`
/// before). MySQL 8.0.22+: `STOP REPLICA` (`REPLICATION_SLAVE_ADMIN`).
pub(super) const STOP_SLAVE: &str = "STOP SLAVE";

/// Starts the replication threads of the default connection that are not
/// running, from the saved coordinates (never reconfigures: palisade runs
/// no `CHANGE MASTER`). Returns once the threads exist; the IO thread
/// then connects on its own (`Slave_IO_Running` `Connecting`, then
/// `Yes`). On running threads it only warns (1254). Needs `REPLICATION
/// SLAVE ADMIN`. MySQL 8.0.22+: `START REPLICA`.
pub(super) const START_SLAVE: &str = "START SLAVE";

/// Starts only the SQL thread (a promotion that finds it stopped: the
/// survivor must execute what it received). MySQL 8.0.22+: `START REPLICA
/// SQL_THREAD`.
pub(super) const START_SLAVE_SQL_THREAD: &str = "START SLAVE SQL_THREAD";

/// Our binary log's current file and position (`File`, `Position`);
/// empty when `log_bin` is off. MySQL 8.2+: `SHOW BINARY LOG STATUS`
/// (`SHOW MASTER STATUS` is deprecated there).
pub(super) const MASTER_STATUS: &str = "SHOW MASTER STATUS";

/// Whether `palisade.epoch` exists (before reading it on a server that
/// was never promoted by palisade). MySQL 8: the same.
pub(super) const EPOCH_TABLE_EXISTS: &str = "SELECT COUNT(*) FROM information_schema.TABLES \
     WHERE TABLE_SCHEMA = 'palisade' AND TABLE_NAME = 'epoch'";

/// The recorded epoch (one row, `id = 1`). MySQL 8: the same.
pub(super) const RECORDED_EPOCH: &str = "SELECT epoch FROM palisade.epoch WHERE id = 1";

/// [`RECORDED_EPOCH`] inside the test write's transaction, locking the
/// row against a concurrent promotion. MySQL 8: the same.
pub(super) const RECORDED_EPOCH_FOR_UPDATE: &str =
    "SELECT epoch FROM palisade.epoch WHERE id = 1 FOR UPDATE";

/// The test write's schema. It replicates to the other master, which is
/// useful: a stale promotion there then sees the newer epoch.
/// MySQL 8: the same.
pub(super) const CREATE_EPOCH_DATABASE: &str = "CREATE DATABASE IF NOT EXISTS palisade";

/// The test write's table: one row (`id = 1`) holding the epoch of the
/// last promotion of this pair and when it was written. MySQL 8: the same.
pub(super) const CREATE_EPOCH_TABLE: &str = "CREATE TABLE IF NOT EXISTS palisade.epoch (\
     id TINYINT PRIMARY KEY, \
     epoch BIGINT UNSIGNED NOT NULL, \
     at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)\
     ) ENGINE = InnoDB";

/// Upserts the epoch; `{}` is the epoch. MySQL 8: the same (8.0.20+
/// deprecates `VALUES()` here in favour of a row alias, still accepted).
pub(super) const UPSERT_EPOCH: &str = "INSERT INTO palisade.epoch (id, epoch) VALUES (1, {}) \
     ON DUPLICATE KEY UPDATE epoch = VALUES(epoch), at = CURRENT_TIMESTAMP(6)";

/// Semi-synchronous replication as the master side has it (built into
/// MariaDB 10.3+, no plugin to load).
/// MySQL 8.0.26+: the `rpl_semi_sync_source` plugin, variables
/// `rpl_semi_sync_source_enabled` / `rpl_semi_sync_source_timeout`.
pub(super) const SEMI_SYNC: &str =
    "SELECT @@GLOBAL.rpl_semi_sync_master_enabled, @@GLOBAL.rpl_semi_sync_master_timeout";

/// Turns semi-synchronous waiting on or off; followed by `ON` or `OFF`.
/// MySQL 8.0.26+: `SET GLOBAL rpl_semi_sync_source_enabled = ...`.
pub(super) const SET_SEMI_SYNC_ENABLED: &str = "SET GLOBAL rpl_semi_sync_master_enabled = ";

/// How long a commit waits for an ack, ms; followed by the number.
/// MySQL 8.0.26+: `SET GLOBAL rpl_semi_sync_source_timeout = ...`.
pub(super) const SET_SEMI_SYNC_TIMEOUT: &str = "SET GLOBAL rpl_semi_sync_master_timeout = ";

/// Renders [`UPSERT_EPOCH`] for `epoch`.
pub(super) fn upsert_epoch(epoch: u64) -> String {
    UPSERT_EPOCH.replacen("{}", &epoch.to_string(), 1)
}
