//! MySQL-family master-master pairs (the HA/DR guide's "Setting Up
//! Replication for MySQL Databases"): two MariaDB servers that replicate
//! each other, of which the cluster's intent names one the writer.
//!
//! Pure decisions only, over what a witness's probe saw
//! ([`MariaObservation`]):
//!
//! * [`gtid`]: MariaDB GTID positions, whether one position covers
//!   another, and the transactions an old writer committed past the point
//!   where the survivor took over (errant transactions);
//! * [`pair`]: whether two servers really are the guide's master-master
//!   pair (each replicates from the other, distinct `server_id`s,
//!   `auto_increment` settings that keep keys from colliding);
//! * [`detector_view`]: an observation as the failure detector reads a
//!   database's (read-only is "in recovery", binary log coordinates are
//!   positions, the IO thread is "streaming");
//! * [`promotion`]: whether a survivor has applied everything it received
//!   (or everything an old writer wrote, on a planned handover) and may
//!   become writable, with the evidence the failover step records.
//!
//! The SQL that fills a [`MariaObservation`] lives in `palisade-probe`
//! (`mariadb`), with the statements that differ in MySQL 8.

pub mod detector_view;
pub mod gtid;
pub mod pair;
pub mod promotion;

use serde::{Deserialize, Serialize};

use crate::observe::{ErrorClass, Reachability};

/// A witness's probe of one MariaDB server of a master-master pair.
///
/// As with PostgreSQL, a field the probe could not read is `None`
/// ("unknown"), never a guess.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MariaObservation {
    /// Whether the server answered.
    pub reachability: Reachability,
    /// `@@read_only`: the server refuses writes from ordinary users. A
    /// fenced master and every master but the writer have it on.
    pub read_only: Option<bool>,
    /// `@@super_read_only` on servers that have it (MySQL 8): also refuses
    /// writes from `SUPER` users. `None` on MariaDB, which has no such
    /// variable (there, `READ_ONLY ADMIN` bypasses `read_only`).
    pub super_read_only: Option<bool>,
    /// `@@server_id`: must differ between the two masters.
    pub server_id: Option<u32>,
    /// `@@auto_increment_increment` (the guide: 2 on both).
    pub auto_increment_increment: Option<u32>,
    /// `@@auto_increment_offset` (the guide: 1 and 2).
    pub auto_increment_offset: Option<u32>,
    /// `@@gtid_binlog_pos`: the last GTID of each replication domain in
    /// this server's binary log (its own writes and, with
    /// `log_slave_updates`, what it applied from the other master).
    pub gtid_binlog_pos: Option<String>,
    /// `@@gtid_binlog_state`: the last GTID of each (domain, server) pair
    /// in its binary log: what tells an old writer's own transactions
    /// from the ones it applied ([`gtid::errant`]).
    pub gtid_binlog_state: Option<String>,
    /// `@@gtid_slave_pos`: the last GTID of each domain its replication
    /// SQL thread applied.
    pub gtid_slave_pos: Option<String>,
    /// `@@gtid_current_pos`: per domain, the later of the two above.
    pub gtid_current_pos: Option<String>,
    /// `SHOW MASTER STATUS` `File`: its current binary log.
    pub binlog_file: Option<String>,
    /// `SHOW MASTER STATUS` `Position` in [`MariaObservation::binlog_file`].
    pub binlog_position: Option<u64>,
    /// Its replication from the other master (`SHOW SLAVE STATUS`);
    /// `None` when none is configured (not a master-master pair) or the
    /// probe could not read it.
    pub replica: Option<ReplicaThreads>,
    /// Semi-synchronous replication as this server has it in force;
    /// `None` when the plugin's variables are absent or unreadable.
    pub semi_sync: Option<SemiSync>,
    /// How long the probe took, in milliseconds.
    pub latency_ms: u64,
}

impl MariaObservation {
    /// An observation of a server that did not answer.
    pub fn down(class: ErrorClass, detail: impl Into<String>, latency_ms: u64) -> Self {
        Self {
            reachability: Reachability::Down {
                class,
                detail: detail.into(),
            },
            read_only: None,
            super_read_only: None,
            server_id: None,
            auto_increment_increment: None,
            auto_increment_offset: None,
            gtid_binlog_pos: None,
            gtid_binlog_state: None,
            gtid_slave_pos: None,
            gtid_current_pos: None,
            binlog_file: None,
            binlog_position: None,
            replica: None,
            semi_sync: None,
            latency_ms,
        }
    }

    /// True when the server answered and takes writes (`read_only` off).
    pub fn is_writable(&self) -> bool {
        self.reachability.is_up() && self.read_only == Some(false)
    }
}

/// One direction of a master-master pair, as the replicating server's
/// `SHOW SLAVE STATUS` (`SHOW REPLICA STATUS` in MySQL 8) shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaThreads {
    /// `Master_Host`: the other master, as configured.
    pub master_host: String,
    /// `Master_Port`.
    pub master_port: u16,
    /// `Master_Server_Id`: the other master's `server_id`, once the IO
    /// thread has connected (`None` before: 0 in the output).
    pub master_server_id: Option<u32>,
    /// `Slave_IO_Running`: `Yes`, `No` or `Connecting`.
    pub io_running: String,
    /// `Slave_SQL_Running` is `Yes`.
    pub sql_running: bool,
    /// `Seconds_Behind_Master`; `None` (NULL) when the threads do not run.
    pub seconds_behind_master: Option<u64>,
    /// Read coordinates: `Master_Log_File` …
    pub master_log_file: String,
    /// … and `Read_Master_Log_Pos`: how far the IO thread received.
    pub read_master_log_pos: u64,
    /// Executed coordinates: `Relay_Master_Log_File` …
    pub relay_master_log_file: String,
    /// … and `Exec_Master_Log_Pos`: how far the SQL thread applied.
    pub exec_master_log_pos: u64,
    /// `Using_Gtid`: `No`, `Slave_Pos` or `Current_Pos`.
    pub using_gtid: String,
    /// `Gtid_IO_Pos`: the GTIDs the IO thread received (empty without
    /// GTID replication).
    pub gtid_io_pos: String,
    /// `Last_IO_Error` (empty when none).
    pub last_io_error: String,
    /// `Last_SQL_Error` (empty when none).
    pub last_sql_error: String,
}

impl ReplicaThreads {
    /// The IO thread is connected and receiving.
    pub fn io_streaming(&self) -> bool {
        self.io_running == "Yes"
    }

    /// The SQL thread has applied everything the IO thread received, by
    /// binary log coordinates.
    pub fn executed_all_received(&self) -> bool {
        self.relay_master_log_file == self.master_log_file
            && self.exec_master_log_pos == self.read_master_log_pos
    }
}

/// Semi-synchronous replication (`rpl_semi_sync_master_*`), as in force on
/// one server: palisade's `sync` mode for MariaDB.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SemiSync {
    /// `rpl_semi_sync_master_enabled`: commits wait for a replica's ack.
    pub master_enabled: bool,
    /// `Rpl_semi_sync_master_status`: waiting is in force right now (off
    /// after a timeout fell back to asynchronous replication).
    pub master_active: bool,
    /// `rpl_semi_sync_master_timeout`, ms: how long a commit waits for an
    /// ack before the server falls back to asynchronous replication.
    pub master_timeout_ms: u64,
    /// `rpl_semi_sync_slave_enabled`: this server acks as a replica.
    pub slave_enabled: bool,
    /// `Rpl_semi_sync_master_clients`: replicas acking right now.
    pub master_clients: u32,
}
