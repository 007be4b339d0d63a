//! The fake PostgreSQL servers of sites a and b, their streaming
//! replication, and the front door with its writing client.
//!
//! A server is stopped, starting (crash recovery) or running; a running one
//! may be frozen (every process stopped: by its lease guard, or by a fault:
//! the two compose, it runs only when neither holds it) or hung (the
//! postmaster stopped: no new connection, backends and WAL sender alive).
//! It is a primary or a standby (in recovery), holds a WAL (the ids of the
//! writes it took, in order), and as a primary may wait for its synchronous
//! standby before it acknowledges a commit.
//!
//! Replication is one connection, opened by the standby to its upstream
//! when both run and the link is up; the primary streams its WAL (at every
//! commit, and every 100 ms as a keepalive), the standby flushes and
//! acknowledges. A cut link leaves both ends believing in the connection
//! until their timeouts (`wal_sender_timeout` = `wal_receiver_timeout` =
//! 10 s, as `docs/configuration.md` recommends), so a primary in sync mode
//! sees its standby `streaming` with a stalled `flush_lsn` meanwhile.
//!
//! The client writes every 50 ms through the front door to the site the
//! front door points at (the `repointed` step moves it), each write bounded
//! by 1 s, and records every acknowledgement.

use palisade_core::observe::{PgObservation, Reachability, ReplicaInfo, WalReceiverInfo};
use rand::Rng;

use crate::network::{site_name, Body, Endpoint, Msg, Node, Purpose, Req, Resp, RpcError};
use crate::world::{Ev, World};

/// Bytes of WAL per write, for LSNs.
pub const RECORD_BYTES: u64 = 128;
/// `wal_sender_timeout` = `wal_receiver_timeout`.
const REPLICATION_TIMEOUT_MS: u64 = 10_000;
/// `wal_retrieve_retry_interval`.
const RETRY_INTERVAL_MS: u64 = 5000;
/// The client's bound on one write.
const WRITE_TIMEOUT_MS: u64 = 1000;
/// The timeout of the agent's database commands (`SiteDb::new(.., 10 s)`).
const COMMAND_TIMEOUT_MS: u64 = 10_000;

/// A server's processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proc {
    /// No process.
    Stopped,
    /// Starting up (crash recovery), ready at this real time.
    Starting(u64),
    /// Running.
    Running,
}

/// A commit waiting for the synchronous standby.
#[derive(Clone, Debug)]
pub struct Waiter {
    /// WAL records up to and including this write.
    pub pos: usize,
    /// The client.
    pub caller: Endpoint,
    /// Its call.
    pub call: u64,
}

/// One database server.
#[derive(Clone, Debug)]
pub struct Db {
    /// Its site.
    pub site: usize,
    /// Its processes.
    pub proc_: Proc,
    /// Bumped at every start (a process incarnation).
    pub life: u64,
    /// Frozen by its lease guard.
    pub frozen_guard: bool,
    /// Frozen by a fault (SIGSTOP of every process).
    pub frozen_fault: bool,
    /// The postmaster stopped (a fault): no new connection.
    pub hung: bool,
    /// A primary (not in recovery), or a standby.
    pub primary: bool,
    /// The standby's upstream.
    pub upstream: Option<usize>,
    /// The WAL: the ids of the writes it holds, in order.
    pub wal: Vec<u64>,
    /// `synchronous_standby_names` names the standby.
    pub sync_on: bool,
    /// Commits waiting for the standby.
    pub waiters: Vec<Waiter>,
}

impl Db {
    /// A running primary.
    pub fn primary(site: usize) -> Self {
        Self {
            site,
            proc_: Proc::Running,
            life: 1,
            frozen_guard: false,
            frozen_fault: false,
            hung: false,
            primary: true,
            upstream: None,
            wal: Vec::new(),
            sync_on: false,
            waiters: Vec::new(),
        }
    }

    /// A running standby of `upstream`.
    pub fn standby(site: usize, upstream: usize) -> Self {
        Self {
            primary: false,
            upstream: Some(upstream),
            ..Self::primary(site)
        }
    }

