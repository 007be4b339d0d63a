//! Seeded fault schedules, and how each fault is done and undone.
//!
//! A seed gives the replication mode and up to five faults, each at a
//! random instant between 3 s (the lease and replication have settled)
//! and 28 s, lasting until 30 s at the latest; the run then goes on
//! without faults until 45 s, so the cluster can finish what it began.
//! Faults overlap freely, with one exception: the primary's lease guard is
//! never killed around a crash or pause of a database site's witness (both
//! dead at once leaves the database unguarded: RFC 0002's documented
//! limit, "run the witness unit with `KillMode=process`").

use std::collections::BTreeMap;
use std::fmt;

use palisade_core::detector::ReplicationMode;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::clock::{FASTEST_PPM, NOMINAL_PPM};
use crate::database::{DbOpKind, Proc, Requester};
use crate::network::{site_index, site_name, Node};
use crate::world::{Ev, World};

/// When faults may begin.
pub const FAULTS_FROM_MS: u64 = 3000;
/// When every fault has ended.
pub const HEALED_BY_MS: u64 = 30_000;
/// When a run ends.
pub const RUN_MS: u64 = 45_000;

/// Which database a fault hits, resolved when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbTarget {
    /// The desired primary of the committed state.
    Primary,
    /// The desired standby.
    Standby,
}

/// What flaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlapTarget {
    /// One link.
    Link(Node, Node),
    /// Every link of a site.
    Site(usize),
}

/// One fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Cut one link.
    Cut(Node, Node),
    /// Cut every link between a site and the rest.
    Partition(usize),
    /// Cut a database host (its server and lease guard) from every node
    /// but its own site's witness: the witnesses elsewhere, the other
    /// database and the front door lose it; its agent does not.
    IsolateDb(usize),
    /// A site's hosts lose power: its witness process, lease guard and
    /// database die; at the end the witness starts again (a standby's
    /// database too, as its service manager would; a primary's is its
    /// agent's to start or rebuild).
    SiteDown(usize),
    /// A witness's state machine stalls: it applies nothing committed
    /// until the end (it still grants from the state it has).
    LagApply(usize),
    /// SIGKILL a witness process; it restarts at the end.
    CrashWitness(usize),
    /// SIGSTOP a witness process; SIGCONT at the end.
    PauseWitness(usize),
    /// SIGKILL a database (a standby is started again at the end, as
    /// systemd would; a primary is its agent's to restart).
    KillDb(DbTarget),
    /// SIGSTOP a database's postmaster (its backends and WAL sender live).
    HangDb(DbTarget),
    /// SIGSTOP every process of a database.
    FreezeDb(DbTarget),
    /// A host's clock rate changes (within the drift bound), for good.
    Clock(usize, u64),
    /// The Raft leader steps down.
    LeaderChange,
    /// Cut and heal, every `half` ms.
    Flap(FlapTarget, u64),
    /// SIGKILL a lease guard (its agent starts it again).
    KillGuard(DbTarget),
    /// Extra packet loss (percent) on a link.
    Lossy(Node, Node, u32),
}

/// The kind of a fault, for the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// [`Fault::Cut`].
    CutLink,
    /// [`Fault::Partition`].
    PartitionSite,
    /// [`Fault::SiteDown`].
    SiteDown,
    /// [`Fault::IsolateDb`].
    IsolateDb,
    /// [`Fault::LagApply`].
    LagApply,
    /// [`Fault::CrashWitness`].
    CrashWitness,
    /// [`Fault::PauseWitness`].
    PauseWitness,
    /// [`Fault::KillDb`].
    KillDb,
    /// [`Fault::HangDb`].
    HangDb,
    /// [`Fault::FreezeDb`].
    FreezeDb,
    /// [`Fault::Clock`].
    ClockDrift,
    /// [`Fault::LeaderChange`].
    LeaderChange,
    /// [`Fault::Flap`].
    Flap,
    /// [`Fault::KillGuard`].
    KillGuard,
    /// [`Fault::Lossy`].
    LossyLink,
}

