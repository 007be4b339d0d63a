//! The lease, fence and failover protocol as a `stateright` model.
//!
//! Every decision is taken by palisade-core's own pure functions, never by
//! a copy of them: witnesses answer renewals with [`GrantBook::renew`] and
//! the leader's question with [`GrantBook::expiry`], from a
//! [`ClusterState`] built by [`ClusterState::apply`] of the committed
//! commands; agents keep a [`QuorumLease`]; the leader fences on an
//! [`ExpiryProof`]; site b's agent renews for [`lease_epoch`]; the lease
//! guard freezes, thaws and kills by [`lease_guard::decide`]. The model
//! adds only the world around them: time, clocks, the network, restarts,
//! and who may act when.
//!
//! * **Processes.** Three witnesses (sites a, b and c); site a's agent,
//!   with its lease guard and its primary database; site b's agent, with
//!   its standby; the leader.
//! * **Raft.** One committed log: after the configured roles,
//!   `BeginFailover` a→b, the `fenced` step, and the `promoted` step with
//!   the rest of the failover up to `FinishFailover`. Each witness applies
//!   `BeginFailover` when it likes, after its commit; that is the lag that
//!   matters: a witness that has not applied it still grants site a. The
//!   later entries change nothing a witness decides about site a (checked
//!   by [`Protocol::new`]) and only let it grant site b, so a witness that
//!   applied `BeginFailover` decides from every committed entry, as if it
//!   applied them the moment they were committed: site b's lease as early
//!   as can be, the worst case. A leader change is not modelled: a new
//!   leader starts with an empty proof, as an old one whose answers were
//!   lost.
//! * **Network, site a's lease.** A grant travels back to the agent
//!   through a set of messages and stays in it once sent: it may be
//!   delivered any number of times (duplication), in any order with the
//!   others (reordering, any delay), or never (loss); the grants of the
//!   renewal at 0 are still on their way in the initial state, so grants
//!   of two renewals cross. A renewal reaches each witness at the instant
//!   it is sent, or never: reaching it later, or twice, could only move
//!   the witness's last grant later (it vouches later), put it after a
//!   restart (remembered: it vouches later) or after it applied the
//!   failover (refused): never worse for safety. A refusal reaches the
//!   agent at once or never: it ends the lease and fences the site, so a
//!   late one is never worse than a lost one.
//! * **Network, the rest.** Site b's renewals and the leader's questions
//!   are round trips within one step, or lost: b's lease only gates its
//!   promotion, and an `Expired` answer stays true once given (the
//!   witness applied the failover, which is durable, and its grants ran
//!   out), so delaying either answer could only make the promotion later.
//!   Only `Expired` answers are recorded: the others never count in an
//!   [`ExpiryProof`] and never replace an `Expired`.
//! * **Restarts.** A witness restarts (crash and start as one step, at
//!   the start of a tick): its book is lost, its applied state is durable.
//!   A witness down for a while is one whose messages are lost and that
//!   applies late, which the model has anyway, and that restarts later
//!   and so vouches later. Within a tick, a restart before a grant and
//!   one after it leave the same verdict (both count from that clock
//!   value); one after the leader's question is one the leader no longer
//!   needs (an `Expired` answer stays counted).
//! * **Time.** A global tick, up to [`Bounds::horizon`]; within a tick any
//!   number of steps in any order. Each process has its own clock,
//!   `floor(now × rate)`: agents at rate 1, witnesses at rate 1 or
//!   `1 + drift` (see [`Bounds::every_clock`]).
//! * **Enforcement.** Site a's guard acts on every new order at once and
//!   at every tick (the real guard sleeps exactly until the deadline). The
//!   model's orders carry the lease's own end, without the real agent's
//!   `ttl / 4` margin, so the safety shown rests on the lease arithmetic
//!   alone.
//! * **Writes.** Synchronous replication: site a writes, site b receives
//!   (while it streams, until its promotion), site a acknowledges once b
//!   has the write, all while a is writable.

use std::collections::BTreeSet;

use palisade_core::failover::{Evidence, StepRecord, Trigger};
use palisade_core::lease::{
    lease_epoch, majority, may_grant, Expiry, ExpiryProof, Grant, GrantBook, LeaseConfig,
    QuorumLease,
};
use palisade_core::lease_guard::{self, GuardAction, GuardConfig, GuardOrder, ServerState};
use palisade_core::{ClusterState, Command, CommandResult, Failover, Kind, Outcome, Step};
use palisade_core::{NodeId, SiteId};
use stateright::{Model, Property};

