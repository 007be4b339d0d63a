//! Carries out the fence: the unplanned one as a
//! `palisade_core::executor::FenceRound` (agent, STONITH hook, witnesses'
//! lease expiry), and a planned handover's clean shutdown and catch-up
//! (`palisade_core::executor::handover`).

use std::time::Duration;

use palisade_core::executor::handover::{self, CatchUp};
use palisade_core::executor::{FenceRound, FenceWork, StepResult};
use palisade_core::{Failover, SiteId};
use tokio::task::JoinHandle;

use super::Controller;
use crate::clock::mono_ms;
use crate::failpoint;
use crate::peer_msgs::{SiteAction, SiteActionDone, SiteActionError};

/// How long the leader waits for a site agent to fence its database.
pub(super) const FENCE_RPC_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a planned handover waits for the old primary's clean shutdown
/// (a fast shutdown, an immediate one, then a kill, each bounded).
const PLANNED_FENCE_TIMEOUT: Duration = Duration::from_secs(40);
/// How often the fence step asks the witnesses whether the lease expired.
const EXPIRY_POLL: Duration = Duration::from_millis(50);
/// Bound of one witness's expiry answer.
const EXPIRY_RPC_TIMEOUT: Duration = Duration::from_millis(500);
/// How often the leader looks at the target's replay position.
const CATCH_UP_POLL: Duration = Duration::from_millis(20);

impl Controller {
    /// Fencing, in the order of preference of DESIGN rule 2: the old
    /// primary's agent confirms it stopped its database; failing that, a
    /// STONITH hook says done; failing that, a majority of witnesses vouch
    /// that the old primary's quorum lease has ended (each stopped granting
    /// when it applied this failover, and its last grant lies `ttl × (1 +
    /// drift)` behind). No wait counts from when this leader took office.
    /// Which answer proves what is the core's `FenceRound`; this only asks.
    pub(super) async fn fence(&self, f: &Failover) -> StepResult {
        if failpoint::is_on("unsafe-skip-fence") {
            tracing::error!("failpoint unsafe-skip-fence: NOT fencing (test builds only)");
            return StepResult::done("NOT FENCED: failpoint unsafe-skip-fence");
        }
        let hook = self
            .settings
            .stonith
            .iter()
            .find(|h| h.site == f.from)
            .cloned();
        let mut round = FenceRound::new(
            f.from.clone(),
            f.epoch,
            mono_ms(),
            self.members.topology().witnesses.len(),
            hook.is_some(),
        );
        // Everything at once, each on a task of its own, and whatever
        // answers first moves the round: the agent (asked again once its
        // answer is in), the hook (fired once, after the agent failed to
        // confirm), and every witness (asked again a poll after each answer
        // that is not yet a proof). An unreachable agent or witness never
        // delays what the others can prove.
        let mut confirm: Option<JoinHandle<Result<SiteActionDone, SiteActionError>>> = None;
        let mut stonith: Option<JoinHandle<Result<String, String>>> = None;
        let (site, epoch, own) = (f.from.clone(), f.epoch, self.members.own_id());
        let ask = |w: palisade_core::NodeId, after: Duration| {
            let (peers, site) = (self.peers.clone(), site.clone());
            async move {
                tokio::time::sleep(after).await;
                let answer = peers
                    .lease_expiry(w, &site, epoch, EXPIRY_RPC_TIMEOUT)
                    .await;
                (w, answer)
            }
        };
        let mut asks = tokio::task::JoinSet::new();
        for w in self.peers.ids() {
            asks.spawn(ask(w, Duration::ZERO));
        }
        loop {
            round.expiry(own, self.lease.expiry(&site, epoch));
            for work in round.work(mono_ms()) {
                match work {
                    FenceWork::AskAgent => {
                        let order = SiteAction::Fence {
                            epoch,
                            planned: false,
                        };
                        confirm = Some(self.spawn_site_action(&f.from, order, FENCE_RPC_TIMEOUT));
                    }
                    FenceWork::FireStonith => {
                        let Some(hook) = hook.clone() else { continue };
                        stonith = Some(tokio::spawn(async move {
                            crate::stonith::fire(&hook, epoch).await
                        }));
                    }
                }
            }
            if let Some(detail) = round.detail(mono_ms(), self.settings.lease.witness_wait_ms()) {
                // The agent's fence runs on a task of its own and finishes
                // regardless; only the wait for its answer is dropped. A
                // hook under way is left to finish (it only stops what is
                // already fenced).
                if let Some(t) = confirm {
                    t.abort();
                }
                asks.abort_all();
                return StepResult::done(detail);
            }
            tokio::select! {
                answer = async { confirm.as_mut().expect("guarded").await }, if confirm.is_some() => {
                    confirm = None;
                    if let Ok(Err(SiteActionError::Timeout { .. } | SiteActionError::Unreachable { .. })) = &answer {
                        self.lock().fence_unanswered = Some(epoch);
                    }
                    let answer = match answer {
                        Ok(Ok(done)) => Ok(done.detail),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(e) => Err(format!("fence request task failed: {e}")),
                    };
                    if let Err(e) = &answer {
                        tracing::info!(error = %e, "site agent did not confirm the fence");
                    }
                    round.agent_answered(mono_ms(), answer);
                }
                answer = async { stonith.as_mut().expect("guarded").await }, if stonith.is_some() => {
                    stonith = None;
                    let answer = answer.unwrap_or_else(|e| Err(format!("STONITH task failed: {e}")));
                    if let Err(e) = &answer {
                        tracing::error!(error = %e, "STONITH hook failed; the lease decides");
                    }
                    round.stonith_answered(answer);
                }
                Some(done) = asks.join_next(), if !asks.is_empty() => match done {
                    Ok((w, Ok(e))) => {
                        let again = e != palisade_core::lease::Expiry::Expired;
                        round.expiry(w, e);
                        if again {
                            asks.spawn(ask(w, EXPIRY_POLL));
                        }
                    }
                    Ok((w, Err(e))) => {
                        tracing::debug!(witness = w, error = %e, "no lease expiry answer");
                        asks.spawn(ask(w, EXPIRY_POLL));
                    }
                    Err(e) => tracing::warn!(error = %e, "lease expiry question task failed"),
                },
                // This witness's own grant book, without the network.
                _ = tokio::time::sleep(EXPIRY_POLL) => {}
            }
        }
    }

