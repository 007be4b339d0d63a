//! MariaDB probe, for the guide's MySQL master-master pairs: is the server
//! up, does it take writes (`read_only`), where is its binary log and its
//! GTID position, and how does its replication from the other master
//! stand. It fills a [`MariaObservation`], on which
//! `palisade_core::master_master` decides.
//!
//! Each probe opens **one fresh connection**, sends the statements of
//! [`sql`] one after another (text protocol, so every value arrives as text
//! whatever its SQL type, and columns are read by name), and closes it.
//! The whole probe, connect included, is bounded by the probe's timeout.
//!
//! # MySQL 8
//!
//! The probe speaks MariaDB (10.5 and later). Every statement that differs
//! on MySQL 8 is in [`sql`], each with a note saying what MySQL 8 needs
//! instead: that module is the one place to change for a MySQL target.
//!
//! # Privileges
//!
//! The probe only reads, but `SHOW MASTER STATUS` and `SHOW SLAVE STATUS`
//! need privileges an application user lacks. Give it the administrator,
//! or better a dedicated user with just these:
//!
//! ```sql
//! -- MariaDB 10.5.9 and later:
//! CREATE USER 'palisade_probe'@'%' IDENTIFIED BY '...';
//! GRANT BINLOG MONITOR, SLAVE MONITOR ON *.* TO 'palisade_probe'@'%';
//! -- MariaDB before 10.5, and MySQL:
//! GRANT REPLICATION CLIENT ON *.* TO 'palisade_probe'@'%';
//! ```
//!
//! (In MariaDB 10.5+ `REPLICATION CLIENT` is an alias of `BINLOG
//! MONITOR` only, which does not cover `SHOW SLAVE STATUS`.) A probe user
//! lacking one of them sees the server `Down` with class `auth` and a
//! detail naming the statement and the privilege: like a wrong password,
//! it is a configuration mistake that makes the probe blind, and an
//! observation with the replication state silently missing would read as
//! "this server replicates from nobody".

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use palisade_core::master_master::{MariaObservation, ReplicaThreads, SemiSync};
use palisade_core::observe::{ErrorClass, Reachability};
use palisade_core::secret::Secret;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlRow};
use sqlx::{Column, Connection, MySqlConnection, Row};

use crate::{classify_io, find_io_error, millis, redact, ProbeConfigError};

/// Every statement the probe sends, in the order it sends them, each with
/// what differs on MySQL 8 (the one place to change for a MySQL target).
pub mod sql {
    /// The server's own variables, one row; columns named as the fields of
    /// `MariaObservation`. Needs no privilege.
    ///
    /// MySQL 8: there is no `gtid_binlog_pos`, `gtid_binlog_state`,
    /// `gtid_slave_pos` or `gtid_current_pos` (selecting one is an error);
    /// MySQL has one GTID set, `@@global.gtid_executed` (with
    /// `gtid_mode = ON`), and GTIDs of the form `server_uuid:N`, which the
    /// observation would need a field for.
    pub const VARIABLES: &str = "SELECT \
        @@global.read_only AS read_only, \
        @@global.server_id AS server_id, \
        @@global.auto_increment_increment AS auto_increment_increment, \
        @@global.auto_increment_offset AS auto_increment_offset, \
        @@global.gtid_binlog_pos AS gtid_binlog_pos, \
        @@global.gtid_binlog_state AS gtid_binlog_state, \
        @@global.gtid_slave_pos AS gtid_slave_pos, \
        @@global.gtid_current_pos AS gtid_current_pos";

    /// Variables that exist only on some servers (no row when absent):
    /// `super_read_only` and the semi-synchronous replication settings
    /// (`rpl_semi_sync_master_enabled`, `rpl_semi_sync_master_timeout`,
    /// `rpl_semi_sync_slave_enabled`). Rows of `Variable_name`, `Value`.
    /// Needs no privilege.
    ///
    /// MySQL 8: `super_read_only` exists (MariaDB has none: there
    /// `READ_ONLY ADMIN` bypasses `read_only`); the semi-sync plugin's
    /// variables are `rpl_semi_sync_source_*` / `rpl_semi_sync_replica_*`
    /// since 8.0.26 (`rpl_semi_sync_master_*` / `_slave_*` before, and
    /// only while the plugin is installed).
    pub const OPTIONAL_VARIABLES: &str = "SHOW GLOBAL VARIABLES \
        WHERE Variable_name = 'super_read_only' \
        OR Variable_name LIKE 'rpl\\_semi\\_sync\\_%'";

