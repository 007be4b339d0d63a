//! One witness process: opens its durable store, starts Raft, serves the
//! peer and control gRPC services, bootstraps the cluster on first start,
//! and shuts down cleanly when cancelled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use openraft::SnapshotPolicy;
use palisade_api::v1::control_server::ControlServer;
use palisade_api::v1::raft_peer_server::RaftPeerServer;
use palisade_api::v1::witness_peer_server::WitnessPeerServer;
use palisade_raft::election::LeaderContact;
use palisade_raft::members::Members;
use palisade_raft::network::{PeerContacts, PeerNetwork};
use palisade_raft::server::{PeerService, StatusExtra};
use palisade_raft::transport;
use palisade_raft::{store, Raft};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;
use crate::config::{Config, DatabaseSettings};
use crate::control::ControlService;
use crate::controller::Controller;
use crate::lease::WitnessLease;
use crate::lease_guard::renewer::RenewSpec;
use crate::lease_guard::GuardHandle;
use crate::observer::{Latest, Observer};
use crate::peers::Peers;
use crate::site_db::SiteDb;
use crate::witness_service::WitnessService;

/// Largest gRPC message a witness accepts on its peer port (snapshots
/// travel as one message).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Largest gRPC message the control port accepts: operators' requests are
/// a few hundred bytes; a drill report a few KiB.
const MAX_CONTROL_MESSAGE_BYTES: usize = 1024 * 1024;
/// Requests one control connection may have in flight at once (a `watch`
/// stream counts as one).
const CONTROL_CONCURRENCY_PER_CONNECTION: usize = 16;

/// openraft's config from ours.
fn raft_config(config: &Config) -> anyhow::Result<openraft::Config> {
    let r = &config.raft;
    let c = openraft::Config {
        cluster_name: config.cluster_name.clone(),
        heartbeat_interval: r.heartbeat.as_millis() as u64,
        election_timeout_min: r.election_min.as_millis() as u64,
        election_timeout_max: r.election_max.as_millis() as u64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(r.snapshot_every),
        max_in_snapshot_log_to_keep: r.snapshot_every,
        // Elections are started by palisade_raft::election::campaign, after
        // a pre-vote: a witness that was cut off must not come back with a
        // raised term that deposes a healthy leader.
        enable_elect: false,
        ..Default::default()
    };
    c.validate().context("raft settings rejected by openraft")
}

async fn bind(config: &Config, addr: &str, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{}: {key}: cannot listen on {addr}", config.file.display()))
}

