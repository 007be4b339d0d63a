//! The primary site's witness process lost (SIGKILL, SIGSTOP) while its
//! database is fine: the lease guard keeps the lease on its own, so the
//! database notices nothing; and when a failover is committed meanwhile,
//! the guard learns it from the witnesses' refusals and kills the old
//! primary before anything is promoted (DESIGN rule 2: the lease bounds
//! the primary's writes even when its own witness process is dead).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::FailoverRequest;
use palisade_testkit::cluster::{start_cluster, wait_status, Cluster, FAST, SETTLE, SLOTS};
use palisade_testkit::pg::{PgPair, PgServer};
use palisade_testkit::step;

/// How long the tests leave a witness dead or frozen: several lease TTLs.
const LOST_FOR: Duration = Duration::from_secs(5);

/// Wall-clock times (Unix ms) of every write `server` acknowledged, one
/// session, until it stops answering.
struct LocalWriter {
    acked_ms: Arc<Mutex<Vec<i64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LocalWriter {
    async fn start(server: &PgServer) -> LocalWriter {
        server
            .exec("CREATE TABLE IF NOT EXISTS writes (id bigint PRIMARY KEY)")
            .await
            .expect("create the table");
        let opts = server.connect_options();
        let acked_ms = Arc::new(Mutex::new(Vec::new()));
        let out = acked_ms.clone();
        let task = tokio::spawn(async move {
            use sqlx::ConnectOptions;
            let Ok(mut conn) = opts.connect().await else {
                return;
            };
            for id in 1i64.. {
                let r = tokio::time::timeout(
                    Duration::from_secs(20),
                    sqlx::query("INSERT INTO writes (id) VALUES ($1)")
                        .bind(id)
                        .execute(&mut conn),
                )
                .await;
                match r {
                    Ok(Ok(_)) => out.lock().expect("acks").push(palisade_raft::unix_ms_now()),
                    _ => return,
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        LocalWriter { acked_ms, task }
    }

    fn acked(&self) -> Vec<i64> {
        self.acked_ms.lock().expect("acks").clone()
    }

    async fn wait_acks(&self, n: usize) {
        let deadline = std::time::Instant::now() + SETTLE;
        while self.acked().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer did not get {n} writes acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The longest time between two acknowledgements from `since` on, and
    /// from the last one to now.
    fn longest_gap_since(&self, since: i64) -> i64 {
        let mut acks: Vec<i64> = self.acked().into_iter().filter(|t| *t >= since).collect();
        acks.insert(0, since);
        acks.push(palisade_raft::unix_ms_now());
        acks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
    }
}

async fn start_time(server: &PgServer) -> String {
    server
        .query_text("SELECT pg_postmaster_start_time()::text")
        .await
        .expect("pg_postmaster_start_time()")
        .expect("a start time")
}

/// Writes keep being acknowledged by the primary with no gap over
/// `bound_ms`, the server is the same (not restarted), and no failover
/// happened.
async fn assert_no_outage(c: &Cluster, pair: &PgPair, w: &LocalWriter, since: i64, started: &str) {
    let gap = w.longest_gap_since(since);
    assert!(
        gap <= 500,
        "the primary's writes stopped for {gap} ms while its witness was away"
    );
    assert_eq!(
        start_time(&pair.primary).await,
        started,
        "the primary was restarted"
    );
    for id in [2, 3] {
        let s = palisade_testkit::cluster::status(c, id)
            .await
            .expect("status");
        assert_eq!((s.epoch, s.primary_site.as_str()), (0, "a"), "no failover");
    }
    assert!(!w.task.is_finished(), "the writer's session was cut");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_primary_witness_costs_its_database_nothing() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let mut c = start_cluster(&pair, FAST).await;
    let w = LocalWriter::start(&pair.primary).await;
    w.wait_acks(50).await;
    let started = start_time(&pair.primary).await;

    step("SIGKILL site a's witness; its database must not notice");
    let since = palisade_raft::unix_ms_now();
    c.node(1).kill9();
    tokio::time::sleep(LOST_FOR).await;
    assert_no_outage(&c, &pair, &w, since, &started).await;
    let guard_log = std::fs::read_to_string(c.nodes[0].data_dir.join("lease-guard.order.log"))
        .expect("the lease guard's log");
    assert!(
        guard_log.contains("renews the lease itself"),
        "the guard kept the lease: {guard_log}"
    );

    step("site a's witness returns and takes the lease back");
    c.node(1).start();
    palisade_testkit::cluster::wait_ready(&c).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_no_outage(&c, &pair, &w, since, &started).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_primary_witness_costs_its_database_nothing_and_thaws_harmless() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let c = start_cluster(&pair, FAST).await;
    let w = LocalWriter::start(&pair.primary).await;
    w.wait_acks(50).await;
    let started = start_time(&pair.primary).await;

    step("SIGSTOP site a's witness for several lease TTLs");
    let since = palisade_raft::unix_ms_now();
    c.nodes[0].signal(Signal::SIGSTOP);
    tokio::time::sleep(LOST_FOR).await;
    assert_no_outage(&c, &pair, &w, since, &started).await;

    step("SIGCONT: its own view of the lease ran out meanwhile; it must not fence");
    c.nodes[0].signal(Signal::SIGCONT);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_no_outage(&c, &pair, &w, since, &started).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_with_the_primary_witness_dead_kills_the_old_primary_first() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let mut c = start_cluster(&pair, FAST).await;
    let w = LocalWriter::start(&pair.primary).await;
    w.wait_acks(50).await;

    step("SIGKILL site a's witness; the guard keeps the lease");
    c.node(1).kill9();
    tokio::time::sleep(Duration::from_secs(2)).await;

    step("an operator fails over to b while a's witness is dead");
    let leader = wait_status(&c, "a leader among b and c", SETTLE, |s| {
        s.leader_id.filter(|l| *l != 1)
    })
    .await;
    let mut ctl = ControlClient::new(
        c.nodes[(leader - 1) as usize]
            .control_channel(Duration::from_secs(3), Duration::from_secs(30))
            .await
            .expect("connect"),
    );
    let reply = ctl
        .failover(FailoverRequest {
            to_site: "b".into(),
            who: "carol@test".into(),
            force: true,
            accept_data_loss: true,
            ..Default::default()
        })
        .await
        .expect("failover accepted")
        .into_inner();
    let f = wait_status(&c, "the failover finished", SETTLE, |s| {
        s.last_failover
            .clone()
            .filter(|f| f.epoch == reply.epoch && !f.outcome.is_empty())
    })
    .await;
    assert_eq!(f.outcome, "completed", "{f:?}");
    let fenced = f.steps.iter().find(|s| s.step == "fenced").expect("fenced");
    let promoted = f
        .steps
        .iter()
        .find(|s| s.step == "promoted")
        .expect("promoted");
    assert!(
        fenced.detail.contains("lease expired") && fenced.detail.contains("vouch"),
        "a's agent is dead: the fence is the proven expiry: {}",
        fenced.detail
    );

    step("the old primary was killed by its guard, before the promotion");
    let last_ack_at_a = w.acked().last().copied().expect("acks at a");
    assert!(
        last_ack_at_a < fenced.done_at_ms && last_ack_at_a < promoted.started_at_ms,
        "old primary a acknowledged a write at {last_ack_at_a}, after its fence was recorded at {} (promotion began at {})",
        fenced.done_at_ms,
        promoted.started_at_ms
    );
    assert!(
        pair.primary.in_recovery().await.is_err(),
        "the old primary no longer answers"
    );
    let guard_log = std::fs::read_to_string(c.nodes[0].data_dir.join("lease-guard.order.log"))
        .expect("the lease guard's log");
    assert!(
        guard_log.contains("KILLED the database"),
        "the guard killed it: {guard_log}"
    );
}
