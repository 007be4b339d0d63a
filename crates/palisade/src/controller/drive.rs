//! The step loop: asks the pure executor what comes next, carries the work
//! out, and commits what the executor settles on. A step's work is
//! idempotent, so a leader that took over re-runs an unrecorded step
//! safely.

use std::time::Duration;

use palisade_core::executor::{self, Next, Settle, StepResult, Work};
use palisade_core::{Command, Failover, Outcome};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::site_call::not_done;
use super::Controller;
use crate::clock::wall_ms;
use crate::failpoint;
use crate::peer_msgs::SiteAction;

/// How long the leader waits for a promotion.
const PROMOTE_RPC_TIMEOUT: Duration = Duration::from_secs(30);

impl Controller {
    /// Runs the failover's remaining steps in order, committing each.
    #[tracing::instrument(skip_all, fields(epoch = failover.epoch, from = %failover.from, to = %failover.to))]
    pub(super) async fn drive(&self, failover: Failover, cancel: &CancellationToken) {
        let epoch = failover.epoch;
        loop {
            let state = self.view.cluster_state();
            let Some(f) = state.failover.clone().filter(|f| f.epoch == epoch) else {
                return;
            };
            let (step, work) = match executor::next(&f) {
                Next::Finish(outcome) => return self.finish(&f, outcome).await,
                Next::Abort { reason } => {
                    return self.finish(&f, Outcome::Aborted { reason }).await
                }
                Next::Run { step, work } => (step, work),
            };
            failpoint::hit(&format!("before-step-{}", step.name())).await;
            let started_at_ms = wall_ms();
            // `.instrument`, not `span.enter()`: an entered guard held
            // across an await leaks the span into whatever else runs on
            // this thread meanwhile.
            let span = tracing::info_span!("step", step = step.name());
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.run(&f, work).instrument(span) => r,
            };
            match executor::settle(&f, step, started_at_ms, wall_ms(), result) {
                Settle::Record(record) => {
                    let detail = record.detail.clone();
                    for c in record.checks.iter().filter(|c| !c.ok) {
                        tracing::error!(check = %c.name, detail = %c.detail, "check FAILED");
                    }
                    if let Err(e) = self.propose(Command::StepDone { epoch, record }).await {
                        tracing::warn!(error = %e, "step done but not recorded; it is re-run (idempotently)");
                        return;
                    }
                    tracing::warn!(took_ms = wall_ms() - started_at_ms, %detail, "step {} done", step.name());
                    failpoint::hit(&format!("after-step-{}", step.name())).await;
                }
                Settle::Finish(outcome) => return self.finish(&f, outcome).await,
                Settle::RetryLater { reason } => {
                    tracing::warn!(%reason, "step {} not done yet; retrying next tick", step.name());
                    return;
                }
            }
        }
    }

    /// Commits the end of the failover.
    async fn finish(&self, f: &Failover, outcome: Outcome) {
        if let Outcome::Aborted { reason } = &outcome {
            tracing::error!(%reason, "{} ABORTED before promotion: the old primary resumes", f.kind.name());
        }
        let cmd = Command::FinishFailover {
            epoch: f.epoch,
            outcome: outcome.clone(),
            at_ms: wall_ms(),
        };
        if let Err(e) = self.propose(cmd).await {
            tracing::warn!(error = %e, "could not record the end of the failover; retrying next tick");
            return;
        }
        let total_ms = wall_ms() - f.started_at_ms;
        match outcome {
            Outcome::Completed => tracing::warn!(total_ms, "failover completed"),
            Outcome::CompletedWithFailedChecks { failed } => {
                tracing::error!(
                    total_ms,
                    ?failed,
                    "failover COMPLETED WITH FAILED CHECKS: a human must look"
                )
            }
            Outcome::Aborted { .. } => {}
        }
    }

    /// Carries out one step's work.
    async fn run(&self, f: &Failover, work: Work) -> StepResult {
        match work {
            Work::Fence { .. } => self.fence(f).await,
            Work::ShutDownCleanly { site, epoch } => self.shut_down_cleanly(&site, epoch).await,
            Work::CatchUpThenPromote {
                site,
                epoch,
                final_lsn,
            } => match self.catch_up(&site, final_lsn).await {
                Ok(caught_up) => self.promote(&site, epoch, Some(caught_up)).await,
                Err(abort) => abort,
            },
            Work::Promote { site, epoch } => self.promote(&site, epoch, None).await,
            Work::FlipApps { .. } => self.flip_apps(f).await,
            Work::Repoint { .. } => self.repoint(f).await,
            Work::Verify { .. } => self.verify(f).await,
        }
    }

    /// Orders the target's agent to promote (it takes the quorum lease
    /// first); `caught_up` says what the catch-up of a handover proved.
    async fn promote(
        &self,
        site: &palisade_core::SiteId,
        epoch: u64,
        caught_up: Option<String>,
    ) -> StepResult {
        match self
            .site_action(site, SiteAction::Promote { epoch }, PROMOTE_RPC_TIMEOUT)
            .await
        {
            Ok(done) => StepResult::done(match caught_up {
                Some(c) => format!("{c}; {}", done.detail),
                None => done.detail,
            }),
            Err(e) => not_done(format!("promoting {site}"), &e),
        }
    }
}
