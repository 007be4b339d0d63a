//! Operator operations and maintenance mode, at the leader: switchover,
//! failover and failback are begun by the controller after the core's
//! checks; pause and resume are committed as they are. Each is applied at
//! most once per request id.

use palisade_api::v1 as pb;
use palisade_core::operation::{OperatorRequest, Refusal};
use palisade_core::Command;
use tonic::{Response, Status};

use super::views::maintenance;
use super::{ControlService, MAX_PAUSE_MS};
use crate::controller::OperateError;

impl ControlService {
    /// Begins an operator operation on this (leading) witness, as request
    /// `request_id` (empty: no de-duplication).
    pub(super) async fn operate(
        &self,
        req: OperatorRequest,
        request_id: String,
    ) -> Result<Response<pb::OperationReply>, Status> {
        let Some(controller) = &self.controller else {
            return Err(Status::failed_precondition(
                "this cluster has no [[database]] configured: there is nothing to move",
            ));
        };
        let kind = req.kind;
        match controller.operate(req, &request_id).await {
            Ok(b) => Ok(Response::new(pb::OperationReply {
                epoch: b.epoch,
                kind: kind.name().into(),
                from_site: b.from.0,
                to_site: b.to.0,
                leader_id: self.own_id(),
                data_loss_bound: b.data_loss_bound,
                duplicate: b.duplicate,
                request_id,
            })),
            Err(OperateError::Refused(Refusal::InvalidArgument(e))) => {
                Err(Status::invalid_argument(e))
            }
            Err(OperateError::Refused(Refusal::FailedPrecondition(e))) => {
                Err(Status::failed_precondition(e))
            }
            Err(OperateError::Unavailable(e)) => Err(Status::unavailable(e)),
            Err(OperateError::Unknown(e)) => Err(Status::unknown(e)),
        }
    }

    /// Maintenance mode on, for `for_ms` (none: until resumed). Without
    /// `force`, refused while a pause is in force (checked when applied).
    pub(super) async fn pause_here(
        &self,
        body: pb::PauseRequest,
    ) -> Result<Response<pb::MaintenanceReply>, Status> {
        let for_ms = body.for_ms.filter(|ms| *ms > 0);
        if for_ms.is_some_and(|ms| ms > MAX_PAUSE_MS) {
            return Err(Status::invalid_argument(format!(
                "for_ms: {} ms is more than a year; pause without a duration and resume by hand",
                body.for_ms.unwrap_or_default()
            )));
        }
        let at_ms = palisade_raft::unix_ms_now();
        let command = Command::Pause {
            by: body.who,
            reason: body.reason,
            at_ms,
            until_ms: for_ms.map(|ms| at_ms + ms as i64),
        };
        let committed = self
            .commit_request(&body.request_id, command, !body.force, String::new())
            .await?;
        if committed.is_duplicate() {
            tracing::info!(request_id = %body.request_id, "pause already applied by this request");
        } else {
            tracing::warn!(request_id = %body.request_id, "maintenance mode on: automatic failover paused");
        }
        Ok(Response::new(pb::MaintenanceReply {
            maintenance: self
                .state
                .cluster_state()
                .maintenance
                .as_ref()
                .map(maintenance),
            leader_id: self.own_id(),
            duplicate: committed.is_duplicate(),
            request_id: body.request_id,
        }))
    }

    /// Maintenance mode off.
    pub(super) async fn resume_here(
        &self,
        body: pb::ResumeRequest,
    ) -> Result<Response<pb::MaintenanceReply>, Status> {
        let command = Command::Resume {
            by: body.who,
            at_ms: palisade_raft::unix_ms_now(),
        };
        let committed = self
            .commit_request(&body.request_id, command, false, String::new())
            .await?;
        if committed.is_duplicate() {
            tracing::info!(request_id = %body.request_id, "resume already applied by this request");
        } else {
            tracing::warn!(request_id = %body.request_id, "maintenance mode off: automatic failover resumed");
        }
        Ok(Response::new(pb::MaintenanceReply {
            maintenance: self
                .state
                .cluster_state()
                .maintenance
                .as_ref()
                .map(maintenance),
            leader_id: self.own_id(),
            duplicate: committed.is_duplicate(),
            request_id: body.request_id,
        }))
    }
}
