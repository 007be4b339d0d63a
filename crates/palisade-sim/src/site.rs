//! A database site's agent, carried out as the daemon's
//! (`crates/palisade/src/agent/`) carries it out. It lives in its site's
//! witness process (dies, pauses and restarts with it) and runs four
//! things at once:
//!
//! * the **reconcile loop**: reads the applied state, keeps the app's
//!   `monitorsEnabled` (not during a failover), takes the operations lock,
//!   asks `SiteAgent::reconcile` and carries the decision out (start,
//!   kill, kill a hung primary, set the synchronous standby by
//!   `SyncDegrade`, rejoin), then sleeps `SiteAgent::next_wake_ms`;
//! * **keep_lease**: every `renew_interval`, while `lease_epoch` lets the
//!   site hold a lease, a renewal to every witness (its own without the
//!   network), each answer fed to `SiteAgent::answered`, whose order is
//!   written to the lease guard (started if it is not running);
//! * its own **lease guard task**: at the lease's deadline, if the guard
//!   process is dead (no heartbeat for 500 ms), `SiteAgent::must_kill`
//!   kills, and the guard is restarted at most once a second;
//! * the leader's **orders** (`act`): wait (3 s at most) for the epoch to be
//!   applied, take the operations lock, `may_fence` then fence, or
//!   `may_promote`, take the lease (renewing every 50 ms, 3 s at most), then
//!   promote; `monitorsEnabled` with `may_enable_monitors`.
//!
//! Database operations take time and are serialized by the lock as in the
//! daemon; a kill by the lease guard task takes no lock.

use std::collections::{BTreeMap, VecDeque};

use palisade_core::detector::{CrashPolicy, ReplicationMode};
use palisade_core::hung::HungVerdict;
use palisade_core::lease::{lease_epoch, Grant};
use palisade_core::lease_guard::GuardOrder;
use palisade_core::observe::{ErrorClass, Reachability};
use palisade_core::site_agent::{
    may_enable_monitors, may_fence, may_promote, AgentConfig, Decision, Facts, SiteAgent,
};
use palisade_core::sync_degrade::{SyncDecision, SyncDegrade, SyncSample};
use palisade_core::ClusterState;
use rand::Rng;

use crate::database::{DbOpKind, Requester};
use crate::history::Holder;
use crate::network::{
    node_id, site_id, site_name, Endpoint, Purpose, Req, Resp, RpcError, SiteAction,
};
use crate::world::{WTimer, World};
use crate::{Flaw, Settings};

/// How long an order waits for its epoch to be applied (`EPOCH_WAIT`).
const EPOCH_WAIT_MS: u64 = 3000;
/// How soon a new primary's agent asks again for its lease.
const TAKE_LEASE_RETRY_MS: u64 = 50;
/// A guard without a heartbeat this long is dead for the agent.
pub const GUARD_STALE_MS: u64 = 500;
/// How often the agent's own guard task looks, once the deadline passed.
const GUARD_POLL_MS: u64 = 20;
/// Wait after a failed rejoin.
const REJOIN_RETRY_MS: u64 = 10_000;

/// An agent timer.
#[derive(Clone, Copy, Debug)]
pub enum AgentTimer {
    /// The reconcile loop wakes.
    Reconcile,
    /// keep_lease's interval ticks.
    Renew,
    /// The agent's own lease guard task looks.
    GuardTask,
    /// Order `id` looks again (its epoch, or its lease).
    Act(u64),
}

/// Who waits for (or holds) the operations lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockHolder {
    /// The reconcile loop.
    Reconcile,
    /// Order `id`.
    Act(u64),
}

/// The reconcile loop's phase.
#[derive(Debug)]
pub enum RecPhase {
    /// Sleeping until its next wake.
    Sleeping,
    /// Waiting for the lock, with the state it read before.
    WaitLock(Box<ClusterState>),
    /// A database operation under way.
    Busy(RecOp),
}