    /// The binary log file and position: columns `File`, `Position`; no
    /// row when binary logging is off. Needs `BINLOG MONITOR` (MariaDB
    /// 10.5.2+; `REPLICATION CLIENT` before, of which it is now an alias).
    ///
    /// MySQL 8: `SHOW MASTER STATUS` (`SHOW BINARY LOG STATUS` since 8.2,
    /// the old form removed in 8.4); needs `REPLICATION CLIENT`; its
    /// `Executed_Gtid_Set` column holds `gtid_executed`.
    pub const MASTER_STATUS: &str = "SHOW MASTER STATUS";

    /// This server's replication from the other master; no row when none
    /// is configured. Read by column name: `Master_Host`, `Master_Port`,
    /// `Master_Server_Id`, `Slave_IO_Running`, `Slave_SQL_Running`,
    /// `Seconds_Behind_Master`, `Master_Log_File`, `Read_Master_Log_Pos`,
    /// `Relay_Master_Log_File`, `Exec_Master_Log_Pos`, `Using_Gtid`,
    /// `Gtid_IO_Pos`, `Last_IO_Error`, `Last_SQL_Error`. Needs `SLAVE
    /// MONITOR` (MariaDB 10.5.9+; `REPLICATION CLIENT` before) or `SUPER`.
    ///
    /// MySQL 8: `SHOW REPLICA STATUS` since 8.0.22 (`SHOW SLAVE STATUS`
    /// removed in 8.4), with `Source_*` / `Replica_*` column names
    /// (`Source_Host`, `Source_Port`, `Source_Server_Id`,
    /// `Replica_IO_Running`, `Replica_SQL_Running`,
    /// `Seconds_Behind_Source`, `Source_Log_File`, `Read_Source_Log_Pos`,
    /// `Relay_Source_Log_File`, `Exec_Source_Log_Pos`); no `Using_Gtid` or
    /// `Gtid_IO_Pos` but `Auto_Position`, `Retrieved_Gtid_Set` and
    /// `Executed_Gtid_Set`. Needs `REPLICATION CLIENT`.
    pub const SLAVE_STATUS: &str = "SHOW SLAVE STATUS";

    /// Semi-sync replication in force: `Rpl_semi_sync_master_status`,
    /// `Rpl_semi_sync_master_clients` (and the plugin's other counters).
    /// Rows of `Variable_name`, `Value`; none when the plugin is absent.
    /// Needs no privilege.
    ///
    /// MySQL 8: `Rpl_semi_sync_source_status` and
    /// `Rpl_semi_sync_source_clients` since 8.0.26.
    pub const SEMI_SYNC_STATUS: &str = "SHOW GLOBAL STATUS LIKE 'Rpl\\_semi\\_sync\\_master\\_%'";
}

/// MariaDB's error numbers the probe classifies (`ER_*` in
/// `mysqld_error.h`).
mod er {
    /// `ER_DBACCESS_DENIED_ERROR`: no access to the DSN's database.
    pub const DBACCESS_DENIED: u16 = 1044;
    /// `ER_ACCESS_DENIED_ERROR`: wrong user or password.
    pub const ACCESS_DENIED: u16 = 1045;
    /// `ER_SERVER_SHUTDOWN`: shutdown in progress.
    pub const SERVER_SHUTDOWN: u16 = 1053;
    /// `ER_TABLEACCESS_DENIED_ERROR`.
    pub const TABLEACCESS_DENIED: u16 = 1142;
    /// `ER_SPECIFIC_ACCESS_DENIED_ERROR`: a privilege the statement needs
    /// (`SLAVE MONITOR`, `BINLOG MONITOR`) is missing.
    pub const SPECIFIC_ACCESS_DENIED: u16 = 1227;
    /// `ER_ACCESS_DENIED_NO_PASSWORD_ERROR`.
    pub const ACCESS_DENIED_NO_PASSWORD: u16 = 1698;
    /// `ER_CONNECTION_KILLED`: the server killed the session (shutdown).
    pub const CONNECTION_KILLED: u16 = 1927;
    /// `ER_STATEMENT_TIMEOUT`: `max_statement_time` exceeded.
    pub const STATEMENT_TIMEOUT: u16 = 1969;
    /// MySQL's `ER_QUERY_TIMEOUT` (`max_execution_time`).
    pub const QUERY_TIMEOUT: u16 = 3024;
}

