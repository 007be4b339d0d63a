//! A drill's checks: pure functions of one `Status` reply, each with a
//! one-line detail that says what was seen, passed or not.

use std::collections::BTreeSet;

use palisade_api::v1::{Role, StatusReply};

use super::plan::Check;
use crate::json::monitors_by_site;

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub check: Check,
    pub passed: bool,
    /// What was seen, in words.
    pub detail: String,
}

/// Evaluates `check` against `r`.
pub fn evaluate(check: Check, r: &StatusReply) -> CheckResult {
    let (passed, detail) = match check {
        Check::Leader => leader(r),
        Check::OnePrimary => one_primary(r),
        Check::StandbyStreaming => standby_streaming(r),
        Check::MonitorsOne => monitors_one(r),
        Check::NotInProgress => match &r.failover_in_progress {
            None => (true, "no operation in progress".to_owned()),
            Some(f) => (
                false,
                format!(
                    "{} epoch {} in progress ({} step(s) done)",
                    label(&f.kind),
                    f.epoch,
                    f.steps.len()
                ),
            ),
        },
        Check::Paused => match &r.maintenance {
            Some(m) => (true, format!("paused by {}", m.by)),
            None => (false, "not paused".to_owned()),
        },
        Check::NotPaused => match &r.maintenance {
            None => (true, "not paused".to_owned()),
            Some(m) => (false, format!("paused by {}", m.by)),
        },
        Check::SearchHealthy => search_healthy(r),
    };
    CheckResult {
        check,
        passed,
        detail,
    }
}

fn label(kind: &str) -> &str {
    if kind.is_empty() {
        "failover"
    } else {
        kind
    }
}

/// A leader is known and every witness answered the answering one.
fn leader(r: &StatusReply) -> (bool, String) {
    let Some(id) = r.leader_id else {
        return (
            false,
            format!("node {} knows no leader (term {})", r.node_id, r.term),
        );
    };
    let unreachable: Vec<String> = r
        .nodes
        .iter()
        .filter(|n| Role::try_from(n.role) == Ok(Role::Unreachable))
        .map(|n| {
            if n.error.is_empty() {
                format!("{} ({})", n.id, n.site)
            } else {
                format!("{} ({}: {})", n.id, n.site, n.error)
            }
        })
        .collect();
    if unreachable.is_empty() {
        (
            true,
            format!("leader {id}; all {} witnesses reachable", r.nodes.len()),
        )
    } else {
        (
            false,
            format!(
                "leader {id}, but witness(es) unreachable: {}",
                unreachable.join(", ")
            ),
        )
    }
}

/// Exactly one site's database seen writable (reachable, not in recovery)
/// by any witness. Two would be split brain; none, no service.
fn one_primary(r: &StatusReply) -> (bool, String) {
    let writable: BTreeSet<&str> = r
        .nodes
        .iter()
        .flat_map(|n| &n.databases)
        .filter(|d| d.reachable && d.in_recovery == Some(false))
        .map(|d| d.site.as_str())
        .collect();
    let recorded = if r.primary_site.is_empty() {
        String::new()
    } else {
        format!(" (recorded primary: {})", r.primary_site)
    };
    match writable.len() {
        1 => (
            true,
            format!(
                "only {} is writable{recorded}",
                writable.first().expect("one")
            ),
        ),
        0 => (
            false,
            format!("no witness sees a writable database{recorded}"),
        ),
        _ => (
            false,
            format!(
                "writable at {} sites: {}{recorded}",
                writable.len(),
                writable.into_iter().collect::<Vec<_>>().join(", ")
            ),
        ),
    }
}

