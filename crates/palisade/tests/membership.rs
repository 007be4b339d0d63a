//! Witness replacement end to end (`palisadectl member replace`): the
//! tie-breaker's host and disk are gone, a new witness on a new host takes
//! over its site, and the primary notices nothing: no failover, no restart,
//! no write gap. Then the new witness carries the quorum (the standby
//! site's witness is killed and the lease still holds), and the removed
//! witness, started again with its old disk, disturbs nothing. A witness
//! at a new site is added and removed again, with the primary untouched.

use std::time::{Duration, Instant};

use palisade_api::v1 as pb;
use palisade_api::v1::control_client::ControlClient;
use palisade_testkit::cluster::{
    start_cluster, wait_ready, wait_status, Cluster, FAST, SETTLE, SLOTS,
};
use palisade_testkit::pg::PgPair;
use palisade_testkit::step;
use palisade_testkit::wait::wait_for;
use palisade_testkit::writer::{longest_gap, Writer};
use tonic::Code;

/// FAST's lease TTL: the observation windows below span several.
const LEASE_TTL: Duration = Duration::from_millis(1500);

/// DESIGN rule 1's mirror: a fault that needs no failover leaves no write
/// gap over 500 ms.
const NO_OUTAGE: Duration = Duration::from_millis(500);

async fn control(c: &Cluster, id: u64) -> ControlClient<tonic::transport::Channel> {
    let node = c.nodes.iter().find(|n| n.id == id).expect("node");
    ControlClient::new(
        node.control_channel(Duration::from_secs(2), Duration::from_secs(60))
            .await
            .expect("control channel"),
    )
}

fn replace(old: u64, id: u64, site: &str, raft: &str, control: &str) -> pb::ChangeMembersRequest {
    pb::ChangeMembersRequest {
        action: pb::change_members_request::Action::Replace as i32,
        old_id: old,
        new_member: Some(pb::Member {
            id,
            site: site.into(),
            raft_addr: raft.into(),
            control_addr: control.into(),
            voter: false,
        }),
        author: String::new(),
    }
}

fn voters(reply: &pb::MembersReply) -> Vec<u64> {
    reply
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.id)
        .collect()
}

