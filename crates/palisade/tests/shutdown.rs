//! SIGTERM, whatever is attached: a witness stops Raft (so a leader hands
//! over at once), the controller, the agent and every stream, ends each
//! open `Watch` with UNAVAILABLE "witness N is shutting down", and exits
//! within [`SHUTDOWN_BOUND`]; its site's database and lease guard are left
//! alone. Real witness processes, a real PostgreSQL pair where the
//! database matters (docs/operations.md "Stopping a witness").

use palisade_testkit::pki::TestPki;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use palisade::daemon::SHUTDOWN_BOUND;
use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::{Event, WatchRequest};
use palisade_testkit::cluster::{
    db_config, palisadectl_bin, start_cluster, status_at, wait_ready, wait_status, Cluster, FAST,
    SETTLE, SLOTS,
};
use palisade_testkit::pg::PgPair;
use palisade_testkit::step;
use tonic::Streaming;

/// How soon after the leader's SIGTERM another witness must lead: the
/// followers stand as soon as openraft's leader lease (the maximum
/// election timeout, 400 ms by default) has run out since the last
/// heartbeat, after one pre-vote round; under a second in practice, with
/// room here for a loaded machine. Before the fix a stopping leader kept
/// heartbeating while serving nothing, and nobody else could lead.
const HANDOVER_BOUND: Duration = Duration::from_secs(3);

/// Makes witness `id` the leader: stops whoever else leads until the
/// others elect a leader, starts it again, and so on until `id` leads and
/// all three agree on it.
/// The tests of this file run one after another (see their first line).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn make_leader(c: &mut Cluster, id: u64) {
    for _ in 0..10 {
        wait_ready(c).await;
        let (leader, _) = c
            .wait_for_agreed_leader("a leader all three agree on", SETTLE)
            .await;
        if leader == id {
            return;
        }
        c.node(leader).kill9();
        wait_status(c, "a leader among the others", SETTLE, |s| {
            s.leader_id.filter(|l| *l != leader)
        })
        .await;
        c.node(leader).start();
    }
    panic!("witness {id} never won an election in 10 tries");
}

/// A raw `Control.Watch` stream on `endpoint`, its first event (the
/// snapshot) already received: the stream is open at the server.
async fn open_watch(endpoint: &str, pki: Option<&TestPki>) -> Streaming<Event> {
    let ch = palisade_testkit::cluster::control_channel(
        endpoint,
        pki,
        Duration::from_secs(1),
        Duration::from_secs(3600),
    )
    .await
    .expect("connect to the witness");
    let mut stream = ControlClient::new(ch)
        .watch(WatchRequest {})
        .await
        .expect("watch accepted")
        .into_inner();
    let first = stream.message().await.expect("first event").expect("open");
    assert_eq!(first.kind, "snapshot");
    stream
}

/// Reads `stream` to its end and returns how it ended and when.
fn drain(mut stream: Streaming<Event>) -> tokio::task::JoinHandle<(Instant, tonic::Status)> {
    tokio::spawn(async move {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => {
                    return (
                        Instant::now(),
                        tonic::Status::ok("the stream ended without a status"),
                    )
                }
                Err(status) => return (Instant::now(), status),
            }
        }
    })
}

/// Asserts that a stream ended with the shutdown status of witness `id`.
fn assert_shutdown_status(status: &tonic::Status, id: u64) {
    assert_eq!(
        status.code(),
        tonic::Code::Unavailable,
        "the stream ends with UNAVAILABLE: {status:?}"
    );
    assert_eq!(
        status.message(),
        format!("witness {id} is shutting down"),
        "the stream names the reason"
    );
}

/// `palisadectl watch` attached to `endpoint`, once it printed its first
/// line (the snapshot); its stderr is captured.
fn ctl_watch(endpoint: &str, pki: Option<&TestPki>) -> Child {
    let env = pki
        .map(|p| p.ctl_env(palisade_testkit::pki::OPERATOR))
        .unwrap_or_default();
    let mut child = Command::new(palisadectl_bin())
        .args(["--endpoint", endpoint, "watch"])
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run palisadectl watch");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        // Keep reading so that palisadectl never blocks on a full pipe.
        for _ in lines {}
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("palisadectl watch printed its snapshot within 10 s");
    let line = first.expect("a line").expect("readable");
    assert!(line.contains("snapshot"), "first line: {line}");
    child
}

