//! Operator operations end to end against real PostgreSQL: switchover under
//! a writer, failover then failback with the old primary rewound, pause and
//! resume, and the requests that must be refused. Each test owns its pair
//! and its three witnesses.

use std::time::{Duration, Instant};

use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::{
    FailbackRequest, FailoverRequest, HistoryRequest, PauseRequest, ResumeRequest, StatusReply,
    SwitchoverRequest, WatchRequest,
};
use palisade_testkit::cluster::{
    start_cluster_rejoining, status, wait_status, Cluster, OPERATED, SETTLE, SLOTS,
};
use palisade_testkit::pg::{PgPair, PgServer};
use palisade_testkit::step;
use palisade_testkit::writer::{write_pause, Ack, Writer};
use tonic::transport::Channel;
use tonic::Code;

/// How long tests watch for something that must not happen (a failover).
const WATCH: Duration = Duration::from_secs(4);
/// A rejoin runs pg_rewind (or a base backup) and a restart.
const REJOIN: Duration = Duration::from_secs(60);

/// Calls an RPC, retrying while the cluster has no leader (an election
/// on a loaded machine), as an operator would on `Unavailable`.
async fn retry<T, Fut>(mut rpc: impl FnMut() -> Fut) -> Result<T, tonic::Status>
where
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = Instant::now() + SETTLE;
    loop {
        match rpc().await {
            Err(s) if s.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            r => return r.map(|r| r.into_inner()),
        }
    }
}

async fn control(c: &Cluster, id: u64) -> ControlClient<Channel> {
    let ch = c
        .nodes
        .iter()
        .find(|n| n.id == id)
        .expect("node")
        .control_channel(Duration::from_secs(3), Duration::from_secs(15))
        .await
        .expect("connect to the control API");
    ControlClient::new(ch)
}

async fn leader(c: &Cluster) -> u64 {
    wait_status(c, "a leader", SETTLE, |s| s.leader_id).await
}

/// A witness that is not the leader: requests sent there are forwarded.
async fn follower(c: &Cluster) -> u64 {
    let l = leader(c).await;
    (1..=3).find(|id| *id != l).expect("a follower")
}

