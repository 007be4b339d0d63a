//! `palisade demo --output json`, the README's first command, end to end:
//! the witness binary `palisade` execs this crate's `palisade-demo`, which
//! runs a real PostgreSQL pair, three real witnesses, real app config
//! files, a real HAProxy in front of the pair (when installed; required
//! under `CI=true`), Elasticsearch API test doubles, a real site loss. It
//! uses the fixed ports of `deploy/local/` (7301-7303, 7401-7403), as do
//! the tests of `tests/playground.rs`: cargo runs one test binary at a
//! time, and each of these binaries runs one such test at a time.
//!
//! Cargo builds `palisade-demo` for this test but not `palisade`, another
//! package's binary: it is taken from the same build directory, as
//! chaos-tests takes it (`cargo test --workspace` and `./scripts/test`
//! build it; alone, run `cargo build -p palisade` first).

#[allow(dead_code)]
mod common;

use std::path::Path;
use std::process::Command;

use common::{dirs_named_in, processes_using};
use serde_json::Value;

#[test]
fn demo_fails_over_a_lost_site_reports_the_timeline_and_cleans_up() {
    // Where the demo looks for it: known locations, then `PATH`.
    let haproxy = palisade_testkit::haproxy::find_binary().is_some();
    assert!(
        haproxy || std::env::var("CI").as_deref() != Ok("true"),
        "haproxy is not installed, and CI=true: the demo must show clients moving through it (apt-get install -y haproxy)"
    );
    let palisade = palisade_testkit::bins::binary("palisade").unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        palisade.parent(),
        Path::new(env!("CARGO_BIN_EXE_palisade-demo")).parent(),
        "`palisade demo` runs the palisade-demo beside it: this test's"
    );
    let out = Command::new(&palisade)
        .args(["demo", "--output", "json"])
        .output()
        .expect("run palisade demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "palisade demo failed ({})",
        out.status
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });

    assert_eq!(report["replication"], "async", "{report}");
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

    let dirs = dirs_named_in(&stderr);
    assert!(
        dirs.iter()
            .any(|d| d.to_string_lossy().contains("palisade-pg-"))
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
