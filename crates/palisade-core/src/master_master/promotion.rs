//! Whether a surviving master may become the writer, with the proof the
//! promotion step records.
//!
//! A master-master survivor already runs as a master; what makes it the
//! writer is `read_only = OFF`. Before that, it must have applied
//! everything it received from the old writer (its SQL thread executed up
//! to where its IO thread read), and on a planned handover everything the
//! old writer wrote (the old writer's final binary log position, taken
//! after its fence, must have arrived and been executed). Otherwise the
//! new writer's transactions would go in ahead of older ones still in its
//! relay log, and the old writer's last acknowledged writes would be lost.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::gtid::{GtidError, GtidPos};
use super::MariaObservation;

/// A binary log position: file and offset.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Coords {
    /// The binary log file (`mysql-bin.000003`).
    pub file: String,
    /// The offset in it.
    pub pos: u64,
}

impl fmt::Display for Coords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// What the survivor must have, beyond what it received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// A planned handover: the old writer's binary log position after its
    /// fence (no write can follow it).
    pub old_writer_final: Option<Coords>,
    /// The most the survivor may lag by `Seconds_Behind_Master` when the
    /// promotion begins (the `max_lag` guard).
    pub max_lag_seconds: Option<u64>,
}

/// What may be lost by promoting now, as far as the evidence tells.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LostBound {
    /// Nothing: the old writer's final position arrived and was applied.
    Nothing,
    /// Nothing acknowledged: the survivor applied all it received, and
    /// semi-synchronous replication was in force on the old writer, so no
    /// commit was acknowledged to a client before the survivor had it.
    NothingAcknowledged,
    /// Unknown until the old writer returns (asynchronous replication:
    /// what it committed and never sent is then counted as errant).
    Unknown,
}

/// The evidence a promotion records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// How far the survivor's IO thread read from the old writer.
    pub read: Coords,
    /// How far its SQL thread executed (equal to `read`).
    pub executed: Coords,
    /// Its `gtid_current_pos`: the fork point against which the old
    /// writer's errant transactions are counted when it returns.
    pub fork: String,
    /// What may be lost.
    pub lost: LostBound,
}

impl fmt::Display for Proof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "read {} = executed {}; fork point {}; ",
            self.read,
            self.executed,
            if self.fork.is_empty() {
                "(no GTID)"
            } else {
                &self.fork
            }
        )?;
        f.write_str(match self.lost {
            LostBound::Nothing => "nothing lost: the old writer's final position was applied",
            LostBound::NothingAcknowledged => {
                "no acknowledged write lost: semi-sync was in force on the old writer"
            }
            LostBound::Unknown => {
                "asynchronous: what the old writer never sent is counted when it returns"
            }
        })
    }
}

/// What a survivor may do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// It may become the writer; record the proof.
    Ready(Proof),
    /// It is still applying or receiving: ask again after the next probe
    /// (until the step's bound runs out).
    CatchingUp(String),
    /// It must not become the writer, whatever the wait.
    Refused(Refusal),
}

/// Why a survivor must not become the writer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It did not answer the probe.
    #[error("the survivor did not answer")]
    Unreachable,
    /// It replicates from nobody: nothing proves what it has.
    #[error(
        "the survivor replicates from nobody: nothing proves it has the old writer's transactions"
    )]
    NotReplicating,
    /// Its SQL thread stopped: what it received will not be applied.
    #[error(
        "the survivor's replication SQL thread is stopped ({0}): it cannot apply what it received"
    )]
    SqlStopped(String),
    /// It lags more than the guard allows.
    #[error("the survivor lags {seconds} s behind the old writer, more than max_lag ({max} s)")]
    Lagging {
        /// `Seconds_Behind_Master`.
        seconds: u64,
        /// The guard.
        max: u64,
    },
    /// Its IO thread stopped before the old writer's final position:
    /// what is missing will not arrive.
    #[error("the survivor's IO thread stopped at {read} ({io}) before the old writer's final position {wanted}")]
    FinalPositionUnreachable {
        /// How far it read.
        read: Coords,
        /// What its IO thread says.
        io: String,
        /// The old writer's final position.
        wanted: Coords,
    },
    /// A GTID the survivor reported does not parse.
    #[error("the survivor's {field}: {source}")]
    BadGtid {
        /// `gtid_current_pos`.
        field: &'static str,
        /// The parse error.
        source: GtidError,
    },
}

