//! The lease guard process (`palisade lease-guard`) against a real
//! PostgreSQL primary, with this test as the witness: it writes orders
//! through [`GuardHandle`] and then goes silent, as a dead witness would.
//! The guard must freeze the server at the deadline, thaw it without a
//! restart when the same epoch's lease comes back, kill it on a hard
//! order, refuse to run twice, and take another boot's order for no
//! lease.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade::lease_guard::{monotonic_ms, GuardHandle, GuardOrder};
use palisade_actions::postgres::{PgSite, ProcessState};
use palisade_testkit::cluster::palisade_bin;
use palisade_testkit::pg::{PgPair, PgServer};
use palisade_testkit::{step, wait_for};
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

/// How late after its deadline the guard may freeze (its timer's and the
/// freeze's own latency on a loaded machine) and a write acknowledged just
/// before the freeze may still reach the client.
const FREEZE_SLACK_MS: u64 = 100;

/// The test kit's `wait_for` over a synchronous look (the guard's files,
/// `/proc`); panics naming `what` after `timeout`.
async fn wait<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    wait_for(what, timeout, async || f())
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// The guard's view of the primary: `/proc` only, no SQL.
fn site(server: &PgServer) -> PgSite {
    let mut site = PgSite::new(server.bin_dir(), server.data_dir(), server.dsn());
    site.os_user = server.os_user().map(str::to_owned);
    site
}

/// Stops the guard when the test ends, also when it panics: a guard left
/// behind would keep freezing whatever runs from that data directory.
struct StopGuard(GuardHandle);