/// Runs the witness until `shutdown` is cancelled (SIGTERM / Ctrl-C in the
/// binary), then stops it within a 3 s grace (`stop`: Raft first, then
/// the witness's tasks, then the servers' drain) and returns.
#[tracing::instrument(skip_all, fields(node = config.topology.own_id, site = %config.topology.own().site))]
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let own_id = config.topology.own_id;
    let own = config.topology.own().clone();
    let key = |field: &str| {
        let i = config
            .topology
            .witnesses
            .keys()
            .position(|id| *id == own_id)
            .unwrap_or(0);
        format!("witness[{i}].{field}")
    };

    // Bind first: a port in use is an operator error worth a clear message
    // before any state is touched.
    let raft_listener = bind(&config, &own.raft_addr, &key("raft_addr")).await?;
    let control_listener = bind(&config, &own.control_addr, &key("control_addr")).await?;
    let http_listener = match config.http_listen {
        Some(addr) => Some(bind(&config, &addr.to_string(), "http.listen").await?),
        None => None,
    };
    if let Some(settings) = &config.database {
        crate::db_probe::check_mariadb_pair(settings)
            .await
            .with_context(|| format!("{}: [[database]]", config.file.display()))?;
    }
    // Who the witnesses are: the configured list until the log has a
    // membership, then the log's (`palisadectl member`).
    let members = if config.raft.join {
        Members::joining(config.topology.clone())
    } else {
        Members::new(config.topology.clone())
    };
    let tls = crate::tls::setup(&config, &members)?;
    match &tls.store {
        None => tracing::error!(
            "INSECURE: tls.insecure = true: the peer and control ports speak plaintext and authenticate nobody; anyone who reaches them can fail over, pause or forge Raft messages"
        ),
        Some(s) => tracing::info!(
            cert = %s.paths().cert.display(),
            not_after = %s.not_after(),
            "mutual TLS on both ports"
        ),
    }

    let (log_store, state_machine) = store::open(
        &config.data_dir,
        &store::StoreIdentity {
            cluster: config.cluster_name.clone(),
            node: own_id,
        },
    )?;
    let log_reader = log_store.clone();
    let state = state_machine.view();
    let contacts = PeerContacts::default();
    // A peer RPC may take up to the minimum election timeout: beyond that the
    // follower would have started an election anyway.
    let network = PeerNetwork::new(
        contacts.clone(),
        tls.transport.clone(),
        config.raft.connect_timeout,
        config.raft.election_min,
    );
    let raft = Raft::new(
        own_id,
        Arc::new(raft_config(&config)?),
        network,
        log_store,
        state_machine,
    )
    .await
    .context("starting raft")?;

    members.update(&raft.metrics().borrow());
    if raft.is_initialized().await.context("reading raft state")? {
        let m = raft.metrics().borrow().clone();
        tracing::info!(
            term = m.current_term,
            last_log_index = ?m.last_log_index,
            last_applied = ?m.last_applied.map(|l| l.index),
            data_dir = %config.data_dir.display(),
            "resuming from durable state"
        );
    } else if config.raft.join {
        tracing::info!(
            "first start with raft.join = true: waiting for the leader to add this witness \
             (palisadectl member add or replace); nothing is bootstrapped"
        );
    } else {
        let members: BTreeMap<_, _> = config.topology.witnesses.clone();
        tracing::info!(voters = ?members.keys().collect::<Vec<_>>(), "first start: bootstrapping the cluster from the configured witnesses");
        // Every witness does this on its first start with the same members;
        // openraft accepts identical initial memberships and refuses to
        // initialize a node that already has a log or a vote.
        if let Err(e) = raft.initialize(members).await {
            tracing::info!(error = %e, "bootstrap not needed: another witness initialised first");
        }
    }

    let leader_contact = LeaderContact::default();
    let mut peer_service = PeerService::new(raft.clone(), members.clone(), contacts.clone());
    if tls.store.is_some() {
        peer_service = peer_service.requiring_tls();
    }
    let mut peer_service = peer_service.with_pre_vote(
        leader_contact.clone(),
        log_reader.clone(),
        // openraft refuses a real vote until this long after a leader's
        // last contact: a pre-vote granted sooner would be wasted.
        config.raft.election_max,
    );
    let mut control_service = ControlService::new(
        raft.clone(),
        members.clone(),
        config.cluster_name.clone(),
        contacts.clone(),
        state.clone(),
        &tls.transport,
        config.raft.connect_timeout,
    )
    .with_transport_security(tls.store.clone());

    let tasks = tokio_util::task::TaskTracker::new();
    tasks.spawn(members.clone().follow(raft.clone(), shutdown.clone()));
    tasks.spawn(palisade_raft::election::campaign(
        raft.clone(),
        log_reader,
        members.clone(),
        leader_contact.clone(),
        config.raft.election_min,
        config.raft.election_max,
        tls.transport.clone(),
        config.raft.connect_timeout,
        shutdown.clone(),
    ));
    if let Some(store) = &tls.store {
        tasks.spawn(crate::tls::watch(store.clone(), shutdown.clone()));
    }
    tasks.spawn(crate::retention::run(
        raft.clone(),
        state.clone(),
        config.retention,
        members.clone(),
        (tls.transport.clone(), config.raft.connect_timeout),
        shutdown.clone(),
    ));
    let mut witness_service = None;
    let mut http_db = None;
    if let Some(settings) = &config.database {
        let w = start_witness(
            &config, settings, &members, &raft, &state, &tls, &tasks, &shutdown,
        )?;
        http_db = Some(crate::http::DatabaseParts {
            agent: w.agent.clone(),
            latest: w.latest.clone(),
            controller: w.controller.clone(),
            settings: Arc::new(settings.clone()),
        });
        let extra: Arc<dyn StatusExtra> = Arc::new(WitnessStatus {
            latest: w.latest.clone(),
            controller: w.controller.clone(),
            agent: w.agent.clone(),
        });
        peer_service = peer_service.with_extra(extra.clone());
        let mode = match settings.detector.replication {
            palisade_core::detector::ReplicationMode::Async => "async",
            palisade_core::detector::ReplicationMode::Sync => "sync",
        };
        control_service = control_service
            .with_extra(extra, mode)
            .with_operations(w.controller.clone());
        witness_service = Some(WitnessPeerServer::new(WitnessService {
            controller: w.controller,
            agent: w.agent,
            lease: w.lease,
            tls: tls.store.is_some(),
        }));
    }

    let peer_router = tonic::transport::Server::builder()
        .add_optional_service(witness_service)
        .add_service(
            RaftPeerServer::new(peer_service).max_decoding_message_size(MAX_MESSAGE_BYTES),
        );
    // The control port is the operators': small messages, and a bound on
    // what one connection may have in flight, so that one client cannot
    // starve the others or the witness.
    let control_router = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(CONTROL_CONCURRENCY_PER_CONNECTION)
        .add_service(
            ControlServer::new(control_service.clone())
                .max_decoding_message_size(MAX_CONTROL_MESSAGE_BYTES),
        );
    let servers = [
        (
            "peer",
            transport::serve(
                peer_router,
                raft_listener,
                tls.peer.clone(),
                "peer",
                shutdown.clone(),
            ),
        ),
        (
            "control",
            transport::serve(
                control_router,
                control_listener,
                tls.control.clone(),
                "control",
                shutdown.clone(),
            ),
        ),
    ];
    if let Some(listener) = http_listener {
        let terms_seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let leader_changes_seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
        tasks.spawn(crate::http::count_elections(
            raft.clone(),
            terms_seen.clone(),
            leader_changes_seen.clone(),
            shutdown.clone(),
        ));
        // `http.tls`: HTTPS with this witness's certificate and an
        // optional client certificate; only then the console's actions
        // (for operator certificates of this cluster).
        let http_tls = match (config.http_tls, &tls.store) {
            (true, Some(store)) => Some(crate::http::tls::server_config(store.clone())),
            _ => None,
        };
        let actions = http_tls
            .as_ref()
            .map(|_| crate::http::console::Actions::new(config.cluster_name.clone()));
        let http = crate::http::serve(
            listener,
            http_tls,
            Arc::new(crate::http::HttpState {
                node: own_id,
                site: palisade_core::SiteId(own.site.clone()),
                raft: raft.clone(),
                state: state.clone(),
                db: http_db,
                terms_seen,
                leader_changes_seen,
                // The console reads through this witness's own control
                // service, in process: a copy without certificate checks,
                // of which the console calls only the read RPCs, and the
                // changing ones only for a request whose TLS client
                // certificate it checked itself (http::console::actions).
                console: Some(crate::http::console::Console::new(
                    own_id,
                    own.site.clone(),
                    control_service.with_transport_security(None),
                    state.clone(),
                    shutdown.clone(),
                )),
                actions,
            }),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            if let Ok(Err(e)) = http.await {
                tracing::error!(error = %e, "the HTTP listener (health endpoints, metrics) stopped");
            }
        });
        tracing::info!(
            http = ?config.http_listen,
            https = config.http_tls,
            "health endpoints, metrics and the console served over HTTP"
        );
    }
    tracing::info!(raft_addr = %own.raft_addr, control_addr = %own.control_addr, "witness serving");

    shutdown.cancelled().await;
    stop(own_id, &raft, &tasks, servers).await;
    Ok(())
}

