//! palisade's Raft layer.
//!
//! * [`TypeConfig`]: openraft's type config: log entries carry
//!   [`palisade_core::Command`], nodes are [`palisade_core::Witness`].
//! * [`store`]: the durable log and state machine on one redb file, fsynced
//!   before anything is acknowledged; passes openraft's storage suite.
//! * [`network`]: the peer RPC client (tonic, one reused channel per peer).
//! * [`server`]: the peer RPC service, and this node's status report.
//! * [`election`]: elections with a pre-vote, which openraft 0.9 lacks.
//! * [`members`]: the membership of the log, which every peer call follows.
//! * [`transport`]: mutual TLS (or, configured so, plaintext) for every
//!   port and every client of one.

pub mod election;
pub mod members;
pub mod network;
pub mod server;
pub mod store;
pub mod transport;
mod types;

pub use types::{Raft, TypeConfig};

/// Milliseconds since the Unix epoch by the wall clock, for proposals that
/// record when something happened. Apply never reads the clock.
pub fn unix_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
