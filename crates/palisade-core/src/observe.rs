//! What a witness saw when it probed a target from its own site.
//!
//! Observations are values, not errors: "unreachable" is a real answer, and
//! a field the probe could not read is `None` ("unknown"), never a guess.
//! Probes in `palisade-probe` fill these; the detector in this crate reads
//! them; witnesses send them to the leader as protobuf (`palisade.v1.Report`).

use serde::{Deserialize, Serialize};

/// Why a target did not answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Connection refused: the host answered, nothing listens (process down).
    Refused,
    /// No answer within the probe timeout (host down, partition, hung process).
    Timeout,
    /// The server answered but refused our credentials.
    Auth,
    /// The server answered but is not accepting queries (starting up,
    /// shutting down, in recovery from a crash).
    NotReady,
    /// Anything else (DNS, TLS, protocol); the detail says what.
    Other,
}

impl ErrorClass {
    /// The class as logs, status and the API write it (`not_ready`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Refused => "refused",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Auth => "auth",
            ErrorClass::NotReady => "not_ready",
            ErrorClass::Other => "other",
        }
    }
}

/// Whether a probe got through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Reachability {
    /// The target answered the probe's queries.
    Up,
    /// It did not; `class` for decisions, `detail` for humans.
    Down {
        /// The class of failure.
        class: ErrorClass,
        /// The underlying error message.
        detail: String,
    },
}

impl Reachability {
    /// True when the probe got an answer.
    pub fn is_up(&self) -> bool {
        matches!(self, Reachability::Up)
    }
}

/// One standby connected to a primary, from `pg_stat_replication`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    /// `application_name` the standby connected with.
    pub application_name: String,
    /// `client_addr`, if over TCP.
    pub client_addr: Option<String>,
    /// `state`: `streaming`, `catchup`, `startup`, `backup`, `stopping`.
    pub state: String,
    /// `sync_state`: `async`, `sync`, `quorum`, `potential`.
    pub sync_state: String,
    /// Last WAL position sent / flushed by / replayed on the standby.
    pub sent_lsn: Option<u64>,
    /// The position the standby last **acknowledged** as flushed to its
    /// disk: what a commit in `sync` mode waits for. A standby that keeps
    /// its connection but acknowledges nothing (a cut link, a hung host)
    /// shows here as a position that stops moving, long before the
    /// primary's `wal_sender_timeout` drops the connection
    /// ([`crate::sync_degrade`]). `None` before its first reply.
    pub flush_lsn: Option<u64>,
    /// See `sent_lsn`.
    pub replay_lsn: Option<u64>,
}

/// The standby's WAL receiver, from `pg_stat_wal_receiver`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalReceiverInfo {
    /// `status`: `streaming`, `starting`, `waiting`, `stopping`, ...
    pub status: String,
    /// `sender_host` / `sender_port`: which primary it streams from.
    pub sender_host: Option<String>,
    /// See `sender_host`.
    pub sender_port: Option<u16>,
    /// `flushed_lsn`: last WAL position received and flushed.
    pub flushed_lsn: Option<u64>,
    /// Milliseconds since the last message from the primary
    /// (`now() - last_msg_receipt_time`).
    pub last_msg_age_ms: Option<u64>,
}

/// A witness's probe of one PostgreSQL server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PgObservation {
    /// Whether the server answered.
    pub reachability: Reachability,
    /// `pg_is_in_recovery()`: `Some(true)` for a standby.
    pub in_recovery: Option<bool>,
    /// `pg_current_wal_lsn()` (primary only): how far the primary has
    /// written, to compare with each replica's `flush_lsn`.
    pub current_lsn: Option<u64>,
    /// `pg_last_wal_receive_lsn()` (standby only).
    pub receive_lsn: Option<u64>,
    /// `pg_last_wal_replay_lsn()` (standby only).
    pub replay_lsn: Option<u64>,
    /// Standby: seconds since the last replayed transaction's commit, or 0
    /// when it has replayed everything it received.
    pub replay_lag_seconds: Option<f64>,
    /// Standby: its WAL receiver, `None` when not running.
    pub wal_receiver: Option<WalReceiverInfo>,
    /// Primary: connected standbys.
    pub replicas: Vec<ReplicaInfo>,
    /// Primary: backends waiting right now for a synchronous standby to
    /// confirm their commit (`pg_stat_activity` rows with `wait_event =
    /// 'SyncRep'`). More than zero while the standby's `flush_lsn` stands
    /// still is the evidence that sync mode is blocking writes
    /// ([`crate::sync_degrade`]). `None` when unknown: a standby, a server
    /// that did not answer, a probe role without `pg_read_all_stats`
    /// (PostgreSQL hides other users' wait events from it, and a count of
    /// what it can see would be a false 0), or a report from a witness
    /// that predates this field.
    #[serde(default)]
    pub sync_waiters: Option<u32>,
    /// How long the probe took, in milliseconds.
    pub latency_ms: u64,
}

impl PgObservation {
    /// An observation of a server that did not answer.
    pub fn down(class: ErrorClass, detail: impl Into<String>, latency_ms: u64) -> Self {
        Self {
            reachability: Reachability::Down {
                class,
                detail: detail.into(),
            },
            in_recovery: None,
            current_lsn: None,
            receive_lsn: None,
            replay_lsn: None,
            replay_lag_seconds: None,
            wal_receiver: None,
            replicas: Vec::new(),
            sync_waiters: None,
            latency_ms,
        }
    }

    /// True when the server answered and is a writable primary.
    pub fn is_writable_primary(&self) -> bool {
        self.reachability.is_up() && self.in_recovery == Some(false)
    }

    /// True when the server answered and its WAL receiver is streaming.
    pub fn is_streaming(&self) -> bool {
        self.reachability.is_up()
            && self
                .wal_receiver
                .as_ref()
                .is_some_and(|w| w.status == "streaming")
    }
}

/// Parses a PostgreSQL LSN (`16/B374D848`) into a byte position.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    if hi > u32::MAX as u64 || lo > u32::MAX as u64 {
        return None;
    }
    Some((hi << 32) | lo)
}

/// Formats a byte position as a PostgreSQL LSN.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lsn_parse_known_values() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(parse_lsn("0/3000148"), Some(0x300_0148));
        for bad in ["", "16", "x/1", "1/2/3", "100000000/0"] {
            assert_eq!(parse_lsn(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_report_without_sync_waiters_still_parses() {
        // What a witness running the previous release sends.
        let mut old = serde_json::to_value(PgObservation::down(ErrorClass::Refused, "x", 3))
            .expect("serializes");
        old.as_object_mut()
            .expect("an object")
            .remove("sync_waiters")
            .expect("the field is written");
        let parsed: PgObservation = serde_json::from_value(old).expect("parses");
        assert_eq!(parsed.sync_waiters, None);
        assert_eq!(parsed.latency_ms, 3);
    }

    proptest! {
        #[test]
        fn lsn_round_trips(lsn in any::<u64>()) {
            prop_assert_eq!(parse_lsn(&format_lsn(lsn)), Some(lsn));
        }
    }
}