/// What the reconcile loop's database operation is.
#[derive(Debug)]
pub enum RecOp {
    /// Killing a hung primary.
    Hung,
    /// Setting `synchronous_standby_names` (named or cleared).
    Sync(bool),
    /// Starting the primary.
    Start,
    /// Fencing (a kill).
    Kill,
    /// The rejoin's fence first, then the rebuild.
    RejoinFence(Box<ClusterState>, u64),
    /// The rebuild.
    Rejoin,
}

/// An order's phase.
#[derive(Debug, PartialEq, Eq)]
pub enum ActPhase {
    /// Waiting for this witness to apply the order's epoch, until then
    /// (local).
    WaitEpoch(u64),
    /// Waiting for the operations lock.
    WaitLock,
    /// Killing the database.
    Killing,
    /// Renewing until a quorum grants the new epoch, until then (local).
    TakingLease(u64),
    /// Promoting.
    Promoting,
}

/// A leader's order being carried out.
#[derive(Debug)]
pub struct Act {
    /// The order.
    pub action: SiteAction,
    /// Who asked, to answer.
    pub caller: Endpoint,
    /// The call to answer.
    pub call: u64,
    /// Where it stands.
    pub phase: ActPhase,
    /// The state `wait_epoch` returned.
    pub state: Option<Box<ClusterState>>,
}

/// One site's agent.
#[derive(Debug)]
pub struct Agent {
    /// Its incarnation.
    pub id: u64,
    /// Its site.
    pub site: usize,
    /// The core's decisions and their memory.
    pub core: SiteAgent,
    /// Sync mode's degrade decision of the primary term (epoch) it was
    /// built in.
    pub sync: Option<(u64, SyncDegrade)>,
    /// What it last set `synchronous_standby_names` to (named or not).
    pub sync_names: Option<bool>,
    /// Who holds the operations lock.
    pub lock: Option<LockHolder>,
    /// Who waits for it, in order.
    pub queue: VecDeque<LockHolder>,
    /// The reconcile loop.
    pub rec: RecPhase,
    /// Orders under way.
    pub acts: BTreeMap<u64, Act>,
    /// When it may next restart a dead lease guard (local).
    pub guard_restart_at: u64,
    /// When its guard task is next scheduled (real).
    pub guard_task_at: Option<u64>,
    /// The last decision traced.
    pub last_decision: String,
}

impl Agent {
    /// A new agent (a start or a restart of its witness): no lease.
    pub fn new(id: u64, site: usize, settings: &Settings) -> Self {
        let cfg = AgentConfig {
            lease: settings.lease,
            crash_policy: CrashPolicy::Restart,
            handover_hold_ms: 40_000,
        };
        Self {
            id,
            site,
            core: SiteAgent::new(3, cfg),
            sync: None,
            sync_names: None,
            lock: None,
            queue: VecDeque::new(),
            rec: RecPhase::Sleeping,
            acts: BTreeMap::new(),
            guard_restart_at: 0,
            guard_task_at: None,
            last_decision: String::new(),
        }
    }
}

impl World {
    fn agent(&mut self, w: usize) -> &mut Agent {
        self.witnesses[w]
            .agent
            .as_mut()
            .expect("an agent timer or answer runs only while it exists")
    }

    fn agent_id(&self, w: usize) -> Option<u64> {
        self.witnesses[w]
            .agent
            .as_ref()
            .filter(|_| self.witnesses[w].alive)
            .map(|a| a.id)
    }

    fn agent_timer_in(&mut self, w: usize, ms: u64, t: AgentTimer) {
        let agent = self.agent(w).id;
        self.w_timer(w, ms, WTimer::Agent { agent, t });
    }

    /// The agent's tasks start (its witness process started).
    pub fn agent_started(&mut self, w: usize) {
        self.agent_timer_in(w, 1, AgentTimer::Reconcile);
        self.agent_timer_in(w, 0, AgentTimer::Renew);
    }