/// Probes one MariaDB server. Build one per target at start-up and call
/// [`MariaProbe::probe`] on every tick; it holds no connection between
/// probes. Its `Debug` shows the redacted target, never the connect
/// options (which hold the password).
#[derive(Clone)]
pub struct MariaProbe {
    /// Parsed connection options.
    options: MySqlConnectOptions,
    /// The DSN with its password redacted, for logs and details.
    target: String,
    /// Budget for the whole probe: connect, queries, close.
    timeout: Duration,
}

impl fmt::Debug for MariaProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MariaProbe")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl MariaProbe {
    /// Builds a probe for `dsn` (`mysql://user:password@host:port/`, or
    /// `mariadb://`; sqlx's parameters such as `ssl-mode` apply) that gives
    /// each probe `timeout` overall. The DSN is parsed here, so a broken
    /// one is reported once, at start-up, naming the DSN (password
    /// redacted) and the reason. The user needs the privileges the module
    /// doc lists.
    pub fn new(dsn: &str, timeout: Duration) -> Result<Self, ProbeConfigError> {
        let target = redact(dsn);
        if timeout.is_zero() {
            return Err(ProbeConfigError::ZeroTimeout { target, timeout });
        }
        // sqlx parses a postgres:// URL as MySQL options too; name the
        // mistake instead.
        let scheme_ok = ["mysql://", "mariadb://"]
            .iter()
            .any(|s| dsn.trim_start().starts_with(s));
        if !scheme_ok {
            return Err(ProbeConfigError::InvalidMysqlDsn {
                dsn: target,
                reason: "expected a mysql:// or mariadb:// URL".to_owned(),
            });
        }
        let text = dsn.trim_start().replacen("mariadb://", "mysql://", 1);
        let options = MySqlConnectOptions::from_str(&text).map_err(|e| {
            ProbeConfigError::InvalidMysqlDsn {
                dsn: target.clone(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            options,
            target,
            timeout,
        })
    }

    /// The same probe with `password` instead of the DSN's (a password
    /// held apart from the DSN, in a secret file).
    pub fn with_password(mut self, password: &Secret) -> Self {
        self.options = self.options.password(password.expose());
        self
    }

    /// The DSN probed, password redacted.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The overall timeout of one probe.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Probes the server once. Never fails: a server that does not answer
    /// is an observation (`Reachability::Down` with a class), and a field
    /// that could not be read is `None`. `latency_ms` is the whole probe.
    #[tracing::instrument(name = "maria_probe", skip_all, fields(target = %self.target))]
    pub async fn probe(&self) -> MariaObservation {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, self.probe_once()).await;
        let latency_ms = millis(started.elapsed());
        match outcome {
            Ok(Ok(mut observation)) => {
                observation.latency_ms = latency_ms;
                tracing::trace!(latency_ms, read_only = ?observation.read_only, "mariadb up");
                observation
            }
            Ok(Err(failure)) => {
                tracing::debug!(class = ?failure.class, detail = %failure.detail, latency_ms, "mariadb down");
                MariaObservation::down(failure.class, failure.detail, latency_ms)
            }
            Err(_) => {
                let detail = format!("no answer within {:?}", self.timeout);
                tracing::debug!(class = ?ErrorClass::Timeout, %detail, latency_ms, "mariadb down");
                MariaObservation::down(ErrorClass::Timeout, detail, latency_ms)
            }
        }
    }

    async fn probe_once(&self) -> Result<MariaObservation, Failure> {
        let mut conn = MySqlConnection::connect_with(&self.options)
            .await
            .map_err(|e| Failure::from_sqlx("connect", &e))?;
        let rows = read_all(&mut conn).await;
        // Close before looking at the result: the server slot is freed
        // either way, and a failed close changes nothing we observed.
        if let Err(e) = conn.close().await {
            tracing::debug!(error = %e, "closing the probe connection failed");
        }
        observation_from_rows(&rows?).map_err(|detail| Failure {
            class: ErrorClass::Other,
            detail,
        })
    }
}

