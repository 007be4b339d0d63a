//! Synchronous replication at the primary's site: which standby commits
//! wait for, and the degrade decision (`palisade_core::sync_degrade`).

use crate::clock::mono_ms;
use palisade_actions::postgres::DatabaseControl;

use super::Agent;
use crate::config::SyncStandbyDown;
use crate::site_db::SiteDb;

impl<D: DatabaseControl + 'static> Agent<D> {
    /// In `sync` mode, keeps `synchronous_standby_names` naming the standby
    /// while it can acknowledge; when it cannot, `block` keeps it (writes
    /// wait, nothing acknowledged can be lost) and `degrade` clears it
    /// (writes go on asynchronously, logged as a degradation). "Cannot" is
    /// decided on evidence by `palisade_core::sync_degrade`: the standby
    /// does not stream, or commits have waited `sync_degrade_after_ms`
    /// while its acknowledged position stood still (a cut link or a hung
    /// standby, which the primary only notices at `wal_sender_timeout`).
    /// It comes back once the standby acknowledges again and has caught up.
    pub(super) async fn manage_sync(&self, db: &SiteDb<D>, epoch: u64) {
        use palisade_core::detector::ReplicationMode;
        use palisade_core::sync_degrade::{SyncDecision, SyncDegrade, SyncSample};
        if self.settings.detector.replication != ReplicationMode::Sync {
            return;
        }
        let Some(standby) = self
            .settings
            .all()
            .into_iter()
            .find(|d| d.site != self.site)
        else {
            return;
        };
        // Feed the decision this witness's latest probe of its own primary
        // (a probe already seen counts once, a failed one not at all); a
        // new primary term starts from a fresh decision.
        let sample = self
            .latest
            .observation_at(&self.site)
            .and_then(|(o, at)| SyncSample::from_observation(at, &o, &standby.application_name));
        let (before, decision) = {
            let mut slot = self.sync_degrade.lock().expect("sync lock poisoned");
            if slot.as_ref().is_some_and(|(e, _)| *e != epoch) {
                *slot = None;
            }
            let (_, machine) = slot.get_or_insert_with(|| {
                (epoch, SyncDegrade::new(self.settings.sync_degrade_after_ms))
            });
            let before = machine.decision();
            if let Some(sample) = sample {
                machine.observe(sample);
            }
            if !machine.has_evidence() {
                // Nothing seen of this term's primary yet: change nothing.
                return;
            }
            (before, machine.decision())
        };
        let degrade = self.settings.sync_standby_down == SyncStandbyDown::Degrade;
        let (want, in_force) = match decision {
            SyncDecision::Degrade { reason, .. } if degrade => {
                (None, format!("async (degraded: {reason})"))
            }
            _ => (Some(standby.application_name.clone()), "sync".to_owned()),
        };
        if !degrade && decision != before {
            // `block`: nothing to change, but a human wants to know why
            // writes hang, and when they stop hanging.
            match decision {
                SyncDecision::Degrade { reason, .. } => {
                    tracing::warn!(standby = %standby.site, %reason, "commits are BLOCKED until the standby acknowledges again (sync_standby_down = \"block\")")
                }
                SyncDecision::Sync => {
                    tracing::info!(standby = %standby.site, "standby acknowledging again: commits no longer blocked")
                }
            }
        }
        *self.in_force.lock().expect("sync lock poisoned") = in_force;
        if self.sync_names.lock().expect("sync lock poisoned").as_ref() == Some(&want) {
            return;
        }
        match db.set_synchronous(epoch, want.as_deref()).await {
            Ok(changed) => {
                match (&want, decision) {
                    (Some(n), _) if changed => {
                        tracing::info!(standby = %n, "synchronous replication on")
                    }
                    (None, SyncDecision::Degrade { reason, .. }) if changed => {
                        tracing::warn!(standby = %standby.site, %reason, "replication DEGRADED to async (sync_standby_down = \"degrade\"); a failover now may lose what the standby did not receive")
                    }
                    _ => {}
                }
                *self.sync_names.lock().expect("sync lock poisoned") = Some(want);
            }
            Err(e) => tracing::warn!(error = %e, "could not set synchronous_standby_names"),
        }
    }

    /// How long this site's lease still holds, when this site is the
    /// desired primary and its agent holds it (for status).
    pub fn lease_remaining_ms(&self) -> Option<u64> {
        let state = self.view.cluster_state();
        let db = state.db.as_ref()?;
        if db.primary != self.site {
            return None;
        }
        self.st().lease_remaining_ms(mono_ms(), state.epoch)
    }

    /// Whether this site is the desired primary and its agent has seen the
    /// database serve under its lease since it last stopped it (for status).
    pub fn serving_under_lease(&self) -> bool {
        let state = self.view.cluster_state();
        state.db.as_ref().is_some_and(|db| db.primary == self.site)
            && self.st().serving_under_lease()
    }

    /// How many of this agent's lease renewals each witness answered, by
    /// outcome (`granted`, `refused`, `unknown`, `failed`): for metrics.
    pub fn lease_answer_counts(&self) -> Vec<(u64, &'static str, u64)> {
        self.lease_answers
            .lock()
            .expect("lease answers lock poisoned")
            .iter()
            .map(|(&(w, o), &n)| (w, o, n))
            .collect()
    }

    /// The replication mode this primary's agent keeps in force (`sync`
    /// mode only; empty otherwise).
    pub fn replication_in_force(&self) -> String {
        self.in_force.lock().expect("sync lock poisoned").clone()
    }
}
