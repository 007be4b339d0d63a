//! Every witness probes every database from its own site, keeps its latest
//! view (shown by `palisadectl status`), and sends it to the leader.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use palisade_api::v1::{DatabaseView, SearchView};
use palisade_core::observe::{format_lsn, PgObservation, Reachability};
use palisade_core::SiteId;
use palisade_probe::elasticsearch::{EsHealth, EsObservation, EsProbe};
use palisade_probe::postgres::PgProbe;
use palisade_raft::Raft;
use tokio_util::sync::CancellationToken;

use crate::clock::mono_ms;
use crate::controller::Controller;
use crate::peer_msgs::Report;
use crate::peers::Peers;

/// This witness's latest observation of each database, with its time.
#[derive(Clone, Default)]
pub struct Latest {
    inner: Arc<RwLock<BTreeMap<SiteId, (PgObservation, u64)>>>,
    search: Arc<RwLock<BTreeMap<SiteId, (EsObservation, u64)>>>,
    /// Per site: the last WAL position seen while it was a writable
    /// primary, and when (mono ms).
    last_writable: Arc<RwLock<BTreeMap<SiteId, (u64, u64)>>>,
    /// Per site found unreachable: when (mono ms) the first failed probe of
    /// the unbroken run began.
    unreachable_since: Arc<RwLock<BTreeMap<SiteId, u64>>>,
    monitors: Arc<RwLock<Option<bool>>>,
}

impl Latest {
    /// Views for `NodeStatus.search`.
    pub fn search_views(&self) -> Vec<SearchView> {
        let now = mono_ms();
        self.search
            .read()
            .expect("observations lock poisoned")
            .iter()
            .map(|(site, (o, at))| SearchView {
                site: site.0.clone(),
                reachable: o.reachability.is_up(),
                error: match &o.reachability {
                    Reachability::Up => String::new(),
                    Reachability::Down { class, detail } => format!("{}: {detail}", class.as_str()),
                },
                status: match o.status {
                    Some(EsHealth::Green) => "green".into(),
                    Some(EsHealth::Yellow) => "yellow".into(),
                    Some(EsHealth::Red) => "red".into(),
                    None => String::new(),
                },
                number_of_nodes: o.number_of_nodes,
                latency_ms: o.latency_ms,
                age_ms: now.saturating_sub(*at),
            })
            .collect()
    }

    /// This site's app's `monitorsEnabled`, as last read back.
    pub fn monitors(&self) -> Option<bool> {
        *self.monitors.read().expect("observations lock poisoned")
    }

    /// This witness's latest observation of `site`'s database.
    pub fn observation(&self, site: &SiteId) -> Option<PgObservation> {
        self.inner
            .read()
            .expect("observations lock poisoned")
            .get(site)
            .map(|(o, _)| o.clone())
    }

    /// [`Latest::observation`] with the time the probe completed (mono
    /// ms): a decision fed once per probe (sync mode's degrade) tells a new
    /// probe from one it has already taken into account.
    pub fn observation_at(&self, site: &SiteId) -> Option<(PgObservation, u64)> {
        self.inner
            .read()
            .expect("observations lock poisoned")
            .get(site)
            .cloned()
    }

    /// The views for `NodeStatus.databases`.
    pub fn views(&self) -> Vec<DatabaseView> {
        let now = mono_ms();
        self.inner
            .read()
            .expect("observations lock poisoned")
            .iter()
            .map(|(site, (o, at))| {
                let (reachable, error) = match &o.reachability {
                    Reachability::Up => (true, String::new()),
                    Reachability::Down { class, detail } => {
                        (false, format!("{}: {detail}", class.as_str()))
                    }
                };
                DatabaseView {
                    site: site.0.clone(),
                    reachable,
                    error,
                    in_recovery: o.in_recovery,
                    lsn: o
                        .current_lsn
                        .or(o.receive_lsn)
                        .map(format_lsn)
                        .unwrap_or_default(),
                    replay_lag_seconds: o.replay_lag_seconds,
                    streaming: o.is_streaming(),
                    latency_ms: o.latency_ms,
                    age_ms: now.saturating_sub(*at),
                }
            })
            .collect()
    }
}

/// The probe loop of one witness.
pub struct Observer {
    /// This witness's id.
    pub own_id: u64,
    /// One probe per database site.
    pub probes: BTreeMap<SiteId, PgProbe>,
    /// One probe per site's Elasticsearch.
    pub search_probes: BTreeMap<SiteId, EsProbe>,
    /// This site's app config file, to read `monitorsEnabled` back.
    pub app_config: Option<std::path::PathBuf>,
    /// Where the latest observations go.
    pub latest: Latest,
    /// Probe period.
    pub interval: Duration,
    /// To find the leader.
    pub raft: Raft,
    /// To reach the leader.
    pub peers: Peers,
    /// To deliver to itself when it leads.
    pub controller: Arc<Controller>,
}

