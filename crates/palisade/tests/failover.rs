//! Unattended PostgreSQL failover end to end: three real witness processes,
//! a real primary/standby pair (PostgreSQL 15, streaming as the guide sets
//! it up), real kills. Each test owns its pair and its cluster.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use palisade_testkit::cluster::{
    db_config, move_leadership_off, start_cluster, status, wait_ready, wait_status, Cluster, FAST,
    SETTLE, SLOTS,
};
use palisade_testkit::pg::{PgPair, PgPairOptions, PgServer};
use palisade_testkit::step;

/// Rows `1..` inserted one by one into `writes` on `server` until it stops
/// answering; returns the ids the server acknowledged.
fn start_writer(server: &PgServer) -> (Arc<Mutex<Vec<i64>>>, tokio::task::JoinHandle<()>) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let opts = server.connect_options();
    let out = acked.clone();
    let handle = tokio::spawn(async move {
        use sqlx::ConnectOptions;
        let Ok(mut conn) = opts.connect().await else {
            return;
        };
        if sqlx::query("CREATE TABLE IF NOT EXISTS writes (id bigint PRIMARY KEY)")
            .execute(&mut conn)
            .await
            .is_err()
        {
            return;
        }
        for id in 1i64.. {
            match sqlx::query("INSERT INTO writes (id) VALUES ($1)")
                .bind(id)
                .execute(&mut conn)
                .await
            {
                Ok(_) => out.lock().expect("acked lock").push(id),
                Err(_) => return,
            }
        }
    });
    (acked, handle)
}

