//! The site agent's decisions, pure: what to do with this site's database
//! given the role the replicated state wants for it, the quorum lease and
//! what the agent sees ([`SiteAgent::reconcile`]); what each witness's
//! answer to a renewal does to the lease and to the lease guard's order
//! ([`SiteAgent::answered`]); when the agent's own lease guard task must
//! kill ([`SiteAgent::guard_due`]); and whether a leader's order may be
//! carried out ([`may_act_in`], [`may_fence`], [`may_promote`],
//! [`may_enable_monitors`], [`may_disable_monitors`],
//! [`may_repoint_search`]), refusing with an [`OrderRefusal`].
//!
//! The daemon's agent only carries the decisions out (start, kill, shut
//! down, rebuild) and feeds the results back (`serving`, `fenced`): every
//! rule that keeps a site from writing unleased is here, under unit tests.

#[cfg(test)]
mod tests;

use crate::detector::CrashPolicy;
use crate::hung::{HungVerdict, HungWatch};
use crate::lease::{Grant, LeaseConfig, QuorumLease};
use crate::lease_guard::GuardOrder;
use crate::state::{ClusterState, DesiredRole};
use crate::topology::{NodeId, SiteId};

/// What the agent's decisions depend on that does not change at run time.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    /// The quorum lease's ttl and drift.
    pub lease: LeaseConfig,
    /// What to do with a primary that crashed or hung.
    pub crash_policy: CrashPolicy,
    /// How long a planned handover's clean shutdown may keep the server up
    /// past its lease (the leader's bound of that shutdown): nothing is
    /// promoted before the agent confirms it, so no lease is needed
    /// meanwhile.
    pub handover_hold_ms: u64,
}

impl AgentConfig {
    /// Margin before the lease's end at which the agent fences: a stop must
    /// be complete before the leader may promote elsewhere.
    pub fn fence_margin_ms(&self) -> u64 {
        self.lease.ttl_ms / 4
    }
}

/// What the agent does with its database now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing.
    Idle,
    /// The leased primary runs: watch it for a hang and keep its
    /// synchronous standby setting.
    Serve {
        /// The epoch it serves under.
        epoch: u64,
    },
    /// Start the primary: its lease is confirmed, after a crash under
    /// `on_primary_crash = "restart"`, or at first.
    Start {
        /// The epoch it starts under.
        epoch: u64,
        /// It ran leased and stopped on its own.
        after_crash: bool,
    },
    /// It crashed and `on_primary_crash = "failover"`: leave it down for
    /// the leader.
    StayDown,
    /// Shut it down cleanly for the planned handover of `epoch` (its WAL
    /// senders ship the whole WAL first).
    ShutDownForHandover {
        /// The handover's epoch.
        epoch: u64,
        /// The epoch in force, for the record.
        current: u64,
    },
    /// The lease lapsed while the site is still the desired primary: the
    /// lease guard process holds the server frozen and thaws it if the
    /// lease returns for the same epoch (no crash recovery).
    LeaveToGuard,
    /// Kill it now: it runs without a lease, or this site must be fenced.
    /// `order` (hard) is written to the lease guard first, so a server
    /// that a start under way brings up is killed too.
    Fence {
        /// The epoch the fence belongs to.
        epoch: u64,
        /// The guard's order.
        order: GuardOrder,
    },
    /// Rebuild it as a standby of the new primary (the old primary after a
    /// failover).
    Rejoin {
        /// The epoch in force.
        epoch: u64,
    },
}

/// What the agent sees at a reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The role the replicated state wants for this site.
    pub desired: Option<DesiredRole>,
    /// The epoch this witness has applied.
    pub epoch: u64,
    /// The postmaster runs.
    pub running: bool,
    /// The lease guard process is alive (fresh heartbeat).
    pub guard_alive: bool,
    /// A planned handover away from this site is under way and its fence
    /// is not recorded: its epoch.
    pub handing_over: Option<u64>,
}

