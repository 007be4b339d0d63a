//! Making the survivor the writer, with proof that it applied what it
//! must; the old writer's final position; semi-synchronous replication.

use std::collections::BTreeMap;
use std::time::Instant;

use sqlx::mysql::MySqlConnection;
use sqlx::Connection;
use tracing::{info, warn};

use super::conn::{parse_bool, TextRow};
use super::error::{MariaError, NotCaughtUp};
use super::sql;
use super::{BinlogPosition, FinalPosition, MariaSite, PromoteOutcome, PromotionRequest, POLL};

/// What `SHOW SLAVE STATUS` says of the replication from the other
/// master (MySQL 8: `SHOW REPLICA STATUS`, `Source_*` columns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SlaveStatus {
    /// `Master_Log_File`, `Read_Master_Log_Pos`: how far the IO thread
    /// received.
    pub read: BinlogPosition,
    /// `Relay_Master_Log_File`, `Exec_Master_Log_Pos`: how far the SQL
    /// thread applied.
    pub executed: BinlogPosition,
    /// `Slave_IO_Running`: `Yes`, `No`, `Connecting`.
    pub io_running: String,
    /// `Slave_SQL_Running`: `Yes`, `No`.
    pub sql_running: String,
    /// `Seconds_Behind_Master`; `None` when NULL (a thread is stopped, or
    /// the IO thread is not connected and the SQL thread has applied all).
    pub seconds_behind_master: Option<u64>,
    /// `Gtid_IO_Pos`: the GTIDs the IO thread received (empty without
    /// GTID replication).
    pub gtid_io_pos: String,
    /// `Last_IO_Error`.
    pub last_io_error: String,
    /// `Last_SQL_Error`.
    pub last_sql_error: String,
}

impl SlaveStatus {
    fn from_row(row: &TextRow) -> Result<Self, String> {
        let text = |name: &str| -> Result<String, String> {
            if row.has(name) {
                Ok(row.get(name).unwrap_or_default().to_owned())
            } else {
                Err(format!("no column {name}"))
            }
        };
        let number = |name: &str| -> Result<u64, String> {
            let v = text(name)?;
            v.trim()
                .parse()
                .map_err(|_| format!("{name} is not a number: {v:?}"))
        };
        Ok(SlaveStatus {
            read: BinlogPosition {
                file: text("Master_Log_File")?,
                position: number("Read_Master_Log_Pos")?,
            },
            executed: BinlogPosition {
                file: text("Relay_Master_Log_File")?,
                position: number("Exec_Master_Log_Pos")?,
            },
            io_running: text("Slave_IO_Running")?,
            sql_running: text("Slave_SQL_Running")?,
            seconds_behind_master: row
                .get("Seconds_Behind_Master")
                .and_then(|v| v.trim().parse().ok()),
            gtid_io_pos: text("Gtid_IO_Pos").unwrap_or_default(),
            last_io_error: text("Last_IO_Error").unwrap_or_default(),
            last_sql_error: text("Last_SQL_Error").unwrap_or_default(),
        })
    }

    /// The SQL thread applied everything the IO thread received, by
    /// binary log coordinates.
    fn executed_all_read(&self) -> bool {
        self.read == self.executed
    }

    /// Neither thread runs (`No`; `Connecting` and `Preparing` are
    /// running IO threads).
    pub(super) fn both_stopped(&self) -> bool {
        self.io_running == "No" && self.sql_running == "No"
    }

    /// Both threads exist: the SQL thread runs and the IO thread is not
    /// `No` (it may still be connecting).
    pub(super) fn both_started(&self) -> bool {
        self.io_running != "No" && self.sql_running == "Yes"
    }

    /// The IO thread is connected and the SQL thread runs.
    pub(super) fn replicating(&self) -> bool {
        self.io_running == "Yes" && self.sql_running == "Yes"
    }

