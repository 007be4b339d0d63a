//! PostgreSQL probe: is the server up, is it a primary or a standby, where
//! is its WAL, and who replicates from whom.
//!
//! Each probe opens **one fresh connection** and closes it. A persistent
//! pool would hide a dead server behind a connection that has not noticed
//! yet, and would keep a slot busy on a server we have fenced.
//!
//! Everything is read in **one round trip**: a single statement sent with
//! the simple query protocol, returning one row (the standby's WAL receiver
//! and the primary's replicas come back as JSON columns; the number of
//! commits waiting for a synchronous standby as a count).
//!
//! # Privileges
//!
//! The probe only reads. In production give it a dedicated role with
//! `pg_monitor` and nothing else:
//!
//! ```sql
//! CREATE ROLE palisade_probe LOGIN PASSWORD '...';
//! GRANT pg_monitor TO palisade_probe;
//! ```
//!
//! Without `pg_monitor` (more precisely `pg_read_all_stats`) PostgreSQL
//! hides the columns of `pg_stat_replication` and `pg_stat_wal_receiver`
//! from the role: the probe then reports replicas and the WAL receiver with
//! `unknown` states and no positions, and the number of commits waiting
//! for a synchronous standby as unknown.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use palisade_core::observe::{
    parse_lsn, ErrorClass, PgObservation, Reachability, ReplicaInfo, WalReceiverInfo,
};
use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgRow};
use sqlx::{Connection, PgConnection, Row};

use palisade_core::ConnString;

use crate::{classify_io, find_io_error, millis, redact, ProbeConfigError};

