//! What a witness's health endpoints answer, decided from what it knows:
//! the replicated roles, its site agent's lease, and its own latest probe
//! of its own site's database.
//!
//! They let load balancers that palisade does not drive follow it, the way
//! operators know from Patroni (`GET /primary`, `GET /standby`): a balancer
//! polls every witness and sends writes to the one site that answers 200.
//! The rule that matters is the primary's: it answers 200 only while its
//! site's agent holds the quorum lease (with the fence margin) and sees its
//! database writable, so a balancer never routes to a primary that is
//! about to be, or has been, fenced.

use crate::observe::PgObservation;
use crate::state::ClusterState;
use crate::topology::SiteId;

/// An endpoint's answer: 200 with `reason`, or 503 with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// 200 when true, 503 otherwise.
    pub ok: bool,
    /// Why, in words (the response body says it).
    pub reason: String,
}

impl Verdict {
    fn ok(reason: impl Into<String>) -> Self {
        Self {
            ok: true,
            reason: reason.into(),
        }
    }

    fn no(reason: impl Into<String>) -> Self {
        Self {
            ok: false,
            reason: reason.into(),
        }
    }
}

/// What a witness knows of its own site, for its endpoints.
#[derive(Clone, Debug)]
pub struct SiteView<'a> {
    /// This witness's site.
    pub site: &'a SiteId,
    /// The replicated state as this witness has applied it.
    pub state: &'a ClusterState,
    /// How long its agent's lease still holds (fence margin included);
    /// `None` when it holds none.
    pub lease_remaining_ms: Option<u64>,
    /// Its agent has seen the database run under that lease.
    pub serving_under_lease: bool,
    /// Its own latest probe of its own site's database, and that probe's
    /// age in ms.
    pub own_db: Option<(&'a PgObservation, u64)>,
    /// Its latest probe of the primary's database (for the standby's lag
    /// in bytes), and its age.
    pub primary_db: Option<(&'a PgObservation, u64)>,
    /// A probe older than this says nothing about now.
    pub fresh_ms: u64,
    /// `max_lag_bytes`.
    pub max_lag_bytes: u64,
    /// `max_lag_seconds`.
    pub max_lag_seconds: f64,
}

impl SiteView<'_> {
    fn own_fresh(&self) -> Result<&PgObservation, String> {
        match self.own_db {
            None => Err("no probe of this site's database yet".into()),
            Some((_, age)) if age > self.fresh_ms => Err(format!(
                "the last probe of this site's database is {age} ms old (more than {} ms)",
                self.fresh_ms
            )),
            Some((o, _)) if !o.reachability.is_up() => {
                Err("this site's database does not answer its probe".into())
            }
            Some((o, _)) => Ok(o),
        }
    }
}

/// `GET /primary`: 200 only at the site that holds the writable primary
/// under a valid lease.
pub fn primary(v: &SiteView<'_>) -> Verdict {
    let Some(db) = &v.state.db else {
        return Verdict::no("no database roles recorded");
    };
    if db.primary != *v.site {
        return Verdict::no(format!("site {} is the primary, not this site", db.primary));
    }
    if let Some(f) = &v.state.failover {
        if f.from == *v.site {
            return Verdict::no(format!(
                "a {} away from this site is under way (epoch {})",
                f.kind.name(),
                f.epoch
            ));
        }
    }
    let Some(left) = v.lease_remaining_ms else {
        return Verdict::no("this site's agent holds no lease: its primary may not take writes");
    };
    if !v.serving_under_lease {
        return Verdict::no("the primary is not yet confirmed running under its lease");
    }
    match v.own_fresh() {
        Err(why) => Verdict::no(why),
        Ok(o) if o.in_recovery != Some(false) => {
            Verdict::no("this site's database is not a writable primary")
        }
        Ok(_) => Verdict::ok(format!(
            "primary at site {} (epoch {}), lease {left} ms left",
            v.site, v.state.epoch
        )),
    }
}