/// What the statements of [`sql`] returned, each row as column name →
/// text (SQL NULL: `None`).
struct Rows {
    variables: Option<TextRow>,
    optional_variables: Vec<TextRow>,
    master_status: Option<TextRow>,
    slave_status: Option<TextRow>,
    semi_sync_status: Vec<TextRow>,
}

type TextRow = HashMap<String, Option<String>>;

/// Sends every statement of [`sql`] on `conn`.
async fn read_all(conn: &mut MySqlConnection) -> Result<Rows, Failure> {
    Ok(Rows {
        variables: fetch(conn, "variables", sql::VARIABLES)
            .await?
            .into_iter()
            .next(),
        optional_variables: fetch(conn, "optional variables", sql::OPTIONAL_VARIABLES).await?,
        master_status: fetch(conn, "SHOW MASTER STATUS", sql::MASTER_STATUS)
            .await?
            .into_iter()
            .next(),
        slave_status: fetch(conn, "SHOW SLAVE STATUS", sql::SLAVE_STATUS)
            .await?
            .into_iter()
            .next(),
        semi_sync_status: fetch(conn, "semi-sync status", sql::SEMI_SYNC_STATUS).await?,
    })
}

/// Runs one statement with the text protocol and returns its rows as text.
async fn fetch(
    conn: &mut MySqlConnection,
    what: &str,
    statement: &'static str,
) -> Result<Vec<TextRow>, Failure> {
    // Through `Executor` on the concrete connection type: the generic
    // `RawSql::fetch_all` makes this future not provably `Send` (a
    // higher-ranked lifetime limitation of rustc), and the daemon runs
    // probes on spawned tasks.
    let rows = sqlx::Executor::fetch_all(&mut *conn, sqlx::raw_sql(statement))
        .await
        .map_err(|e| Failure::from_sqlx(what, &e))?;
    rows.iter()
        .map(|row| {
            text_row(row).map_err(|detail| Failure {
                class: ErrorClass::Other,
                detail: format!("{what}: {detail}"),
            })
        })
        .collect()
}

/// Every column of a text-protocol row by name, as text.
fn text_row(row: &MySqlRow) -> Result<TextRow, String> {
    row.columns()
        .iter()
        .map(|col| {
            row.try_get_unchecked::<Option<String>, _>(col.ordinal())
                .map(|v| (col.name().to_owned(), v))
                .map_err(|e| format!("reading column {}: {e}", col.name()))
        })
        .collect()
}

/// Why a probe did not get its answer.
struct Failure {
    class: ErrorClass,
    detail: String,
}

impl Failure {
    fn from_sqlx(phase: &str, err: &sqlx::Error) -> Failure {
        let number = mysql_error_number(err);
        let class = classify_sqlx(err);
        let detail = match number {
            Some(er::SPECIFIC_ACCESS_DENIED | er::TABLEACCESS_DENIED) => format!(
                "{phase}: the probe user lacks a privilege the probe needs \
                 (MariaDB 10.5.9+: BINLOG MONITOR and SLAVE MONITOR; \
                 before, and MySQL: REPLICATION CLIENT): {err}"
            ),
            _ => format!("{phase}: {err}"),
        };
        Failure { class, detail }
    }
}

/// The MySQL error number of a server error (`1045`), if `err` is one.
fn mysql_error_number(err: &sqlx::Error) -> Option<u16> {
    match err {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// Maps a sqlx error to the class the detector decides on, as the
/// PostgreSQL probe does.
fn classify_sqlx(err: &sqlx::Error) -> ErrorClass {
    match err {
        sqlx::Error::Io(io) => classify_io(io),
        sqlx::Error::Database(_) => match mysql_error_number(err) {
            // Wrong credentials, no access to the database, and a missing
            // privilege (the probe cannot see what it must).
            Some(
                er::ACCESS_DENIED
                | er::ACCESS_DENIED_NO_PASSWORD
                | er::DBACCESS_DENIED
                | er::SPECIFIC_ACCESS_DENIED
                | er::TABLEACCESS_DENIED,
            ) => ErrorClass::Auth,
            Some(er::SERVER_SHUTDOWN | er::CONNECTION_KILLED) => ErrorClass::NotReady,
            Some(er::STATEMENT_TIMEOUT | er::QUERY_TIMEOUT) => ErrorClass::Timeout,
            _ => ErrorClass::Other,
        },
        sqlx::Error::PoolTimedOut => ErrorClass::Timeout,
        other => find_io_error(other).map_or(ErrorClass::Other, classify_io),
    }
}

/// A value from a text row: `Ok(None)` for a missing column or SQL NULL.
fn text<'a>(row: &'a TextRow, column: &str) -> Option<&'a str> {
    row.get(column).and_then(|v| v.as_deref())
}

