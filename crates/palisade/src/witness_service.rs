//! The `palisade.v1.WitnessPeer` service: reports for the leader's
//! controller, lease renewals and expiry verdicts from this witness's grant
//! book, site actions for this witness's agent.

use std::sync::Arc;

use palisade_api::v1 as pb;
use palisade_api::v1::witness_peer_server::WitnessPeer;
use palisade_core::SiteId;
use tonic::{Request, Response, Status};

use crate::agent::Agent;
use crate::controller::Controller;
use crate::lease::{expiry_to_pb, grant_to_pb, WitnessLease};
use crate::peer_msgs::SiteActionFailure;
use crate::peer_pb;

/// Serves one witness's peer calls.
pub struct WitnessService {
    /// The leader-side controller (acts only while leading).
    pub controller: Arc<Controller>,
    /// This witness's site agent.
    pub agent: Arc<Agent>,
    /// This witness's grant book of the quorum lease.
    pub lease: Arc<WitnessLease>,
    /// The port serves mutual TLS: each call must come from a configured
    /// witness (the handshake checked that), speaking only for itself.
    pub tls: bool,
}

impl WitnessService {
    /// The calling witness's node id and site, from its certificate
    /// (`None` on an insecure cluster).
    fn caller<T>(&self, req: &Request<T>) -> Result<Option<(u64, String)>, Status> {
        Ok(
            match palisade_raft::transport::check_peer(req, self.tls, None)? {
                Some(palisade_tls::Identity::Witness { node, site, .. }) => Some((node, site)),
                _ => None,
            },
        )
    }
}

/// A site name from a peer request: non-empty.
fn site_field(site: &str) -> Result<SiteId, Status> {
    if site.is_empty() {
        return Err(Status::invalid_argument("site: empty"));
    }
    Ok(SiteId(site.to_string()))
}

#[tonic::async_trait]
impl WitnessPeer for WitnessService {
    async fn report(
        &self,
        req: Request<pb::Report>,
    ) -> Result<Response<pb::ReportReceived>, Status> {
        let caller = self.caller(&req)?;
        let report = peer_pb::report_from_pb(req.into_inner())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Some((node, _)) = caller {
            if node != report.witness {
                return Err(Status::permission_denied(format!(
                    "witness {node} sent a report as witness {}",
                    report.witness
                )));
            }
        }
        self.controller.receive_report(report);
        Ok(Response::new(pb::ReportReceived {}))
    }

    async fn renew_lease(
        &self,
        req: Request<pb::LeaseRenewal>,
    ) -> Result<Response<pb::LeaseGrant>, Status> {
        let caller = self.caller(&req)?;
        let req = req.into_inner();
        let site = site_field(&req.site)?;
        // A site's lease is renewed by that site's witness (its agent, or
        // its lease guard with the same certificate), never by another's:
        // another site could otherwise keep a fenced primary's lease alive.
        if let Some((node, own)) = caller {
            if own != site.0 {
                return Err(Status::permission_denied(format!(
                    "witness {node} of site {own} may not renew the lease of site {site}"
                )));
            }
        }
        Ok(Response::new(grant_to_pb(
            self.lease.renew(&site, req.epoch),
            self.lease.voters(),
        )))
    }

    async fn lease_expiry(
        &self,
        req: Request<pb::LeaseExpiryQuery>,
    ) -> Result<Response<pb::LeaseExpiryAnswer>, Status> {
        self.caller(&req)?;
        let req = req.into_inner();
        let site = site_field(&req.site)?;
        Ok(Response::new(expiry_to_pb(
            self.lease.expiry(&site, req.epoch),
        )))
    }

    async fn site_action(
        &self,
        req: Request<pb::SiteActionRequest>,
    ) -> Result<Response<pb::SiteActionReply>, Status> {
        self.caller(&req)?;
        let action = peer_pb::action_from_pb(req.into_inner())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Run the action on its own task: if the leader gives up waiting
        // (its RPC times out and this handler is dropped), a fence that is
        // half-way must still finish, not stop between two signals.
        let agent = self.agent.clone();
        let done = match tokio::spawn(async move { agent.act(action).await }).await {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "site action task failed");
                Err(SiteActionFailure::Failed(format!(
                    "site action task failed: {e}"
                )))
            }
        };
        Ok(Response::new(peer_pb::reply_to_pb(done)))
    }
}
