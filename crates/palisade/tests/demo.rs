//! `palisade demo --output json`, the README's first command, end to end:
//! a real PostgreSQL pair, three real witnesses, a real site loss. It uses
//! the fixed ports of `deploy/local/` (7301-7303, 7401-7403), so this is the
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

/// Live processes whose command line mentions `dir` (a postgres started
/// with `-D <dir>/...`, a witness with `--config <dir>/site-a.toml`).
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
