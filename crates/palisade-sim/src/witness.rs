//! A witness process: its Raft part (durable: the log it has, its applied
//! state, its term), its grant book (lost in a crash), its observer (the
//! probe loop that reports to the leader) and, inside the same process,
//! its site's agent and, while it leads, the controller.
//!
//! Wiring as in the daemon: renewals are answered from the book under one
//! lock with the applied state (`crate::lease::WitnessLease` there:
//! `GrantBook::renew`, `GrantBook::expiry`); the observer probes both
//! databases every `probe.interval_ms`, waits for both probes (each bounded
//! by `probe.timeout_ms`), then sends its report to the leader it knows
//! (bounded by the interval) before the next round (`crate::observer`).

use std::collections::BTreeMap;

use palisade_core::detector::LastWritable;
use palisade_core::lease::{Expiry, Grant, GrantBook, LeaseConfig};
use palisade_core::observe::{ErrorClass, PgObservation};
use palisade_core::ClusterState;

use crate::history::Holder;
use crate::leader::Controller;
use crate::network::{node_id, site_id, site_name, Endpoint, Purpose, Report, Req, Resp, RpcError};
use crate::site::Agent;
use crate::world::{Ev, WTimer, World};
use crate::Flaw;

/// The observer's state: the latest probes and the round under way.
#[derive(Clone, Debug, Default)]
pub struct Observer {
    /// Latest observation of each database, with the local time it
    /// completed (the daemon's `Latest`).
    pub latest: BTreeMap<usize, (PgObservation, u64)>,
    /// Per database: the last position seen while it was a writable
    /// primary, and when (local).
    pub last_writable: BTreeMap<usize, (u64, u64)>,
    /// Per database found unreachable: when (local) the first failed probe
    /// of the unbroken run began.
    pub unreachable_since: BTreeMap<usize, u64>,
    /// The round under way.
    pub round: u64,
    /// When the round began (real), for the interval's ticks.
    pub round_started: u64,
    /// Results of this round so far.
    pub results: BTreeMap<usize, PgObservation>,
}

/// One witness process.
#[derive(Debug)]
pub struct Witness {
    /// Its site.
    pub site: usize,
    /// The process runs.
    pub alive: bool,
    /// Incarnation: bumped by every restart.
    pub inc: u64,
    /// SIGSTOPped until this real time (0 or past: running).
    pub paused_until: u64,
    /// Committed entries it holds (durable).
    pub have: usize,
    /// Entries it has applied (durable: the state machine is on disk).
    pub applied: usize,
    /// Its applied state.
    pub state: ClusterState,
    /// The latest term it knows (durable).
    pub term: u64,
    /// It believes it leads.
    pub leads: bool,
    /// The leader it would report to.
    pub leader_known: Option<usize>,
    /// When it last heard from a leader (real; itself, when leading).
    pub heard_leader_at: u64,
    /// Its election timeout.
    pub election_timeout: u64,
    /// When its next apply is scheduled.
    pub apply_at: Option<u64>,
    /// Its state machine stalls (a fault): nothing committed is applied.
    pub apply_blocked: bool,
    /// Its grant book (forgotten in a crash).
    pub book: GrantBook,
    /// Its probe loop.
    pub obs: Observer,
    /// The controller, while it leads.
    pub ctl: Option<Controller>,
    /// Its site's agent (sites with a database).
    pub agent: Option<Agent>,
}

impl Witness {
    /// A witness of `site` with `book` and applied `state`.
    pub fn new(site: usize, book: GrantBook, state: ClusterState) -> Self {
        Self {
            site,
            alive: true,
            inc: 1,
            paused_until: 0,
            have: 1,
            applied: 1,
            state,
            term: 1,
            leads: false,
            leader_known: None,
            heard_leader_at: 0,
            election_timeout: 300,
            apply_at: None,
            apply_blocked: false,
            book,
            obs: Observer::default(),
            ctl: None,
            agent: None,
        }
    }
}

