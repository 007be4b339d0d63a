//! palisade's pure core.
//!
//! Everything here is deterministic: no sockets, no clocks, no tokio. Time is
//! passed in by the caller. The Raft layer (`palisade-raft`) stores and
//! replicates [`Command`]s and applies them to a [`ClusterState`] with
//! [`ClusterState::apply`]; the daemon turns the results into effects.

pub mod command;
pub mod detector;
pub mod events;
pub mod executor;
pub mod failover;
pub mod health;
pub mod hung;
pub mod lease;
pub mod lease_guard;
pub mod master_master;
pub mod membership;
pub mod observe;
pub mod operation;
pub mod secret;
pub mod site_agent;
pub mod state;
pub mod store_restore;
pub mod sync_degrade;
pub mod topology;

pub use command::{Command, CommandError, CommandResult};
pub use failover::{
    Check, Evidence, Failover, Kind, Outcome, Step, StepRecord, Trigger, WitnessVote,
};
pub use secret::{ConnString, Secret, SecretSource};
pub use state::requests::{RequestLog, RequestRecord};
pub use state::{
    ClusterState, DbRoles, DesiredRole, DrillPhase, DrillRecord, JournalEntry, Maintenance,
    MaintenanceEvent, RejoinRecord,
};
pub use topology::{NodeId, SiteId, Topology, TopologyError, Witness};
