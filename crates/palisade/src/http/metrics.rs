//! The witness's Prometheus metrics, rendered at each scrape from what the
//! witness knows at that moment ([`Snapshot`]): its Raft view, its own
//! probes, its site agent's lease, the leader's detector, and the
//! replicated history of failovers. Every metric is documented in
//! `docs/metrics.md`; the alert rules in `deploy/monitoring/` use them.
//!
//! The failover counters and histograms come from the replicated history,
//! so every witness reports the same figures and a restarted witness does
//! not reset them.

use palisade_core::observe::PgObservation;
use palisade_core::{ClusterState, Outcome};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// What this witness knows when it is scraped.
pub struct Snapshot {
    /// This witness's id and site.
    pub node: u64,
    /// See `node`.
    pub site: String,
    /// Its Raft view.
    pub raft: RaftFacts,
    /// The replicated state it applied.
    pub state: std::sync::Arc<ClusterState>,
    /// Its latest probe of each site's database, with the probe's age (ms).
    pub probes: Vec<(String, PgObservation, u64)>,
    /// The leader's detector assessment in words (empty elsewhere).
    pub assessment: String,
    /// Its site agent's lease (primary site only).
    pub lease_remaining_ms: Option<u64>,
    /// Its agent has seen the database run under that lease.
    pub serving_under_lease: bool,
    /// Answers to its agent's lease renewals: (witness, outcome, count).
    pub lease_answers: Vec<(u64, &'static str, u64)>,
    /// `max_lag_bytes` and `max_lag_seconds` (for lag alerts), when a
    /// database is configured.
    pub max_lag: Option<(u64, f64)>,
}

/// This witness's Raft view.
#[derive(Clone, Debug, Default)]
pub struct RaftFacts {
    /// Its current term.
    pub term: u64,
    /// The leader it knows.
    pub leader: Option<u64>,
    /// It is the leader.
    pub is_leader: bool,
    /// Its last log index.
    pub last_log_index: Option<u64>,
    /// Its last applied index.
    pub applied_index: Option<u64>,
    /// Terms this process has seen begin since it started.
    pub terms_seen: u64,
    /// Leader changes this process has seen since it started.
    pub leader_changes_seen: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteLabel {
    site: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WitnessLabel {
    node: String,
    site: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    site: String,
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabel {
    witness: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabel {
    step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabel {
    check: String,
    result: String,
}

/// The detector's states, as the assessment's first word names them.
const DETECTOR_STATES: [&str; 5] = ["healthy", "suspect", "blocked", "failing_over", "paused"];

/// Seconds: a step takes from milliseconds to minutes (a rejoin's copy).
fn step_buckets() -> Histogram {
    Histogram::new([
        0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0,
    ])
}

fn gauge(v: i64) -> Gauge {
    let g = Gauge::default();
    g.set(v);
    g
}

fn fgauge(v: f64) -> Gauge<f64, std::sync::atomic::AtomicU64> {
    let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    g.set(v);
    g
}

fn counter(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

/// The detector state an assessment names (`healthy: …` → `healthy`).
pub fn detector_state(assessment: &str) -> Option<&'static str> {
    let first = assessment
        .split(':')
        .next()
        .unwrap_or_default()
        .trim()
        .replace(' ', "_");
    DETECTOR_STATES.iter().copied().find(|s| *s == first)
}

/// The Prometheus text exposition of `s`.
pub fn render(s: &Snapshot) -> String {
    let mut reg = Registry::with_prefix("palisade");
    raft(&mut reg, s);
    database(&mut reg, s);
    lease(&mut reg, s);
    history(&mut reg, &s.state);
    let mut out = String::new();
    encode(&mut out, &reg).expect("writing to a String cannot fail");
    out
}

fn raft(reg: &mut Registry, s: &Snapshot) {
    let r = &s.raft;
    let info = Family::<WitnessLabel, Gauge>::default();
    info.get_or_create(&WitnessLabel {
        node: s.node.to_string(),
        site: s.site.clone(),
    })
    .set(1);
    reg.register(
        "witness_info",
        "This witness: its id and site as labels, value 1",
        info,
    );
    reg.register(
        "raft_term",
        "The witness's current Raft term",
        gauge(r.term as i64),
    );
    reg.register(
        "raft_leader_id",
        "The leader this witness knows (0: none)",
        gauge(r.leader.unwrap_or(0) as i64),
    );
    reg.register(
        "raft_is_leader",
        "1 on the leader, 0 elsewhere",
        gauge(i64::from(r.is_leader)),
    );
    reg.register(
        "raft_last_log_index",
        "The witness's last Raft log index (0: empty log)",
        gauge(r.last_log_index.unwrap_or(0) as i64),
    );
    reg.register(
        "raft_applied_index",
        "The last log index the witness applied (0: none)",
        gauge(r.applied_index.unwrap_or(0) as i64),
    );
    reg.register(
        "raft_terms_seen",
        "Raft terms this witness process has seen begin since it started (elections)",
        counter(r.terms_seen),
    );
    reg.register(
        "raft_leader_changes_seen",
        "Leader changes this witness process has seen since it started",
        counter(r.leader_changes_seen),
    );
}

fn database(reg: &mut Registry, s: &Snapshot) {
    let st = &s.state;
    reg.register(
        "epoch",
        "The epoch in force: the fencing token every failover raises",
        gauge(st.epoch as i64),
    );
    let roles = Family::<RoleLabel, Gauge>::default();
    if let Some(db) = &st.db {
        roles
            .get_or_create(&RoleLabel {
                site: db.primary.0.clone(),
                role: "primary".into(),
            })
            .set(1);
        roles
            .get_or_create(&RoleLabel {
                site: db.standby.0.clone(),
                role: "standby".into(),
            })
            .set(1);
        reg.register(
            "standby_needs_rejoin",
            "1 while the old primary must rejoin before it can be promoted again",
            gauge(i64::from(db.standby_needs_rejoin)),
        );
    }
    reg.register(
        "database_role",
        "The database roles the cluster records, by site (value 1)",
        roles,
    );
    reg.register(
        "failover_in_progress",
        "1 while a failover, switchover or failback runs",
        gauge(i64::from(st.failover.is_some())),
    );
    reg.register(
        "maintenance_paused",
        "1 while automatic failover is paused",
        gauge(i64::from(st.maintenance.is_some())),
    );
    if let Some((bytes, secs)) = s.max_lag {
        reg.register(
            "max_lag_bytes",
            "The configured failover guard failover.max_lag_bytes",
            gauge(bytes as i64),
        );
        reg.register(
            "max_lag_seconds",
            "The configured failover guard failover.max_lag_seconds",
            fgauge(secs),
        );
    }

    let up = Family::<SiteLabel, Gauge>::default();
    let latency = Family::<SiteLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let age = Family::<SiteLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let lag_bytes = Family::<SiteLabel, Gauge>::default();
    let lag_secs = Family::<SiteLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let primary_lsn = s
        .probes
        .iter()
        .find_map(|(_, o, _)| o.is_writable_primary().then_some(o.current_lsn).flatten());
    for (site, o, age_ms) in &s.probes {
        let l = SiteLabel { site: site.clone() };
        up.get_or_create(&l).set(i64::from(o.reachability.is_up()));
        latency.get_or_create(&l).set(o.latency_ms as f64 / 1000.0);
        age.get_or_create(&l).set(*age_ms as f64 / 1000.0);
        if o.reachability.is_up() && o.in_recovery == Some(true) {
            if let (Some(p), Some(r)) = (primary_lsn, o.receive_lsn) {
                lag_bytes.get_or_create(&l).set(p.saturating_sub(r) as i64);
            }
            if let Some(secs) = o.replay_lag_seconds {
                lag_secs.get_or_create(&l).set(secs);
            }
        }
    }
    reg.register(
        "probe_up",
        "1 when this witness's latest probe of the site's database got an answer",
        up,
    );
    reg.register(
        "probe_latency_seconds",
        "How long this witness's latest probe of the site's database took",
        latency,
    );
    reg.register(
        "probe_age_seconds",
        "Age of this witness's latest probe of the site's database",
        age,
    );
    reg.register(
        "replication_lag_bytes",
        "WAL the standby has not received yet, behind the primary's position, as this witness probed both",
        lag_bytes,
    );
    reg.register(
        "replication_lag_seconds",
        "The standby's replay lag, as this witness probed it",
        lag_secs,
    );
    if let Some(now) = detector_state(&s.assessment) {
        let states = Family::<StateLabel, Gauge>::default();
        for state in DETECTOR_STATES {
            states
                .get_or_create(&StateLabel {
                    state: state.into(),
                })
                .set(i64::from(state == now));
        }
        reg.register(
            "detector_state",
            "The leader's failure detector state (1 for the current one; leader only)",
            states,
        );
    }
}

fn lease(reg: &mut Registry, s: &Snapshot) {
    if let Some(ms) = s.lease_remaining_ms {
        reg.register(
            "lease_remaining_seconds",
            "How long this (primary) site's lease still holds, fence margin included (primary site only)",
            fgauge(ms as f64 / 1000.0),
        );
    }
    reg.register(
        "lease_serving",
        "1 while this site's agent has seen its primary run under its lease",
        gauge(i64::from(s.serving_under_lease)),
    );
    let answers = Family::<AnswerLabel, Counter>::default();
    for (w, outcome, n) in &s.lease_answers {
        answers
            .get_or_create(&AnswerLabel {
                witness: w.to_string(),
                outcome: (*outcome).into(),
            })
            .inc_by(*n);
    }
    reg.register(
        "lease_renewal_answers",
        "Answers to this site agent's lease renewals, by witness and outcome (granted, refused, unknown, failed)",
        answers,
    );
}

fn history(reg: &mut Registry, st: &ClusterState) {
    let steps = Family::<StepLabel, Histogram>::new_with_constructor(step_buckets);
    let totals = Family::<KindLabel, Histogram>::new_with_constructor(step_buckets);
    let outcomes = Family::<OutcomeLabel, Counter>::default();
    let checks = Family::<CheckLabel, Counter>::default();
    let mut failed_last = 0i64;
    for f in &st.history {
        for r in &f.steps {
            steps
                .get_or_create(&StepLabel {
                    step: r.step.name().into(),
                })
                .observe(r.done_at_ms.saturating_sub(r.started_at_ms).max(0) as f64 / 1000.0);
            for c in &r.checks {
                checks
                    .get_or_create(&CheckLabel {
                        check: c.name.clone(),
                        result: if c.ok { "ok" } else { "failed" }.into(),
                    })
                    .inc();
            }
        }
        if let Some(done) = f.finished_at_ms {
            totals
                .get_or_create(&KindLabel {
                    kind: f.kind.name().into(),
                })
                .observe(done.saturating_sub(f.started_at_ms).max(0) as f64 / 1000.0);
        }
        let outcome = match &f.outcome {
            Some(Outcome::Completed) => "completed",
            Some(Outcome::CompletedWithFailedChecks { .. }) => "completed_with_failed_checks",
            Some(Outcome::Aborted { .. }) => "aborted",
            None => "unfinished",
        };
        outcomes
            .get_or_create(&OutcomeLabel {
                kind: f.kind.name().into(),
                outcome: outcome.into(),
            })
            .inc();
        failed_last = match &f.outcome {
            Some(Outcome::CompletedWithFailedChecks { failed }) => failed.len() as i64,
            _ => 0,
        };
    }
    reg.register(
        "failover_step_duration_seconds",
        "How long each step of the recorded failovers took",
        steps,
    );
    reg.register(
        "failover_duration_seconds",
        "How long each recorded operation took, by kind",
        totals,
    );
    reg.register(
        "failovers",
        "Recorded failovers, switchovers and failbacks, by kind and outcome",
        outcomes,
    );
    reg.register(
        "failover_checks",
        "Post-failover check results of the recorded failovers, by check and result",
        checks,
    );
    reg.register(
        "last_failover_failed_checks",
        "Failed checks of the last recorded operation (0: none, or it passed)",
        gauge(failed_last),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::failover::{Check, Evidence, Failover, Kind, Step, StepRecord, Trigger};
    use palisade_core::observe::{ErrorClass, Reachability};
    use palisade_core::{DbRoles, SiteId};

    fn step(step: Step, started: i64, took: i64, checks: Vec<Check>) -> StepRecord {
        StepRecord {
            step,
            started_at_ms: started,
            done_at_ms: started + took,
            detail: String::new(),
            lsn: None,
            checks,
        }
    }

    /// After one failover a -> b whose checks had one failure, seen by the
    /// leader at site b.
    fn snapshot() -> Snapshot {
        let mut state = ClusterState {
            db: Some(DbRoles {
                primary: SiteId("b".into()),
                standby: SiteId("a".into()),
                standby_needs_rejoin: true,
            }),
            epoch: 2,
            ..Default::default()
        };
        state.history.push(Failover {
            epoch: 2,
            kind: Kind::Failover,
            from: SiteId("a".into()),
            to: SiteId("b".into()),
            trigger: Trigger::Automatic,
            reason: "test".into(),
            evidence: Evidence::default(),
            started_at_ms: 1000,
            steps: vec![
                step(Step::Fenced, 1000, 200, vec![]),
                step(Step::Promoted, 1200, 800, vec![]),
                step(Step::AppFlipped, 2000, 100, vec![]),
                step(Step::Repointed, 2100, 100, vec![]),
                step(
                    Step::Verified,
                    2200,
                    300,
                    vec![
                        Check::pass("database at b writable", "lsn 0/1"),
                        Check::fail("elasticsearch at b green", "red"),
                    ],
                ),
            ],
            outcome: Some(Outcome::CompletedWithFailedChecks {
                failed: vec!["elasticsearch at b green".into()],
            }),
            finished_at_ms: Some(2500),
        });
        let mut primary = PgObservation::down(ErrorClass::Other, "", 3);
        primary.reachability = Reachability::Up;
        primary.in_recovery = Some(false);
        primary.current_lsn = Some(5000);
        let mut standby = primary.clone();
        standby.in_recovery = Some(true);
        standby.current_lsn = None;
        standby.receive_lsn = Some(4000);
        standby.replay_lag_seconds = Some(0.5);
        Snapshot {
            node: 2,
            site: "b".into(),
            raft: RaftFacts {
                term: 7,
                leader: Some(2),
                is_leader: true,
                last_log_index: Some(40),
                applied_index: Some(40),
                terms_seen: 3,
                leader_changes_seen: 2,
            },
            state: state.into(),
            probes: vec![("a".into(), standby, 120), ("b".into(), primary, 80)],
            assessment: "healthy: primary b up on 3 of 3 witnesses".into(),
            lease_remaining_ms: Some(1250),
            serving_under_lease: true,
            lease_answers: vec![(1, "granted", 10), (3, "failed", 2)],
            max_lag: Some((1 << 24, 30.0)),
        }
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
    }

    #[test]
    fn a_failover_with_a_failed_check_shows_in_every_family() {
        let text = render(&snapshot());
        let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("no {s} in:\n{text}"));
        assert_eq!(
            v(
                r#"palisade_failovers_total{kind="failover",outcome="completed_with_failed_checks"}"#
            ),
            1.0
        );
        assert_eq!(v("palisade_last_failover_failed_checks"), 1.0);
        assert_eq!(
            v(
                r#"palisade_failover_checks_total{check="elasticsearch at b green",result="failed"}"#
            ),
            1.0
        );
        assert_eq!(
            v(r#"palisade_failover_step_duration_seconds_sum{step="promoted"}"#),
            0.8
        );
        assert_eq!(
            v(r#"palisade_failover_step_duration_seconds_bucket{le="1.0",step="promoted"}"#),
            1.0
        );
        assert_eq!(
            v(r#"palisade_failover_step_duration_seconds_bucket{le="0.5",step="promoted"}"#),
            0.0
        );
        assert_eq!(
            v(r#"palisade_failover_duration_seconds_sum{kind="failover"}"#),
            1.5
        );
        assert_eq!(v(r#"palisade_database_role{site="b",role="primary"}"#), 1.0);
        assert_eq!(v("palisade_standby_needs_rejoin"), 1.0);
        assert_eq!(v(r#"palisade_replication_lag_bytes{site="a"}"#), 1000.0);
        assert_eq!(v(r#"palisade_replication_lag_seconds{site="a"}"#), 0.5);
        assert_eq!(v(r#"palisade_probe_up{site="b"}"#), 1.0);
        assert_eq!(v(r#"palisade_probe_latency_seconds{site="b"}"#), 0.003);
        assert_eq!(v(r#"palisade_detector_state{state="healthy"}"#), 1.0);
        assert_eq!(v(r#"palisade_detector_state{state="suspect"}"#), 0.0);
        assert_eq!(v("palisade_lease_remaining_seconds"), 1.25);
        assert_eq!(
            v(r#"palisade_lease_renewal_answers_total{witness="3",outcome="failed"}"#),
            2.0
        );
        assert_eq!(v("palisade_raft_terms_seen_total"), 3.0);
        assert_eq!(v("palisade_raft_leader_id"), 2.0);
        assert_eq!(v(r#"palisade_witness_info{node="2",site="b"}"#), 1.0);
    }

    #[test]
    fn a_follower_without_a_lease_or_assessment_omits_those_series() {
        let mut s = snapshot();
        s.assessment.clear();
        s.lease_remaining_ms = None;
        s.raft.is_leader = false;
        let text = render(&s);
        assert!(!text.contains("palisade_detector_state{"), "{text}");
        assert!(
            !text.contains("palisade_lease_remaining_seconds "),
            "{text}"
        );
        assert_eq!(value(&text, "palisade_raft_is_leader"), Some(0.0));
    }

    #[test]
    fn detector_states_are_read_from_the_assessment() {
        assert_eq!(detector_state("healthy: 0 of 3"), Some("healthy"));
        assert_eq!(
            detector_state("failing over: epoch 3"),
            Some("failing_over")
        );
        assert_eq!(detector_state("blocked: standby lags"), Some("blocked"));
        assert_eq!(detector_state(""), None);
        assert_eq!(detector_state("something new"), None);
    }

    /// Every family the witness exports is documented in docs/metrics.md,
    /// and every series the shipped alert rules and dashboard use exists.
    #[test]
    fn docs_alerts_and_dashboard_name_only_real_metrics() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let read =
            |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        let docs = read("docs/metrics.md");
        let text = render(&snapshot());
        let families: std::collections::BTreeSet<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
            .collect();
        assert!(families.len() > 20, "{families:?}");
        for f in &families {
            assert!(
                docs.contains(&format!("`{f}")),
                "{f} is not in docs/metrics.md"
            );
        }
        let names = |body: &str| -> Vec<String> {
            let mut out = Vec::new();
            for (i, _) in body.match_indices("palisade_") {
                let name: String = body[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                out.push(name);
            }
            out
        };
        for file in [
            "deploy/monitoring/palisade-alerts.yml",
            "deploy/monitoring/palisade-dashboard.json",
        ] {
            for name in names(&read(file)) {
                let exists = text
                    .lines()
                    .any(|l| !l.starts_with('#') && l.starts_with(&name));
                assert!(
                    exists,
                    "{file} uses {name}, which the witness does not export"
                );
            }
        }
        serde_json::from_str::<serde_json::Value>(&read(
            "deploy/monitoring/palisade-dashboard.json",
        ))
        .expect("the dashboard is JSON");
    }
}
