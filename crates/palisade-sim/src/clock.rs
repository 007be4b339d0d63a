//! Each host's monotonic clock (`CLOCK_MONOTONIC`, which every process of
//! the host shares: the witness, its agent, the lease guard). It runs at a
//! rate within the configured drift of every other clock, and its rate may
//! change during a run (a clock-drift fault); it never jumps.

/// The rate of a clock that runs exactly with real time, in parts per
/// million.
pub const NOMINAL_PPM: u64 = 1_000_000;

/// The fastest rate the simulation gives a clock: just under `1 + drift`
/// for the default drift of 0.1. Every clock runs between nominal and
/// this, so no two differ by more than the drift.
pub const FASTEST_PPM: u64 = 1_099_000;

/// A host's clock: `local(t) = base_local + (t - base_real) × ppm / 10⁶`,
/// rebased when its rate changes.
#[derive(Clone, Debug)]
pub struct Clock {
    base_real: u64,
    base_local: u64,
    ppm: u64,
}

impl Clock {
    /// A clock that reads `start` at real time 0, at rate `ppm`.
    pub fn new(start: u64, ppm: u64) -> Self {
        Self {
            base_real: 0,
            base_local: start,
            ppm,
        }
    }

    /// The reading at real time `now` (ms, floored).
    pub fn local(&self, now: u64) -> u64 {
        self.base_local + (now.saturating_sub(self.base_real) * self.ppm) / NOMINAL_PPM
    }

    /// The first real time at or after `now` at which the clock reads
    /// `local` or more.
    pub fn real_at(&self, now: u64, local: u64) -> u64 {
        if local <= self.local(now) {
            return now;
        }
        let ahead = local - self.base_local;
        let real = self.base_real + (ahead * NOMINAL_PPM).div_ceil(self.ppm);
        real.max(now)
    }

    /// The real time at which `ms` of this clock will have passed from `now`.
    pub fn after(&self, now: u64, ms: u64) -> u64 {
        self.real_at(now, self.local(now) + ms)
    }

    /// Changes the rate from real time `now` on.
    pub fn set_rate(&mut self, now: u64, ppm: u64) {
        self.base_local = self.local(now);
        self.base_real = now;
        self.ppm = ppm;
    }

    /// The current rate, in parts per million.
    pub fn ppm(&self) -> u64 {
        self.ppm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_clock_reaches_a_reading_sooner_and_real_at_is_exact() {
        let mut c = Clock::new(1000, 1_100_000);
        assert_eq!(c.local(1000), 2100);
        let t = c.real_at(0, 2100);
        assert_eq!(c.local(t), 2100);
        assert!(c.local(t - 1) < 2100);
        c.set_rate(1000, NOMINAL_PPM);
        assert_eq!(c.local(1500), 2600);
        assert_eq!(c.after(1500, 100), 1600);
    }
}
