//! The daemon's own types for the `palisade.v1.WitnessPeer` calls beyond
//! the lease: a witness's report to the leader, the leader's site actions,
//! and their answers. They travel as typed protobuf messages
//! (`proto/palisade/v1/peer.proto`; conversions in [`crate::peer_pb`]).
//! Witnesses of one version talk to each other only.

use std::collections::BTreeMap;
use std::time::Duration;

use palisade_core::observe::PgObservation;
use palisade_core::{NodeId, SiteId};

/// A witness's latest probes, sent to the leader every probe interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The witness that probed.
    pub witness: NodeId,
    /// What it saw of each database site.
    pub dbs: BTreeMap<SiteId, PgObservation>,
    /// Its memory of where each database last wrote (see
    /// `palisade_core::detector::WitnessReport::last_writable`).
    pub last_writable: BTreeMap<SiteId, palisade_core::detector::LastWritable>,
    /// For how long it has found each unreachable database so (see
    /// `palisade_core::detector::WitnessReport::unreachable_for`).
    pub unreachable_for: BTreeMap<SiteId, u64>,
}

/// What the leader asks a site agent to do, for a committed failover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SiteAction {
    /// Make the site's database unable to take writes, and confirm.
    Fence {
        /// Epoch of the failover.
        epoch: u64,
        /// A planned handover: shut down cleanly and report the final
        /// checkpoint's LSN, instead of killing at once.
        planned: bool,
    },
    /// Promote the site's standby.
    Promote {
        /// Epoch of the failover.
        epoch: u64,
    },
    /// Set the site app's `monitorsEnabled`, restarting the app if it changed.
    SetMonitors {
        /// Epoch of the failover.
        epoch: u64,
        /// The value to set.
        enabled: bool,
    },
    /// Point the site's app at its own site's Elasticsearch, after
    /// promoting that site's cross-cluster follower indices. The order
    /// carries no host, URL or index: the agent takes the hosts, the URL
    /// and the indices from its own `[[elasticsearch]]` of its own site,
    /// and refuses unless its site is the primary of `epoch`
    /// (`palisade_core::site_agent::may_repoint_search`).
    RepointSearch {
        /// Epoch of the failover.
        epoch: u64,
    },
    /// Read the site app's `monitorsEnabled` back from its file.
    ReadMonitors {
        /// Epoch of the check.
        epoch: u64,
    },
}

impl SiteAction {
    /// The epoch the action belongs to.
    pub fn epoch(&self) -> u64 {
        match self {
            SiteAction::Fence { epoch, .. }
            | SiteAction::Promote { epoch }
            | SiteAction::SetMonitors { epoch, .. }
            | SiteAction::RepointSearch { epoch }
            | SiteAction::ReadMonitors { epoch } => *epoch,
        }
    }
}

/// A site agent's answer: what it did, in words for the failover record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteActionDone {
    /// e.g. `stopped (fast) in 180 ms`, `promoted at 0/3000148 on timeline 2`.
    pub detail: String,
    /// A WAL position the action established: for a planned fence, the
    /// final checkpoint of a clean shutdown (absent when not clean).
    pub lsn: Option<u64>,
}

impl SiteActionDone {
    /// An answer with no WAL position.
    pub fn said(detail: String) -> Self {
        Self { detail, lsn: None }
    }
}

/// Why a site agent did not do an action: what its witness answers in the
/// `SiteActionReply` (never a gRPC status). Each reason is written to read
/// on its own in the failover record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SiteActionFailure {
    /// The agent refuses, from its applied state or its configuration (its
    /// site is the desired primary, it has no such app or database).
    /// Asking again changes nothing until that state changes.
    #[error("{0}")]
    Refused(String),
    /// The agent's witness has not applied the action's epoch yet.
    #[error("{0}")]
    NotApplied(String),
    /// The action was tried and failed.
    #[error("{0}")]
    Failed(String),
}

impl SiteActionFailure {
    /// Whether asking again can help: a lagging witness catches up, and
    /// every site action is idempotent, so a failed one may be tried again;
    /// a refusal stands until the state it rests on changes.
    pub fn is_retryable(&self) -> bool {
        match self {
            SiteActionFailure::Refused(_) => false,
            SiteActionFailure::NotApplied(_) | SiteActionFailure::Failed(_) => true,
        }
    }
}

/// Why the leader has no [`SiteActionDone`] from a site agent it asked
/// over the network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SiteActionError {
    /// The agent answered: it did not do it, and why.
    #[error("witness {witness}: {failure}")]
    Agent {
        /// The witness (and site agent) asked.
        witness: NodeId,
        /// Its answer.
        failure: SiteActionFailure,
    },
    /// No answer in time. The action may still have run (or still be
    /// running: the agent never abandons a fence half-way).
    #[error("witness {witness} did not answer within {after:?}")]
    Timeout {
        /// The witness asked.
        witness: NodeId,
        /// How long the caller waited.
        after: Duration,
    },
    /// The call did not get through (connection refused, reset, the
    /// witness shutting down).
    #[error("witness {witness} unreachable: {reason}")]
    Unreachable {
        /// The witness asked.
        witness: NodeId,
        /// The transport's words.
        reason: String,
    },
    /// The two witnesses do not understand each other: a request or reply
    /// that does not decode (different versions), or a witness that is not
    /// configured. A bug or a misconfiguration, not a passing fault.
    #[error("witness {witness}: {reason}")]
    Protocol {
        /// The witness asked.
        witness: NodeId,
        /// What did not fit.
        reason: String,
    },
}

impl SiteActionError {
    /// Whether asking again can help (see [`SiteActionFailure::is_retryable`];
    /// a timeout or a lost connection can pass; a protocol mismatch does not).
    pub fn is_retryable(&self) -> bool {
        match self {
            SiteActionError::Agent { failure, .. } => failure.is_retryable(),
            SiteActionError::Timeout { .. } | SiteActionError::Unreachable { .. } => true,
            SiteActionError::Protocol { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_and_protocol_mismatches_are_final() {
        let agent = |failure| SiteActionError::Agent {
            witness: 2,
            failure,
        };
        assert!(!agent(SiteActionFailure::Refused("refusing to fence".into())).is_retryable());
        assert!(agent(SiteActionFailure::NotApplied("epoch 4 not applied".into())).is_retryable());
        assert!(agent(SiteActionFailure::Failed("pg_ctl: timeout".into())).is_retryable());
        assert!(SiteActionError::Timeout {
            witness: 2,
            after: Duration::from_secs(1)
        }
        .is_retryable());
        assert!(SiteActionError::Unreachable {
            witness: 2,
            reason: "connection refused".into()
        }
        .is_retryable());
        assert!(!SiteActionError::Protocol {
            witness: 2,
            reason: "outcome: missing".into()
        }
        .is_retryable());
    }

    #[test]
    fn an_agent_error_names_the_witness_and_keeps_the_agents_words() {
        let e = SiteActionError::Agent {
            witness: 3,
            failure: SiteActionFailure::Refused(
                "refusing to fence: site a is the desired primary in epoch 2".into(),
            ),
        };
        assert_eq!(
            e.to_string(),
            "witness 3: refusing to fence: site a is the desired primary in epoch 2"
        );
    }
}
