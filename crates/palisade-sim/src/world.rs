//! The world: virtual time, the event queue, every process's state, and
//! the dispatch of each event to the module that handles it.
//!
//! Time is a virtual millisecond counter; nothing here reads a real clock
//! or sleeps. Events at the same millisecond run in the order they were
//! scheduled, and every random choice comes from one seeded generator in
//! event order, so a seed replays exactly.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

use palisade_core::detector::ReplicationMode;
use palisade_core::lease::GrantBook;
use palisade_core::{ClusterState, Command};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::clock::{Clock, FASTEST_PPM, NOMINAL_PPM};
use crate::database::{Client, Db, Repl};
use crate::faults::{FaultState, Schedule};
use crate::guard::{GTimer, Guard};
use crate::history::History;
use crate::leader::CtlTimer;
use crate::network::{site_id, Body, Call, Endpoint, Msg, Network, Purpose, Req, Resp, RpcError};
use crate::raft::Raft;
use crate::site::{Agent, AgentTimer};
use crate::witness::Witness;
use crate::{Flaw, Settings};

/// When the front-door client starts writing (the warm-up before it lets
/// the lease and replication settle).
pub const WRITES_FROM_MS: u64 = 1000;

/// A timer of a witness process (its agent's and controller's too).
#[derive(Clone, Debug)]
pub enum WTimer {
    /// Apply the committed entries it has.
    Apply,
    /// Its next probe round.
    ObserverRound,
    /// It won the election of `term`: start the controller.
    LeaderStart {
        /// The term.
        term: u64,
    },
    /// A controller timer.
    Ctl {
        /// The controller's incarnation.
        ctl: u64,
        /// Which.
        t: CtlTimer,
    },
    /// An agent timer.
    Agent {
        /// The agent's incarnation.
        agent: u64,
        /// Which.
        t: AgentTimer,
    },
}

/// Something that happens at an instant.
#[derive(Clone, Debug)]
pub enum Ev {
    /// A message reaches its receiver's node.
    Deliver(Box<Msg>),
    /// A lost message is sent again.
    Retransmit(Box<Msg>),
    /// An RPC's timeout.
    RpcTimeout(u64),
    /// A witness process's timer.
    W {
        /// The witness.
        w: usize,
        /// Its incarnation when set.
        inc: u64,
        /// Which.
        t: WTimer,
    },
    /// A lease guard's timer.
    G {
        /// The guard's site.
        s: usize,
        /// Its incarnation when set.
        inc: u64,
        /// Which.
        t: GTimer,
    },
    /// A database operation finished (or reached a stage).
    DbOp(crate::database::DbOpEv),
    /// Raft's heartbeat: replication, step-downs, elections.
    RaftTick,
    /// Try to commit the pending proposals now.
    RaftCommit,
    /// Replication housekeeping between the two databases.
    ReplTick,
    /// The client's next write.
    ClientWrite,
    /// Fault `i` of the schedule starts (`true`) or ends.
    Fault {
        /// Index in the schedule.
        i: usize,
        /// Start or end.
        start: bool,
    },
    /// The `k`-th toggle of flapping fault `i`.
    Flap {
        /// Index in the schedule.
        i: usize,
        /// Toggle number (even: cut, odd: heal).
        k: u32,
    },
}

struct Scheduled {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: the earliest first.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The whole simulated cluster.
pub struct World {
    /// The seed.
    pub seed: u64,
    /// A deliberate defect, or none.
    pub flaw: Flaw,
    /// The daemon's settings.
    pub settings: Settings,
    /// The fault schedule.
    pub schedule: Schedule,
    /// Real (virtual) time, ms.
    pub now: u64,
    /// When the run ends.
    pub end: u64,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    ids: u64,
    /// The one source of randomness, in event order.
    pub rng: ChaCha8Rng,
    /// Each site host's clock.
    pub clocks: Vec<Clock>,
    /// The links.
    pub net: Network,
    /// RPCs awaiting a response.
    pub calls: BTreeMap<u64, Call>,
    /// The replicated log.
    pub raft: Raft,
    /// The three witness processes.
    pub witnesses: Vec<Witness>,
    /// The lease guards of sites a and b.
    pub guards: Vec<Guard>,
    /// The database servers of sites a and b.
    pub dbs: Vec<Db>,
    /// `monitorsEnabled` of the apps at sites a and b.
    pub apps: Vec<bool>,
    /// The replication connection between the databases.
    pub repl: Repl,
    /// The front door and its writing client.
    pub client: Client,
    /// Every committed entry applied: the cluster's intent, for faults that
    /// target "the primary" and for the validators.
    pub truth: ClusterState,
    /// Ghost records and the trace.
    pub hist: History,
    /// Faults in force.
    pub faults: FaultState,
    /// Events handled.
    pub events_processed: u64,
}

impl World {
    /// A healthy cluster at time 0: site a primary, b its streaming
    /// standby, the roles committed, a leader elected; the schedule's
    /// faults queued.
    pub fn new(seed: u64, flaw: Flaw, schedule: Schedule) -> Self {
        let settings = Settings::defaults(schedule.replication);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let clocks: Vec<Clock> = (0..3)
            .map(|_| {
                Clock::new(
                    rng.random_range(10_000..1_000_000),
                    rng.random_range(NOMINAL_PPM..=FASTEST_PPM),
                )
            })
            .collect();
        let init = Command::InitDatabase {
            primary: site_id(0),
            standby: site_id(1),
        };
        let mut truth = ClusterState::default();
        truth.apply(1, &init);
        let leader = rng.random_range(0..3);
        let witnesses: Vec<Witness> = (0..3)
            .map(|s| {
                let mut w = Witness::new(s, GrantBook::new(clocks[s].local(0)), truth.clone());
                w.term = 1;
                w.leads = s == leader;
                w.leader_known = Some(leader);
                w.election_timeout = rng.random_range(200..=400);
                w
            })
            .collect();
        let end = schedule.end_ms;
        let mut world = World {
            seed,
            flaw,
            settings,
            schedule,
            now: 0,
            end,
            queue: BinaryHeap::new(),
            seq: 0,
            ids: 0,
            rng,
            clocks,
            net: Network::default(),
            calls: BTreeMap::new(),
            raft: Raft::new(vec![init], leader),
            witnesses,
            guards: (0..2).map(Guard::new).collect(),
            dbs: vec![Db::primary(0), Db::standby(1, 0)],
            apps: vec![true, false],
            repl: Repl::default(),
            client: Client::default(),
            truth,
            hist: History::default(),
            faults: FaultState::default(),
            events_processed: 0,
        };
        if world.schedule.replication == ReplicationMode::Sync {
            world.dbs[0].sync_on = true;
        }
        world.start();
        world
    }

