//! The agent runtime (not only the core's decisions) against a fake
//! database: the real `Agent`, built as the daemon builds it, over a real
//! replicated-state store holding a chosen state, with a `FakeDb` in place
//! of PostgreSQL. Each test asserts which database operations the runtime
//! carried out.
//!
//! The agent runs alone here: no peers, so its own witness's grant is the
//! whole quorum, and no lease guard process.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use palisade_actions::postgres::{
    DatabaseControl, DbError, FenceOutcome, FinalPosition, HandoverFence, PromoteOutcome,
    RejoinMethod, RejoinOutcome, StartOutcome, SyncOutcome,
};
use palisade_core::{Command, CommandResult, Evidence, Failover, Kind, SiteId, Trigger};
use palisade_raft::TypeConfig;

use super::Agent;
use crate::config::Config;
use crate::lease::WitnessLease;
use crate::observer::Latest;
use crate::peer_msgs::SiteAction;
use crate::peers::Peers;
use crate::site_db::SiteDb;

/// Test double: an in-memory stand-in for a site's database that only
/// remembers whether it "runs" and records every operation that would
/// change a real server (fence, start, promote, rejoin, replication
/// settings), in order. Queries (`is_running`, `is_fenced`,
/// `has_server_processes`) are answered from the flag and not recorded.
/// Clones share one database.
#[derive(Clone, Default)]
struct FakeDb {
    inner: Arc<Mutex<Fake>>,
}

#[derive(Default)]
struct Fake {
    running: bool,
    /// Operations carried out, by trait method name.
    ops: Vec<&'static str>,
    /// What `fence_for_handover` reports when it stopped a running server.
    final_position: Option<u64>,
}

impl FakeDb {
    fn running() -> Self {
        let db = Self::default();
        db.fake().running = true;
        db
    }

    fn fake(&self) -> std::sync::MutexGuard<'_, Fake> {
        self.inner.lock().expect("fake database lock poisoned")
    }

    fn ops(&self) -> Vec<&'static str> {
        self.fake().ops.clone()
    }

    fn is_up(&self) -> bool {
        self.fake().running
    }

    /// Records `op`; stops the server and says how.
    fn stop(&self, op: &'static str) -> FenceOutcome {
        let mut f = self.fake();
        f.ops.push(op);
        let was = std::mem::replace(&mut f.running, false);
        let elapsed = Duration::from_millis(1);
        match (was, op) {
            (false, _) => FenceOutcome::AlreadyStopped { elapsed },
            (true, "fence_urgently") => FenceOutcome::Killed {
                pids: vec![4242],
                elapsed,
            },
            (true, _) => FenceOutcome::ShutDown {
                mode: palisade_actions::postgres::ShutdownMode::Fast,
                elapsed,
            },
        }
    }
}

impl DatabaseControl for FakeDb {
    async fn is_running(&self) -> Result<bool, DbError> {
        Ok(self.is_up())
    }

    async fn fence(&self, _epoch: u64) -> Result<FenceOutcome, DbError> {
        Ok(self.stop("fence"))
    }

    async fn is_fenced(&self) -> Result<bool, DbError> {
        Ok(!self.is_up())
    }

    async fn fence_urgently(&self, _epoch: u64) -> Result<FenceOutcome, DbError> {
        Ok(self.stop("fence_urgently"))
    }

    fn has_server_processes(&self) -> bool {
        self.is_up()
    }

    async fn fence_for_handover(&self, _epoch: u64) -> Result<HandoverFence, DbError> {
        let clean = self.is_up();
        let outcome = self.stop("fence_for_handover");
        let final_position = match self.fake().final_position {
            Some(lsn) if clean => FinalPosition::Known { lsn },
            _ => FinalPosition::Unclean,
        };
        Ok(HandoverFence {
            outcome,
            final_position,
        })
    }

    async fn start(&self, _epoch: u64) -> Result<StartOutcome, DbError> {
        let mut f = self.fake();
        f.ops.push("start");
        Ok(if std::mem::replace(&mut f.running, true) {
            StartOutcome::AlreadyRunning
        } else {
            StartOutcome::Started {
                elapsed: Duration::from_millis(1),
            }
        })
    }

    async fn promote(&self, _epoch: u64) -> Result<PromoteOutcome, DbError> {
        self.fake().ops.push("promote");
        Ok(PromoteOutcome {
            already_primary: false,
            lsn: 0,
            timeline: 2,
            promoted_in: Duration::ZERO,
            elapsed: Duration::ZERO,
        })
    }

    async fn rejoin_as_standby(
        &self,
        _epoch: u64,
        _primary_conninfo: &str,
    ) -> Result<RejoinOutcome, DbError> {
        let mut f = self.fake();
        f.ops.push("rejoin_as_standby");
        f.running = true;
        Ok(RejoinOutcome {
            method: RejoinMethod::Rewind,
            fence: None,
            rewind_failure: None,
            rewind: None,
            basebackup: None,
            start: None,
            catch_up: None,
            removed_old_data_dir: None,
            elapsed: Duration::ZERO,
        })
    }

    async fn set_synchronous(
        &self,
        _epoch: u64,
        standby_names: Option<&str>,
    ) -> Result<SyncOutcome, DbError> {
        self.fake().ops.push("set_synchronous");
        Ok(SyncOutcome {
            previous: String::new(),
            current: standby_names.unwrap_or_default().to_owned(),
            changed: true,
        })
    }
}

/// Three witnesses, sites `a` (configured primary) and `b` (standby).
const CONFIG: &str = r#"
node_id = 1

[cluster]
name = "test"

[storage]
data_dir = "/var/lib/palisade/{site}"