    /// An agent timer fired.
    pub fn agent_timer(&mut self, w: usize, t: AgentTimer) {
        match t {
            AgentTimer::Reconcile => self.reconcile_begin(w),
            AgentTimer::Renew => {
                let state = &self.witnesses[w].state;
                if let Some(epoch) = lease_epoch(state, &site_id(w)) {
                    self.renew(w, epoch);
                }
                let every = self.settings.renew_interval_ms;
                self.agent_timer_in(w, every, AgentTimer::Renew);
            }
            AgentTimer::GuardTask => {
                self.agent(w).guard_task_at = None;
                self.guard_task(w);
            }
            AgentTimer::Act(id) => self.act_poll(w, id),
        }
    }

    // ----- the operations lock -----

    fn acquire(&mut self, w: usize, h: LockHolder) {
        let a = self.agent(w);
        if a.lock.is_none() {
            a.lock = Some(h);
            self.locked(w, h);
        } else {
            a.queue.push_back(h);
        }
    }

    fn release(&mut self, w: usize) {
        let a = self.agent(w);
        a.lock = a.queue.pop_front();
        if let Some(h) = a.lock {
            self.locked(w, h);
        }
    }

    fn locked(&mut self, w: usize, h: LockHolder) {
        match h {
            LockHolder::Reconcile => self.reconcile_locked(w),
            LockHolder::Act(id) => self.act_locked(w, id),
        }
    }

    // ----- the reconcile loop -----

    fn reconcile_begin(&mut self, w: usize) {
        let state = self.witnesses[w].state.clone();
        self.reconcile_app(w, &state);
        self.agent(w).rec = RecPhase::WaitLock(Box::new(state));
        self.acquire(w, LockHolder::Reconcile);
    }

    /// `monitorsEnabled` to the desired value, except while a failover runs.
    fn reconcile_app(&mut self, w: usize, state: &ClusterState) {
        if state.failover.is_some() {
            return;
        }
        let Some(want) = state.desired_monitors(&site_id(w)) else {
            return;
        };
        if self.apps[w] != want {
            self.apps[w] = want;
            self.trace(format!(
                "agent {}: monitorsEnabled reconciled to {want}",
                site_name(w)
            ));
        }
    }

    fn reconcile_locked(&mut self, w: usize) {
        let RecPhase::WaitLock(state) =
            std::mem::replace(&mut self.agent(w).rec, RecPhase::Sleeping)
        else {
            unreachable!("the reconcile loop takes the lock only from WaitLock");
        };
        let running = self.dbs[w].has_processes();
        let facts = Facts {
            desired: state.desired_role(&site_id(w)),
            epoch: state.epoch,
            running,
            guard_alive: self.guard_alive(w),
            handing_over: None,
        };
        let now = self.local(w);
        let d = self.agent(w).core.reconcile(now, &facts);
        if let Decision::Fence { order, .. } = &d {
            self.order_guard(w, *order);
        }
        self.trace_decision(w, &d, &facts);
        match d {
            Decision::Idle
            | Decision::LeaveToGuard
            | Decision::StayDown
            | Decision::ShutDownForHandover { .. } => self.reconcile_done(w),
            Decision::Serve { epoch } => {
                if self.kill_if_hung(w, epoch) {
                    return;
                }
                match self.manage_sync(w, epoch) {
                    Some(named) => {
                        self.agent(w).rec = RecPhase::Busy(RecOp::Sync(named));
                        self.db_op(w, DbOpKind::SetSync(named), self.rec_req(w));
                    }
                    None => self.reconcile_done(w),
                }
            }
            Decision::Start { .. } => {
                self.agent(w).rec = RecPhase::Busy(RecOp::Start);
                self.db_op(w, DbOpKind::Start, self.rec_req(w));
            }
            Decision::Fence { .. } => {
                self.agent(w).rec = RecPhase::Busy(RecOp::Kill);
                self.db_op(w, DbOpKind::Kill, self.rec_req(w));
            }
            Decision::Rejoin { epoch } => self.rejoin_begin(w, *state, epoch, running),
        }
    }

