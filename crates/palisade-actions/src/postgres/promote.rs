//! What we do over SQL: promote, the post-promotion test write that records
//! the fencing token, synchronous replication settings, and reading the WAL
//! receiver's state.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use tracing::info;

use super::conninfo::{redact, sql_literal};
use super::error::DbError;
use super::fence::POLL;
use super::{PgSite, PromoteOutcome, SyncOutcome};

/// The WAL receiver's state, from `pg_stat_wal_receiver`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Receiver {
    /// `status`: `streaming`, `starting`, `waiting`, ...
    pub status: String,
    /// Where it streams from.
    pub sender_host: Option<String>,
    /// See `sender_host`.
    pub sender_port: Option<i32>,
}

impl PgSite {
    /// Opens one connection with the admin DSN, bounded by `timeout`.
    pub(super) async fn connect(&self) -> Result<PgConnection, DbError> {
        let opts = self.admin_options()?.application_name("palisade");
        match tokio::time::timeout(self.timeout, PgConnection::connect_with(&opts)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(source)) => Err(self.sql_error("connecting with admin_dsn", source)),
            Err(_) => Err(DbError::Timeout {
                server: self.server(),
                what: "a connection with admin_dsn",
                timeout: self.timeout,
                last: "connect did not finish".into(),
            }),
        }
    }

    /// Runs `sql` (one or more statements, no parameters) over the simple
    /// query protocol, which utility statements such as `ALTER SYSTEM` need.
    async fn simple(&self, conn: &mut PgConnection, sql: &str) -> Result<(), DbError> {
        sqlx::Executor::execute(conn, sql)
            .await
            .map(|_| ())
            .map_err(|e| self.sql_error(redact(sql), e))
    }

    pub(super) fn sql_error(&self, action: impl Into<String>, source: sqlx::Error) -> DbError {
        DbError::Sql {
            server: self.server(),
            action: action.into(),
            source,
        }
    }

    /// The promotion itself; see [`super::DatabaseControl::promote`].
    pub(super) async fn promote_server(&self, epoch: u64) -> Result<PromoteOutcome, DbError> {
        let started = Instant::now();
        let token = i64::try_from(epoch).map_err(|_| DbError::InvalidInput {
            server: self.server(),
            what: "epoch",
            detail: format!("{epoch} does not fit palisade.epoch's bigint"),
        })?;
        let mut conn = self.connect().await?;
        // Refuse before changing anything if a newer failover has already
        // promoted this database's history: this call is a stale retry.
        self.check_not_stale(&mut conn, epoch).await?;

        let in_recovery = self.in_recovery(&mut conn).await?;
        if in_recovery {
            let wait_seconds = i32::try_from(self.timeout.as_secs().max(1)).unwrap_or(i32::MAX);
            let promote = sqlx::query_scalar::<_, bool>(
                "SELECT pg_promote(wait => true, wait_seconds => $1)",
            )
            .bind(wait_seconds)
            .fetch_one(&mut conn);
            let done = tokio::time::timeout(self.timeout + Duration::from_secs(5), promote)
                .await
                .map_err(|_| DbError::Timeout {
                    server: self.server(),
                    what: "promotion (pg_promote)",
                    timeout: self.timeout,
                    last: "pg_promote did not return".into(),
                })?
                .map_err(|e| self.sql_error("SELECT pg_promote(wait => true)", e))?;
            if !done {
                return Err(DbError::Timeout {
                    server: self.server(),
                    what: "promotion (pg_promote)",
                    timeout: self.timeout,
                    last: "pg_promote returned false: still in recovery".into(),
                });
            }
        }
        if self.in_recovery(&mut conn).await? {
            return Err(DbError::Timeout {
                server: self.server(),
                what: "pg_is_in_recovery() = false",
                timeout: self.timeout,
                last: "still in recovery after pg_promote returned".into(),
            });
        }
        let promoted_in = started.elapsed();

        // pg_rewind reads the source's timeline from its control file, which
        // a promotion updates only at the next checkpoint (pg_rewind docs:
        // "it is necessary to execute a CHECKPOINT after promotion"). Without
        // it, rejoining the old primary against us could see "no rewind
        // required" and then fail to follow our timeline.
        let wal_timeline = self.wal_timeline(&mut conn).await?;
        if self.control_timeline(&mut conn).await? < wal_timeline {
            self.simple(&mut conn, "CHECKPOINT").await?;
        }

        self.record_epoch(&mut conn, epoch, token).await?;

        let lsn_text = sqlx::query_scalar::<_, String>("SELECT pg_current_wal_lsn()::text")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| self.sql_error("SELECT pg_current_wal_lsn()", e))?;
        let lsn =
            palisade_core::observe::parse_lsn(&lsn_text).ok_or_else(|| DbError::InvalidInput {
                server: self.server(),
                what: "pg_current_wal_lsn() answer",
                detail: lsn_text.clone(),
            })?;
        let timeline = self.control_timeline(&mut conn).await?;
        let _ = conn.close().await;
        info!(already_primary = !in_recovery, lsn = %lsn_text, timeline, "promoted");
        Ok(PromoteOutcome {
            already_primary: !in_recovery,
            lsn,
            timeline,
            promoted_in,
            elapsed: started.elapsed(),
        })
    }

    async fn in_recovery(&self, conn: &mut PgConnection) -> Result<bool, DbError> {
        sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()")
            .fetch_one(conn)
            .await
            .map_err(|e| self.sql_error("SELECT pg_is_in_recovery()", e))
    }

    /// The timeline WAL is being written on, from the current WAL file name
    /// (its first 8 hex digits); current immediately after promotion.
    async fn wal_timeline(&self, conn: &mut PgConnection) -> Result<u32, DbError> {
        let name = sqlx::query_scalar::<_, String>("SELECT pg_walfile_name(pg_current_wal_lsn())")
            .fetch_one(conn)
            .await
            .map_err(|e| self.sql_error("SELECT pg_walfile_name(pg_current_wal_lsn())", e))?;
        name.get(..8)
            .and_then(|tli| u32::from_str_radix(tli, 16).ok())
            .ok_or_else(|| DbError::InvalidInput {
                server: self.server(),
                what: "WAL file name",
                detail: name.clone(),
            })
    }

    /// The timeline of the last checkpoint, as the control file records it.
    async fn control_timeline(&self, conn: &mut PgConnection) -> Result<u32, DbError> {
        let tli = sqlx::query_scalar::<_, i32>("SELECT timeline_id FROM pg_control_checkpoint()")
            .fetch_one(conn)
            .await
            .map_err(|e| self.sql_error("SELECT timeline_id FROM pg_control_checkpoint()", e))?;
        u32::try_from(tli).map_err(|_| DbError::InvalidInput {
            server: self.server(),
            what: "timeline_id",
            detail: tli.to_string(),
        })
    }

    /// The highest epoch in `palisade.epoch`, `None` while the table does
    /// not exist (never promoted by palisade). Works on a standby.
    async fn recorded_epoch(&self, conn: &mut PgConnection) -> Result<Option<u64>, DbError> {
        let exists =
            sqlx::query_scalar::<_, bool>("SELECT to_regclass('palisade.epoch') IS NOT NULL")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| self.sql_error("looking for palisade.epoch", e))?;
        if !exists {
            return Ok(None);
        }
        let max = sqlx::query_scalar::<_, Option<i64>>("SELECT max(epoch) FROM palisade.epoch")
            .fetch_one(conn)
            .await
            .map_err(|e| self.sql_error("SELECT max(epoch) FROM palisade.epoch", e))?;
        Ok(max.map(|m| u64::try_from(m).unwrap_or(0)))
    }

    async fn check_not_stale(&self, conn: &mut PgConnection, epoch: u64) -> Result<(), DbError> {
        match self.recorded_epoch(conn).await? {
            Some(recorded) if recorded > epoch => Err(DbError::StaleEpoch {
                server: self.server(),
                epoch,
                recorded,
            }),
            _ => Ok(()),
        }
    }

    /// The test write: proves the server takes writes and records the
    /// fencing token durably in the database's own history, so that a later
    /// promotion carrying an older epoch is refused (see `check_not_stale`).
    async fn record_epoch(
        &self,
        conn: &mut PgConnection,
        epoch: u64,
        token: i64,
    ) -> Result<(), DbError> {
        let mut tx = conn
            .begin()
            .await
            .map_err(|e| self.sql_error("BEGIN (test write)", e))?;
        // A freshly promoted server may carry synchronous_standby_names from
        // its old primary, with no standby attached yet: the test write must
        // prove writability, not wait for a standby that may never come.
        for statement in [
            "SET LOCAL synchronous_commit = local",
            "CREATE SCHEMA IF NOT EXISTS palisade",
            "CREATE TABLE IF NOT EXISTS palisade.epoch (\
                 epoch bigint PRIMARY KEY, \
                 promoted_at timestamptz NOT NULL DEFAULT now())",
        ] {
            self.simple(&mut tx, statement).await?;
        }
        self.check_not_stale(&mut tx, epoch).await?;
        sqlx::query("INSERT INTO palisade.epoch (epoch) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(token)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.sql_error("INSERT INTO palisade.epoch", e))?;
        tx.commit()
            .await
            .map_err(|e| self.sql_error("COMMIT (test write)", e))
    }

    /// See [`super::DatabaseControl::set_synchronous`].
    pub(super) async fn set_synchronous_names(
        &self,
        standby_names: Option<&str>,
    ) -> Result<SyncOutcome, DbError> {
        let wanted = standby_names.unwrap_or("");
        let literal = sql_literal(wanted).map_err(|detail| DbError::InvalidInput {
            server: self.server(),
            what: "synchronous_standby_names",
            detail,
        })?;
        let mut conn = self.connect().await?;
        let previous = self.current_sync_names(&mut conn).await?;
        // Always written, even when the running value matches: the file may
        // disagree with what is loaded, and ALTER SYSTEM is cheap.
        // Separate statements: ALTER SYSTEM refuses to run in the implicit
        // transaction block of a multi-statement query string.
        self.simple(&mut conn, "SET standard_conforming_strings = on")
            .await?;
        let alter = format!("ALTER SYSTEM SET synchronous_standby_names = {literal}");
        self.simple(&mut conn, &alter).await?;
        self.simple(&mut conn, "SELECT pg_reload_conf()").await?;
        // The reload is a signal, handled by each backend (ours included)
        // between commands: wait until ours sees the new value.
        let deadline = Instant::now() + self.timeout;
        loop {
            let current = self.current_sync_names(&mut conn).await?;
            if current == wanted {
                break;
            }
            if Instant::now() >= deadline {
                return Err(DbError::Timeout {
                    server: self.server(),
                    what: "reloaded synchronous_standby_names",
                    timeout: self.timeout,
                    last: format!("still {current:?}"),
                });
            }
            tokio::time::sleep(POLL).await;
        }
        let _ = conn.close().await;
        Ok(SyncOutcome {
            changed: previous != wanted,
            previous,
            current: wanted.to_owned(),
        })
    }

    async fn current_sync_names(&self, conn: &mut PgConnection) -> Result<String, DbError> {
        sqlx::query_scalar::<_, String>("SELECT current_setting('synchronous_standby_names')")
            .fetch_one(conn)
            .await
            .map_err(|e| self.sql_error("reading synchronous_standby_names", e))
    }

    /// Whether the server is in recovery and its WAL receiver's state
    /// (`None` when no receiver runs).
    pub(super) async fn receiver(&self) -> Result<(bool, Option<Receiver>), DbError> {
        let mut conn = self.connect().await?;
        let in_recovery = self.in_recovery(&mut conn).await?;
        let row = sqlx::query_as::<_, (String, Option<String>, Option<i32>)>(
            "SELECT status, sender_host, sender_port FROM pg_stat_wal_receiver",
        )
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| self.sql_error("SELECT ... FROM pg_stat_wal_receiver", e))?;
        let _ = conn.close().await;
        Ok((
            in_recovery,
            row.map(|(status, sender_host, sender_port)| Receiver {
                status,
                sender_host,
                sender_port,
            }),
        ))
    }

    /// The `primary_conninfo` the running server uses.
    pub(super) async fn running_primary_conninfo(&self) -> Result<String, DbError> {
        let mut conn = self.connect().await?;
        let value = sqlx::query_scalar::<_, String>("SELECT current_setting('primary_conninfo')")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| self.sql_error("reading primary_conninfo", e))?;
        let _ = conn.close().await;
        Ok(value)
    }

    /// Waits (up to `timeout`) until the WAL receiver streams. Returns how
    /// long that took.
    pub(super) async fn wait_streaming(&self) -> Result<Duration, DbError> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        loop {
            let last = match self.receiver().await {
                Ok((true, Some(rx))) if rx.status == "streaming" => return Ok(started.elapsed()),
                Ok((false, _)) => "not in recovery".to_owned(),
                Ok((true, Some(rx))) => format!("WAL receiver {}", rx.status),
                Ok((true, None)) => "no WAL receiver".to_owned(),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(DbError::Timeout {
                    server: self.server(),
                    what: "pg_stat_wal_receiver.status = 'streaming'",
                    timeout: self.timeout,
                    last,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
