//! The chaos suite: three sites as network namespaces on a bridge, real
//! witnesses, a real PostgreSQL primary/standby pair, the two apps'
//! `threatconnect.xml` and a real HAProxy front door; faults injected with
//! nftables and signals; a workload that records what clients saw; and a
//! checker that says whether the safety rules of DESIGN.md held.
//!
//! Modules by concern: [`netns`] (namespaces, bridge, leftovers),
//! [`faults`] (nftables cuts and the fault log), [`procs`] (processes in a
//! namespace, signals), [`cluster`] (one world: witnesses, databases, apps,
//! HAProxy), [`workload`] (writers and samplers), [`checker`] (one
//! validator per safety rule, each with its own result), [`scenario`]
//! (the named scenarios and the results table), [`random`] (seeded random
//! schedules). A MariaDB world ([`cluster::Engine::MariaDb`]) puts the
//! guide's master-master pair in the data sites instead ([`maria`]), with
//! its writers and sampler over MySQL ([`maria_workload`]).

pub mod checker;
pub mod cluster;
pub mod faults;
pub mod maria;
pub mod maria_workload;
pub mod netns;
pub mod procs;
pub mod random;
pub mod scenario;
pub mod workload;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;

/// Wall clock in Unix ms: the clock the witnesses stamp their records with
/// (every process of a world runs on this one machine, so it is shared).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `HH:MM:SS.mmm` (UTC) of a Unix-ms timestamp, for logs and history slices.
pub fn fmt_ms(ms: i64) -> String {
    let s = ms.div_euclid(1000);
    let day = s.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day / 3600,
        (day / 60) % 60,
        day % 60,
        ms.rem_euclid(1000)
    )
}

/// Prints a `--- step` line with a timestamp so a run's output tells its story.
pub fn step(s: &str) {
    eprintln!("--- {} {s}", fmt_ms(now_ms()));
}

/// Whether the suite can run here. Root is needed for namespaces and
/// nftables. Not root and `CI` unset: prints why and returns `false` (the
/// caller skips). Not root under `CI=true`: fails, because CI must run it.
pub fn gate(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let ci = std::env::var("CI").unwrap_or_default();
    assert!(
        ci != "true",
        "{what}: the chaos suite needs root (network namespaces, veth, nftables) and CI=true says it must run; run the tests as root"
    );
    eprintln!(
        "SKIP {what}: the chaos suite needs root to create network namespaces, veth pairs and nftables rules (running as uid {}); run as root, e.g. `sudo -E cargo test -p chaos-tests`",
        nix::unistd::geteuid()
    );
    false
}

/// `target/<profile>` of this build: where `palisade` and `palisadectl` are
/// (the test kit's [`palisade_testkit::bins::build_dir`]).
pub fn build_dir() -> Result<PathBuf> {
    Ok(palisade_testkit::bins::build_dir())
}

/// The `palisade` and `palisadectl` binaries (debug builds: the failpoints
/// the suite uses exist only there).
pub fn binaries() -> Result<(PathBuf, PathBuf)> {
    Ok((
        palisade_testkit::bins::binary("palisade")?,
        palisade_testkit::bins::binary("palisadectl")?,
    ))
}

/// The test kit's one wait on a condition, with a deadline and a reason.
pub use palisade_testkit::wait_for;
