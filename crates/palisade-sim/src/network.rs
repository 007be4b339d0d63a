//! Hosts, links and messages.
//!
//! Three site hosts hold the processes: site `s`'s witness process (with its
//! agent and, when it leads, the controller) is [`Node::W`]`(s)`; its
//! database server and lease guard are [`Node::D`]`(s)` (sites a and b
//! only); the front door and its writing client is [`Node::Client`]. A link
//! joins two nodes; links between processes of one host never fail. The
//! brief's link kinds: witness↔witness (Raft, reports, renewals of the
//! agent, the leader's orders and questions), witness↔database site
//! (probes, the guard's renewals), database↔database (replication),
//! client↔site (front-door writes).
//!
//! A message sent over a cut link, lost, or on a link cut while it is in
//! flight is retransmitted with exponential backoff (TCP), until its
//! lifetime ends: so a cut shorter than the lifetime delays a message,
//! a longer one loses it. An RPC's caller gives up at its timeout; its
//! request may still be served later (the server cannot know).

use std::collections::BTreeMap;

use palisade_core::detector::LastWritable;
use palisade_core::lease::{Expiry, Grant};
use palisade_core::observe::PgObservation;
use palisade_core::{NodeId, SiteId};
use rand::Rng;

use crate::world::{Ev, World};

/// A host-level node that links join.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    /// Site `s`'s witness process host side.
    W(usize),
    /// Site `s`'s database host side (server and lease guard).
    D(usize),
    /// The front door and its client.
    Client,
}

impl Node {
    /// The site host it lives on (`None`: the client's own).
    pub fn host(self) -> Option<usize> {
        match self {
            Node::W(s) | Node::D(s) => Some(s),
            Node::Client => None,
        }
    }

    /// Short name for traces: `Wa`, `Db`, `client`.
    pub fn name(self) -> String {
        match self {
            Node::W(s) => format!("W{}", site_name(s)),
            Node::D(s) => format!("D{}", site_name(s)),
            Node::Client => "client".into(),
        }
    }
}

/// Who sends or receives a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// A witness process (its peer service, agent and controller).
    Witness(usize),
    /// A lease guard process.
    Guard(usize),
    /// A database server.
    Db(usize),
    /// The front door / client.
    Client,
}

impl Endpoint {
    /// The node the endpoint sits on.
    pub fn node(self) -> Node {
        match self {
            Endpoint::Witness(s) => Node::W(s),
            Endpoint::Guard(s) | Endpoint::Db(s) => Node::D(s),
            Endpoint::Client => Node::Client,
        }
    }
}

/// `a`, `b`, `c`.
pub fn site_name(s: usize) -> &'static str {
    ["a", "b", "c"][s]
}

/// The core's name of site `s`.
pub fn site_id(s: usize) -> SiteId {
    SiteId(site_name(s).to_string())
}

/// The index of a core site name.
pub fn site_index(s: &SiteId) -> usize {
    match s.0.as_str() {
        "a" => 0,
        "b" => 1,
        _ => 2,
    }
}

/// The Raft node id of site `s`'s witness.
pub fn node_id(s: usize) -> NodeId {
    s as NodeId + 1
}

/// The site of witness `id`.
pub fn witness_site(id: NodeId) -> usize {
    (id - 1) as usize
}

/// A leader's order to a site agent (the daemon's `SiteAction`, the kinds
/// an unplanned failover uses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SiteAction {
    /// Fence the database and confirm.
    Fence {
        /// The failover's epoch.
        epoch: u64,
    },
    /// Take the lease for `epoch`, then promote.
    Promote {
        /// The failover's epoch.
        epoch: u64,
    },
    /// Set the app's `monitorsEnabled`.
    SetMonitors {
        /// The failover's epoch.
        epoch: u64,
        /// The value.
        enabled: bool,
    },
    /// Read the app's `monitorsEnabled`.
    ReadMonitors {
        /// The failover's epoch.
        epoch: u64,
    },
}