/// A variable's value as `ON`/`OFF`/`1`/`0` (any case).
fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_uppercase().as_str() {
        "1" | "ON" | "YES" | "TRUE" => Some(true),
        "0" | "OFF" | "NO" | "FALSE" => Some(false),
        _ => None,
    }
}

fn parse_num<T: FromStr>(value: Option<&str>) -> Option<T> {
    value.and_then(|v| v.trim().parse().ok())
}

/// `SHOW ... VARIABLES` / `SHOW ... STATUS` rows as name → value.
fn name_values(rows: &[TextRow]) -> HashMap<String, String> {
    rows.iter()
        .filter_map(|row| {
            let name = text(row, "Variable_name")?;
            let value = text(row, "Value").unwrap_or_default();
            Some((name.to_ascii_lowercase(), value.to_owned()))
        })
        .collect()
}

/// Turns what the statements returned into an observation; the error
/// says which column could not be read.
fn observation_from_rows(rows: &Rows) -> Result<MariaObservation, String> {
    let empty = TextRow::new();
    let vars = rows.variables.as_ref().unwrap_or(&empty);
    let optional = name_values(&rows.optional_variables);
    let status = name_values(&rows.semi_sync_status);
    let gtid = |column: &str| text(vars, column).map(str::to_owned);

    let replica = rows
        .slave_status
        .as_ref()
        .map(replica_threads)
        .transpose()?;
    Ok(MariaObservation {
        reachability: Reachability::Up,
        read_only: text(vars, "read_only").and_then(parse_bool),
        super_read_only: optional.get("super_read_only").and_then(|v| parse_bool(v)),
        server_id: parse_num(text(vars, "server_id")),
        auto_increment_increment: parse_num(text(vars, "auto_increment_increment")),
        auto_increment_offset: parse_num(text(vars, "auto_increment_offset")),
        gtid_binlog_pos: gtid("gtid_binlog_pos"),
        gtid_binlog_state: gtid("gtid_binlog_state"),
        gtid_slave_pos: gtid("gtid_slave_pos"),
        gtid_current_pos: gtid("gtid_current_pos"),
        binlog_file: rows
            .master_status
            .as_ref()
            .and_then(|r| text(r, "File"))
            .map(str::to_owned),
        binlog_position: rows
            .master_status
            .as_ref()
            .and_then(|r| parse_num(text(r, "Position"))),
        replica,
        semi_sync: semi_sync(&optional, &status),
        latency_ms: 0,
    })
}