/// The agent's memory of its site's lease and database.
#[derive(Clone, Debug)]
pub struct SiteAgent {
    cfg: AgentConfig,
    lease: QuorumLease,
    /// This agent stopped the database itself (lease lapse, fence order):
    /// it may start it again once leased. A database that stopped on its
    /// own crashed, and the crash policy decides.
    self_fenced: bool,
    /// The database was seen running while leased: a later "not running"
    /// is a crash.
    ran_leased: bool,
    /// When this agent first learned its site is the desired primary: a
    /// database found running then gets one lease ttl to be confirmed
    /// before it is fenced.
    primary_since_ms: Option<u64>,
    /// A witness refused the lease for a planned handover of this epoch:
    /// shut down cleanly rather than kill.
    handover: Option<u64>,
    /// The lease's end (agent clock) and epoch: set by every confirmed
    /// lease, pulled to now by a refusal or a fence, cleared once the site
    /// runs as a standby.
    guard: Option<(u64, u64)>,
    /// Local probes of the primary: processes alive but no answer is a
    /// hang.
    hung: HungWatch,
    /// After a failed rejoin, not before this (agent clock).
    rejoin_retry_at_ms: Option<u64>,
    /// A quorum confirmed or a witness refused the lease since this agent
    /// started: the grace for a server found running is over.
    answered_by_quorum: bool,
}

impl SiteAgent {
    /// An agent among `witnesses` witnesses; it holds no lease: its
    /// database is never started before a quorum confirms the site is
    /// primary.
    pub fn new(witnesses: usize, cfg: AgentConfig) -> Self {
        Self {
            lease: QuorumLease::new(crate::lease::majority(witnesses)),
            cfg,
            self_fenced: false,
            ran_leased: false,
            primary_since_ms: None,
            handover: None,
            guard: None,
            hung: HungWatch::default(),
            rejoin_retry_at_ms: None,
            answered_by_quorum: false,
        }
    }

    /// A membership this agent's witness has, or a granting witness
    /// reported (`palisadectl member` changes it): the lease counts the
    /// grants of the newest one's voters only.
    pub fn learn_voters(&mut self, voters: &crate::lease::Voters) {
        self.lease.learn_voters(voters);
    }

    /// The configuration it decides with.
    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    /// Whether the lease for `epoch` holds at `now_ms` with the fence
    /// margin to spare.
    pub fn leased(&self, now_ms: u64, epoch: u64) -> bool {
        self.lease
            .is_valid(now_ms + self.cfg.fence_margin_ms(), epoch, &self.cfg.lease)
    }

    /// How long the lease for `epoch` still holds at `now_ms`, fence
    /// margin included (`None`: not held).
    pub fn lease_remaining_ms(&self, now_ms: u64, epoch: u64) -> Option<u64> {
        self.lease
            .valid_until_ms(epoch, &self.cfg.lease)
            .map(|until| until.saturating_sub(self.cfg.fence_margin_ms()))
            .filter(|until| *until > now_ms)
            .map(|until| until - now_ms)
    }

    /// What to do with the database now.
    pub fn reconcile(&mut self, now_ms: u64, facts: &Facts) -> Decision {
        match facts.desired {
            Some(DesiredRole::Primary { epoch }) => self.as_primary(now_ms, epoch, facts),
            Some(DesiredRole::Fenced) => {
                self.primary_since_ms = None;
                if !facts.running {
                    return Decision::Idle;
                }
                // A planned handover: the leader's order shuts it down
                // cleanly so the standby gets the whole WAL; killing it here
                // would abort the switchover. The lease still bounds it: not
                // leased, the guard kills it once that runs out.
                if let Some(h) = facts.handing_over {
                    return Decision::ShutDownForHandover {
                        epoch: h,
                        current: facts.epoch,
                    };
                }
                Decision::Fence {
                    epoch: facts.epoch,
                    order: self.fence(now_ms, facts.epoch),
                }
            }
            Some(DesiredRole::Rejoin { epoch }) => {
                self.primary_since_ms = None;
                Decision::Rejoin { epoch }
            }
            Some(DesiredRole::Standby) | None => Decision::Idle,
        }
    }

    fn as_primary(&mut self, now_ms: u64, epoch: u64, facts: &Facts) -> Decision {
        let since = *self.primary_since_ms.get_or_insert(now_ms);
        let valid = self.leased(now_ms, epoch);
        // Neither confirmed nor refused yet, and not for long: a database
        // found running at start gets one ttl for the quorum's
        // confirmation.
        let in_grace = !self.answered_by_quorum && now_ms < since + self.cfg.lease.ttl_ms;
        let crashed = self.ran_leased && !self.self_fenced;
        if valid {
            if facts.running {
                self.serving();
                return Decision::Serve { epoch };
            }
            if crashed && self.cfg.crash_policy == CrashPolicy::Failover {
                return Decision::StayDown;
            }
            return Decision::Start {
                epoch,
                after_crash: crashed,
            };
        }
        if !facts.running || in_grace {
            return Decision::Idle;
        }
        match self.handover.take() {
            Some(h) => Decision::ShutDownForHandover {
                epoch: h,
                current: facts.epoch,
            },
            None if facts.guard_alive => Decision::LeaveToGuard,
            None => Decision::Fence {
                epoch,
                order: self.fence(now_ms, epoch),
            },
        }
    }