impl SiteAction {
    /// The epoch the order names.
    pub fn epoch(&self) -> u64 {
        match self {
            SiteAction::Fence { epoch }
            | SiteAction::Promote { epoch }
            | SiteAction::SetMonitors { epoch, .. }
            | SiteAction::ReadMonitors { epoch } => *epoch,
        }
    }
}

/// A witness's report to the leader (the daemon's `peer_msgs::Report`).
#[derive(Clone, Debug)]
pub struct Report {
    /// The reporting witness.
    pub witness: NodeId,
    /// What it saw of each database.
    pub dbs: BTreeMap<SiteId, PgObservation>,
    /// Its memory of each database as a writable primary.
    pub last_writable: BTreeMap<SiteId, LastWritable>,
    /// For how long it has found each unreachable database so.
    pub unreachable_for: BTreeMap<SiteId, u64>,
}

/// A request.
#[derive(Clone, Debug)]
pub enum Req {
    /// Renew `site`'s lease for `epoch` (agent or guard to a witness).
    Renew {
        /// The site.
        site: usize,
        /// The epoch.
        epoch: u64,
        /// Ghost: the send time on the sender's clock, for the validators
        /// only (the real renewal does not carry it; the witness never
        /// reads it).
        sent: u64,
    },
    /// Does the witness vouch that `site`'s lease ended, for the failover
    /// of `epoch`? (leader to a witness)
    Expiry {
        /// The site.
        site: usize,
        /// The failover's epoch.
        epoch: u64,
    },
    /// A witness's report to the leader.
    Report(Box<Report>),
    /// An order to a site agent.
    Action(SiteAction),
    /// A probe of a database.
    Probe,
    /// A client write.
    Write {
        /// The write's id.
        id: u64,
    },
    /// Repoint the front door.
    Repoint {
        /// The new primary's site.
        to: usize,
    },
}

/// A response.
#[derive(Clone, Debug)]
pub enum Resp {
    /// A witness's answer to a renewal.
    Grant(Grant),
    /// A witness's answer to an expiry question.
    Expiry(Expiry),
    /// Received.
    Ack,
    /// A site agent's result.
    Done(Result<String, String>),
    /// A database's answer to a probe.
    Obs(Box<PgObservation>),
    /// Nothing listens (the process is down; its host answered).
    Refused,
    /// The database answered but is starting up.
    NotReady,
    /// The write committed; `sync`: the standby had flushed it first.
    Written {
        /// Confirmed by the synchronous standby.
        sync: bool,
    },
    /// The write failed (read-only server).
    WriteFailed(String),
}

/// A message body.
#[derive(Clone, Debug)]
pub enum Body {
    /// A request of call `call`.
    Req(u64, Req),
    /// The response to call `call`.
    Resp(u64, Resp),
    /// Replication: the primary's WAL up to `upto` records, on connection
    /// `conn`.
    Stream {
        /// The replication connection.
        conn: u64,
        /// WAL records the primary has.
        upto: usize,
    },
    /// Replication: the standby flushed `flushed` records.
    StreamAck {
        /// The replication connection.
        conn: u64,
        /// Records flushed.
        flushed: usize,
    },
}

/// A message in flight.
#[derive(Clone, Debug)]
pub struct Msg {
    /// Sender.
    pub from: Endpoint,
    /// Receiver.
    pub to: Endpoint,
    /// What it carries.
    pub body: Body,
    /// Real time after which it is no longer retransmitted.
    pub expires: u64,
    /// Transmissions so far.
    pub attempt: u32,
}

