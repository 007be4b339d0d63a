//! One witness process: opens its durable store, starts Raft, serves the
//! peer and control gRPC services, bootstraps the cluster on first start,
//! and shuts down cleanly when cancelled.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use openraft::SnapshotPolicy;
use palisade_api::v1::control_server::ControlServer;
use palisade_api::v1::raft_peer_server::RaftPeerServer;
use palisade_raft::network::{PeerContacts, PeerNetwork};
use palisade_raft::server::PeerService;
use palisade_raft::{store, Raft};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use crate::config::Config;
use crate::control::ControlService;

/// Largest gRPC message a witness accepts (snapshots travel as one message).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

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
/// binary), then stops serving, shuts Raft down and returns.
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

    let (log_store, state_machine) = store::open(&config.data_dir)?;
    let state = state_machine.view();
    let contacts = PeerContacts::default();
    let network = PeerNetwork::new(contacts.clone(), config.raft.connect_timeout);
    let raft = Raft::new(
        own_id,
        Arc::new(raft_config(&config)?),
        network,
        log_store,
        state_machine,
    )
    .await
    .context("starting raft")?;

    if raft.is_initialized().await.context("reading raft state")? {
        let m = raft.metrics().borrow().clone();
        tracing::info!(
            term = m.current_term,
            last_log_index = ?m.last_log_index,
            last_applied = ?m.last_applied.map(|l| l.index),
            data_dir = %config.data_dir.display(),
            "resuming from durable state"
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

    let peer_service = PeerService::new(raft.clone(), config.topology.clone(), contacts.clone());
    let control_service = ControlService::new(
        raft.clone(),
        config.topology.clone(),
        config.cluster_name.clone(),
        contacts,
        state,
        config.raft.connect_timeout,
    )?;

    let peer_server = tonic::transport::Server::builder()
        .add_service(RaftPeerServer::new(peer_service).max_decoding_message_size(MAX_MESSAGE_BYTES))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(raft_listener).with_nodelay(Some(true)),
            shutdown.clone().cancelled_owned(),
        );
    let control_server = tonic::transport::Server::builder()
        .add_service(ControlServer::new(control_service))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(control_listener).with_nodelay(Some(true)),
            shutdown.clone().cancelled_owned(),
        );
    let peer_task = tokio::spawn(peer_server);
    let control_task = tokio::spawn(control_server);
    tracing::info!(raft_addr = %own.raft_addr, control_addr = %own.control_addr, "witness serving");

    shutdown.cancelled().await;
    tracing::info!("shutting down");
    let (p, c) = tokio::join!(peer_task, control_task);
    for (what, r) in [("peer", p), ("control", c)] {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(service = what, error = %e, "server ended with an error"),
            Err(e) => tracing::warn!(service = what, error = %e, "server task failed"),
        }
    }
    raft.shutdown().await.context("raft shutdown")?;
    tracing::info!("stopped");
    Ok(())
}
