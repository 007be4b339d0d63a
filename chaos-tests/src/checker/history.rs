//! What the validators read: the history of one run (what clients saw,
//! the fault log, every witness's record after the world settled) and
//! what the scenario claims should have happened.

use serde_json::Value;

use crate::faults::FaultEvent;
use crate::workload::{Ack, Sample};

/// What the scenario says should happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No failover at all.
    NoFailover,
    /// Exactly one failover, a → b, completed within the RTO.
    Failover,
    /// At most one failover; if one happened it completed.
    AtMostOne,
    /// A crashed primary either restarted in place or failed over, within
    /// the RTO either way.
    RestartOrFailover,
}

/// From when rule (g) measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapFrom {
    /// The first fault of the fault log (moving the leader included: a
    /// restart of a witness is a fault too).
    FirstFault,
    /// The last `heal` of the fault log: what matters is the cluster after
    /// it (the fault itself warranted a failover).
    LastHeal,
}

/// What a scenario claims about availability: rule (g).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Availability {
    /// The longest allowed gap between two consecutive front-door
    /// acknowledgements, ms.
    pub max_gap_ms: i64,
    /// From when.
    pub from: GapFrom,
}

/// The longest stretch without a front-door acknowledgement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gap {
    /// The last acknowledgement before it (or the window's start), Unix ms.
    pub from_ms: i64,
    /// The first one after it (or the end of the run), Unix ms.
    pub to_ms: i64,
}

impl Gap {
    /// Its length, ms.
    pub fn ms(&self) -> i64 {
        self.to_ms - self.from_ms
    }
}

/// Everything the checker reads.
pub struct History {
    /// The fault log.
    pub faults: Vec<FaultEvent>,
    /// Every acknowledged write.
    pub acks: Vec<Ack>,
    /// Every sample.
    pub samples: Vec<Sample>,
    /// Each witness's `status --output json` after the world settled;
    /// `None`: it did not answer.
    pub statuses: Vec<(&'static str, Option<Value>)>,
    /// `monitorsEnabled` read from each app's file.
    pub monitors: Vec<(&'static str, Result<bool, String>)>,
    /// Ids stored on the final primary, or why they could not be read.
    pub final_ids: Result<Vec<i64>, String>,
    /// When the fault the RTO is counted from was injected.
    pub fault_at_ms: Option<i64>,
    /// What should have happened.
    pub expect: Expect,
    /// RTO bound, ms.
    pub rto_ms: i64,
    /// `sync` or `async`.
    pub replication: String,
    /// Rule (g)'s claim; `None`: no claim (a failover is an outage), the
    /// longest gap is only measured.
    pub availability: Option<Availability>,
    /// When the history was collected: the end of the last gap, Unix ms.
    pub end_ms: i64,
    /// Rule (h), for link flapping: the front door may be unavailable for
    /// at most this share of the time the links were cut. `None`: no claim.
    pub flap_share: Option<f64>,
}

impl History {
    /// The acknowledgement times (client clock) of the front-door writes
    /// after `start` up to the end of the run, sorted.
    pub(crate) fn front_door_acks_after(&self, start: i64) -> Vec<i64> {
        let mut acked: Vec<i64> = self
            .acks
            .iter()
            .filter(|a| a.via == "front-door" && a.acked_ms > start && a.acked_ms <= self.end_ms)
            .map(|a| a.acked_ms)
            .collect();
        acked.sort_unstable();
        acked
    }
}