    /// The fence of a planned handover: the old primary's agent shuts it
    /// down cleanly (its WAL senders ship the whole WAL first) and reports
    /// the final checkpoint; the core decides what the answer proves.
    pub(super) async fn shut_down_cleanly(&self, site: &SiteId, epoch: u64) -> StepResult {
        let order = SiteAction::Fence {
            epoch,
            planned: true,
        };
        let answer = self
            .site_action(site, order, PLANNED_FENCE_TIMEOUT)
            .await
            .map(|d| (d.detail, d.lsn))
            .map_err(|e| e.to_string());
        handover::clean_shutdown(site, answer)
    }

    /// Waits until the target has replayed past the old primary's final
    /// checkpoint (DESIGN rule 5: a planned handover loses nothing), probing
    /// it directly, within `switchover_catchup_timeout`: `Ok` with what it
    /// proved, or the abort.
    pub(super) async fn catch_up(&self, to: &SiteId, final_lsn: u64) -> Result<String, StepResult> {
        let Some(probe) = self.probes.get(to) else {
            return Err(StepResult::Abort {
                reason: format!("no probe of the database at {to}"),
            });
        };
        let started = mono_ms();
        let bound = self.settings.switchover_catchup_timeout.as_millis() as u64;
        let mut replayed = None;
        loop {
            let o = probe.probe().await;
            replayed = o.replay_lsn.or(replayed);
            let last = if self.settings.is_mariadb() {
                handover::FinalWal::LogEndsAt(final_lsn)
            } else {
                handover::FinalWal::CheckpointAt(final_lsn)
            };
            match handover::catch_up(to, last, replayed, mono_ms() - started, bound) {
                CatchUp::Caught(detail) => return Ok(detail),
                CatchUp::GiveUp(reason) => return Err(StepResult::Abort { reason }),
                CatchUp::Wait => tokio::time::sleep(CATCH_UP_POLL).await,
            }
        }
    }
}