impl Fault {
    /// Its kind.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Cut(..) => FaultKind::CutLink,
            Fault::Partition(_) => FaultKind::PartitionSite,
            Fault::SiteDown(_) => FaultKind::SiteDown,
            Fault::IsolateDb(_) => FaultKind::IsolateDb,
            Fault::LagApply(_) => FaultKind::LagApply,
            Fault::CrashWitness(_) => FaultKind::CrashWitness,
            Fault::PauseWitness(_) => FaultKind::PauseWitness,
            Fault::KillDb(_) => FaultKind::KillDb,
            Fault::HangDb(_) => FaultKind::HangDb,
            Fault::FreezeDb(_) => FaultKind::FreezeDb,
            Fault::Clock(..) => FaultKind::ClockDrift,
            Fault::LeaderChange => FaultKind::LeaderChange,
            Fault::Flap(..) => FaultKind::Flap,
            Fault::KillGuard(_) => FaultKind::KillGuard,
            Fault::Lossy(..) => FaultKind::LossyLink,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Cut(a, b) => write!(f, "cut {}-{}", a.name(), b.name()),
            Fault::Partition(s) => write!(f, "partition site {}", site_name(*s)),
            Fault::SiteDown(s) => write!(f, "power loss at site {}", site_name(*s)),
            Fault::IsolateDb(s) => write!(f, "isolate database host D{}", site_name(*s)),
            Fault::LagApply(s) => write!(f, "W{} applies nothing", site_name(*s)),
            Fault::CrashWitness(s) => write!(f, "kill witness W{}", site_name(*s)),
            Fault::PauseWitness(s) => write!(f, "SIGSTOP witness W{}", site_name(*s)),
            Fault::KillDb(t) => write!(f, "SIGKILL the {t:?} database"),
            Fault::HangDb(t) => write!(f, "hang the {t:?}'s postmaster"),
            Fault::FreezeDb(t) => write!(f, "freeze the {t:?} database"),
            Fault::Clock(s, ppm) => write!(f, "clock of host {} to {ppm} ppm", site_name(*s)),
            Fault::LeaderChange => write!(f, "leader change"),
            Fault::Flap(FlapTarget::Link(a, b), half) => {
                write!(f, "flap {}-{} every {half} ms", a.name(), b.name())
            }
            Fault::Flap(FlapTarget::Site(s), half) => {
                write!(f, "flap site {} every {half} ms", site_name(*s))
            }
            Fault::KillGuard(t) => write!(f, "SIGKILL the {t:?}'s lease guard"),
            Fault::Lossy(a, b, pct) => write!(f, "{pct}% loss on {}-{}", a.name(), b.name()),
        }
    }
}

/// A fault at an instant, for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planned {
    /// When it starts (real ms).
    pub at: u64,
    /// How long it lasts (0: an instant).
    pub dur: u64,
    /// What.
    pub fault: Fault,
}

/// A seed's schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// Replication mode of the database pair.
    pub replication: ReplicationMode,
    /// The faults, by start time.
    pub faults: Vec<Planned>,
    /// When the run ends.
    pub end_ms: u64,
}

/// Every cross-host link that carries traffic.
pub fn links() -> Vec<(Node, Node)> {
    use Node::*;
    vec![
        (W(0), W(1)),
        (W(0), W(2)),
        (W(1), W(2)),
        (W(0), D(1)),
        (W(1), D(0)),
        (W(2), D(0)),
        (W(2), D(1)),
        (D(0), D(1)),
        (Client, D(0)),
        (Client, D(1)),
    ]
}

/// Every link of database host `s` but the one to its own witness.
pub fn db_links(s: usize) -> Vec<(Node, Node)> {
    let o = 1 - s;
    vec![
        (Node::D(s), Node::W(o)),
        (Node::D(s), Node::W(2)),
        (Node::D(s), Node::D(o)),
        (Node::D(s), Node::Client),
    ]
}

/// Every link between site `s` and the rest.
pub fn site_links(s: usize) -> Vec<(Node, Node)> {
    let mine = [Node::W(s), Node::D(s)];
    let mut others = vec![Node::Client];
    for o in (0..3).filter(|o| *o != s) {
        others.push(Node::W(o));
        if o < 2 {
            others.push(Node::D(o));
        }
    }
    let mut v = Vec::new();
    for m in mine {
        if m == Node::D(2) {
            continue;
        }
        for o in &others {
            v.push((m, *o));
        }
    }
    v
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, v: &[T]) -> T {
    v[rng.random_range(0..v.len())]
}