    fn trace_decision(&mut self, w: usize, d: &Decision, facts: &Facts) {
        let kind = match d {
            Decision::Idle => "idle".to_string(),
            Decision::Serve { epoch } => format!("serve (epoch {epoch})"),
            Decision::Start { epoch, after_crash } => {
                format!("start (epoch {epoch}, after crash {after_crash})")
            }
            Decision::StayDown => "stay down".into(),
            Decision::ShutDownForHandover { .. } => "shut down for handover".into(),
            Decision::LeaveToGuard => "lease lapsed: leave to the guard".into(),
            Decision::Fence { epoch, .. } => format!("fence (epoch {epoch})"),
            Decision::Rejoin { epoch } => format!("rejoin (epoch {epoch})"),
        };
        if self.agent(w).last_decision != kind {
            self.agent(w).last_decision = kind.clone();
            self.trace(format!(
                "agent {}: {kind} (desired {:?}, running {})",
                site_name(w),
                facts.desired,
                facts.running
            ));
        }
    }

    fn rec_req(&self, w: usize) -> Requester {
        Requester::Reconcile {
            w,
            agent: self.witnesses[w].agent.as_ref().map_or(0, |a| a.id),
        }
    }

    fn reconcile_done(&mut self, w: usize) {
        self.agent(w).rec = RecPhase::Sleeping;
        self.release(w);
        let now = self.local(w);
        let renew = self.settings.renew_interval_ms;
        let wait = self.agent(w).core.next_wake_ms(now, renew);
        self.agent_timer_in(w, wait, AgentTimer::Reconcile);
    }

    /// A primary whose processes live but that answered no local probe for
    /// `down_after` is killed like a crash (`kill_if_hung`).
    fn kill_if_hung(&mut self, w: usize, epoch: u64) -> bool {
        let Some((obs, at)) = self.witnesses[w].obs.latest.get(&w).cloned() else {
            return false;
        };
        let timed_out = matches!(
            obs.reachability,
            Reachability::Down {
                class: ErrorClass::Timeout,
                ..
            }
        );
        let alive = self.dbs[w].has_processes();
        let latency = obs.latency_ms.min(self.settings.probe_timeout_ms);
        let down_after = self.settings.detector.down_after_ms;
        let verdict = self
            .agent(w)
            .core
            .probed(at, latency, timed_out, alive, down_after);
        let HungVerdict::Hung { for_ms } = verdict else {
            return false;
        };
        self.trace(format!(
            "agent {}: primary HUNG for {for_ms} ms (epoch {epoch}): killing it as a crash",
            site_name(w)
        ));
        self.agent(w).core.hang_handled();
        self.agent(w).rec = RecPhase::Busy(RecOp::Hung);
        self.db_op(w, DbOpKind::Kill, self.rec_req(w));
        true
    }

    /// Sync mode: the setting `SyncDegrade` wants, if it must change
    /// (`manage_sync`, `sync_standby_down = "degrade"`).
    fn manage_sync(&mut self, w: usize, epoch: u64) -> Option<bool> {
        if self.settings.detector.replication != ReplicationMode::Sync {
            return None;
        }
        let standby = site_name(1 - w);
        let sample = self.witnesses[w]
            .obs
            .latest
            .get(&w)
            .and_then(|(o, at)| SyncSample::from_observation(*at, o, standby));
        let after = self.settings.sync_degrade_after_ms;
        let a = self.agent(w);
        if a.sync.as_ref().is_some_and(|(e, _)| *e != epoch) {
            a.sync = None;
        }
        let (_, machine) = a
            .sync
            .get_or_insert_with(|| (epoch, SyncDegrade::new(after)));
        let before = machine.decision();
        if let Some(s) = sample {
            machine.observe(s);
        }
        if !machine.has_evidence() {
            return None;
        }
        let decision = machine.decision();
        let want = matches!(decision, SyncDecision::Sync);
        let changed = a.sync_names != Some(want);
        if decision != before {
            let what = match decision {
                SyncDecision::Sync => "back to sync".to_string(),
                SyncDecision::Degrade { reason, .. } => format!("DEGRADE to async: {reason}"),
            };
            self.trace(format!("agent {}: sync mode: {what}", site_name(w)));
        }
        changed.then_some(want)
    }

