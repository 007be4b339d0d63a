//! Switching this server's replication from the other master off and on
//! (`STOP SLAVE` / `START SLAVE`, never `CHANGE MASTER`), and waiting
//! until it runs.

use std::time::Instant;

use sqlx::mysql::MySqlConnection;

use super::error::MariaError;
use super::promote::SlaveStatus;
use super::sql;
use super::{MariaSite, POLL};

impl MariaSite {
    /// See [`MariaSite::stop_replication`].
    pub(super) async fn stop_replication_on(
        &self,
        conn: &mut MySqlConnection,
    ) -> Result<bool, MariaError> {
        let Some(status) = self.slave_status(conn).await? else {
            // Nothing replicates: nothing to stop.
            return Ok(false);
        };
        if status.both_stopped() {
            return Ok(false);
        }
        self.exec(conn, sql::STOP_SLAVE).await?;
        // STOP SLAVE returns once both threads have stopped; read it back.
        match self.slave_status(conn).await? {
            Some(after) if !after.both_stopped() => {
                Err(self.unexpected(sql::STOP_SLAVE, format!("after it, {}", after.describe())))
            }
            _ => Ok(true),
        }
    }

    /// See [`MariaSite::start_replication`].
    pub(super) async fn start_replication_on(
        &self,
        conn: &mut MySqlConnection,
    ) -> Result<bool, MariaError> {
        let status = self
            .slave_status(conn)
            .await?
            .ok_or_else(|| self.not_replicating())?;
        if status.both_started() {
            return Ok(false);
        }
        self.exec(conn, sql::START_SLAVE).await?;
        Ok(true)
    }

    /// Waits (up to `timeout`) until the IO thread is connected (`Yes`)
    /// and the SQL thread runs. Fails at once with
    /// [`MariaError::ReplicationBroken`] when a thread stopped with an
    /// error, and with a retryable [`MariaError::Timeout`] when the IO
    /// thread is still connecting at the deadline (the other master is
    /// down or unreachable).
    pub(super) async fn wait_replicating(
        &self,
        conn: &mut MySqlConnection,
    ) -> Result<SlaveStatus, MariaError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let status = self
                .slave_status(conn)
                .await?
                .ok_or_else(|| self.not_replicating())?;
            if status.replicating() {
                return Ok(status);
            }
            if status.broken() {
                return Err(MariaError::ReplicationBroken {
                    server: self.server(),
                    detail: status.describe(),
                });
            }
            if Instant::now() >= deadline {
                return Err(MariaError::Timeout {
                    server: self.server(),
                    what: "replication running (Slave_IO_Running Yes, Slave_SQL_Running Yes)",
                    timeout: self.timeout,
                    last: status.describe(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn not_replicating(&self) -> MariaError {
        MariaError::NotReplicating {
            server: self.server(),
            why: "there is no replication to start (palisade never runs CHANGE MASTER)",
        }
    }
}
