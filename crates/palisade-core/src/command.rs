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
use crate::state::requests::{parse_request_id, RequestRecord};
use crate::topology::SiteId;

/// Largest journal note, in bytes.
pub const MAX_NOTE_BYTES: usize = 4096;
/// Largest author name, in bytes.
pub const MAX_AUTHOR_BYTES: usize = 128;

/// The newest command format this release applies. Each release that
/// adds a command variant raises it, and a leader proposes a command only
/// once every witness reports a format that includes it
/// ([`Command::format`], [`all_apply`]): an older witness cannot read a
/// variant it does not know, and would stop applying the log there.
///
/// | format | adds |
/// |---|---|
/// | 0 | every command before formats were reported |
/// | 1 | [`Command::Prune`] |
pub const COMMAND_FORMAT: u32 = 1;

/// Whether every witness applies commands of `format`: `answers` holds
/// each other witness's reported format (`None`: it did not answer, so it
/// cannot be known). `Err` names the first that does not, and why.
pub fn all_apply(format: u32, answers: &[(u64, Option<u32>)]) -> Result<(), String> {
    for (node, reported) in answers {
        match reported {
            None => {
                return Err(format!(
                    "witness {node} did not answer: its release is unknown"
                ))
            }
            Some(f) if *f < format => {
                return Err(format!(
                    "witness {node} runs a release that applies command format {f}, below {format}: upgrade it first"
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

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
    /// Drop the records that `retention` no longer keeps at `at_ms`
    /// (`crate::state::retention`). Proposed by the leader with its policy
    /// and clock, so that every witness drops the same ones.
    Prune {
        /// The policy.
        retention: crate::state::retention::Retention,
        /// Leader wall clock, Unix ms.
        at_ms: i64,
    },
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
    /// An operator's request, applied at most once per `id`: `command`
    /// (an `Annotate`, `Pause`, `Resume`, `BeginFailover` or `RecordDrill`)
    /// is applied unless a request with this id was applied before, in
    /// which case the result is [`CommandResult::Duplicate`] with what the
    /// first one did (see [`crate::state::requests`]).
    Requested {
        /// The client's request id, `YYYYMMDDTHHMMSS.mmmZ-SUFFIX`
        /// ([`crate::state::requests::parse_request_id`]).
        id: String,
        /// The leader's wall clock when it accepted the request, Unix ms:
        /// judges whether the id is too old to de-duplicate, and prunes.
        at_ms: i64,
        /// `pause` without `--force`: refused when the cluster is already
        /// paused. Checked when applied, so two operators pausing at once
        /// cannot silently replace each other's pause.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        refuse_if_paused: bool,
        /// What the leader says about the request beyond its result (a
        /// forced failover's data-loss bound), kept for a retry's reply.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
        /// What the request does.
        command: Box<Command>,
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
    /// A [`Command::Requested`] whose id was applied before: nothing was
    /// applied this time. `record` is what the first request did (its
    /// result, log index and epoch).
    Duplicate {
        /// The first request's record.
        record: Box<RequestRecord>,
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
            Command::Requested {
                id,
                refuse_if_paused,
                detail,
                command,
                ..
            } => {
                parse_request_id(id)?;
                if detail.len() > MAX_NOTE_BYTES {
                    return Err(CommandError {
                        field: "detail",
                        reason: format!(
                            "is {} bytes; at most {MAX_NOTE_BYTES} are allowed",
                            detail.len()
                        ),
                    });
                }
                if command.request_kind().is_none() {
                    return Err(CommandError {
                        field: "command",
                        reason: "only annotate, pause, resume, an operation or a drill record \
                                 is an operator request"
                            .into(),
                    });
                }
                if *refuse_if_paused && !matches!(**command, Command::Pause { .. }) {
                    return Err(CommandError {
                        field: "force",
                        reason: "refuse_if_paused goes with pause only".into(),
                    });
                }
                command.validate()
            }
            Command::Prune { retention, .. } => {
                for (field, keep) in [
                    ("retention.history", retention.history),
                    ("retention.journal", retention.journal),
                    ("retention.drills", retention.drills),
                ] {
                    if keep.max_age_ms <= 0 {
                        return Err(CommandError {
                            field,
                            reason: "an age of 0 would drop every record".into(),
                        });
                    }
                }
                Ok(())
            }
            Command::StepDone { .. }
            | Command::FinishFailover { .. }
            | Command::StandbyRejoined { .. } => Ok(()),
        }
    }

    /// The command format that introduced this command ([`COMMAND_FORMAT`]).
    pub fn format(&self) -> u32 {
        match self {
            Command::Prune { .. } => 1,
            _ => 0,
        }
    }

    /// The kind of operator request this command is (`annotate`, `pause`,
    /// `resume`, `switchover`, `failover`, `failback`, `drill`), or `None`
    /// for commands only the leader itself proposes.
    pub fn request_kind(&self) -> Option<&'static str> {
        match self {
            Command::Annotate { .. } => Some("annotate"),
            Command::Pause { .. } => Some("pause"),
            Command::Resume { .. } => Some("resume"),
            Command::BeginFailover(f) => Some(f.kind.name()),
            Command::RecordDrill(_) => Some("drill"),
            Command::InitDatabase { .. }
            | Command::StepDone { .. }
            | Command::StandbyRejoined { .. }
            | Command::FinishFailover { .. }
            | Command::Prune { .. }
            | Command::Requested { .. } => None,
        }
    }

    /// Who asked, for a request's record.
    pub fn requested_by(&self) -> String {
        match self {
            Command::Annotate { author, .. } => author.clone(),
            Command::Pause { by, .. } | Command::Resume { by, .. } => by.clone(),
            Command::BeginFailover(f) => match &f.trigger {
                crate::failover::Trigger::Operator { who } => who.clone(),
                crate::failover::Trigger::Automatic => "automatic".into(),
            },
            Command::RecordDrill(d) => d.who.clone(),
            _ => String::new(),
        }
    }

    /// What the command does, in a few words, for a request's record.
    pub fn summary(&self) -> String {
        match self {
            Command::Annotate { text, .. } => {
                let mut t: String = text.chars().take(80).collect();
                if t.len() < text.len() {
                    t.push('…');
                }
                format!("annotate: {t}")
            }
            Command::Pause {
                reason,
                at_ms,
                until_ms,
                ..
            } => {
                let span = match until_ms {
                    Some(u) => format!("for {} ms", u - at_ms),
                    None => "until resumed".into(),
                };
                if reason.is_empty() {
                    format!("pause {span}")
                } else {
                    format!("pause {span}: {reason}")
                }
            }
            Command::Resume { .. } => "resume".into(),
            Command::BeginFailover(f) => format!("{} {} -> {}", f.kind.name(), f.from, f.to),
            Command::RecordDrill(d) => format!("drill {}: {}", d.name, d.outcome),
            other => format!("{other:?}"),
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

    #[test]
    fn a_new_command_waits_until_every_witness_applies_its_format() {
        let prune = Command::Prune {
            retention: crate::state::retention::Retention::default(),
            at_ms: 0,
        };
        assert_eq!(prune.format(), 1);
        assert!(prune.format() <= COMMAND_FORMAT);
        assert_eq!(
            Command::Resume {
                by: "x".into(),
                at_ms: 0
            }
            .format(),
            0
        );
        assert!(all_apply(1, &[(2, Some(1)), (3, Some(2))]).is_ok());
        let e = all_apply(1, &[(2, Some(1)), (3, Some(0))]).expect_err("old witness");
        assert!(e.contains("witness 3") && e.contains("format 0"), "{e}");
        let e = all_apply(1, &[(2, None)]).expect_err("silent witness");
        assert!(e.contains("witness 2 did not answer"), "{e}");
        assert!(all_apply(0, &[(2, Some(0))]).is_ok());
    }

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
