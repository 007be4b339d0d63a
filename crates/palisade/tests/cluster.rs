//! Real witness processes on loopback: election, leader loss, restart with
//! the on-disk log intact, durability across a whole-cluster crash, and a
//! clean SIGTERM.

use std::time::Duration;

use nix::sys::signal::Signal;
use palisade_testkit::cluster::Cluster;
use palisade_testkit::{step, wait_for};

const ELECTION: Duration = Duration::from_secs(20);

#[tokio::test]
async fn three_witnesses_agree_on_one_leader() {
    let c = Cluster::start();
    step("waiting for all three to report the same leader and term");
    let (leader, term) = c
        .wait_for_agreed_leader("one leader agreed by all three", ELECTION)
        .await;
    for n in [1, 2, 3] {
        let s = c.status(n).expect("status answers");
        assert_eq!(
            s["node_id"].as_u64(),
            Some(n),
            "the answering node names itself"
        );
        assert_eq!(s["leader_id"].as_u64(), Some(leader));
        assert_eq!(s["term"].as_u64(), Some(term));
        let nodes = s["nodes"].as_array().expect("nodes[]");
        assert_eq!(nodes.len(), 3);
        let leaders: Vec<u64> = nodes
            .iter()
            .filter(|x| x["role"] == "leader")
            .map(|x| x["id"].as_u64().expect("id"))
            .collect();
        assert_eq!(
            leaders,
            vec![leader],
            "exactly one node reports itself leader"
        );
        let sites: Vec<&str> = nodes
            .iter()
            .map(|x| x["site"].as_str().expect("site"))
            .collect();
        assert_eq!(sites, vec!["a", "b", "c"]);
    }
    step("the leader's replication view lists both followers");
    let s = c.status(leader).expect("status");
    let repl = s["replication"].as_array().expect("replication[]");
    let mut peers: Vec<u64> = repl.iter().map(|p| p["id"].as_u64().expect("id")).collect();
    peers.sort();
    let mut expected: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != leader).collect();
    expected.sort();
    assert_eq!(peers, expected);
}

#[tokio::test]
async fn killed_leader_is_replaced_and_rejoins_with_its_log_intact() {
    let mut c = Cluster::start();
    let (old_leader, old_term) = c.wait_for_agreed_leader("initial leader", ELECTION).await;
    let survivor = [1, 2, 3]
        .into_iter()
        .find(|i| *i != old_leader)
        .expect("a follower");

    step("a note committed through a follower (forwarded to the leader)");
    let first = c.annotate(survivor, "before the crash");

    step(&format!("SIGKILL leader {old_leader}"));
    c.node(old_leader).kill9();
    let (new_leader, new_term) = c
        .wait_for_agreed_leader("a new leader among the two survivors", ELECTION)
        .await;
    assert_ne!(new_leader, old_leader);
    assert!(
        new_term > old_term,
        "a new election raised the term ({old_term} -> {new_term})"
    );

    step("the killed node's store still holds its log and the note (offline inspect)");
    let before = c.inspect(old_leader);
    assert!(
        before["last_log_index"].as_u64().expect("last_log_index") >= first,
        "{before}"
    );
    assert_eq!(before["journal_entries"].as_u64(), Some(1), "{before}");
    assert_eq!(before["voters"], serde_json::json!([1, 2, 3]));

    let second = c.annotate(new_leader, "while it was down");

    step(&format!("restart node {old_leader}"));
    c.node(old_leader).start();
    wait_for(
        "the restarted node to follow the new leader and catch up",
        ELECTION,
        async || {
            let s = c.status(old_leader)?;
            let me = s["nodes"]
                .as_array()?
                .iter()
                .find(|n| n["id"].as_u64() == Some(old_leader))?
                .clone();
            (me["role"] == "follower"
                && s["leader_id"].as_u64() == Some(new_leader)
                && me["last_applied_index"].as_u64()? >= second)
                .then_some(())
        },
    )
    .await
    .expect("the restarted node catches up");
    assert_eq!(
        c.journal(old_leader).expect("journal"),
        vec!["before the crash", "while it was down"]
    );
    let log = c.node(old_leader).log_text();
    assert_eq!(
        log.matches("first start: bootstrapping").count(),
        1,
        "bootstrapped once, on the first start only:\n{log}"
    );
    assert!(
        log.contains("resuming from durable state"),
        "the restart resumed from disk:\n{log}"
    );
}