fn db_target(rng: &mut ChaCha8Rng) -> DbTarget {
    if rng.random_range(0..4) == 0 {
        DbTarget::Standby
    } else {
        DbTarget::Primary
    }
}

fn duration(rng: &mut ChaCha8Rng, short: (u64, u64), long: (u64, u64), p_short: u32) -> u64 {
    if rng.random_range(0..100) < p_short {
        rng.random_range(short.0..=short.1)
    } else {
        rng.random_range(long.0..=long.1)
    }
}

fn draw(rng: &mut ChaCha8Rng) -> (Fault, u64) {
    const WEIGHTS: [(FaultKind, u32); 15] = [
        (FaultKind::LagApply, 6),
        (FaultKind::CutLink, 16),
        (FaultKind::PartitionSite, 14),
        (FaultKind::SiteDown, 8),
        (FaultKind::IsolateDb, 7),
        (FaultKind::CrashWitness, 10),
        (FaultKind::PauseWitness, 8),
        (FaultKind::KillDb, 8),
        (FaultKind::HangDb, 6),
        (FaultKind::FreezeDb, 6),
        (FaultKind::ClockDrift, 6),
        (FaultKind::LeaderChange, 8),
        (FaultKind::Flap, 8),
        (FaultKind::KillGuard, 5),
        (FaultKind::LossyLink, 7),
    ];
    let total: u32 = WEIGHTS.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    let mut kind = FaultKind::CutLink;
    for (k, w) in WEIGHTS {
        if x < w {
            kind = k;
            break;
        }
        x -= w;
    }
    let site3 = |rng: &mut ChaCha8Rng| {
        let r = rng.random_range(0..10);
        if r < 4 {
            0
        } else if r < 7 {
            1
        } else {
            2
        }
    };
    match kind {
        FaultKind::CutLink => {
            let (a, b) = pick(rng, &links());
            (
                Fault::Cut(a, b),
                duration(rng, (100, 1500), (1500, 9000), 50),
            )
        }
        FaultKind::PartitionSite => {
            let s = site3(rng);
            (
                Fault::Partition(s),
                duration(rng, (200, 1500), (1500, 9000), 30),
            )
        }
        FaultKind::SiteDown => {
            let s = site3(rng);
            (Fault::SiteDown(s), rng.random_range(500..=9000))
        }
        FaultKind::IsolateDb => {
            let s = if rng.random_range(0..4) == 0 { 1 } else { 0 };
            (Fault::IsolateDb(s), rng.random_range(1000..=14_000))
        }
        FaultKind::LagApply => (
            Fault::LagApply(rng.random_range(0..3)),
            rng.random_range(500..=8000),
        ),
        FaultKind::CrashWitness => {
            let s = site3(rng);
            (Fault::CrashWitness(s), rng.random_range(300..=9000))
        }
        FaultKind::PauseWitness => {
            let s = site3(rng);
            (Fault::PauseWitness(s), rng.random_range(200..=5000))
        }
        FaultKind::KillDb => (Fault::KillDb(db_target(rng)), rng.random_range(500..=5000)),
        FaultKind::HangDb => (Fault::HangDb(db_target(rng)), rng.random_range(500..=6000)),
        FaultKind::FreezeDb => (
            Fault::FreezeDb(db_target(rng)),
            rng.random_range(200..=5000),
        ),
        FaultKind::ClockDrift => {
            let s = rng.random_range(0..3);
            (
                Fault::Clock(s, rng.random_range(NOMINAL_PPM..=FASTEST_PPM)),
                0,
            )
        }
        FaultKind::LeaderChange => (Fault::LeaderChange, 0),
        FaultKind::Flap => {
            let target = if rng.random_range(0..2) == 0 {
                let (a, b) = pick(rng, &links());
                FlapTarget::Link(a, b)
            } else {
                FlapTarget::Site(site3(rng))
            };
            (
                Fault::Flap(target, rng.random_range(150..=2000)),
                rng.random_range(3000..=10_000),
            )
        }
        FaultKind::KillGuard => (Fault::KillGuard(DbTarget::Primary), 0),
        FaultKind::LossyLink => {
            let (a, b) = pick(rng, &links());
            (
                Fault::Lossy(a, b, rng.random_range(20..=60)),
                rng.random_range(1000..=8000),
            )
        }
    }
}

