//! Runs the built `palisadectl` binary: against nothing, against bad flags,
//! and against an in-process fake witness serving `palisade.v1.Control`, and
//! checks exit codes, stdout and the one-line stderr contract.

mod fake;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use fake::{serve, Cluster, Ending, FakeWitness};
use palisade_api::v1::Event;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tonic::Code;

/// palisadectl with `args` and a clean environment for its own variables,
/// so the caller's shell cannot change the outcome; `$USER` is `tester`.
fn command(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_palisadectl"));
    cmd.args(args)
        .env_remove("PALISADE_ENDPOINT")
        .env_remove("PALISADE_TIMEOUT_MS")
        .env_remove("PALISADE_WHO")
        .env("USER", "tester")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs palisadectl with `args` (see [`command`]).
async fn palisadectl(args: &[&str]) -> Output {
    command(args).output().await.expect("run palisadectl")
}

/// Runs palisadectl with `args` in `dir`, `input` on its stdin.
async fn palisadectl_in(dir: &Path, args: &[&str], input: &str) -> Output {
    let mut child = command(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn palisadectl");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(input.as_bytes())
        .await
        .expect("write stdin");
    drop(stdin);
    child.wait_with_output().await.expect("run palisadectl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The last stderr line, which carries the error after any progress lines
/// (`--output json` sends progress to stderr); asserts its prefix.
fn last_stderr_line(o: &Output) -> String {
    let err = stderr(o);
    let last = err.lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with("palisadectl: "), "unprefixed: {err:?}");
    last
}

fn json_of(o: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("not JSON ({e}): {o:?}"))
}

/// Asserts that `out` has a line that starts with `start` and ends with
/// `end` (the part between is a measured duration).
fn has_timed_line(out: &str, start: &str, end: &str) {
    assert!(
        out.lines().any(|l| l.starts_with(start)
            && l.ends_with(end)
            && l.len() >= start.len() + end.len()),
        "missing {start:?}…{end:?} in:\n{out}"
    );
}

/// Asserts that `out` has each of `lines` as a whole line.
fn has_lines(out: &str, lines: &[&str]) {
    for line in lines {
        assert!(
            out.lines().any(|l| l == *line),
            "missing {line:?} in:\n{out}"
        );
    }
}

/// Asserts the stderr contract: exactly one line, prefixed, and returns it.
fn one_stderr_line(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "stderr is not one line: {err:?}");
    assert!(err.starts_with("palisadectl: "), "unprefixed: {err:?}");
    err.trim_end().to_owned()
}

#[tokio::test]
async fn unreachable_endpoint_exits_3_naming_it() {
    // Port 1 (tcpmux) is closed on any machine that runs these tests.
    let o = palisadectl(&["--endpoint", "http://127.0.0.1:1", "status"]).await;
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    let err = one_stderr_line(&o);
    assert!(err.contains("http://127.0.0.1:1"), "{err}");
    assert!(err.contains("cannot reach"), "{err}");
    assert!(stdout(&o).is_empty());
}

#[tokio::test]
async fn invalid_endpoint_exits_2_naming_the_flag() {
    let o = palisadectl(&["--endpoint", "nonsense", "status"]).await;
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = one_stderr_line(&o);
    assert!(err.contains("--endpoint"), "{err}");
}

#[tokio::test]
async fn unknown_flag_exits_2() {
    let o = palisadectl(&["status", "--no-such-flag"]).await;
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_with_leader_prints_table_and_exits_0() {
    let endpoint = serve(&FakeWitness::new(Cluster::canned(Some(1)))).await;
    let o = palisadectl(&["--endpoint", &endpoint, "status"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.starts_with("cluster fake — answered by node 1, leader 1 (term 5)\n"),
        "{out}"
    );
    assert!(out.contains("\nID  SITE    ROLE      TERM"), "{out}");
    for line in [
        "databases: primary site-1, standby site-2 (sync) — epoch 2 — standby must rejoin",
        "detector: suspect: primary down for 2000 ms of the 10000 ms quorum requires",
        "WITNESS  SITE    STATE           LSN        LAG  STREAMING  AGE",
        "1        site-1  primary         0/3000148  -    -          150 ms",
        "2        site-2  down (refused)  -          -    -          150 ms",
        "last failover: epoch 2, site-2 -> site-1 (operator:tester), took 900 ms",
        "  outcome: aborted: standby too far behind",
        "  fenced  250 ms  lease expired",
        "each witness's view of each Elasticsearch",
        "WITNESS  SITE    STATE  NODES  LATENCY  AGE",
        "1        site-1  green  3      5 ms     150 ms",
        "2        site-1  green  3      5 ms     150 ms",
        "monitorsEnabled: site-1=true site-2=true  \
         <- WARNING: exactly one app must have monitorsEnabled=true",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?} in:\n{out}"
        );
    }
    assert!(!out.contains("FAILOVER IN PROGRESS"), "{out}");
    assert!(o.stderr.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn status_json_carries_databases_detector_and_last_failover() {
    let endpoint = serve(&FakeWitness::new(Cluster::canned(Some(1)))).await;
    let o = palisadectl(&["--endpoint", &endpoint, "--output", "json", "status"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON on stdout");
    assert_eq!(v["epoch"], 2);
    assert_eq!(v["primary_site"], "site-1");
    assert_eq!(v["standby_site"], "site-2");
    assert_eq!(v["replication_mode"], "sync");
    assert_eq!(v["standby_needs_rejoin"], true);
    assert!(v["assessment"]
        .as_str()
        .is_some_and(|a| a.starts_with("suspect: ")));
    assert!(v["failover_in_progress"].is_null());
    assert_eq!(
        v["last_failover"],
        serde_json::json!({
            "epoch": 2, "kind": "failover", "from_site": "site-2", "to_site": "site-1",
            "trigger": "operator:tester", "reason": "DR drill",
            "outcome": "aborted: standby too far behind",
            "started_at_ms": 1_700_000_000_000_i64,
            "finished_at_ms": 1_700_000_000_900_i64,
            "duration_ms": 900,
            "steps": [{
                "step": "fenced", "started_at_ms": 1_700_000_000_000_i64,
                "done_at_ms": 1_700_000_000_250_i64, "duration_ms": 250,
                "detail": "lease expired", "checks": []
            }],
            "evidence": {"down_for_ms": 0, "replication": "sync"},
            "request_id": null
        })
    );
    assert_eq!(
        v["nodes"][1]["databases"][1],
        serde_json::json!({
            "site": "site-2", "reachable": false, "error": "refused: connection refused",
            "in_recovery": null, "lsn": null, "replay_lag_seconds": null,
            "streaming": false, "latency_ms": 1, "age_ms": 150, "mariadb": null
        })
    );
    assert_eq!(
        v["nodes"][1]["search"],
        serde_json::json!([{
            "site": "site-1", "reachable": true, "error": null, "status": "green",
            "number_of_nodes": 3, "latency_ms": 5, "age_ms": 150
        }])
    );
    assert_eq!(v["nodes"][1]["monitors_enabled"], true);
    assert_eq!(
        v["monitors_enabled"],
        serde_json::json!({"site-1": true, "site-2": true})
    );
    assert!(v["maintenance"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn status_of_a_mariadb_pair_shows_replication_both_ways_and_semi_sync() {
    let mut cluster = Cluster::healthy();
    cluster.mariadb = true;
    let endpoint = serve(&FakeWitness::new(cluster)).await;

    let o = palisadectl(&["--endpoint", &endpoint, "status"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    let (masters, _) = out
        .split_once("\nreplication between the masters (each witness's view)\n")
        .and_then(|(_, rest)| rest.split_once("\n\neach witness's view of each Elasticsearch"))
        .unwrap_or_else(|| panic!("no masters' table before the Elasticsearch one in:\n{out}"));
    assert_eq!(
        masters,
        "\
WITNESS  SITE    READ_ONLY  FROM                          IO   SQL  BEHIND  READ / EXECUTED               GTID_SLAVE_POS  SEMI-SYNC
1        site-1  no         site-2-db:3306 (server_id 2)  Yes  Yes  0 s     mysql-bin.000003:5678 / 5678  0-1-42          active (1 client, 10000 ms)
1        site-2  yes        site-1-db:3306 (server_id 1)  Yes  Yes  0 s     mysql-bin.000003:5678 / 5678  0-1-42          off; acks
2        site-1  no         site-2-db:3306 (server_id 2)  Yes  Yes  0 s     mysql-bin.000003:5678 / 5678  0-1-42          active (1 client, 10000 ms)
2        site-2  yes        site-1-db:3306 (server_id 1)  Yes  Yes  0 s     mysql-bin.000003:5678 / 5678  0-1-42          off; acks",
        "{out}"
    );
    assert!(
        out.contains("\nWITNESS  SITE    STATE    POSITION               LAG    STREAMING  AGE\n"),
        "{out}"
    );

    let o = palisadectl(&["--endpoint", &endpoint, "-o", "json", "status"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON on stdout");
    let standby = &v["nodes"][1]["databases"][1]["mariadb"];
    assert_eq!(standby["read_only"], true);
    assert_eq!(standby["io_running"], "Yes");
    assert_eq!(standby["replicates_from"], "site-1-db:3306");
    assert_eq!(standby["replicates_from_server_id"], 1);
    assert!(standby["last_io_error"].is_null());
    assert_eq!(
        v["nodes"][1]["databases"][0]["mariadb"]["semi_sync"],
        serde_json::json!({
            "enabled": true, "active": true, "clients": 1,
            "timeout_ms": 10000, "replica_acks": false
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_without_leader_prints_json_then_exits_4() {
    let endpoint = serve(&FakeWitness::new(Cluster::canned(None))).await;
    // --output after the subcommand: it is a global flag.
    let o = palisadectl(&["--endpoint", &endpoint, "status", "--output", "json"]).await;
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON on stdout");
    assert!(v["leader_id"].is_null());
    assert!(v["assessment"].is_null());
    assert_eq!(v["nodes"][0]["role"], "candidate");
    let err = one_stderr_line(&o);
    assert!(err.contains("no leader"), "{err}");
    assert!(err.contains(&endpoint), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_annotate_exits_5_with_the_server_message() {
    let mut cluster = Cluster::canned(None);
    cluster.annotate_error = Some((Code::Unavailable, "no leader to forward to"));
    let endpoint = serve(&FakeWitness::new(cluster)).await;
    let o = palisadectl(&["--endpoint", &endpoint, "annotate", "drill"]).await;
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    let err = one_stderr_line(&o);
    assert_eq!(
        err,
        format!("palisadectl: {endpoint} rejected annotate: no leader to forward to (Unavailable)")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn annotate_sends_who_as_author_and_journal_lists_it() {
    let fake = FakeWitness::new(Cluster::canned(Some(1)));
    let endpoint = serve(&fake).await;
    let o = palisadectl(&["--endpoint", &endpoint, "annotate", "DR drill"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(stdout(&o), "noted at log index 13 (leader 1)\n");
    // --who wins over the default; --author over --who.
    let o = palisadectl(&["--endpoint", &endpoint, "--who", "bob", "annotate", "b"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "--who",
        "bob",
        "annotate",
        "--author",
        "carol",
        "c",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let log = fake.state().log.clone();
    assert_eq!(log.len(), 3, "{log:?}");
    // The default who is $USER@<hostname>.
    assert!(
        log[0].starts_with("annotate author=tester@") && log[0].ends_with(" text=DR drill"),
        "{log:?}"
    );
    assert_eq!(
        log[1..],
        ["annotate author=bob text=b", "annotate author=carol text=c"]
    );

    let o = palisadectl(&["--endpoint", &endpoint, "--output", "json", "journal"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        json_of(&o),
        serde_json::json!({"entries": [{
            "log_index": 13, "at_unix_ms": 1_700_000_000_123_i64,
            "author": "tester", "text": "DR drill", "request_id": null
        }]})
    );

    let o = palisadectl(&["--endpoint", &endpoint, "journal"]).await;
    assert_eq!(
        stdout(&o),
        "INDEX  WHEN                      AUTHOR  TEXT\n\
         13     2023-11-14T22:13:20.123Z  tester  DR drill\n"
    );
}

#[tokio::test]
async fn blank_who_exits_2_naming_the_flag_where_it_is_sent() {
    // Checked before anything is contacted (port 1 is closed).
    let o = palisadectl(&["--endpoint", "http://127.0.0.1:1", "--who", "  ", "pause"]).await;
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = one_stderr_line(&o);
    assert!(err.contains("invalid --who"), "{err}");
    assert!(err.contains("must not be empty"), "{err}");
}

/// A healthy fake cluster served on an ephemeral port.
async fn healthy() -> (FakeWitness, String) {
    let fake = FakeWitness::new(Cluster::healthy());
    let endpoint = serve(&fake).await;
    (fake, endpoint)
}

#[tokio::test(flavor = "multi_thread")]
async fn switchover_waits_printing_each_step_then_the_outcome() {
    let (fake, endpoint) = healthy().await;
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "--who",
        "ops",
        "switchover",
        "--to",
        "site-2",
        "--yes",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        stdout(&o),
        "\
switchover site-1 -> site-2 committed: epoch 3 (leader 1)
waiting for epoch 3 to finish (up to 2m)
  fenced        120 ms  stopped (fast shutdown)
  promoted      800 ms  promoted at 0/3000148
  app-flipped    60 ms  site-1: monitorsEnabled true -> false; site-2: false -> true
  repointed      90 ms  haproxy -> site-2
  verified      300 ms  2 checks passed:
    ok      database at site-2 writable
    ok      exactly one monitorsEnabled=true: site-2
switchover epoch 3 completed in 1380 ms
"
    );
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
    assert_eq!(fake.state().log, ["switchover to=site-2 who=ops"]);
    assert_eq!(fake.state().primary, "site-2");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wait_rides_out_a_witness_without_a_leader() {
    let (fake, endpoint) = healthy().await;
    fake.state().status_errors = 3;
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "switchover",
        "--to",
        "site-2",
        "--yes",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    for step in ["fenced", "promoted", "app-flipped", "repointed", "verified"] {
        assert!(
            out.contains(&format!("\n  {step} ")),
            "{step} missing:\n{out}"
        );
    }
    assert!(
        out.ends_with("switchover epoch 3 completed in 1380 ms\n"),
        "{out}"
    );
    assert_eq!(
        fake.state().status_errors,
        0,
        "the failing polls were not made"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn switchover_json_is_one_document_with_the_final_summary() {
    let (_fake, endpoint) = healthy().await;
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "--output",
        "json",
        "switchover",
        "--to",
        "site-2",
        "--yes",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v = json_of(&o);
    for (key, value) in [
        ("epoch", serde_json::json!(3)),
        ("kind", serde_json::json!("switchover")),
        ("from_site", serde_json::json!("site-1")),
        ("to_site", serde_json::json!("site-2")),
        ("leader_id", serde_json::json!(1)),
        ("data_loss_bound", serde_json::Value::Null),
        ("waited", serde_json::json!(true)),
        ("finished", serde_json::json!(true)),
        ("succeeded", serde_json::json!(true)),
    ] {
        assert_eq!(v[key], value, "{key}: {v}");
    }
    let summary = &v["summary"];
    assert_eq!(summary["kind"], "switchover");
    assert_eq!(summary["outcome"], "completed");
    assert_eq!(summary["duration_ms"], 1380);
    assert_eq!(
        summary["trigger"],
        "operator:tester@".to_owned() + &hostname()
    );
    let steps: Vec<&str> = summary["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["step"].as_str().expect("name"))
        .collect();
    assert_eq!(
        steps,
        ["fenced", "promoted", "app-flipped", "repointed", "verified"]
    );
    // Progress went to stderr, leaving stdout to the JSON.
    assert!(
        stderr(&o).contains("  fenced        120 ms"),
        "{}",
        stderr(&o)
    );
}

/// The hostname palisadectl puts after `$USER@`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn aborted_switchover_exits_6_with_the_outcome() {
    let (fake, endpoint) = healthy().await;
    fake.state().next_ending = Ending::Aborts;
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "switchover",
        "--to",
        "site-2",
        "--yes",
    ])
    .await;
    assert_eq!(o.status.code(), Some(6), "{o:?}");
    let abort =
        "aborted: standby site-2 did not catch up within 10000 ms; site-1 resumes as primary";
    has_lines(
        &stdout(&o),
        &[
            "  fenced        120 ms  stopped (fast shutdown)",
            &format!("switchover epoch 3 {abort} in 130 ms"),
        ],
    );
    assert!(!stdout(&o).contains("promoted"), "{}", stdout(&o));
    assert_eq!(
        one_stderr_line(&o),
        format!("palisadectl: switchover epoch 3 did not succeed: {abort}")
    );
    assert_eq!(fake.state().primary, "site-1");
}

#[tokio::test(flavor = "multi_thread")]
async fn completed_with_failed_checks_exits_6_and_json_says_not_succeeded() {
    let (fake, endpoint) = healthy().await;
    fake.state().next_ending = Ending::FailedChecks;
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "--output",
        "json",
        "failover",
        "--to",
        "site-2",
        "--yes",
    ])
    .await;
    assert_eq!(o.status.code(), Some(6), "{o:?}");
    let v = json_of(&o);
    assert_eq!(v["kind"], "failover");
    assert_eq!(v["finished"], true);
    assert_eq!(v["succeeded"], false);
    assert_eq!(
        v["summary"]["outcome"],
        "completed_with_failed_checks: webhook: HTTP 500"
    );
    // The failed check is marked from its own result, in the progress
    // lines and in the JSON.
    assert!(
        stderr(&o).contains(
            "  verified      300 ms  2 checks, 1 FAILED:\n\
             \x20   ok      database at site-2 writable\n\
             \x20   FAILED  webhook: HTTP 500\n"
        ),
        "{}",
        stderr(&o)
    );
    let verified = &v["summary"]["steps"][4];
    assert_eq!(verified["step"], "verified");
    assert_eq!(verified["detail"], "2 checks, 1 failed");
    assert_eq!(
        verified["checks"],
        serde_json::json!([
            {"name": "database at site-2 writable", "ok": true, "detail": ""},
            {"name": "webhook", "ok": false, "detail": "HTTP 500"},
        ])
    );
    assert_eq!(
        last_stderr_line(&o),
        "palisadectl: failover epoch 3 did not succeed: \
         completed_with_failed_checks: webhook: HTTP 500"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wait_that_times_out_exits_7_with_what_was_seen() {
    let (fake, endpoint) = healthy().await;
    fake.state().next_ending = Ending::Never;
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "--output",
        "json",
        "switchover",
        "--to",
        "site-2",
        "--yes",
        "--wait-timeout",
        "1s",
    ])
    .await;
    assert_eq!(o.status.code(), Some(7), "{o:?}");
    let v = json_of(&o);
    assert_eq!(v["waited"], true);
    assert_eq!(v["finished"], false);
    assert!(v["succeeded"].is_null());
    assert!(v["summary"]["outcome"].is_null(), "{v}");
    assert!(v["summary"]["steps"]
        .as_array()
        .is_some_and(|s| !s.is_empty()));
    let err = last_stderr_line(&o);
    assert!(
        err.starts_with("palisadectl: gave up waiting for switchover epoch 3 after 1s (last seen in progress with "),
        "{err}"
    );
    assert!(err.contains("it may still be running"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_wait_returns_once_committed() {
    let (fake, endpoint) = healthy().await;
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "switchover",
        "--to",
        "site-2",
        "--yes",
        "--no-wait",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        stdout(&o),
        "switchover site-1 -> site-2 committed: epoch 3 (leader 1)\n\
         not waiting (--no-wait): follow epoch 3 with `palisadectl status` or `palisadectl watch`\n"
    );
    // Nothing asked for Status, so the fake's operation has not moved.
    let o = palisadectl(&["--endpoint", &endpoint, "--output", "json", "status"]).await;
    let v = json_of(&o);
    assert_eq!(v["failover_in_progress"]["kind"], "switchover");
    assert_eq!(v["failover_in_progress"]["epoch"], 3);
    assert_eq!(fake.state().log.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_operations_exit_5_with_the_server_message() {
    let (fake, endpoint) = healthy().await;
    for (args, message) in [
        (
            &["switchover", "--to", "site-1", "--yes"][..],
            "rejected switchover: site-1 is already the primary (FailedPrecondition)",
        ),
        (
            &["failover", "--to", "mars", "--yes"][..],
            "rejected failover: unknown site \"mars\" (InvalidArgument)",
        ),
    ] {
        let mut full = vec!["--endpoint", &endpoint];
        full.extend_from_slice(args);
        let o = palisadectl(&full).await;
        assert_eq!(o.status.code(), Some(5), "{o:?}");
        assert_eq!(
            one_stderr_line(&o),
            format!("palisadectl: {endpoint} {message}")
        );
        assert!(stdout(&o).is_empty());
    }
    assert_eq!(fake.state().epoch, 2, "nothing was committed");
}

#[tokio::test]
async fn force_without_its_confirmation_is_a_usage_error_naming_the_missing_flag() {
    // Port 1: the usage error comes before anything is contacted.
    for (flag, missing) in [
        ("--force", "--yes-i-accept-data-loss"),
        ("--yes-i-accept-data-loss", "--force"),
    ] {
        let o = palisadectl(&[
            "--endpoint",
            "http://127.0.0.1:1",
            "failover",
            "--to",
            "b",
            "--yes",
            flag,
        ])
        .await;
        assert_eq!(o.status.code(), Some(2), "{o:?}");
        assert!(stderr(&o).contains(missing), "{flag}: {}", stderr(&o));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lagging_target_needs_force_and_the_data_loss_bound_is_printed() {
    let (fake, endpoint) = healthy().await;
    fake.state().target_lags = true;
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "failover",
        "--to",
        "site-2",
        "--yes",
    ])
    .await;
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    assert!(one_stderr_line(&o).contains("site-2 lags by 3 s of commits"));

    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "failover",
        "--to",
        "site-2",
        "--yes",
        "--force",
        "--yes-i-accept-data-loss",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    has_lines(
        &out,
        &[
            "failover site-1 -> site-2 committed: epoch 3 (leader 1)",
            "WARNING: DATA MAY BE LOST: up to 3 s of commits (1.2 MB of WAL) since 0/3000148",
            "failover epoch 3 completed in 1380 ms",
        ],
    );
    let log = fake.state().log.clone();
    assert!(
        log[1].starts_with("failover to=site-2 who=tester@")
            && log[1].ends_with(" force=true accept_data_loss=true"),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failback_is_refused_until_the_old_primary_rejoined() {
    let (_fake, endpoint) = healthy().await;
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "switchover",
        "--to",
        "site-2",
        "--yes",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let o = palisadectl(&["--endpoint", &endpoint, "failback", "--yes"]).await;
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    assert!(one_stderr_line(&o)
        .ends_with("rejected failback: site-1 has not rejoined yet (FailedPrecondition)"));
    // The fake rejoins the old primary after two more Status calls.
    for _ in 0..2 {
        palisadectl(&["--endpoint", &endpoint, "status"]).await;
    }
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "--output",
        "json",
        "failback",
        "--yes",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v = json_of(&o);
    assert_eq!(v["kind"], "failback");
    assert_eq!(
        (v["from_site"].as_str(), v["to_site"].as_str()),
        (Some("site-2"), Some("site-1"))
    );
    assert_eq!(v["succeeded"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_shows_in_status_and_resume_clears_it() {
    let (fake, endpoint) = healthy().await;
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "--who",
        "alice",
        "pause",
        "--for",
        "1h30m",
        "--reason",
        "DR test",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    // Paused at T0 + 1 h = 23:13:20, for 1 h 30 min.
    assert_eq!(
        stdout(&o),
        "PAUSED by alice until 2023-11-15T00:43:20.000Z: DR test (leader 1)\n\
         automatic failover is off; operations are refused until `palisadectl resume` \
         or 2023-11-15T00:43:20.000Z\n"
    );
    assert_eq!(
        fake.state().log,
        ["pause who=alice reason=DR test for_ms=Some(5400000)"]
    );

    let o = palisadectl(&["--endpoint", &endpoint, "status"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.starts_with(
            "cluster fake — answered by node 1, leader 1 (term 5)\n\
             PAUSED by alice until 2023-11-15T00:43:20.000Z: DR test\n\n"
        ),
        "{out}"
    );
    let o = palisadectl(&["--endpoint", &endpoint, "--output", "json", "status"]).await;
    assert_eq!(
        json_of(&o)["maintenance"],
        serde_json::json!({"by": "alice", "reason": "DR test",
                           "since_ms": 1_700_003_600_000_i64, "until_ms": 1_700_009_000_000_i64})
    );

    // While paused, operations are refused.
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "switchover",
        "--to",
        "site-2",
        "--yes",
    ])
    .await;
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    assert!(one_stderr_line(&o).contains("paused"));

    let o = palisadectl(&["--endpoint", &endpoint, "--output", "json", "resume"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v = json_of(&o);
    let id = v["request_id"].as_str().expect("a request id").to_owned();
    assert_eq!(
        v,
        serde_json::json!({"maintenance": null, "leader_id": 1, "request_id": id,
                           "duplicate": false})
    );
    let o = palisadectl(&["--endpoint", &endpoint, "resume"]).await;
    assert_eq!(
        stdout(&o),
        "resumed: automatic failover is on again (leader 1)\n"
    );

    // Without --for: until resumed, for_ms unset.
    let o = palisadectl(&["--endpoint", &endpoint, "--output", "json", "pause"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v = json_of(&o);
    assert!(v["maintenance"]["until_ms"].is_null(), "{v}");
    assert_eq!(v["maintenance"]["reason"], "");
    assert!(fake
        .state()
        .log
        .last()
        .is_some_and(|l| l.ends_with("for_ms=None")));
    let o = palisadectl(&["--endpoint", &endpoint, "status"]).await;
    assert!(stdout(&o).contains(&format!(
        "\nPAUSED by tester@{} until resumed\n",
        hostname()
    )));
}

#[tokio::test]
async fn a_bad_pause_duration_is_a_usage_error_naming_for() {
    let o = palisadectl(&["--endpoint", "http://127.0.0.1:1", "pause", "--for", "2x"]).await;
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = stderr(&o);
    assert!(err.contains("--for"), "{err}");
    assert!(err.contains("unknown time unit"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn history_lists_operations_rejoins_and_drills() {
    let (fake, endpoint) = healthy().await;
    fake.state().next_ending = Ending::Aborts;
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "--who",
        "ops",
        "switchover",
        "--to",
        "site-2",
        "--yes",
    ])
    .await;
    assert_eq!(o.status.code(), Some(6), "{o:?}");
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "--who",
        "ops",
        "switchover",
        "--to",
        "site-2",
        "--yes",
    ])
    .await;
    assert_eq!(o.status.code(), Some(6), "{o:?}");
    fake.state().next_ending = Ending::Completes;
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "--who",
        "ops",
        "switchover",
        "--to",
        "site-2",
        "--yes",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    for _ in 0..2 {
        palisadectl(&["--endpoint", &endpoint, "status"]).await;
    }

    let o = palisadectl(&["--endpoint", &endpoint, "history"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    has_lines(
        &out,
        &[
            "operations",
            "EPOCH  KIND        FROM    TO      TRIGGER       STARTED                   TOOK     OUTCOME",
            // Table lines are cut at 160 characters.
            "3      switchover  site-1  site-2  operator:ops  2023-11-14T22:18:20.000Z  130 ms   aborted: standby site-2 did not catch up within 10000 ms; site-1 resumes as…",
            "5      switchover  site-1  site-2  operator:ops  2023-11-14T22:21:40.000Z  1380 ms  completed",
            "rejoins",
            "EPOCH  SITE    STREAMS FROM  AT",
            "5      site-1  site-2        2023-11-14T22:21:45.000Z",
            "drills",
            "  none",
        ],
    );
    assert!(!out.contains("  fenced"), "{out}");
    let o = palisadectl(&["--endpoint", &endpoint, "history", "--steps"]).await;
    assert!(
        stdout(&o).contains("  operator:ops  2023-11-14T22:21:40.000Z  1380 ms  completed\n  fenced        120 ms  stopped (fast shutdown)\n"),
        "{}",
        stdout(&o)
    );

    let o = palisadectl(&["--endpoint", &endpoint, "--output", "json", "history"]).await;
    let v = json_of(&o);
    let mut keys: Vec<&String> = v.as_object().expect("object").keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "drills",
            "in_progress",
            "maintenance",
            "notes",
            "operations",
            "rejoins",
            "request_retention_ms",
            "requests"
        ]
    );
    assert_eq!(v["operations"].as_array().map(Vec::len), Some(3));
    assert_eq!(v["operations"][2]["kind"], "switchover");
    assert_eq!(v["operations"][2]["outcome"], "completed");
    assert!(v["in_progress"].is_null());
    assert_eq!(
        v["rejoins"],
        serde_json::json!([{"site": "site-1", "epoch": 5,
                            "at_ms": 1_700_000_505_000_i64, "primary_site": "site-2"}])
    );
    assert_eq!(v["drills"], serde_json::json!([]));
}

fn events() -> Vec<Event> {
    let e = |kind: &str, epoch: u64, text: &str| Event {
        at_ms: 1_700_000_000_123,
        kind: kind.to_owned(),
        epoch,
        text: text.to_owned(),
    };
    vec![
        e("snapshot", 2, "primary site-1, standby site-2, leader 1"),
        e("operation_started", 3, "switchover site-1 -> site-2 by ops"),
        e("step_done", 3, "fenced: stopped (fast shutdown)"),
        e("note", 0, "ops: drill\nstarted"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_prints_each_event_and_exits_3_when_the_stream_ends() {
    let (fake, endpoint) = healthy().await;
    fake.state().events = events();
    let o = palisadectl(&["--endpoint", &endpoint, "watch"]).await;
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert_eq!(
        stdout(&o),
        "\
2023-11-14T22:13:20.123Z  snapshot            epoch 2   primary site-1, standby site-2, leader 1
2023-11-14T22:13:20.123Z  operation_started   epoch 3   switchover site-1 -> site-2 by ops
2023-11-14T22:13:20.123Z  step_done           epoch 3   fenced: stopped (fast shutdown)
2023-11-14T22:13:20.123Z  note                -         ops: drill\\nstarted
"
    );
    assert_eq!(
        one_stderr_line(&o),
        format!("palisadectl: watch stream from {endpoint} ended: the witness closed it")
    );

    let o = palisadectl(&["--endpoint", &endpoint, "--output", "json", "watch"]).await;
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[0],
        serde_json::json!({"at_ms": 1_700_000_000_123_i64, "kind": "snapshot", "epoch": 2,
                           "text": "primary site-1, standby site-2, leader 1"})
    );
    assert!(lines[3]["epoch"].is_null());
    assert_eq!(lines[3]["text"], "ops: drill\nstarted");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_runs_until_ctrl_c_and_then_exits_0() {
    let (fake, endpoint) = healthy().await;
    {
        let mut c = fake.state();
        c.events = events();
        c.keep_watch_open = true;
    }
    // A request timeout shorter than the test: the stream must not be cut
    // by it.
    let mut child = command(&["--endpoint", &endpoint, "--timeout", "300ms", "watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for _ in 0..4 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("an event within 10 s")
            .expect("read")
            .expect("a line");
        assert!(line.starts_with("2023-11-14T22:13:20.123Z  "), "{line}");
    }
    // Past the request timeout and still running.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "watch ended by itself"
    );
    let pid = child.id().expect("pid").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits after Ctrl-C")
        .expect("wait");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// A plan for the fake's sites with every kind of step and check.
const PLAN: &str = r#"
name = "fake-drill"
description = "CLI test of the whole DR test"

[[phase]]
name = "checkpoint"
steps = [
  { annotate = "DR test: checkpoint" },
  { pause = "2h", reason = "DR test" },
  { run = "echo backup-done > backup.txt", timeout = "30s" },
  { manual = "Reboot the standby servers now" },
]
checks = ["leader", "paused"]

[[phase]]
name = "check"
checks = ["leader", "one-primary", "standby-streaming", "monitors-one", "not-in-progress", "search-healthy"]

[[phase]]
name = "failover"
steps = [{ resume = true }, { switchover = "site-2" }]

[[phase]]
name = "failover-check"
steps = [{ wait_rejoined = "30s" }]
checks = ["one-primary", "standby-streaming", "monitors-one", "not-paused", "not-in-progress"]

[[phase]]
name = "failback"
steps = [{ failback = true, timeout = "1m" }]

[[phase]]
name = "failback-check"
steps = [{ wait_rejoined = "30s" }]
checks = ["one-primary", "standby-streaming", "monitors-one"]
"#;

/// A temporary directory holding `plan.toml` with `text`.
fn plan_dir(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("plan.toml"), text).expect("write plan");
    dir
}

/// The `.md` and `.json` reports in `dir`.
fn reports(dir: &Path) -> (String, serde_json::Value) {
    let mut md = None;
    let mut json = None;
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if name.starts_with("fake-drill-") && name.ends_with(".md") {
            assert!(md.is_none(), "two reports");
            md = Some(std::fs::read_to_string(&path).expect("read md"));
        } else if name.starts_with("fake-drill-") && name.ends_with(".json") {
            assert!(json.is_none(), "two reports");
            let text = std::fs::read_to_string(&path).expect("read json");
            json = Some(serde_json::from_str(&text).expect("report is JSON"));
        }
    }
    (md.expect("a .md report"), json.expect("a .json report"))
}

fn phase_outcomes(report: &serde_json::Value) -> Vec<(String, String)> {
    report["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("name").to_owned(),
                p["outcome"].as_str().expect("outcome").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drill_runs_every_phase_writes_both_reports_and_records_itself() {
    let (fake, endpoint) = healthy().await;
    let dir = plan_dir(PLAN);
    let o = palisadectl_in(
        dir.path(),
        &[
            "--endpoint",
            &endpoint,
            "--who",
            "drill-op",
            "drill",
            "run",
            "plan.toml",
            "--yes",
        ],
        "",
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}\n{}", stdout(&o));
    let out = stdout(&o);
    has_lines(
        &out,
        &[
            &format!("drill fake-drill: 6 phase(s) from plan.toml, run by drill-op via {endpoint}"),
            "phase 1/6: checkpoint",
            "  1. annotate \"DR test: checkpoint\"",
            "  4. manual: Reboot the standby servers now",
            "  check leader            ok      leader 1; all 2 witnesses reachable",
            "  2. switchover to site-2",
            "       switchover site-1 -> site-2 committed: epoch 3 (leader 1)",
            "         fenced        120 ms  stopped (fast shutdown)",
            "       switchover epoch 3 completed in 1380 ms",
            "  check standby-streaming ok      standby site-2 streams, seen by witness(es) 1, 2",
            "recorded in the cluster history (leader 1)",
        ],
    );
    has_timed_line(
        &out,
        "     passed (",
        " ms): noted at log index 13 (leader 1)",
    );
    has_timed_line(&out, "     passed (", " ms): not waited for (--yes)");
    has_timed_line(
        &out,
        "     passed (",
        "): switchover epoch 3 completed in 1380 ms",
    );
    has_timed_line(&out, "phase 3/6: failover passed (", ")");
    has_timed_line(&out, "drill fake-drill passed in ", "");
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
    // The run step ran in the current directory.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("backup.txt")).expect("backup.txt"),
        "backup-done\n"
    );

    let (md, report) = reports(dir.path());
    assert_eq!(report["passed"], true);
    assert_eq!(report["outcome"], "passed");
    assert_eq!(report["who"], "drill-op");
    assert_eq!(report["recorded"], true);
    assert!(report["record_error"].is_null());
    let names: Vec<(String, String)> = [
        "checkpoint",
        "check",
        "failover",
        "failover-check",
        "failback",
        "failback-check",
    ]
    .iter()
    .map(|n| ((*n).to_owned(), "passed".to_owned()))
    .collect();
    assert_eq!(phase_outcomes(&report), names);
    let switchover = &report["phases"][2]["steps"][1];
    assert_eq!(switchover["action"], "switchover");
    assert_eq!(switchover["outcome"], "passed");
    assert_eq!(
        switchover["detail"],
        "switchover epoch 3 completed in 1380 ms"
    );
    assert_eq!(
        switchover["operation"]["summary"]["steps"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );
    let server_checks = switchover["operation"]["summary"]["steps"][4]["checks"]
        .as_array()
        .expect("the verified step's checks");
    assert_eq!(server_checks.len(), 2);
    assert!(
        server_checks.iter().all(|c| c["ok"] == true),
        "{server_checks:?}"
    );
    assert_eq!(
        report["phases"][1]["checks"].as_array().map(Vec::len),
        Some(6)
    );
    assert!(report["phases"][1]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .all(|c| c["outcome"] == "passed"));
    assert!(md.starts_with("# DR drill `fake-drill`: PASSED\n"), "{md}");
    assert!(md.contains("\n| 3 | failover | passed | "), "{md}");
    assert!(
        md.contains("\n| fenced | 120 ms | stopped (fast shutdown) |\n"),
        "{md}"
    );
    assert!(
        md.contains("\n| database at site-2 writable | ok |  |\n"),
        "{md}"
    );

    // What reached the server; the guard is gone before the next await.
    {
        let c = fake.state();
        assert_eq!(c.drills.len(), 1);
        let d = &c.drills[0];
        assert_eq!(
            (d.name.as_str(), d.who.as_str(), d.outcome.as_str()),
            ("fake-drill", "drill-op", "passed")
        );
        let recorded: Vec<(&str, &str)> = d
            .phases
            .iter()
            .map(|p| (p.name.as_str(), p.outcome.as_str()))
            .collect();
        assert_eq!(
            recorded,
            [
                ("checkpoint", "passed"),
                ("check", "passed"),
                ("failover", "passed"),
                ("failover-check", "passed"),
                ("failback", "passed"),
                ("failback-check", "passed")
            ]
        );
        assert!(d.finished_at_ms >= d.started_at_ms);
        let actions: Vec<&str> = c
            .log
            .iter()
            .map(|l| l.split(' ').next().unwrap_or_default())
            .collect();
        assert_eq!(
            actions,
            [
                "annotate",
                "pause",
                "resume",
                "switchover",
                "failback",
                "record_drill"
            ]
        );
        assert_eq!(
            c.log[1],
            "pause who=drill-op reason=DR test for_ms=Some(7200000)"
        );
        assert_eq!(c.primary, "site-1");
    }

    // The recorded drill in `history`.
    let o = palisadectl(&["--endpoint", &endpoint, "--output", "json", "history"]).await;
    let d = &json_of(&o)["drills"][0];
    let mut keys: Vec<&String> = d.as_object().expect("drill").keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "duration_ms",
            "finished_at_ms",
            "name",
            "outcome",
            "phases",
            "started_at_ms",
            "who"
        ]
    );
    assert_eq!(
        d["phases"][2],
        serde_json::json!({
            "name": "failover", "outcome": "passed",
            "duration_ms": report["phases"][2]["duration_ms"]
        })
    );
    let o = palisadectl(&["--endpoint", &endpoint, "history"]).await;
    assert!(
        stdout(&o).contains("\nfake-drill  drill-op  "),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("  passed   6 passed\n"),
        "{}",
        stdout(&o)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_phase_skips_the_rest_still_reports_and_exits_6() {
    let (fake, endpoint) = healthy().await;
    fake.state().next_ending = Ending::Aborts;
    let dir = plan_dir(PLAN);
    let o = palisadectl_in(
        dir.path(),
        &[
            "--endpoint",
            &endpoint,
            "--output",
            "json",
            "drill",
            "run",
            "plan.toml",
            "--yes",
        ],
        "",
    )
    .await;
    assert_eq!(o.status.code(), Some(6), "{o:?}");
    let why = "phase 3 (failover): step 2 (switchover): switchover epoch 3 did not succeed: \
               aborted: standby site-2 did not catch up within 10000 ms; site-1 resumes as primary";
    // stdout is exactly the report, as written to the .json file.
    let printed = json_of(&o);
    let (md, report) = reports(dir.path());
    assert_eq!(printed, report);
    assert_eq!(report["passed"], false);
    assert_eq!(report["outcome"], format!("failed: {why}"));
    let outcomes = phase_outcomes(&report);
    assert_eq!(outcomes[1], ("check".to_owned(), "passed".to_owned()));
    assert!(
        outcomes[2].1.starts_with("failed: step 2 (switchover): "),
        "{outcomes:?}"
    );
    for skipped in &outcomes[3..] {
        assert_eq!(skipped.1, "skipped", "{outcomes:?}");
    }
    assert_eq!(report["phases"][3]["steps"][0]["outcome"], "skipped");
    assert_eq!(report["phases"][3]["checks"][0]["outcome"], "skipped");
    assert!(md.starts_with("# DR drill `fake-drill`: FAILED\n"), "{md}");

    let err = last_stderr_line(&o);
    assert!(
        err.starts_with(&format!(
            "palisadectl: drill fake-drill failed: {why} (report: "
        )),
        "{err}"
    );
    let c = fake.state();
    assert_eq!(c.drills.len(), 1);
    assert_eq!(c.drills[0].outcome, format!("failed: {why}"));
    let recorded: Vec<&str> = c.drills[0]
        .phases
        .iter()
        .map(|p| p.outcome.as_str())
        .collect();
    assert_eq!(recorded[3..], ["skipped", "skipped", "skipped"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drill_that_cannot_be_recorded_says_so_and_still_writes_the_report() {
    let (fake, endpoint) = healthy().await;
    fake.state().record_error = Some((Code::Unavailable, "no leader"));
    let dir = plan_dir(
        "name = \"fake-drill\"\n[[phase]]\nname = \"check\"\nchecks = [\"leader\", \"not-paused\"]\n",
    );
    let o = palisadectl_in(
        dir.path(),
        &["--endpoint", &endpoint, "drill", "run", "plan.toml"],
        "",
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        one_stderr_line(&o),
        format!(
            "palisadectl: could not record the drill in the cluster history \
             ({endpoint} rejected record_drill: no leader (Unavailable)); the report is still written"
        )
    );
    let (md, report) = reports(dir.path());
    assert_eq!(report["passed"], true);
    assert_eq!(report["recorded"], false);
    assert_eq!(
        report["record_error"],
        format!("{endpoint} rejected record_drill: no leader (Unavailable)")
    );
    assert!(
        md.contains("| Recorded in the cluster history | **no**: "),
        "{md}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_between_asks_before_each_phase_and_stop_ends_the_drill() {
    let (fake, endpoint) = healthy().await;
    let dir = plan_dir(
        "name = \"fake-drill\"\n\
         [[phase]]\nname = \"checkpoint\"\nsteps = [{ annotate = \"one\" }]\n\
         [[phase]]\nname = \"check\"\nchecks = [\"leader\"]\n\
         [[phase]]\nname = \"failover\"\nsteps = [{ switchover = \"site-2\" }]\n",
    );
    // Enter before phase 2, then `stop` before phase 3.
    let o = palisadectl_in(
        dir.path(),
        &[
            "--endpoint",
            &endpoint,
            "drill",
            "run",
            "plan.toml",
            "--pause-between",
        ],
        "\nstop\n",
    )
    .await;
    assert_eq!(o.status.code(), Some(6), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.contains("next: phase 2/3 (check). Press Enter to start it, or type `stop` to end the drill here: "),
        "{out}"
    );
    let (_, report) = reports(dir.path());
    assert_eq!(
        phase_outcomes(&report),
        [
            ("checkpoint".to_owned(), "passed".to_owned()),
            ("check".to_owned(), "passed".to_owned()),
            ("failover".to_owned(), "skipped".to_owned()),
        ]
    );
    assert_eq!(
        report["outcome"],
        "failed: stopped before phase 3 (failover): the operator answered \"stop\""
    );
    assert!(
        !fake.state().log.iter().any(|l| l.starts_with("switchover")),
        "the skipped phase ran"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manual_step_without_yes_fails_when_stdin_closes() {
    let (_fake, endpoint) = healthy().await;
    let dir = plan_dir(
        "name = \"fake-drill\"\n[[phase]]\nname = \"pre-reboot\"\nsteps = [{ manual = \"Reboot site-1\" }]\n",
    );
    let o = palisadectl_in(
        dir.path(),
        &["--endpoint", &endpoint, "drill", "run", "plan.toml"],
        "",
    )
    .await;
    assert_eq!(o.status.code(), Some(6), "{o:?}");
    assert!(
        stdout(&o).contains("     >>> Reboot site-1\n"),
        "{}",
        stdout(&o)
    );
    let (_, report) = reports(dir.path());
    assert_eq!(
        report["phases"][0]["steps"][0]["detail"],
        "stdin closed before the step was confirmed (use --yes to run unattended)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_steps_take_a_note_or_a_failure_from_the_operator() {
    let (_fake, endpoint) = healthy().await;
    let dir = plan_dir(
        "name = \"fake-drill\"\n[[phase]]\nname = \"pre-reboot\"\n\
         steps = [{ manual = \"Reboot site-1\" }, { manual = \"Check site-1\" }]\n",
    );
    let o = palisadectl_in(
        dir.path(),
        &[
            "--endpoint",
            &endpoint,
            "--who",
            "op",
            "drill",
            "run",
            "plan.toml",
        ],
        "failover of the VMs done\nfail site-1 did not come back\n",
    )
    .await;
    assert_eq!(o.status.code(), Some(6), "{o:?}");
    let (_, report) = reports(dir.path());
    let steps = &report["phases"][0]["steps"];
    assert_eq!(steps[0]["outcome"], "passed");
    assert_eq!(
        steps[0]["detail"],
        "confirmed by op: failover of the VMs done"
    );
    assert_eq!(steps[1]["outcome"], "failed");
    assert_eq!(
        steps[1]["detail"],
        "marked failed by op: site-1 did not come back"
    );
    assert_eq!(
        report["outcome"],
        "failed: phase 1 (pre-reboot): step 2 (manual): marked failed by op: site-1 did not come back"
    );
}

#[tokio::test]
async fn invalid_plans_exit_2_naming_the_file_and_phase() {
    for (text, expected) in [
        (
            "name = \"x\"\n[[phase]]\nname = \"checkpoint\"\nchecks = [\"leader\"]\n[[phase]]\nname = \"reboot\"\nchecks = [\"leader\"]\n",
            "palisadectl: drill plan plan.toml: phase 2 (reboot), name: unknown variant `reboot`, expected one of",
        ),
        (
            "name = \"x\"\n[[phase]\n",
            "palisadectl: drill plan plan.toml: not valid TOML: ",
        ),
        (
            "name = \"x\"\n[[phase]]\nname = \"checkpoint\"\nsteps = [{ annotate = \"a\" }, { pauze = \"2h\" }]\n",
            "palisadectl: drill plan plan.toml: phase 1 (checkpoint), step 2: unknown field `pauze`, expected one of",
        ),
        (
            "name = \"x\"\n[[phase]]\nname = \"failover\"\nchecks = [\"leader\"]\n[[phase]]\nname = \"check\"\nchecks = [\"leader\"]\n",
            "palisadectl: drill plan plan.toml: phase 2 (check): comes after failover (phase 1)",
        ),
    ] {
        let dir = plan_dir(text);
        // Port 1: validation comes before anything is contacted.
        let o = palisadectl_in(
            dir.path(),
            &["--endpoint", "http://127.0.0.1:1", "drill", "run", "plan.toml", "--yes"],
            "",
        )
        .await;
        assert_eq!(o.status.code(), Some(2), "{o:?}");
        let err = one_stderr_line(&o);
        assert!(err.starts_with(expected), "{err}");
    }
    let o = palisadectl(&["drill", "run", "/nonexistent/plan.toml"]).await;
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(one_stderr_line(&o)
        .starts_with("palisadectl: drill plan /nonexistent/plan.toml: cannot read: "));
}

#[tokio::test]
async fn a_missing_report_dir_is_a_usage_error_before_anything_runs() {
    let dir = plan_dir(PLAN);
    let o = palisadectl_in(
        dir.path(),
        &[
            "--endpoint",
            "http://127.0.0.1:1",
            "drill",
            "run",
            "plan.toml",
            "--yes",
            "--report-dir",
            "nope",
        ],
        "",
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(one_stderr_line(&o).starts_with("palisadectl: invalid --report-dir nope: "));
}

#[tokio::test]
async fn a_dry_run_prints_the_plan_and_contacts_nothing() {
    let dir = plan_dir(PLAN);
    // Port 1 is closed: a dry run that contacted anything would exit 3.
    let o = palisadectl_in(
        dir.path(),
        &[
            "--endpoint",
            "http://127.0.0.1:1",
            "drill",
            "run",
            "plan.toml",
            "--dry-run",
        ],
        "",
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.starts_with("drill fake-drill from plan.toml: 6 phase(s)\n  CLI test of the whole DR test\n\nphase 1/6: checkpoint\n"),
        "{out}"
    );
    has_lines(
        &out,
        &[
            "  step 2: pause automatic failover for 2h: DR test",
            "  step 3: run `echo backup-done > backup.txt` (timeout 30s)",
            "  checks (within 30s): leader, paused",
            "phase 3/6: failover",
            "  step 2: switchover to site-2",
            "  step 1: failback (wait up to 1m)",
        ],
    );
    assert!(
        !dir.path().join("backup.txt").exists(),
        "the dry run ran a step"
    );

    let o = palisadectl_in(
        dir.path(),
        &[
            "--endpoint",
            "http://127.0.0.1:1",
            "--output",
            "json",
            "drill",
            "run",
            "plan.toml",
            "--dry-run",
        ],
        "",
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v = json_of(&o);
    assert_eq!(v["name"], "fake-drill");
    assert_eq!(v["phases"].as_array().map(Vec::len), Some(6));
    assert_eq!(
        v["phases"][0]["steps"][1],
        serde_json::json!({"index": 2, "action": "pause",
                           "description": "pause automatic failover for 2h: DR test"})
    );
    assert_eq!(
        v["phases"][0]["checks"],
        serde_json::json!(["leader", "paused"])
    );
    assert_eq!(v["phases"][0]["checks_timeout_ms"], 30000);
}

#[tokio::test]
async fn the_shipped_demo_plan_is_valid() {
    let plan = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/drills/dr-test.toml"
    );
    let o = palisadectl(&["drill", "run", plan, "--dry-run"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    for phase in [
        "checkpoint",
        "pre-reboot",
        "check",
        "failover",
        "failover-check",
        "failback",
        "failback-check",
    ] {
        assert!(
            out.contains(&format!(": {phase}\n")),
            "{phase} missing:\n{out}"
        );
    }
}

// ---- issue 11: exactly-once requests, honest status, operator habits ----

/// The request id in a one-line error, after `request `.
fn request_id_in(err: &str) -> String {
    let at = err.find("request 2").expect("a request id in the message") + "request ".len();
    err[at..]
        .split_whitespace()
        .next()
        .expect("id")
        .trim_end_matches(':')
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pause_that_got_no_answer_exits_9_and_its_retry_pauses_once() {
    // Issue 11: with two witnesses down, `pause` exited 3 ("timed out")
    // and took effect later; a retry would pause again. Now: exit 9 with
    // the request id; `history --request` shows it took effect; a retry
    // with the id is answered from the record.
    let (fake, endpoint) = healthy().await;
    fake.state().hang_after_applying = Some("pause");
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "--timeout",
        "500ms",
        "pause",
        "--reason",
        "kernel update",
    ])
    .await;
    assert_eq!(o.status.code(), Some(9), "{o:?}");
    let err = one_stderr_line(&o);
    let id = request_id_in(&err);
    assert!(
        err.starts_with(&format!(
            "palisadectl: pause request {id} to {endpoint} got no answer: timed out after 500 ms; \
             it may still take effect: check with `palisadectl history --request {id}`; \
             retrying with `palisadectl --endpoint {endpoint} --timeout 500ms pause --reason \
             'kernel update' --request-id {id}` is safe"
        )),
        "{err}"
    );
    assert_eq!(fake.state().log.len(), 1, "applied once");

    let o = palisadectl(&["--endpoint", &endpoint, "history", "--request", &id]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.starts_with(&format!("request {id}: pause by tester\n")),
        "{out}"
    );
    assert!(out.contains("  outcome   applied\n"), "{out}");

    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "-o",
        "json",
        "pause",
        "--reason",
        "kernel update",
        "--request-id",
        &id,
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v = json_of(&o);
    assert_eq!(v["duplicate"], true);
    assert_eq!(v["request_id"], id.as_str());
    assert_eq!(v["maintenance"]["reason"], "kernel update");
    let c = fake.state();
    assert_eq!(c.log.len(), 1, "the retry did not pause again: {:?}", c.log);
    assert_eq!(
        c.duplicates, c.request_ids,
        "the retry was the first request"
    );
    assert_eq!(c.request_ids, [id]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unanswered_annotate_and_its_retry_add_one_note() {
    let (fake, endpoint) = healthy().await;
    fake.state().hang_after_applying = Some("annotate");
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "--timeout",
        "300ms",
        "annotate",
        "hi",
    ])
    .await;
    assert_eq!(o.status.code(), Some(9), "{o:?}");
    let id = request_id_in(&one_stderr_line(&o));
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "annotate",
        "hi",
        "--request-id",
        &id,
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        stdout(&o),
        format!("already noted at log index 13 by request {id} (nothing added; leader 1)\n")
    );
    assert_eq!(fake.state().notes.len(), 1);
    // Every invocation makes up its own id: a new annotate is a new note.
    let o = palisadectl(&["--endpoint", &endpoint, "annotate", "hi"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(fake.state().notes.len(), 2);
    assert_ne!(fake.state().notes[1].request_id, id);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unanswered_switchover_retried_with_its_id_begins_once() {
    let (fake, endpoint) = healthy().await;
    fake.state().hang_after_applying = Some("switchover");
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "--timeout",
        "500ms",
        "switchover",
        "--to",
        "site-2",
        "--yes",
        "--no-wait",
    ])
    .await;
    assert_eq!(o.status.code(), Some(9), "{o:?}");
    let id = request_id_in(&one_stderr_line(&o));
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "switchover",
        "--to",
        "site-2",
        "--yes",
        "--request-id",
        &id,
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.starts_with(&format!(
            "request {id} was already applied: it began switchover site-1 -> site-2 as epoch 3 \
             (nothing new begun; leader 1)\nwaiting for epoch 3 to finish"
        )),
        "{out}"
    );
    assert!(
        out.ends_with("switchover epoch 3 completed in 1380 ms\n"),
        "{out}"
    );
    assert_eq!(fake.state().epoch, 3, "one switchover, not two");
    assert_eq!(fake.state().log.len(), 1);
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "-o",
        "json",
        "history",
        "--request",
        &id,
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v = json_of(&o);
    assert_eq!(v["found"], true);
    assert_eq!(v["kind"], "switchover");
    assert_eq!(v["operation"]["epoch"], 3);
    assert_eq!(v["operation"]["outcome"], "completed");
}

#[tokio::test(flavor = "multi_thread")]
async fn history_of_an_unknown_request_exits_9() {
    let (_fake, endpoint) = healthy().await;
    let id = "20231114T221320.123Z-0123456789abcdef";
    let o = palisadectl(&["--endpoint", &endpoint, "history", "--request", id]).await;
    assert_eq!(o.status.code(), Some(9), "{o:?}");
    assert_eq!(stdout(&o), format!("request {id}: no record\n"));
    let err = one_stderr_line(&o);
    assert!(
        err.contains(&format!(
            "has no record of request {id} (it has applied the log up to index 40)"
        )),
        "{err}"
    );
    assert!(err.contains("retrying it with --request-id"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn history_lists_pauses_resumes_and_notes_with_who_when_and_request_id() {
    let (_fake, endpoint) = healthy().await;
    for args in [
        &["--who", "alice", "pause", "--reason", "DR test"][..],
        &["--who", "bob", "resume"][..],
        &["--who", "carol", "annotate", "checkpoint"][..],
    ] {
        let o = palisadectl(&[&["--endpoint", endpoint.as_str()][..], args].concat()).await;
        assert_eq!(o.status.code(), Some(0), "{args:?}: {o:?}");
    }
    let o = palisadectl(&["--endpoint", &endpoint, "-o", "json", "history"]).await;
    let v = json_of(&o);
    let m = v["maintenance"].as_array().expect("maintenance[]");
    assert_eq!(m.len(), 2);
    assert_eq!(
        (m[0]["kind"].as_str(), m[0]["by"].as_str()),
        (Some("paused"), Some("alice"))
    );
    assert_eq!(
        (m[1]["kind"].as_str(), m[1]["by"].as_str()),
        (Some("resumed"), Some("bob"))
    );
    let pause_id = m[0]["request_id"].as_str().expect("pause request id");
    let note = &v["notes"][0];
    assert_eq!(note["author"], "carol");
    let note_id = note["request_id"].as_str().expect("note request id");
    assert_eq!(v["requests"].as_array().map(Vec::len), Some(3));
    let o = palisadectl(&["--endpoint", &endpoint, "history"]).await;
    let out = stdout(&o);
    assert!(out.contains("\npauses and resumes\nWHEN "), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("  paused   alice  until resumed  ")
                && l.contains(pause_id)
                && l.ends_with("DR test")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("  carol   ") && l.contains(note_id) && l.ends_with("checkpoint")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_on_a_paused_cluster_is_refused_unless_forced_naming_who_paused() {
    let (fake, endpoint) = healthy().await;
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "--who",
        "alice",
        "pause",
        "--reason",
        "DR",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let o = palisadectl(&["--endpoint", &endpoint, "--who", "bob", "pause"]).await;
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    let err = one_stderr_line(&o);
    assert!(err.contains("already paused by alice"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        fake.state().maintenance.as_ref().map(|m| m.by.clone()),
        Some("alice".to_owned())
    );
    let o = palisadectl(&["--endpoint", &endpoint, "--who", "bob", "pause", "--force"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        fake.state().maintenance.as_ref().map(|m| m.by.clone()),
        Some("bob".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_of_a_leader_without_quorum_exits_8_in_table_and_json() {
    // Issue 11: `status` exited 0 on a leader that had lost its quorum.
    let (fake, endpoint) = healthy().await;
    fake.state().quorum = "lost";
    let o = palisadectl(&["--endpoint", &endpoint, "status"]).await;
    assert_eq!(o.status.code(), Some(8), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.starts_with(
            "cluster fake — answered by node 1, leader 1 (term 5)\n\
             NO QUORUM: leader 1 heard from 1 of 2 witnesses (2 needed) within 1000 ms; a \
             majority last answered it 61000 ms ago; it cannot commit anything\n"
        ),
        "{out}"
    );
    let err = one_stderr_line(&o);
    assert!(
        err.starts_with("palisadectl: no quorum: leader 1 has heard from 1 of 2"),
        "{err}"
    );
    let o = palisadectl(&["--endpoint", &endpoint, "-o", "json", "status"]).await;
    assert_eq!(o.status.code(), Some(8), "{o:?}");
    let v = json_of(&o);
    assert_eq!(v["quorum"], "lost");
    assert_eq!(v["leader_millis_since_quorum_ack"], 61_000);
    assert_eq!(
        (v["quorum_acked"].as_u64(), v["quorum_needed"].as_u64()),
        (Some(1), Some(2))
    );
    fake.state().quorum = "ok";
    let o = palisadectl(&["--endpoint", &endpoint, "-o", "json", "status"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(json_of(&o)["quorum"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_gives_up_on_a_port_that_accepts_but_never_speaks() {
    // Issue 11: `watch --timeout` hung for over 10 minutes against such a
    // port.
    let endpoint = fake::silent_port().await;
    let started = std::time::Instant::now();
    let o = tokio::time::timeout(
        Duration::from_secs(20),
        palisadectl(&["--endpoint", &endpoint, "--timeout", "500ms", "watch"]),
    )
    .await
    .expect("watch --timeout 500ms must end within 20 s");
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let err = one_stderr_line(&o);
    assert!(err.contains(&endpoint), "{err}");
    assert!(err.contains("500 ms"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_gives_up_on_a_witness_that_freezes_mid_stream() {
    // Issue 11: `watch --timeout` hung against a frozen (SIGSTOPped)
    // witness. The proxy stops forwarding after the first events, as a
    // stopped process does.
    let (fake, upstream) = healthy().await;
    {
        let mut c = fake.state();
        c.events = events();
        c.keep_watch_open = true;
    }
    let proxy = fake::FreezableProxy::start(&upstream).await;
    let mut child = command(&["--endpoint", &proxy.endpoint, "--timeout", "500ms", "watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for _ in 0..4 {
        tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("an event within 10 s")
            .expect("read")
            .expect("a line");
    }
    // Streaming and quiet for longer than the timeout: the witness answers
    // pings, so the watch goes on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "a quiet stream is not dead"
    );
    proxy.freeze();
    let frozen_at = std::time::Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("watch --timeout 500ms must end within 20 s of the freeze")
        .expect("wait");
    assert_eq!(status.code(), Some(3), "{status:?}");
    assert!(
        frozen_at.elapsed() < Duration::from_secs(5),
        "{:?}",
        frozen_at.elapsed()
    );
    let mut err = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .await
        .expect("stderr");
    assert!(
        err.starts_with(&format!(
            "palisadectl: watch stream from {} ended: ",
            proxy.endpoint
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn operations_without_a_terminal_need_yes_and_nothing_is_sent() {
    let (fake, endpoint) = healthy().await;
    for args in [
        &["switchover", "--to", "site-2"][..],
        &["failover", "--to", "site-2"][..],
        &["failback"][..],
    ] {
        let o = palisadectl(&[&["--endpoint", endpoint.as_str()][..], args].concat()).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        let err = one_stderr_line(&o);
        assert!(
            err.ends_with("asks for confirmation, but stdin is not a terminal; add --yes to run it without asking"),
            "{err}"
        );
    }
    assert!(fake.state().log.is_empty(), "{:?}", fake.state().log);
}

/// Runs palisadectl with a pseudo-terminal as stdin, typing `answer`.
async fn palisadectl_on_a_terminal(args: &[&str], answer: &str) -> Output {
    use std::io::Write;
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let child = command(args)
        .stdin(Stdio::from(pty.slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn palisadectl");
    let mut master = std::fs::File::from(pty.master);
    master
        .write_all(answer.as_bytes())
        .expect("type the answer");
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("palisadectl ends")
        .expect("run palisadectl");
    drop(master);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn operations_ask_on_a_terminal_and_only_yes_proceeds() {
    let (fake, endpoint) = healthy().await;
    let args = [
        "--endpoint",
        endpoint.as_str(),
        "switchover",
        "--to",
        "site-2",
    ];
    let o = palisadectl_on_a_terminal(&args, "n\n").await;
    assert_eq!(o.status.code(), Some(10), "{o:?}");
    let err = stderr(&o);
    assert!(
        err.starts_with("cluster fake (via ")
            && err.contains(
                "primary site-1, standby site-2\nabout to switch the primary over to site-2"
            ),
        "{err}"
    );
    assert!(err.contains("Proceed? [y/N] "), "{err}");
    assert_eq!(
        last_stderr_line(&o),
        "palisadectl: switchover not confirmed: nothing was sent"
    );
    assert!(fake.state().log.is_empty());
    let o = palisadectl_on_a_terminal(&args, "y\n").await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(fake.state().log.len(), 1);
}

/// The fake's membership: three voters, sites site-1..3, log index 7.
const THREE_MEMBERS: &str = "\
ID  SITE    ROLE   RAFT            CONTROL
1   site-1  voter  127.0.0.1:7301  127.0.0.1:7401
2   site-2  voter  127.0.0.1:7302  127.0.0.1:7402
3   site-3  voter  127.0.0.1:7303  127.0.0.1:7403
";

#[tokio::test(flavor = "multi_thread")]
async fn member_list_names_who_answered_the_leader_and_each_witness() {
    let (_fake, endpoint) = healthy().await;
    let o = palisadectl(&["--endpoint", &endpoint, "member", "list"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        stdout(&o),
        format!("answered by witness 1, leader 1 — membership at log index 7\n\n{THREE_MEMBERS}")
    );
    assert!(o.stderr.is_empty(), "{}", stderr(&o));

    let o = palisadectl(&["--endpoint", &endpoint, "-o", "json", "member", "list"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let member = |id: u64| {
        serde_json::json!({
            "id": id, "site": format!("site-{id}"), "role": "voter",
            "raft_addr": format!("127.0.0.1:730{id}"),
            "control_addr": format!("127.0.0.1:740{id}")
        })
    };
    assert_eq!(
        json_of(&o),
        serde_json::json!({
            "node_id": 1, "leader_id": 1, "log_index": 7,
            "members": [member(1), member(2), member(3)]
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn member_add_then_remove_print_progress_detail_and_the_membership_after() {
    let (fake, endpoint) = healthy().await;
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "member",
        "add",
        "--id",
        "4",
        "--site",
        "site-4",
        "--raft-addr",
        "127.0.0.1:7304",
        "--control-addr",
        "127.0.0.1:7404",
        "--yes",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        stdout(&o),
        format!(
            "asking the leader to add witness 4 (site site-4) as a learner, wait for it to catch \
             up (up to 30 s), then make it a voter…\n\
             added witness 4 at site site-4 (4 voters)\n\
             answered by witness 1, leader 1 — membership at log index 9\n\n\
             {THREE_MEMBERS}\
             4   site-4  voter  127.0.0.1:7304  127.0.0.1:7404\n"
        )
    );
    {
        let c = fake.state();
        assert_eq!(c.log.len(), 1, "{:?}", c.log);
        assert!(
            c.log[0].starts_with(
                "change_members action=1 old_id=0 new_id=4 site=site-4 raft=127.0.0.1:7304 \
                 control=127.0.0.1:7404 author=tester@"
            ),
            "{:?}",
            c.log
        );
    }

    let o = palisadectl(&["--endpoint", &endpoint, "member", "remove", "4", "-y"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        stdout(&o),
        format!(
            "asking the leader to remove witness 4…\n\
             removed witness 4 (site site-4); 3 voters\n\
             answered by witness 1, leader 1 — membership at log index 11\n\n\
             {THREE_MEMBERS}"
        )
    );
    // Removed already: nothing to do, exit 0.
    let o = palisadectl(&["--endpoint", &endpoint, "member", "remove", "4", "-y"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        stdout(&o).contains("\nnothing to do: witness 4 is not a member\n"),
        "{}",
        stdout(&o)
    );
    // The server's rules: three voters stay.
    let o = palisadectl(&["--endpoint", &endpoint, "member", "remove", "2", "-y"]).await;
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    assert_eq!(
        last_stderr_line(&o),
        format!(
            "palisadectl: {endpoint} rejected member remove: the cluster has 3 voters and keeps \
             at least 3; to move witness 2, use replace (FailedPrecondition)"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn member_replace_json_is_one_document_and_a_rerun_says_nothing_changed() {
    let (fake, endpoint) = healthy().await;
    let args = [
        "--endpoint",
        endpoint.as_str(),
        "-o",
        "json",
        "member",
        "replace",
        "3",
        "--id",
        "5",
        "--raft-addr",
        "127.0.0.1:7305",
        "--control-addr",
        "127.0.0.1:7405",
        "--yes",
    ];
    let o = palisadectl(&args).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    // Progress on stderr, so that stdout is the JSON document alone.
    assert_eq!(
        stderr(&o),
        "asking the leader to add witness 5 as a learner, wait for it to catch up (up to 30 s), \
         then replace witness 3 by it in one joint change…\n"
    );
    let v = json_of(&o);
    assert_eq!(v["action"], "replace");
    assert_eq!(v["old_id"], 3);
    assert_eq!(v["new_id"], 5);
    assert_eq!(v["changed"], true);
    assert_eq!(
        v["detail"],
        "replaced witness 3 by witness 5 at site site-3 (raft 127.0.0.1:7305, control \
         127.0.0.1:7405)"
    );
    assert_eq!(
        (v["node_id"].as_u64(), v["log_index"].as_u64()),
        (Some(1), Some(9))
    );
    assert_eq!(
        v["members"][2],
        serde_json::json!({
            "id": 5, "site": "site-3", "role": "voter",
            "raft_addr": "127.0.0.1:7305", "control_addr": "127.0.0.1:7405"
        })
    );
    // The site was left to the server (the old witness's).
    assert!(
        fake.state().log[0].starts_with("change_members action=3 old_id=3 new_id=5 site= "),
        "{:?}",
        fake.state().log
    );

    let o = palisadectl(&args).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v = json_of(&o);
    assert_eq!(v["changed"], false);
    assert_eq!(
        v["detail"],
        "nothing to do: witness 3 was already replaced by 5"
    );
    assert_eq!(v["log_index"], 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn member_flags_are_checked_before_anything_is_sent_naming_the_flag() {
    let (fake, endpoint) = healthy().await;
    let add = |id: &'static str,
               site: &'static str,
               raft: &'static str,
               control: &'static str|
     -> Vec<&'static str> {
        vec![
            "member",
            "add",
            "--id",
            id,
            "--site",
            site,
            "--raft-addr",
            raft,
            "--control-addr",
            control,
            "--yes",
        ]
    };
    for (args, flag) in [
        (add("0", "d", "127.0.0.1:7304", "127.0.0.1:7404"), "--id"),
        (add("x", "d", "127.0.0.1:7304", "127.0.0.1:7404"), "--id"),
        (
            add("4", "d e", "127.0.0.1:7304", "127.0.0.1:7404"),
            "--site",
        ),
        (
            add("4", "d", "witness-4:7304", "127.0.0.1:7404"),
            "--raft-addr",
        ),
        (
            add("4", "d", "127.0.0.1:7304", "127.0.0.1"),
            "--control-addr",
        ),
        (
            add("4", "d", "127.0.0.1:0", "127.0.0.1:7404"),
            "--raft-addr",
        ),
        (vec!["member", "remove", "0", "--yes"], "<ID>"),
        (
            vec![
                "member",
                "add",
                "--id",
                "4",
                "--raft-addr",
                "127.0.0.1:7304",
                "--control-addr",
                "127.0.0.1:7404",
                "--yes",
            ],
            "--site",
        ),
        (
            vec!["member", "replace", "3", "--id", "4", "--yes"],
            "--raft-addr",
        ),
    ] {
        let o = palisadectl(&[&["--endpoint", endpoint.as_str()][..], &args].concat()).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        assert!(stderr(&o).contains(flag), "{args:?}: {}", stderr(&o));
    }
    // What clap cannot check flag by flag: one line, naming the flags.
    let o = palisadectl(
        &[
            &["--endpoint", endpoint.as_str()][..],
            &add("4", "d", "127.0.0.1:7304", "127.0.0.1:7304"),
        ]
        .concat(),
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert_eq!(
        one_stderr_line(&o),
        "palisadectl: --raft-addr and --control-addr are both 127.0.0.1:7304: a witness serves \
         them on two ports"
    );
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "member",
        "replace",
        "3",
        "--id",
        "3",
        "--raft-addr",
        "127.0.0.1:7304",
        "--control-addr",
        "127.0.0.1:7404",
        "--yes",
    ])
    .await;
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert_eq!(
        one_stderr_line(&o),
        "palisadectl: --id 3 is OLD_ID: a replacement is a new witness, with a new id"
    );
    assert!(fake.state().log.is_empty(), "{:?}", fake.state().log);
}

#[tokio::test(flavor = "multi_thread")]
async fn member_changes_without_a_terminal_need_yes_and_nothing_is_sent() {
    let (fake, endpoint) = healthy().await;
    let o = palisadectl(&["--endpoint", &endpoint, "member", "remove", "3"]).await;
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert_eq!(
        one_stderr_line(&o),
        "palisadectl: member remove asks for confirmation, but stdin is not a terminal; add \
         --yes to run it without asking"
    );
    assert!(fake.state().log.is_empty(), "{:?}", fake.state().log);
}

#[tokio::test(flavor = "multi_thread")]
async fn member_replace_asks_on_a_terminal_naming_the_old_site() {
    let (fake, endpoint) = healthy().await;
    let args = [
        "--endpoint",
        endpoint.as_str(),
        "member",
        "replace",
        "3",
        "--id",
        "4",
        "--raft-addr",
        "127.0.0.1:7304",
        "--control-addr",
        "127.0.0.1:7404",
    ];
    let o = palisadectl_on_a_terminal(&args, "n\n").await;
    assert_eq!(o.status.code(), Some(10), "{o:?}");
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!(
            "witnesses (via {endpoint}): 1 site-1, 2 site-2, 3 site-3; leader 1\n\
             about to replace witness 3 (site site-3) by witness 4 at raft 127.0.0.1:7304 / \
             control 127.0.0.1:7404, in one joint change.\n\
             The new witness must be running with raft.join = true in its config.\n\
             Proceed? [y/N] "
        )),
        "{err}"
    );
    assert_eq!(
        last_stderr_line(&o),
        "palisadectl: member replace not confirmed: nothing was sent"
    );
    assert!(fake.state().log.is_empty());
    let o = palisadectl_on_a_terminal(&args, "yes\n").await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        stdout(&o).starts_with(
            "asking the leader to add witness 4 (site site-3) as a learner, wait for it to \
             catch up (up to 30 s), then replace witness 3 by it in one joint change…\n\
             replaced witness 3 by witness 4 at site site-3"
        ),
        "{}",
        stdout(&o)
    );
    assert_eq!(fake.state().log.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn member_change_errors_map_to_exit_codes() {
    let add = [
        "member",
        "add",
        "--id",
        "4",
        "--site",
        "site-4",
        "--raft-addr",
        "127.0.0.1:7304",
        "--control-addr",
        "127.0.0.1:7404",
        "--yes",
    ];
    for (code, message, exit, expected) in [
        (
            Code::InvalidArgument,
            "new_member.raft_addr: 127.0.0.1:7304 is already used by witness 1",
            5,
            "rejected member add: new_member.raft_addr: 127.0.0.1:7304 is already used by \
             witness 1 (InvalidArgument)",
        ),
        (
            Code::FailedPrecondition,
            "new witness 4 at 127.0.0.1:7304 cannot be reached (connection refused); start it \
             first, with raft.join = true in its config",
            5,
            "rejected member add: new witness 4 at 127.0.0.1:7304 cannot be reached (connection \
             refused); start it first, with raft.join = true in its config (FailedPrecondition)",
        ),
        (
            Code::Unavailable,
            "no leader",
            3,
            "could not carry out member add: no leader (Unavailable); retry once a leader is \
             known (`palisadectl status`)",
        ),
        (
            Code::Unknown,
            "the new voters {1, 2, 3, 4} did not commit within 10s",
            9,
            "member add request to ",
        ),
        (
            Code::DeadlineExceeded,
            "witness 2 forwarded the request to leader 1 at 127.0.0.1:7401, which did not \
             answer within 10000 ms",
            9,
            "member add request to ",
        ),
    ] {
        let mut cluster = Cluster::healthy();
        cluster.change_members_error = Some((code, message));
        let endpoint = serve(&FakeWitness::new(cluster)).await;
        let o = palisadectl(&[&["--endpoint", endpoint.as_str()][..], &add[..]].concat()).await;
        assert_eq!(o.status.code(), Some(exit), "{code:?}: {o:?}");
        let err = last_stderr_line(&o);
        assert!(err.contains(expected), "{code:?}: {err}");
        // Said before the request was sent.
        assert!(
            stdout(&o).starts_with("asking the leader to add witness 4"),
            "{}",
            stdout(&o)
        );
        if exit == 9 {
            assert!(
                err.ends_with(&format!(
                    "{message} ({code:?}); it may still take effect: check with `palisadectl \
                     member list`; running `palisadectl --endpoint {endpoint} {}` again is safe \
                     (a change already in force changes nothing)",
                    add.join(" ")
                )),
                "{err}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_change_waits_past_timeout_up_to_wait_timeout_then_exits_9() {
    let (fake, endpoint) = healthy().await;
    // The leader takes longer than --timeout (a learner catching up):
    // that is no failure.
    fake.state().change_members_delay = Duration::from_millis(800);
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "--timeout",
        "300ms",
        "member",
        "replace",
        "3",
        "--id",
        "4",
        "--raft-addr",
        "127.0.0.1:7304",
        "--control-addr",
        "127.0.0.1:7404",
        "--yes",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");

    // No answer within --wait-timeout: it may still take effect.
    fake.state().change_members_delay = Duration::ZERO;
    fake.state().hang_after_applying = Some("change_members");
    let o = palisadectl(&[
        "--endpoint",
        &endpoint,
        "member",
        "add",
        "--id=5",
        "--site=site-5",
        "--raft-addr=127.0.0.1:7305",
        "--control-addr=127.0.0.1:7405",
        "--wait-timeout",
        "500ms",
        "--yes",
    ])
    .await;
    assert_eq!(o.status.code(), Some(9), "{o:?}");
    assert_eq!(
        one_stderr_line(&o),
        format!(
            "palisadectl: member add request to {endpoint} got no answer: timed out after 500 \
             ms; it may still take effect: check with `palisadectl member list`; running \
             `palisadectl --endpoint {endpoint} member add --id=5 --site=site-5 \
             --raft-addr=127.0.0.1:7305 --control-addr=127.0.0.1:7405 --wait-timeout 500ms \
             --yes` again is safe (a change already in force changes nothing)"
        )
    );
}