/// The recorded standby is seen in recovery with its WAL receiver
/// streaming by at least one witness (streaming is the standby's own
/// state; a witness cut off from it says nothing about that).
fn standby_streaming(r: &StatusReply) -> (bool, String) {
    if r.standby_site.is_empty() {
        return (false, "no standby is recorded".to_owned());
    }
    let site = r.standby_site.as_str();
    let views: Vec<_> = r
        .nodes
        .iter()
        .flat_map(|n| n.databases.iter().map(move |d| (n.id, d)))
        .filter(|(_, d)| d.site == site)
        .collect();
    let streaming: Vec<String> = views
        .iter()
        .filter(|(_, d)| d.reachable && d.in_recovery == Some(true) && d.streaming)
        .map(|(id, _)| id.to_string())
        .collect();
    if !streaming.is_empty() {
        let rejoin = if r.standby_needs_rejoin {
            " (but the cluster still records that it must rejoin)"
        } else {
            ""
        };
        return (
            !r.standby_needs_rejoin,
            format!(
                "standby {site} streams, seen by witness(es) {}{rejoin}",
                streaming.join(", ")
            ),
        );
    }
    let seen = match views.iter().find(|(_, d)| d.reachable) {
        None if views.is_empty() => "no witness reported it".to_owned(),
        None => "no witness reaches it".to_owned(),
        Some((id, d)) if d.in_recovery == Some(false) => {
            format!("witness {id} sees it writable, not in recovery")
        }
        Some((id, _)) => format!("witness {id} sees it up but not streaming"),
    };
    (false, format!("standby {site} is not streaming: {seen}"))
}

/// Exactly one site's app has `monitorsEnabled=true`.
fn monitors_one(r: &StatusReply) -> (bool, String) {
    let by_site = monitors_by_site(r);
    let on: Vec<&str> = by_site
        .iter()
        .filter(|(_, on)| **on)
        .map(|(site, _)| site.as_str())
        .collect();
    match on.as_slice() {
        [site] => (true, format!("monitorsEnabled=true only at {site}")),
        [] if by_site.is_empty() => (false, "no witness reported monitorsEnabled".to_owned()),
        [] => (false, "monitorsEnabled=true at no site".to_owned()),
        many => (
            false,
            format!(
                "monitorsEnabled=true at {} sites: {}",
                many.len(),
                many.join(", ")
            ),
        ),
    }
}

