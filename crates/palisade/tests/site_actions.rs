//! A failover moves more than the database (issue 4): `monitorsEnabled`
//! flips in the two apps' `threatconnect.xml`, the surviving app is pointed
//! at the surviving Elasticsearch, HAProxy sends clients to the new primary,
//! and the checks run. Real PostgreSQL, real HAProxy, real files; the only
//! double is the Elasticsearch API (`palisade_testkit::es_double`, no ES
//! server can be installed here).

use std::time::{Duration, Instant};

use palisade_actions::monitors::{read_monitors_enabled, read_property};
use palisade_testkit::app::threatconnect_xml;
use palisade_testkit::cluster::{db_config, wait_ready, wait_status, Cluster, FAST, SETTLE, SLOTS};
use palisade_testkit::es_double::EsDouble;
use palisade_testkit::haproxy::{haproxy_binary, start_haproxy};
use palisade_testkit::pg::PgPair;
use palisade_testkit::step;
use sqlx::ConnectOptions;

/// The port of the PostgreSQL server each of `n` fresh connections through
/// the front door lands on.
async fn ports_through(front: u16, n: usize) -> Vec<i32> {
    let opts = sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(front)
        .username(palisade_testkit::pg::SUPERUSER)
        .password(palisade_testkit::pg::SUPERUSER_PASSWORD)
        .database("postgres");
    let mut out = Vec::new();
    for _ in 0..n {
        match opts.connect().await {
            Ok(mut c) => {
                let port: i32 = sqlx::query_scalar("SELECT inet_server_port()")
                    .fetch_one(&mut c)
                    .await
                    .unwrap_or(-1);
                out.push(port);
            }
            Err(_) => out.push(0),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_flips_monitors_repoints_es_and_haproxy_and_checks_everything() {
    let Some(haproxy) = haproxy_binary() else {
        return;
    };
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let es_a = EsDouble::start().await.expect("ES double a");
    let es_b = EsDouble::start().await.expect("ES double b");
    let apps = tempfile::tempdir().expect("apps dir");
    let xml_a = apps.path().join("a-threatconnect.xml");
    let xml_b = apps.path().join("b-threatconnect.xml");
    let hosts_a = es_a.url().trim_start_matches("http://").to_string();
    let hosts_b = es_b.url().trim_start_matches("http://").to_string();
    std::fs::write(&xml_a, threatconnect_xml(true, &hosts_a)).expect("write a");
    std::fs::write(&xml_b, threatconnect_xml(false, &hosts_a)).expect("write b");
    let original_b = std::fs::read_to_string(&xml_b).expect("read b");
    let h = start_haproxy(&haproxy, pair.primary.port(), pair.standby.port()).await;
    let runtime = palisade_actions::haproxy::HaproxyClient::new(
        palisade_actions::haproxy::HaproxyEndpoint::Unix(h.socket.clone()),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while runtime
        .set_server_state(
            "postgres",
            "pg_b",
            palisade_actions::haproxy::AdminState::Maint,
        )
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "haproxy runtime API never answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let marker = apps.path().join("restarts");

    let extra = format!(
        "{db}\n\
         [[app]]\nsite = \"a\"\nconfig_file = \"{xa}\"\nrestart_command = [\"/bin/sh\", \"-c\", \"echo a >> {m}\"]\nes_property = \"elasticsearchHosts\"\n\n\
         [[app]]\nsite = \"b\"\nconfig_file = \"{xb}\"\nrestart_command = [\"/bin/sh\", \"-c\", \"echo b >> {m}\"]\nes_property = \"elasticsearchHosts\"\n\n\
         [[elasticsearch]]\nsite = \"a\"\nurl = \"{ea}\"\nhosts = \"{ha}\"\n\n\
         [[elasticsearch]]\nsite = \"b\"\nurl = \"{eb}\"\nhosts = \"{hb}\"\n\n\
         [[front_door]]\nkind = \"haproxy\"\nruntime_api = \"{sock}\"\nbackend = \"postgres\"\nservers = {{ a = \"pg_a\", b = \"pg_b\" }}\n\n\
         [[check]]\nname = \"search API of the new site\"\nurl = \"{eb}/_cluster/health\"\nexpect_status = 200\n",
        db = db_config(&pair, &format!("{FAST}\n[failover]\non_primary_crash = \"failover\"\n")),
        xa = xml_a.display(),
        xb = xml_b.display(),
        m = marker.display(),
        ea = es_a.url(),
        eb = es_b.url(),
        ha = hosts_a,
        hb = hosts_b,
        sock = h.socket.display(),
    );
    let mut c = Cluster::with_config(&extra);
    for n in &mut c.nodes {
        n.start();
    }
    wait_ready(&c).await;
    assert_eq!(
        std::fs::read_to_string(&xml_b).expect("read b"),
        original_b,
        "an already-correct file is not rewritten"
    );
    let before = ports_through(h.frontend, 10).await;
    assert!(
        before.iter().all(|p| *p == pair.primary.port() as i32),
        "clients reach a before: {before:?}"
    );

    step("SIGKILL the primary; the whole chain runs");
    pair.primary.kill9();
    let f = wait_status(&c, "failover completed", SETTLE, |s| {
        s.last_failover.clone().filter(|f| !f.outcome.is_empty())
    })
    .await;
    for s in &f.steps {
        eprintln!(
            "--- {:<12} {:>5} ms  {}",
            s.step,
            s.done_at_ms - s.started_at_ms,
            s.detail
        );
    }
    assert_eq!(f.outcome, "completed", "{f:?}");
    let names: Vec<&str> = f.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(
        names,
        vec!["fenced", "promoted", "app-flipped", "repointed", "verified"]
    );
    let detail = |n: &str| {
        f.steps
            .iter()
            .find(|s| s.step == n)
            .map(|s| s.detail.clone())
            .unwrap_or_default()
    };
    // "already false" when an earlier attempt of this idempotent step got
    // that far before it was retried.
    let flipped = detail("app-flipped");
    assert!(
        flipped.contains("a: monitorsEnabled true -> false")
            || flipped.contains("a: monitorsEnabled already false"),
        "{flipped}"
    );
    assert!(
        detail("app-flipped").contains("b: monitorsEnabled false -> true"),
        "{}",
        detail("app-flipped")
    );
    assert!(
        detail("repointed").contains("haproxy postgres: pg_b ready"),
        "{}",
        detail("repointed")
    );
    assert!(
        detail("repointed").contains("elasticsearch"),
        "{}",
        detail("repointed")
    );
    // The checks are structured: each with its own result, none parsed
    // from the step's words.
    let verified = f
        .steps
        .iter()
        .find(|s| s.step == "verified")
        .expect("a verified step");
    let named = |name: &str| {
        verified
            .checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("check {name:?} missing: {:?}", verified.checks))
    };
    for name in [
        "database at b writable",
        "elasticsearch at b green or yellow",
        "exactly one monitorsEnabled=true",
        "search API of the new site",
    ] {
        assert!(named(name).ok, "{:?}", named(name));
    }
    assert_eq!(
        named("exactly one monitorsEnabled=true").detail,
        "site b",
        "{:?}",
        verified.checks
    );
    assert!(
        verified.checks.iter().all(|c| c.ok),
        "{:?}",
        verified.checks
    );
    assert_eq!(
        verified.detail,
        format!("{} checks passed", verified.checks.len())
    );

    step("files: a off, b on and pointed at b's Elasticsearch; the rest byte for byte");
    assert_eq!(read_monitors_enabled(&xml_a).expect("read a"), Some(false));
    assert_eq!(read_monitors_enabled(&xml_b).expect("read b"), Some(true));
    assert_eq!(
        read_property(&xml_b, "elasticsearchHosts").expect("es hosts"),
        hosts_b
    );
    let expected_b = original_b
        .replace(
            "value=\"false\" name=\"monitorsEnabled\"",
            "value=\"true\" name=\"monitorsEnabled\"",
        )
        .replace(&hosts_a, &hosts_b);
    assert_eq!(
        std::fs::read_to_string(&xml_b).expect("read b"),
        expected_b,
        "only the two values changed"
    );
    let restarts = std::fs::read_to_string(&marker).unwrap_or_default();
    assert!(
        restarts.lines().any(|l| l == "a") && restarts.lines().any(|l| l == "b"),
        "both apps restarted: {restarts:?}"
    );

    step("clients through HAProxy reach b, and never a again");
    let after = ports_through(h.frontend, 50).await;
    assert!(
        after.iter().all(|p| *p == pair.standby.port() as i32),
        "{after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_check_marks_the_failover_completed_with_failed_checks() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let es_b = EsDouble::start().await.expect("ES double b");
    let apps = tempfile::tempdir().expect("apps dir");
    let (xml_a, xml_b) = (apps.path().join("a.xml"), apps.path().join("b.xml"));
    std::fs::write(&xml_a, threatconnect_xml(true, "es-a:9200")).expect("write a");
    std::fs::write(&xml_b, threatconnect_xml(false, "es-a:9200")).expect("write b");
    let extra = format!(
        "{db}\n\
         [[app]]\nsite = \"a\"\nconfig_file = \"{xa}\"\n\n\
         [[app]]\nsite = \"b\"\nconfig_file = \"{xb}\"\n\n\
         [[elasticsearch]]\nsite = \"b\"\nurl = \"{eb}\"\nhosts = \"es-b:9200\"\n",
        db = db_config(
            &pair,
            &format!("{FAST}\n[failover]\non_primary_crash = \"failover\"\n")
        ),
        xa = xml_a.display(),
        xb = xml_b.display(),
        eb = es_b.url(),
    );
    let mut c = Cluster::with_config(&extra);
    for n in &mut c.nodes {
        n.start();
    }
    wait_ready(&c).await;
    step("site b's Elasticsearch is red when the primary dies");
    es_b.set_health(palisade_testkit::es_double::HealthMode::Red)
        .await
        .expect("set red");
    pair.primary.kill9();
    let f = wait_status(&c, "failover finished", SETTLE, |s| {
        s.last_failover.clone().filter(|f| !f.outcome.is_empty())
    })
    .await;
    assert!(
        f.outcome.starts_with("completed_with_failed_checks"),
        "{}",
        f.outcome
    );
    assert!(
        f.outcome.contains("elasticsearch at b"),
        "names the failed check: {}",
        f.outcome
    );
    let verified = f
        .steps
        .iter()
        .find(|s| s.step == "verified")
        .expect("a verified step");
    let failed: Vec<&str> = verified
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        failed,
        vec!["elasticsearch at b green or yellow"],
        "{verified:?}"
    );
    // The rest of the failover still happened: service is up, degraded.
    assert_eq!(read_monitors_enabled(&xml_b).expect("read b"), Some(true));
    assert!(!pair.standby.in_recovery().await.expect("b answers"));
    assert!(
        c.nodes
            .iter()
            .any(|n| n.log_text().contains("COMPLETED WITH FAILED CHECKS")),
        "logged loudly"
    );
}