impl World {
    /// The lease settings a witness vouches with (the flaws change them).
    fn witness_lease_cfg(&self) -> LeaseConfig {
        match self.flaw {
            Flaw::NoDriftWait => LeaseConfig {
                drift: 0.0,
                ..self.settings.lease
            },
            _ => self.settings.lease,
        }
    }

    /// Witness `w` answers a renewal of `site`'s lease for `epoch` from its
    /// book and applied state (`WitnessLease::renew`), and the grant is
    /// recorded for the validators.
    pub fn witness_renew(
        &mut self,
        w: usize,
        site: usize,
        epoch: u64,
        holder: Holder,
        sent: u64,
    ) -> Grant {
        let now = self.local(w);
        let x = &mut self.witnesses[w];
        let grant = x.book.renew(&x.state, &site_id(site), epoch, now);
        if grant == Grant::Granted {
            self.hist.grant(w, site, epoch, holder, sent, self.now);
        }
        grant
    }

    /// Witness `w` says whether it vouches that `site`'s lease ended, for
    /// the failover of `epoch` (`WitnessLease::expiry`).
    pub fn witness_expiry(&mut self, w: usize, site: usize, epoch: u64) -> Expiry {
        let now = self.local(w);
        let cfg = self.witness_lease_cfg();
        let x = &self.witnesses[w];
        x.book.expiry(&x.state, &site_id(site), epoch, now, &cfg)
    }

    /// Witness `w`'s process dies: its book, agent, controller and probes
    /// go; its log and applied state stay.
    pub fn crash_witness(&mut self, w: usize) {
        if !self.witnesses[w].alive {
            return;
        }
        self.step_down(w, "its process died");
        let x = &mut self.witnesses[w];
        x.alive = false;
        x.agent = None;
        x.ctl = None;
        x.obs = Observer::default();
        x.apply_at = None;
        x.paused_until = 0;
        self.trace(format!("W{} process killed", site_name(w)));
    }

    /// Witness `w`'s process starts again: a new book, vouching for nothing
    /// for `ttl × (1 + drift)`; a new agent holding no lease; a follower.
    pub fn restart_witness(&mut self, w: usize) {
        if self.witnesses[w].alive {
            return;
        }
        let now = self.local(w);
        let started = if self.flaw == Flaw::RestartForgetsItsStart {
            0
        } else {
            now
        };
        let real = self.now;
        let timeout = 300;
        let x = &mut self.witnesses[w];
        x.alive = true;
        x.inc += 1;
        x.book = GrantBook::new(started);
        x.leads = false;
        x.heard_leader_at = real;
        x.election_timeout = timeout;
        let pending = x.applied < x.have;
        self.trace(format!("W{} process restarted", site_name(w)));
        if pending {
            let inc = self.witnesses[w].inc;
            self.witnesses[w].apply_at = Some(self.now + 5);
            self.push(
                self.now + 5,
                Ev::W {
                    w,
                    inc,
                    t: WTimer::Apply,
                },
            );
        }
        self.start_witness_process(w);
    }

    /// The observer's next round: probe both databases.
    pub fn observer_round(&mut self, w: usize) {
        let inc = self.witnesses[w].inc;
        let o = &mut self.witnesses[w].obs;
        o.round += 1;
        o.round_started = self.now;
        o.results.clear();
        let round = o.round;
        let timeout = self.settings.probe_timeout_ms;
        for site in 0..2 {
            self.call(
                Endpoint::Witness(w),
                Endpoint::Db(site),
                Req::Probe,
                timeout,
                Purpose::Probe {
                    w,
                    inc,
                    round,
                    site,
                    started: self.now,
                },
            );
        }
    }

