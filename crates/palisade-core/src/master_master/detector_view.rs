//! A master-master observation as the failure detector reads one: the
//! detector, the operation checks and the health endpoints were written
//! for a primary and a standby, and a MariaDB pair maps onto them.
//!
//! * "in recovery" is `read_only`: the master that is not the writer;
//! * the WAL position is a binary log position: the file's number in the
//!   high 32 bits and the offset in the low ones, in the **writer's**
//!   binary log. The writer's own `SHOW MASTER STATUS` is its current
//!   position; the other master's read and executed coordinates (which
//!   name the writer's files) are its received and replayed positions, so
//!   the lag in "bytes" is exact within one file and larger than the truth
//!   across a rotation (a failover guard errs on the safe side);
//! * with the SQL thread stopped, the received position is the executed
//!   one: a backlog nothing applies is lag (a survivor refused by
//!   `max_lag_bytes`, not promoted into a wait for a thread that does not
//!   run);
//! * "streaming" is the IO thread running. MariaDB gives no age of the
//!   last event received (a frozen master keeps the IO thread `Yes` until
//!   `slave_net_timeout`), so the view carries none, and the standby's
//!   streaming never vetoes the detector for a MariaDB pair.

use crate::observe::{PgObservation, WalReceiverInfo};

use super::MariaObservation;

/// `mysql-bin.000042`, 1234 → 42 << 32 | 1234; `None` when the name has no
/// numeric extension or a part does not fit.
pub fn binlog_position(file: &str, pos: u64) -> Option<u64> {
    let (_, number) = file.rsplit_once('.')?;
    let n: u64 = number.parse().ok()?;
    (n <= u64::from(u32::MAX) && pos <= u64::from(u32::MAX)).then_some((n << 32) | pos)
}

/// A position of [`binlog_position`] as an operator reads it: the binary
/// log file's number and the offset, `000042:1234` (the file is
/// `<log-bin base>.000042`).
pub fn format_binlog_position(position: u64) -> String {
    format!("{:06}:{}", position >> 32, position & u64::from(u32::MAX))
}

