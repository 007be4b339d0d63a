//! The site agent: each witness reconciles its own site's database to the
//! role the replicated state wants for it.
//!
//! * Desired primary: keep the quorum lease (a renewal to every witness every
//!   `renew_interval`, on its own task; a lease guard task kills the database
//!   when a majority of grants has run out); while the
//!   lease is valid (with a margin for the time a stop takes), make sure the
//!   database runs — restart it after a crash when `on_primary_crash =
//!   "restart"`; once the lease has run out, fence (stop) it at once.
//! * Desired fenced (a failover away from this site is under way or done,
//!   and it has not rejoined): make sure it is stopped.
//! * On the leader's order, for a committed epoch: fence, or promote.
//!
//! A witness that starts holds no lease: its database is never started
//! before the quorum confirms this site is primary; one found running is
//! given one `lease.ttl_ms` for that confirmation, then fenced.
//!
//! The lease is enforced by the **lease guard**, a process of its own
//! (`crate::lease_guard`), so that it holds while this witness process is
//! dead or frozen: every change of the lease is written to it as an order
//! (deadline, or `hard` once the site must be fenced). It freezes the
//! server at the deadline, thaws it when the lease returns for the same
//! epoch (no crash recovery for a fault that needed no failover), and
//! kills it on a hard order. While the guard is alive the agent leaves the
//! lapse of a lease to it; with the guard dead, the agent's own lease guard
//! task kills the server at the deadline, as before.
//!
//! Every decision is the core's (`palisade_core::site_agent::SiteAgent`);
//! the modules here carry them out: `lease` (renewals, the guard's orders,
//! the lease a new primary takes), `orders` (the leader's orders), `sync`
//! (synchronous replication) and `rejoin` (the old primary rebuilt as a
//! standby).
//!
//! The agent is generic over how it controls its database
//! (`palisade_actions::postgres::DatabaseControl`, through `SiteDb`); the
//! daemon's `Agent` is the default, PostgreSQL with its own tools
//! (`PgSite`), so the controller and the witness service name no type
//! parameter. The seam lets this runtime, not only the core's decisions,
//! run against an in-memory fake database in its tests (`tests`), and lets
//! another manager (systemd units, a cloud API) stand in for `pg_ctl` by
//! implementing the trait.

mod lease;
mod mariadb;
mod orders;
mod rejoin;
mod sync;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_actions::postgres::{DatabaseControl, PgSite};
use palisade_core::hung::HungVerdict;
use palisade_core::site_agent::{AgentConfig, Decision, Facts, SiteAgent};
use palisade_core::{DesiredRole, SiteId, Step};
use palisade_raft::store::StateView;
use tokio_util::sync::CancellationToken;

use crate::clock::mono_ms;
use crate::config::DatabaseSettings;
use crate::lease::WitnessLease;
use crate::lease_guard::GuardHandle;
use crate::observer::Latest;
use crate::peers::Peers;
use crate::site_db::SiteDb;

/// How long an order waits for this witness to apply the epoch it names.
const EPOCH_WAIT: Duration = Duration::from_secs(3);
/// How often the lease guard looks at the lease (a refusal pulls its
/// deadline to now; a renewal pushes it out).
const GUARD_POLL: Duration = Duration::from_millis(20);
/// How soon a new primary's agent asks again for the lease it needs before
/// it promotes.
const TAKE_LEASE_RETRY_MS: u64 = 50;
/// A lease guard whose heartbeat is older than this is taken for dead (it
/// polls every 20 ms): the agent enforces the lease itself.
const GUARD_STALE_MS: u64 = 500;
/// How long a planned handover's clean shutdown may keep the server up
/// past its lease (the leader's bound of that shutdown): nothing is
/// promoted before the agent confirms it, so no lease is needed meanwhile.
const HANDOVER_HOLD: Duration = Duration::from_secs(40);
/// Wait between rejoin attempts: each may copy the whole database.
const REJOIN_RETRY: Duration = Duration::from_secs(10);

