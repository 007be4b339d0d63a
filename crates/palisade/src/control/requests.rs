//! Committing an operator's request exactly once, by its request id (see
//! `palisade_core::state::requests` for the rules the state machine
//! applies). A request the leader has already applied is answered from the
//! applied state without a Raft round; one in flight is caught when
//! applied, where the state machine returns the first request's record.

use openraft::error::{ClientWriteError, RaftError};
use palisade_core::state::requests::{parse_request_id, Lookup};
use palisade_core::{Command, CommandResult, RequestRecord};
use tonic::Status;

use super::ControlService;

/// What committing a request came to.
#[derive(Debug)]
pub(super) enum Committed {
    /// Applied now, with this result.
    Fresh(CommandResult),
    /// The request id was applied before: nothing was applied now; this
    /// is what the first request did.
    Duplicate(Box<RequestRecord>),
}

impl Committed {
    /// Whether this answers a retry of a request applied before.
    pub(super) fn is_duplicate(&self) -> bool {
        matches!(self, Committed::Duplicate(_))
    }

    /// The result of the request (the first one's, for a duplicate).
    pub(super) fn result(&self) -> &CommandResult {
        match self {
            Committed::Fresh(r) => r,
            Committed::Duplicate(rec) => &rec.result,
        }
    }
}

/// The answer to a request the cluster has a record of: its first result,
/// or its refusal again.
pub(super) fn answer_seen(record: &RequestRecord) -> Result<Committed, Status> {
    match &record.result {
        CommandResult::Rejected { reason } => Err(Status::failed_precondition(format!(
            "{reason} (request {} was refused when it was first applied, at log index {}; \
             nothing changed; send a new request to try again)",
            record.id, record.log_index
        ))),
        _ => Ok(Committed::Duplicate(Box::new(record.clone()))),
    }
}

/// Checks a request id before anything is proposed: its form, whether this
/// witness has applied it already, whether it is too old to tell.
/// `Ok(None)`: go on and propose.
pub(super) fn precheck(
    state: &palisade_core::ClusterState,
    request_id: &str,
    kind: &str,
    now_ms: i64,
) -> Result<Option<Committed>, Status> {
    if request_id.is_empty() {
        return Ok(None);
    }
    let issued =
        parse_request_id(request_id).map_err(|e| Status::invalid_argument(e.to_string()))?;
    match state.requests.lookup(request_id, issued, now_ms) {
        Lookup::New => Ok(None),
        Lookup::Seen(first) if first.kind != kind => Err(Status::failed_precondition(format!(
            "request id {request_id} was already used for another request ({} by {}, log index \
             {}); a retry must repeat the same command, and a new request needs a new id",
            first.kind, first.who, first.log_index
        ))),
        Lookup::Seen(first) => answer_seen(first).map(Some),
        Lookup::TooOld(reason) => Err(Status::failed_precondition(reason)),
    }
}

impl ControlService {
    /// Validates `command` and commits it here (this witness leads), as
    /// request `request_id` (empty: a client that sends none; no
    /// de-duplication). A request applied before is answered with what it
    /// did then; a refusal by the state machine is `FAILED_PRECONDITION`.
    pub(super) async fn commit_request(
        &self,
        request_id: &str,
        command: Command,
        refuse_if_paused: bool,
        detail: String,
    ) -> Result<Committed, Status> {
        command
            .validate()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let kind = command.request_kind().unwrap_or("request");
        let now = palisade_raft::unix_ms_now();
        if let Some(seen) = precheck(&self.state.cluster_state(), request_id, kind, now)? {
            tracing::info!(
                request_id,
                kind,
                "request applied before: answered from the record"
            );
            return Ok(seen);
        }
        let command = if request_id.is_empty() {
            command
        } else {
            Command::Requested {
                id: request_id.to_string(),
                at_ms: now,
                refuse_if_paused,
                detail,
                command: Box::new(command),
            }
        };
        match self.raft.client_write(command).await {
            Ok(resp) => match resp.data {
                CommandResult::Rejected { reason } => Err(Status::failed_precondition(reason)),
                CommandResult::Duplicate { record } => {
                    tracing::info!(
                        request_id,
                        kind,
                        log_index = record.log_index,
                        "duplicate request: not applied again"
                    );
                    answer_seen(&record)
                }
                other => Ok(Committed::Fresh(other)),
            },
            Err(e) => Err(not_committed(&e)),
        }
    }
}

/// A failed `client_write` as a status: not the leader (nothing was
/// appended: `UNAVAILABLE`, retry elsewhere), or anything else, after
/// which the entry may still be committed (`UNKNOWN`).
pub(super) fn not_committed(
    e: &RaftError<
        palisade_core::NodeId,
        ClientWriteError<palisade_core::NodeId, palisade_core::Witness>,
    >,
) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Status::unavailable(format!(
            "this witness is no longer the leader (leader now {}); nothing was committed; retry",
            f.leader_id
                .map(|l| l.to_string())
                .unwrap_or_else(|| "unknown".into())
        )),
        other => {
            tracing::warn!(error = %other, "request not committed");
            Status::unknown(format!(
                "the leader could not finish committing the request: {other}"
            ))
        }
    }
}
