//! The steps after promotion: the apps' `monitorsEnabled` flip, the
//! repointing of the app's search and the front doors, and the
//! post-failover checks, each check recorded with its own result.

use std::time::Duration;

use palisade_core::executor::flip::{old_site_app, OldSiteApp, OldSiteContact};
use palisade_core::executor::{self, MonitorRead, StepResult};
use palisade_core::{Check, Failover, SiteId};

use super::fence::FENCE_RPC_TIMEOUT;
use super::site_call::not_done;
use super::Controller;
use crate::clock::mono_ms;
use crate::peer_msgs::SiteAction;

/// How long the flip waits to learn whether the old site's agent answers
/// at all.
const OLD_SITE_PROBE: Duration = Duration::from_secs(1);

impl Controller {
    /// What this leader knows of the old site's agent, for the flip.
    fn old_site_contact(&self, f: &Failover) -> OldSiteContact {
        let witness = self
            .witness_sites()
            .into_iter()
            .find(|(_, site)| *site == f.from)
            .map(|(id, _)| id);
        let inner = self.lock();
        OldSiteContact {
            now_ms: mono_ms(),
            leading_since_ms: inner.leading_since_ms,
            last_report_ms: witness
                .and_then(|w| inner.reports.get(&w))
                .map(|r| r.received_at_ms),
            report_ttl_ms: self.settings.detector.report_ttl_ms,
            fence_call_unanswered: inner.fence_unanswered == Some(f.epoch),
            others_reports_since_leading: inner
                .reports_since_leading
                .iter()
                .filter(|(id, _)| Some(**id) != witness && **id != self.members.own_id())
                .map(|(_, n)| *n)
                .max()
                .unwrap_or(0),
        }
    }

    /// `monitorsEnabled` off on the old site's app, then on at the new
    /// site's (DESIGN rule 4): never two apps running jobs. An old site
    /// that cannot be reached cannot be switched off now; its agent does it
    /// first thing when it returns (its desired value is `false`), and the
    /// record says so.
    pub(super) async fn flip_apps(&self, f: &Failover) -> StepResult {
        let mut done = Vec::new();
        let timeout = |site: &SiteId| {
            self.actions
                .app(site)
                .map(|a| a.command_timeout + Duration::from_secs(10))
                .unwrap_or(FENCE_RPC_TIMEOUT)
        };
        let contact = self.old_site_contact(f);
        if let (Some(_), OldSiteApp::OutOfReach(why)) =
            (self.actions.app(&f.from), old_site_app(&contact))
        {
            done.push(format!(
                "{}: not asked ({why}); its agent sets monitorsEnabled=false when it returns, before anything else",
                f.from
            ));
        } else if self.actions.app(&f.from).is_some() {
            // Is the old site's agent there at all? A cheap read first, on
            // a short bound: a site cut off (packets dropped) would
            // otherwise hold the flip for the whole switch-off bound, or
            // until the peer channel's keepalive gives up (~10 s, found by
            // the site isolation bench with the leader at the lost site).
            // A reachable one is switched off with the full bound (its app
            // restarts); an unreachable one switches itself off first
            // thing when it returns.
            let read = SiteAction::ReadMonitors { epoch: f.epoch };
            let off = SiteAction::SetMonitors {
                epoch: f.epoch,
                enabled: false,
            };
            let answer = match self.site_action(&f.from, read, OLD_SITE_PROBE).await {
                Ok(_) => self.site_action(&f.from, off, timeout(&f.from)).await,
                Err(e) => Err(e),
            };
            match answer {
                Ok(d) => done.push(format!("{}: {}", f.from, d.detail)),
                Err(e) => done.push(format!(
                    "{}: not reachable ({e}); its agent sets monitorsEnabled=false when it returns, before anything else",
                    f.from
                )),
            }
        }
        if self.actions.app(&f.to).is_some() {
            let on = SiteAction::SetMonitors {
                epoch: f.epoch,
                enabled: true,
            };
            match self.site_action(&f.to, on, timeout(&f.to)).await {
                Ok(d) => done.push(format!("{}: {}", f.to, d.detail)),
                Err(e) => return not_done(format!("switching monitorsEnabled on at {}", f.to), &e),
            }
        }
        if done.is_empty() {
            done.push("no [[app]] configured".into());
        }
        StepResult::done(done.join("; "))
    }

