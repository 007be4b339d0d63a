//! Runs the built `palisadectl` binary: against nothing, against bad flags,
//! and against an in-process fake witness serving `palisade.v1.Control`, and
//! checks exit codes, stdout and the one-line stderr contract.

use std::net::SocketAddr;
use std::process::Output;

use palisade_api::v1::control_server::{Control, ControlServer};
use palisade_api::v1::{
    AnnotateReply, AnnotateRequest, DatabaseView, FailoverSummary, JournalEntry, JournalReply,
    JournalRequest, NodeStatus, Role, SearchView, StatusReply, StatusRequest, StepTiming,
};
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

/// Runs palisadectl with `args` and a clean environment for its own
/// variables, so the caller's shell cannot change the outcome.
async fn palisadectl(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_palisadectl"))
        .args(args)
        .env_remove("PALISADE_ENDPOINT")
        .env_remove("PALISADE_TIMEOUT_MS")
        .env("USER", "tester")
        .output()
        .await
        .expect("run palisadectl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
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

/// A witness that answers with canned replies.
#[derive(Clone)]
struct FakeWitness {
    leader_id: Option<u64>,
    /// `Some` makes `annotate` fail with this status.
    annotate_error: Option<(Code, &'static str)>,
}

#[tonic::async_trait]
impl Control for FakeWitness {
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        let node = |id: u64, role: Role| NodeStatus {
            id,
            site: format!("site-{id}"),
            role: role as i32,
            term: 5,
            leader_id: self.leader_id,
            last_log_index: Some(12),
            last_applied_index: Some(12),
            snapshot_index: None,
            raft_addr: format!("127.0.0.1:730{id}"),
            control_addr: format!("127.0.0.1:740{id}"),
            error: String::new(),
            replication: vec![],
            millis_since_quorum_ack: None,
            databases: vec![
                DatabaseView {
                    site: "site-1".to_owned(),
                    reachable: true,
                    in_recovery: Some(false),
                    lsn: "0/3000148".to_owned(),
                    latency_ms: 2,
                    age_ms: 150,
                    ..Default::default()
                },
                DatabaseView {
                    site: "site-2".to_owned(),
                    reachable: false,
                    error: "refused: connection refused".to_owned(),
                    latency_ms: 1,
                    age_ms: 150,
                    ..Default::default()
                },
            ],
            search: vec![SearchView {
                site: "site-1".to_owned(),
                reachable: true,
                status: "green".to_owned(),
                number_of_nodes: Some(3),
                latency_ms: 5,
                age_ms: 150,
                ..Default::default()
            }],
            // Both sites' apps on: the table must warn.
            monitors_enabled: Some(true),
            ..Default::default()
        };
        let role = if self.leader_id.is_some() {
            Role::Leader
        } else {
            Role::Candidate
        };
        Ok(Response::new(StatusReply {
            node_id: 1,
            leader_id: self.leader_id,
            term: 5,
            cluster_name: "fake".to_owned(),
            nodes: vec![node(1, role), node(2, Role::Follower)],
            replication: vec![],
            epoch: 2,
            primary_site: "site-1".to_owned(),
            standby_site: "site-2".to_owned(),
            replication_mode: "sync".to_owned(),
            // Only a leader has a detector to report.
            assessment: match self.leader_id {
                Some(_) => "suspect: primary down for 2000 ms of the 10000 ms quorum requires",
                None => "",
            }
            .to_owned(),
            standby_needs_rejoin: true,
            failover_in_progress: None,
            last_failover: Some(FailoverSummary {
                epoch: 2,
                from_site: "site-2".to_owned(),
                to_site: "site-1".to_owned(),
                trigger: "operator:tester".to_owned(),
                reason: "DR drill".to_owned(),
                steps: vec![StepTiming {
                    step: "fenced".to_owned(),
                    started_at_ms: 1_700_000_000_000,
                    done_at_ms: 1_700_000_000_250,
                    detail: "lease expired".to_owned(),
                }],
                outcome: "aborted: standby too far behind".to_owned(),
                started_at_ms: 1_700_000_000_000,
                finished_at_ms: Some(1_700_000_000_900),
                evidence_json: r#"{"down_for_ms": 0, "replication": "sync"}"#.to_owned(),
            }),
        }))
    }

    async fn annotate(
        &self,
        request: Request<AnnotateRequest>,
    ) -> Result<Response<AnnotateReply>, Status> {
        if let Some((code, message)) = self.annotate_error {
            return Err(Status::new(code, message));
        }
        let r = request.into_inner();
        // Echo the author back through the log index so the test can see
        // which author reached the server.
        let log_index = if r.author == "tester" { 13 } else { 0 };
        Ok(Response::new(AnnotateReply {
            log_index,
            leader_id: 1,
        }))
    }

    async fn journal(&self, _: Request<JournalRequest>) -> Result<Response<JournalReply>, Status> {
        Ok(Response::new(JournalReply {
            entries: vec![JournalEntry {
                log_index: 13,
                at_unix_ms: 1_700_000_000_123,
                author: "tester".to_owned(),
                text: "DR drill".to_owned(),
            }],
        }))
    }
}

/// Serves `witness` on an ephemeral port for the rest of the test.
async fn serve(witness: FakeWitness) -> String {
    let incoming =
        TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind ephemeral port");
    let addr = incoming.local_addr().expect("local addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ControlServer::new(witness))
            .serve_with_incoming(incoming),
    );
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread")]
async fn status_with_leader_prints_table_and_exits_0() {
    let endpoint = serve(FakeWitness {
        leader_id: Some(1),
        annotate_error: None,
    })
    .await;
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
    let endpoint = serve(FakeWitness {
        leader_id: Some(1),
        annotate_error: None,
    })
    .await;
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
            "epoch": 2, "from_site": "site-2", "to_site": "site-1",
            "trigger": "operator:tester", "reason": "DR drill",
            "outcome": "aborted: standby too far behind",
            "started_at_ms": 1_700_000_000_000_i64,
            "finished_at_ms": 1_700_000_000_900_i64,
            "duration_ms": 900,
            "steps": [{
                "step": "fenced", "started_at_ms": 1_700_000_000_000_i64,
                "done_at_ms": 1_700_000_000_250_i64, "duration_ms": 250,
                "detail": "lease expired"
            }],
            "evidence": {"down_for_ms": 0, "replication": "sync"}
        })
    );
    assert_eq!(
        v["nodes"][1]["databases"][1],
        serde_json::json!({
            "site": "site-2", "reachable": false, "error": "refused: connection refused",
            "in_recovery": null, "lsn": null, "replay_lag_seconds": null,
            "streaming": false, "latency_ms": 1, "age_ms": 150
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
}

#[tokio::test(flavor = "multi_thread")]
async fn status_without_leader_prints_json_then_exits_4() {
    let endpoint = serve(FakeWitness {
        leader_id: None,
        annotate_error: None,
    })
    .await;
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
    let endpoint = serve(FakeWitness {
        leader_id: None,
        annotate_error: Some((Code::Unavailable, "no leader to forward to")),
    })
    .await;
    let o = palisadectl(&["--endpoint", &endpoint, "annotate", "drill"]).await;
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    let err = one_stderr_line(&o);
    assert_eq!(
        err,
        format!("palisadectl: {endpoint} rejected annotate: no leader to forward to (Unavailable)")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn annotate_sends_user_as_author_and_journal_lists_it() {
    let endpoint = serve(FakeWitness {
        leader_id: Some(1),
        annotate_error: None,
    })
    .await;
    let o = palisadectl(&["--endpoint", &endpoint, "annotate", "DR drill"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(stdout(&o), "noted at log index 13 (leader 1)\n");

    let o = palisadectl(&["--endpoint", &endpoint, "--output", "json", "journal"]).await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON on stdout");
    assert_eq!(
        v,
        serde_json::json!({"entries": [{
            "log_index": 13, "at_unix_ms": 1_700_000_000_123_i64,
            "author": "tester", "text": "DR drill"
        }]})
    );

    let o = palisadectl(&["--endpoint", &endpoint, "journal"]).await;
    assert_eq!(
        stdout(&o),
        "INDEX  WHEN                      AUTHOR  TEXT\n\
         13     2023-11-14T22:13:20.123Z  tester  DR drill\n"
    );
}
