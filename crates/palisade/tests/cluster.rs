//! Real witness processes on loopback: election, leader loss, restart with
//! the on-disk log intact, durability across a whole-cluster crash, and a
//! clean SIGTERM.

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use support::{step, wait_for, Cluster};

const ELECTION: Duration = Duration::from_secs(20);

#[test]
fn three_witnesses_agree_on_one_leader() {
    let c = Cluster::start();
    step("waiting for all three to report the same leader and term");
    let (leader, term) = c.wait_for_agreed_leader("one leader agreed by all three", ELECTION);
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

#[test]
fn killed_leader_is_replaced_and_rejoins_with_its_log_intact() {
    let mut c = Cluster::start();
    let (old_leader, old_term) = c.wait_for_agreed_leader("initial leader", ELECTION);
    let survivor = [1, 2, 3]
        .into_iter()
        .find(|i| *i != old_leader)
        .expect("a follower");

    step("a note committed through a follower (forwarded to the leader)");
    let first = c.annotate(survivor, "before the crash");

    step(&format!("SIGKILL leader {old_leader}"));
    c.node(old_leader).kill9();
    let (new_leader, new_term) =
        c.wait_for_agreed_leader("a new leader among the two survivors", ELECTION);
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
        || {
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
    );
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

#[test]
fn committed_note_survives_sigkill_of_every_witness() {
    let mut c = Cluster::start();
    let (leader, _) = c.wait_for_agreed_leader("initial leader", ELECTION);
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
    c.wait_for_agreed_leader("a leader after the restart", ELECTION);
    for id in [1, 2, 3] {
        wait_for(
            &format!("node {id} to apply the note again"),
            ELECTION,
            || {
                c.journal(id)
                    .filter(|j| j.iter().any(|t| t == "survives a total crash"))
            },
        );
    }
}

#[test]
fn sigterm_stops_a_witness_cleanly_and_the_rest_carry_on() {
    let mut c = Cluster::start();
    let (leader, _) = c.wait_for_agreed_leader("initial leader", ELECTION);
    let follower = [1, 2, 3]
        .into_iter()
        .find(|i| *i != leader)
        .expect("a follower");
    step(&format!("SIGTERM follower {follower}"));
    c.node(follower).signal(Signal::SIGTERM);
    assert_eq!(
        c.node(follower).wait_exit(Duration::from_secs(15)),
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
