//! A drill that fails after pausing the cluster does not leave automatic
//! failover off without saying so: it resumes the pause it set, or its last
//! line says that the cluster is still paused and how to resume it. Runs
//! the built `palisadectl` against the in-process fake witness of
//! `tests/fake` (the end-to-end run against real witnesses is in
//! `crates/palisade-demo/tests/playground.rs`).

#[allow(dead_code)]
mod fake;

use std::process::{Output, Stdio};

use fake::{serve, Cluster, FakeWitness};

/// A plan whose first phase pauses the cluster, runs `then`, and fails.
fn failing_plan(then: &str) -> String {
    format!(
        r#"
name = "pause-then-fail"

[[phase]]
name = "checkpoint"
steps = [
  {{ pause = "2h", reason = "DR test" }},
  {{ run = {then:?} }},
  {{ run = "exit 3" }},
]
checks = ["paused"]

[[phase]]
name = "failover"
steps = [{{ resume = true }}, {{ switchover = "site-2" }}]
"#
    )
}

/// Runs `drill run` of `plan` unattended against `endpoint`, as `drill-op`,
/// with a 1 s request timeout.
async fn drill(endpoint: &str, plan: &str) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plan.toml");
    std::fs::write(&path, plan).expect("write plan");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_palisadectl"))
        .args([
            "--endpoint",
            endpoint,
            "--timeout",
            "1s",
            "--who",
            "drill-op",
        ])
        .args(["drill", "run", path.to_str().expect("utf-8"), "--yes"])
        .arg("--report-dir")
        .arg(dir.path())
        .env_remove("PALISADE_ENDPOINT")
        .env_remove("PALISADE_TIMEOUT")
        .env_remove("PALISADE_WHO")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run palisadectl")
}

/// The last line on stderr: the drill's failure.
fn last_line(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    let last = err.lines().last().unwrap_or_default().to_owned();
    assert!(
        last.starts_with("palisadectl: drill pause-then-fail failed: "),
        "{err}"
    );
    last
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_drill_resumes_the_cluster_it_paused() {
    let witness = FakeWitness::new(Cluster::healthy());
    let endpoint = serve(&witness).await;
    let o = drill(&endpoint, &failing_plan("true")).await;
    assert_eq!(o.status.code(), Some(6), "{o:?}");
    let last = last_line(&o);
    assert!(
        last.contains("step 3 (run): exit status: 3; the drill resumed the cluster it had paused"),
        "{last}"
    );
    let c = witness.state();
    assert!(c.maintenance.is_none(), "still paused: {:?}", c.maintenance);
    let kinds: Vec<&str> = c
        .log
        .iter()
        .map(|l| l.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["pause", "resume", "record_drill"], "{:?}", c.log);
    assert!(c.log[1].contains("who=drill-op"), "{:?}", c.log);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_drill_whose_resume_gets_no_answer_says_the_cluster_may_still_be_paused() {
    let mut cluster = Cluster::healthy();
    cluster.hang_after_applying = Some("resume");
    let witness = FakeWitness::new(cluster);
    let endpoint = serve(&witness).await;
    let o = drill(&endpoint, &failing_plan("true")).await;
    assert_eq!(o.status.code(), Some(6), "{o:?}");
    let last = last_line(&o);
    assert!(last.contains("the cluster may still be paused"), "{last}");
    assert!(
        last.contains(&format!(
            "resume it with `palisadectl --endpoint {endpoint} resume`"
        )),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_drill_leaves_a_pause_that_replaced_its_own_and_says_so() {
    let witness = FakeWitness::new(Cluster::healthy());
    let endpoint = serve(&witness).await;
    // Another operator replaces the drill's pause while it runs.
    let other = format!(
        "{} --endpoint {endpoint} --who someone-else pause --force --reason 'network work'",
        env!("CARGO_BIN_EXE_palisadectl")
    );
    let o = drill(&endpoint, &failing_plan(&other)).await;
    assert_eq!(o.status.code(), Some(6), "{o:?}");
    let last = last_line(&o);
    assert!(
        last.contains(&format!(
            "the cluster is still paused by someone-else (not by this drill, so left as it is); \
             resume it with `palisadectl --endpoint {endpoint} resume`"
        )),
        "{last}"
    );
    let c = witness.state();
    assert_eq!(
        c.maintenance.as_ref().map(|m| m.by.as_str()),
        Some("someone-else")
    );
    assert!(
        !c.log.iter().any(|l| l.starts_with("resume")),
        "{:?}",
        c.log
    );
}
