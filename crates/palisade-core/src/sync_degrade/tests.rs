use proptest::prelude::*;

use super::*;
use crate::observe::{ErrorClass, Reachability, ReplicaInfo};

/// `sync_degrade_after_ms` of these tests (the default).
const AFTER: u64 = 3000;
/// The probe interval of these tests (the default).
const TICK: u64 = 250;

fn sample(at_ms: u64, waiters: u32, flush: u64, primary: u64) -> SyncSample {
    SyncSample {
        at_ms,
        waiters: Some(waiters),
        streaming: true,
        flush_lsn: Some(flush),
        primary_lsn: Some(primary),
    }
}

fn is_sync(d: SyncDecision) -> bool {
    d == SyncDecision::Sync
}

/// A machine degraded by a stall at position 1000 (commits waiting from
/// t = 0), and the time it degraded.
fn stalled_at_1000() -> (SyncDegrade, u64) {
    let mut m = SyncDegrade::new(AFTER);
    let mut t = 0;
    loop {
        if !is_sync(m.observe(sample(t, 2, 1000, 5000))) {
            return (m, t);
        }
        t += TICK;
        assert!(t <= AFTER, "no degrade by {t} ms");
    }
}

#[test]
fn a_busy_standby_that_keeps_acknowledging_never_degrades() {
    let mut m = SyncDegrade::new(AFTER);
    for i in 0..1_000 {
        // Commits in flight at every sample, the standby a little behind.
        let d = m.observe(sample(i * TICK, 5, 10_000 + i * 100, 10_050 + i * 100));
        assert!(is_sync(d), "tick {i}: {d:?}");
    }
}

#[test]
fn an_idle_primary_whose_standby_position_stands_still_stays_in_sync() {
    let mut m = SyncDegrade::new(AFTER);
    for i in 0..10_000 {
        assert!(is_sync(m.observe(sample(i * TICK, 0, 7, 7))), "tick {i}");
    }
}

#[test]
fn the_first_commit_after_a_long_idle_time_does_not_degrade_at_once() {
    let mut m = SyncDegrade::new(AFTER);
    let idle_until = 3_600_000;
    let mut t = 0;
    while t < idle_until {
        m.observe(sample(t, 0, 7, 7));
        t += TICK;
    }
    // The position has not moved for an hour, but commits wait only now:
    // the stall counts from the first sample with waiters.
    let first_wait = t;
    while t < first_wait + AFTER {
        assert!(is_sync(m.observe(sample(t, 1, 7, 9))), "at {t}");
        t += TICK;
    }
    assert_eq!(
        m.observe(sample(t, 1, 7, 9)),
        SyncDecision::Degrade {
            reason: DegradeReason::AckStalled {
                waiters: 1,
                flush_lsn: 7,
                stalled_ms: AFTER,
            },
            since_ms: t,
        }
    );
}

#[test]
fn stalled_acknowledgements_with_waiting_commits_degrade_after_the_configured_time() {
    let mut m = SyncDegrade::new(AFTER);
    let mut t = 0;
    let mut flush = 100;
    for _ in 0..20 {
        assert!(is_sync(m.observe(sample(t, 3, flush, flush + 10))));
        t += TICK;
        flush += 10;
    }
    // The standby freezes: its last acknowledgement is the one at `stuck_at`.
    let stuck_at = t;
    assert!(is_sync(m.observe(sample(t, 3, flush, flush + 10))));
    t += TICK;
    while t < stuck_at + AFTER {
        assert!(
            is_sync(m.observe(sample(t, 4, flush, flush + 500))),
            "at {t}"
        );
        t += TICK;
    }
    let d = m.observe(sample(t, 4, flush, flush + 500));
    let SyncDecision::Degrade { reason, since_ms } = d else {
        panic!("no degrade at {t}: {d:?}");
    };
    assert_eq!(since_ms, stuck_at + AFTER);
    assert_eq!(
        reason,
        DegradeReason::AckStalled {
            waiters: 4,
            flush_lsn: flush,
            stalled_ms: AFTER,
        }
    );
    let text = reason.to_string();
    assert!(
        text.contains("stopped acknowledging") && text.contains(&format_lsn(flush)),
        "{text}"
    );
    // It stays degraded, with the same reason, while nothing changes.
    assert_eq!(m.observe(sample(t + TICK, 0, flush, flush + 900)), d);
}

