//! The replicated cluster state: what every witness agrees on, built by
//! applying committed [`Command`]s in log order.

use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandResult};

/// One operator note in the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Raft log index of the command that added it.
    pub log_index: u64,
    /// Leader's wall clock when it accepted the note (Unix ms).
    pub at_unix_ms: i64,
    /// Who wrote it.
    pub author: String,
    /// The note.
    pub text: String,
}

/// Everything the cluster agrees on. Serialized whole into snapshots, so
/// fields are only added, with serde defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Operator notes, in log order.
    #[serde(default)]
    pub journal: Vec<JournalEntry>,
}

impl ClusterState {
    /// Applies a committed command found at `log_index`. Deterministic: the
    /// same commands in the same order give the same state on every witness.
    pub fn apply(&mut self, log_index: u64, command: &Command) -> CommandResult {
        match command {
            Command::Annotate {
                at_unix_ms,
                author,
                text,
            } => {
                self.journal.push(JournalEntry {
                    log_index,
                    at_unix_ms: *at_unix_ms,
                    author: author.clone(),
                    text: text.clone(),
                });
                CommandResult::Annotated { log_index }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn note(i: i64) -> Command {
        Command::Annotate {
            at_unix_ms: i,
            author: "ops".into(),
            text: format!("note {i}"),
        }
    }

    #[test]
    fn annotate_appends_in_log_order() {
        let mut s = ClusterState::default();
        assert_eq!(
            s.apply(3, &note(1)),
            CommandResult::Annotated { log_index: 3 }
        );
        assert_eq!(
            s.apply(5, &note(2)),
            CommandResult::Annotated { log_index: 5 }
        );
        assert_eq!(
            s.journal.iter().map(|e| e.log_index).collect::<Vec<_>>(),
            vec![3, 5]
        );
        assert_eq!(s.journal[1].text, "note 2");
    }

    proptest! {
        /// Two replicas that apply the same log end equal, and a snapshot
        /// (serialize + restore) mid-way changes nothing.
        #[test]
        fn replicas_converge_through_snapshots(ts in proptest::collection::vec(any::<i64>(), 0..40), cut in 0usize..40) {
            let mut a = ClusterState::default();
            let mut b = ClusterState::default();
            for (i, t) in ts.iter().enumerate() {
                if i == cut {
                    let bytes = serde_json::to_vec(&b).unwrap();
                    b = serde_json::from_slice(&bytes).unwrap();
                }
                let idx = i as u64 + 1;
                prop_assert_eq!(a.apply(idx, &note(*t)), b.apply(idx, &note(*t)));
            }
            prop_assert_eq!(a, b);
        }
    }
}