    /// The new site's app to the new site's Elasticsearch, then every front
    /// door to the new site. Each is idempotent, so a retry after a partial
    /// run converges.
    pub(super) async fn repoint(&self, f: &Failover) -> StepResult {
        let mut done = Vec::new();
        if let (Some(app), Some(search)) = (self.actions.app(&f.to), self.actions.search_at(&f.to))
        {
            if app.es_target.is_some() || !search.ccr_follower_indices.is_empty() {
                // The order names no host, URL or index: the agent at
                // `f.to` takes them from its own configuration.
                let action = SiteAction::RepointSearch { epoch: f.epoch };
                let bound = app.command_timeout + Duration::from_secs(40);
                match self.site_action(&f.to, action, bound).await {
                    Ok(d) => done.push(format!("elasticsearch: {}", d.detail)),
                    Err(e) => return not_done(format!("repointing Elasticsearch at {}", f.to), &e),
                }
            }
        }
        for door in &self.actions.front_doors {
            match crate::front_door::repoint(door, f).await {
                Ok(d) => done.push(d),
                Err(reason) => return StepResult::Retry { reason },
            }
        }
        if done.is_empty() {
            done.push("nothing to repoint (no [[elasticsearch]] target, no [[front_door]])".into());
        }
        StepResult::done(done.join("; "))
    }

    /// The post-failover checks (the guide's "Failover Check"), from the
    /// leader's site, each recorded with its own result; the outcome is
    /// decided from them by the core.
    pub(super) async fn verify(&self, f: &Failover) -> StepResult {
        let mut checks = vec![self.check_writable(&f.to).await];
        if let Some(search) = self.actions.search_at(&f.to) {
            checks.push(crate::checks::search_health(search).await);
        }
        if let Some(url) = self.actions.app(&f.to).and_then(|a| a.health_url.as_ref()) {
            checks.push(crate::checks::http("app health", url, None, Duration::from_secs(5)).await);
        }
        if !self.actions.apps.is_empty() {
            checks.push(self.check_one_monitor(f).await);
        }
        for c in &self.actions.checks {
            let url = c.url.replace("{site}", &f.to.0);
            checks.push(crate::checks::http(&c.name, &url, c.expect_status, c.timeout).await);
        }
        StepResult::Done {
            detail: executor::checks_summary(&checks),
            lsn: None,
            checks,
        }
    }

    /// The new primary takes writes, seen by the leader's own probe (a
    /// few tries: it may still be finishing its promotion).
    async fn check_writable(&self, to: &SiteId) -> Check {
        let name = format!("database at {to} writable");
        let Some(probe) = self.probes.get(to) else {
            return Check::fail(name, "no probe configured");
        };
        let mut last = String::new();
        for _ in 0..10 {
            let o = probe.probe().await;
            if o.is_writable_primary() {
                let detail = match o.current_lsn {
                    Some(p) if self.settings.is_mariadb() => format!(
                        "binary log at {}",
                        palisade_core::master_master::detector_view::format_binlog_position(p)
                    ),
                    Some(p) => format!("lsn {}", palisade_core::observe::format_lsn(p)),
                    None => "lsn ".to_owned(),
                };
                return Check::pass(name, detail);
            }
            last = format!("{:?}, in_recovery {:?}", o.reachability, o.in_recovery);
            tokio::time::sleep(self.settings.probe_interval).await;
        }
        Check::fail(name, last)
    }

    /// Exactly one app with `monitorsEnabled=true`, read back from the files
    /// by each site's agent (the core's `one_monitor` judges). A site that
    /// cannot be reached is named; it is not counted as on, since its agent
    /// switches it off on return.
    async fn check_one_monitor(&self, f: &Failover) -> Check {
        let mut reads = Vec::new();
        for app in &self.actions.apps {
            let read = SiteAction::ReadMonitors { epoch: f.epoch };
            let seen = match self.site_action(&app.site, read, FENCE_RPC_TIMEOUT).await {
                // The old site was unreachable at the flip and is back: its
                // agent leaves the app alone while the failover runs, so
                // switch it off now (DESIGN rule 4 holds once it ends).
                Ok(d) if d.detail == "true" && app.site == f.from => {
                    let off = SiteAction::SetMonitors {
                        epoch: f.epoch,
                        enabled: false,
                    };
                    match self.site_action(&app.site, off, FENCE_RPC_TIMEOUT).await {
                        Ok(d) => MonitorRead::SwitchedOff(d.detail),
                        Err(e) => {
                            tracing::warn!(error = %e, site = %app.site, "could not switch the returning old site's app off");
                            MonitorRead::On
                        }
                    }
                }
                Ok(d) if d.detail == "true" => MonitorRead::On,
                Ok(d) if d.detail == "false" => MonitorRead::Off,
                Ok(_) => MonitorRead::Absent,
                Err(e) => MonitorRead::Unreadable(e.to_string()),
            };
            reads.push((app.site.clone(), seen));
        }
        executor::one_monitor(&f.to, &reads)
    }
}
