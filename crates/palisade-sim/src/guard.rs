//! The lease guard process beside each database (`palisade lease-guard`,
//! `crates/palisade/src/lease_guard/`): a process of its own, so it outlives
//! its witness. It reads the agent's latest order (a file: it survives a
//! guard restart, as does the freeze it holds, through its status file),
//! makes it effective with its own renewals (`Renewer::effective`: the
//! deadline pushed out to its own quorum lease, hard once a witness
//! refused), and asks `lease_guard::decide` what to do: freeze at the
//! deadline, thaw when the lease returns for the frozen epoch, kill on a
//! hard order or after `hard_after_ms` frozen.
//!
//! The real guard polls every 20 ms and sleeps exactly until a deadline;
//! here it wakes at each deadline and within 20 ms of every change it
//! would have seen at its next poll (a new order, a grant, the server
//! started or stopped), which decides the same: `decide` depends on
//! nothing else.

use palisade_core::lease::{majority, Grant, QuorumLease};
use palisade_core::lease_guard::{decide, GuardAction, GuardConfig, GuardOrder, ServerState};
use rand::Rng;

use crate::database::{DbOpKind, Requester};
use crate::network::{node_id, site_name, Endpoint, Purpose, Req, Resp, RpcError};
use crate::world::{Ev, World};
use crate::Flaw;

/// A guard timer.
#[derive(Clone, Copy, Debug)]
pub enum GTimer {
    /// Look at the order and the server.
    Poll,
    /// The renewer's interval.
    Renew,
}

/// The guard's own renewals and the lease they hold (`renewer::Renewer`).
#[derive(Clone, Debug)]
pub struct Renewer {
    /// The epoch of the order it renews for.
    pub epoch: Option<u64>,
    /// Its own quorum lease.
    pub lease: QuorumLease,
    /// A witness refused this epoch: the order is hard from now on.
    pub refused: Option<u64>,
}

impl Default for Renewer {
    fn default() -> Self {
        Self {
            epoch: None,
            lease: QuorumLease::new(1),
            refused: None,
        }
    }
}

/// One site's lease guard.
#[derive(Clone, Debug)]
pub struct Guard {
    /// Its site.
    pub site: usize,
    /// The process runs.
    pub alive: bool,
    /// Incarnation.
    pub inc: u64,
    /// When it last died (real), for the agent's 500 ms heartbeat.
    pub dead_since: u64,
    /// The order file: the agent's latest order and when it was written
    /// (local). Survives the guard.
    pub order: Option<(GuardOrder, u64)>,
    /// The freeze it holds: the epoch and since when (local). Survives a
    /// guard restart (its status file).
    pub freeze: Option<(Option<u64>, u64)>,
    /// Its renewals.
    pub renewer: Renewer,
    /// Its next poll (real).
    pub poll_at: Option<u64>,
}

impl Guard {
    /// Site `site`'s guard, not started.
    pub fn new(site: usize) -> Self {
        Self {
            site,
            alive: false,
            inc: 0,
            dead_since: 0,
            order: None,
            freeze: None,
            renewer: Renewer::default(),
            poll_at: None,
        }
    }
}

impl World {
    /// Starts site `s`'s guard (the agent's `ensure_running`).
    pub fn start_guard(&mut self, s: usize) {
        if self.guards[s].alive {
            return;
        }
        let g = &mut self.guards[s];
        g.alive = true;
        g.inc += 1;
        g.renewer = Renewer::default();
        g.poll_at = None;
        let inc = g.inc;
        self.trace(format!("guard {}: started", site_name(s)));
        self.push(
            self.now,
            Ev::G {
                s,
                inc,
                t: GTimer::Renew,
            },
        );
        self.guard_kick(s);
    }

    /// Stops site `s`'s guard (SIGTERM by its agent, or killed by a fault):
    /// the server is left as it is.
    pub fn stop_guard_process(&mut self, s: usize, why: &str) {
        if !self.guards[s].alive {
            return;
        }
        self.guards[s].alive = false;
        self.guards[s].dead_since = self.now;
        self.trace(format!("guard {}: stopped ({why})", site_name(s)));
    }

    /// The agent stops its guard (its site runs as a standby now).
    pub fn stop_guard(&mut self, s: usize) {
        self.stop_guard_process(s, "the site holds no lease now");
    }

    /// The guard will look within its poll interval.
    pub fn guard_kick(&mut self, s: usize) {
        if !self.guards[s].alive {
            return;
        }
        let at = self.now + self.rng.random_range(1..=20);
        self.guard_poll_at(s, at);
    }

    fn guard_poll_at(&mut self, s: usize, at: u64) {
        let g = &mut self.guards[s];
        if g.poll_at.is_some_and(|t| t <= at && t >= self.now) {
            return;
        }
        g.poll_at = Some(at);
        let inc = g.inc;
        self.push(
            at,
            Ev::G {
                s,
                inc,
                t: GTimer::Poll,
            },
        );
    }

    /// A guard timer fired.
    pub fn guard_timer(&mut self, s: usize, t: GTimer) {
        match t {
            GTimer::Poll => {
                if self.guards[s].poll_at == Some(self.now) {
                    self.guards[s].poll_at = None;
                }
                self.guard_poll(s);
            }
            GTimer::Renew => {
                self.guard_renew(s);
                let at = self.clocks[s].after(self.now, self.settings.renew_interval_ms);
                let inc = self.guards[s].inc;
                self.push(
                    at,
                    Ev::G {
                        s,
                        inc,
                        t: GTimer::Renew,
                    },
                );
            }
        }
    }

