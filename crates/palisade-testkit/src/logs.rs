//! Keeping the logs of a test run for CI: every witness log a test
//! produces is copied to `target/test-logs/` before its temporary directory
//! goes, so that `.ci/check-secrets` can grep them all for the test secrets
//! (`palisade_testkit::pg::TEST_SECRETS`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// `target/test-logs`: beside `target/<profile>` of this build.
pub fn dir() -> PathBuf {
    let build = crate::bins::build_dir();
    build
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(build)
        .join("test-logs")
}

/// A fresh directory under [`dir`] for one run (a cluster, a world),
/// named after `what`, the test executable, the process and a counter.
pub fn run_dir(what: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let exe = std::env::current_exe()
        .ok()
        .and_then(|e| e.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "test".into());
    dir().join(format!(
        "{exe}-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Copies `files` (path, name to keep it under) into `dest`; best effort:
/// a missing log is skipped, an error is printed, never a panic (this runs
/// in `Drop`).
pub fn keep(dest: &Path, files: impl IntoIterator<Item = (PathBuf, String)>) {
    let files: Vec<_> = files.into_iter().filter(|(f, _)| f.is_file()).collect();
    if files.is_empty() {
        return;
    }
    if let Err(e) = std::fs::create_dir_all(dest) {
        eprintln!("test-logs: cannot create {}: {e}", dest.display());
        return;
    }
    for (f, name) in files {
        if let Err(e) = std::fs::copy(&f, dest.join(&name)) {
            eprintln!("test-logs: cannot copy {}: {e}", f.display());
        }
    }
}