/// The probe's single statement. `pg_current_wal_lsn()` raises an error
/// during recovery, hence the `CASE`; on a primary the standby-only
/// functions return NULL. Replay lag is 0 when the standby has replayed
/// everything it received (its receive position can also be *behind* its
/// replay position: after a restart it restarts streaming at the start of
/// a segment, below what it already replayed), as the commit timestamp of the last replayed
/// transaction says nothing about lag on an idle primary; it is NULL on a
/// primary and when no transaction has been replayed yet. (No `greatest()`
/// for clamping: it ignores NULLs and would turn "unknown" into 0.)
///
/// `sync_waiters` counts the backends whose commit waits for a synchronous
/// standby's confirmation, on a primary only. It is NULL ("unknown") for a
/// role that lacks `pg_read_all_stats` (which `pg_monitor` includes):
/// PostgreSQL shows such a role the wait events of its own sessions only,
/// and a count of those would be a false 0.
const PROBE_SQL: &str = r#"
SELECT
  pg_is_in_recovery() AS in_recovery,
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS current_lsn,
  pg_last_wal_receive_lsn()::text AS receive_lsn,
  pg_last_wal_replay_lsn()::text AS replay_lsn,
  CASE WHEN NOT pg_is_in_recovery() THEN NULL
       WHEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0::float8
       ELSE (SELECT CASE WHEN lag < 0 THEN 0 ELSE lag END
               FROM (SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS lag) l)
  END AS replay_lag_seconds,
  (SELECT json_build_object(
            'status', status,
            'sender_host', sender_host,
            'sender_port', sender_port,
            'flushed_lsn', flushed_lsn::text,
            'last_msg_age_ms',
              (extract(epoch FROM clock_timestamp() - last_msg_receipt_time) * 1000)::bigint
          )::text
     FROM pg_stat_wal_receiver LIMIT 1) AS wal_receiver,
  (SELECT coalesce(json_agg(json_build_object(
            'application_name', application_name,
            'client_addr', host(client_addr),
            'state', state,
            'sync_state', sync_state,
            'sent_lsn', sent_lsn::text,
            'flush_lsn', flush_lsn::text,
            'replay_lsn', replay_lsn::text
          ) ORDER BY application_name, pid), '[]')::text
     FROM pg_stat_replication) AS replicas,
  CASE WHEN pg_is_in_recovery() THEN NULL
       WHEN NOT pg_has_role('pg_read_all_stats', 'USAGE') THEN NULL
       ELSE (SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep')
  END AS sync_waiters
"#;

/// Probes one PostgreSQL server. Build one per target at start-up and call
/// [`PgProbe::probe`] on every tick; it holds no connection between probes.
/// Its `Debug` shows the redacted target, never the connect options (which
/// hold the password).
#[derive(Clone)]
pub struct PgProbe {
    /// Parsed connection options (with our statement timeout and
    /// application name added).
    options: PgConnectOptions,
    /// The DSN with its password redacted, for logs and details.
    target: String,
    /// Budget for the whole probe: connect, query, close.
    timeout: Duration,
}

impl fmt::Debug for PgProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgProbe")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl PgProbe {
    /// Builds a probe for `dsn` (`postgres://user:password@host:port/db`,
    /// or a [`ConnString`] whose password is held apart) that gives each
    /// probe `timeout` overall. The DSN is parsed here, so a broken one is
    /// reported once, at start-up, naming the DSN (password redacted) and
    /// the reason. The password goes into the connect options only.
    pub fn new(dsn: impl Into<ConnString>, timeout: Duration) -> Result<Self, ProbeConfigError> {
        let dsn: ConnString = dsn.into();
        let password = dsn.password();
        let dsn = dsn.text();
        let target = redact(dsn);
        if timeout.is_zero() {
            return Err(ProbeConfigError::ZeroTimeout { target, timeout });
        }
        // sqlx parses any URL; a `mysql://` DSN in the PostgreSQL slot is a
        // configuration mistake worth naming.
        if !(dsn.starts_with("postgres://") || dsn.starts_with("postgresql://")) {
            return Err(ProbeConfigError::InvalidDsn {
                dsn: target,
                reason: "expected a postgres:// or postgresql:// URL".to_owned(),
            });
        }
        let mut options =
            PgConnectOptions::from_str(dsn).map_err(|e| ProbeConfigError::InvalidDsn {
                dsn: target.clone(),
                reason: e.to_string(),
            })?;
        if let Some(p) = password {
            options = options.password(p.expose());
        }
        // The server gives up on the statement by itself too, so a probe we
        // abandoned does not keep a backend busy.
        options = options.options([("statement_timeout", format!("{}ms", millis(timeout).max(1)))]);
        if options.get_application_name().is_none() {
            options = options.application_name("palisade-probe");
        }
        Ok(Self {
            options,
            target,
            timeout,
        })
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
    #[tracing::instrument(name = "pg_probe", skip_all, fields(target = %self.target))]
    pub async fn probe(&self) -> PgObservation {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, self.probe_once()).await;
        let latency_ms = millis(started.elapsed());
        match outcome {
            Ok(Ok(mut observation)) => {
                observation.latency_ms = latency_ms;
                tracing::trace!(latency_ms, in_recovery = ?observation.in_recovery, "postgres up");
                observation
            }
            Ok(Err(failure)) => {
                tracing::debug!(class = ?failure.class, detail = %failure.detail, latency_ms, "postgres down");
                PgObservation::down(failure.class, failure.detail, latency_ms)
            }
            Err(_) => {
                let detail = format!("no answer within {:?}", self.timeout);
                tracing::debug!(class = ?ErrorClass::Timeout, %detail, latency_ms, "postgres down");
                PgObservation::down(ErrorClass::Timeout, detail, latency_ms)
            }
        }
    }

    async fn probe_once(&self) -> Result<PgObservation, Failure> {
        let mut conn = PgConnection::connect_with(&self.options)
            .await
            .map_err(|e| Failure::from_sqlx("connect", &e))?;
        // Through `Executor` on the concrete connection type: the generic
        // `RawSql::fetch_one` makes this future not provably `Send` (a
        // higher-ranked lifetime limitation of rustc), and the daemon runs
        // probes on spawned tasks.
        let row = sqlx::Executor::fetch_one(&mut conn, sqlx::raw_sql(PROBE_SQL)).await;
        // Close before looking at the result: the server slot is freed
        // either way, and a failed close changes nothing we observed.
        if let Err(e) = conn.close().await {
            tracing::debug!(error = %e, "closing the probe connection failed");
        }
        let row = row.map_err(|e| Failure::from_sqlx("query", &e))?;
        observation_from_row(&row).map_err(|detail| Failure {
            class: ErrorClass::Other,
            detail,
        })
    }
}

/// Why a probe did not get its answer.
struct Failure {
    class: ErrorClass,
    detail: String,
}

impl Failure {
    fn from_sqlx(phase: &str, err: &sqlx::Error) -> Failure {
        // A refused certificate reaches us as an I/O error around rustls's;
        // say "TLS" so nobody reads it as a network fault.
        let detail = match (err, tls_error(err)) {
            (_, Some(tls)) => format!("{phase}: TLS handshake failed: {tls}"),
            (sqlx::Error::Tls(e), None) => format!("{phase}: TLS: {e}"),
            _ => format!("{phase}: {err}"),
        };
        Failure {
            class: classify_sqlx(err),
            detail,
        }
    }
}

/// The rustls error inside `err`, if the TLS handshake failed.
fn tls_error(err: &sqlx::Error) -> Option<&rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(inner);
        }
        current = e.source();
    }
    None
}