/// What an RPC's result is for (the caller's continuation).
#[derive(Clone, Debug)]
pub enum Purpose {
    /// An agent's renewal.
    AgentRenew {
        /// The agent's site.
        site: usize,
        /// The agent's incarnation.
        agent: u64,
        /// Send time on the agent's clock.
        sent: u64,
        /// The epoch renewed.
        epoch: u64,
        /// The witness asked.
        witness: usize,
    },
    /// A lease guard's renewal.
    GuardRenew {
        /// The guard's site.
        site: usize,
        /// The guard's incarnation.
        guard: u64,
        /// Send time on the guard's clock.
        sent: u64,
        /// The epoch renewed.
        epoch: u64,
        /// The witness asked.
        witness: usize,
    },
    /// A witness's probe of a database.
    Probe {
        /// The prober.
        w: usize,
        /// Its incarnation.
        inc: u64,
        /// Its probe round.
        round: u64,
        /// The database's site.
        site: usize,
        /// When the probe began (real).
        started: u64,
    },
    /// A witness's report to the leader.
    Report {
        /// The reporter.
        w: usize,
        /// Its incarnation.
        inc: u64,
        /// Its probe round.
        round: u64,
    },
    /// A controller's question or order.
    Ctl {
        /// The leader.
        w: usize,
        /// The controller's incarnation.
        ctl: u64,
        /// What for.
        tag: CtlTag,
    },
    /// A client write.
    Write {
        /// The write's id.
        id: u64,
        /// The site written to.
        site: usize,
    },
}

/// What a controller's call is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtlTag {
    /// The fence's order to the old primary's agent.
    FenceAgent,
    /// An expiry question to witness `w`.
    Expiry(usize),
    /// The promotion order.
    Promote,
    /// The flip: monitors off at the old site.
    FlipOff,
    /// The flip: monitors on at the new site.
    FlipOn,
    /// The front door's repointing.
    Repoint,
    /// The verify step's probe of the new primary.
    VerifyProbe,
    /// The verify step's read of site `s`'s monitors.
    ReadMonitors(usize),
    /// The verify step switching a returning old site's app off.
    SwitchOff(usize),
}

/// An RPC waiting for its response.
#[derive(Clone, Debug)]
pub struct Call {
    /// Who is waiting, and for what.
    pub purpose: Purpose,
    /// The caller's endpoint (its pause defers the timeout).
    pub caller: Endpoint,
}

/// Why an RPC failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RpcError {
    /// No answer within the timeout.
    Timeout,
}

/// The links: cuts (counted, so overlapping faults compose) and extra loss.
#[derive(Clone, Debug, Default)]
pub struct Network {
    cuts: BTreeMap<(Node, Node), u32>,
    lossy: BTreeMap<(Node, Node), u32>,
}

fn key(a: Node, b: Node) -> (Node, Node) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// Whether two nodes share a host (their link never fails).
pub fn local(a: Node, b: Node) -> bool {
    a == b || (a.host().is_some() && a.host() == b.host())
}

impl Network {
    /// Whether `a` and `b` can talk now.
    pub fn up(&self, a: Node, b: Node) -> bool {
        local(a, b) || self.cuts.get(&key(a, b)).copied().unwrap_or(0) == 0
    }

    /// Cuts the link (one more cut on it).
    pub fn cut(&mut self, a: Node, b: Node) {
        if !local(a, b) {
            *self.cuts.entry(key(a, b)).or_default() += 1;
        }
    }

    /// Undoes one cut of the link.
    pub fn heal(&mut self, a: Node, b: Node) {
        if let Some(n) = self.cuts.get_mut(&key(a, b)) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.cuts.remove(&key(a, b));
            }
        }
    }

    /// Sets (or, with 0, clears) extra loss on the link, in percent.
    pub fn set_loss(&mut self, a: Node, b: Node, pct: u32) {
        if pct == 0 {
            self.lossy.remove(&key(a, b));
        } else {
            self.lossy.insert(key(a, b), pct);
        }
    }

    /// The links cut now, for traces.
    pub fn describe_cuts(&self) -> String {
        let v: Vec<String> = self
            .cuts
            .keys()
            .map(|(a, b)| format!("{}-{}", a.name(), b.name()))
            .collect();
        v.join(" ")
    }

    /// Extra loss on the link, in percent.
    pub fn loss_pct(&self, a: Node, b: Node) -> u32 {
        self.lossy.get(&key(a, b)).copied().unwrap_or(0)
    }
}

