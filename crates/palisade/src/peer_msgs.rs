//! Payloads of the `palisade.v1.WitnessPeer` RPCs (serde_json inside
//! `RaftPayload`). Witnesses of one version talk to each other only.

use std::collections::BTreeMap;

use palisade_core::observe::PgObservation;
use palisade_core::{NodeId, SiteId};
use serde::{Deserialize, Serialize};

/// A witness's latest probes, sent to the leader every probe interval.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// The witness that probed.
    pub witness: NodeId,
    /// What it saw of each database site.
    pub dbs: BTreeMap<SiteId, PgObservation>,
    /// Its memory of where each database last wrote (see
    /// `palisade_core::detector::WitnessReport::last_writable`).
    #[serde(default)]
    pub last_writable: BTreeMap<SiteId, palisade_core::detector::LastWritable>,
}

/// What the leader asks a site agent to do, for a committed failover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum SiteAction {
    /// Make the site's database unable to take writes, and confirm.
    Fence {
        /// Epoch of the failover.
        epoch: u64,
        /// A planned handover: shut down cleanly and report the final
        /// checkpoint's LSN, instead of killing at once.
        #[serde(default)]
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
    /// Point the site's app at `hosts` (its own site's Elasticsearch), after
    /// promoting the listed cross-cluster follower indices of `ccr_url`.
    RepointSearch {
        /// Epoch of the failover.
        epoch: u64,
        /// Elasticsearch hosts to write into the app's configuration.
        hosts: String,
        /// Base URL of this site's Elasticsearch, for CCR promotion.
        ccr_url: String,
        /// Follower indices to promote (empty: none).
        indices: Vec<String>,
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
            | SiteAction::RepointSearch { epoch, .. }
            | SiteAction::ReadMonitors { epoch } => *epoch,
        }
    }
}

/// A site agent's answer: what it did, in words for the failover record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SiteActionDone {
    /// e.g. `stopped (fast) in 180 ms`, `promoted at 0/3000148 on timeline 2`.
    pub detail: String,
    /// A WAL position the action established: for a planned fence, the
    /// final checkpoint of a clean shutdown (absent when not clean).
    #[serde(default)]
    pub lsn: Option<u64>,
}

impl SiteActionDone {
    /// An answer with no WAL position.
    pub fn said(detail: String) -> Self {
        Self { detail, lsn: None }
    }
}