    fn rejoin_begin(&mut self, w: usize, state: ClusterState, epoch: u64, running: bool) {
        let own = self.witnesses[w].obs.latest.get(&w).map(|(o, _)| o.clone());
        let is_standby = own.as_ref().is_some_and(|o| o.in_recovery == Some(true));
        if running && own.as_ref().is_some_and(|o| o.is_streaming()) {
            self.stop_guard(w);
            return self.reconcile_done(w);
        }
        if running && !is_standby {
            let now = self.local(w);
            let order = self.agent(w).core.fence(now, epoch);
            self.order_guard(w, order);
            self.agent(w).rec = RecPhase::Busy(RecOp::RejoinFence(Box::new(state), epoch));
            return self.db_op(w, DbOpKind::Kill, self.rec_req(w));
        }
        self.rejoin_continue(w, &state);
    }

    fn rejoin_continue(&mut self, w: usize, state: &ClusterState) {
        self.agent(w).core.standby();
        self.stop_guard(w);
        let now = self.local(w);
        if !self.agent(w).core.may_rejoin(now) {
            return self.reconcile_done(w);
        }
        let Some(primary) = state
            .db
            .as_ref()
            .map(|d| crate::network::site_index(&d.primary))
        else {
            return self.reconcile_done(w);
        };
        self.agent(w).rec = RecPhase::Busy(RecOp::Rejoin);
        self.db_op(w, DbOpKind::Rejoin { upstream: primary }, self.rec_req(w));
    }

    /// The reconcile loop's database operation finished.
    pub fn rec_op_done(&mut self, w: usize, agent: u64, result: Result<String, String>) {
        if self.agent_id(w) != Some(agent) {
            return;
        }
        let op = std::mem::replace(&mut self.agent(w).rec, RecPhase::Sleeping);
        let RecPhase::Busy(op) = op else {
            unreachable!("a reconcile operation finishes only while busy");
        };
        let now = self.local(w);
        let ok = result.is_ok();
        match op {
            RecOp::Kill => {
                if ok {
                    self.agent(w).core.fenced()
                }
            }
            RecOp::Hung => {}
            RecOp::Sync(named) => {
                if ok {
                    self.agent(w).sync_names = Some(named);
                }
            }
            RecOp::Start => {
                if ok {
                    self.agent(w).core.serving();
                }
            }
            RecOp::RejoinFence(state, _) => {
                if ok {
                    self.agent(w).core.fenced();
                }
                return self.rejoin_continue(w, &state);
            }
            RecOp::Rejoin => match &result {
                Ok(_) => self.agent(w).core.rejoined(),
                Err(e) => {
                    self.trace(format!("agent {}: rejoin failed: {e}", site_name(w)));
                    self.agent(w).core.rejoin_failed(now + REJOIN_RETRY_MS)
                }
            },
        }
        self.reconcile_done(w);
    }

    // ----- the lease -----

    /// One renewal for `epoch` to every witness (its own at once), each
    /// grant counted from now, the send time.
    fn renew(&mut self, w: usize, epoch: u64) {
        let sent = self.local(w);
        let own = self.witness_renew(w, w, epoch, Holder::Agent, sent);
        self.answered(w, w, sent, epoch, own);
        let agent = self.agent(w).id;
        let timeout = self.settings.renew_interval_ms;
        for p in (0..3).filter(|p| *p != w) {
            self.call(
                Endpoint::Witness(w),
                Endpoint::Witness(p),
                Req::Renew {
                    site: w,
                    epoch,
                    sent,
                },
                timeout,
                Purpose::AgentRenew {
                    site: w,
                    agent,
                    sent,
                    epoch,
                    witness: p,
                },
            );
        }
    }

