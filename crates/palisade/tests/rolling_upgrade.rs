//! A rolling upgrade (docs/operations.md, "Upgrades"): three witnesses of
//! the previous release (the one `release/previous` names, built by
//! `scripts/build-previous-release`) are upgraded to this build one at a
//! time, under a writer and over a real PostgreSQL pair, with a planned
//! switchover run while the cluster mixes both releases. The database must
//! notice nothing but the switchover.

use std::ops::Range;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use palisade::daemon::SHUTDOWN_BOUND;
use palisade_api::v1::Role;
use palisade_testkit::cluster::{
    db_config_rejoining, palisade_bin, wait_ready, wait_status, Cluster, Node, SETTLE, SLOTS,
};
use palisade_testkit::pg::{PgPair, PgServer};
use palisade_testkit::step;
use palisade_testkit::writer::{Ack, Writer};
use serde_json::Value;

/// This build's release, as its witnesses report it (`NodeStatus.release`).
const CURRENT: &str = env!("CARGO_PKG_VERSION");

/// The lease TTL the witnesses run with, written into their config (the
/// default, spelled out so that both releases run the same).
const LEASE_TTL: Duration = Duration::from_millis(2000);

/// The longest write gap a fault that needs no failover may cause
/// (DESIGN rule 1).
const NO_OUTAGE: Duration = Duration::from_millis(500);

/// A rejoin of the old primary after the switchover: pg_rewind (or a base
/// backup) and a restart, as in the operations tests.
const REJOIN: Duration = Duration::from_secs(60);

/// The previous release's version: the tag in `release/previous` without
/// its `v`.
fn previous_release() -> String {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../release/previous");
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("read {file}: {e}"));
    let tag = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{file}: no 'TAG COMMIT' line"));
    tag.strip_prefix('v').unwrap_or(tag).to_owned()
}

async fn start_time(server: &PgServer) -> String {
    server
        .query_text("SELECT pg_postmaster_start_time()::text")
        .await
        .expect("pg_postmaster_start_time()")
        .expect("a start time")
}

/// Both servers' postmaster start times, primary first.
async fn start_times(pair: &PgPair) -> (String, String) {
    (
        start_time(&pair.primary).await,
        start_time(&pair.standby).await,
    )
}

/// Waits until every witness reports itself (none unreachable) with the
/// release `want[id - 1]`, as seen by whichever witness answers.
async fn wait_releases(c: &Cluster, want: [&str; 3]) {
    wait_status(
        c,
        &format!("the witnesses to report releases {want:?}"),
        SETTLE,
        |s| {
            let seen: Vec<(u64, &str)> = s
                .nodes
                .iter()
                .filter(|n| n.role != Role::Unreachable as i32)
                .map(|n| (n.id, n.release.as_str()))
                .collect();
            let expected: Vec<(u64, &str)> = (1..=3).zip(want).collect();
            (seen == expected).then_some(())
        },
    )
    .await;
}

/// Upgrades witness `id` to this build: a clean stop (SIGTERM, as
/// `systemctl stop` sends), then a start of the current binary; returns
/// once it is back: it reports this release, follows or leads, its log is
/// caught up in the leader's view, and, on the primary's site, its agent
/// serves under the lease again (docs/operations.md, "Rolling upgrade").
async fn upgrade(c: &mut Cluster, id: u64) {
    step(&format!(
        "upgrade witness {id}: SIGTERM, then start {CURRENT}"
    ));
    c.node(id).signal(Signal::SIGTERM);
    let code = c.node(id).wait_exit(SHUTDOWN_BOUND + SETTLE).await;
    assert_eq!(code, Some(0), "witness {id} stopped cleanly");
    c.node(id).start_binary(&palisade_bin());
    wait_status(
        c,
        &format!("witness {id} back on {CURRENT}, caught up, in charge of its site"),
        SETTLE,
        |s| {
            let leader = s.leader_id?;
            let me = s.nodes.iter().find(|n| n.id == id)?;
            let in_cluster = me.role == Role::Leader as i32 || me.role == Role::Follower as i32;
            let caught_up = leader == id
                || s.replication
                    .iter()
                    .any(|p| p.id == id && p.matched_index.is_some() && p.lag_entries == 0);
            let in_charge = me.site != s.primary_site
                || (me.lease_remaining_ms.is_some() && me.serving_under_lease);
            (me.release == CURRENT && in_cluster && caught_up && in_charge).then_some(())
        },
    )
    .await;
}