    /// One probe of this round finished.
    pub fn probe_done(
        &mut self,
        w: usize,
        inc: u64,
        round: u64,
        site: usize,
        started: u64,
        result: Result<Resp, RpcError>,
    ) {
        let x = &self.witnesses[w];
        if !x.alive || x.inc != inc || x.obs.round != round {
            return;
        }
        let latency = self.now - started;
        let obs = match result {
            Ok(Resp::Obs(mut o)) => {
                o.latency_ms = latency;
                *o
            }
            Ok(Resp::Refused) => {
                PgObservation::down(ErrorClass::Refused, "connection refused", latency)
            }
            Ok(Resp::NotReady) => PgObservation::down(
                ErrorClass::NotReady,
                "the database system is starting up",
                latency,
            ),
            Ok(other) => panic!("unexpected probe answer {other:?}"),
            Err(RpcError::Timeout) => PgObservation::down(
                ErrorClass::Timeout,
                "timed out",
                self.settings.probe_timeout_ms,
            ),
        };
        // Published the moment it is in, stamped then, as the daemon's
        // observer does: a slow probe of the other site neither delays nor
        // ages this one.
        let at = self.local(w);
        if obs.reachability.is_up() {
            self.witnesses[w].obs.unreachable_since.remove(&site);
        } else {
            let began = at.saturating_sub(latency);
            self.witnesses[w]
                .obs
                .unreachable_since
                .entry(site)
                .or_insert(began);
        }
        self.witnesses[w].obs.latest.insert(site, (obs.clone(), at));
        self.witnesses[w].obs.results.insert(site, obs);
        if self.witnesses[w].obs.results.len() == 2 {
            self.round_done(w, inc, round);
        }
    }

    fn round_done(&mut self, w: usize, inc: u64, round: u64) {
        let at = self.local(w);
        let x = &mut self.witnesses[w];
        let results = std::mem::take(&mut x.obs.results);
        for (site, o) in &results {
            if let (true, Some(lsn)) = (o.is_writable_primary(), o.current_lsn) {
                x.obs.last_writable.insert(*site, (lsn, at));
            }
        }
        let last_writable = x
            .obs
            .last_writable
            .iter()
            .map(|(site, (lsn, seen))| {
                (
                    site_id(*site),
                    LastWritable {
                        lsn: *lsn,
                        age_ms: at.saturating_sub(*seen),
                    },
                )
            })
            .collect();
        let report = Report {
            witness: node_id(w),
            dbs: results
                .into_iter()
                .map(|(site, o)| (site_id(site), o))
                .collect(),
            last_writable,
            unreachable_for: x
                .obs
                .unreachable_since
                .iter()
                .map(|(site, since)| (site_id(*site), at.saturating_sub(*since)))
                .collect(),
        };
        match x.leader_known {
            Some(l) if l == w => {
                self.receive_report(w, report);
                self.next_round(w);
            }
            Some(l) => {
                let timeout = self.settings.probe_interval_ms;
                self.call(
                    Endpoint::Witness(w),
                    Endpoint::Witness(l),
                    Req::Report(Box::new(report)),
                    timeout,
                    Purpose::Report { w, inc, round },
                );
            }
            None => self.next_round(w),
        }
    }

    /// The report was delivered (or not): the next round.
    pub fn report_done(&mut self, w: usize, inc: u64, round: u64) {
        let x = &self.witnesses[w];
        if x.alive && x.inc == inc && x.obs.round == round {
            self.next_round(w);
        }
    }

    /// The interval's next tick (`MissedTickBehavior::Delay`: at once when
    /// the round took longer than the interval).
    fn next_round(&mut self, w: usize) {
        let interval = self.settings.probe_interval_ms;
        let at = (self.witnesses[w].obs.round_started + interval).max(self.now);
        let inc = self.witnesses[w].inc;
        self.push(
            at,
            Ev::W {
                w,
                inc,
                t: WTimer::ObserverRound,
            },
        );
    }

    /// Whether the flaw makes the leader accept a minority's proof.
    pub fn minority_proof(&self) -> bool {
        self.flaw == Flaw::MinorityProof
    }
}