/// Every Elasticsearch view reachable and green or yellow.
fn search_healthy(r: &StatusReply) -> (bool, String) {
    let views: Vec<_> = r
        .nodes
        .iter()
        .flat_map(|n| n.search.iter().map(move |s| (n.id, s)))
        .collect();
    if views.is_empty() {
        return (false, "no witness reported Elasticsearch".to_owned());
    }
    let bad: Vec<String> = views
        .iter()
        .filter(|(_, s)| !(s.reachable && matches!(s.status.as_str(), "green" | "yellow")))
        .map(|(id, s)| {
            let state = if !s.reachable {
                format!("down ({})", s.error)
            } else if s.status.is_empty() {
                "status unknown".to_owned()
            } else {
                s.status.clone()
            };
            format!("witness {id} sees {} {state}", s.site)
        })
        .collect();
    if bad.is_empty() {
        (true, format!("all {} views green or yellow", views.len()))
    } else {
        (false, bad.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use palisade_api::v1::Maintenance;

    fn check(c: Check, r: &StatusReply) -> (bool, String) {
        let res = evaluate(c, r);
        assert_eq!(res.check, c);
        (res.passed, res.detail)
    }

    /// [`fixtures::failed_over`] once `a` has rejoined and every witness
    /// is reachable.
    fn healthy() -> StatusReply {
        let mut r = fixtures::failed_over();
        r.standby_needs_rejoin = false;
        r.nodes[2].role = Role::Follower as i32;
        r.nodes[2].error.clear();
        r.nodes[1].search[0] = fixtures::search_up("a", "green", 2, 10);
        r
    }

    #[test]
    fn leader_needs_a_leader_and_every_witness() {
        assert_eq!(
            check(Check::Leader, &healthy()),
            (true, "leader 1; all 3 witnesses reachable".to_owned())
        );
        assert_eq!(
            check(Check::Leader, &fixtures::status()),
            (
                false,
                "leader 1, but witness(es) unreachable: 3 (site-c: connection refused)".to_owned()
            )
        );
        let mut r = healthy();
        r.leader_id = None;
        assert_eq!(
            check(Check::Leader, &r),
            (false, "node 2 knows no leader (term 5)".to_owned())
        );
    }

    #[test]
    fn one_primary_counts_sites_seen_writable() {
        assert_eq!(
            check(Check::OnePrimary, &healthy()),
            (true, "only b is writable (recorded primary: b)".to_owned())
        );
        let mut r = healthy();
        r.nodes[1].databases[0] = fixtures::db_up("a", false, "0/5", 10);
        assert_eq!(
            check(Check::OnePrimary, &r),
            (
                false,
                "writable at 2 sites: a, b (recorded primary: b)".to_owned()
            )
        );
        for n in &mut r.nodes {
            n.databases.clear();
        }
        assert_eq!(
            check(Check::OnePrimary, &r),
            (
                false,
                "no witness sees a writable database (recorded primary: b)".to_owned()
            )
        );
    }

    #[test]
    fn standby_streaming_needs_a_streaming_standby_that_has_rejoined() {
        assert_eq!(
            check(Check::StandbyStreaming, &healthy()),
            (true, "standby a streams, seen by witness(es) 1".to_owned())
        );
        let (passed, detail) = check(Check::StandbyStreaming, &fixtures::failed_over());
        assert!(!passed);
        assert!(detail.ends_with("(but the cluster still records that it must rejoin)"));

        let mut r = healthy();
        r.nodes[0].databases[0].streaming = false;
        assert_eq!(
            check(Check::StandbyStreaming, &r),
            (
                false,
                "standby a is not streaming: witness 1 sees it up but not streaming".to_owned()
            )
        );
        r.nodes[0].databases[0] = fixtures::db_down("a", "refused: x", 5);
        assert_eq!(
            check(Check::StandbyStreaming, &r),
            (
                false,
                "standby a is not streaming: no witness reaches it".to_owned()
            )
        );
        r.standby_site.clear();
        assert_eq!(
            check(Check::StandbyStreaming, &r),
            (false, "no standby is recorded".to_owned())
        );
    }

    #[test]
    fn monitors_one_needs_exactly_one_site_on() {
        assert_eq!(
            check(Check::MonitorsOne, &healthy()),
            (true, "monitorsEnabled=true only at b".to_owned())
        );
        let mut r = healthy();
        r.nodes[0].monitors_enabled = Some(true);
        assert_eq!(
            check(Check::MonitorsOne, &r),
            (false, "monitorsEnabled=true at 2 sites: a, b".to_owned())
        );
        r.nodes[0].monitors_enabled = Some(false);
        r.nodes[1].monitors_enabled = Some(false);
        assert_eq!(
            check(Check::MonitorsOne, &r),
            (false, "monitorsEnabled=true at no site".to_owned())
        );
        for n in &mut r.nodes {
            n.monitors_enabled = None;
        }
        assert!(!check(Check::MonitorsOne, &r).0);
    }

    #[test]
    fn progress_and_maintenance_checks() {
        let mut r = healthy();
        assert!(check(Check::NotInProgress, &r).0);
        assert_eq!(check(Check::NotPaused, &r), (true, "not paused".to_owned()));
        assert!(!check(Check::Paused, &r).0);
        let mut f = fixtures::finished_failover();
        f.kind = "switchover".to_owned();
        f.epoch = 4;
        f.outcome.clear();
        f.steps.truncate(2);
        r.failover_in_progress = Some(f);
        r.maintenance = Some(Maintenance {
            by: "alice".to_owned(),
            ..Default::default()
        });
        assert_eq!(
            check(Check::NotInProgress, &r),
            (
                false,
                "switchover epoch 4 in progress (2 step(s) done)".to_owned()
            )
        );
        assert_eq!(
            check(Check::Paused, &r),
            (true, "paused by alice".to_owned())
        );
        assert!(!check(Check::NotPaused, &r).0);
    }

    #[test]
    fn search_healthy_needs_every_view_green_or_yellow() {
        assert_eq!(
            check(Check::SearchHealthy, &healthy()),
            (true, "all 4 views green or yellow".to_owned())
        );
        let (passed, detail) = check(Check::SearchHealthy, &fixtures::failed_over());
        assert!(!passed);
        assert_eq!(
            detail,
            "witness 2 sees a down (timeout: no answer within 1000 ms)"
        );
        let mut r = healthy();
        r.nodes[0].search[1].status = "red".to_owned();
        assert_eq!(
            check(Check::SearchHealthy, &r),
            (false, "witness 1 sees b red".to_owned())
        );
        assert!(!check(Check::SearchHealthy, &fixtures::status()).0);
    }
}
