//! A hung primary (issue 10 item 4): the postmaster stopped (SIGSTOP)
//! while its backends and WAL sender live on. No new connection is
//! accepted, so every new client is down, yet the standby still streams.
//! The primary's own site agent sees it first and treats it as a crash.

use std::time::{Duration, Instant};

use palisade_testkit::cluster::{start_cluster, status, wait_status, FAST, SETTLE, SLOTS};
use palisade_testkit::pg::PgPair;
use palisade_testkit::step;

async fn start_time(pair: &PgPair) -> Option<String> {
    tokio::time::timeout(
        Duration::from_millis(500),
        pair.primary
            .query_text("SELECT pg_postmaster_start_time()::text"),
    )
    .await
    .ok()?
    .ok()
    .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_postmaster_is_killed_and_restarted_in_place() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let c = start_cluster(&pair, FAST).await;
    let before = start_time(&pair).await.expect("start time");

    step("SIGSTOP the primary's postmaster only: no new connection, the WAL sender lives");
    let stopped = Instant::now();
    pair.primary.sigstop();
    let deadline = Instant::now() + SETTLE;
    let after = loop {
        if let Some(t) = start_time(&pair).await.filter(|t| *t != before) {
            break t;
        }
        if Instant::now() > deadline {
            c.dump_logs();
            panic!("the hung primary was not restarted within {SETTLE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    step(&format!(
        "restarted in place ({before} -> {after}) {} ms after the SIGSTOP",
        stopped.elapsed().as_millis()
    ));
    assert!(
        !pair
            .primary
            .in_recovery()
            .await
            .expect("the primary answers"),
        "writable again"
    );
    for id in 1..=3 {
        let s = status(&c, id).await.expect("status");
        assert_eq!(
            (s.epoch, s.primary_site.as_str()),
            (0, "a"),
            "no failover: the restart policy keeps the primary in place"
        );
    }
    let log = std::fs::read_to_string(&c.nodes[0].log).expect("witness a's log");
    assert!(
        log.contains("primary HUNG"),
        "the agent said why it killed it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_postmaster_fails_over_under_the_failover_policy_although_the_standby_streams() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let c = start_cluster(
        &pair,
        &format!("{FAST}\n[failover]\non_primary_crash = \"failover\"\n"),
    )
    .await;

    step("SIGSTOP the primary's postmaster only; the standby keeps streaming from its WAL sender");
    pair.primary.sigstop();
    let f = wait_status(&c, "the failover to b completed", SETTLE, |s| {
        s.last_failover.clone().filter(|f| !f.outcome.is_empty())
    })
    .await;
    assert_eq!(
        (f.outcome.as_str(), f.to_site.as_str()),
        ("completed", "b"),
        "{f:?}"
    );
    assert!(
        !pair.standby.in_recovery().await.expect("b answers"),
        "b was promoted"
    );
}