/// A database site's witness down (or frozen) around `[from, to]`.
fn witness_down_near(faults: &[Planned], from: u64, to: u64) -> bool {
    faults.iter().any(|p| {
        matches!(
            p.fault,
            Fault::CrashWitness(0 | 1) | Fault::PauseWitness(0 | 1) | Fault::SiteDown(0 | 1)
        ) && p.at <= to + 1000
            && p.at + p.dur + 3000 >= from
    })
}

impl Schedule {
    /// The schedule of `seed`.
    pub fn generate(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_fa17_0000_0000);
        let replication = if rng.random_range(0..10) < 4 {
            ReplicationMode::Sync
        } else {
            ReplicationMode::Async
        };
        let n = match rng.random_range(0..100) {
            0..5 => 0,
            5..45 => 1,
            45..70 => 2,
            70..85 => 3,
            85..93 => 4,
            _ => 5,
        };
        let mut faults: Vec<Planned> = Vec::new();
        while faults.len() < n {
            let (fault, dur) = draw(&mut rng);
            let at = rng.random_range(FAULTS_FROM_MS..=HEALED_BY_MS - 2000);
            let dur = dur.min(HEALED_BY_MS - at);
            let p = Planned { at, dur, fault };
            let clash = match fault {
                Fault::KillGuard(_) => witness_down_near(&faults, at, at),
                Fault::CrashWitness(0 | 1)
                | Fault::PauseWitness(0 | 1)
                | Fault::SiteDown(0 | 1) => faults.iter().any(|g| {
                    matches!(g.fault, Fault::KillGuard(_)) && witness_down_near(&[p], g.at, g.at)
                }),
                _ => false,
            };
            if !clash {
                faults.push(p);
            }
        }
        faults.sort_by_key(|p| p.at);
        Self {
            replication,
            faults,
            end_ms: RUN_MS,
        }
    }

    /// The schedule in words.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?} replication", self.replication);
        if self.faults.is_empty() {
            s.push_str(", no fault");
        }
        for p in &self.faults {
            s.push_str(&format!("; at {} ms", p.at));
            if p.dur > 0 {
                s.push_str(&format!(" for {} ms", p.dur));
            }
            s.push_str(&format!(": {}", p.fault));
        }
        s
    }
}

/// Faults in force: what each resolved to when it started.
#[derive(Clone, Debug, Default)]
pub struct FaultState {
    /// Fault index → the database site it hit and that server's incarnation.
    pub resolved: BTreeMap<usize, (usize, u64)>,
    /// Flapping faults whose link is cut now.
    pub flapping_cut: BTreeMap<usize, bool>,
}

impl World {
    fn resolve(&self, t: DbTarget) -> usize {
        let db = self.truth.db.as_ref().expect("roles are recorded at start");
        site_index(match t {
            DbTarget::Primary => &db.primary,
            DbTarget::Standby => &db.standby,
        })
    }

    fn cut_links(&mut self, links: &[(Node, Node)], cut: bool) {
        for (a, b) in links {
            if cut {
                self.net.cut(*a, *b);
            } else {
                self.net.heal(*a, *b);
            }
        }
    }

    fn flap_links(&self, t: FlapTarget) -> Vec<(Node, Node)> {
        match t {
            FlapTarget::Link(a, b) => vec![(a, b)],
            FlapTarget::Site(s) => site_links(s),
        }
    }