    /// Some process of the server exists (`has_processes`, `is_running`).
    pub fn has_processes(&self) -> bool {
        self.proc_ != Proc::Stopped
    }

    /// It answers a new connection.
    pub fn answering(&self) -> bool {
        self.proc_ == Proc::Running && !self.frozen_guard && !self.frozen_fault && !self.hung
    }

    /// It can acknowledge a write now (a hung postmaster's backends still
    /// can): what DESIGN rule 1 counts.
    pub fn writable(&self) -> bool {
        self.proc_ == Proc::Running && self.primary && !self.frozen_guard && !self.frozen_fault
    }

    fn frozen(&self) -> bool {
        self.frozen_guard || self.frozen_fault
    }
}

/// The replication connection.
#[derive(Clone, Debug)]
pub struct Conn {
    /// Its id.
    pub id: u64,
    /// The sending primary.
    pub primary: usize,
    /// The receiving standby.
    pub standby: usize,
    /// The standby believes in it (`pg_stat_wal_receiver` streaming).
    pub standby_sees: bool,
    /// The primary believes in it (a `pg_stat_replication` row).
    pub primary_sees: bool,
    /// When the standby last heard from the primary (real).
    pub last_msg_at: u64,
    /// When the primary last heard from the standby (real).
    pub last_ack_at: u64,
    /// Records the standby acknowledged as flushed.
    pub acked: usize,
}

/// Replication between the two servers.
#[derive(Clone, Debug, Default)]
pub struct Repl {
    /// The connection, if any.
    pub conn: Option<Conn>,
    /// When the standby tries to connect next (real).
    pub next_try: u64,
}

/// The front door and its client.
#[derive(Clone, Debug, Default)]
pub struct Client {
    /// The site the front door sends writes to.
    pub target: usize,
    /// The last write id.
    pub next_id: u64,
}

/// A database operation an agent or guard asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbOpKind {
    /// SIGKILL every process, confirm.
    Kill,
    /// Start (crash recovery if it crashed).
    Start,
    /// `pg_promote`.
    Promote,
    /// Rebuild as a standby of `upstream` (`pg_rewind`) and start.
    Rejoin {
        /// The new primary.
        upstream: usize,
    },
    /// Set (`true`) or clear `synchronous_standby_names`.
    SetSync(bool),
}

/// Who waits for a database operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requester {
    /// The reconcile loop of agent `agent` of witness `w`.
    Reconcile {
        /// Witness.
        w: usize,
        /// Agent incarnation.
        agent: u64,
    },
    /// Order `act` of agent `agent`.
    Act {
        /// Witness.
        w: usize,
        /// Agent incarnation.
        agent: u64,
        /// The order.
        act: u64,
    },
    /// The agent's own lease guard task.
    GuardTask {
        /// Witness.
        w: usize,
        /// Agent incarnation.
        agent: u64,
    },
    /// The lease guard process.
    Guard,
    /// A fault.
    Fault,
}

/// A database operation's completion.
#[derive(Clone, Debug)]
pub struct DbOpEv {
    /// The server's site.
    pub site: usize,
    /// The operation.
    pub kind: DbOpKind,
    /// Who waits.
    pub req: Requester,
    /// The server's incarnation when it began.
    pub life: u64,
    /// Its result, when known at the start.
    pub result: Option<Result<String, String>>,
}

