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

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::detector::CrashPolicy;
use palisade_core::hung::{HungVerdict, HungWatch};
use palisade_core::lease::{lease_epoch, majority, Grant, QuorumLease};
use palisade_core::{DesiredRole, NodeId, SiteId, Step};
use palisade_raft::store::StateView;
use tokio_util::sync::CancellationToken;

use crate::clock::mono_ms;
use crate::config::{DatabaseSettings, RejoinPolicy, SyncStandbyDown};
use crate::lease::WitnessLease;
use crate::lease_guard::{GuardHandle, GuardOrder};
use crate::observer::Latest;
use crate::peer_msgs::{SiteAction, SiteActionDone};
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

struct AgentState {
    lease: QuorumLease,
    /// This agent stopped the database itself (lease lapse, fence order):
    /// it may start it again once leased. A database that stopped on its
    /// own crashed, and the crash policy decides.
    self_fenced: bool,
    /// The database was seen running while leased: a later "not running"
    /// is a crash.
    ran_leased: bool,
    /// Agent clock when this agent first learned its site is the desired
    /// primary: a database found running then gets one lease TTL to be
    /// confirmed before it is fenced.
    primary_since_ms: Option<u64>,
    /// After a failed rejoin, not before this (agent clock).
    rejoin_retry_at_ms: Option<u64>,
    /// The leader refused the lease for a planned handover of this epoch:
    /// shut down cleanly rather than kill.
    handover: Option<u64>,
    /// The lease guard's deadline (agent clock) and epoch: set by every
    /// confirmed lease, pulled to now by a refusal, cleared once the
    /// database is stopped. See [`Agent::guard_lease`].
    guard: Option<(u64, u64)>,
    /// The local probes of the primary: processes alive but no answer is
    /// a hang, treated as a crash once it lasts `down_after`.
    hung: HungWatch,
}

impl AgentState {
    fn new(quorum: usize) -> Self {
        Self {
            lease: QuorumLease::new(quorum),
            self_fenced: false,
            ran_leased: false,
            primary_since_ms: None,
            rejoin_retry_at_ms: None,
            handover: None,
            guard: None,
            hung: HungWatch::default(),
        }
    }

    /// Witness `witness` granted, for `epoch`, the renewal sent at
    /// `sent_ms`; the guard's deadline follows the quorum lease (it never
    /// moves back: a stale answer cannot shorten it, and only a refusal
    /// pulls it in).
    fn leased(
        &mut self,
        witness: NodeId,
        sent_ms: u64,
        epoch: u64,
        cfg: &palisade_core::lease::LeaseConfig,
    ) {
        self.lease.granted(witness, sent_ms, epoch);
        if let Some(until) = self.lease.valid_until_ms(epoch, cfg) {
            match self.guard {
                Some((g, e)) if e == epoch && g >= until => {}
                _ => self.guard = Some((until, epoch)),
            }
        }
    }
}

/// One site's agent.
pub struct Agent {
    site: SiteId,
    own_id: u64,
    db: Option<SiteDb>,
    settings: Arc<DatabaseSettings>,
    view: StateView,
    peers: Peers,
    /// This witness's own grant book: the agent's renewal to its own
    /// witness needs no network.
    witness_lease: Arc<WitnessLease>,
    state: Mutex<AgentState>,
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
}

