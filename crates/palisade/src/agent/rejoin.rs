//! The old primary after a failover: never writable again until it is
//! rebuilt as a standby of the new primary.

use palisade_actions::postgres::DatabaseControl;

use super::{Agent, REJOIN_RETRY};
use crate::clock::mono_ms;
use crate::config::RejoinPolicy;
use crate::site_db::SiteDb;

impl<D: DatabaseControl + 'static> Agent<D> {
    /// With `rejoin = "automatic"` the agent rebuilds it (`pg_rewind`, else
    /// a base backup); the leader then sees it stream and records it as the
    /// standby.
    pub(super) async fn rejoin(
        &self,
        db: &SiteDb<D>,
        state: &palisade_core::ClusterState,
        epoch: u64,
        running: bool,
    ) {
        let own = self.latest.observation(&self.site);
        let is_standby = own.as_ref().is_some_and(|o| o.in_recovery == Some(true));
        if running && own.as_ref().is_some_and(|o| o.is_streaming()) {
            // A standby that streams (rebuilt by this agent, or by hand):
            // the leader records the rejoin; nothing to rebuild, and no
            // lease to guard.
            self.stop_guard().await;
            return;
        }
        if running && !is_standby {
            // Running and not known to be a standby: it may be the old
            // primary taking writes. Stop it first, without grace.
            tracing::warn!(
                epoch,
                "this site must be fenced (the old primary, until it rejoins as a standby): stopping the database"
            );
            self.fence_now(db, epoch).await;
        }
        // From here on a server of this site is a standby (rebuilt by this
        // agent or by hand), which runs without a lease.
        self.st().standby();
        self.stop_guard().await;
        if self.settings.rejoin == RejoinPolicy::Manual || !self.st().may_rejoin(mono_ms()) {
            return;
        }
        let Some(primary) = state
            .db
            .as_ref()
            .and_then(|d| self.settings.at(&d.primary.0))
        else {
            return;
        };
        let Some(upstream) = primary.replication_conninfo.as_deref() else {
            if !self.st().rejoin_given_up() {
                tracing::error!(primary = %primary.site, "cannot rejoin: [[database]] replication_conninfo of the new primary is not configured; rebuild this standby by hand");
                self.st().rejoin_failed(u64::MAX);
            }
            return;
        };
        let own_name = self
            .settings
            .at(&self.site.0)
            .map(|d| d.application_name.clone())
            .unwrap_or_else(|| self.site.0.clone());
        match db.rejoin(epoch, upstream, &own_name).await {
            Ok(detail) => {
                if !detail.contains("already streaming") {
                    tracing::info!(%detail, upstream = %primary.site, "rebuilt as a standby of the new primary");
                }
                self.st().rejoined();
            }
            Err(e) => {
                tracing::error!(error = %e, "rejoin failed; retrying in {} s", REJOIN_RETRY.as_secs());
                self.st()
                    .rejoin_failed(mono_ms() + REJOIN_RETRY.as_millis() as u64);
            }
        }
    }
}
