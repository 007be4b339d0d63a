//! A deterministic simulation of a whole palisade cluster, on a virtual
//! millisecond clock, driving `palisade-core`'s own decisions.
//!
//! The daemon (`crates/palisade/src/{controller,agent,lease_guard}`) is a
//! thin async runtime around pure state machines; this crate is a second,
//! synchronous runtime around the same machines, in which every process,
//! link, clock and database is simulated, so that hundreds of seeded fault
//! schedules run in seconds and every failing seed replays exactly.
//!
//! Module map, by responsibility:
//!
//! * [`world`]: the event queue, the virtual time, every process's state,
//!   and the dispatch of events to the modules below.
//! * [`clock`]: each host's monotonic clock, its rate within the drift
//!   bound.
//! * [`network`]: hosts, links (cut, healed, lossy), messages with delay,
//!   loss and retransmission, RPCs with timeouts.
//! * [`raft`]: the replicated log, simply: one leader per term that commits
//!   only with a majority, elections with pre-vote, followers that apply
//!   after a delay.
//! * [`witness`]: a witness process: its grant book, its answers to
//!   renewals and expiry questions, its probes and reports.
//! * [`leader`]: the leader's controller: the failure detector and the
//!   failover step machine, carried out as the daemon's controller does.
//! * [`site`]: a database site's agent: reconcile loop, lease renewals,
//!   its own lease guard task, the leader's orders.
//! * [`guard`]: the lease guard process beside each database, with its own
//!   renewals.
//! * [`database`]: the fake PostgreSQL servers, their replication and the
//!   front-door client that writes through to the primary.
//! * [`faults`]: seeded fault schedules and how each fault is done and
//!   undone.
//! * [`history`]: what the validators read (ghost records of the world's
//!   real state) and the event trace.
//! * [`validators`]: one validator per safety rule, each with its own
//!   result and evidence.
//!
//! Entry point: [`run`] (one seed) and [`RunReport`].

pub mod clock;
pub mod database;
pub mod faults;
pub mod guard;
pub mod history;
pub mod leader;
pub mod network;
pub mod raft;
pub mod site;
pub mod validators;
pub mod witness;
pub mod world;

pub use faults::{FaultKind, Schedule};
pub use validators::{RuleResult, Verdict};

use palisade_core::detector::{CrashPolicy, DetectorConfig, ReplicationMode};
use palisade_core::lease::LeaseConfig;

/// A deliberate defect, to prove that the validators catch a broken
/// protocol (a checker that never fails proves nothing). `None` is
/// palisade as built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flaw {
    /// palisade as built.
    None,
    /// The leader records the `fenced` step at once, without a proof (the
    /// daemon's `unsafe-skip-fence` failpoint).
    SkipFence,
    /// The leader's fence accepts one witness's `Expired` as a proof.
    MinorityProof,
    /// Nothing enforces a lapsed lease: the guard never freezes and the
    /// agent's own guard task never kills.
    NoLeaseEnforcement,
    /// The witnesses vouch `ttl` after their last grant, forgetting the
    /// clock drift.
    NoDriftWait,
    /// A restarted witness counts its wait from clock 0, not from its
    /// start, as if it remembered the grants it forgot.
    RestartForgetsItsStart,
}

/// The daemon's configuration as the simulation uses it: the documented
/// defaults (`crates/palisade/src/config/database.rs`), and the replication
/// mode of the seed.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `[probe] interval_ms`.
    pub probe_interval_ms: u64,
    /// `[probe] timeout_ms`.
    pub probe_timeout_ms: u64,
    /// `[lease]`.
    pub lease: LeaseConfig,
    /// `[lease] renew_interval_ms` (default `ttl / 4`).
    pub renew_interval_ms: u64,
    /// `[failover]`, as the detector reads it.
    pub detector: DetectorConfig,
    /// `[failover] sync_degrade_after_ms`.
    pub sync_degrade_after_ms: u64,
}

impl Settings {
    /// The daemon's defaults, with `replication`.
    pub fn defaults(replication: ReplicationMode) -> Self {
        let probe_interval_ms = 250;
        let probe_timeout_ms = 1000;
        Self {
            probe_interval_ms,
            probe_timeout_ms,
            lease: LeaseConfig {
                ttl_ms: 2000,
                drift: 0.1,
            },
            renew_interval_ms: 500,
            detector: DetectorConfig {
                down_after_ms: 1000,
                report_ttl_ms: (3 * probe_interval_ms).max(probe_timeout_ms + probe_interval_ms),
                on_primary_crash: CrashPolicy::Restart,
                restart_budget_ms: 10_000,
                cooldown_ms: 300_000,
                cooldown_down_after_ms: 30_000,
                max_lag_bytes: 16 * 1024 * 1024,
                max_lag_seconds: 30.0,
                replication,
            },
            sync_degrade_after_ms: 3000,
        }
    }
}

/// What one seed did: its schedule, every validator's result, figures and
/// the trace (for a failing seed's report).
#[derive(Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// The flaw the run was built with.
    pub flaw: Flaw,
    /// The fault schedule the seed gave.
    pub schedule: Schedule,
    /// One result per rule.
    pub results: Vec<RuleResult>,
    /// Events processed.
    pub events: u64,
    /// Failovers begun.
    pub failovers: usize,
    /// Front-door writes acknowledged.
    pub acked_writes: usize,
    /// The trace of notable events, in order.
    pub trace: Vec<String>,
}

impl RunReport {
    /// True when every rule passed (or did not apply).
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.verdict != Verdict::Fail)
    }

    /// The ids of the rules that failed.
    pub fn failed_rules(&self) -> Vec<&'static str> {
        self.results
            .iter()
            .filter(|r| r.verdict == Verdict::Fail)
            .map(|r| r.id)
            .collect()
    }

    /// Every rule's result, one per line, and for a failure the trace up to
    /// the first violation (and a little after).
    pub fn describe(&self) -> String {
        let mut out = format!(
            "seed {} ({:?}): {} events, {} failover(s), {} acknowledged writes\nschedule: {}\n",
            self.seed,
            self.flaw,
            self.events,
            self.failovers,
            self.acked_writes,
            self.schedule.describe()
        );
        for r in &self.results {
            out.push_str(&format!("  {}\n", r.line()));
        }
        if !self.passed() {
            out.push_str("trace:\n");
            for line in &self.trace {
                out.push_str("  ");
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

/// Runs one seed with `flaw` and validates it.
pub fn run(seed: u64, flaw: Flaw) -> RunReport {
    let schedule = Schedule::generate(seed);
    run_schedule(seed, flaw, schedule)
}

/// Runs a given schedule (a seed's, or one written by hand) and validates it.
pub fn run_schedule(seed: u64, flaw: Flaw, schedule: Schedule) -> RunReport {
    let mut world = world::World::new(seed, flaw, schedule.clone());
    world.run();
    let results = validators::validate_all(&world);
    RunReport {
        seed,
        flaw,
        schedule,
        results,
        events: world.events_processed,
        failovers: world.hist.begun.len(),
        acked_writes: world.hist.acks.len(),
        trace: world
            .hist
            .trace
            .iter()
            .map(|(t, s)| format!("{:>6} ms  {s}", t))
            .collect(),
    }
}