/// Base loss of every non-local transmission, per mille.
const BASE_LOSS_PER_MILLE: u32 = 1;

impl World {
    /// Sends `msg` (first transmission).
    pub fn transmit(&mut self, msg: Msg) {
        let (a, b) = (msg.from.node(), msg.to.node());
        if local(a, b) {
            let at = self.now + self.rng.random_range(0..=1);
            self.push(at, Ev::Deliver(Box::new(msg)));
            return;
        }
        let lost = self.rng.random_range(0..1000) < BASE_LOSS_PER_MILLE
            || self.rng.random_range(0..100) < self.net.loss_pct(a, b);
        if !self.net.up(a, b) || lost {
            self.retransmit(msg);
            return;
        }
        let at = self.now + self.latency();
        self.push(at, Ev::Deliver(Box::new(msg)));
    }

    /// One way delay across sites: a few ms, now and then a spike.
    fn latency(&mut self) -> u64 {
        let base = self.rng.random_range(1..=6);
        if self.rng.random_range(0..1000) < 5 {
            base + self.rng.random_range(20..=250)
        } else {
            base
        }
    }

    /// Schedules the next transmission of a lost message, if it is still
    /// worth sending.
    pub fn retransmit(&mut self, mut msg: Msg) {
        let backoff = (200u64 << msg.attempt.min(4)).min(3200);
        msg.attempt += 1;
        let at = self.now + backoff;
        if at <= msg.expires {
            self.push(at, Ev::Retransmit(Box::new(msg)));
        }
    }

    /// A message arrives at its receiver's node, unless its link was cut
    /// meanwhile (then it is lost and retransmitted).
    pub fn arrive(&mut self, msg: Msg) {
        let (a, b) = (msg.from.node(), msg.to.node());
        if !self.net.up(a, b) {
            self.retransmit(msg);
            return;
        }
        if let Some(until) = self.paused_until(msg.to) {
            self.push(until, Ev::Deliver(Box::new(msg)));
            return;
        }
        self.receive(msg);
    }

    /// Calls `to` with `req`, giving up after `timeout_ms`; the result comes
    /// back to `purpose`'s continuation.
    pub fn call(
        &mut self,
        from: Endpoint,
        to: Endpoint,
        req: Req,
        timeout_ms: u64,
        purpose: Purpose,
    ) -> u64 {
        let id = self.next_id();
        self.calls.insert(
            id,
            Call {
                purpose,
                caller: from,
            },
        );
        self.push(self.now + timeout_ms, Ev::RpcTimeout(id));
        self.transmit(Msg {
            from,
            to,
            body: Body::Req(id, req),
            expires: self.now + timeout_ms + 1000,
            attempt: 0,
        });
        id
    }

    /// Answers call `id` from `from` to its caller `to`.
    pub fn reply(&mut self, from: Endpoint, to: Endpoint, id: u64, resp: Resp) {
        self.transmit(Msg {
            from,
            to,
            body: Body::Resp(id, resp),
            expires: self.now + 2000,
            attempt: 0,
        });
    }

    /// A call's timeout fired: unless answered, it fails.
    pub fn rpc_timeout(&mut self, id: u64) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if let Some(until) = self.paused_until(call.caller) {
            self.push(until, Ev::RpcTimeout(id));
            return;
        }
        let call = self.calls.remove(&id).expect("looked up above");
        self.complete(call.purpose, Err(RpcError::Timeout));
    }

    /// A response arrived for call `id`.
    pub fn response(&mut self, id: u64, resp: Resp) {
        if let Some(call) = self.calls.remove(&id) {
            self.complete(call.purpose, Ok(resp));
        }
    }
}