/// Waits until witness `id` answers on its control port (a witness that
/// waits to join answers before it is added).
async fn wait_up(c: &Cluster, id: u64) {
    let node = c.nodes.iter().find(|n| n.id == id).expect("node");
    wait_for(&format!("witness {id} to answer"), SETTLE, async || {
        let channel = node
            .control_channel(Duration::from_secs(1), Duration::from_secs(2))
            .await
            .map_err(|e| format!("{e:#}"))?;
        ControlClient::new(channel)
            .members(pb::MembersRequest {})
            .await
            .map(|_| ())
            .map_err(|e| e.message().to_string())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// The peer and control addresses a node's config gives it.
fn addresses(c: &Cluster, id: u64) -> (String, String) {
    let node = c.nodes.iter().find(|n| n.id == id).expect("node");
    let text = std::fs::read_to_string(&node.config).expect("config");
    let entry = text
        .split("[[witness]]")
        .find(|e| e.contains(&format!("\nid = {id}\n")))
        .expect("own entry");
    let field = |k: &str| {
        entry
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k} = \"")))
            .map(|v| v.trim_end_matches('"').to_string())
            .expect("address")
    };
    (field("raft_addr"), field("control_addr"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_tie_breaker_is_replaced_with_no_failover_and_no_write_gap() {
    let _slot = SLOTS.acquire().await.expect("slot");
    let pair = PgPair::start().await.expect("postgres pair");
    let mut c = start_cluster(&pair, FAST).await;
    wait_ready(&c).await;
    let writer = Writer::start(&pair).await;
    writer.wait_acks_at("a", 20).await;
    let started = pair
        .primary
        .query_text("SELECT pg_postmaster_start_time()::text")
        .await
        .expect("postmaster start time");
    let epoch = wait_status(&c, "the epoch", SETTLE, |s| Some(s.epoch)).await;

    step("witness 3 (site c, the tie-breaker) is lost: SIGKILL; its disk is kept for later");
    let since = Instant::now();
    c.node(3).kill9();
    let spare = c.dir.path().join("data-c-old");
    std::fs::rename(&c.node(3).data_dir, &spare).expect("move the old disk away");

    let (raft, ctl) = {
        let n = c.add_replacement(4, 3);
        n.start();
        addresses(&c, 4)
    };
    wait_up(&c, 4).await;
    // Witness 3 may have led: the others elect a leader first.
    wait_status(&c, "a leader among witnesses 1 and 2", SETTLE, |s| {
        s.leader_id.filter(|l| *l != 3)
    })
    .await;
    let mut leader_ctl = control(&c, 1).await;

    step("refusals first: nothing changes");
    let e = leader_ctl
        .change_members(replace(3, 4, "b", &raft, &ctl))
        .await
        .expect_err("another site");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().starts_with("new_member.site"),
        "{}",
        e.message()
    );
    let e = leader_ctl
        .change_members(pb::ChangeMembersRequest {
            action: pb::change_members_request::Action::Remove as i32,
            old_id: 2,
            ..Default::default()
        })
        .await
        .expect_err("a database site's witness");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("holds a database"), "{}", e.message());
    let e = leader_ctl
        .change_members(replace(3, 5, "c", "127.0.0.1:9", "127.0.0.1:10"))
        .await
        .expect_err("nobody at that address");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("raft.join = true"), "{}", e.message());
    let before = leader_ctl
        .members(pb::MembersRequest {})
        .await
        .expect("members")
        .into_inner();
    assert_eq!(voters(&before), vec![1, 2, 3]);

    step("palisadectl member replace 3 --id 4, through witness 2 (forwarded if it follows)");
    let args = [
        "member",
        "replace",
        "3",
        "--id",
        "4",
        "--raft-addr",
        raft.as_str(),
        "--control-addr",
        ctl.as_str(),
        "--yes",
    ];
    let out = c.ctl(2, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("replaced witness 3 by witness 4"),
        "{stdout}"
    );
    let reply = leader_ctl
        .members(pb::MembersRequest {})
        .await
        .expect("members")
        .into_inner();
    assert_eq!(voters(&reply), vec![1, 2, 4], "{reply:?}");
    let again = c.ctl(2, &[&["--output", "json"][..], &args[..]].concat());
    assert!(again.status.success(), "a retry is no error: {again:?}");
    let json: serde_json::Value = serde_json::from_slice(&again.stdout).expect("json");
    assert_eq!(json["changed"], false, "{json}");
    let from_new = control(&c, 4)
        .await
        .members(pb::MembersRequest {})
        .await
        .expect("the new witness answers")
        .into_inner();
    assert_eq!(
        voters(&from_new),
        vec![1, 2, 4],
        "the new witness has the membership"
    );

    step("witness 2 (the standby site's) dies: 1 and 4 are the majority now");
    c.node(2).kill9();
    let cut = Instant::now();
    // Three leases' worth of writes: without 4's grants the lease would run
    // out within one.
    writer.wait_acks_at("a", writer.acks().len() + 1).await;
    tokio::time::sleep(LEASE_TTL * 3).await;
    let acks = writer.acks();
    let gap = longest_gap(&acks, "a", cut, Instant::now());
    assert!(
        gap < NO_OUTAGE,
        "the primary stopped taking writes for {gap:?} with witnesses 1 and 4 up"
    );

    step("the removed witness comes back with its old disk: it disturbs nothing");
    std::fs::rename(&spare, &c.node(3).data_dir).expect("the old disk back");
    c.node(3).start();
    c.node(2).start();
    let leader_before = wait_status(&c, "a leader", SETTLE, |s| s.leader_id).await;
    tokio::time::sleep(LEASE_TTL * 2).await;
    let after = leader_ctl
        .members(pb::MembersRequest {})
        .await
        .expect("members")
        .into_inner();
    assert_eq!(voters(&after), vec![1, 2, 4]);
    assert_eq!(
        wait_status(&c, "a leader", SETTLE, |s| s.leader_id).await,
        leader_before,
        "the removed witness forced no election"
    );

    step("palisadectl member add 5 at a new site d, then member remove 5");
    let (raft5, ctl5) = {
        let n = c.add_witness(5, "d", 4);
        n.start();
        addresses(&c, 5)
    };
    wait_up(&c, 5).await;
    let add = [
        "member",
        "add",
        "--id",
        "5",
        "--site",
        "d",
        "--raft-addr",
        raft5.as_str(),
        "--control-addr",
        ctl5.as_str(),
        "--yes",
    ];
    let out = c.ctl(1, &add);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("even number of voters"), "{stdout}");
    let four = leader_ctl
        .members(pb::MembersRequest {})
        .await
        .expect("members")
        .into_inner();
    assert_eq!(voters(&four), vec![1, 2, 4, 5]);
    let out = c.ctl(1, &["member", "remove", "5", "--yes"]);
    assert!(out.status.success(), "{out:?}");
    let three = leader_ctl
        .members(pb::MembersRequest {})
        .await
        .expect("members")
        .into_inner();
    assert_eq!(voters(&three), vec![1, 2, 4]);
    assert!(three.members.iter().all(|m| m.id != 5), "{three:?}");
    c.node(5).kill9();

    let until = Instant::now();
    let acks = writer.stop().await;
    assert!(
        acks.iter().all(|a| a.site == "a"),
        "no write went to the standby: there was no failover"
    );
    let gap = longest_gap(&acks, "a", since, until);
    eprintln!("--- longest write gap over the whole test: {gap:?}");
    assert!(gap < NO_OUTAGE, "longest write gap {gap:?}");
    assert_eq!(
        pair.primary
            .query_text("SELECT pg_postmaster_start_time()::text")
            .await
            .expect("postmaster start time"),
        started,
        "the primary was never restarted"
    );
    assert_eq!(
        wait_status(&c, "the epoch", SETTLE, |s| Some(s.epoch)).await,
        epoch,
        "no failover"
    );
    let journal = c.journal(1).expect("journal");
    assert!(
        journal
            .iter()
            .any(|l| l.contains("membership: replaced witness 3 by witness 4")),
        "{journal:?}"
    );
}
