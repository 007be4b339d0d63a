//! Helpers for tests that run witnesses over a real PostgreSQL pair.

use std::time::{Duration, Instant};

use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::{StatusReply, StatusRequest};
use palisade_testkit::pg::{PgPair, PgServer};

use super::Cluster;

/// How long a test waits for the cluster to settle or a failover to finish.
pub const SETTLE: Duration = Duration::from_secs(30);

/// The `[[database]]` sections for `pair` plus `tuning` (probe, lease and
/// failover settings).
pub fn db_config(pair: &PgPair, tuning: &str) -> String {
    config_for(pair, tuning, false)
}

/// Like [`db_config`], with each server's `replication_conninfo`, so that
/// an old primary rejoins as a standby on its own after a failover.
#[allow(dead_code)]
pub fn db_config_rejoining(pair: &PgPair, tuning: &str) -> String {
    config_for(pair, tuning, true)
}

fn config_for(pair: &PgPair, tuning: &str, rejoin: bool) -> String {
    let entry = |site: &str, role: &str, s: &PgServer| {
        let mut e = format!(
            "[[database]]\nsite = \"{site}\"\nrole = \"{role}\"\napplication_name = \"{}\"\ndsn = \"{}\"\ndata_dir = \"{}\"\nbin_dir = \"{}\"\nlog_file = \"{}\"\n",
            s.name(),
            s.dsn(),
            s.data_dir().display(),
            s.bin_dir().display(),
            s.log_file().display()
        );
        if let Some(u) = s.os_user() {
            e.push_str(&format!("os_user = \"{u}\"\n"));
        }
        // How the other server streams from this one once it rejoins.
        if rejoin {
            e.push_str(&format!(
                "replication_conninfo = \"{}\"\n",
                s.replication_conninfo()
            ));
        }
        e
    };
    format!(
        "{tuning}\n{}\n{}",
        entry("a", "primary", &pair.primary),
        entry("b", "standby", &pair.standby)
    )
}

pub const FAST: &str = "[probe]\ninterval_ms = 200\n\n[lease]\nttl_ms = 1500\n";

/// For the operator-operation tests: fast probes, the default lease. A
/// planned handover must not race a lease that a loaded machine cannot
/// renew in time (each renewal is a quorum round).
pub const OPERATED: &str = "[probe]\ninterval_ms = 200\n";

/// Each test runs a PostgreSQL pair and three witnesses; on a two-core
/// machine more than two such tests at once starve each other's probes.
pub static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

pub async fn status(c: &Cluster, id: u64) -> Option<StatusReply> {
    let endpoint = c.nodes.iter().find(|n| n.id == id)?.control.clone();
    let ch = tonic::transport::Endpoint::from_shared(endpoint)
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(3))
        .connect()
        .await
        .ok()?;
    ControlClient::new(ch)
        .status(StatusRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// Polls the status of any running node until `f` accepts it.
pub async fn wait_status<T>(
    c: &Cluster,
    what: &str,
    timeout: Duration,
    mut f: impl FnMut(&StatusReply) -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer");
    loop {
        for n in c.nodes.iter().filter(|n| n.is_running()) {
            if let Some(s) = status(c, n.id).await {
                if let Some(v) = f(&s) {
                    return v;
                }
                last = format!(
                    "epoch {} primary {} assessment {:?} in progress {:?}",
                    s.epoch,
                    s.primary_site,
                    s.assessment,
                    s.failover_in_progress.as_ref().map(|f| f.steps.len())
                );
            }
        }
        if Instant::now() > deadline {
            c.dump_logs();
            panic!("timed out after {timeout:?} waiting for: {what} (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the cluster leads, has recorded the roles, and the primary
/// holds its lease (it stays writable).
pub async fn wait_ready(c: &Cluster) {
    wait_status(c, "roles recorded and the detector healthy", SETTLE, |s| {
        (s.primary_site == "a" && s.assessment.starts_with("healthy")).then_some(())
    })
    .await;
}

/// Makes sure witness `id` is not the leader: if it is, stops it until the
/// others elect a leader, then starts it again (it rejoins as a follower).
pub async fn move_leadership_off(c: &mut Cluster, id: u64) {
    if wait_status(c, "a leader", SETTLE, |s| s.leader_id).await != id {
        return;
    }
    c.node(id).kill9();
    wait_status(c, "a leader among the others", SETTLE, |s| {
        s.leader_id.filter(|l| *l != id)
    })
    .await;
    c.node(id).start();
    wait_ready(c).await;
    let leader = wait_status(c, "a leader", SETTLE, |s| s.leader_id).await;
    assert_ne!(leader, id, "leadership moved off witness {id}");
}

/// Three witnesses over `pair` with `tuning` (probe, lease, failover
/// settings), started and ready (leader, roles recorded, detector healthy).
pub async fn start_cluster(pair: &PgPair, tuning: &str) -> Cluster {
    start_with(&db_config(pair, tuning)).await
}

/// Like [`start_cluster`], with automatic rejoin configured.
#[allow(dead_code)]
pub async fn start_cluster_rejoining(pair: &PgPair, tuning: &str) -> Cluster {
    start_with(&db_config_rejoining(pair, tuning)).await
}

async fn start_with(config: &str) -> Cluster {
    let mut c = Cluster::with_config(config);
    for n in &mut c.nodes {
        n.start();
    }
    wait_ready(&c).await;
    c
}
