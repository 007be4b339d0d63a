//! The DR drill of `deploy/drills/dr-test.toml`, run unattended by the
//! real `palisadectl` against three real witnesses, a real PostgreSQL pair
//! (with automatic rejoin), both sites' `threatconnect.xml` and an
//! Elasticsearch API double per site: every phase of the guide's DR test,
//! the switchover to b and the failback to a included.

use std::path::PathBuf;

use palisade_testkit::app::threatconnect_xml;
use palisade_testkit::cluster::{db_config_rejoining, wait_ready, Cluster, OPERATED, SLOTS};
use palisade_testkit::es_double::EsDouble;
use palisade_testkit::pg::PgPair;
use palisade_testkit::step;
use serde_json::Value;

const PHASES: [&str; 7] = [
    "checkpoint",
    "pre-reboot",
    "check",
    "failover",
    "failover-check",
    "failback",
    "failback-check",
];

fn plan() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/drills/dr-test.toml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_guides_dr_test_runs_end_to_end_and_is_reported_and_recorded() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let es_a = EsDouble::start().await.expect("ES double a");
    let es_b = EsDouble::start().await.expect("ES double b");
    let dir = tempfile::tempdir().expect("temp dir");
    let xml_a = dir.path().join("a-threatconnect.xml");
    let xml_b = dir.path().join("b-threatconnect.xml");
    let hosts_a = es_a.url().trim_start_matches("http://").to_string();
    let hosts_b = es_b.url().trim_start_matches("http://").to_string();
    std::fs::write(&xml_a, threatconnect_xml(true, &hosts_a)).expect("write a");
    std::fs::write(&xml_b, threatconnect_xml(false, &hosts_a)).expect("write b");
    let config = format!(
        "{db}\n\
         [[app]]\nsite = \"a\"\nconfig_file = \"{xa}\"\nrestart_command = [\"/bin/true\"]\nes_property = \"elasticsearchHosts\"\n\n\
         [[app]]\nsite = \"b\"\nconfig_file = \"{xb}\"\nrestart_command = [\"/bin/true\"]\nes_property = \"elasticsearchHosts\"\n\n\
         [[elasticsearch]]\nsite = \"a\"\nurl = \"{ea}\"\nhosts = \"{ha}\"\n\n\
         [[elasticsearch]]\nsite = \"b\"\nurl = \"{eb}\"\nhosts = \"{hb}\"\n",
        db = db_config_rejoining(&pair, OPERATED),
        xa = xml_a.display(),
        xb = xml_b.display(),
        ea = es_a.url(),
        eb = es_b.url(),
        ha = hosts_a,
        hb = hosts_b,
    );
    let mut c = Cluster::with_config(&config);
    for n in &mut c.nodes {
        n.start();
    }
    wait_ready(&c).await;

    step("dry run: the plan is read back, nothing changes");
    let plan = plan();
    let plan_arg = plan.to_str().expect("utf-8 path");
    let out = c.ctl(2, &["drill", "run", plan_arg, "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for p in PHASES {
        assert!(text.contains(p), "dry run lists phase {p}: {text}");
    }

    step("the drill, unattended, through witness 2");
    let reports = dir.path().join("reports");
    std::fs::create_dir(&reports).expect("reports dir");
    let reports_arg = reports.to_str().expect("utf-8 path").to_string();
    let plan_arg = plan_arg.to_string();
    let c = std::sync::Arc::new(c);
    let cc = c.clone();
    let out = tokio::task::spawn_blocking(move || {
        cc.ctl(
            2,
            &[
                "--who",
                "drill@test",
                "drill",
                "run",
                &plan_arg,
                "--yes",
                "--report-dir",
                &reports_arg,
            ],
        )
    })
    .await
    .expect("palisadectl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    if !out.status.success() {
        c.dump_logs();
    }
    assert!(out.status.success(), "the drill passed");

    step("the reports list every phase as passed");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&reports)
        .expect("reports")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "one .json and one .md: {files:?}");
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(
            files
                .iter()
                .find(|f| f.extension().is_some_and(|e| e == "json"))
                .expect("json report"),
        )
        .expect("read json"),
    )
    .expect("json report parses");
    let phases: Vec<(&str, &str)> = json["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default(),
                p["outcome"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        phases,
        PHASES.iter().map(|p| (*p, "passed")).collect::<Vec<_>>(),
        "{json:#}"
    );
    let md = std::fs::read_to_string(
        files
            .iter()
            .find(|f| f.extension().is_some_and(|e| e == "md"))
            .expect("md report"),
    )
    .expect("read md");
    for p in PHASES {
        assert!(md.contains(p), "the Markdown report lists {p}");
    }

    step("the cluster's history has the drill, the switchover and the failback");
    let out = c.ctl(3, &["history", "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h: Value = serde_json::from_slice(&out.stdout).expect("history json");
    let kinds: Vec<&str> = h["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["switchover", "failback"], "{h:#}");
    let drills = h["drills"].as_array().expect("drills");
    assert_eq!(drills.len(), 1, "{h:#}");
    assert_eq!(drills[0]["name"], "dr-test");
    // Over TLS the name is the operator certificate's, not --who.
    assert_eq!(drills[0]["who"], palisade_testkit::pki::OPERATOR);
    assert_eq!(drills[0]["outcome"], "passed");

    step("a is the primary again, b streams from it, only a's app runs jobs");
    assert!(!pair.primary.in_recovery().await.expect("a"));
    assert!(pair.standby.in_recovery().await.expect("b"));
    assert_eq!(
        palisade_actions::monitors::read_monitors_enabled(&xml_a).expect("a's xml"),
        Some(true)
    );
    assert_eq!(
        palisade_actions::monitors::read_monitors_enabled(&xml_b).expect("b's xml"),
        Some(false)
    );
}