#[test]
fn a_sample_without_waiters_restarts_the_count() {
    let mut m = SyncDegrade::new(AFTER);
    let mut t = 0;
    while t < AFTER - TICK {
        assert!(is_sync(m.observe(sample(t, 1, 50, 60))));
        t += TICK;
    }
    // The waiting commits got through (or gave up): no evidence of a stall.
    assert!(is_sync(m.observe(sample(t, 0, 50, 60))));
    t += TICK;
    let restart = t;
    while t < restart + AFTER {
        assert!(is_sync(m.observe(sample(t, 1, 50, 60))), "at {t}");
        t += TICK;
    }
    assert!(!is_sync(m.observe(sample(t, 1, 50, 60))));
}

#[test]
fn unknown_waiters_or_position_is_no_evidence() {
    let mut m = SyncDegrade::new(AFTER);
    let mut t = 0;
    for i in 0..100 {
        // Every fourth sample cannot tell (a probe role without
        // pg_read_all_stats would never tell): the count never completes.
        let s = match i % 8 {
            3 => SyncSample {
                waiters: None,
                ..sample(t, 1, 50, 60)
            },
            7 => SyncSample {
                flush_lsn: None,
                ..sample(t, 1, 50, 60)
            },
            _ => sample(t, 1, 50, 60),
        };
        assert!(is_sync(m.observe(s)), "sample {i}");
        t += TICK;
    }
}

#[test]
fn a_standby_that_does_not_stream_degrades_at_once() {
    let mut m = SyncDegrade::new(AFTER);
    assert!(is_sync(m.observe(sample(0, 0, 50, 60))));
    let gone = SyncSample {
        at_ms: TICK,
        waiters: Some(0),
        streaming: false,
        flush_lsn: None,
        primary_lsn: Some(60),
    };
    let d = m.observe(gone);
    assert_eq!(
        d,
        SyncDecision::Degrade {
            reason: DegradeReason::NotStreaming,
            since_ms: TICK,
        }
    );
    assert_eq!(
        DegradeReason::NotStreaming.to_string(),
        "standby not streaming"
    );
}

#[test]
fn the_same_sample_seen_twice_is_one_piece_of_evidence() {
    let mut m = SyncDegrade::new(AFTER);
    assert!(!m.has_evidence());
    assert!(is_sync(m.observe(sample(1000, 1, 50, 60))));
    assert!(m.has_evidence());
    // The agent looks at the same (or an older) probe again and again:
    // no time passes for the machine.
    for _ in 0..100 {
        assert!(is_sync(m.observe(sample(1000, 1, 50, 60))));
        assert!(is_sync(m.observe(sample(500, 1, 50, 60))));
    }
    assert!(is_sync(m.observe(sample(1000 + AFTER - 1, 1, 50, 60))));
    assert!(!is_sync(m.observe(sample(1000 + AFTER, 1, 50, 60))));
}

#[test]
fn a_standby_still_stuck_keeps_the_primary_degraded() {
    let (mut m, degraded_at) = stalled_at_1000();
    // It still streams (the primary has not timed it out), its position
    // still stuck; the primary writes on.
    let mut t = degraded_at + TICK;
    for i in 0..1_000 {
        assert!(!is_sync(m.observe(sample(t, 0, 1000, 6000 + i))), "at {t}");
        t += TICK;
    }
}

