//! The leader's orders to this site's agent, for a committed epoch: fence,
//! promote, and the app's `monitorsEnabled` and search. Whether an order
//! may be carried out is the core's decision (`may_act_in`, `may_fence`,
//! `may_promote`, `may_enable_monitors`, `may_disable_monitors`,
//! `may_repoint_search`); this carries it out. An order carries no free
//! value (no host, URL, path or index): what it acts on comes from this
//! witness's own configuration and the committed state.

use std::sync::Arc;
use std::time::Duration;

use palisade_actions::postgres::DatabaseControl;
use palisade_core::site_agent::{
    may_act_in, may_disable_monitors, may_enable_monitors, may_fence, may_promote,
    may_repoint_search, OrderRefusal,
};

use super::{Agent, EPOCH_WAIT};
use crate::clock::mono_ms;
use crate::peer_msgs::{SiteAction, SiteActionDone, SiteActionFailure};

impl<D: DatabaseControl + 'static> Agent<D> {
    /// Waits (briefly) until this witness has applied `epoch`.
    async fn wait_epoch(
        &self,
        epoch: u64,
    ) -> Result<std::sync::Arc<palisade_core::ClusterState>, SiteActionFailure> {
        let deadline = mono_ms() + EPOCH_WAIT.as_millis() as u64;
        loop {
            let s = self.view.cluster_state();
            if s.epoch >= epoch {
                return Ok(s);
            }
            if mono_ms() > deadline {
                return Err(SiteActionFailure::NotApplied(format!(
                    "epoch {epoch} not applied here (still at {})",
                    s.epoch
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (briefly) until this witness has applied the record an order
    /// needs: the leader commits it and gives the order at once, and this
    /// witness may apply it a moment later (found by the simulation: the
    /// promotion reached the target's agent before its witness had applied
    /// the `fenced` record in 12 of 114 failovers, and was refused and
    /// retried 0.4 s later). A refusal that outlasts the wait stands.
    async fn wait_allowed(
        &self,
        allowed: impl Fn(&palisade_core::ClusterState) -> Result<(), OrderRefusal>,
    ) -> Result<(), SiteActionFailure> {
        let deadline = mono_ms() + EPOCH_WAIT.as_millis() as u64;
        loop {
            let refusal = match allowed(&self.view.cluster_state()) {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if mono_ms() > deadline {
                return Err(refused(refusal));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Carries out the leader's order for a committed epoch. Idempotent:
    /// a new leader may repeat an order its predecessor already gave.
    #[tracing::instrument(skip_all, fields(site = %self.site, epoch = action.epoch()))]
    pub async fn act(
        self: Arc<Self>,
        action: SiteAction,
    ) -> Result<SiteActionDone, SiteActionFailure> {
        use SiteActionFailure::{Failed, Refused};
        let state = self.wait_epoch(action.epoch()).await?;
        may_act_in(&state, action.epoch()).map_err(refused)?;
        let no_app = || Refused(format!("site {} has no [[app]] configured", self.site));
        match &action {
            SiteAction::SetMonitors { enabled, .. } => {
                let app = self.app.as_ref().ok_or_else(no_app)?;
                if *enabled {
                    self.wait_allowed(|s| may_enable_monitors(s, &self.site))
                        .await?;
                } else {
                    may_disable_monitors(&state, &self.site).map_err(refused)?;
                }
                return app
                    .set_monitors(*enabled)
                    .await
                    .map(SiteActionDone::said)
                    .map_err(Failed);
            }
            SiteAction::RepointSearch { epoch } => {
                let app = self.app.as_ref().ok_or_else(no_app)?;
                if app.search().is_none() {
                    return Err(Refused(format!(
                        "site {} has no [[elasticsearch]] configured",
                        self.site
                    )));
                }
                self.wait_allowed(|s| may_repoint_search(s, &self.site, *epoch))
                    .await?;
                return app
                    .repoint_search()
                    .await
                    .map(SiteActionDone::said)
                    .map_err(Failed);
            }
            SiteAction::ReadMonitors { .. } => {
                let app = self.app.as_ref().ok_or_else(no_app)?;
                return app
                    .monitors()
                    .await
                    .map(|v| {
                        SiteActionDone::said(
                            v.map(|b| b.to_string()).unwrap_or_else(|| "absent".into()),
                        )
                    })
                    .map_err(Failed);
            }
            SiteAction::Fence { .. } | SiteAction::Promote { .. } => {}
        }
        let Some(db) = &self.db else {
            return Err(Refused(format!("site {} has no database", self.site)));
        };
        let _ops = self.ops.lock().await;
        match action {
            SiteAction::Fence { epoch, planned } => {
                may_fence(&state, &self.site, epoch).map_err(refused)?;
                if planned {
                    self.st().handing_over();
                    let (detail, lsn) = db.fence_for_handover(epoch).await.map_err(Failed)?;
                    self.handed_over(db, epoch).await;
                    tracing::warn!(%detail, "database fenced for a planned handover");
                    return Ok(SiteActionDone { detail, lsn });
                }
                self.fence_now(db, epoch)
                    .await
                    .map(SiteActionDone::said)
                    .ok_or_else(|| Failed("fence failed; see the agent's log".into()))
            }
            SiteAction::Promote { epoch } => {
                self.wait_allowed(|s| may_promote(s, &self.site, epoch))
                    .await?;
                // The quorum lease first: a promoted server is never
                // writable without one (the witnesses grant it once they
                // applied the fence record).
                self.take_lease(epoch, EPOCH_WAIT).await.map_err(Failed)?;
                let planned = state
                    .failover
                    .as_ref()
                    .is_some_and(|f| f.epoch == epoch && f.kind.is_planned());
                let mut detail = db.promote(epoch, planned).await.map_err(Failed)?;
                if db.mariadb().is_some() {
                    self.mark_read_only(false);
                    detail = format!("{detail}; {}", self.loss_bound(planned));
                }
                self.st().serving();
                Ok(SiteActionDone::said(detail))
            }
            _ => Err(Failed("unexpected action".into())),
        }
    }
}

/// The core's refusal as the agent answers it: final until the state it
/// rests on changes.
fn refused(r: OrderRefusal) -> SiteActionFailure {
    SiteActionFailure::Refused(r.to_string())
}