/// The longest a witness takes to exit after SIGTERM or Ctrl-C, whatever
/// clients are attached (docs/operations.md "Stopping a witness"): the
/// orderly stop (`stop`) gets `STOP_GRACE` (3 s) of it, and the binary exits
/// at this bound regardless (a watchdog thread in `main.rs`: a task stuck in
/// blocking I/O cannot hold it). `deploy/systemd/palisade.service`'s
/// `TimeoutStopSec` leaves room above it.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(5);

/// How long the orderly part of a stop may take: Raft, the witness's
/// tasks, and the servers' drain of open requests. What is not done by
/// then is abandoned (and named in the log).
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A gRPC server's task, with the service's name for the log.
type ServerTask = (
    &'static str,
    tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
);

/// The orderly stop, in this order, all within [`STOP_GRACE`]:
///
/// 1. Raft stops first. A leader stops heartbeating at once, which is how
///    it hands over: openraft 0.9 has no leadership transfer, and its
///    followers refuse any vote until the leader lease (the maximum
///    election timeout) has run out since the last heartbeat; from then on
///    the first follower whose pre-vote wins leads (see
///    `palisade_raft::election`). A witness that kept Raft running while
///    it served nothing could stay, or become, a leader nobody can reach.
///    Every open `Watch` stream sees Raft stop and ends with UNAVAILABLE
///    "witness N is shutting down".
/// 2. The witness's own tasks (the campaign, the controller, the observer,
///    the site agent's loops) were cancelled with the same token; they are
///    awaited. None of them touches the site's database on the way out: the
///    agent stops acting, and the lease guard process (separate on
///    purpose) keeps the lease and the database as they are.
/// 3. The servers stopped accepting at once; open requests get the rest of
///    the grace, then their connections are dropped.
async fn stop(
    own_id: palisade_core::NodeId,
    raft: &Raft,
    tasks: &tokio_util::task::TaskTracker,
    servers: [ServerTask; 2],
) {
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    let leading = raft.metrics().borrow().state == openraft::ServerState::Leader;
    tracing::info!(
        node = own_id,
        leading,
        bound_ms = SHUTDOWN_BOUND.as_millis() as u64,
        "shutting down: stopping Raft{}",
        if leading {
            " (stepping down: the other witnesses elect a leader once its lease has run out)"
        } else {
            ""
        }
    );
    let started = std::time::Instant::now();
    let ms = |since: std::time::Instant| since.elapsed().as_millis() as u64;
    if tokio::time::timeout_at(deadline, raft.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = STOP_GRACE.as_millis() as u64,
            "Raft did not stop within the grace; exiting without it"
        );
    }
    let raft_ms = ms(started);
    tasks.close();
    if tokio::time::timeout_at(deadline, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            running = tasks.len(),
            "witness tasks still running at the end of the grace; abandoned"
        );
    }
    let tasks_ms = ms(started);
    for (what, mut server) in servers {
        match tokio::time::timeout_at(deadline, &mut server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(service = what, error = %e, "server ended with an error")
            }
            Ok(Err(e)) => tracing::warn!(service = what, error = %e, "server task failed"),
            Err(_) => {
                tracing::warn!(
                    service = what,
                    "open requests outlived the grace; their connections are dropped"
                );
                server.abort();
            }
        }
    }
    tracing::info!(raft_ms, tasks_ms, took_ms = ms(started), "stopped");
}

