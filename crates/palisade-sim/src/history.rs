//! What the validators read: ghost records of the world's real state
//! (what no process of palisade can see: whether two servers were writable
//! at one instant, every grant any witness made, what each fault touched),
//! taken as the run goes, and the trace of notable events.

use std::collections::{BTreeMap, BTreeSet};

use palisade_core::executor::FenceVerdict;
use palisade_core::{Failover, Step};

use crate::faults::Planned;
use crate::network::{site_index, site_name, Node};
use crate::world::World;

/// Who holds a lease grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// The site agent.
    Agent,
    /// The lease guard.
    Guard,
}

/// A grant some witness made.
#[derive(Clone, Copy, Debug)]
pub struct GrantRec {
    /// The granting witness.
    pub witness: usize,
    /// The site whose lease it is.
    pub site: usize,
    /// Its epoch.
    pub epoch: u64,
    /// Who asked.
    pub holder: Holder,
    /// When the renewal was sent, on the site's clock.
    pub sent: u64,
    /// When it was granted (real).
    pub at: u64,
}

/// The leader's proof of a fence, and the world at that instant.
#[derive(Clone, Debug)]
pub struct FenceRec {
    /// When (real).
    pub at: u64,
    /// The fenced site.
    pub site: usize,
    /// The failover's epoch.
    pub epoch: u64,
    /// How it was proven, in words.
    pub basis: String,
    /// By a majority's proven expiry (else by the agent).
    pub by_expiry: bool,
    /// Witnesses that vouched (expiry).
    pub vouchers: usize,
    /// The fenced site's server had no process at that instant.
    pub db_stopped: bool,
    /// The fenced site's clock at that instant.
    pub site_now: u64,
}

/// A promotion, and the world at that instant.
#[derive(Clone, Debug)]
pub struct PromoRec {
    /// When (real).
    pub at: u64,
    /// The promoted site.
    pub site: usize,
    /// The committed failover to it, if any: its epoch and whether its
    /// `fenced` step was committed.
    pub failover: Option<(u64, bool)>,
    /// Its agent held the lease of that epoch when it ordered the promotion.
    pub leased: bool,
    /// Synchronously acknowledged writes the promoted server lacks.
    pub missing_sync: Vec<u64>,
}

/// An acknowledged front-door write.
#[derive(Clone, Copy, Debug)]
pub struct AckRec {
    /// The write.
    pub id: u64,
    /// The server that acknowledged it.
    pub site: usize,
    /// When the client got the acknowledgement (real).
    pub at: u64,
    /// The synchronous standby had flushed it first.
    pub sync: bool,
}

/// An interval during which a bad condition held.
#[derive(Clone, Debug)]
pub struct Interval {
    /// From (real).
    pub from: u64,
    /// To (real; the end of the run if it lasted).
    pub to: u64,
    /// What the world looked like when it began.
    pub detail: String,
}

/// Everything the validators read.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Notable events, in order: (real ms, what).
    pub trace: Vec<(u64, String)>,
    /// Faults as they started.
    pub faults: Vec<(u64, Planned)>,
    /// Committed `BeginFailover`s.
    pub begun: Vec<(u64, Failover)>,
    /// Committed steps: (real, epoch, step, detail).
    pub steps: Vec<(u64, u64, Step, String)>,
    /// Committed ends of failovers: (real, epoch).
    pub finished: Vec<(u64, u64)>,
    /// Every grant.
    pub grants: Vec<GrantRec>,
    /// Fence proofs.
    pub fences: Vec<FenceRec>,
    /// Promotions.
    pub promotions: Vec<PromoRec>,
    /// Promotion orders an agent carried out with its lease held:
    /// (real, site, epoch, leased).
    pub promote_orders: Vec<(u64, usize, u64, bool)>,
    /// Acknowledged writes.
    pub acks: Vec<AckRec>,
    /// Both servers writable at once (DESIGN rule 1).
    pub two_primaries: Vec<Interval>,
    open_two: Option<(u64, String)>,
    /// Both apps with `monitorsEnabled=true` at once.
    pub two_monitors: Vec<Interval>,
    open_mon: Option<(u64, String)>,
    /// palisade stopped a server: (real, site, by whom).
    pub stops: Vec<(u64, usize, String)>,
    /// A lease guard froze a server: (real, site).
    pub freezes: Vec<(u64, usize)>,
    /// A server started (or rejoined): (real, site).
    pub starts: Vec<(u64, usize)>,
    /// Faults that hit a database directly: (real, site).
    pub direct: Vec<(u64, usize)>,
    /// The first instant a fault touched each primary (site → (real, why)).
    pub touched: BTreeMap<usize, (u64, String)>,
    /// The first instant each primary was down for a majority, or could
    /// lose its lease (site → (real, why)): what warrants a failover.
    pub warranted: BTreeMap<usize, (u64, String)>,
    /// The first instant a fault touched the standby's replication.
    pub standby_touched: Option<(u64, String)>,
    /// Failovers whose flip could not switch the old site's app off.
    pub flip_off_failed: BTreeSet<u64>,
}

