//! Named failpoints at every failover step boundary, so tests can stop or
//! kill a leader exactly between two steps instead of hoping a sleep lands
//! there (neon's `failpoint_support`).
//!
//! Compiled in only for debug builds (what `cargo test` runs); release
//! builds have no failpoints at all. Set at start with
//! `PALISADE_FAILPOINTS="name=action[,name=action]"`; actions: `exit`
//! (the process exits at once with status 86, like a crash: no cleanup),
//! `pause` (the task hangs forever).
//!
//! Names: `before-step-<step>` (the step is about to run) and
//! `after-step-<step>` (its `StepDone` is committed, the next step not yet
//! started), with `<step>` one of `fenced`, `promoted`, `app-flipped`,
//! `repointed`, `verified` (`palisade_core::Step::name`); and
//! `after-begin-failover`.
//!
//! One failpoint breaks safety on purpose, so the chaos suite can prove its
//! checker catches a split brain: `unsafe-skip-fence=on` makes the fence step
//! succeed without fencing anything. Debug builds only, like all of them.

/// Hits the failpoint `name`.
#[cfg(debug_assertions)]
pub async fn hit(name: &str) {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    static POINTS: OnceLock<HashMap<String, String>> = OnceLock::new();
    let points = POINTS.get_or_init(|| {
        std::env::var("PALISADE_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    });
    match points.get(name).map(String::as_str) {
        Some("exit") => {
            tracing::warn!(failpoint = name, "failpoint: exiting");
            std::process::exit(86);
        }
        Some("pause") => {
            tracing::warn!(failpoint = name, "failpoint: pausing forever");
            std::future::pending::<()>().await;
        }
        _ => {}
    }
}

/// Failpoints are compiled out of release builds.
#[cfg(not(debug_assertions))]
pub async fn hit(_name: &str) {}

/// Whether the failpoint `name` is set to `on` (a switch, not an action).
#[cfg(debug_assertions)]
pub fn is_on(name: &str) -> bool {
    std::env::var("PALISADE_FAILPOINTS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .any(|(k, v)| k.trim() == name && v.trim() == "on")
}

/// Failpoints are compiled out of release builds.
#[cfg(not(debug_assertions))]
pub fn is_on(_name: &str) -> bool {
    false
}
