//! Sync mode's degrade decision: when the primary stops waiting for its
//! synchronous standby, and when it waits for it again.
//!
//! In `replication = "sync"` every commit waits (`wait_event = 'SyncRep'`)
//! until the standby named in `synchronous_standby_names` acknowledges that
//! it has flushed the commit's WAL. With `sync_standby_down = "degrade"`
//! the primary's agent clears that setting when the standby cannot
//! acknowledge, so that writes go on.
//!
//! A standby whose connection is gone shows at once: its row leaves
//! `pg_stat_replication` (or is not `streaming`). A standby that keeps its
//! TCP connection but acknowledges nothing does not: when only the link
//! between the two sites is cut, or the standby's host hangs, the primary
//! shows it `streaming` until its `wal_sender_timeout` runs out (60 s by
//! default), and every commit waits that whole time. This machine decides
//! from **evidence** instead: commits are waiting, and the position the
//! standby acknowledged (`flush_lsn`) does not move.
//!
//! Pure: the primary's agent feeds it one [`SyncSample`] per probe of its
//! own database, with the probe's time; no I/O, no clock.
//!
//! # Rules
//!
//! In sync (the initial state):
//!
//! * **Not streaming** → degrade at once, as before this machine existed:
//!   a standby without a streaming connection cannot acknowledge anything.
//! * **Acknowledgements stalled** → degrade when, for `after_ms`, commits
//!   have waited (every sample showed waiters > 0) *and* the standby's
//!   acknowledged position has not changed. The stall is counted from the
//!   later of the two: the first sample of the current run of samples with
//!   waiters, and the first sample that showed the current position. So an
//!   idle primary, whose standby's position rightly stands still for hours,
//!   does not degrade on the first commit that happens to be caught
//!   waiting; and a busy primary whose standby keeps acknowledging never
//!   degrades, however many commits are in flight at each sample.
//! * **Unknown** waiters or position (a probe role without
//!   `pg_read_all_stats`, a standby that has not replied yet) is no
//!   evidence: the stall count starts over.
//!
//! Degraded, back to sync when both hold:
//!
//! * for `after_ms` without a break, every sample showed the standby
//!   streaming, its position *beyond the one it was stuck at* (after a
//!   stall: proof it acknowledges again, since the commits that waited
//!   were all beyond it), and either moving since the previous sample or
//!   caught up;
//! * and the current sample shows it **caught up**: its acknowledged
//!   position is at least the primary's position of the previous sample.
//!   Turning sync back on then makes no commit wait for a backlog.
//!
//! **No flapping**: a return to sync takes at least `after_ms` of health
//! after a degrade, and a stall degrade at least `after_ms` of stall after
//! a return, so the mode changes at most twice per `2 × after_ms` (only a
//! standby whose connection itself flaps degrades sooner, by the
//! not-streaming rule, and it still needs `after_ms` to come back). The
//! property tests below check this over random histories.
//!
//! Samples not newer than the previous one are ignored: the agent may look
//! at the same probe twice, and that is not two pieces of evidence.

use std::fmt;

use crate::observe::{format_lsn, PgObservation};

/// One probe of the primary, reduced to what the decision needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncSample {
    /// When the probe was taken (the caller's monotonic clock, ms).
    pub at_ms: u64,
    /// Backends waiting for the standby's confirmation of their commit;
    /// `None` when unknown.
    pub waiters: Option<u32>,
    /// The standby has a `streaming` connection to the primary.
    pub streaming: bool,
    /// The standby's acknowledged (flushed) position as the primary sees
    /// it; `None` when unknown (no connection, or no reply yet).
    pub flush_lsn: Option<u64>,
    /// The primary's current WAL position; `None` when unknown.
    pub primary_lsn: Option<u64>,
}