/// Maps a sqlx error to the class the detector decides on.
fn classify_sqlx(err: &sqlx::Error) -> ErrorClass {
    match err {
        sqlx::Error::Io(io) => classify_io(io),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // invalid_password, invalid_authorization_specification
            Some("28P01" | "28000") => ErrorClass::Auth,
            // cannot_connect_now (starting up, shutting down, recovering
            // without hot standby), admin_shutdown, crash_shutdown
            Some("57P03" | "57P01" | "57P02") => ErrorClass::NotReady,
            // query_canceled: our statement_timeout fired server-side
            Some("57014") => ErrorClass::Timeout,
            _ => ErrorClass::Other,
        },
        sqlx::Error::PoolTimedOut => ErrorClass::Timeout,
        other => find_io_error(other).map_or(ErrorClass::Other, classify_io),
    }
}

/// The standby's WAL receiver as the probe's JSON column carries it.
#[derive(Deserialize)]
struct WalReceiverJson {
    status: Option<String>,
    sender_host: Option<String>,
    sender_port: Option<i64>,
    flushed_lsn: Option<String>,
    last_msg_age_ms: Option<i64>,
}

/// One `pg_stat_replication` row as the probe's JSON column carries it.
#[derive(Deserialize)]
struct ReplicaJson {
    application_name: Option<String>,
    client_addr: Option<String>,
    state: Option<String>,
    sync_state: Option<String>,
    sent_lsn: Option<String>,
    flush_lsn: Option<String>,
    replay_lsn: Option<String>,
}

/// Shown for a state column PostgreSQL hid from the probe role (it lacks
/// `pg_monitor`), so "not visible" is never mistaken for a real state.
const UNKNOWN: &str = "unknown";

fn lsn(text: Option<&str>) -> Option<u64> {
    text.and_then(parse_lsn)
}

/// Turns the probe row into an observation; the error says which column
/// could not be read.
fn observation_from_row(row: &PgRow) -> Result<PgObservation, String> {
    let text = |column: &str| -> Result<Option<String>, String> {
        row.try_get::<Option<String>, _>(column)
            .map_err(|e| format!("reading {column}: {e}"))
    };
    let in_recovery: Option<bool> = row
        .try_get("in_recovery")
        .map_err(|e| format!("reading in_recovery: {e}"))?;
    let replay_lag_seconds: Option<f64> = row
        .try_get("replay_lag_seconds")
        .map_err(|e| format!("reading replay_lag_seconds: {e}"))?;
    let sync_waiters: Option<i64> = row
        .try_get("sync_waiters")
        .map_err(|e| format!("reading sync_waiters: {e}"))?;

    let wal_receiver = match text("wal_receiver")? {
        None => None,
        Some(json) => {
            let w: WalReceiverJson = serde_json::from_str(&json)
                .map_err(|e| format!("parsing wal_receiver {json:?}: {e}"))?;
            Some(WalReceiverInfo {
                status: w.status.unwrap_or_else(|| UNKNOWN.to_owned()),
                sender_host: w.sender_host,
                sender_port: w.sender_port.and_then(|p| u16::try_from(p).ok()),
                flushed_lsn: lsn(w.flushed_lsn.as_deref()),
                // Clocks: receipt time and now() come from the same server,
                // but the receipt may land after our clock_timestamp() read.
                last_msg_age_ms: w.last_msg_age_ms.map(|ms| u64::try_from(ms).unwrap_or(0)),
            })
        }
    };

    let replicas_json = text("replicas")?.unwrap_or_else(|| "[]".to_owned());
    let replicas: Vec<ReplicaJson> = serde_json::from_str(&replicas_json)
        .map_err(|e| format!("parsing replicas {replicas_json:?}: {e}"))?;
    let replicas = replicas
        .into_iter()
        .map(|r| ReplicaInfo {
            application_name: r.application_name.unwrap_or_default(),
            client_addr: r.client_addr,
            state: r.state.unwrap_or_else(|| UNKNOWN.to_owned()),
            sync_state: r.sync_state.unwrap_or_else(|| UNKNOWN.to_owned()),
            sent_lsn: lsn(r.sent_lsn.as_deref()),
            flush_lsn: lsn(r.flush_lsn.as_deref()),
            replay_lsn: lsn(r.replay_lsn.as_deref()),
        })
        .collect();

    Ok(PgObservation {
        reachability: Reachability::Up,
        in_recovery,
        current_lsn: lsn(text("current_lsn")?.as_deref()),
        receive_lsn: lsn(text("receive_lsn")?.as_deref()),
        replay_lsn: lsn(text("replay_lsn")?.as_deref()),
        replay_lag_seconds,
        wal_receiver,
        replicas,
        // A count of backends: never negative, and far below u32::MAX
        // (max_connections); saturate rather than fail on the impossible.
        sync_waiters: sync_waiters.map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX)),
        latency_ms: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_timeout_is_rejected() {
        let err = PgProbe::new("postgres://u:p@h/db", Duration::ZERO).expect_err("zero timeout");
        assert!(matches!(err, ProbeConfigError::ZeroTimeout { .. }), "{err}");
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