#[tokio::test]
async fn committed_note_survives_sigkill_of_every_witness() {
    let mut c = Cluster::start();
    let (leader, _) = c.wait_for_agreed_leader("initial leader", ELECTION).await;
    let index = c.annotate(leader, "survives a total crash");

    step("SIGKILL all three witnesses");
    for id in [1, 2, 3] {
        c.node(id).kill9();
    }
    step("every store still holds the note or at least its log entry");
    let with_note: Vec<u64> = [1, 2, 3]
        .into_iter()
        .filter(|id| c.inspect(*id)["last_log_index"].as_u64().unwrap_or(0) >= index)
        .collect();
    assert!(
        with_note.len() >= 2,
        "a committed entry is on a majority of disks, found on {with_note:?}"
    );

    step("restart all three");
    for id in [1, 2, 3] {
        c.node(id).start();
    }
    c.wait_for_agreed_leader("a leader after the restart", ELECTION)
        .await;
    for id in [1, 2, 3] {
        wait_for(
            &format!("node {id} to apply the note again"),
            ELECTION,
            async || {
                c.journal(id)
                    .filter(|j| j.iter().any(|t| t == "survives a total crash"))
            },
        )
        .await
        .expect("every node applies the note again");
    }
}

#[tokio::test]
async fn sigterm_stops_a_witness_cleanly_and_the_rest_carry_on() {
    let mut c = Cluster::start();
    let (leader, _) = c.wait_for_agreed_leader("initial leader", ELECTION).await;
    let follower = [1, 2, 3]
        .into_iter()
        .find(|i| *i != leader)
        .expect("a follower");
    step(&format!("SIGTERM follower {follower}"));
    c.node(follower).signal(Signal::SIGTERM);
    assert_eq!(
        c.node(follower).wait_exit(Duration::from_secs(15)).await,
        Some(0),
        "clean exit code"
    );
    assert!(c.node(follower).log_text().contains("stopped"));

    step("the other two still commit; status shows the stopped one unreachable");
    c.annotate(leader, "with one witness down");
    let s = c.status(leader).expect("status");
    let gone = s["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["id"].as_u64() == Some(follower))
        .cloned();
    assert_eq!(gone.expect("stopped node listed")["role"], "unreachable");
}

// ---- issue 11: honest status, exactly-once requests, watch --timeout ----

/// The JSON on stdout of a palisadectl run (also on a failing exit).
fn json_out(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): stdout {:?} stderr {:?}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// The request id in palisadectl's unknown-outcome message.
fn request_id_in(err: &str) -> String {
    let at = err.find("--request ").expect("the history hint") + "--request ".len();
    err[at..]
        .split(|c: char| c == '`' || c.is_whitespace())
        .next()
        .expect("an id")
        .to_string()
}

fn followers_of(leader: u64) -> Vec<u64> {
    [1, 2, 3].into_iter().filter(|i| *i != leader).collect()
}

#[tokio::test]
async fn a_leader_cut_off_from_both_followers_reports_no_quorum_with_exit_8() {
    // Issue 11: `status` exited 0 on a leader that had lost its quorum
    // (`millis_since_quorum_ack` was empty).
    let mut c = Cluster::start();
    let (leader, _) = c.wait_for_agreed_leader("initial leader", ELECTION).await;
    let s = c.status(leader).expect("status with a quorum exits 0");
    assert_eq!(s["quorum"], "ok", "{s}");
    assert_eq!(s["quorum_needed"], 2);
    step(&format!("SIGKILL both followers of leader {leader}"));
    for f in followers_of(leader) {
        c.node(f).kill9();
    }
    let (out, v) = wait_for(
        "the lone leader to report no quorum",
        ELECTION,
        async || {
            let o = c.ctl(leader, &["status", "-o", "json"]);
            let v = json_out(&o);
            (v["quorum"] == "lost").then_some((o, v))
        },
    )
    .await
    .expect("no quorum reported");
    assert_eq!(out.status.code(), Some(8), "{}", stderr_of(&out));
    assert_eq!(
        v["leader_id"].as_u64(),
        Some(leader),
        "it still calls itself leader: {v}"
    );
    assert_eq!(v["quorum_acked"], 1);
    let err = stderr_of(&out);
    assert!(
        err.starts_with(&format!(
            "palisadectl: no quorum: leader {leader} has heard from 1 of 3"
        )),
        "{err}"
    );
    let table = c.ctl(leader, &["status"]);
    assert_eq!(table.status.code(), Some(8));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.lines().nth(1).is_some_and(
            |l| l.starts_with(&format!("NO QUORUM: leader {leader} heard from 1 of 3"))
        ),
        "{text}"
    );
}