impl Observer {
    /// Probes every `interval` until `cancel`.
    #[tracing::instrument(skip_all, fields(witness = self.own_id))]
    pub async fn run(self, cancel: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let mut set = tokio::task::JoinSet::new();
            for (site, probe) in &self.probes {
                let (probe, site, latest) = (probe.clone(), site.clone(), self.latest.clone());
                set.spawn(async move {
                    let began = mono_ms();
                    let obs = probe.probe().await;
                    // Published the moment it is in, stamped then: a slow
                    // probe of another site (a cut link costs the whole
                    // timeout) must neither delay nor age this one. Found
                    // by the simulation: sync mode degraded ~2 s late on
                    // its own primary's observations aged by the round's
                    // slowest probe, and went back to sync on stale ones.
                    let at = mono_ms();
                    {
                        let mut since = latest
                            .unreachable_since
                            .write()
                            .expect("observations lock poisoned");
                        if obs.reachability.is_up() {
                            since.remove(&site);
                        } else {
                            since.entry(site.clone()).or_insert(began);
                        }
                    }
                    latest
                        .inner
                        .write()
                        .expect("observations lock poisoned")
                        .insert(site.clone(), (obs.clone(), at));
                    (site, obs, at)
                });
            }
            let mut es = tokio::task::JoinSet::new();
            for (site, probe) in &self.search_probes {
                let probe = probe.clone();
                let site = site.clone();
                es.spawn(async move { (site, probe.probe().await) });
            }
            let mut done_at = BTreeMap::new();
            let mut dbs = BTreeMap::new();
            while let Some(done) = set.join_next().await {
                if let Ok((site, obs, at)) = done {
                    done_at.insert(site.clone(), at);
                    dbs.insert(site, obs);
                }
            }
            // The report leaves when the round's slowest probe is in (a cut
            // link costs the whole timeout): what a quick probe saw has aged
            // meanwhile. The standby's last message from the primary is
            // reported as old as it is now, not as it was (the isolation
            // bench: a standby's stale "streaming" held the failover back
            // one more round).
            let sent_at = mono_ms();
            for (site, obs) in dbs.iter_mut() {
                let aged = sent_at.saturating_sub(done_at.get(site).copied().unwrap_or(sent_at));
                if let Some(age) = obs
                    .wal_receiver
                    .as_mut()
                    .and_then(|w| w.last_msg_age_ms.as_mut())
                {
                    *age += aged;
                }
            }
            let at = mono_ms();
            while let Some(done) = es.join_next().await {
                if let Ok((site, obs)) = done {
                    self.latest
                        .search
                        .write()
                        .expect("observations lock poisoned")
                        .insert(site, (obs, at));
                }
            }
            if let Some(path) = &self.app_config {
                let path = path.clone();
                let value = tokio::task::spawn_blocking(move || {
                    palisade_actions::monitors::read_monitors_enabled(&path)
                })
                .await
                .ok()
                .and_then(|r| r.ok())
                .flatten();
                *self
                    .latest
                    .monitors
                    .write()
                    .expect("observations lock poisoned") = value;
            }
            let last_writable = {
                let now = mono_ms();
                let mut memory = self
                    .latest
                    .last_writable
                    .write()
                    .expect("observations lock poisoned");
                for (site, obs) in &dbs {
                    if let (true, Some(lsn)) = (obs.is_writable_primary(), obs.current_lsn) {
                        memory.insert(site.clone(), (lsn, now));
                    }
                }
                memory
                    .iter()
                    .map(|(site, (lsn, at))| {
                        (
                            site.clone(),
                            palisade_core::detector::LastWritable {
                                lsn: *lsn,
                                age_ms: now.saturating_sub(*at),
                            },
                        )
                    })
                    .collect()
            };
            let unreachable_for = {
                let now = mono_ms();
                self.latest
                    .unreachable_since
                    .read()
                    .expect("observations lock poisoned")
                    .iter()
                    .filter(|(site, _)| dbs.contains_key(*site))
                    .map(|(site, since)| (site.clone(), now.saturating_sub(*since)))
                    .collect()
            };
            let report = Report {
                witness: self.own_id,
                dbs,
                last_writable,
                unreachable_for,
            };
            let leader = self.raft.metrics().borrow().current_leader;
            match leader {
                Some(l) if l == self.own_id => self.controller.receive_report(report),
                Some(l) => {
                    if let Err(e) = self.peers.report(l, &report, self.interval).await {
                        tracing::debug!(error = %e, "report not delivered to the leader");
                    }
                }
                None => {}
            }
        }
    }
}
