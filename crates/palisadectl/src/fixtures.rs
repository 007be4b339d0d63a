//! Sample replies shared by the unit tests of [`crate::json`] and
//! [`crate::table`].

use palisade_api::v1::{JournalEntry, JournalReply, NodeStatus, PeerProgress, Role, StatusReply};

/// A healthy-looking witness in term 5 that follows leader 1.
pub fn node(id: u64, site: &str, role: Role, term: u64) -> NodeStatus {
    NodeStatus {
        id,
        site: site.to_owned(),
        role: role as i32,
        term,
        leader_id: Some(1),
        last_log_index: Some(12),
        last_applied_index: Some(12),
        snapshot_index: None,
        raft_addr: format!("127.0.0.1:730{id}"),
        control_addr: format!("127.0.0.1:740{id}"),
        error: String::new(),
        replication: vec![],
        millis_since_quorum_ack: None,
        ..Default::default()
    }
}

/// Node 2 answering: leader 1, follower 2, node 3 unreachable; the leader
/// has heard from 2 and never from 3.
pub fn status() -> StatusReply {
    let mut third = node(3, "site-c", Role::Unreachable, 0);
    third.leader_id = None;
    third.last_log_index = None;
    third.last_applied_index = None;
    third.error = "connection refused".to_owned();
    StatusReply {
        node_id: 2,
        leader_id: Some(1),
        term: 5,
        cluster_name: "palisade-local".to_owned(),
        nodes: vec![
            node(1, "a", Role::Leader, 5),
            node(2, "b", Role::Follower, 5),
            third,
        ],
        replication: vec![
            PeerProgress {
                id: 2,
                matched_index: Some(12),
                lag_entries: 0,
                last_contact_ms: Some(42),
            },
            PeerProgress {
                id: 3,
                matched_index: None,
                lag_entries: 12,
                last_contact_ms: None,
            },
        ],
        ..Default::default()
    }
}

/// Two notes, the first with a newline in it.
pub fn journal() -> JournalReply {
    JournalReply {
        entries: vec![
            JournalEntry {
                log_index: 9,
                at_unix_ms: 1_700_000_000_123,
                author: "alice".to_owned(),
                text: "DR drill:\ncheckpoint taken".to_owned(),
            },
            JournalEntry {
                log_index: 14,
                at_unix_ms: 1_700_000_060_000,
                author: "bob".to_owned(),
                text: "done".to_owned(),
            },
        ],
    }
}
