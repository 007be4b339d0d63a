//! Benchmark: what the site actions of a failover (issue 4) add to it.
//!
//! Each trial: a real PostgreSQL pair, the two apps' `threatconnect.xml`,
//! one Elasticsearch API test double per site (no ES server can be installed
//! here), a real HAProxy in front of both databases, three witnesses with
//! the daemon's default probe, lease and failover settings (crash policy
//! `failover`), then a SIGKILL of the primary postmaster. From the failover
//! record it reports the time from the kill to `repointed` and to
//! `verified`, and the durations of the `app-flipped` and `repointed` steps
//! without the app restart command (reported separately).
//!
//!     cargo bench -p palisade --bench site_failover          # 10 trials
//!     PALISADE_BENCH_TRIALS=20 cargo bench -p palisade --bench site_failover

use palisade_actions::haproxy::{AdminState, HaproxyClient, HaproxyEndpoint};
use palisade_testkit::app::threatconnect_xml;
use palisade_testkit::cluster::{db_config, wait_ready, wait_status, Cluster, SETTLE};
use palisade_testkit::es_double::EsDouble;
use palisade_testkit::haproxy::{haproxy_binary, start_haproxy};
use palisade_testkit::pg::PgPair;
use palisade_testkit::{bench_trials, percentile, wait_for};

/// Milliseconds of every "app restarted in N ms" in a step's detail.
fn restart_ms(detail: &str) -> i64 {
    detail
        .match_indices("app restarted in ")
        .filter_map(|(i, m)| detail[i + m.len()..].split(' ').next()?.parse::<i64>().ok())
        .sum()
}

fn summary(name: &str, mut v: Vec<i64>) {
    v.sort();
    println!(
        "{name:<34} p50 {:>5} ms  p99 {:>5} ms  max {:>5} ms",
        percentile(&v, 50.0),
        percentile(&v, 99.0),
        v.last().copied().unwrap_or(0)
    );
}

struct Trial {
    to_promoted: i64,
    to_repointed: i64,
    to_verified: i64,
    flip_and_repoint: i64,
    restart: i64,
}

async fn trial(haproxy: &std::path::Path) -> Trial {
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let es_a = EsDouble::start().await.expect("ES double a");
    let es_b = EsDouble::start().await.expect("ES double b");
    let apps = tempfile::tempdir().expect("apps dir");
    let (xml_a, xml_b) = (apps.path().join("a.xml"), apps.path().join("b.xml"));
    let hosts_a = es_a.url().trim_start_matches("http://").to_string();
    std::fs::write(&xml_a, threatconnect_xml(true, &hosts_a)).expect("write a");
    std::fs::write(&xml_b, threatconnect_xml(false, &hosts_a)).expect("write b");
    let h = start_haproxy(haproxy, pair.primary.port(), pair.standby.port()).await;
    let runtime = HaproxyClient::new(HaproxyEndpoint::Unix(h.socket.clone()));
    wait_for(
        "pg_b in maintenance through haproxy's runtime API",
        SETTLE,
        async || {
            runtime
                .set_server_state("postgres", "pg_b", AdminState::Maint)
                .await
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let extra = format!(
        "{db}\n\
         [[app]]\nsite = \"a\"\nconfig_file = \"{xa}\"\nrestart_command = [\"/bin/true\"]\nes_property = \"elasticsearchHosts\"\n\n\
         [[app]]\nsite = \"b\"\nconfig_file = \"{xb}\"\nrestart_command = [\"/bin/true\"]\nes_property = \"elasticsearchHosts\"\n\n\
         [[elasticsearch]]\nsite = \"a\"\nurl = \"{ea}\"\nhosts = \"{ha}\"\n\n\
         [[elasticsearch]]\nsite = \"b\"\nurl = \"{eb}\"\nhosts = \"{hb}\"\n\n\
         [[front_door]]\nkind = \"haproxy\"\nruntime_api = \"{sock}\"\nbackend = \"postgres\"\nservers = {{ a = \"pg_a\", b = \"pg_b\" }}\n",
        db = db_config(&pair, "[failover]\non_primary_crash = \"failover\"\n"),
        xa = xml_a.display(),
        xb = xml_b.display(),
        ea = es_a.url(),
        eb = es_b.url(),
        ha = hosts_a,
        hb = es_b.url().trim_start_matches("http://"),
        sock = h.socket.display(),
    );
    let mut c = Cluster::with_config(&extra);
    for n in &mut c.nodes {
        n.start();
    }
    wait_ready(&c).await;
    let killed = palisade_raft::unix_ms_now();
    pair.primary.kill9();
    let f = wait_status(&c, "failover finished", SETTLE, |s| {
        s.last_failover.clone().filter(|f| !f.outcome.is_empty())
    })
    .await;
    assert_eq!(f.outcome, "completed", "{f:?}");
    let step = |n: &str| {
        f.steps
            .iter()
            .find(|s| s.step == n)
            .cloned()
            .expect("step recorded")
    };
    let (promoted, flipped, repointed, verified) = (
        step("promoted"),
        step("app-flipped"),
        step("repointed"),
        step("verified"),
    );
    let restart = restart_ms(&flipped.detail) + restart_ms(&repointed.detail);
    Trial {
        to_promoted: promoted.done_at_ms - killed,
        to_repointed: repointed.done_at_ms - killed,
        to_verified: verified.done_at_ms - killed,
        flip_and_repoint: (flipped.done_at_ms - flipped.started_at_ms)
            + (repointed.done_at_ms - repointed.started_at_ms)
            - restart,
        restart,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let trials = bench_trials(10, 1);
    let Some(haproxy) = haproxy_binary() else {
        return;
    };
    println!("site failover: {trials} trials, SIGKILL of the primary postmaster (crash policy failover), default settings, apps + ES doubles + HAProxy");
    let mut all = Vec::new();
    for i in 1..=trials {
        let t = trial(&haproxy).await;
        println!(
            "trial {i:>3}: promoted +{} ms, repointed +{} ms, verified +{} ms; app-flip + repoint {} ms (+ app restarts {} ms)",
            t.to_promoted, t.to_repointed, t.to_verified, t.flip_and_repoint, t.restart
        );
        all.push(t);
    }
    println!(
        "site failover over {} trials (ms from the kill):",
        all.len()
    );
    summary(
        "  kill -> promoted",
        all.iter().map(|t| t.to_promoted).collect(),
    );
    summary(
        "  kill -> repointed",
        all.iter().map(|t| t.to_repointed).collect(),
    );
    summary(
        "  kill -> verified",
        all.iter().map(|t| t.to_verified).collect(),
    );
    summary(
        "  app-flipped + repointed steps",
        all.iter().map(|t| t.flip_and_repoint).collect(),
    );
    summary(
        "  app restart commands (separate)",
        all.iter().map(|t| t.restart).collect(),
    );
}
