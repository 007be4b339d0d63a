//! Model check of the lease, fence and failover protocol (issue 10, item
//! 7; RFC 0002, section "Model check"): every interleaving, within bounds,
//! of three witnesses and two database sites with lost, late, reordered
//! and duplicated messages, witness restarts and drifting clocks, explored
//! breadth-first by `stateright`, the decisions taken by palisade-core's
//! own lease, state and guard functions (the model is in `model/`).
//!
//! `lease::tests::no_instant_with_a_live_old_lease_after_a_proven_expiry`
//! samples 1 000 random schedules of the lease alone; this explores every
//! schedule of the whole protocol within the bounds below. Each
//! deliberately broken variant must yield a counterexample: a checker that
//! cannot fail proves nothing.
//!
//! Run with `cargo test -p palisade-core --test model -- --nocapture` to
//! see the state counts and the counterexamples.

mod model {
    pub mod protocol;
}

use std::collections::BTreeSet;
use std::time::Instant;

use model::protocol::{a_writable, Action, Bounds, Flaw, Protocol, State};
use stateright::{Checker, Expectation, HasDiscoveries, Model};

/// Lease, failover and a witness restart: the lease runs out at tick 2
/// (ttl), a witness that granted at 0 vouches at 2 and one that granted a
/// renewal at 1, or restarted at 1, vouches at 3 (`ttl × (1 + drift)` = 3
/// on a fast witness clock). Writes are left to [`WRITES`]: they decide
/// nothing any process does, so adding them here would only multiply the
/// states by those of [`WRITES`].
const RESTARTS: Bounds = Bounds {
    horizon: 3,
    renewals: 1,
    restarts: 1,
    writes: 0,
    every_clock: false,
};

/// A synchronous write across the failover, one tick longer (a renewal at
/// 2 and its expiry proven at 4, a freeze outlasting the guard's bound).
const WRITES: Bounds = Bounds {
    horizon: 4,
    renewals: 1,
    restarts: 0,
    writes: 1,
    every_clock: false,
};

/// Every mix of slow and fast witness clocks, on a shorter horizon: the
/// two checks above run only the worst case (every witness fast), which
/// covers the others (see [`Bounds::every_clock`]); this shows it.
const EVERY_CLOCK: Bounds = Bounds {
    horizon: 2,
    renewals: 1,
    restarts: 0,
    writes: 0,
    every_clock: true,
};

/// The safety property every broken variant must violate.
const ONE_PRIMARY: &str = "at most one writable primary";

/// Explores every state within `bounds`, prints the counts, and asserts
/// every `always` property and every `sometimes` property these bounds
/// can reach (a restart needs `restarts`, a write `writes`).
fn check(name: &str, bounds: Bounds) {
    let started = Instant::now();
    let checker = Protocol::new(bounds, Flaw::None)
        .checker()
        .spawn_bfs()
        .join();
    println!(
        "model check {name}: {bounds:?}: {} states, {} unique, max depth {}, {:.1?}",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    assert!(checker.is_done(), "the exploration did not finish");
    for p in checker.model().properties() {
        match p.expectation {
            Expectation::Sometimes => {
                let needs_restart = p.name.contains("restarted");
                let needs_write = p.name.contains("write");
                if (needs_restart && bounds.restarts == 0) || (needs_write && bounds.writes == 0) {
                    continue;
                }
                let example = checker.discovery(p.name);
                assert!(example.is_some(), "never reached: {}", p.name);
            }
            _ => {
                if let Some(path) = checker.discovery(p.name) {
                    panic!("{} violated:\n{}", p.name, describe(path.into_vec()));
                }
            }
        }
    }
}

/// A path, one line per step: the action, then the instant, whether site
/// a may write and whether site b is promoted.
fn describe(path: Vec<(State, Option<Action>)>) -> String {
    let mut out = String::new();
    let mut steps = path.iter().peekable();
    while let Some((_, action)) = steps.next() {
        let (Some(action), Some((after, _))) = (action, steps.peek()) else {
            continue;
        };
        out.push_str(&format!(
            "  {action:?} -> t={} a writable={} b promoted={}\n",
            after.now,
            a_writable(after),
            after.b.promoted
        ));
    }
    if let Some((last, _)) = path.last() {
        out.push_str(&format!(
            "  end: a {:?} lease {:?}, fence {:?}, proof {}\n",
            last.a.server,
            last.a.lease,
            last.fence,
            last.proof.describe()
        ));
    }
    out
}

#[test]
fn the_protocol_is_safe_across_failovers_and_witness_restarts() {
    check("restarts", RESTARTS);
}

#[test]
fn no_synchronous_write_is_lost_across_a_failover() {
    check("writes", WRITES);
}

#[test]
fn every_mix_of_clock_rates_is_safe() {
    check("every clock", EVERY_CLOCK);
}

/// Explores the model with `flaw` until the one-primary property fails,
/// prints the counterexample, and returns its actions.
fn counterexample(flaw: Flaw, bounds: Bounds) -> Vec<Action> {
    let started = Instant::now();
    let checker = Protocol::new(bounds, flaw)
        .checker()
        .finish_when(HasDiscoveries::AnyOf(BTreeSet::from([ONE_PRIMARY])))
        .spawn_bfs()
        .join();
    let Some(path) = checker.discovery(ONE_PRIMARY) else {
        panic!(
            "{flaw:?}: no counterexample in {} unique states: the checker misses this bug",
            checker.unique_state_count()
        );
    };
    let path = path.into_vec();
    println!(
        "model check, flaw {flaw:?}: two writable primaries after {} steps ({} unique states, {:.1?}):\n{}",
        path.len() - 1,
        checker.unique_state_count(),
        started.elapsed(),
        describe(path.clone())
    );
    path.into_iter().filter_map(|(_, a)| a).collect()
}

/// The shortest bounds that hold each bug's counterexample: a renewal at
/// tick 1 whose lease outlives tick 2, when the broken proof comes.
fn short(restarts: u8) -> Bounds {
    Bounds {
        horizon: 2,
        renewals: 1,
        restarts,
        writes: 0,
        every_clock: false,
    }
}

#[test]
fn a_leader_that_fences_on_a_minority_of_expiries_is_caught() {
    let actions = counterexample(Flaw::MinorityProof, short(0));
    assert!(actions.contains(&Action::FenceOnExpiry), "{actions:?}");
}

#[test]
fn witnesses_that_wait_without_the_drift_are_caught() {
    let actions = counterexample(Flaw::NoDriftWait, short(0));
    assert!(actions.contains(&Action::FenceOnExpiry), "{actions:?}");
}

#[test]
fn a_restarted_witness_that_vouches_for_forgotten_grants_is_caught() {
    let actions = counterexample(Flaw::RestartForgetsItsStart, short(1));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Tick { restart: Some(_) })),
        "{actions:?}"
    );
}
