//! `--output json`: palisadectl's stable output schema.
//!
//! These types are kept apart from the prost types on purpose, so that a
//! change to the `.proto` cannot silently change what scripts parse. Fields
//! are only ever added; `docs/palisadectl.md` documents every one.

use palisade_api::v1::{AnnotateReply, JournalReply, NodeStatus, PeerProgress, Role, StatusReply};
use serde::Serialize;

/// `status --output json`: the cluster as the answering witness sees it.
#[derive(Debug, Serialize)]
pub struct StatusJson {
    /// The witness that answered.
    pub node_id: u64,
    /// The leader the answering witness knows; `null` when it knows none.
    pub leader_id: Option<u64>,
    /// The answering witness's current Raft term.
    pub term: u64,
    /// The configured cluster name.
    pub cluster_name: String,
    /// Every configured witness, in id order.
    pub nodes: Vec<NodeJson>,
    /// The leader's view of each follower; empty when the answer did not
    /// include it (no leader, or the leader could not be asked).
    pub replication: Vec<PeerJson>,
}

/// One witness in [`StatusJson::nodes`].
#[derive(Debug, Serialize)]
pub struct NodeJson {
    /// Witness id.
    pub id: u64,
    /// Site the witness runs in.
    pub site: String,
    /// Lowercase role; `unreachable` when the answering witness could not
    /// ask it, `unknown` when the server sent no or an unrecognised role.
    pub role: &'static str,
    /// The witness's current term (0 when unreachable).
    pub term: u64,
    /// The leader this witness knows; `null` when none.
    pub leader_id: Option<u64>,
    /// Last log index; `null` when the log is empty or unknown.
    pub last_log_index: Option<u64>,
    /// Last applied index; `null` when nothing is applied or unknown.
    pub last_applied_index: Option<u64>,
    /// Last snapshot index; `null` when there is no snapshot or unknown.
    pub snapshot_index: Option<u64>,
    /// Address of the witness-to-witness Raft service.
    pub raft_addr: String,
    /// Address of the public control service.
    pub control_addr: String,
    /// Why the witness is unreachable; `null` otherwise.
    pub error: Option<String>,
}

/// One follower in [`StatusJson::replication`].
#[derive(Debug, Serialize)]
pub struct PeerJson {
    /// Follower witness id.
    pub id: u64,
    /// Highest log index known replicated on it; `null` if none yet.
    pub matched_index: Option<u64>,
    /// Entries it is behind the leader's last log index.
    pub lag_entries: u64,
    /// Milliseconds since the leader last heard from it; `null` if never.
    pub last_contact_ms: Option<u64>,
}

/// `annotate --output json`.
#[derive(Debug, Serialize)]
pub struct AnnotateJson {
    /// Raft log index at which the note was committed.
    pub log_index: u64,
    /// The leader that committed it.
    pub leader_id: u64,
}

/// `journal --output json`.
#[derive(Debug, Serialize)]
pub struct JournalJson {
    /// Every note, oldest first.
    pub entries: Vec<JournalEntryJson>,
}

/// One note in [`JournalJson::entries`].
#[derive(Debug, Serialize)]
pub struct JournalEntryJson {
    /// Raft log index of the note.
    pub log_index: u64,
    /// Leader's wall clock when it accepted the note, Unix milliseconds.
    pub at_unix_ms: i64,
    /// Who wrote it.
    pub author: String,
    /// The note.
    pub text: String,
}

impl From<&StatusReply> for StatusJson {
    fn from(r: &StatusReply) -> Self {
        Self {
            node_id: r.node_id,
            leader_id: r.leader_id,
            term: r.term,
            cluster_name: r.cluster_name.clone(),
            nodes: r.nodes.iter().map(NodeJson::from).collect(),
            replication: r.replication.iter().map(PeerJson::from).collect(),
        }
    }
}

impl From<&NodeStatus> for NodeJson {
    fn from(n: &NodeStatus) -> Self {
        Self {
            id: n.id,
            site: n.site.clone(),
            role: role_name(n.role),
            term: n.term,
            leader_id: n.leader_id,
            last_log_index: n.last_log_index,
            last_applied_index: n.last_applied_index,
            snapshot_index: n.snapshot_index,
            raft_addr: n.raft_addr.clone(),
            control_addr: n.control_addr.clone(),
            error: (!n.error.is_empty()).then(|| n.error.clone()),
        }
    }
}

impl From<&PeerProgress> for PeerJson {
    fn from(p: &PeerProgress) -> Self {
        Self {
            id: p.id,
            matched_index: p.matched_index,
            lag_entries: p.lag_entries,
            last_contact_ms: p.last_contact_ms,
        }
    }
}