/// `GET /standby`: 200 at the recorded standby's site while its database
/// streams within `max_lag`.
pub fn standby(v: &SiteView<'_>) -> Verdict {
    let Some(db) = &v.state.db else {
        return Verdict::no("no database roles recorded");
    };
    if db.standby != *v.site {
        return Verdict::no(format!("site {} is the standby, not this site", db.standby));
    }
    if db.standby_needs_rejoin {
        return Verdict::no("this site's database must rejoin before it is a standby");
    }
    let o = match v.own_fresh() {
        Err(why) => return Verdict::no(why),
        Ok(o) => o,
    };
    if o.in_recovery != Some(true) {
        return Verdict::no("this site's database is not in recovery");
    }
    if !o.is_streaming() {
        return Verdict::no("this site's standby is not streaming");
    }
    if let Some(secs) = o.replay_lag_seconds.filter(|s| *s > v.max_lag_seconds) {
        return Verdict::no(format!(
            "replay lags {secs:.1} s; max_lag_seconds is {}",
            v.max_lag_seconds
        ));
    }
    let primary_lsn = v
        .primary_db
        .filter(|(_, age)| *age <= v.fresh_ms)
        .and_then(|(p, _)| p.current_lsn);
    let lag = primary_lsn
        .zip(o.receive_lsn)
        .map(|(p, r)| p.saturating_sub(r));
    if let Some(bytes) = lag.filter(|b| *b > v.max_lag_bytes) {
        return Verdict::no(format!(
            "lags {bytes} bytes behind the primary; max_lag_bytes is {}",
            v.max_lag_bytes
        ));
    }
    Verdict::ok(match lag {
        Some(bytes) => format!("streaming standby, {bytes} bytes behind"),
        None => "streaming standby".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::{Evidence, Failover, Trigger};
    use crate::observe::{ErrorClass, Reachability, WalReceiverInfo};
    use crate::state::DbRoles;
    use proptest::prelude::*;

    fn site(s: &str) -> SiteId {
        SiteId(s.to_owned())
    }

    fn roles(primary: &str, standby: &str) -> ClusterState {
        ClusterState {
            db: Some(DbRoles {
                primary: site(primary),
                standby: site(standby),
                standby_needs_rejoin: false,
            }),
            epoch: 1,
            ..Default::default()
        }
    }

    fn primary_obs(lsn: u64) -> PgObservation {
        let mut o = PgObservation::down(ErrorClass::Other, "", 2);
        o.reachability = Reachability::Up;
        o.in_recovery = Some(false);
        o.current_lsn = Some(lsn);
        o
    }

    fn standby_obs(receive: u64, lag_s: f64) -> PgObservation {
        let mut o = PgObservation::down(ErrorClass::Other, "", 2);
        o.reachability = Reachability::Up;
        o.in_recovery = Some(true);
        o.receive_lsn = Some(receive);
        o.replay_lsn = Some(receive);
        o.replay_lag_seconds = Some(lag_s);
        o.wal_receiver = Some(WalReceiverInfo {
            status: "streaming".into(),
            sender_host: None,
            sender_port: None,
            flushed_lsn: Some(receive),
            last_msg_age_ms: Some(10),
        });
        o
    }

    fn view<'a>(
        s: &'a SiteId,
        state: &'a ClusterState,
        own: Option<(&'a PgObservation, u64)>,
    ) -> SiteView<'a> {
        SiteView {
            site: s,
            state,
            lease_remaining_ms: Some(1200),
            serving_under_lease: true,
            own_db: own,
            primary_db: None,
            fresh_ms: 1000,
            max_lag_bytes: 1000,
            max_lag_seconds: 5.0,
        }
    }

    #[test]
    fn the_leased_writable_primary_answers_200() {
        let (a, st, o) = (site("a"), roles("a", "b"), primary_obs(10));
        let v = primary(&view(&a, &st, Some((&o, 100))));
        assert!(v.ok, "{v:?}");
        assert_eq!(v.reason, "primary at site a (epoch 1), lease 1200 ms left");
    }

    #[test]
    fn the_primary_answers_503_without_lease_serving_fresh_probe_or_role() {
        let (a, st, o) = (site("a"), roles("a", "b"), primary_obs(10));
        let base = view(&a, &st, Some((&o, 100)));
        let reason = |v: SiteView<'_>| {
            let got = primary(&v);
            assert!(!got.ok, "{got:?}");
            got.reason
        };
        assert!(reason(SiteView {
            lease_remaining_ms: None,
            ..base.clone()
        })
        .contains("holds no lease"));
        assert!(reason(SiteView {
            serving_under_lease: false,
            ..base.clone()
        })
        .contains("not yet confirmed running"));
        assert!(reason(SiteView {
            own_db: Some((&o, 5000)),
            ..base.clone()
        })
        .contains("5000 ms old"));
        let standby = standby_obs(10, 0.0);
        assert!(reason(SiteView {
            own_db: Some((&standby, 10)),
            ..base.clone()
        })
        .contains("not a writable primary"));
        let down = PgObservation::down(ErrorClass::Refused, "refused", 1);
        assert!(reason(SiteView {
            own_db: Some((&down, 10)),
            ..base.clone()
        })
        .contains("does not answer"));
        let (b, stb) = (site("b"), roles("b", "a"));
        assert_eq!(
            reason(view(&b, &st, Some((&o, 100)))),
            "site a is the primary, not this site"
        );
        // The site that was primary, once the roles moved: 503.
        assert_eq!(
            reason(view(&a, &stb, Some((&o, 100)))),
            "site b is the primary, not this site"
        );
    }

    #[test]
    fn a_failover_away_from_the_site_turns_its_primary_endpoint_off_at_once() {
        let (a, mut st, o) = (site("a"), roles("a", "b"), primary_obs(10));
        st.failover = Some(Failover {
            epoch: 2,
            kind: Default::default(),
            from: site("a"),
            to: site("b"),
            trigger: Trigger::Automatic,
            reason: "test".into(),
            evidence: Evidence::default(),
            started_at_ms: 0,
            steps: vec![],
            outcome: None,
            finished_at_ms: None,
        });
        let v = primary(&view(&a, &st, Some((&o, 100))));
        assert!(!v.ok);
        assert_eq!(
            v.reason,
            "a failover away from this site is under way (epoch 2)"
        );
    }

    #[test]
    fn a_streaming_standby_within_max_lag_answers_200() {
        let (b, st) = (site("b"), roles("a", "b"));
        let (own, p) = (standby_obs(900, 0.5), primary_obs(1000));
        let v = standby(&SiteView {
            primary_db: Some((&p, 100)),
            ..view(&b, &st, Some((&own, 100)))
        });
        assert!(v.ok, "{v:?}");
        assert_eq!(v.reason, "streaming standby, 100 bytes behind");
    }

    #[test]
    fn a_standby_lagging_not_streaming_or_needing_rejoin_answers_503() {
        let (b, st) = (site("b"), roles("a", "b"));
        let p = primary_obs(5000);
        let own = standby_obs(900, 0.5);
        let v = standby(&SiteView {
            primary_db: Some((&p, 100)),
            ..view(&b, &st, Some((&own, 100)))
        });
        assert_eq!(
            v.reason,
            "lags 4100 bytes behind the primary; max_lag_bytes is 1000"
        );
        let slow = standby_obs(900, 9.0);
        assert!(standby(&view(&b, &st, Some((&slow, 100))))
            .reason
            .contains("replay lags 9.0 s"));
        let mut cut = standby_obs(900, 0.0);
        cut.wal_receiver = None;
        assert_eq!(
            standby(&view(&b, &st, Some((&cut, 100)))).reason,
            "this site's standby is not streaming"
        );
        let mut rejoin = roles("a", "b");
        if let Some(db) = rejoin.db.as_mut() {
            db.standby_needs_rejoin = true;
        }
        assert!(!standby(&view(&b, &rejoin, Some((&own, 100)))).ok);
        let a = site("a");
        assert!(!standby(&view(&a, &st, Some((&own, 100)))).ok);
    }

    proptest! {
        /// At most one site's /primary answers 200 for a given state, and
        /// never one without a lease or a writable database.
        #[test]
        fn primary_200_needs_role_lease_and_a_writable_database(
            primary_site in 0usize..3, asker in 0usize..3, lease in proptest::option::of(0u64..3000),
            serving in any::<bool>(), writable in any::<bool>(), age in 0u64..3000,
        ) {
            let sites = ["a", "b", "c"];
            let st = roles(sites[primary_site], sites[(primary_site + 1) % 3]);
            let me = site(sites[asker]);
            let o = if writable { primary_obs(1) } else { standby_obs(1, 0.0) };
            let v = primary(&SiteView {
                lease_remaining_ms: lease,
                serving_under_lease: serving,
                ..view(&me, &st, Some((&o, age)))
            });
            if v.ok {
                prop_assert_eq!(asker, primary_site);
                prop_assert!(lease.is_some() && serving && writable && age <= 1000);
            }
        }
    }
}
