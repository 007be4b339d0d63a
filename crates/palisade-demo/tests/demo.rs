//! `palisade demo --output json`, the README's first command, end to end:
//! the witness binary `palisade` execs this crate's `palisade-demo`, which
//! runs a real PostgreSQL pair, three real witnesses, real app config
//! files, a real HAProxy in front of the pair (when installed; required
//! under `CI=true`), Elasticsearch API test doubles, a real site loss. It
//! uses the fixed ports of `deploy/local/` (7301-7303, 7401-7403), as do
//! the tests of `tests/playground.rs`: cargo runs one test binary at a
//! time, and each of these binaries runs one such test at a time (here,
//! the PostgreSQL and the MariaDB demo take [`FIXED_PORTS`] in turn).
//!
//! `palisade demo --db mariadb --output json` is the same story on the
//! HA/DR guide's MySQL master-master pair (MariaDB 10.11): the same JSON
//! object, with no acknowledged write lost, b the writer at the end, and
//! a rejoined as the read-only master replicating from it.
//!
//! Cargo builds `palisade-demo` for this test but not `palisade`, another
//! package's binary: it is taken from the same build directory, as
//! chaos-tests takes it (`cargo test --workspace` and `./scripts/test`
//! build it; alone, run `cargo build -p palisade` first).

#[allow(dead_code)]
mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use common::{dirs_named_in, processes_using};
use serde_json::Value;

/// Held by each test that runs a demo (they listen on the same ports).
static FIXED_PORTS: Mutex<()> = Mutex::new(());

/// Runs `palisade demo --output json ARGS`; returns its JSON report and
/// its stderr (progress), after asserting it succeeded.
fn run_demo(args: &[&str]) -> (Value, String) {
    let palisade = palisade_testkit::bins::binary("palisade").unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        palisade.parent(),
        Path::new(env!("CARGO_BIN_EXE_palisade-demo")).parent(),
        "`palisade demo` runs the palisade-demo beside it: this test's"
    );
    let out = Command::new(&palisade)
        .args(["demo", "--output", "json"])
        .args(args)
        .output()
        .expect("run palisade demo");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "palisade demo {} failed ({})",
        args.join(" "),
        out.status
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (report, stderr)
}

/// Whether HAProxy is installed (where the demo looks: known locations,
/// then `PATH`); under `CI=true` it must be.
fn haproxy_installed() -> bool {
    let haproxy = palisade_testkit::haproxy::find_binary().is_some();
    assert!(
        haproxy || std::env::var("CI").as_deref() != Ok("true"),
        "haproxy is not installed, and CI=true: the demo must show clients moving through it (apt-get install -y haproxy)"
    );
    haproxy
}

/// What every demo's report must say, whatever the engine: the failover's
/// steps, b primary and a rejoined, the timings, the apps' files, the
/// checks, and (with HAProxy) every write through it, to a then b.
fn assert_the_story(report: &Value, haproxy: bool) {
    let steps = report["steps"].as_array().expect("steps array");
    for name in ["fenced", "promoted", "verified"] {
        let step = steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no {name} step in {report}"));
        assert!(step["duration_ms"].is_u64(), "{step}");
        assert!(step["detail"].is_string(), "{step}");
    }
    assert_eq!(report["final_primary"], "b", "{report}");
    // The old primary rejoined as the new primary's standby on its own.
    assert_eq!(report["final_standby"], "a", "{report}");
    assert!(report["rejoin_ms"].is_u64(), "{report}");
    assert_eq!(report["epoch"], 1, "{report}");
    assert!(report["writes_acked"].as_u64().expect("writes_acked") > 0);
    assert!(report["writes_lost"].is_u64(), "{report}");
    assert!(report["detect_ms"].is_u64(), "{report}");
    let rto = report["rto_ms"].as_u64().expect("rto_ms");
    assert!(rto > 0, "{report}");
    assert!(
        rto >= report["detect_ms"].as_u64().expect("detect_ms"),
        "the first write on b cannot precede the detection: {report}"
    );

    // The rest of the site: the apps' files as read back, the checks.
    assert_eq!(report["monitors_enabled"]["a"], false, "{report}");
    assert_eq!(report["monitors_enabled"]["b"], true, "{report}");
    let checks = report["checks"].as_array().expect("checks array");
    for name in [
        "database at b writable",
        "elasticsearch at b",
        "exactly one monitorsEnabled=true: site b",
        "search API of the new site",
    ] {
        assert!(
            checks
                .iter()
                .any(|c| c["check"].as_str().is_some_and(|t| t.starts_with(name))),
            "no check {name:?} in {report}"
        );
    }
    for check in checks {
        assert_eq!(check["ok"], true, "failed check {check} in {report}");
    }

    // The front door: with HAProxy every write went through it, to a
    // before the kill and to b after the failover (the demo itself fails
    // when a write reaches a again after b took one).
    if haproxy {
        assert_eq!(report["front_door"], "haproxy", "{report}");
        let via = &report["writes_via_front_door"];
        let on_a = via["a"].as_u64().expect("writes via the front door to a");
        let on_b = via["b"].as_u64().expect("writes via the front door to b");
        assert!(on_a >= 200, "{report}");
        assert!(on_b >= 50, "writes after the failover went to b: {report}");
        assert_eq!(
            Some(on_a + on_b),
            report["writes_acked"].as_u64(),
            "every write went through HAProxy: {report}"
        );
    } else {
        eprintln!("note: haproxy is not installed; the demo wrote directly");
        assert!(report["front_door"].is_null(), "{report}");
        assert!(report["writes_via_front_door"].is_null(), "{report}");
    }
}