/// The lease in ticks: as short as leaves it meaningful (a renewal at
/// tick 1 outlives the one at 0), so that a lease, its renewal, its
/// expiry and a failover fit in a few ticks. `ttl × (1 + drift)` = 3.
pub const LEASE: LeaseConfig = LeaseConfig {
    ttl_ms: 2,
    drift: 0.5,
};

/// Clock rates in halves of the real rate: slow 2/2, fast 3/2 =
/// `1 + drift`, the largest difference `drift` allows.
const SLOW: u64 = 2;
const FAST: u64 = 3;

/// The guard kills a server frozen this long (the real default is five
/// ttl): short, so that the freeze-then-kill path fits in the horizon.
const GUARD: GuardConfig = GuardConfig { hard_after_ms: 2 };

/// The epoch of the configured roles, and that of the failover a→b.
const OLD_EPOCH: u64 = 0;
const NEW_EPOCH: u64 = 1;

/// Site b's witness: site b's agent lives in its process and reads its
/// applied state.
const B_WITNESS: usize = 1;

/// Committed entries after the roles: `BeginFailover`, `fenced`, the rest.
const ENTRIES: usize = 3;

/// How far the exploration goes.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// The last real tick.
    pub horizon: u64,
    /// Renewals site a sends after the one at 0 (whose grants are on
    /// their way in the initial state).
    pub renewals: u8,
    /// Witness restarts, in all.
    pub restarts: u8,
    /// Client writes to site a's database.
    pub writes: u8,
    /// Every combination of slow and fast witness clocks; otherwise only
    /// the worst case, every witness fast. A slower witness clock only
    /// makes that witness vouch later in real time (it grants and refuses
    /// alike), so any run with slower witnesses is matched, step for step,
    /// by one with fast witnesses whose `Expired` answers come no later.
    pub every_clock: bool,
}

/// A deliberate bug, to show that the checker finds a counterexample
/// when the protocol is broken: a checker that never fails proves
/// nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flaw {
    /// The protocol as implemented.
    None,
    /// The leader fences on one witness's `Expired`, not a majority's.
    MinorityProof,
    /// The witnesses wait `ttl` after their last grant, forgetting the
    /// clock drift (`drift` = 0 in the witnesses' `LeaseConfig` only).
    NoDriftWait,
    /// A restarted witness forgets its grants but counts its wait from
    /// clock 0, as if it had not restarted.
    RestartForgetsItsStart,
}

fn site_a() -> SiteId {
    SiteId("a".into())
}

fn site_b() -> SiteId {
    SiteId("b".into())
}

/// A witness's grant of site a's renewal sent at `sent` (agent clock),
/// on its way back to the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Granted {
    pub from: usize,
    pub sent: u64,
}

/// On what the leader recorded the `fenced` step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FenceBasis {
    /// Site a's agent confirmed it killed its database.
    AgentKilled,
    /// An [`ExpiryProof`] of these many witnesses.
    LeaseExpired { vouchers: usize },
}

/// One witness.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Witness {
    /// Clock rate, in halves.
    pub rate: u64,
    /// It applied `BeginFailover` (durable across a restart).
    pub began: bool,
    /// Its memory of grants (lost in a restart).
    pub book: GrantBook,
    /// Ghost: it restarted at least once.
    pub restarted: bool,
}

/// Site a: the agent, its lease guard and its primary database.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SiteA {
    pub lease: QuorumLease,
    /// The guard's latest order.
    pub order: Option<GuardOrder>,
    pub server: ServerState,
    pub renewals: u8,
    pub last_sent: u64,
    /// The agent killed its database on the leader's fence order, and
    /// its confirmation is on its way to the leader.
    pub kill_confirmed: bool,
    /// Writes the database took, and how many were acknowledged.
    pub written: u8,
    pub acked: u8,
    /// Ghost: the guard thawed a server frozen by a lease that had run
    /// out (a reversible fence), not the first freeze of the start.
    pub thawed: bool,
}

/// Site b: the agent and its standby, promoted at most once. Its lease
/// only gates the promotion, so it lives in that step alone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SiteB {
    pub promoted: bool,
    /// Writes of site a it received (none after its promotion).
    pub received: u8,
}

