//! Commands: the entries of the replicated log that change [`ClusterState`].
//!
//! A command is checked with [`Command::validate`] by the node that accepts it
//! from a client, before it is proposed; [`ClusterState::apply`] then applies
//! it on every node, deterministically.
//!
//! Commands are stored in the durable Raft log, so variants and fields are
//! only ever added (with serde defaults), never changed in meaning.
//!
//! [`ClusterState`]: crate::ClusterState
//! [`ClusterState::apply`]: crate::ClusterState::apply

use serde::{Deserialize, Serialize};

use crate::failover::{Failover, Outcome, StepRecord};
use crate::topology::SiteId;

/// Largest journal note, in bytes.
pub const MAX_NOTE_BYTES: usize = 4096;
/// Largest author name, in bytes.
pub const MAX_AUTHOR_BYTES: usize = 128;

/// A change to the replicated cluster state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// An operator's note in the cluster journal.
    Annotate {
        /// The leader's wall clock when it accepted the note (Unix ms). Set
        /// by the proposer, never by apply, so that apply stays deterministic.
        at_unix_ms: i64,
        /// Who wrote it.
        author: String,
        /// The note.
        text: String,
    },
    /// Record which database site is primary and which is standby, from the
    /// configuration, once. Ignored when already recorded: after that only
    /// failovers change the roles.
    InitDatabase {
        /// The configured primary site.
        primary: SiteId,
        /// The configured standby site.
        standby: SiteId,
    },
    /// Plan a failover: raises the epoch. Rejected unless `failover.epoch`
    /// is the current epoch + 1, no failover is in progress, and the roles
    /// match the recorded ones.
    BeginFailover(Box<Failover>),
    /// One step of the failover in progress finished. Rejected unless it is
    /// the next step of that epoch: a step is recorded exactly once.
    StepDone {
        /// Epoch of the failover.
        epoch: u64,
        /// The step and how it went.
        record: StepRecord,
    },
    /// The old primary `site` was rebuilt as a standby of the current
    /// primary and streams from it: it may be promoted again.
    StandbyRejoined {
        /// The rejoined site.
        site: SiteId,
        /// Epoch in force when it rejoined.
        epoch: u64,
        /// Leader wall clock when it saw it stream, Unix ms.
        #[serde(default)]
        at_ms: i64,
    },
    /// Maintenance mode on (or its end or reason changed): no automatic
    /// failover until `until_ms` or a `Resume`.
    Pause {
        /// Who paused.
        by: String,
        /// Why, free text (may be empty).
        reason: String,
        /// Leader wall clock when accepted, Unix ms.
        at_ms: i64,
        /// When it ends on its own; `None`: until resumed.
        until_ms: Option<i64>,
    },
    /// Maintenance mode off.
    Resume {
        /// Who resumed (`expired` when the leader ended it on time).
        by: String,
        /// Leader wall clock when accepted, Unix ms.
        at_ms: i64,
    },
    /// A finished DR drill, for the history.
    RecordDrill(Box<crate::state::DrillRecord>),
    /// The failover of `epoch` ended (after its last step, or aborted before
    /// promotion).
    FinishFailover {
        /// Epoch of the failover.
        epoch: u64,
        /// How it ended.
        outcome: Outcome,
        /// Leader wall clock, Unix ms.
        at_ms: i64,
    },
}

/// What applying a command produced, returned to the client that proposed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CommandResult {
    /// Entries that carry no command (membership, leader blanks).
    None,
    /// The note was added to the journal at this log index.
    Annotated {
        /// Raft log index of the note.
        log_index: u64,
    },
    /// The command was applied.
    Applied,
    /// The command was valid when proposed but not in the state it met
    /// (e.g. a step of an epoch that is no longer current). Every node
    /// rejects it the same way; nothing changed.
    Rejected {
        /// Why.
        reason: String,
    },
}

/// A command a client sent that must not be proposed. `field` names the
/// request field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct CommandError {
    /// The request field at fault.
    pub field: &'static str,
    /// Why it is rejected.
    pub reason: String,
}