    fn start(&mut self) {
        self.trace(format!(
            "start: leader W{}, clocks {} ppm, replication {:?}",
            crate::network::site_name(self.raft.leader.unwrap_or(0)),
            self.clocks
                .iter()
                .map(|c| c.ppm().to_string())
                .collect::<Vec<_>>()
                .join("/"),
            self.schedule.replication
        ));
        self.repl_connect_now();
        for w in 0..3 {
            self.start_witness_process(w);
        }
        if let Some(l) = self.raft.leader {
            let inc = self.witnesses[l].inc;
            self.push(
                10,
                Ev::W {
                    w: l,
                    inc,
                    t: WTimer::LeaderStart { term: 1 },
                },
            );
        }
        self.push(50, Ev::RaftTick);
        self.push(100, Ev::ReplTick);
        self.push(WRITES_FROM_MS, Ev::ClientWrite);
        for i in 0..self.schedule.faults.len() {
            let at = self.schedule.faults[i].at;
            self.push(at, Ev::Fault { i, start: true });
        }
    }

    /// Starts witness `w`'s process parts (observer, agent): at time 0 and
    /// after a restart.
    pub fn start_witness_process(&mut self, w: usize) {
        let inc = self.witnesses[w].inc;
        let phase = self.rng.random_range(0..self.settings.probe_interval_ms);
        self.push(
            self.now + phase,
            Ev::W {
                w,
                inc,
                t: WTimer::ObserverRound,
            },
        );
        if w < 2 {
            let id = self.next_id();
            self.witnesses[w].agent = Some(Agent::new(id, w, &self.settings));
            self.agent_started(w);
        }
    }

    /// A fresh id (calls, incarnations).
    pub fn next_id(&mut self) -> u64 {
        self.ids += 1;
        self.ids
    }