impl From<&AnnotateReply> for AnnotateJson {
    fn from(r: &AnnotateReply) -> Self {
        Self {
            log_index: r.log_index,
            leader_id: r.leader_id,
        }
    }
}

impl From<&JournalReply> for JournalJson {
    fn from(r: &JournalReply) -> Self {
        Self {
            entries: r
                .entries
                .iter()
                .map(|e| JournalEntryJson {
                    log_index: e.log_index,
                    at_unix_ms: e.at_unix_ms,
                    author: e.author.clone(),
                    text: e.text.clone(),
                })
                .collect(),
        }
    }
}

/// One of this module's schema types as pretty JSON plus a trailing newline.
pub fn to_json<T: Serialize>(value: &T) -> String {
    // The schema types are plain structs with string keys, which serde_json
    // cannot fail to serialise.
    let mut s = serde_json::to_string_pretty(value).expect("schema types always serialise");
    s.push('\n');
    s
}

/// The lowercase role name used in both tables and JSON.
pub fn role_name(role: i32) -> &'static str {
    match Role::try_from(role) {
        Ok(Role::Leader) => "leader",
        Ok(Role::Follower) => "follower",
        Ok(Role::Candidate) => "candidate",
        Ok(Role::Learner) => "learner",
        Ok(Role::Shutdown) => "shutdown",
        Ok(Role::Unreachable) => "unreachable",
        // A newer server may send roles this build does not know.
        Ok(Role::Unspecified) | Err(_) => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn keys(v: &serde_json::Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    }

    #[test]
    fn status_json_has_the_documented_keys_and_nulls() {
        let mut r = fixtures::status();
        r.leader_id = None;
        let v: serde_json::Value =
            serde_json::from_str(&to_json(&StatusJson::from(&r))).expect("valid JSON");

        assert_eq!(
            keys(&v),
            [
                "cluster_name",
                "leader_id",
                "node_id",
                "nodes",
                "replication",
                "term"
            ]
        );
        assert!(v["leader_id"].is_null());
        assert_eq!(v["node_id"], 2);
        assert_eq!(v["term"], 5);
        assert_eq!(v["cluster_name"], "palisade-local");

        assert_eq!(
            keys(&v["nodes"][0]),
            [
                "control_addr",
                "error",
                "id",
                "last_applied_index",
                "last_log_index",
                "leader_id",
                "raft_addr",
                "role",
                "site",
                "snapshot_index",
                "term"
            ]
        );
        assert_eq!(v["nodes"][0]["role"], "leader");
        assert_eq!(v["nodes"][0]["leader_id"], 1);
        assert!(v["nodes"][0]["error"].is_null());
        assert!(v["nodes"][0]["snapshot_index"].is_null());
        assert_eq!(v["nodes"][2]["role"], "unreachable");
        assert_eq!(v["nodes"][2]["error"], "connection refused");
        assert!(v["nodes"][2]["last_log_index"].is_null());

        assert_eq!(
            keys(&v["replication"][0]),
            ["id", "lag_entries", "last_contact_ms", "matched_index"]
        );
        assert_eq!(v["replication"][0]["last_contact_ms"], 42);
        assert!(v["replication"][1]["matched_index"].is_null());
        assert!(v["replication"][1]["last_contact_ms"].is_null());
    }

    #[test]
    fn annotate_json_is_exact() {
        let a = AnnotateReply {
            log_index: 17,
            leader_id: 1,
        };
        assert_eq!(
            to_json(&AnnotateJson::from(&a)),
            "{\n  \"log_index\": 17,\n  \"leader_id\": 1\n}\n"
        );
    }

    #[test]
    fn journal_json_keeps_raw_fields() {
        let v: serde_json::Value =
            serde_json::from_str(&to_json(&JournalJson::from(&fixtures::journal())))
                .expect("valid JSON");
        assert_eq!(keys(&v), ["entries"]);
        assert_eq!(
            keys(&v["entries"][0]),
            ["at_unix_ms", "author", "log_index", "text"]
        );
        assert_eq!(v["entries"][0]["log_index"], 9);
        assert_eq!(v["entries"][0]["at_unix_ms"], 1_700_000_000_123_i64);
        assert_eq!(v["entries"][0]["author"], "alice");
        assert_eq!(v["entries"][0]["text"], "DR drill:\ncheckpoint taken");
    }

    #[test]
    fn role_names_are_lowercase_and_unknown_for_unrecognised() {
        assert_eq!(role_name(Role::Leader as i32), "leader");
        assert_eq!(role_name(Role::Learner as i32), "learner");
        assert_eq!(role_name(Role::Shutdown as i32), "shutdown");
        assert_eq!(role_name(Role::Unspecified as i32), "unknown");
        assert_eq!(role_name(99), "unknown");
    }
}
