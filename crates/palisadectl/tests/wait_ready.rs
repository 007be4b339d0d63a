//! `palisadectl wait-ready`, the built binary against the in-process fake
//! witness of `tests/fake`: ready at once, ready once a leader appears, and
//! each way of giving up with its own exit code. (The README's by-hand
//! block runs it against real witnesses: `crates/palisade-demo/tests/
//! playground.rs`.)

#[allow(dead_code)]
mod fake;

use std::process::{Output, Stdio};
use std::time::Duration;

use fake::{serve, Cluster, FakeWitness};

async fn wait_ready(endpoint: &str, extra: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_palisadectl"))
        .args(["--endpoint", endpoint, "--timeout", "500ms"])
        .args(extra)
        .arg("wait-ready")
        .args(["--wait-timeout", "2s"])
        .env_remove("PALISADE_ENDPOINT")
        .env_remove("PALISADE_TIMEOUT")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run palisadectl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn last_stderr_line(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    err.lines().last().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_with_a_quorum_is_ready_at_once() {
    let witness = FakeWitness::new(Cluster::healthy());
    let endpoint = serve(&witness).await;
    let o = wait_ready(&endpoint, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.starts_with("ready: leader 1 (site site-1), term ")
            && out.contains("; 2 of 2 witnesses answer it (2 needed); waited "),
        "{out}"
    );

    let o = wait_ready(&endpoint, &["--output", "json"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["ready"], true);
    assert_eq!(v["leader_id"], 1);
    assert_eq!(v["leader_site"], "site-1");
    assert_eq!(v["quorum_acked"], 2);
    assert_eq!(v["quorum_needed"], 2);
    assert!(v["waited_ms"].is_u64(), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn it_waits_for_a_leader_to_be_elected() {
    let mut cluster = Cluster::healthy();
    cluster.leader_id = None;
    let witness = FakeWitness::new(cluster);
    let endpoint = serve(&witness).await;
    let elect = witness.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        elect.state().leader_id = Some(1);
    });
    let o = wait_ready(&endpoint, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(stdout(&o).starts_with("ready: leader 1"), "{o:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn giving_up_says_what_was_seen_last_with_its_exit_code() {
    // No leader: 4.
    let mut cluster = Cluster::healthy();
    cluster.leader_id = None;
    let witness = FakeWitness::new(cluster);
    let endpoint = serve(&witness).await;
    let o = wait_ready(&endpoint, &[]).await;
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    assert!(
        last_stderr_line(&o).starts_with("palisadectl: not ready after 2s: no leader known: "),
        "{o:?}"
    );

    // A leader without a quorum: 8.
    let mut cluster = Cluster::healthy();
    cluster.quorum = "lost";
    let witness = FakeWitness::new(cluster);
    let endpoint = serve(&witness).await;
    let o = wait_ready(&endpoint, &[]).await;
    assert_eq!(o.status.code(), Some(8), "{o:?}");
    assert!(
        last_stderr_line(&o).starts_with("palisadectl: not ready after 2s: no quorum: leader 1"),
        "{o:?}"
    );

    // Nothing listens: 3.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let o = wait_ready(&format!("http://127.0.0.1:{port}"), &[]).await;
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(
        last_stderr_line(&o).starts_with("palisadectl: not ready after 2s: cannot reach "),
        "{o:?}"
    );
}