/// The whole system at one instant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// Real time, in ticks.
    pub now: u64,
    /// Committed entries after the roles (0..=ENTRIES).
    pub committed: usize,
    pub fence: Option<FenceBasis>,
    pub witnesses: [Witness; 3],
    pub a: SiteA,
    pub b: SiteB,
    /// The leader's proof for the failover's fence step.
    pub proof: ExpiryProof,
    pub net: BTreeSet<Granted>,
    pub restarts: u8,
    /// Ghost: a witness that had restarted was among the vouchers.
    pub restarted_vouched: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Time passes one tick; witness `restart`, if any, crashes and
    /// restarts at the new instant.
    Tick {
        restart: Option<usize>,
    },
    /// Site a's agent (or its guard, on its own) renews with every
    /// witness; those whose bit is set in the mask receive the renewal
    /// (the others never will).
    RenewA(u8),
    /// Deliver a grant to site a's agent (it stays on the network).
    Deliver(Granted),
    /// The leader commits `BeginFailover` a→b, at any time (the failure
    /// detector may be wrong).
    BeginFailover,
    /// Witness `w` applies `BeginFailover`.
    Apply(usize),
    /// Site a's agent obeys the fence order: a hard order, the guard
    /// kills, the agent confirms.
    AgentKills,
    /// The leader asks witness `w` whether site a's lease ended.
    Ask(usize),
    FenceOnKill,
    FenceOnExpiry,
    /// Site b's agent renews its new lease with every witness and, holding
    /// it, promotes its standby; the leader commits the `promoted` step
    /// and the rest of the failover.
    Promote,
    /// Site a takes a write and streams it to site b, which flushes it
    /// (a synchronous commit waits for that; without a streaming standby
    /// it waits for ever).
    Write,
    /// Site a acknowledges the write to its client.
    Ack,
}

/// The model: bounds, a flaw (or none), and the cluster state after each
/// prefix of the committed log, for each way the fence can be recorded.
pub struct Protocol {
    pub bounds: Bounds,
    pub flaw: Flaw,
    /// `[fenced on a kill, fenced on expiry][committed entries]`.
    prefixes: [Vec<ClusterState>; 2],
    site_a: SiteId,
    site_b: SiteId,
}

fn step_done(step: Step, detail: &str) -> Command {
    Command::StepDone {
        epoch: NEW_EPOCH,
        record: StepRecord {
            step,
            started_at_ms: 0,
            done_at_ms: 0,
            detail: detail.into(),
            lsn: None,
            checks: vec![],
        },
    }
}

/// The cluster state after each prefix of the log, by applying the real
/// commands in order; each one must apply.
fn prefixes(fence_detail: &str) -> Vec<ClusterState> {
    let entries: [Vec<Command>; ENTRIES] = [
        vec![Command::BeginFailover(Box::new(Failover {
            epoch: NEW_EPOCH,
            kind: Kind::Failover,
            from: site_a(),
            to: site_b(),
            trigger: Trigger::Automatic,
            reason: "model".into(),
            evidence: Evidence::default(),
            started_at_ms: 0,
            steps: vec![],
            outcome: None,
            finished_at_ms: None,
        }))],
        vec![step_done(Step::Fenced, fence_detail)],
        vec![
            step_done(Step::Promoted, "promoted"),
            step_done(Step::AppFlipped, "flipped"),
            step_done(Step::Repointed, "repointed"),
            step_done(Step::Verified, "verified"),
            Command::FinishFailover {
                epoch: NEW_EPOCH,
                outcome: Outcome::Completed,
                at_ms: 0,
            },
        ],
    ];
    let mut state = ClusterState::default();
    let roles = Command::InitDatabase {
        primary: site_a(),
        standby: site_b(),
    };
    assert_eq!(state.apply(1, &roles), CommandResult::Applied);
    let mut index = 1;
    let mut out = vec![state.clone()];
    for entry in entries {
        for command in &entry {
            index += 1;
            let result = state.apply(index, command);
            assert_eq!(result, CommandResult::Applied, "{command:?}");
        }
        out.push(state.clone());
    }
    out
}

/// A process's clock at real time `now`.
fn clock(rate: u64, now: u64) -> u64 {
    now * rate / SLOW
}