impl World {
    /// Starts a database operation; its result comes back to `req`.
    pub fn db_op(&mut self, site: usize, kind: DbOpKind, req: Requester) {
        let db = &self.dbs[site];
        let life = db.life;
        let (delay, result): (u64, Option<Result<String, String>>) = match kind {
            DbOpKind::Kill => {
                if !db.has_processes() {
                    (5, Some(Ok("already stopped".into())))
                } else {
                    let by = match req {
                        Requester::Guard => "its lease guard",
                        Requester::GuardTask { .. } => "its agent's lease guard task",
                        Requester::Act { .. } => "its agent, on the leader's order",
                        Requester::Reconcile { .. } => "its agent",
                        Requester::Fault => "a fault",
                    };
                    if req != Requester::Fault {
                        self.hist.palisade_stopped(site, self.now, by);
                    }
                    self.kill_now(site, by);
                    let d = self.rng.random_range(20..=60);
                    (d, Some(Ok(format!("killed in {d} ms"))))
                }
            }
            DbOpKind::Start => {
                if db.has_processes() {
                    (5, Some(Ok("already running".into())))
                } else {
                    let d = self.rng.random_range(300..=1200);
                    let db = &mut self.dbs[site];
                    db.life += 1;
                    db.proc_ = Proc::Starting(self.now + d);
                    let life = db.life;
                    self.trace(format!("db {}: starting", site_name(site)));
                    self.push(
                        self.now + d,
                        Ev::DbOp(DbOpEv {
                            site,
                            kind,
                            req,
                            life,
                            result: None,
                        }),
                    );
                    return;
                }
            }
            DbOpKind::Promote => {
                if db.proc_ == Proc::Stopped {
                    (20, Some(Err("not running".into())))
                } else if !db.answering() {
                    (COMMAND_TIMEOUT_MS, Some(Err("timed out".into())))
                } else if db.primary {
                    (10, Some(Ok("already promoted".into())))
                } else {
                    (self.rng.random_range(100..=300), None)
                }
            }
            DbOpKind::Rejoin { .. } => {
                if db.has_processes() {
                    self.kill_now(site, "its agent, to rebuild it");
                }
                (self.rng.random_range(500..=2000), None)
            }
            DbOpKind::SetSync(_) => {
                if db.proc_ == Proc::Stopped {
                    (10, Some(Err("not running".into())))
                } else if !db.answering() {
                    (COMMAND_TIMEOUT_MS, Some(Err("timed out".into())))
                } else {
                    (self.rng.random_range(10..=30), None)
                }
            }
        };
        let life = if matches!(kind, DbOpKind::Rejoin { .. }) {
            self.dbs[site].life
        } else {
            life
        };
        self.push(
            self.now + delay,
            Ev::DbOp(DbOpEv {
                site,
                kind,
                req,
                life,
                result,
            }),
        );
    }

    /// A database operation completes.
    pub fn db_op_event(&mut self, ev: DbOpEv) {
        let site = ev.site;
        let result = match ev.result {
            Some(r) => r,
            None => self.db_op_effect(site, ev.kind, ev.life),
        };
        match ev.req {
            Requester::Reconcile { w, agent } => self.rec_op_done(w, agent, result),
            Requester::Act { w, agent, act } => self.act_op_done(w, agent, act, result),
            Requester::GuardTask { w, agent } => self.guard_task_kill_done(w, agent, result),
            Requester::Guard | Requester::Fault => {}
        }
    }