/// The demo named its pair's directory (`pair_prefix`) and its work
/// directory, and left neither, nor any process using them, behind.
fn assert_cleaned_up(stderr: &str, pair_prefix: &str) {
    let dirs = dirs_named_in(stderr);
    assert!(
        dirs.iter()
            .any(|d| d.to_string_lossy().contains(pair_prefix))
            && dirs
                .iter()
                .any(|d| d.to_string_lossy().contains("palisade-demo-")),
        "the demo names its pair and work directories: {dirs:?}"
    );
    for dir in &dirs {
        assert!(!dir.exists(), "{} was left behind", dir.display());
        let left = processes_using(dir);
        assert!(left.is_empty(), "processes left running: {left:#?}");
    }
}

#[test]
fn demo_fails_over_a_lost_site_reports_the_timeline_and_cleans_up() {
    let _ports = FIXED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let haproxy = haproxy_installed();
    let (report, stderr) = run_demo(&[]);
    assert_eq!(report["replication"], "async", "{report}");
    assert_the_story(&report, haproxy);
    assert_cleaned_up(&stderr, "palisade-pg-");
}

#[test]
fn demo_on_mariadb_fails_over_the_guides_master_master_pair_without_losing_an_acknowledged_write() {
    if palisade_testkit::mariadb::mariadbd_path().is_none() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "mariadbd is not installed, and CI=true: this test must run (apt-get install -y mariadb-server)"
        );
        eprintln!("SKIP: mariadbd is not installed (apt-get install -y mariadb-server)");
        return;
    }
    let _ports = FIXED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let haproxy = haproxy_installed();
    let (report, stderr) = run_demo(&["--db", "mariadb"]);
    assert_eq!(report["replication"], "async", "{report}");
    assert_the_story(&report, haproxy);
    // The guide's pair, on loopback: the survivor had received and
    // executed everything the writer acknowledged before it died (the
    // promotion waits for executed = received).
    assert_eq!(report["writes_lost"], 0, "{report}");
    let promoted = report["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["step"] == "promoted"))
        .and_then(|s| s["detail"].as_str())
        .unwrap_or_default();
    assert!(
        promoted.contains("binary log"),
        "b was promoted as a MariaDB master, by its binary log coordinates: {promoted}"
    );
    // Progress names what MariaDB does: a's mariadbd killed, then started
    // read-only by its agent and rejoined after the errant check.
    for needle in [
        "SIGKILL of witness a and of the writer's mariadbd",
        "starts its mariadbd with --read-only",
        "rejoined as a standby of b, read-only and replicating from it",
    ] {
        assert!(stderr.contains(needle), "no {needle:?} in the progress");
    }
    assert_cleaned_up(&stderr, "palisade-maria-");
}