    /// The bookkeeping of a fence about to be done: the lease is gone, the
    /// guard's deadline is now and its order (returned, to be written
    /// before the kill) hard, so no server of this site runs again before
    /// a new lease.
    pub fn fence(&mut self, now_ms: u64, epoch: u64) -> GuardOrder {
        self.lease.revoked();
        if let Some((_, e)) = self.guard {
            self.guard = Some((now_ms, e));
        }
        GuardOrder {
            epoch,
            deadline_ms: now_ms,
            hard: true,
        }
    }

    /// The database runs (or was started) under a confirmed lease.
    pub fn serving(&mut self) {
        self.ran_leased = true;
        self.self_fenced = false;
    }

    /// Whether the database ran under a confirmed lease and this agent has
    /// not stopped it since: a crash from here is a crash, handled by the
    /// crash policy, not a dead server found at start.
    pub fn serving_under_lease(&self) -> bool {
        self.ran_leased && !self.self_fenced
    }

    /// This agent stopped the database (a fence, a handover's shutdown, a
    /// lapsed lease): not a crash.
    pub fn fenced(&mut self) {
        self.self_fenced = true;
    }

    /// A planned handover's clean shutdown begins: the lease is given up.
    pub fn handing_over(&mut self) {
        self.lease.revoked();
    }

    /// Witness `witness` answered the renewal for `epoch` sent at
    /// `sent_ms`; returns the lease guard's new order, if the answer
    /// changed it. A grant moves the guard's deadline forward only (a
    /// stale answer never shortens it); only a refusal pulls it in.
    pub fn answered(
        &mut self,
        now_ms: u64,
        witness: NodeId,
        sent_ms: u64,
        epoch: u64,
        answer: &Grant,
    ) -> Option<GuardOrder> {
        match answer {
            Grant::Granted => {
                self.lease.granted(witness, sent_ms, epoch);
                let until = self.lease.valid_until_ms(epoch, &self.cfg.lease)?;
                self.answered_by_quorum = true;
                match self.guard {
                    Some((g, e)) if e == epoch && g >= until => None,
                    _ => {
                        self.guard = Some((until, epoch));
                        Some(GuardOrder {
                            epoch,
                            deadline_ms: until.saturating_sub(self.cfg.fence_margin_ms()),
                            hard: false,
                        })
                    }
                }
            }
            Grant::Refused { handover, .. } => {
                self.answered_by_quorum = true;
                self.lease.revoked();
                self.handover = *handover;
                match handover {
                    // A failover away from this site is committed: stop
                    // now, hard.
                    None => {
                        if let Some((_, e)) = self.guard {
                            self.guard = Some((now_ms, e));
                        }
                        Some(GuardOrder {
                            epoch,
                            deadline_ms: now_ms,
                            hard: true,
                        })
                    }
                    // A planned handover: the guards hold off while its
                    // clean shutdown is under way; nothing is promoted
                    // before this agent confirms it.
                    Some(_) => Some(GuardOrder {
                        epoch,
                        deadline_ms: now_ms + self.cfg.handover_hold_ms,
                        hard: false,
                    }),
                }
            }
            Grant::Unknown { .. } => None,
        }
    }

    /// When the lease (less the fence margin) runs out, and for which
    /// epoch: the agent's own lease guard task kills the server then, if
    /// the lease guard process is dead.
    pub fn guard_due(&self) -> Option<(u64, u64)> {
        self.guard
            .map(|(until, epoch)| (until.saturating_sub(self.cfg.fence_margin_ms()), epoch))
    }

    /// Whether the agent's own lease guard task must kill the server now:
    /// the lease ran out, server processes exist, no handover's clean
    /// shutdown is under way, and the lease guard process is dead (alive,
    /// it freezes and thaws instead). Returns the epoch.
    pub fn must_kill(
        &self,
        now_ms: u64,
        has_processes: bool,
        handing_over: bool,
        guard_alive: bool,
    ) -> Option<u64> {
        let (deadline, epoch) = self.guard_due()?;
        (deadline <= now_ms && has_processes && !handing_over && !guard_alive).then_some(epoch)
    }

