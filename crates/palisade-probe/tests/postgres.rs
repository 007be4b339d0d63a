//! The PostgreSQL probe against real servers (a primary and a streaming
//! standby from `palisade_testkit::pg`).

use std::time::{Duration, Instant};

use palisade_core::observe::{ErrorClass, PgObservation, Reachability};
use palisade_probe::postgres::PgProbe;
use palisade_probe::ProbeConfigError;
use palisade_testkit::pg::{PgPair, PgPairOptions};

const TIMEOUT: Duration = Duration::from_secs(2);

fn probe_of(dsn: &str, timeout: Duration) -> PgProbe {
    PgProbe::new(dsn, timeout).expect("the harness's DSNs are valid")
}

fn down_class(o: &PgObservation) -> Option<ErrorClass> {
    match &o.reachability {
        Reachability::Up => None,
        Reachability::Down { class, .. } => Some(*class),
    }
}

/// Probes until `check` holds, failing with `why` and the last observation
/// after `limit`.
async fn probe_until(
    probe: &PgProbe,
    limit: Duration,
    why: &str,
    check: impl Fn(&PgObservation) -> bool,
) -> PgObservation {
    let deadline = Instant::now() + limit;
    loop {
        let o = probe.probe().await;
        if check(&o) {
            return o;
        }
        assert!(
            Instant::now() < deadline,
            "{why}: not within {limit:?}; last observation {o:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_and_standby_observations_show_roles_wal_and_streaming() {
    let pair = PgPair::start().await.expect("start pair");
    pair.primary
        .exec("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 1000)")
        .await
        .expect("write");
    pair.wait_replayed(Duration::from_secs(10))
        .await
        .expect("standby replays");

    eprintln!("--- primary");
    let p = probe_of(&pair.primary.dsn(), TIMEOUT).probe().await;
    assert_eq!(p.reachability, Reachability::Up, "{p:#?}");
    assert!(p.is_writable_primary(), "{p:#?}");
    assert_eq!(p.in_recovery, Some(false));
    assert!(p.current_lsn.is_some_and(|lsn| lsn > 0), "{p:#?}");
    assert_eq!(
        (p.receive_lsn, p.replay_lsn, p.replay_lag_seconds),
        (None, None, None),
        "{p:#?}"
    );
    assert!(p.wal_receiver.is_none(), "{p:#?}");
    assert_eq!(
        p.sync_waiters,
        Some(0),
        "nothing waits in async mode: {p:#?}"
    );
    assert_eq!(p.replicas.len(), 1, "{p:#?}");
    let r = &p.replicas[0];
    assert_eq!(r.application_name, "standby");
    assert_eq!(r.state, "streaming");
    assert_eq!(r.sync_state, "async");
    assert_eq!(r.client_addr.as_deref(), Some("127.0.0.1"));
    assert!(
        r.sent_lsn.is_some() && r.flush_lsn.is_some() && r.replay_lsn.is_some(),
        "{r:#?}"
    );
    assert!(r.sent_lsn <= p.current_lsn, "{p:#?}");

    eprintln!("--- standby, caught up");
    let standby_probe = probe_of(&pair.standby.dsn(), TIMEOUT);
    // WAL the primary writes on its own (e.g. running-xacts records) can put
    // receive ahead of replay for a moment; caught up means lag 0.
    let s = probe_until(
        &standby_probe,
        Duration::from_secs(5),
        "standby lag 0",
        |o| o.replay_lag_seconds == Some(0.0),
    )
    .await;
    assert!(s.is_streaming(), "{s:#?}");
    assert!(!s.is_writable_primary());
    assert_eq!(s.in_recovery, Some(true));
    assert_eq!(s.current_lsn, None);
    assert!(s.receive_lsn.is_some() && s.replay_lsn.is_some(), "{s:#?}");
    assert!(s.replay_lsn >= r.replay_lsn, "{s:#?}");
    assert!(s.replicas.is_empty(), "{s:#?}");
    assert_eq!(s.sync_waiters, None, "a standby commits nothing: {s:#?}");
    let w = s
        .wal_receiver
        .as_ref()
        .expect("a streaming standby has a WAL receiver");
    assert_eq!(w.status, "streaming");
    assert_eq!(w.sender_host.as_deref(), Some("127.0.0.1"));
    assert_eq!(w.sender_port, Some(pair.primary.port()));
    assert!(w.flushed_lsn.is_some(), "{w:#?}");
    assert!(w.last_msg_age_ms.is_some(), "{w:#?}");

    eprintln!("--- wrong password");
    let bad = probe_of(&pair.primary.dsn_as("palisade", "wrong"), TIMEOUT)
        .probe()
        .await;
    assert_eq!(down_class(&bad), Some(ErrorClass::Auth), "{bad:#?}");
    let nobody = probe_of(&pair.primary.dsn_as("nobody", "x"), TIMEOUT)
        .probe()
        .await;
    assert_eq!(down_class(&nobody), Some(ErrorClass::Auth), "{nobody:#?}");
}

/// The evidence sync mode degrades on: a standby that keeps its connection
/// but acknowledges nothing (its WAL receiver frozen, as with a cut link)
/// still shows `streaming` on the primary, with a `flush_lsn` that stands
/// still while the commits waiting for it are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_waiting_for_a_silent_sync_standby_are_counted_next_to_its_still_position() {
    let pair = PgPair::start_with(PgPairOptions { synchronous: true })
        .await
        .expect("start a synchronous pair");
    let primary = &pair.primary;
    primary
        .exec("CREATE TABLE t (x int)")
        .await
        .expect("a commit with a streaming sync standby");
    // PostgreSQL's default: the primary must not drop the silent standby
    // while we watch (the test kit's 5 s would).
    primary
        .exec("ALTER SYSTEM SET wal_sender_timeout = '60s'")
        .await
        .expect("alter system");
    primary
        .exec("SELECT pg_reload_conf()")
        .await
        .expect("reload");
    let probe = probe_of(&primary.dsn(), TIMEOUT);
    let p = probe.probe().await;
    assert_eq!(p.sync_waiters, Some(0), "{p:#?}");
    assert_eq!(p.replicas.len(), 1, "{p:#?}");
    assert_eq!(p.replicas[0].sync_state, "sync", "{p:#?}");

    eprintln!("--- a role without pg_monitor cannot tell, and says so");
    primary
        .exec("CREATE ROLE plain LOGIN PASSWORD 'plain'")
        .await
        .expect("create role");
    let plain = probe_of(&primary.dsn_as("plain", "plain"), TIMEOUT)
        .probe()
        .await;
    assert!(plain.is_writable_primary(), "{plain:#?}");
    assert_eq!(plain.sync_waiters, None, "unknown, not 0: {plain:#?}");

    eprintln!("--- freeze the standby's WAL receiver; a commit waits");
    let receiver = pair
        .standby
        .freeze_wal_receiver()
        .await
        .expect("freeze the WAL receiver");
    let mut writer = primary.connect().await.expect("writer connection");
    let commit = tokio::spawn(async move {
        sqlx::Executor::execute(&mut writer, "INSERT INTO t VALUES (1)")
            .await
            .map(|_| ())
    });
    let waiting = probe_until(&probe, Duration::from_secs(10), "a commit waits", |o| {
        o.sync_waiters.is_some_and(|n| n >= 1)
    })
    .await;
    let stuck = waiting.replicas[0].flush_lsn.expect("a position");
    assert!(
        waiting.current_lsn.is_some_and(|lsn| lsn > stuck),
        "the primary has written past what the standby acknowledged: {waiting:#?}"
    );

    eprintln!("--- for a second: still streaming, position still, commit still waiting");
    let watch_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < watch_until {
        let o = probe.probe().await;
        assert_eq!(o.sync_waiters, Some(1), "{o:#?}");
        assert_eq!(o.replicas.len(), 1, "{o:#?}");
        assert_eq!(o.replicas[0].state, "streaming", "{o:#?}");
        assert_eq!(o.replicas[0].flush_lsn, Some(stuck), "{o:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !commit.is_finished(),
        "the commit returned without the standby"
    );

    eprintln!("--- thaw it: the commit completes, nobody waits");
    pair.standby
        .thaw_wal_receiver(receiver)
        .expect("thaw the WAL receiver");
    tokio::time::timeout(Duration::from_secs(10), commit)
        .await
        .expect("the commit completes once the standby acknowledges")
        .expect("writer task")
        .expect("insert");
    let o = probe_until(&probe, Duration::from_secs(5), "nobody waits", |o| {
        o.sync_waiters == Some(0)
    })
    .await;
    assert!(
        o.replicas[0].flush_lsn.is_some_and(|lsn| lsn > stuck),
        "{o:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_primary_is_refused_and_the_standby_sees_its_stream_break() {
    let pair = PgPair::start().await.expect("start pair");
    let primary_probe = probe_of(&pair.primary.dsn(), TIMEOUT);
    assert!(primary_probe.probe().await.is_writable_primary());

    eprintln!("--- kill -9 the primary");
    pair.primary.kill9();
    let p = primary_probe.probe().await;
    assert_eq!(down_class(&p), Some(ErrorClass::Refused), "{p:#?}");
    assert_eq!(p.in_recovery, None);
    assert!(
        p.latency_ms < 500,
        "a refused connection is answered at once: {p:#?}"
    );

    eprintln!("--- the standby corroborates");
    let standby_probe = probe_of(&pair.standby.dsn(), TIMEOUT);
    let s = probe_until(
        &standby_probe,
        Duration::from_secs(10),
        "standby stops streaming",
        |o| o.reachability.is_up() && !o.is_streaming(),
    )
    .await;
    assert_eq!(s.in_recovery, Some(true), "{s:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_postmaster_times_out_within_the_probe_timeout() {
    let pair = PgPair::start().await.expect("start pair");
    let timeout = Duration::from_secs(1);
    let probe = probe_of(&pair.primary.dsn(), timeout);
    assert!(probe.probe().await.is_writable_primary());

    eprintln!("--- SIGSTOP the postmaster");
    pair.primary.sigstop();
    let started = Instant::now();
    let o = probe.probe().await;
    let took = started.elapsed();
    eprintln!(
        "SIGSTOP detection: {took:?} (timeout {timeout:?}, latency_ms {})",
        o.latency_ms
    );
    assert_eq!(down_class(&o), Some(ErrorClass::Timeout), "{o:#?}");
    // The kernel still completes the TCP handshake for a frozen process:
    // only a probe that waits for PostgreSQL's answer sees the hang.
    let tcp = palisade_probe::tcp::probe(pair.primary.addr(), timeout).await;
    assert_eq!(tcp, Reachability::Up);
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(300),
        "took {took:?}"
    );

    eprintln!("--- SIGCONT: up again");
    pair.primary.sigcont();
    let o = probe_until(
        &probe,
        Duration::from_secs(5),
        "thawed primary answers",
        |o| o.reachability.is_up(),
    )
    .await;
    assert!(o.is_writable_primary(), "{o:#?}");
}

#[tokio::test]
async fn nothing_listening_is_refused() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener.local_addr().expect("bound address").port()
    };
    let o = probe_of(
        &format!("postgres://u:p@127.0.0.1:{port}/postgres"),
        TIMEOUT,
    )
    .probe()
    .await;
    assert_eq!(down_class(&o), Some(ErrorClass::Refused), "{o:#?}");
}

#[test]
fn bad_dsn_is_a_config_error_naming_it_without_the_password() {
    for (dsn, why) in [
        ("mysql://u:hunter2@h/db", "wrong scheme"),
        ("postgres://u:hunter2@h:notaport/db", "bad port"),
        ("postgres://u:hunter2@h/db?sslmode=sometimes", "bad sslmode"),
    ] {
        let err = PgProbe::new(dsn, TIMEOUT).expect_err(why);
        assert!(
            matches!(err, ProbeConfigError::InvalidDsn { .. }),
            "{why}: {err}"
        );
        let text = err.to_string();
        // The DSN is named; its password is either masked or, split out
        // of the string when it was read (`ConnString`), absent.
        assert!(
            text.contains(&dsn.replace("hunter2", "***"))
                || text.contains(&dsn.replace(":hunter2", "")),
            "{why}: {text}"
        );
        assert!(!text.contains("hunter2"), "{why}: {text}");
    }
}

/// Measures probe latency to a live primary (run with `--nocapture` to see
/// the numbers; they feed the default probe interval and timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_latency_to_a_live_primary() {
    let pair = PgPair::start().await.expect("start pair");
    let probe = probe_of(&pair.primary.dsn(), TIMEOUT);
    let mut micros = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let o = probe.probe().await;
        micros.push(started.elapsed().as_micros());
        assert!(o.is_writable_primary(), "{o:#?}");
    }
    micros.sort_unstable();
    let pct = |p: usize| micros[(micros.len() - 1) * p / 100] as f64 / 1000.0;
    eprintln!(
        "probe latency over 50 probes: p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        pct(50),
        pct(95),
        pct(100)
    );
    assert!(
        pct(50) < TIMEOUT.as_millis() as f64,
        "p50 above the timeout"
    );
}