impl SyncSample {
    /// The sample for standby `application_name` from the primary's own
    /// observation taken at `at_ms`. `None` when the observation is not of
    /// a reachable, writable primary: a probe that failed says nothing
    /// about the standby, and must not count as "not streaming".
    ///
    /// Which row: the one PostgreSQL uses as the sync standby
    /// (`sync_state = 'sync'`), as that is the one commits wait for. With
    /// none (degraded: every row is `async`), the lowest position among
    /// its `streaming` rows: after a cut heals, the primary can hold a dead
    /// connection of the same name next to the new one until
    /// `wal_sender_timeout`, and PostgreSQL may pick the dead one as its
    /// sync standby once sync is back on; so every one of them must
    /// acknowledge before the machine returns to sync.
    pub fn from_observation(
        at_ms: u64,
        primary: &PgObservation,
        application_name: &str,
    ) -> Option<SyncSample> {
        if !primary.is_writable_primary() {
            return None;
        }
        let rows: Vec<_> = primary
            .replicas
            .iter()
            .filter(|r| r.application_name == application_name)
            .collect();
        let streaming: Vec<_> = rows.iter().filter(|r| r.state == "streaming").collect();
        let flush_lsn = match rows.iter().find(|r| r.sync_state == "sync") {
            Some(sync) => sync.flush_lsn,
            // Unknown if any streaming row has not replied yet.
            None => streaming
                .iter()
                .map(|r| r.flush_lsn)
                .try_fold(None, |min: Option<u64>, lsn| {
                    lsn.map(|l| Some(min.map_or(l, |m| m.min(l))))
                })
                .flatten(),
        };
        Some(SyncSample {
            at_ms,
            waiters: primary.sync_waiters,
            streaming: !streaming.is_empty(),
            flush_lsn,
            primary_lsn: primary.current_lsn,
        })
    }
}

/// Why the primary stops waiting for its standby, in words for the log and
/// for `palisadectl status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DegradeReason {
    /// The standby has no streaming connection to the primary.
    NotStreaming,
    /// Commits waited while the standby acknowledged nothing.
    AckStalled {
        /// Commits waiting at the sample that decided.
        waiters: u32,
        /// The position the standby was stuck at.
        flush_lsn: u64,
        /// How long commits had waited with that position unchanged.
        stalled_ms: u64,
    },
}

impl fmt::Display for DegradeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DegradeReason::NotStreaming => f.write_str("standby not streaming"),
            DegradeReason::AckStalled {
                waiters,
                flush_lsn,
                stalled_ms,
            } => write!(
                f,
                "standby stopped acknowledging: {waiters} commit(s) waiting, its acknowledged position stuck at {} for {stalled_ms} ms",
                format_lsn(*flush_lsn)
            ),
        }
    }
}

/// What the agent does with `synchronous_standby_names`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncDecision {
    /// Keep (or put back) the standby as the synchronous standby.
    Sync,
    /// Clear it, so commits stop waiting for the standby.
    Degrade {
        /// Why.
        reason: DegradeReason,
        /// When the machine degraded (sample time, ms).
        since_ms: u64,
    },
}

/// A position and the first sample that showed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ack {
    lsn: u64,
    since_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Sync {
        /// The standby's acknowledged position, `None` when unknown.
        ack: Option<Ack>,
        /// First sample of the current run of samples with waiters.
        waiting_since_ms: Option<u64>,
    },
    Degraded {
        reason: DegradeReason,
        since_ms: u64,
        /// After a stall: the position the standby must get beyond.
        stuck_lsn: Option<u64>,
        /// The previous sample's standby and primary positions.
        last_flush: Option<u64>,
        last_primary: Option<u64>,
        /// First sample of the current run of healthy samples.
        healthy_since_ms: Option<u64>,
    },
}

/// The decision's state for one primary term. Build one when this site
/// becomes primary (a new epoch starts a new machine) and feed it every
/// probe of the primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncDegrade {
    /// `[failover] sync_degrade_after_ms`.
    after_ms: u64,
    /// Time of the latest sample taken into account.
    last_at_ms: Option<u64>,
    mode: Mode,
}