/// What the witness's database roles need running.
struct WitnessParts {
    latest: Latest,
    controller: Arc<Controller>,
    agent: Arc<Agent>,
    lease: Arc<WitnessLease>,
}

/// Starts the probe loop, the site agent and the leadership watcher that
/// runs the controller while this witness leads.
#[allow(clippy::too_many_arguments)]
fn start_witness(
    config: &Config,
    settings: &DatabaseSettings,
    members: &Members,
    raft: &Raft,
    state: &palisade_raft::store::StateView,
    tls: &crate::tls::WitnessTls,
    tasks: &tokio_util::task::TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<WitnessParts> {
    let settings = Arc::new(settings.clone());
    let mut probes = BTreeMap::new();
    for (i, db) in settings.all().into_iter().enumerate() {
        // The database beside this witness gets the local timeout: the
        // site agent's hang watch runs on these probes.
        let timeout = if db.site.0 == config.topology.own().site {
            settings.probe_local_timeout
        } else {
            settings.probe_timeout
        };
        let probe = crate::db_probe::DbProbe::new(db, timeout)
            .with_context(|| format!("{}: database[{i}].dsn", config.file.display()))?;
        probes.insert(db.site.clone(), probe);
    }
    let peers = Peers::new(members, &tls.transport, config.raft.connect_timeout);
    let reported = members.clone();
    let lease = Arc::new(
        WitnessLease::new(state.clone(), settings.lease)
            .reporting(Box::new(move || reported.view().voters)),
    );
    tasks.spawn(follow_membership_for_lease(
        raft.clone(),
        members.subscribe(),
        lease.clone(),
        shutdown.clone(),
    ));
    let controller = Arc::new(Controller::new(
        raft.clone(),
        state.clone(),
        members.clone(),
        settings.clone(),
        peers.clone(),
        probes.clone(),
        Arc::new(config.actions.clone()),
        lease.clone(),
    ));
    let own_site = palisade_core::SiteId(config.topology.own().site.clone());
    let db = settings
        .at(&own_site.0)
        .map(|d| SiteDb::new(d, Duration::from_secs(10)));
    let guard = match settings.at(&own_site.0) {
        Some(d) => Some(lease_guard_of(config, &settings, d, members.clone())?),
        None => None,
    };
    let latest = Latest::default();
    let agent = Arc::new(Agent::new(
        own_site,
        config.topology.own_id,
        db,
        settings.clone(),
        state.clone(),
        peers.clone(),
        lease.clone(),
        latest.clone(),
        crate::app::SiteApp::configured(
            &config.actions,
            &palisade_core::SiteId(config.topology.own().site.clone()),
        ),
        guard,
    ));
    controller.set_local_agent(agent.clone());
    let mut search_probes = BTreeMap::new();
    for (i, es) in config.actions.search.iter().enumerate() {
        let probe = palisade_probe::elasticsearch::EsProbe::new(
            &es.url,
            settings.probe_timeout,
            es.auth.clone(),
        )
        .with_context(|| format!("{}: elasticsearch[{i}].url", config.file.display()))?;
        search_probes.insert(es.site.clone(), probe);
    }
    let app_config = config
        .actions
        .app(&palisade_core::SiteId(config.topology.own().site.clone()))
        .map(|a| a.config_file.clone());
    let observer = Observer {
        own_id: config.topology.own_id,
        probes,
        search_probes,
        app_config,
        latest: latest.clone(),
        interval: settings.probe_interval,
        raft: raft.clone(),
        peers,
        controller: controller.clone(),
    };
    tasks.spawn(observer.run(shutdown.clone()));
    tasks.spawn(agent.clone().run(shutdown.clone()));
    tasks.spawn(agent.clone().guard_lease(shutdown.clone()));
    tasks.spawn(agent.clone().keep_lease(shutdown.clone()));
    tasks.spawn(lead_while_leader(
        raft.clone(),
        controller.clone(),
        shutdown.clone(),
    ));
    Ok(WitnessParts {
        latest,
        controller,
        agent,
        lease,
    })
}

/// Tells the grant book of every membership change once this witness has
/// applied it (not of the first view): applied means committed, so every
/// old-membership grant that counts against it was made before.
async fn follow_membership_for_lease(
    raft: Raft,
    mut changes: tokio::sync::watch::Receiver<palisade_raft::members::MemberView>,
    lease: Arc<WitnessLease>,
    shutdown: CancellationToken,
) {
    changes.borrow_and_update();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = changes.changed() => if r.is_err() { return },
        }
        let (voters, index) = {
            let view = changes.borrow_and_update();
            (view.voters.clone(), view.log_id.map_or(0, |l| l.index))
        };
        let mut metrics = raft.metrics();
        let applied = async {
            loop {
                if metrics
                    .borrow_and_update()
                    .last_applied
                    .is_some_and(|l| l.index >= index)
                {
                    return true;
                }
                if metrics.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            ok = applied => if !ok { return },
        }
        tracing::info!(
            voters = ?voters.sets,
            "membership change applied: this witness vouches for no lease expiry for a whole lease"
        );
        lease.membership_changed();
    }
}