/// A standby restarted on an idle primary (a rejoin's restart) reports its
/// receive position at the start of the segment it streams from, behind
/// what it has replayed. That is no lag: measuring it as the time since
/// the last replayed transaction grew it without bound on an idle
/// cluster, until the failover lag guard (`max_lag_seconds`) refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_standby_of_an_idle_primary_has_no_replay_lag() {
    let pair = PgPair::start().await.expect("start pair");
    pair.primary
        .exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        .await
        .expect("write");
    pair.wait_replayed(Duration::from_secs(10))
        .await
        .expect("standby replays");
    pair.standby.stop_fast().expect("stop the standby");
    pair.standby.start().expect("start the standby");
    pair.wait_streaming(Duration::from_secs(30))
        .await
        .expect("the standby streams again");
    let probe = probe_of(&pair.standby.dsn(), TIMEOUT);
    let o = probe_until(&probe, Duration::from_secs(10), "streaming", |o| {
        o.is_streaming()
    })
    .await;
    eprintln!(
        "--- receive {:?} replay {:?} lag {:?}",
        o.receive_lsn, o.replay_lsn, o.replay_lag_seconds
    );
    assert!(
        o.receive_lsn <= o.replay_lsn,
        "the scenario this test is about: receive behind replay ({o:#?})"
    );
    assert_eq!(o.replay_lag_seconds, Some(0.0), "{o:#?}");
}