#[tokio::test]
async fn requests_sent_without_a_quorum_take_effect_once_however_often_retried() {
    // Issue 11: with two witnesses down, `pause` and `annotate` exited 3
    // ("timed out"); when the others returned both were committed, and a
    // retry would have applied them twice.
    let mut c = Cluster::start();
    let (leader, _) = c.wait_for_agreed_leader("initial leader", ELECTION).await;
    let down = followers_of(leader);
    step(&format!(
        "SIGKILL followers {down:?}: leader {leader} alone"
    ));
    for f in &down {
        c.node(*f).kill9();
    }
    step("annotate and pause time out after sending: exit 9, with a request id");
    let note = c.ctl(
        leader,
        &[
            "--timeout",
            "1s",
            "annotate",
            "sent without quorum",
            "--author",
            "test",
        ],
    );
    assert_eq!(note.status.code(), Some(9), "{}", stderr_of(&note));
    let note_err = stderr_of(&note);
    assert!(note_err.contains("it may still take effect"), "{note_err}");
    let note_id = request_id_in(&note_err);
    let pause = c.ctl(
        leader,
        &["--timeout", "1s", "pause", "--reason", "no quorum"],
    );
    assert_eq!(pause.status.code(), Some(9), "{}", stderr_of(&pause));
    let pause_id = request_id_in(&stderr_of(&pause));

    step("the followers return");
    for f in &down {
        c.node(*f).start();
    }
    c.wait_for_agreed_leader("a leader with a quorum again", ELECTION)
        .await;
    // The first attempts may be committed now (the old leader kept
    // them) or lost (a follower won the election): either way a retry
    // with the same ids makes each take effect exactly once.
    let seen = wait_for(
        "the pending note to commit",
        Duration::from_secs(5),
        async || {
            c.journal(leader)
                .filter(|j| j.iter().any(|t| t == "sent without quorum"))
        },
    )
    .await
    .is_ok();
    step(&format!(
        "retry both with their ids (first attempt committed: {seen})"
    ));
    for attempt in 0..2 {
        let l = c.wait_for_agreed_leader("a leader", ELECTION).await.0;
        let o = c.ctl(
            l,
            &[
                "annotate",
                "sent without quorum",
                "--author",
                "test",
                "--request-id",
                &note_id,
                "-o",
                "json",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
        let v = json_out(&o);
        assert_eq!(v["request_id"], note_id.as_str());
        if seen || attempt > 0 {
            assert_eq!(v["duplicate"], true, "attempt {attempt}: {v}");
        }
        let o = c.ctl(
            l,
            &[
                "pause",
                "--reason",
                "no quorum",
                "--request-id",
                &pause_id,
                "-o",
                "json",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
        assert_eq!(json_out(&o)["maintenance"]["reason"], "no quorum");
    }
    let l = c.wait_for_agreed_leader("a leader", ELECTION).await.0;
    let notes = c.journal(l).expect("journal");
    assert_eq!(
        notes.iter().filter(|t| *t == "sent without quorum").count(),
        1,
        "{notes:?}"
    );
    let h = json_out(&c.ctl(l, &["history", "-o", "json"]));
    let pauses: Vec<&serde_json::Value> = h["maintenance"]
        .as_array()
        .expect("maintenance[]")
        .iter()
        .filter(|e| e["kind"] == "paused")
        .collect();
    assert_eq!(pauses.len(), 1, "{h:#}");
    assert_eq!(pauses[0]["request_id"], pause_id.as_str());
    for id in [&note_id, &pause_id] {
        let o = c.ctl(l, &["history", "--request", id]);
        assert_eq!(o.status.code(), Some(0), "{id}: {}", stderr_of(&o));
    }
    step("a new pause without --force is refused, naming who paused");
    let o = c.ctl(l, &["--who", "bob", "pause"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr_of(&o));
    assert!(
        stderr_of(&o).contains("already paused by "),
        "{}",
        stderr_of(&o)
    );
    let o = c.ctl(l, &["--who", "bob", "pause", "--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
}

#[tokio::test]
async fn watch_on_a_frozen_witness_ends_within_its_timeout() {
    // Issue 11: `watch --timeout` hung for over 10 minutes on a frozen
    // witness.
    let mut c = Cluster::start();
    let (leader, _) = c.wait_for_agreed_leader("initial leader", ELECTION).await;
    let watched = followers_of(leader)[0];
    let control = c.node(watched).control.clone();
    let mut watch = tokio::process::Command::new(palisade_testkit::cluster::palisadectl_bin())
        .args(["--endpoint", &control, "--timeout", "1s", "watch"])
        .envs(
            c.pki
                .as_ref()
                .map(|p| p.ctl_env(palisade_testkit::pki::VIEWER))
                .unwrap_or_default(),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn watch");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(
        watch.stdout.take().expect("stdout"),
    ));
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("the snapshot event within 10 s")
        .expect("read");
    assert!(first.is_some_and(|l| l.contains("snapshot")));
    step(&format!("SIGSTOP witness {watched}"));
    c.node(watched).signal(Signal::SIGSTOP);
    let stopped = std::time::Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(20), watch.wait())
        .await
        .expect("watch --timeout 1s ends within 20 s of the freeze")
        .expect("wait");
    c.node(watched).signal(Signal::SIGCONT);
    assert_eq!(status.code(), Some(3));
    assert!(
        stopped.elapsed() < Duration::from_secs(8),
        "took {:?}",
        stopped.elapsed()
    );
}

#[tokio::test]
async fn pointing_palisadectl_at_a_raft_port_says_so() {
    // On an insecure cluster the Raft port answers an operator; with TLS
    // it admits witnesses only (see tls_refusals.rs).
    let mut c = Cluster::with_config("[tls]\ninsecure = true\n");
    for n in &mut c.nodes {
        n.start();
    }
    c.wait_for_agreed_leader("initial leader", ELECTION).await;
    let config = std::fs::read_to_string(&c.nodes[0].config).expect("config");
    let raft_addr = config
        .lines()
        .find_map(|l| l.strip_prefix("raft_addr = \""))
        .map(|a| a.trim_end_matches('"').to_string())
        .expect("witness 1's raft_addr");
    let o = std::process::Command::new(palisade_testkit::cluster::palisadectl_bin())
        .args(["--endpoint", &format!("http://{raft_addr}"), "status"])
        .output()
        .expect("run palisadectl");
    assert_eq!(o.status.code(), Some(2), "{}", stderr_of(&o));
    assert_eq!(
        stderr_of(&o),
        format!(
            "palisadectl: http://{raft_addr} is the Raft peer port of witness 1 (site a), not a \
             control endpoint; use --endpoint {}",
            c.nodes[0].control
        )
    );
}

#[tokio::test]
async fn a_forwarding_witness_names_the_leader_it_could_not_hear_from() {
    let mut c = Cluster::start();
    let (leader, _) = c.wait_for_agreed_leader("initial leader", ELECTION).await;
    let via = followers_of(leader)[0];
    step(&format!(
        "SIGSTOP leader {leader}, annotate through {via} at once"
    ));
    c.node(leader).signal(Signal::SIGSTOP);
    let o = c.ctl(
        via,
        &[
            "--timeout",
            "20s",
            "annotate",
            "forwarded",
            "--author",
            "test",
        ],
    );
    c.node(leader).signal(Signal::SIGCONT);
    let err = stderr_of(&o);
    let leader_control = palisade_testkit::pki::authority(&c.node(leader).control).to_string();
    step(&format!(
        "annotate through {via} exited {:?}: {err}",
        o.status.code()
    ));
    // Forwarded before the followers noticed: the leader never answered,
    // so the outcome is unknown (exit 9), and the message names it. Over
    // TLS the forwarding channel usually had no connection yet: its
    // handshake with the frozen leader timed out, nothing was sent, and
    // the message says so (exit 5, a refusal that changed nothing). Had an
    // election been quicker, the new leader committed it: exit 0.
    match o.status.code() {
        Some(0) => {}
        Some(9) => assert!(
            err.contains(&format!(
                "forwarded the request to leader {leader} at {leader_control}"
            )),
            "{err}"
        ),
        other => {
            assert_eq!(other, Some(5), "{err}");
            assert!(
                err.contains(&format!(
                    "could not reach leader {leader} at {leader_control} to forward the request"
                )) && err.contains("nothing was sent"),
                "{err}"
            );
        }
    }
}
