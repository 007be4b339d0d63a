//! The MariaDB probe against real master-master pairs
//! (`palisade_testkit::mariadb`).

use std::time::{Duration, Instant};

use palisade_core::master_master::{MariaObservation, ReplicaThreads, SemiSync};
use palisade_core::observe::{ErrorClass, Reachability};
use palisade_probe::mariadb::MariaProbe;
use palisade_testkit::mariadb::{
    MariaPair, MariaPairOptions, MariaServer, MARIA_ADMIN_USER, MARIA_APP_PASSWORD, MARIA_APP_USER,
};
use palisade_testkit::{step, wait_for, Attempt};

const TIMEOUT: Duration = Duration::from_secs(2);
const PATIENCE: Duration = Duration::from_secs(30);

fn probe_of(server: &MariaServer) -> MariaProbe {
    MariaProbe::new(&server.admin_dsn(), TIMEOUT).expect("the harness's DSNs are valid")
}

fn down_class(o: &MariaObservation) -> Option<ErrorClass> {
    match &o.reachability {
        Reachability::Up => None,
        Reachability::Down { class, .. } => Some(*class),
    }
}

fn down_detail(o: &MariaObservation) -> String {
    match &o.reachability {
        Reachability::Up => String::new(),
        Reachability::Down { detail, .. } => detail.clone(),
    }
}

fn replica(o: &MariaObservation) -> &ReplicaThreads {
    o.replica
        .as_ref()
        .unwrap_or_else(|| panic!("no replica threads: {o:#?}"))
}

