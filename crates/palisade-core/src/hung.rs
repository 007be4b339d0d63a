//! A hung primary, as its own site agent sees it (DESIGN rule 3, issue 10
//! item 4): the server's processes exist, but the local probe gets no
//! answer (a stopped or stuck postmaster accepts no new connection while
//! its backends and WAL sender may live on). Left alone it is an outage
//! that nothing ends; the agent treats it as a crash once it has lasted
//! `down_after`: killed, then restarted in place or left for the failover,
//! as `on_primary_crash` says.
//!
//! Pure: fed each probe of the local server (with when it completed) and
//! whether the server's processes exist.

/// What the agent should do about its primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HungVerdict {
    /// It answers, or it is not running at all (a crash, handled as one).
    Fine,
    /// Unanswered probes with the processes alive, for `for_ms` so far.
    Suspect {
        /// Since the first unanswered probe.
        for_ms: u64,
    },
    /// Unanswered for at least `down_after`: treat it as crashed.
    Hung {
        /// Since the first unanswered probe.
        for_ms: u64,
    },
}

/// Follows the local probes of one primary term.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HungWatch {
    /// Start time of the first unanswered probe of the current spell: the
    /// server has answered nothing since.
    since_ms: Option<u64>,
    /// The latest probe taken into account.
    last_probe_ms: Option<u64>,
    /// Unanswered probes in the spell: one alone is never a hang (the
    /// prober itself may have been stalled, e.g. a witness thawed after a
    /// SIGSTOP completes a probe begun before it, "timed out").
    unanswered: u32,
}

impl HungWatch {
    /// One probe, started `latency_ms` before it completed at
    /// `probe_at_ms`: `timed_out` when it got no
    /// answer at all within the probe timeout (any answer, even an error
    /// such as "starting up" during a crash recovery, is not a hang);
    /// `processes_alive` when any process of the server exists now. A
    /// probe already seen changes nothing; the verdict only grows with new
    /// unanswered probes, so a stalled probe loop never makes a server look
    /// hung.
    pub fn observe(
        &mut self,
        probe_at_ms: u64,
        latency_ms: u64,
        timed_out: bool,
        processes_alive: bool,
        down_after_ms: u64,
    ) -> HungVerdict {
        if !timed_out || !processes_alive {
            *self = HungWatch::default();
            return HungVerdict::Fine;
        }
        if let Some(last) = self.last_probe_ms.filter(|l| probe_at_ms <= *l) {
            return self.verdict(last, down_after_ms);
        }
        self.last_probe_ms = Some(probe_at_ms);
        self.unanswered += 1;
        self.since_ms
            .get_or_insert(probe_at_ms.saturating_sub(latency_ms));
        self.verdict(probe_at_ms, down_after_ms)
    }

    fn verdict(&self, latest_ms: u64, down_after_ms: u64) -> HungVerdict {
        let Some(since) = self.since_ms else {
            return HungVerdict::Fine;
        };
        let for_ms = latest_ms.saturating_sub(since);
        if for_ms >= down_after_ms && self.unanswered >= 2 {
            HungVerdict::Hung { for_ms }
        } else {
            HungVerdict::Suspect { for_ms }
        }
    }

    /// Forgets the spell (the server was killed or restarted).
    pub fn reset(&mut self) {
        *self = HungWatch::default();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn unanswered_probes_with_live_processes_for_down_after_are_a_hang() {
        let mut w = HungWatch::default();
        assert_eq!(
            w.observe(1000, 0, true, true, 1000),
            HungVerdict::Suspect { for_ms: 0 }
        );
        assert_eq!(
            w.observe(1500, 0, true, true, 1000),
            HungVerdict::Suspect { for_ms: 500 }
        );
        assert_eq!(
            w.observe(1500, 0, true, true, 1000),
            HungVerdict::Suspect { for_ms: 500 },
            "the same probe again adds nothing"
        );
        assert_eq!(
            w.observe(2000, 0, true, true, 1000),
            HungVerdict::Hung { for_ms: 1000 }
        );
    }

    #[test]
    fn the_spell_counts_from_when_the_first_unanswered_probe_began() {
        let mut w = HungWatch::default();
        assert_eq!(
            w.observe(2000, 1000, true, true, 1000),
            HungVerdict::Suspect { for_ms: 1000 },
            "a probe that waited its whole 1 s timeout: no answer for 1 s, but one probe alone is no hang"
        );
        assert_eq!(
            w.observe(2250, 1000, true, true, 1000),
            HungVerdict::Hung { for_ms: 1250 }
        );
    }

    #[test]
    fn an_answer_or_a_dead_server_ends_the_spell() {
        let mut w = HungWatch::default();
        w.observe(1000, 0, true, true, 1000);
        assert_eq!(w.observe(1500, 0, false, true, 1000), HungVerdict::Fine);
        assert_eq!(
            w.observe(2100, 0, true, true, 1000),
            HungVerdict::Suspect { for_ms: 0 }
        );
        assert_eq!(
            w.observe(2600, 0, true, false, 1000),
            HungVerdict::Fine,
            "no process: a crash, not a hang"
        );
    }

    proptest! {
        /// Hung only after unanswered probes, with the processes alive,
        /// spanning at least `down_after`, none answered in between.
        #[test]
        fn hung_only_after_an_unbroken_spell(
            probes in prop::collection::vec((1u64..400, any::<bool>(), prop::bool::weighted(0.9)), 1..60),
        ) {
            let mut w = HungWatch::default();
            let mut t = 0;
            let mut spell_start: Option<u64> = None;
            for (gap, answered, alive) in probes {
                t += gap;
                let v = w.observe(t, 0, !answered, alive, 1000);
                if answered || !alive {
                    spell_start = None;
                    prop_assert_eq!(v, HungVerdict::Fine);
                    continue;
                }
                let start = *spell_start.get_or_insert(t);
                match v {
                    HungVerdict::Hung { for_ms } => {
                        prop_assert!(t - start >= 1000);
                        prop_assert!(t > start, "never on one probe alone");
                        prop_assert_eq!(for_ms, t - start);
                    }
                    HungVerdict::Suspect { for_ms } => {
                        prop_assert!(for_ms < 1000 || t == start)
                    }
                    HungVerdict::Fine => prop_assert!(false, "an unanswered probe is never fine"),
                }
            }
        }
    }
}