/// The longest time without an acknowledged write in `window`, its edges
/// included, leaving out the gaps that overlap `except`.
fn longest_gap(acks: &[Ack], window: Range<Instant>, except: &Range<Instant>) -> Duration {
    let mut times: Vec<Instant> = acks
        .iter()
        .map(|a| a.at)
        .filter(|t| window.contains(t))
        .collect();
    times.sort();
    times.insert(0, window.start);
    times.push(window.end);
    times
        .windows(2)
        .filter(|w| !(w[0] < except.end && w[1] > except.start))
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn witnesses_upgrade_one_at_a_time_from_the_previous_release_with_no_outage() {
    let previous = previous_release();
    assert_ne!(
        previous, CURRENT,
        "the workspace's version is the previous release's: bump [workspace.package] version in Cargo.toml"
    );
    let old_bin = Node::previous_release_bin();
    let said = Command::new(&old_bin)
        .arg("--version")
        .output()
        .expect("run the previous release's palisade");
    assert_eq!(
        String::from_utf8_lossy(&said.stdout).trim(),
        format!("palisade {previous}"),
        "{} is not release {previous}: rebuild it with ./scripts/build-previous-release",
        old_bin.display()
    );

    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    // Fast probes, the lease of LEASE_TTL; the old primary rejoins as a
    // standby on its own after the switchover.
    let tuning = format!(
        "[probe]\ninterval_ms = 200\n\n[lease]\nttl_ms = {}\n",
        LEASE_TTL.as_millis()
    );
    let mut c = Cluster::with_config(&db_config_rejoining(&pair, &tuning));

    step(&format!(
        "the previous release ({previous}) accepts the configs"
    ));
    for n in &c.nodes {
        let out = Command::new(&old_bin)
            .args(["check-config", "--config"])
            .arg(&n.config)
            .output()
            .expect("run palisade check-config");
        assert_eq!(
            out.status.code(),
            Some(0),
            "release {previous} rejects {}: {}",
            n.config.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    step(&format!(
        "three witnesses of the previous release ({previous})"
    ));
    for n in &mut c.nodes {
        n.start_binary(&old_bin);
    }
    wait_ready(&c).await;
    wait_releases(&c, [&previous, &previous, &previous]).await;

    let writer = Writer::start(&pair).await;
    writer.wait_acks_at("a", 50).await;
    let began = Instant::now();

    // Site c first (the tie-breaker: no database), then a, the primary's
    // own witness: its guard holds the lease meanwhile.
    for id in [3, 1] {
        let before = start_times(&pair).await;
        upgrade(&mut c, id).await;
        assert_eq!(
            start_times(&pair).await,
            before,
            "upgrading witness {id} restarted a database (primary, standby)"
        );
    }
    wait_releases(&c, [CURRENT, &previous, CURRENT]).await;

    step(&format!(
        "mixed releases: switchover a -> b (b's agent runs {previous}), asked of witness 2"
    ));
    // A switchover's preconditions (a healthy target, not lagging) are
    // judged from fresh probe reports: wait for the detector's healthy
    // verdict, as at the start, rather than risk a refusal.
    wait_ready(&c).await;
    let asked = Instant::now();
    let out = tokio::task::block_in_place(|| {
        c.ctl(2, &["--output", "json", "switchover", "--to", "b", "--yes"])
    });
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "switchover: exit {:?}, no JSON ({e}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        (out.status.code(), reply["succeeded"].as_bool()),
        (Some(0), Some(true)),
        "the switchover completed: {reply:#}"
    );
    eprintln!(
        "--- switchover epoch {} completed, led by witness {}",
        reply["epoch"], reply["leader_id"]
    );
    assert!(
        !pair.standby.in_recovery().await.expect("ask b"),
        "the new primary b is out of recovery"
    );
    writer.wait_acks_at("b", 50).await;
    let first_at_b = writer
        .acks()
        .iter()
        .filter(|a| a.site == "b")
        .map(|a| a.at)
        .min()
        .expect("writes at b");
    let switchover = asked..first_at_b;
    eprintln!(
        "--- the writer's pause across the switchover: {} ms",
        (first_at_b - asked).as_millis()
    );

    step("a rejoins as b's standby; then the last upgrade, b's witness (the new primary's)");
    wait_status(&c, "site a rejoined and streams", REJOIN, |s| {
        let streams = s
            .nodes
            .iter()
            .filter(|n| !n.databases.is_empty())
            .all(|n| n.databases.iter().any(|d| d.site == "a" && d.streaming));
        (s.primary_site == "b" && s.standby_site == "a" && !s.standby_needs_rejoin && streams)
            .then_some(())
    })
    .await;
    let before = start_times(&pair).await;
    upgrade(&mut c, 2).await;
    assert_eq!(
        start_times(&pair).await,
        before,
        "upgrading witness 2 restarted a database (a, b)"
    );
    wait_releases(&c, [CURRENT, CURRENT, CURRENT]).await;

    step("no outage: no write lost, no pause but the switchover's, one operation");
    let at_b = writer.acks().iter().filter(|a| a.site == "b").count();
    writer.wait_acks_at("b", at_b + 50).await;
    let ended = Instant::now();
    let acks = writer.stop().await;
    let have: std::collections::BTreeSet<i64> = {
        let pool = pair.standby.pool().await.expect("connect to b");
        sqlx::query_scalar::<_, i64>("SELECT id FROM writes")
            .fetch_all(&pool)
            .await
            .expect("read writes on b")
            .into_iter()
            .collect()
    };
    let lost: Vec<i64> = acks
        .iter()
        .map(|a| a.id)
        .filter(|id| !have.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {lost:?}",
        lost.len()
    );
    // DESIGN rule 1's mirror: a fault that needs no failover (here, each
    // witness's restart) leaves no write gap over 500 ms.
    let gap = longest_gap(&acks, began..ended, &switchover);
    eprintln!(
        "--- {} writes; longest pause outside the switchover: {} ms",
        acks.len(),
        gap.as_millis()
    );
    assert!(
        gap < NO_OUTAGE,
        "writes stopped for {gap:?} outside the switchover (bound: {NO_OUTAGE:?}, DESIGN rule 1)"
    );
    let s = wait_status(&c, "a status", SETTLE, |s| Some(s.clone())).await;
    let last = s.last_failover.expect("the switchover's record");
    assert_eq!(
        (s.epoch, last.kind.as_str(), last.outcome.as_str()),
        (1, "switchover", "completed"),
        "the switchover was the one operation: the upgrades caused no failover"
    );
}
