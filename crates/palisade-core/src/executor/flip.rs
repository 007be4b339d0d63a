//! The `app-flipped` step's one decision of its own: whether the old
//! site's agent is worth asking to switch its app off, or is known to be
//! out of reach, so that the step does not spend a bounded wait on a site
//! cut off (DESIGN rule 4 keeps the order: off at the old site, confirmed
//! or out of reach, before on at the new one).

/// What this leader knows of the old primary's site agent (which lives in
/// the old site's witness process).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OldSiteContact {
    /// Leader clock now (ms).
    pub now_ms: u64,
    /// Since when this witness leads (leader clock, ms).
    pub leading_since_ms: u64,
    /// When the old site's witness last reported to this leader, if ever.
    pub last_report_ms: Option<u64>,
    /// How old a report may be and still count (`failover.report_ttl_ms`).
    pub report_ttl_ms: u64,
    /// The fence's call to that agent failed for want of an answer
    /// (timeout, unreachable) in this failover, on this leader.
    pub fence_call_unanswered: bool,
    /// The most reports any other remote witness (neither this leader's
    /// own nor the old site's) has sent this leader since it took office:
    /// proof that reports get through to it.
    pub others_reports_since_leading: u32,
}

/// Reports from another witness that show reports get through to a new
/// leader (each witness reports every probe interval).
const REPORTS_GETTING_THROUGH: u32 = 2;

/// How the old site's app is to be switched off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OldSiteApp {
    /// Ask its agent (a cheap read on a short bound first, then the
    /// switch-off): it may well answer.
    Ask,
    /// Do not wait on it: it did not answer the fence, or its witness has
    /// sent this leader no report for longer than any reachable witness
    /// would. Its agent switches the app off first thing when it returns
    /// (its desired `monitorsEnabled` is `false`). The reason, in words.
    OutOfReach(String),
}

/// Whether the old site's agent is worth asking. A witness that reaches
/// the leader reports every probe interval; one that sent nothing for
/// `report_ttl` while this leader has led at least that long is cut off
/// or dead, and so is its agent. Right after taking office the silence
/// means nothing yet, and the agent is asked.
pub fn old_site_app(c: &OldSiteContact) -> OldSiteApp {
    if c.fence_call_unanswered {
        return OldSiteApp::OutOfReach("its agent did not answer the fence".into());
    }
    let led_for = c.now_ms.saturating_sub(c.leading_since_ms);
    let heard_since_leading = c.last_report_ms.is_some_and(|at| at >= c.leading_since_ms);
    if led_for < c.report_ttl_ms {
        // Too early to judge by the clock alone; but another witness's
        // reports getting through while the old site's witness sent none
        // since this leader took office is enough.
        if !heard_since_leading && c.others_reports_since_leading >= REPORTS_GETTING_THROUGH {
            return OldSiteApp::OutOfReach(format!(
                "its witness sent none of the reports this leader received in its {led_for} ms in office (another witness's {} got through)",
                c.others_reports_since_leading
            ));
        }
        return OldSiteApp::Ask;
    }
    match c.last_report_ms {
        Some(at) if c.now_ms.saturating_sub(at) <= c.report_ttl_ms => OldSiteApp::Ask,
        Some(at) => OldSiteApp::OutOfReach(format!(
            "its witness last reported {} ms ago",
            c.now_ms.saturating_sub(at)
        )),
        None => OldSiteApp::OutOfReach(format!(
            "its witness has not reported in this leader's {led_for} ms in office"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact() -> OldSiteContact {
        OldSiteContact {
            now_ms: 10_000,
            leading_since_ms: 5_000,
            last_report_ms: Some(9_900),
            report_ttl_ms: 1_250,
            fence_call_unanswered: false,
            others_reports_since_leading: 0,
        }
    }

    #[test]
    fn a_witness_that_reports_is_asked() {
        assert_eq!(old_site_app(&contact()), OldSiteApp::Ask);
    }

    #[test]
    fn an_unanswered_fence_call_means_out_of_reach() {
        let c = OldSiteContact {
            fence_call_unanswered: true,
            ..contact()
        };
        assert!(matches!(old_site_app(&c), OldSiteApp::OutOfReach(_)));
    }

    #[test]
    fn a_silent_witness_is_out_of_reach_once_the_leader_has_led_a_report_ttl() {
        let c = OldSiteContact {
            last_report_ms: Some(8_000),
            ..contact()
        };
        assert_eq!(
            old_site_app(&c),
            OldSiteApp::OutOfReach("its witness last reported 2000 ms ago".into())
        );
        let never = OldSiteContact {
            last_report_ms: None,
            ..contact()
        };
        assert!(matches!(old_site_app(&never), OldSiteApp::OutOfReach(_)));
    }

    #[test]
    fn right_after_taking_office_silence_means_nothing() {
        // A new leader has heard from nobody yet: ask.
        let c = OldSiteContact {
            leading_since_ms: 9_000,
            last_report_ms: None,
            ..contact()
        };
        assert_eq!(old_site_app(&c), OldSiteApp::Ask);
    }

    #[test]
    fn a_new_leader_judges_by_the_other_witnesses_reports_getting_through() {
        // In office for 500 ms: too early by the clock.
        let new = OldSiteContact {
            leading_since_ms: 9_500,
            last_report_ms: None,
            ..contact()
        };
        assert_eq!(old_site_app(&new), OldSiteApp::Ask);
        // Another witness's reports got through, the old site's did not.
        let others_heard = OldSiteContact {
            others_reports_since_leading: 2,
            ..new
        };
        assert!(matches!(
            old_site_app(&others_heard),
            OldSiteApp::OutOfReach(_)
        ));
        // The old site's witness reported to this leader too: ask it.
        let both = OldSiteContact {
            last_report_ms: Some(9_800),
            ..others_heard
        };
        assert_eq!(old_site_app(&both), OldSiteApp::Ask);
        // A report it sent the previous leader does not count.
        let before = OldSiteContact {
            last_report_ms: Some(9_400),
            ..others_heard
        };
        assert!(matches!(old_site_app(&before), OldSiteApp::OutOfReach(_)));
        // One report is not yet a pattern.
        let one = OldSiteContact {
            others_reports_since_leading: 1,
            ..new
        };
        assert_eq!(old_site_app(&one), OldSiteApp::Ask);
    }

    #[test]
    fn the_edge_of_the_report_ttl_still_counts_as_reporting() {
        let c = OldSiteContact {
            last_report_ms: Some(10_000 - 1_250),
            ..contact()
        };
        assert_eq!(old_site_app(&c), OldSiteApp::Ask);
    }
}