/// The `SHOW SLAVE STATUS` row as [`ReplicaThreads`]; every column must be
/// there (a row without them is not what this probe understands).
fn replica_threads(row: &TextRow) -> Result<ReplicaThreads, String> {
    let string = |column: &str| -> Result<String, String> {
        match row.get(column) {
            Some(v) => Ok(v.clone().unwrap_or_default()),
            None => Err(format!("SHOW SLAVE STATUS has no column {column}")),
        }
    };
    fn num<T: FromStr>(column: &str, value: String) -> Result<T, String> {
        value
            .trim()
            .parse()
            .map_err(|_| format!("SHOW SLAVE STATUS {column} = {value:?}, not a number"))
    }
    let seconds_behind_master = match row.get("Seconds_Behind_Master") {
        None => return Err("SHOW SLAVE STATUS has no column Seconds_Behind_Master".to_owned()),
        Some(None) => None,
        Some(Some(v)) => Some(num("Seconds_Behind_Master", v.clone())?),
    };
    let master_server_id: u32 = num("Master_Server_Id", string("Master_Server_Id")?)?;
    Ok(ReplicaThreads {
        master_host: string("Master_Host")?,
        master_port: num("Master_Port", string("Master_Port")?)?,
        master_server_id: (master_server_id != 0).then_some(master_server_id),
        io_running: string("Slave_IO_Running")?,
        sql_running: string("Slave_SQL_Running")? == "Yes",
        seconds_behind_master,
        master_log_file: string("Master_Log_File")?,
        read_master_log_pos: num("Read_Master_Log_Pos", string("Read_Master_Log_Pos")?)?,
        relay_master_log_file: string("Relay_Master_Log_File")?,
        exec_master_log_pos: num("Exec_Master_Log_Pos", string("Exec_Master_Log_Pos")?)?,
        using_gtid: string("Using_Gtid")?,
        gtid_io_pos: string("Gtid_IO_Pos")?,
        last_io_error: string("Last_IO_Error")?,
        last_sql_error: string("Last_SQL_Error")?,
    })
}