/// The lease guard of this site's database: its order file lives in the
/// witness's data directory (`lease-guard.order`, with `.lock`, `.status`
/// and `.log` beside it), it is started from this very binary, and it may
/// renew the lease itself with every witness while this one is silent.
fn lease_guard_of(
    config: &Config,
    settings: &DatabaseSettings,
    db: &crate::config::DatabaseConfig,
    members: Members,
) -> anyhow::Result<GuardHandle> {
    let exe = std::env::current_exe().context("locating this binary to start the lease guard")?;
    let spec = RenewSpec {
        site: db.site.0.clone(),
        witnesses: config
            .topology
            .witnesses
            .iter()
            .map(|(id, w)| (*id, w.raft_addr.clone()))
            .collect(),
        lease: settings.lease,
        renew_interval_ms: settings.renew_interval.as_millis() as u64,
        margin_ms: settings.lease.ttl_ms / 4,
        tls: match &config.tls {
            crate::config::TlsSettings::Insecure => None,
            crate::config::TlsSettings::Mutual(p) => Some(crate::lease_guard::renewer::GuardTls {
                cluster: config.cluster_name.clone(),
                node: config.topology.own_id,
                ca: p.ca_cert.clone(),
                cert: p.cert.clone(),
                key: p.key.clone(),
            }),
        },
    };
    let server = match &db.mariadb {
        Some(files) => crate::lease_guard::GuardedServer::MariaDb {
            pid_file: files.pid_file.clone(),
        },
        None => crate::lease_guard::GuardedServer::Postgres {
            data_dir: db.data_dir.clone(),
            bin_dir: db.bin_dir.clone(),
        },
    };
    let live = crate::lease_guard::LiveWitnesses(Arc::new(move || {
        members
            .topology()
            .witnesses
            .iter()
            .map(|(id, w)| (*id, w.raft_addr.clone()))
            .collect()
    }));
    let order_file = config.data_dir.join("lease-guard.order");
    Ok(GuardHandle::for_server(order_file, server, exe)
        .with_renewal(spec)
        .with_live_witnesses(live))
}