/// The agents' clock: the slow rate, the worst case against fast
/// witnesses (a lease lasts longest in real time).
fn agent_clock(s: &State) -> u64 {
    clock(SLOW, s.now)
}

/// Site a's database acknowledges writes: running (neither frozen nor
/// killed) and its lease valid on its clock.
pub fn a_writable(s: &State) -> bool {
    s.a.server == ServerState::Running && s.a.lease.is_valid(agent_clock(s), OLD_EPOCH, &LEASE)
}

/// The agent writes its guard an order on every change of its lease (its
/// end, no margin); the guard acts on it at once.
fn order_and_guard(a: &mut SiteA, now: u64) {
    let hard = a.order.is_some_and(|o| o.hard);
    a.order = Some(GuardOrder {
        epoch: OLD_EPOCH,
        deadline_ms: a.lease.valid_until_ms(OLD_EPOCH, &LEASE).unwrap_or(0),
        hard,
    });
    guard(a, now);
}

/// The lease guard polls until it has nothing left to do.
fn guard(a: &mut SiteA, now: u64) {
    loop {
        let d = lease_guard::decide(a.order.as_ref(), a.server, now, &GUARD);
        a.server = match d.action {
            GuardAction::Nothing => return,
            GuardAction::Freeze => ServerState::Frozen {
                epoch: d.epoch,
                since_ms: now,
            },
            GuardAction::Thaw => {
                a.thawed |=
                    matches!(a.server, ServerState::Frozen { since_ms, .. } if since_ms > 0);
                ServerState::Running
            }
            GuardAction::Kill => ServerState::Stopped,
        };
    }
}

impl Protocol {
    pub fn new(bounds: Bounds, flaw: Flaw) -> Self {
        let model = Self {
            bounds,
            flaw,
            prefixes: [
                prefixes("fenced by the site agent of a"),
                prefixes("lease expired"),
            ],
            site_a: site_a(),
            site_b: site_b(),
        };
        // What makes it enough to track `BeginFailover` alone per
        // witness: after it, no entry changes what a witness decides
        // about site a, and only the `fenced` step lets it grant site b.
        for prefixes in &model.prefixes {
            for (k, state) in prefixes.iter().enumerate().skip(1) {
                assert_eq!(state.epoch, NEW_EPOCH);
                assert_eq!(lease_epoch(state, &site_a()), None);
                assert!(matches!(
                    may_grant(state, &site_a(), OLD_EPOCH),
                    Grant::Refused { handover: None, .. }
                ));
                let b = lease_epoch(state, &site_b());
                assert_eq!(b, (k >= 2).then_some(NEW_EPOCH), "entry {k}");
            }
        }
        model
    }

    /// What witness `w` decides from: the roles, or every committed entry
    /// once it applied `BeginFailover`.
    fn view(&self, s: &State, w: usize) -> &ClusterState {
        let by = usize::from(matches!(s.fence, Some(FenceBasis::LeaseExpired { .. })));
        let applied = if s.witnesses[w].began { s.committed } else { 0 };
        &self.prefixes[by][applied]
    }

    /// The lease timing the witnesses vouch with.
    fn witness_lease(&self) -> LeaseConfig {
        match self.flaw {
            Flaw::NoDriftWait => LeaseConfig {
                drift: 0.0,
                ..LEASE
            },
            _ => LEASE,
        }
    }

    /// Witness `to` receives site a's renewal sent at `sent`.
    fn renew_a(&self, s: &mut State, to: usize, sent: u64) {
        let view = self.view(s, to);
        let w = &mut s.witnesses[to];
        let now = clock(w.rate, s.now);
        match w.book.renew(view, &self.site_a, OLD_EPOCH, now) {
            Grant::Granted => {
                s.net.insert(Granted { from: to, sent });
            }
            Grant::Refused { .. } => {
                // A committed failover away from the site: the lease ends
                // now and the site is fenced for good.
                s.a.lease.revoked();
                if let Some(o) = s.a.order.as_mut() {
                    o.hard = true;
                }
                order_and_guard(&mut s.a, sent);
            }
            Grant::Unknown { .. } => {}
        }
    }
}