/// Waits until the writer has `n` acknowledged rows.
async fn wait_acked(acked: &Arc<Mutex<Vec<i64>>>, n: usize) {
    let deadline = Instant::now() + SETTLE;
    while acked.lock().expect("acked").len() < n {
        assert!(
            Instant::now() < deadline,
            "the writer did not get {n} rows acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long tests watch for something that must not happen (a failover).
const WATCH: Duration = Duration::from_secs(4);

async fn ids_on(server: &PgServer) -> Vec<i64> {
    let pool = server.pool().await.expect("connect to the new primary");
    sqlx::query_scalar::<_, i64>("SELECT id FROM writes ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("read writes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn primary_crash_with_failover_policy_promotes_the_standby_and_fences_the_old_primary() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let c = start_cluster(
        &pair,
        &format!("{FAST}\n[failover]\non_primary_crash = \"failover\"\n"),
    )
    .await;

    step("SIGKILL the primary postmaster");
    pair.primary.kill9();
    let f = wait_status(&c, "the failover to b completed", SETTLE, |s| {
        s.last_failover.clone().filter(|f| !f.outcome.is_empty())
    })
    .await;
    assert_eq!(f.outcome, "completed", "{f:?}");
    assert_eq!(
        (f.from_site.as_str(), f.to_site.as_str(), f.epoch),
        ("a", "b", 1)
    );
    assert_eq!(
        f.steps.iter().map(|s| s.step.as_str()).collect::<Vec<_>>(),
        vec!["fenced", "promoted", "app-flipped", "repointed", "verified"]
    );
    // The agent is alive and stops what is left of its database; the lease
    // may still run out first (a killed postmaster lingers until reaped),
    // and either is a valid fence.
    let fence = &f.steps[0].detail;
    assert!(
        fence.contains("site agent") || fence.starts_with("lease expired"),
        "{fence}"
    );

    step("the writer resumes on the new primary");
    assert!(!pair.standby.in_recovery().await.expect("query b"));
    pair.standby
        .exec("CREATE TABLE after_failover (x int); INSERT INTO after_failover VALUES (1)")
        .await
        .expect("write on b");

    step("the old primary, started again by hand, is fenced by its agent");
    // pg_ctl may even report failure: the agent can stop the server while
    // pg_ctl still waits for it to come up.
    let guard_log_file = c.nodes[0].data_dir.join("lease-guard.order.log");
    let guard_log_before = std::fs::read_to_string(&guard_log_file)
        .unwrap_or_default()
        .len();
    let witness_log_before = c.nodes[0].log_text().len();
    let started = pair.primary.start();
    eprintln!("--- pg_ctl start of the old primary: {started:?}");
    let deadline = Instant::now() + SETTLE;
    while pair.primary.is_running() {
        assert!(
            Instant::now() < deadline,
            "site a's agent did not fence its returning database"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(WATCH).await;
    assert!(!pair.primary.is_running(), "the old primary stays fenced");
    // When the server did come up (pg_ctl may give up first, while the
    // killed postmaster is still being reaped), whoever stopped it says
    // why: its agent, or (when the guard still held its hard order from
    // the failover and was quicker than the agent's next look) its lease
    // guard.
    if started.is_ok() {
        // Only what was logged since the manual start counts.
        let guard_log = std::fs::read_to_string(&guard_log_file).unwrap_or_default();
        let guard_since = guard_log.get(guard_log_before..).unwrap_or_default();
        let witness_log = c.nodes[0].log_text();
        let witness_since = witness_log.get(witness_log_before..).unwrap_or_default();
        assert!(
            witness_since.contains("this site must be fenced")
                || guard_since.contains("lease guard: KILLED the database"),
            "site a's agent or its lease guard says why it stopped it; witness log since:\n{witness_since}\nguard log since:\n{guard_since}"
        );
    }
    let s = status(&c, 1).await.expect("status");
    assert_eq!(
        (
            s.primary_site.as_str(),
            s.standby_site.as_str(),
            s.standby_needs_rejoin
        ),
        ("b", "a", true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn primary_crash_with_restart_policy_is_restarted_in_place() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let c = start_cluster(
        &pair,
        &format!("{FAST}\n[failover]\nrestart_budget_ms = 20000\n"),
    )
    .await;
    step("SIGKILL the primary postmaster");
    let killed = Instant::now();
    pair.primary.kill9();
    let deadline = Instant::now() + SETTLE;
    loop {
        if pair.primary.is_running() && !pair.primary.in_recovery().await.unwrap_or(true) {
            break;
        }
        assert!(Instant::now() < deadline, "not restarted in place");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "--- restarted in place after {} ms",
        killed.elapsed().as_millis()
    );
    pair.primary
        .exec("CREATE TABLE after_restart (x int)")
        .await
        .expect("primary writable again");
    let s = status(&c, 1).await.expect("status");
    assert_eq!((s.epoch, s.primary_site.as_str()), (0, "a"), "no failover");
    assert!(s.last_failover.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unusable_primary_fails_over_after_the_restart_budget() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let budget = 3000;
    let c = start_cluster(
        &pair,
        &format!("{FAST}\n[failover]\nrestart_budget_ms = {budget}\n"),
    )
    .await;
    step("make the primary's data dir unusable, then SIGKILL it");
    let conf = pair.primary.data_dir().join("postgresql.conf");
    std::fs::rename(&conf, conf.with_extension("conf.hidden")).expect("hide postgresql.conf");
    pair.primary.kill9();
    let f = wait_status(&c, "the failover to b completed", SETTLE, |s| {
        s.last_failover.clone().filter(|f| !f.outcome.is_empty())
    })
    .await;
    let evidence: serde_json::Value =
        serde_json::from_str(&f.evidence_json).expect("evidence json");
    let down_for = evidence["down_for_ms"].as_u64().expect("down_for_ms");
    assert!(
        down_for >= budget,
        "failed over after {down_for} ms, before the restart budget of {budget} ms"
    );
    assert_eq!(evidence["primary_agent_alive"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn site_loss_fails_over_only_after_the_lease_ran_out() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let ttl = 1500u64;
    let mut c = Cluster::with_config(&db_config(&pair, &format!("{FAST}\n[failover]\n")));
    for n in &mut c.nodes {
        n.start();
    }
    wait_ready(&c).await;
    // The witness at site a must not be the leader, or the test would also
    // be a leader loss.
    move_leadership_off(&mut c, 1).await;
    step("site a lost: its witness and its database SIGKILLed together");
    let killed_wall = palisade_raft::unix_ms_now();
    c.node(1).kill9();
    pair.primary.kill9();
    let f = wait_status(&c, "the failover to b completed", SETTLE, |s| {
        s.last_failover.clone().filter(|f| !f.outcome.is_empty())
    })
    .await;
    assert_eq!(f.outcome, "completed");
    assert!(
        f.steps[0].detail.starts_with("lease expired"),
        "{}",
        f.steps[0].detail
    );
    // The leader's last grant to a was at most one renewal interval
    // (ttl / 4) before the kill; it must wait ttl × 1.1 past that grant.
    let promoted_at = f.steps[1].started_at_ms;
    let earliest = killed_wall + (ttl as f64 * 1.1) as i64 - (ttl / 4) as i64;
    assert!(
        promoted_at >= earliest,
        "promotion began {} ms after the kill, before the lease could have run out",
        promoted_at - killed_wall
    );
    let evidence: serde_json::Value =
        serde_json::from_str(&f.evidence_json).expect("evidence json");
    assert_eq!(evidence["primary_agent_alive"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standby_lag_over_max_lag_blocks_automatic_failover() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let c = start_cluster(
        &pair,
        &format!("{FAST}\n[failover]\non_primary_crash = \"failover\"\nmax_lag_bytes = 65536\n"),
    )
    .await;
    step("cut the standby's replication, then write 1 MiB on the primary");
    pair.standby
        .exec("ALTER SYSTEM SET primary_conninfo = ''")
        .await
        .expect("alter standby");
    pair.standby
        .exec("SELECT pg_reload_conf()")
        .await
        .expect("reload standby");
    pair.primary
        .exec(
            "CREATE TABLE filler AS SELECT repeat('x', 1000) AS pad FROM generate_series(1, 2000)",
        )
        .await
        .expect("write");
    let written = pair.primary.current_wal_lsn().await.expect("primary lsn");
    let target = palisade_core::observe::format_lsn(written);
    wait_status(
        &c,
        "every witness has seen the primary's new position",
        SETTLE,
        |s| {
            s.nodes
                .iter()
                .all(|n| {
                    n.databases.iter().any(|d| {
                        d.site == "a"
                            && palisade_core::observe::parse_lsn(&d.lsn)
                                .is_some_and(|l| l >= written)
                    })
                })
                .then_some(())
        },
    )
    .await;
    eprintln!("--- primary at {target}");
    step("SIGKILL the primary: the failover must be refused, with the reason");
    pair.primary.kill9();
    let reason = wait_status(&c, "the detector blocks", SETTLE, |s| {
        s.assessment
            .starts_with("blocked")
            .then(|| s.assessment.clone())
    })
    .await;
    assert!(reason.contains("max_lag_bytes"), "{reason}");
    tokio::time::sleep(WATCH).await;
    let s = status(&c, 2).await.expect("status");
    assert_eq!(s.epoch, 0, "no failover happened");
    assert!(
        pair.standby.in_recovery().await.expect("standby answers"),
        "standby not promoted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_mode_loses_no_acknowledged_write() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start_with(PgPairOptions { synchronous: true })
        .await
        .expect("PostgreSQL pair");
    let c = start_cluster(
        &pair,
        &format!("{FAST}\n[failover]\non_primary_crash = \"failover\"\nreplication = \"sync\"\n"),
    )
    .await;
    wait_status(
        &c,
        "the primary's agent keeps sync mode in force",
        SETTLE,
        |s| (s.replication_mode == "sync").then_some(()),
    )
    .await;
    let (acked, writer) = start_writer(&pair.primary);
    wait_acked(&acked, 200).await;
    step("SIGKILL the primary under write load");
    pair.primary.kill9();
    let _ = writer.await;
    wait_status(&c, "failover completed", SETTLE, |s| {
        s.last_failover.clone().filter(|f| f.outcome == "completed")
    })
    .await;
    // The new primary has no standby (the old one must rejoin first): with
    // the default sync_standby_down = "degrade" it says so.
    wait_status(&c, "degraded mode reported", SETTLE, |s| {
        s.replication_mode
            .starts_with("async (degraded")
            .then_some(())
    })
    .await;
    let acked = acked.lock().expect("acked").clone();
    assert!(acked.len() > 10, "the writer wrote ({} rows)", acked.len());
    let on_b = ids_on(&pair.standby).await;
    let lost: Vec<i64> = acked
        .iter()
        .copied()
        .filter(|id| on_b.binary_search(id).is_err())
        .collect();
    eprintln!(
        "--- sync: {} acknowledged, {} lost",
        acked.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "acknowledged writes lost in sync mode: {lost:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_mode_loss_is_measured_and_within_the_bound() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let c = start_cluster(
        &pair,
        &format!("{FAST}\n[failover]\non_primary_crash = \"failover\"\n"),
    )
    .await;
    let (acked, writer) = start_writer(&pair.primary);
    wait_acked(&acked, 200).await;
    step("SIGKILL the primary under write load");
    pair.primary.kill9();
    let _ = writer.await;
    let f = wait_status(&c, "failover completed", SETTLE, |s| {
        s.last_failover.clone().filter(|f| f.outcome == "completed")
    })
    .await;
    let acked = acked.lock().expect("acked").clone();
    assert!(acked.len() > 10, "the writer wrote ({} rows)", acked.len());
    let on_b = ids_on(&pair.standby).await;
    let lost: Vec<i64> = acked
        .iter()
        .copied()
        .filter(|id| on_b.binary_search(id).is_err())
        .collect();
    eprintln!(
        "--- async: {} acknowledged, {} lost ({:?})",
        acked.len(),
        lost.len(),
        lost.first()
    );
    // Documented bound (docs/configuration.md, replication): asynchronous
    // streaming can lose only the tail the standby had not received when the
    // primary died: here, only the last writes, never an older one.
    if let Some(first_lost) = lost.first() {
        assert!(
            lost.iter().all(|id| id >= first_lost) && acked.len() as i64 - first_lost < 1000,
            "loss beyond the tail: {lost:?}"
        );
    }
    let evidence: serde_json::Value = serde_json::from_str(&f.evidence_json).expect("evidence");
    assert!(
        evidence["known_lag_bytes"].is_u64(),
        "the failover records the known lag: {evidence}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_killed_between_fenced_and_promoted_is_finished_by_the_next_leader() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let mut c = Cluster::with_config(&db_config(
        &pair,
        &format!("{FAST}\n[failover]\non_primary_crash = \"failover\"\n"),
    ));
    for n in &mut c.nodes {
        n.start_with_env(&[("PALISADE_FAILPOINTS", "after-step-fenced=exit")]);
    }
    wait_ready(&c).await;
    let leader = wait_status(&c, "a leader", SETTLE, |s| s.leader_id).await;
    step(&format!(
        "SIGKILL the primary; leader {leader} exits right after committing 'fenced'"
    ));
    pair.primary.kill9();
    let code = c.node(leader).wait_exit(SETTLE).await;
    assert_eq!(code, Some(86), "the leader stopped at the failpoint");
    step("restart the exited witness (its site's agent may be needed) without the failpoint");
    c.node(leader).start();
    let f = wait_status(
        &c,
        "the failover completed by the next leader",
        SETTLE,
        |s| s.last_failover.clone().filter(|f| !f.outcome.is_empty()),
    )
    .await;
    assert_eq!(f.outcome, "completed");
    assert_eq!(f.epoch, 1, "the epoch rose once");
    assert_eq!(f.steps.iter().filter(|s| s.step == "promoted").count(), 1);
    let epochs = pair
        .standby
        .query_i64("SELECT count(*) FROM palisade.epoch")
        .await
        .expect("epoch table");
    assert_eq!(epochs, 1, "promoted exactly once");
    let s = status(&c, 1).await.expect("status");
    assert_eq!(s.epoch, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_witness_cut_off_from_the_primary_is_no_failover() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let mut c = Cluster::with_config(&db_config(
        &pair,
        &format!("{FAST}\n[failover]\non_primary_crash = \"failover\"\n"),
    ));
    step("witness c probes site a's database on a dead port");
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let cfg = c.nodes[2].config.clone();
    let text = std::fs::read_to_string(&cfg).expect("read");
    std::fs::write(
        &cfg,
        text.replace(&format!(":{}/", pair.primary.port()), &format!(":{dead}/")),
    )
    .expect("write");
    for n in &mut c.nodes {
        n.start();
    }
    wait_ready(&c).await;
    tokio::time::sleep(WATCH).await;
    let s = wait_status(&c, "leader's assessment", SETTLE, |s| {
        (!s.assessment.is_empty()).then(|| s.clone())
    })
    .await;
    // Usually "healthy: 1 of 3 witnesses see the primary down"; on a loaded
    // machine another witness's probe may time out once, which changes the
    // count but never the verdict.
    assert!(s.assessment.starts_with("healthy"), "{}", s.assessment);
    assert_eq!(s.epoch, 0);
    let c_view = s.nodes.iter().find(|n| n.id == 3).expect("node 3");
    let a_from_c = c_view
        .databases
        .iter()
        .find(|d| d.site == "a")
        .expect("c's view of a");
    assert!(!a_from_c.reachable, "c sees a down: {a_from_c:?}");
    let _ = Signal::SIGTERM;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn site_loss_with_a_stonith_hook_is_fenced_by_the_hook() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let marker = pair.dir().join("stonith-fired");
    let hook = format!(
        "[[stonith]]\nsite = \"a\"\ncommand = [\"/bin/sh\", \"-c\", \"echo {{epoch}} {{site}} > {}\"]\ntimeout_ms = 5000\n",
        marker.display()
    );
    // A lease long enough that the witnesses cannot vouch for its end
    // before the hook answers: the hook, fired once the lost site's agent
    // fails to confirm, is what fences (a proof by lease expiry would be
    // just as safe, and would win a race with a slow hook).
    let settings = "[probe]\ninterval_ms = 200\n\n[lease]\nttl_ms = 8000\n";
    let mut c = Cluster::with_config(&format!("{}\n{hook}", db_config(&pair, settings)));
    for n in &mut c.nodes {
        n.start();
    }
    wait_ready(&c).await;
    move_leadership_off(&mut c, 1).await;
    step("site a lost; the leader's STONITH hook confirms the fence");
    c.node(1).kill9();
    pair.primary.kill9();
    let f = wait_status(&c, "the failover to b completed", SETTLE, |s| {
        s.last_failover.clone().filter(|f| !f.outcome.is_empty())
    })
    .await;
    assert!(
        f.steps[0].detail.starts_with("fenced by STONITH of a"),
        "{}",
        f.steps[0].detail
    );
    assert_eq!(
        std::fs::read_to_string(&marker).expect("hook ran").trim(),
        "1 a"
    );
}

/// The postmaster of `server` and every process it started.
fn server_processes(server: &PgServer) -> Vec<i32> {
    let Some(postmaster) = server.postmaster_pid() else {
        return Vec::new();
    };
    let mut pids = vec![postmaster];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // Field 4 of /proc/<pid>/stat, after the parenthesised name.
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split(' ').nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_primary_is_fenced_and_never_writable_after_it_thaws() {
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let c = start_cluster(
        &pair,
        &format!("{FAST}\n[failover]\non_primary_crash = \"failover\"\n"),
    )
    .await;
    let (acked, writer) = start_writer(&pair.primary);
    wait_acked(&acked, 100).await;

    step("freeze the whole primary (postmaster and every backend, as a VM pause would)");
    let frozen = server_processes(&pair.primary);
    assert!(frozen.len() > 3, "postmaster and its children: {frozen:?}");
    for pid in &frozen {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGSTOP);
    }
    let acked_when_frozen = acked.lock().expect("acked").len();
    let f = wait_status(&c, "the failover to b completed", SETTLE, |s| {
        s.last_failover.clone().filter(|f| !f.outcome.is_empty())
    })
    .await;
    assert_eq!(f.outcome, "completed", "{f:?}");
    eprintln!("--- fenced: {}", f.steps[0].detail);

    step("thaw it: whatever is left must not take a write");
    for pid in &frozen {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGCONT);
    }
    let _ = tokio::time::timeout(SETTLE, writer)
        .await
        .expect("the writer's session ended");
    let acked_after = acked.lock().expect("acked").len();
    assert!(
        acked_after <= acked_when_frozen + 1,
        "the old primary acknowledged {} writes after it was frozen and failed over",
        acked_after - acked_when_frozen
    );
    tokio::time::sleep(WATCH).await;
    assert!(!pair.primary.is_running(), "the old primary stays down");
    assert!(
        !pair.standby.in_recovery().await.expect("b answers"),
        "b is the primary"
    );
}

/// The chaos suite's freeze scenario, on loopback: in sync mode the
/// primary's agent reacts to the frozen server by clearing
/// `synchronous_standby_names`, an `ALTER SYSTEM` that hangs until the
/// server thaws. The server is thawed the moment the failover begins, with
/// a client session still open on it. Its lease must still kill it before
/// the leader records the fence by lease expiry: no write may commit on it
/// after the `fenced` step's time (server clock = this host's clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_thawed_mid_failover_commits_nothing_after_its_recorded_fence() {
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let c = start_cluster(
        &pair,
        &format!(
            "{FAST}\n[failover]\non_primary_crash = \"failover\"\nreplication = \"sync\"\nsync_standby_down = \"degrade\"\n"
        ),
    )
    .await;
    // Each write returns the server's clock at the insert.
    let commits = Arc::new(Mutex::new(Vec::<i64>::new()));
    let opts = pair.primary.connect_options();
    let out = commits.clone();
    let writer = tokio::spawn(async move {
        use sqlx::ConnectOptions;
        let mut conn = opts.connect().await.expect("connect to a");
        sqlx::query("CREATE TABLE stamped (id bigserial PRIMARY KEY, at_ms bigint)")
            .execute(&mut conn)
            .await
            .expect("create");
        loop {
            let r: Result<i64, _> = sqlx::query_scalar(
                "INSERT INTO stamped (at_ms) VALUES ((extract(epoch from clock_timestamp()) * 1000)::bigint) RETURNING at_ms",
            )
            .fetch_one(&mut conn)
            .await;
            match r {
                Ok(at) => out.lock().expect("commits").push(at),
                Err(_) => return,
            }
        }
    });
    let deadline = Instant::now() + SETTLE;
    while commits.lock().expect("commits").len() < 100 {
        assert!(Instant::now() < deadline, "the writer got no writes in");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    step("freeze the whole primary; thaw it as soon as the failover begins");
    let frozen = server_processes(&pair.primary);
    for pid in &frozen {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGSTOP);
    }
    wait_status(&c, "a failover began", SETTLE, |s| {
        s.failover_in_progress.as_ref().map(|_| ())
    })
    .await;
    for pid in &frozen {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGCONT);
    }
    let f = wait_status(&c, "the failover completed", SETTLE, |s| {
        s.last_failover.clone().filter(|f| !f.outcome.is_empty())
    })
    .await;
    assert_eq!(f.outcome, "completed", "{f:?}");
    let fenced = &f.steps[0];
    eprintln!("--- fenced at {}: {}", fenced.done_at_ms, fenced.detail);
    let _ = tokio::time::timeout(SETTLE, writer)
        .await
        .expect("the writer's session ended");
    let late: Vec<i64> = commits
        .lock()
        .expect("commits")
        .iter()
        .copied()
        .filter(|at| *at > fenced.done_at_ms)
        .collect();
    assert!(
        late.is_empty(),
        "the old primary committed {} writes after its fence was recorded at {}: {late:?}",
        late.len(),
        fenced.done_at_ms
    );
}
