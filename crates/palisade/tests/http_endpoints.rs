//! The witness's HTTP listener (issue 14): health endpoints that a load
//! balancer palisade does not drive follows, and Prometheus metrics. Real
//! PostgreSQL, real HAProxy (`option httpchk`), real witnesses.

use std::time::{Duration, Instant};

use palisade_testkit::cluster::{db_config, wait_ready, wait_status, Cluster, FAST, SETTLE, SLOTS};
use palisade_testkit::haproxy::{
    free_loopback_addr, haproxy_binary, route, Haproxy, HaproxyConfig,
};
use palisade_testkit::pg::PgPair;
use palisade_testkit::{step, wait_for};

fn http(c: &Cluster, id: u64) -> String {
    c.nodes[(id - 1) as usize]
        .http
        .clone()
        .expect("the test kit gives every witness an HTTP listener")
}

fn http_port(c: &Cluster, id: u64) -> u16 {
    http(c, id)
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port")
}

/// Status code and JSON body of `GET url`.
async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let code = r.status().as_u16();
    let body = r
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: body: {e}"));
    (code, body)
}

async fn metrics(url: &str) -> String {
    let r = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("scrape");
    assert_eq!(r.status().as_u16(), 200);
    r.text().await.expect("metrics text")
}

/// The value of the series `name{labels}` (exact text) in a scrape.
fn series(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endpoints_follow_a_failover_and_metrics_record_it() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let tuning = format!("{FAST}\n[failover]\non_primary_crash = \"failover\"\n");
    let mut c = Cluster::with_config(&db_config(&pair, &tuning));
    for n in &mut c.nodes {
        n.start();
    }
    wait_ready(&c).await;

    step("before: /primary 200 only at a, /standby 200 only at b");
    let answers = async |path: &str| {
        let mut out = Vec::new();
        for id in 1..=3 {
            out.push(get_json(&format!("{}{path}", http(&c, id))).await);
        }
        out
    };
    // The standby's first probe after the test kit's readiness may still
    // be under way: wait for its 200 rather than read it once.
    wait_for("b's /standby answers 200", SETTLE, async || {
        (get_json(&format!("{}/standby", http(&c, 2))).await.0 == 200).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let p = answers("/primary").await;
    assert_eq!(
        p.iter().map(|(code, _)| *code).collect::<Vec<_>>(),
        vec![200, 503, 503],
        "{p:?}"
    );
    assert_eq!(p[0].1["site"], "a");
    assert!(
        p[0].1["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("lease"),
        "{p:?}"
    );
    assert_eq!(p[1].1["reason"], "site a is the primary, not this site");
    let s = answers("/standby").await;
    assert_eq!(
        s.iter().map(|(code, _)| *code).collect::<Vec<_>>(),
        vec![503, 200, 503],
        "{s:?}"
    );
    let (code, h) = get_json(&format!("{}/health", http(&c, 3))).await;
    assert_eq!(code, 200);
    assert_eq!(h["node"], 3);
    assert_eq!(h["site"], "c");
    assert!(h["leader_id"].as_u64().is_some(), "{h}");

    step("SIGKILL the primary: a failover to b");
    pair.primary.kill9();
    let f = wait_status(&c, "failover completed", SETTLE, |s| {
        s.last_failover.clone().filter(|f| !f.outcome.is_empty())
    })
    .await;
    assert_eq!(f.outcome, "completed", "{f:?}");

    step("after: /primary 200 only at b");
    wait_for("b's /primary answers 200", SETTLE, async || {
        (get_json(&format!("{}/primary", http(&c, 2))).await.0 == 200).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let p = answers("/primary").await;
    assert_eq!(
        p.iter().map(|(code, _)| *code).collect::<Vec<_>>(),
        vec![503, 200, 503],
        "{p:?}"
    );

    step("the leader's metrics record the failover");
    let leader = wait_status(&c, "a leader", SETTLE, |s| s.leader_id).await;
    let m = metrics(&http(&c, leader)).await;
    let value = |s: &str| series(&m, s).unwrap_or_else(|| panic!("no series {s} in:\n{m}"));
    assert_eq!(
        value(r#"palisade_failovers_total{kind="failover",outcome="completed"}"#),
        1.0
    );
    for step in ["fenced", "promoted", "app-flipped", "repointed", "verified"] {
        assert_eq!(
            value(&format!(
                r#"palisade_failover_step_duration_seconds_count{{step="{step}"}}"#
            )),
            1.0,
            "step {step}"
        );
    }
    assert_eq!(
        value(r#"palisade_database_role{site="b",role="primary"}"#),
        1.0
    );
    assert_eq!(value("palisade_raft_is_leader"), 1.0);
    assert_eq!(value("palisade_raft_leader_id"), leader as f64);
    assert!(value("palisade_epoch") >= 1.0);
    assert_eq!(value("palisade_standby_needs_rejoin"), 1.0);
    // The leader's detector is in exactly one state.
    let states: f64 = ["healthy", "suspect", "blocked", "failing_over", "paused"]
        .iter()
        .map(|s| value(&format!(r#"palisade_detector_state{{state="{s}"}}"#)))
        .sum();
    assert_eq!(states, 1.0, "{m}");
    // The new primary's witness reports its lease and its renewals.
    let mb = metrics(&http(&c, 2)).await;
    assert!(
        series(&mb, "palisade_lease_remaining_seconds").is_some_and(|s| s > 0.0),
        "{mb}"
    );
    assert!(
        series(
            &mb,
            r#"palisade_lease_renewal_answers_total{witness="3",outcome="granted"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{mb}"
    );
    // Every witness reports the same replicated history.
    let m3 = metrics(&http(&c, if leader == 3 { 1 } else { 3 })).await;
    assert_eq!(
        series(
            &m3,
            r#"palisade_failovers_total{kind="failover",outcome="completed"}"#
        ),
        Some(1.0)
    );
    assert_eq!(series(&m3, "palisade_raft_is_leader"), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn haproxy_polling_primary_follows_a_failover_and_never_routes_to_a_standby() {
    let Some(bin) = haproxy_binary() else {
        return;
    };
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let tuning = format!("{FAST}\n[failover]\non_primary_crash = \"failover\"\n");
    let mut c = Cluster::with_config(&db_config(&pair, &tuning));
    for n in &mut c.nodes {
        n.start();
    }
    wait_ready(&c).await;

    let dir = tempfile::tempdir().expect("haproxy dir");
    let mut cfg = HaproxyConfig::new(
        dir.path().join("admin.sock"),
        free_loopback_addr().expect("a free port"),
        vec![
            ("pg_a".into(), pair.primary.addr()),
            ("pg_b".into(), pair.standby.addr()),
        ],
    );
    cfg.comment = vec!["palisade test: routed by GET /primary, not driven by palisade".into()];
    cfg.health_check = Some(("/primary".into(), vec![http_port(&c, 1), http_port(&c, 2)]));
    let h = Haproxy::start(&bin, dir.path(), &cfg)
        .await
        .expect("haproxy");
    let front = h.frontend().port();
    let (a, b) = (pair.primary.port() as i32, pair.standby.port() as i32);

    step("before: HAProxy routes to a");
    // HAProxy (before 3.1's `init-state down`) starts every server UP until
    // its first check: wait until ten connections in a row land on a, so
    // that b's first check has marked it down.
    wait_for("HAProxy routes to a only", SETTLE, async || {
        for _ in 0..10 {
            if route(front).await.map(|r| r.0) != Some(a) {
                return None;
            }
        }
        Some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));

    step("SIGKILL the primary; sample the route every 20 ms until it lands on b");
    let killed = Instant::now();
    pair.primary.kill9();
    let mut samples = Vec::new();
    let routed_b = loop {
        let r = route(front).await;
        samples.push((killed.elapsed().as_millis() as u64, r));
        if r.map(|r| r.0) == Some(b) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < SETTLE,
            "HAProxy never routed to b: {samples:?}\n{}",
            std::fs::read_to_string(h.log()).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let f = wait_status(&c, "failover completed", SETTLE, |s| {
        s.last_failover.clone().filter(|f| !f.outcome.is_empty())
    })
    .await;
    let promoted = f
        .steps
        .iter()
        .find(|s| s.step == "promoted")
        .expect("a promoted step");
    eprintln!(
        "--- routed to b {} ms after the kill; the promotion was recorded {} ms after the failover began",
        routed_b.as_millis(),
        promoted.done_at_ms - f.started_at_ms
    );
    // Every connection HAProxy let through reached a writable primary: the
    // standby was never routed to, before or during its promotion.
    for (at, r) in &samples {
        if let Some((port, in_recovery)) = r {
            assert!(
                !in_recovery,
                "routed to a server in recovery at {at} ms: {samples:?}"
            );
            assert!(*port == a || *port == b, "{samples:?}");
        }
    }
    step("after: every connection lands on b");
    for _ in 0..10 {
        assert_eq!(route(front).await, Some((b, false)));
    }
}
