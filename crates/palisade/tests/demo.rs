//! `palisade demo --output json`, the README's first command, end to end:
//! a real PostgreSQL pair, three real witnesses, real app config files, a
//! real HAProxy in front of the pair (when installed; required under
//! `CI=true`), Elasticsearch API test doubles, a real site loss. It uses the
//! fixed ports of `deploy/local/` (7301-7303, 7401-7403), so this is the
//! only test that runs the demo.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The temporary directories the demo named in its progress lines.
fn dirs_named_in(stderr: &str) -> Vec<PathBuf> {
    let prefix = std::env::temp_dir().join("palisade-");
    let prefix = prefix.to_string_lossy();
    let mut dirs: Vec<PathBuf> = stderr
        .split(|c: char| c.is_whitespace() || c == ',' || c == ':' || c == '(' || c == ')')
        .filter(|w| w.starts_with(prefix.as_ref()))
        .map(|w| {
            // A path inside the directory names the directory.
            let p = Path::new(w);
            p.ancestors()
                .find(|a| a.parent() == Some(std::env::temp_dir().as_path()))
                .unwrap_or(p)
                .to_path_buf()
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Whether `haproxy` is installed where the demo looks for it (known
/// locations, then `PATH`).
fn haproxy_installed() -> bool {
    let known = [
        "/usr/sbin/haproxy",
        "/usr/local/sbin/haproxy",
        "/usr/bin/haproxy",
    ]
    .into_iter()
    .map(PathBuf::from);
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("haproxy"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    known.chain(on_path).any(|p| p.is_file())
}

/// Live processes whose command line mentions `dir` (a postgres started
/// with `-D <dir>/...`, a witness with `--config <dir>/site-a.toml`,
/// haproxy with `-f <dir>/haproxy/haproxy.cfg`).
fn processes_using(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
            if state == "Z" {
                return None; // exited, waiting to be reaped by init
            }
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline
                .contains(&needle)
                .then(|| format!("{}: {cmdline}", e.file_name().to_string_lossy()))
        })
        .collect()
}

#[test]
fn demo_fails_over_a_lost_site_reports_the_timeline_and_cleans_up() {
    let haproxy = haproxy_installed();
    assert!(
        haproxy || std::env::var("CI").as_deref() != Ok("true"),
        "haproxy is not installed, and CI=true: the demo must show clients moving through it (apt-get install -y haproxy)"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
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
        "exactly one monitorsEnabled=true (site b)",
        "search API of the new site",
    ] {
        assert!(
            checks
                .iter()
                .any(|c| c["check"].as_str().is_some_and(|t| t.contains(name))),
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