/// One site's agent, controlling its database through `D` (PostgreSQL
/// with its own tools unless a test or another manager says otherwise).
/// Its methods want `D: 'static`: lease renewals run on spawned tasks that
/// hold the agent.
pub struct Agent<D: DatabaseControl = PgSite> {
    site: SiteId,
    own_id: u64,
    /// This site's database; `None` at a site without one.
    db: Option<SiteDb<D>>,
    settings: Arc<DatabaseSettings>,
    view: StateView,
    peers: Peers,
    /// This witness's own grant book: the agent's renewal to its own
    /// witness needs no network.
    witness_lease: Arc<WitnessLease>,
    /// The core's decisions and their memory (lease, crash, hang, rejoin).
    state: Mutex<SiteAgent>,
    /// This witness's latest probes (the primary's own view of its standbys).
    latest: Latest,
    /// The site's application server, if configured.
    app: Option<crate::app::SiteApp>,
    /// Last `synchronous_standby_names` this agent set, to log changes once.
    sync_names: Mutex<Option<Option<String>>>,
    /// Sync mode's degrade decision for the primary term (epoch) it was
    /// built in, fed by `manage_sync` with each probe of this site's primary.
    sync_degrade: Mutex<Option<(u64, palisade_core::sync_degrade::SyncDegrade)>>,
    /// The replication mode in force at this (primary) site, for status.
    in_force: Mutex<String>,
    /// Serializes database operations: the reconcile loop and the leader's
    /// orders never stop and start the server at the same time.
    ops: tokio::sync::Mutex<()>,
    /// The lease guard process of this site's database (`None` without a
    /// database).
    guard: Option<GuardHandle>,
    /// When the agent last tried to start a dead lease guard (agent clock).
    guard_restart_at_ms: Mutex<u64>,
    /// Answers to this agent's lease renewals, by witness and outcome
    /// (`granted`, `refused`, `unknown`, `failed`), for the metrics.
    lease_answers: Mutex<std::collections::BTreeMap<(u64, &'static str), u64>>,
    /// MariaDB: what this agent last made of `read_only`.
    read_only_mark: Mutex<Option<mariadb::ReadOnlyMark>>,
    /// MariaDB: the epoch this old writer last rejoined in.
    maria_rejoined: Mutex<Option<u64>>,
    /// MariaDB: the writer tries to resume replicating from the other
    /// master no sooner than this (agent clock).
    maria_resume_at: Mutex<u64>,
}

impl<D: DatabaseControl + 'static> Agent<D> {
    /// An agent for `site`; `db` is `None` at a site without a database.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        site: SiteId,
        own_id: u64,
        db: Option<SiteDb<D>>,
        settings: Arc<DatabaseSettings>,
        view: StateView,
        peers: Peers,
        witness_lease: Arc<WitnessLease>,
        latest: Latest,
        app: Option<crate::app::SiteApp>,
        guard: Option<GuardHandle>,
    ) -> Self {
        let cfg = AgentConfig {
            lease: settings.lease,
            crash_policy: settings.detector.on_primary_crash,
            handover_hold_ms: HANDOVER_HOLD.as_millis() as u64,
        };
        let witnesses = peers.ids().count() + 1;
        Self {
            site,
            own_id,
            db,
            settings,
            view,
            peers,
            witness_lease,
            state: Mutex::new(SiteAgent::new(witnesses, cfg)),
            latest,
            app,
            sync_names: Mutex::new(None),
            sync_degrade: Mutex::new(None),
            in_force: Mutex::new(String::new()),
            ops: tokio::sync::Mutex::new(()),
            guard,
            guard_restart_at_ms: Mutex::new(0),
            lease_answers: Mutex::default(),
            read_only_mark: Mutex::new(None),
            maria_rejoined: Mutex::new(None),
            maria_resume_at: Mutex::new(0),
        }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, SiteAgent> {
        self.state
            .lock()
            .expect("agent lock poisoned: a panic while holding it")
    }

    /// Runs the reconcile loop until `cancel`.
    #[tracing::instrument(skip_all, fields(site = %self.site))]
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        if self.db.is_none() && self.app.is_none() {
            return;
        }
        if self.db.is_some() {
            // The parent of the servers it starts, so that a killed one is
            // reaped at once and restarts without waiting on init (see
            // `palisade_actions::postgres::reap`).
            if let Err(e) = palisade_actions::postgres::adopt_orphaned_servers() {
                tracing::warn!(error = %e, "cannot become the parent of the database's processes; a killed server waits for init to reap it before it restarts");
            }
        }
        loop {
            let again = self.reconcile().await;
            let renew = self.settings.renew_interval.as_millis() as u64;
            let wait = if again {
                Duration::ZERO
            } else {
                Duration::from_millis(self.st().next_wake_ms(mono_ms(), renew))
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The epoch of a planned handover away from this site whose fence is
    /// not recorded yet: its clean shutdown (each stage bounded: fast,
    /// immediate, kill) must not be killed half-way, which would abort the
    /// handover, and nothing is promoted before this agent confirms it (a
    /// handover never fences by lease expiry). Once the fence is recorded,
    /// or the handover is aborted, the guard acts again on the lease's own
    /// deadline.
    fn handover_epoch(&self, state: &palisade_core::ClusterState) -> Option<u64> {
        state
            .failover
            .as_ref()
            .filter(|f| f.kind.is_planned() && f.from == self.site && !f.is_done(Step::Fenced))
            .map(|f| f.epoch)
    }

    /// One pass; true when another should follow at once (a hung primary
    /// was just killed: its restart, or its being left down, is decided
    /// now rather than a renewal interval later).
    async fn reconcile(&self) -> bool {
        let state = self.view.cluster_state();
        self.reconcile_app(&state).await;
        let Some(db) = &self.db else { return false };
        // Server processes that exited (a crash, a kill) under this
        // process as their adopted parent.
        palisade_actions::postgres::reap_exited_servers();
        let _ops = self.ops.lock().await;
        let alive = match db.is_running().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell whether the database runs");
                return false;
            }
        };
        // A MariaDB master confirmed read-only cannot write: to the
        // decisions it is as good as stopped (see `mariadb`).
        let running = alive && (db.mariadb().is_none() || !self.mariadb_read_only());
        let facts = Facts {
            desired: state.desired_role(&self.site),
            epoch: state.epoch,
            running,
            guard_alive: self.guard_alive(),
            handing_over: self.handover_epoch(&state),
        };
        let decision = {
            let mut st = self.st();
            let d = st.reconcile(mono_ms(), &facts);
            // Under the same lock as the decision: the guard's orders are
            // written in the order the lease changed.
            if let Decision::Fence { order, .. } = &d {
                self.order_guard(*order);
            }
            d
        };
        match decision {
            // Not while a failover runs: its target is the standby until
            // its promotion is recorded, and writable from the promotion.
            Decision::Idle
                if db.mariadb().is_some()
                    && running
                    && facts.desired == Some(DesiredRole::Standby)
                    && state.failover.is_none() =>
            {
                self.keep_read_only(db, state.epoch).await
            }
            Decision::Idle | Decision::LeaveToGuard => {}
            Decision::Serve { epoch } => {
                if self.kill_if_hung(db, epoch).await {
                    return true;
                }
                if db.mariadb().is_some() {
                    self.serve_mariadb(db, &state, epoch).await;
                } else {
                    self.manage_sync(db, epoch).await;
                }
            }
            Decision::StayDown => {
                tracing::warn!("primary database is down; on_primary_crash = \"failover\": leaving it down for the leader");
            }
            Decision::Start { epoch, after_crash } => {
                if after_crash {
                    tracing::warn!("primary database crashed; restarting it in place (on_primary_crash = \"restart\")");
                } else {
                    tracing::info!(epoch, "lease confirmed: starting the primary database");
                }
                match db.start(epoch).await {
                    Ok(detail) => {
                        tracing::info!(%detail, "primary database started");
                        if db.mariadb().is_some() {
                            self.mark_read_only(false);
                        }
                        self.st().serving();
                    }
                    Err(e) => tracing::error!(error = %e, "could not start the primary database"),
                }
            }
            Decision::ShutDownForHandover { epoch, current } => {
                self.shut_down_for_handover(db, epoch, current).await
            }
            Decision::Fence { epoch, .. } => {
                match facts.desired {
                    Some(DesiredRole::Primary { .. }) => {
                        tracing::warn!(epoch, "no confirmed lease: fencing the database")
                    }
                    _ => tracing::warn!(epoch, "this site must be fenced: stopping the database"),
                }
                self.kill(db, epoch).await;
            }
            Decision::Rejoin { epoch } if db.mariadb().is_some() => {
                self.rejoin_mariadb(db, &state, epoch, alive).await
            }
            Decision::Rejoin { epoch } => self.rejoin(db, &state, epoch, running).await,
        }
        false
    }

    /// A primary whose processes live but which has answered no local
    /// probe for `down_after` (a stopped or stuck postmaster accepts no new
    /// connection while its backends and WAL sender may go on) is killed
    /// like a crash: the next reconcile restarts it in place or leaves it
    /// down for the failover, as `on_primary_crash` says. The lease is not
    /// touched: the site stays primary. True when it was killed.
    async fn kill_if_hung(&self, db: &SiteDb<D>, epoch: u64) -> bool {
        let Some((obs, probed_at)) = self.latest.observation_at(&self.site) else {
            return false;
        };
        let timed_out = matches!(
            obs.reachability,
            palisade_core::observe::Reachability::Down {
                class: palisade_core::observe::ErrorClass::Timeout,
                ..
            }
        );
        let verdict = self.st().probed(
            probed_at,
            // A probe can take no longer than its timeout; one that took
            // longer was stalled in this process (a SIGSTOP), not by the
            // server.
            obs.latency_ms
                .min(self.settings.probe_local_timeout.as_millis() as u64),
            timed_out,
            db.has_processes(),
            self.settings.detector.down_after_ms,
        );
        let HungVerdict::Hung { for_ms } = verdict else {
            return false;
        };
        tracing::warn!(
            epoch,
            for_ms,
            policy = ?self.settings.detector.on_primary_crash,
            "primary HUNG: its processes live but it has answered no local probe for {for_ms} ms; killing it as a crash"
        );
        self.st().hang_handled();
        match db.fence(epoch, true).await {
            Ok(detail) => {
                tracing::warn!(%detail, "hung primary killed");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "COULD NOT KILL THE HUNG PRIMARY: a human must look");
                false
            }
        }
    }

    /// A planned handover away from this site: a clean fast shutdown, so
    /// that the standby receives the whole WAL (a kill would make the
    /// switchover abort). Bounded like any fence: fast, then immediate,
    /// then a kill.
    async fn shut_down_for_handover(&self, db: &SiteDb<D>, handover_epoch: u64, epoch: u64) {
        tracing::info!(
            epoch = handover_epoch,
            "planned handover: shutting the database down cleanly"
        );
        self.st().handing_over();
        match db.fence_for_handover(handover_epoch).await {
            Ok((detail, _)) => {
                self.handed_over(db, handover_epoch).await;
                tracing::warn!(%detail, "database fenced for a planned handover");
            }
            Err(e) => {
                tracing::error!(error = %e, "clean shutdown failed; killing it");
                self.fence_now(db, epoch).await;
            }
        }
    }

    /// A planned handover's fence is done. PostgreSQL: the server is
    /// stopped for good in `epoch`, and the guard kills any that appears.
    /// MariaDB: the fenced writer runs on read-only (the new writer still
    /// receives its last events from it), without a lease, like a standby.
    pub(super) async fn handed_over(&self, db: &SiteDb<D>, epoch: u64) {
        self.st().fenced();
        if db.mariadb().is_some() {
            self.mark_read_only(true);
            self.st().standby();
            self.stop_guard().await;
        } else {
            self.hard_order(epoch);
        }
    }

    /// The agent's fence once the lease is gone (a failover began, or the
    /// lease ran out): the core's bookkeeping and the guard's hard order
    /// first, then the kill. A planned handover's clean shutdown goes
    /// through `SiteDb::fence_for_handover` instead.
    async fn fence_now(&self, db: &SiteDb<D>, epoch: u64) -> Option<String> {
        {
            // No server of this site may run again before a new lease: the
            // guard kills one that does (a start already under way).
            let mut st = self.st();
            let order = st.fence(mono_ms(), epoch);
            self.order_guard(order);
        }
        self.kill(db, epoch).await
    }

    /// A kill of the postmaster and every backend at once, because a
    /// postmaster that ignores a fast shutdown may still have backends
    /// serving old sessions.
    async fn kill(&self, db: &SiteDb<D>, epoch: u64) -> Option<String> {
        match db.fence(epoch, true).await {
            Ok(detail) => {
                self.st().fenced();
                tracing::warn!(%detail, "database fenced");
                Some(detail)
            }
            Err(e) => {
                tracing::error!(error = %e, "FENCING FAILED: a human must look");
                None
            }
        }
    }

    /// Keeps the app's `monitorsEnabled` at the desired value. Not while a
    /// failover is under way: then the leader switches the old site off
    /// before the new one on, and the agents must not race it. This also
    /// runs first thing at start, so a returning old site is switched off
    /// before anything else happens.
    async fn reconcile_app(&self, state: &palisade_core::ClusterState) {
        let Some(app) = &self.app else { return };
        if state.failover.is_some() {
            return;
        }
        let Some(want) = state.desired_monitors(&self.site) else {
            return;
        };
        match app.monitors().await {
            Ok(Some(have)) if have == want => {}
            Ok(_) => match app.set_monitors(want).await {
                Ok(detail) => {
                    tracing::warn!(%detail, "monitorsEnabled reconciled to the cluster's intent")
                }
                Err(e) => tracing::error!(error = %e, "could not set monitorsEnabled"),
            },
            Err(e) => tracing::error!(error = %e, "cannot read monitorsEnabled"),
        }
    }
}
