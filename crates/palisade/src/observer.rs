//! Every witness probes every database from its own site, keeps its latest
//! view (shown by `palisadectl status`), and sends it to the leader.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use palisade_api::v1::{DatabaseView, SearchView};
use palisade_core::master_master::MariaObservation;
use palisade_core::observe::{format_lsn, PgObservation, Reachability};
use palisade_core::SiteId;
use palisade_probe::elasticsearch::{EsHealth, EsObservation, EsProbe};
use palisade_raft::Raft;
use tokio_util::sync::CancellationToken;

use crate::clock::mono_ms;
use crate::controller::Controller;
use crate::db_probe::DbProbe;
use crate::peer_msgs::Report;
use crate::peers::Peers;

/// This witness's latest observation of each database, with its time.
#[derive(Clone, Default)]
pub struct Latest {
    inner: Arc<RwLock<BTreeMap<SiteId, (PgObservation, u64)>>>,
    /// MariaDB: the whole latest observation of each master (what `inner`
    /// holds is its projection for the detector).
    mariadb: Arc<RwLock<BTreeMap<SiteId, MariaObservation>>>,
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

    /// MariaDB: this witness's latest whole observation of `site`'s
    /// master (replication threads, GTID positions, semi-sync).
    pub fn mariadb(&self, site: &SiteId) -> Option<MariaObservation> {
        self.mariadb
            .read()
            .expect("observations lock poisoned")
            .get(site)
            .cloned()
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

    /// The views for `NodeStatus.databases`; a MariaDB master's carries
    /// its whole observation in `mariadb`.
    pub fn views(&self) -> Vec<DatabaseView> {
        /// `DatabaseView.mariadb`: what `o` saw, unknowns left unset.
        fn mariadb_view(o: &MariaObservation) -> palisade_api::v1::MariaDbView {
            let at = |file: &str, pos: u64| format!("{file}:{pos}");
            let r = o.replica.as_ref();
            palisade_api::v1::MariaDbView {
                read_only: o.read_only,
                server_id: o.server_id,
                auto_increment_increment: o.auto_increment_increment,
                auto_increment_offset: o.auto_increment_offset,
                io_running: r.map(|r| r.io_running.clone()).unwrap_or_default(),
                sql_running: r.map(|r| r.sql_running),
                seconds_behind_master: r.and_then(|r| r.seconds_behind_master),
                replicates_from: r
                    .map(|r| format!("{}:{}", r.master_host, r.master_port))
                    .unwrap_or_default(),
                replicates_from_server_id: r.and_then(|r| r.master_server_id),
                read_position: r
                    .map(|r| at(&r.master_log_file, r.read_master_log_pos))
                    .unwrap_or_default(),
                executed_position: r
                    .map(|r| at(&r.relay_master_log_file, r.exec_master_log_pos))
                    .unwrap_or_default(),
                last_io_error: r.map(|r| r.last_io_error.clone()).unwrap_or_default(),
                last_sql_error: r.map(|r| r.last_sql_error.clone()).unwrap_or_default(),
                binlog_position: match (&o.binlog_file, o.binlog_position) {
                    (Some(file), Some(pos)) => at(file, pos),
                    _ => String::new(),
                },
                gtid_binlog_pos: o.gtid_binlog_pos.clone().unwrap_or_default(),
                gtid_slave_pos: o.gtid_slave_pos.clone().unwrap_or_default(),
                semi_sync: o
                    .semi_sync
                    .as_ref()
                    .map(|s| palisade_api::v1::MariaDbSemiSync {
                        enabled: s.master_enabled,
                        active: s.master_active,
                        clients: s.master_clients,
                        timeout_ms: s.master_timeout_ms,
                        replica_acks: s.slave_enabled,
                    }),
            }
        }

        let now = mono_ms();
        // Copied first, so that no two of these locks are ever held at once.
        let mariadb: BTreeMap<SiteId, palisade_api::v1::MariaDbView> = self
            .mariadb
            .read()
            .expect("observations lock poisoned")
            .iter()
            .map(|(site, o)| (site.clone(), mariadb_view(o)))
            .collect();
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
                    mariadb: mariadb.get(site).cloned(),
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
    pub probes: BTreeMap<SiteId, DbProbe>,
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
    /// Probes every database and Elasticsearch every `interval`, each on a
    /// task of its own, and sends the leader a report of the latest
    /// observations every `interval`, until `cancel`.
    ///
    /// Nothing waits on the slowest probe: a site cut off (packets dropped)
    /// costs its own probe the whole timeout, and the reports go on at
    /// their pace with what the other probes saw and for how long that site
    /// has been unreachable. When the reports waited for every probe of a
    /// round, a new leader elected during an isolation waited up to a probe
    /// timeout for each witness's next report (the isolation bench with the
    /// leader at the isolated site: 2.2-3.2 s to detect in half the trials).
    #[tracing::instrument(skip_all, fields(witness = self.own_id))]
    pub async fn run(self, cancel: CancellationToken) {
        let tasks = tokio_util::task::TaskTracker::new();
        for (site, probe) in &self.probes {
            tasks.spawn(probe_database(
                site.clone(),
                probe.clone(),
                self.latest.clone(),
                self.interval,
                cancel.clone(),
            ));
        }
        tasks.spawn(probe_search_and_app(
            self.search_probes.clone(),
            self.app_config.clone(),
            self.latest.clone(),
            self.interval,
            cancel.clone(),
        ));
        tasks.close();
        self.report_every_interval(&cancel).await;
        tasks.wait().await;
    }

    async fn report_every_interval(&self, cancel: &CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // One report in flight at a time: a newer one supersedes a send
        // that still hangs (a leader cut off).
        let mut sending: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let report = self.report();
            let leader = self.raft.metrics().borrow().current_leader;
            match leader {
                Some(l) if l == self.own_id => self.controller.receive_report(report),
                Some(l) => {
                    if let Some(previous) = sending.take() {
                        previous.abort();
                    }
                    let (peers, timeout) = (self.peers.clone(), self.interval);
                    sending = Some(tokio::spawn(async move {
                        if let Err(e) = peers.report(l, &report, timeout).await {
                            tracing::debug!(error = %e, "report not delivered to the leader");
                        }
                    }));
                }
                None => {}
            }
        }
        if let Some(s) = sending {
            s.abort();
        }
    }

    /// The latest observation of every database, each aged to now: the
    /// standby's last message from the primary is reported as old as it is
    /// now, not as it was when its probe ended (a standby's stale
    /// "streaming" must not hold a failover back).
    fn report(&self) -> Report {
        let now = mono_ms();
        let dbs: BTreeMap<SiteId, PgObservation> = self
            .latest
            .inner
            .read()
            .expect("observations lock poisoned")
            .iter()
            .map(|(site, (obs, at))| {
                let mut obs = obs.clone();
                let aged = now.saturating_sub(*at);
                if let Some(age) = obs
                    .wal_receiver
                    .as_mut()
                    .and_then(|w| w.last_msg_age_ms.as_mut())
                {
                    *age += aged;
                }
                (site.clone(), obs)
            })
            .collect();
        let last_writable = self
            .latest
            .last_writable
            .read()
            .expect("observations lock poisoned")
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
            .collect();
        let unreachable_for = self
            .latest
            .unreachable_since
            .read()
            .expect("observations lock poisoned")
            .iter()
            .filter(|(site, _)| dbs.contains_key(*site))
            .map(|(site, since)| (site.clone(), now.saturating_sub(*since)))
            .collect();
        Report {
            witness: self.own_id,
            dbs,
            last_writable,
            unreachable_for,
        }
    }
}

/// Probes one database every `interval` (or at once after a probe that
/// took longer), publishing each result the moment it is in, stamped then:
/// the site agent's hang watch and sync mode's degrade read them from
/// [`Latest`] as they come.
async fn probe_database(
    site: SiteId,
    probe: DbProbe,
    latest: Latest,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let began = mono_ms();
        let (obs, full) = tokio::select! {
            _ = cancel.cancelled() => return,
            obs = probe.observe() => obs,
        };
        if let Some(full) = full {
            latest
                .mariadb
                .write()
                .expect("observations lock poisoned")
                .insert(site.clone(), full);
        }
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
        if let (true, Some(lsn)) = (obs.is_writable_primary(), obs.current_lsn) {
            latest
                .last_writable
                .write()
                .expect("observations lock poisoned")
                .insert(site.clone(), (lsn, at));
        }
        latest
            .inner
            .write()
            .expect("observations lock poisoned")
            .insert(site.clone(), (obs, at));
    }
}

/// Probes every site's Elasticsearch and reads this site's app's
/// `monitorsEnabled` back, every `interval`.
async fn probe_search_and_app(
    search_probes: BTreeMap<SiteId, EsProbe>,
    app_config: Option<std::path::PathBuf>,
    latest: Latest,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let mut es = tokio::task::JoinSet::new();
        for (site, probe) in &search_probes {
            let (site, probe) = (site.clone(), probe.clone());
            es.spawn(async move { (site, probe.probe().await) });
        }
        if let Some(path) = &app_config {
            let path = path.clone();
            let value = tokio::task::spawn_blocking(move || {
                palisade_actions::monitors::read_monitors_enabled(&path)
            })
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten();
            *latest.monitors.write().expect("observations lock poisoned") = value;
        }
        loop {
            let done = tokio::select! {
                _ = cancel.cancelled() => return,
                done = es.join_next() => done,
            };
            let Some(done) = done else { break };
            if let Ok((site, obs)) = done {
                latest
                    .search
                    .write()
                    .expect("observations lock poisoned")
                    .insert(site, (obs, mono_ms()));
            }
        }
    }
}