    fn db_op_effect(&mut self, site: usize, kind: DbOpKind, life: u64) -> Result<String, String> {
        match kind {
            DbOpKind::Start => {
                let db = &mut self.dbs[site];
                if db.life != life || !matches!(db.proc_, Proc::Starting(_)) {
                    return Err("the server exited during start".into());
                }
                db.proc_ = Proc::Running;
                let role = if db.primary { "primary" } else { "standby" };
                self.trace(format!("db {}: running ({role})", site_name(site)));
                self.hist.db_started(site, self.now);
                self.guard_kick(site);
                Ok("started".into())
            }
            DbOpKind::Promote => {
                let db = &self.dbs[site];
                if db.life != life || !db.answering() {
                    return Err("the server went away during promotion".into());
                }
                if db.primary {
                    return Ok("already promoted".into());
                }
                let db = &mut self.dbs[site];
                db.primary = true;
                db.upstream = None;
                let at = db.wal.len() as u64 * RECORD_BYTES;
                if self.repl.conn.as_ref().is_some_and(|c| c.standby == site) {
                    self.repl.conn = None;
                }
                self.trace(format!("db {}: PROMOTED at lsn {at}", site_name(site)));
                self.hist_promoted(site);
                Ok(format!("promoted at {at}"))
            }
            DbOpKind::Rejoin { upstream } => {
                let up = &self.dbs[upstream];
                let reachable = self.net.up(Node::D(site), Node::D(upstream));
                if !(reachable && up.answering() && up.primary) || self.dbs[site].has_processes() {
                    return Err(format!(
                        "pg_rewind: cannot reach the primary at {}",
                        site_name(upstream)
                    ));
                }
                let wal = up.wal.clone();
                let db = &mut self.dbs[site];
                db.wal = wal;
                db.primary = false;
                db.upstream = Some(upstream);
                db.proc_ = Proc::Running;
                db.life += 1;
                db.frozen_guard = false;
                db.frozen_fault = false;
                db.hung = false;
                db.sync_on = false;
                db.waiters.clear();
                self.repl.conn = None;
                self.repl_connect(upstream, site);
                self.trace(format!(
                    "db {}: rejoined as a standby of {}",
                    site_name(site),
                    site_name(upstream)
                ));
                self.hist.db_started(site, self.now);
                Ok("rejoined by pg_rewind".into())
            }
            DbOpKind::SetSync(on) => {
                if self.dbs[site].life != life || !self.dbs[site].answering() {
                    return Err("the server went away".into());
                }
                let changed = self.dbs[site].sync_on != on;
                self.dbs[site].sync_on = on;
                if !on {
                    let waiters = std::mem::take(&mut self.dbs[site].waiters);
                    for w in waiters {
                        self.reply(
                            Endpoint::Db(site),
                            w.caller,
                            w.call,
                            Resp::Written { sync: false },
                        );
                    }
                }
                if changed {
                    self.trace(format!(
                        "db {}: synchronous_standby_names {}",
                        site_name(site),
                        if on { "set" } else { "cleared" }
                    ));
                }
                Ok(format!("changed {changed}"))
            }
            DbOpKind::Kill => Ok("killed".into()),
        }
    }

    /// Every process of the server dies (SIGKILL).
    pub fn kill_now(&mut self, site: usize, by: &str) {
        let db = &mut self.dbs[site];
        if !db.has_processes() {
            return;
        }
        db.proc_ = Proc::Stopped;
        db.frozen_guard = false;
        db.frozen_fault = false;
        db.hung = false;
        db.waiters.clear();
        self.trace(format!("db {}: KILLED by {by}", site_name(site)));
        self.guard_kick(site);
    }

    /// The lease guard freezes (or thaws) the server.
    pub fn db_guard_freeze(&mut self, site: usize, on: bool) {
        if self.dbs[site].has_processes() {
            self.dbs[site].frozen_guard = on;
            if on {
                self.hist.palisade_frozen(site, self.now);
            }
        }
    }

    /// The observation a probe gets from a server that answers.
    fn observation(&self, site: usize) -> PgObservation {
        let db = &self.dbs[site];
        let lsn = db.wal.len() as u64 * RECORD_BYTES;
        let mut o = PgObservation {
            reachability: Reachability::Up,
            in_recovery: Some(!db.primary),
            current_lsn: None,
            receive_lsn: None,
            replay_lsn: None,
            replay_lag_seconds: None,
            wal_receiver: None,
            replicas: Vec::new(),
            sync_waiters: None,
            latency_ms: 0,
        };
        let conn = self.repl.conn.as_ref();
        if db.primary {
            o.current_lsn = Some(lsn);
            o.sync_waiters = Some(db.waiters.len() as u32);
            if let Some(c) = conn.filter(|c| c.primary == site && c.primary_sees) {
                let acked = c.acked as u64 * RECORD_BYTES;
                o.replicas.push(ReplicaInfo {
                    application_name: site_name(c.standby).to_string(),
                    client_addr: None,
                    state: "streaming".into(),
                    sync_state: if db.sync_on { "sync" } else { "async" }.into(),
                    sent_lsn: Some(lsn),
                    flush_lsn: Some(acked),
                    replay_lsn: Some(acked),
                });
            }
        } else {
            o.receive_lsn = Some(lsn);
            o.replay_lsn = Some(lsn);
            o.replay_lag_seconds = Some(0.0);
            if let Some(c) = conn.filter(|c| c.standby == site && c.standby_sees) {
                o.wal_receiver = Some(WalReceiverInfo {
                    status: "streaming".into(),
                    sender_host: Some(site_name(c.primary).to_string()),
                    sender_port: Some(5432),
                    flushed_lsn: Some(lsn),
                    last_msg_age_ms: Some(self.now.saturating_sub(c.last_msg_at)),
                });
            }
        }
        o
    }