    /// A peer witness's answer to an agent's renewal.
    pub fn agent_renew_answer(
        &mut self,
        site: usize,
        agent: u64,
        sent: u64,
        epoch: u64,
        witness: usize,
        result: Result<Resp, RpcError>,
    ) {
        if self.agent_id(site) != Some(agent) {
            return;
        }
        if let Ok(Resp::Grant(g)) = result {
            self.answered(site, witness, sent, epoch, g);
        }
    }

    fn answered(&mut self, w: usize, witness: usize, sent: u64, epoch: u64, grant: Grant) {
        let now = self.local(w);
        if let Grant::Refused { reason, .. } = &grant {
            if self.agent(w).core.leased(now, epoch) {
                self.trace(format!(
                    "agent {}: renewal refused by W{}: {reason}",
                    site_name(w),
                    site_name(witness)
                ));
            }
        }
        let order = self
            .agent(w)
            .core
            .answered(now, node_id(witness), sent, epoch, &grant);
        if let Some(order) = order {
            self.order_guard(w, order);
        }
        let taking: Vec<u64> = self
            .agent(w)
            .acts
            .iter()
            .filter(|(_, a)| matches!(a.phase, ActPhase::TakingLease(_)))
            .map(|(id, _)| *id)
            .collect();
        for id in taking {
            self.take_lease_check(w, id);
        }
    }

    /// Writes `order` for site `w`'s lease guard, starting the guard if none
    /// runs (`order_guard`).
    fn order_guard(&mut self, w: usize, order: GuardOrder) {
        let now = self.local(w);
        self.guards[w].order = Some((order, now));
        if order.hard {
            self.trace(format!(
                "agent {}: hard order to the guard (epoch {})",
                site_name(w),
                order.epoch
            ));
        }
        if !self.guards[w].alive {
            self.start_guard(w);
        }
        self.guard_kick(w);
        self.guard_task_kick(w);
    }

    /// Whether site `w`'s guard is alive for its agent (a heartbeat younger
    /// than 500 ms).
    pub fn guard_alive(&self, w: usize) -> bool {
        let g = &self.guards[w];
        g.alive || self.now.saturating_sub(g.dead_since) <= GUARD_STALE_MS
    }

    fn guard_task_kick(&mut self, w: usize) {
        let at = self.now + self.rng.random_range(0..=GUARD_POLL_MS);
        self.schedule_guard_task(w, at);
    }

    fn schedule_guard_task(&mut self, w: usize, at: u64) {
        let a = self.agent(w);
        if a.guard_task_at.is_some_and(|t| t <= at) {
            return;
        }
        a.guard_task_at = Some(at);
        let agent = a.id;
        let inc = self.witnesses[w].inc;
        self.push(
            at,
            crate::world::Ev::W {
                w,
                inc,
                t: WTimer::Agent {
                    agent,
                    t: AgentTimer::GuardTask,
                },
            },
        );
    }

    /// The agent's own lease guard task (`guard_lease`).
    fn guard_task(&mut self, w: usize) {
        let now = self.local(w);
        let due = self.agent(w).core.guard_due();
        match due {
            Some((deadline, _)) if deadline <= now => {
                let alive = self.guard_alive(w);
                if !alive && now >= self.agent(w).guard_restart_at {
                    self.agent(w).guard_restart_at = now + 1000;
                    self.trace(format!(
                        "agent {}: the lease guard is not running: starting it again",
                        site_name(w)
                    ));
                    self.start_guard(w);
                }
                let procs = self.dbs[w].has_processes();
                let kill = self.agent(w).core.must_kill(now, procs, false, alive);
                if let (Some(epoch), false) = (kill, self.flaw == Flaw::NoLeaseEnforcement) {
                    self.trace(format!(
                        "agent {}: lease guard task: the lease ran out (epoch {epoch}); killing the database",
                        site_name(w)
                    ));
                    self.agent(w).core.lapsed();
                    let agent = self.agent(w).id;
                    self.db_op(w, DbOpKind::Kill, Requester::GuardTask { w, agent });
                }
                let at = self.clocks[w].after(self.now, GUARD_POLL_MS);
                self.schedule_guard_task(w, at);
            }
            Some((deadline, _)) => {
                let at = self.clocks[w].real_at(self.now, deadline);
                self.schedule_guard_task(w, at);
            }
            None => {}
        }
    }