async fn ids_on(server: &PgServer) -> Vec<i64> {
    let pool = server.pool().await.expect("connect");
    sqlx::query_scalar::<_, i64>("SELECT id FROM writes ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("read writes")
}

/// Every acknowledged id is on `server`.
async fn assert_none_lost(acks: &[Ack], server: &PgServer) {
    let have: std::collections::BTreeSet<i64> = ids_on(server).await.into_iter().collect();
    let lost: Vec<i64> = acks
        .iter()
        .map(|a| a.id)
        .filter(|id| !have.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {lost:?}",
        lost.len()
    );
}

/// Waits until the operation of `epoch` has finished; returns its record.
async fn finished(c: &Cluster, epoch: u64) -> palisade_api::v1::FailoverSummary {
    wait_status(c, &format!("operation {epoch} finished"), SETTLE, |s| {
        s.last_failover
            .clone()
            .filter(|f| f.epoch == epoch && !f.outcome.is_empty())
    })
    .await
}

/// Waits until the standby no longer needs to rejoin, and streams.
async fn rejoined(c: &Cluster, standby: &str) -> StatusReply {
    wait_status(
        c,
        &format!("site {standby} rejoined and streams"),
        REJOIN,
        |s| {
            let streams = s
                .nodes
                .iter()
                .filter(|n| !n.databases.is_empty())
                .all(|n| n.databases.iter().any(|d| d.site == standby && d.streaming));
            (!s.standby_needs_rejoin && s.standby_site == standby && streams).then(|| s.clone())
        },
    )
    .await
}

async fn assert_streams(primary: &PgServer, standby: &PgServer) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let writable = !primary.in_recovery().await.unwrap_or(true);
        let recovering = standby.in_recovery().await.unwrap_or(false);
        let streaming = primary
            .query_i64("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
            .await
            .unwrap_or(0)
            == 1;
        if writable && recovering && streaming {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no streaming pair: primary writable {writable}, standby in recovery {recovering}, streaming {streaming}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switchover_under_a_writer_loses_no_acknowledged_write() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let c = start_cluster_rejoining(&pair, OPERATED).await;
    let writer = Writer::start(&pair).await;
    writer.wait_acks_at("a", 50).await;

    step("watch the cluster's events from witness 3");
    let mut events = control(&c, 3)
        .await
        .watch(WatchRequest {})
        .await
        .expect("watch")
        .into_inner();
    let first = events.message().await.expect("stream").expect("an event");
    assert_eq!(first.kind, "snapshot", "{first:?}");
    assert!(
        first.text.contains("primary a, standby b"),
        "{}",
        first.text
    );
    let watched = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Ok(Some(e)) = events.message().await {
            let done = e.kind == "rejoined";
            seen.push((e.kind, e.text));
            if done {
                break;
            }
        }
        seen
    });

    step("switchover to b, asked of a follower (forwarded to the leader)");
    let asked = Instant::now();
    let via = follower(&c).await;
    let reply = {
        let ctl = control(&c, via).await;
        retry(|| {
            let mut c = ctl.clone();
            async move {
                c.switchover(SwitchoverRequest {
                    to_site: "b".into(),
                    who: "alice@test".into(),
                    ..Default::default()
                })
                .await
            }
        })
        .await
    }
    .expect("switchover accepted");
    assert_eq!(
        (
            reply.epoch,
            reply.kind.as_str(),
            reply.from_site.as_str(),
            reply.to_site.as_str()
        ),
        (1, "switchover", "a", "b")
    );
    let f = finished(&c, 1).await;
    for s in &f.steps {
        eprintln!(
            "--- {:<12} {:>5} ms  {}",
            s.step,
            s.done_at_ms - s.started_at_ms,
            s.detail
        );
    }
    assert_eq!(f.outcome, "completed", "{f:?}");
    assert_eq!(
        (f.kind.as_str(), f.trigger.as_str()),
        ("switchover", "operator:test-operator")
    );
    assert!(
        f.steps[0].detail.contains("final checkpoint"),
        "{}",
        f.steps[0].detail
    );
    assert!(
        f.steps[1]
            .detail
            .contains("replayed past the final checkpoint"),
        "{}",
        f.steps[1].detail
    );

    writer.wait_acks_at("b", 50).await;
    let acks = writer.stop().await;
    let pause = write_pause(&acks, "a", "b", asked);
    eprintln!(
        "--- switchover write pause: {} ms ({} writes acknowledged)",
        pause.as_millis(),
        acks.len()
    );
    assert!(pause < Duration::from_secs(10), "write pause {pause:?}");
    assert_none_lost(&acks, &pair.standby).await;

    step("the old primary rejoins as a standby of b on its own");
    let s = rejoined(&c, "a").await;
    assert_eq!(s.primary_site, "b");
    assert_streams(&pair.standby, &pair.primary).await;
    let h = {
        let ctl = control(&c, 1).await;
        retry(|| {
            let mut c = ctl.clone();
            async move { c.history(HistoryRequest {}).await }
        })
        .await
    }
    .expect("history");
    assert_eq!(h.operations.len(), 1);
    assert_eq!(h.rejoins.len(), 1);
    assert_eq!(
        (
            h.rejoins[0].site.as_str(),
            h.rejoins[0].primary_site.as_str()
        ),
        ("a", "b")
    );

    step("the watch stream saw the switchover step by step, then the rejoin");
    let seen = tokio::time::timeout(SETTLE, watched)
        .await
        .expect("the watch stream reported the rejoin")
        .expect("watch task");
    let kinds: Vec<&str> = seen
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| *k != "leader")
        .collect();
    let mut want = vec!["operation_started"];
    want.extend(["step_done"; 5]);
    want.extend(["operation_finished", "rejoined"]);
    assert_eq!(kinds, want, "{seen:?}");
    assert!(
        seen.iter().any(|(k, t)| k == "operation_started"
            && t.contains("switchover a → b began (operator test-operator)")),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_then_failback_rewinds_the_old_primary_and_both_stream_at_the_end() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let c = start_cluster_rejoining(&pair, OPERATED).await;
    let writer = Writer::start(&pair).await;
    writer.wait_acks_at("a", 20).await;

    step("operator failover to b");
    let l = leader(&c).await;
    let reply = {
        let ctl = control(&c, l).await;
        retry(|| {
            let mut c = ctl.clone();
            async move {
                c.failover(FailoverRequest {
                    to_site: "b".into(),
                    who: "bob@test".into(),
                    force: false,
                    accept_data_loss: false,
                    ..Default::default()
                })
                .await
            }
        })
        .await
    }
    .expect("failover accepted");
    assert!(
        !reply.data_loss_bound.is_empty(),
        "a failover states what it may lose"
    );
    let f = finished(&c, reply.epoch).await;
    assert_eq!(
        (f.outcome.as_str(), f.kind.as_str()),
        ("completed", "failover")
    );

    step("site a is rebuilt as a standby of b and streams");
    rejoined(&c, "a").await;
    assert_streams(&pair.standby, &pair.primary).await;
    let a_log = c.nodes[0].log_text();
    assert!(
        a_log.contains("rebuilt as a standby of the new primary")
            && (a_log.contains("pg_rewind") || a_log.contains("pg_basebackup")),
        "site a's agent says how it rejoined"
    );

    step("failback: a becomes primary again, b rejoins");
    writer.wait_acks_at("b", 20).await;
    let reply = control(&c, follower(&c).await)
        .await
        .failback(FailbackRequest {
            who: "bob@test".into(),
            ..Default::default()
        })
        .await
        .expect("failback accepted")
        .into_inner();
    assert_eq!(
        (
            reply.kind.as_str(),
            reply.from_site.as_str(),
            reply.to_site.as_str()
        ),
        ("failback", "b", "a")
    );
    let f = finished(&c, reply.epoch).await;
    assert_eq!(f.outcome, "completed", "{f:?}");
    writer.wait_acks_at("a", 40).await;
    let acks = writer.stop().await;
    rejoined(&c, "b").await;
    assert_streams(&pair.primary, &pair.standby).await;
    // The failback lost nothing: every write acknowledged after the
    // failover is on a, which b replayed in full before a was promoted.
    let failover_done = acks
        .iter()
        .position(|x| x.site == "b")
        .expect("writes on b");
    assert_none_lost(&acks[failover_done..], &pair.primary).await;

    step("history shows the failover, the rejoins and the failback");
    let h = {
        let ctl = control(&c, 2).await;
        retry(|| {
            let mut c = ctl.clone();
            async move { c.history(HistoryRequest {}).await }
        })
        .await
    }
    .expect("history");
    let kinds: Vec<_> = h.operations.iter().map(|o| o.kind.as_str()).collect();
    assert_eq!(kinds, ["failover", "failback"]);
    assert!(h
        .operations
        .iter()
        .all(|o| o.trigger == "operator:test-operator"));
    let rejoins: Vec<_> = h.rejoins.iter().map(|r| r.site.as_str()).collect();
    assert_eq!(rejoins, ["a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_stops_an_automatic_failover_and_resume_lets_it_happen() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let c = start_cluster_rejoining(
        &pair,
        &format!("{OPERATED}\n[failover]\non_primary_crash = \"failover\"\n"),
    )
    .await;

    step("a pause with a duration ends on its own");
    let ctl = control(&c, follower(&c).await).await;
    let m = retry(|| {
        let mut c = ctl.clone();
        async move {
            c.pause(PauseRequest {
                who: "carol@test".into(),
                reason: "short window".into(),
                for_ms: Some(1000),
                ..Default::default()
            })
            .await
        }
    })
    .await
    .expect("pause")
    .maintenance
    .expect("maintenance in force");
    assert_eq!(m.by, palisade_testkit::pki::OPERATOR);
    assert_eq!(m.until_ms, Some(m.since_ms + 1000));
    wait_status(&c, "the pause expired", SETTLE, |s| {
        s.maintenance.is_none().then_some(())
    })
    .await;

    step("pause until resumed, then kill the primary");
    retry(|| {
        let mut c = ctl.clone();
        async move {
            c.pause(PauseRequest {
                who: "carol@test".into(),
                reason: "DR test".into(),
                for_ms: None,
                ..Default::default()
            })
            .await
        }
    })
    .await
    .expect("pause");
    pair.primary.kill9();
    wait_status(&c, "the detector's decision suppressed", SETTLE, |s| {
        s.assessment.contains("SUPPRESSED").then_some(())
    })
    .await;
    tokio::time::sleep(WATCH).await;
    let s = status(&c, leader(&c).await).await.expect("status");
    assert_eq!(s.epoch, 0, "no failover while paused");
    assert!(s.failover_in_progress.is_none() && s.last_failover.is_none());
    assert!(s.maintenance.is_some());
    let l = leader(&c).await;
    assert!(
        c.nodes[(l - 1) as usize]
            .log_text()
            .contains("automatic failover suppressed"),
        "the leader logs the suppressed decision"
    );

    step("resume: the failover happens");
    retry(|| {
        let mut c = ctl.clone();
        async move {
            c.resume(ResumeRequest {
                who: "carol@test".into(),
                ..Default::default()
            })
            .await
        }
    })
    .await
    .expect("resume");
    let f = finished(&c, 1).await;
    assert_eq!(
        (f.outcome.as_str(), f.trigger.as_str()),
        ("completed", "automatic")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_operator_requests_are_refused_with_the_reason() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let c = start_cluster_rejoining(&pair, OPERATED).await;
    let ctl = control(&c, follower(&c).await).await;
    let switchover = |to: &str| SwitchoverRequest {
        to_site: to.into(),
        who: "dave@test".into(),
        ..Default::default()
    };

    let e = retry(|| {
        let mut c = ctl.clone();
        async move { c.switchover(switchover("zz")).await }
    })
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("unknown site \"zz\""),
        "{}",
        e.message()
    );

    let e = retry(|| {
        let mut c = ctl.clone();
        async move { c.switchover(switchover("a")).await }
    })
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("already the primary"),
        "{}",
        e.message()
    );

    let e = retry(|| {
        let mut c = ctl.clone();
        async move {
            c.failover(FailoverRequest {
                to_site: "b".into(),
                who: "dave@test".into(),
                force: true,
                accept_data_loss: false,
                ..Default::default()
            })
            .await
        }
    })
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("accept_data_loss"), "{}", e.message());

    // An empty `who` is no longer a refusal here: over TLS the name
    // recorded is the certificate's, whatever the request says (tls.rs).

    step("a paused cluster refuses operations");
    retry(|| {
        let mut c = ctl.clone();
        async move {
            c.pause(PauseRequest {
                who: "dave@test".into(),
                reason: String::new(),
                for_ms: None,
                ..Default::default()
            })
            .await
        }
    })
    .await
    .expect("pause");
    let e = retry(|| {
        let mut c = ctl.clone();
        async move { c.switchover(switchover("b")).await }
    })
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("paused"), "{}", e.message());
    retry(|| {
        let mut c = ctl.clone();
        async move {
            c.resume(ResumeRequest {
                who: "dave@test".into(),
                ..Default::default()
            })
            .await
        }
    })
    .await
    .expect("resume");
    let e = retry(|| {
        let mut c = ctl.clone();
        async move {
            c.resume(ResumeRequest {
                who: "dave@test".into(),
                ..Default::default()
            })
            .await
        }
    })
    .await
    .unwrap_err();
    assert!(e.message().contains("not paused"), "{}", e.message());

    step("two operations at once: exactly one is begun");
    let other = control(&c, leader(&c).await).await;
    let (r1, r2) = tokio::join!(
        retry(|| {
            let mut c = ctl.clone();
            async move { c.switchover(switchover("b")).await }
        }),
        retry(|| {
            let mut c = other.clone();
            async move { c.switchover(switchover("b")).await }
        })
    );
    eprintln!("--- concurrent switchovers: {r1:?} / {r2:?}");
    let (ok, refused): (Vec<_>, Vec<_>) = [r1, r2].into_iter().partition(|r| r.is_ok());
    assert_eq!(ok.len(), 1, "one switchover begun");
    let e = refused.into_iter().next().unwrap().unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("in progress") || e.message().contains("already the primary"),
        "{}",
        e.message()
    );
    let f = finished(&c, 1).await;
    assert_eq!(f.outcome, "completed");
    let e = retry(|| {
        let mut c = ctl.clone();
        async move { c.switchover(switchover("a")).await }
    })
    .await
    .unwrap_err();
    assert!(
        e.message().contains("not rejoined") || e.message().contains("in progress"),
        "a switchover back before a rejoined: {}",
        e.message()
    );
}
