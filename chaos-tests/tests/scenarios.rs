//! The named chaos scenarios, one test each. They run one at a time (a
//! world owns the `pal-` names and the 198.18.0.0/24 addresses), each in a
//! fresh world that is torn down even when the test fails. Without root
//! they skip, saying why; under `CI=true` they must run.

use chaos_tests::scenario;

/// Runs a named scenario. `.ci/run` counts the lines that start with
/// `    run("` as the named scenarios that must pass: an `#[ignore]`d one must
/// call it in another form (e.g. `scenario_run(...)` through a local alias).
fn run(name: &str) {
    if !chaos_tests::gate(name) {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let sc = scenario::named(name);
    if let Err(e) = rt.block_on(scenario::run(&sc)) {
        panic!("{e:#}");
    }
}

#[test]
fn isolate_site_a_fails_over() {
    run("isolate_site_a_fails_over");
}

#[test]
fn isolate_site_b_no_failover() {
    run("isolate_site_b_no_failover");
}

#[test]
fn isolate_site_c_no_failover() {
    run("isolate_site_c_no_failover");
}

#[test]
fn cut_a_b_no_failover() {
    run("cut_a_b_no_failover");
}

#[test]
fn cut_a_c_no_failover() {
    run("cut_a_c_no_failover");
}

/// The a↔b cut with the leader at b: the primary's agent cannot reach the
/// leader and must renew its lease through c (it used to fence its
/// database and the cluster failed over; docs/chaos.md).
#[test]
fn cut_a_b_leader_at_b_no_failover() {
    run("cut_a_b_leader_at_b_no_failover");
}

/// As above, for the a↔c cut with the leader at c.
#[test]
fn cut_a_c_leader_at_c_no_failover() {
    run("cut_a_c_leader_at_c_no_failover");
}

#[test]
fn isolate_leader_new_leader_no_failover() {
    run("isolate_leader_new_leader_no_failover");
}

#[test]
fn kill_primary_db_restart_policy() {
    run("kill_primary_db_restart_policy");
}

#[test]
fn kill_primary_db_failover_policy() {
    run("kill_primary_db_failover_policy");
}

#[test]
fn kill_primary_witness_no_failover() {
    run("kill_primary_witness_no_failover");
}

#[test]
fn kill_leader_mid_failover_one_failover() {
    run("kill_leader_mid_failover_one_failover");
}

#[test]
fn flap_a_links_at_most_one_failover() {
    run("flap_a_links_at_most_one_failover");
}

#[test]
fn freeze_primary_db_fenced_after_thaw() {
    run("freeze_primary_db_fenced_after_thaw");
}

#[test]
fn restart_all_witnesses_no_failover() {
    run("restart_all_witnesses_no_failover");
}

/// The leader at the tie-breaker's site, which is then isolated: a new
/// leader, and the primary's quorum lease holds through the election.
#[test]
fn isolate_site_c_while_leading_no_outage() {
    run("isolate_site_c_while_leading_no_outage");
}

/// SIGKILL of the leader's witness (not site a's): no failover, no outage.
#[test]
fn kill_leader_witness_no_outage() {
    run("kill_leader_witness_no_outage");
}

/// The leader's witness (not site a's) frozen for 8 s, then thawed.
#[test]
fn sigstop_leader_witness_no_outage() {
    run("sigstop_leader_witness_no_outage");
}

/// The leader's witness (not site a's) stopped with SIGTERM and started.
#[test]
fn restart_leader_witness_no_outage() {
    run("restart_leader_witness_no_outage");
}

/// A rolling upgrade: witnesses c, b, then a restarted one after another.
#[test]
fn rolling_restart_witnesses_no_outage() {
    run("rolling_restart_witnesses_no_outage");
}

/// Site a isolated for 20 s (failover to b), healed: the returning
/// witness must not depose the new leader, and b takes writes throughout.
/// Fails today: witness a, alone, raised its term election after election
/// (to 68 in 20 s), and at the heal the leader saw the higher term and
/// stepped down (term 1 -> 72, docs/chaos.md); the writes through the
/// front door did not stop (longest gap 33 ms).
#[test]
fn heal_after_long_isolation_of_a() {
    run("heal_after_long_isolation_of_a");
}

/// Site a's witness killed, then site a isolated: the old primary, whose
/// lease guard died with its witness, must not take a write after b's
/// promotion (rules 1 and 2).
#[test]
fn kill_primary_witness_then_isolate_a() {
    run("kill_primary_witness_then_isolate_a");
}

/// Site a isolated in a MariaDB world (the guide's master-master pair):
/// failover to the other master, the old writer fenced.
#[test]
fn maria_isolate_site_a_fails_over() {
    run("maria_isolate_site_a_fails_over");
}

/// Site a cut off from b and c, the front door still reaching it, in a
/// MariaDB world: failover to b; the old writer takes no write after it.
#[test]
fn maria_partition_a_from_b_c_fails_over() {
    run("maria_partition_a_from_b_c_fails_over");
}

/// The writer's mariadbd frozen (SIGSTOP), thawed while the failover runs:
/// it must wake up fenced.
#[test]
fn maria_freeze_primary_db_fenced_after_thaw() {
    run("maria_freeze_primary_db_fenced_after_thaw");
}

/// Site a paused whole (its witness, the lease guard and mariadbd
/// SIGSTOPped together, as a VM pause), thawed during the failover.
#[test]
fn maria_freeze_site_a_fenced_after_thaw() {
    run("maria_freeze_site_a_fenced_after_thaw");
}

/// Site a's links flapping in a MariaDB world (async replication).
#[test]
fn maria_flap_a_links_at_most_one_failover() {
    run("maria_flap_a_links_at_most_one_failover");
}

/// The checker's self-test against a deliberately broken build: the fence
/// step skipped (`unsafe-skip-fence=on`, a debug-only failpoint). Run it
/// with `cargo test -p chaos-tests -- --ignored broken_fence`.
#[test]
#[ignore = "a deliberately unsafe build: run on demand to prove the checker catches a split brain"]
fn broken_fence_is_caught_by_the_checker() {
    if !chaos_tests::gate("broken_fence_is_caught_by_the_checker") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let r = rt
        .block_on(scenario::broken_fence())
        .expect("the run itself");
    assert!(
        r.caught_broken_fence(),
        "the fence was disabled and the checker saw no split brain (rules 1 and 2 did not fail):\n{}",
        r.summary()
    );
}

/// The checker's self-test in a MariaDB world: the fence skipped, both
/// masters must be seen writable (rules 1 and 2). Run it with
/// `cargo test -p chaos-tests -- --ignored maria_broken_fence`.
#[test]
#[ignore = "a deliberately unsafe build: run on demand to prove the checker catches a MariaDB split brain"]
fn maria_broken_fence_is_caught_by_the_checker() {
    if !chaos_tests::gate("maria_broken_fence_is_caught_by_the_checker") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let r = rt
        .block_on(scenario::broken_fence_with(
            chaos_tests::cluster::Engine::MariaDb,
        ))
        .expect("the run itself");
    assert!(
        r.caught_broken_fence(),
        "the fence was disabled and the checker saw no split brain (rules 1 and 2 did not fail):\n{}",
        r.summary()
    );
}

#[test]
fn every_named_scenario_has_a_test() {
    let src = include_str!("scenarios.rs");
    for s in scenario::all() {
        assert!(
            src.contains(&format!("fn {}()", s.name)),
            "scenario {} has no #[test] here",
            s.name
        );
    }
}