impl Drop for StopGuard {
    fn drop(&mut self) {
        if let Err(e) = self.0.stop(Duration::from_secs(5)) {
            eprintln!("stopping the lease guard: {e}");
            if let Ok(Some(pid)) = self.0.guard_pid() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if let Ok(log) = std::fs::read_to_string(self.0.log_file()) {
            eprintln!("--- lease guard log:\n{log}");
        }
    }
}

/// A client writing on one session, recording the `CLOCK_MONOTONIC` ms of
/// each acknowledgement, until stopped or its session fails.
struct Writer {
    acks: Arc<Mutex<Vec<u64>>>,
    error: Arc<Mutex<Option<String>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    async fn start(server: &PgServer) -> Writer {
        server
            .exec("CREATE TABLE writes (id bigint PRIMARY KEY)")
            .await
            .expect("create the table");
        let mut conn = server.connect().await.expect("the writer's session");
        let (acks, error, stop) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(None)),
            CancellationToken::new(),
        );
        let (out, failed, halt) = (acks.clone(), error.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut id = 0i64;
            while !halt.is_cancelled() {
                id += 1;
                let written = sqlx::query("INSERT INTO writes (id) VALUES ($1)")
                    .bind(id)
                    .execute(&mut conn)
                    .await;
                match written {
                    Ok(_) => out.lock().expect("acks").push(monotonic_ms()),
                    Err(e) => {
                        *failed.lock().expect("error") = Some(e.to_string());
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let _ = conn.close().await;
        });
        Writer {
            acks,
            error,
            stop,
            task,
        }
    }

    fn acks(&self) -> Vec<u64> {
        self.acks.lock().expect("acks").clone()
    }

    fn error(&self) -> Option<String> {
        self.error.lock().expect("error").clone()
    }
}

async fn start_time(server: &PgServer) -> String {
    server
        .query_text("SELECT pg_postmaster_start_time()::text")
        .await
        .expect("pg_postmaster_start_time()")
        .expect("a start time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_freezes_at_the_deadline_thaws_on_renewal_and_kills_on_a_hard_order() {
    let pair = PgPair::start().await.expect("a PostgreSQL pair");
    let primary = &pair.primary;
    let db = site(primary);
    let dir = tempfile::tempdir().expect("temp dir");
    let handle = GuardHandle::new(
        dir.path().join("lease.order"),
        primary.data_dir(),
        primary.bin_dir(),
        palisade_bin(),
    );
    let started_at = start_time(primary).await;
    let writer = Writer::start(primary).await;

    step("order: epoch 7 may write for 600 ms; start the guard");
    let deadline = monotonic_ms() + 600;
    handle
        .order(GuardOrder {
            epoch: 7,
            deadline_ms: deadline,
            hard: false,
        })
        .expect("write the order");
    handle.ensure_running().expect("start the guard");
    let _stop = StopGuard(handle.clone());
    wait("the guard's heartbeat", Duration::from_secs(10), || {
        handle.heartbeat_age_ms().filter(|age| *age < 200)
    })
    .await;
    handle.ensure_running().expect("a second call");
    assert_eq!(
        db.process_state(),
        ProcessState::Running,
        "under a live lease the server runs"
    );

    step("the witness goes silent: frozen at the deadline");
    let status = wait("the guard froze the server", Duration::from_secs(5), || {
        handle.status().filter(|s| s.frozen_since_ms.is_some())
    })
    .await;
    let frozen_at = status.frozen_since_ms.expect("frozen");
    eprintln!(
        "measured: froze {} ms after the deadline",
        frozen_at.saturating_sub(deadline)
    );
    assert!(frozen_at >= deadline, "froze before the deadline");
    assert!(
        frozen_at <= deadline + FREEZE_SLACK_MS,
        "froze {} ms after the deadline",
        frozen_at - deadline
    );
    assert_eq!(status.frozen_epoch, Some(7));
    assert!(db.is_frozen(), "{:?}", db.process_state());

    step("frozen for half a second: no write acknowledged after the deadline");
    let acks_at_freeze = writer.acks().len();
    wait(
        "half a second of freeze observed",
        Duration::from_secs(3),
        || {
            assert!(db.is_frozen(), "the server thawed without an order");
            (monotonic_ms() >= frozen_at + 500).then_some(())
        },
    )
    .await;
    let acks = writer.acks();
    assert!(acks_at_freeze > 0, "the writer wrote before the deadline");
    let last = *acks.last().expect("acks");
    eprintln!(
        "measured: last ack {} ms {} the deadline",
        last.abs_diff(deadline),
        if last > deadline { "after" } else { "before" }
    );
    assert!(
        last <= deadline + FREEZE_SLACK_MS,
        "a write was acknowledged {} ms after the deadline",
        last - deadline
    );
    assert_eq!(acks.len(), acks_at_freeze, "a frozen server acknowledged");
    assert_eq!(writer.error(), None);

    step("a second guard for the same order file refuses to start");
    let second = std::process::Command::new(palisade_bin())
        .arg("lease-guard")
        .arg("--data-dir")
        .arg(primary.data_dir())
        .arg("--order-file")
        .arg(handle.order_file())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn a second guard");
    let second = tokio::task::spawn_blocking(move || second.wait_with_output());
    let second = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the second guard exits at once")
        .expect("join")
        .expect("its output");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "a second guard ran: {stderr}");
    assert!(stderr.contains("already guards"), "{stderr}");

    step("the lease comes back for epoch 7: thawed within 200 ms, same session, no restart");
    let renewed = Instant::now();
    handle
        .order(GuardOrder {
            epoch: 7,
            deadline_ms: monotonic_ms() + 60_000,
            hard: false,
        })
        .expect("write the order");
    wait("the server thawed", Duration::from_secs(2), || {
        (db.process_state() == ProcessState::Running).then_some(())
    })
    .await;
    let thawed_in = renewed.elapsed();
    eprintln!("measured: thawed {thawed_in:?} after the renewal");
    assert!(thawed_in <= Duration::from_millis(200), "{thawed_in:?}");
    wait(
        "the writer's session writes again",
        Duration::from_secs(5),
        || (writer.acks().len() > acks_at_freeze + 2).then_some(()),
    )
    .await;
    assert_eq!(writer.error(), None, "the session broke");
    assert_eq!(
        start_time(primary).await,
        started_at,
        "the server restarted"
    );

    step("a hard order (committed failover): killed");
    handle
        .order(GuardOrder {
            epoch: 7,
            deadline_ms: monotonic_ms() + 60_000,
            hard: true,
        })
        .expect("write the order");
    wait("the server killed", Duration::from_secs(15), || {
        (!db.has_server_processes()).then_some(())
    })
    .await;
    wait(
        "the writer's session failed",
        Duration::from_secs(5),
        || writer.error(),
    )
    .await;
    let status = wait("the guard reports it", Duration::from_secs(5), || {
        handle
            .status()
            .filter(|s| s.server == ProcessState::Stopped)
    })
    .await;
    assert!(
        status
            .last_action
            .as_deref()
            .is_some_and(|a| a.starts_with("killed") && a.contains("hard order")),
        "{status:?}"
    );
    writer.stop.cancel();
    let _ = writer.task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_from_another_boot_is_no_lease_and_a_freeze_without_one_ends_in_a_kill() {
    let pair = PgPair::start().await.expect("a PostgreSQL pair");
    let primary = &pair.primary;
    let db = site(primary);
    let dir = tempfile::tempdir().expect("temp dir");
    let handle = GuardHandle::new(
        dir.path().join("lease.order"),
        primary.data_dir(),
        primary.bin_dir(),
        palisade_bin(),
    )
    .with_hard_after_ms(1_500);

    step("an order with a live deadline, written on another boot");
    std::fs::write(
        handle.order_file(),
        format!(
            "{{\"boot_id\":\"00000000-0000-0000-0000-000000000000\",\"epoch\":3,\"deadline_ms\":{},\"hard\":false}}\n",
            monotonic_ms() + 60_000
        ),
    )
    .expect("write the foreign order");
    handle.ensure_running().expect("start the guard");
    let _stop = StopGuard(handle.clone());

    step("no lease: the guard freezes the server");
    let status = wait("the server frozen", Duration::from_secs(10), || {
        handle.status().filter(|s| s.frozen_since_ms.is_some())
    })
    .await;
    assert_eq!(status.order, None, "another boot's order is no order");
    assert_eq!(status.frozen_epoch, None);
    assert!(db.is_frozen(), "{:?}", db.process_state());

    step("a live order of this boot does not thaw a freeze made without one");
    handle
        .order(GuardOrder {
            epoch: 3,
            deadline_ms: monotonic_ms() + 60_000,
            hard: false,
        })
        .expect("write the order");
    wait(
        "the guard read the new order",
        Duration::from_secs(2),
        || {
            handle
                .status()
                .filter(|s| s.order.is_some_and(|o| o.epoch == 3))
        },
    )
    .await;
    assert!(db.is_frozen(), "thawed by an order of no freeze's epoch");

    step("frozen for the bound (1.5 s): killed");
    let frozen_at = status.frozen_since_ms.expect("frozen");
    wait("the server killed", Duration::from_secs(15), || {
        (!db.has_server_processes()).then_some(())
    })
    .await;
    let killed_after = monotonic_ms() - frozen_at;
    eprintln!("measured: killed {killed_after} ms after the freeze");
    assert!(killed_after >= 1_500, "killed before the bound");
}