/// Semi-sync as in force, from the variables and the status counters;
/// `None` when any of them is absent or unreadable (no plugin).
fn semi_sync(vars: &HashMap<String, String>, status: &HashMap<String, String>) -> Option<SemiSync> {
    let flag =
        |map: &HashMap<String, String>, name: &str| map.get(name).and_then(|v| parse_bool(v));
    Some(SemiSync {
        master_enabled: flag(vars, "rpl_semi_sync_master_enabled")?,
        master_active: flag(status, "rpl_semi_sync_master_status")?,
        master_timeout_ms: parse_num(vars.get("rpl_semi_sync_master_timeout").map(String::as_str))?,
        slave_enabled: flag(vars, "rpl_semi_sync_slave_enabled")?,
        master_clients: parse_num(
            status
                .get("rpl_semi_sync_master_clients")
                .map(String::as_str),
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, Option<&str>)]) -> TextRow {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
            .collect()
    }

    fn name_value(name: &str, value: &str) -> TextRow {
        row(&[("Variable_name", Some(name)), ("Value", Some(value))])
    }

    fn slave_status(master_server_id: &str, behind: Option<&str>) -> TextRow {
        row(&[
            ("Slave_IO_State", Some("Waiting for master to send event")),
            ("Master_Host", Some("127.0.0.1")),
            ("Master_Port", Some("33062")),
            ("Master_Server_Id", Some(master_server_id)),
            ("Slave_IO_Running", Some("Yes")),
            ("Slave_SQL_Running", Some("Yes")),
            ("Seconds_Behind_Master", behind),
            ("Master_Log_File", Some("mysql-bin.000001")),
            ("Read_Master_Log_Pos", Some("869")),
            ("Relay_Master_Log_File", Some("mysql-bin.000001")),
            ("Exec_Master_Log_Pos", Some("542")),
            ("Using_Gtid", Some("No")),
            ("Gtid_IO_Pos", Some("")),
            ("Last_IO_Error", Some("")),
            ("Last_SQL_Error", Some("")),
        ])
    }

    #[test]
    fn zero_timeout_and_other_schemes_are_rejected() {
        let err = MariaProbe::new("mysql://u:p@h/", Duration::ZERO).expect_err("zero timeout");
        assert!(matches!(err, ProbeConfigError::ZeroTimeout { .. }), "{err}");
        let err = MariaProbe::new("postgres://u:secret@h/db", Duration::from_secs(1))
            .expect_err("postgres DSN");
        assert!(
            matches!(err, ProbeConfigError::InvalidMysqlDsn { .. }),
            "{err}"
        );
        assert!(!err.to_string().contains("secret"), "{err}");
        let probe = MariaProbe::new("mariadb://u:secret@h:3307/", Duration::from_secs(1))
            .expect("mariadb:// is accepted");
        assert_eq!(probe.target(), "mariadb://u:***@h:3307/");
        assert!(!format!("{probe:?}").contains("secret"));
    }

    #[test]
    fn rows_become_an_observation() {
        let rows = Rows {
            variables: Some(row(&[
                ("read_only", Some("0")),
                ("server_id", Some("1")),
                ("auto_increment_increment", Some("2")),
                ("auto_increment_offset", Some("1")),
                ("gtid_binlog_pos", Some("0-1-3")),
                ("gtid_binlog_state", Some("0-1-3")),
                ("gtid_slave_pos", Some("0-2-4")),
                ("gtid_current_pos", Some("0-2-4")),
            ])),
            optional_variables: vec![
                name_value("rpl_semi_sync_master_enabled", "ON"),
                name_value("rpl_semi_sync_master_timeout", "10000"),
                name_value("rpl_semi_sync_slave_enabled", "OFF"),
                name_value("rpl_semi_sync_master_wait_point", "AFTER_COMMIT"),
            ],
            master_status: Some(row(&[
                ("File", Some("mysql-bin.000002")),
                ("Position", Some("342")),
            ])),
            slave_status: Some(slave_status("2", None)),
            semi_sync_status: vec![
                name_value("Rpl_semi_sync_master_status", "ON"),
                name_value("Rpl_semi_sync_master_clients", "1"),
            ],
        };
        let o = observation_from_rows(&rows).expect("parses");
        assert_eq!(o.read_only, Some(false));
        assert_eq!(o.super_read_only, None, "MariaDB has no super_read_only");
        assert_eq!(o.server_id, Some(1));
        assert_eq!(
            (o.auto_increment_increment, o.auto_increment_offset),
            (Some(2), Some(1))
        );
        assert_eq!(o.gtid_slave_pos.as_deref(), Some("0-2-4"));
        assert_eq!(o.binlog_file.as_deref(), Some("mysql-bin.000002"));
        assert_eq!(o.binlog_position, Some(342));
        let r = o.replica.expect("replica");
        assert_eq!(r.master_server_id, Some(2));
        assert_eq!(r.seconds_behind_master, None);
        assert_eq!((r.read_master_log_pos, r.exec_master_log_pos), (869, 542));
        assert!(!r.executed_all_received());
        assert_eq!(
            o.semi_sync,
            Some(SemiSync {
                master_enabled: true,
                master_active: true,
                master_timeout_ms: 10_000,
                slave_enabled: false,
                master_clients: 1,
            })
        );
    }

    #[test]
    fn absent_things_are_none_and_a_zero_master_server_id_is_unknown() {
        let rows = Rows {
            variables: Some(row(&[
                ("read_only", Some("1")),
                ("gtid_binlog_pos", Some("")),
            ])),
            optional_variables: vec![name_value("super_read_only", "ON")],
            master_status: None,
            slave_status: Some(slave_status("0", Some("7"))),
            semi_sync_status: vec![],
        };
        let o = observation_from_rows(&rows).expect("parses");
        assert_eq!((o.read_only, o.super_read_only), (Some(true), Some(true)));
        assert_eq!(o.server_id, None);
        assert_eq!(
            o.gtid_binlog_pos.as_deref(),
            Some(""),
            "empty is not unknown"
        );
        assert_eq!((o.binlog_file, o.binlog_position), (None, None));
        assert_eq!(o.semi_sync, None);
        let r = o.replica.expect("replica");
        assert_eq!(r.master_server_id, None);
        assert_eq!(r.seconds_behind_master, Some(7));
    }

    #[test]
    fn a_slave_status_without_its_columns_is_an_error() {
        let mut status = slave_status("2", None);
        status.remove("Exec_Master_Log_Pos");
        let rows = Rows {
            variables: None,
            optional_variables: vec![],
            master_status: None,
            slave_status: Some(status),
            semi_sync_status: vec![],
        };
        let err = observation_from_rows(&rows).expect_err("missing column");
        assert!(err.contains("Exec_Master_Log_Pos"), "{err}");
    }

    #[test]
    fn sqlx_errors_are_classified() {
        let io = |kind| sqlx::Error::Io(std::io::Error::new(kind, "x"));
        assert_eq!(
            classify_sqlx(&io(std::io::ErrorKind::ConnectionRefused)),
            ErrorClass::Refused
        );
        assert_eq!(
            classify_sqlx(&io(std::io::ErrorKind::TimedOut)),
            ErrorClass::Timeout
        );
        assert_eq!(
            classify_sqlx(&sqlx::Error::Protocol("x".into())),
            ErrorClass::Other
        );
    }
}
