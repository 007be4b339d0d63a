//! The lease guard process (`palisade lease-guard --mariadb-pid-file`)
//! against a real MariaDB master, with this test as the witness: it
//! writes orders through [`GuardHandle::new_mariadb`] and then goes
//! silent, as a dead witness would. The guard must freeze `mariadbd` at
//! the deadline, thaw it without a restart when the same epoch's lease
//! comes back, kill it on a hard order, and never signal a process that a
//! stale pid file names but that is no `mariadbd`.

use std::time::Duration;

use palisade::lease_guard::{monotonic_ms, GuardHandle, GuardOrder};
use palisade_actions::postgres::ProcessState;
use palisade_testkit::cluster::palisade_bin;
use palisade_testkit::mariadb::{MariaPair, MariaServer};
use palisade_testkit::{step, wait_for};

/// How late after its deadline the guard may freeze (its timer's and the
/// signal's own latency on a loaded machine).
const FREEZE_SLACK_MS: u64 = 100;

/// The test kit's `wait_for` over a synchronous look (the guard's files,
/// `/proc`); panics naming `what` after `timeout`.
async fn wait<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    wait_for(what, timeout, async || f())
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `T`, ...).
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Stops the guard when the test ends, also when it panics: a MariaDB
/// guard does not exit when its pid file's directory goes away (only when
/// the order file's directory is gone and no server runs).
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

/// `SELECT 1` on a new session, bounded: `Some(error)` when it did not
/// answer within `bound`.
async fn select_one(server: &MariaServer, bound: Duration) -> Result<i64, String> {
    match tokio::time::timeout(bound, server.query_i64("SELECT 1")).await {
        Ok(Ok(one)) => Ok(one),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err(format!("no answer within {bound:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_freezes_mariadbd_at_the_deadline_thaws_it_on_renewal_and_kills_it_on_a_hard_order(
) {
    let pair = MariaPair::start().await.expect("a MariaDB pair");
    let db = &pair.a;
    let pid = db.pid().expect("a runs");
    let dir = tempfile::tempdir().expect("temp dir");
    let handle = GuardHandle::new_mariadb(
        dir.path().join("lease.order"),
        db.pid_file(),
        palisade_bin(),
    );
    // A session opened under the lease, held through the freeze: a thaw
    // must give it back as it was.
    let pool = db.pool().await.expect("a pool");
    let mut session = pool.acquire().await.expect("a session");
    let session_id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
        .fetch_one(&mut *session)
        .await
        .expect("CONNECTION_ID()");

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
    let status = wait("the guard's heartbeat", Duration::from_secs(10), || {
        handle
            .status()
            .filter(|s| monotonic_ms().saturating_sub(s.mono_ms) < 200)
    })
    .await;
    if monotonic_ms() < deadline {
        assert_eq!(status.server, ProcessState::Running, "{status:?}");
    }

    step("the witness goes silent: mariadbd frozen at the deadline");
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
    assert_eq!(status.server, ProcessState::Frozen);
    assert_eq!(proc_state(pid), Some('T'), "mariadbd is stopped");
    let frozen = select_one(db, Duration::from_secs(1)).await;
    assert!(frozen.is_err(), "a frozen server answered: {frozen:?}");
    assert_eq!(proc_state(pid), Some('T'), "still frozen after the query");

    step("the lease comes back for epoch 7: thawed, same process, same session");
    handle
        .order(GuardOrder {
            epoch: 7,
            deadline_ms: monotonic_ms() + 60_000,
            hard: false,
        })
        .expect("write the order");
    let status = wait(
        "the guard thawed the server",
        Duration::from_secs(2),
        || {
            handle
                .status()
                .filter(|s| s.server == ProcessState::Running && s.frozen_since_ms.is_none())
        },
    )
    .await;
    assert!(
        status
            .last_action
            .as_deref()
            .is_some_and(|a| a.starts_with("thawed")),
        "{status:?}"
    );
    assert_ne!(proc_state(pid), Some('T'));
    assert_eq!(select_one(db, Duration::from_secs(5)).await, Ok(1));
    assert_eq!(db.pid(), Some(pid), "mariadbd restarted");
    let same: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
        .fetch_one(&mut *session)
        .await
        .expect("the held session still answers");
    assert_eq!(same, session_id);
    drop(session);
    pool.close().await;

    step("a hard order (committed failover): killed");
    handle
        .order(GuardOrder {
            epoch: 7,
            deadline_ms: monotonic_ms() + 60_000,
            hard: true,
        })
        .expect("write the order");
    wait("mariadbd killed", Duration::from_secs(15), || {
        (!db.is_running()).then_some(())
    })
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
    assert_eq!(proc_state(pid), None, "pid {pid} is gone");

    step("the stale pid file now names another program: never signalled");
    let mut other = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("spawn sleep");
    std::fs::write(db.pid_file(), format!("{}\n", other.id())).expect("rewrite the pid file");
    // With no server and no live lease the guard polls every 200 ms: a
    // heartbeat half a second later comes from at least two polls that
    // read the rewritten pid file.
    let since = monotonic_ms();
    let status = wait(
        "the guard's polls over half a second after the rewrite",
        Duration::from_secs(5),
        || handle.status().filter(|s| s.mono_ms > since + 500),
    )
    .await;
    assert_eq!(status.server, ProcessState::Stopped, "{status:?}");
    let alive = other.try_wait().expect("sleep's status");
    let _ = other.kill();
    let _ = other.wait();
    assert_eq!(
        alive, None,
        "the guard signalled a process that is no mariadbd"
    );
    let log = std::fs::read_to_string(handle.log_file()).expect("the guard's log");
    assert!(
        log.contains("FROZE the database") && log.contains(&db.pid_file().display().to_string()),
        "the log names the pid file: {log}"
    );

    step("the witness's directory removed, no server running: the guard exits");
    let guard_pid = handle
        .guard_pid()
        .expect("the guard's lock file")
        .expect("a guard runs");
    std::fs::remove_dir_all(dir.path()).expect("remove the order file's directory");
    wait(
        "the guard to exit once nothing is left to guard",
        Duration::from_secs(5),
        || (proc_state(guard_pid).is_none_or(|s| s == 'Z')).then_some(()),
    )
    .await;
}