    /// Fault `i` starts or ends.
    pub fn fault(&mut self, i: usize, start: bool) {
        let p = self.schedule.faults[i];
        if start && p.dur > 0 {
            self.push(p.at + p.dur, Ev::Fault { i, start: false });
        }
        let verb = if start { "FAULT" } else { "end of fault" };
        self.trace(format!("{verb}: {}", p.fault));
        if start {
            self.hist.fault_started(i, p, self.now);
        }
        match p.fault {
            Fault::Cut(a, b) => self.cut_links(&[(a, b)], start),
            Fault::Partition(s) => self.cut_links(&site_links(s), start),
            Fault::IsolateDb(s) => self.cut_links(&db_links(s), start),
            Fault::SiteDown(s) => {
                if start {
                    self.crash_witness(s);
                    if s < 2 {
                        self.stop_guard_process(s, "power loss");
                        if self.dbs[s].has_processes() {
                            self.hist.direct_fault(s, self.now);
                        }
                        self.db_op(s, DbOpKind::Kill, Requester::Fault);
                    }
                } else {
                    self.restart_witness(s);
                    if s < 2 && self.resolve(DbTarget::Standby) == s {
                        let db = &self.dbs[s];
                        if db.proc_ == Proc::Stopped && !db.primary {
                            self.db_op(s, DbOpKind::Start, Requester::Fault);
                        }
                    }
                }
            }
            Fault::LagApply(s) => {
                if start {
                    self.witnesses[s].apply_blocked = true;
                } else {
                    self.witnesses[s].apply_blocked = false;
                    self.apply_committed(s);
                }
            }
            Fault::CrashWitness(s) => {
                if start {
                    self.crash_witness(s);
                } else {
                    self.restart_witness(s);
                }
            }
            Fault::PauseWitness(s) => {
                if start {
                    if self.witnesses[s].alive {
                        self.witnesses[s].paused_until = p.at + p.dur;
                    }
                } else if self.witnesses[s].paused_until > 0 {
                    self.witnesses[s].paused_until = 0;
                    self.trace(format!("W{} resumed (SIGCONT)", site_name(s)));
                }
            }
            Fault::KillDb(t) => {
                if start {
                    let site = self.resolve(t);
                    self.faults.resolved.insert(i, (site, 0));
                    self.hist.direct_fault(site, self.now);
                    self.db_op(site, DbOpKind::Kill, Requester::Fault);
                } else if let Some((site, _)) = self.faults.resolved.remove(&i) {
                    // The standby's service manager starts it again (a
                    // primary is left to its agent).
                    let db = &self.dbs[site];
                    if db.proc_ == Proc::Stopped && !db.primary {
                        self.db_op(site, DbOpKind::Start, Requester::Fault);
                    }
                }
            }
            Fault::HangDb(t) | Fault::FreezeDb(t) => {
                let hang = matches!(p.fault, Fault::HangDb(_));
                if start {
                    let site = self.resolve(t);
                    let db = &mut self.dbs[site];
                    if db.has_processes() {
                        if hang {
                            db.hung = true;
                        } else {
                            db.frozen_fault = true;
                        }
                        let life = db.life;
                        self.faults.resolved.insert(i, (site, life));
                        self.hist.direct_fault(site, self.now);
                    }
                } else if let Some((site, life)) = self.faults.resolved.remove(&i) {
                    let db = &mut self.dbs[site];
                    if db.life == life {
                        if hang {
                            db.hung = false;
                        } else {
                            db.frozen_fault = false;
                        }
                    }
                    self.guard_kick(site);
                }
            }
            Fault::Clock(s, ppm) => {
                let now = self.now;
                self.clocks[s].set_rate(now, ppm);
            }
            Fault::LeaderChange => self.force_leader_change(),
            Fault::Flap(target, _) => {
                if start {
                    self.push(self.now, Ev::Flap { i, k: 0 });
                } else if self.faults.flapping_cut.remove(&i) == Some(true) {
                    let links = self.flap_links(target);
                    self.cut_links(&links, false);
                }
            }
            Fault::KillGuard(t) => {
                if start {
                    let site = self.resolve(t);
                    self.stop_guard_process(site, "SIGKILL (fault)");
                }
            }
            Fault::Lossy(a, b, pct) => self.net.set_loss(a, b, if start { pct } else { 0 }),
        }
    }

    /// The `k`-th toggle of flapping fault `i`.
    pub fn flap(&mut self, i: usize, k: u32) {
        let p = self.schedule.faults[i];
        let Fault::Flap(target, half) = p.fault else {
            return;
        };
        if self.now >= p.at + p.dur {
            return;
        }
        let cut = k.is_multiple_of(2);
        let links = self.flap_links(target);
        self.cut_links(&links, cut);
        self.faults.flapping_cut.insert(i, cut);
        self.push(self.now + half, Ev::Flap { i, k: k + 1 });
    }
}