impl History {
    /// Records a grant.
    pub fn grant(
        &mut self,
        witness: usize,
        site: usize,
        epoch: u64,
        holder: Holder,
        sent: u64,
        at: u64,
    ) {
        self.grants.push(GrantRec {
            witness,
            site,
            epoch,
            holder,
            sent,
            at,
        });
    }

    /// palisade (an agent or a guard) stopped `site`'s server.
    pub fn palisade_stopped(&mut self, site: usize, at: u64, by: &str) {
        self.stops.push((at, site, by.to_string()));
    }

    /// A guard froze `site`'s server.
    pub fn palisade_frozen(&mut self, site: usize, at: u64) {
        self.freezes.push((at, site));
    }

    /// `site`'s server started.
    pub fn db_started(&mut self, site: usize, at: u64) {
        self.starts.push((at, site));
    }

    /// A write was acknowledged.
    pub fn acked(&mut self, id: u64, site: usize, at: u64, sync: bool) {
        self.acks.push(AckRec { id, site, at, sync });
    }

    /// Fault `i` started.
    pub fn fault_started(&mut self, _i: usize, p: Planned, at: u64) {
        self.faults.push((at, p));
    }

    /// A fault hit `site`'s server directly.
    pub fn direct_fault(&mut self, site: usize, at: u64) {
        self.direct.push((at, site));
    }

    /// The latest end, on the site's clock, of any lease a majority of
    /// witnesses granted `site` in an epoch before `epoch`: the
    /// `quorum`-th largest of each witness's latest send time, plus `ttl`.
    /// Every holder (agent or guard, any incarnation) counts: a lease
    /// assembled from any of them is covered by the witnesses' waits.
    pub fn lease_end(&self, site: usize, epoch: u64, ttl: u64) -> Option<u64> {
        let mut latest = [None::<u64>; 3];
        for g in self
            .grants
            .iter()
            .filter(|g| g.site == site && g.epoch < epoch)
        {
            let l = &mut latest[g.witness];
            *l = Some(l.map_or(g.sent, |x: u64| x.max(g.sent)));
        }
        let mut sent: Vec<u64> = latest.iter().flatten().copied().collect();
        if sent.len() < 2 {
            return None;
        }
        sent.sort_unstable_by(|a, b| b.cmp(a));
        Some(sent[1] + ttl)
    }
}

impl World {
    /// The leader proved `site` fenced for `epoch`.
    pub fn hist_fence_proven(&mut self, site: usize, epoch: u64, verdict: &FenceVerdict) {
        let (by_expiry, vouchers, basis) = match verdict {
            FenceVerdict::ByLeaseExpiry { vouching, answers } => {
                (true, vouching.len(), format!("lease expiry: {answers}"))
            }
            FenceVerdict::ByAgent { detail } => (false, 0, format!("agent: {detail}")),
            FenceVerdict::ByStonith { detail } => (false, 0, format!("STONITH: {detail}")),
        };
        let rec = FenceRec {
            at: self.now,
            site,
            epoch,
            basis,
            by_expiry,
            vouchers,
            db_stopped: !self.dbs[site].has_processes(),
            site_now: self.local(site),
        };
        self.hist.fences.push(rec);
    }

    /// An agent orders its server's promotion.
    pub fn hist_promote_ordered(&mut self, site: usize, epoch: u64) {
        let now = self.local(site);
        let leased = self.witnesses[site]
            .agent
            .as_ref()
            .is_some_and(|a| a.core.leased(now, epoch));
        self.hist
            .promote_orders
            .push((self.now, site, epoch, leased));
    }

    /// `site`'s server was promoted.
    pub fn hist_promoted(&mut self, site: usize) {
        let failover =
            self.truth.failover.as_ref().and_then(|f| {
                (site_index(&f.to) == site).then(|| (f.epoch, f.is_done(Step::Fenced)))
            });
        let leased = failover.is_some_and(|(epoch, _)| {
            self.hist
                .promote_orders
                .iter()
                .rev()
                .find(|(_, s, e, _)| *s == site && *e == epoch)
                .is_some_and(|(_, _, _, l)| *l)
        });
        let have: BTreeSet<u64> = self.dbs[site].wal.iter().copied().collect();
        let missing_sync = self
            .hist
            .acks
            .iter()
            .filter(|a| a.sync && !have.contains(&a.id))
            .map(|a| a.id)
            .collect();
        self.hist.promotions.push(PromoRec {
            at: self.now,
            site,
            failover,
            leased,
            missing_sync,
        });
    }