    /// A probe reached server `site`.
    pub fn db_probe(&mut self, site: usize, from: Endpoint, id: u64) {
        let db = &self.dbs[site];
        let resp = match db.proc_ {
            Proc::Stopped => Resp::Refused,
            Proc::Starting(_) => Resp::NotReady,
            Proc::Running if !db.answering() => return,
            Proc::Running => Resp::Obs(Box::new(self.observation(site))),
        };
        self.reply(Endpoint::Db(site), from, id, resp);
    }

    /// A write reached server `site`.
    pub fn db_write(&mut self, site: usize, from: Endpoint, call: u64, id: u64) {
        let db = &mut self.dbs[site];
        let resp = match db.proc_ {
            Proc::Stopped => Resp::Refused,
            Proc::Starting(_) => Resp::WriteFailed("starting up".into()),
            Proc::Running if !db.answering() => return,
            Proc::Running if !db.primary => {
                Resp::WriteFailed("cannot execute INSERT in a read-only transaction".into())
            }
            Proc::Running => {
                db.wal.push(id);
                let pos = db.wal.len();
                if db.sync_on {
                    db.waiters.push(Waiter {
                        pos,
                        caller: from,
                        call,
                    });
                    self.stream_now(site);
                    return;
                }
                self.stream_now(site);
                Resp::Written { sync: false }
            }
        };
        self.reply(Endpoint::Db(site), from, call, resp);
    }

    // ----- replication -----

    /// The standby `standby` connects to `primary` now.
    pub fn repl_connect(&mut self, primary: usize, standby: usize) {
        let id = self.next_id();
        self.repl.conn = Some(Conn {
            id,
            primary,
            standby,
            standby_sees: true,
            primary_sees: true,
            last_msg_at: self.now,
            last_ack_at: self.now,
            acked: self.dbs[standby].wal.len(),
        });
    }

    /// The connection of the initial world (b streams from a).
    pub fn repl_connect_now(&mut self) {
        self.repl_connect(0, 1);
    }

    fn stream_now(&mut self, p: usize) {
        let Some(c) = self.repl.conn.as_ref() else {
            return;
        };
        if c.primary != p || !c.primary_sees {
            return;
        }
        let (conn, standby) = (c.id, c.standby);
        let upto = self.dbs[p].wal.len();
        self.transmit(Msg {
            from: Endpoint::Db(p),
            to: Endpoint::Db(standby),
            body: Body::Stream { conn, upto },
            expires: self.now + REPLICATION_TIMEOUT_MS,
            attempt: 0,
        });
    }

    /// Replication housekeeping: broken ends, timeouts, keepalives,
    /// (re)connection.
    pub fn repl_tick(&mut self) {
        if let Some(mut c) = self.repl.conn.take() {
            let (p, s) = (c.primary, c.standby);
            let link = self.net.up(Node::D(p), Node::D(s));
            let pdb = &self.dbs[p];
            let sdb = &self.dbs[s];
            if link && !(pdb.has_processes() && pdb.primary) {
                c.standby_sees = false;
            }
            if link && !(sdb.has_processes() && !sdb.primary && sdb.upstream == Some(p)) {
                c.primary_sees = false;
            }
            if self.now.saturating_sub(c.last_msg_at) > REPLICATION_TIMEOUT_MS {
                c.standby_sees = false;
            }
            if self.now.saturating_sub(c.last_ack_at) > REPLICATION_TIMEOUT_MS {
                c.primary_sees = false;
            }
            if c.standby_sees || c.primary_sees {
                let keepalive = c.primary_sees && pdb.proc_ == Proc::Running && !pdb.frozen();
                self.repl.conn = Some(c);
                if keepalive {
                    self.stream_now(p);
                }
                return;
            }
            self.repl.next_try = self.now + 100;
        }
        if self.now < self.repl.next_try {
            return;
        }
        for s in 0..2 {
            let sdb = &self.dbs[s];
            let Some(p) = sdb.upstream else { continue };
            if sdb.primary || sdb.proc_ != Proc::Running || sdb.frozen() {
                continue;
            }
            let pdb = &self.dbs[p];
            let ok = pdb.answering() && pdb.primary && self.net.up(Node::D(p), Node::D(s));
            if ok && pdb.wal.starts_with(&sdb.wal) {
                self.repl_connect(p, s);
                return;
            }
            self.repl.next_try = self.now + RETRY_INTERVAL_MS;
        }
    }