    /// A thread stopped with an error: waiting cannot help.
    pub(super) fn broken(&self) -> bool {
        (self.io_running == "No" && !self.last_io_error.is_empty())
            || (self.sql_running == "No" && !self.last_sql_error.is_empty())
    }

    /// Thread states and errors, for an error message.
    pub(super) fn describe(&self) -> String {
        let mut s = format!(
            "Slave_IO_Running {}, Slave_SQL_Running {}",
            self.io_running, self.sql_running
        );
        if !self.last_io_error.is_empty() {
            s.push_str(&format!(", Last_IO_Error {:?}", self.last_io_error));
        }
        if !self.last_sql_error.is_empty() {
            s.push_str(&format!(", Last_SQL_Error {:?}", self.last_sql_error));
        }
        s
    }
}

/// Parses a MariaDB GTID position (`domain-server-seq,...`) into the
/// sequence number of each domain. `None` when it is not one.
pub(super) fn gtid_domains(pos: &str) -> Option<BTreeMap<u32, u64>> {
    let mut out = BTreeMap::new();
    for gtid in pos.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        let mut parts = gtid.split('-');
        let domain = parts.next()?.parse().ok()?;
        let _server: u32 = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        out.insert(domain, seq);
    }
    Some(out)
}

/// Whether `applied` (`gtid_slave_pos`) has, in every domain of
/// `received` (`Gtid_IO_Pos`), a sequence number at least as high. (The
/// full comparison, with server ids and errant transactions, is the
/// core's; this is the survivor's own check of its two positions.)
pub(super) fn gtid_covers(applied: &str, received: &str) -> bool {
    match (gtid_domains(applied), gtid_domains(received)) {
        (Some(applied), Some(received)) => received
            .iter()
            .all(|(domain, seq)| applied.get(domain).is_some_and(|a| a >= seq)),
        _ => false,
    }
}

impl MariaSite {
    /// `SHOW SLAVE STATUS` of the default connection; `None` when no
    /// replication is configured.
    pub(super) async fn slave_status(
        &self,
        conn: &mut MySqlConnection,
    ) -> Result<Option<SlaveStatus>, MariaError> {
        let rows = self.rows(conn, sql::SLAVE_STATUS).await?;
        match rows.first() {
            None => Ok(None),
            Some(row) => SlaveStatus::from_row(row)
                .map(Some)
                .map_err(|detail| self.unexpected(sql::SLAVE_STATUS, detail)),
        }
    }

    /// `palisade.epoch`'s epoch; `None` while the table (or its row) does
    /// not exist: never promoted by palisade.
    async fn recorded_epoch(&self, conn: &mut MySqlConnection) -> Result<Option<u64>, MariaError> {
        let exists = self.required(conn, sql::EPOCH_TABLE_EXISTS).await?;
        if exists.trim() == "0" {
            return Ok(None);
        }
        self.epoch_value(conn, sql::RECORDED_EPOCH).await
    }