[[witness]]
id = 1
site = "a"
raft_addr = "127.0.0.1:7301"
control_addr = "127.0.0.1:7401"

[[witness]]
id = 2
site = "b"
raft_addr = "127.0.0.1:7302"
control_addr = "127.0.0.1:7402"

[[witness]]
id = 3
site = "c"
raft_addr = "127.0.0.1:7303"
control_addr = "127.0.0.1:7403"

[[database]]
site = "a"
role = "primary"
dsn = "postgres://palisade:secret@127.0.0.1:5432/postgres"

[[database]]
site = "b"
role = "standby"
dsn = "postgres://palisade:secret@127.0.0.1:5433/postgres"
"#;

fn site(s: &str) -> SiteId {
    SiteId(s.into())
}

/// The configured roles: `a` primary, `b` standby, epoch 0.
fn init() -> Command {
    Command::InitDatabase {
        primary: site("a"),
        standby: site("b"),
    }
}

/// A failover (or handover, by `kind`) of epoch 1 from `a` to `b`.
fn begin(kind: Kind) -> Command {
    Command::BeginFailover(Box::new(Failover {
        kind,
        epoch: 1,
        from: site("a"),
        to: site("b"),
        trigger: Trigger::Automatic,
        reason: "test".into(),
        evidence: Evidence::default(),
        started_at_ms: 0,
        steps: vec![],
        outcome: None,
        finished_at_ms: None,
    }))
}

/// The agent of site `a` over `db`, with `commands` applied to a fresh
/// replicated-state store (kept in the returned directory). Built like the
/// daemon's (`daemon.rs`), but with no peers and no lease guard.
async fn agent_of_a(
    db: &FakeDb,
    commands: Vec<Command>,
) -> (Arc<Agent<FakeDb>>, tempfile::TempDir) {
    let config = Config::parse(Path::new("/etc/palisade/test.toml"), CONFIG).expect("valid config");
    let settings = Arc::new(config.database.expect("database settings"));
    let dir = tempfile::tempdir().expect("temp dir for the store");
    let identity = palisade_raft::store::StoreIdentity {
        cluster: config.cluster_name.clone(),
        node: config.topology.own_id,
    };
    let (_log, mut sm) = palisade_raft::store::open(dir.path(), &identity).expect("open store");
    let entries: Vec<Entry<TypeConfig>> = commands
        .into_iter()
        .zip(1..)
        .map(|(c, index)| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(c),
        })
        .collect();
    for result in sm.apply(entries).await.expect("apply") {
        assert!(
            matches!(result, CommandResult::Applied),
            "setup command not applied: {result:?}"
        );
    }
    let view = sm.view();
    let peers = Peers::with_addresses(
        std::iter::empty(),
        &palisade_raft::transport::Transport::plaintext(),
        Duration::from_millis(100),
    )
    .expect("no peers");
    let lease = Arc::new(WitnessLease::new(view.clone(), settings.lease));
    let agent = Agent::new(
        site("a"),
        1,
        Some(SiteDb::with_control(db.clone())),
        settings,
        view,
        peers,
        lease,
        Latest::default(),
        None,
        None,
    );
    (Arc::new(agent), dir)
}

#[tokio::test]
async fn a_site_the_state_fences_is_killed_and_never_started() {
    // --- step: a failover away from a is under way; its database runs
    let db = FakeDb::running();
    let (agent, _store) = agent_of_a(&db, vec![init(), begin(Kind::Failover)]).await;
    for _ in 0..3 {
        agent.reconcile().await;
    }
    assert!(!db.is_up(), "the fenced site's database must be stopped");
    // The lease is gone: killed at once, no polite shutdown; once stopped
    // it stays down.
    assert_eq!(db.ops(), ["fence_urgently"]);
}

#[tokio::test]
async fn a_desired_primary_is_started_only_once_the_quorum_confirms_its_lease() {
    // --- step: a is the desired primary, its database is down, no lease
    let db = FakeDb::default();
    let (agent, _store) = agent_of_a(&db, vec![init()]).await;
    for _ in 0..3 {
        agent.reconcile().await;
    }
    assert_eq!(
        db.ops(),
        Vec::<&str>::new(),
        "a database is never started before the quorum confirms this site is primary"
    );
    // --- step: the quorum (its own witness, alone here) grants the lease
    agent
        .take_lease(0, Duration::from_secs(2))
        .await
        .expect("the own witness grants the primary's lease");
    agent.reconcile().await;
    assert_eq!(db.ops(), ["start"]);
    assert!(db.is_up());
}

#[tokio::test]
async fn a_handover_away_shuts_down_cleanly_instead_of_killing() {
    // --- step: a switchover away from a begins; its database runs
    let db = FakeDb::running();
    let (agent, _store) = agent_of_a(&db, vec![init(), begin(Kind::Switchover)]).await;
    agent.reconcile().await;
    agent.reconcile().await;
    assert_eq!(
        db.ops(),
        ["fence_for_handover"],
        "a kill would lose the standby's catch-up and abort the switchover"
    );
    assert!(!db.is_up());
}

#[tokio::test]
async fn a_handover_fence_order_reports_the_final_position() {
    let db = FakeDb::running();
    db.fake().final_position = Some(0x300_0148);
    let (agent, _store) = agent_of_a(&db, vec![init(), begin(Kind::Switchover)]).await;
    let done = agent
        .clone()
        .act(SiteAction::Fence {
            epoch: 1,
            planned: true,
        })
        .await
        .expect("the fence order is carried out");
    assert_eq!(db.ops(), ["fence_for_handover"]);
    assert_eq!(done.lsn, Some(0x300_0148), "{}", done.detail);
    assert!(
        done.detail.contains("final checkpoint at 0/3000148"),
        "{}",
        done.detail
    );
}