/// Whether `survivor` may become the writer now, given what is `wanted`
/// and, for the loss bound, the old writer as last seen (its
/// semi-synchronous replication in force).
pub fn readiness(
    survivor: &MariaObservation,
    wanted: &Wanted,
    old_writer_last_seen: Option<&MariaObservation>,
) -> Readiness {
    if !survivor.reachability.is_up() {
        return Readiness::Refused(Refusal::Unreachable);
    }
    let Some(r) = &survivor.replica else {
        return Readiness::Refused(Refusal::NotReplicating);
    };
    if let (Some(seconds), Some(max)) = (r.seconds_behind_master, wanted.max_lag_seconds) {
        if seconds > max {
            return Readiness::Refused(Refusal::Lagging { seconds, max });
        }
    }
    let read = Coords {
        file: r.master_log_file.clone(),
        pos: r.read_master_log_pos,
    };
    let executed = Coords {
        file: r.relay_master_log_file.clone(),
        pos: r.exec_master_log_pos,
    };
    if let Some(want) = &wanted.old_writer_final {
        // Binary log names sort in order (a fixed-width number).
        if read < *want {
            if r.io_running == "No" {
                return Readiness::Refused(Refusal::FinalPositionUnreachable {
                    read,
                    io: non_empty(&r.last_io_error, "IO thread stopped"),
                    wanted: want.clone(),
                });
            }
            return Readiness::CatchingUp(format!("read {read} of the old writer's final {want}"));
        }
    }
    if !r.executed_all_received() {
        if !r.sql_running {
            return Readiness::Refused(Refusal::SqlStopped(non_empty(
                &r.last_sql_error,
                "no error given",
            )));
        }
        return Readiness::CatchingUp(format!("executed {executed} of {read} received"));
    }
    let fork = survivor.gtid_current_pos.clone().unwrap_or_default();
    if let Err(source) = GtidPos::parse(&fork) {
        return Readiness::Refused(Refusal::BadGtid {
            field: "gtid_current_pos",
            source,
        });
    }
    let semi_sync_held = old_writer_last_seen
        .and_then(|o| o.semi_sync.as_ref())
        .is_some_and(|s| s.master_enabled && s.master_active && s.master_clients > 0);
    let lost = if wanted.old_writer_final.is_some() {
        LostBound::Nothing
    } else if semi_sync_held {
        LostBound::NothingAcknowledged
    } else {
        LostBound::Unknown
    };
    Readiness::Ready(Proof {
        read,
        executed,
        fork,
        lost,
    })
}