#[test]
fn a_thawed_standby_that_catches_up_returns_to_sync_after_the_hold() {
    let (mut m, degraded_at) = stalled_at_1000();
    let mut t = degraded_at + TICK;
    assert!(!is_sync(m.observe(sample(t, 0, 1000, 6000))));
    // Thawed: it acknowledges everything the primary had written.
    t += TICK;
    let healthy_from = t;
    let mut lsn = 6000;
    while t < healthy_from + AFTER {
        assert!(!is_sync(m.observe(sample(t, 0, lsn, lsn + 20))), "at {t}");
        t += TICK;
        lsn += 20;
    }
    assert!(is_sync(m.observe(sample(t, 0, lsn, lsn + 20))));
    // Back in sync with a fresh stall count: one stuck sample with
    // waiters right away does not degrade again.
    assert!(is_sync(m.observe(sample(t + TICK, 1, lsn, lsn + 40))));
}

#[test]
fn a_break_in_health_restarts_the_hold() {
    let (mut m, degraded_at) = stalled_at_1000();
    let mut t = degraded_at + TICK;
    let mut lsn = 6000;
    while t < degraded_at + AFTER {
        assert!(!is_sync(m.observe(sample(t, 0, lsn, lsn + 20))));
        t += TICK;
        lsn += 20;
    }
    // One sample without a streaming connection.
    let broken = SyncSample {
        streaming: false,
        ..sample(t, 0, lsn, lsn + 20)
    };
    assert!(!is_sync(m.observe(broken)));
    t += TICK;
    lsn += 20;
    let again = t;
    while t < again + AFTER {
        assert!(!is_sync(m.observe(sample(t, 0, lsn, lsn + 20))), "at {t}");
        t += TICK;
        lsn += 20;
    }
    assert!(is_sync(m.observe(sample(t, 0, lsn, lsn + 20))));
}

#[test]
fn a_standby_that_moves_but_lags_stays_degraded_until_it_catches_up() {
    let (mut m, degraded_at) = stalled_at_1000();
    let mut t = degraded_at + TICK;
    // The primary writes 1000 per tick, the standby catches up 500 per
    // tick from far behind: moving, never at the previous primary position.
    let (mut flush, mut primary) = (2000, 50_000);
    for _ in 0..40 {
        assert!(!is_sync(m.observe(sample(t, 0, flush, primary))), "at {t}");
        t += TICK;
        flush += 500;
        primary += 1000;
    }
    // The primary pauses; the standby reaches it and, healthy for long
    // already, sync comes back at once.
    assert!(is_sync(m.observe(sample(t, 0, primary, primary))));
}

#[test]
fn after_a_lost_connection_an_idle_standby_returns_once_it_streams_for_the_hold() {
    let mut m = SyncDegrade::new(AFTER);
    assert!(is_sync(m.observe(sample(0, 0, 70, 70))));
    let gone = SyncSample {
        streaming: false,
        flush_lsn: None,
        ..sample(TICK, 0, 0, 70)
    };
    assert!(!is_sync(m.observe(gone)));
    // Reconnected, nothing written meanwhile: its position equals the
    // primary's and does not move.
    let back = 2 * TICK;
    let mut t = back;
    while t < back + AFTER {
        assert!(!is_sync(m.observe(sample(t, 0, 70, 70))), "at {t}");
        t += TICK;
    }
    assert!(is_sync(m.observe(sample(t, 0, 70, 70))));
}

fn observation(replicas: Vec<ReplicaInfo>, waiters: Option<u32>) -> PgObservation {
    PgObservation {
        reachability: Reachability::Up,
        in_recovery: Some(false),
        current_lsn: Some(900),
        replicas,
        sync_waiters: waiters,
        ..PgObservation::down(ErrorClass::Other, "", 1)
    }
}