/// Probes until `check` holds and returns that observation; fails naming
/// `what` and the last observation after 30 s.
async fn probe_until(
    probe: &MariaProbe,
    what: &str,
    check: impl Fn(&MariaObservation) -> bool,
) -> MariaObservation {
    wait_for(what, PATIENCE, async || {
        let o = probe.probe().await;
        if check(&o) {
            Attempt::Ready(o)
        } else {
            Attempt::NotYet(format!("{o:?}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Writes on `a`, then on `b`, and waits until both have applied it all.
async fn write_both_ways(pair: &MariaPair) {
    pair.a
        .exec(
            "CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB;\
             INSERT INTO app.t (v) VALUES ('a1'), ('a2');",
        )
        .await
        .expect("write on a");
    pair.wait_in_sync().await.expect("b applies a's writes");
    pair.b
        .exec("INSERT INTO app.t (v) VALUES ('b1')")
        .await
        .expect("write on b");
    pair.wait_in_sync().await.expect("a applies b's write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_pair_shows_both_directions_replicating_and_in_sync() {
    let pair = MariaPair::start().await.expect("pair starts");
    write_both_ways(&pair).await;

    step("probe both masters");
    let a = probe_of(&pair.a).probe().await;
    let b = probe_of(&pair.b).probe().await;
    for (o, me, other, offset) in [(&a, &pair.a, &pair.b, 1), (&b, &pair.b, &pair.a, 2)] {
        let name = me.name();
        assert_eq!(o.reachability, Reachability::Up, "{name}: {o:#?}");
        assert_eq!(
            o.read_only,
            Some(false),
            "{name}: the guide sets no read_only"
        );
        assert!(o.is_writable(), "{name}");
        assert_eq!(
            o.super_read_only, None,
            "{name}: MariaDB has no super_read_only"
        );
        assert_eq!(o.server_id, Some(me.server_id()), "{name}");
        assert_eq!(o.auto_increment_increment, Some(2), "{name}");
        assert_eq!(o.auto_increment_offset, Some(offset), "{name}");
        assert!(
            o.binlog_file
                .as_deref()
                .is_some_and(|f| f.starts_with("mysql-bin.")),
            "{name}: {o:#?}"
        );
        assert!(o.binlog_position.is_some_and(|p| p > 4), "{name}: {o:#?}");
        let r = replica(o);
        assert_eq!(r.master_host, "127.0.0.1", "{name}");
        assert_eq!(r.master_port, other.port(), "{name}");
        assert_eq!(
            r.master_server_id,
            Some(other.server_id()),
            "{name}: {r:#?}"
        );
        assert!(r.io_streaming(), "{name}: {r:#?}");
        assert!(r.sql_running, "{name}: {r:#?}");
        assert!(r.executed_all_received(), "{name}: {r:#?}");
        assert_eq!(r.seconds_behind_master, Some(0), "{name}: {r:#?}");
        assert_eq!(
            r.using_gtid, "No",
            "{name}: the guide replicates by file and position"
        );
        assert_eq!(r.gtid_io_pos, "", "{name}");
        assert_eq!(
            (r.last_io_error.as_str(), r.last_sql_error.as_str()),
            ("", ""),
            "{name}"
        );
        let semi = o
            .semi_sync
            .as_ref()
            .expect("MariaDB 10.3+ has semi-sync built in");
        assert!(
            !semi.master_enabled && !semi.slave_enabled,
            "{name}: {semi:?}"
        );
        assert!(!semi.master_active, "{name}: {semi:?}");
    }
    step("each one's read coordinates are the other's binary log position");
    assert_eq!(
        (
            Some(replica(&b).master_log_file.clone()),
            Some(replica(&b).read_master_log_pos)
        ),
        (a.binlog_file.clone(), a.binlog_position)
    );
    assert_eq!(
        (
            Some(replica(&a).master_log_file.clone()),
            Some(replica(&a).read_master_log_pos)
        ),
        (b.binlog_file.clone(), b.binlog_position)
    );

    step("GTIDs: positions known and equal once in sync");
    for o in [&a, &b] {
        for pos in [
            &o.gtid_binlog_pos,
            &o.gtid_binlog_state,
            &o.gtid_slave_pos,
            &o.gtid_current_pos,
        ] {
            assert!(pos.as_deref().is_some_and(|p| !p.is_empty()), "{o:#?}");
        }
    }
    assert_eq!(a.gtid_current_pos, b.gtid_current_pos, "{a:#?}\n{b:#?}");
    // File/position replication (Using_Gtid = No) still records the GTIDs
    // applied in gtid_slave_pos.
    assert_eq!(b.gtid_slave_pos, a.gtid_binlog_pos, "{a:#?}\n{b:#?}");
    assert_eq!(a.gtid_slave_pos, b.gtid_binlog_pos, "{a:#?}\n{b:#?}");
    eprintln!(
        "observed GTIDs after a wrote (DDL + 1 insert), then b wrote 1 insert:\n  \
         a: binlog_pos {:?} binlog_state {:?} slave_pos {:?} current_pos {:?}\n  \
         b: binlog_pos {:?} binlog_state {:?} slave_pos {:?} current_pos {:?}",
        a.gtid_binlog_pos,
        a.gtid_binlog_state,
        a.gtid_slave_pos,
        a.gtid_current_pos,
        b.gtid_binlog_pos,
        b.gtid_binlog_state,
        b.gtid_slave_pos,
        b.gtid_current_pos
    );

    step("read_only on b shows, and b is no longer writable");
    pair.b
        .exec("SET GLOBAL read_only = ON")
        .await
        .expect("read_only");
    let b = probe_of(&pair.b).probe().await;
    assert_eq!(b.read_only, Some(true), "{b:#?}");
    assert!(!b.is_writable());

    step("STOP SLAVE on b shows both of its threads stopped");
    pair.b.exec("STOP SLAVE").await.expect("stop slave");
    let b = probe_of(&pair.b).probe().await;
    let r = replica(&b);
    assert_eq!(r.io_running, "No", "{r:#?}");
    assert!(!r.sql_running, "{r:#?}");
    assert!(!r.io_streaming());
    assert_eq!(r.seconds_behind_master, None, "{r:#?}");
    assert_eq!(
        r.master_server_id,
        Some(1),
        "kept from the last connection: {r:#?}"
    );

    step("RESET SLAVE ALL on b: it replicates from nobody");
    pair.b
        .exec("RESET SLAVE ALL")
        .await
        .expect("reset slave all");
    let b = probe_of(&pair.b).probe().await;
    assert_eq!(b.reachability, Reachability::Up);
    assert_eq!(b.replica, None, "{b:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_missing_privileges_are_auth() {
    let pair = MariaPair::start().await.expect("pair starts");
    let wrong = pair.a.dsn_as(MARIA_ADMIN_USER, "not-the-password", "");
    let o = MariaProbe::new(&wrong, TIMEOUT)
        .expect("valid")
        .probe()
        .await;
    assert_eq!(down_class(&o), Some(ErrorClass::Auth), "{o:#?}");
    assert!(!down_detail(&o).contains("not-the-password"), "{o:#?}");

    step("the app user lacks SLAVE MONITOR and BINLOG MONITOR");
    let app = pair.a.dsn_as(MARIA_APP_USER, MARIA_APP_PASSWORD, "app");
    let o = MariaProbe::new(&app, TIMEOUT).expect("valid").probe().await;
    assert_eq!(down_class(&o), Some(ErrorClass::Auth), "{o:#?}");
    let detail = down_detail(&o);
    assert!(
        detail.contains("SHOW MASTER STATUS") && detail.contains("BINLOG MONITOR"),
        "{detail}"
    );

    step("a probe user with just BINLOG MONITOR and SLAVE MONITOR sees everything");
    pair.a
        .exec(
            "SET sql_log_bin = 0;\
             CREATE USER 'probe'@'127.0.0.1' IDENTIFIED BY 'probe-pw';\
             GRANT BINLOG MONITOR, SLAVE MONITOR ON *.* TO 'probe'@'127.0.0.1';",
        )
        .await
        .expect("create the probe user");
    let probe = pair.a.dsn_as("probe", "probe-pw", "");
    let o = MariaProbe::new(&probe, TIMEOUT)
        .expect("valid")
        .probe()
        .await;
    assert_eq!(o.reachability, Reachability::Up, "{o:#?}");
    assert_eq!(replica(&o).master_server_id, Some(2), "{o:#?}");
    assert!(o.binlog_position.is_some(), "{o:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semi_sync_shows_enabled_and_active_on_both() {
    let pair = MariaPair::start_with(MariaPairOptions {
        semi_sync: true,
        ..MariaPairOptions::default()
    })
    .await
    .expect("pair starts");
    write_both_ways(&pair).await;
    for server in [&pair.a, &pair.b] {
        let o = probe_of(server).probe().await;
        assert_eq!(
            o.semi_sync,
            Some(SemiSync {
                master_enabled: true,
                master_active: true,
                master_timeout_ms: 10_000,
                slave_enabled: true,
                master_clients: 1,
            }),
            "{}: {o:#?}",
            server.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_log_slave_updates_each_binlog_holds_both_masters_writes() {
    let pair = MariaPair::start_with(MariaPairOptions {
        log_slave_updates: true,
        gtid_strict_mode: true,
        ..MariaPairOptions::default()
    })
    .await
    .expect("pair starts");
    write_both_ways(&pair).await;
    let a = probe_of(&pair.a).probe().await;
    let b = probe_of(&pair.b).probe().await;
    eprintln!(
        "observed GTIDs with log_slave_updates and gtid_strict_mode:\n  \
         a: binlog_pos {:?} binlog_state {:?} slave_pos {:?} current_pos {:?}\n  \
         b: binlog_pos {:?} binlog_state {:?} slave_pos {:?} current_pos {:?}",
        a.gtid_binlog_pos,
        a.gtid_binlog_state,
        a.gtid_slave_pos,
        a.gtid_current_pos,
        b.gtid_binlog_pos,
        b.gtid_binlog_state,
        b.gtid_slave_pos,
        b.gtid_current_pos
    );
    for o in [&a, &b] {
        let state = o.gtid_binlog_state.as_deref().unwrap_or_default();
        assert!(
            state.contains("0-1-") && state.contains("0-2-"),
            "each binlog holds both servers' GTIDs: {o:#?}"
        );
        assert!(replica(o).executed_all_received(), "{o:#?}");
    }
    assert_eq!(a.gtid_binlog_pos, b.gtid_binlog_pos, "{a:#?}\n{b:#?}");
    assert_eq!(a.gtid_current_pos, b.gtid_current_pos);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_refused_at_once_and_its_peer_sees_the_link_break() {
    let pair = MariaPair::start().await.expect("pair starts");
    write_both_ways(&pair).await;
    let on_a = probe_of(&pair.a);
    assert_eq!(on_a.probe().await.reachability, Reachability::Up);

    step("kill -9 a");
    pair.a.kill9();
    let started = Instant::now();
    let o = on_a.probe().await;
    assert_eq!(down_class(&o), Some(ErrorClass::Refused), "{o:#?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    step("b's replica shows the IO thread no longer connected");
    let b = probe_until(&probe_of(&pair.b), "b's IO thread to leave Yes", |o| {
        o.replica.as_ref().is_some_and(|r| r.io_running != "Yes")
    })
    .await;
    let r = replica(&b);
    eprintln!("b's replica while a is dead: {r:#?}");
    assert_eq!(r.io_running, "Connecting", "{r:#?}");
    assert!(r.sql_running, "the SQL thread keeps running: {r:#?}");
    assert_eq!(r.seconds_behind_master, None, "{r:#?}");
    assert_eq!(
        r.master_server_id,
        Some(1),
        "kept from the last connection: {r:#?}"
    );
    assert!(r.executed_all_received(), "{r:#?}");
    assert_eq!(b.reachability, Reachability::Up);
    assert!(b.is_writable());

    step("once its first reconnect fails, b names the error");
    // Last_IO_Error stays empty until then (MASTER_CONNECT_RETRY is 1 s).
    let b = probe_until(&probe_of(&pair.b), "b's Last_IO_Error", |o| {
        o.replica
            .as_ref()
            .is_some_and(|r| !r.last_io_error.is_empty())
    })
    .await;
    let r = replica(&b);
    eprintln!("b's replica after a failed reconnect: {r:#?}");
    assert_eq!(r.io_running, "Connecting", "{r:#?}");
    assert!(
        r.last_io_error.starts_with("error reconnecting to master"),
        "{r:#?}"
    );

    step("restart a: b reconnects, a has a new binary log");
    pair.a.start().expect("a restarts");
    pair.wait_in_sync().await.expect("in sync again");
    let a = on_a.probe().await;
    let b = probe_of(&pair.b).probe().await;
    assert!(replica(&b).io_streaming(), "{b:#?}");
    eprintln!(
        "after a's restart: a binlog {:?}:{:?}, b reads {}:{}",
        a.binlog_file,
        a.binlog_position,
        replica(&b).master_log_file,
        replica(&b).read_master_log_pos
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_master_times_out_within_the_probe_timeout() {
    let pair = MariaPair::start().await.expect("pair starts");
    let on_a = probe_of(&pair.a);
    assert_eq!(on_a.probe().await.reachability, Reachability::Up);

    pair.a.sigstop();
    let started = Instant::now();
    let o = on_a.probe().await;
    let took = started.elapsed();
    assert_eq!(down_class(&o), Some(ErrorClass::Timeout), "{o:#?}");
    assert!(
        took >= TIMEOUT && took < TIMEOUT + Duration::from_secs(1),
        "took {took:?}"
    );

    step("b's IO thread notices within slave_net_timeout (5 s)");
    let started = Instant::now();
    let b = probe_until(&probe_of(&pair.b), "b's IO thread to leave Yes", |o| {
        o.replica.as_ref().is_some_and(|r| r.io_running != "Yes")
    })
    .await;
    eprintln!(
        "b's replica {:?} after a froze: {:#?}",
        started.elapsed(),
        replica(&b)
    );

    pair.a.sigcont();
    let o = probe_until(&on_a, "a to answer after SIGCONT", |o| {
        o.reachability == Reachability::Up
    })
    .await;
    assert!(o.is_writable());
    pair.wait_in_sync().await.expect("in sync after the thaw");
}

/// Writes one row on each server while neither applies the other's
/// (`STOP SLAVE SQL_THREAD`), so both take the same GTID sequence number,
/// then lets both apply and returns the two observations once each has
/// executed all it received (or its SQL thread stopped).
async fn write_on_both_at_the_same_sequence_number(
    pair: &MariaPair,
) -> (MariaObservation, MariaObservation) {
    write_both_ways(pair).await;
    for server in [&pair.a, &pair.b] {
        server
            .exec("STOP SLAVE SQL_THREAD")
            .await
            .expect("stop the SQL thread");
    }
    pair.a
        .exec("INSERT INTO app.t (v) VALUES ('a-same-seq')")
        .await
        .expect("write on a");
    pair.b
        .exec("INSERT INTO app.t (v) VALUES ('b-same-seq')")
        .await
        .expect("write on b");
    for server in [&pair.a, &pair.b] {
        server
            .exec("START SLAVE SQL_THREAD")
            .await
            .expect("start the SQL thread");
    }
    let settled = |o: &MariaObservation| {
        o.replica
            .as_ref()
            .is_some_and(|r| !r.sql_running || r.executed_all_received())
    };
    let a = probe_until(&probe_of(&pair.a), "a to settle", settled).await;
    let b = probe_until(&probe_of(&pair.b), "b to settle", settled).await;
    eprintln!(
        "observed GTIDs after a write on each at the same sequence number:\n  \
         a: binlog_pos {:?} binlog_state {:?} slave_pos {:?} current_pos {:?} sql_error {:?}\n  \
         b: binlog_pos {:?} binlog_state {:?} slave_pos {:?} current_pos {:?} sql_error {:?}",
        a.gtid_binlog_pos,
        a.gtid_binlog_state,
        a.gtid_slave_pos,
        a.gtid_current_pos,
        replica(&a).last_sql_error,
        b.gtid_binlog_pos,
        b.gtid_binlog_state,
        b.gtid_slave_pos,
        b.gtid_current_pos,
        replica(&b).last_sql_error,
    );
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_sequence_number_on_both_masters_leaves_their_current_positions_apart() {
    let pair = MariaPair::start().await.expect("pair starts");
    let (a, b) = write_on_both_at_the_same_sequence_number(&pair).await;
    // Both replicate on (the guide's pair has no gtid_strict_mode) ...
    for o in [&a, &b] {
        let r = replica(o);
        assert!(r.sql_running && r.executed_all_received(), "{o:#?}");
    }
    // ... and each has its own write at sequence number N and the other's
    // applied at N too; at an equal sequence number gtid_current_pos takes
    // gtid_slave_pos, so each names the other's GTID.
    let seq = |pos: &Option<String>| {
        pos.as_deref()
            .and_then(|p| p.rsplit('-').next())
            .map(str::to_owned)
    };
    assert_eq!(
        seq(&a.gtid_binlog_pos),
        seq(&b.gtid_binlog_pos),
        "{a:#?}\n{b:#?}"
    );
    assert_eq!(a.gtid_slave_pos, b.gtid_binlog_pos);
    assert_eq!(b.gtid_slave_pos, a.gtid_binlog_pos);
    assert_eq!(a.gtid_current_pos, a.gtid_slave_pos);
    assert_eq!(b.gtid_current_pos, b.gtid_slave_pos);
    assert_ne!(a.gtid_current_pos, b.gtid_current_pos);
    // The test kit's wait compares sequence numbers only: in sync.
    pair.wait_in_sync()
        .await
        .expect("in sync by sequence number");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_strict_mode_and_log_slave_updates_the_same_sequence_number_stops_replication() {
    let pair = MariaPair::start_with(MariaPairOptions {
        log_slave_updates: true,
        gtid_strict_mode: true,
        ..MariaPairOptions::default()
    })
    .await
    .expect("pair starts");
    let (a, b) = write_on_both_at_the_same_sequence_number(&pair).await;
    for o in [&a, &b] {
        let r = replica(o);
        assert!(!r.sql_running, "{o:#?}");
        assert!(r.last_sql_error.contains("out-of-order"), "{o:#?}");
    }
}