fn non_empty(s: &str, otherwise: &str) -> String {
    if s.is_empty() {
        otherwise.to_owned()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master_master::{ReplicaThreads, SemiSync};
    use crate::observe::{ErrorClass, Reachability};
    use proptest::prelude::*;

    fn survivor(read: u64, exec: u64) -> MariaObservation {
        let mut o = MariaObservation::down(ErrorClass::Other, "", 1);
        o.reachability = Reachability::Up;
        o.read_only = Some(true);
        o.gtid_current_pos = Some("0-1-100".to_owned());
        o.replica = Some(ReplicaThreads {
            master_host: "10.0.0.1".to_owned(),
            master_port: 3306,
            master_server_id: Some(1),
            io_running: "Connecting".to_owned(),
            sql_running: true,
            seconds_behind_master: Some(0),
            master_log_file: "mysql-bin.000002".to_owned(),
            read_master_log_pos: read,
            relay_master_log_file: "mysql-bin.000002".to_owned(),
            exec_master_log_pos: exec,
            using_gtid: "No".to_owned(),
            gtid_io_pos: String::new(),
            last_io_error: String::new(),
            last_sql_error: String::new(),
        });
        o
    }

    fn coords(pos: u64) -> Coords {
        Coords {
            file: "mysql-bin.000002".to_owned(),
            pos,
        }
    }

    #[test]
    fn a_survivor_that_applied_all_it_received_is_ready_with_an_unknown_bound_in_async() {
        let Readiness::Ready(p) = readiness(&survivor(900, 900), &Wanted::default(), None) else {
            panic!("ready");
        };
        assert_eq!(p.read, coords(900));
        assert_eq!(p.executed, coords(900));
        assert_eq!(p.fork, "0-1-100");
        assert_eq!(p.lost, LostBound::Unknown);
        assert_eq!(
            p.to_string(),
            "read mysql-bin.000002:900 = executed mysql-bin.000002:900; fork point 0-1-100; asynchronous: what the old writer never sent is counted when it returns"
        );
    }

    #[test]
    fn a_survivor_still_applying_waits_and_one_whose_sql_thread_stopped_is_refused() {
        assert_eq!(
            readiness(&survivor(900, 700), &Wanted::default(), None),
            Readiness::CatchingUp(
                "executed mysql-bin.000002:700 of mysql-bin.000002:900 received".into()
            )
        );
        let mut s = survivor(900, 700);
        let r = s.replica.as_mut().expect("replica");
        r.sql_running = false;
        r.last_sql_error = "Duplicate entry '3' for key 'PRIMARY'".into();
        let Readiness::Refused(why) = readiness(&s, &Wanted::default(), None) else {
            panic!("refused");
        };
        assert!(why.to_string().contains("Duplicate entry"), "{why}");
    }

    #[test]
    fn a_handover_waits_for_the_old_writers_final_position_and_then_loses_nothing() {
        let want = Wanted {
            old_writer_final: Some(coords(1200)),
            max_lag_seconds: None,
        };
        let mut s = survivor(900, 900);
        s.replica.as_mut().expect("replica").io_running = "Yes".into();
        assert!(matches!(
            readiness(&s, &want, None),
            Readiness::CatchingUp(m) if m == "read mysql-bin.000002:900 of the old writer's final mysql-bin.000002:1200"
        ));
        let Readiness::Ready(p) = readiness(&survivor(1200, 1200), &want, None) else {
            panic!("ready");
        };
        assert_eq!(p.lost, LostBound::Nothing);
        // A later binary log counts as past it.
        let mut later = survivor(4, 4);
        for r in later.replica.iter_mut() {
            r.master_log_file = "mysql-bin.000003".into();
            r.relay_master_log_file = "mysql-bin.000003".into();
        }
        assert!(matches!(
            readiness(&later, &want, None),
            Readiness::Ready(_)
        ));
    }

    #[test]
    fn a_handover_whose_final_position_cannot_arrive_is_refused() {
        let mut s = survivor(900, 900);
        let r = s.replica.as_mut().expect("replica");
        r.io_running = "No".into();
        r.last_io_error = "error reconnecting to master".into();
        let want = Wanted {
            old_writer_final: Some(coords(1200)),
            max_lag_seconds: None,
        };
        assert_eq!(
            readiness(&s, &want, None),
            Readiness::Refused(Refusal::FinalPositionUnreachable {
                read: coords(900),
                io: "error reconnecting to master".into(),
                wanted: coords(1200),
            })
        );
    }

    #[test]
    fn the_lag_guard_refuses_with_both_numbers() {
        let mut s = survivor(900, 900);
        s.replica.as_mut().expect("replica").seconds_behind_master = Some(45);
        let want = Wanted {
            old_writer_final: None,
            max_lag_seconds: Some(30),
        };
        let Readiness::Refused(why) = readiness(&s, &want, None) else {
            panic!("refused");
        };
        assert_eq!(
            why.to_string(),
            "the survivor lags 45 s behind the old writer, more than max_lag (30 s)"
        );
    }

    #[test]
    fn semi_sync_in_force_on_the_old_writer_bounds_the_loss_to_nothing_acknowledged() {
        let mut old = survivor(0, 0);
        let mut semi = SemiSync {
            master_enabled: true,
            master_active: true,
            master_timeout_ms: 10_000,
            slave_enabled: true,
            master_clients: 1,
        };
        old.semi_sync = Some(semi.clone());
        let lost = |old: &MariaObservation| match readiness(
            &survivor(900, 900),
            &Wanted::default(),
            Some(old),
        ) {
            Readiness::Ready(p) => p.lost,
            other => panic!("{other:?}"),
        };
        assert_eq!(lost(&old), LostBound::NothingAcknowledged);
        // Fallen back to async after a timeout: no bound.
        semi.master_active = false;
        old.semi_sync = Some(semi);
        assert_eq!(lost(&old), LostBound::Unknown);
    }

    #[test]
    fn unreachable_or_not_replicating_is_refused() {
        let down = MariaObservation::down(ErrorClass::Timeout, "t", 1000);
        assert_eq!(
            readiness(&down, &Wanted::default(), None),
            Readiness::Refused(Refusal::Unreachable)
        );
        let mut s = survivor(1, 1);
        s.replica = None;
        assert_eq!(
            readiness(&s, &Wanted::default(), None),
            Readiness::Refused(Refusal::NotReplicating)
        );
    }

    proptest! {
        /// Never ready while the SQL thread is behind what was read, nor,
        /// on a handover, before the final position was read.
        #[test]
        fn ready_only_when_everything_received_and_wanted_is_executed(
            read in 0u64..2000, exec in 0u64..2000, want in proptest::option::of(0u64..2000),
            io_yes in any::<bool>(), sql in any::<bool>(),
        ) {
            let mut s = survivor(read, exec);
            let r = s.replica.as_mut().expect("replica");
            r.io_running = if io_yes { "Yes" } else { "No" }.into();
            r.sql_running = sql;
            let wanted = Wanted { old_writer_final: want.map(coords), max_lag_seconds: None };
            if let Readiness::Ready(p) = readiness(&s, &wanted, None) {
                prop_assert_eq!(read, exec);
                prop_assert_eq!(&p.read, &p.executed);
                if let Some(w) = want {
                    prop_assert!(read >= w);
                    prop_assert_eq!(p.lost, LostBound::Nothing);
                }
            }
        }
    }
}