fn replica(name: &str, state: &str, sync_state: &str, flush: Option<u64>) -> ReplicaInfo {
    ReplicaInfo {
        application_name: name.into(),
        client_addr: None,
        state: state.into(),
        sync_state: sync_state.into(),
        sent_lsn: flush,
        flush_lsn: flush,
        replay_lsn: flush,
    }
}

#[test]
fn the_sample_comes_from_the_row_commits_wait_for() {
    let o = observation(
        vec![
            replica("b", "streaming", "async", Some(100)),
            replica("b", "streaming", "sync", Some(800)),
            replica("other", "streaming", "sync", Some(1)),
        ],
        Some(2),
    );
    assert_eq!(
        SyncSample::from_observation(5, &o, "b"),
        Some(SyncSample {
            at_ms: 5,
            waiters: Some(2),
            streaming: true,
            flush_lsn: Some(800),
            primary_lsn: Some(900),
        })
    );
    // Degraded (no sync row): the lowest streaming position must move.
    let o = observation(
        vec![
            replica("b", "streaming", "async", Some(800)),
            replica("b", "streaming", "async", Some(100)),
            replica("b", "catchup", "async", Some(5)),
        ],
        Some(0),
    );
    let s = SyncSample::from_observation(5, &o, "b").expect("a primary");
    assert_eq!((s.streaming, s.flush_lsn), (true, Some(100)));
    // One that has not replied yet makes the position unknown.
    let o = observation(
        vec![
            replica("b", "streaming", "async", Some(800)),
            replica("b", "streaming", "async", None),
        ],
        None,
    );
    let s = SyncSample::from_observation(5, &o, "b").expect("a primary");
    assert_eq!((s.streaming, s.flush_lsn, s.waiters), (true, None, None));
    // Only in catch-up: not streaming.
    let o = observation(vec![replica("b", "catchup", "async", Some(5))], Some(0));
    let s = SyncSample::from_observation(5, &o, "b").expect("a primary");
    assert!(!s.streaming);
    // A failed probe, or a standby, says nothing about the standby.
    let down = PgObservation::down(ErrorClass::Timeout, "no answer", 1000);
    assert_eq!(SyncSample::from_observation(5, &down, "b"), None);
    let standby = PgObservation {
        in_recovery: Some(true),
        ..observation(Vec::new(), None)
    };
    assert_eq!(SyncSample::from_observation(5, &standby, "b"), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// However many commits wait at each sample, a standby whose
    /// acknowledged position moved within the last `after` ms at every
    /// sample never makes the primary degrade.
    #[test]
    fn never_degrades_while_the_acknowledged_position_keeps_moving(
        after in 100u64..10_000,
        steps in prop::collection::vec((1u64..2_000, any::<bool>(), prop::option::of(0u32..50)), 1..300),
    ) {
        let mut m = SyncDegrade::new(after);
        let (mut t, mut flush, mut last_move) = (0u64, 1_000u64, 0u64);
        for (gap, moves, waiters) in steps {
            t += gap;
            if moves || t - last_move >= after {
                flush += 1 + gap;
                last_move = t;
            }
            let d = m.observe(SyncSample {
                at_ms: t,
                waiters,
                streaming: true,
                flush_lsn: Some(flush),
                primary_lsn: Some(flush + 4096),
            });
            prop_assert!(is_sync(d), "degraded at {} ms: {:?}", t, d);
        }
    }

    /// A standby that stops acknowledging while commits wait makes the
    /// primary degrade exactly at the first sample `after` ms into the
    /// stall: within `after` + one probe interval, never sooner.
    #[test]
    fn always_degrades_within_after_plus_one_tick_when_stuck_with_waiters(
        after in 100u64..10_000,
        tick in 50u64..1_000,
        healthy in prop::collection::vec((1u64..1_000, 0u32..20), 0..50),
        stuck in prop::collection::vec((0.0f64..1.0, 1u32..20), 1..400),
    ) {
        let mut m = SyncDegrade::new(after);
        let (mut t, mut flush) = (0u64, 1u64);
        for (gap, waiters) in healthy {
            t += gap;
            flush += gap;
            let d = m.observe(sample(t, waiters, flush, flush + 100));
            prop_assert!(is_sync(d));
        }
        // The last acknowledgement, with commits already waiting.
        t += tick;
        flush += 1;
        let stall_start = t;
        prop_assert!(is_sync(m.observe(sample(t, 1, flush, flush + 100))));
        let mut primary = flush + 100;
        let mut degraded = None;
        for (fraction, waiters) in stuck.iter().cycle() {
            // Probes every 1..=tick ms (a probe may be late, never later).
            t += 1 + (fraction * (tick - 1) as f64) as u64;
            primary += 10;
            let d = m.observe(sample(t, *waiters, flush, primary));
            if !is_sync(d) {
                degraded = Some((t, d));
                break;
            }
            prop_assert!(t - stall_start < after, "still in sync {} ms into the stall", t - stall_start);
        }
        let (at, d) = degraded.expect("the loop ends only on a degrade");
        prop_assert!(at - stall_start >= after, "degraded after only {} ms", at - stall_start);
        prop_assert!(at - stall_start < after + tick, "degraded after {} ms", at - stall_start);
        let is_stall = matches!(d, SyncDecision::Degrade { reason: DegradeReason::AckStalled { .. }, .. });
        prop_assert!(is_stall, "{:?}", d);
    }

    /// Over any history: a return to sync comes at least `after` ms after
    /// the degrade, only with the standby caught up (at the primary's
    /// previous position) and, after a stall, beyond where it was stuck;
    /// a stall degrade comes at least `after` ms after a return.
    #[test]
    fn never_flaps_faster_than_the_configured_time(
        after in 100u64..5_000,
        steps in prop::collection::vec(
            (1u64..1_000, prop::bool::weighted(0.95), 0u8..4, prop::option::of(0u32..3), 0u64..3_000, any::<bool>()),
            1..500,
        ),
    ) {
        let mut m = SyncDegrade::new(after);
        let (mut t, mut flush, mut primary) = (0u64, 0u64, 0u64);
        let mut prev_primary: Option<u64> = None;
        let mut last_return: Option<u64> = None;
        let mut before = m.decision();
        for (gap, streaming, advance, waiters, write, flush_known) in steps {
            t += gap;
            primary += write;
            // The standby moves towards the primary in random steps, or not.
            flush = match advance {
                0 => flush,
                1 => primary,
                _ => flush + (primary - flush) / 2,
            };
            let s = SyncSample {
                at_ms: t,
                waiters,
                streaming,
                flush_lsn: flush_known.then_some(flush),
                primary_lsn: Some(primary),
            };
            let after_this = m.observe(s);
            match (before, after_this) {
                (SyncDecision::Degrade { reason, since_ms }, SyncDecision::Sync) => {
                    prop_assert!(t - since_ms >= after, "back in sync {} ms after the degrade", t - since_ms);
                    let f = s.flush_lsn.expect("a return needs a known position");
                    prop_assert!(prev_primary.is_some_and(|p| f >= p), "returned before catching up");
                    if let DegradeReason::AckStalled { flush_lsn, .. } = reason {
                        prop_assert!(f > flush_lsn, "returned while still at the stuck position");
                    }
                    prop_assert!(s.streaming);
                    last_return = Some(t);
                }
                (SyncDecision::Sync, SyncDecision::Degrade { reason: DegradeReason::AckStalled { stalled_ms, .. }, since_ms }) => {
                    prop_assert_eq!(since_ms, t);
                    prop_assert!(stalled_ms >= after);
                    if let Some(r) = last_return {
                        prop_assert!(t - r >= after, "degraded again {} ms after returning", t - r);
                    }
                }
                _ => {}
            }
            before = after_this;
            prev_primary = Some(primary);
        }
    }
}
