//! The `palisade.v1.WitnessPeer` service: reports and lease renewals for
//! the leader's controller, site actions for this witness's agent.

use std::sync::Arc;

use palisade_api::v1::witness_peer_server::WitnessPeer;
use palisade_api::v1::RaftPayload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::agent::Agent;
use crate::controller::Controller;
use crate::peer_msgs::{LeaseAnswer, RenewLease, Report, SiteAction};

/// Serves one witness's peer calls.
pub struct WitnessService {
    /// The leader-side controller (acts only while leading).
    pub controller: Arc<Controller>,
    /// This witness's site agent.
    pub agent: Arc<Agent>,
}

fn decode<T: DeserializeOwned>(req: Request<RaftPayload>) -> Result<T, Status> {
    serde_json::from_slice(&req.into_inner().json)
        .map_err(|e| Status::invalid_argument(format!("payload: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    serde_json::to_vec(value)
        .map(|json| Response::new(RaftPayload { json }))
        .map_err(|e| Status::internal(format!("cannot encode reply: {e}")))
}

#[tonic::async_trait]
impl WitnessPeer for WitnessService {
    async fn report(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let report: Report = decode(req)?;
        self.controller.receive_report(report);
        encode(&())
    }

    async fn renew_lease(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let renew: RenewLease = decode(req)?;
        match self.controller.renew_lease(renew.clone()).await {
            LeaseAnswer::Unconfirmed { .. } if !renew.relayed => {
                encode(&self.agent.relay_renewal(renew).await)
            }
            answer => encode(&answer),
        }
    }

    async fn site_action(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let action: SiteAction = decode(req)?;
        // Run the action on its own task: if the leader gives up waiting
        // (its RPC times out and this handler is dropped), a fence that is
        // half-way must still finish, not stop between two signals.
        let agent = self.agent.clone();
        let done = tokio::spawn(async move { agent.act(action).await })
            .await
            .map_err(|e| Status::internal(format!("site action task failed: {e}")))?;
        match done {
            Ok(done) => encode(&done),
            Err(e) => Err(Status::failed_precondition(e)),
        }
    }
}