    /// WAL reached the standby.
    pub fn stream_arrived(&mut self, to: Endpoint, conn: u64, upto: usize, msg: Msg) {
        let Endpoint::Db(s) = to else { return };
        let Some(c) = self.repl.conn.as_ref().filter(|c| c.id == conn) else {
            return;
        };
        let p = c.primary;
        let sdb = &self.dbs[s];
        if sdb.frozen() {
            if self.now + 100 <= msg.expires {
                self.push(self.now + 100, Ev::Deliver(Box::new(msg)));
            }
            return;
        }
        if sdb.proc_ != Proc::Running || sdb.primary {
            return;
        }
        let have = sdb.wal.len();
        if upto > have && self.dbs[p].wal.len() >= upto {
            debug_assert!(self.dbs[p].wal.starts_with(&self.dbs[s].wal));
            let more: Vec<u64> = self.dbs[p].wal[have..upto].to_vec();
            self.dbs[s].wal.extend(more);
        }
        let flushed = self.dbs[s].wal.len();
        if let Some(c) = self.repl.conn.as_mut() {
            c.last_msg_at = self.now;
        }
        self.transmit(Msg {
            from: Endpoint::Db(s),
            to: Endpoint::Db(p),
            body: Body::StreamAck { conn, flushed },
            expires: self.now + REPLICATION_TIMEOUT_MS,
            attempt: 0,
        });
    }

    /// The standby's acknowledgement reached the primary.
    pub fn stream_ack_arrived(&mut self, to: Endpoint, conn: u64, flushed: usize) {
        let Endpoint::Db(p) = to else { return };
        let Some(c) = self.repl.conn.as_mut().filter(|c| c.id == conn) else {
            return;
        };
        let pdb = &self.dbs[p];
        if pdb.proc_ != Proc::Running || pdb.frozen() || !pdb.primary {
            return;
        }
        c.acked = c.acked.max(flushed);
        c.last_ack_at = self.now;
        let acked = c.acked;
        let (done, waiting): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut self.dbs[p].waiters)
            .into_iter()
            .partition(|w| w.pos <= acked);
        self.dbs[p].waiters = waiting;
        for w in done {
            self.reply(
                Endpoint::Db(p),
                w.caller,
                w.call,
                Resp::Written { sync: true },
            );
        }
    }

    // ----- the client -----

    /// The client's next write, through the front door.
    pub fn client_write(&mut self) {
        self.client.next_id += 1;
        let id = self.client.next_id;
        let site = self.client.target;
        self.call(
            Endpoint::Client,
            Endpoint::Db(site),
            Req::Write { id },
            WRITE_TIMEOUT_MS,
            Purpose::Write { id, site },
        );
    }

    /// A write's result.
    pub fn write_done(&mut self, id: u64, site: usize, result: Result<Resp, RpcError>) {
        if let Ok(Resp::Written { sync }) = result {
            self.hist.acked(id, site, self.now, sync);
        }
    }

    /// The front door now sends writes to `site`.
    pub fn client_repoint(&mut self, site: usize) {
        if self.client.target != site {
            self.trace(format!("front door repointed to {}", site_name(site)));
        }
        self.client.target = site;
    }
}