    async fn epoch_value(
        &self,
        conn: &mut MySqlConnection,
        sql: &'static str,
    ) -> Result<Option<u64>, MariaError> {
        match self.scalar(conn, sql).await? {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| self.unexpected(sql, v)),
        }
    }

    /// See [`MariaSite::promote`].
    pub(super) async fn promote_inner(
        &self,
        epoch: u64,
        request: &PromotionRequest,
    ) -> Result<PromoteOutcome, MariaError> {
        let started = Instant::now();
        let mut conn = self.connect().await?;
        let result = self.promote_on(&mut conn, epoch, request, started).await;
        self.close(conn).await;
        result
    }

    async fn promote_on(
        &self,
        conn: &mut MySqlConnection,
        epoch: u64,
        request: &PromotionRequest,
        started: Instant,
    ) -> Result<PromoteOutcome, MariaError> {
        // Refuse before changing anything if a newer failover has already
        // recorded its epoch here (on this server, or on the other master
        // and replicated): this call is a stale retry.
        let recorded = self.recorded_epoch(conn).await?;
        if let Some(recorded) = recorded.filter(|r| *r > epoch) {
            return Err(MariaError::StaleEpoch {
                server: self.server(),
                epoch,
                recorded,
            });
        }
        let was_read_only = self.read_only(conn).await?;
        let already_writer = !was_read_only && recorded == Some(epoch);

        let status = self.slave_status(conn).await?;
        if let (Some(max), Some(seconds)) = (
            request.max_lag_seconds,
            status.as_ref().and_then(|s| s.seconds_behind_master),
        ) {
            if seconds > max && !already_writer {
                return Err(MariaError::Lagging {
                    server: self.server(),
                    seconds,
                    max,
                });
            }
        }

        // A stopped SQL thread would make the catch-up wait for nothing:
        // started when it stopped cleanly (by hand); refused at once when
        // it stopped on an error, which a retry cannot clear.
        let status = match status {
            Some(st) if !already_writer && st.sql_running == "No" => {
                if !st.last_sql_error.is_empty() {
                    return Err(MariaError::ReplicationBroken {
                        server: self.server(),
                        detail: format!(
                            "the SQL thread stopped on an error and cannot execute what the survivor received: {}",
                            st.describe()
                        ),
                    });
                }
                self.exec(conn, sql::START_SLAVE_SQL_THREAD).await?;
                info!("the SQL thread was stopped: started it, to execute what was received");
                self.slave_status(conn).await?
            }
            other => other,
        };
        let catch_up_started = Instant::now();
        let status = if already_writer {
            // An earlier attempt of this step proved the catch-up and made
            // us the writer; what we replicate now is the fenced old
            // writer's replication of our own writes.
            status
        } else {
            self.wait_caught_up(conn, status, request).await?
        };
        let caught_up_in = catch_up_started.elapsed();
        let gtid_slave_pos = self.required(conn, sql::GTID_SLAVE_POS).await?;

        let turned_off = was_read_only;
        if was_read_only {
            self.exec(conn, sql::SET_READ_ONLY_OFF).await?;
        }
        if let Err(e) = self.record_epoch(conn, epoch).await {
            if turned_off && matches!(e, MariaError::StaleEpoch { .. }) {
                // A newer promotion recorded its epoch between our check
                // and our write: we must not stay the writer for it.
                if let Err(restore) = self.exec(conn, sql::SET_READ_ONLY_ON).await {
                    warn!(error = %restore, "could not turn read_only back on after a stale promotion");
                }
            }
            return Err(e);
        }
        let gtid_binlog_pos = self.required(conn, sql::GTID_BINLOG_POS).await?;
        // Only now, with the survivor the writer: from here on nothing of
        // the old writer may reach it unchecked (errant transactions of a
        // returning old writer; see `PromotionRequest::stop_replication`).
        // A failure leaves us the writer; the retry finds
        // `already_writer` and stops it then.
        let replication_stopped = if request.stop_replication {
            let changed = self.stop_replication_on(conn).await?;
            info!(changed, "replication from the old writer stopped");
            true
        } else {
            false
        };
        let outcome = PromoteOutcome {
            already_writer,
            read: status.as_ref().map(|s| s.read.clone()),
            executed: status.as_ref().map(|s| s.executed.clone()),
            gtid_io_pos: status.as_ref().map(|s| s.gtid_io_pos.clone()),
            seconds_behind_master: status.as_ref().and_then(|s| s.seconds_behind_master),
            gtid_slave_pos,
            gtid_binlog_pos,
            caught_up_in,
            replication_stopped,
            elapsed: started.elapsed(),
        };
        info!(?outcome, "promoted: read_only OFF and epoch recorded");
        Ok(outcome)
    }

    /// Waits (up to `timeout`) until the SQL thread executed everything
    /// the IO thread received and, on a planned handover, the IO thread
    /// received the old writer's final position. Returns the last status.
    async fn wait_caught_up(
        &self,
        conn: &mut MySqlConnection,
        mut status: Option<SlaveStatus>,
        request: &PromotionRequest,
    ) -> Result<Option<SlaveStatus>, MariaError> {
        let wanted = request.old_writer_final.as_ref();
        let deadline = Instant::now() + self.timeout;
        loop {
            let Some(st) = &status else {
                if wanted.is_some() {
                    return Err(MariaError::NotReplicating {
                        server: self.server(),
                        why: "the old writer's final position cannot have been received",
                    });
                }
                // A lone server: nothing received, nothing to apply.
                return Ok(None);
            };
            let mut waiting_for = Vec::new();
            if !st.executed_all_read() {
                waiting_for.push("the SQL thread to execute what the IO thread read".to_owned());
            }
            if !st.gtid_io_pos.trim().is_empty() {
                let applied = self.required(conn, sql::GTID_SLAVE_POS).await?;
                if !gtid_covers(&applied, &st.gtid_io_pos) {
                    waiting_for.push(format!(
                        "gtid_slave_pos {applied:?} to cover Gtid_IO_Pos {:?}",
                        st.gtid_io_pos
                    ));
                }
            }
            if let Some(w) = wanted {
                if !st.read.reached(w) {
                    waiting_for.push(format!("the IO thread to read up to {w}"));
                }
            }
            if waiting_for.is_empty() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(MariaError::NotCaughtUp(Box::new(NotCaughtUp {
                    server: self.server(),
                    read: st.read.clone(),
                    executed: st.executed.clone(),
                    wanted: wanted.cloned(),
                    timeout: self.timeout,
                    last: format!("waiting for {}; {}", waiting_for.join(", "), st.describe()),
                })));
            }
            tokio::time::sleep(POLL).await;
            status = self.slave_status(conn).await?;
        }
    }

    /// The test write: creates `palisade.epoch` if needed and records
    /// `epoch` in it, in a transaction that refuses a lower epoch than the
    /// one recorded.
    async fn record_epoch(&self, conn: &mut MySqlConnection, epoch: u64) -> Result<(), MariaError> {
        self.exec(conn, sql::CREATE_EPOCH_DATABASE).await?;
        self.exec(conn, sql::CREATE_EPOCH_TABLE).await?;
        let mut tx = self
            .bounded("a statement's answer", "BEGIN (test write)", conn.begin())
            .await?;
        if let Some(recorded) = self
            .epoch_value(&mut tx, sql::RECORDED_EPOCH_FOR_UPDATE)
            .await?
            .filter(|r| *r > epoch)
        {
            // Rolled back when `tx` drops.
            return Err(MariaError::StaleEpoch {
                server: self.server(),
                epoch,
                recorded,
            });
        }
        self.exec(&mut tx, &sql::upsert_epoch(epoch)).await?;
        self.bounded("a statement's answer", "COMMIT (test write)", tx.commit())
            .await
    }

    /// See [`MariaSite::final_position`].
    pub(super) async fn final_position_inner(&self) -> Result<FinalPosition, MariaError> {
        let mut conn = self.connect().await?;
        let result = async {
            if !self.read_only(&mut conn).await? {
                return Err(MariaError::NotFenced {
                    server: self.server(),
                });
            }
            let rows = self.rows(&mut conn, sql::MASTER_STATUS).await?;
            let row = rows
                .first()
                .ok_or_else(|| self.unexpected(sql::MASTER_STATUS, "no row: log_bin is off"))?;
            let file = row
                .get("File")
                .filter(|f| !f.is_empty())
                .ok_or_else(|| self.unexpected(sql::MASTER_STATUS, format!("{row:?}")))?
                .to_owned();
            let position = row
                .get("Position")
                .and_then(|p| p.trim().parse().ok())
                .ok_or_else(|| self.unexpected(sql::MASTER_STATUS, format!("{row:?}")))?;
            let gtid_binlog_pos = self.required(&mut conn, sql::GTID_BINLOG_POS).await?;
            Ok(FinalPosition {
                binlog: BinlogPosition { file, position },
                gtid_binlog_pos,
            })
        }
        .await;
        self.close(conn).await;
        result
    }

    /// See [`MariaSite::set_semi_sync`].
    pub(super) async fn set_semi_sync_inner(
        &self,
        enabled: bool,
        timeout_ms: u64,
    ) -> Result<bool, MariaError> {
        let mut conn = self.connect().await?;
        let result = async {
            let (was_enabled, was_timeout) = self.semi_sync(&mut conn).await?;
            let mut changed = false;
            if was_timeout != timeout_ms {
                let set = format!("{}{timeout_ms}", sql::SET_SEMI_SYNC_TIMEOUT);
                self.exec(&mut conn, &set).await?;
                changed = true;
            }
            if was_enabled != enabled {
                let value = if enabled { "ON" } else { "OFF" };
                let set = format!("{}{value}", sql::SET_SEMI_SYNC_ENABLED);
                self.exec(&mut conn, &set).await?;
                changed = true;
            }
            let now = self.semi_sync(&mut conn).await?;
            if now != (enabled, timeout_ms) {
                return Err(self.unexpected(
                    sql::SEMI_SYNC,
                    format!("after setting ({enabled}, {timeout_ms} ms) it reads {now:?}"),
                ));
            }
            Ok(changed)
        }
        .await;
        self.close(conn).await;
        result
    }

    /// `(rpl_semi_sync_master_enabled, rpl_semi_sync_master_timeout)`.
    async fn semi_sync(&self, conn: &mut MySqlConnection) -> Result<(bool, u64), MariaError> {
        let rows = self.rows(conn, sql::SEMI_SYNC).await?;
        let row = rows.first();
        let enabled = row.and_then(|r| r.at(0)).and_then(parse_bool);
        let timeout = row
            .and_then(|r| r.at(1))
            .and_then(|t| t.trim().parse().ok());
        match (enabled, timeout) {
            (Some(e), Some(t)) => Ok((e, t)),
            _ => Err(self.unexpected(sql::SEMI_SYNC, format!("{row:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gtid_positions() {
        let d = gtid_domains("0-1-100,1-2-7").unwrap();
        assert_eq!(d.get(&0), Some(&100));
        assert_eq!(d.get(&1), Some(&7));
        assert_eq!(gtid_domains("").unwrap().len(), 0);
        assert_eq!(gtid_domains("0-1"), None);
        assert_eq!(gtid_domains("x-1-2"), None);
    }

    #[test]
    fn applied_covers_received_per_domain() {
        assert!(gtid_covers("0-1-100", "0-1-100"));
        assert!(gtid_covers("0-1-101,1-2-3", "0-1-100"));
        assert!(!gtid_covers("0-1-99", "0-1-100"));
        assert!(!gtid_covers("1-2-500", "0-1-1"));
        assert!(gtid_covers("0-2-5", ""));
        assert!(!gtid_covers("garbage", "0-1-1"));
    }

    #[test]
    fn reads_a_slave_status_row() {
        let status = |read: u64, exec: u64| SlaveStatus {
            read: BinlogPosition {
                file: "bin.000002".into(),
                position: read,
            },
            executed: BinlogPosition {
                file: "bin.000002".into(),
                position: exec,
            },
            io_running: "Yes".into(),
            sql_running: "Yes".into(),
            seconds_behind_master: Some(0),
            gtid_io_pos: String::new(),
            last_io_error: String::new(),
            last_sql_error: String::new(),
        };
        assert!(status(500, 500).executed_all_read());
        assert!(!status(500, 400).executed_all_read());
        assert!(status(500, 400)
            .describe()
            .contains("Slave_SQL_Running Yes"));
    }
}