    /// The lease lapsed and the agent's guard task kills the server.
    pub fn lapsed(&mut self) {
        self.lease.revoked();
    }

    /// How long the reconcile loop may sleep: until the next renewal, or
    /// the fence deadline if sooner.
    pub fn next_wake_ms(&self, now_ms: u64, renew_ms: u64) -> u64 {
        match self.guard_due() {
            Some((deadline, _)) if deadline > now_ms => renew_ms.min(deadline - now_ms),
            _ => renew_ms,
        }
    }

    /// The site now runs as a standby (or is being rebuilt as one), which
    /// needs no lease: the guard's deadline is forgotten.
    pub fn standby(&mut self) {
        self.guard = None;
    }

    /// Feeds the hang watch one local probe of the primary (see
    /// [`HungWatch::observe`]).
    pub fn probed(
        &mut self,
        probed_at_ms: u64,
        latency_ms: u64,
        timed_out: bool,
        processes_alive: bool,
        down_after_ms: u64,
    ) -> HungVerdict {
        self.hung.observe(
            probed_at_ms,
            latency_ms,
            timed_out,
            processes_alive,
            down_after_ms,
        )
    }

    /// The hung primary was killed: start watching afresh.
    pub fn hang_handled(&mut self) {
        self.hung.reset();
    }

    /// Whether a rejoin may be tried at `now_ms` (not while waiting after
    /// a failed one).
    pub fn may_rejoin(&self, now_ms: u64) -> bool {
        self.rejoin_retry_at_ms.is_none_or(|t| now_ms >= t)
    }

    /// A rejoin failed: try again at `retry_at_ms` (`u64::MAX`: never, a
    /// human must act).
    pub fn rejoin_failed(&mut self, retry_at_ms: u64) {
        self.rejoin_retry_at_ms = Some(retry_at_ms);
    }

    /// Whether a rejoin was given up for good (logged once).
    pub fn rejoin_given_up(&self) -> bool {
        self.rejoin_retry_at_ms == Some(u64::MAX)
    }

    /// A rejoin succeeded.
    pub fn rejoined(&mut self) {
        self.rejoin_retry_at_ms = None;
    }
}

/// Why a site agent refuses a leader's order: the order contradicts the
/// committed state this witness applied (a stale leader's order, or a
/// forged one). Final until that state changes; every reason names the
/// site and the epoch it rests on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderRefusal {
    /// The order's epoch is not the committed one: an older epoch (a
    /// deposed leader's order) or one this witness has not committed.
    #[error("refusing an order of epoch {order}: the committed epoch here is {committed}")]
    EpochNotCommitted {
        /// The order's epoch.
        order: u64,
        /// The epoch this witness applied.
        committed: u64,
    },
    /// A fence of the desired primary.
    #[error("refusing to fence: site {site} is the desired primary in epoch {epoch}")]
    FenceDesiredPrimary {
        /// This agent's site.
        site: SiteId,
        /// The committed epoch.
        epoch: u64,
    },
    /// A fence order for an epoch whose failover away from this site is not
    /// under way (over, or never from here): a late or forged order.
    #[error("refusing to fence: no failover of epoch {epoch} away from site {site} is under way (a late order?)")]
    FenceOutsideItsFailover {
        /// This agent's site.
        site: SiteId,
        /// The order's epoch.
        epoch: u64,
    },
    /// A promotion without a failover of that epoch to this site with the
    /// old primary's fence recorded.
    #[error("refusing to promote: no failover of epoch {epoch} to site {site} with the old primary fenced")]
    PromoteWithoutFence {
        /// This agent's site.
        site: SiteId,
        /// The order's epoch.
        epoch: u64,
    },
    /// `monitorsEnabled=true` away from the desired primary (DESIGN rule 4).
    #[error("refusing monitorsEnabled=true: site {site} is not the desired primary")]
    MonitorsOnAwayFromPrimary {
        /// This agent's site.
        site: SiteId,
    },
    /// `monitorsEnabled=false` at the desired primary: the leader only
    /// switches the old primary's app off.
    #[error("refusing monitorsEnabled=false: site {site} is the desired primary in epoch {epoch}")]
    MonitorsOffAtPrimary {
        /// This agent's site.
        site: SiteId,
        /// The committed epoch.
        epoch: u64,
    },
    /// Repointing the app's search at a site that is not the primary of
    /// the order's epoch: only the primary's app is pointed at its search.
    #[error("refusing to repoint search: site {site} is not the primary of epoch {epoch}")]
    RepointAwayFromPrimary {
        /// This agent's site.
        site: SiteId,
        /// The order's epoch.
        epoch: u64,
    },
}

