//! The daemon's clocks: a monotonic millisecond clock for leases, report
//! ages and durations (never jumps), and the wall clock for records that
//! humans read and that outlive one process.

/// Milliseconds on `CLOCK_MONOTONIC`, the one monotonic clock of the
/// machine: the lease guard (another process) reads the deadlines the agent
/// computes on it as the same instants.
pub fn mono_ms() -> u64 {
    crate::lease_guard::monotonic_ms()
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