/// Runs the controller exactly while this node is the Raft leader, one
/// instance per term, stopped cleanly when leadership ends.
async fn lead_while_leader(raft: Raft, controller: Arc<Controller>, shutdown: CancellationToken) {
    let mut metrics = raft.metrics();
    let mut current: Option<(u64, CancellationToken, tokio::task::JoinHandle<()>)> = None;
    loop {
        let (leading, term) = {
            let m = metrics.borrow();
            (m.state == openraft::ServerState::Leader, m.current_term)
        };
        let stale = match &current {
            Some((t, _, _)) => !leading || *t != term,
            None => false,
        };
        if stale {
            if let Some((_, token, handle)) = current.take() {
                token.cancel();
                let _ = handle.await;
            }
        }
        if leading && current.is_none() {
            let token = shutdown.child_token();
            let handle = tokio::spawn(controller.clone().lead(token.clone()));
            current = Some((term, token, handle));
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = metrics.changed() => if changed.is_err() { break },
        }
    }
    if let Some((_, token, handle)) = current.take() {
        token.cancel();
        let _ = handle.await;
    }
}

/// Adds the witness's database views and the leader's assessment to status.
struct WitnessStatus {
    latest: Latest,
    controller: Arc<Controller>,
    agent: Arc<Agent>,
}

impl StatusExtra for WitnessStatus {
    fn fill(&self, status: &mut palisade_api::v1::NodeStatus) {
        status.databases = self.latest.views();
        status.search = self.latest.search_views();
        status.monitors_enabled = self.latest.monitors();
        status.replication_in_force = self.agent.replication_in_force();
        status.lease_remaining_ms = self.agent.lease_remaining_ms();
        status.serving_under_lease = self.agent.serving_under_lease();
        status.assessment = self.controller.assessment();
    }
}