    /// After every event: both servers writable? both apps on? did a fault
    /// touch the primary?
    pub fn observe_ghosts(&mut self) {
        let both = self.dbs[0].writable() && self.dbs[1].writable();
        match (&self.hist.open_two, both) {
            (None, true) => {
                let detail = self.world_summary();
                self.trace(format!("GHOST: TWO WRITABLE PRIMARIES ({detail})"));
                self.hist.open_two = Some((self.now, detail));
            }
            (Some(_), false) => {
                let (from, detail) = self.hist.open_two.take().expect("matched");
                self.hist.two_primaries.push(Interval {
                    from,
                    to: self.now,
                    detail,
                });
            }
            _ => {}
        }
        let mon = self.apps[0] && self.apps[1];
        match (&self.hist.open_mon, mon) {
            (None, true) => {
                let detail = format!(
                    "epoch {}, failover {:?}",
                    self.truth.epoch,
                    self.truth.failover.as_ref().map(|f| f.epoch)
                );
                self.hist.open_mon = Some((self.now, detail));
            }
            (Some(_), false) => {
                let (from, detail) = self.hist.open_mon.take().expect("matched");
                self.hist.two_monitors.push(Interval {
                    from,
                    to: self.now,
                    detail,
                });
            }
            _ => {}
        }
        self.observe_touch();
    }

    /// Whether a fault touches the primary now, and whether it is down for
    /// a majority or may lose its lease (which warrants a failover).
    fn observe_touch(&mut self) {
        let Some(db) = self.truth.db.as_ref() else {
            return;
        };
        let p = site_index(&db.primary);
        let s = site_index(&db.standby);
        let pdb = &self.dbs[p];
        let seeing = (0..3)
            .filter(|&w| self.awake(w) && self.net.up(Node::W(w), Node::D(p)) && pdb.answering())
            .count();
        let agent_up = self.awake(p);
        let guard_up = self.guards[p].alive && pdb.has_processes();
        let grantors = (0..3)
            .filter(|&w| {
                self.awake(w)
                    && ((agent_up && self.net.up(Node::W(p), Node::W(w)))
                        || (guard_up && self.net.up(Node::D(p), Node::W(w))))
            })
            .count();
        let direct = self
            .hist
            .direct
            .iter()
            .any(|(t, site)| *site == p && *t == self.now);
        let mut why = Vec::new();
        if seeing < 2 {
            why.push(format!("only {seeing} witness(es) can see it answer"));
        }
        if grantors < 2 {
            why.push(format!("only {grantors} witness(es) can grant its lease"));
        }
        if direct {
            why.push("a fault hit its server".to_string());
        }
        if !why.is_empty() && !self.hist.warranted.contains_key(&p) {
            let why = why.join(", ");
            self.trace(format!(
                "GHOST: primary {} may fail over: {why}",
                site_name(p)
            ));
            self.hist.warranted.insert(p, (self.now, why));
        }
        if !self.net.up(Node::Client, Node::D(p)) {
            why.push("the front door cannot reach it".to_string());
        }
        if self.net.loss_pct(Node::Client, Node::D(p)) > 0 {
            why.push("the front door's link to it loses packets".to_string());
        }
        if !why.is_empty() && !self.hist.touched.contains_key(&p) {
            self.hist.touched.insert(p, (self.now, why.join(", ")));
        }
        if self.hist.standby_touched.is_none() {
            let sdb = &self.dbs[s];
            let mut why = Vec::new();
            if !sdb.answering() {
                why.push("the standby's server does not answer".to_string());
            }
            if !self.net.up(Node::D(p), Node::D(s)) {
                why.push("the replication link is cut".to_string());
            }
            if !why.is_empty() {
                self.hist.standby_touched = Some((self.now, why.join(", ")));
            }
        }
    }

    /// The state of both servers and the lease guards, in words.
    pub fn world_summary(&self) -> String {
        let mut parts = Vec::new();
        for s in 0..2 {
            let d = &self.dbs[s];
            parts.push(format!(
                "db {}: {:?} {} frozen(guard {}, fault {}) hung {} wal {}; guard {} order {:?} freeze {:?}",
                site_name(s),
                d.proc_,
                if d.primary { "primary" } else { "standby" },
                d.frozen_guard,
                d.frozen_fault,
                d.hung,
                d.wal.len(),
                if self.guards[s].alive { "alive" } else { "dead" },
                self.guards[s].order,
                self.guards[s].freeze,
            ));
        }
        parts.push(format!(
            "committed epoch {}, failover {:?}",
            self.truth.epoch,
            self.truth.failover.as_ref().map(|f| (
                f.epoch,
                f.steps.iter().map(|s| s.step.name()).collect::<Vec<_>>()
            ))
        ));
        parts.push(format!("cut: [{}]", self.net.describe_cuts()));
        parts.join("; ")
    }

    /// Closes what was still open at the end of the run.
    pub fn finish_history(&mut self) {
        if let Some((from, detail)) = self.hist.open_two.take() {
            self.hist.two_primaries.push(Interval {
                from,
                to: self.now,
                detail,
            });
        }
        if let Some((from, detail)) = self.hist.open_mon.take() {
            self.hist.two_monitors.push(Interval {
                from,
                to: self.now,
                detail,
            });
        }
        let summary = self.world_summary();
        self.trace(format!("end: {summary}"));
    }
}
