//! The validators can fail. The same seeds as the sweep, run with
//! palisade broken on purpose, must be caught within the sweep's budget,
//! by the rule the flaw breaks (a checker that never fails proves
//! nothing; the chaos suite's broken-build self-test does the same with
//! real processes, the model check with its three flawed models).

use palisade_sim::{run, Flaw, RunReport, Verdict};

/// The sweep's budget (`tests/seeds.rs`).
const BUDGET: u64 = 1000;

/// The first seed (and its report) at which `rule` fails under `flaw`.
fn first_caught(flaw: Flaw, rule: &str) -> Option<(u64, RunReport)> {
    (1..=BUDGET)
        .map(|seed| (seed, run(seed, flaw)))
        .find(|(_, r)| r.failed_rules().contains(&rule))
}

fn assert_caught(flaw: Flaw, rule: &str) {
    let Some((seed, r)) = first_caught(flaw, rule) else {
        panic!("{flaw:?}: rule {rule} never failed within {BUDGET} seeds");
    };
    let failed: Vec<String> = r
        .results
        .iter()
        .filter(|x| x.verdict == Verdict::Fail)
        .map(|x| x.line())
        .collect();
    println!(
        "{flaw:?}: caught by rule {rule} at seed {seed} ({})\n{}",
        r.schedule.describe(),
        failed.join("\n")
    );
}

/// The leader records `fenced` with no proof: the standby is promoted
/// while the old primary, cut off from the other sites' witnesses but not
/// from its own agent, still holds its lease and writes.
#[test]
fn a_leader_that_promotes_without_a_fence_proof_makes_two_writable_primaries() {
    assert_caught(Flaw::SkipFence, "1");
}

/// The leader fences on one witness's `Expired`.
#[test]
fn a_leader_that_accepts_a_minority_of_expiries_is_caught() {
    assert_caught(Flaw::MinorityProof, "2");
}

/// The guard never freezes and the agent never kills a lapsed lease: the
/// isolated old primary goes on writing after the promotion.
#[test]
fn a_lapsed_lease_that_nothing_enforces_makes_two_writable_primaries() {
    assert_caught(Flaw::NoLeaseEnforcement, "1");
}

/// The witnesses forget the drift in their wait: a proven expiry while a
/// lease the majority granted is still live on the old primary's clock
/// (the guard's `ttl / 4` margin keeps the server itself from writing, so
/// only the lease invariant of rule 2 shows it).
#[test]
fn witnesses_that_wait_without_the_drift_are_caught() {
    assert_caught(Flaw::NoDriftWait, "2");
}

#[test]
#[ignore = "a tool: how each flaw is caught over SIM_SEEDS seeds (SIM_FLAW picks one)"]
fn survey_the_flaws() {
    let n: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(BUDGET);
    for flaw in [
        Flaw::SkipFence,
        Flaw::MinorityProof,
        Flaw::NoLeaseEnforcement,
        Flaw::NoDriftWait,
        Flaw::RestartForgetsItsStart,
    ] {
        if std::env::var("SIM_FLAW").is_ok_and(|f| f != format!("{flaw:?}")) {
            continue;
        }
        let mut by_rule: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
        for seed in 1..=n {
            for f in run(seed, flaw).failed_rules() {
                by_rule.entry(f).or_default().push(seed);
            }
        }
        let summary: Vec<String> = by_rule
            .iter()
            .map(|(k, v)| {
                format!(
                    "rule {k}: {} seeds (first {:?})",
                    v.len(),
                    &v[..v.len().min(5)]
                )
            })
            .collect();
        println!("{flaw:?}: {}", summary.join("; "));
    }
}
