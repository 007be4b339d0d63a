//! The daemon's clocks: a monotonic millisecond clock for leases, report
//! ages and durations (never jumps), and the wall clock for records that
//! humans read and that outlive one process.

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

/// Milliseconds on this process's monotonic clock.
pub fn mono_ms() -> u64 {
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Wall clock, Unix milliseconds.
pub fn wall_ms() -> i64 {
    palisade_raft::unix_ms_now()
}

/// Both, for the detector.
pub fn now() -> palisade_core::detector::Now {
    palisade_core::detector::Now {
        mono_ms: mono_ms(),
        wall_ms: wall_ms(),
    }
}
