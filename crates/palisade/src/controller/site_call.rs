//! Orders to the site agents: over the peer network, or directly to this
//! witness's own agent. An order runs on a task of its own, so that giving
//! up waiting never cancels a fence half-way. Failures are typed
//! (`SiteActionError`): a refusal is final until the state it rests on
//! changes, anything else may be retried (every order is idempotent).

use std::time::Duration;

use palisade_core::SiteId;

use palisade_core::executor::StepResult;

use super::Controller;
use crate::peer_msgs::{SiteAction, SiteActionDone, SiteActionError, SiteActionFailure};

impl Controller {
    /// [`Self::site_action`] on its own task, so the caller can go on.
    pub(super) fn spawn_site_action(
        &self,
        site: &SiteId,
        action: SiteAction,
        timeout: Duration,
    ) -> tokio::task::JoinHandle<Result<SiteActionDone, SiteActionError>> {
        let this = self.site_caller(site);
        tokio::spawn(async move { this.call(action, timeout).await })
    }

    /// Asks the site agent of `site` to act (directly when it is this
    /// witness's own site).
    pub(super) async fn site_action(
        &self,
        site: &SiteId,
        action: SiteAction,
        timeout: Duration,
    ) -> Result<SiteActionDone, SiteActionError> {
        self.site_caller(site).call(action, timeout).await
    }

    fn site_caller(&self, site: &SiteId) -> SiteCaller {
        match self.peers.witness_of(site) {
            None => SiteCaller::Nobody(site.clone()),
            Some(w) if w == self.members.own_id() => SiteCaller::Local {
                witness: w,
                agent: self.local_agent.get().cloned(),
            },
            Some(w) => SiteCaller::Peer {
                witness: w,
                peers: self.peers.clone(),
            },
        }
    }
}

/// A step not done because an order failed: retried on the next tick
/// either way (the record cannot move on without it), but a refusal says
/// that retrying alone will not help.
pub(super) fn not_done(what: String, e: &SiteActionError) -> StepResult {
    if e.is_retryable() {
        StepResult::Retry {
            reason: format!("{what}: {e}"),
        }
    } else {
        tracing::error!(error = %e, "{what}: REFUSED; the step is retried, but only a change of state (or a human) can let it pass");
        StepResult::Retry {
            reason: format!("{what}: refused: {e}"),
        }
    }
}

/// Who carries out an order for a site.
enum SiteCaller {
    /// No witness is configured at the site.
    Nobody(SiteId),
    /// This witness's own agent (`None`: not started yet).
    Local {
        witness: palisade_core::NodeId,
        agent: Option<std::sync::Arc<crate::agent::Agent>>,
    },
    /// Another witness's agent, over the network.
    Peer {
        witness: palisade_core::NodeId,
        peers: crate::peers::Peers,
    },
}

impl SiteCaller {
    async fn call(
        self,
        action: SiteAction,
        timeout: Duration,
    ) -> Result<SiteActionDone, SiteActionError> {
        match self {
            SiteCaller::Nobody(site) => Err(SiteActionError::Protocol {
                witness: 0,
                reason: format!("no witness at site {site}"),
            }),
            SiteCaller::Local { witness, agent } => {
                let agent = agent.ok_or_else(|| SiteActionError::Unreachable {
                    witness,
                    reason: "local site agent not started".into(),
                })?;
                // Its own task, so that giving up waiting never cancels a
                // fence half-way (dropping a JoinHandle does not stop the
                // task).
                let task = tokio::spawn(agent.act(action));
                match tokio::time::timeout(timeout, task).await {
                    Err(_) => Err(SiteActionError::Timeout {
                        witness,
                        after: timeout,
                    }),
                    Ok(Err(e)) => Err(SiteActionError::Agent {
                        witness,
                        failure: SiteActionFailure::Failed(format!("local agent task failed: {e}")),
                    }),
                    Ok(Ok(done)) => {
                        done.map_err(|failure| SiteActionError::Agent { witness, failure })
                    }
                }
            }
            SiteCaller::Peer { witness, peers } => {
                peers.site_action(witness, &action, timeout).await
            }
        }
    }
}
