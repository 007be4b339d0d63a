//! The command runner against real processes: exit codes, captured and
//! bounded output, environment, and timeouts that kill the whole process
//! group.

use std::path::Path;
use std::time::{Duration, Instant};

use palisade_actions::command::{run, run_checked, CommandError, CommandSpec};

fn sh(script: &str, timeout: Duration) -> CommandSpec {
    CommandSpec::new(["sh", "-c", script], timeout)
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

async fn wait_gone(pid: u32, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        assert!(Instant::now() < deadline, "{why}: pid {pid} still alive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn success_captures_stdout_and_env() {
    let spec = sh(
        "echo \"hello $PALISADE_SITE\"; echo warn >&2",
        Duration::from_secs(5),
    )
    .with_env("PALISADE_SITE", "b");
    let out = run_checked(&spec).await.expect("runs");
    assert!(out.success());
    assert_eq!(out.code, Some(0));
    assert_eq!(out.stdout, "hello b\n");
    assert_eq!(out.stderr, "warn\n");
    assert!(!out.truncated);
    assert!(out.duration < Duration::from_secs(5));
}

#[tokio::test]
async fn non_zero_exit_reports_code_and_stderr() {
    let spec = sh(
        "echo 'app failed to stop: port 8443 busy' >&2; exit 7",
        Duration::from_secs(5),
    );
    let out = run(&spec).await.expect("run returns the status");
    assert_eq!(out.code, Some(7));
    assert!(!out.success());
    let err = run_checked(&spec).await.expect_err("non-zero is an error");
    let msg = err.to_string();
    assert!(matches!(err, CommandError::Failed { .. }), "{msg}");
    assert!(msg.contains("exit code 7"), "{msg}");
    assert!(msg.contains("port 8443 busy"), "{msg}");
    assert!(msg.contains("sh -c"), "names the command: {msg}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn output_is_bounded_to_its_tail() {
    let mut spec = sh(
        "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done",
        Duration::from_secs(10),
    );
    spec.output_limit = 100;
    let out = run(&spec).await.expect("runs");
    assert!(out.truncated);
    assert!(out.stdout.len() <= 100);
    assert!(out.stdout.ends_with("line-1999\n"), "{}", out.stdout);
}

#[tokio::test]
async fn missing_program_is_a_fatal_spawn_error() {
    let spec = CommandSpec::new(
        ["/nonexistent/restart-app", "--now"],
        Duration::from_secs(1),
    );
    let err = run(&spec).await.expect_err("cannot spawn");
    assert!(matches!(err, CommandError::Spawn { .. }), "{err}");
    assert!(
        err.to_string().contains("/nonexistent/restart-app --now"),
        "{err}"
    );
    assert!(!err.is_retryable());
    let empty = CommandSpec::new(Vec::<String>::new(), Duration::from_secs(1));
    assert!(matches!(
        run(&empty).await,
        Err(CommandError::Invalid { .. })
    ));
}

#[tokio::test]
async fn timeout_kills_the_process_and_its_children() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("child.pid");
    // The wrapper starts a background child (as restart scripts do), then
    // hangs; the child ignores SIGTERM, so only the group SIGKILL after the
    // grace period gets it.
    let script = format!(
        "sh -c 'trap \"\" TERM; echo $$ > {p}; exec sleep 60' & echo started; sleep 60",
        p = pidfile.display()
    );
    let mut spec = sh(&script, Duration::from_millis(300));
    spec.kill_grace = Duration::from_millis(200);
    let started = Instant::now();
    let err = run(&spec).await.expect_err("times out");
    let elapsed = started.elapsed();
    let CommandError::Timeout { output, .. } = &err else {
        panic!("expected a timeout, got {err}");
    };
    assert_eq!(output.stdout, "started\n", "output before the kill is kept");
    assert!(err.to_string().contains("timed out after 300ms"), "{err}");
    assert!(
        elapsed < Duration::from_secs(3),
        "killed promptly: {elapsed:?}"
    );
    assert!(err.is_retryable());

    let child: u32 = read_pid(&pidfile);
    wait_gone(child, "the background child must die with the group").await;
}

#[tokio::test]
async fn a_daemon_left_behind_does_not_hold_the_runner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("daemon.pid");
    // A "start" command that leaves a daemon running with our pipes open
    // and exits 0 at once: the runner must return, not wait for the daemon.
    let script = format!("sleep 30 & echo $! > {}; echo started", pidfile.display());
    let started = Instant::now();
    let out = run_checked(&sh(&script, Duration::from_secs(10)))
        .await
        .expect("runs");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.stdout, "started\n");
    let daemon = read_pid(&pidfile);
    assert!(
        alive(daemon),
        "a successful command's children are left alone"
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

fn read_pid(p: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(s) = std::fs::read_to_string(p) {
            if let Ok(pid) = s.trim().parse() {
                return pid;
            }
        }
        assert!(
            Instant::now() < deadline,
            "pid file {} never written",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
