//! The agent's side of the quorum lease, carried out: renewals to every
//! witness, their answers fed to the core's `SiteAgent` (which decides the
//! lease guard's orders), the lease a new primary takes before it
//! promotes, and the agent's own lease guard task for when the lease guard
//! process is dead.

use std::sync::Arc;
use std::time::Duration;

use palisade_actions::postgres::DatabaseControl;
use palisade_core::lease::{lease_epoch, Grant, Voters};
use palisade_core::NodeId;
use tokio_util::sync::CancellationToken;

use super::{Agent, GUARD_POLL, GUARD_STALE_MS, TAKE_LEASE_RETRY_MS};
use crate::clock::mono_ms;
use crate::lease_guard::{GuardHandle, GuardOrder};

impl<D: DatabaseControl + 'static> Agent<D> {
    /// Writes `order` for the lease guard and starts the guard if none
    /// runs. Called under the state lock, so orders are written in the
    /// order the lease changed.
    pub(super) fn order_guard(&self, order: GuardOrder) {
        let Some(guard) = &self.guard else { return };
        if let Err(e) = guard.order(order) {
            tracing::error!(error = %e, "cannot write the lease guard's order");
            return;
        }
        if let Err(e) = guard.ensure_running() {
            tracing::error!(error = %e, "cannot start the lease guard");
        }
    }

    /// The site's database is stopped for good in `epoch` (a handover's
    /// clean shutdown is done): the guard kills any server that appears.
    pub(super) fn hard_order(&self, epoch: u64) {
        let _st = self.st();
        self.order_guard(GuardOrder {
            epoch,
            deadline_ms: mono_ms(),
            hard: true,
        });
    }

    /// Whether the lease guard process is alive (a fresh heartbeat).
    pub(super) fn guard_alive(&self) -> bool {
        self.guard
            .as_ref()
            .and_then(GuardHandle::heartbeat_age_ms)
            .is_some_and(|age| age <= GUARD_STALE_MS)
    }

    /// Stops the lease guard: the site no longer holds a lease (its
    /// database is fenced for good, or runs as a standby, which needs
    /// none), and a guard holding a hard order would kill the standby.
    pub(super) async fn stop_guard(&self) {
        let Some(guard) = self.guard.clone() else {
            return;
        };
        match tokio::task::spawn_blocking(move || guard.stop(Duration::from_secs(5))).await {
            Ok(Ok(true)) => tracing::info!("lease guard stopped: this site holds no lease now"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "could not stop the lease guard"),
            Err(e) => tracing::error!(error = %e, "lease guard stop task failed"),
        }
    }

    /// Keeps the quorum lease: while the replicated state lets this site
    /// hold one (the desired primary, or the target of a failover whose
    /// fence is recorded), sends a renewal to every witness every
    /// `renew_interval`, each on its own task, so that neither a slow
    /// database operation of the reconcile loop nor a slow witness delays
    /// the next one (a late grant never moves the lease back).
    pub async fn keep_lease(self: Arc<Self>, cancel: CancellationToken) {
        if self.db.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(self.settings.renew_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let state = self.view.cluster_state();
            if let Some(epoch) = lease_epoch(&state, &self.site) {
                self.clone().renew(epoch);
            }
        }
    }

    /// The agent's own lease guard: kills the database the moment the lease
    /// runs out (`ttl / 4` before its end, as the leader's wait assumes)
    /// when the lease guard process is dead, whatever the reconcile loop or
    /// an order is doing. Those hold the operations lock and may wait on a
    /// hung server for seconds (a frozen primary makes `ALTER SYSTEM` hang
    /// until it thaws); the lease cannot wait for them. Killing takes no
    /// lock: it is idempotent, and a concurrent start or stop only fails.
    /// Found by the chaos suite's freeze scenario.
    pub async fn guard_lease(self: Arc<Self>, cancel: CancellationToken) {
        let Some(db) = &self.db else { return };
        loop {
            let now = mono_ms();
            let due = self.st().guard_due();
            let wait = match due {
                // Expired, and stays armed until a new lease or a handover
                // or rejoin disarms it: a server that comes up later (a
                // start decided under the old lease that only finished
                // now, while PID 1 reaped the last one) is killed too.
                Some((deadline, _)) if deadline <= now => {
                    let alive = self.guard_alive();
                    if self.guard.is_some() && !alive {
                        self.restart_guard(now);
                    }
                    let handing_over = self.handover_epoch(&self.view.cluster_state()).is_some();
                    let kill = self
                        .st()
                        .must_kill(now, db.has_processes(), handing_over, alive);
                    if let Some(epoch) = kill {
                        tracing::warn!(
                            epoch,
                            "lease guard: the lease ran out; killing the database"
                        );
                        self.st().lapsed();
                        match db.fence(epoch, true).await {
                            Ok(detail) => {
                                self.st().fenced();
                                tracing::warn!(%detail, "database fenced by the lease guard");
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "LEASE GUARD COULD NOT FENCE: a human must look")
                            }
                        }
                    }
                    GUARD_POLL
                }
                Some((deadline, _)) => GUARD_POLL.min(Duration::from_millis(deadline - now)),
                None => GUARD_POLL,
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Starts the lease guard again (at most once a second): it died, or
    /// was never started although a lease was held.
    fn restart_guard(&self, now: u64) {
        let Some(guard) = &self.guard else { return };
        let mut at = self
            .guard_restart_at_ms
            .lock()
            .expect("guard restart lock poisoned");
        if now < *at {
            return;
        }
        *at = now + 1000;
        tracing::error!("the lease guard process is not running: the agent enforces the lease itself; starting it again");
        if let Err(e) = guard.ensure_running() {
            tracing::error!(error = %e, "cannot start the lease guard");
        }
    }

    /// Sends one renewal for `epoch` to every witness at once (its own
    /// without the network), and counts each grant from this moment, the
    /// send time, as it arrives: no witness waits for another, and none is
    /// the leader's.
    fn renew(self: Arc<Self>, epoch: u64) {
        let sent = mono_ms();
        let own = self.own_id;
        let grant = self.witness_lease.renew(&self.site, epoch);
        self.answered(own, sent, epoch, Ok((grant, self.witness_lease.voters())));
        let ids: Vec<NodeId> = self.peers.ids().collect();
        for witness in ids {
            let agent = self.clone();
            tokio::spawn(async move {
                // One whole interval for the answer: the lease outlasts
                // two, so one slow answer never lapses a healthy lease.
                let answer = agent
                    .peers
                    .renew_lease(witness, &agent.site, epoch, agent.settings.renew_interval)
                    .await
                    .map_err(|e| e.to_string());
                agent.answered(witness, sent, epoch, answer);
            });
        }
    }

    /// One witness's answer to the renewal sent at `sent`, with the
    /// membership it reported: the core decides what it does to the lease
    /// (counting the newest membership's voters only), and the guard's new
    /// order (if any) is written under the same lock.
    fn answered(
        &self,
        witness: NodeId,
        sent: u64,
        epoch: u64,
        answer: Result<(Grant, Option<Voters>), String>,
    ) {
        let outcome = match &answer {
            Ok((Grant::Granted, _)) => "granted",
            Ok((Grant::Refused { .. }, _)) => "refused",
            Ok((Grant::Unknown { .. }, _)) => "unknown",
            Err(_) => "failed",
        };
        *self
            .lease_answers
            .lock()
            .expect("lease answers lock poisoned")
            .entry((witness, outcome))
            .or_default() += 1;
        let (grant, voters) = match answer {
            Ok(g) => g,
            Err(e) => {
                tracing::debug!(witness, error = %e, "lease renewal failed");
                return;
            }
        };
        let now = mono_ms();
        let mut st = self.st();
        if let Some(v) = &voters {
            st.learn_voters(v);
        }
        match &grant {
            Grant::Refused { reason, .. } if st.leased(now, epoch) => {
                tracing::warn!(witness, %reason, "lease renewal refused: fencing");
            }
            Grant::Unknown { reason } => {
                tracing::debug!(witness, %reason, "lease renewal neither granted nor refused")
            }
            _ => {}
        }
        if let Some(order) = st.answered(now, witness, sent, epoch, &grant) {
            self.order_guard(order);
        }
    }

    /// Renews with every witness until a quorum grants `epoch`, within
    /// `within`: the new primary's lease, taken before it promotes, so that
    /// it is never writable unleased.
    pub(super) async fn take_lease(
        self: &Arc<Self>,
        epoch: u64,
        within: Duration,
    ) -> Result<(), String> {
        let deadline = mono_ms() + within.as_millis() as u64;
        loop {
            self.clone().renew(epoch);
            // Soon again: a witness that had not applied the fence record
            // yet answered "unknown", and will grant once it has (a
            // commit's replication, a few ms); each round is cheap.
            let retry = mono_ms() + TAKE_LEASE_RETRY_MS;
            loop {
                let now = mono_ms();
                if self.st().leased(now, epoch) {
                    return Ok(());
                }
                if now >= deadline {
                    return Err(format!(
                        "no quorum of witnesses granted a lease for epoch {epoch} within {within:?}"
                    ));
                }
                if now >= retry {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