impl Command {
    /// Checks what a client sent before it is proposed.
    pub fn validate(&self) -> Result<(), CommandError> {
        match self {
            Command::Annotate { author, text, .. } => {
                check_text("text", text, MAX_NOTE_BYTES)?;
                check_text("author", author, MAX_AUTHOR_BYTES)?;
                Ok(())
            }
            Command::InitDatabase { primary, standby } => {
                if primary == standby {
                    return Err(CommandError {
                        field: "standby",
                        reason: format!("standby site {standby} is the primary site too"),
                    });
                }
                Ok(())
            }
            Command::BeginFailover(f) => {
                if f.from == f.to {
                    return Err(CommandError {
                        field: "to",
                        reason: format!("cannot fail over site {} to itself", f.to),
                    });
                }
                if !f.steps.is_empty() || f.outcome.is_some() {
                    return Err(CommandError {
                        field: "failover",
                        reason: "a new failover has no steps and no outcome".into(),
                    });
                }
                Ok(())
            }
            Command::Pause {
                by,
                reason,
                at_ms,
                until_ms,
            } => {
                check_text("who", by, MAX_AUTHOR_BYTES)?;
                if !reason.is_empty() {
                    check_text("reason", reason, MAX_NOTE_BYTES)?;
                }
                if until_ms.is_some_and(|u| u <= *at_ms) {
                    return Err(CommandError {
                        field: "for_ms",
                        reason: "must be more than 0".into(),
                    });
                }
                Ok(())
            }
            Command::Resume { by, .. } => check_text("who", by, MAX_AUTHOR_BYTES),
            Command::RecordDrill(d) => {
                check_text("drill.name", &d.name, MAX_AUTHOR_BYTES)?;
                check_text("drill.who", &d.who, MAX_AUTHOR_BYTES)?;
                check_text("drill.outcome", &d.outcome, MAX_NOTE_BYTES)?;
                if d.phases.len() > 64 {
                    return Err(CommandError {
                        field: "drill.phases",
                        reason: format!("{} phases; at most 64 are allowed", d.phases.len()),
                    });
                }
                for p in &d.phases {
                    check_text("drill.phases.name", &p.name, MAX_AUTHOR_BYTES)?;
                    check_text("drill.phases.outcome", &p.outcome, MAX_NOTE_BYTES)?;
                }
                if d.finished_at_ms < d.started_at_ms {
                    return Err(CommandError {
                        field: "drill.finished_at_ms",
                        reason: "is before drill.started_at_ms".into(),
                    });
                }
                Ok(())
            }
            Command::StepDone { .. }
            | Command::FinishFailover { .. }
            | Command::StandbyRejoined { .. } => Ok(()),
        }
    }
}

pub(crate) fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), CommandError> {
    if value.trim().is_empty() {
        return Err(CommandError {
            field,
            reason: "must not be empty".into(),
        });
    }
    if value.len() > max {
        return Err(CommandError {
            field,
            reason: format!("is {} bytes; at most {max} are allowed", value.len()),
        });
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(CommandError {
            field,
            reason: "contains control characters".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(author: &str, text: &str) -> Command {
        Command::Annotate {
            at_unix_ms: 0,
            author: author.into(),
            text: text.into(),
        }
    }

    #[test]
    fn validate_names_the_field() {
        assert!(note("ops", "drill checkpoint").validate().is_ok());
        assert_eq!(note("ops", "  ").validate().unwrap_err().field, "text");
        assert_eq!(note("", "x").validate().unwrap_err().field, "author");
        let long = "x".repeat(MAX_NOTE_BYTES + 1);
        let e = note("ops", &long).validate().unwrap_err();
        assert_eq!(e.field, "text");
        assert!(e.reason.contains("4097 bytes"), "{e}");
        assert_eq!(
            note("ops", "bell\u{7}").validate().unwrap_err().field,
            "text"
        );
    }

    #[test]
    fn wire_format_is_stable() {
        // The log on disk holds this JSON: changing it breaks upgrades.
        let json = serde_json::to_string(&note("ops", "hi")).unwrap();
        assert_eq!(
            json,
            r#"{"type":"annotate","at_unix_ms":0,"author":"ops","text":"hi"}"#
        );
    }
}