    /// The guard task's kill finished.
    pub fn guard_task_kill_done(&mut self, w: usize, agent: u64, result: Result<String, String>) {
        if self.agent_id(w) == Some(agent) && result.is_ok() {
            self.agent(w).core.fenced();
        }
    }

    // ----- the leader's orders -----

    /// An order reached witness `w`'s agent.
    pub fn act(&mut self, w: usize, action: SiteAction, caller: Endpoint, call: u64) {
        if w >= 2 || self.witnesses[w].agent.is_none() {
            let e = format!("site {} has no database", site_name(w));
            return self.reply(Endpoint::Witness(w), caller, call, Resp::Done(Err(e)));
        }
        let id = self.next_id();
        let deadline = self.local(w) + EPOCH_WAIT_MS;
        self.agent(w).acts.insert(
            id,
            Act {
                action,
                caller,
                call,
                phase: ActPhase::WaitEpoch(deadline),
                state: None,
            },
        );
        self.act_poll(w, id);
    }

    fn act_reply(&mut self, w: usize, id: u64, result: Result<String, String>) {
        let Some(act) = self.agent(w).acts.remove(&id) else {
            return;
        };
        let locked = self.agent(w).lock == Some(LockHolder::Act(id));
        self.reply(
            Endpoint::Witness(w),
            act.caller,
            act.call,
            Resp::Done(result),
        );
        if locked {
            self.release(w);
        }
    }

    fn act_poll(&mut self, w: usize, id: u64) {
        let now = self.local(w);
        let Some(act) = self.agent(w).acts.get(&id) else {
            return;
        };
        match act.phase {
            ActPhase::WaitEpoch(deadline) => {
                let epoch = act.action.epoch();
                let state = self.witnesses[w].state.clone();
                if state.epoch >= epoch {
                    return self.act_proceed(w, id, state);
                }
                if now > deadline {
                    let e = format!("epoch {epoch} not applied here (still at {})", state.epoch);
                    return self.act_reply(w, id, Err(e));
                }
                self.agent_timer_in(w, 20, AgentTimer::Act(id));
            }
            ActPhase::TakingLease(deadline) => {
                let epoch = act.action.epoch();
                if self.agent(w).core.leased(now, epoch) {
                    return self.promote_now(w, id);
                }
                if now >= deadline {
                    let e = format!(
                        "no quorum of witnesses granted a lease for epoch {epoch} within {EPOCH_WAIT_MS} ms"
                    );
                    return self.act_reply(w, id, Err(e));
                }
                self.renew(w, epoch);
                self.agent_timer_in(w, TAKE_LEASE_RETRY_MS, AgentTimer::Act(id));
            }
            _ => {}
        }
    }

    fn act_proceed(&mut self, w: usize, id: u64, state: ClusterState) {
        let site = site_id(w);
        let action = self.agent(w).acts[&id].action.clone();
        match action {
            SiteAction::SetMonitors { enabled, .. } => {
                if enabled {
                    if let Err(e) = may_enable_monitors(&state, &site) {
                        return self.act_reply(w, id, Err(e.to_string()));
                    }
                }
                let was = self.apps[w];
                self.apps[w] = enabled;
                self.trace(format!(
                    "agent {}: monitorsEnabled set to {enabled} on the leader's order",
                    site_name(w)
                ));
                self.act_reply(w, id, Ok(format!("monitorsEnabled={enabled} (was {was})")))
            }
            SiteAction::ReadMonitors { .. } => {
                let v = self.apps[w].to_string();
                self.act_reply(w, id, Ok(v))
            }
            SiteAction::Fence { .. } | SiteAction::Promote { .. } => {
                let act = self.agent(w).acts.get_mut(&id).expect("checked above");
                act.state = Some(Box::new(state));
                act.phase = ActPhase::WaitLock;
                self.acquire(w, LockHolder::Act(id));
            }
        }
    }

