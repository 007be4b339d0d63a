//! Smoke tests of the PostgreSQL pair harness against real servers.

use std::time::{Duration, Instant};

use palisade_testkit::pg::{PgPair, PgPairOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_pair_replicates_and_a_killed_primary_is_down() {
    let started = Instant::now();
    let pair = PgPair::start().await.expect("start the pair");
    eprintln!(
        "--- pair streaming after {:?} in {}",
        started.elapsed(),
        pair.dir().display()
    );

    assert!(!pair.primary.in_recovery().await.expect("primary answers"));
    assert!(pair.standby.in_recovery().await.expect("standby answers"));
    assert_eq!(
        pair.primary.os_user().is_some(),
        pair.standby.os_user().is_some()
    );

    eprintln!("--- a row written on the primary shows up on the standby");
    pair.primary
        .exec("CREATE TABLE smoke (id int PRIMARY KEY, v text); INSERT INTO smoke VALUES (1, 'hello')")
        .await
        .expect("write on primary");
    pair.wait_replayed(Duration::from_secs(10))
        .await
        .expect("standby catches up");
    let v = pair
        .standby
        .query_text("SELECT v FROM smoke WHERE id = 1")
        .await
        .expect("read on standby");
    assert_eq!(v.as_deref(), Some("hello"));

    eprintln!("--- the standby is read-only");
    let err = pair
        .standby
        .exec("INSERT INTO smoke VALUES (2, 'no')")
        .await
        .expect_err("standby refuses writes");
    assert!(format!("{err:#}").contains("read-only"), "{err:#}");

    eprintln!("--- kill -9 the primary");
    let pid = pair
        .primary
        .postmaster_pid()
        .expect("primary has a postmaster");
    pair.primary.kill9();
    assert!(
        !pair.primary.is_running(),
        "primary still running after kill9"
    );
    assert_eq!(
        pair.primary.postmaster_pid(),
        None,
        "stale pid {pid} still reported"
    );
    assert!(
        std::net::TcpStream::connect(pair.primary.addr()).is_err(),
        "port still open"
    );

    eprintln!("--- it restarts from its crash state and the standby reconnects");
    pair.primary.start().expect("restart after crash");
    pair.wait_streaming(Duration::from_secs(20))
        .await
        .expect("standby streams again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_pair_reports_a_sync_standby_and_stops_cleanly() {
    let pair = PgPair::start_with(PgPairOptions { synchronous: true })
        .await
        .expect("start the pair");
    let state = pair
        .primary
        .query_text("SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'")
        .await
        .expect("query primary");
    assert_eq!(state.as_deref(), Some("sync"));
    // A synchronous commit returns only once the standby has it.
    pair.primary
        .exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        .await
        .expect("commit");

    eprintln!("--- a frozen server is still cleaned up on drop");
    pair.standby.sigstop();
    let pids = [pair.primary.postmaster_pid(), pair.standby.postmaster_pid()];
    let dir = pair.dir().to_owned();
    drop(pair);
    for pid in pids.into_iter().flatten() {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid),
            "postmaster {pid} left behind"
        );
    }
    assert!(!dir.exists(), "{} left behind", dir.display());
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}
