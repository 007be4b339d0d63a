use std::io::Cursor;

use palisade_core::{Command, CommandResult, NodeId, Witness};

openraft::declare_raft_types!(
    /// openraft's type configuration for palisade.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = Witness,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A running Raft node of palisade.
pub type Raft = openraft::Raft<TypeConfig>;