impl SyncDegrade {
    /// A machine in sync that degrades after `after_ms` of stalled
    /// acknowledgements (at least 1; the configuration requires more than
    /// the probe interval).
    pub fn new(after_ms: u64) -> Self {
        Self {
            after_ms: after_ms.max(1),
            last_at_ms: None,
            mode: Mode::Sync {
                ack: None,
                waiting_since_ms: None,
            },
        }
    }

    /// The decision as of the latest sample (`Sync` before any).
    pub fn decision(&self) -> SyncDecision {
        match self.mode {
            Mode::Sync { .. } => SyncDecision::Sync,
            Mode::Degraded {
                reason, since_ms, ..
            } => SyncDecision::Degrade { reason, since_ms },
        }
    }

    /// True once at least one sample was taken into account: before that
    /// the machine knows nothing, and its `Sync` is only the default.
    pub fn has_evidence(&self) -> bool {
        self.last_at_ms.is_some()
    }

    /// Takes one sample into account and returns the decision.
    pub fn observe(&mut self, s: SyncSample) -> SyncDecision {
        if self.last_at_ms.is_some_and(|last| s.at_ms <= last) {
            return self.decision();
        }
        self.last_at_ms = Some(s.at_ms);
        let now = s.at_ms;
        match &mut self.mode {
            Mode::Sync {
                ack,
                waiting_since_ms,
            } => {
                *ack = match (s.flush_lsn, *ack) {
                    (Some(lsn), Some(a)) if a.lsn == lsn => Some(a),
                    (Some(lsn), _) => Some(Ack { lsn, since_ms: now }),
                    (None, _) => None,
                };
                if !s.streaming {
                    self.degrade(now, DegradeReason::NotStreaming, None, s);
                    return self.decision();
                }
                match (s.waiters, *ack) {
                    (Some(waiters), Some(a)) if waiters > 0 => {
                        let since = *waiting_since_ms.get_or_insert(now);
                        let stalled_ms = now - since.max(a.since_ms);
                        if stalled_ms >= self.after_ms {
                            let reason = DegradeReason::AckStalled {
                                waiters,
                                flush_lsn: a.lsn,
                                stalled_ms,
                            };
                            self.degrade(now, reason, Some(a.lsn), s);
                        }
                    }
                    _ => *waiting_since_ms = None,
                }
            }
            Mode::Degraded {
                stuck_lsn,
                last_flush,
                last_primary,
                healthy_since_ms,
                ..
            } => {
                let caught_up =
                    matches!((s.flush_lsn, *last_primary), (Some(f), Some(p)) if f >= p);
                let moved = matches!((s.flush_lsn, *last_flush), (Some(f), Some(l)) if f > l);
                let beyond_stuck = match (s.flush_lsn, *stuck_lsn) {
                    (Some(f), Some(stuck)) => f > stuck,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                let healthy = s.streaming && beyond_stuck && (moved || caught_up);
                *last_flush = s.flush_lsn;
                *last_primary = s.primary_lsn;
                if !healthy {
                    *healthy_since_ms = None;
                    return self.decision();
                }
                let since = *healthy_since_ms.get_or_insert(now);
                if caught_up && now - since >= self.after_ms {
                    self.mode = Mode::Sync {
                        ack: s.flush_lsn.map(|lsn| Ack { lsn, since_ms: now }),
                        waiting_since_ms: None,
                    };
                }
            }
        }
        self.decision()
    }

    fn degrade(&mut self, now: u64, reason: DegradeReason, stuck_lsn: Option<u64>, s: SyncSample) {
        self.mode = Mode::Degraded {
            reason,
            since_ms: now,
            stuck_lsn,
            last_flush: s.flush_lsn,
            last_primary: s.primary_lsn,
            healthy_since_ms: None,
        };
    }
}

#[cfg(test)]
mod tests;