    fn act_locked(&mut self, w: usize, id: u64) {
        let Some(act) = self.agent(w).acts.get(&id) else {
            return self.release(w);
        };
        let state = act.state.clone().expect("set before the lock");
        let action = act.action.clone();
        let site = site_id(w);
        match action {
            SiteAction::Fence { epoch } => {
                if let Err(e) = may_fence(&state, &site, epoch) {
                    return self.act_reply(w, id, Err(e.to_string()));
                }
                let now = self.local(w);
                let order = self.agent(w).core.fence(now, epoch);
                self.order_guard(w, order);
                self.agent(w).acts.get_mut(&id).expect("present").phase = ActPhase::Killing;
                self.trace(format!(
                    "agent {}: fencing on the leader's order (epoch {epoch})",
                    site_name(w)
                ));
                let agent = self.agent(w).id;
                self.db_op(w, DbOpKind::Kill, Requester::Act { w, agent, act: id });
            }
            SiteAction::Promote { epoch } => {
                if let Err(e) = may_promote(&state, &site, epoch) {
                    return self.act_reply(w, id, Err(e.to_string()));
                }
                let deadline = self.local(w) + EPOCH_WAIT_MS;
                self.agent(w).acts.get_mut(&id).expect("present").phase =
                    ActPhase::TakingLease(deadline);
                self.renew(w, epoch);
                self.take_lease_check(w, id);
                if self.witnesses[w]
                    .agent
                    .as_ref()
                    .and_then(|a| a.acts.get(&id))
                    .is_some_and(|a| matches!(a.phase, ActPhase::TakingLease(_)))
                {
                    self.agent_timer_in(w, TAKE_LEASE_RETRY_MS, AgentTimer::Act(id));
                }
            }
            _ => self.release(w),
        }
    }

    fn take_lease_check(&mut self, w: usize, id: u64) {
        let now = self.local(w);
        let Some(act) = self.agent(w).acts.get(&id) else {
            return;
        };
        if !matches!(act.phase, ActPhase::TakingLease(_)) {
            return;
        }
        let epoch = act.action.epoch();
        if self.agent(w).core.leased(now, epoch) {
            self.promote_now(w, id);
        }
    }

    fn promote_now(&mut self, w: usize, id: u64) {
        self.agent(w).acts.get_mut(&id).expect("present").phase = ActPhase::Promoting;
        let epoch = self.agent(w).acts[&id].action.epoch();
        self.hist_promote_ordered(w, epoch);
        let agent = self.agent(w).id;
        self.db_op(w, DbOpKind::Promote, Requester::Act { w, agent, act: id });
    }

    /// An order's database operation finished.
    pub fn act_op_done(&mut self, w: usize, agent: u64, id: u64, result: Result<String, String>) {
        if self.agent_id(w) != Some(agent) {
            return;
        }
        let Some(act) = self.agent(w).acts.get(&id) else {
            return;
        };
        match act.phase {
            ActPhase::Killing => {
                let r = match result {
                    Ok(d) => {
                        self.agent(w).core.fenced();
                        Ok(d)
                    }
                    Err(_) => Err("fence failed; see the agent's log".to_string()),
                };
                self.act_reply(w, id, r);
            }
            ActPhase::Promoting => {
                if result.is_ok() {
                    self.agent(w).core.serving();
                }
                self.act_reply(w, id, result);
            }
            _ => {}
        }
    }
}