/// Waits up to `timeout` for `child` to exit: its exit code, when, and its
/// stderr. Kills it and panics after `timeout`.
async fn ctl_exit(mut child: Child, timeout: Duration) -> (Option<i32>, Instant, String) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let at = Instant::now();
            let mut err = String::new();
            use std::io::Read;
            let _ = child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut err);
            return (status.code(), at, err);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("palisadectl watch did not exit within {timeout:?} of the shutdown");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls witnesses `others` until they agree on a leader among them (it
/// reports itself leader, the others name it); returns it and when that was
/// first seen. A witness that led for a moment before a rival's election
/// deposed it does not count: writes need a leader the others follow.
fn await_new_leader(c: &Cluster, others: Vec<u64>) -> tokio::task::JoinHandle<(u64, Instant)> {
    let endpoints: Vec<(u64, String)> = c
        .nodes
        .iter()
        .filter(|n| others.contains(&n.id))
        .map(|n| (n.id, n.control.clone()))
        .collect();
    let pki = c.pki.clone();
    tokio::spawn(async move {
        let deadline = Instant::now() + SETTLE;
        loop {
            let mut views = Vec::new();
            for (_, endpoint) in &endpoints {
                let s = status_at(
                    endpoint,
                    pki.as_ref(),
                    Duration::from_millis(200),
                    Duration::from_millis(500),
                )
                .await;
                views.push(s.and_then(|s| s.leader_id));
            }
            if let Some(Some(leader)) = views.first().copied() {
                if others.contains(&leader) && views.iter().all(|v| *v == Some(leader)) {
                    return (leader, Instant::now());
                }
            }
            assert!(
                Instant::now() < deadline,
                "{others:?} agreed on no leader among them within {SETTLE:?} (last: {views:?})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// The pid of the lease guard holding `lock` (its `.lock` file names it).
fn guard_pid(lock: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(lock).ok()?.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_on_the_leader_with_watchers_attached_hands_over_and_leaves_the_database_alone() {
    // One at a time: each SIGTERMs a leader and times the handover, and a
    // second cluster's start-up on the same two cores skews both.
    let _serial = SERIAL.lock().await;
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let mut c = start_cluster(&pair, FAST).await;
    step("make site a's witness (the primary's own) the leader");
    make_leader(&mut c, 1).await;
    let postmasters = (pair.primary.postmaster_pid(), pair.standby.postmaster_pid());
    assert!(postmasters.0.is_some() && postmasters.1.is_some());
    let lock = c.nodes[0].data_dir.join("lease-guard.order.lock");
    let guard = guard_pid(&lock).expect("site a's lease guard runs");
    assert!(palisade_testkit::procs::alive(guard));

    step("two watchers on the leader: a raw Watch stream and `palisadectl watch`");
    let control = c.nodes[0].control.clone();
    let raw = open_watch(&control, c.pki.as_ref()).await;
    let ctl = ctl_watch(&control, c.pki.as_ref());
    let raw = drain(raw);
    let new_leader = await_new_leader(&c, vec![2, 3]);

    step("SIGTERM the leader");
    let t0 = Instant::now();
    c.node(1).signal(Signal::SIGTERM);
    let code = c.node(1).wait_exit(SHUTDOWN_BOUND + SETTLE).await;
    let took = t0.elapsed();
    assert_eq!(code, Some(0), "a clean exit");
    assert!(
        took <= SHUTDOWN_BOUND,
        "the witness exited {took:?} after SIGTERM, over its bound of {SHUTDOWN_BOUND:?}"
    );
    let log = c.nodes[0].log_text();
    assert!(
        log.contains("shutting down: stopping Raft (stepping down"),
        "witness 1 still led when it was told to stop"
    );
    assert!(log.contains("stopped"), "the witness says it stopped");

    step("both streams ended with the shutdown status");
    let (ended, status) = raw.await.expect("raw watch task");
    assert_shutdown_status(&status, 1);
    assert!(ended - t0 <= SHUTDOWN_BOUND);
    let (code, ended, stderr) = ctl_exit(ctl, SHUTDOWN_BOUND).await;
    assert_eq!(code, Some(3), "watch: the stream ended (exit 3): {stderr}");
    assert!(ended - t0 <= SHUTDOWN_BOUND);
    assert!(
        stderr.contains("witness 1 is shutting down"),
        "palisadectl reports the server's reason: {stderr}"
    );

    step("another witness leads within the handover bound");
    let (leader, led_at) = new_leader.await.expect("leader poll task");
    let handover = led_at - t0;
    eprintln!(
        "witness {leader} led {handover:?} after the SIGTERM; the old leader exited after {took:?}"
    );
    assert!(
        handover <= HANDOVER_BOUND,
        "witness {leader} led only {handover:?} after the SIGTERM (bound {HANDOVER_BOUND:?})"
    );

    step("the remaining two commit at once, through either");
    c.annotate(2, "after the leader's SIGTERM, via b");
    c.annotate(3, "after the leader's SIGTERM, via c");

    step("site a's database and lease guard were not touched");
    assert_eq!(
        (pair.primary.postmaster_pid(), pair.standby.postmaster_pid()),
        postmasters,
        "no database was restarted"
    );
    pair.primary
        .exec("CREATE TABLE IF NOT EXISTS after_shutdown (id int); INSERT INTO after_shutdown VALUES (1)")
        .await
        .expect("the primary still takes writes");
    assert!(
        palisade_testkit::procs::alive(guard),
        "the lease guard outlives its witness"
    );
    let s = wait_status(&c, "the cluster's view", SETTLE, |s| Some(s.clone())).await;
    assert_eq!((s.epoch, s.primary_site.as_str()), (0, "a"), "no failover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_on_the_leader_mid_failover_lets_the_next_leader_finish_it() {
    // One at a time: each SIGTERMs a leader and times the handover, and a
    // second cluster's start-up on the same two cores skews both.
    let _serial = SERIAL.lock().await;
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let mut c = Cluster::with_config(&db_config(
        &pair,
        &format!("{FAST}\n[failover]\non_primary_crash = \"failover\"\n"),
    ));
    // Every witness pauses its failover right after committing 'fenced';
    // the next leader resumes at 'promoted' and never hits it again.
    for n in &mut c.nodes {
        n.start_with_env(&[("PALISADE_FAILPOINTS", "after-step-fenced=pause")]);
    }
    wait_ready(&c).await;
    step("make witness c (no database of its own) the leader");
    make_leader(&mut c, 3).await;

    step("an operator watches the leader; the primary dies; the leader stops after 'fenced'");
    let ctl = ctl_watch(&c.nodes[2].control, c.pki.as_ref());
    pair.primary.kill9();
    let epoch = wait_status(&c, "the failover paused after 'fenced'", SETTLE, |s| {
        let f = s.failover_in_progress.as_ref()?;
        f.steps
            .iter()
            .any(|st| st.step == "fenced")
            .then_some(f.epoch)
    })
    .await;
    assert_eq!(epoch, 1);
    let new_leader = await_new_leader(&c, vec![1, 2]);

    step("SIGTERM the leader in the middle of the failover");
    let t0 = Instant::now();
    c.node(3).signal(Signal::SIGTERM);
    let code = c.node(3).wait_exit(SHUTDOWN_BOUND + SETTLE).await;
    let took = t0.elapsed();
    assert_eq!(code, Some(0), "a clean exit");
    assert!(
        took <= SHUTDOWN_BOUND,
        "the witness exited {took:?} after SIGTERM, over its bound of {SHUTDOWN_BOUND:?}"
    );
    assert!(
        c.nodes[2]
            .log_text()
            .contains("shutting down: stopping Raft (stepping down"),
        "witness 3 still led when it was told to stop"
    );
    let (code, _, stderr) = ctl_exit(ctl, SHUTDOWN_BOUND).await;
    assert_eq!(code, Some(3), "watch: the stream ended: {stderr}");
    let (leader, led_at) = new_leader.await.expect("leader poll task");
    assert!(
        led_at - t0 <= HANDOVER_BOUND,
        "witness {leader} led only {:?} after the SIGTERM",
        led_at - t0
    );

    step("the next leader finishes the failover, each step once");
    let f = wait_status(&c, "the failover completed", SETTLE, |s| {
        s.last_failover.clone().filter(|f| !f.outcome.is_empty())
    })
    .await;
    assert_eq!(f.outcome, "completed");
    assert_eq!(f.epoch, 1, "the epoch rose once");
    for name in ["fenced", "promoted"] {
        assert_eq!(
            f.steps.iter().filter(|s| s.step == name).count(),
            1,
            "{name} recorded once: {:?}",
            f.steps
        );
    }
    let epochs = pair
        .standby
        .query_i64("SELECT count(*) FROM palisade.epoch")
        .await
        .expect("epoch table");
    assert_eq!(epochs, 1, "promoted exactly once");
    let s = wait_status(&c, "a leader", SETTLE, |s| s.leader_id.map(|_| s.clone())).await;
    assert_eq!(s.primary_site, "b");
    assert_ne!(s.leader_id, Some(3));
}

#[tokio::test]
async fn palisadectl_watch_exits_3_with_the_reason_and_no_client_holds_the_shutdown() {
    let mut c = Cluster::start();
    let (leader, _) = c
        .wait_for_agreed_leader("a leader", Duration::from_secs(20))
        .await;
    let id = [1, 2, 3]
        .into_iter()
        .find(|i| *i != leader)
        .expect("a follower");
    let control = c.node(id).control.clone();

    step(&format!(
        "on witness {id}: `palisadectl watch`, a Watch stream nobody reads, and a client that connected and never spoke"
    ));
    let ctl = ctl_watch(&control, c.pki.as_ref());
    let ignored = open_watch(&control, c.pki.as_ref()).await;
    let port = control.rsplit(':').next().expect("port");
    let silent = TcpStream::connect(format!("127.0.0.1:{port}")).expect("connect");

    step(&format!("SIGTERM witness {id}"));
    let t0 = Instant::now();
    c.node(id).signal(Signal::SIGTERM);
    let code = c.node(id).wait_exit(SHUTDOWN_BOUND + SETTLE).await;
    let took = t0.elapsed();
    assert_eq!(code, Some(0), "a clean exit");
    assert!(
        took <= SHUTDOWN_BOUND,
        "the witness exited {took:?} after SIGTERM, over its bound of {SHUTDOWN_BOUND:?}"
    );

    step("palisadectl watch exits 3 (the stream ended, docs/palisadectl.md) naming why");
    let (code, ended, stderr) = ctl_exit(ctl, SHUTDOWN_BOUND).await;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(ended - t0 <= SHUTDOWN_BOUND);
    assert!(
        stderr.contains(&format!("ended: witness {id} is shutting down")),
        "{stderr}"
    );
    drop((ignored, silent));
    c.annotate(leader, "with one witness stopped");
}
