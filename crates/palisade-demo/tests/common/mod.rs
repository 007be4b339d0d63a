//! What the demo's tests share: where the checkout is, and how to tell
//! that a demo (or a by-hand cluster) left nothing behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The workspace root: the demo runs from there as the README says, so
/// that `deploy/drills/dr-test.toml` resolves as printed.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// The temporary directories the demo named in its progress lines.
pub fn dirs_named_in(text: &str) -> Vec<PathBuf> {
    let prefix = std::env::temp_dir().join("palisade-");
    let prefix = prefix.to_string_lossy();
    let mut dirs: Vec<PathBuf> = text
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
/// with `-D <dir>/...`, a witness with `--config <dir>/site-a.toml`, its
/// lease guard, haproxy with `-f <dir>/haproxy/haproxy.cfg`).
pub fn processes_using(dir: &Path) -> Vec<String> {
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

/// Waits up to `within` until no live process mentions `dir`; returns
/// those still there.
pub fn wait_until_unused(dir: &Path, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let left = processes_using(dir);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