impl Model for Protocol {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        // Site a's agent renewed at 0 and every witness granted; the
        // grants are on their way, and its database waits frozen for
        // them (an agent keeps its database fenced until it holds the
        // lease). Bit `w` of `fast`: witness `w`'s clock is fast.
        let roles = &self.prefixes[0][0];
        let choices = if self.bounds.every_clock { 0..8 } else { 7..8 };
        let mut out = Vec::new();
        for fast in choices {
            let witnesses = [0, 1, 2].map(|w| {
                let mut book = GrantBook::new(0);
                let g = book.renew(roles, &site_a(), OLD_EPOCH, 0);
                assert_eq!(g, Grant::Granted);
                Witness {
                    rate: if fast & (1 << w) != 0 { FAST } else { SLOW },
                    began: false,
                    book,
                    restarted: false,
                }
            });
            let mut a = SiteA {
                lease: QuorumLease::new(majority(3)),
                order: None,
                server: ServerState::Running,
                renewals: 0,
                last_sent: 0,
                kill_confirmed: false,
                written: 0,
                acked: 0,
                thawed: false,
            };
            order_and_guard(&mut a, 0);
            let quorum = match self.flaw {
                Flaw::MinorityProof => 1,
                _ => majority(3),
            };
            out.push(State {
                now: 0,
                committed: 0,
                fence: None,
                witnesses,
                a,
                b: SiteB {
                    promoted: false,
                    received: 0,
                },
                proof: ExpiryProof::new(quorum),
                net: (0..3).map(|from| Granted { from, sent: 0 }).collect(),
                restarts: 0,
                restarted_vouched: false,
            });
        }
        out
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        let bounds = &self.bounds;
        let now = agent_clock(s);
        if s.now < bounds.horizon {
            actions.push(Action::Tick { restart: None });
            if s.restarts < bounds.restarts {
                // Witnesses 0 and 2 play the same part (site b's agent
                // reads witness 1): restarting 2 is restarting 0.
                actions.extend([0, 1].map(|w| Action::Tick { restart: Some(w) }));
            }
        }
        let hard = s.a.order.is_some_and(|o| o.hard);
        if !hard && s.a.renewals < bounds.renewals && now > s.a.last_sent {
            actions.extend((1..8).map(Action::RenewA));
        }
        actions.extend(s.net.iter().map(|g| Action::Deliver(*g)));
        let vouching = s.proof.vouching();
        for (i, w) in s.witnesses.iter().enumerate() {
            if s.committed >= 1 && !w.began {
                actions.push(Action::Apply(i));
            }
            // Once proven, more answers change nothing.
            if s.committed == 1 && !s.proof.is_proven() && !vouching.contains(&(i as NodeId)) {
                actions.push(Action::Ask(i));
            }
        }
        match s.committed {
            0 => actions.push(Action::BeginFailover),
            1 => {
                if s.a.kill_confirmed {
                    actions.push(Action::FenceOnKill);
                }
                if s.proof.is_proven() {
                    actions.push(Action::FenceOnExpiry);
                }
            }
            _ => {}
        }
        // Once the fence is recorded, a kill only takes power from site a.
        if s.committed == 1 && !s.a.kill_confirmed {
            actions.push(Action::AgentKills);
        }
        if !s.b.promoted && lease_epoch(self.view(s, B_WITNESS), &self.site_b).is_some() {
            actions.push(Action::Promote);
        }
        let writable = a_writable(s);
        if writable && !s.b.promoted && s.a.written < bounds.writes {
            actions.push(Action::Write);
        }
        if writable && s.a.acked < s.a.written && s.b.received >= s.a.written {
            actions.push(Action::Ack);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        let now = agent_clock(&s);
        match action {
            Action::Tick { restart } => {
                s.now += 1;
                let now = agent_clock(&s);
                guard(&mut s.a, now);
                if let Some(w) = restart {
                    s.restarts += 1;
                    let w = &mut s.witnesses[w];
                    let started = match self.flaw {
                        Flaw::RestartForgetsItsStart => 0,
                        _ => clock(w.rate, s.now),
                    };
                    w.restarted = true;
                    w.book = GrantBook::new(started);
                }
            }
            Action::RenewA(mask) => {
                s.a.renewals += 1;
                s.a.last_sent = now;
                for to in (0..3).filter(|w| mask & (1 << w) != 0) {
                    self.renew_a(&mut s, to, now);
                }
            }
            Action::Deliver(Granted { from, sent }) => {
                s.a.lease.granted(from as NodeId, sent, OLD_EPOCH);
                order_and_guard(&mut s.a, now);
            }
            Action::BeginFailover => s.committed = 1,
            Action::Apply(w) => s.witnesses[w].began = true,
            Action::AgentKills => {
                s.a.order = Some(GuardOrder {
                    epoch: OLD_EPOCH,
                    deadline_ms: 0,
                    hard: true,
                });
                guard(&mut s.a, now);
                s.a.kill_confirmed = true;
            }
            Action::Ask(w) => {
                let witness = &s.witnesses[w];
                let verdict = witness.book.expiry(
                    self.view(&s, w),
                    &self.site_a,
                    NEW_EPOCH,
                    clock(witness.rate, s.now),
                    &self.witness_lease(),
                );
                if verdict != Expiry::Expired {
                    return None;
                }
                s.proof.record(w as NodeId, verdict);
            }
            Action::FenceOnKill => {
                s.committed = 2;
                s.fence = Some(FenceBasis::AgentKilled);
            }
            Action::FenceOnExpiry => {
                let vouching = s.proof.vouching();
                s.restarted_vouched = vouching.iter().any(|w| s.witnesses[*w as usize].restarted);
                s.committed = 2;
                s.fence = Some(FenceBasis::LeaseExpired {
                    vouchers: vouching.len(),
                });
            }
            Action::Promote => {
                let mut lease = QuorumLease::new(majority(3));
                for w in 0..3 {
                    let view = self.view(last, w);
                    let witness = &mut s.witnesses[w];
                    let at = clock(witness.rate, s.now);
                    match witness.book.renew(view, &self.site_b, NEW_EPOCH, at) {
                        Grant::Granted => lease.granted(w as NodeId, now, NEW_EPOCH),
                        Grant::Refused { .. } => lease.revoked(),
                        Grant::Unknown { .. } => {}
                    }
                }
                if !lease.is_valid(now, NEW_EPOCH, &LEASE) {
                    // No majority granted yet: as if the renewals were lost.
                    return None;
                }
                s.b.promoted = true;
                s.committed = ENTRIES;
            }
            Action::Write => {
                s.a.written += 1;
                s.b.received = s.a.written;
            }
            Action::Ack => s.a.acked = s.a.written,
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("at most one writable primary", |_: &Self, s: &State| {
                !(a_writable(s) && s.b.promoted)
            }),
            Property::always(
                "promoted only after a confirmed kill or a proven expiry",
                |_: &Self, s: &State| {
                    !s.b.promoted
                        || match s.fence {
                            Some(FenceBasis::AgentKilled) => s.a.server == ServerState::Stopped,
                            Some(FenceBasis::LeaseExpired { vouchers }) => vouchers >= majority(3),
                            None => false,
                        }
                },
            ),
            Property::always(
                "site a's database runs only under a live lease",
                |_: &Self, s: &State| {
                    s.a.server != ServerState::Running
                        || s.a.lease.is_valid(agent_clock(s), OLD_EPOCH, &LEASE)
                },
            ),
            Property::always(
                "no acknowledged synchronous write lost",
                |_: &Self, s: &State| !s.b.promoted || s.b.received >= s.a.acked,
            ),
            Property::always(
                "no live old lease once its expiry is proven",
                |_: &Self, s: &State| {
                    !(s.proof.is_proven() && s.a.lease.is_valid(agent_clock(s), OLD_EPOCH, &LEASE))
                },
            ),
            Property::sometimes("a failover completes", |_: &Self, s: &State| {
                s.committed == ENTRIES
            }),
            Property::sometimes("promoted on a confirmed kill", |_: &Self, s: &State| {
                s.b.promoted && s.fence == Some(FenceBasis::AgentKilled)
            }),
            Property::sometimes("promoted on a proven expiry", |_: &Self, s: &State| {
                s.b.promoted && matches!(s.fence, Some(FenceBasis::LeaseExpired { .. }))
            }),
            Property::sometimes(
                "an acknowledged write survives a failover",
                |_: &Self, s: &State| s.b.promoted && s.a.acked > 0,
            ),
            Property::sometimes("a frozen primary is thawed", |_: &Self, s: &State| {
                s.a.thawed
            }),
            Property::sometimes("a restarted witness vouches", |_: &Self, s: &State| {
                s.restarted_vouched
            }),
        ]
    }
}