impl Agent {
    /// An agent for `site`; `db` is `None` at a site without a database.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        site: SiteId,
        own_id: u64,
        db: Option<SiteDb>,
        settings: Arc<DatabaseSettings>,
        view: StateView,
        peers: Peers,
        witness_lease: Arc<WitnessLease>,
        latest: Latest,
        app: Option<crate::app::SiteApp>,
        guard: Option<GuardHandle>,
    ) -> Self {
        let quorum = majority(peers.ids().count() + 1);
        Self {
            site,
            own_id,
            db,
            settings,
            view,
            peers,
            witness_lease,
            state: Mutex::new(AgentState::new(quorum)),
            latest,
            app,
            sync_names: Mutex::new(None),
            sync_degrade: Mutex::new(None),
            in_force: Mutex::new(String::new()),
            ops: tokio::sync::Mutex::new(()),
            guard,
            guard_restart_at_ms: Mutex::new(0),
        }
    }

    /// Writes `order` for the lease guard and starts the guard if none
    /// runs. Called under the state lock, so orders are written in the
    /// order the lease changed.
    fn order_guard(&self, order: GuardOrder) {
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
    fn hard_order(&self, epoch: u64) {
        let _st = self.st();
        self.order_guard(GuardOrder {
            epoch,
            deadline_ms: mono_ms(),
            hard: true,
        });
    }

    /// Whether the lease guard process is alive (a fresh heartbeat).
    fn guard_alive(&self) -> bool {
        self.guard
            .as_ref()
            .and_then(GuardHandle::heartbeat_age_ms)
            .is_some_and(|age| age <= GUARD_STALE_MS)
    }

    /// Stops the lease guard: the site no longer holds a lease (its
    /// database is fenced for good, or runs as a standby, which needs
    /// none), and a guard holding a hard order would kill the standby.
    async fn stop_guard(&self) {
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

    fn st(&self) -> std::sync::MutexGuard<'_, AgentState> {
        self.state
            .lock()
            .expect("agent lock poisoned: a panic while holding it")
    }

    /// Margin before the lease's end at which the agent fences: a stop must
    /// be complete before the leader may promote elsewhere.
    fn fence_margin_ms(&self) -> u64 {
        self.settings.lease.ttl_ms / 4
    }

    /// Runs the reconcile loop until `cancel`.
    #[tracing::instrument(skip_all, fields(site = %self.site))]
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        if self.db.is_none() && self.app.is_none() {
            return;
        }
        loop {
            self.reconcile().await;
            let wait = self.next_wake();
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// A planned handover away from this site is under way and its fence
    /// is not recorded yet: the clean shutdown (each stage bounded: fast,
    /// immediate, kill) must not be killed half-way, which would abort the
    /// handover, and nothing is promoted before this agent confirms it (a
    /// handover never fences by lease expiry). Once the fence is recorded,
    /// or the handover is aborted, the guard acts again on the lease's own
    /// deadline.
    fn handing_over(&self) -> bool {
        self.view
            .cluster_state()
            .failover
            .is_some_and(|f| f.kind.is_planned() && f.from == self.site && !f.is_done(Step::Fenced))
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

    /// The lease guard: kills the database the moment the lease runs out
    /// (`ttl / 4` before its end, as the leader's wait assumes), whatever
    /// the reconcile loop or an order is doing. Those hold the operations
    /// lock and may wait on a hung server for seconds (a frozen primary
    /// makes `ALTER SYSTEM` hang until it thaws); the lease cannot wait for
    /// them. Killing takes no lock: it is idempotent, and a concurrent
    /// start or stop only fails. Found by the chaos suite's freeze scenario.
    pub async fn guard_lease(self: Arc<Self>, cancel: CancellationToken) {
        let Some(db) = &self.db else { return };
        loop {
            let now = mono_ms();
            let due = self
                .st()
                .guard
                .map(|(until, epoch)| (until.saturating_sub(self.fence_margin_ms()), epoch));
            let wait = match due {
                // Expired, and stays armed until a new lease or a handover
                // or rejoin disarms it: a server that comes up later (a
                // start decided under the old lease that only finished
                // now, while PID 1 reaped the last one) is killed too.
                Some((deadline, epoch)) if deadline <= now => {
                    if self.guard.is_some() && !self.guard_alive() {
                        self.restart_guard(now);
                    }
                    // The lease guard process freezes the server (and thaws
                    // it if the lease returns); only with that process dead
                    // does this task kill it.
                    if db.has_processes() && !self.handing_over() && !self.guard_alive() {
                        tracing::warn!(
                            epoch,
                            "lease guard: the lease ran out; killing the database"
                        );
                        self.st().lease.revoked();
                        match db.fence(epoch, true).await {
                            Ok(detail) => {
                                self.st().self_fenced = true;
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

    /// Sleep until the next renewal, or the fence deadline if sooner.
    fn next_wake(&self) -> Duration {
        let renew = self.settings.renew_interval;
        let st = self.st();
        match st.guard.map(|(until, _)| until) {
            Some(until) => {
                let deadline = until.saturating_sub(self.fence_margin_ms());
                let now = mono_ms();
                if deadline > now {
                    renew.min(Duration::from_millis(deadline - now))
                } else {
                    renew
                }
            }
            None => renew,
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
        self.answered(own, sent, epoch, Ok(grant));
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

    /// One witness's answer to the renewal sent at `sent`.
    fn answered(&self, witness: NodeId, sent: u64, epoch: u64, answer: Result<Grant, String>) {
        let mut st = self.st();
        match answer {
            Ok(Grant::Granted) => {
                let before = st.guard;
                st.leased(witness, sent, epoch, &self.settings.lease);
                if let Some((until, e)) = st.guard.filter(|g| Some(*g) != before) {
                    self.order_guard(GuardOrder {
                        epoch: e,
                        deadline_ms: until.saturating_sub(self.fence_margin_ms()),
                        hard: false,
                    });
                }
            }
            Ok(Grant::Refused { reason, handover }) => {
                if st.lease.is_valid(mono_ms(), epoch, &self.settings.lease) {
                    tracing::warn!(witness, %reason, "lease renewal refused: fencing");
                }
                st.lease.revoked();
                st.handover = handover;
                // A plain refusal (a failover away from this site is
                // committed): stop now, hard. A planned handover: the
                // guards hold off while its clean shutdown is under way
                // (see `handing_over`); nothing is promoted before this
                // agent confirms it.
                match handover {
                    None => {
                        if let Some((_, e)) = st.guard {
                            st.guard = Some((mono_ms(), e));
                        }
                        self.order_guard(GuardOrder {
                            epoch,
                            deadline_ms: mono_ms(),
                            hard: true,
                        });
                    }
                    Some(_) => self.order_guard(GuardOrder {
                        epoch,
                        deadline_ms: mono_ms() + HANDOVER_HOLD.as_millis() as u64,
                        hard: false,
                    }),
                }
            }
            Ok(Grant::Unknown { reason }) => {
                tracing::debug!(witness, %reason, "lease renewal neither granted nor refused")
            }
            Err(e) => tracing::debug!(witness, error = %e, "lease renewal failed"),
        }
    }

    /// Renews with every witness until a quorum grants `epoch`, within
    /// `within`: the new primary's lease, taken before it promotes, so that
    /// it is never writable unleased.
    async fn take_lease(self: &Arc<Self>, epoch: u64, within: Duration) -> Result<(), String> {
        let deadline = mono_ms() + within.as_millis() as u64;
        loop {
            self.clone().renew(epoch);
            // Soon again: a witness that had not applied the fence record
            // yet answered "unknown", and will grant once it has (a
            // commit's replication, a few ms); each round is cheap.
            let retry = mono_ms() + TAKE_LEASE_RETRY_MS;
            loop {
                let now = mono_ms();
                if self.st().lease.is_valid(
                    now + self.fence_margin_ms(),
                    epoch,
                    &self.settings.lease,
                ) {
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

    async fn reconcile(&self) {
        let state = self.view.cluster_state();
        self.reconcile_app(&state).await;
        let Some(db) = &self.db else { return };
        let desired = state.desired_role(&self.site);
        let _ops = self.ops.lock().await;
        let running = match db.is_running().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell whether the database runs");
                return;
            }
        };
        match desired {
            Some(DesiredRole::Primary { epoch }) => {
                let now = mono_ms();
                let (valid, in_grace, crashed) = {
                    let mut st = self.st();
                    let since = *st.primary_since_ms.get_or_insert(now);
                    let valid = st.lease.is_valid(
                        now + self.fence_margin_ms(),
                        epoch,
                        &self.settings.lease,
                    );
                    let in_grace = st
                        .lease
                        .valid_until_ms(epoch, &self.settings.lease)
                        .is_none()
                        && now < since + self.settings.lease.ttl_ms;
                    (valid, in_grace, st.ran_leased && !st.self_fenced)
                };
                if valid {
                    if running {
                        {
                            let mut st = self.st();
                            st.ran_leased = true;
                            st.self_fenced = false;
                        }
                        if self.kill_if_hung(db, epoch).await {
                            return;
                        }
                        self.manage_sync(db, epoch).await;
                    } else if crashed
                        && self.settings.detector.on_primary_crash == CrashPolicy::Failover
                    {
                        tracing::warn!("primary database is down; on_primary_crash = \"failover\": leaving it down for the leader");
                    } else {
                        if crashed {
                            tracing::warn!("primary database crashed; restarting it in place (on_primary_crash = \"restart\")");
                        } else {
                            tracing::info!(epoch, "lease confirmed: starting the primary database");
                        }
                        match db.start(epoch).await {
                            Ok(detail) => {
                                tracing::info!(%detail, "primary database started");
                                let mut st = self.st();
                                st.ran_leased = true;
                                st.self_fenced = false;
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "could not start the primary database")
                            }
                        }
                    }
                } else if running && !in_grace {
                    let handover = self.st().handover.take();
                    match handover {
                        Some(h) => self.shut_down_for_handover(db, h, state.epoch).await,
                        // Still the desired primary, its lease lapsed (a
                        // cut link, a slow majority): the lease guard
                        // holds the server frozen and thaws it when the
                        // lease returns, without a crash recovery.
                        None if self.guard_alive() => {}
                        None => {
                            tracing::warn!(epoch, "no confirmed lease: fencing the database");
                            self.fence_now(db, epoch).await;
                        }
                    }
                }
            }
            Some(DesiredRole::Fenced) if running => {
                self.st().primary_since_ms = None;
                if let Some(f) = state
                    .failover
                    .as_ref()
                    .filter(|f| f.kind.is_planned() && !f.is_done(Step::Fenced))
                {
                    // A planned handover: the leader's order shuts it down
                    // cleanly so the standby gets the whole WAL; killing it
                    // here would abort the switchover. The lease still
                    // bounds it: not leased, it is killed once that runs out.
                    self.shut_down_for_handover(db, f.epoch, state.epoch).await;
                    return;
                }
                tracing::warn!(
                    epoch = state.epoch,
                    "this site must be fenced: stopping the database"
                );
                self.fence_now(db, state.epoch).await;
            }
            Some(DesiredRole::Rejoin { epoch }) => {
                self.st().primary_since_ms = None;
                self.rejoin(db, &state, epoch, running).await;
            }
            _ => {}
        }
    }

    /// A primary whose processes live but which has answered no local
    /// probe for `down_after` (a stopped or stuck postmaster accepts no new
    /// connection while its backends and WAL sender may go on) is killed
    /// like a crash: the next reconcile restarts it in place or leaves it
    /// down for the failover, as `on_primary_crash` says. The lease is not
    /// touched: the site stays primary. True when it was killed.
    async fn kill_if_hung(&self, db: &SiteDb, epoch: u64) -> bool {
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
        let verdict = self.st().hung.observe(
            probed_at,
            // A probe can take no longer than its timeout; one that took
            // longer was stalled in this process (a SIGSTOP), not by the
            // server.
            obs.latency_ms
                .min(self.settings.probe_timeout.as_millis() as u64),
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
        self.st().hung.reset();
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
    async fn shut_down_for_handover(&self, db: &SiteDb, handover_epoch: u64, epoch: u64) {
        tracing::info!(
            epoch = handover_epoch,
            "planned handover: shutting the database down cleanly"
        );
        self.st().lease.revoked();
        match db.fence_for_handover(handover_epoch).await {
            Ok((detail, _)) => {
                self.st().self_fenced = true;
                self.hard_order(handover_epoch);
                tracing::warn!(%detail, "database shut down for a planned handover");
            }
            Err(e) => {
                tracing::error!(error = %e, "clean shutdown failed; killing it");
                self.fence_now(db, epoch).await;
            }
        }
    }

    /// The old primary after a failover: never writable again until it is
    /// rebuilt as a standby of the new primary. With `rejoin = "automatic"`
    /// the agent rebuilds it (`pg_rewind`, else a base backup); the leader
    /// then sees it stream and records it as the standby.
    async fn rejoin(
        &self,
        db: &SiteDb,
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
        self.st().guard = None;
        self.stop_guard().await;
        if self.settings.rejoin == RejoinPolicy::Manual {
            return;
        }
        {
            let st = self.st();
            if st.rejoin_retry_at_ms.is_some_and(|t| mono_ms() < t) {
                return;
            }
        }
        let Some(primary) = state
            .db
            .as_ref()
            .and_then(|d| self.settings.at(&d.primary.0))
        else {
            return;
        };
        let Some(upstream) = primary.replication_conninfo.as_deref() else {
            if self.st().rejoin_retry_at_ms.is_none() {
                tracing::error!(primary = %primary.site, "cannot rejoin: [[database]] replication_conninfo of the new primary is not configured; rebuild this standby by hand");
                self.st().rejoin_retry_at_ms = Some(u64::MAX);
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
                    tracing::warn!(%detail, upstream = %primary.site, "rebuilt as a standby of the new primary");
                }
                self.st().rejoin_retry_at_ms = None;
            }
            Err(e) => {
                tracing::error!(error = %e, "rejoin failed; retrying in {} s", REJOIN_RETRY.as_secs());
                self.st().rejoin_retry_at_ms = Some(mono_ms() + REJOIN_RETRY.as_millis() as u64);
            }
        }
    }

    /// In `sync` mode, keeps `synchronous_standby_names` naming the standby
    /// while it can acknowledge; when it cannot, `block` keeps it (writes
    /// wait, nothing acknowledged can be lost) and `degrade` clears it
    /// (writes go on asynchronously, logged as a degradation). "Cannot" is
    /// decided on evidence by `palisade_core::sync_degrade`: the standby
    /// does not stream, or commits have waited `sync_degrade_after_ms`
    /// while its acknowledged position stood still (a cut link or a hung
    /// standby, which the primary only notices at `wal_sender_timeout`).
    /// It comes back once the standby acknowledges again and has caught up.
    async fn manage_sync(&self, db: &SiteDb, epoch: u64) {
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

    /// The agent's fence once the lease is gone (a failover began, or the
    /// lease ran out): a kill of the postmaster and every backend at once,
    /// because a postmaster that ignores a fast shutdown may still have
    /// backends serving old sessions. A planned handover's clean shutdown
    /// goes through `SiteDb::fence_for_handover` instead.
    async fn fence_now(&self, db: &SiteDb, epoch: u64) -> Option<String> {
        {
            // No server of this site may run again before a new lease: the
            // guard kills one that does (a start already under way).
            let mut st = self.st();
            st.lease.revoked();
            if let Some((_, e)) = st.guard {
                st.guard = Some((mono_ms(), e));
            }
            self.order_guard(GuardOrder {
                epoch,
                deadline_ms: mono_ms(),
                hard: true,
            });
        }
        match db.fence(epoch, true).await {
            Ok(detail) => {
                self.st().self_fenced = true;
                tracing::warn!(%detail, "database fenced");
                Some(detail)
            }
            Err(e) => {
                tracing::error!(error = %e, "FENCING FAILED: a human must look");
                None
            }
        }
    }

    /// The replication mode this primary's agent keeps in force (`sync`
    /// mode only; empty otherwise).
    pub fn replication_in_force(&self) -> String {
        self.in_force.lock().expect("sync lock poisoned").clone()
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

    /// Waits (briefly) until this witness has applied `epoch`.
    async fn wait_epoch(&self, epoch: u64) -> Result<palisade_core::ClusterState, String> {
        let deadline = mono_ms() + EPOCH_WAIT.as_millis() as u64;
        loop {
            let s = self.view.cluster_state();
            if s.epoch >= epoch {
                return Ok(s);
            }
            if mono_ms() > deadline {
                return Err(format!(
                    "epoch {epoch} not applied here (still at {})",
                    s.epoch
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Carries out the leader's order for a committed epoch. Idempotent:
    /// a new leader may repeat an order its predecessor already gave.
    #[tracing::instrument(skip_all, fields(site = %self.site, epoch = action.epoch()))]
    pub async fn act(self: Arc<Self>, action: SiteAction) -> Result<SiteActionDone, String> {
        let state = self.wait_epoch(action.epoch()).await?;
        let no_app = || format!("site {} has no [[app]] configured", self.site);
        match &action {
            SiteAction::SetMonitors { enabled, .. } => {
                let app = self.app.as_ref().ok_or_else(no_app)?;
                if *enabled
                    && state
                        .desired_role(&self.site)
                        .is_none_or(|r| !matches!(r, DesiredRole::Primary { .. }))
                {
                    return Err(format!(
                        "refusing monitorsEnabled=true: site {} is not the desired primary",
                        self.site
                    ));
                }
                return app.set_monitors(*enabled).await.map(SiteActionDone::said);
            }
            SiteAction::RepointSearch {
                hosts,
                ccr_url,
                indices,
                ..
            } => {
                let app = self.app.as_ref().ok_or_else(no_app)?;
                return app
                    .repoint_search(hosts, ccr_url, indices)
                    .await
                    .map(SiteActionDone::said);
            }
            SiteAction::ReadMonitors { .. } => {
                let app = self.app.as_ref().ok_or_else(no_app)?;
                return app.monitors().await.map(|v| {
                    SiteActionDone::said(
                        v.map(|b| b.to_string()).unwrap_or_else(|| "absent".into()),
                    )
                });
            }
            SiteAction::Fence { .. } | SiteAction::Promote { .. } => {}
        }
        let Some(db) = &self.db else {
            return Err(format!("site {} has no database", self.site));
        };
        let _ops = self.ops.lock().await;
        match action {
            SiteAction::Fence { epoch, planned } => {
                if matches!(
                    state.desired_role(&self.site),
                    Some(DesiredRole::Primary { .. })
                ) {
                    return Err(format!(
                        "refusing to fence: site {} is the desired primary in epoch {}",
                        self.site, state.epoch
                    ));
                }
                if planned {
                    self.st().lease.revoked();
                    let (detail, lsn) = db.fence_for_handover(epoch).await?;
                    self.st().self_fenced = true;
                    self.hard_order(epoch);
                    tracing::warn!(%detail, "database shut down for a planned handover");
                    return Ok(SiteActionDone { detail, lsn });
                }
                self.fence_now(db, epoch)
                    .await
                    .map(SiteActionDone::said)
                    .ok_or_else(|| "fence failed; see the agent's log".to_string())
            }
            SiteAction::Promote { epoch } => {
                let ordered = state.failover.as_ref().is_some_and(|f| {
                    f.epoch == epoch && f.to == self.site && f.is_done(Step::Fenced)
                });
                let already =
                    state.desired_role(&self.site) == Some(DesiredRole::Primary { epoch });
                if !ordered && !already {
                    return Err(format!("refusing to promote: no failover of epoch {epoch} to site {} with the old primary fenced", self.site));
                }
                // The quorum lease first: a promoted server is never
                // writable without one (the witnesses grant it once they
                // applied the fence record).
                self.take_lease(epoch, EPOCH_WAIT).await?;
                let detail = db.promote(epoch).await?;
                let mut st = self.st();
                st.ran_leased = true;
                st.self_fenced = false;
                Ok(SiteActionDone::said(detail))
            }
            _ => Err("unexpected action".into()),
        }
    }
}