impl MariaObservation {
    /// This observation as the detector reads a database's.
    pub fn detector_view(&self) -> PgObservation {
        let mut v = PgObservation::down(
            crate::observe::ErrorClass::Other,
            String::new(),
            self.latency_ms,
        );
        v.reachability = self.reachability.clone();
        if !self.reachability.is_up() {
            return v;
        }
        v.in_recovery = self.read_only;
        v.current_lsn = match (&self.binlog_file, self.binlog_position) {
            (Some(f), Some(p)) if self.read_only == Some(false) => binlog_position(f, p),
            _ => None,
        };
        if let Some(r) = &self.replica {
            if self.read_only == Some(true) {
                v.replay_lsn = binlog_position(&r.relay_master_log_file, r.exec_master_log_pos);
                // With its SQL thread stopped, what it received and has not
                // executed is no use to a promotion (which must execute it
                // first, and nothing would): it counts as not received, so
                // the `max_lag` guard sees the backlog.
                v.receive_lsn = if r.sql_running {
                    binlog_position(&r.master_log_file, r.read_master_log_pos)
                } else {
                    v.replay_lsn
                };
                v.replay_lag_seconds = r.seconds_behind_master.map(|s| s as f64);
                v.wal_receiver = Some(WalReceiverInfo {
                    status: if r.io_streaming() {
                        "streaming".to_owned()
                    } else {
                        r.io_running.to_lowercase()
                    },
                    sender_host: Some(r.master_host.clone()),
                    sender_port: Some(r.master_port),
                    flushed_lsn: v.receive_lsn,
                    last_msg_age_ms: None,
                });
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master_master::ReplicaThreads;
    use crate::observe::{ErrorClass, Reachability};

    fn replica(io: &str, read: (&str, u64), exec: (&str, u64)) -> ReplicaThreads {
        ReplicaThreads {
            master_host: "10.0.1.10".into(),
            master_port: 3306,
            master_server_id: Some(1),
            io_running: io.into(),
            sql_running: true,
            seconds_behind_master: Some(2),
            master_log_file: read.0.into(),
            read_master_log_pos: read.1,
            relay_master_log_file: exec.0.into(),
            exec_master_log_pos: exec.1,
            using_gtid: "No".into(),
            gtid_io_pos: String::new(),
            last_io_error: String::new(),
            last_sql_error: String::new(),
        }
    }

    fn up(read_only: bool) -> MariaObservation {
        let mut o = MariaObservation::down(ErrorClass::Other, "", 4);
        o.reachability = Reachability::Up;
        o.read_only = Some(read_only);
        o.binlog_file = Some("mysql-bin.000003".into());
        o.binlog_position = Some(900);
        o
    }

    #[test]
    fn a_binlog_position_reads_as_file_number_and_offset() {
        let p = binlog_position("mysql-bin.000003", 13232).expect("fits");
        assert_eq!(format_binlog_position(p), "000003:13232");
    }

    #[test]
    fn binlog_positions_order_by_file_then_offset() {
        assert_eq!(binlog_position("mysql-bin.000001", 4), Some((1 << 32) | 4));
        assert!(
            binlog_position("mysql-bin.000002", 4) > binlog_position("mysql-bin.000001", 1 << 30)
        );
        assert_eq!(binlog_position("mysql-bin", 4), None);
        assert_eq!(binlog_position("mysql-bin.x", 4), None);
        assert_eq!(binlog_position("mysql-bin.000001", 1 << 33), None);
    }

    #[test]
    fn the_writer_is_a_primary_at_its_own_binlog_position() {
        let v = up(false).detector_view();
        assert!(v.is_writable_primary());
        assert_eq!(v.current_lsn, binlog_position("mysql-bin.000003", 900));
        assert_eq!(v.wal_receiver, None);
    }

    #[test]
    fn the_read_only_master_is_a_standby_at_the_writers_coordinates() {
        let mut o = up(true);
        o.replica = Some(replica(
            "Yes",
            ("mysql-bin.000007", 500),
            ("mysql-bin.000007", 400),
        ));
        let v = o.detector_view();
        assert_eq!(v.in_recovery, Some(true));
        assert_eq!(v.current_lsn, None, "its own binlog is not the writer's");
        assert_eq!(v.receive_lsn, binlog_position("mysql-bin.000007", 500));
        assert_eq!(v.replay_lsn, binlog_position("mysql-bin.000007", 400));
        assert_eq!(v.replay_lag_seconds, Some(2.0));
        assert!(v.is_streaming());
        // No age of the last event: streaming never vetoes the detector.
        assert_eq!(v.wal_receiver.and_then(|w| w.last_msg_age_ms), None);

        o.replica = Some(replica(
            "Connecting",
            ("mysql-bin.000007", 500),
            ("mysql-bin.000007", 500),
        ));
        assert!(!o.detector_view().is_streaming());
    }

    #[test]
    fn a_backlog_that_no_sql_thread_applies_is_lag() {
        let mut o = up(true);
        let mut r = replica("Yes", ("mysql-bin.000007", 4404), ("mysql-bin.000007", 633));
        r.sql_running = false;
        r.seconds_behind_master = None;
        o.replica = Some(r);
        let v = o.detector_view();
        assert_eq!(v.receive_lsn, binlog_position("mysql-bin.000007", 633));
        assert_eq!(v.replay_lsn, v.receive_lsn);
        assert!(v.is_streaming(), "its IO thread still receives");
    }

    #[test]
    fn an_unreachable_server_is_down_with_nothing_else() {
        let o = MariaObservation::down(ErrorClass::Refused, "refused", 3);
        let v = o.detector_view();
        assert!(!v.reachability.is_up());
        assert_eq!(
            (v.in_recovery, v.current_lsn, v.latency_ms),
            (None, None, 3)
        );
    }
}