/// Whether an order of `epoch` may be carried out at all: only in the
/// committed epoch this witness applied. An order of an older epoch is a
/// deposed leader's (every order of a failover carries its epoch, and a
/// new one raises it); one of a later epoch is not committed here yet
/// (the agent waits for it before asking).
pub fn may_act_in(state: &ClusterState, epoch: u64) -> Result<(), OrderRefusal> {
    if epoch == state.epoch {
        Ok(())
    } else {
        Err(OrderRefusal::EpochNotCommitted {
            order: epoch,
            committed: state.epoch,
        })
    }
}

/// Whether this site's agent may fence on the leader's order for `epoch`:
/// never while the replicated state makes it the desired primary (a stale
/// or forged order), and only while the failover of `epoch` away from this
/// site is under way. A fence order outlives its failover when a cut link
/// delays it (the three-host trial saw one arrive 26 s late): carried out
/// then, it would kill a standby that has rejoined since, and leave its
/// lease guard a hard order that kills every later start.
pub fn may_fence(state: &ClusterState, site: &SiteId, epoch: u64) -> Result<(), OrderRefusal> {
    if let Some(DesiredRole::Primary { .. }) = state.desired_role(site) {
        return Err(OrderRefusal::FenceDesiredPrimary {
            site: site.clone(),
            epoch: state.epoch,
        });
    }
    match &state.failover {
        Some(f) if f.epoch == epoch && &f.from == site => Ok(()),
        _ => Err(OrderRefusal::FenceOutsideItsFailover {
            site: site.clone(),
            epoch,
        }),
    }
}

/// Whether this site's agent may promote for `epoch`: a failover of that
/// epoch to this site with the old primary's fence recorded, or this site
/// already the primary of that epoch (a repeated order).
pub fn may_promote(state: &ClusterState, site: &SiteId, epoch: u64) -> Result<(), OrderRefusal> {
    let ordered = state
        .failover
        .as_ref()
        .is_some_and(|f| f.epoch == epoch && &f.to == site && f.is_done(crate::Step::Fenced));
    let already = state.desired_role(site) == Some(DesiredRole::Primary { epoch });
    if ordered || already {
        Ok(())
    } else {
        Err(OrderRefusal::PromoteWithoutFence {
            site: site.clone(),
            epoch,
        })
    }
}

/// Whether this site's app may get `monitorsEnabled=true`: only at the
/// desired primary (DESIGN rule 4).
pub fn may_enable_monitors(state: &ClusterState, site: &SiteId) -> Result<(), OrderRefusal> {
    match state.desired_role(site) {
        Some(DesiredRole::Primary { .. }) => Ok(()),
        _ => Err(OrderRefusal::MonitorsOnAwayFromPrimary { site: site.clone() }),
    }
}

/// Whether this site's app may get `monitorsEnabled=false` on the leader's
/// order: never at the desired primary (the leader switches off only the
/// old primary's app; a forged order would stop the jobs everywhere).
pub fn may_disable_monitors(state: &ClusterState, site: &SiteId) -> Result<(), OrderRefusal> {
    match state.desired_role(site) {
        Some(DesiredRole::Primary { epoch }) => Err(OrderRefusal::MonitorsOffAtPrimary {
            site: site.clone(),
            epoch,
        }),
        _ => Ok(()),
    }
}

/// Whether this site's app may be pointed at its search for `epoch`: only
/// when this site is the primary of that epoch (promoted). The order names
/// no host, URL or index: the agent takes them from its own configuration
/// of its own site's search, so the only thing an order chooses is when.
pub fn may_repoint_search(
    state: &ClusterState,
    site: &SiteId,
    epoch: u64,
) -> Result<(), OrderRefusal> {
    if state.desired_role(site) == Some(DesiredRole::Primary { epoch }) {
        Ok(())
    } else {
        Err(OrderRefusal::RepointAwayFromPrimary {
            site: site.clone(),
            epoch,
        })
    }
}