    /// `Renewer::observe`: a new epoch in the order starts a new lease.
    fn renewer_observe(&mut self, s: usize) {
        let epoch = self.guards[s].order.map(|(o, _)| o.epoch);
        let r = &mut self.guards[s].renewer;
        if let Some(e) = epoch {
            if r.epoch != Some(e) {
                r.lease = QuorumLease::new(majority(3));
                r.epoch = Some(e);
            }
        }
    }

    /// `Renewer::effective`: the order to enforce.
    fn effective(&self, s: usize) -> Option<GuardOrder> {
        let (mut order, _) = self.guards[s].order?;
        let r = &self.guards[s].renewer;
        if r.refused == Some(order.epoch) {
            order.hard = true;
            return Some(order);
        }
        if let Some(until) = r.lease.valid_until_ms(order.epoch, &self.settings.lease) {
            let margin = self.settings.lease.ttl_ms / 4;
            order.deadline_ms = order.deadline_ms.max(until.saturating_sub(margin));
        }
        Some(order)
    }

    fn guard_renew(&mut self, s: usize) {
        self.renewer_observe(s);
        let Some((order, _)) = self.guards[s].order else {
            return;
        };
        let server_up = self.dbs[s].has_processes();
        if !server_up || order.hard || self.guards[s].renewer.refused == Some(order.epoch) {
            return;
        }
        let sent = self.local(s);
        let guard = self.guards[s].inc;
        let timeout = self.settings.renew_interval_ms;
        for w in 0..3 {
            self.call(
                Endpoint::Guard(s),
                Endpoint::Witness(w),
                Req::Renew {
                    site: s,
                    epoch: order.epoch,
                    sent,
                },
                timeout,
                Purpose::GuardRenew {
                    site: s,
                    guard,
                    sent,
                    epoch: order.epoch,
                    witness: w,
                },
            );
        }
    }

    /// A witness's answer to the guard's renewal.
    pub fn guard_renew_answer(
        &mut self,
        s: usize,
        guard: u64,
        sent: u64,
        epoch: u64,
        witness: usize,
        result: Result<Resp, RpcError>,
    ) {
        let g = &mut self.guards[s];
        if !g.alive || g.inc != guard || g.renewer.epoch != Some(epoch) {
            return;
        }
        match result {
            Ok(Resp::Grant(Grant::Granted)) => {
                g.renewer.lease.granted(node_id(witness), sent, epoch);
                self.guard_kick(s);
            }
            Ok(Resp::Grant(Grant::Refused {
                handover: None,
                reason,
            })) => {
                if g.renewer.refused.is_none() {
                    self.trace(format!(
                        "guard {}: renewal refused by W{} (epoch {epoch}): {reason}; the order is hard",
                        site_name(s),
                        site_name(witness)
                    ));
                }
                self.guards[s].renewer.refused = Some(epoch);
                self.guard_kick(s);
            }
            _ => {}
        }
    }

    /// One poll: observe, decide, act.
    fn guard_poll(&mut self, s: usize) {
        self.renewer_observe(s);
        let now = self.local(s);
        let order = self.effective(s);
        let db = &self.dbs[s];
        let stopped = !db.has_processes();
        let frozen = db.frozen_guard || db.frozen_fault;
        if stopped {
            self.guards[s].freeze = None;
        }
        let server = match (stopped, frozen, self.guards[s].freeze) {
            (true, _, _) => ServerState::Stopped,
            (false, true, Some((epoch, since_ms))) => ServerState::Frozen { epoch, since_ms },
            _ => ServerState::Running,
        };
        let cfg = GuardConfig::default();
        let mut d = decide(order.as_ref(), server, now, &cfg);
        if self.flaw == Flaw::NoLeaseEnforcement && d.action == GuardAction::Freeze {
            d.action = GuardAction::Nothing;
        }
        match d.action {
            GuardAction::Nothing => {
                if !stopped && !frozen {
                    self.guards[s].freeze = None;
                }
            }
            GuardAction::Freeze => {
                self.guards[s].freeze.get_or_insert((d.epoch, now));
                self.trace(format!(
                    "guard {}: FROZE the database: {}",
                    site_name(s),
                    d.why()
                ));
                self.db_guard_freeze(s, true);
            }
            GuardAction::Thaw => {
                self.guards[s].freeze = None;
                self.trace(format!(
                    "guard {}: THAWED the database: {}",
                    site_name(s),
                    d.why()
                ));
                self.db_guard_freeze(s, false);
            }
            GuardAction::Kill => {
                self.guards[s].freeze = None;
                self.trace(format!(
                    "guard {}: KILLED the database: {}",
                    site_name(s),
                    d.why()
                ));
                self.db_op(s, DbOpKind::Kill, Requester::Guard);
            }
        }
        // Wake at the live order's deadline, or at the freeze's bound.
        let mut wake: Option<u64> = None;
        if let Some(o) = order.filter(|o| o.is_live(now)) {
            wake = Some(o.deadline_ms);
        }
        if let Some((_, since)) = self.guards[s].freeze {
            let bound = since + cfg.hard_after_ms;
            wake = Some(wake.map_or(bound, |w| w.min(bound)));
        }
        if let Some(local) = wake {
            let at = self.clocks[s].real_at(self.now, local).max(self.now + 1);
            self.guard_poll_at(s, at);
        }
    }
}