    /// Schedules `ev` at real time `at` (never in the past).
    pub fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at: at.max(self.now),
            seq: self.seq,
            ev,
        });
    }

    /// Schedules a timer of witness `w` `ms` of its clock from now.
    pub fn w_timer(&mut self, w: usize, ms: u64, t: WTimer) {
        let inc = self.witnesses[w].inc;
        let at = self.clocks[w].after(self.now, ms);
        self.push(at, Ev::W { w, inc, t });
    }

    /// Host `s`'s clock now.
    pub fn local(&self, s: usize) -> u64 {
        self.clocks[s].local(self.now)
    }

    /// Until when `e`'s process is paused (SIGSTOP), if it is now.
    pub fn paused_until(&self, e: Endpoint) -> Option<u64> {
        match e {
            Endpoint::Witness(w) => {
                let p = self.witnesses[w].paused_until;
                (p > self.now && self.witnesses[w].alive).then_some(p)
            }
            _ => None,
        }
    }

    /// Adds a line to the trace.
    pub fn trace(&mut self, line: String) {
        self.hist.trace.push((self.now, line));
    }

    /// Runs until the end of the schedule.
    pub fn run(&mut self) {
        while let Some(s) = self.queue.pop() {
            if s.at > self.end {
                break;
            }
            self.now = s.at;
            self.events_processed += 1;
            self.dispatch(s.ev);
            self.observe_ghosts();
        }
        self.now = self.end;
        self.observe_ghosts();
        self.finish_history();
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver(msg) => self.arrive(*msg),
            Ev::Retransmit(msg) => self.transmit(*msg),
            Ev::RpcTimeout(id) => self.rpc_timeout(id),
            Ev::W { w, inc, t } => {
                let wit = &self.witnesses[w];
                if !wit.alive || wit.inc != inc {
                    return;
                }
                if let Some(until) = self.paused_until(Endpoint::Witness(w)) {
                    self.push(until, Ev::W { w, inc, t });
                    return;
                }
                self.witness_timer(w, t);
            }
            Ev::G { s, inc, t } => {
                if !self.guards[s].alive || self.guards[s].inc != inc {
                    return;
                }
                self.guard_timer(s, t);
            }
            Ev::DbOp(op) => self.db_op_event(op),
            Ev::RaftTick => {
                self.raft_tick();
                self.push(self.now + 50, Ev::RaftTick);
            }
            Ev::RaftCommit => self.try_commit(),
            Ev::ReplTick => {
                self.repl_tick();
                self.push(self.now + 100, Ev::ReplTick);
            }
            Ev::ClientWrite => {
                self.client_write();
                self.push(self.now + 50, Ev::ClientWrite);
            }
            Ev::Fault { i, start } => self.fault(i, start),
            Ev::Flap { i, k } => self.flap(i, k),
        }
    }

    fn witness_timer(&mut self, w: usize, t: WTimer) {
        match t {
            WTimer::Apply => self.apply_committed(w),
            WTimer::ObserverRound => self.observer_round(w),
            WTimer::LeaderStart { term } => self.leader_start(w, term),
            WTimer::Ctl { ctl, t } => {
                if self.witnesses[w].ctl.as_ref().is_some_and(|c| c.id == ctl) {
                    self.ctl_timer(w, t);
                }
            }
            WTimer::Agent { agent, t } => {
                if self.witnesses[w]
                    .agent
                    .as_ref()
                    .is_some_and(|a| a.id == agent)
                {
                    self.agent_timer(w, t);
                }
            }
        }
    }

    /// A message reached a live (or dead) process.
    pub fn receive(&mut self, msg: Msg) {
        match msg.body {
            Body::Req(id, req) => self.serve(msg.from, msg.to, id, req),
            Body::Resp(id, resp) => {
                if self.endpoint_alive(msg.to) {
                    self.response(id, resp);
                }
            }
            Body::Stream { conn, upto } => self.stream_arrived(msg.to, conn, upto, msg),
            Body::StreamAck { conn, flushed } => self.stream_ack_arrived(msg.to, conn, flushed),
        }
    }

    /// Whether `e`'s process runs (a database server counts whatever its
    /// state: its host answers for it).
    pub fn endpoint_alive(&self, e: Endpoint) -> bool {
        match e {
            Endpoint::Witness(w) => self.witnesses[w].alive,
            Endpoint::Guard(s) => self.guards[s].alive,
            Endpoint::Db(_) | Endpoint::Client => true,
        }
    }

    fn serve(&mut self, from: Endpoint, to: Endpoint, id: u64, req: Req) {
        if !self.endpoint_alive(to) {
            self.reply(to, from, id, Resp::Refused);
            return;
        }
        match (to, req) {
            (Endpoint::Witness(w), Req::Renew { site, epoch, sent }) => {
                let holder = match from {
                    Endpoint::Guard(_) => crate::history::Holder::Guard,
                    _ => crate::history::Holder::Agent,
                };
                let g = self.witness_renew(w, site, epoch, holder, sent);
                self.reply(to, from, id, Resp::Grant(g));
            }
            (Endpoint::Witness(w), Req::Expiry { site, epoch }) => {
                let e = self.witness_expiry(w, site, epoch);
                self.reply(to, from, id, Resp::Expiry(e));
            }
            (Endpoint::Witness(w), Req::Report(r)) => {
                self.receive_report(w, *r);
                self.reply(to, from, id, Resp::Ack);
            }
            (Endpoint::Witness(w), Req::Action(a)) => self.act(w, a, from, id),
            (Endpoint::Db(s), Req::Probe) => self.db_probe(s, from, id),
            (Endpoint::Db(s), Req::Write { id: wid }) => self.db_write(s, from, id, wid),
            (Endpoint::Client, Req::Repoint { to: site }) => {
                self.client_repoint(site);
                self.reply(to, from, id, Resp::Ack);
            }
            (to, req) => panic!("no handler for {req:?} at {to:?}"),
        }
    }

    /// An RPC's result, to its continuation.
    pub fn complete(&mut self, purpose: Purpose, result: Result<Resp, RpcError>) {
        match purpose {
            Purpose::AgentRenew {
                site,
                agent,
                sent,
                epoch,
                witness,
            } => self.agent_renew_answer(site, agent, sent, epoch, witness, result),
            Purpose::GuardRenew {
                site,
                guard,
                sent,
                epoch,
                witness,
            } => self.guard_renew_answer(site, guard, sent, epoch, witness, result),
            Purpose::Probe {
                w,
                inc,
                round,
                site,
                started,
            } => self.probe_done(w, inc, round, site, started, result),
            Purpose::Report { w, inc, round } => self.report_done(w, inc, round),
            Purpose::Ctl { w, ctl, tag } => self.ctl_answer(w, ctl, tag, result),
            Purpose::Write { id, site } => self.write_done(id, site, result),
        }
    }
}
